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
//!
//! Each step of a phase returns what happened ([`Step`]); [`drive`] alone acts on it
//! ([`act`]): it enters the next phase, fails or completes the exchange ([`finish`]), or
//! closes the connection. No step changes its caller's phase.

use std::time::{Duration, Instant};

use crate::config::Platform;
use crate::events::handoff::Handed;
use crate::events::store::{StoreError, Submitted};
use crate::http::codec::Decoder;
use crate::http::fc_error::{ErrorType, Invocation};
use crate::http::{new_request_id, parse_request_head, valid_request_id, BodyFraming, HttpError};
use crate::metrics::Outcome;
use crate::supervisor::{Event, LifecycleAnswer, LifecycleCall, Reply};

use super::client::{
    self, cut_short, flush, own_answer, read_client, Buffering, Client, Gone, Io, Next, Phase, Step,
};
use super::cx::{Cx, Mail};
use super::errors::Failure;
use super::exchange::{self, Admission, Exchange, Purpose};
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
        let step = step(cx, c);
        if let Some(next) = act(cx, c, step) {
            return next;
        }
    }
}

/// Acts on what a step did: the one place a connection's phase moves on. `None`: drive on.
fn act(cx: &mut Cx, c: &mut Client, step: Step) -> Option<Next> {
    match step {
        Step::Progress => None,
        Step::Wait => Some(Next::Keep),
        Step::Enter(phase) => {
            c.phase = phase;
            None
        }
        Step::Delivered => {
            finish::complete(cx, c);
            None
        }
        Step::Upgrade => {
            c.phase = match std::mem::replace(&mut c.phase, Phase::Deliver) {
                Phase::Forward(fw) => forward::upgraded(fw),
                other => other,
            };
            None
        }
        Step::Readmit(failure) => {
            c.phase = match std::mem::replace(&mut c.phase, Phase::Deliver) {
                Phase::Forward(mut fw) => {
                    if let Some(w) = fw.wire.take() {
                        // Not pooled: the instance it reaches is most likely gone.
                        cx.release_fn(w.f, false);
                    }
                    Phase::Admit(Admission::again(fw, failure))
                }
                other => other,
            };
            None
        }
        Step::Fail(failure) => match finish::fail(cx, c, failure) {
            Ok(()) => None,
            Err(Gone) => {
                close(cx, c);
                Some(Next::Close)
            }
        },
        Step::Close => {
            close(cx, c);
            Some(Next::Close)
        }
    }
}

fn step(cx: &mut Cx, c: &mut Client) -> Step {
    let upgraded = matches!(c.phase, Phase::Upgraded(_));
    // A busy connection keeps its output buffer; an upgraded one (often idle for long) does not.
    let flushed = match flush(&mut c.io, !upgraded) {
        Ok(flushed) => flushed,
        Err(Gone) => {
            // An upgraded connection ends when either side closes: that is no failure.
            if !upgraded {
                client::lost_answer(c.ex.as_deref_mut());
            }
            return Step::Close;
        }
    };
    let step = match &mut c.phase {
        Phase::Idle | Phase::Head => read_head(cx, c),
        Phase::Body(b) => match c.ex.as_deref_mut() {
            Some(ex) => buffer_body(cx, &mut c.io, ex, b),
            None => Step::Close,
        },
        Phase::Admit(adm) => super::admission::admit(cx, &mut c.io, adm),
        Phase::Storing => super::handoff::pump(&c.io, c.ex.as_deref()),
        Phase::Lifecycle => Step::Wait,
        Phase::Forward(fw) => match c.ex.as_deref_mut() {
            Some(ex) => forward::forward(cx, &mut c.io, ex, fw),
            None => Step::Close,
        },
        Phase::Upgraded(up) => forward::relay_upgraded(cx, &mut c.io, up),
        Phase::Deliver => deliver(cx, c),
        Phase::Linger => linger(cx, c),
        Phase::H2c(r) => super::h2c::step(cx, &mut c.io, r),
    };
    match step {
        Step::Wait if flushed => Step::Progress,
        step => step,
    }
}

