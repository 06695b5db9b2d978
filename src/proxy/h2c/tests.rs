//! The h2c relay's decisions and whole h2c connections through the proxy's I/O seam
//! ([`crate::proxy::sim::Sim`]: scripted bytes for the client and the function, a fake
//! clock), each test a line of docs/reference.md §14 written as frames: what each side gets,
//! the FC lines, and that no slot or in-flight count is left held.

use std::time::Duration;

use crate::h2::frame::{self, ErrorCode, Head, Kind, HEADER_LEN};
use crate::h2::hpack::{self, Decoder};
use crate::proxy::sim::Sim;
use crate::state::Phase as Lifecycle;

use super::*;

#[test]
fn the_preface_is_decided_on_the_first_bytes_however_they_are_cut() {
    for n in 0..PREFACE.len() {
        assert_eq!(
            sniff(&PREFACE[..n]),
            Sniff::More,
            "{n} bytes of the preface"
        );
    }
    assert_eq!(sniff(PREFACE), Sniff::H2c);
    let mut more = PREFACE.to_vec();
    more.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    assert_eq!(sniff(&more), Sniff::H2c, "frames after it");
    assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::Http1);
    assert_eq!(sniff(b"POST /"), Sniff::Http1, "P alone waits, PO decides");
    assert_eq!(sniff(b"P"), Sniff::More);
    assert_eq!(sniff(b"PRI * HTTP/1.1\r\n\r\n"), Sniff::Http1);
    assert_eq!(
        sniff(b"PRI * HTTP/2.0\r\n\r\nXX"),
        Sniff::Http1,
        "one byte off"
    );
}

/// The client's side of a connection: the preface and its (empty) SETTINGS.
fn hello() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame::write_settings(&mut out, &[]);
    out
}

/// A request's HEADERS on `stream` (literals, no table), the request left open.
fn request(stream: u32, grpc: bool) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "test"),
        (":path", "/fc.Test/Sleep"),
    ] {
        hpack::encode_literal(&mut block, n.as_bytes(), v.as_bytes());
    }
    if grpc {
        hpack::encode_literal(&mut block, b"content-type", b"application/grpc");
    }
    let mut out = Vec::new();
    frame::write_header_block(&mut out, stream, false, &block);
    out
}

/// The function's SETTINGS.
fn function_hello() -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_settings(&mut out, &[]);
    out
}

/// A whole response on `stream`: `:status 200` with END_STREAM.
fn response(stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    hpack::encode_literal(&mut block, b":status", b"200");
    let mut out = Vec::new();
    frame::write_header_block(&mut out, stream, true, &block);
    out
}

/// The frames in `bytes` (after the preface, if it starts with one): head and payload.
fn frames(mut bytes: &[u8]) -> Vec<(Head, Vec<u8>)> {
    if bytes.starts_with(PREFACE) {
        bytes = &bytes[PREFACE.len()..];
    }
    let mut out = Vec::new();
    while let Ok(Some(raw)) = frame::split(bytes, 1 << 24) {
        bytes = &bytes[raw.bytes.len()..];
        out.push((raw.head, raw.payload.to_vec()));
    }
    assert!(
        bytes.len() < HEADER_LEN || bytes.is_empty(),
        "a partial frame"
    );
    out
}

