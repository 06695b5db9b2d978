//! One client connection on an event loop: requests read one after the other (keep-alive,
//! pipelining in order), each request's body buffered before it may take a concurrency slot,
//! fc-init's own answers, asynchronous submissions and FC's lifecycle calls. The exchange with
//! the function itself is [`super::exchange`]'s.
//!
//! Phases and their deadlines (the slow-client defences; nginx's `client_header_timeout`,
//! `client_body_timeout` and request buffering are the anchors, each bounded as a whole so
//! that trickling bytes cannot stretch it):
//! - [`Phase::Idle`]: between requests, `idle_timeout` (closed without a word); a new
//!   connection's first request has `header_timeout` from accept instead, so a connection that
//!   sends nothing cannot hold a `max_connections` slot for long.
//! - [`Phase::Head`]: `header_timeout` for the whole head (408, then close).
//! - [`Phase::Body`]: the body is read into a buffer, up to `server.body_buffer` (the whole of
//!   an asynchronous submission, up to `async.max_payload`), bounded as a whole by
//!   `server.body_timeout` (408, then close) — before the request takes a slot, so a slow
//!   sender holds a connection, never a slot. `Expect: 100-continue` is answered here.
//! - [`Phase::Deliver`]: an answer is in the output buffer; when it is out, the exchange ends
//!   (metrics, End line) and the next request is read.
//! - [`Phase::Linger`]: after an answer that closes the connection while the client may still
//!   be sending, the write side is shut and input is read and dropped for a moment, so that the
//!   client reads the answer instead of a reset (nginx's lingering close).
//!
//! `CONNECT` is refused with `405 Method Not Allowed` (`InvalidArgument`), then the connection
//! closes: fc-init is not a forward proxy, and the method is one it knows and will not serve
//! on this resource, which is 405's meaning; 501 would say it does not know the method. An
//! absolute-form target is accepted and sent on in origin-form ([`crate::http::request`]).
//!
//! After a malformed request, an error that left the request body unread, or a failure once
//! the answer had started, the connection is closed: where the next request would begin is
//! unknown.

use std::io;
use std::time::{Duration, Instant};

use crate::config::Platform;
use crate::events::store::{StoreError, Submitted};
use crate::http::codec::Decoder;
use crate::http::fc_error::{ErrorType, Invocation};
use crate::http::{new_request_id, parse_request_head, valid_request_id, BodyFraming, HttpError};
use crate::metrics::Outcome;
use crate::supervisor::{Event, LifecycleAnswer, LifecycleCall, Reply};

use super::client::{
    self, cut_short, enter_deliver, flush, own_answer, read_client, Client, Flow, Gone, Next, Phase,
};
use super::cx::{Cx, Mail};
use super::errors::Failure;
use super::exchange::{self, Exchange, Purpose};
use super::finish::{self, end_exchange};
use super::forward;
use super::h2c::Sniff;
use super::kind::{kind, Kind};
use super::shared::BUF;

/// Input read at a time while a head is incomplete (nginx reads a head in 1 KiB steps).
const HEAD_READ: usize = 8 * 1024;

/// How long a closing connection's input is read and dropped at most.
const LINGER: Duration = Duration::from_secs(2);

/// Drives `c` as far as it can go now.
pub(super) fn drive(cx: &mut Cx, c: &mut Client) -> Next {
    loop {
        match step(cx, c) {
            Ok(true) => continue,
            Ok(false) => return Next::Keep,
            Err(Gone) => {
                close(cx, c);
                return Next::Close;
            }
        }
    }
}

fn step(cx: &mut Cx, c: &mut Client) -> Flow {
    if c.h2c.is_some() {
        return super::h2c::step(cx, c);
    }
    let mut progress = flush(c)?;
    progress |= match c.phase {
        Phase::Idle | Phase::Head => read_head(cx, c)?,
        Phase::Body => buffer_body(cx, c)?,
        Phase::Admit => super::admission::admit(cx, c)?,
        Phase::Storing | Phase::Lifecycle => false,
        Phase::Forward => forward::forward(cx, c)?,
        Phase::Upgraded => forward::relay_upgraded(cx, c)?,
        Phase::Deliver => deliver(cx, c)?,
        Phase::Linger => linger(cx, c)?,
    };
    Ok(progress)
}

