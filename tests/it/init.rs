//! fc-init as a plain init (tini, dumb-init, catatonit): exit statuses, signal forwarding,
//! reaping, the child's signal state, shutdown and restarts. Scenarios follow tini's and
//! dumb-init's own test suites; each runs as a subreaper and as a real PID 1.

use std::time::{Duration, Instant};

use crate::util::*;

fn sh(script: &str) -> Vec<String> {
    vec!["--".into(), "sh".into(), "-c".into(), script.into()]
}

#[test]
fn exit_codes_0_to_255_pass_through() {
    for mode in modes() {
        // One fc-init per code, as tini's test does; a shell loop keeps the test quick.
        for code in 0..=255 {
            let (got, _, err) = fc_init(mode).args(sh(&format!("exit {code}"))).output();
            assert_eq!(got, code, "{mode:?}: exit {code}; stderr: {err}");
        }
    }
}

#[test]
fn killed_by_signal_exits_128_plus_n() {
    for mode in modes() {
        for sig in [
            libc::SIGTERM,
            libc::SIGKILL,
            libc::SIGSEGV,
            libc::SIGABRT,
            libc::SIGHUP,
            libc::SIGUSR1,
        ] {
            let (got, _, err) = fc_init(mode).args(sh(&format!("kill -{sig} $$"))).output();
            assert_eq!(got, 128 + sig, "{mode:?}: signal {sig}; stderr: {err}");
        }
    }
}

#[test]
fn command_not_found_exits_127_and_not_executable_126() {
    let dir = TempDir::new("exec");
    let script = dir.write("not-executable", "#!/bin/sh\necho no\n");
    for mode in modes() {
        let (code, _, err) = fc_init(mode).args(["--", "/nonexistent/program"]).output();
        assert_eq!(code, 127, "{mode:?}: {err}");
        assert!(
            err.contains("/nonexistent/program") && err.contains("not found"),
            "{err}"
        );
        let (code, _, err) = fc_init(mode)
            .args(["--", script.to_str().unwrap()])
            .output();
        assert_eq!(code, 126, "{mode:?}: {err}");
        assert!(err.contains("not executable"), "{err}");
    }
}

#[test]
fn every_forwarded_signal_reaches_the_child() {
    let names = [
        "HUP", "QUIT", "USR1", "USR2", "WINCH", "CONT", "ALRM", "URG", "PROF", "VTALRM", "RTMIN+3",
    ];
    let script = r#"
import signal, sys, os
names = sys.argv[1:]
def handler(num, frame):
    print("got", num, flush=True)
for name in names:
    if name.startswith("RTMIN+"):
        num = signal.SIGRTMIN + int(name[6:])
    else:
        num = getattr(signal, "SIG" + name)
    signal.signal(num, handler)
print("ready", flush=True)
while True:
    signal.pause()
"#;
    for mode in modes() {
        let p = fc_init(mode)
            .args(["--", "python3", "-c", script])
            .args(names)
            .start();
        p.expect_line("child ready", |l| l == "ready");
        for name in names {
            let num = if let Some(n) = name.strip_prefix("RTMIN+") {
                libc::SIGRTMIN() + n.parse::<i32>().unwrap()
            } else {
                signal_number(name)
            };
            p.signal(num);
            let want = format!("got {num}");
            p.expect_line(&format!("SIG{name} forwarded"), |l| l == want);
        }
        let mut p = p;
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM, "{mode:?}");
    }
}

fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "WINCH" => libc::SIGWINCH,
        "CONT" => libc::SIGCONT,
        "ALRM" => libc::SIGALRM,
        "URG" => libc::SIGURG,
        "PROF" => libc::SIGPROF,
        "VTALRM" => libc::SIGVTALRM,
        other => panic!("no number for {other}"),
    }
}

/// The function makes `n` orphans that exit at once, then says so and waits; every one must be
/// reaped while fc-init keeps running.
fn orphans_are_reaped(n: usize) {
    for mode in modes() {
        let script = format!(
            "i=0; while [ $i -lt {n} ]; do (true &); i=$((i+1)); done; echo spawned; read line"
        );
        let mut p = fc_init(mode).args(sh(&script)).keep_stdin_open().start();
        p.expect_line("orphans spawned", |l| l == "spawned");
        let init = p.pid();
        let deadline = Instant::now() + WATCHDOG;
        let clean = wait_until(deadline, || {
            !children_of(init).iter().any(|&(_, state)| state == 'Z')
        });
        if !clean {
            p.fail(&format!("zombies left: {:?}", children_of(init)));
        }
        // At end of input `read` fails and the function exits 1 with nothing left behind.
        p.close_stdin();
        assert_eq!(p.wait(WATCHDOG), 1, "{mode:?}");
    }
}

