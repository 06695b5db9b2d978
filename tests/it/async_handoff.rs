//! The handoff (docs/reference.md §10): a synchronous request with `Prefer: respond-async,
//! wait=N` is stored as an event before it is forwarded; a fast answer is the client's and the
//! event's result, a slow one turns into `202` and a stored result, and an fc-init SIGKILLed
//! meanwhile leaves the event to run again. On both backends (a real redis-server each).

use std::time::Instant;

use serde_json::Value;

use crate::async_events::{on_both, AsyncServer, Backend};
use crate::util::*;

fn handoff_fast_is_answered_and_the_event_finished_with_it_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "handoff-fast", "", "max_concurrency = 1\n");
    // The one worker busy and events queued behind it (on Redis: stream entries no consumer
    // took yet): a handoff runs at once all the same, as a synchronous request.
    let busy = s.submit("/invoke", &[("x-test-sleep", "3")], b"");
    s.wait_status(&busy, "RUNNING");
    let queued: Vec<String> = (0..3).map(|_| s.submit("/invoke", &[], b"q")).collect();
    let prefer = ("Prefer", "respond-async, wait=10");
    let started = Instant::now();
    let (status, headers, body) = http(s.fx.port, "POST", "/invoke", &[prefer], b"hello");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"hello");
    assert!(
        started.elapsed().as_millis() < 2500,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(header(&headers, "preference-applied"), None);
    let id = header(&headers, "x-fc-request-id").unwrap().to_owned();
    // Stored before it was forwarded, and ended with the answer before the client had it.
    let e = s.get(&id);
    assert_eq!(e["status"], "FINISHED", "{e}");
    assert_eq!(e["attempts"], 1, "{e}");
    assert_eq!(e["result"]["statusCode"], 200, "{e}");
    assert_eq!(e["result"]["bytes"], 5, "{e}");
    assert_eq!(e["result"]["truncated"], false, "{e}");
    let runs = s.invokes_of(&id);
    assert_eq!(runs.len(), 1, "{runs:?}");
    // The function was asked synchronously: the preference was fc-init's.
    assert!(runs[0]["headers"]["prefer"].is_null(), "{runs:?}");
    let (status, _, stored) = admin_raw(&s.fx.admin, &format!("/async-events/{id}/result"));
    assert_eq!((status, stored.as_slice()), (200, &b"hello"[..]));
    // A failed answer is the client's too, and the event ends FAILED without a retry.
    let failing = [prefer, ("x-test-status", "500")];
    let (status, headers, _) = http(s.fx.port, "POST", "/invoke", &failing, b"x");
    assert_eq!(status, 500);
    let id = header(&headers, "x-fc-request-id").unwrap().to_owned();
    let e = s.get(&id);
    assert_eq!(
        (&e["status"], &e["attempts"]),
        (&Value::from("FAILED"), &Value::from(1)),
        "{e}"
    );
    assert_eq!(s.invokes_of(&id).len(), 1);
    for id in queued.iter().chain([&busy]) {
        s.wait_status(id, "FINISHED");
        assert_eq!(s.invokes_of(id).len(), 1, "{id}");
    }
}

on_both!(
    handoff_fast_is_answered_and_the_event_finished_with_it,
    handoff_fast_is_answered_and_the_event_finished_with_it_on_redis,
    handoff_fast_is_answered_and_the_event_finished_with_it_on
);

fn handoff_slow_is_accepted_at_the_wait_and_its_result_stored_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "handoff-slow", "", "");
    let headers = [
        ("Prefer", "wait=1; x=\"y\", RESPOND-ASYNC"),
        ("x-test-sleep", "3"),
    ];
    let started = Instant::now();
    let (status, h, body) = http(s.fx.port, "POST", "/invoke", &headers, b"slow-body");
    let took = started.elapsed();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert!(
        took.as_millis() >= 1000 && took.as_millis() < 2900,
        "{took:?}"
    );
    assert_eq!(header(&h, "preference-applied"), Some("respond-async"));
    let id = header(&h, "x-fc-request-id").unwrap().to_owned();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["requestId"], id.as_str());
    assert_eq!(s.get(&id)["status"], "RUNNING");
    // The exchange went on without the client: its answer is the stored result.
    let (status, h, stored) =
        admin_raw(&s.fx.admin, &format!("/async-events/{id}/result?wait=20s"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&stored));
    assert_eq!(stored, b"slow-body");
    assert_eq!(header(&h, "x-fc-async-status"), Some("FINISHED"));
    assert_eq!(s.invokes_of(&id).len(), 1);
}