/// Waits for the next request and parses its head.
fn read_head(cx: &mut Cx, c: &mut Client) -> Flow {
    if c.unsent() > 0 {
        // The previous answer is still going out: pipelined requests wait, in order.
        return Ok(false);
    }
    let p = cx.p;
    let mut progress = false;
    loop {
        if c.pending().is_empty() {
            progress |= read_client(cx, c, head_cap(cx, c))?;
            if c.pending().is_empty() {
                if c.eof {
                    return Err(Gone);
                }
                // Idle: no buffer kept.
                if c.phase == Phase::Idle && c.inbuf.capacity() > 0 {
                    c.inbuf = Vec::new();
                    c.ipos = 0;
                }
                return Ok(progress);
            }
        }
        if c.phase == Phase::Idle {
            c.phase = Phase::Head;
            c.scanned = 0;
            if c.served > 0 {
                client::set_deadline(cx, c, cx.now + p.cfg.server.header_timeout);
            }
        }
        if c.served == 0 && p.cfg.server.http2 {
            // The HTTP/2 preface opens an h2c connection (docs/reference.md §14); a prefix of
            // it waits for more bytes.
            match super::h2c::sniff(c.pending()) {
                Sniff::H2c => return super::h2c::begin(cx, c),
                Sniff::More if !c.eof => {
                    if !c.rd {
                        return Ok(progress);
                    }
                    progress |= read_client(cx, c, head_cap(cx, c))?;
                    continue;
                }
                _ => {}
            }
        }
        let parsed =
            parse_request_head(&c.inbuf[c.ipos..], c.scanned, &p.limits, &mut cx.bufs.head);
        match parsed {
            Ok(Some(n)) => {
                return start_request(cx, c, n);
            }
            Ok(None) if c.eof => return bad_request(cx, c, HttpError::UnexpectedEof),
            Ok(None) => {
                c.scanned = c.pending().len();
                if !c.rd {
                    return Ok(progress);
                }
                progress |= read_client(cx, c, head_cap(cx, c))?;
            }
            Err(e) => return bad_request(cx, c, e),
        }
    }
}

/// How much unread input a connection may hold while its head is read: what is there plus
/// [`HEAD_READ`], so that the start of a body read along with its head stays small. The body
/// itself is read only within its share of `server.body_buffer_total`; with 64 KiB here,
/// 1,000 connections sending bodies would hold 64 MiB outside it.
fn head_cap(cx: &Cx, c: &Client) -> usize {
    (c.pending().len() + HEAD_READ).min(cx.p.limits.max_header_bytes.max(BUF))
}

/// A malformed, oversized or too slow head: fc-init's answer, then the connection closes
/// (where the next request would begin is unknown). No FC lines: it never became a request.
fn bad_request(cx: &mut Cx, c: &mut Client, e: HttpError) -> Flow {
    let failure = Failure::BadRequest(e);
    log::debug!("closing a client connection: {failure}");
    let Some(a) = failure.answer(Invocation::Http) else {
        return Err(Gone);
    };
    own_answer(cx, c, a.status, a.error, &a.message, true);
    Ok(true)
}

