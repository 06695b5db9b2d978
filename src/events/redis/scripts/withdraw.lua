local ids = {}
for k = 5, #ARGV do ids[#ids + 1] = ARGV[k] end
preflight(ids)
local out = {}
for _, id in ipairs(ids) do
  local h = P .. 'ev:' .. id
  local f = redis.call('HMGET', h, 'status', 'attempts', 'entry', 'held')
  if not f[1] then
    -- Stored nowhere (a stale master's answer, lost at its resync): it will not run.
    out[#out + 1] = 2
  elseif f[1] == 'QUEUED' and tonumber(f[2]) == 0 and f[4] then
    ack(f[3])
    redis.call('ZREM', P .. 'all', id)
    redis.call('ZREM', P .. 'st:QUEUED', id)
    redis.call('ZREM', P .. 'delayed', id)
    redis.call('DEL', h)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
