local id, submit = ARGV[5], ARGV[6]
local h = P .. 'ev:' .. id
preflight({id})
purge()
redis.call('PEXPIRE', S, TTL)
if redis.call('EXISTS', h) == 1 then
  -- Stored by this very call already (its reply was lost and the call made again): the same.
  if redis.call('HGET', h, 'status') == 'RUNNING' and redis.call('HGET', h, 'owner') == ME
    and redis.call('HGET', h, 'submit') == submit and redis.call('HGET', h, 'attempts') == '1' then
    return {0, ev(id), redis.call('HGET', h, 'lease')}
  end
  return {1, ev(id)}
end
local score = submit .. string.format('%03d', redis.call('INCR', P .. 'seq') % 1000)
redis.call('HSET', h, 'status', 'QUEUED', 'submit', submit, 'next', submit, 'attempts', 0,
  'failures', 0, 'score', score, 'method', ARGV[7], 'target', ARGV[8],
  'headers', ARGV[9], 'body', ARGV[10], 'fn', ARGV[11], 'qual', ARGV[12])
redis.call('PEXPIRE', h, LIVE_TTL)
redis.call('ZADD', P .. 'all', score, id)
redis.call('ZADD', P .. 'st:QUEUED', score, id)
-- Delivered to this consumer, so that the group's pending list holds it as any started event
-- (renewed while this instance lives, taken over when it dies). Entries no worker has taken
-- yet come before it: each is delivered again behind it, in the same order.
local eid = deliver(h, id)
local got = false
while not got do
  local r = redis.call('XREADGROUP', 'GROUP', G, ME, 'COUNT', 100, 'STREAMS', S, '>')
  if not r then break end
  for _, e in ipairs(r[1][2]) do
    if e[1] == eid then
      got = true
    else
      ack(e[1])
      local oid = e[2][2]
      local oh = P .. 'ev:' .. oid
      if redis.call('HGET', oh, 'status') == 'QUEUED' and redis.call('HGET', oh, 'entry') == e[1] then
        deliver(oh, oid)
      end
    end
  end
end
redis.call('HSET', h, 'status', 'RUNNING', 'owner', ME, 'lease', eid, 'attempts', 1,
  'start', math.max(NOW, tonumber(submit)))
move(id, 'QUEUED', 'RUNNING', score)
return {0, ev(id), eid}
