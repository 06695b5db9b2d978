//! h2c and gRPC through fc-init (docs/reference.md §14), with real peers: the function is a
//! grpcio server (tests/fixtures/grpc_function.py), the clients grpcio, the python `h2`
//! library and curl (tests/fixtures/grpc_client.py). Each request stream is an invocation:
//! its own request id, its FC Invoke lines, metrics, `function.timeout`, `max_concurrency`
//! through `REFUSED_STREAM`, and the drain at SIGTERM. A machine without grpcio or h2 skips
//! these tests with the reason printed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// Whether the Python peers can run here; the reason when not.
pub(crate) fn peers_missing() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import grpc, h2"])
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => Some(format!("python3: {e}")),
    }
}

macro_rules! peers_or_skip {
    () => {
        if let Some(why) = peers_missing() {
            eprintln!("SKIPPED: grpcio and h2 (PyPI) are needed: {why}");
            return;
        }
    };
}

/// fc-init serving the gRPC fixture.
pub(crate) struct Grpc {
    pub(crate) p: Proc,
    pub(crate) port: u16,
    pub(crate) dir: TempDir,
}

impl Grpc {
    /// Starts fc-init with the gRPC function and waits until a call goes through.
    /// `fixture_env` goes to the fixture; `function` and `server` are extra keys of those
    /// sections.
    pub(crate) fn start(
        tag: &str,
        fixture_env: &[(&str, &str)],
        function: &str,
        server: &str,
    ) -> Grpc {
        let g = Grpc::launch(tag, fixture_env, function, server);
        let admin = g.admin();
        wait_for("admin socket", || accepting(&admin).then_some(()));
        wait_for("ready", || {
            (admin_get(&admin, "/health").0 == 200).then_some(())
        });
        if server.contains("http2 = \"off\"") {
            return g;
        }
        let ready = g.client(&["ready"]);
        if ready["ready"] != true {
            g.p.fail(&format!("no gRPC call went through: {ready}"));
        }
        g
    }

    /// Starts fc-init with the gRPC function; returns once its listener accepts (the instance
    /// may not be ready yet).
    pub(crate) fn launch(
        tag: &str,
        fixture_env: &[(&str, &str)],
        function: &str,
        server: &str,
    ) -> Grpc {
        let dir = TempDir::new(tag);
        let mut env = format!(
            "FIXTURE_RECORD = {:?}",
            dir.path("record.jsonl").display().to_string()
        );
        for (k, v) in fixture_env {
            env.push_str(&format!(", {k} = {v:?}"));
        }
        let function = format!("env = {{ {env} }}\n{function}");
        let (p, port) = start_with_fixture(&dir, "grpc_function.py", &[], &function, server);
        Grpc { p, port, dir }
    }

    /// Waits until `line` is on fc-init's stdout (anywhere: streams end in any order).
    pub(crate) fn line(&self, line: &str) {
        let found = wait_until(Instant::now() + WATCHDOG, || {
            self.p.stdout().lines().any(|l| l == line)
        });
        if !found {
            self.p.fail(&format!("no line {line:?}"));
        }
    }

    pub(crate) fn admin(&self) -> PathBuf {
        self.dir.path("admin.sock")
    }

