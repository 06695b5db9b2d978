//! A request that never reached the function: sent again once (to this instance over a new
//! connection, or to the next instance), a full backlog tried again after a pause, and what
//! a request holds meanwhile (its slot, its in-flight count), given back whichever way it
//! ends. Also what an upgraded connection holds for its whole life.

use std::io;
use std::time::Duration;

use crate::state::Phase;

use super::{get, ok, Sim};

/// The next instance is up and the loop hears of it.
fn new_instance(s: &mut Sim) {
    let mut status = s.p.shared.snapshot();
    status.phase = Phase::Ready;
    status.instance += 1;
    s.p.shared.publish(status);
    s.cx.handle.status_changed();
    s.drive();
}

/// What the request holds: (in flight, slots taken).
fn held(s: &Sim) -> (u64, usize) {
    (s.p.shared.in_flight() as u64, s.p.limiter.active())
}

#[test]
fn a_refused_connect_waits_for_the_next_instance_holding_its_slot_and_count() {
    let mut s = Sim::new("max_concurrency = 4\n");
    s.connect_fails(io::ErrorKind::ConnectionRefused.into());
    s.send(&get("/", &["x-fc-request-id: again"]));
    assert_eq!(s.connections(), 0, "nothing connected yet");
    assert_eq!(s.received(), "", "no answer: it waits");
    assert_eq!(held(&s), (1, 1), "still admitted while it waits");
    new_instance(&mut s);
    assert_eq!(s.connections(), 1, "sent to the next instance");
    assert!(s.fn_got(0).starts_with("GET / HTTP/1.1"));
    s.answer(0, &ok("there"));
    assert!(s.received().ends_with("there"));
    assert_eq!(held(&s), (0, 0), "given back once answered");
    assert_eq!(s.end_line("again"), Some("FC Invoke End RequestId: again"));
}

#[test]
fn a_refused_connect_with_no_next_instance_is_502_at_function_timeout() {
    let mut s = Sim::with("timeout = \"5s\"", "", Phase::Ready, None);
    s.connect_fails(io::ErrorKind::ConnectionRefused.into());
    s.send(&get("/", &[]));
    assert_eq!(s.received(), "");
    s.advance(Duration::from_secs(6));
    let r = s.received();
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(r.contains("UnhandledInvocationError"), "{r}");
    assert!(r.contains("connection refused"), "the reason is said: {r}");
    assert_eq!(held(&s), (0, 0));
    assert!(
        !s.closed(),
        "nothing was left half-read: the connection goes on"
    );
}

#[test]
fn a_pooled_connection_reset_before_reading_sends_the_request_again_on_a_new_one() {
    let mut s = Sim::new("");
    s.send(&get("/", &[]));
    s.answer(0, &ok("one"));
    assert!(s.received().ends_with("one"));
    // The function closed the pooled connection; the loop has not heard of it yet.
    s.fn_reset(0);
    s.send(&get("/", &["x-fc-request-id: second"]));
    assert_eq!(s.connections(), 2, "a new connection to the same instance");
    assert!(s.fn_got(1).contains("x-fc-request-id: second"));
    s.answer(1, &ok("two"));
    assert!(s.received().ends_with("two"));
    assert_eq!(s.metric("fc_init_requests_total{outcome=\"success\"}"), 2);
    assert_eq!(held(&s), (0, 0));
}

#[test]
fn a_fresh_connection_reset_waits_a_moment_then_tries_the_same_instance_once_more() {
    let mut s = Sim::new("");
    s.functions_take(Some(0));
    s.send(&get("/", &[]));
    assert_eq!(s.connections(), 1);
    // The instance's listener accepted, then the process died with the request unread.
    s.fn_reset(0);
    assert_eq!(s.connections(), 1, "waits for the supervisor's word first");
    assert_eq!(held(&s), (1, 1));
    s.functions_take(None);
    // No new instance within the pause: this one is alive after all.
    s.advance(super::super::forward::DYING);
    assert_eq!(s.connections(), 2, "the same instance, once more");
    assert!(s.fn_got(1).starts_with("GET / HTTP/1.1"));
    s.answer(1, &ok("late"));
    assert!(s.received().ends_with("late"));
    assert_eq!(held(&s), (0, 0));
}

#[test]
fn a_request_is_sent_again_only_once() {
    let mut s = Sim::new("");
    s.send(&get("/", &[]));
    s.answer(0, &ok("one"));
    s.received();
    s.fn_reset(0);
    // The new connection is reset too, before it takes anything.
    s.functions_take(Some(0));
    s.send(&get("/", &["x-fc-request-id: twice"]));
    assert_eq!(s.connections(), 2);
    s.fn_reset(1);
    let r = s.received();
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(r.contains("UnhandledInvocationError"), "{r}");
    assert_eq!(s.connections(), 2, "no third try");
    assert_eq!(held(&s), (0, 0));
    assert_eq!(
        s.end_line("twice"),
        Some("FC Invoke End RequestId: twice, Error: Unhandled function error")
    );
}

#[test]
fn a_full_backlog_is_tried_again_after_a_pause() {
    let mut s = Sim::new("");
    s.connect_fails(io::ErrorKind::WouldBlock.into());
    s.send(&get("/", &[]));
    assert_eq!(s.connections(), 0, "the backlog is full");
    assert_eq!(held(&s), (1, 1), "admitted: it holds its slot meanwhile");
    s.advance(Duration::from_millis(2));
    assert_eq!(s.connections(), 1, "tried again after the pause");
    s.answer(0, &ok("in"));
    assert!(s.received().ends_with("in"));
    assert_eq!(held(&s), (0, 0));
}

#[test]
fn an_upgraded_connection_holds_its_slot_until_either_side_closes() {
    let mut s = Sim::new("");
    s.send(&get("/ws", &["Connection: upgrade", "Upgrade: websocket"]));
    s.answer(
        0,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    assert!(s.received().starts_with("HTTP/1.1 101"));
    assert_eq!(held(&s), (1, 1), "in flight for its whole life");
    s.fn_eof(0);
    assert!(
        s.closed(),
        "the function closed: so does the client connection"
    );
    assert_eq!(held(&s), (0, 0));
}

#[test]
fn an_upgraded_connection_is_cut_at_function_timeout() {
    let mut s = Sim::with("timeout = \"5s\"", "", Phase::Ready, None);
    s.send(&get("/ws", &["Connection: upgrade", "Upgrade: websocket"]));
    s.answer(
        0,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    );
    s.received();
    s.advance(Duration::from_secs(6));
    assert!(s.closed() && s.fn_closed(0));
    assert_eq!(held(&s), (0, 0));
}
