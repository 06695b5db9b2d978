for k = 5, #ARGV do
  local id = ARGV[k]
  local h = P .. 'ev:' .. id
  if redis.call('HDEL', h, 'held') == 1 then
    redis.call('ZREM', P .. 'delayed', id)
    if redis.call('HGET', h, 'status') == 'QUEUED' then deliver_due(h, id) end
  end
end
return 1
