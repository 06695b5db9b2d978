//! WebSockets through fc-init between real peers: the PyPI `websockets` library as the
//! function (an echo server) and as the client (tests/fixtures/websockets_peers.py), not the
//! RFC 6455 client written in tests/it/websocket.rs. Skips, saying why, where `websockets`
//! cannot be imported (.ci/run installs it).

use std::process::Command;

use crate::util::*;

fn websockets_or_skip() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import websockets.sync.client, websockets.asyncio.server",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: python3 cannot import websockets (pip install websockets)");
    }
    ok
}

#[test]
fn real_websockets_client_and_server_echo_through_fc_init_with_the_request_id() {
    if !websockets_or_skip() {
        return;
    }
    let dir = TempDir::new("ws-real");
    let port = free_port();
    let text = format!(
        "[function]\ncommand = [\"python3\", {fixture:?}, \"serve\"]\nsocket = {socket:?}\n\
         timeout = \"60s\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n\
         [admin]\nsocket = {admin:?}\n[async]\nstore = {store:?}\n",
        fixture = fixture("websockets_peers.py"),
        socket = dir.path("fn.sock").display().to_string(),
        admin = dir.path("admin.sock").display().to_string(),
        store = dir.path("events.db").display().to_string(),
    );
    let cfg = dir.write("fc-init.toml", &text);
    let mut p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    wait_port(&p, port);
    let out = Command::new("timeout")
        .args(["120", "python3"])
        .arg(fixture("websockets_peers.py"))
        .args(["client", &format!("ws://127.0.0.1:{port}/ws"), "70"])
        .output()
        .expect("run the websockets client");
    let printed = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(printed.trim()).unwrap_or_else(|_| {
        p.fail(&format!(
            "the websockets client failed: {printed}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    assert_eq!(v["request_id"], "ws-real", "{v}");
    assert_eq!(v["echoes_ok"], true, "{v}");
    assert_eq!(v["text_ok"], true, "{v}");
    assert_eq!(v["close_code"], 1000, "{v}");
    // The whole WebSocket was one invocation, ended when it closed.
    let found = wait_until(std::time::Instant::now() + WATCHDOG, || {
        p.stdout()
            .lines()
            .any(|l| l == "FC Invoke End RequestId: ws-real")
    });
    assert!(found, "no End line for ws-real");
    // The echo server has no SIGTERM handler: it dies of the signal, and fc-init exits with
    // the function's own status, 128 + 15.
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 143);
}
