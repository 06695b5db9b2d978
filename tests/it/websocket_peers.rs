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
    let (mut p, port) = start_with_fixture(
        &dir,
        "websockets_peers.py",
        &["serve"],
        "timeout = \"60s\"",
        "",
    );
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
