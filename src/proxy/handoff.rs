//! The handoff on the traffic side (docs/reference.md §10 "Handoff"): a synchronous request
//! with `Prefer: respond-async, wait=N` (RFC 7240) is read whole like an asynchronous
//! submission (at most `async.max_payload`, else 413), handed to the async service — which
//! stores it RUNNING and runs it at once through the listener as a synchronous request
//! ([`crate::events::handoff`]) — and its client waits, in [`Phase::Storing`], for the mail:
//! the function's answer if it begins within N seconds, streamed as it comes (its body as
//! mail, at most a window ahead of what the client has taken, told back by [`pump`]), else,
//! at N seconds, `202` with `{"requestId"}` and `Preference-Applied: respond-async` while the
//! event goes on.
//!
//! The N seconds count from the moment the event is stored. An answer whose head is already
//! on its way when they end is still the client's (the race decides once). A client that goes
//! away detaches the event the same way (dropping its [`Handoff`], which recycling the
//! exchange does); one that has not taken its answer by `function.timeout` is let go.
//!
//! `Prefer` is parsed as RFC 7240 says: several fields or comma-separated preferences, names
//! case-insensitive, optional whitespace around `=`, values as tokens or quoted strings,
//! parameters after `;` ignored, the first occurrence of a preference the one that counts.
//! The handoff needs both `respond-async` and `wait=N` with N a whole number of seconds ≥ 1;
//! anything else (no `wait`, `wait=0`, `wait=abc`) is a preference fc-init does not apply,
//! and the request is served as a plain synchronous one (RFC 7240 §2: a server ignores
//! preferences it does not understand or cannot honour). Not a handoff either: requests that
//! are asynchronous submissions already, `HEAD` (no answer to keep), protocol upgrades, and
//! everything when fc-init's async side is off (`async.enabled = false`, so also under
//! `platform = "fc"` by default, where FC owns asynchronous invocations).

use std::time::{Duration, Instant};

use crate::events::handoff::{Handed, Head, Waiter as Handoff};
use crate::http::codec::Encoder;
use crate::http::fc_error::ErrorType;
use crate::http::write::{push_field, push_u64};
use crate::http::{reason_phrase, RequestHead};

use super::client::{self, own_answer, Io, Phase, Step};
use super::cx::{Cx, Mail};
use super::exchange::Exchange;
use super::shared::Proxy;

/// The longest wait honoured; a longer one is cut to it (the request's own timeouts end it
/// well before).
const MAX_WAIT: u64 = 24 * 3600;

/// The handoff `head` asks for, if this instance offers it (see the module docs).
pub(super) fn wanted(p: &Proxy, head: &RequestHead, upgrade: bool) -> Option<Handoff> {
    if p.asynchronous.is_none() || upgrade || head.method() == "HEAD" || p.stopping() {
        return None;
    }
    let prefer = head
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("prefer"))
        .map(|f| f.value);
    let wait = prefer_wait(prefer)?;
    Some(Handoff::new(Duration::from_secs(wait.min(MAX_WAIT))))
}

/// RFC 7240: the N of `Prefer: respond-async, wait=N` over all the request's `Prefer` field
/// values, when both preferences are there and N is a whole number ≥ 1.
pub(super) fn prefer_wait<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<u64> {
    let mut respond_async = false;
    let mut wait: Option<Option<u64>> = None;
    for value in values {
        for preference in split_outside_quotes(value, b',') {
            // Parameters (after ';') qualify a preference; neither of these has any.
            let Some(first) = split_outside_quotes(preference, b';').next() else {
                continue;
            };
            let (name, v) = match first.iter().position(|&b| b == b'=') {
                Some(i) => (
                    first[..i].trim_ascii(),
                    Some(unquote(first[i + 1..].trim_ascii())),
                ),
                None => (first.trim_ascii(), None),
            };
            if name.eq_ignore_ascii_case(b"respond-async") {
                respond_async = true;
            } else if name.eq_ignore_ascii_case(b"wait") && wait.is_none() {
                // The first occurrence counts (RFC 7240 §2), valid or not.
                wait = Some(v.and_then(seconds));
            }
        }
    }
    match (respond_async, wait) {
        (true, Some(Some(n))) if n >= 1 => Some(n),
        _ => None,
    }
}

/// `delta-seconds`: digits only (saturating: a huge wait is a long one).
fn seconds(v: Vec<u8>) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// A token as it is, a quoted-string without its quotes and escapes.
fn unquote(v: &[u8]) -> Vec<u8> {
    match v {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                match (escaped, b) {
                    (false, b'\\') => escaped = true,
                    _ => {
                        out.push(b);
                        escaped = false;
                    }
                }
            }
            out
        }
        _ => v.to_vec(),
    }
}

/// `v` split at `sep` where it is not inside a quoted-string.
fn split_outside_quotes(v: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    let mut escaped = false;
    v.split(move |&b| {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => quoted = !quoted,
            _ => {}
        }
        b == sep && !quoted
    })
}