/// A complete head of `head_len` bytes is in `cx.bufs.head`: the request begins.
fn start_request(cx: &mut Cx, c: &mut Client, head_len: usize) -> Flow {
    let p = cx.p;
    c.ipos += head_len;
    c.scanned = 0;
    c.served += 1;
    let mut ex = cx.exchange();
    ex.reset(cx.now);
    std::mem::swap(&mut ex.head, &mut cx.bufs.head);
    match super::submit::caller_request_id(&ex.head) {
        // Valid ids are ASCII.
        Some(id) if valid_request_id(id) => ex
            .request_id
            .push_str(std::str::from_utf8(id).unwrap_or_default()),
        _ => ex.request_id.push_str(&new_request_id()),
    }
    if !ex.head.has_host() {
        // HTTP/1.0 without Host: the function gets HTTP/1.1, which needs one.
        let addr = c.stream.local_addr().or(p.cfg.server.listen);
        if let Some(addr) = addr {
            use std::fmt::Write as _;
            let _ = write!(ex.host, "{addr}");
        }
    }
    let head = &ex.head;
    if head.method() == "CONNECT" {
        c.ex = Some(ex);
        let message = "CONNECT is not supported: fc-init is not a forward proxy";
        own_answer(cx, c, 405, ErrorType::InvalidArgument, message, true);
        return Ok(true);
    }
    let control = head.header("x-fc-control-path");
    let k = kind(p.cfg.server.platform, head.method(), head.path(), control);
    let (purpose, max) = match k {
        Kind::Lifecycle(call) => (Purpose::Lifecycle(call), p.cfg.server.body_buffer),
        // Under FC's own platform with fc-init's queue off, FC owns asynchronous invocations:
        // the request is forwarded as it came (docs/reference.md §8).
        Kind::Invoke(_)
            if super::submit::is_async(head)
                && (p.asynchronous.is_some() || p.cfg.server.platform != Platform::Fc) =>
        {
            (Purpose::Submit, p.cfg.async_.max_payload)
        }
        Kind::Invoke(inv) => (Purpose::Invoke(inv), p.cfg.server.max_body),
    };
    ex.purpose = purpose;
    let framing = ex.head.framing;
    c.ex = Some(ex);
    if let Purpose::Invoke(_) = purpose {
        finish::log_start(cx, c);
    }
    if let Purpose::Submit = purpose {
        let head = c.ex.as_ref().map(|ex| &ex.head);
        let refused = submission_refused(cx, framing).or_else(|| super::submit::refused(head?));
        if let Some((status, error, message)) = refused {
            refuse(cx, c, status, error, &message);
            return Ok(true);
        }
    }
    let ex = c.ex.as_mut().expect("set above");
    ex.decoder = match Decoder::new(framing, max) {
        Ok(d) => d,
        Err(_) => return finish::fail(cx, c, Failure::BodyTooLarge),
    };
    let total = p.cfg.server.body_buffer_total;
    ex.buffer_limit = match purpose {
        Purpose::Invoke(_) => p.cfg.server.body_buffer.min(max).min(total),
        _ => max.min(total),
    } as usize;
    ex.upgrade = matches!(purpose, Purpose::Invoke(_)) && exchange::asks_upgrade(&ex.head);
    if ex.head.expect_continue && !ex.decoder.is_done() && c.pending().is_empty() {
        c.out.extend_from_slice(crate::http::CONTINUE_100);
    }
    c.phase = Phase::Body;
    client::set_deadline(cx, c, cx.now + p.cfg.server.body_timeout);
    Ok(true)
}

/// Why an asynchronous submission is refused before its body is read, if it is.
fn submission_refused(cx: &Cx, framing: BodyFraming) -> Option<(u16, ErrorType, String)> {
    let p = cx.p;
    if p.asynchronous.is_none() {
        let m = "asynchronous invocations are disabled (async.enabled = false)";
        return Some((400, ErrorType::InvalidArgument, m.into()));
    }
    if p.stopping() {
        let m = "fc-init is shutting down";
        return Some((503, ErrorType::InstanceStopping, m.into()));
    }
    let max = p.cfg.async_.max_payload;
    match framing {
        BodyFraming::Length(n) if n > max => {
            Some((413, ErrorType::InvalidArgument, too_large(max)))
        }
        // Read whole before it is stored: it could never fit in the shared budget.
        BodyFraming::Length(n) if n > p.cfg.server.body_buffer_total => {
            let total = p.cfg.server.body_buffer_total;
            let m = format!("the payload exceeds server.body_buffer_total ({total} bytes)");
            Some((413, ErrorType::InvalidArgument, m))
        }
        _ => None,
    }
}

fn too_large(max: u64) -> String {
    format!("the payload exceeds async.max_payload ({max} bytes)")
}

/// Refuses a request that is not an invocation (a submission, a lifecycle call) with one of
/// fc-init's answers, counted in the metrics, and closes the connection after it.
fn refuse(cx: &mut Cx, c: &mut Client, status: u16, error: ErrorType, message: &str) {
    let Some(ex) = c.ex.as_mut() else {
        return;
    };
    if ex.purpose == Purpose::Submit {
        cx.p.metrics
            .record(Outcome::Error(error), ex.started.elapsed());
    }
    own_answer(cx, c, status, error, message, true);
}