    pub(crate) fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs the client script with `args` and returns what it printed.
    pub(crate) fn client(&self, args: &[&str]) -> Value {
        let out = Command::new("timeout")
            .arg("120")
            .arg("python3")
            .arg(fixture("grpc_client.py"))
            .arg(self.target())
            .args(args)
            .output()
            .expect("run the client");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            self.p.fail(&format!(
                "client {args:?}: {e}\nstdout: {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })
    }

    /// The calls the function saw (method, request id).
    pub(crate) fn calls(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.dir.path("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["event"] == "call")
            .map(|r| {
                (
                    r["method"].as_str().unwrap_or("").to_owned(),
                    r["id"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// The value of `fc_init_requests_total{outcome=...}`.
    pub(crate) fn requests_total(&self, outcome: &str) -> u64 {
        let (status, text) = admin_get(&self.admin(), "/metrics");
        assert_eq!(status, 200, "{text}");
        let prefix = format!("fc_init_requests_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn grpc_unary_calls_each_get_their_own_request_id_invoke_lines_and_metrics() {
    peers_or_skip!();
    let g = Grpc::start("h2c-unary", &[], "", "");
    let before = g.requests_total("success");
    let ids = strings(&g.client(&["unary", "5"])["ids"]);
    assert_eq!(ids.len(), 5);
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "one id per call: {ids:?}");
    for id in &ids {
        assert!(
            !id.is_empty(),
            "the function got no x-fc-request-id: {ids:?}"
        );
        g.line(&format!("FC Invoke Start RequestId: {id}"));
        g.line(&format!("FC Invoke End RequestId: {id}"));
        assert!(
            g.calls().contains(&("Echo".into(), id.clone())),
            "the function saw {id}"
        );
    }
    // The ready call and these five, like HTTP/1.1 requests.
    assert!(g.requests_total("success") >= before + 5);
    // A client's own valid id is kept.
    let ids = strings(&g.client(&["unary", "1", "client-chosen-1"])["ids"]);
    assert_eq!(ids, vec!["client-chosen-1"]);
    g.line("FC Invoke End RequestId: client-chosen-1");
}

#[test]
fn grpc_server_streaming_relays_1000_messages_of_10_kib_in_order() {
    peers_or_skip!();
    let g = Grpc::start("h2c-stream", &[], "", "");
    let out = g.client(&["stream", "1000", "10240"]);
    assert_eq!(out["count"], 1000, "{out}");
    assert_eq!(out["in_order"], true, "{out}");
    assert_eq!(out["sizes_ok"], true, "{out}");
}

#[test]
fn a_call_past_function_timeout_gets_deadline_exceeded_as_function_timeout() {
    peers_or_skip!();
    let g = Grpc::start("h2c-timeout", &[], "timeout = \"2s\"", "");
    let t0 = Instant::now();
    let out = g.client(&["call", "10", "30"]);
    assert_eq!(out["code"], "DEADLINE_EXCEEDED", "{out}");
    assert_eq!(
        out["trailers"]["x-fc-error-type"], "FunctionTimeout",
        "{out}"
    );
    // At function.timeout, not at the end of the function's 10 s.
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    let id = out["trailers"]["x-fc-request-id"]
        .as_str()
        .expect("the answer names the request")
        .to_owned();
    g.line(&format!(
        "FC Invoke End RequestId: {id}, Error: Unhandled function error"
    ));
    assert!(g.requests_total("FunctionTimeout") >= 1);
    // A client deadline shorter than function.timeout is the client's own: the client resets
    // its stream, or the function (which got the deadline as grpc-timeout) answers
    // DEADLINE_EXCEEDED first, whichever comes first. Either way the invocation ends: every
    // Start line gets its End line.
    let out = g.client(&["call", "10", "0.5"]);
    assert_eq!(out["code"], "DEADLINE_EXCEEDED", "{out}");
    let ids = |prefix: &str| -> Vec<String> {
        let mut ids: Vec<String> =
            g.p.stdout()
                .lines()
                .filter_map(|l| l.strip_prefix(prefix))
                .map(|rest| rest.split(',').next().unwrap_or("").to_owned())
                .collect();
        ids.sort();
        ids
    };
    wait_for("an End line for every Start line", || {
        let started = ids("FC Invoke Start RequestId: ");
        // The ready call, and a warm-up and a Sleep call per `call`.
        (started.len() >= 5 && started == ids("FC Invoke End RequestId: ")).then_some(())
    });
}

#[test]
fn six_calls_over_a_limit_of_two_all_succeed_through_refused_stream_retries() {
    peers_or_skip!();
    let g = Grpc::start("h2c-refused", &[], "", "max_concurrency = 2");
    let out = g.client(&["parallel", "6", "0.2"]);
    let codes = strings(&out["codes"]);
    assert_eq!(codes, vec!["OK"; 6], "{out}");
    // Some were refused on the way (REFUSED_STREAM), counted like HTTP/1.1 429s, and the
    // function never ran more than two at once: six calls in all.
    assert!(g.requests_total("TooManyRequests") >= 1);
    let sleeps = g.calls().iter().filter(|(m, _)| m == "Sleep").count();
    assert_eq!(sleeps, 6);
}

#[test]
fn sigterm_drains_a_call_in_flight_then_fc_init_exits() {
    peers_or_skip!();
    let mut g = Grpc::start("h2c-drain", &[], "", "");
    let target = g.target();
    let caller = std::thread::spawn(move || {
        Command::new("timeout")
            .args(["60", "python3"])
            .arg(fixture("grpc_client.py"))
            .args([target.as_str(), "call", "1.5", "30"])
            .output()
            .expect("run the client")
    });
    // The call is in flight once the function has it.
    wait_for("the call reaches the function", || {
        g.calls().iter().any(|(m, _)| m == "Sleep").then_some(())
    });
    // A second h2c connection, idle: the shutdown tells it GOAWAY.
    let mut idle = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
    idle.set_read_timeout(Some(WATCHDOG)).unwrap();
    idle.write_all(PREFACE).unwrap();
    idle.write_all(SETTINGS).unwrap();
    let first = read_frame(&mut idle).expect("the function's SETTINGS");
    assert_eq!(first.0, 4, "SETTINGS first");
    g.p.signal(libc::SIGTERM);
    let mut kinds = Vec::new();
    while let Some((kind, _)) = read_frame(&mut idle) {
        kinds.push(kind);
        if kind == 7 {
            // fc-init's own GOAWAY at the start of the drain: the call still runs (a GOAWAY
            // because the function went away would come after it).
            assert!(
                !caller.is_finished(),
                "the GOAWAY came only after the drain"
            );
            break;
        }
    }
    assert!(kinds.contains(&7), "a GOAWAY: frame types {kinds:?}");
    assert!(read_frame(&mut idle).is_none(), "then the close");
    let out = caller.join().expect("the caller");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        g.p.fail(&format!(
            "{e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    assert_eq!(v["code"], "OK", "the call in flight was drained: {v}");
    assert_eq!(g.p.wait(Duration::from_secs(20)), 0);
    assert!(
        g.p.stdout().contains("FC Invoke End RequestId:"),
        "{}",
        g.p.stdout()
    );
}

#[test]
fn ten_multiplexed_h2c_streams_each_get_their_own_request_id() {
    peers_or_skip!();
    let g = Grpc::start("h2c-multiplex", &[], "", "");
    let out = g.client(&["h2multi", "10"]);
    let streams = out["streams"].as_object().expect("streams");
    assert_eq!(streams.len(), 10, "{out}");
    let mut ids = Vec::new();
    for (sid, s) in streams {
        assert_eq!(s["status"], "200", "stream {sid}: {out}");
        assert_eq!(s["grpc_status"], "0", "stream {sid}: {out}");
        assert!(
            s["body"].as_str().unwrap_or("").starts_with("call "),
            "{out}"
        );
        ids.push(s["id"].as_str().unwrap_or("").to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "one id per stream: {out}");
    for id in &ids {
        assert!(!id.is_empty(), "{out}");
        g.line(&format!("FC Invoke End RequestId: {id}"));
    }
}

#[test]
fn http_1_1_and_h2c_are_served_side_by_side_on_one_listener() {
    peers_or_skip!();
    let g = Grpc::start("h2c-beside", &[("FIXTURE_HTTP1", "1")], "", "");
    let ids = strings(&g.client(&["unary", "2"])["ids"]);
    assert_eq!(ids.len(), 2);
    let (status, _, body) = http(
        g.port,
        "GET",
        "/plain",
        &[("x-fc-request-id", "plain-1")],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("the fixture's JSON");
    assert_eq!(v["id"], "plain-1");
    assert_eq!(v["request_line"], "GET /plain HTTP/1.1");
    // And curl, with prior knowledge.
    let body_file = g.dir.path("call.bin");
    std::fs::write(&body_file, b"\x00\x00\x00\x00\x05hello").unwrap();
    let out = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-D", "-", "-o"])
        .arg(g.dir.path("answer.bin"))
        .args([
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
        ])
        .arg(format!("@{}", body_file.display()))
        .arg(format!("http://{}/fc.Test/Echo", g.target()))
        .output();
    match out {
        Err(e) => eprintln!("curl not run ({e}): that part is skipped"),
        Ok(out) => {
            let head = String::from_utf8_lossy(&out.stdout);
            assert!(head.starts_with("HTTP/2 200"), "{head}");
            assert!(head.contains("grpc-status: 0"), "{head}");
            let answer = std::fs::read(g.dir.path("answer.bin")).unwrap_or_default();
            assert!(answer.ends_with(b"|hello"), "{answer:?}");
        }
    }
}

/// Reads what fc-init answers on `s` until it closes or `n` bytes came.
fn read_some(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < n {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    got
}

/// The next frame on `s` (its type and payload); `None` at the end of the connection.
pub(crate) fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).ok()?;
    Some((head[3], payload))
}

pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
pub(crate) const SETTINGS: &[u8] = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[test]
fn a_preface_sent_byte_by_byte_is_still_h2c() {
    peers_or_skip!();
    let g = Grpc::start("h2c-slow-preface", &[], "", "");
    let mut s = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s.set_nodelay(true).unwrap();
    for b in PREFACE {
        s.write_all(&[*b]).unwrap();
        // Each byte its own segment: the proxy must wait for the rest, not answer 400.
        std::thread::sleep(Duration::from_millis(2));
    }
    s.write_all(SETTINGS).unwrap();
    // The function's SETTINGS come back (relayed): a frame header of type 4 on stream 0.
    let got = read_some(&mut s, 9);
    assert!(got.len() >= 9, "{got:?}");
    assert_eq!(got[3], 4, "a SETTINGS frame first: {got:?}");
    assert!(!got.starts_with(b"HTTP/1.1"), "{got:?}");
}

#[test]
fn with_http2_off_the_preface_gets_400_as_before() {
    peers_or_skip!();
    let g = Grpc::start("h2c-off", &[("FIXTURE_HTTP1", "1")], "", "http2 = \"off\"");
    let mut s = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s.write_all(PREFACE).unwrap();
    s.write_all(SETTINGS).unwrap();
    let got = read_some(&mut s, 12);
    assert!(
        got.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn an_idle_h2c_connection_gets_goaway_at_idle_timeout_and_a_trickled_frame_at_header_timeout() {
    peers_or_skip!();
    let g = Grpc::start(
        "h2c-idle",
        &[],
        "",
        "idle_timeout = \"1s\"\nheader_timeout = \"1s\"",
    );
    let open = || {
        let mut s = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
        s.set_read_timeout(Some(WATCHDOG)).unwrap();
        s.write_all(PREFACE).unwrap();
        s.write_all(SETTINGS).unwrap();
        assert_eq!(read_frame(&mut s).expect("SETTINGS").0, 4);
        s
    };
    // Idle: no stream at all.
    let mut idle = open();
    let t0 = Instant::now();
    let mut kinds = Vec::new();
    while let Some((kind, _)) = read_frame(&mut idle) {
        kinds.push(kind);
    }
    assert!(kinds.contains(&7), "GOAWAY before the close: {kinds:?}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Slow: a call runs (so the idle limit does not apply), then half a frame header and
    // nothing more: the frame's own limit closes the connection, and the call ends as the
    // client's doing.
    let mut slow = open();
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "test"),
        (":path", "/fc.Test/Sleep"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("x-fc-request-id", "trickled-1"),
    ] {
        // A literal without indexing (RFC 7541 §6.2.2), new name.
        block.extend_from_slice(&[0, n.len() as u8]);
        block.extend_from_slice(n.as_bytes());
        block.push(v.len() as u8);
        block.extend_from_slice(v.as_bytes());
    }
    // HEADERS, END_HEADERS, stream 1, the request still open.
    let mut frame = (block.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[1, 4, 0, 0, 0, 1]);
    frame.extend_from_slice(&block);
    slow.write_all(&frame).unwrap();
    g.line("FC Invoke Start RequestId: trickled-1");
    slow.write_all(&[0, 0, 5, 0]).unwrap();
    let t0 = Instant::now();
    while read_frame(&mut slow).is_some() {}
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    g.line("FC Invoke End RequestId: trickled-1, Error: client closed the connection");
}

#[test]
fn calls_made_before_the_instance_is_ready_wait_for_it() {
    peers_or_skip!();
    let g = Grpc::launch("h2c-early", &[("FIXTURE_LISTEN_DELAY", "1.5")], "", "");
    let t0 = Instant::now();
    // The call is held (its function connection is made once the instance is ready), not
    // refused: it is answered as soon as the function serves.
    let ids = strings(&g.client(&["unary", "1"])["ids"]);
    assert_eq!(ids.len(), 1);
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    g.line(&format!("FC Invoke End RequestId: {}", ids[0]));
}

#[test]
fn an_h2c_connection_counts_in_max_connections() {
    peers_or_skip!();
    let g = Grpc::start("h2c-maxconn", &[], "", "max_connections = 1");
    let mut h2 = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
    h2.set_read_timeout(Some(WATCHDOG)).unwrap();
    h2.write_all(PREFACE).unwrap();
    h2.write_all(SETTINGS).unwrap();
    assert_eq!(read_frame(&mut h2).expect("SETTINGS").0, 4);
    // The one connection allowed is the h2c one: another gets 429.
    let (status, headers, _) = http(g.port, "GET", "/", &[], b"");
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "x-fc-error-type"), Some("TooManyRequests"));
    drop(h2);
    // Once it is closed, a connection gets through again (the slot comes back as the relay
    // notices the close).
    // (`ready` tries for up to 10 s.)
    let ready = g.client(&["ready"]);
    assert_eq!(ready["ready"], true, "{ready}");
}
