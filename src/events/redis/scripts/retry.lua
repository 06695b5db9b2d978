local eid, id, at = ARGV[5], ARGV[6], tonumber(ARGV[7])
local h = P .. 'ev:' .. id
preflight({id})
if redis.call('HGET', h, 'status') ~= 'RUNNING' or redis.call('HGET', h, 'lease') ~= eid then
  return 0
end
set_opt(h, 'code', ARGV[8])
set_opt(h, 'etype', ARGV[9])
set_opt(h, 'emsg', ARGV[10])
if redis.call('HEXISTS', h, 'term') == 1 then
  -- A terminate is under way and its word may not have reached this instance: it wins.
  local term = redis.call('HGET', h, 'term')
  abort(h, id, term == 'graceful' and 'User process exit when running' or 'terminated by an operator')
  return 1
end
redis.call('HSET', h, 'status', 'QUEUED', 'next', at)
redis.call('HINCRBY', h, 'failures', ARGV[11])
redis.call('HDEL', h, 'owner', 'lease', 'entry')
redis.call('PEXPIRE', h, LIVE_TTL)
ack(eid)
move(id, 'RUNNING', 'QUEUED', redis.call('HGET', h, 'score'))
if at <= NOW then deliver(h, id) else redis.call('ZADD', P .. 'delayed', at, id) end
return 1