/// Reads the request body into the exchange's buffer, then lets the request go on. The body
/// and the unread input stay within the body's share of `server.body_buffer_total`
/// ([`reserve`]), give or take a partial chunk-size line.
fn buffer_body(cx: &mut Cx, c: &mut Client) -> Flow {
    let mut progress = false;
    loop {
        let ex = c.ex.as_mut().expect("a request is in its body phase");
        let covered = ex.buffer_limit.min(reserved(ex));
        while !ex.decoder.is_done() && ex.body.len() < covered {
            let room = covered.saturating_sub(ex.body.len());
            let input = &c.inbuf[c.ipos..];
            let step = match ex.decoder.step(input, room) {
                Ok(s) => s,
                Err(e) => {
                    return body_refused(cx, c, e);
                }
            };
            ex.body.extend_from_slice(&input[step.data.clone()]);
            c.ipos += step.consumed;
            if step.is_stalled() {
                break;
            }
        }
        let full = ex.body.len() >= ex.buffer_limit;
        if ex.decoder.is_done() || (full && matches!(ex.purpose, Purpose::Invoke(_))) {
            proceed(cx, c);
            return Ok(true);
        }
        if full {
            return body_refused(cx, c, HttpError::BodyTooLarge);
        }
        if ex.body.len() >= covered {
            // No room left in its share: more of it, before another byte is read.
            match reserve(cx, c) {
                Reserve::Covered => continue,
                Reserve::Wait => return Ok(progress),
                Reserve::GoOn => {
                    proceed(cx, c);
                    return Ok(true);
                }
            }
        }
        if c.eof {
            let e = cut_short(&mut ex.decoder);
            return body_refused(cx, c, e);
        }
        if !c.rd {
            return Ok(progress);
        }
        // The decoder needs more input: read what the share covers (a few bytes more when
        // the input holds only a partial chunk-size line).
        let room = covered - ex.body.len();
        let pending = c.pending().len();
        let cap = room.max(pending + 16).min(BUF.max(pending + 16));
        let got = read_client(cx, c, cap)?;
        if !got {
            return Ok(progress);
        }
        progress = true;
    }
}

/// The bytes of `server.body_buffer_total` the exchange's body holds.
fn reserved(ex: &Exchange) -> usize {
    ex.reserved.as_ref().map_or(0, |r| r.bytes()) as usize
}

/// Where a body stands with its share of the budget.
enum Reserve {
    /// There is room to read on.
    Covered,
    /// It does not fit: nothing more is read until bytes come back (the connection is woken).
    Wait,
    /// A chunked invocation that could not grow its share: it goes on with what it has
    /// buffered and streams the rest from a slot, so partly buffered bodies can never hold
    /// the whole budget waiting for each other.
    GoOn,
}

/// Grows the body's share of the budget: to the whole remaining body (up to what is
/// buffered) at once for a body of known length, a step of [`BUF`] at a time for a chunked
/// one. When that does not fit, the connection queues to be woken.
fn reserve(cx: &mut Cx, c: &mut Client) -> Reserve {
    let p = cx.p;
    let ex = c.ex.as_mut().expect("a request is in its body phase");
    let have = reserved(ex) as u64;
    let body = ex.body.len() as u64;
    let limit = ex.buffer_limit as u64;
    let (target, chunked) = match ex.decoder.raw_left() {
        Some(left) => (limit.min(body + left), false),
        None => (limit.min(body + BUF as u64), true),
    };
    if p.budget.grow(&mut ex.reserved, target) {
        // Exactly what the share covers: growing by doubling would leave freed copies behind.
        ex.body.reserve_exact((target - body) as usize);
        return Reserve::Covered;
    }
    if chunked && have > 0 && matches!(ex.purpose, Purpose::Invoke(_)) {
        return Reserve::GoOn;
    }
    if !ex.budget_queued {
        ex.budget_queued = true;
        let (handle, t) = (cx.handle.clone(), c.token);
        p.budget.wait(
            target - have,
            Box::new(move || handle.push(Mail::Budget(t))),
        );
    }
    Reserve::Wait
}