#[test]
fn hundred_orphans_are_reaped() {
    orphans_are_reaped(100);
}

#[test]
fn orphan_storm_of_2000_is_reaped() {
    orphans_are_reaped(2000);
}

#[test]
fn child_starts_with_clean_signal_mask_and_dispositions() {
    for mode in modes() {
        let (code, out, err) = fc_init(mode)
            .block_and_ignore_signals()
            .args(sh("grep -E '^(SigBlk|SigIgn):' /proc/self/status"))
            .output();
        assert_eq!(code, 0, "{err}");
        for line in out.lines() {
            let value = line.split_whitespace().nth(1).unwrap();
            assert!(value.chars().all(|c| c == '0'), "{mode:?}: {line}\n{out}");
        }
        assert_eq!(out.lines().count(), 2, "{out}");
    }
}

/// A grandchild (the function's child) that reports `sig` and exits 0; the function between
/// them ignores `sig`, so only a signal sent to the whole group reaches the grandchild.
fn grandchild_script(sig: &str) -> String {
    let py = format!(
        "import signal,sys,os\n\
         def h(n, f):\n    print('grandchild-{sig}', flush=True); os._exit(0)\n\
         signal.signal(signal.SIG{sig}, h)\n\
         print('ready', flush=True)\n\
         while True: signal.pause()\n"
    );
    format!("trap '' {sig}; python3 -c \"$0\"; exit 0\n", sig = sig) + &py
}

#[test]
fn stop_signal_reaches_a_grandchild_through_the_group() {
    for mode in modes() {
        let script = grandchild_script("TERM");
        let (py, sh_part) = (
            script.split_once('\n').unwrap().1,
            script.split_once('\n').unwrap().0,
        );
        let mut p = fc_init(mode)
            .env("FC_INIT_SHUTDOWN_GRACE_PERIOD", "20s")
            .args(["--", "sh", "-c", sh_part, py])
            .start();
        p.expect_line("grandchild ready", |l| l == "ready");
        let sent = Instant::now();
        p.signal(libc::SIGTERM);
        p.expect_line("grandchild got SIGTERM", |l| l == "grandchild-TERM");
        assert_eq!(p.wait(WATCHDOG), 0, "{mode:?}");
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "{mode:?}: waited for the grace period"
        );
    }
}

/// With `-g` (`signals.forward_to = "group"`); by default a forwarded signal goes to the
/// function's own process only, as with `tini -s` (tests/it/dropin_signals.rs).
#[test]
fn forwarded_signal_reaches_the_group_not_only_the_leader_with_minus_g() {
    for mode in modes() {
        let script = grandchild_script("USR1");
        let (py, sh_part) = (
            script.split_once('\n').unwrap().1,
            script.split_once('\n').unwrap().0,
        );
        let mut p = fc_init(mode)
            .args(["-g", "--", "sh", "-c", sh_part, py])
            .start();
        p.expect_line("grandchild ready", |l| l == "ready");
        p.signal(libc::SIGUSR1);
        p.expect_line("grandchild got SIGUSR1", |l| l == "grandchild-USR1");
        assert_eq!(p.wait(WATCHDOG), 0, "{mode:?}");
    }
}

#[test]
fn child_ignoring_sigterm_is_killed_after_the_grace_period_and_not_later() {
    for mode in modes() {
        let mut p = fc_init(mode)
            .env("FC_INIT_SHUTDOWN_GRACE_PERIOD", "1s")
            .args(sh("trap '' TERM; echo ready; while :; do sleep 0.05; done"))
            .start();
        p.expect_line("child ready", |l| l == "ready");
        let sent = Instant::now();
        p.signal(libc::SIGTERM);
        let code = p.wait(WATCHDOG);
        let took = sent.elapsed();
        assert_eq!(code, 128 + libc::SIGKILL, "{mode:?}");
        assert!(
            took >= Duration::from_secs(1),
            "{mode:?}: killed before the grace period: {took:?}"
        );
        assert!(
            took < Duration::from_millis(2500),
            "{mode:?}: killed too late: {took:?}"
        );
    }
}

#[test]
fn second_sigterm_skips_the_grace_period() {
    for mode in modes() {
        let mut p = fc_init(mode)
            .env("FC_INIT_SHUTDOWN_GRACE_PERIOD", "60s")
            .args(sh(
                "trap 'echo term' TERM; echo ready; while :; do sleep 0.05; done",
            ))
            .start();
        p.expect_line("child ready", |l| l == "ready");
        p.signal(libc::SIGTERM);
        p.expect_line("first SIGTERM forwarded", |l| l == "term");
        let sent = Instant::now();
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGKILL, "{mode:?}");
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "{mode:?}: second SIGTERM waited"
        );
    }
}

