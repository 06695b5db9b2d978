//! Drop-in for tini and dumb-init, for real (issue 19, docs/reference.md §8): their flags,
//! variables and names, where reload signals go, signal rewriting, `-e`, `-p` with a dying
//! parent, `-w`, `-l`; a graceful terminate that answers and repossesses the instance; the start
//! and port-collision hints; `ctl` usage errors; real gunicorn and Flask; and the project's
//! examples refusing client-triggered hooks.
//!
//! The master/worker function is a small Python program whose worker dies on SIGHUP, as
//! gunicorn's do. After the master reported the SIGHUP, the test sends SIGUSR2 to fc-init and
//! the master asks the worker to report with SIGUSR1: fc-init handles signals one at a time, so
//! its SIGHUP to the whole group (if that is where it went) was delivered before, and a worker
//! it killed can no longer report.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const MASTER_WORKER: &str = r#"
import os, signal, sys
def out(s):
    sys.stdout.write(s + "\n"); sys.stdout.flush()
pid = os.fork()
if pid == 0:
    def hup(*_):
        out("worker got SIGHUP"); os._exit(1)
    signal.signal(signal.SIGHUP, hup)
    signal.signal(signal.SIGUSR1, lambda *_: out("worker alive"))
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    out("worker ready")
    while True:
        signal.pause()
def hup(*_):
    out("master got SIGHUP")
def usr2(*_):
    os.kill(pid, signal.SIGUSR1)
def term(*_):
    os.kill(pid, signal.SIGKILL); os._exit(0)
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGUSR2, usr2)
signal.signal(signal.SIGTERM, term)
out("master ready")
while True:
    signal.pause()
"#;

/// fc-init installed under another name: a symlink to the binary in `dir`.
fn named(dir: &TempDir, name: &str) -> PathBuf {
    let link = dir.path(name);
    std::os::unix::fs::symlink(bin(), &link).expect("symlink");
    link
}

/// Runs the master/worker function under `run`, sends SIGHUP to fc-init and says whether the
/// worker survived it.
fn worker_survives_sighup(run: Run, dir: &TempDir) -> bool {
    let script = dir.write("mw.py", MASTER_WORKER);
    let p = run
        .args(["--", "python3", script.to_str().unwrap()])
        .start();
    // The two processes print in any order: wait on the whole output.
    let seen = |what: &str| p.stdout().lines().any(|l| l == what);
    let deadline = Instant::now() + WATCHDOG;
    if !wait_until(deadline, || seen("worker ready") && seen("master ready")) {
        p.fail("the master and worker never got ready");
    }
    p.signal(libc::SIGHUP);
    let deadline = Instant::now() + WATCHDOG;
    if !wait_until(deadline, || seen("master got SIGHUP")) {
        p.fail("the master never got SIGHUP");
    }
    p.signal(libc::SIGUSR2);
    let reported = || seen("worker alive") || seen("worker got SIGHUP");
    if !wait_until(deadline, reported) {
        p.fail("no report from the worker");
    }
    seen("worker alive") && !seen("worker got SIGHUP")
}

#[test]
fn a_reload_signal_reaches_only_the_master_by_default() {
    for mode in modes() {
        let dir = TempDir::new("reload");
        assert!(
            worker_survives_sighup(fc_init(mode), &dir),
            "{mode:?}: the worker got SIGHUP"
        );
    }
}

#[test]
fn minus_g_and_tini_kill_process_group_forward_to_the_group() {
    let dir = TempDir::new("minus-g");
    assert!(!worker_survives_sighup(
        fc_init(Mode::Subreaper).args(["-g"]),
        &dir
    ));
    let dir = TempDir::new("tini-kpg");
    let run = fc_init(Mode::Subreaper).env("TINI_KILL_PROCESS_GROUP", "1");
    assert!(!worker_survives_sighup(run, &dir));
}

