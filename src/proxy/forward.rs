//! One request's exchange with the function, both directions at once (full duplex), and each
//! of the rules the contract sets for it written once:
//!
//! 1. the `x-fc-*` fields the function receives, hop-by-hop fields dropped, an absolute-form
//!    target sent in origin-form with its authority as `Host` (a request without any Host:
//!    the listener's address), `Upgrade` forwarded;
//! 2. bodies relayed as they arrive in both directions, each bounded by [`BUF`] with
//!    backpressure (a slow reader slows its writer); a request body up to
//!    `server.body_buffer` was read before the slot was taken ([`super::conn`]) and goes out
//!    with the head;
//! 3. `function.timeout` bounds the whole exchange, delivery to the client included;
//! 4. an answer the function has finished that fits the buffers releases its slot and its
//!    function connection at once, while the loop delivers the rest;
//! 5. a function connection of an older instance is never reused (the pool is purged);
//! 6. a request that provably never reached the function (refused, reset with it unread) is
//!    sent again once, to the next instance if this one is gone;
//! 7. after `101 Switching Protocols` the two connections are relayed byte for byte, as one
//!    request in flight, until either closes.
//!
//! Each step works on the forwarding phase's own data ([`Forwarding`], its [`Wire`]) and
//! returns what happened ([`Step`]); the connection acts on it ([`super::conn`]): every
//! failure ends in [`super::finish::fail`], a complete answer in [`super::finish::complete`].
//! Failure modes: each step's [`Failure`] variant; see [`super::errors`] for the answers.

use std::io;
use std::time::Duration;

use crate::http::codec::{Decoder, Encoder};
use crate::http::fc_error::Invocation;
use crate::http::write::{write_request_head, write_response_head};
use crate::http::{parse_response_head, BodyFraming, HttpError, ResponseHead};
use crate::metrics::Outcome;
use crate::state::Phase as Lifecycle;

use super::client::{self, Io, Phase, Step};
use super::cx::{Cx, RESPONSE_LIMITS};
use super::errors::{ConnectError, Failure};
use super::exchange::{Exchange, Forwarding, Reading, Upgraded, Wire, Writing};
use super::shared::BUF;

/// How long a request whose fresh connection the function reset waits for the supervisor to
/// report a new instance before it tries the same one once more.
pub(super) const DYING: Duration = Duration::from_millis(500);

pub(super) const RETRY_MAX: Duration = Duration::from_millis(50);

/// Why a part of the exchange stops short: the step's result, which is never a phase to
/// enter (so it stays small: a [`Failure`] at most).
enum Stop {
    Wait,
    Fail(Failure),
    Readmit(Failure),
    Delivered,
    Upgrade,
    Close,
}

impl From<Stop> for Step {
    fn from(stop: Stop) -> Step {
        match stop {
            Stop::Wait => Step::Wait,
            Stop::Fail(f) => Step::Fail(f),
            Stop::Readmit(f) => Step::Readmit(f),
            Stop::Delivered => Step::Delivered,
            Stop::Upgrade => Step::Upgrade,
            Stop::Close => Step::Close,
        }
    }
}

/// What a part of the exchange (sending, receiving) did, for [`forward`] to act on with the
/// whole phase in hand.
enum Part {
    /// Whether bytes moved; the part cannot go on now.
    Moved(bool),
    /// The step's result for the connection.
    Done(Stop),
    /// The request provably never reached the function: it goes again ([`resend`]).
    Resend(Failure),
    /// The connection was never made (a TCP connect refused): the instance is most likely
    /// gone, and the request waits for the next one.
    Refused(io::Error),
}

