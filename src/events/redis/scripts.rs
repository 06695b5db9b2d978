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
//!
//! Each script's Lua text is a file of `scripts/` (the name of its constant, in lower case),
//! included whole; what it does, its keys and its arguments are documented on the constant.

use std::sync::OnceLock;

use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind, Value};

use super::topology::Conn;

use crate::events::error::StoreError;
use crate::events::model::{DeliveryStatus, Destination, Event, ResultInfo, Status};

/// Items of an event as the scripts return it (`ev`): its id, then `FIELDS`. What a script
/// returns after it begins here.
pub const EVENT_ITEMS: usize = 20;

/// Shared by every script: the names, and the steps several of them take.
const PRELUDE: &str = concat!("\n", include_str!("scripts/prelude.lua"));

/// ARGV[5] max_queued, [6] hold (ms), then per event: id, submit time, method, target,
/// headers, body, function name, qualifier, not-before time ('' when not delayed). Per event: `{0}` stored, `{1, event}` the id exists, `{2}` the queue is
/// full. With a hold, a new event is not delivered yet: it waits in `delayed`, marked `held`,
/// until RELEASE (once the replicas confirmed it) or WITHDRAW; should neither come (the
/// instance died meanwhile), it is delivered when the hold is over.
const SUBMIT: &str = concat!("\n", include_str!("scripts/submit.lua"));

/// ARGV[5] the delivered entry, ARGV[6] its event, [7] the submit time before which it has
/// expired ('' for no limit), [8] the message of an expiry, [9] its destination ('' none),
/// [10] until when that is tried. The event, then method, target,
/// headers, body and failures; nil when the entry is stale (the event was aborted or delivered
/// again) or the event expired instead of starting.
const START: &str = concat!("\n", include_str!("scripts/start.lua"));

/// ARGV[5] lease, [6] id, [7] status, [8] code, [9] error type, [10] message, then the
/// function's answer to keep: [11] status ('' for none), [12] 1 when truncated, [13] bytes,
/// [14] headers, [15] body; [16] the destination ('' none), [17] until when it is tried.
/// The event, or nil when the lease is no longer the event's.
const FINISH: &str = concat!("\n", include_str!("scripts/finish.lua"));

/// ARGV[5] lease, [6] id, [7] due time, [8] code, [9] error type, [10] message, [11] 1 when
/// charged. 1, or 0 when the lease is no longer the event's.
const RETRY: &str = concat!("\n", include_str!("scripts/retry.lua"));

/// ARGV[5] id, [6] 1 for graceful. `{0}` unknown, `{1, event}` ended already, `{3, event}`
/// aborted now (it was QUEUED), `{2, event, owner, owner alive}` RUNNING: the terminate is
/// recorded on the event and its owner told.
const TERMINATE: &str = concat!("\n", include_str!("scripts/terminate.lua"));

/// ARGV[5] id, [6] message ('' keeps the event's). As TERMINATE, for QUEUED and RUNNING alike.
const MARK_ABORTED: &str = concat!("\n", include_str!("scripts/mark_aborted.lua"));

/// ARGV[5] the heartbeat's time to live (ms), then the ids this instance's workers hold. The
/// heartbeat is renewed, the held leases too (their idle time is reset); this consumer's other
/// pending entries go back to the queue (reconcile); the next 200 queued events live on, and
/// one whose stream entry is gone is delivered again. Returns `id, term` of the held events a
/// terminate was asked for.
const RENEW: &str = concat!("\n", include_str!("scripts/renew.lua"));

/// ARGV[5] the lease (ms). The pending entries of consumers whose heartbeat expired, and any
/// entry idle longer than the lease, are taken over: their events go back to the queue (or end
/// as a terminate asked). A dead consumer with nothing pending leaves the group. Returns how
/// many entries were taken over.
const TAKEOVER: &str = concat!("\n", include_str!("scripts/takeover.lua"));

/// ARGV[5..] ids of a batch the replicas confirmed: the held ones are delivered now.
const RELEASE: &str = concat!("\n", include_str!("scripts/release.lua"));

/// ARGV[5..] ids of a batch too few replicas confirmed. Each event still held (not
/// delivered, so not started) is removed as if it had never been submitted (1); one that is
/// not (delivered when its hold ran out, or another submission's) stays, and will run (0);
/// one stored nowhere (the batch's answer came from a stale master whose writes its resync
/// dropped) will not run either (2).
const WITHDRAW: &str = concat!("\n", include_str!("scripts/withdraw.lua"));

