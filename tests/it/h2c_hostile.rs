//! h2c under attack (docs/reference.md §14, "What an attacker gets"): the known HTTP/2
//! denial-of-service classes, sent as raw frames over a socket to fc-init relaying the real
//! gRPC function (tests/fixtures/grpc_function.py). Each attack costs the attacker its
//! connection, and while it runs a well-behaved grpcio client on another connection is
//! served (asserted in every test); where memory is at stake, fc-init's RSS is read before
//! and after. A machine without grpcio or h2 skips these tests with the reason printed.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::h2c::{peers_missing, read_frame, strings, Grpc, PREFACE, SETTINGS};
use crate::util::*;

macro_rules! peers_or_skip {
    () => {
        if let Some(why) = peers_missing() {
            eprintln!("SKIPPED: grpcio and h2 (PyPI) are needed: {why}");
            return;
        }
    };
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS_KIND: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const PROTOCOL_ERROR: u32 = 1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with a `prefix`-bit prefix and the `flags` above it (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, value: usize, prefix: u8, flags: u8) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Literals without indexing, new names (RFC 7541 §6.2.2): no table involved.
fn literals(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in fields {
        integer(&mut block, 0, 4, 0);
        integer(&mut block, n.len(), 7, 0);
        block.extend_from_slice(n.as_bytes());
        integer(&mut block, v.len(), 7, 0);
        block.extend_from_slice(v.as_bytes());
    }
    block
}

/// A gRPC request's header block for `method`, with `id` as its request id if not empty.
fn grpc_block(method: &str, id: &str) -> Vec<u8> {
    let path = format!("/fc.Test/{method}");
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "test"),
        (":path", path.as_str()),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    if !id.is_empty() {
        fields.push(("x-fc-request-id", id));
    }
    literals(&fields)
}

/// One gRPC message (the 5-byte prefix: not compressed, the length).
fn message(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A connection that has said its preface and SETTINGS and read the function's SETTINGS.
fn attacker(g: &Grpc, settings: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", g.port)).expect("connect");
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s.write_all(PREFACE).unwrap();
    s.write_all(settings).unwrap();
    let first = read_frame(&mut s).expect("the function's SETTINGS");
    assert_eq!(first.0, SETTINGS_KIND, "SETTINGS first");
    s
}

/// Writes `bytes` from another thread (fc-init may stop reading, or close, long before the
/// end: the write errors are the point, not a failure).
fn flood(s: &TcpStream, bytes: Vec<u8>) -> JoinHandle<()> {
    let mut w = s.try_clone().expect("clone the socket");
    std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
    })
}

