//! The handoff's store write is confirmed as a submission's is (docs/reference.md §10): with
//! `redis_min_replicas = 1` and the replica paused, a handoff is refused 503 (with its request
//! id) before it is forwarded, and withdrawn, so it never runs; with the replica running it is
//! answered as usual, fast (the answer) or slow (202).

use crate::servers::{available, until, Node};
use crate::util::{header, http};
use crate::Instance;

/// A handoff of request `id` (its function sleeps `sleep` s) waiting `wait` s: the status,
/// the request id header and the body.
fn handoff(i: &Instance, id: &str, sleep: &str, wait: u32) -> (u16, Option<String>, Vec<u8>) {
    let prefer = format!("respond-async, wait={wait}");
    let headers = [
        ("Prefer", prefer.as_str()),
        ("x-fc-request-id", id),
        ("x-test-sleep", sleep),
    ];
    let (status, headers, body) = http(i.fx.port, "POST", "/invoke", &headers, b"hello");
    let rid = header(&headers, "x-fc-request-id").map(str::to_owned);
    (status, rid, body)
}

fn runs_of(i: &Instance, id: &str) -> usize {
    i.runs().iter().filter(|(r, _)| r == id).count()
}

#[test]
fn a_handoff_was_acknowledged_before_any_replica_had_it() {
    if !available("handoff confirmed by a replica") {
        return;
    }
    let master = Node::start("hw-m", &[]);
    let mp = master.port.to_string();
    let replica = Node::start("hw-r", &["--replicaof", "127.0.0.1", &mp]);
    let url = format!("redis://127.0.0.1:{mp}/0");
    let one = Instance::start("hw-one", &url, "hw", "redis_min_replicas = 1\n");
    until("the replica is counted", || one.status()["replicas"] == 1);
    // The replica keeps up: the answer, and 202 at the wait.
    let (status, rid, body) = handoff(&one, "fast", "0", 10);
    assert_eq!((status, rid.as_deref()), (200, Some("fast")));
    assert_eq!(body, b"hello");
    let (status, rid, _) = handoff(&one, "slow", "3", 1);
    assert_eq!((status, rid.as_deref()), (202, Some("slow")));
    // Paused: the store write is not confirmed, so nothing is forwarded and nothing stays.
    replica.signal(libc::SIGSTOP);
    let (status, rid, body) = handoff(&one, "paused", "0", 10);
    assert_eq!(
        (status, rid.as_deref()),
        (503, Some("paused")),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        String::from_utf8_lossy(&body).contains("AsyncStoreUnavailable"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(master.query(&["EXISTS", "fc-init:{hw}:ev:paused"]), "0");
    assert_eq!(master.query(&["ZSCORE", "fc-init:{hw}:all", "paused"]), "");
    assert_eq!(
        runs_of(&one, "paused"),
        0,
        "a withdrawn handoff was forwarded"
    );
    replica.signal(libc::SIGCONT);
    // The same id again is safe: now it is stored, confirmed and run, once.
    let (status, rid, _) = handoff(&one, "paused", "0", 10);
    assert_eq!((status, rid.as_deref()), (200, Some("paused")));
    assert_eq!(runs_of(&one, "paused"), 1);
    until("slow finished", || {
        one.ctl(&["events", "get", "slow"]).1["status"] == "FINISHED"
    });
    assert_eq!(runs_of(&one, "slow"), 1);
}
