//! Exchanges that succeed: forwarding, keep-alive, pipelining, bodies both ways (length,
//! chunked, streamed, close-delimited), early answers, upgrades, slow readers, the FC lines.

use std::time::Duration;

use super::{get, ok, Sim};

#[test]
fn a_get_is_forwarded_with_the_fc_fields_and_answered_with_its_request_id() {
    let mut s = Sim::new("");
    s.send(&get(
        "/a?b=1",
        &["x-fc-request-id: req-1", "X-Custom: kept"],
    ));
    let got = s.fn_got(0);
    assert!(got.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{got}");
    for field in [
        "x-fc-request-id: req-1",
        "x-fc-control-path: /http-invoke",
        "x-fc-function-timeout: 10",
        "Host: t",
        "X-Custom: kept",
    ] {
        assert!(got.contains(field), "{field} in {got}");
    }
    s.answer(0, &ok("hello"));
    let r = s.received();
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("x-fc-request-id: req-1"), "{r}");
    assert!(r.ends_with("\r\n\r\nhello"), "{r}");
    assert_eq!(
        s.stdout,
        "FC Invoke Start RequestId: req-1\nFC Invoke End RequestId: req-1\n"
    );
    assert!(!s.closed());
}

#[test]
fn the_start_line_is_written_before_the_request_goes_out() {
    let mut s = Sim::new("");
    s.send(&get("/", &["x-fc-request-id: first"]));
    assert_eq!(
        s.sent_before_start_line,
        vec![0],
        "nothing sent before the line"
    );
    assert!(s.fn_got(0).starts_with("GET / HTTP/1.1"));
}

#[test]
fn without_invocation_lines_the_request_goes_out_at_once() {
    let mut s = Sim::new("[log]\ninvocations = false\n");
    s.send(&get("/", &[]));
    assert!(s.fn_got(0).starts_with("GET / HTTP/1.1"));
    s.answer(0, &ok(""));
    assert_eq!(s.stdout, "");
    assert_eq!(s.metric("fc_init_requests_total{outcome=\"success\"}"), 1);
}

#[test]
fn an_invalid_request_id_is_replaced_by_a_fresh_one() {
    let mut s = Sim::new("");
    s.send(&get("/", &["x-fc-request-id: bad id with spaces"]));
    let got = s.fn_got(0);
    let id = got
        .lines()
        .find_map(|l| l.strip_prefix("x-fc-request-id: "))
        .expect("an id");
    assert!(!id.contains(' ') && !id.is_empty(), "{id}");
}

#[test]
fn keep_alive_serves_two_requests_over_one_pooled_function_connection() {
    let mut s = Sim::new("");
    s.send(&get("/one", &[]));
    s.answer(0, &ok("1"));
    assert!(s.received().ends_with("1"));
    s.send(&get("/two", &[]));
    assert_eq!(s.connections(), 1, "the pooled connection is used again");
    assert!(s.fn_got(0).contains("GET /two HTTP/1.1"));
    s.answer(0, &ok("2"));
    assert!(s.received().ends_with("2"));
    assert!(!s.closed() && !s.fn_closed(0));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut s = Sim::new("");
    let mut both = get("/one", &[]);
    both.extend_from_slice(&get("/two", &[]));
    s.send(&both);
    assert!(!s.fn_got(0).contains("/two"), "one at a time");
    s.answer(0, &ok("first"));
    s.answer(0, &ok("second"));
    let r = s.received();
    let (a, b) = (r.find("first"), r.find("second"));
    assert!(a.is_some() && b.is_some() && a < b, "{r}");
}

#[test]
fn a_small_chunked_body_reaches_the_function_with_its_length() {
    let mut s = Sim::new("");
    s.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let got = s.fn_got(0);
    assert!(got.contains("Content-Length: 5\r\n"), "{got}");
    assert!(!got.contains("chunked"), "{got}");
    assert!(got.ends_with("\r\n\r\nhello"), "{got}");
}

