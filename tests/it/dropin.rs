//! fc-init as a drop-in: for tini in any image, and for an unmodified Function Compute custom
//! container on FC's platform and anywhere else (issue 8).
//!
//! Exit statuses in serving mode, FC's port variables and an FC-style server on its own port,
//! `server.platform` (in `platform`), command hooks with a function that never listens, the answers of
//! requests that wait for an instance that will not come, Ctrl-C in a real terminal, and the
//! small ones (the admin socket removed, `ctl` usage, the runtime directory's mode).
//!
//! The function is either a shell one-liner or the Python fixture (tests/fixtures/function.py),
//! whose record proves what reached it; Ctrl-C goes through a real pseudo-terminal driven by
//! tests/fixtures/pty_ctrl_c.py.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const INIT_START: &str = "FC Initialize Start RequestId: ";
const INIT_END: &str = "FC Initialize End RequestId: ";
const PRESTOP_START: &str = "FC PreStop Start RequestId: ";
const PRESTOP_END: &str = "FC PreStop End RequestId: ";
const INVOKE_END: &str = "FC Invoke End RequestId: ";

fn sh(script: &str) -> Vec<String> {
    vec!["--".into(), "sh".into(), "-c".into(), script.into()]
}

/// The recorded request that carried `x-fc-request-id: id`.
fn request_with_id(fx: &FixtureConfig, id: &str) -> Value {
    fx.record()
        .into_iter()
        .find(|r| r["event"] == "request" && r["headers"]["x-fc-request-id"] == id)
        .unwrap_or_else(|| panic!("no request with id {id} in {:?}", fx.record()))
}

/// Recorded requests to `path` that fc-init sent as the lifecycle call `control_path`.
fn hook_calls(fx: &FixtureConfig, path: &str, control_path: &str) -> usize {
    fx.requests(path)
        .iter()
        .filter(|r| r["headers"]["x-fc-control-path"] == control_path)
        .count()
}

/// The fixture under fc-init with `[server] platform` set through the environment.
fn start_platform(
    dir: &TempDir,
    platform: &str,
    fixture_env: &[(&str, &str)],
    extra: &str,
) -> (Proc, FixtureConfig) {
    let (cfg, fx) = FixtureConfig::write(dir, fixture_env, "", extra);
    let p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .env("FC_INIT_SERVER_PLATFORM", platform)
        .start();
    wait_port(&p, fx.port);
    (p, fx)
}

