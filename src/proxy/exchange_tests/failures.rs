//! Exchanges that fail, each with the answer the contract gives it (type, status, End line,
//! metrics outcome), and the timeouts on the fake clock.

use std::io;
use std::time::Duration;

use crate::state::Phase;

use super::{get, ok, Sim};

/// The error type and status of fc-init's own answer in `r`.
fn own(r: &str) -> (u16, String) {
    let status = r
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {r:?}"));
    let error = r
        .lines()
        .find_map(|l| l.strip_prefix("X-Fc-Error-Type: "))
        .unwrap_or_else(|| panic!("no error type in {r:?}"))
        .to_owned();
    (status, error)
}

#[test]
fn a_malformed_request_is_400_and_closes() {
    let mut s = Sim::new("");
    s.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(own(&s.received()), (400, "InvalidArgument".into()));
    assert!(s.shut() || s.closed());
    assert_eq!(s.connections(), 0, "nothing reaches the function");
}

#[test]
fn a_head_over_max_header_bytes_is_431() {
    let mut s = Sim::new("max_header_bytes = \"1KiB\"\n");
    let big = format!("X-Big: {}", "b".repeat(2000));
    s.send(&get("/", &[&big]));
    assert_eq!(own(&s.received()), (431, "InvalidArgument".into()));
}

#[test]
fn a_body_over_max_body_is_413_before_it_is_read() {
    let mut s = Sim::new("max_body = \"10\"\n");
    s.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n");
    assert_eq!(own(&s.received()), (413, "InvalidArgument".into()));
    assert_eq!(s.connections(), 0);
}