#[test]
fn a_chunked_body_larger_than_body_buffer_streams_chunked_from_a_slot() {
    let mut s = Sim::new("body_buffer = \"0\"\n");
    s.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    let got = s.fn_got(0);
    assert!(got.contains("Transfer-Encoding: chunked\r\n"), "{got}");
    assert!(got.ends_with("3\r\nabc\r\n"), "{got}");
    s.send(b"2\r\nde\r\n0\r\n\r\n");
    assert!(s.fn_got(0).ends_with("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
    s.answer(0, &ok("done"));
    assert!(s.received().ends_with("done"));
}

#[test]
fn a_length_body_larger_than_body_buffer_streams_as_it_arrives() {
    let mut s = Sim::new("body_buffer = \"4\"\n");
    s.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123");
    let got = s.fn_got(0);
    assert!(got.contains("Content-Length: 10\r\n"), "{got}");
    assert!(got.ends_with("0123"), "{got}");
    s.send(b"456789");
    assert!(s.fn_got(0).ends_with("0123456789"));
}

#[test]
fn a_chunked_answer_goes_chunked_to_an_http_1_1_client() {
    let mut s = Sim::new("");
    s.send(&get("/", &[]));
    s.answer(
        0,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\n\r\n",
    );
    let r = s.received();
    assert!(r.contains("Transfer-Encoding: chunked"), "{r}");
    assert!(r.ends_with("4\r\nwiki\r\n0\r\n\r\n"), "{r}");
    assert!(!s.closed());
}

#[test]
fn a_close_delimited_answer_goes_chunked_to_an_http_1_1_client() {
    let mut s = Sim::new("");
    s.send(&get("/", &[]));
    s.answer(
        0,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
    );
    s.fn_eof(0);
    let r = s.received();
    assert!(r.contains("Transfer-Encoding: chunked"), "{r}");
    assert!(r.ends_with("b\r\nuntil close\r\n0\r\n\r\n"), "{r}");
    assert!(!s.closed(), "the client connection stays usable");
    assert!(s.fn_closed(0), "the function's does not");
}

#[test]
fn a_close_delimited_answer_to_an_http_1_0_client_closes_its_connection() {
    let mut s = Sim::new("");
    s.send(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n");
    s.answer(0, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nold");
    s.fn_eof(0);
    let r = s.received();
    assert!(r.contains("Connection: close"), "{r}");
    assert!(r.ends_with("\r\n\r\nold"), "{r}");
    assert!(s.shut() || s.closed());
}

#[test]
fn an_http_1_0_request_without_host_gets_the_listeners_address() {
    let mut s = Sim::new("");
    s.send(b"GET /old HTTP/1.0\r\n\r\n");
    let got = s.fn_got(0);
    assert!(got.starts_with("GET /old HTTP/1.1\r\n"), "{got}");
    assert!(got.contains("Host: 127.0.0.1:9000\r\n"), "{got}");
}

#[test]
fn an_answer_before_the_body_is_read_is_delivered_and_the_connection_closes() {
    let mut s = Sim::new("body_buffer = \"4\"\n");
    s.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123");
    s.answer(
        0,
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let r = s.received();
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("Connection: close"), "{r}");
    assert!(s.shut() || s.closed(), "the rest of the body is never read");
    let end = s.end_line("").expect("an End line").to_owned();
    assert!(!end.contains("Error"), "the function's own answer: {end}");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let mut s = Sim::new("");
    s.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(s.received(), "HTTP/1.1 100 Continue\r\n\r\n");
    s.send(b"ok");
    assert!(s.fn_got(0).ends_with("\r\n\r\nok"));
}

#[test]
fn an_upgrade_is_relayed_byte_for_byte_both_ways_after_101() {
    let mut s = Sim::new("");
    s.send(&get(
        "/ws",
        &[
            "Connection: upgrade",
            "Upgrade: websocket",
            "x-fc-request-id: ws",
        ],
    ));
    let got = s.fn_got(0);
    assert!(got.contains("Connection: upgrade\r\n") && got.contains("Upgrade: websocket\r\n"));
    s.answer(
        0,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi",
    );
    let r = s.received();
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    assert!(r.ends_with("\r\n\r\nhi"), "{r}");
    s.send(b"\x01\x05hello");
    assert!(s.fn_got(0).ends_with("\u{1}\u{5}hello"));
    s.answer(0, b"\x01\x02yo");
    assert_eq!(s.received(), "\u{1}\u{2}yo");
    s.client_eof();
    assert!(s.closed() && s.fn_closed(0));
    assert_eq!(s.end_line("ws"), Some("FC Invoke End RequestId: ws"));
}

#[test]
fn an_h2c_upgrade_is_dropped_and_served_as_http_1_1() {
    let mut s = Sim::new("");
    s.send(&get(
        "/",
        &["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c"],
    ));
    let got = s.fn_got(0);
    assert!(!got.to_ascii_lowercase().contains("upgrade"), "{got}");
    s.answer(0, &ok("plain"));
    assert!(s.received().ends_with("plain"));
}

#[test]
fn a_slow_reader_slows_the_function_and_loses_no_byte() {
    let mut s = Sim::new("");
    s.send(&get("/big", &[]));
    let body = "x".repeat(1 << 20);
    s.client_room(Some(0));
    s.answer(0, &ok(&body));
    assert!(
        s.fn_unread(0) > 0,
        "fc-init stops reading the function while the client does not read"
    );
    let mut got = s.received();
    let body_of = |got: &str| got.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    while body_of(&got) < body.len() {
        s.client_room(Some(64 * 1024));
        let more = s.received();
        assert!(!more.is_empty(), "stalled at {} bytes", got.len());
        got.push_str(&more);
    }
    assert!(got.ends_with(&body) && body_of(&got) == body.len());
    assert_eq!(s.fn_unread(0), 0);
}

#[test]
fn a_hop_by_hop_field_is_not_forwarded() {
    let mut s = Sim::new("");
    s.send(&get(
        "/",
        &[
            "Connection: x-secret",
            "X-Secret: no",
            "Keep-Alive: 5",
            "TE: x",
        ],
    ));
    let got = s.fn_got(0).to_ascii_lowercase();
    assert!(!got.contains("x-secret: no"), "{got}");
    assert!(!got.contains("keep-alive: 5"), "{got}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_idle_timeout_without_a_word() {
    let mut s = Sim::new("idle_timeout = \"5s\"\n");
    s.send(&get("/", &[]));
    s.answer(0, &ok(""));
    s.received();
    s.advance(Duration::from_secs(4));
    assert!(!s.closed());
    s.advance(Duration::from_secs(2));
    assert!(s.closed());
    assert_eq!(s.received(), "");
}

#[test]
fn a_function_s_own_500_to_an_http_invocation_is_a_plain_end_line() {
    let mut s = Sim::new("");
    s.send(&get("/", &["x-fc-request-id: own-500"]));
    s.answer(
        0,
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(s.received().starts_with("HTTP/1.1 500"));
    assert_eq!(
        s.end_line("own-500"),
        Some("FC Invoke End RequestId: own-500")
    );
}

#[test]
fn an_event_invocation_answered_non_2xx_is_a_function_error() {
    let mut s = Sim::new("");
    s.send(
        b"POST /invoke HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nx-fc-request-id: ev-1\r\n\r\nhi",
    );
    assert!(s.fn_got(0).contains("x-fc-control-path: /invoke\r\n"));
    s.answer(0, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        s.end_line("ev-1"),
        Some("FC Invoke End RequestId: ev-1, Error: Unhandled function error")
    );
    assert_eq!(
        s.metric("fc_init_requests_total{outcome=\"function_error\"}"),
        1
    );
}

#[test]
fn under_platform_fc_an_async_request_is_forwarded_as_it_came() {
    let mut s = Sim::new("platform = \"fc\"\n");
    s.send(&get("/", &["X-Fc-Invocation-Type: Async"]));
    assert!(s.fn_got(0).contains("X-Fc-Invocation-Type: Async\r\n"));
}

#[test]
fn a_body_that_does_not_fit_the_budget_waits_unread_then_gets_408() {
    let mut s = Sim::new("body_buffer_total = \"4\"\nbody_timeout = \"3s\"\n");
    // Another connection's body holds half the budget.
    let mut other = None;
    assert!(s.p.budget.grow(&mut other, 2));
    s.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(
        s.connections(),
        0,
        "waits: 3 bytes do not fit in the 2 left"
    );
    drop(other);
    s.drive();
    assert_eq!(s.connections(), 1, "goes on once bytes came back");
    assert!(s.fn_got(0).ends_with("abc"));
}

#[test]
fn a_body_waiting_for_the_budget_gets_408_at_body_timeout() {
    let mut s = Sim::new("body_buffer_total = \"4\"\nbody_timeout = \"3s\"\n");
    let mut other = None;
    assert!(s.p.budget.grow(&mut other, 4));
    s.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    s.advance(Duration::from_secs(4));
    let r = s.received();
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert_eq!(s.connections(), 0);
}
