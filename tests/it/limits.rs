//! Hostile input on the proxy (CONTRACT §9): memory bounded by `server.body_buffer_total`
//! whatever the number of clients sending bodies, a panic that costs only its own connection,
//! the function's fault told from the client's (504, not 408), silent connections, and the
//! Host an HTTP/1.0 request reaches the function with.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::proxy::Server;
use crate::util::*;

/// `VmRSS` of `pid`, in bytes.
fn rss(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Raises this process's soft descriptor limit to its hard limit (1,000 clients need more
/// than the usual 1,024 with everything else a test process holds).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// One of the flood's clients: its request (head and 1 MiB body) written as the socket
/// takes it, then its answer read to the end.
struct Sender {
    s: TcpStream,
    sent: usize,
    answer: Vec<u8>,
    done: bool,
}

/// Waits (at most 100 ms) until one of the clients can write its request or read its answer.
fn wait_ready(senders: &[Sender], len: usize) {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = senders
        .iter()
        .filter(|c| !c.done)
        .map(|c| libc::pollfd {
            fd: c.s.as_raw_fd(),
            events: match c.sent < len {
                true => libc::POLLOUT | libc::POLLIN,
                false => libc::POLLIN,
            },
            revents: 0,
        })
        .collect();
    // SAFETY: poll(2) on descriptors this test owns, with the array's own length.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100);
    }
}

#[test]
fn a_thousand_1_mib_bodies_keep_rss_under_body_buffer_total_plus_32_mib() {
    const CLIENTS: usize = 1000;
    const BODY: usize = 1 << 20;
    const TOTAL: u64 = 16 << 20;
    if raise_nofile() < CLIENTS as u64 + 200 {
        eprintln!("skipped: this process may not open {CLIENTS} connections");
        return;
    }
    let s = Server::ready(
        "bodybudget",
        &[],
        "timeout = \"300s\"",
        &[
            ("max_concurrency", "2"),
            ("body_buffer_total", "16MiB"),
            ("body_timeout", "300s"),
        ],
        "",
    );
    let pid = s.p.pid();
    let head = format!(
        "POST /sink HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let mut wire = head.into_bytes();
    wire.extend(std::iter::repeat_n(b'b', BODY));
    let mut senders: Vec<Sender> = (0..CLIENTS)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", s.fx.port)).expect("connect");
            s.set_nonblocking(true).expect("non-blocking");
            Sender {
                s,
                sent: 0,
                answer: Vec::new(),
                done: false,
            }
        })
        .collect();
    let bound = TOTAL + (32 << 20);
    let mut peak = 0;
    let mut small: Option<std::thread::JoinHandle<(u16, Duration)>> = None;
    let mut small_answer = None;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut buf = vec![0; 64 * 1024];
    loop {
        let mut moved = false;
        for c in senders.iter_mut().filter(|c| !c.done) {
            while c.sent < wire.len() {
                match c.s.write(&wire[c.sent..]) {
                    Ok(n) => {
                        c.sent += n;
                        moved = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("a client's write failed: {e}"),
                }
            }
            loop {
                match c.s.read(&mut buf) {
                    Ok(0) => {
                        c.done = true;
                        moved = true;
                        break;
                    }
                    Ok(n) => {
                        c.answer.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("a client's read failed: {e}"),
                }
            }
        }
        peak = peak.max(rss(pid));
        if peak > bound {
            s.p.fail(&format!(
                "RSS {} MiB over body_buffer_total + 32 MiB ({} MiB)",
                peak >> 20,
                bound >> 20
            ));
        }
        let started = senders.iter().filter(|c| c.sent > 0).count();
        if small.is_none() && started == CLIENTS {
            // Every client is sending: a small request still gets through.
            let port = s.fx.port;
            small = Some(std::thread::spawn(move || {
                let t = Instant::now();
                let (status, _, _) = http(port, "GET", "/small", &[], b"");
                (status, t.elapsed())
            }));
        }
        if small.as_ref().is_some_and(|h| h.is_finished()) {
            let h = small.take().expect("checked");
            small_answer = Some(h.join().expect("the small request"));
        }
        if senders.iter().all(|c| c.done) {
            break;
        }
        if Instant::now() > deadline {
            let done = senders.iter().filter(|c| c.done).count();
            s.p.fail(&format!("only {done} of {CLIENTS} answered in time"));
        }
        if !moved {
            wait_ready(&senders, wire.len());
        }
    }
    let small_answer = match (small_answer, small) {
        (Some(a), _) => a,
        (None, Some(h)) => h.join().expect("the small request"),
        (None, None) => panic!("the small request was never sent"),
    };
    assert_eq!(small_answer.0, 200, "{small_answer:?}");
    for c in &senders {
        let text = String::from_utf8_lossy(&c.answer);
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    }
    let done = s.fx.requests("/sink");
    assert_eq!(done.len(), CLIENTS);
    assert!(done.iter().all(|r| r["body_len"] == BODY as u64));
    eprintln!(
        "peak RSS {:.1} MiB with {CLIENTS} x 1 MiB bodies, budget {} MiB; small request in {:?}",
        peak as f64 / (1 << 20) as f64,
        TOTAL >> 20,
        small_answer.1
    );
}
