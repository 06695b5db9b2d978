//! Asynchronous events at SCF, FC 3.0 and Lambda parity (docs/reference.md §10), on the SQLite
//! store: list filters, `async.max_event_age`, `X-Fc-Async-Delay`, `X-Fc-Async-Task-Id`,
//! stored results and their long poll, destinations against a real HTTP receiver (also
//! across a SIGKILL of fc-init), and a store written by the previous release, migrated.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::async_events::{on_both, AsyncServer, Backend};
use crate::util::*;

const ASYNC: (&str, &str) = ("X-Fc-Invocation-Type", "Async");

fn start(tag: &str, async_keys: &str) -> AsyncServer {
    AsyncServer::start_on(&Backend::Sqlite, tag, "", async_keys)
}

/// `GET /async-events?query` on the admin socket: (status, JSON).
fn list(s: &AsyncServer, query: &str) -> (u16, Value) {
    let (status, body) = admin_get(&s.fx.admin, &format!("/async-events?{query}"));
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {body:?}: {e}"));
    (status, json)
}

/// The request ids of a list answer, in order.
fn ids(list: &Value) -> Vec<String> {
    list["events"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| e["requestId"].as_str().unwrap().to_owned())
        .collect()
}

/// `fc-init ctl ARGS` on `s`: (exit status, stdout bytes).
fn ctl_raw(s: &AsyncServer, args: &[&str]) -> (i32, Vec<u8>) {
    let out = ctl_output(&s.fx.admin, args);
    (out.status.code().unwrap(), out.stdout)
}

fn ms(v: &Value) -> u64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    let t = humantime::parse_rfc3339(text).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---- a destination receiver -------------------------------------------------------------

/// A real HTTP receiver for destination deliveries: records each POSTed JSON body and answers
/// with the status it is set to.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap(), status)
    }

    fn on(listener: TcpListener, status: u16) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (status.clone(), got.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                conn.set_read_timeout(Some(WATCHDOG)).unwrap();
                let mut r = BufReader::new(conn);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    continue;
                }
                g.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).expect("a JSON delivery"));
                let code = st.load(Ordering::SeqCst);
                let _ = write!(
                    r.get_mut(),
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events", self.port)
    }

    /// The deliveries of event `id` so far.
    fn of(&self, id: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d["requestContext"]["requestId"] == id)
            .cloned()
            .collect()
    }
}

fn wait_destination(s: &AsyncServer, id: &str, status: &str) -> Value {
    wait_for(&format!("destination of {id} {status}"), || {
        let e = s.get(id);
        (e["destination"]["status"] == status).then_some(e)
    })
}

// ---- filters ----------------------------------------------------------------------------

on_both!(
    list_filters_select_events_by_every_field_and_bad_values_are_refused,
    list_filters_select_events_by_every_field_and_bad_values_are_refused_on_redis,
    filters_on
);