#[test]
fn sigint_starts_the_shutdown_too() {
    for mode in modes() {
        let mut p = fc_init(mode).args(["--", "sleep", "1000"]).start();
        let init = p.pid();
        wait_for("sleep started", || children_of(init).first().copied());
        p.signal(libc::SIGINT);
        // sleep dies of the stop signal, SIGTERM.
        assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM, "{mode:?}");
    }
}

#[test]
fn stdin_is_handed_to_the_child() {
    for mode in modes() {
        let (code, out, err) = fc_init(mode)
            .stdin(b"hello from stdin\n")
            .args(["--", "cat"])
            .output();
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "hello from stdin\n", "{mode:?}");
    }
}

#[test]
fn orphans_left_behind_are_stopped_when_the_function_exits() {
    for mode in modes() {
        // A daemonized orphan (new session) that ignores nothing: the stop signal ends it.
        let (code, _, err) = fc_init(mode)
            .args(sh("setsid sleep 1000 & echo started; exit 5"))
            .output();
        assert_eq!(code, 5, "{mode:?}: {err}");
    }
}

#[test]
fn restart_on_failure_until_success() {
    let dir = TempDir::new("restart");
    let count = dir.path("count");
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo run $n; [ $n -ge 3 ]",
        c = count.display()
    );
    for mode in modes() {
        let _ = std::fs::remove_file(&count);
        let (code, out, err) = fc_init(mode)
            .env("FC_INIT_FUNCTION_RESTART", "on-failure")
            .args(sh(&script))
            .output();
        assert_eq!(code, 0, "{mode:?}: {out}\n{err}");
        assert_eq!(out, "run 1\nrun 2\nrun 3\n", "{mode:?}");
    }
}

#[test]
fn restart_always_restarts_successful_exits_with_backoff() {
    let dir = TempDir::new("always");
    let count = dir.path("count");
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo run $n; [ $n -ge 3 ] && exec sleep 1000; exit 0",
        c = count.display()
    );
    for mode in modes() {
        let _ = std::fs::remove_file(&count);
        let mut p = fc_init(mode)
            .env("FC_INIT_FUNCTION_RESTART", "always")
            .env("FC_INIT_LOG", "warn")
            .args(sh(&script))
            .start();
        p.expect_line("third run", |l| l == "run 3");
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM, "{mode:?}");
        assert_eq!(
            p.stderr().matches("restarting in").count(),
            2,
            "{}",
            p.stderr()
        );
        assert!(
            p.stderr().contains("restarting in 100ms")
                && p.stderr().contains("restarting in 200ms"),
            "{}",
            p.stderr()
        );
    }
}

#[test]
fn config_errors_are_all_reported_and_nothing_starts() {
    let dir = TempDir::new("badconfig");
    let marker = dir.path("started");
    let cfg = dir.write(
        "bad.toml",
        "[function]\ntimeout = \"soon\"\nbogus = 1\n[initializer]\ntimeout = \"400s\"\n[nosuch]\n",
    );
    let (code, _, err) = fc_init(Mode::Subreaper)
        .env("FC_INIT_SHUTDOWN_GRACE_PERIOD", "nope")
        .args(["-c", cfg.to_str().unwrap()])
        .args(sh(&format!("touch {}", marker.display())))
        .output();
    assert_eq!(code, 2, "{err}");
    for needle in [
        "function.timeout",
        "function.bogus",
        "initializer.timeout",
        "nosuch",
        "shutdown.grace_period",
        "bad.toml",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        !marker.exists(),
        "the function was started despite the errors"
    );
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, err) = fc_init(Mode::Subreaper).args(["--no-such-option"]).output();
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = fc_init(Mode::Subreaper).output();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no command"), "{err}");
}

#[test]
fn check_config_output_is_itself_a_valid_config() {
    let dir = TempDir::new("check");
    let (code, printed, err) = fc_init(Mode::Subreaper)
        .env("FC_INIT_SHUTDOWN_GRACE_PERIOD", "3s")
        .args([
            "--check-config",
            "--function-socket",
            "/tmp/x.sock",
            "--",
            "myfn",
            "arg",
        ])
        .output();
    assert_eq!(code, 0, "{err}");
    assert!(printed.contains("grace_period = \"3s\""), "{printed}");
    assert!(
        printed.contains("command = [\"myfn\", \"arg\"]"),
        "{printed}"
    );
    let file = dir.write("printed.toml", &printed);
    let (code, again, err) = fc_init(Mode::Subreaper)
        .args(["--check-config", "-c", file.to_str().unwrap()])
        .output();
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, printed);
}

