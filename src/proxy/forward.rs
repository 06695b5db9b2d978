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
//! Every failure ends in [`super::finish::fail`]. Failure modes: each step's [`Failure`]
//! variant; see [`super::errors`] for the answers.

use std::io;
use std::time::Duration;

use crate::http::codec::{Decoder, Encoder};
use crate::http::fc_error::Invocation;
use crate::http::write::{write_request_head, write_response_head};
use crate::http::{parse_response_head, BodyFraming, HttpError, ResponseHead};
use crate::metrics::Outcome;
use crate::state::Phase as Lifecycle;

use super::admission::{admit, decide, Readiness};
use super::client::{self, Client, Flow, Gone, Phase};
use super::cx::{Cx, RESPONSE_LIMITS};
use super::errors::{ConnectError, Failure};
use super::exchange::{Exchange, Reading, Slot, Writing};
use super::finish::{self, fail, release};
use super::shared::BUF;

/// How long a request whose fresh connection the function reset waits for the supervisor to
/// report a new instance before it tries the same one once more.
pub(super) const DYING: Duration = Duration::from_millis(500);

pub(super) const RETRY_MAX: Duration = Duration::from_millis(50);

/// The exchange: connect, send, read and relay, as far as the bytes allow.
pub(super) fn forward(cx: &mut Cx, c: &mut Client) -> Flow {
    let t = c.token;
    let ex = c.ex.as_mut().expect("a request is being forwarded");
    let mut progress = false;
    if ex.fnc.is_none() {
        if ex.retry_at.is_some_and(|at| cx.now < at) {
            return Ok(false);
        }
        ex.retry_at = None;
        match cx.take_fn(ex.instance, t) {
            Ok(f) => {
                ex.fnc = Some(f);
                prepare(cx, ex);
                progress = true;
            }
            Err(ConnectError::Busy) => {
                ex.retry_at = Some(cx.now + ex.backoff);
                ex.backoff = (ex.backoff * 2).min(RETRY_MAX);
                let at = ex.deadline.min(cx.now + ex.backoff);
                client::set_deadline(cx, c, at);
                return Ok(false);
            }
            Err(ConnectError::Absent(e)) => {
                // Refused or no socket: the instance has most likely just died and the
                // supervisor is about to start another. Nothing reached the function, so the
                // request goes to the next instance once it is ready.
                log::debug!("request {}: {e}; waiting for a new instance", ex.request_id);
                let failure = Failure::Connect(ConnectError::Absent(e));
                ex.next_instance_of = Some((ex.instance, failure));
                c.phase = Phase::Admit;
                let deadline = ex.admit_deadline.max(cx.now);
                client::set_deadline(cx, c, deadline);
                return Ok(true);
            }
            Err(ConnectError::Exhausted(e)) => {
                super::fds::log_exhausted("connecting to the function", &e);
                return fail(cx, c, Failure::Descriptors(e));
            }
            Err(e) => return fail(cx, c, Failure::Connect(e)),
        }
    }
    if !cx.lines.may_send(ex.start_line, t) {
        return Ok(progress);
    }
    progress |= send(cx, c)?;
    if c.phase != Phase::Forward || c.ex.as_ref().is_some_and(|ex| ex.fnc.is_none()) {
        return Ok(true);
    }
    progress |= receive(cx, c)?;
    Ok(progress)
}

/// Writes the request head for the function (once per connection it is sent on).
pub(super) fn prepare(cx: &Cx, ex: &mut Exchange) {
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
    ex.req_encoder = match framing {
        BodyFraming::Chunked => Encoder::Chunked,
        _ => Encoder::Raw,
    };
    write_request_head(&mut ex.fn_head, head, &extra[..n], framing);
    if !ex.body_complete && ex.req_encoder == Encoder::Chunked && !ex.body.is_empty() {
        // The buffered start of a streamed chunked body is one chunk of its own.
        let body = std::mem::take(&mut ex.body);
        ex.req_encoder.data(&body, &mut ex.fn_out);
    }
    ex.hpos = 0;
    ex.bpos = 0;
    ex.fpos = 0;
    ex.writing = Writing::Sending;
    // A request sent again starts afresh on the function's side too.
    ex.fn_in.clear();
    ex.fn_eof = false;
    ex.fn_error = None;
}

