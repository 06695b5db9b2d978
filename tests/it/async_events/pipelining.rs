//! Submissions on a pipelined connection keep its order and a full store answers them 429
//! without closing it; a forced terminate charges no other event a retry.

use super::*;

/// Reads one HTTP/1.1 answer (Content-Length framed, as all of fc-init's own are): status,
/// headers (lowercased names), body.
fn read_answer(r: &mut impl std::io::BufRead) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').expect("header colon");
        headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len = header(&headers, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    (status, headers, body)
}

/// Submissions served by the event loops (the whole request in one write) keep the order of a
/// pipeline, whatever comes between them: synchronous requests, a duplicate id, a chunked
/// submission (which takes the blocking path for the rest of the connection).
fn pipelined_submissions_mixed_with_sync_requests_answer_in_order_on(b: Backend) {
    use std::io::Write;
    let s = AsyncServer::start_on(&b, "async-pipeline", "", "");
    let submit = |id: &str, body: &str| {
        format!(
            "POST /invoke?n={id} HTTP/1.1\r\nHost: x\r\nX-Fc-Invocation-Type: Async\r\n\
             x-fc-request-id: {id}\r\nx-custom: kept\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let raw = [
        submit("pipe-1", "one"),
        "GET /sync-1 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        submit("pipe-1", "a duplicate"),
        submit("pipe-2", "two"),
        "GET /sync-2 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "POST /invoke HTTP/1.1\r\nHost: x\r\nX-Fc-Invocation-Type: Async\r\n\
         x-fc-request-id: pipe-3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthree\r\n0\r\n\r\n"
            .to_owned(),
        "GET /sync-3 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
    ]
    .concat();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.fx.port)).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut r = std::io::BufReader::new(stream);
    let expect = [
        (202, "pipe-1"),
        (200, "/sync-1"),
        (202, "pipe-1"),
        (202, "pipe-2"),
        (200, "/sync-2"),
        (202, "pipe-3"),
        (200, "/sync-3"),
    ];
    for (i, (status, what)) in expect.into_iter().enumerate() {
        let (got, headers, body) = read_answer(&mut r);
        assert_eq!(
            got,
            status,
            "answer {i}: {}",
            String::from_utf8_lossy(&body)
        );
        let json: Value = serde_json::from_slice(&body).unwrap();
        if status == 202 {
            assert_eq!(
                header(&headers, "x-fc-request-id"),
                Some(what),
                "answer {i}"
            );
            assert_eq!(json["requestId"], what, "answer {i}");
        } else {
            assert_eq!(json["path"], what, "answer {i}");
        }
    }
    for id in ["pipe-1", "pipe-2", "pipe-3"] {
        s.wait_status(id, "FINISHED");
    }
    let runs = s.invokes_of("pipe-1");
    assert_eq!(runs.len(), 1, "a duplicate id runs nothing twice");
    assert_eq!(
        runs[0]["body_len"], 3,
        "the first submission is the one stored"
    );
    assert_eq!(runs[0]["query"], "n=pipe-1");
    assert_eq!(runs[0]["headers"]["x-custom"], "kept");
    assert!(runs[0]["headers"]["x-fc-invocation-type"].is_null());
    assert_eq!(s.invokes_of("pipe-3")[0]["body_len"], 5);
}

/// A full store answers a pipelined submission 429 on the fast path and the connection goes on.
fn a_full_store_answers_pipelined_submissions_429_and_keeps_the_connection_on(b: Backend) {
    use std::io::Write;
    let s = AsyncServer::start_on(
        &b,
        "async-full-pipeline",
        "",
        "max_queued = 1\nmax_concurrency = 1\n",
    );
    let busy = s.submit("/invoke", &[("x-test-sleep", "30")], b"");
    s.wait_status(&busy, "RUNNING");
    let submit = |id: &str| {
        format!(
            "POST /invoke HTTP/1.1\r\nHost: x\r\nX-Fc-Invocation-Type: Async\r\n\
             x-fc-request-id: {id}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let raw = [
        submit("full-1"),
        submit("full-2"),
        submit("full-1"),
        "GET /after HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
    ]
    .concat();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.fx.port)).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut r = std::io::BufReader::new(stream);
    let (status, _, _) = read_answer(&mut r);
    assert_eq!(status, 202, "one queued event fits");
    let (status, headers, body) = read_answer(&mut r);
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "x-fc-error-type"), Some("TooManyRequests"));
    assert_eq!(header(&headers, "x-fc-request-id"), Some("full-2"));
    let (status, _, _) = read_answer(&mut r);
    assert_eq!(status, 202, "an id already stored wins over the limit");
    let (status, _, body) = read_answer(&mut r);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["path"],
        "/after"
    );
    s.ctl(&["events", "terminate", &busy]);
}

/// Issue 8: a forced terminate of one event cut the other running events short, and their
/// re-run was charged against `max_retries` (docs/reference.md §10: only an event's own failure
/// uses a retry; `attempts` still counts every start). Here the other event fails on its own
/// every time: cut once by the kill, it must still get 1 + max_retries attempts of its own.
fn a_forced_terminate_does_not_charge_other_running_events_a_retry_on(b: Backend) {
    let s = AsyncServer::start_on(
        &b,
        "async-no-charge",
        "",
        "max_concurrency = 2\nmax_retries = 1\n",
    );
    let victim = s.submit("/invoke", &[("x-test-sleep", "30")], b"");
    s.wait_status(&victim, "RUNNING");
    let other = s.submit(
        "/invoke",
        &[("x-test-sleep", "1"), ("x-test-status", "500")],
        b"",
    );
    wait_for("the other event reached the function", || {
        s.invokes_of(&other).first().cloned()
    });
    let (code, e) = s.ctl(&["events", "terminate", &victim]);
    assert_eq!(code, 0, "{e}");
    let e = s.wait_status(&other, "FAILED");
    assert_eq!(
        e["attempts"], 3,
        "one start cut by the kill, then 1 + max_retries failures of its own: {e}"
    );
    assert_eq!(s.invokes_of(&other).len(), 3);
}

on_both!(
    a_forced_terminate_does_not_charge_other_running_events_a_retry,
    a_forced_terminate_does_not_charge_other_running_events_a_retry_on_redis,
    a_forced_terminate_does_not_charge_other_running_events_a_retry_on
);
on_both!(
    pipelined_submissions_mixed_with_sync_requests_answer_in_order,
    pipelined_submissions_mixed_with_sync_requests_answer_in_order_on_redis,
    pipelined_submissions_mixed_with_sync_requests_answer_in_order_on
);
on_both!(
    a_full_store_answers_pipelined_submissions_429_and_keeps_the_connection,
    a_full_store_answers_pipelined_submissions_429_and_keeps_the_connection_on_redis,
    a_full_store_answers_pipelined_submissions_429_and_keeps_the_connection_on
);