/// The error code of the RST_STREAM on `stream` in `frames`.
fn reset_of(frames: &[(Head, Vec<u8>)], stream: u32) -> Option<ErrorCode> {
    frames
        .iter()
        .find(|(h, _)| h.kind == Kind::RstStream && h.stream == stream)
        .map(|(_, p)| ErrorCode::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
}

/// The fields of the header blocks on `stream` in `frames` (one decoder for the whole side).
fn fields(frames: &[(Head, Vec<u8>)], stream: u32) -> Vec<(String, String)> {
    let mut d = Decoder::new(4096);
    let mut out = Vec::new();
    for (h, p) in frames {
        if h.kind != Kind::Headers {
            continue;
        }
        let mut these = Vec::new();
        d.decode(p, &mut |f| {
            these.push((
                String::from_utf8_lossy(f.name).into_owned(),
                String::from_utf8_lossy(f.value).into_owned(),
            ))
        })
        .expect("a block fc-init wrote decodes");
        if h.stream == stream {
            out.extend(these);
        }
    }
    out
}

fn value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_stream_over_max_concurrency_is_refused_and_a_stream_ending_gives_its_slot_back() {
    let mut s = Sim::new("max_concurrency = 1\n");
    let mut bytes = hello();
    bytes.extend(request(1, true));
    bytes.extend(request(3, true));
    s.send(&bytes);
    s.answer(0, &function_hello());
    let to_client = frames(&s.received_bytes());
    assert_eq!(reset_of(&to_client, 3), Some(ErrorCode::RefusedStream));
    assert_eq!(reset_of(&to_client, 1), None);
    assert_eq!(s.p.limiter.active(), 1, "stream 1 holds the slot");
    assert_eq!(s.p.shared.in_flight(), 1);
    assert_eq!(
        s.metric("fc_init_requests_total{outcome=\"TooManyRequests\"}"),
        1
    );
    // The function got stream 1 (with an id) and never stream 3.
    let to_function = frames(&s.fn_got_bytes(0));
    let id = value(&fields(&to_function, 1), "x-fc-request-id")
        .expect("an id added")
        .to_owned();
    assert!(to_function.iter().all(|(h, _)| h.stream != 3));
    s.answer(0, &response(1));
    assert_eq!(s.p.limiter.active(), 0, "the slot is given back");
    assert_eq!(s.p.shared.in_flight(), 0);
    assert_eq!(
        s.end_line(&id),
        Some(format!("FC Invoke End RequestId: {id}").as_str())
    );
    assert!(s
        .stdout
        .contains(&format!("FC Invoke Start RequestId: {id}\n")));
}

#[test]
fn the_start_line_is_out_before_the_headers_reach_the_function() {
    let mut s = Sim::new("");
    let mut bytes = hello();
    bytes.extend(request(1, false));
    s.send(&bytes);
    // When the Start line went out, the function had at most the preface and SETTINGS.
    let before = *s.sent_before_start_line.first().expect("a Start line");
    let got = s.fn_got_bytes(0);
    assert!(frames(&got[..before])
        .iter()
        .all(|(h, _)| h.kind != Kind::Headers));
    assert!(frames(&got).iter().any(|(h, _)| h.kind == Kind::Headers));
}

#[test]
fn function_timeout_answers_grpc_deadline_exceeded_and_resets_the_function_side() {
    let mut s = Sim::with("timeout = \"2s\"", "", Lifecycle::Ready, None);
    let mut bytes = hello();
    bytes.extend(request(1, true));
    s.send(&bytes);
    s.answer(0, &function_hello());
    s.received_bytes();
    s.advance(Duration::from_millis(2100));
    let to_client = frames(&s.received_bytes());
    let answer = fields(&to_client, 1);
    assert_eq!(value(&answer, "grpc-status"), Some("4"), "{answer:?}");
    assert_eq!(value(&answer, "x-fc-error-type"), Some("FunctionTimeout"));
    let id = value(&answer, "x-fc-request-id")
        .expect("the id")
        .to_owned();
    assert_eq!(
        reset_of(&frames(&s.fn_got_bytes(0)), 1),
        Some(ErrorCode::Cancel)
    );
    assert!(s
        .end_line(&id)
        .is_some_and(|l| l.ends_with("Error: Unhandled function error")));
    assert_eq!(s.p.limiter.active(), 0);
    assert_eq!(s.p.shared.in_flight(), 0);
    assert_eq!(
        s.metric("fc_init_requests_total{outcome=\"FunctionTimeout\"}"),
        1
    );
}

#[test]
fn the_shutdown_sends_goaway_and_the_drain_deadline_answers_instance_stopping() {
    let drain = "[shutdown]\ndrain_timeout = \"5s\"\n";
    let mut s = Sim::with("timeout = \"60s\"", drain, Lifecycle::Ready, None);
    let mut bytes = hello();
    bytes.extend(request(1, true));
    s.send(&bytes);
    s.answer(0, &function_hello());
    s.received_bytes();
    s.p.begin_stopping();
    s.drive();
    let to_client = frames(&s.received_bytes());
    assert!(
        to_client.iter().any(|(h, _)| h.kind == Kind::GoAway),
        "GOAWAY at the start of the drain"
    );
    // A stream opened after it is refused; the one in flight runs on.
    s.send(&request(3, true));
    assert_eq!(
        reset_of(&frames(&s.received_bytes()), 3),
        Some(ErrorCode::RefusedStream)
    );
    assert_eq!(s.p.shared.in_flight(), 1);
    // shutdown.drain_timeout passes (before function.timeout).
    s.advance(Duration::from_secs(6));
    let answer = fields(&frames(&s.received_bytes()), 1);
    assert_eq!(value(&answer, "grpc-status"), Some("14"), "{answer:?}");
    assert_eq!(value(&answer, "x-fc-error-type"), Some("InstanceStopping"));
    assert_eq!(s.p.shared.in_flight(), 0);
    assert!(s.shut() || s.closed(), "the connection closes");
}

#[test]
fn a_client_gone_ends_its_streams_and_closes_the_function_connection() {
    let mut s = Sim::new("");
    let mut bytes = hello();
    bytes.extend(request(1, false));
    bytes.extend(request(3, false));
    s.send(&bytes);
    s.answer(0, &function_hello());
    assert_eq!(s.p.shared.in_flight(), 2);
    s.client_reset();
    assert!(s.closed());
    assert!(
        s.fn_closed(0),
        "the relay's own function connection is closed"
    );
    assert_eq!(s.p.shared.in_flight(), 0);
    assert_eq!(s.p.limiter.active(), 0);
    assert_eq!(
        s.stdout
            .matches(", Error: client closed the connection")
            .count(),
        2,
        "{}",
        s.stdout
    );
}

#[test]
fn a_header_block_that_never_ends_is_closed_at_header_timeout_not_idle_timeout() {
    let mut s = Sim::with(
        "timeout = \"60s\"",
        "header_timeout = \"2s\"\nidle_timeout = \"300s\"",
        Lifecycle::Ready,
        None,
    );
    let mut bytes = hello();
    let full = request(1, false);
    // HEADERS without END_HEADERS, then a CONTINUATION now and then, never the last one: every
    // frame is whole, so only the block's own bound can end it.
    frame::Head {
        len: 1,
        kind: Kind::Headers,
        flags: 0,
        stream: 1,
    }
    .write(&mut bytes);
    bytes.push(full[HEADER_LEN]);
    s.send(&bytes);
    s.answer(0, &function_hello());
    for i in 0..3 {
        s.advance(Duration::from_millis(600));
        let mut more = Vec::new();
        frame::Head {
            len: 1,
            kind: Kind::Continuation,
            flags: 0,
            stream: 1,
        }
        .write(&mut more);
        more.push(full[HEADER_LEN + 1 + i]);
        s.send(&more);
        assert!(!s.closed() && !s.shut(), "still within header_timeout");
    }
    s.advance(Duration::from_millis(300));
    assert!(
        s.closed() || s.shut(),
        "closed at header_timeout from HEADERS"
    );
    assert_eq!(s.p.shared.in_flight(), 0);
    assert_eq!(s.p.limiter.active(), 0);
}

#[test]
fn under_next_request_an_h2c_stream_for_a_failed_instance_asks_for_an_attempt_and_waits() {
    let mut s = Sim::with(
        "timeout = \"5s\"",
        "[initializer]\npath = \"/init\"\non_failure = \"next-request\"\n",
        Lifecycle::Failed,
        Some("status 500"),
    );
    // A connection alone asks for nothing.
    s.send(&hello());
    assert!(s.told.lock().expect("lock").is_empty());
    s.send(&request(1, true));
    let asked = matches!(
        s.told.lock().expect("lock").as_slice(),
        [crate::supervisor::Event::InitRequested]
    );
    assert!(asked, "one attempt asked for");
    assert_eq!(s.connections(), 0, "waits for its outcome");
    assert!(!s.closed() && !s.shut());
    // The attempt succeeds: the stream goes to the new instance.
    let mut status = s.p.shared.snapshot();
    status.phase = Lifecycle::Ready;
    s.p.shared.publish(status);
    s.cx.handle.status_changed();
    s.drive();
    assert_eq!(s.connections(), 1);
    let to_function = frames(&s.fn_got_bytes(0));
    assert!(to_function
        .iter()
        .any(|(h, _)| h.kind == Kind::Headers && h.stream == 1));
    assert_eq!(s.told.lock().expect("lock").len(), 1, "no second attempt");
}

#[test]
fn under_next_request_a_failed_attempt_answers_the_waiting_streams_initialization_error() {
    let mut s = Sim::with(
        "timeout = \"5s\"",
        "[initializer]\npath = \"/init\"\non_failure = \"next-request\"\n",
        Lifecycle::Failed,
        Some("status 500"),
    );
    let mut bytes = hello();
    bytes.extend(request(1, true));
    s.send(&bytes);
    assert_eq!(s.told.lock().expect("lock").len(), 1);
    // The attempt runs, then fails again.
    let mut status = s.p.shared.snapshot();
    status.phase = Lifecycle::Initializing;
    s.p.shared.publish(status.clone());
    s.cx.handle.status_changed();
    s.drive();
    assert!(s.received_bytes().is_empty(), "still waiting");
    status.phase = Lifecycle::Failed;
    status.initializer_failures += 1;
    s.p.shared.publish(status);
    s.cx.handle.status_changed();
    s.drive();
    let answer = fields(&frames(&s.received_bytes()), 1);
    assert_eq!(value(&answer, "grpc-status"), Some("14"), "{answer:?}");
    assert_eq!(
        value(&answer, "x-fc-error-type"),
        Some("InitializationError")
    );
    assert_eq!(s.connections(), 0);
    assert_eq!(s.p.shared.in_flight(), 0);
    assert_eq!(s.p.limiter.active(), 0);
}

#[test]
fn request_headers_over_max_header_bytes_get_431_counted_as_invalid_argument() {
    let mut s = Sim::new("max_header_bytes = \"2KiB\"");
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "test"),
        (":path", "/"),
    ] {
        hpack::encode_literal(&mut block, n.as_bytes(), v.as_bytes());
    }
    hpack::encode_literal(&mut block, b"x-large", &[b'a'; 3000]);
    let mut bytes = hello();
    frame::write_header_block(&mut bytes, 1, true, &block);
    s.send(&bytes);
    s.answer(0, &function_hello());
    let answer = fields(&frames(&s.received_bytes()), 1);
    assert_eq!(value(&answer, ":status"), Some("431"), "{answer:?}");
    assert!(frames(&s.fn_got_bytes(0))
        .iter()
        .all(|(h, _)| h.kind != Kind::Headers));
    assert_eq!(
        s.metric("fc_init_requests_total{outcome=\"InvalidArgument\"}"),
        1
    );
    assert_eq!(s.p.limiter.active(), 0);
}