fn moved(progress: bool) -> Step {
    match progress {
        true => Step::Progress,
        false => Step::Wait,
    }
}

/// Waits for the next request and parses its head.
fn read_head(cx: &mut Cx, c: &mut Client) -> Step {
    if c.io.unsent() > 0 {
        // The previous answer is still going out: pipelined requests wait, in order.
        return Step::Wait;
    }
    let p = cx.p;
    let mut progress = false;
    loop {
        if c.io.pending().is_empty() {
            let cap = head_cap(cx, &c.io);
            match read_client(&mut cx.bufs.read, &mut c.io, cap) {
                Ok(got) => progress |= got,
                Err(Gone) => return Step::Close,
            }
            if c.io.pending().is_empty() {
                if c.io.eof {
                    return Step::Close;
                }
                // Idle: no buffer kept.
                if matches!(c.phase, Phase::Idle) && c.io.inbuf.capacity() > 0 {
                    c.io.inbuf = Vec::new();
                    c.io.ipos = 0;
                }
                return moved(progress);
            }
        }
        if matches!(c.phase, Phase::Idle) {
            c.io.scanned = 0;
            if c.served > 0 {
                client::set_deadline(cx, &mut c.io, cx.now + p.cfg.server.header_timeout);
            }
            return Step::Enter(Phase::Head);
        }
        if c.served == 0 && p.cfg.server.http2 {
            // The HTTP/2 preface opens an h2c connection (docs/reference.md §14); a prefix of
            // it waits for more bytes.
            match super::h2c::sniff(c.io.pending()) {
                Sniff::H2c => return super::h2c::begin(cx, &mut c.io),
                Sniff::More if !c.io.eof => {
                    if let Some(step) = read_more_head(cx, &mut c.io, &mut progress) {
                        return step;
                    }
                    continue;
                }
                _ => {}
            }
        }
        let parsed = parse_request_head(
            &c.io.inbuf[c.io.ipos..],
            c.io.scanned,
            &p.limits,
            &mut cx.bufs.head,
        );
        match parsed {
            Ok(Some(n)) => {
                return start_request(cx, c, n);
            }
            Ok(None) if c.io.eof => return bad_request(cx, c, HttpError::UnexpectedEof),
            Ok(None) => {
                c.io.scanned = c.io.pending().len();
                if let Some(step) = read_more_head(cx, &mut c.io, &mut progress) {
                    return step;
                }
            }
            Err(e) => return bad_request(cx, c, e),
        }
    }
}

/// How much unread input a connection may hold while its head is read: what is there plus
/// [`HEAD_READ`], so that the start of a body read along with its head stays small. The body
/// itself is read only within its share of `server.body_buffer_total`; with 64 KiB here,
/// 1,000 connections sending bodies would hold 64 MiB outside it.
fn head_cap(cx: &Cx, io: &Io) -> usize {
    (io.pending().len() + HEAD_READ).min(cx.p.limits.max_header_bytes.max(BUF))
}

/// Reads more of a head that has not ended, up to [`head_cap`]; `Some` with what the loop
/// returns when there is nothing to read now (the socket is not readable) or the client is gone.
fn read_more_head(cx: &mut Cx, io: &mut Io, progress: &mut bool) -> Option<Step> {
    if !io.rd {
        return Some(moved(*progress));
    }
    let cap = head_cap(cx, io);
    match read_client(&mut cx.bufs.read, io, cap) {
        Ok(got) => *progress |= got,
        Err(Gone) => return Some(Step::Close),
    }
    None
}

