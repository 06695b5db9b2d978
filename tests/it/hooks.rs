//! Lifecycle hooks: Initializer and PreStop, HTTP and command hooks, NOTIFY_SOCKET.
//!
//! The function is the Python fixture (tests/fixtures/function.py), which records every request
//! and signal with a timestamp, so ordering is proven from its record, not from timing.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::util::*;

const INIT_START: &str = "FC Initialize Start RequestId: ";
const INIT_END: &str = "FC Initialize End RequestId: ";
const PRESTOP_START: &str = "FC PreStop Start RequestId: ";
const PRESTOP_END: &str = "FC PreStop End RequestId: ";

/// The request id of an `FC ... RequestId: <id>[, Error: ...]` line.
fn id_of(line: &str) -> &str {
    let rest = line.split("RequestId: ").nth(1).expect("a RequestId line");
    rest.split(',').next().unwrap()
}

/// Reads the Start and End lines of `n` initializer attempts: each pair with one id, every
/// attempt but the last failed with `error`, the last one succeeded. Returns the ids.
fn expect_attempts(p: &Proc, n: usize, error: &str) -> Vec<String> {
    (1..=n)
        .map(|attempt| {
            let s = p.expect_line("initializer start", |l| l.starts_with(INIT_START));
            let e = p.expect_line("initializer end", |l| l.starts_with(INIT_END));
            assert_eq!(id_of(&s), id_of(&e));
            if attempt < n {
                assert!(e.ends_with(&format!(", Error: {error}")), "{e}");
            } else {
                assert!(!e.contains("Error"), "{e}");
            }
            id_of(&s).to_owned()
        })
        .collect()
}

fn start(
    dir: &TempDir,
    fixture_env: &[(&str, &str)],
    function_extra: &str,
    extra: &str,
) -> (Proc, FixtureConfig) {
    let (cfg, fx) = FixtureConfig::write(dir, fixture_env, function_extra, extra);
    let p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    (p, fx)
}

#[test]
fn initializer_runs_once_before_anything_else_with_the_contract_headers() {
    for mode in modes() {
        let dir = TempDir::new("init-once");
        let (cfg, fx) = FixtureConfig::write(
            &dir,
            &[],
            "name = \"my-fn\"",
            "[initializer]\ntimeout = \"7s\"\n",
        );
        let mut p = fc_init(mode).args(["-c", cfg.to_str().unwrap()]).start();
        let start = p.expect_line("initializer start", |l| l.starts_with(INIT_START));
        let end = p.expect_line("initializer end", |l| l.starts_with(INIT_END));
        assert_eq!(id_of(&start), id_of(&end));
        assert!(!end.contains("Error"), "{end}");
        let requests: Vec<_> = fx
            .record()
            .into_iter()
            .filter(|r| r["event"] == "request")
            .collect();
        assert_eq!(requests.len(), 1, "{requests:?}");
        let init = &requests[0];
        assert_eq!(init["method"], "POST");
        assert_eq!(init["path"], "/initialize");
        assert_eq!(init["headers"]["x-fc-request-id"], id_of(&start));
        assert_eq!(init["headers"]["x-fc-control-path"], "/initialize");
        assert_eq!(init["headers"]["x-fc-function-name"], "my-fn");
        assert_eq!(init["headers"]["x-fc-initialization-timeout"], "7");
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(WATCHDOG), 0, "{mode:?}");
        assert_eq!(
            fx.requests("/initialize").len(),
            1,
            "initialized more than once"
        );
    }
}

#[test]
fn failed_attempts_are_retried_with_distinct_ids_until_success() {
    let dir = TempDir::new("init-retry");
    let (mut p, fx) = start(
        &dir,
        &[("FIXTURE_INIT_FAIL", "2")],
        "",
        "[initializer]\nbackoff = \"10ms\"\n",
    );
    let mut ids = expect_attempts(&p, 3, "status 500");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "request ids repeated: {ids:?}");
    let seen: Vec<_> = fx
        .requests("/initialize")
        .iter()
        .map(|r| r["headers"]["x-fc-request-id"].clone())
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

