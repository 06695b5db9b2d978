local eid, id = ARGV[5], ARGV[6]
local h = P .. 'ev:' .. id
preflight({id})
local st = redis.call('HGET', h, 'status')
-- Started by this very call already (its reply was lost and the call made again): the same.
local again = st == 'RUNNING' and redis.call('HGET', h, 'lease') == eid and redis.call('HGET', h, 'owner') == ME
if not again then
  if st ~= 'QUEUED' or redis.call('HGET', h, 'entry') ~= eid then
    ack(eid)
    return false
  end
  if ARGV[7] ~= '' and (tonumber(redis.call('HGET', h, 'submit')) or NOW) < tonumber(ARGV[7]) then
    expire(h, id, ARGV[8], ARGV[9], ARGV[10])
    return false
  end
  redis.call('HSET', h, 'status', 'RUNNING', 'owner', ME, 'lease', eid)
  redis.call('HINCRBY', h, 'attempts', 1)
  -- Never before submitTime, whatever the clocks of the instances say.
  local submit = tonumber(redis.call('HGET', h, 'submit')) or NOW
  if redis.call('HEXISTS', h, 'start') == 0 then redis.call('HSET', h, 'start', math.max(NOW, submit)) end
  redis.call('PEXPIRE', h, LIVE_TTL)
  move(id, 'QUEUED', 'RUNNING', redis.call('HGET', h, 'score'))
end
local r = ev(id)
local q = redis.call('HMGET', h, 'method', 'target', 'headers', 'body', 'failures')
for k = 1, 5 do r[#r + 1] = q[k] end
return r