on_both!(
    handoff_slow_is_accepted_at_the_wait_and_its_result_stored,
    handoff_slow_is_accepted_at_the_wait_and_its_result_stored_on_redis,
    handoff_slow_is_accepted_at_the_wait_and_its_result_stored_on
);

fn handoff_survives_a_sigkill_of_fc_init_and_runs_again_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "handoff-kill", "", "");
    let headers = [
        ("Prefer", "respond-async, wait=1"),
        ("x-test-sleep", "3"),
        ("x-fc-request-id", "handoff-killed"),
    ];
    let (status, _, body) = http(s.fx.port, "POST", "/invoke", &headers, b"again");
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert_eq!(s.get("handoff-killed")["status"], "RUNNING");
    assert_eq!(s.invokes_of("handoff-killed").len(), 1);
    // Killed in the detached part: the event is RUNNING in the store with nobody running it.
    let s = s.killed_and_restarted();
    let e = s.wait_status("handoff-killed", "FINISHED");
    assert_eq!(e["result"]["statusCode"], 200, "{e}");
    let (status, _, stored) = admin_raw(&s.fx.admin, "/async-events/handoff-killed/result");
    assert_eq!((status, stored.as_slice()), (200, &b"again"[..]));
    assert!(e["attempts"].as_u64() >= Some(2), "{e}");
}

on_both!(
    handoff_survives_a_sigkill_of_fc_init_and_runs_again,
    handoff_survives_a_sigkill_of_fc_init_and_runs_again_on_redis,
    handoff_survives_a_sigkill_of_fc_init_and_runs_again_on
);

#[test]
fn a_preference_the_handoff_cannot_honour_is_a_plain_synchronous_request() {
    let s = AsyncServer::start_on(
        &Backend::Sqlite,
        "handoff-ignored",
        "",
        "max_payload = \"1KiB\"\n",
    );
    for prefer in [
        "respond-async",
        "respond-async, wait=0",
        "wait=5",
        "respond-async, wait=1.5",
    ] {
        let id = format!("plain-{}", prefer.len());
        let headers = [("Prefer", prefer), ("x-fc-request-id", id.as_str())];
        let (status, _, body) = http(s.fx.port, "POST", "/invoke", &headers, b"p");
        assert_eq!((status, body.as_slice()), (200, &b"p"[..]), "{prefer}");
        let (code, e) = s.ctl(&["events", "get", &id]);
        assert_eq!(
            (code, &e["errorType"]),
            (1, &Value::from("EventNotFound")),
            "{prefer}"
        );
    }
    // A handoff is stored whole: within async.max_payload, as a submission.
    let prefer = ("Prefer", "respond-async, wait=5");
    let (status, h, _) = http(s.fx.port, "POST", "/invoke", &[prefer], &[b'x'; 2048]);
    assert_eq!(status, 413);
    assert_eq!(header(&h, "x-fc-error-type"), Some("InvalidArgument"));
    // The same id again: the stored event, accepted, nothing run twice.
    let again = [prefer, ("x-fc-request-id", "twice")];
    assert_eq!(http(s.fx.port, "POST", "/invoke", &again, b"1").0, 200);
    let (status, h, _) = http(s.fx.port, "POST", "/invoke", &again, b"1");
    assert_eq!(status, 202);
    assert_eq!(header(&h, "preference-applied"), Some("respond-async"));
    assert_eq!(s.invokes_of("twice").len(), 1);
}

/// byte(i) of the fixture's `x-test-stream` pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (((i % 251) * 31 + 7) % 251) as u8).collect()
}