#[test]
fn connect_is_refused_with_405() {
    let mut s = Sim::new("");
    s.send(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
    assert_eq!(own(&s.received()), (405, "InvalidArgument".into()));
}

#[test]
fn a_head_not_complete_within_header_timeout_is_408() {
    let mut s = Sim::new("header_timeout = \"2s\"\n");
    s.send(b"GET / HTTP/1.1\r\nHo");
    s.advance(Duration::from_secs(3));
    assert_eq!(own(&s.received()), (408, "InvalidArgument".into()));
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_header_timeout_without_an_answer() {
    let mut s = Sim::new("header_timeout = \"2s\"\n");
    s.drive();
    s.advance(Duration::from_secs(1));
    assert!(!s.closed());
    s.advance(Duration::from_secs(2));
    assert!(s.closed());
    assert_eq!(s.received(), "");
}

#[test]
fn a_body_not_complete_within_body_timeout_is_408() {
    let mut s = Sim::new("body_timeout = \"2s\"\n");
    s.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123");
    s.advance(Duration::from_secs(3));
    assert_eq!(own(&s.received()), (408, "InvalidArgument".into()));
    assert_eq!(s.connections(), 0, "a slow body never took a slot");
}

#[test]
fn no_answer_within_function_timeout_is_504() {
    let mut s = Sim::with("timeout = \"5s\"", "", Phase::Ready, None);
    s.send(&get("/", &["x-fc-request-id: late"]));
    s.advance(Duration::from_secs(6));
    assert_eq!(own(&s.received()), (504, "FunctionTimeout".into()));
    assert_eq!(
        s.end_line("late"),
        Some("FC Invoke End RequestId: late, Error: Unhandled function error")
    );
    assert!(s.fn_closed(0));
}

#[test]
fn a_function_that_does_not_read_a_streamed_body_is_504_not_408() {
    let mut s = Sim::with(
        "timeout = \"5s\"",
        "body_buffer = \"4\"\n",
        Phase::Ready,
        None,
    );
    s.functions_take(Some(0));
    s.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123");
    s.advance(Duration::from_secs(6));
    assert_eq!(own(&s.received()), (504, "FunctionTimeout".into()));
}

#[test]
fn a_client_that_stops_sending_a_streamed_body_is_408() {
    let mut s = Sim::with(
        "timeout = \"5s\"",
        "body_buffer = \"4\"\n",
        Phase::Ready,
        None,
    );
    s.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123");
    assert!(
        s.fn_got(0).ends_with("0123"),
        "the function took all there was"
    );
    s.advance(Duration::from_secs(6));
    assert_eq!(own(&s.received()), (408, "InvalidArgument".into()));
}

#[test]
fn a_function_that_closes_without_an_answer_is_502() {
    let mut s = Sim::new("");
    s.send(&get("/", &["x-fc-request-id: gone"]));
    s.fn_eof(0);
    assert_eq!(own(&s.received()), (502, "UnhandledInvocationError".into()));
    assert_eq!(
        s.end_line("gone"),
        Some("FC Invoke End RequestId: gone, Error: Unhandled function error")
    );
    assert!(!s.closed(), "the client connection goes on");
}

#[test]
fn a_malformed_answer_is_502() {
    let mut s = Sim::new("");
    s.send(&get("/", &[]));
    s.answer(0, b"HTTP/1.1 2xx Nope\r\n\r\n");
    assert_eq!(own(&s.received()), (502, "UnhandledInvocationError".into()));
}

#[test]
fn an_answer_cut_after_its_head_closes_the_client_connection() {
    let mut s = Sim::new("");
    s.send(&get("/", &["x-fc-request-id: cut"]));
    s.answer(0, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome");
    s.fn_eof(0);
    let r = s.received();
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("some"), "{r}");
    assert!(s.closed(), "nothing more can be said");
    assert_eq!(
        s.end_line("cut"),
        Some("FC Invoke End RequestId: cut, Error: Unhandled function error")
    );
}

#[test]
fn a_client_that_goes_away_mid_answer_is_client_closed() {
    let mut s = Sim::new("");
    s.send(&get("/sse", &["x-fc-request-id: sse"]));
    s.answer(
        0,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    assert!(s.received().contains("hello"));
    s.client_reset();
    s.answer(0, b"5\r\nworld\r\n");
    assert!(s.closed());
    assert_eq!(
        s.end_line("sse"),
        Some("FC Invoke End RequestId: sse, Error: client closed the connection")
    );
    assert_eq!(
        s.metric("fc_init_requests_total{outcome=\"client_closed\"}"),
        1
    );
}

#[test]
fn out_of_descriptors_is_429_and_not_the_functions_fault() {
    let mut s = Sim::new("");
    s.connect_fails(io::Error::from_raw_os_error(libc::EMFILE));
    s.send(&get("/", &[]));
    assert_eq!(own(&s.received()), (429, "TooManyRequests".into()));
    assert!(!s.closed());
}

#[test]
fn a_full_queue_is_429() {
    let mut s = Sim::new("max_concurrency = 1\nmax_queue = 0\n");
    let held = s.p.limiter.acquire(a_ticket);
    assert!(matches!(held, Ok(super::super::limiter::Admit::Now(_))));
    s.send(&get("/", &[]));
    assert_eq!(own(&s.received()), (429, "TooManyRequests".into()));
    drop(held);
}

fn a_ticket() -> std::sync::Arc<super::super::limiter::Ticket> {
    super::super::limiter::Ticket::new(|| {})
}

#[test]
fn a_request_queued_past_function_timeout_is_504() {
    let mut s = Sim::with(
        "timeout = \"5s\"",
        "max_concurrency = 1\n",
        Phase::Ready,
        None,
    );
    let held = s.p.limiter.acquire(a_ticket);
    s.send(&get("/", &[]));
    assert_eq!(s.received(), "", "waits in the queue");
    s.advance(Duration::from_secs(6));
    assert_eq!(own(&s.received()), (504, "FunctionTimeout".into()));
    drop(held);
}

#[test]
fn a_queued_request_goes_on_when_the_slot_comes_back() {
    let mut s = Sim::new("max_concurrency = 1\n");
    let held = s.p.limiter.acquire(a_ticket);
    s.send(&get("/", &[]));
    assert_eq!(s.connections(), 0);
    drop(held);
    s.drive();
    assert_eq!(s.connections(), 1);
    s.answer(0, &ok("late"));
    assert!(s.received().ends_with("late"));
}

#[test]
fn a_stopping_instance_answers_instance_stopping() {
    let mut s = Sim::new("");
    s.p.begin_stopping();
    s.send(&get("/", &[]));
    assert_eq!(own(&s.received()), (503, "InstanceStopping".into()));
}

#[test]
fn a_failed_initializer_answers_initialization_error_with_its_reason() {
    let mut s = Sim::with("timeout = \"5s\"", "", Phase::Failed, Some("status 500"));
    s.send(&get("/", &[]));
    let r = s.received();
    assert_eq!(own(&r), (503, "InitializationError".into()));
    assert!(r.contains("status 500"), "{r}");
}

#[test]
fn an_event_invocation_gets_fc_inits_errors_with_status_200() {
    let mut s = Sim::with("timeout = \"5s\"", "", Phase::Failed, Some("status 500"));
    s.send(b"POST /invoke HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(own(&s.received()), (200, "InitializationError".into()));
}

#[test]
fn a_request_waits_for_initialization_and_goes_on_when_ready() {
    let mut s = Sim::with("timeout = \"5s\"", "", Phase::Initializing, None);
    s.send(&get("/", &[]));
    assert_eq!(s.connections(), 0, "waits for the instance");
    let mut status = s.p.shared.snapshot();
    status.phase = Phase::Ready;
    s.p.shared.publish(status);
    s.cx.handle.status_changed();
    s.drive();
    assert_eq!(s.connections(), 1);
}

#[test]
fn async_requests_are_refused_when_async_is_disabled() {
    let mut s = Sim::new("");
    s.send(&get("/", &["X-Fc-Invocation-Type: Async"]));
    assert_eq!(own(&s.received()), (400, "InvalidArgument".into()));
}

#[test]
fn a_client_that_closes_before_its_answer_is_client_closed() {
    let mut s = Sim::new("");
    s.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nx-fc-request-id: early\r\n\r\n01");
    s.client_eof();
    assert!(s.closed() || s.shut());
    assert_eq!(
        s.end_line("early"),
        Some("FC Invoke End RequestId: early, Error: client closed the connection")
    );
}

#[test]
fn under_next_request_a_request_for_a_failed_instance_asks_for_an_attempt_and_waits() {
    let mut s = Sim::with(
        "timeout = \"5s\"",
        "[initializer]\npath = \"/init\"\non_failure = \"next-request\"\n",
        Phase::Failed,
        Some("status 500"),
    );
    s.send(&get("/", &[]));
    let told = s.told.lock().expect("lock").len();
    assert_eq!(told, 1, "one initializer attempt asked for");
    assert!(matches!(
        s.told.lock().expect("lock")[0],
        crate::supervisor::Event::InitRequested
    ));
    assert_eq!(s.received(), "", "waits for its outcome");
    assert_eq!(s.connections(), 0);
}

#[test]
fn random_scripts_panic_nothing_and_leave_nothing_held() {
    // The fuzz target's body over a fixed set of pseudo-random scripts (xorshift), so that
    // every `cargo test` runs a little of it.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..300 {
        let mut script = Vec::new();
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            script.push(x as u8);
        }
        // Mostly well-formed traffic, so that exchanges get far.
        script.extend_from_slice(b"\x00\x10GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        script.extend_from_slice(b"\x01\x08HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        crate::proxy::sim::fuzz_exchange(&script);
    }
}

#[test]
fn the_fuzz_targets_seed_scripts_run_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/exchange");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed corpus") {
        let script = std::fs::read(entry.expect("an entry").path()).expect("a seed");
        crate::proxy::sim::fuzz_exchange(&script);
        n += 1;
    }
    assert!(n >= 10, "{n} seeds in {}", dir.display());
}
