//! Requests that arrive before the instance is initialized: they wait for the initializer,
//! try it once each under `next-request`, and time out when it never succeeds.

use super::*;

#[test]
fn requests_wait_for_the_initializer() {
    let s = Server::start(
        "initwait",
        &[("FIXTURE_INIT_DELAY", "1")],
        "",
        &[],
        "[initializer]\n",
    );
    let r = s.get("/waited");
    assert_eq!(r.status, 200, "{r:?}");
    let record = s.fx.record();
    let init = record
        .iter()
        .position(|r| r["path"] == "/initialize")
        .unwrap();
    let req = record.iter().position(|r| r["path"] == "/waited").unwrap();
    assert!(init < req);
}

#[test]
fn next_request_policy_tries_once_per_request() {
    let s = Server::start(
        "nextreq",
        &[("FIXTURE_INIT_FAIL", "2")],
        "",
        &[],
        "[initializer]\non_failure = \"next-request\"\n",
    );
    // The first attempt fails at start-up; this request triggers the second, which fails too.
    let r = s.conn().send(&request("POST", "/invoke", &[], b"x"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.error_type(), Some("InitializationError"));
    assert!(
        r.json()["errorMessage"].as_str().unwrap().contains("500"),
        "{r:?}"
    );
    let id = r.header("x-fc-request-id").unwrap().to_owned();
    assert!(invoke_end(&s.p, &id).ends_with("Error: Unhandled function error"));
    // The third attempt succeeds.
    let r = s.get("/third");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s.fx.requests("/initialize").len(), 3);
}

#[test]
fn retried_initialization_that_never_succeeds_times_requests_out() {
    let s = Server::start(
        "initfail",
        &[("FIXTURE_INIT_FAIL", "1000000")],
        "timeout = \"1s\"",
        &[],
        "[initializer]\nbackoff = \"50ms\"\nbackoff_max = \"100ms\"\n",
    );
    let start = Instant::now();
    let r = s.get("/never");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.error_type(), Some("InitializationError"));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(s.fx.requests("/never").is_empty());
}