fn filters_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "parity-filters", "", "max_retries = 0\n");
    let mut done = Vec::new();
    for (id, qualifier, status) in [
        ("ord-a1", "prod", "200"),
        ("ord-a2", "prod", "500"),
        ("ord-b1", "test", "200"),
        ("pay-c1", "", "200"),
    ] {
        let mut h = vec![("x-fc-request-id", id), ("x-test-status", status)];
        if !qualifier.is_empty() {
            h.push(("x-fc-qualifier", qualifier));
        }
        s.submit("/invoke", &h, b"x");
        let want = if status == "200" {
            "FINISHED"
        } else {
            "FAILED"
        };
        done.push(s.wait_status(id, want));
    }
    let e = &done[3];
    assert_eq!(e["qualifier"], "LATEST", "{e}");
    assert_eq!(e["functionName"], "python3", "{e}");
    assert!(
        e["notBefore"].is_null() && e["destination"].is_null(),
        "{e}"
    );
    assert_eq!(done[0]["qualifier"], "prod");

    let check = |query: &str, want: &[&str]| {
        let (status, l) = list(&s, query);
        assert_eq!(status, 200, "{query}: {l}");
        assert_eq!(ids(&l), want, "{query}: {l}");
        assert_eq!(l["totalCount"], want.len(), "{query}: {l}");
    };
    check("order=asc", &["ord-a1", "ord-a2", "ord-b1", "pay-c1"]);
    check(
        "requestIdPrefix=ord-&order=asc",
        &["ord-a1", "ord-a2", "ord-b1"],
    );
    check("requestIdPrefix=ord-a", &["ord-a2", "ord-a1"]);
    check("requestId=ord-b1", &["ord-b1"]);
    check("qualifier=prod&order=asc", &["ord-a1", "ord-a2"]);
    check("qualifier=prod&status=FAILED", &["ord-a2"]);
    check("status=FINISHED,FAILED&qualifier=test", &["ord-b1"]);
    check("functionName=python3&requestIdPrefix=pay", &["pay-c1"]);
    check("functionName=other", &[]);
    check("invocationType=Async&requestIdPrefix=pay", &["pay-c1"]);
    check("invocationType=Sync", &[]);
    // Time windows, half-open, on start and end times; ordering by them.
    let start_b = &done[2]["startTime"].as_str().unwrap().to_owned();
    let end_b = &done[2]["endTime"].as_str().unwrap().to_owned();
    check(
        &format!("startedSince={start_b}&order=asc"),
        &["ord-b1", "pay-c1"],
    );
    check(
        &format!("endedUntil={end_b}&orderBy=endTime&order=asc"),
        &["ord-a1", "ord-a2"],
    );
    check(&format!("endedSince={end_b}&endedUntil={end_b}"), &[]);
    let (_, l) = list(&s, "orderBy=startTime&order=desc&limit=2");
    assert_eq!(ids(&l), ["pay-c1", "ord-b1"].map(String::from), "{l}");
    let (_, l) = list(&s, "orderBy=endTime&offset=1&limit=1&order=asc");
    assert_eq!(
        (ids(&l), l["totalCount"].as_u64()),
        (vec!["ord-a2".to_owned()], Some(4))
    );

    for bad in [
        "status=LOST",
        "orderBy=size",
        "order=up",
        "limit=101",
        "offset=-1",
        "since=yesterday",
        "startedSince=-5",
        "endedUntil=x",
        "invocationType=Later",
        "requestIdPrefix=a%20b",
        "colour=red",
    ] {
        let (status, l) = list(&s, bad);
        assert_eq!(
            (status, l["errorType"].as_str()),
            (400, Some("InvalidArgument")),
            "{bad}: {l}"
        );
    }
    // ctl: the same names as flags; bad values are usage errors (exit 2), before any request.
    let (code, l) = s.ctl(&[
        "events",
        "list",
        "--requestIdPrefix",
        "ord-",
        "--qualifier",
        "prod",
        "--order",
        "asc",
        "--orderBy",
        "startTime",
        "--status",
        "FINISHED,FAILED",
        "--functionName",
        "python3",
        "--invocationType",
        "Async",
        "--startedSince",
        start_b.as_str(),
    ]);
    assert_eq!(code, 0, "{l}");
    assert_eq!(ids(&l), Vec::<String>::new(), "{l}");
    let (code, l) = s.ctl(&["events", "list", "--qualifier", "prod", "--order", "asc"]);
    assert_eq!(
        (code, ids(&l)),
        (0, vec!["ord-a1".to_owned(), "ord-a2".to_owned()])
    );
    for bad in [
        &["events", "list", "--orderBy", "size"][..],
        &["events", "list", "--order", "up"],
        &["events", "list", "--endedSince", "soon"],
        &["events", "list", "--invocationType", "Later"],
        &["events", "list", "--colour", "red"],
    ] {
        let (code, _) = ctl_raw(&s, bad);
        assert_eq!(code, 2, "{bad:?}");
    }
}

// ---- expiry, delay, task id -------------------------------------------------------------