/// Writes (more of) the request: the head and buffered body, then the rest of the body as the
/// client sends it.
pub(super) fn send(cx: &mut Cx, c: &mut Client) -> Flow {
    let mut progress = false;
    loop {
        let ex = c.ex.as_mut().expect("a request is being forwarded");
        if !matches!(ex.writing, Writing::Sending) {
            return Ok(progress);
        }
        let f = ex.fnc.expect("connected");
        let slot = cx.pool.slots.get(f).expect("a live function connection");
        let (a, b) = if ex.hpos < ex.fn_head.len() || ex.bpos < ex.body.len() {
            (&ex.fn_head[ex.hpos..], &ex.body[ex.bpos..])
        } else if ex.fpos < ex.fn_out.len() {
            (&ex.fn_out[ex.fpos..], &[][..])
        } else {
            ex.fn_out.clear();
            ex.fpos = 0;
            if ex.decoder.is_done() {
                ex.writing = Writing::Done;
                return Ok(true);
            }
            // More of the body, from the client.
            let got = pull_body(cx, c)?;
            if c.phase != Phase::Forward {
                return Ok(true);
            }
            if !got {
                return Ok(progress);
            }
            progress = true;
            continue;
        };
        if !slot.wr {
            return Ok(progress);
        }
        match crate::sys::retry(|| slot.stream.write_parts(a, b)) {
            Ok(0) => return write_failed(cx, c, io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                progress = true;
                if ex.hpos < ex.fn_head.len() || ex.bpos < ex.body.len() {
                    let h = n.min(ex.fn_head.len() - ex.hpos);
                    ex.hpos += h;
                    n -= h;
                    ex.bpos += n;
                } else {
                    ex.fpos += n;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.wr = false,
            Err(e) => return write_failed(cx, c, e),
        }
    }
}

/// Decodes more of the client's body into the function's output; false when nothing came.
pub(super) fn pull_body(cx: &mut Cx, c: &mut Client) -> Flow {
    loop {
        let ex = c.ex.as_mut().expect("a request is being forwarded");
        let mut moved = false;
        while ex.fn_out.len() < BUF && !ex.decoder.is_done() {
            let input = &c.inbuf[c.ipos..];
            let step = match ex.decoder.step(input, BUF - ex.fn_out.len()) {
                Ok(s) => s,
                Err(e) => return fail(cx, c, Failure::RequestBody(e)),
            };
            ex.req_encoder
                .data(&input[step.data.clone()], &mut ex.fn_out);
            c.ipos += step.consumed;
            moved |= !step.is_stalled();
            if step.is_stalled() {
                break;
            }
        }
        if ex.decoder.is_done() {
            ex.req_encoder.finish(&mut ex.fn_out);
            return Ok(true);
        }
        if moved {
            return Ok(true);
        }
        if c.eof {
            let e = client::cut_short(&mut ex.decoder);
            return fail(cx, c, Failure::RequestBody(e));
        }
        if !c.rd || !client::read_client(cx, c, BUF)? {
            return Ok(false);
        }
    }
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
pub(super) fn write_failed(cx: &mut Cx, c: &mut Client, e: io::Error) -> Flow {
    let ex = c.ex.as_mut().expect("a request is being forwarded");
    if e.kind() == io::ErrorKind::ConnectionRefused {
        // A TCP connect that did not complete.
        let failure = ConnectError::Absent(e);
        let f = ex.fnc.take();
        if let Some(f) = f {
            cx.pool.slots.remove(f);
        }
        log::debug!(
            "request {}: {failure}; waiting for a new instance",
            ex.request_id
        );
        ex.next_instance_of = Some((ex.instance, Failure::Connect(failure)));
        c.phase = Phase::Admit;
        return Ok(true);
    }
    if undelivered(&e) && ex.resendable() {
        return resend(cx, c, Failure::SendHead(e));
    }
    ex.writing = Writing::Failed(e);
    Ok(true)
}

/// The request did not reach the function: it goes again, once. A pooled connection that
/// failed is the usual end of a keep-alive connection (or of an instance that just died): a
/// new connection to this instance, if it is still the one, else to the next instance. A
/// fresh connection that failed means the instance itself is going (its listener still
/// accepts while the process dies): the request waits a moment for the supervisor to report
/// the next instance, and tries this one once more only if it outlives that moment.
pub(super) fn resend(cx: &mut Cx, c: &mut Client, failure: Failure) -> Flow {
    let ex = c.ex.as_mut().expect("a request is being forwarded");
    log::debug!("request {}: {failure}; sending it again", ex.request_id);
    let fresh = match ex.fnc.take().and_then(|f| cx.pool.slots.remove(f)) {
        Some(slot) => slot.served == 0,
        None => true,
    };
    // The other pooled connections most likely share its fate.
    cx.purge_idle();
    ex.resent = true;
    let (phase, instance) = cx.p.shared.phase_and_instance();
    if fresh || phase != Lifecycle::Ready || instance != ex.instance {
        ex.next_instance_of = Some((ex.instance, failure));
        c.phase = Phase::Admit;
        let by = match fresh {
            true => ex.admit_deadline.min(cx.now + DYING),
            false => ex.admit_deadline,
        };
        client::set_deadline(cx, c, by.max(cx.now));
    }
    Ok(true)
}

/// Reads the function's answer and relays it to the client as far as the buffers allow.
pub(super) fn receive(cx: &mut Cx, c: &mut Client) -> Flow {
    let mut progress = false;
    loop {
        // What arrived is used before more is read (a reset may follow the last bytes).
        if relay(cx, c)? || pass_through(cx, c)? {
            progress = true;
            if c.phase != Phase::Forward {
                return Ok(true);
            }
            continue;
        }
        let mut moved = false;
        let ex = c.ex.as_mut().expect("a request is being forwarded");
        let f = ex.fnc.expect("connected");
        let slot = cx.pool.slots.get(f).expect("a live function connection");
        let room = match ex.reading.started() {
            true => ex.fn_in.len() < BUF && (c.out.len() - c.opos) < BUF,
            false => ex.fn_in.len() <= RESPONSE_LIMITS.max_header_bytes,
        };
        if slot.rd && !ex.fn_eof && room {
            match crate::sys::retry(|| slot.stream.read(&mut cx.bufs.read)) {
                Ok(0) => {
                    ex.fn_eof = true;
                    moved = true;
                }
                Ok(n) => {
                    ex.fn_in.extend_from_slice(&cx.bufs.read[..n]);
                    slot.rd = n == cx.bufs.read.len() || slot.hup;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.rd = false,
                Err(e) => {
                    ex.fn_eof = true;
                    ex.fn_error = Some(e);
                    moved = true;
                }
            }
        }
        if ex.fn_eof && !moved {
            return function_closed(cx, c);
        }
        progress |= moved;
        if !moved {
            return Ok(progress);
        }
    }
}

/// The common case of a large answer, without copying it: a body that goes out as it came
/// (Content-Length, or close-delimited to an HTTP/1.0 client) is read into the loop's buffer
/// and written from there straight to a client that keeps up; only what the client does not
/// take at once is kept in its output buffer. Returns whether it moved bytes.
pub(super) fn pass_through(cx: &mut Cx, c: &mut Client) -> Flow {
    let ex = c.ex.as_mut().expect("a request is being forwarded");
    let f = ex.fnc.expect("connected");
    let slot = cx.pool.slots.get(f).expect("a live function connection");
    let left = match &ex.reading {
        Reading::Body {
            decoder,
            encoder: Encoder::Raw,
        } => match decoder.raw_left() {
            Some(left) => left,
            None => return Ok(false),
        },
        _ => return Ok(false),
    };
    if !(slot.rd && c.wr && !ex.fn_eof && ex.fn_in.is_empty() && c.opos == c.out.len()) {
        return Ok(false);
    }
    let want = usize::try_from(left)
        .unwrap_or(usize::MAX)
        .min(cx.bufs.read.len());
    let n = match crate::sys::retry(|| slot.stream.read(&mut cx.bufs.read[..want])) {
        Ok(0) => {
            ex.fn_eof = true;
            return Ok(true);
        }
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            slot.rd = false;
            return Ok(false);
        }
        Err(e) => {
            ex.fn_eof = true;
            ex.fn_error = Some(e);
            return Ok(true);
        }
    };
    slot.rd = n == want || slot.hup;
    let data = &cx.bufs.read[..n];
    if let Reading::Body { decoder, .. } = &mut ex.reading {
        if let Err(e) = decoder.step(data, n) {
            return fail(cx, c, Failure::ResponseBody(e));
        }
    }
    let written = match crate::sys::retry(|| c.stream.write(data)) {
        Ok(w) => w,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(_) => return Err(client::lost_answer(c)),
    };
    if written < n {
        c.wr = false;
        c.out.extend_from_slice(&data[written..]);
    }
    if ex.reading.done() {
        complete(cx, c);
    }
    Ok(true)
}

/// The function closed its side and everything it sent has been used.
pub(super) fn function_closed(cx: &mut Cx, c: &mut Client) -> Flow {
    let ex = c.ex.as_mut().expect("a request is being forwarded");
    let read_error = ex.fn_error.take();
    if !ex.reading.started() {
        if !ex.fn_in.is_empty() {
            return fail(cx, c, Failure::ResponseHead(HttpError::UnexpectedEof));
        }
        // Nothing of an answer: did the request get there at all?
        let write_error = match std::mem::replace(&mut ex.writing, Writing::Done) {
            Writing::Failed(e) => Some(e),
            other => {
                ex.writing = other;
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
        if unread && ex.resendable() {
            return resend(cx, c, failure);
        }
        return fail(cx, c, failure);
    }
    let at_eof = match &mut ex.reading {
        Reading::Body { decoder, .. } => decoder.at_eof(),
        Reading::Head => Err(HttpError::UnexpectedEof),
    };
    match (at_eof, read_error) {
        (Ok(()), _) => {
            complete(cx, c);
            Ok(true)
        }
        (Err(_), Some(e)) => fail(cx, c, Failure::ResponseBody(HttpError::Read(e))),
        (Err(e), None) => fail(cx, c, Failure::ResponseBody(e)),
    }
}

/// Uses what the function sent: its head, then its body into the client's output.
pub(super) fn relay(cx: &mut Cx, c: &mut Client) -> Flow {
    let ex = c.ex.as_mut().expect("a request is being forwarded");
    if !ex.reading.started() {
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
        return match parsed {
            Ok(Some(n)) => {
                ex.fn_in.drain(..n);
                answer_head(cx, c);
                Ok(true)
            }
            Ok(None) if ex.fn_in.len() > RESPONSE_LIMITS.max_header_bytes => {
                fail(cx, c, Failure::ResponseHead(HttpError::HeadersTooLarge))
            }
            Ok(None) => Ok(false),
            Err(e) => fail(cx, c, Failure::ResponseHead(e)),
        };
    }
    let Reading::Body { decoder, encoder } = &mut ex.reading else {
        return Ok(false);
    };
    let mut used = 0;
    let mut progress = false;
    while !decoder.is_done() && (c.out.len() - c.opos) < BUF {
        let input = &ex.fn_in[used..];
        let room = BUF - (c.out.len() - c.opos);
        let step = match decoder.step(input, room) {
            Ok(s) => s,
            Err(e) => {
                ex.fn_in.drain(..used);
                return fail(cx, c, Failure::ResponseBody(e));
            }
        };
        encoder.data(&input[step.data.clone()], &mut c.out);
        used += step.consumed;
        if step.is_stalled() {
            break;
        }
        progress = true;
    }
    ex.fn_in.drain(..used);
    if ex.reading.done() {
        complete(cx, c);
        return Ok(true);
    }
    Ok(progress)
}

/// The function's head is in `ex.resp`: what the exchange counts as, and the head for the
/// client (docs/reference.md §4: hop-by-hop fields dropped, `x-fc-request-id` added; a Content-Length
/// answer keeps it, a chunked or close-delimited one goes out chunked to an HTTP/1.1 client
/// and close-delimited to an HTTP/1.0 one).
pub(super) fn answer_head(cx: &mut Cx, c: &mut Client) {
    let p = cx.p;
    let ex = c.ex.as_mut().expect("a request is being forwarded");
    let resp = &ex.resp;
    // Until its codecs are known (and for ever after `101`): bytes as they are.
    ex.reading = Reading::Body {
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
        c.out.extend_from_slice(&cx.bufs.answer);
        // What the function sent after its head belongs to the new protocol.
        c.out.extend_from_slice(&ex.fn_in);
        // A long-lived upgraded connection keeps no buffer it does not use.
        for buf in [&mut ex.fn_in, &mut ex.fn_head, &mut ex.fn_out, &mut ex.body] {
            *buf = Vec::new();
        }
        ex.resp = ResponseHead::default();
        c.phase = Phase::Upgraded;
        return;
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
    ex.reading = Reading::Body {
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
    c.out.extend_from_slice(&cx.bufs.answer);
    c.close_after |= !keep_alive;
}

/// The function's answer is complete (and at most a buffer of it is still to be delivered):
/// its slot and its connection are released now.
pub(super) fn complete(cx: &mut Cx, c: &mut Client) {
    let ex = c.ex.as_mut().expect("a request is being forwarded");
    if let Reading::Body { encoder, .. } = &ex.reading {
        encoder.finish(&mut c.out);
    }
    let reusable = ex.resp.keep_alive
        && ex.fn_in.is_empty()
        && !ex.fn_eof
        && matches!(ex.writing, Writing::Done);
    if !ex.decoder.is_done() {
        c.close_after = true;
    }
    let deadline = ex.deadline;
    release(cx, ex, reusable);
    // The invocation is over: what is left is fc-init's delivery.
    finish::conclude(cx, ex);
    client::enter_deliver(cx, c, deadline);
}

/// After `101 Switching Protocols`: the two connections relayed byte for byte until either
/// side closes; then both are closed.
pub(super) fn relay_upgraded(cx: &mut Cx, c: &mut Client) -> Flow {
    let mut progress = false;
    loop {
        let mut moved = false;
        let ex = c.ex.as_mut().expect("an upgraded exchange");
        let f = ex.fnc.expect("connected");
        let slot = cx.pool.slots.get(f).expect("a live function connection");
        // Client to function, from the client's input buffer.
        if c.ipos < c.inbuf.len() && slot.wr {
            match crate::sys::retry(|| slot.stream.write_parts(&c.inbuf[c.ipos..], &[])) {
                Ok(n) => {
                    c.ipos += n;
                    moved |= n > 0;
                    if c.ipos == c.inbuf.len() {
                        c.inbuf = Vec::new();
                        c.ipos = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.wr = false,
                Err(_) => return Err(Gone),
            }
        }
        // Function to client, through the client's output buffer.
        if slot.rd && !ex.fn_eof && (c.out.len() - c.opos) < BUF {
            let want = (BUF - (c.out.len() - c.opos)).min(cx.bufs.read.len());
            match crate::sys::retry(|| slot.stream.read(&mut cx.bufs.read[..want])) {
                Ok(0) => ex.fn_eof = true,
                Ok(n) => {
                    c.out.extend_from_slice(&cx.bufs.read[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.rd = false,
                Err(_) => return Err(Gone),
            }
        }
        if c.pending().is_empty() && c.rd && !c.eof {
            moved |= client::read_client(cx, c, BUF)?;
        }
        let ex = c.ex.as_ref().expect("an upgraded exchange");
        if (c.eof && c.pending().is_empty()) || (ex.fn_eof && (c.out.len() - c.opos) == 0) {
            return Err(Gone);
        }
        progress |= moved;
        if !moved {
            return Ok(progress);
        }
    }
}

/// A deadline of an admitted or forwarded request passed.
pub(super) fn on_deadline(cx: &mut Cx, c: &mut Client) -> Flow {
    let now = cx.now;
    let ex = c.ex.as_mut().expect("an exchange has a request");
    match c.phase {
        Phase::Admit if ex.next_instance_of.is_some() && now < ex.admit_deadline => {
            let old = ex.next_instance_of.as_ref().map(|n| n.0);
            if cx.p.shared.phase_and_instance() == (Lifecycle::Ready, old.unwrap_or(0)) {
                // The instance outlived the pause after a reset: it is alive, try it again.
                ex.next_instance_of = None;
            }
            let deadline = ex.admit_deadline;
            client::set_deadline(cx, c, deadline);
            Ok(true)
        }
        Phase::Admit if now < ex.admit_deadline => {
            // An earlier wake-up (a retry): the admission's own deadline is next.
            let deadline = ex.admit_deadline;
            client::set_deadline(cx, c, deadline);
            Ok(true)
        }
        Phase::Admit => {
            if let Some(queued) = ex.slot.take_queued() {
                // A slot handed over just now still counts; else the wait is over.
                match queued.take() {
                    Some(Ok(permit)) => ex.slot = Slot::Held(permit),
                    Some(Err(_)) => return admit(cx, c),
                    None => return fail(cx, c, Failure::QueueTimeout),
                }
            }
            if let Some((_, failure)) = ex.next_instance_of.take() {
                return fail(cx, c, failure);
            }
            match decide(&cx.p.shared.snapshot()) {
                Readiness::Refuse(f) => fail(cx, c, f),
                _ => admit(cx, c),
            }
        }
        Phase::Forward | Phase::Upgraded if now < ex.deadline => {
            // A retry's wake-up: the exchange's own deadline is next (the retry, if still
            // due, sets its own again).
            let deadline = ex.deadline;
            client::set_deadline(cx, c, deadline);
            Ok(true)
        }
        Phase::Forward if !ex.reading.started() => {
            // The client's fault (408) only when everything it sent is with the function and
            // more of its body is awaited; a function that has not taken what it was sent
            // (the head, the buffered body, the streamed rest) did not read its request in
            // time: 504 (docs/reference.md §12).
            let waiting_for_client = !matches!(ex.writing, Writing::Failed(_))
                && !ex.decoder.is_done()
                && ex.fpos >= ex.fn_out.len()
                && ex.hpos >= ex.fn_head.len()
                && ex.bpos >= ex.body.len();
            match waiting_for_client {
                true => fail(cx, c, Failure::RequestBody(HttpError::Timeout)),
                false => fail(cx, c, Failure::ResponseHead(HttpError::Timeout)),
            }
        }
        // Cut mid-answer or mid-relay at function.timeout: both sides are closed.
        _ if now >= ex.deadline => {
            // Whatever the answer, the connection closes.
            let _ = fail(cx, c, Failure::Timeout);
            Err(Gone)
        }
        _ => Ok(true),
    }
}
