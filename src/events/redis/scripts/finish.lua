local eid, id = ARGV[5], ARGV[6]
local h = P .. 'ev:' .. id
preflight({id})
if redis.call('HGET', h, 'status') ~= 'RUNNING' or redis.call('HGET', h, 'lease') ~= eid then
  return false
end
local start = tonumber(redis.call('HGET', h, 'start')) or NOW
-- durationMs is endTime - startTime exactly, and never negative.
local fin = math.max(NOW, start)
redis.call('HSET', h, 'status', ARGV[7], 'end', fin, 'dur', fin - start)
set_opt(h, 'code', ARGV[8])
set_opt(h, 'etype', ARGV[9])
set_opt(h, 'emsg', ARGV[10])
if ARGV[11] ~= '' then
  redis.call('HSET', h, 'rcode', ARGV[11], 'rtrunc', ARGV[12], 'rbytes', ARGV[13],
    'rhdr', ARGV[14], 'rdat', ARGV[15])
end
outbox(h, id, ARGV[16], ARGV[17])
ack(eid)
ended(h, id, 'RUNNING', ARGV[7])
return ev(id)
