local hold = tonumber(ARGV[6])
local ids = {}
for i = 7, #ARGV, 9 do ids[#ids + 1] = ARGV[i] end
preflight(ids)
purge()
-- Always a write, even when every id exists: the WAIT that follows then covers whatever of
-- this batch an earlier, interrupted call stored.
redis.call('PEXPIRE', S, TTL)
local max = tonumber(ARGV[5])
local queued = redis.call('ZCARD', P .. 'st:QUEUED')
local out = {}
for i = 7, #ARGV, 9 do
  local id, submit = ARGV[i], ARGV[i + 1]
  local h = P .. 'ev:' .. id
  if redis.call('EXISTS', h) == 1 then
    out[#out + 1] = {1, ev(id)}
  elseif max > 0 and queued >= max then
    out[#out + 1] = {2}
  else
    -- Scores order the indexes by submit time, then by submission within a millisecond.
    local score = submit .. string.format('%03d', redis.call('INCR', P .. 'seq') % 1000)
    redis.call('HSET', h, 'status', 'QUEUED', 'submit', submit, 'next', submit, 'attempts', 0,
      'failures', 0, 'score', score, 'method', ARGV[i + 2], 'target', ARGV[i + 3],
      'headers', ARGV[i + 4], 'body', ARGV[i + 5], 'fn', ARGV[i + 6], 'qual', ARGV[i + 7])
    if ARGV[i + 8] ~= '' then redis.call('HSET', h, 'nb', ARGV[i + 8], 'next', ARGV[i + 8]) end
    redis.call('PEXPIRE', h, LIVE_TTL)
    redis.call('ZADD', P .. 'all', score, id)
    redis.call('ZADD', P .. 'st:QUEUED', score, id)
    if hold > 0 then
      redis.call('HSET', h, 'held', 1)
      redis.call('ZADD', P .. 'delayed', NOW + hold, id)
    else
      deliver_due(h, id)
    end
    queued = queued + 1
    out[#out + 1] = {0}
  end
end
return out
