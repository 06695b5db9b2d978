//! A client connection's life: `Expect: 100-continue` and HTTP/1.0, the header and idle
//! timeouts, `max_connections`, pipelining, large answers, and requests sent again after a
//! reset.

use super::*;

#[test]
fn expect_continue_and_http_1_0() {
    let s = Server::ready("expect", &[], "", &[], "");
    let mut c = s.conn();
    c.write(
        b"POST /invoke HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = c.read().unwrap();
    assert_eq!(interim.status, 100);
    c.write(b"hello");
    let r = c.read().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = s.conn();
    let r = c.send(b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(c.closed());
    // HTTP/1.0 with keep-alive stays open.
    let mut c = s.conn();
    let r = c.send(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(
        c.send(b"GET /old2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .status,
        200
    );
}

#[test]
fn header_timeout_cuts_a_slow_client() {
    let s = Server::ready("slowloris", &[], "", &[("header_timeout", "500ms")], "");
    let mut c = s.conn();
    let start = Instant::now();
    let writer = {
        let mut w = c.r.get_ref().try_clone().unwrap();
        std::thread::spawn(move || {
            // One byte every 50 ms: each read is quick, the head never ends in time.
            for b in
                b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            {
                if w.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    if let Some(r) = c.read() {
        assert_eq!(r.status, 408, "{r:?}");
    }
    assert!(c.closed());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    writer.join().unwrap();
    assert_eq!(s.get("/after").status, 200);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let s = Server::ready("idle", &[], "", &[("idle_timeout", "500ms")], "");
    let mut c = s.conn();
    assert_eq!(c.send(&get("/one", &[])).status, 200);
    let start = Instant::now();
    assert!(c.closed());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn connections_over_max_connections_are_refused() {
    let s = Server::ready("maxconn", &[], "", &[("max_connections", "3")], "");
    // The readiness connection was closed; wait until its slot is free.
    let mut open: Vec<Client> = Vec::new();
    for i in 0..3 {
        let r = wait_for("a connection slot", || {
            let mut c = s.conn();
            c.write(&get(&format!("/held/{i}"), &[]));
            let r = c.read()?;
            (r.status == 200).then(|| {
                open.push(c);
                r
            })
        });
        assert_eq!(r.status, 200);
    }
    let mut extra = s.conn();
    extra.write(&get("/extra", &[]));
    match extra.read() {
        None => {}
        Some(r) => {
            assert_eq!(r.status, 429, "{r:?}");
            assert_eq!(r.error_type(), Some("TooManyRequests"));
            assert!(extra.closed());
        }
    }
    assert!(s.fx.requests("/extra").is_empty());
    // Closing one frees a slot.
    open.pop();
    wait_for("a freed slot", || {
        let mut c = s.conn();
        c.write(&get("/again", &[]));
        c.read().filter(|r| r.status == 200)
    });
}

#[test]
fn a_connection_idle_long_enough_to_give_back_its_buffers_still_serves() {
    let s = Server::ready("release", &[], "", &[("idle_timeout", "5s")], "");
    let mut c = s.conn();
    assert_eq!(c.send(&get("/one", &[])).status, 200);
    // Not a settling pause: the behaviour under test is what happens after 1 s of idleness,
    // when the connection drops its buffers (RELEASE_AFTER) and waits without them.
    std::thread::sleep(Duration::from_millis(1500));
    let mut raw = get("/two", &[]);
    raw.extend(request("POST", "/invoke", &[], b"pipelined"));
    c.write(&raw);
    assert_eq!(c.read().unwrap().json()["path"], "/two");
    assert_eq!(c.read().unwrap().body, b"pipelined");
}

#[test]
fn pipelined_requests_mixing_the_fast_path_and_the_blocking_one_stay_in_order() {
    let s = Server::ready("mixed", &[], "", &[], "[log]\ninvocations = false\n");
    let mut c = s.conn();
    // Served by the event loop, then a chunked upload and an Expect request (both handed to
    // the blocking path, which then owns the connection), then a plain one again.
    let mut raw = get("/m/1", &[]);
    raw.extend_from_slice(
        b"POST /invoke HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n",
    );
    raw.extend(get("/m/3", &[]));
    c.write(&raw);
    assert_eq!(c.read().unwrap().json()["path"], "/m/1");
    assert_eq!(c.read().unwrap().body, b"two");
    assert_eq!(c.read().unwrap().json()["path"], "/m/3");
    c.write(
        b"POST /invoke HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(c.read().unwrap().status, 100);
    c.write(b"four");
    assert_eq!(c.read().unwrap().body, b"four");
    // A fresh connection starts on the fast path again.
    let mut c = s.conn();
    let mut raw = request("POST", "/invoke", &[], b"one");
    raw.extend(get("/m/5", &[]));
    c.write(&raw);
    assert_eq!(c.read().unwrap().body, b"one");
    assert_eq!(c.read().unwrap().json()["path"], "/m/5");
}

#[test]
fn an_answer_too_large_for_the_event_loop_is_relayed_and_the_connection_goes_on() {
    let s = Server::ready("relay", &[], "", &[("max_header_bytes", "64KiB")], "");
    let big = "b".repeat(40_000);
    let mut c = s.conn();
    // A small enough request for the loop; its JSON answer (echoing the header) is not.
    let r = c.send(&get(
        "/large",
        &[("x-big", &big), ("x-fc-request-id", "relayed-1")],
    ));
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(r.json()["headers"]["x-big"], big.as_str());
    assert_eq!(r.header("x-fc-request-id"), Some("relayed-1"));
    assert_eq!(
        invoke_end(&s.p, "relayed-1"),
        format!("{INVOKE_END}relayed-1")
    );
    // The same connection serves on, small and large, in order.
    let mut raw = get("/after/1", &[]);
    raw.extend(get("/after/2", &[("x-big", &big)]));
    raw.extend(get("/after/3", &[]));
    c.write(&raw);
    for i in 1..=3 {
        let r = c.read().expect("an answer");
        assert_eq!(r.json()["path"], format!("/after/{i}"));
    }
    let (status, metrics) = admin_get(&s.fx.admin, "/metrics");
    assert_eq!(status, 200);
    let success: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fc_init_requests_total{outcome=\"success\"} "))
        .expect("the success counter")
        .parse()
        .unwrap();
    // /ready, /large and the three pipelined ones.
    assert!(success >= 5, "{metrics}");
    let in_flight = metrics
        .lines()
        .find(|l| l.starts_with("fc_init_in_flight_requests "))
        .expect("the in-flight gauge");
    assert_eq!(in_flight, "fc_init_in_flight_requests 0");
}

#[test]
fn a_function_that_never_answers_is_a_function_timeout_on_a_kept_connection() {
    let s = Server::ready("fasttimeout", &[], "timeout = \"1s\"", &[], "");
    let mut c = s.conn();
    assert_eq!(c.send(&get("/first", &[])).status, 200);
    let start = Instant::now();
    let r = c.send(&get(
        "/slow",
        &[("x-test-sleep", "5"), ("x-fc-request-id", "slow-1")],
    ));
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.error_type(), Some("FunctionTimeout"));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(invoke_end(&s.p, "slow-1").ends_with(", Error: Unhandled function error"));
    // The function's side of that exchange is never reused; a new request is served.
    assert_eq!(s.get("/fine").status, 200);
}

#[test]
fn a_request_sent_again_after_a_reset_gets_its_answer_from_the_next_connection() {
    // The fixture resets the first connection that sends a request (here /ready, sent by
    // `Server::ready`), with the request unread: provably undelivered, so fc-init sends it
    // again, on a clean connection, and the client never sees the reset.
    let s = Server::ready("resend", &[("FIXTURE_RESET_FIRST", "1")], "", &[], "");
    let record = s.fx.record();
    assert_eq!(
        record.iter().filter(|r| r["event"] == "reset").count(),
        1,
        "{record:?}"
    );
    assert_eq!(
        s.fx.requests("/ready").len(),
        1,
        "answered once, by the second connection"
    );
    assert_eq!(s.get("/next").status, 200);
}