#[test]
fn installed_as_tini_or_dumb_init_it_takes_their_defaults() {
    for mode in modes() {
        let dir = TempDir::new("as-tini");
        let tini = named(&dir, "tini");
        let run = fc_init(mode).program(&tini).args(["-s"]);
        assert!(worker_survives_sighup(run, &dir), "tini: to the process");
        let dir = TempDir::new("as-dumb-init");
        let dumb_init = named(&dir, "dumb-init");
        let run = fc_init(mode).program(&dumb_init);
        assert!(
            !worker_survives_sighup(run, &dir),
            "dumb-init: to the group"
        );
        let dir = TempDir::new("as-dumb-init-c");
        let dumb_init = named(&dir, "dumb-init");
        let run = fc_init(mode).program(&dumb_init).args(["-c"]);
        assert!(
            worker_survives_sighup(run, &dir),
            "dumb-init -c: single child"
        );
        let dir = TempDir::new("as-dumb-init-setsid");
        let dumb_init = named(&dir, "dumb-init");
        let run = fc_init(mode)
            .program(&dumb_init)
            .env("DUMB_INIT_SETSID", "0");
        assert!(worker_survives_sighup(run, &dir), "DUMB_INIT_SETSID=0");
    }
}

#[test]
fn rewrite_15_3_turns_sigterm_into_sigquit_in_plain_mode() {
    let script = "import signal, sys, os\n\
                  signal.signal(signal.SIGQUIT, lambda *_: (print('got SIGQUIT', flush=True), os._exit(0)))\n\
                  signal.signal(signal.SIGTERM, lambda *_: (print('got SIGTERM', flush=True), os._exit(1)))\n\
                  print('ready', flush=True)\n\
                  while True: signal.pause()\n";
    for mode in modes() {
        let dir = TempDir::new("rewrite");
        for (program, flags) in [
            (bin().into(), vec!["-r", "15:3"]),
            (
                named(&dir, "dumb-init"),
                vec!["--rewrite", "SIGTERM:SIGQUIT"],
            ),
        ] {
            let mut p = fc_init(mode)
                .program(&program)
                .args(flags)
                .args(["--", "python3", "-c", script])
                .start();
            p.expect_line("ready", |l| l == "ready");
            p.signal(libc::SIGTERM);
            p.expect_line("the function saw SIGQUIT", |l| l.starts_with("got "));
            assert!(p.stdout().contains("got SIGQUIT"), "{}", p.stdout());
            assert_eq!(p.wait(WATCHDOG), 0);
        }
    }
}

#[test]
fn minus_e_makes_an_exit_status_count_as_success() {
    for mode in modes() {
        let (code, _, _) = fc_init(mode)
            .args(["-e", "143", "--", "sh", "-c", "exit 143"])
            .output();
        assert_eq!(code, 0, "{mode:?}");
        let (code, _, _) = fc_init(mode)
            .args(["-e", "143", "-e", "3", "--", "sh", "-c", "exit 4"])
            .output();
        assert_eq!(code, 4, "{mode:?}: other statuses pass through");
        let (code, _, _) = fc_init(mode)
            .env("FC_INIT_SIGNALS_SUCCESS_CODES", "7 143")
            .args(["--", "sh", "-c", "exit 7"])
            .output();
        assert_eq!(code, 0, "{mode:?}: the config key");
    }
}

/// Whether `pid` is gone (or a zombie waiting for whoever adopted it).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn minus_p_stops_fc_init_when_its_parent_dies() {
    let dir = TempDir::new("pdeathsig");
    let pidfile = dir.path("function.pid");
    // The parent: a shell that starts fc-init, prints its pid and waits.
    let script = format!(
        "\"$0\" -p SIGTERM -- sh -c 'echo $$ > {pidfile}; exec sleep 1000' & echo $!; wait",
        pidfile = pidfile.display()
    );
    let mut parent = Command::new("sh")
        .args(["-c", &script, bin()])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let fc_init_pid: i32 = line.trim().parse().unwrap();
    let function: i32 = wait_for("the function's pid file", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    parent.kill().unwrap();
    parent.wait().unwrap();
    let deadline = Instant::now() + WATCHDOG;
    let stopped = wait_until(deadline, || gone(fc_init_pid) && gone(function));
    if !stopped {
        // SAFETY: kill(2) on processes this test started.
        unsafe {
            libc::kill(fc_init_pid, libc::SIGKILL);
            libc::kill(function, libc::SIGKILL);
        }
    }
    assert!(stopped, "fc-init and its function outlived their parent");
}