on_both!(
    an_event_not_started_within_max_event_age_expires_while_the_only_worker_is_busy,
    an_event_not_started_within_max_event_age_expires_while_the_only_worker_is_busy_on_redis,
    expiry_on
);

fn expiry_on(b: Backend) {
    let keys = "max_concurrency = 1\nmax_event_age = \"1s\"\n";
    let s = AsyncServer::start_on(&b, "parity-expiry", "", keys);
    let busy = s.submit("/invoke", &[("x-test-sleep", "3")], b"slow");
    s.wait_status(&busy, "RUNNING");
    let late = s.submit("/invoke", &[], b"never");
    let e = s.wait_status(&late, "EXPIRED");
    assert_eq!(e["errorType"], "EventAgeExceeded", "{e}");
    assert!(e["startTime"].is_null() && e["attempts"] == 0, "{e}");
    assert!(ms(&e["endTime"]) >= ms(&e["submitTime"]) + 1000, "{e}");
    // Expired while the worker still ran the other one; that one is never cut for age.
    assert_eq!(s.get(&busy)["status"], "RUNNING");
    let b = s.wait_status(&busy, "FINISHED");
    assert!(b["durationMs"].as_u64() >= Some(2900), "{b}");
    assert!(s.invokes_of(&late).is_empty());
    let (_, l) = list(&s, "status=EXPIRED");
    assert_eq!(ids(&l), vec![late.clone()]);
    let (_, metrics) = admin_get(&s.fx.admin, "/metrics");
    assert!(
        metrics.contains("fc_init_async_events{status=\"EXPIRED\"} 1"),
        "{metrics}"
    );
}

on_both!(
    a_delayed_event_stays_queued_until_not_before_and_a_task_id_is_its_id,
    a_delayed_event_stays_queued_until_not_before_and_a_task_id_is_its_id_on_redis,
    delay_on
);

