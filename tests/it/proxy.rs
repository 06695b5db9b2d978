//! Traffic forwarding: the listener, limits, errors and the FC Invoke lines; a connection's
//! life in `connections`, requests waiting for the initializer in `initializer`.
//!
//! The function is the Python fixture (tests/fixtures/function.py); what reached it is read
//! from its record. Clients are hand-written over raw `TcpStream`s so that malformed and
//! smuggling shapes can be sent byte for byte. Every wait is a handshake under the watchdog:
//! a port that accepts, a record line, a connection that closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

const INVOKE_START: &str = "FC Invoke Start RequestId: ";
const INVOKE_END: &str = "FC Invoke End RequestId: ";

/// fc-init running the fixture, with the listen port from the config.
pub(crate) struct Server {
    pub(crate) p: Proc,
    pub(crate) fx: FixtureConfig,
    _dir: TempDir,
}

impl Server {
    /// `server` keys are set through the environment (`FC_INIT_SERVER_<KEY>`), since the
    /// fixture config already has a `[server]` section.
    pub(crate) fn start(
        tag: &str,
        fixture_env: &[(&str, &str)],
        function_extra: &str,
        server: &[(&str, &str)],
        extra: &str,
    ) -> Server {
        let dir = TempDir::new(tag);
        let (cfg, fx) = FixtureConfig::write(&dir, fixture_env, function_extra, extra);
        let mut run = fc_init(Mode::Subreaper).args(["-c", cfg.to_str().unwrap()]);
        for (k, v) in server {
            run = run.env(&format!("FC_INIT_SERVER_{}", k.to_uppercase()), v);
        }
        let p = run.start();
        let s = Server { p, fx, _dir: dir };
        s.wait_accepting();
        s
    }

    /// Starts and waits until a request is answered 200 (the instance is ready).
    pub(crate) fn ready(
        tag: &str,
        fixture_env: &[(&str, &str)],
        function_extra: &str,
        server: &[(&str, &str)],
        extra: &str,
    ) -> Server {
        let s = Server::start(tag, fixture_env, function_extra, server, extra);
        // The instance is ready first (a handshake under the watchdog), so that the request
        // below is not bounded by a short `function.timeout` while a loaded machine is still
        // starting the Python fixture.
        wait_for("admin socket", || accepting(&s.fx.admin).then_some(()));
        wait_for("ready", || {
            (admin_get(&s.fx.admin, "/health").0 == 200).then_some(())
        });
        let r = s.get("/ready");
        if r.status != 200 {
            s.p.fail(&format!("not ready: {r:?}"));
        }
        s
    }

    fn wait_accepting(&self) {
        let deadline = Instant::now() + WATCHDOG;
        while TcpStream::connect(("127.0.0.1", self.fx.port)).is_err() {
            if Instant::now() >= deadline {
                self.p.fail("the listener never accepted");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn conn(&self) -> Client {
        Client::connect(self.fx.port)
    }

    pub(crate) fn get(&self, path: &str) -> Resp {
        self.conn().send(&get(path, &[]))
    }
}

pub(crate) fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    request("GET", path, headers, b"")
}

/// A request with Content-Length (when there is a body or the method is POST).
pub(crate) fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn error_type(&self) -> Option<&str> {
        self.header("x-fc-error-type")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// A client connection that reads responses with a watchdog timeout.
pub(crate) struct Client {
    pub(crate) r: BufReader<TcpStream>,
}

impl Client {
    pub(crate) fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to fc-init");
        s.set_read_timeout(Some(WATCHDOG)).unwrap();
        Client {
            r: BufReader::new(s),
        }
    }

    pub(crate) fn write(&mut self, raw: &[u8]) {
        self.r.get_mut().write_all(raw).expect("write request");
    }

    pub(crate) fn send(&mut self, raw: &[u8]) -> Resp {
        self.write(raw);
        self.read().expect("a response")
    }

    /// The next response; `None` when the connection is closed (or reset) first.
    pub(crate) fn read(&mut self) -> Option<Resp> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let mut parts = line.splitn(3, ' ');
        assert!(parts.next().unwrap().starts_with("HTTP/1."), "{line:?}");
        let status: u16 = parts.next().unwrap().parse().expect("status");
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).expect("header line");
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("header colon");
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 100 {
            return Some(resp);
        }
        if let Some(len) = resp.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            self.r.read_exact(&mut body).expect("body");
            resp.body = body;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size).unwrap();
                let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
                let mut chunk = vec![0; size + 2];
                self.r.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                resp.body.extend_from_slice(&chunk[..size]);
            }
        } else if resp.header("connection") == Some("close") {
            self.r.read_to_end(&mut resp.body).unwrap();
        }
        Some(resp)
    }

    /// Whether the server closes the connection (EOF or reset) within the watchdog.
    pub(crate) fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.r.read(&mut buf), Ok(0) | Err(_))
    }
}

