//! Nodes that stop answering without closing anything, and what an idle fleet costs.
//!
//! A SIGSTOPped Redis still accepts connections (the kernel completes the handshake) and
//! takes bytes, but never answers: without read and write timeouts on every connection
//! fc-init makes (standalone, cluster, Sentinel, the master Sentinel names), one frozen node
//! would hang submissions, workers and the admin API for ever. And an idle instance must
//! not spin: its threads wait on the server or on deadlines (the bug: about 30 % of a core
//! on an instance watching Sentinels).

use std::time::{Duration, Instant};

use crate::servers::*;
use crate::util::*;
use crate::{failover_mid_burst, Instance};

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
    let mut topo = Sentinels::start("frozen", 2);
    let keys = "redis_min_replicas = 1\n";
    let a = Instance::start("frozen-a", &topo.url(""), "frozen", keys);
    let b = Instance::start("frozen-b", &topo.url(""), "frozen", keys);
    let fleet = [&a, &b];
    let old = topo.servers[0].port;
    let sentinel = topo.sentinels[0].1.id() as i32;
    let (answers, _) = failover_mid_burst(
        &fleet,
        "frozen master and Sentinel",
        &mut topo,
        |t| {
            // The master and the Sentinel the URL names first stop answering, their
            // connections open; the admin API still answers (503 or 200) in bounded time.
            t.servers[0].signal(libc::SIGSTOP);
            // SAFETY: kill(2) on a child of this test, not yet reaped.
            unsafe { libc::kill(sentinel, libc::SIGSTOP) };
            admin_answers_in_time(&a, Duration::from_secs(5));
        },
        |t| t.master_port().is_some_and(|p| p != old),
        |t| {
            // Both come back: the Sentinels demote the old master; nothing is written to it.
            t.servers[0].signal(libc::SIGCONT);
            // SAFETY: as above.
            unsafe { libc::kill(sentinel, libc::SIGCONT) };
        },
    );
    let slowest = slowest_answer(&answers);
    eprintln!("frozen master and Sentinel: the slowest answer took {slowest:.1} s");
    assert!(
        slowest <= ANSWER_WITHIN,
        "a submission waited {slowest:.1} s for its answer"
    );
}

/// The longest a burst's client waited for an answer: from its previous answer.
fn slowest_answer(answers: &[(String, u16, f64)]) -> f64 {
    let mut last: std::collections::HashMap<&str, f64> = Default::default();
    let mut slowest: f64 = 0.0;
    for (id, _, at) in answers {
        let client = id.rsplit_once('-').map_or("", |(c, _)| c);
        if let Some(prev) = last.insert(client, *at) {
            slowest = slowest.max(at - prev);
        }
    }
    slowest
}

/// Three admin reads, each answered (200, or 503 while the store cannot answer) within
/// `bound`.
fn admin_answers_in_time(i: &Instance, bound: Duration) {
    for _ in 0..3 {
        let (took, status) = timed_list(i);
        eprintln!("an admin read with a frozen node: {status} after {took:?}");
        assert!(status == 200 || status == 503, "admin list: {status}");
        assert!(took < bound, "an admin read took {took:?}");
    }
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

/// The bug: a cluster master frozen (SIGSTOP) while its replica was promoted, thawed
/// mid-burst, believes for a few milliseconds that it still owns the queue's slot, and runs
/// the commands that waited in its sockets. A worker whose `XREADGROUP` went there (re-sent
/// by the crate after a timeout, or sent on a kept connection whose slot map still named the
/// old master) got an entry the old master had not handed out yet, and its START, on the same
/// node, started there an event the new master ran too: with the thaw after the burst this
/// test never saw it; thawed mid-burst, about one run in eight ran an event twice, and more
/// with a backlog in the old master's stream, as here (one worker an instance): before the
/// fix 2 of 11 runs of this test ran an event twice, none of 22 since.
#[test]
fn a_cluster_master_thawed_mid_burst_runs_nothing_twice() {
    if !available("thawed cluster master") {
        return;
    }
    let mut cluster = Cluster::start("frozen-cluster");
    let queue = "fq";
    let slot = cluster.slot(&format!("fc-init:{{{queue}}}:stream"));
    let owner = cluster.master_of(slot).expect("the slot has a master");
    // Two replicas, so that the new master still has one while the old one is frozen:
    // with `redis_min_replicas = 1` nothing acknowledged may be lost (docs/reference.md §10),
    // even to the old master taking writes for a moment when it thaws.
    let second = cluster.add_replica(owner, "frozen-cluster-r2");
    let replicas = [cluster.replica_of(owner), second];
    // The URL's only seed is the master to be frozen: the rest of the cluster is found from
    // the nodes seen since.
    let url = format!("redis+cluster://127.0.0.1:{}", cluster.nodes[owner].port);
    // One worker an instance: events wait in the stream, so the old master has entries to
    // hand out when it thaws.
    let keys = "redis_min_replicas = 1\nmax_concurrency = 1\n";
    let a = Instance::start("frozen-cluster-a", &url, queue, keys);
    let b = Instance::start("frozen-cluster-b", &url, queue, keys);
    failover_mid_burst(
        &[&a, &b],
        "thawed cluster master",
        &mut cluster,
        |c| {
            c.nodes[owner].signal(libc::SIGSTOP);
            // The crate tries a call three times: within the admin connection's 10 s.
            admin_answers_in_time(&a, Duration::from_secs(9));
        },
        |c| c.master_of(slot).is_some_and(|m| replicas.contains(&m)),
        // Thawed mid-burst: the calls still waiting on it get its answers, which fc-init
        // checks before it uses them (a stale master's are refused).
        |c| c.nodes[owner].signal(libc::SIGCONT),
    );
    until("the thawed master is a replica", || {
        info_field(&cluster.nodes[owner].info("replication"), "role").as_deref() == Some("slave")
    });
    assert_eq!(a.submit("after-thaw", "0").0, 202);
    until("after-thaw ran", || {
        [&a, &b]
            .iter()
            .any(|i| i.runs().iter().any(|(id, _)| id == "after-thaw"))
    });
}