fn delay_on(b: Backend) {
    let s = AsyncServer::start_on(&b, "parity-delay", "", "");
    let id = s.submit(
        "/invoke",
        &[("X-Fc-Async-Delay", "2"), ("X-Fc-Async-Task-Id", "task-7")],
        b"later",
    );
    assert_eq!(id, "task-7");
    let e = s.get(&id);
    assert_eq!(e["status"], "QUEUED", "{e}");
    assert_eq!(
        (e["qualifier"].as_str(), e["functionName"].as_str()),
        (Some("LATEST"), Some("python3"))
    );
    let not_before = ms(&e["notBefore"]);
    assert_eq!(not_before, ms(&e["submitTime"]) + 2000, "{e}");
    let e = s.wait_status(&id, "FINISHED");
    assert!(ms(&e["startTime"]) >= not_before, "{e}");
    // The task id deduplicates like a request id.
    assert_eq!(
        s.submit("/invoke", &[("X-Fc-Async-Task-Id", "task-7")], b"again"),
        "task-7"
    );
    // An undelayed event is not held.
    let now = s.submit("/invoke", &[("X-Fc-Async-Delay", "0")], b"");
    assert!(s.wait_status(&now, "FINISHED")["notBefore"].is_null());
    for (name, value) in [
        ("X-Fc-Async-Delay", "3601"),
        ("X-Fc-Async-Delay", "-1"),
        ("X-Fc-Async-Delay", "1.5"),
        ("X-Fc-Async-Task-Id", "no spaces"),
    ] {
        let (status, headers, body) =
            http(s.fx.port, "POST", "/invoke", &[ASYNC, (name, value)], b"");
        assert_eq!(
            status,
            400,
            "{name}: {value}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(header(&headers, "x-fc-error-type"), Some("InvalidArgument"));
    }
    assert_eq!(list(&s, "").1["totalCount"], 2);
}

// ---- results ----------------------------------------------------------------------------

on_both!(
    results_are_kept_truncated_past_max_result_and_long_polled,
    results_are_kept_truncated_past_max_result_and_long_polled_on_redis,
    results_on
);

fn results_on(b: Backend) {
    let keys = "max_result = \"1KiB\"\nmax_retries = 0\n";
    let s = AsyncServer::start_on(&b, "parity-results", "", keys);
    // The answer as the function gave it, cut at max_result.
    let id = s.submit("/invoke", &[("x-test-stream", "5000")], b"");
    let e = s.wait_status(&id, "FINISHED");
    assert_eq!(e["result"]["statusCode"], 200, "{e}");
    assert_eq!(e["result"]["truncated"], true, "{e}");
    assert_eq!(e["result"]["bytes"], 1024, "{e}");
    let (status, headers, body) = admin_raw(&s.fx.admin, &format!("/async-events/{id}/result"));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-fc-request-id"), Some(id.as_str()));
    assert_eq!(header(&headers, "x-fc-async-status"), Some("FINISHED"));
    assert!(header(&headers, "x-fixture-pid").is_some(), "{headers:?}");
    let pattern: Vec<u8> = (0..1024u32)
        .map(|i| (((i % 251) * 31 + 7) % 251) as u8)
        .collect();
    assert_eq!(body, pattern);
    let (code, out) = ctl_raw(&s, &["events", "result", &id]);
    assert_eq!((code, out), (0, pattern));

    // Long poll: held until the event ends.
    let slow = s.submit("/invoke", &[("x-test-sleep", "1.5")], b"echo me");
    let t = Instant::now();
    let (code, out) = ctl_raw(&s, &["events", "result", &slow, "--wait", "30s"]);
    assert_eq!((code, out.as_slice()), (0, &b"echo me"[..]));
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    // Not ended within the wait: 202 with the event.
    let slower = s.submit("/invoke", &[("x-test-sleep", "3")], b"");
    let (status, _, body) = admin_raw(
        &s.fx.admin,
        &format!("/async-events/{slower}/result?wait=200ms"),
    );
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 202, "{e}");
    assert!(e["status"] == "QUEUED" || e["status"] == "RUNNING", "{e}");
    let (code, _) = ctl_raw(&s, &["events", "result", &slower]);
    assert_eq!(code, 1);
    // A function's error answer is kept too; ctl exits 1 for it.
    let bad = s.submit("/invoke", &[("x-test-status", "503")], b"");
    s.wait_status(&bad, "FAILED");
    let (status, headers, _) = admin_raw(&s.fx.admin, &format!("/async-events/{bad}/result"));
    assert_eq!(
        (status, header(&headers, "x-fc-async-status")),
        (503, Some("FAILED"))
    );
    assert_eq!(ctl_raw(&s, &["events", "result", &bad]).0, 1);
    // Ended without an answer; unknown; bad wait.
    let aborted = s.submit("/invoke", &[("X-Fc-Async-Delay", "600")], b"");
    let (code, e) = s.ctl(&["events", "terminate", &aborted]);
    assert_eq!((code, e["status"].as_str()), (0, Some("ABORTED")), "{e}");
    let (status, body) = admin_get(&s.fx.admin, &format!("/async-events/{aborted}/result"));
    assert!(
        status == 404 && body.contains("ResultNotFound"),
        "{status} {body}"
    );
    let (status, body) = admin_get(&s.fx.admin, "/async-events/nope/result");
    assert!(
        status == 404 && body.contains("EventNotFound"),
        "{status} {body}"
    );
    let (status, body) = admin_get(&s.fx.admin, &format!("/async-events/{id}/result?wait=61s"));
    assert!(
        status == 400 && body.contains("InvalidArgument"),
        "{status} {body}"
    );
    assert_eq!(ctl_raw(&s, &["events", "result", &id, "--wait", "2m"]).0, 2);
}

#[test]
fn max_result_zero_keeps_no_answer() {
    let s = start("parity-noresult", "max_result = 0\n");
    let id = s.submit("/invoke", &[], b"hi");
    assert!(s.wait_status(&id, "FINISHED")["result"].is_null());
    let (status, body) = admin_get(&s.fx.admin, &format!("/async-events/{id}/result"));
    assert!(
        status == 404 && body.contains("ResultNotFound"),
        "{status} {body}"
    );
}