/// A stdout line for `id`, once it is there.
pub(crate) fn invoke_end(p: &Proc, id: &str) -> String {
    p.expect_line(&format!("Invoke End for {id}"), |l| {
        l.starts_with(&format!("{INVOKE_END}{id}"))
    })
}

#[test]
fn forwards_with_the_contract_headers_and_without_hop_by_hop_ones() {
    let s = Server::ready(
        "headers",
        &[],
        "name = \"my-fn\"\ntimeout = \"1500ms\"",
        &[],
        "",
    );
    let r = s.conn().send(&get(
        "/some/path?a=1&b=two",
        &[
            ("X-Custom", "kept"),
            ("Connection", "x-secret"),
            ("X-Secret", "dropped"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("x-fc-control-path", "/forged"),
            ("x-fc-request-id", "client-id.1:2_3"),
        ],
    ));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-fc-request-id"), Some("client-id.1:2_3"));
    let req = &s.fx.requests("/some/path")[0];
    let h = &req["headers"];
    assert_eq!(req["method"], "GET");
    assert_eq!(req["query"], "a=1&b=two");
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h["x-fc-request-id"], "client-id.1:2_3");
    assert_eq!(h["x-fc-control-path"], "/http-invoke");
    assert_eq!(h["x-fc-function-name"], "my-fn");
    assert_eq!(h["x-fc-function-timeout"], "2");
    for hop in ["x-secret", "keep-alive", "te", "connection"] {
        assert!(h.get(hop).is_none(), "{hop} forwarded: {h}");
    }
    invoke_end(&s.p, "client-id.1:2_3");

    // An event invocation; an invalid id is replaced by a fresh one.
    let r = s.conn().send(&request(
        "POST",
        "/invoke?q=1",
        &[("x-fc-request-id", "bad id/with spaces")],
        b"event payload",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"event payload");
    let id = r.header("x-fc-request-id").unwrap().to_owned();
    assert_ne!(id, "bad id/with spaces");
    let inv = &s.fx.requests("/invoke")[0];
    assert_eq!(inv["headers"]["x-fc-control-path"], "/invoke");
    assert_eq!(inv["headers"]["x-fc-request-id"], id.as_str());
    assert_eq!(inv["query"], "q=1");
    let start =
        s.p.expect_line("invoke start", |l| l == format!("{INVOKE_START}{id}"));
    assert!(!start.is_empty());
    assert_eq!(invoke_end(&s.p, &id), format!("{INVOKE_END}{id}"));
}

/// method, path, request headers, expected status, whether the End line marks a failure.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16, bool);

#[test]
fn failed_invocations_are_marked_on_the_end_line() {
    let s = Server::ready("endline", &[], "timeout = \"1s\"", &[], "");
    let cases: &[Case] = &[
        ("POST", "/invoke", &[("x-test-status", "500")], 500, true),
        ("POST", "/invoke", &[("x-test-fc-status", "404")], 200, true),
        ("POST", "/invoke", &[], 200, false),
        ("GET", "/http", &[("x-test-status", "500")], 500, false),
        ("GET", "/http", &[("x-test-sleep", "3")], 504, true),
    ];
    for (i, (method, path, headers, status, failed)) in cases.iter().enumerate() {
        let id = format!("case-{i}");
        let mut h = headers.to_vec();
        h.push(("x-fc-request-id", &id));
        let r = s.conn().send(&request(method, path, &h, b""));
        assert_eq!(r.status, *status, "case {i}: {r:?}");
        let end = invoke_end(&s.p, &id);
        assert_eq!(
            end.ends_with(", Error: Unhandled function error"),
            *failed,
            "case {i}: {end}"
        );
    }
}

#[test]
fn ten_mib_round_trips_intact_with_both_framings() {
    let s = Server::ready("big", &[], "", &[], "");
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut c = s.conn();
    let r = c.send(&request("POST", "/invoke", &[], &body));
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echoed body differs");

    // Chunked upload on the same connection, in uneven chunks.
    let mut raw =
        b"POST /invoke HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(100_003) {
        raw.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
    let writer = {
        let mut w = c.r.get_ref().try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&raw).unwrap())
    };
    let r = c.read().expect("response");
    writer.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echoed chunked body differs");
    let recorded = s.fx.requests("/invoke");
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0]["body_sha256"], recorded[1]["body_sha256"]);
    assert_eq!(recorded[1]["body_len"], body.len());
}

