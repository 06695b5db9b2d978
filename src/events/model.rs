//! The event model both stores share: an event's states, what a submission carries, what a
//! worker gets and reports, the operator's queries and their answers, and the event's JSON
//! (docs/reference.md §10) through serde.
//!
//! Times are milliseconds since the Unix epoch (`u64`), rendered as RFC 3339 with exactly
//! three fractional digits at the edge ([`super::time`]).

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::time::format_rfc3339_ms;

/// The most events one list returns (docs/reference.md §10: `limit ≤ 100`).
pub const MAX_LIST_LIMIT: u32 = 100;

/// An event's state. Text in the database and the JSON (`QUEUED`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Status {
    #[default]
    Queued,
    Running,
    /// The function answered with success.
    Finished,
    /// Every attempt failed.
    Failed,
    /// Terminated by an operator.
    Aborted,
    /// Not started within `async.max_event_age` of its submission (docs/reference.md §10).
    Expired,
}

/// How many statuses there are: the length of the store's counts by status.
pub const STATUS_COUNT: usize = 6;

impl Status {
    pub const ALL: [Status; STATUS_COUNT] = [
        Status::Queued,
        Status::Running,
        Status::Finished,
        Status::Failed,
        Status::Aborted,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Running => "RUNNING",
            Status::Finished => "FINISHED",
            Status::Failed => "FAILED",
            Status::Aborted => "ABORTED",
            Status::Expired => "EXPIRED",
        }
    }

    /// Parses a status name, ignoring ASCII case (`?status=queued` is what a person types).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// FINISHED, FAILED, ABORTED and EXPIRED are final: nothing changes them again.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            Status::Finished | Status::Failed | Status::Aborted | Status::Expired
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request an event replays to the function: exactly what the client sent
/// (docs/reference.md §10: query string and headers as received, minus hop-by-hop).
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewEvent {
    /// `[A-Za-z0-9._:-]{1,128}`; checked again here because it is the primary key.
    pub request_id: String,
    pub submit_time: u64,
    pub request: StoredRequest,
    /// `function.name` of the instance that accepted it (docs/reference.md §10).
    pub function_name: String,
    /// The request's `x-fc-qualifier`, else `function.qualifier`.
    pub qualifier: String,
    /// Runs no earlier than this (ms; `X-Fc-Async-Delay`); `None` when not delayed.
    pub not_before: Option<u64>,
    /// The handoff (docs/reference.md §10): stored RUNNING, its first attempt started at this
    /// time (ms) by the instance that stores it, never QUEUED.
    pub claimed_at: Option<u64>,
}

/// The function's answer kept with an event (`async.max_result`), summarized in its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultInfo {
    pub status_code: u16,
    /// The body was longer than `async.max_result`: only its start is kept.
    pub truncated: bool,
    /// Bytes kept.
    pub bytes: u64,
}

/// The function's answer as stored: `GET /async-events/{id}/result` gives it back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredAnswer {
    pub status: u16,
    /// End-to-end header fields of the answer, in order (framing fields are not kept).
    pub headers: Vec<(String, Vec<u8>)>,
    /// At most `async.max_result` bytes.
    pub body: Vec<u8>,
    pub truncated: bool,
}

/// Where a destination delivery stands (docs/reference.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// An event's destination delivery, as its JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
}

/// An event as the operator sees it (everything but the stored request).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
    pub function_name: String,
    pub qualifier: String,
    pub not_before: Option<u64>,
    /// The stored answer's summary, when one is stored.
    pub result: Option<ResultInfo>,
    pub destination: Option<Destination>,
}

/// What [`Store::claim_next`] hands a worker: the event (now RUNNING) and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub event: Event,
    pub request: StoredRequest,
    /// Failures of this event so far that used a retry (`attempts` also counts the starts cut
    /// short by something else: docs/reference.md §10).
    pub failures: u32,
    /// The store's token of this attempt (Redis: the stream entry that delivered it); a record
    /// of the attempt applies only while the token is still the event's. Empty on SQLite,
    /// where one process holds every attempt.
    pub lease: String,
}

impl Claimed {
    /// The first attempt of a handoff (`e.claimed_at` set), as the store holds it once `e` is
    /// stored: RUNNING, started at `claimed_at`, one attempt, no failure yet.
    pub fn of_handoff(e: &NewEvent, lease: String) -> Claimed {
        Claimed {
            event: Event {
                request_id: e.request_id.clone(),
                status: Status::Running,
                submit_time: e.submit_time,
                start_time: Some(e.claimed_at.unwrap_or(e.submit_time)),
                attempts: 1,
                next_attempt_at: e.submit_time,
                function_name: e.function_name.clone(),
                qualifier: e.qualifier.clone(),
                ..Event::default()
            },
            request: e.request.clone(),
            failures: 0,
            lease,
        }
    }
}

/// The result of a successful submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Stored durably; it will run.
    Created,
    /// An event with this request id was already stored: nothing new was stored, nothing
    /// runs twice. Carries the stored event as it is now.
    AlreadyExists(Box<Event>),
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
    /// The function's answer to keep (`async.max_result`), when it gave one.
    pub answer: Option<StoredAnswer>,
}

/// How a failed attempt goes back to the queue (a backend's `retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry<'a> {
    /// Due time, ms since the epoch.
    pub at: u64,
    pub status_code: Option<u16>,
    pub error_type: Option<&'a str>,
    pub error_message: Option<&'a str>,
    /// The event's own failure: it uses one of its retries (docs/reference.md §10).
    pub charged: bool,
}