fn wait_ready(p: &Proc, fx: &FixtureConfig) {
    wait_for("the admin socket", || accepting(&fx.admin).then_some(()));
    let deadline = Instant::now() + WATCHDOG;
    while admin_get(&fx.admin, "/health").0 != 200 {
        if Instant::now() >= deadline {
            p.fail("the instance never became ready");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An FC lifecycle or invocation call: `x-fc-control-path` and FC's own request id.
fn fc_call(port: u16, method: &str, path: &str, control_path: &str, id: &str) -> u16 {
    http(
        port,
        method,
        path,
        &[("x-fc-control-path", control_path), ("x-fc-request-id", id)],
        b"",
    )
    .0
}

// ---- Exit statuses in serving mode: a function that exits gives its own status ----

#[test]
fn serving_fc_init_exits_with_the_status_of_a_function_that_never_listened() {
    for mode in modes() {
        for (script, want) in [("exit 0", 0), ("exit 7", 7), ("kill -9 $$", 137)] {
            let dir = TempDir::new("serve-exit");
            let listen = format!("127.0.0.1:{}", free_port());
            let run = fc_init(mode).args(["--listen", &listen]).args(sh(script));
            let (code, _, err) = isolated(run, &dir, true).output();
            assert_eq!(code, want, "{mode:?} `{script}`: {err}");
        }
    }
}

#[test]
fn serving_fc_init_with_cat_reading_stdin_to_eof_exits_0() {
    for mode in modes() {
        let dir = TempDir::new("serve-cat");
        let listen = format!("127.0.0.1:{}", free_port());
        let run = fc_init(mode)
            .args(["--listen", &listen, "--", "cat"])
            .stdin(b"to the end of stdin\n");
        let (code, out, err) = isolated(run, &dir, true).output();
        assert_eq!(code, 0, "{mode:?}: {err}");
        assert_eq!(out, "to the end of stdin\n", "{mode:?}");
    }
}

#[test]
fn fc_port_variables_pass_the_function_status_through() {
    for mode in modes() {
        for (var, script, want) in [
            ("FC_SERVER_PORT", "sleep 0.5; exit 5", 5),
            ("FC_CUSTOM_LISTEN_PORT", "exit 9", 9),
        ] {
            let dir = TempDir::new("fc-port-exit");
            let run = fc_init(mode)
                .env(var, free_port().to_string())
                .args(sh(script));
            let (code, _, err) = isolated(run, &dir, false).output();
            assert_eq!(code, want, "{mode:?} {var} `{script}`: {err}");
        }
    }
}

#[test]
fn a_running_function_that_never_accepts_within_start_timeout_exits_3() {
    for mode in modes() {
        let dir = TempDir::new("start-timeout");
        let listen = format!("127.0.0.1:{}", free_port());
        let run = fc_init(mode)
            .env("FC_INIT_FUNCTION_START_TIMEOUT", "300ms")
            .args(["--listen", &listen, "--", "sleep", "30"]);
        let started = Instant::now();
        let (code, _, err) = isolated(run, &dir, true).output();
        assert_eq!(code, 3, "{mode:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "{mode:?}");
    }
}

// ---- An unmodified FC custom-container server: it listens on $FC_SERVER_PORT ----

#[test]
fn an_fc_style_server_on_fc_s_port_variable_is_served_from_a_loopback_port_of_its_own() {
    for mode in modes() {
        for var in ["FC_SERVER_PORT", "FC_CUSTOM_LISTEN_PORT"] {
            let dir = TempDir::new("fc-style");
            let record = dir.path("record.jsonl");
            let fc_port = free_port();
            // No config file and no flags: the image's own command, as FC runs it.
            let run = fc_init(mode)
                .env(var, fc_port.to_string())
                .env("FC_FUNCTION_NAME", "fc-style-fn")
                .env("FIXTURE_RECORD", record.to_str().unwrap())
                .env(&format!("FIXTURE_LISTEN_ON_{var}"), "1")
                .args(["--", "python3", &fixture("function.py")]);
            let mut p = isolated(run, &dir, false).start();
            let fx = FixtureConfig {
                admin: dir.path("admin.sock"),
                port: fc_port,
                record,
                socket: dir.path("unused.sock"),
            };
            wait_port(&p, fc_port);
            let (status, _, body) = http(fc_port, "GET", "/hello", &[], b"");
            let body = String::from_utf8_lossy(&body).into_owned();
            if status != 200 {
                p.fail(&format!("{mode:?} {var}: {status} {body}"));
            }
            let echo: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(echo["path"], "/hello");
            assert_eq!(echo["headers"]["x-fc-function-name"], "fc-style-fn");
            assert_eq!(echo["headers"]["x-fc-control-path"], "/http-invoke");

            let record = fx.record();
            let listening = record.iter().find(|r| r["event"] == "listening").unwrap();
            let own = listening["port"].as_u64().expect("the fixture's port");
            assert_ne!(
                own,
                u64::from(fc_port),
                "{mode:?} {var}: on fc-init's own port"
            );
            let env = &record.iter().find(|r| r["event"] == "start").unwrap()["fc_env"];
            let own = own.to_string();
            assert_eq!(env[var], own.as_str(), "{mode:?} {var}: {env}");
            assert_eq!(env["FC_FUNCTION_PORT"], own.as_str(), "{env}");
            for other in ["FC_SERVER_PORT", "FC_CUSTOM_LISTEN_PORT"] {
                assert!(
                    env[other].is_null() || env[other] == own.as_str(),
                    "{other} still names fc-init's port: {env}"
                );
            }
            assert!(env["FC_FUNCTION_SOCKET"].is_null(), "{env}");
            p.signal(libc::SIGTERM);
            assert_eq!(p.wait(WATCHDOG), 0, "{mode:?} {var}");
        }
    }
}

#[test]
fn function_name_defaults_to_fc_function_name() {
    let dir = TempDir::new("fc-name");
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "");
    let mut p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .env("FC_FUNCTION_NAME", "named-by-fc")
        .start();
    wait_port(&p, fx.port);
    let (status, _, _) = http(fx.port, "GET", "/x", &[("x-fc-request-id", "name-1")], b"");
    assert_eq!(status, 200);
    assert_eq!(
        request_with_id(&fx, "name-1")["headers"]["x-fc-function-name"],
        "named-by-fc"
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

// ---- Command hooks with a function that never listens ----

/// A config whose function never listens on its socket; `hooks` appended.
fn never_listening(dir: &TempDir, command: &str, hooks: &str) -> std::path::PathBuf {
    let text = format!(
        "[function]\ncommand = {command}\nsocket = {socket:?}\nstart_timeout = \"20s\"\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nsocket = {admin:?}\n\
         [async]\nstore = {store:?}\n{hooks}\n",
        socket = dir.path("fn.sock").to_str().unwrap(),
        port = free_port(),
        admin = dir.path("admin.sock").to_str().unwrap(),
        store = dir.path("events.db").to_str().unwrap(),
    );
    dir.write("fc-init.toml", &text)
}

#[test]
fn a_command_initializer_runs_at_once_with_a_function_that_never_listens() {
    let dir = TempDir::new("cmd-init");
    let marker = dir.path("init-ran");
    let hooks = format!(
        "[initializer]\ncommand = [\"sh\", \"-c\", \"echo \\\"$FC_CONTROL_PATH\\\" > {}\"]\n",
        marker.display()
    );
    let cfg = never_listening(&dir, r#"["sleep", "60"]"#, &hooks);
    let mut p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    // Well before start_timeout (20s): it does not wait for the socket.
    let end = p.expect_line_within("initializer end", Duration::from_secs(8), |l| {
        l.starts_with(INIT_END)
    });
    assert!(!end.contains("Error"), "{end}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "/initialize\n");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM, "{}", p.stderr());
}

#[test]
fn sigterm_while_waiting_for_the_socket_still_runs_a_command_prestop() {
    let dir = TempDir::new("cmd-prestop");
    let started = dir.path("started");
    let marker = dir.path("prestop-ran");
    let command = format!(
        "[\"sh\", \"-c\", \"echo started > {}; exec sleep 60\"]",
        started.display()
    );
    let hooks = format!(
        "[pre_stop]\ncommand = [\"sh\", \"-c\", \"echo \\\"$FC_CONTROL_PATH\\\" >> {}\"]\n",
        marker.display()
    );
    let cfg = never_listening(&dir, &command, &hooks);
    let mut p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    wait_for("the function to start", || started.exists().then_some(()));
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 128 + libc::SIGTERM, "{}", p.stderr());
    let out = p.stdout();
    assert_eq!(out.matches(PRESTOP_START).count(), 1, "{out}");
    let end = out.lines().find(|l| l.starts_with(PRESTOP_END)).unwrap();
    assert!(!end.contains("Error"), "{end}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "/pre-stop\n"
    );
}

// ---- Requests waiting for an instance that will not come ----

/// fc-init under `on_failure = "exit"` with an initializer that fails after `delay` seconds,
/// once that attempt is under way.
fn failing_initializer_under_exit(tag: &str, delay: &str) -> (TempDir, FixtureConfig, Proc) {
    let dir = TempDir::new(tag);
    let (cfg, fx) = FixtureConfig::write(
        &dir,
        &[("FIXTURE_INIT_FAIL", "1"), ("FIXTURE_INIT_DELAY", delay)],
        "",
        "[initializer]\non_failure = \"exit\"\n",
    );
    let p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    wait_port(&p, fx.port);
    wait_for("the initializer call", || {
        (!fx.requests("/initialize").is_empty()).then_some(())
    });
    (dir, fx, p)
}

#[test]
fn exit_policy_answers_waiting_requests_with_initialization_error_then_exits_3() {
    // The failing attempt is under way (it takes 1.5s): these requests wait for it.
    let (_dir, fx, mut p) = failing_initializer_under_exit("exit-answers", "1.5");
    let port = fx.port;
    // Empty bodies: fc-init answers these without reading a body, and a body it never read
    // turns its close into a reset, which a client that reads to the end sees as an error
    // after the answer (RFC 9112 section 9.6).
    let event = std::thread::spawn(move || http(port, "POST", "/invoke", &[], b""));
    let plain = std::thread::spawn(move || http(port, "GET", "/x", &[], b""));
    for (answer, want) in [(event.join().unwrap(), 200), (plain.join().unwrap(), 503)] {
        let (status, headers, body) = answer;
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, want, "{body}");
        assert_eq!(
            header(&headers, "x-fc-error-type"),
            Some("InitializationError"),
            "{body}"
        );
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["errorType"], "InitializationError");
        assert!(
            json["errorMessage"].as_str().unwrap().contains("500"),
            "the message does not carry the attempt's reason: {body}"
        );
    }
    assert_eq!(p.wait(WATCHDOG), 3, "{}", p.stderr());
}

#[test]
fn answers_decided_just_before_exit_are_written_before_fc_init_exits() {
    // The bug: fc-init exited (status 3) as soon as the function was reaped, while its loops
    // were still writing the InitializationError answers it had just decided on, so some
    // clients saw their connection closed with no answer. Many waiting clients, and the
    // ones that keep arriving until the end, make that window wide.
    let (_dir, fx, mut p) = failing_initializer_under_exit("exit-settle", "1");
    let port = fx.port;
    let clients: Vec<_> = (0..48)
        .map(|_| {
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                // Until the listener is gone: every request that fc-init took must be
                // answered.
                while let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    if s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n").is_err() {
                        break;
                    }
                    let mut raw = Vec::new();
                    match s.read_to_end(&mut raw) {
                        Ok(_) if raw.is_empty() => answers.push(None),
                        Ok(_) => answers.push(Some(String::from_utf8_lossy(&raw).into_owned())),
                        // Reset: still in the listen queue when fc-init stopped accepting.
                        Err(_) => break,
                    }
                }
                answers
            })
        })
        .collect();
    let mut answered = 0;
    for c in clients {
        for a in c.join().unwrap() {
            let a = a.unwrap_or_else(|| p.fail("a connection closed without an answer"));
            assert!(
                a.starts_with("HTTP/1.1 503") && a.contains("InitializationError")
                    || a.contains("InstanceStopping"),
                "{a}"
            );
            answered += 1;
        }
    }
    assert!(answered >= 48, "only {answered} answers");
    assert_eq!(p.wait(WATCHDOG), 3, "{}", p.stderr());
}