/// The body could not be read (malformed, too large, too slow, cut short): fc-init's answer,
/// then close.
fn body_refused(cx: &mut Cx, c: &mut Client, e: HttpError) -> Flow {
    let Some(ex) = c.ex.as_ref() else {
        return Err(Gone);
    };
    match ex.purpose {
        Purpose::Invoke(_) => finish::fail(cx, c, Failure::RequestBody(e)),
        _ => {
            let message = match e {
                HttpError::BodyTooLarge if ex.purpose == Purpose::Submit => {
                    too_large(cx.p.cfg.async_.max_payload)
                }
                HttpError::Timeout => "timed out reading the request body".into(),
                ref e => e.to_string(),
            };
            let status = e.status().unwrap_or(400);
            refuse(cx, c, status, ErrorType::InvalidArgument, &message);
            Ok(true)
        }
    }
}

/// The body is buffered (whole, or as much as `server.body_buffer` takes).
fn proceed(cx: &mut Cx, c: &mut Client) {
    let p = cx.p;
    let ex = c.ex.as_mut().expect("a request is in its body phase");
    ex.body_complete = ex.decoder.is_done();
    // The share keeps what the body took (a chunked step may have been larger).
    if let Some(r) = ex.reserved.as_mut() {
        r.shrink(ex.body.len() as u64);
    }
    match ex.purpose {
        Purpose::Invoke(_) => super::admission::enter_admit(cx, c),
        Purpose::Submit => {
            let Some(service) = p.asynchronous.as_ref() else {
                return;
            };
            if p.stopping() {
                let m = "fc-init is shutting down";
                return refuse(cx, c, 503, ErrorType::InstanceStopping, m);
            }
            let body = std::mem::take(&mut ex.body);
            let request = super::submit::stored_request(&ex.head, body);
            let (handle, t) = (cx.handle.clone(), c.token);
            // The completion runs on the committer thread, maybe before this returns; the
            // result is read by this loop only, after this.
            service.submit_async(
                &ex.request_id,
                request,
                Box::new(move |result| handle.push(Mail::Stored(t, result))),
            );
            c.phase = Phase::Storing;
            client::set_deadline(cx, c, far(cx.now));
        }
        Purpose::Lifecycle(call) => {
            let (handle, t) = (cx.handle.clone(), c.token);
            p.events.send(Event::Lifecycle {
                call,
                request_id: ex.request_id.clone(),
                reply: Reply::new(move |answer| handle.push(Mail::Lifecycle(t, answer))),
            });
            c.phase = Phase::Lifecycle;
            client::set_deadline(cx, c, far(cx.now));
        }
    }
}

/// No deadline of its own: the store and the supervisor always answer.
fn far(now: Instant) -> Instant {
    now + Duration::from_secs(24 * 3600)
}

/// The store's result for this connection's submission.
pub(super) fn stored(cx: &mut Cx, c: &mut Client, result: Result<Submitted, StoreError>) {
    if c.phase != Phase::Storing {
        return;
    }
    let Some(ex) = c.ex.as_ref() else {
        return;
    };
    let keep = ex.head.keep_alive && !cx.p.stopping();
    let keep = super::submit::answer(
        cx.p,
        &mut cx.bufs.answer,
        &ex.request_id,
        result,
        keep,
        ex.started,
    );
    c.out.extend_from_slice(&cx.bufs.answer);
    c.close_after |= !keep;
    enter_deliver(cx, c, cx.now + cx.p.cfg.server.idle_timeout);
}

