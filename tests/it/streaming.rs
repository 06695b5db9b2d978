//! Streaming both ways, bounded memory and threads, and the slow-client defences (docs/reference.md §4
//! "Streaming and upgrades", §8), each against the real binary and the Python fixture: a
//! function that answers before reading a large body, a huge answer to a client that pauses,
//! many concurrent streams, and the attacks that used to lock good traffic out (slow bodies,
//! slow readers, connections that send nothing, a low descriptor limit). Plus the framing of
//! targets (absolute-form, CONNECT).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proxy::{get, Client, Server};
use crate::util::*;

/// `field` (e.g. "VmRSS", "Threads") of /proc/PID/status, as a number.
fn proc_status(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// CPU time fc-init has used so far (user + system), in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // After the command's closing parenthesis: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|v| v.parse().expect("ticks"))
        .collect();
    f[0] + f[1]
}

/// The fixture's x-test-stream pattern.
fn pattern_byte(i: u64) -> u8 {
    (((i % 251) * 31 + 7) % 251) as u8
}

/// Reads a response head from `r`; returns the status and lower-cased header lines.
fn read_head(r: &mut impl BufRead) -> (u16, Vec<String>) {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("a response head");
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line.to_ascii_lowercase());
    }
    let status = lines
        .first()
        .and_then(|l| l.split(' ').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("bad head {lines:?}"));
    (status, lines)
}

#[test]
fn a_413_answered_before_a_20_mib_body_is_read_arrives_at_once() {
    let s = Server::ready("early", &[], "timeout = \"30s\"", &[], "");
    let mut c = s.conn();
    let len = 20 * 1024 * 1024;
    let start = Instant::now();
    c.write(
        format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\
             x-test-early-status: 413\r\n\r\n"
        )
        .as_bytes(),
    );
    let writer = {
        let mut w = c.r.get_ref().try_clone().unwrap();
        std::thread::spawn(move || {
            let piece = vec![b'u'; 1 << 20];
            for _ in 0..20 {
                if w.write_all(&piece).is_err() {
                    return;
                }
            }
        })
    };
    let r = c.read().expect("the early answer");
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(c.closed());
    drop(c);
    writer.join().unwrap();
    assert_eq!(s.get("/after").status, 200);
}

#[test]
fn a_200_mib_answer_to_a_client_that_pauses_keeps_memory_bounded_and_loses_no_byte() {
    let s = Server::ready("bigstream", &[], "timeout = \"120s\"", &[], "");
    let pid = s.p.pid();
    let total: u64 = 200 * 1024 * 1024;
    let mut c = s.conn();
    c.write(&get(
        "/stream",
        &[
            ("x-test-stream", &total.to_string()),
            ("x-test-stream-framing", "chunked"),
        ],
    ));
    let (status, lines) = read_head(&mut c.r);
    assert_eq!(status, 200, "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "transfer-encoding: chunked"),
        "{lines:?}"
    );
    let mut got: u64 = 0;
    let mut max_rss = 0;
    let mut paused = false;
    loop {
        let mut size = String::new();
        c.r.read_line(&mut size).unwrap();
        let size = u64::from_str_radix(size.trim(), 16).expect("chunk size");
        let mut chunk = vec![0; size as usize + 2];
        c.r.read_exact(&mut chunk).unwrap();
        if size == 0 {
            break;
        }
        for (i, b) in chunk[..size as usize].iter().enumerate() {
            assert_eq!(*b, pattern_byte(got + i as u64), "byte {}", got + i as u64);
        }
        got += size;
        if !paused && got >= 4 << 20 {
            // Not a settling pause: the behaviour under test is a client that stops reading
            // while the function goes on writing.
            std::thread::sleep(Duration::from_millis(1500));
            paused = true;
        }
        if got % (8 << 20) < size {
            max_rss = max_rss.max(proc_status(pid, "VmRSS"));
        }
    }
    assert_eq!(got, total, "every byte arrived");
    assert!(
        max_rss > 0 && max_rss < 64 * 1024,
        "fc-init's RSS reached {max_rss} KiB"
    );
}

#[test]
fn two_hundred_concurrent_streaming_answers_use_no_thread_each() {
    let s = Server::ready(
        "manystreams",
        &[],
        "timeout = \"60s\"",
        &[("max_concurrency", "0")],
        "[log]\ninvocations = false\n",
    );
    let pid = s.p.pid();
    let port = s.fx.port;
    let per: u64 = 20 * 65511;
    let clients: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let r = c.send(&get(
                    "/s",
                    &[
                        ("x-test-stream", &per.to_string()),
                        ("x-test-stream-delay", "0.05"),
                        ("x-test-stream-framing", "close"),
                    ],
                ));
                assert_eq!(r.status, 200);
                r.body.len() as u64
            })
        })
        .collect();
    let mut max_threads = 0;
    while clients.iter().any(|t| !t.is_finished()) {
        max_threads = max_threads.max(proc_status(pid, "Threads"));
        std::thread::sleep(Duration::from_millis(20));
    }
    for t in clients {
        assert_eq!(t.join().expect("a streaming client"), per);
    }
    assert!(max_threads < 32, "fc-init ran {max_threads} threads");
}