#[test]
fn fc_init_log_filters_diagnostics_and_rust_log_is_ignored() {
    let (_, _, err) = fc_init(Mode::Subreaper)
        .env("RUST_LOG", "trace")
        .args(["--", "true"])
        .output();
    assert_eq!(err, "", "RUST_LOG belongs to the function");
    let (_, _, err) = fc_init(Mode::Subreaper)
        .env("FC_INIT_LOG", "debug")
        .args(["--", "true"])
        .output();
    assert!(err.contains("started function"), "{err}");
    let (_, _, err) = fc_init(Mode::Subreaper).args(["-v", "--", "true"]).output();
    assert!(err.contains("started function"), "{err}");
}

#[test]
fn runs_as_another_user() {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("note: not root; user switching not tested");
        return;
    }
    for mode in modes() {
        let (code, out, err) = fc_init(mode)
            .env("FC_INIT_FUNCTION_USER", "nobody")
            .args(sh("id -u; id -G"))
            .output();
        assert_eq!(code, 0, "{err}");
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("65534"), "{out}");
        assert!(
            !lines.next().unwrap_or("").split(' ').any(|g| g == "0"),
            "still in group root: {out}"
        );
    }
}

#[test]
fn adopted_orphans_get_the_stop_signal_once_the_function_is_gone() {
    for mode in modes() {
        // The orphan runs in a session of its own, so only fc-init's orphan handling reaches it.
        let script = r#"setsid sh -c 'trap "echo orphan-term; exit 0" TERM; echo orphan-ready; while :; do sleep 0.05; done' & exec sleep 1000"#;
        let mut p = fc_init(mode)
            .env("FC_INIT_SHUTDOWN_GRACE_PERIOD", "20s")
            .args(sh(script))
            .start();
        p.expect_line("orphan ready", |l| l == "orphan-ready");
        let sent = Instant::now();
        p.signal(libc::SIGTERM);
        p.expect_line("the orphan got SIGTERM", |l| l == "orphan-term");
        assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM, "{mode:?}");
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "{mode:?}: waited for the grace period"
        );
    }
}

#[test]
fn the_function_inherits_no_descriptor_of_fc_init() {
    let dir = TempDir::new("fds");
    let list = "for f in /proc/self/fd/*; do echo fd ${f##*/}; done; echo listed; exec sleep 1000";
    let direct = std::process::Command::new("sh")
        .args(["-c", "for f in /proc/self/fd/*; do echo fd ${f##*/}; done"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let baseline: Vec<String> = String::from_utf8_lossy(&direct.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("fd "))
        .map(String::from)
        .collect();
    for serving in [false, true] {
        let mut run = fc_init(Mode::Subreaper);
        if serving {
            // Listener, admin socket, event store, signalfd, wake pipe: all must be close-on-exec.
            run = isolated(run, &dir, true).env(
                "FC_INIT_SERVER_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            );
        }
        let mut p = run.args(sh(list)).start();
        p.expect_line("listing done", |l| l == "listed");
        let fds: Vec<String> = p
            .stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("fd "))
            .map(String::from)
            .collect();
        // Exactly what the same shell gets when the test starts it directly: descriptors the
        // test itself inherited pass through (as with tini), none of fc-init's own.
        assert_eq!(
            fds, baseline,
            "serving={serving}: fc-init leaked descriptors"
        );
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM);
    }
}

#[test]
fn a_missing_working_dir_is_reported_as_such() {
    let (code, _, err) = fc_init(Mode::Subreaper)
        .env("FC_INIT_FUNCTION_WORKING_DIR", "/nonexistent/dir")
        .args(["--", "true"])
        .output();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("working_dir /nonexistent/dir") && !err.contains("not found:"),
        "{err}"
    );
    let (code, out, err) = fc_init(Mode::Subreaper)
        .env("FC_INIT_FUNCTION_WORKING_DIR", "/tmp")
        .args(["--", "pwd"])
        .output();
    assert_eq!((code, out.as_str()), (0, "/tmp\n"), "{err}");
}

#[test]
fn json_diagnostics_are_one_object_per_line() {
    let (code, _, err) = fc_init(Mode::Subreaper)
        .env("FC_INIT_LOG_FORMAT", "json")
        .args(["-v", "--", "true"])
        .output();
    assert_eq!(code, 0, "{err}");
    assert!(!err.is_empty());
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            v["time"].is_string() && v["level"].is_string() && v["message"].is_string(),
            "{line}"
        );
    }
    assert!(err.contains("started function"), "{err}");
}