/// The supervisor's answer to this connection's lifecycle call (docs/reference.md §4, §6): 200, or
/// fc-init's own error answer, with the status of an HTTP invocation.
pub(super) fn lifecycle_answered(cx: &mut Cx, c: &mut Client, answer: LifecycleAnswer) {
    if c.phase != Phase::Lifecycle {
        return;
    }
    let Some(ex) = c.ex.as_mut() else {
        return;
    };
    let keep = ex.head.keep_alive && !cx.p.stopping();
    let call = match ex.purpose {
        Purpose::Lifecycle(call) => call,
        _ => return,
    };
    let Some((error, message)) = super::errors::lifecycle_failure(answer) else {
        write_done(&mut c.out, &ex.request_id, keep);
        c.close_after |= !keep;
        return enter_deliver(cx, c, cx.now + cx.p.cfg.server.idle_timeout);
    };
    let what = match call {
        LifecycleCall::Initialize => "initializer",
        LifecycleCall::PreStop => "PreStop",
    };
    log::debug!(
        "lifecycle call {}: the {what} failed: {message}",
        ex.request_id
    );
    let status = error.status(Invocation::Http);
    own_answer(cx, c, status, error, &message, !keep);
}

/// `200 OK` with `x-fc-request-id` and no body.
fn write_done(out: &mut Vec<u8>, request_id: &str, keep: bool) {
    use crate::http::write::push_field;
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    push_field(out, "x-fc-request-id", request_id);
    push_field(out, "Content-Length", "0");
    if !keep {
        push_field(out, "Connection", "close");
    }
    out.extend_from_slice(b"\r\n");
}

/// Once the answer is out: the exchange ends, and the connection reads the next request (or
/// closes).
fn deliver(cx: &mut Cx, c: &mut Client) -> Flow {
    if c.unsent() > 0 {
        return Ok(false);
    }
    end_exchange(cx, c);
    if c.close_after {
        if c.eof {
            return Err(Gone);
        }
        // The client may still be sending (a body nobody read): let it see the answer. What
        // it sends now is dropped unread, so the connection keeps no buffer while it lingers.
        let _ = c.stream.shutdown_write();
        c.inbuf = Vec::new();
        c.ipos = 0;
        c.out = Vec::new();
        c.opos = 0;
        c.phase = Phase::Linger;
        client::set_deadline(cx, c, cx.now + LINGER.min(cx.p.cfg.server.idle_timeout));
        return Ok(true);
    }
    c.phase = Phase::Idle;
    // An idle connection keeps no large buffer from a large answer.
    if c.out.capacity() > 4096 {
        c.out = Vec::new();
    }
    client::set_deadline(cx, c, cx.now + cx.p.cfg.server.idle_timeout);
    Ok(true)
}

/// Reads and drops input until the client closes (or the deadline).
fn linger(cx: &mut Cx, c: &mut Client) -> Flow {
    let mut progress = false;
    while c.rd && !c.eof {
        match crate::sys::retry(|| c.stream.read(&mut cx.bufs.read)) {
            Ok(0) => c.eof = true,
            Ok(_) => progress = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.rd = false,
            Err(_) => return Err(Gone),
        }
    }
    if c.eof {
        return Err(Gone);
    }
    Ok(progress)
}

/// The connection is closing: whatever it holds is ended.
fn close(cx: &mut Cx, c: &mut Client) {
    end_exchange(cx, c);
}

/// A deadline of `c` passed.
pub(super) fn on_deadline(cx: &mut Cx, c: &mut Client) -> Next {
    if c.h2c.is_some() {
        return super::h2c::on_deadline(cx, c);
    }
    let flow = match c.phase {
        // An idle connection is closed without a word.
        Phase::Idle | Phase::Linger => Err(Gone),
        Phase::Head => bad_request(cx, c, HttpError::Timeout),
        Phase::Body => body_refused(cx, c, HttpError::Timeout),
        Phase::Admit | Phase::Forward | Phase::Upgraded => forward::on_deadline(cx, c),
        Phase::Deliver => {
            // function.timeout bounds the delivery of the function's answer too.
            if let Some(ex) = c.ex.as_mut() {
                if let Some(Outcome::Success | Outcome::FunctionError) = ex.outcome {
                    ex.outcome = Some(Outcome::Error(ErrorType::FunctionTimeout));
                }
            }
            Err(Gone)
        }
        // Not a deadline of their own: looked at again later.
        Phase::Storing | Phase::Lifecycle => {
            client::set_deadline(cx, c, far(cx.now));
            Ok(false)
        }
    };
    match flow {
        Ok(_) => drive(cx, c),
        Err(Gone) => {
            close(cx, c);
            Next::Close
        }
    }
}
