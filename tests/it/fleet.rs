//! A fleet on Redis (docs/reference.md §10): several fc-inits on one queue of a real
//! redis-server share the events, the list, the limits and terminate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::async_events::{AsyncServer, Backend};
use crate::util::*;

/// `n` fc-inits on queue `queue` of one redis-server, with `keys` in `[async]`.
fn fleet(tag: &str, n: usize, keys: &str) -> (Backend, Vec<AsyncServer>) {
    let redis = Backend::redis(tag);
    let instances = (0..n)
        .map(|i| AsyncServer::start_with(&redis, tag, &format!("{tag}-{i}"), "", keys, |_| {}))
        .collect();
    (redis, instances)
}

/// Total of `ctl events list` with `args`, as instance `s` sees it.
fn total(s: &AsyncServer, args: &[&str]) -> u64 {
    let mut all = vec!["events", "list", "--limit", "0"];
    all.extend_from_slice(args);
    let (code, list) = s.ctl(&all);
    assert_eq!(code, 0, "{list}");
    list["totalCount"].as_u64().unwrap()
}

/// How often each event id reached a function of the fleet.
fn runs(fleet: &[AsyncServer]) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for s in fleet {
        for r in s.fx.requests("/invoke") {
            if let Some(id) = r["headers"]["x-fc-request-id"].as_str() {
                *runs.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    runs
}

fn wait_total(s: &AsyncServer, args: &[&str], want: u64, what: &str) {
    let deadline = Instant::now() + WATCHDOG * 2;
    loop {
        let n = total(s, args);
        if n == want {
            return;
        }
        if Instant::now() >= deadline {
            let (_, all) = s.ctl(&["events", "list", "--limit", "100"]);
            s.p.fail(&format!("{what}: {n} of {want}: {all}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_instances_on_one_queue_run_300_events_each_once() {
    let (_redis, fleet) = fleet("fleet-300", 3, "");
    let mut ids = Vec::new();
    for i in 0..300 {
        let s = &fleet[i % 3];
        ids.push(s.submit(
            "/invoke",
            &[("x-fc-request-id", &format!("f300-{i}"))],
            b"x",
        ));
    }
    wait_total(&fleet[0], &["--status", "FINISHED"], 300, "events FINISHED");
    for s in &fleet {
        assert_eq!(
            total(s, &[]),
            300,
            "every instance lists the fleet's events"
        );
        assert_eq!(total(s, &["--status", "FINISHED"]), 300);
    }
    let runs = runs(&fleet);
    for id in &ids {
        assert_eq!(runs.get(id), Some(&1), "{id} ran {:?} times", runs.get(id));
    }
    let busy = fleet
        .iter()
        .filter(|s| !s.fx.requests("/invoke").is_empty())
        .count();
    assert!(
        busy >= 2,
        "the events were not shared: {busy} instance(s) ran them"
    );
    let (_, status) = fleet[1].ctl(&["status"]);
    let a = &status["async"];
    assert_eq!(a["backend"], "redis", "{status}");
    assert_eq!(a["queue"], "fleet-300", "{status}");
    assert!(
        a["consumer"].as_str().is_some_and(|c| !c.is_empty()),
        "{status}"
    );
    assert_eq!(
        (a["queued"].as_u64(), a["running"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_sigkilled_instance_s_events_finish_on_the_others() {
    let (_redis, mut fleet) = fleet("fleet-kill", 3, "max_concurrency = 4\n");
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(fleet[i % 3].submit(
            "/invoke",
            &[
                ("x-fc-request-id", &format!("kill-{i}")),
                ("x-test-sleep", "1"),
            ],
            b"",
        ));
    }
    // Instance 2 holds some events when it dies.
    let victim = fleet.pop().unwrap();
    wait_for("the victim running events", || {
        (!victim.fx.requests("/invoke").is_empty()).then_some(())
    });
    let _killed = kill_instance(victim.p, &victim.fx);
    wait_total(
        &fleet[0],
        &["--status", "FINISHED"],
        24,
        "events FINISHED after the kill",
    );
    let runs = runs(&fleet);
    for id in &ids {
        assert!(
            runs.contains_key(id)
                || victim
                    .fx
                    .requests("/invoke")
                    .iter()
                    .any(|r| r["headers"]["x-fc-request-id"] == id.as_str()),
            "{id} never ran"
        );
    }
}

/// Which instance's function an event reached.
fn runner(fleet: &[AsyncServer], id: &str) -> usize {
    wait_for("the event to reach a function", || {
        fleet.iter().position(|s| !s.invokes_of(id).is_empty())
    })
}

fn starts(s: &AsyncServer) -> usize {
    s.fx.record()
        .iter()
        .filter(|r| r["event"] == "start")
        .count()
}

#[test]
fn terminate_from_one_instance_reaches_the_instance_running_the_event() {
    let (_redis, fleet) = fleet("fleet-term", 2, "");
    for grace in [false, true] {
        let id = fleet[0].submit("/invoke", &[("x-test-sleep", "30")], b"");
        let owner = runner(&fleet, &id);
        let other = 1 - owner;
        fleet[owner].wait_status(&id, "RUNNING");
        let (owner_starts, other_starts) = (starts(&fleet[owner]), starts(&fleet[other]));
        let pid = fleet[owner].invokes_of(&id)[0]["pid"].as_i64().unwrap();
        let mut args = vec!["events", "terminate", id.as_str()];
        if grace {
            args.push("--grace");
        }
        let (code, e) = fleet[other].ctl(&args);
        assert_eq!(code, 0, "{e}");
        assert_eq!(e["status"], "ABORTED", "{e}");
        if grace {
            assert_eq!(e["errorMessage"], "User process exit when running");
            let term =
                fleet[owner].fx.record().into_iter().find(|r| {
                    r["event"] == "signal" && r["signal"] == "SIGTERM" && r["pid"] == pid
                });
            assert!(term.is_some(), "the owner's function did not get SIGTERM");
        }
        wait_for("the owner's new instance", || {
            (starts(&fleet[owner]) > owner_starts).then_some(())
        });
        fleet[owner].wait_ready();
        assert_eq!(
            starts(&fleet[other]),
            other_starts,
            "the other function was killed"
        );
        let e: Value = fleet[owner].get(&id);
        assert_eq!(e["status"], "ABORTED");
    }
}

#[test]
fn the_same_id_submitted_to_two_instances_runs_once() {
    let (_redis, fleet) = fleet("fleet-dup", 2, "");
    // At the same moment, on both.
    let ports: Vec<u16> = fleet.iter().map(|s| s.fx.port).collect();
    std::thread::scope(|scope| {
        for port in ports {
            scope.spawn(move || {
                let headers = [
                    ("X-Fc-Invocation-Type", "Async"),
                    ("x-fc-request-id", "dup-1"),
                ];
                let (status, _, body) = http(port, "POST", "/invoke", &headers, b"a");
                assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
            });
        }
    });
    fleet[1].submit("/invoke", &[("x-fc-request-id", "dup-1")], b"b");
    fleet[0].wait_status("dup-1", "FINISHED");
    let later = fleet[1].submit("/invoke", &[], b"c");
    fleet[1].wait_status(&later, "FINISHED");
    assert_eq!(runs(&fleet).get("dup-1"), Some(&1));
}

#[test]
fn max_queued_is_shared_by_the_fleet() {
    let (_redis, fleet) = fleet("fleet-full", 2, "max_concurrency = 1\nmax_queued = 2\n");
    let busy: Vec<String> = (0..2)
        .map(|i| fleet[i].submit("/invoke", &[("x-test-sleep", "30")], b""))
        .collect();
    wait_total(&fleet[0], &["--status", "RUNNING"], 2, "both workers busy");
    fleet[0].submit("/invoke", &[], b"");
    fleet[1].submit("/invoke", &[], b"");
    for s in &fleet {
        let (status, headers, _) = http(
            s.fx.port,
            "POST",
            "/invoke",
            &[("X-Fc-Invocation-Type", "Async")],
            b"",
        );
        assert_eq!(status, 429, "the fleet holds max_queued events");
        assert_eq!(header(&headers, "x-fc-error-type"), Some("TooManyRequests"));
    }
    for id in &busy {
        fleet[0].ctl(&["events", "terminate", id]);
    }
}