#[test]
fn a_request_waiting_through_a_restart_backoff_is_told_the_function_is_restarting() {
    let dir = TempDir::new("restart-wait");
    let count = dir.path("starts");
    let port = free_port();
    let script = format!("echo x >> {}; exit 1", count.display());
    let run = fc_init(Mode::Subreaper)
        .env("FC_INIT_FUNCTION_RESTART", "on-failure")
        .env("FC_INIT_FUNCTION_RESTART_BACKOFF_MAX", "10s")
        .env("FC_INIT_FUNCTION_TIMEOUT", "500ms")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(sh(&script));
    let mut p = isolated(run, &dir, true).start();
    // Backoffs of 100, 200, 400 and 800ms: after the fifth start the next one is 1.6s away,
    // longer than the request's 500ms.
    wait_for("five starts of the function (restart = on-failure)", || {
        let n = std::fs::read_to_string(&count).unwrap_or_default();
        (n.lines().count() >= 5).then_some(())
    });
    wait_port(&p, port);
    let (status, headers, body) = http(port, "GET", "/x", &[], b"");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        header(&headers, "x-fc-error-type"),
        Some("InitializationError")
    );
    let json: Value = serde_json::from_str(&body).unwrap();
    let message = json["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("restart") && message.contains("status 1"),
        "{message}"
    );
    p.signal(libc::SIGTERM);
    p.wait(WATCHDOG);
}