/// Reads frames until the connection ends; the GOAWAY's error code, if one came, and how long
/// the connection took to end.
fn until_closed(s: &mut TcpStream) -> (Option<u32>, Duration) {
    let t0 = Instant::now();
    let mut code = None;
    while let Some((kind, payload)) = read_frame(s) {
        if kind == GOAWAY && payload.len() >= 8 {
            code = Some(u32::from_be_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
    }
    (code, t0.elapsed())
}

/// A well-behaved grpcio client on its own connection, making `n` unary calls one after
/// the other while the attack runs.
fn good_client(g: &Grpc, n: usize) -> JoinHandle<Value> {
    let target = g.target();
    std::thread::spawn(move || {
        let out = Command::new("timeout")
            .args(["120", "python3"])
            .arg(fixture("grpc_client.py"))
            .args([target.as_str(), "unary", &n.to_string()])
            .output()
            .expect("run the client");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "the good client: {e}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    })
}

/// The good client got all its answers.
fn served(client: JoinHandle<Value>, n: usize) {
    let out = client.join().expect("the good client");
    let ids = strings(&out["ids"]);
    assert_eq!(ids.len(), n, "the good client was not served: {out}");
    assert!(ids.iter().all(|id| !id.is_empty()), "{out}");
}

/// fc-init's RSS after an attack is within 16 MiB of before (printed, for the record).
fn rss_flat(what: &str, before: u64, after: u64) {
    eprintln!(
        "{what}: fc-init RSS {} KiB before, {} KiB after",
        before / 1024,
        after / 1024
    );
    assert!(
        after < before + 16 * MIB,
        "{what}: RSS {} MiB before, {} MiB after",
        before / MIB,
        after / MIB
    );
}

/// `VmRSS` of `pid`, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

const MIB: u64 = 1024 * 1024;

#[test]
fn rapid_reset_gets_goaway_enhance_your_calm_and_the_function_sees_a_bounded_burst() {
    peers_or_skip!();
    // A limit of 2: most of the attacker's streams are refused, and the refusals cost it.
    rapid_reset(2);
    // A limit it never reaches: every stream is an invocation, and the resets cost it.
    rapid_reset(1000);
}

fn rapid_reset(max_concurrency: usize) {
    let server = format!("max_concurrency = {max_concurrency}");
    let g = Grpc::start("h2c-rapid-reset", &[], "", &server);
    let starts = |g: &Grpc| g.p.stdout().matches("FC Invoke Start").count();
    let started_before = starts(&g);
    let good = good_client(&g, 10);
    let mut s = attacker(&g, SETTINGS);
    // CVE-2023-44487: HEADERS then RST_STREAM CANCEL, 20,000 times, as fast as the socket
    // takes them.
    let mut bytes = Vec::new();
    let block = grpc_block("Echo", "");
    for i in 0..20_000u32 {
        let stream = 1 + 2 * i;
        bytes.extend(frame(HEADERS, END_HEADERS, stream, &block));
        bytes.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
    }
    let writer = flood(&s, bytes);
    let (code, took) = until_closed(&mut s);
    assert_eq!(code, Some(ENHANCE_YOUR_CALM), "GOAWAY ENHANCE_YOUR_CALM");
    assert!(took < Duration::from_secs(10), "{took:?}");
    writer.join().expect("the writer");
    served(good, 10);
    // What went on to the function as invocations: the budget's burst (200) and the good
    // client's calls, not 20,000 streams (fc-init's Start lines count them: grpcio drops
    // most of the attacker's streams before a handler runs, so its record says less).
    let started = starts(&g) - started_before;
    eprintln!("rapid reset, max_concurrency {max_concurrency}: cut off after {took:?}; {started} invocations started");
    assert!(started <= 200 + 1 + 10 + 5, "{started} invocations started");
    // Every stream that became an invocation ended: nothing left in flight.
    wait_for("no invocation left in flight", || {
        let (_, text) = admin_get(&g.admin(), "/metrics");
        text.lines()
            .any(|l| l == "fc_init_in_flight_requests 0")
            .then_some(())
    });
}

#[test]
fn a_continuation_flood_is_cut_at_max_header_block_and_memory_stays_flat() {
    peers_or_skip!();
    let g = Grpc::start("h2c-continuation", &[], "", "");
    let before = rss(g.p.pid());
    let good = good_client(&g, 10);
    let mut s = attacker(&g, SETTINGS);
    // HEADERS without END_HEADERS, then CONTINUATION frames without end: 16 KiB each, 64 MiB
    // in all if fc-init kept taking them.
    let mut bytes = frame(HEADERS, 0, 1, &grpc_block("Echo", ""));
    let chunk = vec![0x40u8; 16 * 1024];
    for _ in 0..4096 {
        bytes.extend(frame(CONTINUATION, 0, 1, &chunk));
    }
    let writer = flood(&s, bytes);
    let (code, took) = until_closed(&mut s);
    assert_eq!(code, Some(ENHANCE_YOUR_CALM), "GOAWAY ENHANCE_YOUR_CALM");
    assert!(took < Duration::from_secs(10), "{took:?}");
    writer.join().expect("the writer");
    served(good, 10);
    rss_flat("CONTINUATION flood", before, rss(g.p.pid()));
}

#[test]
fn a_header_block_trickled_in_continuations_is_closed_at_header_timeout() {
    peers_or_skip!();
    let g = Grpc::start(
        "h2c-trickled-block",
        &[],
        "",
        "header_timeout = \"1s\"\nidle_timeout = \"60s\"",
    );
    let good = good_client(&g, 3);
    let mut s = attacker(&g, SETTINGS);
    let block = grpc_block("Echo", "");
    s.write_all(&frame(HEADERS, 0, 1, &block[..1])).unwrap();
    let t0 = Instant::now();
    // One whole CONTINUATION frame of one byte every 200 ms: every frame is complete, only
    // the block never is.
    let mut closed = false;
    for &b in &block[1..] {
        if s.write_all(&frame(CONTINUATION, 0, 1, &[b])).is_err() {
            closed = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let took = t0.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}, header_timeout is 1s"
    );
    served(good, 3);
}

#[test]
fn ping_and_settings_floods_whose_acks_are_never_read_are_cut_off_with_memory_bounded() {
    peers_or_skip!();
    let g = Grpc::start("h2c-ping-flood", &[], "", "");
    let before = rss(g.p.pid());
    let good = good_client(&g, 10);
    for (what, one) in [
        ("PING", frame(PING, 0, 0, b"12345678")),
        ("SETTINGS", frame(SETTINGS_KIND, 0, 0, b"")),
    ] {
        let mut s = attacker(&g, SETTINGS);
        // 200,000 frames, none of the acks read until the writer is done.
        let bytes: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 200_000)
            .collect();
        let t0 = Instant::now();
        flood(&s, bytes).join().expect("the writer");
        let (code, _) = until_closed(&mut s);
        // The GOAWAY may be lost if fc-init gave up writing to a client that never read
        // (then the connection is reset); when it is read, it says why.
        assert!(
            code.is_none() || code == Some(ENHANCE_YOUR_CALM),
            "{what}: GOAWAY {code:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{what}: {:?}",
            t0.elapsed()
        );
    }
    served(good, 10);
    rss_flat("PING and SETTINGS floods", before, rss(g.p.pid()));
}

#[test]
fn a_client_that_opens_no_window_ties_up_its_slot_only_until_function_timeout() {
    peers_or_skip!();
    let g = Grpc::start(
        "h2c-zero-window",
        &[],
        "timeout = \"2s\"",
        "max_concurrency = 1\nidle_timeout = \"1s\"",
    );
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: the function may send no DATA on any stream, and the
    // client never sends a WINDOW_UPDATE.
    let zero = frame(SETTINGS_KIND, 0, 0, &[0, 4, 0, 0, 0, 0]);
    let mut s = attacker(&g, &zero);
    let mut bytes = frame(HEADERS, END_HEADERS, 1, &grpc_block("Stream", "stall-1"));
    bytes.extend(frame(DATA, END_STREAM, 1, &message(b"100 10240")));
    s.write_all(&bytes).unwrap();
    g.line("FC Invoke Start RequestId: stall-1");
    let t0 = Instant::now();
    // The stream is answered at function.timeout (fc-init's trailers are not flow
    // controlled), the slot comes back, and the connection, idle, is closed.
    let (_, took) = until_closed(&mut s);
    assert!(took < Duration::from_secs(8), "{took:?}");
    g.line("FC Invoke End RequestId: stall-1, Error: Unhandled function error");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    // The one slot is free again.
    let good = good_client(&g, 3);
    served(good, 3);
    assert!(g.requests_total("FunctionTimeout") >= 1);
}

/// A header block that puts one `size`-byte field in the sender's table, then refers to it
/// `refs` times: a few bytes on the wire, `refs × size` decoded.
fn bomb(size: usize, refs: usize) -> Vec<u8> {
    let mut block = grpc_block("Echo", "");
    // Literal with incremental indexing, new name (RFC 7541 §6.2.1).
    integer(&mut block, 0, 6, 0x40);
    integer(&mut block, 5, 7, 0);
    block.extend_from_slice(b"x-big");
    integer(&mut block, size, 7, 0);
    block.extend(std::iter::repeat_n(b'a', size));
    // Indexed field 62: the newest dynamic entry.
    block.extend(std::iter::repeat_n(0xbe, refs));
    block
}

#[test]
fn an_hpack_bomb_is_answered_431_and_never_reaches_the_function() {
    peers_or_skip!();
    let g = Grpc::start("h2c-hpack-bomb", &[], "", "");
    let calls_before = g.calls().len();
    let before = rss(g.p.pid());
    let good = good_client(&g, 10);
    let mut s = attacker(&g, SETTINGS);
    // 4 KiB in the table, referred to 60,000 times: 64 KiB on the wire, 240 MB decoded. Sent
    // in 16 KiB frames (the most a peer may send before fc-init's SETTINGS say more).
    for round in 0..20u32 {
        let stream = 1 + 2 * round;
        let block = bomb(4000, 60_000);
        let mut bytes = Vec::new();
        let chunks: Vec<&[u8]> = block.chunks(16 * 1024).collect();
        for (i, c) in chunks.iter().enumerate() {
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            let mut flags = if i + 1 == chunks.len() {
                END_HEADERS
            } else {
                0
            };
            if i == 0 {
                flags |= END_STREAM;
            }
            bytes.extend(frame(kind, flags, stream, c));
        }
        s.write_all(&bytes).unwrap();
        // The answer: HEADERS on that stream with `:status 431` (fc-init's literals).
        let (kind, payload) = loop {
            let (kind, payload) = read_frame(&mut s).expect("an answer to the bomb");
            if kind == HEADERS {
                break (kind, payload);
            }
        };
        assert_eq!(kind, HEADERS);
        assert!(
            payload.windows(3).any(|w| w == b"431"),
            "round {round}: {payload:?}"
        );
    }
    served(good, 10);
    assert_eq!(
        g.calls().len() - calls_before,
        10,
        "only the good client's calls reached the function"
    );
    assert!(g.requests_total("InvalidArgument") >= 20);
    rss_flat("HPACK bomb", before, rss(g.p.pid()));
}

#[test]
fn stream_id_abuse_gets_the_connection_errors_and_a_flood_of_old_ids_is_cut_off() {
    peers_or_skip!();
    let g = Grpc::start("h2c-stream-ids", &[], "", "max_concurrency = 2");
    let good = good_client(&g, 10);
    // An even stream id from a client: PROTOCOL_ERROR.
    let mut s = attacker(&g, SETTINGS);
    let block = grpc_block("Echo", "");
    s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 2, &block))
        .unwrap();
    assert_eq!(until_closed(&mut s).0, Some(PROTOCOL_ERROR));
    // A high id, then thousands of lower (already closed) ones: never invocations, and cut
    // off once they have cost their budget.
    let calls_before = g.calls().len();
    let mut s = attacker(&g, SETTINGS);
    let mut bytes = frame(HEADERS, END_HEADERS, 1_000_001, &block);
    bytes.extend(frame(DATA, END_STREAM, 1_000_001, &message(b"0")));
    for i in 0..10_000u32 {
        bytes.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1 + 2 * (i % 1000),
            &block,
        ));
    }
    let writer = flood(&s, bytes);
    assert_eq!(until_closed(&mut s).0, Some(ENHANCE_YOUR_CALM));
    writer.join().expect("the writer");
    // Streams over max_concurrency: REFUSED_STREAM (7) on the third of three Sleep calls.
    let mut s = attacker(&g, SETTINGS);
    let sleep = grpc_block("Sleep", "");
    let mut bytes = Vec::new();
    for stream in [1u32, 3, 5] {
        bytes.extend(frame(HEADERS, END_HEADERS, stream, &sleep));
        bytes.extend(frame(DATA, END_STREAM, stream, &message(b"1")));
    }
    s.write_all(&bytes).unwrap();
    let mut refused = Vec::new();
    let t0 = Instant::now();
    while refused.is_empty() && t0.elapsed() < WATCHDOG {
        let Some((kind, payload)) = read_frame(&mut s) else {
            break;
        };
        if kind == RST_STREAM && payload == 7u32.to_be_bytes() {
            refused.push(());
        }
    }
    assert!(!refused.is_empty(), "REFUSED_STREAM over max_concurrency");
    drop(s);
    served(good, 10);
    // The old ids never reached the function (the one high stream may have).
    assert!(g.calls().len() - calls_before <= 10 + 1 + 3);
}
