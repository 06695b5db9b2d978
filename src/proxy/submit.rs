//! Asynchronous submissions (`X-Fc-Invocation-Type: Async`, docs/reference.md §10): the request is
//! read whole (at most `async.max_payload`), stored durably, and only then answered
//! `202 Accepted`. Nothing reaches the function here; the async workers run the stored event
//! later through the normal path.
//!
//! The event loops read the body ([`super::conn`]), hand the event to the store without
//! blocking, and answer with [`answer`] once the store's committer hands the result back.
//!
//! Failure modes: a payload over the limit is 413 before anything is stored; a full store is
//! `TooManyRequests`; a store that cannot take the event now (a full disk, an I/O error,
//! Redis unreachable) is 503 `AsyncStoreUnavailable`, any other store failure a 500 that says
//! so — never a 202 for an event that was not stored.

use std::time::Instant;

use crate::events::store::{StoreError, StoredRequest, Submitted};
use crate::http::fc_error::{write_error_response, ErrorType};
use crate::http::write::{push_field, push_u64};
use crate::http::RequestHead;
use crate::metrics::Outcome;

use super::client::{set_deadline, Io, Phase, Step};
use super::cx::Cx;
use super::exchange::Exchange;
use super::shared::Proxy;

/// Whether `head` asks for an asynchronous invocation.
pub(super) fn is_async(head: &RequestHead) -> bool {
    head.header("x-fc-invocation-type")
        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"async"))
}

/// The id the caller gives a request: `X-Fc-Async-Task-Id` on a submission, else
/// `x-fc-request-id` (docs/reference.md §10).
pub(super) fn caller_request_id(head: &RequestHead) -> Option<&[u8]> {
    crate::events::submission::caller_request_id(head, is_async(head))
}

/// Why a submission's own headers (`X-Fc-Async-Delay`, `X-Fc-Async-Task-Id`) are refused.
pub(super) fn refused(head: &RequestHead) -> Option<(u16, ErrorType, String)> {
    crate::events::submission::refused(head).map(|m| (400, ErrorType::InvalidArgument, m))
}

/// Fields not stored with an event: framing (the stored body is whole), the invocation type
/// (a replay is not asynchronous again) and the request id (the replay carries the event's).
const NOT_STORED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "expect",
    "x-fc-invocation-type",
    "x-fc-request-id",
];

/// The request to store for `head` and its whole `body`: its headers minus hop-by-hop ones
/// and [`NOT_STORED`].
pub(super) fn stored_request(head: &RequestHead, body: Vec<u8>) -> StoredRequest {
    let headers = head
        .headers
        .iter()
        .filter(|f| !f.hop_by_hop && !NOT_STORED.iter().any(|n| f.name.eq_ignore_ascii_case(n)))
        .map(|f| (f.name.to_owned(), f.value.to_vec()))
        .collect();
    StoredRequest {
        method: head.method().to_owned(),
        target: head.target().to_owned(),
        headers,
        body,
    }
}

/// Puts the answer to a submission's store `result` in `out` and records its metrics (from
/// `started`); returns whether the connection stays open (`keep`, unless the store failed).
pub(super) fn answer(
    p: &Proxy,
    out: &mut Vec<u8>,
    request_id: &str,
    result: Result<Submitted, StoreError>,
    keep: bool,
    started: Instant,
) -> bool {
    match result {
        Ok(Submitted::Created | Submitted::AlreadyExists(_)) => {
            p.metrics.record(Outcome::Success, started.elapsed());
            accepted(out, request_id, keep, b"");
            keep
        }
        Err(StoreError::Full { max_queued }) => {
            let message =
                format!("{max_queued} asynchronous events are queued already (async.max_queued)");
            p.metrics.record(
                Outcome::Error(ErrorType::TooManyRequests),
                started.elapsed(),
            );
            write_error_response(
                out,
                429,
                ErrorType::TooManyRequests,
                request_id,
                &message,
                !keep,
            );
            keep
        }
        Err(e) if e.is_unavailable() => {
            // Nothing was acknowledged; the client may submit again (idempotently) later. The
            // store's one line a second: an outage fails every submission.
            if crate::events::STORE_LOG.ready() {
                log::error!("storing asynchronous event {request_id}: {e}");
            }
            let error = ErrorType::AsyncStoreUnavailable;
            let message = format!("the event was not stored: {e}");
            write_error_response(out, 503, error, request_id, &message, true);
            p.metrics.record(Outcome::Error(error), started.elapsed());
            false
        }
        Err(e) => {
            log::error!("storing asynchronous event {request_id}: {e}");
            internal_error(out, request_id, &format!("the event was not stored: {e}"));
            p.metrics.record(Outcome::InternalError, started.elapsed());
            false
        }
    }
}

/// Queues the answer to the store's `result` for `ex`, a submission (or a handoff), to be
/// delivered.
pub(super) fn deliver_answer(
    cx: &mut Cx,
    io: &mut Io,
    ex: &Exchange,
    result: Result<Submitted, StoreError>,
) -> Step {
    let keep = ex.head.keep_alive && !cx.p.stopping();
    let keep = answer(
        cx.p,
        &mut cx.bufs.answer,
        &ex.request_id,
        result,
        keep,
        ex.started,
    );
    io.out.extend_from_slice(&cx.bufs.answer);
    io.close_after |= !keep;
    set_deadline(cx, io, cx.now + cx.p.cfg.server.idle_timeout);
    Step::Enter(Phase::Deliver)
}

/// `202 Accepted` with `{"requestId":"<id>"}`, and the header lines `extra` (each ending in
/// CRLF; the handoff's `Preference-Applied`).
pub(super) fn accepted(out: &mut Vec<u8>, request_id: &str, keep: bool, extra: &[u8]) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 202 Accepted\r\n");
    out.extend_from_slice(extra);
    push_field(out, "x-fc-request-id", request_id);
    push_field(out, "Content-Type", "application/json");
    out.extend_from_slice(b"Content-Length: ");
    // `{"requestId":""}` is 16 bytes; a valid id needs no escaping.
    push_u64(out, 16 + request_id.len() as u64);
    out.extend_from_slice(b"\r\n");
    if !keep {
        push_field(out, "Connection", "close");
    }
    // Written as bytes: a valid request id ([A-Za-z0-9._:-]) is its own JSON string.
    out.extend_from_slice(b"\r\n{\"requestId\":\"");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// `500` with `X-Fc-Error-Type: InternalError`: the store failed, nothing was accepted.
fn internal_error(out: &mut Vec<u8>, request_id: &str, message: &str) {
    let body = serde_json::json!({
        "errorType": "InternalError",
        "errorMessage": message,
        "requestId": request_id,
    })
    .to_string();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 500 Internal Server Error\r\n");
    push_field(out, "X-Fc-Error-Type", "InternalError");
    push_field(out, "x-fc-request-id", request_id);
    push_field(out, "Content-Type", "application/json");
    push_field(out, "Connection", "close");
    out.extend_from_slice(b"Content-Length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
}
