//! How an invocation ends, as the FC Invoke End line and the metrics tell it (docs/reference.md §7,
//! §11): a client that goes away is not the function's fault, a function's own 4xx/5xx answer
//! to an HTTP invocation is no failure; and FC-owned asynchronous invocations under
//! `platform = "fc"`.

use std::io::{BufRead, Read, Write};

use crate::proxy::{get, invoke_end, request, Server};
use crate::util::*;

#[test]
fn a_client_that_aborts_an_sse_stream_is_logged_as_client_closed_not_a_function_error() {
    let s = Server::ready("sseabort", &[], "timeout = \"60s\"", &[], "");
    let mut c = s.conn();
    c.write(&get(
        "/events",
        &[
            ("x-test-stream", &(64u64 << 20).to_string()),
            ("x-test-stream-framing", "chunked"),
            ("x-test-stream-delay", "0.02"),
            ("x-fc-request-id", "sse-abort-1"),
        ],
    ));
    let mut line = String::new();
    c.r.read_line(&mut line).expect("the status line");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // Some of the stream, then the client goes away.
    let mut some = vec![0; 256 * 1024];
    c.r.read_exact(&mut some).expect("the start of the stream");
    drop(c);
    let end = invoke_end(&s.p, "sse-abort-1");
    assert_eq!(
        end,
        "FC Invoke End RequestId: sse-abort-1, Error: client closed the connection"
    );
    assert_eq!(
        metric(&s.fx, "fc_init_requests_total{outcome=\"client_closed\"}"),
        1
    );
    assert_eq!(
        metric(
            &s.fx,
            "fc_init_requests_total{outcome=\"UnhandledInvocationError\"}"
        ),
        0
    );
}

#[test]
fn a_functions_own_413_to_an_http_invocation_is_a_plain_end_line() {
    let s = Server::ready("own413", &[], "timeout = \"30s\"", &[], "");
    // Answered after reading the body.
    let r = s.conn().send(&request(
        "POST",
        "/upload",
        &[("x-test-status", "413"), ("x-fc-request-id", "own-413-a")],
        b"too much",
    ));
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.error_type(), None, "the function's own answer");
    assert_eq!(
        invoke_end(&s.p, "own-413-a"),
        "FC Invoke End RequestId: own-413-a"
    );
    // Answered before reading a body it does not want, which then goes unread.
    let mut c = s.conn();
    let len = 8 << 20;
    c.write(
        format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\
             x-test-early-status: 413\r\nx-fc-request-id: own-413-b\r\n\r\n"
        )
        .as_bytes(),
    );
    let writer = {
        let mut w = c.r.get_ref().try_clone().expect("clone");
        std::thread::spawn(move || {
            let piece = vec![b'u'; 1 << 20];
            for _ in 0..8 {
                if w.write_all(&piece).is_err() {
                    return;
                }
            }
        })
    };
    let r = c.read().expect("the early answer");
    assert_eq!(r.status, 413, "{r:?}");
    drop(c);
    writer.join().expect("the writer");
    assert_eq!(
        invoke_end(&s.p, "own-413-b"),
        "FC Invoke End RequestId: own-413-b"
    );
    assert_eq!(
        metric(&s.fx, "fc_init_requests_total{outcome=\"success\"}"),
        3,
        "the readiness request and both 413s"
    );
}

#[test]
fn under_platform_fc_an_async_invocation_is_forwarded_as_it_came_synchronously() {
    let s = Server::ready("fcasync", &[], "", &[("platform", "fc")], "");
    let r = s.conn().send(&request(
        "POST",
        "/invoke",
        &[
            ("X-Fc-Invocation-Type", "Async"),
            ("x-fc-request-id", "fc-async-1"),
        ],
        b"payload",
    ));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"payload", "the function's own answer");
    let got = s.fx.requests("/invoke");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["headers"]["x-fc-invocation-type"], "Async");
    assert_eq!(got[0]["headers"]["x-fc-request-id"], "fc-async-1");
    let (_, status) = admin_get(&s.fx.admin, "/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert!(
        status["async"].is_null(),
        "fc-init's queue is off: {status}"
    );
}

#[test]
fn under_platform_fc_async_enabled_explicitly_brings_fc_inits_queue_back() {
    let dir = TempDir::new("fcasyncq");
    let store = dir.path("events.db");
    let extra = format!(
        "[async]\nenabled = true\nstore = {:?}\n",
        store.display().to_string()
    );
    let s = Server::ready("fcasyncq", &[], "", &[("platform", "fc")], &extra);
    let r = s.conn().send(&request(
        "POST",
        "/invoke",
        &[
            ("X-Fc-Invocation-Type", "Async"),
            ("x-fc-request-id", "fc-async-2"),
        ],
        b"payload",
    ));
    assert_eq!(r.status, 202, "{r:?}");
    // The stored event runs later, through the normal path, without the async header.
    let got = wait_for("the stored event to run", || {
        let got = s.fx.requests("/invoke");
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(got[0]["headers"]["x-fc-request-id"], "fc-async-2");
    assert!(
        got[0]["headers"]["x-fc-invocation-type"].is_null(),
        "{got:?}"
    );
}