// ---- Ctrl-C in a real terminal ----

/// Runs `args` (fc-init's) under a pseudo-terminal as a foreground job, presses Ctrl-C once
/// `marker` has appeared, and returns the terminal's output and the job's exit status.
fn ctrl_c(mode: Mode, marker: &str, args: &[&str]) -> (String, i32) {
    let mut command = vec![
        "python3".to_owned(),
        fixture("pty_ctrl_c.py"),
        marker.into(),
    ];
    if mode == Mode::Pid1 {
        command.extend(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"].map(String::from),
        );
    }
    command.push(bin().into());
    command.extend(args.iter().map(|s| s.to_string()));
    let out = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env_remove("FC_INIT_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env("FIXTURE_PTY_TIMEOUT", WATCHDOG.as_secs().to_string())
        .output()
        .expect("running the pty driver");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("PTY-EXIT "))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{mode:?}: the job did not exit after Ctrl-C:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (text, code)
}

#[test]
fn ctrl_c_in_a_terminal_runs_fc_init_s_own_shutdown_when_serving() {
    for mode in modes() {
        let dir = TempDir::new("pty-serve");
        let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "[initializer]\n[pre_stop]\n");
        let (out, code) = ctrl_c(mode, INIT_END, &["-c", cfg.to_str().unwrap()]);
        assert_eq!(
            code, 0,
            "{mode:?}: the function's own status after SIGTERM\n{out}"
        );
        assert_eq!(out.matches(PRESTOP_START).count(), 1, "{mode:?}\n{out}");
        assert!(out.contains(PRESTOP_END), "{mode:?}\n{out}");
        let signals: Vec<_> = fx
            .record()
            .into_iter()
            .filter(|r| r["event"] == "signal")
            .map(|r| r["signal"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            signals,
            ["SIGTERM"],
            "{mode:?}: Ctrl-C reached the function"
        );
        assert_eq!(fx.requests("/pre-stop").len(), 1, "{mode:?}");
    }
}

