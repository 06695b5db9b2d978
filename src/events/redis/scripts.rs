//! The Redis backend's Lua scripts, and the decoding of their replies.
//!
//! Every change of an event is one script, so it is atomic on the server: no other client
//! sees half of it, and no two instances can both start, finish or take over one event. Every
//! script gets the same first arguments — `KEYS[1]` the queue's stream (the key that routes
//! the script to the queue's Cluster slot), `ARGV[1..4]` the key prefix `fc-init:{queue}:`,
//! the time now (ms), the retention (ms) and this instance's consumer name — and builds the
//! other keys of the queue from the prefix. They all carry the queue's hash tag, so they are
//! on the slot of `KEYS[1]`.
//!
//! A script may run twice for one call: a link makes a call again when its kept connection
//! turns out closed (see [`super::link`]). So each is harmless when repeated: a repeated
//! submission finds its id stored, START answers a start it made already with the same
//! attempt, FINISH and RETRY find the lease gone and change nothing, the housekeeping ones
//! redo what is left to do.

use std::sync::OnceLock;

use redis::{Script, Value};

use crate::events::error::StoreError;
use crate::events::model::{DeliveryStatus, Destination, Event, ResultInfo, Status};

/// Items of an event as the scripts return it (`ev`): its id, then `FIELDS`. What a script
/// returns after it begins here.
pub const EVENT_ITEMS: usize = 20;

/// Shared by every script: the names, and the steps several of them take.
const PRELUDE: &str = r#"
local S, P, NOW, RET, ME = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local G = 'workers'
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
    redis.call('PUBLISH', P .. 'ended', id)
  end
end
-- An event that ended with a destination (CONTRACT section 12): its delivery is recorded with
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
-- A QUEUED event past async.max_event_age ends EXPIRED without starting (CONTRACT section 12).
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
-- delay (`nb`, CONTRACT section 12) still to run, when it waits in `delayed` until then.
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
"#;

/// ARGV[5] max_queued, [6] hold (ms), then per event: id, submit time, method, target,
/// headers, body, function name, qualifier, not-before time ('' when not delayed). Per event: `{0}` stored, `{1, event}` the id exists, `{2}` the queue is
/// full. With a hold, a new event is not delivered yet: it waits in `delayed`, marked `held`,
/// until RELEASE (once the replicas confirmed it) or WITHDRAW; should neither come (the
/// instance died meanwhile), it is delivered when the hold is over.
const SUBMIT: &str = r#"
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
"#;

/// ARGV[5] the delivered entry, ARGV[6] its event, [7] the submit time before which it has
/// expired ('' for no limit), [8] the message of an expiry, [9] its destination ('' none),
/// [10] until when that is tried. The event, then method, target,
/// headers, body and failures; nil when the entry is stale (the event was aborted or delivered
/// again) or the event expired instead of starting.
const START: &str = r#"
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
"#;

/// ARGV[5] lease, [6] id, [7] status, [8] code, [9] error type, [10] message, then the
/// function's answer to keep: [11] status ('' for none), [12] 1 when truncated, [13] bytes,
/// [14] headers, [15] body; [16] the destination ('' none), [17] until when it is tried.
/// The event, or nil when the lease is no longer the event's.
const FINISH: &str = r#"
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
"#;

/// ARGV[5] lease, [6] id, [7] due time, [8] code, [9] error type, [10] message, [11] 1 when
/// charged. 1, or 0 when the lease is no longer the event's.
const RETRY: &str = r#"
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
"#;

/// ARGV[5] id, [6] 1 for graceful. `{0}` unknown, `{1, event}` ended already, `{3, event}`
/// aborted now (it was QUEUED), `{2, event, owner, owner alive}` RUNNING: the terminate is
/// recorded on the event and its owner told.
const TERMINATE: &str = r#"
local id = ARGV[5]
preflight({id})
local h = P .. 'ev:' .. id
local done, st = unended(id)
if done then return done end
if st == 'QUEUED' then
  abort(h, id, '')
  return {3, ev(id)}