#[test]
fn retry_policy_gives_up_after_max_attempts_with_exit_3() {
    let dir = TempDir::new("init-max");
    let (mut p, fx) = start(
        &dir,
        &[("FIXTURE_INIT_FAIL", "100")],
        "",
        "[initializer]\nbackoff = \"10ms\"\nmax_attempts = 3\n[pre_stop]\n",
    );
    assert_eq!(p.wait(WATCHDOG), 3, "{}", p.stderr());
    assert_eq!(p.stdout().matches(INIT_START).count(), 3, "{}", p.stdout());
    assert_eq!(fx.requests("/initialize").len(), 3);
    assert!(
        fx.requests("/pre-stop").is_empty(),
        "PreStop ran for an uninitialized instance"
    );
}

#[test]
fn exit_policy_stops_at_the_first_failure_without_prestop() {
    let dir = TempDir::new("init-exit");
    let (mut p, fx) = start(
        &dir,
        &[("FIXTURE_INIT_FAIL", "1")],
        "",
        "[initializer]\non_failure = \"exit\"\n[pre_stop]\n",
    );
    assert_eq!(p.wait(WATCHDOG), 3, "{}", p.stderr());
    assert_eq!(fx.requests("/initialize").len(), 1);
    assert!(fx.requests("/pre-stop").is_empty());
    assert!(!p.stdout().contains("PreStop"), "{}", p.stdout());
}