#[test]
fn slow_request_bodies_hold_connections_not_slots() {
    let s = Server::ready(
        "slowbody",
        &[],
        "",
        &[("max_concurrency", "2"), ("body_timeout", "1500ms")],
        "",
    );
    let port = s.fx.port;
    // Ten senders announce 5 MB and trickle a byte every 100 ms.
    let attackers: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                c.write(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n");
                let mut w = c.r.get_ref().try_clone().unwrap();
                let trickle = std::thread::spawn(move || {
                    while w.write_all(b"x").is_ok() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
                let r = c.read();
                drop(c);
                let _ = trickle.join();
                r.map(|r| r.status)
            })
        })
        .collect();
    // Good requests meanwhile are answered at once: the slow ones hold no slot.
    for i in 0..5 {
        let start = Instant::now();
        let r = s.get(&format!("/good/{i}"));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
    for a in attackers {
        assert_eq!(a.join().unwrap(), Some(408), "a slow body is cut with 408");
    }
    assert!(
        s.fx.requests("/slow").is_empty(),
        "nothing of them reached the function"
    );
}

#[test]
fn slow_readers_are_cut_at_function_timeout_and_good_requests_served() {
    let s = Server::ready(
        "slowreader",
        &[],
        "timeout = \"2s\"",
        &[("max_concurrency", "2")],
        "",
    );
    // Two clients ask for 64 MiB and never read.
    let attackers: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.fx.port)).unwrap();
            c.write_all(&get("/hog", &[("x-test-stream", "67108864")]))
                .unwrap();
            c
        })
        .collect();
    wait_for("both hogs to reach the function", || {
        (s.fx.requests("/hog").len() == 2).then_some(())
    });
    // They are cut at function.timeout, which frees their slots for good requests.
    let start = Instant::now();
    wait_for("both hogs cut at function.timeout", || {
        let (_, metrics) = admin_get(&s.fx.admin, "/metrics");
        let cut = metrics
            .lines()
            .find_map(|l| l.strip_prefix("fc_init_requests_total{outcome=\"FunctionTimeout\"} "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        (cut >= 2).then_some(())
    });
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let start = Instant::now();
    let r = s.get("/good");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // The hogs' connections were closed by fc-init.
    for mut a in attackers {
        a.set_read_timeout(Some(WATCHDOG)).unwrap();
        let mut buf = vec![0; 1 << 20];
        let mut total = 0;
        loop {
            match a.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        assert!(total < 64 << 20, "a hog got its whole answer");
    }
}

#[test]
fn connections_that_send_nothing_are_closed_at_header_timeout() {
    let s = Server::ready(
        "zerobyte",
        &[],
        "",
        &[("max_connections", "8"), ("header_timeout", "1s")],
        "",
    );
    // The readiness connection is closed; wait until its slot is free, then fill them all.
    wait_for("a free connection slot", || {
        (s.get("/free").status == 200).then_some(())
    });
    let start = Instant::now();
    let mut silent: Vec<Client> = (0..8).map(|_| s.conn()).collect();
    // Good traffic is served again once fc-init has closed the silent ones.
    wait_for("a good request to be served", || {
        let mut c = s.conn();
        c.write(&get("/good", &[]));
        c.read().filter(|r| r.status == 200)
    });
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    for c in silent.iter_mut() {
        // Closed without a word (or refused with a 429 while the readiness connection's slot
        // was still taken).
        let mut rest = Vec::new();
        let end = c.r.read_to_end(&mut rest);
        assert!(
            !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "a silent connection was left open"
        );
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 429"),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    assert!(start.elapsed() >= Duration::from_millis(900));
}

/// An fc-init run by hand, stopped with SIGTERM when dropped (also when the test fails), so
/// that neither it nor its function outlives the test.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not reaped yet (no pid reuse).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn under_a_low_descriptor_limit_connections_are_capped_and_good_requests_served() {
    let dir = TempDir::new("nofile");
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "");
    let child = Command::new("prlimit")
        .args(["--nofile=256:256", "--", bin(), "-c", cfg.to_str().unwrap()])
        .env_remove("FC_INIT_CONFIG")
        .env_remove("FC_INIT_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit runs fc-init");
    let mut child = Stopped(child);
    let stderr = child.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    wait_for("the listener", || {
        let mut c = TcpStream::connect(("127.0.0.1", fx.port)).ok()?;
        c.set_read_timeout(Some(WATCHDOG)).ok()?;
        c.write_all(&get("/ready", &[])).ok()?;
        let mut b = [0u8; 12];
        c.read_exact(&mut b).ok()?;
        (&b == b"HTTP/1.1 200").then_some(())
    });
    // Far more connections than fit, each with a request: the ones over the cap are refused
    // with fc-init's own answer, never a 502 blaming the function.
    let mut conns: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", fx.port)).expect("connect"))
        .collect();
    let (mut served, mut refused) = (0, 0);
    for c in conns.iter_mut() {
        c.set_read_timeout(Some(WATCHDOG)).unwrap();
        let _ = c.write_all(&get("/held", &[]));
        let mut b = [0u8; 12];
        c.read_exact(&mut b).expect("an answer on every connection");
        match &b {
            b"HTTP/1.1 200" => served += 1,
            b"HTTP/1.1 429" => refused += 1,
            other => panic!("answered {:?}", String::from_utf8_lossy(other)),
        }
    }
    assert!(
        served > 0 && refused > 0,
        "{served} served, {refused} refused"
    );
    assert!(
        served < 256,
        "{served} connections served under a 256-descriptor limit"
    );
    let open = conns;
    drop(open);
    wait_for("a good request after the flood", || {
        let mut c = TcpStream::connect(("127.0.0.1", fx.port)).ok()?;
        c.set_read_timeout(Some(WATCHDOG)).ok()?;
        c.write_all(&get("/good", &[])).ok()?;
        let mut b = [0u8; 12];
        c.read_exact(&mut b).ok()?;
        (&b == b"HTTP/1.1 200").then_some(())
    });
    drop(child);
    let text = log.join().unwrap();
    assert_eq!(
        text.matches("RLIMIT_NOFILE is 256").count(),
        1,
        "the cap is said once: {text}"
    );
    assert!(!text.contains("Too many open files"), "{text}");
}

#[test]
fn an_absolute_form_target_goes_out_in_origin_form_with_its_authority_as_host() {
    let s = Server::ready("absolute", &[], "", &[], "");
    let mut c = s.conn();
    let r = c.send(b"GET http://a.example:8080/x/y?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    let req = &s.fx.requests("/x/y")[0];
    assert_eq!(req["query"], "q=1");
    assert_eq!(req["headers"]["host"], "a.example:8080");
    // CONNECT is refused; nothing reaches the function.
    let mut c = s.conn();
    let r = c.send(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.error_type(), Some("InvalidArgument"));
    assert!(c.closed());
    assert_eq!(
        s.fx.record()
            .iter()
            .filter(|r| r["method"] == "CONNECT")
            .count(),
        0
    );
}

#[test]
fn a_chunked_body_larger_than_the_buffer_streams_to_the_function_from_its_slot() {
    let s = Server::ready("duplex", &[], "timeout = \"30s\"", &[], "");
    // A chunked upload larger than server.body_buffer (1 MiB) is not read whole first: it
    // streams to the function from its slot, chunked, and arrives intact.
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut raw =
        b"POST /invoke HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(65_000) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut c = s.conn();
    let writer = {
        let mut w = c.r.get_ref().try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&raw).unwrap())
    };
    let r = c.read().expect("the echo");
    writer.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echo differs");
    let recorded = &s.fx.requests("/invoke")[0];
    assert_eq!(recorded["body_len"], body.len());
    assert_eq!(recorded["headers"]["transfer-encoding"], "chunked");
    // A small chunked body is read whole first and sent with its length.
    let r = c.send(b"POST /invoke HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
    assert_eq!(
        s.fx.requests("/invoke")[1]["headers"]["content-length"],
        "3"
    );
}

#[test]
fn busy_polling_ends_when_traffic_pauses() {
    // The longest busy_poll there is: a loop that kept polling after the traffic would show
    // here as a core's worth of CPU time.
    let s = Server::ready("busypoll", &[], "", &[("busy_poll", "1ms")], "");
    let pid = s.p.pid();
    let mut c = s.conn();
    for _ in 0..300 {
        assert_eq!(c.send(&get("/", &[])).status, 200);
    }
    // The connection stays open and idle; the loop that owns it must be asleep. This window
    // is the measurement itself, not a wait for something to happen.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_ticks(pid) - before;
    assert!(
        used <= 5,
        "fc-init used {used} ticks of CPU in an idle second"
    );
    assert_eq!(c.send(&get("/", &[])).status, 200);
}