#[test]
fn minus_w_warns_about_every_reaped_zombie() {
    for mode in modes() {
        let (code, _, stderr) = fc_init(mode)
            .args(["-w", "--", "sh", "-c", "(sh -c 'exit 3' &); exit 0"])
            .output();
        assert_eq!(code, 0);
        assert!(stderr.contains("reaped zombie process"), "{stderr}");
        let (_, _, stderr) = fc_init(mode)
            .args(["--", "sh", "-c", "(sh -c 'exit 3' &); exit 0"])
            .output();
        assert!(!stderr.contains("reaped zombie process"), "{stderr}");
    }
}

#[test]
fn minus_l_prints_the_license_and_minus_s_is_accepted() {
    let (code, stdout, _) = fc_init(Mode::Subreaper).args(["-l"]).output();
    assert_eq!(code, 0);
    assert!(stdout.contains("Apache License, Version 2.0"), "{stdout}");
    let (code, _, stderr) = fc_init(Mode::Subreaper)
        .args(["-s", "--", "true"])
        .env("TINI_SUBREAPER", "1")
        .env("TINI_VERBOSITY", "3")
        .output();
    assert_eq!(code, 0);
    assert!(
        stderr.contains("fc-init INFO"),
        "TINI_VERBOSITY=3: {stderr}"
    );
    let (_, _, stderr) = fc_init(Mode::Subreaper)
        .args(["--verbose", "--", "true"])
        .output();
    assert!(stderr.contains("fc-init INFO"), "--verbose: {stderr}");
    let (_, _, stderr) = fc_init(Mode::Subreaper).args(["--", "true"]).output();
    assert!(
        !stderr.contains("fc-init INFO"),
        "quiet by default: {stderr}"
    );
}

#[test]
fn a_non_utf8_argument_reaches_the_function_unchanged() {
    let odd = std::ffi::OsStr::from_bytes(b"a\xffb");
    let out = Command::new(bin())
        .args(["--", "sh", "-c", "printf %s \"$1\" | od -An -tx1", "sh"])
        .arg(odd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let hex = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        hex.split_whitespace().collect::<Vec<_>>(),
        ["61", "ff", "62"]
    );
}

