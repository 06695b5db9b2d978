//! The event model both stores share: an event's states, what a submission carries, what a
//! worker gets and reports, the operator's queries and their answers, and the event's JSON
//! (CONTRACT section 7) through serde.
//!
//! Times are milliseconds since the Unix epoch (`u64`), rendered as RFC 3339 with exactly
//! three fractional digits at the edge ([`super::time`]).

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::time::format_rfc3339_ms;

/// The most events one list returns (CONTRACT section 7: `limit ≤ 100`).
pub const MAX_LIST_LIMIT: u32 = 100;

/// An event's state. Text in the database and the JSON (`QUEUED`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Running,
    /// The function answered with success.
    Finished,
    /// Every attempt failed.
    Failed,
    /// Terminated by an operator.
    Aborted,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Finished,
        Status::Failed,
        Status::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Running => "RUNNING",
            Status::Finished => "FINISHED",
            Status::Failed => "FAILED",
            Status::Aborted => "ABORTED",
        }
    }

    /// Parses a status name, ignoring ASCII case (`?status=queued` is what a person types).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// FINISHED, FAILED and ABORTED are final: nothing changes them again.
    pub fn is_ended(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Aborted)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request an event replays to the function: exactly what the client sent
/// (CONTRACT section 8: query string and headers as received, minus hop-by-hop).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredRequest {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    /// Header names and raw values, in order. Stored length-prefixed, so any bytes survive.
    pub headers: Vec<(String, Vec<u8>)>,
    /// At most `async.max_payload` bytes: the caller enforces the limit before submitting.
    pub body: Vec<u8>,
}

/// A submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// `[A-Za-z0-9._:-]{1,128}`; checked again here because it is the primary key.
    pub request_id: String,
    pub submit_time: u64,
    pub request: StoredRequest,
}

/// An event as the operator sees it (everything but the stored request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub request_id: String,
    pub status: Status,
    pub submit_time: u64,
    /// The first attempt's start; `None` while never started (also when aborted while queued).
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    /// `end_time - start_time` once ended; 0 for an event aborted before it ever started.
    pub duration_ms: Option<u64>,
    /// The last attempt's HTTP status, when it got an answer.
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// When a QUEUED event is due (its submit time, or the retry time set by `retry_later`).
    pub next_attempt_at: u64,
}

/// What [`Store::claim_next`] hands a worker: the event (now RUNNING) and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub event: Event,
    pub request: StoredRequest,
    /// Failures of this event so far that used a retry (`attempts` also counts the starts cut
    /// short by something else: CONTRACT section 8).
    pub failures: u32,
    /// The store's token of this attempt (Redis: the stream entry that delivered it); a record
    /// of the attempt applies only while the token is still the event's. Empty on SQLite,
    /// where one process holds every attempt.
    pub lease: String,
}

/// The result of a successful submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Stored durably; it will run.
    Created,
    /// An event with this request id was already stored: nothing new was stored, nothing
    /// runs twice. Carries the stored event as it is now.
    AlreadyExists(Event),
}

/// How an attempt ended, for [`Store::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// FINISHED, FAILED or ABORTED (a graceful terminate ends the event when its request ends).
    pub status: Status,
    pub status_code: Option<u16>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// End time, ms since the epoch.
    pub end: u64,
}

/// How a failed attempt goes back to the queue (a backend's `retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry<'a> {
    /// Due time, ms since the epoch.
    pub at: u64,
    pub status_code: Option<u16>,
    pub error_type: Option<&'a str>,
    pub error_message: Option<&'a str>,
    /// The event's own failure: it uses one of its retries (CONTRACT section 8).
    pub charged: bool,
}

/// The answer to a terminate ([`Store::abort_queued`], [`Store::mark_aborted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortResult {
    NotFound,
    /// Already FINISHED, FAILED or ABORTED (CONTRACT: 409 `EventAlreadyEnded`).
    AlreadyEnded(Event),
    /// RUNNING: `abort_queued` leaves it alone; the caller kills the attempt first, then calls
    /// [`Store::mark_aborted`].
    Running(Event),
    /// Now ABORTED.
    Aborted(Event),
}

/// Ordering of [`Store::list`] by submit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    /// Newest first (the default, CONTRACT section 7).
    #[default]
    Desc,
}

