local ids = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', NOW, 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  redis.call('ZREM', P .. 'delayed', id)
  local h = P .. 'ev:' .. id
  redis.call('HDEL', h, 'held')
  if redis.call('HGET', h, 'status') == 'QUEUED' then deliver_due(h, id) end
end
return #ids