#[test]
fn ctl_bad_option_values_are_usage_errors() {
    for args in [
        &["events", "list", "--status", "BOGUS"][..],
        &["events", "list", "--limit", "500"][..],
        &["events", "list", "--limit=101"][..],
        &["events", "list", "--offset", "x"][..],
        &["events", "list", "--nope"][..],
    ] {
        let out = Command::new(bin())
            .args(["ctl", "--socket", "/nonexistent/admin.sock"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Where the function listens

#[test]
fn a_function_listening_elsewhere_is_told_the_port_it_listens_on() {
    let dir = TempDir::new("start-hint");
    let listen = free_port();
    let own = free_port();
    let p = isolated(fc_init(Mode::Subreaper), &dir, true)
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--", "python3", "-m", "http.server", &own.to_string()])
        .args(["--bind", "127.0.0.1"])
        .start();
    let want = format!("it listens on 127.0.0.1:{own} (set function.port = {own})");
    let deadline = Instant::now() + WATCHDOG;
    if !wait_until(deadline, || p.stderr().contains(&want)) {
        p.fail(&format!("no start hint {want:?}"));
    }
    assert!(
        p.stderr().contains("is not accepting on "),
        "{}",
        p.stderr()
    );
    assert_eq!(p.stderr().matches(&want).count(), 1, "said once");
    drop(p);
    // With --function-port, the same function serves.
    let dir = TempDir::new("function-port");
    let p = isolated(fc_init(Mode::Subreaper), &dir, false)
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--function-port", &own.to_string()])
        .args(["--", "python3", "-m", "http.server", &own.to_string()])
        .args(["--bind", "127.0.0.1"])
        .start();
    wait_port(&p, listen);
    let (status, _, _) = http(listen, "GET", "/", &[], b"");
    assert_eq!(status, 200);
}

#[test]
fn a_function_with_fcs_port_hard_coded_is_told_fc_init_holds_it() {
    let dir = TempDir::new("collision");
    let port = free_port();
    let script = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', {port}))\ns.listen()\n"
    );
    let mut p = isolated(fc_init(Mode::Subreaper), &dir, false)
        .env("FC_SERVER_PORT", port.to_string())
        .args(["--", "python3", "-c", &script])
        .start();
    let code = p.wait(WATCHDOG);
    assert_eq!(code, 1, "the function's own status");
    let stderr = p.stderr();
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "fc-init itself listens on 0.0.0.0:{port} (FC_SERVER_PORT={port})"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("have it listen on $FC_SERVER_PORT"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Graceful terminate

const ASYNC: (&str, &str) = ("x-fc-invocation-type", "Async");

fn ctl(admin: &Path, args: &[&str]) -> (i32, Value) {
    let out = Command::new(bin())
        .arg("ctl")
        .args(["--socket", admin.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json)
}

fn submit(port: u16, body: &[u8], headers: &[(&str, &str)]) -> String {
    let mut h = vec![ASYNC];
    h.extend_from_slice(headers);
    let (status, headers, body) = http(port, "POST", "/invoke", &h, body);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    header(&headers, "x-fc-request-id").unwrap().to_owned()
}

fn wait_event(p: &Proc, admin: &Path, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let (_, e) = ctl(admin, &["events", "get", id]);
        if e["status"] == status {
            return e;
        }
        if Instant::now() >= deadline {
            p.fail(&format!("event {id} never reached {status}: {e}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn health(admin: &Path) -> u16 {
    if !accepting(admin) {
        return 0;
    }
    admin_get(admin, "/health").0
}

#[test]
fn a_graceful_terminate_cut_by_function_timeout_is_answered_and_repossesses_the_instance() {
    let dir = TempDir::new("grace-timeout");
    let (cfg, fx) = FixtureConfig::write(
        &dir,
        &[("FIXTURE_IGNORE_TERM", "1")],
        // Longer than the admin API's 10 s deadline for reading a request: the answer used
        // to be lost to it (the connection closed, ctl exited 1).
        "timeout = \"11s\"\nrestart = \"never\"",
        "[shutdown]\ngrace_period = \"1s\"\n",
    );
    let p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    wait_for("ready", || (health(&fx.admin) == 200).then_some(()));
    let first = fx.first_pid();
    let id = submit(fx.port, b"", &[("x-test-sleep", "30")]);
    wait_event(&p, &fx.admin, &id, "RUNNING");
    let started = Instant::now();
    let (code, e) = ctl(&fx.admin, &["events", "terminate", &id, "--grace"]);
    assert_eq!(code, 0, "the terminate was answered: {e}");
    assert!(started.elapsed() < Duration::from_secs(25));
    assert_eq!(e["status"], "ABORTED", "{e}");
    let message = e["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("cut by function.timeout"), "{e}");
    assert!(!message.contains("User process exit"), "{e}");
    // The signalled process (alive, ignoring SIGTERM) is replaced by a new instance.
    wait_for("a new instance", || {
        let starts: Vec<i64> = fx
            .record()
            .iter()
            .filter(|r| r["event"] == "start")
            .filter_map(|r| r["pid"].as_i64())
            .collect();
        (starts.len() >= 2 && health(&fx.admin) == 200).then_some(())
    });
    assert!(gone(first), "the repossessed process still runs");
    let after = submit(fx.port, b"x", &[]);
    wait_event(&p, &fx.admin, &after, "FINISHED");
    let served_by = fx
        .requests("/invoke")
        .into_iter()
        .find(|r| r["headers"]["x-fc-request-id"] == after.as_str())
        .and_then(|r| r["pid"].as_i64())
        .unwrap();
    assert_ne!(served_by, i64::from(first));
}

/// SCF's documented Flask pattern: SIGTERM sets a stop flag the handler checks; the process
/// does not exit. After a graceful terminate the next event must do its real work (on a new
/// instance), not return at once because the flag is still set.
#[test]
fn scf_flask_stop_flag_pattern_does_real_work_after_a_graceful_terminate() {
    if Command::new("python3")
        .args(["-c", "import flask"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        eprintln!("skipped: python3 with flask is not installed");
        return;
    }
    let dir = TempDir::new("scf-flask");
    let work = dir.path("work.log");
    let app = dir.write(
        "app.py",
        &format!(
            r#"
import os, signal, time
from flask import Flask, request
app = Flask(__name__)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
@app.route("/invoke", methods=["POST"])
def invoke():
    rounds = 600 if request.get_data() == b"long" else 1
    for _ in range(rounds):
        if stop:
            return "stopped early"
        time.sleep(0.05)
    with open({work:?}, "a") as f:
        f.write(f"{{request.headers['x-fc-request-id']}} {{os.getpid()}}\n")
    return "worked"
app.run(host="127.0.0.1", port=int(os.environ["FC_FUNCTION_PORT"]), threaded=True)
"#,
            work = work.display().to_string()
        ),
    );
    let listen = free_port();
    let own = free_port();
    let p = isolated(fc_init(Mode::Subreaper), &dir, false)
        .env("FC_INIT_SHUTDOWN_GRACE_PERIOD", "1s")
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--function-port", &own.to_string()])
        .args(["--", "python3", app.to_str().unwrap()])
        .start();
    let admin = dir.path("admin.sock");
    wait_for("ready", || (health(&admin) == 200).then_some(()));
    let long = submit(listen, b"long", &[]);
    wait_event(&p, &admin, &long, "RUNNING");
    let (code, e) = ctl(&admin, &["events", "terminate", &long, "--grace"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(e["status"], "ABORTED");
    assert_eq!(e["statusCode"], 200, "the function's own answer: {e}");
    assert_eq!(e["errorMessage"], "terminated by an operator");
    let next = submit(listen, b"short", &[]);
    wait_event(&p, &admin, &next, "FINISHED");
    let log = std::fs::read_to_string(&work).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.starts_with(&format!("{next} "))),
        "the next event did no work: {log:?}\n{}",
        p.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// Real gunicorn

const WSGI_APP: &str = r#"
import os, time
def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        open(os.environ["MARK"] + ".started", "w").close()
        while not os.path.exists(os.environ["MARK"] + ".release"):
            time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
"#;

fn gunicorn() -> Option<String> {
    let out = Command::new("gunicorn").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Starts a slow request, sends SIGHUP to `pid`, waits for the reload and then releases the
/// request; returns its status.
fn slow_request_across_a_reload(
    dir: &TempDir,
    port: u16,
    stderr: &dyn Fn() -> String,
    hup: &dyn Fn(),
) -> u16 {
    let request = std::thread::spawn(move || http(port, "GET", "/slow", &[], b"").0);
    let mark = dir.path("mark");
    let started = PathBuf::from(format!("{}.started", mark.display()));
    wait_for("the slow request reached a worker", || {
        started.exists().then_some(())
    });
    let booted = stderr().matches("Booting worker").count();
    hup();
    // gunicorn boots new workers on a reload; a worker killed by the SIGHUP has already cut
    // the request by then.
    let deadline = Instant::now() + WATCHDOG;
    assert!(
        wait_until(deadline, || stderr().matches("Booting worker").count()
            > booted),
        "no reload: {}",
        stderr()
    );
    std::fs::write(format!("{}.release", mark.display()), "").unwrap();
    request.join().unwrap()
}

#[test]
fn real_gunicorn_reloads_under_fc_init_with_a_request_in_flight_answered() {
    let Some(version) = gunicorn() else {
        eprintln!("skipped: gunicorn is not installed (pip install gunicorn)");
        return;
    };
    eprintln!("gunicorn {version}");
    for mode in modes() {
        let dir = TempDir::new("gunicorn");
        dir.write("app.py", WSGI_APP);
        let listen = free_port();
        let own = free_port();
        let p = isolated(fc_init(mode), &dir, false)
            .env("MARK", dir.path("mark").to_str().unwrap())
            .args(["--listen", &format!("127.0.0.1:{listen}")])
            .args(["--function-port", &own.to_string()])
            .args([
                "--",
                "gunicorn",
                "-w",
                "2",
                "-b",
                &format!("127.0.0.1:{own}"),
            ])
            .args(["--chdir", dir.0.to_str().unwrap(), "app:app"])
            .start();
        let admin = dir.path("admin.sock");
        wait_for("ready", || (health(&admin) == 200).then_some(()));
        let status =
            slow_request_across_a_reload(&dir, listen, &|| p.stderr(), &|| p.signal(libc::SIGHUP));
        assert_eq!(status, 200, "{mode:?}\n{}", p.stderr());
        assert!(!p.stderr().contains("was sent SIGHUP"), "{}", p.stderr());
    }
}

#[test]
fn real_gunicorn_reloads_under_tini_s_the_same_way() {
    let (Some(_), true) = (gunicorn(), Path::new("/usr/bin/tini").exists()) else {
        eprintln!("skipped: gunicorn or Debian's tini (apt-get install tini) is not installed");
        return;
    };
    let dir = TempDir::new("gunicorn-tini");
    dir.write("app.py", WSGI_APP);
    let own = free_port();
    let mut child = Command::new("/usr/bin/tini")
        .args(["-s", "--", "gunicorn", "-w", "2", "-b"])
        .arg(format!("127.0.0.1:{own}"))
        .args(["--chdir", dir.0.to_str().unwrap(), "app:app"])
        .env("MARK", dir.path("mark"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut err, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    wait_for("gunicorn listens", || {
        std::net::TcpStream::connect(("127.0.0.1", own)).ok()
    });
    let pid = child.id() as i32;
    let status = slow_request_across_a_reload(&dir, own, &|| log.lock().unwrap().clone(), &|| {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGHUP) };
    });
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(status, 200, "{}", log.lock().unwrap());
}

// ---------------------------------------------------------------------------------------------
// The examples

/// Runs `example`'s config with a free port and a private admin socket; a client's
/// `POST /initialize` and `GET /pre-stop` are ordinary HTTP requests to it.
fn example_refuses_client_hooks(example: &str, runtime: &str) {
    if Command::new(runtime).arg("--version").output().is_err() {
        eprintln!("skipped: examples/{example} needs {runtime}, which is not installed");
        return;
    }
    let dir = TempDir::new(&format!("example-{example}"));
    let port = free_port();
    let cfg = format!(
        "{}/examples/{example}/fc-init.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let p = isolated(fc_init(Mode::Subreaper), &dir, true)
        .env("FC_INIT_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .args(["-c", &cfg])
        .start();
    let admin = dir.path("admin.sock");
    wait_for("ready", || (health(&admin) == 200).then_some(()));
    for (method, path) in [("POST", "/initialize"), ("GET", "/pre-stop")] {
        let (status, _, body) = http(port, method, path, &[("x-fc-control-path", path)], b"");
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{example}: {body}");
        assert!(
            body.contains(&format!("You asked for {method} {path}")),
            "{example}: {method} {path} ran hook code: {body:?}"
        );
    }
    let (status, _, body) = http(port, "POST", "/invoke", &[], b"{}");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("requestId"));
    // The initializer ran once, for fc-init.
    let stderr = p.stderr();
    assert!(stderr.matches("initialized").count() <= 1, "{stderr}");
}

#[test]
fn the_python_example_refuses_client_triggered_hooks() {
    example_refuses_client_hooks("python", "python3");
}

#[test]
fn the_node_example_refuses_client_triggered_hooks() {
    example_refuses_client_hooks("node", "node");
}

#[test]
fn the_go_example_refuses_client_triggered_hooks() {
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("skipped: examples/go needs the go toolchain, which is not installed");
        return;
    }
    let dir = format!("{}/examples/go", env!("CARGO_MANIFEST_DIR"));
    let built = Command::new("go")
        .args(["build", "-o", "function", "."])
        .current_dir(&dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(built, "go build in {dir}");
    example_refuses_client_hooks("go", "go");
}