#[test]
fn a_thousand_requests_on_one_connection_and_pipelining() {
    let s = Server::ready("keepalive", &[], "", &[], "[log]\ninvocations = false\n");
    let mut c = s.conn();
    for i in 0..1000 {
        let r = c.send(&get(&format!("/n/{i}"), &[]));
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.json()["path"], format!("/n/{i}"));
    }
    // Three pipelined requests in one write, answered in order.
    let mut raw = get("/p/1", &[]);
    raw.extend(request("POST", "/invoke", &[], b"two"));
    raw.extend(get("/p/3", &[]));
    c.write(&raw);
    assert_eq!(c.read().unwrap().json()["path"], "/p/1");
    assert_eq!(c.read().unwrap().body, b"two");
    assert_eq!(c.read().unwrap().json()["path"], "/p/3");
}

#[test]
fn two_hundred_concurrent_connections() {
    let s = Server::ready("concurrent", &[], "", &[], "[log]\ninvocations = false\n");
    let port = s.fx.port;
    let threads: Vec<_> = (0..200)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                for i in 0..5 {
                    let body = format!("{t}-{i}");
                    let r = c.send(&request("POST", "/invoke", &[], body.as_bytes()));
                    assert_eq!(r.status, 200, "{r:?}");
                    assert_eq!(r.body, body.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn a_crash_mid_request_is_502_and_the_next_request_reaches_the_new_instance() {
    let s = Server::ready("crash", &[], "restart = \"always\"", &[], "");
    assert!(
        s.fx.socket.exists(),
        "the function serves on the configured socket"
    );
    let before = s.get("/before");
    let r = s.conn().send(&get("/crash", &[("x-test-crash", "1")]));
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.error_type(), Some("UnhandledInvocationError"));
    assert_eq!(r.json()["requestId"], r.header("x-fc-request-id").unwrap());
    // An event invocation crash: 200 with the error type.
    let r = s
        .conn()
        .send(&request("POST", "/invoke", &[("x-test-crash", "1")], b"x"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.error_type(), Some("UnhandledInvocationError"));
    let after = s.get("/after");
    assert_eq!(after.status, 200, "{after:?}");
    assert_ne!(
        after.header("x-fixture-pid"),
        before.header("x-fixture-pid")
    );
}

#[test]
fn function_timeout_is_504_or_200_with_the_error_type() {
    let s = Server::ready("timeout", &[], "timeout = \"1s\"", &[], "");
    let start = Instant::now();
    let r = s.conn().send(&get("/slow", &[("x-test-sleep", "5")]));
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.error_type(), Some("FunctionTimeout"));
    assert!(start.elapsed() < Duration::from_secs(4));
    let r = s
        .conn()
        .send(&request("POST", "/invoke", &[("x-test-sleep", "5")], b""));
    assert_eq!(r.status, 200);
    assert_eq!(r.error_type(), Some("FunctionTimeout"));
    assert_eq!(r.json()["errorType"], "FunctionTimeout");
    assert_eq!(s.get("/fine").status, 200);
}

#[test]
fn a_full_queue_is_429() {
    let s = Server::ready(
        "queue",
        &[],
        "",
        &[("max_concurrency", "1"), ("max_queue", "1")],
        "",
    );
    let port = s.fx.port;
    let busy = std::thread::spawn(move || {
        Client::connect(port).send(&get("/busy", &[("x-test-sleep", "3")]))
    });
    wait_for("the busy request to reach the function", || {
        (!s.fx.requests("/busy").is_empty()).then_some(())
    });
    // One of these two is queued, the other finds the queue full.
    let two: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || Client::connect(port).send(&get("/next", &[]))))
        .collect();
    let mut statuses: Vec<_> = two
        .into_iter()
        .map(|t| {
            let r = t.join().unwrap();
            if r.status == 429 {
                assert_eq!(r.error_type(), Some("TooManyRequests"));
            }
            r.status
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 429]);
    assert_eq!(busy.join().unwrap().status, 200);
}

