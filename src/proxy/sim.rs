//! A client connection on a loop of its own, driven through the I/O seam ([`super::io`]): a
//! scripted client, scripted function connections and a fake clock, the connection driven as
//! the event loop drives it ([`conn::drive`], [`conn::on_deadline`], the loop's mail and its
//! Start-line flush). No socket, process or real clock. The exchange tests
//! ([`super::exchange_tests`]) write each line of the contract with it, and the fuzz target
//! `fuzz/fuzz_targets/exchange.rs` drives it with random bytes ([`fuzz_exchange`], behind the
//! `exchange-seam` feature: never part of a release build).

// Built for the fuzz target too, which uses only part of it.
#![cfg_attr(not(test), allow(dead_code))]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::Token;

use crate::config::Sources;
use crate::metrics::Metrics;
use crate::state::{Phase, Shared, Status};
use crate::supervisor::Event;

use super::client::{self, Client, Next};
use super::conn;
use super::cx::{Cx, Handle, Mail};
use super::io::{Connector, Transport};
use super::shared::{OpenSlot, Proxy, Tell};

/// One side's scripted stream: what the peer sent and not yet read, what fc-init wrote.
#[derive(Default)]
pub(crate) struct Script {
    /// Bytes the peer has sent, in the pieces they arrived in.
    input: VecDeque<Vec<u8>>,
    /// The peer closed its write side (read returns 0 once `input` is empty).
    eof: bool,
    /// The peer reset the connection: reads and writes fail.
    reset: bool,
    /// What fc-init wrote.
    out: Vec<u8>,
    /// How much more fc-init may write before the peer's buffer is full (`None`: no limit).
    room: Option<usize>,
    /// fc-init shut its write side.
    shut: bool,
    /// fc-init dropped the stream (closed the connection).
    closed: bool,
}

/// A [`Transport`] over a shared [`Script`].
struct Pipe(Rc<RefCell<Script>>);

impl Transport for Pipe {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        if s.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        let Some(front) = s.input.front_mut() else {
            return match s.eof {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            s.input.pop_front();
        }
        Ok(n)
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_parts(buf, &[])
    }

