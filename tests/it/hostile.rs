//! Hostile input against the real binary (docs/reference.md §12): the inputs that once panicked an event
//! loop, the Host/Connection/Content-Length rules with what the function received, and
//! request smuggling against a strict function written with Python's h11.
//!
//! Every wait is a handshake under the watchdog: a record line of the fixture, an answer, a
//! connection that closes. What reached the function is read from the fixture's record.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use crate::proxy::{request, Client, Server};
use crate::util::*;

/// The two request lines that sliced a `&str` inside a UTF-8 character in `target_form`.
const PANIC_INPUTS: [&[u8]; 2] = [
    b"GET evl.exa\xc7\x98ple:80 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http:/\xd1\x8a\xd1\x8a/x HTTP/1.1\r\nHost: x\r\n\r\n",
];

#[test]
fn multibyte_request_target_panicked_an_event_loop() {
    const SLOW: usize = 20;
    let s = Server::ready("hostile-panic", &[], "", &[("max_concurrency", "64")], "");
    // Twenty slow requests in flight, spread over the event loops with everyone else's.
    let (tx, rx) = mpsc::channel();
    let port = s.fx.port;
    let slow: Vec<_> = (0..SLOW)
        .map(|i| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let body = format!("slow-{i}");
                let r = c.send(&request(
                    "POST",
                    "/invoke",
                    &[("x-test-sleep", "2"), ("x-slow", &i.to_string())],
                    body.as_bytes(),
                ));
                tx.send((i, r.status, r.body == body.as_bytes())).unwrap();
            })
        })
        .collect();
    drop(tx);
    wait_for("the 20 slow requests reach the function", || {
        (s.fx.requests("/invoke").len() >= SLOW).then_some(())
    });
    // While they are in flight, the inputs that panicked: each is 400 and its connection closed.
    for raw in PANIC_INPUTS {
        let mut c = s.conn();
        c.write(raw);
        let r = c.read().unwrap_or_else(|| {
            s.p.fail(&format!("no answer to {:?}", String::from_utf8_lossy(raw)))
        });
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.error_type(), Some("InvalidArgument"));
        assert!(c.closed());
    }
    let mut answered: Vec<_> = rx.iter().collect();
    for t in slow {
        t.join().expect("a slow client");
    }
    answered.sort();
    assert_eq!(answered.len(), SLOW, "answers: {answered:?}");
    for (i, status, echoed) in answered {
        assert!(
            status == 200 && echoed,
            "slow request {i}: {status}, echoed {echoed}"
        );
    }
    assert!(!s.p.stderr().contains("panicked"), "{}", s.p.stderr());
    // And the instance still serves.
    assert_eq!(s.get("/after").status, 200);
}

