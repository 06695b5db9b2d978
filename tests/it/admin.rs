//! The admin API on its private socket, and `fc-init ctl`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::util::*;

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("ctl")
        .args(args)
        .env_remove("FC_INIT_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn health_status_and_metrics_follow_the_lifecycle() {
    let dir = TempDir::new("admin");
    let (cfg, fx) =
        FixtureConfig::write(&dir, &[("FIXTURE_INIT_DELAY", "1")], "", "[initializer]\n");
    let mut p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    p.expect_line("initializer start", |l| {
        l.starts_with("FC Initialize Start")
    });
    let (code, body) = admin_get(&fx.admin, "/health");
    assert_eq!((code, body.as_str()), (503, r#"{"status":"initializing"}"#));
    let socket = fx.admin.to_str().unwrap();
    assert_eq!(
        ctl(&["--socket", socket, "health"]).0,
        1,
        "health must fail while initializing"
    );
    p.expect_line("initialized", |l| l.starts_with("FC Initialize End"));
    let (code, body) = admin_get(&fx.admin, "/health");
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ready"}"#));
    let (code, out, err) = ctl(&["--socket", socket, "health"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"status":"ready"}"#);

    let (code, out, _) = ctl(&["--socket", socket, "status"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in [
        "state",
        "functionPid",
        "restarts",
        "initializerAttempts",
        "inFlight",
        "queued",
        "version",
        "uptimeSeconds",
    ] {
        assert!(status.get(key).is_some(), "missing {key}: {out}");
    }
    assert_eq!(status["state"], "ready");
    assert_eq!(status["initializerAttempts"], 1);
    let pid = status["functionPid"].as_i64().unwrap();
    assert_eq!(fx.requests("/initialize")[0]["pid"].as_i64(), Some(pid));

    let (code, text) = admin_get(&fx.admin, "/metrics");
    assert_eq!(code, 200);
    check_prometheus_text(&text);
    assert!(
        text.contains("fc_init_initializer_attempts_total{result=\"success\"} 1"),
        "{text}"
    );

    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

/// Every line is a comment (`# HELP`/`# TYPE`) or `name{labels} value` with a numeric value, and
/// every sample belongs to a declared family.
fn check_prometheus_text(text: &str) {
    let mut families = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut f = rest.split(' ');
            families.insert(f.next().unwrap().to_owned());
            assert!(
                matches!(f.next(), Some("counter" | "gauge" | "histogram")),
                "{line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            families.contains(name) || families.contains(family),
            "undeclared family for {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line:?}"
            );
        }
    }
    for name in [
        "fc_init_requests_total",
        "fc_init_request_duration_seconds",
        "fc_init_in_flight_requests",
        "fc_init_queued_requests",
        "fc_init_initializer_attempts_total",
        "fc_init_function_restarts_total",
    ] {
        assert!(families.contains(name), "missing {name}:\n{text}");
    }
}

#[test]
fn another_uid_is_refused_on_the_admin_socket() {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("note: not root; cannot connect as another uid");
        return;
    }
    let dir = TempDir::new("admin-uid");
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "");
    let mut p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    wait_for("admin socket", || accepting(&fx.admin).then_some(()));
    wait_for("ready", || {
        (admin_get(&fx.admin, "/health").0 == 200).then_some(())
    });
    let mode = std::fs::metadata(&fx.admin).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin socket mode {mode:o}");
    // As nobody: the file mode already refuses the connection.
    let as_nobody = |socket: &std::path::Path| {
        let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1])\nexcept OSError as e:\n print('refused', e.errno); sys.exit(0)\ns.sendall(b'GET /status HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\nprint(s.recv(4096).decode().split('\\r\\n')[0])\n";
        let out = Command::new("python3")
            .args(["-c", script, socket.to_str().unwrap()])
            .uid(65534)
            .gid(65534)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert!(
        as_nobody(&fx.admin).starts_with("refused"),
        "nobody connected"
    );
    // Even with the mode opened up, SO_PEERCRED refuses the peer.
    std::fs::set_permissions(&fx.admin, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(as_nobody(&fx.admin), "HTTP/1.1 403 Forbidden");
    // The owner is still served.
    assert_eq!(admin_get(&fx.admin, "/status").0, 200);
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

#[test]
fn ctl_exit_codes() {
    let dir = TempDir::new("ctl");
    let (code, _, err) = ctl(&[
        "--socket",
        dir.path("nothing.sock").to_str().unwrap(),
        "status",
    ]);
    assert_eq!(code, 1, "unreachable socket: {err}");
    assert_eq!(ctl(&["bogus"]).0, 2);
    assert_eq!(ctl(&[]).0, 2);
    // A program literally named ctl runs with `fc-init -- ctl`.
    let script = dir.write("ctl", "#!/bin/sh\necho i-am-ctl \"$@\"\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.0.display(), std::env::var("PATH").unwrap());
    let (code, out, err) = fc_init(Mode::Subreaper)
        .env("PATH", path)
        .args(["--", "ctl", "x"])
        .output();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "i-am-ctl x\n");
}

#[test]
fn ctl_finds_the_socket_through_the_config() {
    let dir = TempDir::new("ctl-config");
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "");
    let mut p = fc_init(Mode::Subreaper)
        .env("FC_INIT_LOG", "debug")
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    let (code, out, err) = wait_for("ready through ctl", || {
        Some(ctl(&["-c", cfg.to_str().unwrap(), "health"])).filter(|r| r.0 == 0)
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"status":"ready"}"#);
    p.signal(libc::SIGTERM);
    let code = p.wait(WATCHDOG);
    assert_eq!(code, 0, "{}\n{:?}", p.stderr(), fx.record());
}

/// fc-init with the fixture in `dir` and its admin API on TCP too, on a free port, once ready:
/// the fc-init, the fixture's details and that port.
fn start_with_admin_listen(dir: &TempDir) -> (Proc, FixtureConfig, u16) {
    let port = free_port();
    let (cfg, fx) = FixtureConfig::write(dir, &[], "", "");
    // The fixture config names the admin socket already; the TCP listener comes by environment.
    let p = fc_init(Mode::Subreaper)
        .env("FC_INIT_ADMIN_LISTEN", format!("127.0.0.1:{port}"))
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    wait_for("admin socket", || accepting(&fx.admin).then_some(()));
    wait_for("ready", || {
        (admin_get(&fx.admin, "/health").0 == 200).then_some(())
    });
    (p, fx, port)
}

#[test]
fn admin_listen_serves_only_health_and_metrics() {
    let dir = TempDir::new("admin-tcp");
    let (mut p, _fx, port) = start_with_admin_listen(&dir);
    let (status, _, body) = http(port, "GET", "/health", &[], b"");
    assert_eq!(
        (status, body.as_slice()),
        (200, br#"{"status":"ready"}"#.as_slice())
    );
    let (status, headers, body) = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; version=0.0.4")
    );
    check_prometheus_text(&String::from_utf8(body).unwrap());
    for path in ["/status", "/async-events"] {
        assert_eq!(
            http(port, "GET", path, &[], b"").0,
            404,
            "{path} served over TCP"
        );
    }
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

/// The threads of `pid` named `name` (the admin API names each connection's thread by its
/// listener), so that no other thread coming or going can move the count.
fn threads_named(pid: i32, name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .count()
}

/// Each admin connection had a thread of its own with no cap: a flood of idle connections on
/// the TCP listener (reachable by anyone) started a thread each. Now each listener serves at
/// most 32 at once, and the private socket keeps its own slots.
#[test]
fn a_flood_of_idle_admin_connections_started_a_thread_each() {
    let dir = TempDir::new("admin-flood");
    let (mut p, fx, port) = start_with_admin_listen(&dir);
    assert_eq!(threads_named(p.pid(), "fc-admin-tcp"), 0);
    // Idle connections that never send a request: each holds what serves it until the
    // connection deadline (10 s).
    let held: Vec<_> = (0..100)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // The private socket still answers while the TCP listener is full…
    assert_eq!(admin_get(&fx.admin, "/health").0, 200);
    // …by then the TCP listener has taken all it will take.
    wait_for("the TCP listener's slots taken", || {
        (threads_named(p.pid(), "fc-admin-tcp") >= 32).then_some(())
    });
    // A thread gives its slot back just before it ends, so one ending (an idle connection's
    // 10 s deadline, on a slow machine) may briefly overlap the next one's start.
    let during = threads_named(p.pid(), "fc-admin-tcp");
    assert!(
        during <= 32 + 2,
        "{during} connection threads with 100 idle admin connections"
    );
    drop(held);
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}