/// A malformed, oversized or too slow head: fc-init's answer, then the connection closes
/// (where the next request would begin is unknown). No FC lines: it never became a request.
fn bad_request(cx: &mut Cx, c: &mut Client, e: HttpError) -> Step {
    let failure = Failure::BadRequest(e);
    log::debug!("closing a client connection: {failure}");
    let Some(a) = failure.answer(Invocation::Http) else {
        return Step::Close;
    };
    let id = c.ex.as_ref().map(|ex| ex.request_id.as_str());
    own_answer(cx, &mut c.io, id, (a.status, a.error, &a.message), true)
}

/// A complete head of `head_len` bytes is in `cx.bufs.head`: the request begins.
fn start_request(cx: &mut Cx, c: &mut Client, head_len: usize) -> Step {
    let p = cx.p;
    c.io.ipos += head_len;
    c.io.scanned = 0;
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
        let addr = c.io.stream.local_addr().or(p.cfg.server.listen);
        if let Some(addr) = addr {
            use std::fmt::Write as _;
            let _ = write!(ex.host, "{addr}");
        }
    }
    let ex = c.ex.insert(ex);
    let head = &ex.head;
    if head.method() == "CONNECT" {
        let message = "CONNECT is not supported: fc-init is not a forward proxy";
        let answer = (405, ErrorType::InvalidArgument, message);
        return own_answer(cx, &mut c.io, Some(&ex.request_id), answer, true);
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
    let upgrade = exchange::asks_upgrade(&ex.head);
    if let Purpose::Invoke(_) = purpose {
        ex.handoff = super::handoff::wanted(p, &ex.head, upgrade);
    }
    let handoff = ex.handoff.is_some();
    let max = match handoff {
        true => p.cfg.async_.max_payload,
        false => max,
    };
    if let (Purpose::Invoke(_), false) = (purpose, handoff) {
        // A handoff's invocation is its attempt's, which writes its own lines.
        finish::log_start(cx, ex);
    }
    if purpose == Purpose::Submit || handoff {
        let refused = submission_refused(cx, framing)
            .or_else(|| super::submit::refused(&ex.head).filter(|_| !handoff));
        if let Some((status, error, message)) = refused {
            return refuse(cx, &mut c.io, ex, status, error, &message);
        }
    }
    ex.decoder = match Decoder::new(framing, max) {
        Ok(d) => d,
        Err(_) => return Step::Fail(Failure::BodyTooLarge),
    };
    let total = p.cfg.server.body_buffer_total;
    ex.buffer_limit = match purpose {
        Purpose::Invoke(_) if !handoff => p.cfg.server.body_buffer.min(max).min(total),
        _ => max.min(total),
    } as usize;
    ex.upgrade = matches!(purpose, Purpose::Invoke(_)) && upgrade;
    if ex.head.expect_continue && !ex.decoder.is_done() && c.io.pending().is_empty() {
        c.io.out.extend_from_slice(crate::http::CONTINUE_100);
    }
    client::set_deadline(cx, &mut c.io, cx.now + p.cfg.server.body_timeout);
    Step::Enter(Phase::Body(Buffering::default()))
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
fn refuse(
    cx: &mut Cx,
    io: &mut Io,
    ex: &Exchange,
    status: u16,
    error: ErrorType,
    message: &str,
) -> Step {
    if ex.purpose == Purpose::Submit {
        cx.p.metrics
            .record(Outcome::Error(error), ex.started.elapsed());
    }
    own_answer(cx, io, Some(&ex.request_id), (status, error, message), true)
}

/// Reads the request body into the exchange's buffer, then lets the request go on. The body
/// and the unread input stay within the body's share of `server.body_buffer_total`
/// ([`reserve`]), give or take a partial chunk-size line.
fn buffer_body(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, b: &mut Buffering) -> Step {
    let mut progress = false;
    loop {
        let covered = ex.buffer_limit.min(reserved(ex));
        while !ex.decoder.is_done() && ex.body.len() < covered {
            let room = covered.saturating_sub(ex.body.len());
            let input = &io.inbuf[io.ipos..];
            let step = match ex.decoder.step(input, room) {
                Ok(s) => s,
                Err(e) => return body_refused(cx, io, ex, e),
            };
            ex.body.extend_from_slice(&input[step.data.clone()]);
            io.ipos += step.consumed;
            if step.is_stalled() {
                break;
            }
        }
        let full = ex.body.len() >= ex.buffer_limit;
        if ex.decoder.is_done() || (full && streamed(ex)) {
            return proceed(cx, io, ex);
        }
        if full {
            return body_refused(cx, io, ex, HttpError::BodyTooLarge);
        }
        if ex.body.len() >= covered {
            // No room left in its share: more of it, before another byte is read.
            match reserve(cx, io.token, ex, b) {
                Reserve::Covered => continue,
                Reserve::Wait => return moved(progress),
                Reserve::GoOn => return proceed(cx, io, ex),
            }
        }
        if io.eof {
            let e = cut_short(&mut ex.decoder);
            return body_refused(cx, io, ex, e);
        }
        if !io.rd {
            return moved(progress);
        }
        // The decoder needs more input: read what the share covers (a few bytes more when
        // the input holds only a partial chunk-size line).
        let room = covered - ex.body.len();
        let pending = io.pending().len();
        let cap = room.max(pending + 16).min(BUF.max(pending + 16));
        match read_client(&mut cx.bufs.read, io, cap) {
            Ok(true) => progress = true,
            Ok(false) => return moved(progress),
            Err(Gone) => return Step::Close,
        }
    }
}

/// Whether the rest of the body may be streamed to the function once `server.body_buffer`
/// is full: an invocation's, not a submission's or a handoff's (stored whole).
fn streamed(ex: &Exchange) -> bool {
    matches!(ex.purpose, Purpose::Invoke(_)) && ex.handoff.is_none()
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
/// one. When that does not fit, the connection `t` queues to be woken.
fn reserve(cx: &mut Cx, t: mio::Token, ex: &mut Exchange, b: &mut Buffering) -> Reserve {
    let p = cx.p;
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
    if chunked && have > 0 && streamed(ex) {
        return Reserve::GoOn;
    }
    if !b.budget_queued {
        b.budget_queued = true;
        let handle = cx.handle.clone();
        p.budget.wait(
            target - have,
            Box::new(move || handle.push(Mail::Budget(t))),
        );
    }
    Reserve::Wait
}

/// The body could not be read (malformed, too large, too slow, cut short): fc-init's answer,
/// then close.
fn body_refused(cx: &mut Cx, io: &mut Io, ex: &Exchange, e: HttpError) -> Step {
    match ex.purpose {
        Purpose::Invoke(_) if ex.handoff.is_none() => Step::Fail(Failure::RequestBody(e)),
        _ => {
            let message = match e {
                HttpError::BodyTooLarge => too_large(cx.p.cfg.async_.max_payload),
                HttpError::Timeout => "timed out reading the request body".into(),
                ref e => e.to_string(),
            };
            let status = e.status().unwrap_or(400);
            refuse(cx, io, ex, status, ErrorType::InvalidArgument, &message)
        }
    }
}

/// The body is buffered (whole, or as much as `server.body_buffer` takes): the request goes
/// on to its admission, the store or the supervisor.
fn proceed(cx: &mut Cx, io: &mut Io, ex: &mut Exchange) -> Step {
    let p = cx.p;
    ex.body_complete = ex.decoder.is_done();
    // The share keeps what the body took (a chunked step may have been larger).
    if let Some(r) = ex.reserved.as_mut() {
        r.shrink(ex.body.len() as u64);
    }
    match ex.purpose {
        Purpose::Invoke(_) if ex.handoff.is_some() => super::handoff::start(cx, io, ex),
        Purpose::Invoke(_) => super::admission::enter_admit(cx, io),
        Purpose::Submit => {
            let Some(service) = p.asynchronous.as_ref() else {
                // Refused before its body was read (`submission_refused`).
                let m = "asynchronous invocations are disabled (async.enabled = false)";
                return refuse(cx, io, ex, 400, ErrorType::InvalidArgument, m);
            };
            if p.stopping() {
                let m = "fc-init is shutting down";
                return refuse(cx, io, ex, 503, ErrorType::InstanceStopping, m);
            }
            let body = std::mem::take(&mut ex.body);
            let request = super::submit::stored_request(&ex.head, body);
            let (handle, t) = (cx.handle.clone(), io.token);
            // The completion runs on the committer thread, maybe before this returns; the
            // result is read by this loop only, after this.
            service.submit_async(
                &ex.request_id,
                request,
                Box::new(move |result| handle.push(Mail::Stored(t, result))),
            );
            client::set_deadline(cx, io, far(cx.now));
            Step::Enter(Phase::Storing)
        }
        Purpose::Lifecycle(call) => {
            let (handle, t) = (cx.handle.clone(), io.token);
            p.events.send(Event::Lifecycle {
                call,
                request_id: ex.request_id.clone(),
                reply: Reply::new(move |answer| handle.push(Mail::Lifecycle(t, answer))),
            });
            client::set_deadline(cx, io, far(cx.now));
            Step::Enter(Phase::Lifecycle)
        }
    }
}

/// No deadline of its own: the store and the supervisor always answer.
fn far(now: Instant) -> Instant {
    now + Duration::from_secs(24 * 3600)
}

/// The store's result for this connection's submission.
pub(super) fn stored(cx: &mut Cx, c: &mut Client, result: Result<Submitted, StoreError>) {
    answered(cx, c, Phase::Storing, |cx, io, ex| {
        Some(super::submit::deliver_answer(cx, io, ex, result))
    });
}

/// The async service's word on this connection's handoff ([`super::handoff`]).
pub(super) fn handed_off(cx: &mut Cx, c: &mut Client, handed: Handed) {
    answered(cx, c, Phase::Storing, |cx, io, ex| {
        Some(super::handoff::handed(cx, io, ex, handed))
    });
}

/// The supervisor's answer to this connection's lifecycle call (docs/reference.md §4, §6): 200, or
/// fc-init's own error answer, with the status of an HTTP invocation.
pub(super) fn lifecycle_answered(cx: &mut Cx, c: &mut Client, answer: LifecycleAnswer) {
    answered(cx, c, Phase::Lifecycle, |cx, io, ex| {
        let Purpose::Lifecycle(call) = ex.purpose else {
            return None;
        };
        let keep = ex.head.keep_alive && !cx.p.stopping();
        Some(match super::errors::lifecycle_failure(answer) {
            None => {
                write_done(&mut io.out, &ex.request_id, keep);
                io.close_after |= !keep;
                client::set_deadline(cx, io, cx.now + cx.p.cfg.server.idle_timeout);
                Step::Enter(Phase::Deliver)
            }
            Some((error, message)) => {
                let what = match call {
                    LifecycleCall::Initialize => "initializer",
                    LifecycleCall::PreStop => "PreStop",
                };
                log::debug!(
                    "lifecycle call {}: the {what} failed: {message}",
                    ex.request_id
                );
                let status = error.status(Invocation::Http);
                let answer = (status, error, message.as_str());
                own_answer(cx, io, Some(&ex.request_id), answer, !keep)
            }
        })
    });
}

/// Mail that answers what a connection waits for (`waiting`: [`Phase::Storing`] or
/// [`Phase::Lifecycle`], phases without data): `step` decides on its exchange, and the
/// connection acts on that. Mail that comes after the connection moved on (failed, closed, or
/// its exchange gone) is dropped, as is a step of `None`.
fn answered(
    cx: &mut Cx,
    c: &mut Client,
    waiting: Phase,
    step: impl FnOnce(&mut Cx, &mut Io, &mut Exchange) -> Option<Step>,
) {
    if std::mem::discriminant(&c.phase) != std::mem::discriminant(&waiting) {
        return;
    }
    let Some(ex) = c.ex.as_deref_mut() else {
        return;
    };
    if let Some(step) = step(cx, &mut c.io, ex) {
        act(cx, c, step);
    }
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
fn deliver(cx: &mut Cx, c: &mut Client) -> Step {
    if c.io.unsent() > 0 {
        return Step::Wait;
    }
    // Delivering, it holds nothing of the function's side any more.
    end_exchange(cx, c.ex.take(), Phase::Deliver);
    let io = &mut c.io;
    if io.close_after {
        if io.eof {
            return Step::Close;
        }
        // The client may still be sending (a body nobody read): let it see the answer. What
        // it sends now is dropped unread, so the connection keeps no buffer while it lingers.
        let _ = io.stream.shutdown_write();
        io.inbuf = Vec::new();
        io.ipos = 0;
        io.out = Vec::new();
        io.opos = 0;
        client::set_deadline(cx, io, cx.now + LINGER.min(cx.p.cfg.server.idle_timeout));
        return Step::Enter(Phase::Linger);
    }
    // An idle connection keeps no large buffer from a large answer.
    if io.out.capacity() > 4096 {
        io.out = Vec::new();
    }
    client::set_deadline(cx, io, cx.now + cx.p.cfg.server.idle_timeout);
    Step::Enter(Phase::Idle)
}

/// Reads and drops input until the client closes (or the deadline).
fn linger(cx: &mut Cx, c: &mut Client) -> Step {
    match client::drop_input(&mut cx.bufs.read, &mut c.io) {
        Ok(progress) => moved(progress),
        Err(Gone) => Step::Close,
    }
}

/// The connection is closing: whatever it holds is ended.
fn close(cx: &mut Cx, c: &mut Client) {
    let left = std::mem::replace(&mut c.phase, Phase::Linger);
    end_exchange(cx, c.ex.take(), left);
}

/// A deadline of `c` passed.
pub(super) fn on_deadline(cx: &mut Cx, c: &mut Client) -> Next {
    let step = match &mut c.phase {
        // An idle connection is closed without a word.
        Phase::Idle | Phase::Linger => Step::Close,
        Phase::Head => bad_request(cx, c, HttpError::Timeout),
        Phase::Body(_) => match c.ex.as_deref() {
            Some(ex) => body_refused(cx, &mut c.io, ex, HttpError::Timeout),
            None => Step::Close,
        },
        Phase::Admit(adm) => super::admission::on_deadline(cx, &mut c.io, adm),
        Phase::Forward(fw) => match c.ex.as_deref() {
            Some(ex) => forward::on_deadline(cx, &mut c.io, ex, fw),
            None => Step::Close,
        },
        Phase::Upgraded(up) => forward::upgraded_deadline(cx, &mut c.io, up),
        Phase::Deliver => {
            // function.timeout bounds the delivery of the function's answer too.
            if let Some(ex) = c.ex.as_mut() {
                if let Some(Outcome::Success | Outcome::FunctionError) = ex.outcome {
                    ex.outcome = Some(Outcome::Error(ErrorType::FunctionTimeout));
                }
            }
            Step::Close
        }
        Phase::Storing if c.ex.as_ref().is_some_and(|ex| ex.handoff.is_some()) => {
            match c.ex.as_deref() {
                Some(ex) => super::handoff::on_deadline(cx, &mut c.io, ex),
                None => Step::Close,
            }
        }
        // Not a deadline of their own: looked at again later.
        Phase::Storing | Phase::Lifecycle => {
            client::set_deadline(cx, &mut c.io, far(cx.now));
            Step::Wait
        }
        Phase::H2c(r) => super::h2c::on_deadline(cx, r),
    };
    match act(cx, c, step) {
        Some(Next::Close) => Next::Close,
        _ => drive(cx, c),
    }
}