/// Requests that must be 400 `InvalidArgument` in both HTTP versions, with the connection
/// closed and nothing of them (nor of what follows on the connection) reaching the function.
fn refused(version: &str) -> Vec<(&'static str, String)> {
    let v = version;
    let get = |path: &str, fields: &str| format!("GET {path} HTTP/{v}\r\n{fields}\r\n");
    vec![
        ("two Hosts", get("/bad-two-hosts", "Host: a\r\nHost: a\r\n")),
        ("Host list", get("/bad-host-list", "Host: a, b\r\n")),
        ("Host with whitespace", get("/bad-host-ws", "Host: a b\r\n")),
        ("Host with userinfo", get("/bad-host-at", "Host: a/b@c\r\n")),
        ("Host with a path", get("/bad-host-slash", "Host: a/b\r\n")),
        ("Host with a bad port", get("/bad-host-port", "Host: a:80x\r\n")),
        ("Host with a huge port", get("/bad-host-bigport", "Host: a:65536\r\n")),
        (
            "Connection: Host",
            get("/bad-conn-host", "Host: a\r\nConnection: Host\r\n"),
        ),
        (
            "Connection: Content-Length",
            format!(
                "POST /bad-conn-cl HTTP/{v}\r\nHost: a\r\nConnection: keep-alive, Content-Length\r\n\
                 Content-Length: 5\r\n\r\nhello"
            ),
        ),
        (
            "Connection: Transfer-Encoding",
            get("/bad-conn-te", "Host: a\r\nConnection: Transfer-Encoding\r\n"),
        ),
        (
            "differing Content-Length list",
            format!("POST /bad-cl-list HTTP/{v}\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        ),
    ]
}

#[test]
fn host_connection_and_content_length_rules_with_what_the_function_received() {
    let s = Server::ready("hostile-host", &[], "", &[], "");
    for version in ["1.0", "1.1"] {
        for (name, raw) in refused(version) {
            // The refused request is followed on its connection by one that would be fine: it
            // must not reach the function either (the connection is closed after the 400).
            let mut c = s.conn();
            let mut bytes = raw.into_bytes();
            bytes.extend_from_slice(b"GET /bad-after HTTP/1.1\r\nHost: a\r\n\r\n");
            c.write(&bytes);
            let r = c
                .read()
                .unwrap_or_else(|| s.p.fail(&format!("HTTP/{version} {name}: no answer")));
            assert_eq!(r.status, 400, "HTTP/{version} {name}: {r:?}");
            assert_eq!(r.error_type(), Some("InvalidArgument"), "{name}");
            assert!(c.closed(), "HTTP/{version} {name}: connection left open");
        }
    }

    // Accepted shapes, and what the function got for them.
    let mut c = s.conn();
    let r = c.send(b"POST /cl-list HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello");
    assert_eq!(r.status, 200, "{r:?}");
    let r =
        c.send(b"GET /one-host HTTP/1.0\r\nHost: a.example:8080\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    let r = c.send(b"GET /v6 HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    let r = s
        .conn()
        .send(b"GET http://b.example:81/absolute HTTP/1.0\r\nHost: a.example\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");

    let one = |path: &str| {
        let got = s.fx.requests(path);
        assert_eq!(got.len(), 1, "{path}: {got:?}");
        got.into_iter().next().unwrap()
    };
    let cl = one("/cl-list");
    assert_eq!(cl["body_len"], 5);
    assert_eq!(cl["headers"]["content-length"], "5");
    // Exactly one Host (the fixture joins repeated fields with ", ") and as sent.
    assert_eq!(one("/one-host")["headers"]["host"], "a.example:8080");
    assert_eq!(one("/v6")["headers"]["host"], "[::1]:9000");
    assert_eq!(one("/absolute")["headers"]["host"], "b.example:81");

    // Nothing of a refused request, nor of what followed it, reached the function.
    let leaked: Vec<_> =
        s.fx.record()
            .into_iter()
            .filter(|r| r["event"] == "request")
            .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/bad-")))
            .collect();
    assert!(leaked.is_empty(), "reached the function: {leaked:?}");
}

/// fc-init in front of the strict h11 function (tests/fixtures/h11_function.py), or `None`
/// (with the reason printed) when Python's h11 is not installed.
struct Strict {
    p: Proc,
    port: u16,
    record: std::path::PathBuf,
    _dir: TempDir,
}

impl Strict {
    fn start(tag: &str) -> Option<Strict> {
        let h11 = Command::new("python3")
            .args(["-c", "import h11"])
            .stderr(Stdio::null())
            .status();
        if !h11.is_ok_and(|s| s.success()) {
            eprintln!("skipped: python3 cannot import h11 (pip install h11; .ci/run installs it)");
            return None;
        }
        let dir = TempDir::new(tag);
        let record = dir.path("h11.jsonl");
        let env = format!(
            "env = {{ H11_RECORD = {:?} }}",
            record.display().to_string()
        );
        let (p, port) = start_with_fixture(&dir, "h11_function.py", &[], &env, "");
        let s = Strict {
            p,
            port,
            record,
            _dir: dir,
        };
        let r = Client::connect(s.port).send(b"GET /ready HTTP/1.1\r\nHost: a\r\n\r\n");
        if r.status != 200 {
            s.p.fail(&format!("not ready: {r:?}"));
        }
        Some(s)
    }

    fn record(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }
}

/// Sends `raw` on a new connection, then reads answers until the connection closes (or
/// `expect` answers came and it stays open); returns the statuses.
fn exchange(port: u16, raw: &[u8], expect: usize) -> Vec<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s.write_all(raw).expect("send");
    let mut c = Client {
        r: BufReader::new(s),
    };
    let mut statuses = Vec::new();
    while statuses.len() < expect {
        match c.read() {
            Some(r) => statuses.push(r.status),
            None => break,
        }
    }
    statuses
}

#[test]
fn smuggling_shapes_never_reach_a_strict_function() {
    let Some(s) = Strict::start("hostile-h11") else {
        return;
    };
    let post = |fields: &str, body: &str| {
        format!("POST /front HTTP/1.1\r\nHost: a\r\n{fields}\r\n{body}").into_bytes()
    };
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    // Each ambiguous shape is refused: a front end and a back end could split it differently.
    let refused: Vec<(&str, Vec<u8>)> = vec![
        (
            "CL.TE",
            post(
                "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
        ),
        (
            "TE.CL",
            post(
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                &format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len()),
            ),
        ),
        (
            "TE.TE xchunked",
            post(
                "Transfer-Encoding: xchunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
        ),
        (
            "TE.TE two fields",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
        ),
        (
            "TE.TE space before colon",
            post(
                "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
        ),
        (
            "TE.TE obs-fold",
            post(
                "X: y\r\n Transfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
        ),
        (
            "TE.TE vertical tab",
            post(
                "Transfer-Encoding: chunked\x0b\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
        ),
        (
            "TE.TE identity, chunked",
            post(
                "Transfer-Encoding: identity, chunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
        ),
        (
            "CL list that differs",
            post("Content-Length: 0, 35\r\n", smuggled),
        ),
        (
            "Connection strips Content-Length",
            post(
                "Content-Length: 35\r\nConnection: content-length\r\n",
                smuggled,
            ),
        ),
        (
            "bad chunk size",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("0x0\r\n\r\n{smuggled}"),
            ),
        ),
        (
            "chunk size with LF only",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("0\n\r\n{smuggled}"),
            ),
        ),
    ];
    for (name, raw) in &refused {
        let statuses = exchange(s.port, raw, 2);
        assert_eq!(statuses, [400], "{name}");
    }
    // Shapes that are unambiguous are forwarded as one request whose body holds the bytes.
    let accepted: Vec<(&str, Vec<u8>, usize)> = vec![
        (
            "chunked with a tab before the value",
            post(
                "Transfer-Encoding:\tchunked\r\n",
                &format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len()),
            ),
            smuggled.len(),
        ),
        (
            "identical CL list",
            post("Content-Length: 35, 35\r\n", smuggled),
            35,
        ),
        (
            "LF-only lines",
            format!("POST /front HTTP/1.1\nHost: a\nContent-Length: 35\n\n{smuggled}").into_bytes(),
            35,
        ),
    ];
    assert_eq!(smuggled.len(), 35);
    for (name, raw, _) in &accepted {
        let mut raw = raw.clone();
        raw.extend_from_slice(b"GET /tail HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert_eq!(exchange(s.port, &raw, 3), [200, 200], "{name}");
    }

    let record = s.record();
    let errors: Vec<_> = record
        .iter()
        .filter(|r| r["event"] == "protocol_error")
        .collect();
    assert!(
        errors.is_empty(),
        "the strict function refused what fc-init sent: {errors:?}"
    );
    let requests: Vec<_> = record.iter().filter(|r| r["event"] == "request").collect();
    let smuggled_in: Vec<_> = requests
        .iter()
        .filter(|r| r["target"].as_str().is_some_and(|t| t.contains("smuggled")))
        .collect();
    assert!(smuggled_in.is_empty(), "smuggled: {smuggled_in:?}");
    // /ready, then a /front and a /tail per accepted shape, in order; each /front with the
    // whole body.
    let fronts: Vec<_> = requests
        .iter()
        .filter(|r| r["target"] == "/front")
        .collect();
    assert_eq!(fronts.len(), accepted.len(), "{requests:?}");
    for (r, (name, _, len)) in fronts.iter().zip(&accepted) {
        assert_eq!(r["body_len"], *len, "{name}: {r}");
        assert_eq!(r["http_version"], "1.1", "{name}");
        let hosts = r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == "host")
            .count();
        assert_eq!(hosts, 1, "{name}: {r}");
    }
    assert_eq!(
        requests.iter().filter(|r| r["target"] == "/tail").count(),
        accepted.len()
    );
    assert!(!s.p.stderr().contains("panicked"));
}