#[test]
fn next_request_policy_does_not_retry_in_the_background() {
    let dir = TempDir::new("init-next");
    let (mut p, fx) = start(
        &dir,
        &[("FIXTURE_INIT_FAIL", "100")],
        "",
        "[initializer]\non_failure = \"next-request\"\nbackoff = \"1ms\"\n",
    );
    p.expect_line("failed attempt", |l| {
        l.starts_with(INIT_END) && l.contains("Error")
    });
    // Health says `failed` only when no attempt is under way or scheduled; under `retry` it
    // would say `initializing` until the next attempt (docs/reference.md §8).
    wait_for("admin socket", || accepting(&fx.admin).then_some(()));
    let (code, body) = admin_get(&fx.admin, "/health");
    assert_eq!((code, body.as_str()), (503, r#"{"status":"failed"}"#));
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
    assert_eq!(
        fx.requests("/initialize").len(),
        1,
        "retried in the background"
    );
}

#[test]
fn attempt_timeout_is_enforced() {
    let dir = TempDir::new("init-timeout");
    let (mut p, _fx) = start(
        &dir,
        &[("FIXTURE_INIT_HANG", "1")],
        "",
        "[initializer]\ntimeout = \"1s\"\non_failure = \"exit\"\n",
    );
    p.expect_line("initializer start", |l| l.starts_with(INIT_START));
    let started = Instant::now();
    let end = p.expect_line("initializer end", |l| l.starts_with(INIT_END));
    let took = started.elapsed();
    assert!(end.ends_with(", Error: timeout"), "{end}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(p.wait(WATCHDOG), 3);
}

#[test]
fn a_function_that_listens_late_is_initialized_on_the_first_attempt() {
    let dir = TempDir::new("init-late");
    let (mut p, fx) = start(
        &dir,
        &[("FIXTURE_LISTEN_DELAY", "1.5")],
        "",
        "[initializer]\n",
    );
    let end = p.expect_line("initializer end", |l| l.starts_with(INIT_END));
    assert!(!end.contains("Error"), "{end}");
    assert_eq!(p.stdout().matches(INIT_START).count(), 1);
    assert_eq!(fx.requests("/initialize").len(), 1);
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

#[test]
fn prestop_runs_before_the_stop_signal_reaches_the_function() {
    for mode in modes() {
        let dir = TempDir::new("prestop");
        let (cfg, fx) = FixtureConfig::write(
            &dir,
            &[("FIXTURE_PRESTOP_DELAY", "0.3")],
            "",
            "[initializer]\n[pre_stop]\n",
        );
        let mut p = fc_init(mode).args(["-c", cfg.to_str().unwrap()]).start();
        p.expect_line("initialized", |l| l.starts_with(INIT_END));
        p.signal(libc::SIGTERM);
        let s = p.expect_line("prestop start", |l| l.starts_with(PRESTOP_START));
        let e = p.expect_line("prestop end", |l| l.starts_with(PRESTOP_END));
        assert_eq!(id_of(&s), id_of(&e));
        assert!(!e.contains("Error"), "{e}");
        assert_eq!(p.wait(WATCHDOG), 0, "{mode:?}");
        let record = fx.record();
        let prestop = record
            .iter()
            .position(|r| r["event"] == "request" && r["path"] == "/pre-stop");
        let term = record
            .iter()
            .position(|r| r["event"] == "signal" && r["signal"] == "SIGTERM");
        let (Some(prestop), Some(term)) = (prestop, term) else {
            panic!("{mode:?}: record {record:?}")
        };
        assert!(
            prestop < term,
            "{mode:?}: SIGTERM before PreStop: {record:?}"
        );
        let req = &record[prestop];
        assert_eq!(req["method"], "GET");
        assert_eq!(req["headers"]["x-fc-control-path"], "/pre-stop");
        assert_eq!(req["headers"]["x-fc-request-id"], id_of(&s));
        // PreStop took 0.3 s: the stop signal came after it answered.
        assert!(
            record[term]["t"].as_f64().unwrap() - record[prestop]["t"].as_f64().unwrap() >= 0.25,
            "{record:?}"
        );
    }
}

#[test]
fn a_hanging_prestop_is_cut_and_the_whole_stop_is_bounded() {
    let dir = TempDir::new("prestop-hang");
    let (mut p, fx) = start(
        &dir,
        &[("FIXTURE_PRESTOP_DELAY", "100"), ("FIXTURE_IGNORE_TERM", "1")],
        "",
        "[initializer]\n[pre_stop]\ntimeout = \"1s\"\n[shutdown]\ndrain_timeout = \"1s\"\ngrace_period = \"1s\"\n",
    );
    p.expect_line("initialized", |l| l.starts_with(INIT_END));
    let sent = Instant::now();
    p.signal(libc::SIGTERM);
    let e = p.expect_line("prestop end", |l| l.starts_with(PRESTOP_END));
    assert!(e.ends_with(", Error: timeout"), "{e}");
    assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGKILL);
    let took = sent.elapsed();
    // pre_stop.timeout + grace_period, with no request in flight to drain; bounded by the sum of
    // the three with the drain timeout.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_millis(3500), "stop took {took:?}");
    assert_eq!(fx.requests("/pre-stop").len(), 1);
}

#[test]
fn sigterm_during_initialization_aborts_it_and_skips_prestop() {
    let dir = TempDir::new("init-term");
    let (mut p, fx) = start(
        &dir,
        &[("FIXTURE_INIT_HANG", "1")],
        "",
        "[initializer]\n[pre_stop]\n",
    );
    p.expect_line("initializer start", |l| l.starts_with(INIT_START));
    wait_for("the initializer request reached the fixture", || {
        (!fx.requests("/initialize").is_empty()).then_some(())
    });
    p.signal(libc::SIGTERM);
    let e = p.expect_line("initializer end", |l| l.starts_with(INIT_END));
    assert!(e.contains(", Error: "), "{e}");
    assert_eq!(p.wait(WATCHDOG), 0);
    assert!(
        fx.requests("/pre-stop").is_empty(),
        "PreStop ran during initialization"
    );
    assert!(!p.stdout().contains("PreStop"), "{}", p.stdout());
}

#[test]
fn a_restarted_function_is_a_new_instance_and_is_initialized_again() {
    let dir = TempDir::new("init-restart");
    let (mut p, fx) = start(&dir, &[], "restart = \"always\"", "[initializer]\n");
    p.expect_line("first initialization", |l| l.starts_with(INIT_END));
    let first = fx.requests("/initialize")[0]["pid"].as_i64().unwrap();
    // SAFETY: kill(2) on the fixture's pid, a descendant of this test.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    let e = p.expect_line("second initialization", |l| l.starts_with(INIT_END));
    assert!(!e.contains("Error"), "{e}");
    let inits = fx.requests("/initialize");
    assert_eq!(inits.len(), 2, "{inits:?}");
    assert_ne!(inits[1]["pid"], inits[0]["pid"]);
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

#[test]
fn ready_and_stopping_are_sent_to_notify_socket() {
    let dir = TempDir::new("notify");
    let sock_path = dir.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WATCHDOG)).unwrap();
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "[initializer]\n");
    let mut p = fc_init(Mode::Subreaper)
        .env("NOTIFY_SOCKET", sock_path.to_str().unwrap())
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 within the watchdog");
    assert_eq!(&buf[..n], b"READY=1");
    // The fixture records the initializer request before it answers it.
    assert_eq!(
        fx.requests("/initialize").len(),
        1,
        "READY=1 before initialization"
    );
    p.expect_line("initializer end", |l| l.starts_with(INIT_END));
    p.signal(libc::SIGTERM);
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(p.wait(WATCHDOG), 0);
}

#[test]
fn command_initializer_fails_twice_then_succeeds_in_plain_init_mode() {
    for mode in modes() {
        let dir = TempDir::new("cmd-init");
        let count = dir.path("count");
        let seen = dir.path("seen");
        let hook = format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
             echo \"$FC_REQUEST_ID $FC_CONTROL_PATH\" >> {s}; [ $n -ge 3 ]",
            c = count.display(),
            s = seen.display()
        );
        let cfg = dir.write(
            "fc-init.toml",
            &format!(
                "[function]\ncommand = [\"sh\", \"-c\", \"echo function-up; exec sleep 1000\"]\n\
                 [initializer]\ncommand = [\"sh\", \"-c\", {hook:?}]\nbackoff = \"10ms\"\n"
            ),
        );
        let mut p = fc_init(mode).args(["-c", cfg.to_str().unwrap()]).start();
        let ids: Vec<String> = expect_attempts(&p, 3, "exited with status 1")
            .into_iter()
            .map(|id| format!("{id} /initialize"))
            .collect();
        let recorded: Vec<String> = std::fs::read_to_string(&seen)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(recorded, ids, "{mode:?}: FC_REQUEST_ID / FC_CONTROL_PATH");
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM, "{mode:?}");
    }
}