    fn write_parts(&self, a: &[u8], b: &[u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        if s.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if s.shut {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let want = a.len() + b.len();
        let n = s.room.map_or(want, |r| r.min(want));
        if n == 0 && want > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let from_a = n.min(a.len());
        s.out.extend_from_slice(&a[..from_a]);
        s.out.extend_from_slice(&b[..n - from_a]);
        if let Some(r) = s.room.as_mut() {
            *r -= n;
        }
        Ok(n)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.0.borrow_mut().shut = true;
        Ok(())
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.0.borrow_mut().closed = true;
    }
}

/// What a proxy told the supervisor.
type Told = Arc<Mutex<Vec<Event>>>;

std::thread_local! {
    /// What each test proxy told the supervisor, by the proxy's address.
    static TOLD: RefCell<Vec<(usize, Told)>> = const { RefCell::new(Vec::new()) };
}

/// Function connections on demand; each one's script kept for the test.
struct Connections {
    made: Rc<RefCell<Vec<Rc<RefCell<Script>>>>>,
    /// What a new connection's peer takes before its buffer is full (`None`: any).
    room: Rc<RefCell<Option<usize>>>,
    /// The next connect fails with this (once).
    fail: Rc<RefCell<Option<io::Error>>>,
}

impl Connector for Connections {
    fn connect(&mut self, _: Token) -> io::Result<Box<dyn Transport>> {
        if let Some(e) = self.fail.borrow_mut().take() {
            return Err(e);
        }
        let script = Rc::new(RefCell::new(Script {
            room: *self.room.borrow(),
            ..Script::default()
        }));
        self.made.borrow_mut().push(script.clone());
        Ok(Box::new(Pipe(script)))
    }
}

/// fc-init's configuration for a test: a function on a socket (never connected: the
/// connector is scripted) with `function` keys, listening on 127.0.0.1:9000, then `server`
/// (`[server]` keys first, other sections after them).
fn config(function: &str, server: &str) -> crate::config::Config {
    let text = format!(
        "[function]\ncommand = [\"true\"]\nsocket = \"/nonexistent/fn.sock\"\n{function}\n\
         [server]\nlisten = \"127.0.0.1:9000\"\n{server}\n"
    );
    let sources = Sources {
        env: [("XDG_RUNTIME_DIR".to_owned(), "/nonexistent".to_owned())].into(),
        euid: 1000,
        ..Sources::default()
    };
    crate::config::from_str(&text, &sources).expect("a valid test config")
}

/// One client connection on a loop of its own, and everything around it.
pub(crate) struct Sim {
    pub p: &'static Proxy,
    pub cx: Cx,
    client: Option<Client>,
    pub c_script: Rc<RefCell<Script>>,
    fns: Rc<RefCell<Vec<Rc<RefCell<Script>>>>>,
    fn_room: Rc<RefCell<Option<usize>>>,
    connect_fail: Rc<RefCell<Option<io::Error>>>,
    pub told: Arc<Mutex<Vec<Event>>>,
    /// The FC lines written so far.
    pub stdout: String,
    /// The function's request as it was when the Start line went out (the rule: nothing
    /// before it).
    pub sent_before_start_line: Vec<usize>,
}

impl Sim {
    /// A client connected to a ready instance; `server` as for [`config`], a function
    /// timeout of 10 s.
    pub fn new(server: &str) -> Sim {
        Sim::with("timeout = \"10s\"", server, Phase::Ready, None)
    }

    /// The same, with `function` keys, the instance in `phase` and the initializer's last
    /// failure.
    pub fn with(function: &str, server: &str, phase: Phase, init_error: Option<&str>) -> Sim {
        Sim::on(Sim::proxy(function, server, phase, init_error))
    }

    /// A [`Proxy`] for [`Sim::on`], alive until the process exits.
    pub fn proxy(
        function: &str,
        server: &str,
        phase: Phase,
        init_error: Option<&str>,
    ) -> &'static Proxy {
        let cfg = Arc::new(config(function, server));
        let shared = Arc::new(Shared::default());
        shared.publish(Status {
            phase,
            instance: 1,
            last_init_error: init_error.map(str::to_owned),
            initializer_failures: u64::from(init_error.is_some()),
            ..Status::default()
        });
        let told: Told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let tell = Tell(Box::new(move |e| t.lock().expect("lock").push(e)));
        let p: &'static Proxy = Box::leak(Box::new(Proxy::new(
            cfg,
            shared,
            tell,
            Arc::new(Metrics::default()),
            None,
        )));
        TOLD.with(|all| all.borrow_mut().push((p as *const Proxy as usize, told)));
        p
    }

    /// A client connected through `p` (a fresh connection: `p`'s counters must be at rest).
    pub fn on(p: &'static Proxy) -> Sim {
        let key = p as *const Proxy as usize;
        let told = TOLD.with(|all| {
            all.borrow()
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, t)| t.clone())
                .expect("a proxy made by Sim::proxy")
        });
        let handle = Arc::new(Handle::new(Box::new(|| Ok(()))));
        let fns = Rc::new(RefCell::new(Vec::new()));
        let connect_fail = Rc::new(RefCell::new(None));
        let fn_room = Rc::new(RefCell::new(None));
        let connector = Connections {
            made: fns.clone(),
            room: fn_room.clone(),
            fail: connect_fail.clone(),
        };
        let now = Instant::now();
        let mut cx = Cx::new(p, Box::new(connector), handle, now);
        let c_script = Rc::new(RefCell::new(Script::default()));
        p.open.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let deadline = now + p.cfg.server.header_timeout;
        let token = Token(0);
        let mut client = Client::new(
            Box::new(Pipe(c_script.clone())),
            OpenSlot { proxy: p },
            token,
            deadline,
        );
        client::set_deadline(&mut cx, &mut client.io, deadline);
        Sim {
            p,
            cx,
            client: Some(client),
            c_script,
            fns,
            fn_room,
            connect_fail,
            told,
            stdout: String::new(),
            sent_before_start_line: Vec::new(),
        }
    }

    /// The client sends `bytes` (and the loop gets its readiness event).
    pub fn send(&mut self, bytes: &[u8]) {
        self.c_script.borrow_mut().input.push_back(bytes.to_vec());
        self.client_ready();
        self.drive();
    }

    /// The client closes its write side.
    pub fn client_eof(&mut self) {
        self.c_script.borrow_mut().eof = true;
        if let Some(c) = self.client.as_mut() {
            c.io.hup = true;
        }
        self.client_ready();
        self.drive();
    }

    /// The client resets its connection (it went away).
    pub fn client_reset(&mut self) {
        self.c_script.borrow_mut().reset = true;
        self.client_ready();
        self.drive();
    }

    /// The client's socket buffer takes at most `n` more bytes (`None`: any).
    pub fn client_room(&mut self, n: Option<usize>) {
        self.c_script.borrow_mut().room = n;
        self.client_ready();
        self.drive();
    }

    fn client_ready(&mut self) {
        if let Some(c) = self.client.as_mut() {
            c.io.rd = true;
            c.io.wr = true;
        }
    }

    /// What the client has received so far (taken).
    pub fn received(&mut self) -> String {
        let out = std::mem::take(&mut self.c_script.borrow_mut().out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// What the client has received so far, as bytes (taken): for h2c's frames.
    pub fn received_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.c_script.borrow_mut().out)
    }

    /// Whether fc-init closed the client connection.
    pub fn closed(&self) -> bool {
        self.client.is_none()
    }

    /// Whether fc-init shut the client connection's write side (then lingers).
    pub fn shut(&self) -> bool {
        self.c_script.borrow().shut
    }

    /// Function connections made so far.
    pub fn connections(&self) -> usize {
        self.fns.borrow().len()
    }

    /// The next function connection fails to connect with `e`.
    pub fn connect_fails(&mut self, e: io::Error) {
        *self.connect_fail.borrow_mut() = Some(e);
    }

    fn function(&self, i: usize) -> Rc<RefCell<Script>> {
        self.fns
            .borrow()
            .get(i)
            .unwrap_or_else(|| panic!("no function connection {i}"))
            .clone()
    }

    /// What function connection `i` has received so far.
    pub fn fn_got(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.function(i).borrow().out).into_owned()
    }

    /// What function connection `i` has received so far, as bytes: for h2c's frames.
    pub fn fn_got_bytes(&self, i: usize) -> Vec<u8> {
        self.function(i).borrow().out.clone()
    }

    /// Whether fc-init closed function connection `i`.
    pub fn fn_closed(&self, i: usize) -> bool {
        self.function(i).borrow().closed
    }

    /// Function connection `i` answers `bytes`.
    pub fn answer(&mut self, i: usize, bytes: &[u8]) {
        self.function(i)
            .borrow_mut()
            .input
            .push_back(bytes.to_vec());
        self.fns_ready();
        self.drive();
    }

    /// Function connection `i` closes its side.
    pub fn fn_eof(&mut self, i: usize) {
        self.function(i).borrow_mut().eof = true;
        self.fns_ready();
        self.drive();
    }

    /// Function connection `i` is reset by the function (reads and writes fail).
    pub fn fn_reset(&mut self, i: usize) {
        self.function(i).borrow_mut().reset = true;
        self.fns_ready();
        self.drive();
    }

    /// New function connections take at most `n` bytes (`None`: any).
    pub fn functions_take(&mut self, n: Option<usize>) {
        *self.fn_room.borrow_mut() = n;
    }

    /// Bytes function connection `i` sent that fc-init has not read yet.
    pub fn fn_unread(&self, i: usize) -> usize {
        self.function(i).borrow().input.iter().map(Vec::len).sum()
    }

    fn fns_ready(&mut self) {
        for i in 0..64 {
            if let Some(slot) = self.cx.pool.slots.get(i) {
                slot.rd = true;
                slot.wr = true;
            }
        }
    }

    /// Drives the connection as the loop does after its events: until nothing moves, the
    /// Start lines written (and the requests that wait for them let go) and the mail read.
    pub fn drive(&mut self) {
        loop {
            let Some(c) = self.client.as_mut() else {
                return;
            };
            if let Next::Close = conn::drive(&mut self.cx, c) {
                self.client = None;
            }
            let mut again = false;
            if self.cx.lines.anyone_waiting() {
                self.flush_log();
                again = true;
            }
            let (mail, changed) = self.cx.handle.take_mail();
            again |= changed || !mail.is_empty();
            if changed {
                self.cx.status_waiters.clear();
                if let Some(c) = self.client.as_mut() {
                    c.status_changed();
                }
            }
            for m in mail {
                if let (Mail::Budget(_), Some(c)) = (&m, self.client.as_mut()) {
                    c.budget_back();
                }
            }
            self.flush_log();
            if !again || self.client.is_none() {
                return;
            }
        }
    }

    fn flush_log(&mut self) {
        let mut out = Vec::new();
        // Whoever waited goes on the next pass of `drive`.
        let _ = self.cx.lines.write(&mut out);
        let lines = String::from_utf8_lossy(&out).into_owned();
        if lines.contains("FC Invoke Start") {
            let sent = self.fns.borrow().iter().map(|f| f.borrow().out.len()).sum();
            self.sent_before_start_line.push(sent);
        }
        self.stdout.push_str(&lines);
    }

    /// The fake clock moves on by `d`; a passed deadline is acted on as the loop does.
    pub fn advance(&mut self, d: Duration) {
        self.cx.now += d;
        let due = self
            .client
            .as_ref()
            .is_some_and(|c| c.io.deadline <= self.cx.now);
        if due {
            let Some(c) = self.client.as_mut() else {
                return;
            };
            if let Next::Close = conn::on_deadline(&mut self.cx, c) {
                self.client = None;
            }
            self.drive();
        }
    }

    /// One metric line's value.
    pub fn metric(&self, line_start: &str) -> u64 {
        let status = self.p.shared.snapshot();
        let text = self.p.metrics.render(&crate::metrics::Snapshot {
            status: &status,
            in_flight: self.p.shared.in_flight(),
            async_events: None,
        });
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in {text}"))
    }

    /// The FC Invoke End line of `id`.
    pub fn end_line(&self, id: &str) -> Option<&str> {
        let prefix = format!("FC Invoke End RequestId: {id}");
        self.stdout.lines().find(|l| l.starts_with(&prefix))
    }
}