/// The exchange: connect, send, read and relay, as far as the bytes allow.
pub(super) fn forward(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, fw: &mut Forwarding) -> Step {
    let mut progress = false;
    let w = match &mut fw.wire {
        Some(w) => w,
        None => match connect(cx, io, ex, fw) {
            Ok(wire) => {
                progress = true;
                fw.wire.insert(wire)
            }
            Err(stop) => return stop.into(),
        },
    };
    if !cx.lines.may_send(ex.start_line, io.token) {
        return moved(progress);
    }
    let resent = fw.held.resent;
    let part = match send(cx, io, ex, w, resent) {
        Part::Moved(sent) => {
            progress |= sent;
            receive(cx, io, ex, w, resent)
        }
        other => other,
    };
    match part {
        Part::Moved(got) => moved(progress || got),
        Part::Done(stop) => stop.into(),
        Part::Resend(failure) => resend(cx, io, ex, fw, failure),
        Part::Refused(e) => {
            // A TCP connect that did not complete: nothing reached the function.
            if let Some(w) = fw.wire.take() {
                cx.pool.slots.remove(w.f);
            }
            let failure = ConnectError::Absent(e);
            log::debug!(
                "request {}: {failure}; waiting for a new instance",
                ex.request_id
            );
            Step::Readmit(Failure::Connect(failure))
        }
    }
}

fn moved(progress: bool) -> Step {
    match progress {
        true => Step::Progress,
        false => Step::Wait,
    }
}

/// A function connection for the request (pooled or new), its head written for it; or why
/// not now.
fn connect(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, fw: &mut Forwarding) -> Result<Wire, Stop> {
    if fw.retry_at.is_some_and(|at| cx.now < at) {
        return Err(Stop::Wait);
    }
    fw.retry_at = None;
    match cx.take_fn(fw.instance, io.token) {
        Ok(f) => Ok(prepare(cx, ex, f)),
        Err(ConnectError::Busy) => {
            fw.retry_at = Some(cx.now + fw.backoff);
            fw.backoff = (fw.backoff * 2).min(RETRY_MAX);
            let at = fw.held.deadline.min(cx.now + fw.backoff);
            client::set_deadline(cx, io, at);
            Err(Stop::Wait)
        }
        Err(ConnectError::Absent(e)) => {
            // Refused or no socket: the instance has most likely just died and the
            // supervisor is about to start another. Nothing reached the function, so the
            // request goes to the next instance once it is ready.
            log::debug!("request {}: {e}; waiting for a new instance", ex.request_id);
            client::set_deadline(cx, io, fw.admit_by.max(cx.now));
            Err(Stop::Readmit(Failure::Connect(ConnectError::Absent(e))))
        }
        Err(ConnectError::Exhausted(e)) => {
            super::fds::log_exhausted("connecting to the function", &e);
            Err(Stop::Fail(Failure::Descriptors(e)))
        }
        Err(e) => Err(Stop::Fail(Failure::Connect(e))),
    }
}

/// Writes the request head for the function connection `f` (once per connection it is
/// sent on).
pub(super) fn prepare(cx: &Cx, ex: &mut Exchange, f: usize) -> Wire {
    let p = cx.p;
    let head = &ex.head;
    // TEST ONLY (debug builds): see `Proxy::test_panic`.
    #[cfg(debug_assertions)]
    if p.test_panic && head.header("x-fc-init-test-panic").is_some() {
        panic!("test-only panic (x-fc-init-test-panic)");
    }
    let control_path = super::kind::control_path(ex.invocation());
    let upgrade = head
        .header("upgrade")
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("");
    let mut extra: [(&str, &str); 7] = [("", ""); 7];
    let fixed = [
        ("x-fc-request-id", ex.request_id.as_str()),
        ("x-fc-control-path", control_path),
        ("x-fc-function-name", p.cfg.function.name.as_str()),
        ("x-fc-function-timeout", p.function_timeout.as_str()),
    ];
    extra[..4].copy_from_slice(&fixed);
    let mut n = 4;
    if let Some(authority) = head.authority() {
        extra[n] = ("Host", authority);
        n += 1;
    } else if !ex.host.is_empty() {
        extra[n] = ("Host", ex.host.as_str());
        n += 1;
    }
    if ex.upgrade {
        extra[n] = ("Connection", "upgrade");
        extra[n + 1] = ("Upgrade", upgrade);
        n += 2;
    }
    // A body read whole goes out with its length, however it came.
    let framing = match (head.framing, ex.body_complete) {
        (BodyFraming::None, _) => BodyFraming::None,
        (_, true) => BodyFraming::Length(ex.body.len() as u64),
        (f, false) => f,
    };
    let req_encoder = match framing {
        BodyFraming::Chunked => Encoder::Chunked,
        _ => Encoder::Raw,
    };
    write_request_head(&mut ex.fn_head, head, &extra[..n], framing);
    ex.fn_out.clear();
    if !ex.body_complete && req_encoder == Encoder::Chunked && !ex.body.is_empty() {
        // The buffered start of a streamed chunked body is one chunk of its own.
        let body = std::mem::take(&mut ex.body);
        req_encoder.data(&body, &mut ex.fn_out);
    }
    // A request sent again starts afresh on the function's side too.
    ex.fn_in.clear();
    Wire::new(f, req_encoder)
}

