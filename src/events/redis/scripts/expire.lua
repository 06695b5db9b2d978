purge()
local ids = redis.call('ZRANGEBYSCORE', P .. 'st:QUEUED', '-inf', '(' .. ARGV[5] .. '000', 'LIMIT', 0, 100)
preflight(ids)
local n = 0
for _, id in ipairs(ids) do
  local h = P .. 'ev:' .. id
  if redis.call('HGET', h, 'status') == 'QUEUED' then
    expire(h, id, ARGV[6], ARGV[7], ARGV[8])
    n = n + 1
  end
end
return n