#[test]
fn shutdown_refuses_new_work_and_drains_in_flight_requests() {
    let mut s = Server::ready(
        "drain",
        &[],
        "",
        &[("max_concurrency", "1")],
        "[shutdown]\ndrain_timeout = \"20s\"\n",
    );
    let port = s.fx.port;
    let mut keep = s.conn();
    assert_eq!(keep.send(&get("/first", &[])).status, 200);
    let in_flight = std::thread::spawn(move || {
        Client::connect(port).send(&get("/long", &[("x-test-sleep", "2")]))
    });
    wait_for("the long request to reach the function", || {
        (!s.fx.requests("/long").is_empty()).then_some(())
    });
    let queued = std::thread::spawn(move || {
        Client::connect(port).send(&get("/queued", &[("x-fc-request-id", "queued-1")]))
    });
    // Accepted and parsed: it now waits for the only slot.
    s.p.expect_line("the queued request", |l| {
        l == format!("{INVOKE_START}queued-1")
    });
    s.p.signal(libc::SIGTERM);
    // Stopping has begun once the listener refuses connections.
    wait_for("the listener to close", || {
        TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    let r = keep.send(&get("/after-stop", &[]));
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.error_type(), Some("InstanceStopping"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(keep.closed());
    let q = queued
        .join()
        .unwrap_or_else(|_| s.p.fail("the queued request got no answer"));
    assert_eq!(q.status, 503, "{q:?}");
    assert_eq!(q.error_type(), Some("InstanceStopping"));
    let long = in_flight
        .join()
        .unwrap_or_else(|_| s.p.fail("the in-flight request got no answer"));
    assert_eq!(long.status, 200, "{long:?}");
    assert_eq!(s.p.wait(WATCHDOG), 0);
    // The function was stopped only after the in-flight request was answered.
    let record = s.fx.record();
    let signal = record
        .iter()
        .position(|r| r["event"] == "signal")
        .expect("the function got the stop signal");
    let long_at = record.iter().position(|r| r["path"] == "/long").unwrap();
    assert!(long_at < signal);
    assert!(s.fx.requests("/after-stop").is_empty());
    assert!(s.fx.requests("/queued").is_empty());
}

/// Shapes that must be refused with `status` and never reach the function.
const HOSTILE: &[(&str, &[u8], u16)] = &[
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("bad request line", b"GET  /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    // The whole preface opens h2c (tests/it/h2c.rs, where `server.http2 = "off"` gets 400).
    ("http/2 request line, not the preface", b"PRI * HTTP/2.0\r\n\r\nXM\r\n\r\n", 400),
    ("no host", b"GET /smuggled HTTP/1.1\r\n\r\n", 400),
    (
        "CL and TE",
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        400,
    ),
    (
        "TE and CL",
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "two lengths",
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    (
        "signed length",
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        400,
    ),
    (
        "gzip, chunked",
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "xchunked",
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "obs-fold",
        b"GET /smuggled HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
        400,
    ),
    (
        "space before colon",
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc",
        400,
    ),
    (
        "NUL in value",
        b"GET /smuggled HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n",
        400,
    ),
    (
        "bare CR in value",
        b"GET /smuggled HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
        400,
    ),
];

#[test]
fn malformed_and_smuggling_shapes_are_refused_and_the_server_keeps_serving() {
    let s = Server::ready(
        "hostile",
        &[],
        "",
        &[("max_header_bytes", "2KiB"), ("max_body", "1KiB")],
        "",
    );
    let big_header = format!(
        "GET /smuggled HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "x".repeat(3000)
    );
    let big_body = request("POST", "/smuggled", &[], &[b'b'; 2000]);
    let mut chunked_big =
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked_big.extend_from_slice(b"200\r\n");
        chunked_big.extend_from_slice(&[b'c'; 0x200]);
        chunked_big.extend_from_slice(b"\r\n");
    }
    chunked_big.extend_from_slice(b"0\r\n\r\n");
    let bad_chunk =
        b"POST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
            .to_vec();
    let mut cases: Vec<(&str, Vec<u8>, u16)> = HOSTILE
        .iter()
        .map(|(name, raw, status)| (*name, raw.to_vec(), *status))
        .collect();
    cases.push(("header block too large", big_header.into_bytes(), 431));
    cases.push(("content-length over max_body", big_body, 413));
    cases.push(("chunked over max_body", chunked_big, 413));
    cases.push(("bad chunk size", bad_chunk, 400));
    for (name, raw, status) in cases {
        let mut c = s.conn();
        c.write(&raw);
        let r = c
            .read()
            .unwrap_or_else(|| s.p.fail(&format!("{name}: no answer")));
        assert_eq!(r.status, status, "{name}: {r:?}");
        assert_eq!(r.error_type(), Some("InvalidArgument"), "{name}");
        assert!(r.header("x-fc-request-id").is_some(), "{name}");
        assert!(c.closed(), "{name}: connection left open");
        // A normal request on a new connection still works.
        let ok = s.conn().send(&request("POST", "/invoke", &[], b"ok"));
        assert_eq!(
            (ok.status, ok.body.as_slice()),
            (200, &b"ok"[..]),
            "after {name}"
        );
    }
    // Nothing of a refused request reached the function except a chunked body cut at the
    // limit, whose request then failed.
    for r in s.fx.requests("/smuggled") {
        assert!(r["body_len"].as_u64().unwrap() <= 1024, "{r}");
    }
    assert!(s.fx.requests("/smuggled").len() <= 1);
}

mod connections;
mod initializer;
