//! What a failover test counts: every event the fleet acknowledged ran and FINISHED, ran
//! again only when it was in flight at the failure, and a 503 never ran; and the one shape
//! every failover test has (a burst, the failure, a new master, the old one back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::Value;

use crate::servers::*;
use crate::util::*;
use crate::{burst, first_ack_after, now, until_acked, Answers, Instance, StopOnDrop};

/// Every event of the queue, as instance `i` lists it.
fn all_events(i: &Instance) -> HashMap<String, Value> {
    let mut events = HashMap::new();
    let mut offset = 0;
    loop {
        let off = offset.to_string();
        let (code, page) = i.ctl(&["events", "list", "--limit", "100", "--offset", &off]);
        assert_eq!(code, 0, "{page}");
        let list = page["events"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            return events;
        }
        offset += list.len();
        for e in list {
            events.insert(e["requestId"].as_str().unwrap().to_owned(), e);
        }
    }
}

/// What the node serving `i`'s queue holds of event `id`: its hash, its place in `delayed`,
/// and the group's pending entries (for a failure's message).
fn store_dump(i: &Instance, id: &str) -> String {
    let st = i.status();
    let queue = st["queue"].as_str().unwrap_or_default().to_owned();
    let Some(port) = st["node"]
        .as_str()
        .and_then(|n| n.rsplit_once(':')?.1.parse::<u16>().ok())
    else {
        return "no node".into();
    };
    let p = format!("fc-init:{{{queue}}}:");
    let q = |args: &[&str]| match query_at(port, args) {
        Ok(v) => flatten(&v).replace('\n', " "),
        Err(e) => e.to_string(),
    };
    let hash = q(&["HGETALL", &format!("{p}ev:{id}")]);
    let delayed = q(&["ZSCORE", &format!("{p}delayed"), id]);
    let pending = q(&["XPENDING", &format!("{p}stream"), "workers", "-", "+", "20"]);
    let groups = q(&["XINFO", "GROUPS", &format!("{p}stream")]);
    format!("hash [{hash}] delayed [{delayed}] pending [{pending}] groups [{groups}]")
}

fn millis(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    let t = humantime::parse_rfc3339(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// The counts of a failover test: every acknowledged event ran and FINISHED; an event ran
/// more than once only when its first run began before `recovered` (it was in flight at the
/// failure); a submission answered 503 never ran. Also `startTime >= submitTime` and
/// `durationMs = endTime - startTime` for every event.
pub fn check_counts(fleet: &[&Instance], answers: &Answers, recovered: f64, what: &str) {
    let answers = answers.lock().unwrap().clone();
    let acked: Vec<&String> = answers
        .iter()
        .filter(|a| a.1 == 202)
        .map(|a| &a.0)
        .collect();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|a| a.1 == 503)
        .map(|a| &a.0)
        .collect();
    let runs = || {
        let mut runs: HashMap<String, Vec<f64>> = HashMap::new();
        for i in fleet {
            for (id, t) in i.runs() {
                runs.entry(id).or_default().push(t);
            }
        }
        runs
    };
    let deadline = Instant::now() + WATCHDOG * 2;
    loop {
        let runs = runs();
        let missing: Vec<_> = answers
            .iter()
            .filter(|(id, status, _)| *status == 202 && !runs.contains_key(id))
            .collect();
        let st = fleet[0].status();
        if missing.is_empty() && st["queued"] == 0 && st["running"] == 0 {
            break;
        }
        if Instant::now() >= deadline {
            let shown: Vec<String> = missing
                .iter()
                .map(|(id, _, at)| {
                    let (_, e) = fleet[0].ctl(&["events", "get", id]);
                    format!(
                        "{id} acknowledged {:.2} s after the failover: {e}; on the queue's node: {}",
                        at - recovered,
                        store_dump(fleet[0], id)
                    )
                })
                .collect();
            panic!("{what}: acknowledged events never ran: {shown:?}; status {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let runs = runs();
    let events = all_events(fleet[0]);
    let mut reruns = 0;
    for id in &acked {
        let e = events
            .get(*id)
            .unwrap_or_else(|| panic!("{what}: acknowledged {id} was lost"));
        assert_eq!(e["status"], "FINISHED", "{what}: {e}");
        let times = &runs[*id];
        if times.len() > 1 {
            reruns += 1;
            let first = times.iter().copied().fold(f64::MAX, f64::min);
            assert!(
                first < recovered,
                "{what}: {id} ran {} times though it first ran after the failover",
                times.len()
            );
        }
    }
    for id in &refused {
        assert!(
            !runs.contains_key(*id),
            "{what}: {id} was answered 503 yet ran"
        );
    }
    for e in events.values() {
        if let (Some(submit), Some(start)) = (millis(&e["submitTime"]), millis(&e["startTime"])) {
            assert!(start >= submit, "{what}: startTime before submitTime: {e}");
        }
        if let (Some(start), Some(end)) = (millis(&e["startTime"]), millis(&e["endTime"])) {
            assert_eq!(e["durationMs"].as_i64(), Some(end - start), "{what}: {e}");
        }
    }
    let ran = acked.iter().filter(|id| runs.contains_key(**id)).count();
    eprintln!(
        "{what}: {} acknowledged, {} answered 503, {ran} of the acknowledged ran, {reruns} ran again (in flight at the failure)",
        acked.len(),
        refused.len(),
    );
}

/// One failover mid-burst, as every failover test runs it: a burst on `fleet`; once 40
/// submissions were acknowledged, `fail` breaks the master; once `new_master` holds (that is
/// the failover's time), 30 more; then `restore` brings the old master back, and 30 more.
/// fc-init must serve again within 5 s of the new master, and the counts must hold. Returns
/// the answers and the failover's time.
pub fn failover_mid_burst<T>(
    fleet: &[&Instance],
    what: &str,
    topology: &mut T,
    fail: impl FnOnce(&mut T),
    mut new_master: impl FnMut(&T) -> bool,
    restore: impl FnOnce(&mut T),
) -> (Vec<(String, u16, f64)>, f64) {
    let answers = Answers::default();
    let stop = AtomicBool::new(false);
    let mut recovered = 0.0;
    let prefix: String = what.split_whitespace().map(|w| &w[..1]).collect();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        burst(s, fleet, &prefix, &answers, &stop);
        until_acked(&answers, 0.0, 40, &format!("{what}: before the failure"));
        fail(topology);
        let failed = now();
        until(&format!("{what}: a new master"), || new_master(topology));
        recovered = now();
        eprintln!(
            "{what}: a new master {:.1} s after the failure",
            recovered - failed
        );
        until_acked(
            &answers,
            recovered,
            30,
            &format!("{what}: after the failover"),
        );
        restore(topology);
        let back = now();
        until_acked(
            &answers,
            back,
            30,
            &format!("{what}: after the old master's return"),
        );
        stop.store(true, Ordering::Release);
    });
    let first = first_ack_after(&answers, recovered).unwrap();
    eprintln!(
        "{what}: served again {:.1} s after the new master",
        first - recovered
    );
    assert!(
        first - recovered <= 5.0,
        "{what}: served again {:.1} s after the new master",
        first - recovered
    );
    check_counts(fleet, &answers, recovered, what);
    (answers.into_inner().unwrap(), recovered)
}
