local ids = redis.call('ZRANGEBYSCORE', P .. 'outbox', '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
preflight(ids)
local out = {}
for _, id in ipairs(ids) do
  local h = P .. 'ev:' .. id
  if redis.call('HGET', h, 'dst') == 'pending' then
    redis.call('ZADD', P .. 'outbox', NOW + 30000, id)
    local r = ev(id)
    local q = redis.call('HMGET', h, 'dpay', 'rdat', 'duntil')
    for k = 1, 3 do r[#r + 1] = q[k] end
    out[#out + 1] = r
  else
    redis.call('ZREM', P .. 'outbox', id)
  end
end
return out