/// Filters of [`Store::list`] (`GET /async-events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Empty: every status.
    pub statuses: Vec<Status>,
    /// Exact match (a prefix match would make `LIKE` escaping part of the API for no gain).
    pub request_id: Option<String>,
    /// Submit time ≥ `since` (ms).
    pub since: Option<u64>,
    /// Submit time < `until` (ms): half-open, so consecutive windows never overlap.
    pub until: Option<u64>,
    pub order: Order,
    pub offset: u64,
    /// Clamped to [`MAX_LIST_LIMIT`]; 0 returns only the total.
    pub limit: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            statuses: Vec::new(),
            request_id: None,
            since: None,
            until: None,
            order: Order::Desc,
            offset: 0,
            limit: 20,
        }
    }
}

/// Limits of a store (`[async]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most QUEUED events at once; further submissions get [`StoreError::Full`].
    /// 0 = unlimited, like the other limits of the config.
    pub max_queued: u64,
    /// How long ended events are kept (by end time) before [`Store::purge_expired`] drops them.
    pub retention: Duration,
}

/// Counters of the group commit, for metrics and the batching test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Transactions committed by [`Store::submit`] leaders (successful or not).
    pub batches: u64,
    /// Submissions that went through those transactions.
    pub submissions: u64,
}

// ---------------------------------------------------------------------------------------------
// JSON (CONTRACT section 7)

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A time in ms since the epoch, serialized as RFC 3339 with milliseconds.
struct Rfc3339(u64);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339_ms(self.0))
    }
}

/// The event as the admin API shows it (every field but the stored request and the
/// scheduling details).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventJson<'a> {
    request_id: &'a str,
    status: Status,
    invocation_type: &'static str,
    submit_time: Rfc3339,
    start_time: Option<Rfc3339>,
    end_time: Option<Rfc3339>,
    duration_ms: Option<u64>,
    status_code: Option<u16>,
    attempts: u32,
    error_type: Option<&'a str>,
    error_message: Option<&'a str>,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EventJson {
            request_id: &self.request_id,
            status: self.status,
            invocation_type: "Async",
            submit_time: Rfc3339(self.submit_time),
            start_time: self.start_time.map(Rfc3339),
            end_time: self.end_time.map(Rfc3339),
            duration_ms: self.duration_ms,
            status_code: self.status_code,
            attempts: self.attempts,
            error_type: self.error_type.as_deref(),
            error_message: self.error_message.as_deref(),
        }
        .serialize(s)
    }
}

/// `{"totalCount":N,"events":[...]}`, the answer to `GET /async-events`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList<'a> {
    pub total_count: u64,
    pub events: &'a [Event],
}

impl Event {
    /// The event as the admin API shows it: `{"requestId":...,"status":...,...}`.
    pub fn to_json(&self) -> String {
        to_json_text(self)
    }
}

/// The answer to `GET /async-events` as text.
pub fn list_to_json(total_count: u64, events: &[Event]) -> String {
    to_json_text(&EventList {
        total_count,
        events,
    })
}

/// `value` as compact JSON text, with U+2028 and U+2029 escaped as well: valid in JSON, they
/// end a line in JavaScript, and fc-init's JSON has always been a safe JavaScript literal.
/// (serde_json writes them raw; raw, they can only stand inside a string literal, so the
/// replacement touches nothing else.)
pub fn to_json_text<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain data with string keys into a String cannot fail.
    let text = serde_json::to_string(value).expect("plain data serializes");
    if text.contains(['\u{2028}', '\u{2029}']) {
        text.replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    } else {
        text
    }
}

/// Whether `id` matches `[A-Za-z0-9._:-]{1,128}` (CONTRACT section 3).
pub fn valid_request_id(id: &str) -> bool {
    crate::http::valid_request_id(id.as_bytes())
}

/// Headers as `(u32 LE length, name, u32 LE length, value)*`: length-prefixed rather than
/// NUL-separated so a value may hold any byte.
pub fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (name, value) in headers {
        for part in [name.as_bytes(), value.as_slice()] {
            // Header blocks are bounded by server.max_header_bytes, far below u32::MAX.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&part[..len as usize]);
        }
    }
    out
}

pub fn decode_headers(mut blob: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    fn take<'a>(blob: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = blob.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (part, rest) = rest.split_at(len);
        *blob = rest;
        Some(part)
    }
    let mut headers = Vec::new();
    while !blob.is_empty() {
        let name = String::from_utf8(take(&mut blob)?.to_vec()).ok()?;
        let value = take(&mut blob)?.to_vec();
        headers.push((name, value));
    }
    Some(headers)
}