/// Writes (more of) the request: the head and buffered body, then the rest of the body as the
/// client sends it.
fn send(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, w: &mut Wire, resent: bool) -> Part {
    let mut progress = false;
    loop {
        if !matches!(w.writing, Writing::Sending) {
            return Part::Moved(progress);
        }
        let slot = cx.pool.slot(w.f);
        let (a, b) = if w.hpos < ex.fn_head.len() || w.bpos < ex.body.len() {
            (&ex.fn_head[w.hpos..], &ex.body[w.bpos..])
        } else if w.fpos < ex.fn_out.len() {
            (&ex.fn_out[w.fpos..], &[][..])
        } else {
            ex.fn_out.clear();
            w.fpos = 0;
            if ex.decoder.is_done() {
                w.writing = Writing::Done;
                return Part::Moved(true);
            }
            // More of the body, from the client.
            match pull_body(cx, io, ex, w) {
                Ok(true) => progress = true,
                Ok(false) => return Part::Moved(progress),
                Err(stop) => return Part::Done(stop),
            }
            continue;
        };
        if !slot.wr {
            return Part::Moved(progress);
        }
        match crate::sys::retry(|| slot.stream.write_parts(a, b)) {
            Ok(0) => return write_failed(ex, w, resent, io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                progress = true;
                if w.hpos < ex.fn_head.len() || w.bpos < ex.body.len() {
                    let h = n.min(ex.fn_head.len() - w.hpos);
                    w.hpos += h;
                    n -= h;
                    w.bpos += n;
                } else {
                    w.fpos += n;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.wr = false,
            Err(e) => return write_failed(ex, w, resent, e),
        }
    }
}

/// Decodes more of the client's body into the function's output; false when nothing came.
fn pull_body(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, w: &mut Wire) -> Result<bool, Stop> {
    loop {
        let mut moved = false;
        while ex.fn_out.len() < BUF && !ex.decoder.is_done() {
            let input = &io.inbuf[io.ipos..];
            let step = match ex.decoder.step(input, BUF - ex.fn_out.len()) {
                Ok(s) => s,
                Err(e) => return Err(Stop::Fail(Failure::RequestBody(e))),
            };
            w.req_encoder
                .data(&input[step.data.clone()], &mut ex.fn_out);
            io.ipos += step.consumed;
            moved |= !step.is_stalled();
            if step.is_stalled() {
                break;
            }
        }
        if ex.decoder.is_done() {
            w.req_encoder.finish(&mut ex.fn_out);
            return Ok(true);
        }
        if moved {
            return Ok(true);
        }
        if io.eof {
            let e = client::cut_short(&mut ex.decoder);
            return Err(Stop::Fail(Failure::RequestBody(e)));
        }
        if !io.rd {
            return Ok(false);
        }
        match client::read_client(&mut cx.bufs.read, io, BUF) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(client::Gone) => return Err(Stop::Close),
        }
    }
}

/// Everything the function was sent is still here to send again: the whole body was
/// buffered, it was not sent again already, and nothing of an answer has arrived.
fn resendable(ex: &Exchange, w: &Wire, resent: bool) -> bool {
    ex.body_complete && !resent && ex.fn_in.is_empty() && !w.reading.started()
}

/// Whether a failed write or read on a function connection proves that the function never
/// read the request: the connection was closed (`EPIPE`) or reset with unread data
/// (`ECONNRESET`, which is how both unix and TCP sockets report a peer that closed without
/// reading what it was sent).
pub(super) fn undelivered(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Writing to the function failed: send it again when it provably never got it; otherwise
/// stop sending and see whether it answered (it may have answered early and closed).
fn write_failed(ex: &Exchange, w: &mut Wire, resent: bool, e: io::Error) -> Part {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        return Part::Refused(e);
    }
    if undelivered(&e) && resendable(ex, w, resent) {
        return Part::Resend(Failure::SendHead(e));
    }
    w.writing = Writing::Failed(e);
    Part::Moved(true)
}

/// The request did not reach the function: it goes again, once (when it was sent once
/// already, it fails). A pooled connection that failed is the usual end of a keep-alive
/// connection (or of an instance that just died): a new connection to this instance, if it
/// is still the one, else to the next instance. A fresh connection that failed means the
/// instance itself is going (its listener still accepts while the process dies): the request
/// waits a moment for the supervisor to report the next instance, and tries this one once
/// more only if it outlives that moment.
fn resend(cx: &mut Cx, io: &mut Io, ex: &Exchange, fw: &mut Forwarding, failure: Failure) -> Step {
    log::debug!("request {}: {failure}; sending it again", ex.request_id);
    let fresh = match fw.wire.take().and_then(|w| cx.pool.slots.remove(w.f)) {
        Some(slot) => slot.served == 0,
        None => true,
    };
    // The other pooled connections most likely share its fate.
    cx.purge_idle();
    fw.held.resent = true;
    let (phase, instance) = cx.p.shared.phase_and_instance();
    if fresh || phase != Lifecycle::Ready || instance != fw.instance {
        let by = match fresh {
            true => fw.admit_by.min(cx.now + DYING),
            false => fw.admit_by,
        };
        client::set_deadline(cx, io, by.max(cx.now));
        return Step::Readmit(failure);
    }
    Step::Progress
}

/// Reads the function's answer and relays it to the client as far as the buffers allow.
fn receive(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, w: &mut Wire, resent: bool) -> Part {
    let mut progress = false;
    loop {
        // What arrived is used before more is read (a reset may follow the last bytes).
        let used = match relay(cx, io, ex, w) {
            Ok(false) => pass_through(cx, io, ex, w),
            other => other,
        };
        match used {
            Ok(true) => {
                progress = true;
                continue;
            }
            Ok(false) => {}
            Err(stop) => return Part::Done(stop),
        }
        let mut moved = false;
        let slot = cx.pool.slot(w.f);
        let room = match w.reading.started() {
            true => ex.fn_in.len() < BUF && io.unsent() < BUF,
            false => ex.fn_in.len() <= RESPONSE_LIMITS.max_header_bytes,
        };
        if slot.rd && !w.fn_eof && room {
            match crate::sys::retry(|| slot.stream.read(&mut cx.bufs.read)) {
                Ok(0) => {
                    w.fn_eof = true;
                    moved = true;
                }
                Ok(n) => {
                    ex.fn_in.extend_from_slice(&cx.bufs.read[..n]);
                    slot.rd = n == cx.bufs.read.len() || slot.hup;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.rd = false,
                Err(e) => {
                    w.fn_eof = true;
                    w.fn_error = Some(e);
                    moved = true;
                }
            }
        }
        if w.fn_eof && !moved {
            return function_closed(ex, w, resent);
        }
        progress |= moved;
        if !moved {
            return Part::Moved(progress);
        }
    }
}

/// The common case of a large answer, without copying it: a body that goes out as it came
/// (Content-Length, or close-delimited to an HTTP/1.0 client) is read into the loop's buffer
/// and written straight to a client that keeps up; only what the client does not
/// take at once is kept in its output buffer. Returns whether it moved bytes.
fn pass_through(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, w: &mut Wire) -> Result<bool, Stop> {
    let left = match &w.reading {
        Reading::Body {
            decoder,
            encoder: Encoder::Raw,
        } => match decoder.raw_left() {
            Some(left) => left,
            None => return Ok(false),
        },
        _ => return Ok(false),
    };
    let slot = cx.pool.slot(w.f);
    if !(slot.rd && io.wr && !w.fn_eof && ex.fn_in.is_empty() && io.unsent() == 0) {
        return Ok(false);
    }
    let want = usize::try_from(left)
        .unwrap_or(usize::MAX)
        .min(cx.bufs.read.len());
    let n = match crate::sys::retry(|| slot.stream.read(&mut cx.bufs.read[..want])) {
        Ok(0) => {
            w.fn_eof = true;
            return Ok(true);
        }
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            slot.rd = false;
            return Ok(false);
        }
        Err(e) => {
            w.fn_eof = true;
            w.fn_error = Some(e);
            return Ok(true);
        }
    };
    slot.rd = n == want || slot.hup;
    let data = &cx.bufs.read[..n];
    if let Reading::Body { decoder, .. } = &mut w.reading {
        if let Err(e) = decoder.step(data, n) {
            return Err(Stop::Fail(Failure::ResponseBody(e)));
        }
    }
    let written = match crate::sys::retry(|| io.stream.write(data)) {
        Ok(w) => w,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(_) => {
            client::lost_answer(Some(ex));
            return Err(Stop::Close);
        }
    };
    if written < n {
        io.wr = false;
        io.out.extend_from_slice(&data[written..]);
    }
    if w.reading.done() {
        return Err(Stop::Delivered);
    }
    Ok(true)
}

/// The function closed its side and everything it sent has been used.
fn function_closed(ex: &mut Exchange, w: &mut Wire, resent: bool) -> Part {
    let read_error = w.fn_error.take();
    if !w.reading.started() {
        if !ex.fn_in.is_empty() {
            return Part::Done(Stop::Fail(Failure::ResponseHead(HttpError::UnexpectedEof)));
        }
        // Nothing of an answer: did the request get there at all?
        let write_error = match std::mem::replace(&mut w.writing, Writing::Done) {
            Writing::Failed(e) => Some(e),
            other => {
                w.writing = other;
                None
            }
        };
        let failure = match (read_error, write_error) {
            (_, Some(e)) => Failure::SendHead(e),
            (Some(e), None) => Failure::ResponseHead(HttpError::Read(e)),
            (None, None) => Failure::ResponseHead(HttpError::ConnectionClosed),
        };
        let unread = match &failure {
            Failure::SendHead(e) | Failure::ResponseHead(HttpError::Read(e)) => undelivered(e),
            _ => false,
        };
        if unread && resendable(ex, w, resent) {
            return Part::Resend(failure);
        }
        return Part::Done(Stop::Fail(failure));
    }
    let at_eof = match &mut w.reading {
        Reading::Body { decoder, .. } => decoder.at_eof(),
        Reading::Head => Err(HttpError::UnexpectedEof),
    };
    Part::Done(match (at_eof, read_error) {
        (Ok(()), _) => Stop::Delivered,
        (Err(_), Some(e)) => Stop::Fail(Failure::ResponseBody(HttpError::Read(e))),
        (Err(e), None) => Stop::Fail(Failure::ResponseBody(e)),
    })
}

/// Uses what the function sent: its head, then its body into the client's output.
fn relay(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, w: &mut Wire) -> Result<bool, Stop> {
    let (decoder, encoder) = match &mut w.reading {
        Reading::Body { decoder, encoder } => (decoder, encoder),
        Reading::Head => return relay_head(cx, io, ex, w),
    };
    let mut used = 0;
    let mut progress = false;
    while !decoder.is_done() && io.unsent() < BUF {
        let input = &ex.fn_in[used..];
        let room = BUF - io.unsent();
        let step = match decoder.step(input, room) {
            Ok(s) => s,
            Err(e) => {
                ex.fn_in.drain(..used);
                return Err(Stop::Fail(Failure::ResponseBody(e)));
            }
        };
        encoder.data(&input[step.data.clone()], &mut io.out);
        used += step.consumed;
        if step.is_stalled() {
            break;
        }
        progress = true;
    }
    ex.fn_in.drain(..used);
    if w.reading.done() {
        return Err(Stop::Delivered);
    }
    Ok(progress)
}

/// Parses the function's answer head, once it is all there.
fn relay_head(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, w: &mut Wire) -> Result<bool, Stop> {
    if ex.fn_in.is_empty() {
        return Ok(false);
    }
    let head_request = ex.head.method() == "HEAD";
    let parsed = parse_response_head(
        &ex.fn_in,
        &RESPONSE_LIMITS,
        head_request,
        ex.upgrade,
        &mut ex.resp,
    );
    match parsed {
        Ok(Some(n)) => {
            ex.fn_in.drain(..n);
            match answer_head(cx, io, ex, w) {
                true => Err(Stop::Upgrade),
                false => Ok(true),
            }
        }
        Ok(None) if ex.fn_in.len() > RESPONSE_LIMITS.max_header_bytes => Err(Stop::Fail(
            Failure::ResponseHead(HttpError::HeadersTooLarge),
        )),
        Ok(None) => Ok(false),
        Err(e) => Err(Stop::Fail(Failure::ResponseHead(e))),
    }
}

/// The function's head is in `ex.resp`: what the exchange counts as, and the head for the
/// client (docs/reference.md §4: hop-by-hop fields dropped, `x-fc-request-id` added; a Content-Length
/// answer keeps it, a chunked or close-delimited one goes out chunked to an HTTP/1.1 client
/// and close-delimited to an HTTP/1.0 one). True for `101 Switching Protocols`: the
/// connection is upgraded.
fn answer_head(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, w: &mut Wire) -> bool {
    let p = cx.p;
    let resp = &ex.resp;
    // Until its codecs are known (and for ever after `101`): bytes as they are.
    w.reading = Reading::Body {
        decoder: Decoder::passthrough(),
        encoder: Encoder::Raw,
    };
    let failed = ex.invocation() == Invocation::Event
        && (!(200..300).contains(&resp.status)
            || resp
                .header("x-fc-status")
                .is_some_and(|v| v.trim_ascii() == b"404"));
    ex.outcome = Some(match failed {
        true => Outcome::FunctionError,
        false => Outcome::Success,
    });
    if resp.status == 101 {
        let upgrade = resp
            .header("upgrade")
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("");
        let extra = [
            ("x-fc-request-id", ex.request_id.as_str()),
            ("Connection", "Upgrade"),
            ("Upgrade", upgrade),
        ];
        write_response_head(&mut cx.bufs.answer, resp, &extra, BodyFraming::None);
        io.out.extend_from_slice(&cx.bufs.answer);
        // What the function sent after its head belongs to the new protocol.
        io.out.extend_from_slice(&ex.fn_in);
        // A long-lived upgraded connection keeps no buffer it does not use.
        for buf in [&mut ex.fn_in, &mut ex.fn_head, &mut ex.fn_out, &mut ex.body] {
            *buf = Vec::new();
        }
        ex.resp = ResponseHead::default();
        return true;
    }
    let client_11 = ex.head.version_minor >= 1;
    // A request body not read to its end leaves the connection unusable.
    let mut keep_alive = ex.head.keep_alive && !p.stopping() && ex.decoder.is_done();
    let framing = match resp.framing {
        BodyFraming::Length(n) => BodyFraming::Length(n),
        BodyFraming::None => BodyFraming::None,
        BodyFraming::Chunked | BodyFraming::UntilClose if client_11 => BodyFraming::Chunked,
        BodyFraming::Chunked | BodyFraming::UntilClose => {
            keep_alive = false;
            BodyFraming::UntilClose
        }
    };
    w.reading = Reading::Body {
        decoder: Decoder::new(resp.framing, u64::MAX).unwrap_or_else(|_| Decoder::passthrough()),
        encoder: match framing {
            BodyFraming::Chunked => Encoder::Chunked,
            _ => Encoder::Raw,
        },
    };
    let connection = match (keep_alive, client_11) {
        (false, _) => Some("close"),
        (true, false) => Some("keep-alive"),
        (true, true) => None,
    };
    let id = ("x-fc-request-id", ex.request_id.as_str());
    match connection {
        Some(v) => {
            write_response_head(&mut cx.bufs.answer, resp, &[id, ("Connection", v)], framing)
        }
        None => write_response_head(&mut cx.bufs.answer, resp, &[id], framing),
    }
    io.out.extend_from_slice(&cx.bufs.answer);
    io.close_after |= !keep_alive;
    false
}

/// The forwarding phase after `101 Switching Protocols`: the slot and the in-flight count
/// kept, the function connection relayed as it is.
pub(super) fn upgraded(fw: Forwarding) -> Phase {
    match fw.wire {
        Some(w) => Phase::Upgraded(Upgraded {
            held: fw.held,
            f: w.f,
            fn_eof: w.fn_eof,
        }),
        // An answer head comes only over a connection.
        None => Phase::Deliver,
    }
}

/// After `101 Switching Protocols`: the two connections relayed byte for byte until either
/// side closes; then both are closed.
pub(super) fn relay_upgraded(cx: &mut Cx, io: &mut Io, up: &mut Upgraded) -> Step {
    let mut progress = false;
    loop {
        let mut moved = false;
        let slot = cx.pool.slot(up.f);
        // Client to function, from the client's input buffer.
        if io.ipos < io.inbuf.len() && slot.wr {
            match crate::sys::retry(|| slot.stream.write_parts(&io.inbuf[io.ipos..], &[])) {
                Ok(n) => {
                    io.ipos += n;
                    moved |= n > 0;
                    if io.ipos == io.inbuf.len() {
                        io.inbuf = Vec::new();
                        io.ipos = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.wr = false,
                Err(_) => return Step::Close,
            }
        }
        // Function to client, through the client's output buffer.
        if slot.rd && !up.fn_eof && io.unsent() < BUF {
            let want = (BUF - io.unsent()).min(cx.bufs.read.len());
            match crate::sys::retry(|| slot.stream.read(&mut cx.bufs.read[..want])) {
                Ok(0) => up.fn_eof = true,
                Ok(n) => {
                    io.out.extend_from_slice(&cx.bufs.read[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.rd = false,
                Err(_) => return Step::Close,
            }
        }
        if io.pending().is_empty() && io.rd && !io.eof {
            match client::read_client(&mut cx.bufs.read, io, BUF) {
                Ok(got) => moved |= got,
                Err(client::Gone) => return Step::Close,
            }
        }
        if (io.eof && io.pending().is_empty()) || (up.fn_eof && io.unsent() == 0) {
            return Step::Close;
        }
        progress |= moved;
        if !moved {
            return self::moved(progress);
        }
    }
}

/// A deadline of a forwarded request passed.
pub(super) fn on_deadline(cx: &mut Cx, io: &mut Io, ex: &Exchange, fw: &Forwarding) -> Step {
    if cx.now < fw.held.deadline {
        // A retry's wake-up: the exchange's own deadline is next (the retry, if still due,
        // sets its own again).
        client::set_deadline(cx, io, fw.held.deadline);
        return Step::Progress;
    }
    if fw.answer_started() {
        // Cut mid-answer at function.timeout: both sides are closed.
        return Step::Fail(Failure::Timeout);
    }
    // The client's fault (408) only when everything it sent is with the function and more
    // of its body is awaited; a function that has not taken what it was sent (the head, the
    // buffered body, the streamed rest) did not read its request in time: 504
    // (docs/reference.md §12).
    let (hpos, bpos, fpos, failed) = match &fw.wire {
        Some(w) => (
            w.hpos,
            w.bpos,
            w.fpos,
            matches!(w.writing, Writing::Failed(_)),
        ),
        None => (0, 0, 0, false),
    };
    let waiting_for_client = !failed
        && !ex.decoder.is_done()
        && fpos >= ex.fn_out.len()
        && hpos >= ex.fn_head.len()
        && bpos >= ex.body.len();
    Step::Fail(match waiting_for_client {
        true => Failure::RequestBody(HttpError::Timeout),
        false => Failure::ResponseHead(HttpError::Timeout),
    })
}

/// A deadline of an upgraded connection passed: at `function.timeout` both sides close.
pub(super) fn upgraded_deadline(cx: &mut Cx, io: &mut Io, up: &Upgraded) -> Step {
    if cx.now < up.held.deadline {
        client::set_deadline(cx, io, up.held.deadline);
        return Step::Progress;
    }
    Step::Fail(Failure::Timeout)
}