/// A chunked body, decoded.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line]).unwrap(), 16).unwrap();
        raw = &raw[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[test]
fn handoff_answer_begun_within_the_wait_is_streamed_to_the_client_whole() {
    let s = AsyncServer::start_on(&Backend::Sqlite, "handoff-stream", "", "");
    // 3 MB (more than async.max_result) in 64 KiB writes 50 ms apart: it begins within the
    // second the client waits, and ends well after it.
    let headers = [
        ("Prefer", "respond-async, wait=1"),
        ("x-test-stream", "3000000"),
        ("x-test-stream-delay", "0.05"),
        ("x-fc-request-id", "streamed"),
    ];
    let started = Instant::now();
    let (status, h, body) = http(s.fx.port, "POST", "/invoke", &headers, b"");
    assert!(
        started.elapsed().as_millis() > 1500,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-length"), Some("3000000"));
    assert_eq!(header(&h, "x-fc-request-id"), Some("streamed"));
    assert!(
        body == pattern(3_000_000),
        "the body is the function's, whole"
    );
    let e = s.get("streamed");
    assert_eq!(e["status"], "FINISHED", "{e}");
    assert_eq!(e["result"]["truncated"], true, "{e}");
    assert_eq!(e["result"]["bytes"], 1024 * 1024, "{e}");
    // An answer of no stated length goes out chunked.
    let headers = [
        ("Prefer", "respond-async, wait=5"),
        ("x-test-stream", "200000"),
        ("x-test-stream-framing", "chunked"),
    ];
    let (status, h, raw) = http(s.fx.port, "POST", "/invoke", &headers, b"");
    assert_eq!(status, 200);
    assert_eq!(header(&h, "transfer-encoding"), Some("chunked"));
    assert!(dechunk(&raw) == pattern(200_000));
}

/// A client that takes none of its streamed answer holds no more of it in fc-init than the
/// window and the sockets' buffers, is let go at `function.timeout`, and the event ends FAILED
/// with the cut answer (the client saw it cut).
#[test]
fn handoff_client_that_reads_nothing_is_let_go_and_the_event_ends_failed() {
    use std::io::{Read, Write};
    let dir = TempDir::new("handoff-stalled");
    let keys = format!(
        "[async]\nstore = {:?}\n",
        dir.path("events.db").display().to_string()
    );
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "timeout = \"3s\"\n", &keys);
    let p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    wait_for("instance ready", || {
        (accepting(&fx.admin) && admin_get(&fx.admin, "/health").0 == 200).then_some(())
    });
    let mut c = std::net::TcpStream::connect(("127.0.0.1", fx.port)).unwrap();
    write!(
        c,
        "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nx-fc-request-id: stalled\r\n\
         Prefer: respond-async, wait=5\r\nx-test-stream: 200000000\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let e = wait_for("the event to end", || {
        let (_, e) = admin_get(&fx.admin, "/async-events/stalled");
        let e: serde_json::Value = serde_json::from_str(&e).unwrap();
        let ended = e["status"].as_str().is_some_and(|s| s != "RUNNING");
        ended.then_some(e)
    });
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(
        e["errorMessage"], "the answer was cut before its end",
        "{e}"
    );
    // At function.timeout, not at some later deadline of the attempt's own.
    assert!(started.elapsed().as_secs() < 8, "{:?}", started.elapsed());
    // What reached the client is far less than the answer, and its connection was closed.
    c.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &got[..got.len().min(64)]
    );
    assert!(got.len() < 50_000_000, "{} bytes", got.len());
    drop(p);
}

/// A client gone before its answer leaves the event to go on as an asynchronous one: a failed
/// attempt is retried (it would not be, had the client had the answer).
#[test]
fn handoff_client_gone_before_its_answer_leaves_the_event_to_its_retries() {
    use std::io::Write;
    let s = AsyncServer::start_on(&Backend::Sqlite, "handoff-gone", "", "max_retries = 1\n");
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.fx.port)).unwrap();
    write!(
        c,
        "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nx-fc-request-id: gone\r\n\
         Prefer: respond-async, wait=10\r\nx-test-sleep: 1\r\nx-test-status: 500\r\n\r\n"
    )
    .unwrap();
    wait_for("the event stored", || {
        (s.ctl(&["events", "get", "gone"]).0 == 0).then_some(())
    });
    drop(c);
    let e = s.wait_status("gone", "FAILED");
    assert_eq!(e["attempts"], 2, "{e}");
    assert_eq!(s.invokes_of("gone").len(), 2);
}