// ---- destinations -----------------------------------------------------------------------

on_both!(
    destinations_get_success_retries_exhausted_and_expired_events,
    destinations_get_success_retries_exhausted_and_expired_events_on_redis,
    destinations_on
);

fn destinations_on(b: Backend) {
    let ok = Receiver::start(200);
    let failures = Receiver::start(200);
    let keys = format!(
        "max_retries = 1\nmax_concurrency = 1\nmax_event_age = \"1s\"\n\
         on_success = {{ url = {:?} }}\n[async.on_failure]\nurl = {:?}\n",
        ok.url(),
        failures.url()
    );
    let s = AsyncServer::start_on(&b, "parity-destinations", "", &keys);
    let good = s.submit("/invoke", &[("x-fc-qualifier", "prod")], b"{\"n\":1}");
    let e = wait_destination(&s, &good, "delivered");
    assert_eq!(e["destination"]["attempts"], 1, "{e}");
    assert_eq!(e["destination"]["url"], ok.url().as_str());
    let d = &ok.of(&good)[0];
    assert_eq!(d["version"], "1.0");
    assert_eq!(d["requestContext"]["condition"], "Success");
    assert_eq!(d["requestContext"]["functionName"], "python3");
    assert_eq!(d["requestContext"]["qualifier"], "prod");
    assert_eq!(d["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(d["requestPayload"], "{\"n\":1}");
    assert_eq!(d["responsePayload"], "{\"n\":1}");
    assert_eq!(d["responseContext"]["statusCode"], 200);
    assert!(
        d["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{d}"
    );

    let bad = s.submit("/invoke", &[("x-test-status", "500")], &[0xff, 0xfe]);
    wait_destination(&s, &bad, "delivered");
    let d = &failures.of(&bad)[0];
    assert_eq!(d["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(d["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(d["responseContext"]["errorType"], "FunctionError");
    assert_eq!(
        (
            d["requestPayload"].as_str(),
            d["requestPayloadEncoding"].as_str()
        ),
        (Some("//4="), Some("base64"))
    );

    // One worker held busy: the next event expires, and on_failure hears of it.
    let busy = s.submit("/invoke", &[("x-test-sleep", "2.5")], b"");
    s.wait_status(&busy, "RUNNING");
    let late = s.submit("/invoke", &[], b"late");
    wait_destination(&s, &late, "delivered");
    let d = &failures.of(&late)[0];
    assert_eq!(d["requestContext"]["condition"], "EventAgeExceeded");
    assert_eq!(d["responseContext"]["errorType"], "EventAgeExceeded");
    assert_eq!(d["requestContext"]["approximateInvokeCount"], 0);
    wait_destination(&s, &busy, "delivered");
    assert!(ok.of(&late).is_empty() && failures.of(&good).is_empty());
    let (_, metrics) = admin_get(&s.fx.admin, "/metrics");
    assert!(
        metrics.contains("fc_init_async_destination_deliveries_total{result=\"delivered\"} 4"),
        "{metrics}"
    );
}

on_both!(
    a_delivery_that_never_gets_a_2xx_is_failed_after_destination_retry_for,
    a_delivery_that_never_gets_a_2xx_is_failed_after_destination_retry_for_on_redis,
    exhausted_on
);

fn exhausted_on(b: Backend) {
    let sink = Receiver::start(500);
    let keys = format!(
        "destination_retry_for = \"2s\"\n[async.on_success]\nurl = {:?}\n",
        sink.url()
    );
    let s = AsyncServer::start_on(&b, "parity-dest-exhausted", "", &keys);
    let id = s.submit("/invoke", &[], b"");
    let e = wait_destination(&s, &id, "failed");
    let tries = e["destination"]["attempts"].as_u64().unwrap();
    // 0, 0.5, 1.5, then the last at 2s: backoff from 500 ms, doubling, within the window.
    assert!((3..=5).contains(&tries), "{e}");
    assert_eq!(sink.of(&id).len() as u64, tries, "{e}");
    let (_, metrics) = admin_get(&s.fx.admin, "/metrics");
    assert!(
        metrics.contains("fc_init_async_destination_deliveries_total{result=\"failed\"} 1"),
        "{metrics}"
    );
}

on_both!(
    a_delivery_pending_across_a_sigkill_of_fc_init_is_delivered_once_the_receiver_is_up,
    a_delivery_pending_across_a_sigkill_of_fc_init_is_delivered_once_the_receiver_is_up_on_redis,
    carried_on
);

fn carried_on(b: Backend) {
    // The receiver's port, reserved and closed: nothing listens there until the test says.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let keys = format!("[async.on_success]\nurl = {url:?}\n");
    let s = AsyncServer::start_on(&b, "parity-dest-crash", "", &keys);
    let id = s.submit("/invoke", &[], b"keep me");
    wait_for("a failed try", || {
        let e = s.get(&id);
        (e["destination"]["attempts"].as_u64() >= Some(1)).then_some(())
    });
    assert_eq!(s.get(&id)["destination"]["status"], "pending");
    let s = s.killed_and_restarted();
    let receiver = Receiver::on(TcpListener::bind(("127.0.0.1", port)).unwrap(), 200);
    let e = wait_destination(&s, &id, "delivered");
    let got = receiver.of(&id);
    assert!(!got.is_empty(), "{e}");
    assert_eq!(got[0]["requestPayload"], "keep me");
    assert_eq!(s.invokes_of(&id).len(), 1, "the event itself ran once");
}

// ---- an old store -----------------------------------------------------------------------

/// `tests/fixtures/stores/events-v2-f4939a6.db` was written by fc-init at f4939a6 (schema v2):
/// `old-finished` FINISHED, `old-failed` FAILED after 4 attempts, `old-running` RUNNING when
/// that fc-init was SIGKILLed, `old-queued` QUEUED behind it.
#[test]
fn a_store_written_by_the_previous_release_is_migrated_and_its_events_keep_working() {
    // Its events were submitted when the file was made: neither age nor retention may end them.
    let keys = "max_event_age = \"0s\"\nretention = \"1000000h\"\n";
    let s = AsyncServer::start_with(
        &Backend::Sqlite,
        "parity-migrated",
        "parity-migrated",
        "",
        keys,
        |dir| {
            std::fs::copy(
                fixture("stores/events-v2-f4939a6.db"),
                dir.path("store").join("events.db"),
            )
            .unwrap();
        },
    );
    let e = s.get("old-finished");
    assert_eq!(e["status"], "FINISHED", "{e}");
    assert_eq!(
        (e["qualifier"].as_str(), e["functionName"].as_str()),
        (Some("LATEST"), Some(""))
    );
    assert!(e["result"].is_null() && e["destination"].is_null(), "{e}");
    let e = s.get("old-failed");
    assert_eq!(
        (e["status"].as_str(), e["attempts"].as_u64()),
        (Some("FAILED"), Some(4))
    );
    // What was running and queued runs now, under the new code.
    for id in ["old-running", "old-queued"] {
        let e = s.wait_status(id, "FINISHED");
        assert_eq!(e["result"]["statusCode"], 200, "{e}");
    }
    let (code, body) = ctl_raw(&s, &["events", "result", "old-queued"]);
    assert_eq!((code, body.as_slice()), (0, &b"waiting"[..]));
    // New events live beside the old ones, and every filter works on the migrated table.
    let new = s.submit("/invoke", &[], b"");
    s.wait_status(&new, "FINISHED");
    let (_, l) = list(&s, "requestIdPrefix=old-&status=FINISHED&order=asc");
    assert_eq!(
        ids(&l),
        ["old-finished", "old-running", "old-queued"].map(String::from)
    );
    let (_, l) = list(&s, "qualifier=LATEST&limit=0");
    assert_eq!(l["totalCount"], 5);
}
