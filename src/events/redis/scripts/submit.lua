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
-- One INCRBY for the batch: the n-th new event of it takes seq - n + k.
local seq = redis.call('INCRBY', P .. 'seq', #ids) - #ids
local out = {}
-- Each new event costs six calls: the hash (its delivery entry included), its expiry, two
-- indexes and the stream entry or the wait in `delayed` (the fleet's throughput is bounded
-- by what the server does per event: docs in bench/README.md).
for i = 7, #ARGV, 9 do
  local id, submit, nb = ARGV[i], ARGV[i + 1], ARGV[i + 8]
  local h = P .. 'ev:' .. id
  seq = seq + 1
  if redis.call('EXISTS', h) == 1 then
    out[#out + 1] = {1, ev(id)}
  elseif max > 0 and queued >= max then
    out[#out + 1] = {2}
  else
    -- Scores order the indexes by submit time, then by submission within a millisecond.
    local score = submit .. string.format('%03d', seq % 1000)
    local f = {'status', 'QUEUED', 'submit', submit, 'next', submit, 'attempts', 0,
      'failures', 0, 'score', score, 'method', ARGV[i + 2], 'target', ARGV[i + 3],
      'headers', ARGV[i + 4], 'body', ARGV[i + 5], 'fn', ARGV[i + 6], 'qual', ARGV[i + 7]}
    local later = nb ~= '' and tonumber(nb) > NOW
    if nb ~= '' then
      f[#f + 1], f[#f + 2] = 'nb', nb
      f[6] = nb
    end
    if hold > 0 then
      -- Not delivered before the replicas confirm it (RELEASE, or the hold runs out).
      f[#f + 1], f[#f + 2] = 'held', 1
      redis.call('ZADD', P .. 'delayed', NOW + hold, id)
    elseif later then
      redis.call('ZADD', P .. 'delayed', nb, id)
    else
      f[#f + 1], f[#f + 2] = 'entry', redis.call('XADD', S, '*', 'id', id)
    end
    redis.call('HSET', h, unpack(f))
    redis.call('PEXPIRE', h, LIVE_TTL)
    redis.call('ZADD', P .. 'all', score, id)
    redis.call('ZADD', P .. 'st:QUEUED', score, id)
    queued = queued + 1
    out[#out + 1] = {0}
  end
end
return out
