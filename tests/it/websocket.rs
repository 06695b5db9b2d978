//! Upgrades through fc-init (docs/reference.md §4 "Streaming and upgrades"): a WebSocket handshake is
//! forwarded with `Upgrade` and `Connection`, the function's `101` reaches the client, and the
//! two connections are relayed byte for byte as one request in flight, bounded by
//! `function.timeout`. `Upgrade: h2c` is dropped.
//!
//! The client side of RFC 6455 is written here (Python's stdlib has none; the fixture's echo
//! server is in tests/fixtures/function.py): masked frames out, unmasked frames in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::proxy::{get, invoke_end, Client, Server};
use crate::util::*;

/// The key and its answer from RFC 6455 §1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

struct Ws {
    r: BufReader<TcpStream>,
}

impl Ws {
    /// Connects and upgrades; returns the socket and the 101's header lines (lower-cased).
    fn open(port: u16, id: &str) -> (Ws, Vec<String>) {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to fc-init");
        s.set_read_timeout(Some(WATCHDOG)).unwrap();
        let mut ws = Ws {
            r: BufReader::new(s),
        };
        let handshake = format!(
            "GET /ws?room=1 HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\nx-fc-request-id: {id}\r\n\r\n"
        );
        ws.r.get_mut().write_all(handshake.as_bytes()).unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            ws.r.read_line(&mut line).expect("the handshake answer");
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            lines.push(line.to_ascii_lowercase());
        }
        (ws, lines)
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 1 << 16 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.r.get_mut().write_all(&frame).expect("write a frame");
    }

    /// The next frame (opcode, payload); `None` when the connection closes.
    fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.r.read_exact(&mut head).ok()?;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            self.r.read_exact(&mut b).ok()?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            self.r.read_exact(&mut b).ok()?;
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0; len as usize];
        self.r.read_exact(&mut payload).ok()?;
        Some((head[0] & 0x0f, payload))
    }

    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

fn upgraded(lines: &[String]) -> bool {
    lines.first().is_some_and(|l| l.starts_with("http/1.1 101"))
        && lines
            .iter()
            .any(|l| l == &format!("sec-websocket-accept: {}", ACCEPT.to_ascii_lowercase()))
        && lines.iter().any(|l| l == "upgrade: websocket")
        && lines.iter().any(|l| l == "connection: upgrade")
}

#[test]
fn a_websocket_handshake_and_echo_round_trips() {
    let s = Server::ready("ws-echo", &[], "", &[], "");
    let (mut ws, lines) = Ws::open(s.fx.port, "ws-1");
    assert!(upgraded(&lines), "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "x-fc-request-id: ws-1"),
        "{lines:?}"
    );
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    for payload in [&b"hello"[..], &[b'x'; 200], &big, b"last"] {
        ws.send(0x2, payload);
        let (opcode, echo) = ws.recv().expect("an echo");
        assert_eq!(opcode, 0x2);
        assert!(echo == payload, "echo of {} bytes differs", payload.len());
    }
    // The function saw the upgrade, with the contract's fields.
    let req = &s.fx.requests("/ws")[0];
    let h = &req["headers"];
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(
        h["connection"].as_str().map(str::to_ascii_lowercase),
        Some("upgrade".into())
    );
    assert_eq!(h["x-fc-control-path"], "/http-invoke");
    assert_eq!(h["x-fc-request-id"], "ws-1");
    assert_eq!(req["query"], "room=1");
    // A close frame is answered, then both sides close; the End line comes at the close.
    ws.send(0x8, b"");
    assert_eq!(ws.recv().map(|f| f.0), Some(0x8));
    assert!(ws.closed());
    assert_eq!(invoke_end(&s.p, "ws-1"), "FC Invoke End RequestId: ws-1");
    assert_eq!(s.get("/after").status, 200);
}

/// `queued` from `GET /status`.
fn queued(s: &Server) -> u64 {
    let (_, body) = admin_get(&s.fx.admin, "/status");
    let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    v["queued"].as_u64().expect("queued")
}

#[test]
fn a_websocket_holds_the_only_slot_and_the_next_request_waits_for_it() {
    let s = Server::ready("ws-slot", &[], "", &[("max_concurrency", "1")], "");
    let (mut ws, lines) = Ws::open(s.fx.port, "ws-slot");
    assert!(upgraded(&lines), "{lines:?}");
    ws.send(0x1, b"ping");
    assert_eq!(ws.recv().map(|f| f.1), Some(b"ping".to_vec()));
    let port = s.fx.port;
    let waiting = std::thread::spawn(move || Client::connect(port).send(&get("/waits", &[])));
    wait_for("the request to queue behind the WebSocket", || {
        (queued(&s) == 1).then_some(())
    });
    assert!(
        s.fx.requests("/waits").is_empty(),
        "it must not reach the function yet"
    );
    ws.send(0x8, b"");
    assert_eq!(ws.recv().map(|f| f.0), Some(0x8));
    let r = waiting.join().expect("the waiting request");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(queued(&s), 0);
}

#[test]
fn an_upgraded_connection_is_cut_at_function_timeout() {
    let s = Server::ready("ws-timeout", &[], "timeout = \"1s\"", &[], "");
    let start = Instant::now();
    let (mut ws, lines) = Ws::open(s.fx.port, "ws-cut");
    assert!(upgraded(&lines), "{lines:?}");
    ws.send(0x1, b"still here");
    assert_eq!(ws.recv().map(|f| f.1), Some(b"still here".to_vec()));
    assert!(ws.closed(), "fc-init closes the upgraded connection");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(invoke_end(&s.p, "ws-cut").ends_with(", Error: Unhandled function error"));
    let (_, metrics) = admin_get(&s.fx.admin, "/metrics");
    assert!(
        metrics.contains("fc_init_in_flight_requests 0"),
        "the upgraded request no longer counts: {metrics}"
    );
}

#[test]
fn an_h2c_upgrade_is_dropped_and_served_as_http_1_1() {
    let s = Server::ready("h2c", &[], "", &[], "");
    let r = s.conn().send(&get(
        "/h2c",
        &[
            ("Upgrade", "h2c"),
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    ));
    assert_eq!(r.status, 200, "{r:?}");
    let h = &s.fx.requests("/h2c")[0]["headers"];
    for dropped in ["upgrade", "connection", "http2-settings"] {
        assert!(h.get(dropped).is_none(), "{dropped} forwarded: {h}");
    }
}

#[test]
fn an_open_websocket_is_drained_at_shutdown_then_closed() {
    let s = Server::ready(
        "ws-drain",
        &[],
        "",
        &[],
        "[shutdown]\ndrain_timeout = \"1s\"\n",
    );
    let (mut ws, lines) = Ws::open(s.fx.port, "ws-drain");
    assert!(upgraded(&lines), "{lines:?}");
    s.p.signal(libc::SIGTERM);
    // In flight, so the drain waits for it, and it is still relayed meanwhile.
    ws.send(0x1, b"during the drain");
    assert_eq!(ws.recv().map(|f| f.1), Some(b"during the drain".to_vec()));
    let start = Instant::now();
    assert!(
        ws.closed(),
        "closed once the drain gave up and the function stopped"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let mut p = s.p;
    assert_eq!(p.wait(WATCHDOG), 0);
    assert!(p.stdout().contains("FC Invoke End RequestId: ws-drain"));
}
