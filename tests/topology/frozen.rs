//! Nodes that stop answering without closing anything, and what an idle fleet costs.
//!
//! A SIGSTOPped Redis still accepts connections (the kernel completes the handshake) and
//! takes bytes, but never answers: without read and write timeouts on every connection
//! fc-init makes (standalone, cluster, Sentinel, the master Sentinel names), one frozen node
//! would hang submissions, workers and the admin API for ever. And an idle instance must
//! not spin: its threads wait on the server or on deadlines (the bug: about 30 % of a core
//! on an instance watching Sentinels).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::servers::*;
use crate::util::*;
use crate::{
    burst, check_counts, first_ack_after, now, until_acked, Answers, Instance, StopOnDrop,
};

/// CPU time (utime + stime, in clock ticks) of each thread of `pid`, by thread name.
fn thread_ticks(pid: i32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid ...": fields after the comm's closing parenthesis.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n).to_owned();
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.push((
            format!("{name}/{}", task.file_name().to_string_lossy()),
            ticks(14) + ticks(15),
        ));
    }
    out
}

fn total(ticks: &[(String, u64)]) -> u64 {
    ticks.iter().map(|(_, t)| t).sum()
}

/// The share of a core `pid` used over `window`, and each busy thread's ticks.
fn cpu_share(pid: i32, window: Duration) -> (f64, Vec<String>) {
    let before = thread_ticks(pid);
    let started = Instant::now();
    // A fixed window is the measurement itself, not a wait for something to happen.
    std::thread::sleep(window);
    let after = thread_ticks(pid);
    let elapsed = started.elapsed().as_secs_f64();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let used = total(&after).saturating_sub(total(&before)) as f64 / hz;
    let busy = after
        .iter()
        .filter_map(|(name, t)| {
            let b = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, t)| *t);
            (*t > b).then(|| format!("{name}: {}", t - b))
        })
        .collect();
    (used / elapsed, busy)
}

#[test]
fn an_idle_instance_watching_sentinels_does_not_spin() {
    if !available("idle cpu") {
        return;
    }
    let mut topo = Sentinels::start("idle", 1);
    let i = Instance::start("idle-i", &topo.url(""), "idle", "");
    assert_eq!(i.submit("idle-1", "0").0, 202);
    wait_for("idle-1 ran", || (!i.runs().is_empty()).then_some(()));
    let pid = i.p.pid();
    let window = Duration::from_secs(4);
    let (idle, busy) = cpu_share(pid, window);
    eprintln!(
        "idle on Sentinel: {:.1} % of a core ({busy:?})",
        100.0 * idle
    );
    // While the master is gone and the Sentinels fail over: links back off, nothing spins.
    topo.servers[0].kill();
    let (down, busy_down) = cpu_share(pid, window);
    eprintln!(
        "master gone: {:.1} % of a core ({busy_down:?})",
        100.0 * down
    );
    // Generous for a loaded CI machine: a spinning thread takes 100 %.
    assert!(
        idle < 0.05,
        "idle: {:.1} % of a core: {busy:?}",
        100.0 * idle
    );
    assert!(
        down < 0.05,
        "master gone: {:.1} % of a core: {busy_down:?}",
        100.0 * down
    );
}

/// How long an admin API read takes, and its status.
fn timed_list(i: &Instance) -> (Duration, u16) {
    let t = Instant::now();
    let (status, _) = admin_get(&i.fx.admin, "/async-events?limit=1");
    (t.elapsed(), status)
}

/// The longest a submission may wait for its answer: the store's own deadline for an
/// unknown outcome (10 s), a reply timeout and some slack for a loaded machine.
const ANSWER_WITHIN: f64 = 15.0;

#[test]
fn a_frozen_master_and_a_frozen_sentinel_never_hang_the_fleet() {
    if !available("frozen sentinel master") {
        return;
    }
    let topo = Sentinels::start("frozen", 2);
    let keys = "redis_min_replicas = 1\n";
    let a = Instance::start("frozen-a", &topo.url(""), "frozen", keys);
    let b = Instance::start("frozen-b", &topo.url(""), "frozen", keys);
    let fleet = [&a, &b];
    let old = topo.servers[0].port;
    let answers = Answers::default();
    let stop = AtomicBool::new(false);
    let mut recovered = 0.0;
    let mut slowest_admin = Duration::ZERO;
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        burst(s, &fleet, "fz", &answers, &stop);
        until_acked(&answers, 0.0, 40, "before the freeze");
        // The master and the Sentinel the URL names first stop answering, connections open.
        topo.servers[0].signal(libc::SIGSTOP);
        let sentinel = topo.sentinels[0].1.id() as i32;
        // SAFETY: kill(2) on a child of this test, not yet reaped.
        unsafe { libc::kill(sentinel, libc::SIGSTOP) };
        let frozen = now();
        // The admin API answers (503 or 200) in bounded time while the master is frozen.
        for _ in 0..3 {
            let (took, status) = timed_list(&a);
            assert!(status == 200 || status == 503, "admin list: {status}");
            slowest_admin = slowest_admin.max(took);
        }
        until("the live Sentinels name a new master", || {
            topo.master_port().is_some_and(|p| p != old)
        });
        recovered = now();
        eprintln!("new master {:.1} s after the freeze", recovered - frozen);
        until_acked(&answers, recovered, 30, "after the failover");
        // Both come back: the old master is demoted by the Sentinels, nothing is written to it.
        topo.servers[0].signal(libc::SIGCONT);
        // SAFETY: as above.
        unsafe { libc::kill(sentinel, libc::SIGCONT) };
        let back = now();
        until_acked(&answers, back, 30, "after SIGCONT");
        stop.store(true, Ordering::Release);
    });
    assert!(
        slowest_admin < Duration::from_secs(5),
        "an admin read took {slowest_admin:?} with a frozen master"
    );
    let slowest = {
        let answers = answers.lock().unwrap();
        // Each answer's wait: from the previous answer of the same client thread.
        let mut last: std::collections::HashMap<String, f64> = Default::default();
        let mut slowest: f64 = 0.0;
        for (id, _, at) in answers.iter() {
            let thread = id.rsplit_once('-').map_or("", |(t, _)| t).to_owned();
            if let Some(prev) = last.insert(thread, *at) {
                slowest = slowest.max(at - prev);
            }
        }
        slowest
    };
    assert!(
        slowest <= ANSWER_WITHIN,
        "a submission waited {slowest:.1} s for its answer"
    );
    let first = first_ack_after(&answers, recovered).unwrap();
    assert!(
        first - recovered <= 5.0,
        "served again {:.1} s after the new master",
        first - recovered
    );
    eprintln!(
        "frozen master: slowest answer {slowest:.1} s, slowest admin read {slowest_admin:?}, \
         served {:.1} s after the new master",
        first - recovered
    );
    check_counts(&fleet, &answers, recovered, "frozen master and Sentinel");
}