end
local term = ARGV[6] == '1' and 'graceful' or 'forced'
local owner = redis.call('HGET', h, 'owner') or ''
local alive = redis.call('EXISTS', P .. 'alive:' .. owner)
-- The word first: a publish that fails (a user without the channel's right) fails the whole
-- script before anything is recorded, so the terminate answers an error and the event runs on.
if owner ~= ME and alive == 1 then redis.call('PUBLISH', P .. 'ctl:' .. owner, term .. ' ' .. id) end
redis.call('HSET', h, 'term', term)
return {2, ev(id), owner, alive}
"#;

/// ARGV[5] id, [6] message ('' keeps the event's). As TERMINATE, for QUEUED and RUNNING alike.
const MARK_ABORTED: &str = r#"
local id = ARGV[5]
preflight({id})
local done = unended(id)
if done then return done end
abort(P .. 'ev:' .. id, id, ARGV[6])
return {3, ev(id)}
"#;

/// ARGV[5] the heartbeat's time to live (ms), then the ids this instance's workers hold. The
/// heartbeat is renewed, the held leases too (their idle time is reset); this consumer's other
/// pending entries go back to the queue (reconcile). Returns `id, term` of the held events a
/// terminate was asked for.
const RENEW: &str = r#"
redis.call('SET', P .. 'alive:' .. ME, '1', 'PX', ARGV[5])
-- The queue is in use: its keys live on (they expire a retention after the last instance).
redis.call('PEXPIRE', S, TTL)
for _, k in ipairs(FIXED) do redis.call('PEXPIRE', k, TTL) end
-- The next 200 queued events' hashes live on too (see LIVE_TTL).
local cursor = tonumber(redis.call('GET', P .. 'cursor')) or 0
local queued = redis.call('ZRANGE', P .. 'st:QUEUED', cursor, cursor + 199)
for _, id in ipairs(queued) do redis.call('PEXPIRE', P .. 'ev:' .. id, LIVE_TTL) end
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
"#;

/// ARGV[5] the lease (ms). The pending entries of consumers whose heartbeat expired, and any
/// entry idle longer than the lease, are taken over: their events go back to the queue (or end
/// as a terminate asked). A dead consumer with nothing pending leaves the group. Returns how
/// many entries were taken over.
const TAKEOVER: &str = r#"
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', S, G)
if not ok then return 0 end
local n = 0
for _, c in ipairs(consumers) do
  local name, pending
  for k = 1, #c, 2 do
    if c[k] == 'name' then name = c[k + 1] elseif c[k] == 'pending' then pending = c[k + 1] end
  end
  if name and name ~= ME and redis.call('EXISTS', P .. 'alive:' .. name) == 0 then
    local left = pending or 0
    if left > 0 then
      for _, p in ipairs(redis.call('XPENDING', S, G, '-', '+', 100, name)) do
        redis.call('XCLAIM', S, G, ME, 0, p[1], 'JUSTID')
        reclaim(p[1])
        n = n + 1
        left = left - 1
      end
    end
    -- Its events are taken over: the dead consumer leaves the group (a live instance that
    -- was only cut off comes back as a new consumer when it reads again).
    if left <= 0 then redis.call('XGROUP', 'DELCONSUMER', S, G, name) end
  end
end
local r = redis.call('XAUTOCLAIM', S, G, ME, ARGV[5], '0-0', 'COUNT', 100, 'JUSTID')
for _, eid in ipairs(r[2]) do
  reclaim(eid)
  n = n + 1
end
return n
"#;

/// ARGV[5..] ids of a batch the replicas confirmed: the held ones are delivered now.
const RELEASE: &str = r#"
for k = 5, #ARGV do
  local id = ARGV[k]
  local h = P .. 'ev:' .. id
  if redis.call('HDEL', h, 'held') == 1 then
    redis.call('ZREM', P .. 'delayed', id)
    if redis.call('HGET', h, 'status') == 'QUEUED' then deliver_due(h, id) end
  end
end
return 1
"#;

/// ARGV[5..] ids of a batch too few replicas confirmed. Each event still held (not
/// delivered, so not started) is removed as if it had never been submitted (1); one that is
/// not (delivered when its hold ran out, or another submission's) stays, and will run (0).
const WITHDRAW: &str = r#"
local ids = {}
for k = 5, #ARGV do ids[#ids + 1] = ARGV[k] end
preflight(ids)
local out = {}
for _, id in ipairs(ids) do
  local h = P .. 'ev:' .. id
  local f = redis.call('HMGET', h, 'status', 'attempts', 'entry', 'held')
  if f[1] == 'QUEUED' and tonumber(f[2]) == 0 and f[4] then
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
"#;

/// Retries whose time has come are delivered again. Returns how many.
const PROMOTE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', NOW, 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  redis.call('ZREM', P .. 'delayed', id)
  local h = P .. 'ev:' .. id
  redis.call('HDEL', h, 'held')
  if redis.call('HGET', h, 'status') == 'QUEUED' then deliver_due(h, id) end
end
return #ids
"#;

/// Counts per status, in `Status::ALL` order (after forgetting what is past the retention).
const COUNTS: &str = r#"
purge()
local out = {}
for _, s in ipairs({'QUEUED', 'RUNNING', 'FINISHED', 'FAILED', 'ABORTED', 'EXPIRED'}) do
  out[#out + 1] = redis.call('ZCARD', P .. 'st:' .. s)
end
return out
"#;

/// How many events were forgotten.
const PURGE: &str = "return purge()";

/// ARGV[5] the submit time before which a QUEUED event has expired, [6] the message, [7] its
/// destination ('' none), [8] until when that is tried. Ends
/// EXPIRED up to 100 such events (also while every worker is busy); returns how many.
const EXPIRE: &str = r#"
purge()
local ids = redis.call('ZRANGEBYSCORE', P .. 'st:QUEUED', '-inf', '(' .. ARGV[5] .. '000', 'LIMIT', 0, 100)
preflight(ids)
local n = 0
for _, id in ipairs(ids) do
  local h = P .. 'ev:' .. id
  if redis.call('HGET', h, 'status') == 'QUEUED' then
    expire(h, id, ARGV[6], ARGV[7], ARGV[8])
    n = n + 1
  end
end
return n
"#;

/// Deliveries due (at most ARGV[5]): each is leased for 30 s (its time in the outbox moves on,
/// so another instance tries it only if this one dies), and returned as the event, then its
/// payload, its answer's body and until when it is tried.
const DUE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', P .. 'outbox', '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
preflight(ids)
local out = {}
for _, id in ipairs(ids) do
  local h = P .. 'ev:' .. id
  if redis.call('HGET', h, 'dst') == 'pending' then
    redis.call('ZADD', P .. 'outbox', NOW + 30000, id)
    local r = ev(id)
    local q = redis.call('HMGET', h, 'dpay', 'rdat', 'duntil')
    for k = 1, 3 do r[#r + 1] = q[k] end
    out[#out + 1] = r
  else
    redis.call('ZREM', P .. 'outbox', id)
  end
end
return out
"#;

/// ARGV[5] id, [6] `delivered`, `failed` or `pending` (tried again at [7]). Records a try.
const RECORD: &str = r#"
local id = ARGV[5]
local h = P .. 'ev:' .. id
preflight({id})
if redis.call('HGET', h, 'dst') ~= 'pending' then return 0 end
redis.call('HINCRBY', h, 'datt', 1)
if ARGV[6] == 'pending' then
  redis.call('ZADD', P .. 'outbox', tonumber(ARGV[7]), id)
else
  redis.call('HSET', h, 'dst', ARGV[6])
  redis.call('HDEL', h, 'dpay')
  redis.call('ZREM', P .. 'outbox', id)
  -- Back under the retention, counted from the event's end as any other.
  redis.call('ZADD', P .. 'ended', tonumber(redis.call('HGET', h, 'end')) or NOW, id)
  redis.call('PEXPIREAT', h, NOW + TTL)
end
return 1
"#;

/// The earliest time a delivery is due (ms), or nil.
const NEXT_DUE: &str = r#"
local r = redis.call('ZRANGE', P .. 'outbox', 0, 0, 'WITHSCORES')
if r[2] then return r[2] end
return false
"#;

/// One event (ARGV[5] id) and its stored answer's headers and body, or nil.
const RESULT: &str = r#"
purge()
local h = P .. 'ev:' .. ARGV[5]
if redis.call('HEXISTS', h, 'status') == 0 then return false end
local r = ev(ARGV[5])
local q = redis.call('HMGET', h, 'rhdr', 'rdat')
r[#r + 1] = q[1]
r[#r + 1] = q[2]
return r
"#;

/// One event (ARGV[5] id), or nil.
const GET: &str = r#"
purge()
if redis.call('HEXISTS', P .. 'ev:' .. ARGV[5], 'status') == 0 then return false end
return ev(ARGV[5])
"#;

/// ARGV[5] statuses (comma-separated, '' = all), [6] since (ms, ''), [7] until (ms, ''),
/// [8] asc|desc, [9] offset, [10] limit, [11] request id (''). The total, then the page.
const LIST: &str = r#"
purge()
local statuses, since, untl, order = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local offset, limit, rid = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
local wanted = {}
for s in string.gmatch(statuses, '[^,]+') do wanted[#wanted + 1] = s end
if rid ~= '' then
  local f = redis.call('HMGET', P .. 'ev:' .. rid, 'status', 'submit')
  local st, submit = f[1], tonumber(f[2])
  local match = st and (#wanted == 0)
  for _, s in ipairs(wanted) do if s == st then match = true end end
  if match and since ~= '' and submit < tonumber(since) then match = false end
  if match and untl ~= '' and submit >= tonumber(untl) then match = false end
  if not match then return {0} end
  if offset > 0 or limit == 0 then return {1} end
  return {1, ev(rid)}
end
local min = since ~= '' and (since .. '000') or '-inf'
local max = untl ~= '' and ('(' .. untl .. '000') or '+inf'
local keys = {}
if #wanted == 0 then keys[1] = P .. 'all' end
for _, s in ipairs(wanted) do keys[#keys + 1] = P .. 'st:' .. s end
local total, page = 0, {}
for _, k in ipairs(keys) do
  total = total + redis.call('ZCOUNT', k, min, max)
  if limit > 0 then
    local r
    if order == 'asc' then
      r = redis.call('ZRANGEBYSCORE', k, min, max, 'WITHSCORES', 'LIMIT', 0, offset + limit)
    else
      r = redis.call('ZREVRANGEBYSCORE', k, max, min, 'WITHSCORES', 'LIMIT', 0, offset + limit)
    end
    for j = 1, #r, 2 do page[#page + 1] = {r[j], tonumber(r[j + 1])} end
  end
end
if #keys > 1 then
  table.sort(page, function(a, b)
    if order == 'asc' then return a[2] < b[2] end
    return a[2] > b[2]
  end)
end
local out = {total}
for j = offset + 1, math.min(offset + limit, #page) do
  local e = ev(page[j][1])
  -- A hash that expired with its queue unused; the indexes forget it on the next purge.
  if e[2] then out[#out + 1] = e end
end
return out
"#;

/// LIST with the filters of CONTRACT section 12, by a scan of the events in the submit-time
/// window (the fleet's store has no index for them): ARGV[5..11] as LIST, then [12] request
/// id prefix, [13] function name, [14] qualifier, [15] invocation type, [16] started since,
/// [17] started until, [18] ended since, [19] ended until (ms; '' for none), [20] what to
/// order by (`submit`, `start`, `end`). The total, then the page.
const LIST_FILTERED: &str = r#"
purge()
local statuses, since, untl, order = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local offset, limit, rid, prefix = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11], ARGV[12]
local fname, qual, itype = ARGV[13], ARGV[14], ARGV[15]
local ss, su = tonumber(ARGV[16]), tonumber(ARGV[17])
local es, eu = tonumber(ARGV[18]), tonumber(ARGV[19])
local by = ARGV[20]
local wanted = {}
for s in string.gmatch(statuses, '[^,]+') do wanted[#wanted + 1] = s end
local min = since ~= '' and (since .. '000') or '-inf'
local max = untl ~= '' and ('(' .. untl .. '000') or '+inf'
local keys = {}
if #wanted == 0 then keys[1] = P .. 'all' end
for _, s in ipairs(wanted) do keys[#keys + 1] = P .. 'st:' .. s end
local rows = {}
for _, k in ipairs(keys) do
  local ids = redis.call('ZRANGEBYSCORE', k, min, max, 'WITHSCORES')
  for j = 1, #ids, 2 do
    local id = ids[j]
    local f = redis.call('HMGET', P .. 'ev:' .. id, 'status', 'fn', 'qual', 'start', 'end')
    local st, en = tonumber(f[4]), tonumber(f[5])
    local ok = f[1] ~= false
      and (rid == '' or id == rid)
      and (prefix == '' or string.sub(id, 1, #prefix) == prefix)
      and (fname == '' or (f[2] or '') == fname)
      and (qual == '' or (f[3] or 'LATEST') == qual)
      and (itype == '' or itype == 'Async')
      and (not ss or (st ~= nil and st >= ss)) and (not su or (st ~= nil and st < su))
      and (not es or (en ~= nil and en >= es)) and (not eu or (en ~= nil and en < eu))
    if ok then
      local score = tonumber(ids[j + 1])
      local t = score
      if by == 'start' then t = st elseif by == 'end' then t = en end
      rows[#rows + 1] = {id, t or false, score}
    end
  end
end
-- As SQLite's ORDER BY: events without the time ordered by come last, either way.
table.sort(rows, function(a, b)
  if (a[2] == false) ~= (b[2] == false) then return b[2] == false end
  if a[2] ~= false and a[2] ~= b[2] then
    if order == 'asc' then return a[2] < b[2] end
    return a[2] > b[2]
  end
  if order == 'asc' then return a[3] < b[3] end
  return a[3] > b[3]
end)
local out = {#rows}
for j = offset + 1, math.min(offset + limit, #rows) do out[#out + 1] = ev(rows[j][1]) end
return out
"#;

/// The scripts, loaded once per process (the server caches them by SHA1; after a restart of
/// Redis the first call sends the source again).
pub struct Scripts {
    pub submit: Script,
    pub start: Script,
    pub finish: Script,
    pub retry: Script,
    pub terminate: Script,
    pub mark_aborted: Script,
    pub renew: Script,
    pub takeover: Script,
    pub promote: Script,
    pub withdraw: Script,
    pub release: Script,
    pub counts: Script,
    pub purge: Script,
    pub expire: Script,
    pub result: Script,
    pub get: Script,
    pub list: Script,
    pub list_filtered: Script,
    pub due: Script,
    pub record: Script,
    pub next_due: Script,
}

pub fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            submit: s(SUBMIT),
            start: s(START),
            finish: s(FINISH),
            retry: s(RETRY),
            terminate: s(TERMINATE),
            mark_aborted: s(MARK_ABORTED),
            renew: s(RENEW),
            takeover: s(TAKEOVER),
            promote: s(PROMOTE),
            withdraw: s(WITHDRAW),
            release: s(RELEASE),
            counts: s(COUNTS),
            purge: s(PURGE),
            expire: s(EXPIRE),
            result: s(RESULT),
            get: s(GET),
            list: s(LIST),
            list_filtered: s(LIST_FILTERED),
            due: s(DUE),
            record: s(RECORD),
            next_due: s(NEXT_DUE),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Replies

fn bad(op: &'static str, what: &str, v: &Value) -> StoreError {
    StoreError::RedisReply {
        op,
        detail: format!("{what}: {v:?}"),
    }
}

/// The elements of an array reply.
pub fn array<'a>(op: &'static str, v: &'a Value) -> Result<&'a [Value], StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(bad(op, "expected an array", other)),
    }
}

/// Text of a string or integer reply; `None` for nil.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

/// The bytes of a string reply (empty for nil).
pub fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        other => text(other).unwrap_or_default().into_bytes(),
    }
}

/// A number reply, or a string holding one; `None` for nil or anything else.
pub fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}

/// An event as the scripts return it: its id, then the hash's `FIELDS`.
pub fn event(op: &'static str, v: &Value) -> Result<Event, StoreError> {
    let f = array(op, v)?;
    if f.len() < 11 {
        return Err(bad(op, "expected an event", v));
    }
    let status = text(&f[1])
        .as_deref()
        .and_then(Status::parse)
        .ok_or_else(|| bad(op, "status", v))?;
    Ok(Event {
        request_id: text(&f[0]).ok_or_else(|| bad(op, "request id", v))?,
        status,
        submit_time: num(&f[2]).unwrap_or(0),
        start_time: num(&f[3]),
        end_time: num(&f[4]),
        duration_ms: num(&f[5]),
        status_code: num(&f[6]).and_then(|c| u16::try_from(c).ok()),
        attempts: num(&f[7]).and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        error_type: text(&f[8]),
        error_message: text(&f[9]),
        next_attempt_at: num(&f[10]).unwrap_or(0),
        function_name: f.get(11).and_then(text).unwrap_or_default(),
        // Events stored before qualifiers were recorded are LATEST, as on SQLite.
        qualifier: f
            .get(12)
            .and_then(text)
            .unwrap_or_else(|| "LATEST".to_owned()),
        not_before: f.get(13).and_then(num),
        result: f.get(14).and_then(num).map(|code| ResultInfo {
            status_code: u16::try_from(code).unwrap_or(0),
            truncated: f.get(15).and_then(num) == Some(1),
            bytes: f.get(16).and_then(num).unwrap_or(0),
        }),
        destination: f.get(17).and_then(text).map(|url| Destination {
            url,
            status: f
                .get(18)
                .and_then(text)
                .as_deref()
                .and_then(DeliveryStatus::parse)
                .unwrap_or(DeliveryStatus::Pending),
            attempts: f
                .get(19)
                .and_then(num)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reply_decodes_nulls_and_numbers() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            bulk("id-1"),
            bulk("FAILED"),
            bulk("1795300423123"),
            bulk("1795300423200"),
            bulk("1795300424000"),
            bulk("800"),
            bulk("502"),
            bulk("4"),
            bulk("UnhandledInvocationError"),
            Value::Nil,
            bulk("0"),
        ]);
        let e = event("test", &reply).unwrap();
        assert_eq!(e.request_id, "id-1");
        assert_eq!(e.status, Status::Failed);
        assert_eq!(e.status_code, Some(502));
        assert_eq!((e.attempts, e.duration_ms), (4, Some(800)));
        assert_eq!(e.error_message, None);
        assert!(event("test", &Value::Nil).is_err());
    }
}