/// The answer to a terminate ([`Store::abort_queued`], [`Store::mark_aborted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortResult {
    NotFound,
    /// Already FINISHED, FAILED or ABORTED (docs/reference.md §11: 409 `EventAlreadyEnded`).
    AlreadyEnded(Event),
    /// RUNNING: `abort_queued` leaves it alone; the caller kills the attempt first, then calls
    /// [`Store::mark_aborted`].
    Running(Event),
    /// Now ABORTED.
    Aborted(Event),
}

/// What [`Store::list`] orders by (`orderBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderBy {
    #[default]
    SubmitTime,
    StartTime,
    EndTime,
}

impl OrderBy {
    pub fn parse(s: &str) -> Option<OrderBy> {
        match s {
            "submitTime" => Some(OrderBy::SubmitTime),
            "startTime" => Some(OrderBy::StartTime),
            "endTime" => Some(OrderBy::EndTime),
            _ => None,
        }
    }
}

/// Ordering of [`Store::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    /// Newest first (the default, docs/reference.md §10).
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
    /// Request ids that start with this.
    pub request_id_prefix: Option<String>,
    pub function_name: Option<String>,
    pub qualifier: Option<String>,
    /// `Async` matches every stored event (the only kind stored today); anything else none.
    pub invocation_type: Option<String>,
    /// Start-time window, half-open like `since`/`until`; an event never started is outside.
    pub started_since: Option<u64>,
    pub started_until: Option<u64>,
    /// End-time window, likewise.
    pub ended_since: Option<u64>,
    pub ended_until: Option<u64>,
    pub order_by: OrderBy,
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
            request_id_prefix: None,
            function_name: None,
            qualifier: None,
            invocation_type: None,
            started_since: None,
            started_until: None,
            ended_since: None,
            ended_until: None,
            order_by: OrderBy::SubmitTime,
            order: Order::Desc,
            offset: 0,
            limit: 20,
        }
    }
}

impl ListQuery {
    /// Whether the query uses a filter or ordering of docs/reference.md §10 (beyond those of
    /// section 7).
    pub fn uses_section_12(&self) -> bool {
        self.request_id_prefix.is_some()
            || self.function_name.is_some()
            || self.qualifier.is_some()
            || self.invocation_type.is_some()
            || self.started_since.is_some()
            || self.started_until.is_some()
            || self.ended_since.is_some()
            || self.ended_until.is_some()
            || self.order_by != OrderBy::SubmitTime
    }
}

/// Limits of a store (`[async]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most QUEUED events at once; further submissions get [`StoreError::Full`].
    /// 0 = unlimited, like the other limits of the config.
    pub max_queued: u64,
    /// How long ended events are kept (by end time) before [`Store::purge_expired`] drops them.
    pub retention: Duration,
    /// `async.max_event_age`: a QUEUED event submitted longer ago ends EXPIRED; zero: none.
    pub max_event_age: Duration,
    /// `[async.on_success] url`: FINISHED events get a delivery there.
    pub on_success: Option<String>,
    /// `[async.on_failure] url`: FAILED and EXPIRED events get a delivery there.
    pub on_failure: Option<String>,
    /// `async.destination_retry_for`: how long a delivery is tried before it is `failed`.
    pub destination_retry_for: Duration,
}

impl StoreOptions {
    /// The destination of an event that ends with `status`, if any.
    pub fn destination_for(&self, status: Status) -> Option<&str> {
        match status {
            Status::Finished => self.on_success.as_deref(),
            Status::Failed | Status::Expired => self.on_failure.as_deref(),
            _ => None,
        }
        .filter(|u| !u.is_empty())
    }

    /// The `errorMessage` of an EXPIRED event.
    pub fn expiry_message(&self) -> String {
        format!(
            "not started within async.max_event_age ({}) of its submission",
            humantime::format_duration(self.max_event_age)
        )
    }

    /// The submit time before which a QUEUED event has expired at `now`; `None`: no limit.
    pub fn expiry_cutoff(&self, now: u64) -> Option<u64> {
        let age = u64::try_from(self.max_event_age.as_millis()).unwrap_or(u64::MAX);
        (age > 0).then(|| now.saturating_sub(age))
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_queued: 0,
            retention: Duration::from_secs(72 * 3600),
            max_event_age: Duration::ZERO,
            on_success: None,
            on_failure: None,
            destination_retry_for: Duration::from_secs(24 * 3600),
        }
    }
}

/// A destination delivery that is due: the event, its payload and its stored answer's body
/// (the JSON of docs/reference.md §10 is built from them), and until when it is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event: Event,
    pub request_body: Vec<u8>,
    pub response_body: Option<Vec<u8>>,
    /// Give up (status `failed`) once a failed try ends after this (ms).
    pub until: u64,
}

/// What became of one try of a [`Delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// A 2xx: done.
    Yes,
    /// Try again at this time (ms).
    RetryAt(u64),
    /// Out of time: `destination.status` becomes `failed`.
    GiveUp,
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
// JSON (docs/reference.md §10)

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
    function_name: &'a str,
    qualifier: &'a str,
    not_before: Option<Rfc3339>,
    result: Option<ResultInfo>,
    destination: Option<&'a Destination>,
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
            function_name: &self.function_name,
            qualifier: &self.qualifier,
            not_before: self.not_before.map(Rfc3339),
            result: self.result,
            destination: self.destination.as_ref(),
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

/// Whether `id` matches `[A-Za-z0-9._:-]{1,128}` (docs/reference.md §4).
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