/// Retries whose time has come are delivered again. Returns how many.
const PROMOTE: &str = concat!("\n", include_str!("scripts/promote.lua"));

/// Counts per status, in `Status::ALL` order (after forgetting what is past the retention).
const COUNTS: &str = concat!("\n", include_str!("scripts/counts.lua"));

/// How many events were forgotten.
const PURGE: &str = "return purge()";

/// ARGV[5] the submit time before which a QUEUED event has expired, [6] the message, [7] its
/// destination ('' none), [8] until when that is tried. Ends
/// EXPIRED up to 100 such events (also while every worker is busy); returns how many.
const EXPIRE: &str = concat!("\n", include_str!("scripts/expire.lua"));

/// Deliveries due (at most ARGV[5]): each is leased for 30 s (its time in the outbox moves on,
/// so another instance tries it only if this one dies), and returned as the event, then its
/// payload, its answer's body and until when it is tried.
const DUE: &str = concat!("\n", include_str!("scripts/due.lua"));

/// ARGV[5] id, [6] `delivered`, `failed` or `pending` (tried again at [7]). Records a try.
const RECORD: &str = concat!("\n", include_str!("scripts/record.lua"));

/// The earliest time a delivery is due (ms), or nil.
const NEXT_DUE: &str = concat!("\n", include_str!("scripts/next_due.lua"));

/// One event (ARGV[5] id) and its stored answer's headers and body, or nil.
const RESULT: &str = concat!("\n", include_str!("scripts/result.lua"));

/// One event (ARGV[5] id), or nil.
const GET: &str = concat!("\n", include_str!("scripts/get.lua"));

/// ARGV[5] statuses (comma-separated, '' = all), [6] since (ms, ''), [7] until (ms, ''),
/// [8] asc|desc, [9] offset, [10] limit, [11] request id (''). The total, then the page.
const LIST: &str = concat!("\n", include_str!("scripts/list.lua"));

/// LIST with the filters of docs/reference.md §10, by a scan of the events in the submit-time
/// window (the fleet's store has no index for them): ARGV[5..11] as LIST, then [12] request
/// id prefix, [13] function name, [14] qualifier, [15] invocation type, [16] started since,
/// [17] started until, [18] ended since, [19] ended until (ms; '' for none), [20] what to
/// order by (`submit`, `start`, `end`). The total, then the page.
const LIST_FILTERED: &str = concat!("\n", include_str!("scripts/list_filtered.lua"));

/// The handoff (docs/reference.md §10): ARGV[5..13] one event as SUBMIT takes it (its
/// not-before time unused: a handoff runs now). The event is stored and
/// started by this consumer at once (delivered to it through the group, so that it is leased
/// like any started event): `{0, event, lease}`, or `{1, event}` when the id exists.
const HANDOFF: &str = concat!("\n", include_str!("scripts/handoff.lua"));

/// The withdrawal of a handoff too few replicas confirmed (docs/reference.md §10): ARGV[5] its
/// id, [6] its lease. The event is deleted while it is still the RUNNING one that handoff
/// stored for this consumer (1), else left alone (0); an id stored nowhere (a stale master's
/// answer) is 2: nothing runs it.
const UNHAND: &str = concat!("\n", include_str!("scripts/unhand.lua"));

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
    pub handoff: Script,
    pub unhand: Script,
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
            handoff: s(HANDOFF),
            unhand: s(UNHAND),
        }
    })
}

/// Whether `e` is the server not knowing a script (a new or restarted master): loading it
/// and running the call again is safe, since nothing of it ran.
pub fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Runs `cmd`, an `EVALSHA` of `script` (from `Inner::command`), loading the script first
/// when the server does not have it.
pub fn eval(conn: &mut Conn, script: &Script, cmd: &Cmd) -> RedisResult<Value> {
    match cmd.query(conn) {
        Err(e) if is_noscript(&e) => {
            script.load(conn)?;
            cmd.query(conn)
        }
        other => other,
    }
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
/// Whether a WITHDRAW flag or an UNHAND answer means the event will not run: withdrawn (1),
/// or stored nowhere (2). Only 0 (it stays: delivered, or another's) runs.
pub fn will_not_run(v: &Value) -> bool {
    matches!(num(v), Some(1 | 2))
}

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