/// A GET with `headers` (each `Name: value`).
pub(crate) fn get(path: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// An answer with a Content-Length body.
pub(crate) fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Drives one client connection through whole exchanges as `data` says, and checks that
/// nothing is left held afterwards: the entry of the fuzz target
/// `fuzz/fuzz_targets/exchange.rs`. `data` is read as a script of steps, each two bytes,
/// `op` and `n`, then `n` bytes for the ops that send: (`op % 8`) 0 the client sends, 1 the
/// function (its latest connection) answers, 2 the client closes its side, 3 the function
/// does, 4 the clock moves `n` × 20 ms, 5 the client's and 6 new function connections'
/// buffers take `n` bytes (255: any), 7 the client resets. Whatever happens, nothing may panic, and
/// once the connection is gone its slot, in-flight count and body budget share must all have
/// come back.
pub fn fuzz_exchange(data: &[u8]) {
    std::thread_local! {
        // One proxy for every run (a new one per run would leak): its counters are at rest
        // between runs, which is what the end of each run checks.
        static PROXY: &'static Proxy = Sim::proxy(
            "timeout = \"3s\"",
            "header_timeout = \"1s\"\nbody_timeout = \"1s\"\nidle_timeout = \"2s\"\n\
             body_buffer = \"256\"\nbody_buffer_total = \"1KiB\"\nmax_body = \"4KiB\"\n\
             max_concurrency = 1\nmax_header_bytes = \"1KiB\"\n",
            Phase::Ready,
            None,
        );
    }
    let p = PROXY.with(|p| *p);
    {
        let mut s = Sim::on(p);
        let mut rest = data;
        let mut take = |n: usize| {
            let (a, b) = rest.split_at(n.min(rest.len()));
            rest = b;
            a.to_vec()
        };
        while let Some(&op) = take(1).first() {
            let n = take(1).first().map_or(0, |&b| usize::from(b));
            let last = s.connections().checked_sub(1);
            // 255 lifts a buffer limit; anything less is the bytes the peer takes.
            let room = (n < 255).then_some(n);
            match (op % 8, last) {
                (0, _) => s.send(&take(n)),
                (1, Some(i)) => s.answer(i, &take(n)),
                (2, _) => s.client_eof(),
                (3, Some(i)) => s.fn_eof(i),
                (4, _) => s.advance(Duration::from_millis(n as u64 * 20)),
                (5, _) => s.client_room(room),
                (6, _) => s.functions_take(room),
                (7, _) => s.client_reset(),
                _ => {}
            }
            if s.closed() {
                break;
            }
        }
    }
    // The connection and its function connections are gone: everything is given back.
    assert_eq!(p.shared.in_flight(), 0, "an in-flight count leaked");
    assert_eq!(p.limiter.active(), 0, "a concurrency slot leaked");
    assert_eq!(p.budget.used(), 0, "body budget bytes leaked");
}