#[test]
fn a_hanging_command_prestop_is_killed_with_its_group_at_the_timeout() {
    for mode in modes() {
        let dir = TempDir::new("cmd-prestop");
        let gc = dir.path("grandchild.pid");
        let hook = format!(
            "sleep 1000 & echo $! > {}; echo prestop-running; wait",
            gc.display()
        );
        let cfg = dir.write(
            "fc-init.toml",
            &format!(
                "[function]\ncommand = [\"sh\", \"-c\", \"echo function-up; exec sleep 1000\"]\n\
                 [pre_stop]\ncommand = [\"sh\", \"-c\", {hook:?}]\ntimeout = \"1s\"\n"
            ),
        );
        let mut p = fc_init(mode).args(["-c", cfg.to_str().unwrap()]).start();
        p.expect_line("function up", |l| l == "function-up");
        let init = p.pid();
        p.signal(libc::SIGTERM);
        p.expect_line("prestop running", |l| l == "prestop-running");
        let sent = Instant::now();
        let e = p.expect_line("prestop end", |l| l.starts_with(PRESTOP_END));
        assert!(e.ends_with(", Error: timeout"), "{e}");
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "{:?}",
            sent.elapsed()
        );
        // Everything is reaped: no zombie is left while fc-init finishes the stop.
        assert!(
            wait_until(Instant::now() + WATCHDOG, || !children_of(init)
                .iter()
                .any(|&(_, s)| s == 'Z')),
            "zombies: {:?}",
            children_of(init)
        );
        assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM, "{mode:?}");
        let gc_pid: i32 = std::fs::read_to_string(&gc)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // In PID 1 mode the pid is from the namespace; its death shows as the namespace ending.
        if mode == Mode::Subreaper {
            assert!(
                !std::path::Path::new(&format!("/proc/{gc_pid}")).exists(),
                "hook's grandchild survived"
            );
        }
    }
}
