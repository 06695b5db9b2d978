redis.call('SET', P .. 'alive:' .. ME, '1', 'PX', ARGV[5])
-- The queue is in use: its keys live on (they expire a retention after the last instance).
redis.call('PEXPIRE', S, TTL)
for _, k in ipairs(FIXED) do redis.call('PEXPIRE', k, TTL) end
-- The next 200 queued events' hashes live on too (see LIVE_TTL).
local cursor = tonumber(redis.call('GET', P .. 'cursor')) or 0
local queued = redis.call('ZRANGE', P .. 'st:QUEUED', cursor, cursor + 199)
for _, id in ipairs(queued) do
  local h = P .. 'ev:' .. id
  redis.call('PEXPIRE', h, LIVE_TTL)
  -- A QUEUED event that is neither held nor waiting in `delayed` must have its delivery in
  -- the stream (read or not). One whose entry is gone would never run: it is delivered again.
  -- (Seen once in about ten runs of a cluster master frozen and thawed mid-burst: an event
  -- acknowledged as the old master came back kept an entry that had been acknowledged away.)
  local f = redis.call('HMGET', h, 'status', 'entry', 'held')
  if f[1] == 'QUEUED' and not f[3] and not redis.call('ZSCORE', P .. 'delayed', id)
      and (not f[2] or #redis.call('XRANGE', S, f[2], f[2]) == 0) then
    deliver(h, id)
  end
end
redis.call('SET', P .. 'cursor', #queued < 200 and 0 or cursor + 200, 'PX', TTL)
local leases, out = {}, {}
for k = 6, #ARGV do
  local id = ARGV[k]
  local h = P .. 'ev:' .. id
  local lease = redis.call('HGET', h, 'lease')
  if lease and redis.call('HGET', h, 'owner') == ME then
    leases[lease] = true
    redis.call('XCLAIM', S, G, ME, 0, lease, 'JUSTID')
    redis.call('PEXPIRE', h, LIVE_TTL)
    local term = redis.call('HGET', h, 'term')
    if term then
      out[#out + 1] = id
      out[#out + 1] = term
    end
  end
end
local ok, pend = pcall(redis.call, 'XPENDING', S, G, 'IDLE', 5000, '-', '+', 100, ME)
if ok then
  for _, p in ipairs(pend) do
    if not leases[p[1]] then reclaim(p[1]) end
  end
end
return out