#[test]
fn ctrl_c_in_a_terminal_reaches_the_function_in_plain_init_mode() {
    for mode in modes() {
        let (out, code) = ctrl_c(
            mode,
            "ready-for-ctrl-c",
            &["--", "sh", "-c", "echo ready-for-ctrl-c; exec sleep 60"],
        );
        assert_eq!(code, 130, "{mode:?}: killed by SIGINT\n{out}");
    }
}

// ---- Small ones ----

#[test]
fn the_admin_socket_is_removed_after_a_clean_exit() {
    for mode in modes() {
        let dir = TempDir::new("admin-gone");
        let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "");
        let mut p = fc_init(mode).args(["-c", cfg.to_str().unwrap()]).start();
        wait_ready(&p, &fx);
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(WATCHDOG), 0, "{mode:?}");
        assert!(
            !fx.admin.exists(),
            "{mode:?}: {} left behind",
            fx.admin.display()
        );
    }
}

#[test]
fn ctl_events_get_without_an_id_is_a_usage_error() {
    let dir = TempDir::new("ctl-usage");
    let socket = dir.path("none.sock");
    for args in [&["events", "get"][..], &["events", "terminate"]] {
        let out = std::process::Command::new(bin())
            .args(["ctl", "--socket", socket.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("unknown subcommand"), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or("").to_lowercase();
        assert!(
            first.contains("id"),
            "{args:?} does not say the id is missing: {err}"
        );
    }
}

#[test]
fn a_loose_runtime_directory_is_made_0700() {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("note: not root; cannot run fc-init as another user with its own runtime dir");
        return;
    }
    // As nobody, fc-init's runtime directory is $XDG_RUNTIME_DIR/fc-init: made here, loose.
    let dir = TempDir::new("runtime-mode");
    let xdg = dir.path("xdg");
    let runtime = xdg.join("fc-init");
    std::fs::create_dir_all(&runtime).unwrap();
    for d in [&dir.0, &xdg] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    nix::unistd::chown(
        &runtime,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(bin())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--", "sleep", "30"])
        .env("XDG_RUNTIME_DIR", &xdg)
        .env_remove("FC_INIT_CONFIG")
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    let admin = runtime.join("admin.sock");
    let up = wait_until(Instant::now() + WATCHDOG, || accepting(&admin));
    let mode = std::fs::metadata(&runtime).unwrap().permissions().mode() & 0o777;
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(up, "fc-init as nobody never served on {}", admin.display());
    assert_eq!(mode, 0o700, "runtime directory mode {mode:o}");
}

mod platform;