#[test]
fn a_frozen_standalone_server_answers_503_in_time_and_serves_after_sigcont() {
    if !available("frozen standalone") {
        return;
    }
    let node = Node::start("frozen-one", &[]);
    let url = format!("redis://127.0.0.1:{}/0", node.port);
    let i = Instance::start("frozen-one-i", &url, "f1", "");
    assert_eq!(i.submit("f1-0", "0").0, 202);
    node.signal(libc::SIGSTOP);
    let t = Instant::now();
    let (status, rid) = i.submit("f1-frozen", "0");
    let took = t.elapsed().as_secs_f64();
    assert_eq!((status, rid.as_deref()), (503, Some("f1-frozen")));
    assert!(took <= ANSWER_WITHIN, "answered after {took:.1} s");
    let (admin_took, admin) = timed_list(&i);
    assert_eq!(admin, 503);
    assert!(admin_took < Duration::from_secs(5), "{admin_took:?}");
    node.signal(libc::SIGCONT);
    // The frozen submission may have been stored once the server read it; resubmitting its
    // id is safe (docs/reference.md §10), and runs it once.
    until("served again after SIGCONT", || {
        i.submit("f1-frozen", "0").0 == 202
    });
    // A blocking read sent during the freeze may still time out just after it: the links'
    // backoff can answer 503 for up to its 2 s more, never longer.
    until("a new event is served", || {
        i.submit("f1-after", "0").0 == 202
    });
    until("both ran", || {
        let runs = i.runs();
        ["f1-frozen", "f1-after"]
            .iter()
            .all(|id| runs.iter().filter(|(r, _)| r == id).count() == 1)
    });
    eprintln!("frozen standalone: 503 after {took:.1} s, admin 503 after {admin_took:?}");
}

#[test]
fn a_frozen_cluster_master_fails_over_and_nothing_acknowledged_is_lost() {
    if !available("frozen cluster master") {
        return;
    }
    let cluster = Cluster::start("frozen-cluster");
    let queue = "fq";
    let slot = cluster.slot(&format!("fc-init:{{{queue}}}:stream"));
    let owner = cluster.master_of(slot).expect("the slot has a master");
    let replica = cluster.replica_of(owner);
    let url = format!("redis+cluster://127.0.0.1:{}", cluster.nodes[owner].port);
    // `auto`: the new master's only replica would be the frozen one.
    let a = Instance::start("frozen-cluster-a", &url, queue, "");
    let b = Instance::start("frozen-cluster-b", &url, queue, "");
    let fleet = [&a, &b];
    let answers = Answers::default();
    let stop = AtomicBool::new(false);
    let mut recovered = 0.0;
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        burst(s, &fleet, "fc", &answers, &stop);
        until_acked(&answers, 0.0, 40, "before the freeze");
        // The URL's only seed is the frozen master: the rest of the cluster is found from
        // the nodes seen since.
        cluster.nodes[owner].signal(libc::SIGSTOP);
        let (took, status) = timed_list(&a);
        eprintln!("admin read with the cluster master frozen: {status} after {took:?}");
        assert!(status == 200 || status == 503, "admin list: {status}");
        // Within the admin connection's own deadline (10 s).
        assert!(took < Duration::from_secs(9), "an admin read took {took:?}");
        until("the replica is the slot's master", || {
            cluster.master_of(slot) == Some(replica)
        });
        recovered = now();
        until_acked(&answers, recovered, 30, "after the failover");
        cluster.nodes[owner].signal(libc::SIGCONT);
        let back = now();
        until_acked(&answers, back, 30, "after SIGCONT");
        stop.store(true, Ordering::Release);
    });
    let first = first_ack_after(&answers, recovered).unwrap();
    assert!(
        first - recovered <= 5.0,
        "served again {:.1} s after the new master",
        first - recovered
    );
    check_counts(&fleet, &answers, recovered, "frozen cluster master");
}
