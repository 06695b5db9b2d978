local S, P, NOW, RET, ME = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local G = 'workers'
-- Sharded pub/sub where the server has it (Redis 7): on a cluster the word stays on the
-- queue's shard instead of going to every node (the subscriber SSUBSCRIBEs there).
local PUB = (redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 'SPUBLISH' or 'PUBLISH'
local FIELDS = {'status', 'submit', 'start', 'end', 'dur', 'code', 'attempts', 'etype', 'emsg', 'next',
  'fn', 'qual', 'nb', 'rcode', 'rtrunc', 'rbytes', 'durl', 'dst', 'datt'}
local function is_ended(st)
  return st == 'FINISHED' or st == 'FAILED' or st == 'ABORTED' or st == 'EXPIRED'
end
-- The queue's keys besides the stream: all of them expire once nobody used the queue for the
-- retention (RENEW, every second on every live instance, pushes their expiry on).
local FIXED = {P .. 'all', P .. 'ended', P .. 'delayed', P .. 'seq', P .. 'st:QUEUED',
  P .. 'st:RUNNING', P .. 'st:FINISHED', P .. 'st:FAILED', P .. 'st:ABORTED', P .. 'st:EXPIRED',
  P .. 'outbox'}
-- How long an unused key lives: the retention, and a margin (a minute at most) for the last
-- ended event's hash, so that lists never show an event half forgotten.
local TTL = RET + math.min(RET, 60000)
-- An event that has not ended lives at least 10 minutes unused: RENEW goes round the queued
-- ones 200 a second, so a live fleet refreshes every one well before then (10,000 queued
-- events in under a minute), while the queue of a fleet that is gone still expires.
local LIVE_TTL = math.max(TTL, 600000)
-- Reads every key the script may write before it writes any: while a Cluster slot migrates,
-- a key already moved fails the script here, with nothing of it done, rather than halfway.
-- One call for all of them: a slot is on one node, so any key of it answers there or fails.
local function preflight(ids)
  local keys = {unpack(FIXED)}
  for _, id in ipairs(ids or {}) do keys[#keys + 1] = P .. 'ev:' .. id end
  redis.call('EXISTS', unpack(keys))
end
-- The event as the admin API shows it: its id, then FIELDS.
local function ev(id)
  local f = redis.call('HMGET', P .. 'ev:' .. id, unpack(FIELDS))
  table.insert(f, 1, id)
  return f
end
-- The first step of a terminate: `{0}` unknown, `{1, event}` ended already; else nil and the
-- event's status.
local function unended(id)
  local st = redis.call('HGET', P .. 'ev:' .. id, 'status')
  if not st then return {0} end
  if is_ended(st) then return {1, ev(id)} end
  return nil, st
end
-- '' stands for null.
local function set_opt(h, field, v)
  if v == '' then redis.call('HDEL', h, field) else redis.call('HSET', h, field, v) end
end
-- A stream entry is done with: out of the group's pending list and out of the stream.
local function ack(eid)
  if eid and eid ~= '' then
    redis.call('XACK', S, G, eid)
    redis.call('XDEL', S, eid)
  end
end
local function move(id, from, to, score)
  redis.call('ZREM', P .. 'st:' .. from, id)
  redis.call('ZADD', P .. 'st:' .. to, score, id)
end
-- A new stream entry delivers a QUEUED event to the group's next free consumer.
local function deliver(h, id)
  local eid = redis.call('XADD', S, '*', 'id', id)
  redis.call('HSET', h, 'entry', eid)
  return eid
end
-- The bookkeeping of an event that reached an ended status: its index, the retention clock,
-- the key's expiry, and the word to a terminate waiting for it (on any instance).
local function ended(h, id, from, to)
  move(id, from, to, redis.call('HGET', h, 'score'))
  redis.call('ZADD', P .. 'ended', NOW, id)
  if redis.call('HGET', h, 'dst') ~= 'pending' then redis.call('PEXPIREAT', h, NOW + TTL) end
  -- The request is needed no more: an ended event keeps only what the admin API shows.
  redis.call('HDEL', h, 'owner', 'lease', 'entry', 'method', 'target', 'headers', 'body')
  if redis.call('HEXISTS', h, 'term') == 1 then
    redis.call('HDEL', h, 'term')
    redis.call(PUB, P .. 'ended', id)
  end
end
-- An event that ended with a destination (docs/reference.md §10): its delivery is recorded with
-- the end, in the same script (a durable outbox), with the payload it carries.
local function outbox(h, id, url, untl)
  if url == '' then return end
  redis.call('HSET', h, 'durl', url, 'dst', 'pending', 'datt', 0, 'duntil', untl,
    'dpay', redis.call('HGET', h, 'body') or '')
  redis.call('ZADD', P .. 'outbox', NOW, id)
  redis.call('PEXPIREAT', h, math.max(NOW, tonumber(untl)) + LIVE_TTL)
end
local function abort(h, id, msg)
  local st = redis.call('HGET', h, 'status')
  ack(redis.call('HGET', h, 'entry'))
  ack(redis.call('HGET', h, 'lease'))
  redis.call('ZREM', P .. 'delayed', id)
  local start = tonumber(redis.call('HGET', h, 'start'))
  local fin = math.max(NOW, start or NOW)
  redis.call('HSET', h, 'status', 'ABORTED', 'end', fin, 'dur', start and fin - start or 0)
  if msg ~= '' then redis.call('HSET', h, 'emsg', msg) end
  ended(h, id, st, 'ABORTED')
end
-- A QUEUED event past async.max_event_age ends EXPIRED without starting (docs/reference.md §10).
local function expire(h, id, msg, url, untl)
  local st = redis.call('HGET', h, 'status')
  ack(redis.call('HGET', h, 'entry'))
  redis.call('ZREM', P .. 'delayed', id)
  local start = tonumber(redis.call('HGET', h, 'start'))
  local fin = math.max(NOW, start or NOW)
  redis.call('HSET', h, 'status', 'EXPIRED', 'end', fin, 'dur', start and fin - start or 0,
    'etype', 'EventAgeExceeded', 'emsg', msg)
  outbox(h, id, url, untl)
  ended(h, id, st, 'EXPIRED')
end
-- A QUEUED event whose stream entry is due now: delivered, unless it was submitted with a
-- delay (`nb`, docs/reference.md §10) still to run, when it waits in `delayed` until then.
local function deliver_due(h, id)
  local nb = tonumber(redis.call('HGET', h, 'nb'))
  if nb and nb > NOW and tonumber(redis.call('HGET', h, 'attempts')) == 0 then
    redis.call('ZADD', P .. 'delayed', nb, id)
  else
    deliver(h, id)
  end
end
-- An event nobody runs any more goes back to the queue without using a retry, or ends as a
-- terminate asked.
local function requeue(h, id)
  local term = redis.call('HGET', h, 'term')
  if term then
    abort(h, id, term == 'graceful' and 'User process exit when running' or 'terminated by an operator')
    return
  end
  local st = redis.call('HGET', h, 'status')
  redis.call('HSET', h, 'status', 'QUEUED', 'next', NOW)
  redis.call('HDEL', h, 'owner', 'lease')
  redis.call('PEXPIRE', h, LIVE_TTL)
  if st ~= 'QUEUED' then move(id, st, 'QUEUED', redis.call('HGET', h, 'score')) end
  deliver(h, id)
end
-- A pending entry that nobody will finish (its consumer died, its lease expired, no worker
-- holds it): its event goes back to the queue if the entry is still the event's delivery.
local function reclaim(eid)
  local id
  local e = redis.call('XRANGE', S, eid, eid)
  if e[1] then
    local f = e[1][2]
    for i = 1, #f, 2 do if f[i] == 'id' then id = f[i + 1] end end
  end
  if id then
    local h = P .. 'ev:' .. id
    local st = redis.call('HGET', h, 'status')
    if (st == 'RUNNING' and redis.call('HGET', h, 'lease') == eid)
        or (st == 'QUEUED' and redis.call('HGET', h, 'entry') == eid) then
      requeue(h, id)
    end
  end
  ack(eid)
end
-- Forgets ended events past the retention (their keys expire a minute later anyway).
local function purge()
  local ids = redis.call('ZRANGEBYSCORE', P .. 'ended', '-inf', '(' .. (NOW - RET), 'LIMIT', 0, 500)
  for _, id in ipairs(ids) do
    redis.call('ZREM', P .. 'ended', id)
    local h = P .. 'ev:' .. id
    local st = redis.call('HGET', h, 'status')
    -- An event whose delivery is pending stays until it is done (RECORD puts it back here).
    local pending = redis.call('HGET', h, 'dst') == 'pending'
    if not pending then
      for _, s in ipairs({'FINISHED', 'FAILED', 'ABORTED', 'EXPIRED'}) do redis.call('ZREM', P .. 'st:' .. s, id) end
    end
    if not st or (is_ended(st) and not pending) then
      redis.call('ZREM', P .. 'all', id)
      redis.call('DEL', h)
    end
  end
  return #ids
end
