local id, lease = ARGV[5], ARGV[6]
local h = P .. 'ev:' .. id
preflight({id})
local f = redis.call('HMGET', h, 'status', 'owner', 'lease', 'attempts', 'term')
-- Stored nowhere (a stale master's answer, lost at its resync): nothing runs it.
if not f[1] then return 2 end
-- Only the handoff this very call stored, not yet started by anyone else.
if f[1] ~= 'RUNNING' or f[2] ~= ME or f[3] ~= lease or tonumber(f[4]) ~= 1 then return 0 end
ack(lease)
redis.call('ZREM', P .. 'all', id)
redis.call('ZREM', P .. 'st:RUNNING', id)
redis.call('DEL', h)
-- A terminate waiting for it has its word: the event is gone.
if f[5] then redis.call(PUB, P .. 'ended', id) end
return 1