/// The body is read whole: the request goes to the async service, and the client waits for
/// its mail (the store and the attempt are the service's threads').
pub(super) fn start(cx: &mut Cx, io: &mut Io, ex: &mut Exchange) -> Step {
    let p = cx.p;
    let (Some(service), Some(handoff)) = (p.asynchronous.as_ref(), ex.handoff.as_ref()) else {
        return Step::Close;
    };
    let body = std::mem::take(&mut ex.body);
    let mut request = super::submit::stored_request(&ex.head, body);
    // The preference was fc-init's: the function is asked synchronously.
    request
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("prefer"));
    let (handle, t) = (cx.handle.clone(), io.token);
    let started = service.hand_off(
        &ex.request_id,
        request,
        handoff.link.clone(),
        Box::new(move |handed| handle.push(Mail::Handoff(t, handed))),
    );
    if let Err(e) = started {
        log::error!("starting the handoff of {}: {e}", ex.request_id);
        let m = format!("the request could not be handed off: {e}");
        let answer = (503, ErrorType::AsyncStoreUnavailable, m.as_str());
        return own_answer(cx, io, Some(&ex.request_id), answer, true);
    }
    client::set_deadline(cx, io, far(cx.now));
    Step::Enter(Phase::Storing)
}

/// No deadline of its own until the event is stored: the service always answers.
fn far(now: Instant) -> Instant {
    now + Duration::from_secs(24 * 3600)
}

/// The service's mail for the handoff `ex` waits for, and what the connection does next.
pub(super) fn handed(cx: &mut Cx, io: &mut Io, ex: &mut Exchange, handed: Handed) -> Step {
    let keep = ex.head.keep_alive && !cx.p.stopping();
    let client_11 = ex.head.version_minor >= 1;
    let Some(handoff) = ex.handoff.as_mut() else {
        return Step::Wait;
    };
    match handed {
        Handed::Running => {
            let due = cx.now + handoff.wait;
            handoff.due = Some(due);
            client::set_deadline(cx, io, due);
            Step::Wait
        }
        // An id stored already is accepted as the event it names; nothing runs twice.
        Handed::NotStored(Ok(_)) => accept(cx, io, ex, keep),
        Handed::NotStored(result) => super::submit::deliver_answer(cx, io, ex, result),
        Handed::Head(head) => {
            // HTTP/1.0 clients get a body of unknown length delimited by the close.
            let keep = keep && (head.length.is_some() || client_11);
            let encoder = write_head(&mut io.out, &ex.request_id, &head, client_11, keep);
            io.close_after |= !keep;
            handoff.streaming = Some((encoder, 0));
            // function.timeout bounds the delivery, as it does a synchronous answer's.
            let by = cx.now + cx.p.cfg.function.timeout;
            client::set_deadline(cx, io, by);
            Step::Progress
        }
        Handed::Body(data) => {
            if let Some((encoder, queued)) = handoff.streaming.as_mut() {
                encoder.data(&data, &mut io.out);
                *queued += data.len() as u64;
            }
            Step::Progress
        }
        Handed::End(whole) => {
            let Some((encoder, _)) = handoff.streaming.take() else {
                return Step::Wait;
            };
            match whole {
                true => encoder.finish(&mut io.out),
                // Cut: the client sees it by the missing end, and the close.
                false => io.close_after = true,
            }
            let by = cx.now + cx.p.cfg.function.timeout;
            client::set_deadline(cx, io, by);
            Step::Enter(Phase::Deliver)
        }
        Handed::NoAnswer(message) => {
            let m = format!("the handed-off request got no answer: {message}");
            let answer = (502, ErrorType::UnhandledInvocationError, m.as_str());
            own_answer(cx, io, Some(&ex.request_id), answer, !keep)
        }
        Handed::Accepted => accept(cx, io, ex, keep),
    }
}

/// The `Preference-Applied` field of a `202`, as written.
const APPLIED: &[u8] = b"Preference-Applied: respond-async\r\n";

/// `202 Accepted` with `{"requestId"}` and `Preference-Applied: respond-async`.
fn accept(cx: &mut Cx, io: &mut Io, ex: &Exchange, keep: bool) -> Step {
    cx.p.metrics
        .record(crate::metrics::Outcome::Success, ex.started.elapsed());
    super::submit::accepted(&mut cx.bufs.answer, &ex.request_id, keep, APPLIED);
    io.out.extend_from_slice(&cx.bufs.answer);
    io.close_after |= !keep;
    client::set_deadline(cx, io, cx.now + cx.p.cfg.server.idle_timeout);
    Step::Enter(Phase::Deliver)
}

/// A deadline of a waiting handoff: at the end of the wait `202`, unless the answer is on its
/// way; a client that has not taken its streamed answer by `function.timeout` is let go.
pub(super) fn on_deadline(cx: &mut Cx, io: &mut Io, ex: &Exchange) -> Step {
    let keep = ex.head.keep_alive && !cx.p.stopping();
    let decided = match ex.handoff.as_ref() {
        Some(Handoff {
            streaming: Some(_), ..
        }) => return Step::Close,
        Some(Handoff {
            due: Some(due),
            link,
            ..
        }) if cx.now >= *due => link.race.detach(),
        Some(Handoff { due: Some(due), .. }) => {
            let due = *due;
            client::set_deadline(cx, io, due);
            return Step::Wait;
        }
        _ => false,
    };
    if !decided {
        // Not stored yet, or the answer's mail is coming.
        client::set_deadline(cx, io, far(cx.now));
        return Step::Wait;
    }
    accept(cx, io, ex, keep)
}

/// After every flush of a waiting handoff's connection: the bytes of its streamed answer the
/// client has taken, told to its thread; a client that closed its side is gone, and so is its
/// wait (nginx's `proxy_ignore_client_abort off`): the attempt goes on detached.
pub(super) fn pump(io: &Io, ex: Option<&Exchange>) -> Step {
    let Some(handoff) = ex.and_then(|ex| ex.handoff.as_ref()) else {
        return Step::Wait;
    };
    if io.hup {
        return Step::Close;
    }
    if let Some((_, queued)) = handoff.streaming {
        let taken = queued.saturating_sub(io.unsent() as u64);
        handoff.link.flow.delivered(taken);
    }
    Step::Wait
}

/// The head of the function's answer for the client: its status and fields, then fc-init's
/// `x-fc-request-id`, its framing (its length, else chunked to an HTTP/1.1 client: `chunked`)
/// and `Connection`; how its body is to be framed.
fn write_head(out: &mut Vec<u8>, request_id: &str, h: &Head, chunked: bool, keep: bool) -> Encoder {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(h.status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(h.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &h.headers {
        if ["x-fc-request-id", "connection", "keep-alive"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    push_field(out, "x-fc-request-id", request_id);
    let bodiless = h.status == 204 || h.status == 304 || (100..200).contains(&h.status);
    let encoder = match h.length {
        _ if bodiless => Encoder::Raw,
        Some(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
            Encoder::Raw
        }
        None if chunked => {
            push_field(out, "Transfer-Encoding", "chunked");
            Encoder::Chunked
        }
        None => Encoder::Raw,
    };
    match (keep, chunked) {
        (false, _) => push_field(out, "Connection", "close"),
        // An HTTP/1.0 client keeps its connection only when told.
        (true, false) => push_field(out, "Connection", "keep-alive"),
        (true, true) => {}
    }
    out.extend_from_slice(b"\r\n");
    encoder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_of(values: &[&str]) -> Option<u64> {
        prefer_wait(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn prefer_is_parsed_as_rfc_7240_says() {
        assert_eq!(wait_of(&["respond-async, wait=10"]), Some(10));
        assert_eq!(wait_of(&["wait=3,respond-async"]), Some(3));
        assert_eq!(wait_of(&["Respond-Async", "WAIT = 5"]), Some(5));
        assert_eq!(
            wait_of(&["respond-async; foo=\"a,b\", wait=\"7\""]),
            Some(7)
        );
        assert_eq!(
            wait_of(&["handling=lenient, respond-async, wait=2;x=1"]),
            Some(2)
        );
        assert_eq!(
            wait_of(&["return=minimal, foo=\"wait=9,\", respond-async, wait=4"]),
            Some(4)
        );
        // The first occurrence counts.
        assert_eq!(wait_of(&["respond-async, wait=2, wait=9"]), Some(2));
        assert_eq!(wait_of(&["respond-async, wait=x, wait=9"]), None);
        assert_eq!(
            wait_of(&["respond-async, wait=99999999999999999999999"]),
            Some(u64::MAX)
        );
    }

    #[test]
    fn a_preference_fc_init_cannot_honour_is_ignored() {
        for values in [
            &["respond-async"][..],
            &["wait=10"],
            &["respond-async, wait=0"],
            &["respond-async, wait=-1"],
            &["respond-async, wait=1.5"],
            &["respond-async, wait="],
            &["respond-async, wait"],
            &["respond-async-not, wait=3"],
            &["\"respond-async, wait=3\""],
            &[""],
        ] {
            assert_eq!(wait_of(values), None, "{values:?}");
        }
    }

    #[test]
    fn an_answer_head_is_written_with_its_framing_and_the_request_id() {
        let h = Head {
            status: 200,
            headers: vec![
                ("Content-Type".into(), b"text/plain".to_vec()),
                ("x-fc-request-id".into(), b"inner".to_vec()),
            ],
            length: Some(5),
        };
        let mut out = Vec::new();
        assert_eq!(write_head(&mut out, "r-1", &h, true, false), Encoder::Raw);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nx-fc-request-id: r-1\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\n"
        );
        let unknown = Head { length: None, ..h };
        let mut out = Vec::new();
        assert_eq!(
            write_head(&mut out, "r-1", &unknown, true, true),
            Encoder::Chunked
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("Transfer-Encoding: chunked\r\n\r\n"));
        let mut out = Vec::new();
        assert_eq!(
            write_head(&mut out, "r-1", &unknown, false, false),
            Encoder::Raw
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("x-fc-request-id: r-1\r\nConnection: close\r\n\r\n"));
    }
}
