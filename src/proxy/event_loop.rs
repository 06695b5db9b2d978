//! The fast path: a few event-loop threads (one per core) that own the client connections and
//! serve the common request without a thread per connection.
//!
//! Each loop runs `epoll` (edge-triggered) over its client sockets, the function connections
//! it uses and an `eventfd` through which the accept thread hands it new connections. A
//! request is served here when everything it needs is there at once: its head and its whole
//! Content-Length body are in the buffer (no `Expect`, within `max_body`), fc-init is not
//! stopping, the instance is ready, a concurrency slot is free
//! *without waiting* ([`Limiter::try_acquire`](super::limiter::Limiter::try_acquire)) and a
//! function connection is at hand (pooled, or connected at once). Then the request goes out over
//! a non-blocking function connection and a Content-Length answer that fits
//! [`FUNCTION_BUFFER`] comes back, all inside the loop; pipelined requests follow in order,
//! since the next one is parsed only once the previous answer is written.
//!
//! Asynchronous submissions whose whole body is in the buffer (within `async.max_payload`, no
//! `Expect`) are served here too, without blocking: the event goes to the store's committer
//! ([`Store::submit_async`](crate::events::store::Store::submit_async)), the connection waits
//! in [`State::Storing`] (its input is not read meanwhile, so a pipeline keeps its order), and
//! the committer hands the result back through the loop's [`Done`] queue and eventfd; the loop
//! then writes the 202 or the store's error answer ([`super::submit::answer`], shared with
//! the blocking path). A result whose connection closed meanwhile finds its slot's generation
//! changed and is dropped.
//!
//! Everything else is handed over, with the bytes already read, to the blocking
//! per-connection code ([`super::connection`]) on a thread of its own, which then owns the
//! connection until it closes: streaming and chunked bodies, waiting for a slot or for
//! initialization, `Expect: 100-continue`, async submissions that are not whole in the buffer
//! or cannot be stored now (async disabled, stopping), a function that is not there. An answer that is too large or not Content-Length framed is handed over mid-exchange
//! ([`super::connection::Relay`]): the request's slot, its `in_flight` count and the bytes of
//! the answer read so far travel with it. So the hard cases keep exactly one implementation.
//!
//! The rules the blocking path keeps hold here too: the FC Invoke lines (the Start line is on
//! stdout before the request reaches the function; lines are written in batches), metrics per
//! outcome, [`InFlight`] and [`Permit`] held for the whole exchange, `function.timeout` from the
//! start of the exchange (`FunctionTimeout`), `idle_timeout` between requests and per write to
//! the client, `header_timeout` from the first byte of a head (408, then close), fc-init's own
//! error answers, and function connections tagged with their instance (an older instance's are
//! dropped). Deadlines are one per connection; `epoll_wait` sleeps until the nearest one.
//!
//! Memory: an idle connection costs its socket and a small record, no thread and no buffer
//! (its input buffer is freed whenever it is empty). Exchanges (with their 16 KiB answer
//! buffer) are reused, a few kept per loop.
//!
//! Failure modes: a function that closes, resets or answers malformed HTTP is
//! `UnhandledInvocationError` (502); a function connection that the function closed while idle
//! is noticed by its epoll event and dropped. A loop that panics is restarted; its connections
//! are closed (guards restore the counters). `EINTR` is retried in [`retry`] only.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::store::{StoreError, Submitted};
use crate::http::client::Conn;
use crate::http::fc_error::{error_response, write_error_response, Invocation};
use crate::http::write::write_request_head;
use crate::http::{
    new_request_id, parse_request_head, parse_response_head, valid_request_id, BodyFraming,
    Buffered, HttpError, Limits, RequestHead, ResponseHead,
};
use crate::metrics::Outcome;
use crate::state::Phase;

use super::connection::{self, Relay, Stage};
use super::errors::Failure;
use super::limiter::Permit;
use super::pool::{FnConn, FUNCTION_BUFFER, MAX_IDLE};
use super::timed::Timed;
use super::{InFlight, OpenSlot, Proxy, END_ERROR, INVOKE_END, INVOKE_START};

/// Stack of a connection thread that takes over a connection. Only touched pages count in
/// RSS; the parser keeps its field array (4 KiB) on the stack, and debug builds need far
/// bigger frames.
const CONN_STACK: usize = if cfg!(debug_assertions) {
    1024 * 1024
} else {
    128 * 1024
};

/// Event loops at most, whatever the core count.
const MAX_LOOPS: usize = 16;

/// How long the loop may block to connect to the function. A local connect is immediate;
/// one that is not (a full backlog) is left to the blocking path, which waits for it up to
/// `function.timeout`, instead of stalling every connection of this loop.
const CONNECT_BUDGET: Duration = Duration::from_millis(5);

/// Exchanges kept for reuse per loop.
const SPARE_EXCHANGES: usize = 16;

/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

/// The bytes read from a client per `read`.
const READ_CHUNK: usize = 16 * 1024;

const KIND_CLIENT: u64 = 0;
const KIND_FN: u64 = 1;
const KIND_WAKE: u64 = 2;
const KIND_DONE: u64 = 3;

/// The loops, and where the accept thread hands them connections.
pub(super) struct Loops {
    handles: Vec<Arc<Handle>>,
    next: AtomicUsize,
}

/// What the accept thread shares with one loop.
struct Handle {
    incoming: Mutex<Vec<(TcpStream, OpenSlot)>>,
    /// An eventfd: written when `incoming` stops being empty.
    wake: OwnedFd,
}

impl Loops {
    /// Starts one loop per core (at most [`MAX_LOOPS`]).
    pub(super) fn start(p: &'static Proxy) -> io::Result<Loops> {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_LOOPS);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let handle = Arc::new(Handle {
                incoming: Mutex::new(Vec::new()),
                wake: new_eventfd()?,
            });
            let h = handle.clone();
            std::thread::Builder::new()
                .name(format!("fc-init-loop-{i}"))
                .spawn(move || run(p, &h))?;
            handles.push(handle);
        }
        Ok(Loops {
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// Gives `stream` to the next loop (round robin).
    pub(super) fn dispatch(&self, stream: TcpStream, slot: OpenSlot) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        let h = &self.handles[i];
        let first = {
            let mut incoming = h.incoming.lock().unwrap_or_else(|e| e.into_inner());
            incoming.push((stream, slot));
            incoming.len() == 1
        };
        // One wake-up per batch: the loop empties the whole queue when it wakes, and a push
        // that finds the queue non-empty is sure to be seen by that emptying.
        if first {
            wake(&h.wake);
        }
    }
}

/// An eventfd: `wake` adds one to its counter, `drain` empties it.
fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd with constant flags; the fd it returns is owned just below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn wake(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: write of 8 bytes from a live buffer to an eventfd we hold a reference to.
    // EAGAIN (counter saturated) cannot lose a wake-up: the loop is already due one.
    let _ = retry(|| cvt(unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) }));
}

fn drain(fd: &OwnedFd) {
    let mut count = [0u8; 8];
    // SAFETY: read of 8 bytes into a live buffer from an eventfd we hold a reference to.
    // EAGAIN (nothing to read) is fine: the queue that goes with the eventfd is what counts.
    let _ = retry(|| {
        cvt(unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) })
    });
}

/// Where the store's committer thread hands a loop the results of its asynchronous
/// submissions: (client token, result) pairs, and an eventfd in the loop's epoll set.
///
/// One per `Loop` value, not per thread: a loop restarted after a panic gets a new one, so a
/// result for a connection of the old loop (whose slab indices and generations start over)
/// lands in the old, unread queue and is dropped with it.
struct Done {
    results: Mutex<Vec<(u64, Result<Submitted, StoreError>)>>,
    wake: OwnedFd,
}

impl Done {
    /// Called on the committer thread: must not block (a short lock, one `write`).
    fn push(&self, client: u64, result: Result<Submitted, StoreError>) {
        let first = {
            let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
            results.push((client, result));
            results.len() == 1
        };
        // One wake-up per batch, as in `Loops::dispatch`.
        if first {
            wake(&self.wake);
        }
    }
}

/// Retries `f` while it fails with `EINTR`: the one place where interrupted syscalls of the
/// event loop are handled.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Whether a failed write or read on a function connection proves that the function never
/// read the request: the connection was closed (`EPIPE`) or reset with unread data
/// (`ECONNRESET`, which is how both unix and TCP sockets report a peer that closed without
/// reading what it was sent).
fn undelivered(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// A libc return value as a `Result` (negative: `errno`).
fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// The body of a loop thread: restarts the loop after a panic (its connections are lost,
/// the accept thread's handle stays valid).
fn run(p: &'static Proxy, h: &Handle) {
    loop {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| match Loop::new(p, h) {
            Ok(mut l) => l.run(),
            Err(e) => log::error!("starting an event loop: {e}"),
        }));
        match result {
            Ok(()) => {
                // Only a failing epoll ends a loop; pause so as not to spin on it.
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(_) => log::error!("an event loop panicked; its connections were closed"),
        }
    }
}

/// A slab with generation counters, so that a token for a slot since reused is recognised.
struct Slab<T> {
    entries: Vec<(u32, Option<T>)>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    fn new() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    fn insert(&mut self, item: T) -> (usize, u32) {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push((0, None));
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[idx];
        e.0 = e.0.wrapping_add(1) & 0x3fff_ffff;
        e.1 = Some(item);
        (idx, e.0)
    }

    fn get(&mut self, idx: usize) -> Option<&mut T> {
        self.entries.get_mut(idx).and_then(|e| e.1.as_mut())
    }

    fn live(&self, idx: usize, gen: u32) -> bool {
        self.entries
            .get(idx)
            .is_some_and(|e| e.0 == gen && e.1.is_some())
    }

    fn gen(&self, idx: usize) -> u32 {
        self.entries.get(idx).map_or(0, |e| e.0)
    }

    fn remove(&mut self, idx: usize) -> Option<T> {
        let item = self.entries.get_mut(idx)?.1.take();
        if item.is_some() {
            self.free.push(idx);
        }
        item
    }

    fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.1.is_some())
            .map(|(i, _)| i)
    }
}

fn token(kind: u64, idx: usize, gen: u32) -> u64 {
    (kind << 62) | (u64::from(gen) << 32) | idx as u64
}

fn untoken(t: u64) -> (u64, usize, u32) {
    (
        t >> 62,
        (t & 0xffff_ffff) as usize,
        ((t >> 32) & 0x3fff_ffff) as u32,
    )
}

/// Where a client connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests; the deadline is `idle_timeout`.
    Idle,
    /// Part of a head is in; the deadline is `header_timeout` from its first byte.
    Head,
    /// The request is being written to the function; `function.timeout`.
    Sending,
    /// Waiting for the function's answer; `function.timeout`.
    Waiting,
    /// The answer is being written to the client; `idle_timeout` per write.
    Writing,
    /// An asynchronous submission is being committed by the store; its result comes through
    /// [`Done`]. No deadline: the store answers (a commit, or an error) whatever happens.
    Storing,
}

struct Client {
    stream: TcpStream,
    _slot: OpenSlot,
    /// Read but not consumed (part of a head, a pipelined request); freed when empty.
    pending: Vec<u8>,
    /// The socket may have unread input (edge-triggered: cleared only by a short read).
    readable: bool,
    eof: bool,
    state: State,
    deadline: Instant,
    /// Bytes of `pending` already seen without a complete head.
    scanned: usize,
    /// `EPOLLOUT` is in the interest set.
    out_armed: bool,
    ex: Option<Box<Exchange>>,
}

/// One request on the fast path, from its head to the end of its answer.
struct Exchange {
    head: RequestHead,
    resp: ResponseHead,
    request_id: String,
    invocation: Invocation,
    started: Instant,
    /// The function's deadline (`function.timeout` from the start).
    deadline: Instant,
    /// Dropped in this order (in-flight first) when the exchange ends, as in the blocking path.
    in_flight: Option<InFlight<'static>>,
    permit: Option<Permit<'static>>,
    /// The function connection (index in the loop's slab) while in use, and its instance.
    fnc: Option<usize>,
    instance: u64,
    /// The request body's length (the tail of `out` while the request is being sent).
    body_len: usize,
    /// Sent again once already after it was found undelivered.
    resent: bool,
    /// The request to the function, then the answer to the client.
    out: Vec<u8>,
    pos: usize,
    /// What the function sent so far.
    buf: Box<[u8]>,
    len: usize,
    /// How the invocation counts, once known (metrics outcome, End line marked failed).
    outcome: Option<(Outcome, bool)>,
    close_after: bool,
}

impl Exchange {
    fn new() -> Box<Exchange> {
        Box::new(Exchange {
            head: RequestHead::default(),
            resp: ResponseHead::default(),
            request_id: String::new(),
            invocation: Invocation::Http,
            started: Instant::now(),
            deadline: Instant::now(),
            in_flight: None,
            permit: None,
            fnc: None,
            instance: 0,
            body_len: 0,
            resent: false,
            out: Vec::new(),
            pos: 0,
            buf: vec![0; FUNCTION_BUFFER].into_boxed_slice(),
            len: 0,
            outcome: None,
            close_after: false,
        })
    }
}

/// The request id of `ex.head`: its valid `x-fc-request-id`, else a new one.
fn set_request_id(ex: &mut Exchange) {
    ex.request_id.clear();
    match ex.head.header("x-fc-request-id") {
        Some(id) if valid_request_id(id) => {
            // Valid ids are ASCII.
            ex.request_id
                .push_str(std::str::from_utf8(id).unwrap_or_default());
        }
        _ => ex.request_id.push_str(&new_request_id()),
    }
}

/// A connection to the function owned by this loop.
struct FnSlot {
    conn: Conn,
    instance: u64,
    /// The client whose exchange uses it; `None` while pooled.
    owner: Option<usize>,
    /// May have unread input (edge-triggered hint).
    readable: bool,
    out_armed: bool,
}

fn conn_fd(c: &Conn) -> RawFd {
    match c {
        Conn::Unix(s) => s.as_raw_fd(),
        Conn::Tcp(s) => s.as_raw_fd(),
    }
}

fn set_nonblocking(c: &Conn, on: bool) -> io::Result<()> {
    match c {
        Conn::Unix(s) => s.set_nonblocking(on),
        Conn::Tcp(s) => s.set_nonblocking(on),
    }
}

struct Loop<'h> {
    p: &'static Proxy,
    handle: &'h Handle,
    /// Results of this loop's asynchronous submissions.
    done: Arc<Done>,
    epfd: OwnedFd,
    clients: Slab<Client>,
    fns: Slab<FnSlot>,
    /// Pooled function connections, the warmest last.
    idle_fns: Vec<usize>,
    // Boxed so that an exchange moves between a client and this list as a pointer.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Exchange>>,
    /// The head being parsed (swapped into an exchange when one starts).
    head: RequestHead,
    /// FC Invoke lines not yet on stdout.
    log: Vec<u8>,
    /// Clients whose request is ready to go to the function once the log is out.
    to_send: Vec<(usize, u32)>,
    read_buf: Box<[u8]>,
    /// No deadline passes before this.
    next_scan: Instant,
    now: Instant,
    resp_limits: Limits,
}

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const RDHUP: u32 = libc::EPOLLRDHUP as u32;
const HUP_ERR: u32 = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
const ET: u32 = libc::EPOLLET as u32;

impl<'h> Loop<'h> {
    fn new(p: &'static Proxy, handle: &'h Handle) -> io::Result<Loop<'h>> {
        // SAFETY: epoll_create1 with a constant flag; the fd it returns is owned just below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let now = Instant::now();
        let done = Arc::new(Done {
            results: Mutex::new(Vec::new()),
            wake: new_eventfd()?,
        });
        let l = Loop {
            p,
            handle,
            done,
            // SAFETY: `fd` was just created and nothing else owns it.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            clients: Slab::new(),
            fns: Slab::new(),
            idle_fns: Vec::new(),
            spare: Vec::new(),
            head: RequestHead::default(),
            log: Vec::new(),
            to_send: Vec::new(),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            next_scan: now + Duration::from_secs(3600),
            now,
            resp_limits: Limits {
                max_header_bytes: FUNCTION_BUFFER,
                max_headers: crate::http::MAX_HEADERS,
                require_host: false,
            },
        };
        l.ctl(
            libc::EPOLL_CTL_ADD,
            handle.wake.as_raw_fd(),
            IN,
            token(KIND_WAKE, 0, 0),
        )?;
        l.ctl(
            libc::EPOLL_CTL_ADD,
            l.done.wake.as_raw_fd(),
            IN,
            token(KIND_DONE, 0, 0),
        )?;
        Ok(l)
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: epoll_ctl on our epoll fd and a live fd, with a valid event struct.
        let r = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) };
        cvt(r as isize).map(|_| ())
    }

    fn run(&mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            self.flush_log();
            let now = Instant::now();
            let wait = self.next_scan.saturating_duration_since(now);
            // Round up: waking a little after a deadline is fine, before it only spins.
            let ms = wait.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
            let n = retry(|| {
                // SAFETY: the buffer holds `events.len()` entries and outlives the call.
                let r = unsafe {
                    libc::epoll_wait(
                        self.epfd.as_raw_fd(),
                        events.as_mut_ptr(),
                        events.len() as i32,
                        ms,
                    )
                };
                cvt(r as isize)
            });
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    log::error!("epoll_wait: {e}");
                    return;
                }
            };
            self.now = Instant::now();
            for ev in &events[..n] {
                let (kind, idx, gen) = untoken(ev.u64);
                let bits = ev.events;
                match kind {
                    KIND_CLIENT if self.clients.live(idx, gen) => self.on_client(idx, bits),
                    KIND_FN if self.fns.live(idx, gen) => self.on_fn(idx, bits),
                    KIND_WAKE => self.accept_handed(),
                    KIND_DONE => self.finish_submissions(),
                    _ => {}
                }
            }
            self.send_ready();
            if self.now >= self.next_scan {
                self.scan_deadlines();
            }
            if n == 0 && self.clients.indices().next().is_none() {
                super::give_back_memory();
            }
        }
    }

    /// Writes the pending FC Invoke lines in one go.
    fn flush_log(&mut self) {
        if self.log.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout is no reason to stop serving.
        let _ = out.write_all(&self.log);
        let _ = out.flush();
        self.log.clear();
    }

    fn set_deadline(&mut self, idx: usize, deadline: Instant) {
        if let Some(c) = self.clients.get(idx) {
            c.deadline = deadline;
        }
        if deadline < self.next_scan {
            self.next_scan = deadline;
        }
    }

    /// Acts on every passed deadline and finds the next one.
    fn scan_deadlines(&mut self) {
        let now = Instant::now();
        let mut next = now + Duration::from_secs(3600);
        let indices: Vec<usize> = self.clients.indices().collect();
        for idx in indices {
            let Some(c) = self.clients.get(idx) else {
                continue;
            };
            if c.deadline <= now {
                self.on_deadline(idx);
            }
            if let Some(c) = self.clients.get(idx) {
                next = next.min(c.deadline);
            }
        }
        self.next_scan = next;
    }

    fn on_deadline(&mut self, idx: usize) {
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        match c.state {
            // As in the blocking path: an idle connection is closed without a word.
            State::Idle => self.close_client(idx),
            State::Head => self.bad_request(idx, HttpError::Timeout),
            State::Sending => self.fail(
                idx,
                Failure::SendHead(io::Error::new(io::ErrorKind::TimedOut, "deadline passed")),
            ),
            State::Waiting => self.fail(idx, Failure::ResponseHead(HttpError::Timeout)),
            State::Writing => self.write_failed(idx),
            // Not a deadline of its own (see `State::Storing`): looked at again later.
            State::Storing => {
                let deadline = self.now + self.p.cfg.server.idle_timeout;
                self.set_deadline(idx, deadline);
            }
        }
    }

    /// Registers the connections the accept thread handed over.
    fn accept_handed(&mut self) {
        drain(&self.handle.wake);
        let incoming = std::mem::take(
            &mut *self
                .handle
                .incoming
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (stream, slot) in incoming {
            if let Err(e) = stream.set_nonblocking(true) {
                log::debug!("dropping a connection: {e}");
                continue;
            }
            // Small answers must not wait for Nagle (RFC 896) on a keep-alive connection.
            let _ = stream.set_nodelay(true);
            let fd = stream.as_raw_fd();
            let deadline = self.now + self.p.cfg.server.idle_timeout;
            let (idx, gen) = self.clients.insert(Client {
                stream,
                _slot: slot,
                pending: Vec::new(),
                readable: true,
                eof: false,
                state: State::Idle,
                deadline,
                scanned: 0,
                out_armed: false,
                ex: None,
            });
            if let Err(e) = self.ctl(
                libc::EPOLL_CTL_ADD,
                fd,
                IN | RDHUP | ET,
                token(KIND_CLIENT, idx, gen),
            ) {
                log::error!("registering a connection: {e}");
                self.clients.remove(idx);
                continue;
            }
            self.set_deadline(idx, deadline);
            self.drive_input(idx);
        }
    }

    fn on_client(&mut self, idx: usize, bits: u32) {
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        if bits & (IN | RDHUP | HUP_ERR) != 0 {
            c.readable = true;
        }
        match c.state {
            State::Idle | State::Head => self.drive_input(idx),
            State::Writing if bits & (OUT | HUP_ERR) != 0 => self.write_client(idx),
            // Input waits until the answer is out (pipelining keeps its order).
            _ => {}
        }
    }

    /// Reads what the client sent and starts the next request once its head is complete.
    fn drive_input(&mut self, idx: usize) {
        loop {
            let Some(c) = self.clients.get(idx) else {
                return;
            };
            if c.readable && !c.eof {
                match retry(|| c.stream.read(&mut self.read_buf)) {
                    Ok(0) => {
                        c.eof = true;
                        c.readable = false;
                    }
                    Ok(n) => {
                        c.pending.extend_from_slice(&self.read_buf[..n]);
                        // A short read drained the socket; more data is a new edge.
                        if n < self.read_buf.len() {
                            c.readable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(_) => return self.close_client(idx),
                }
            }
            if c.pending.is_empty() {
                if c.eof {
                    return self.close_client(idx);
                }
                // Idle: no buffer kept.
                c.pending = Vec::new();
                return;
            }
            if c.state == State::Idle {
                c.state = State::Head;
                c.scanned = 0;
                let deadline = self.now + self.p.cfg.server.header_timeout;
                self.set_deadline(idx, deadline);
            }
            let Some(c) = self.clients.get(idx) else {
                return;
            };
            match parse_request_head(&c.pending, c.scanned, &self.p.limits, &mut self.head) {
                Ok(Some(n)) => return self.start_request(idx, n),
                Ok(None) if c.eof => return self.bad_request(idx, HttpError::UnexpectedEof),
                Ok(None) => {
                    c.scanned = c.pending.len();
                    if !c.readable {
                        return;
                    }
                }
                Err(e) => return self.bad_request(idx, e),
            }
        }
    }

    /// The body length of the request in `self.head` when the loop can finish it: all of the
    /// body (at most `max` bytes) is among the `pending` buffered bytes after the head of
    /// `head_len`, it asks for no `100-continue`, and fc-init is not stopping. `None`: the
    /// blocking path takes it.
    fn buffered_body(&self, pending: usize, head_len: usize, max: u64) -> Option<usize> {
        if self.head.expect_continue || self.p.stopping() {
            return None;
        }
        match self.head.framing {
            BodyFraming::None => Some(0),
            BodyFraming::Length(n)
                if n <= max && (head_len as u64).saturating_add(n) <= pending as u64 =>
            {
                Some(n as usize)
            }
            _ => None,
        }
    }

    /// A complete head of `head_len` bytes is in `self.head`: serve it here or hand the
    /// connection over.
    fn start_request(&mut self, idx: usize, head_len: usize) {
        let p = self.p;
        if super::submit::is_async(&self.head) {
            return self.start_submission(idx, head_len);
        }
        let Some(pending) = self.clients.get(idx).map(|c| c.pending.len()) else {
            return;
        };
        let Some(body_len) = self.buffered_body(pending, head_len, p.cfg.server.max_body) else {
            return self.hand_over(idx);
        };
        let (phase, instance) = p.shared.phase_and_instance();
        if phase != Phase::Ready {
            return self.hand_over(idx);
        }
        let Some(permit) = p.limiter.try_acquire() else {
            return self.hand_over(idx);
        };
        let Some(in_flight) = InFlight::enter(p) else {
            return self.hand_over(idx);
        };
        let Some(fnc) = self.take_fn(instance) else {
            drop(in_flight);
            drop(permit);
            return self.hand_over(idx);
        };

        let mut ex = self.spare.pop().unwrap_or_else(Exchange::new);
        std::mem::swap(&mut ex.head, &mut self.head);
        ex.invocation = if ex.head.method() == "POST" && ex.head.path() == "/invoke" {
            Invocation::Event
        } else {
            Invocation::Http
        };
        set_request_id(&mut ex);
        ex.started = self.now;
        ex.deadline = self.now + p.cfg.function.timeout;
        ex.in_flight = Some(in_flight);
        ex.permit = Some(permit);
        ex.fnc = Some(fnc);
        ex.instance = instance;
        ex.body_len = body_len;
        ex.resent = false;
        ex.pos = 0;
        ex.len = 0;
        ex.outcome = None;
        ex.close_after = false;
        if p.cfg.log.invocations {
            self.log.extend_from_slice(INVOKE_START.as_bytes());
            self.log.extend_from_slice(ex.request_id.as_bytes());
            self.log.push(b'\n');
        }
        let control_path = match ex.invocation {
            Invocation::Event => "/invoke",
            Invocation::Http => "/http-invoke",
        };
        {
            let Exchange {
                head,
                request_id,
                out,
                ..
            } = &mut *ex;
            let extra = [
                ("x-fc-request-id", request_id.as_str()),
                ("x-fc-control-path", control_path),
                ("x-fc-function-name", p.cfg.function.name.as_str()),
                ("x-fc-function-timeout", p.function_timeout.as_str()),
            ];
            write_request_head(out, head, &extra, head.framing);
        }
        if let Some(f) = self.fns.get(fnc) {
            f.owner = Some(idx);
        }
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        ex.out
            .extend_from_slice(&c.pending[head_len..head_len + body_len]);
        c.pending.drain(..head_len + body_len);
        c.scanned = 0;
        c.state = State::Sending;
        let deadline = ex.deadline;
        c.ex = Some(ex);
        self.set_deadline(idx, deadline);
        let gen = self.clients.gen(idx);
        self.to_send.push((idx, gen));
    }

    /// An asynchronous submission whose head of `head_len` bytes is in `self.head`: when its
    /// whole body is in the buffer (within `async.max_payload`, no `Expect`) and fc-init
    /// serves submissions and is not stopping, it goes to the store without blocking and the
    /// connection waits in [`State::Storing`] for the result ([`Loop::finish_submissions`]);
    /// everything else (and so every error answer but the store's own) is the blocking path's
    /// ([`super::submit::submit`]).
    fn start_submission(&mut self, idx: usize, head_len: usize) {
        let p = self.p;
        let Some(service) = p.asynchronous.as_ref() else {
            return self.hand_over(idx);
        };
        let client = token(KIND_CLIENT, idx, self.clients.gen(idx));
        let Some(pending) = self.clients.get(idx).map(|c| c.pending.len()) else {
            return;
        };
        let Some(body_len) = self.buffered_body(pending, head_len, p.cfg.async_.max_payload) else {
            return self.hand_over(idx);
        };
        let mut ex = self.spare.pop().unwrap_or_else(Exchange::new);
        std::mem::swap(&mut ex.head, &mut self.head);
        set_request_id(&mut ex);
        ex.invocation = Invocation::Http;
        ex.started = self.now;
        ex.in_flight = None;
        ex.permit = None;
        ex.fnc = None;
        ex.body_len = 0;
        ex.pos = 0;
        ex.len = 0;
        // No outcome: the metrics are recorded with the answer, and a submission has no FC
        // Invoke lines (the event's run will).
        ex.outcome = None;
        ex.close_after = false;
        let c = self
            .clients
            .get(idx)
            .expect("the slot was found above, in this same call");
        let body = c.pending[head_len..head_len + body_len].to_vec();
        c.pending.drain(..head_len + body_len);
        c.scanned = 0;
        c.state = State::Storing;
        let request = super::submit::stored_request(&ex.head, body);
        let done = self.done.clone();
        // The completion runs on the committer thread, maybe before this returns; the result
        // is read by this loop only, after this.
        service.submit_async(
            &ex.request_id,
            request,
            Box::new(move |result| done.push(client, result)),
        );
        c.ex = Some(ex);
        let deadline = self.now + p.cfg.server.idle_timeout;
        self.set_deadline(idx, deadline);
    }

    /// Answers the submissions whose results the store handed back, and goes on reading
    /// their connections. A result for a connection closed meanwhile (its slot free or
    /// reused: another generation) is dropped: the event is stored, the client is gone.
    fn finish_submissions(&mut self) {
        drain(&self.done.wake);
        let results =
            std::mem::take(&mut *self.done.results.lock().unwrap_or_else(|e| e.into_inner()));
        let p = self.p;
        for (client, result) in results {
            let (_, idx, gen) = untoken(client);
            if !self.clients.live(idx, gen) {
                continue;
            }
            let Some(c) = self.clients.get(idx) else {
                continue;
            };
            if c.state != State::Storing {
                continue;
            }
            let Some(ex) = c.ex.as_mut() else {
                continue;
            };
            let keep = ex.head.keep_alive && !p.stopping();
            let keep =
                super::submit::answer(p, &mut ex.out, &ex.request_id, result, keep, ex.started);
            ex.pos = 0;
            ex.close_after = !keep;
            self.send_answer(idx);
        }
    }

    /// A pooled connection to `instance`, or a new one made at once.
    fn take_fn(&mut self, instance: u64) -> Option<usize> {
        while let Some(f) = self.idle_fns.pop() {
            let Some(slot) = self.fns.get(f) else {
                continue;
            };
            if slot.instance == instance {
                return Some(f);
            }
            // A new instance: every connection to an older one is dead.
            self.fns.remove(f);
            let old: Vec<usize> = self.idle_fns.drain(..).collect();
            for o in old {
                match self.fns.get(o) {
                    Some(s) if s.instance == instance => self.idle_fns.push(o),
                    _ => drop(self.fns.remove(o)),
                }
            }
        }
        let conn = match self.p.pool.connect(Instant::now() + CONNECT_BUDGET) {
            Ok(c) => c,
            Err(e) => {
                // The blocking path waits for it, or for a new instance.
                log::debug!("fast path: {e}; handing the request over");
                return None;
            }
        };
        if let Err(e) = set_nonblocking(&conn, true) {
            log::debug!("fast path: function connection: {e}");
            return None;
        }
        let fd = conn_fd(&conn);
        let (f, gen) = self.fns.insert(FnSlot {
            conn,
            instance,
            owner: None,
            readable: false,
            out_armed: false,
        });
        if let Err(e) = self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            IN | RDHUP | ET,
            token(KIND_FN, f, gen),
        ) {
            log::error!("registering a function connection: {e}");
            self.fns.remove(f);
            return None;
        }
        Some(f)
    }

    /// Hands the connection (and what was read of it) to a thread of its own.
    fn hand_over(&mut self, idx: usize) {
        let Some(c) = self.take_client(idx) else {
            return;
        };
        let p = self.p;
        let Client {
            stream,
            _slot: slot,
            pending,
            ..
        } = c;
        let started = std::thread::Builder::new()
            .name("fc-init-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                connection::run_handed_over(p, stream, &pending);
                drop(slot);
            });
        if let Err(e) = started {
            // The closure (the stream, the slot) was dropped: the connection is closed.
            log::error!("starting a connection thread: {e}; connection dropped");
        }
    }

    /// Removes a client from the loop without closing it; its exchange (if any) stays with it.
    fn take_client(&mut self, idx: usize) -> Option<Client> {
        let c = self.clients.remove(idx)?;
        let _ = self.ctl(libc::EPOLL_CTL_DEL, c.stream.as_raw_fd(), 0, 0);
        Some(c)
    }

    /// Writes the requests that are ready to their function connections, once the Start
    /// lines are on stdout.
    fn send_ready(&mut self) {
        loop {
            self.flush_log();
            if self.to_send.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut self.to_send);
            for (idx, gen) in batch {
                if self.clients.live(idx, gen) {
                    self.send(idx);
                }
            }
        }
    }

    fn on_fn(&mut self, f: usize, bits: u32) {
        let Some(slot) = self.fns.get(f) else {
            return;
        };
        let Some(owner) = slot.owner else {
            // Pooled: any input or hang-up means the function closed it (or sent bytes
            // nobody asked for). Drop it now rather than fail the next request with it.
            if bits & (IN | RDHUP | HUP_ERR) != 0 {
                self.idle_fns.retain(|&i| i != f);
                self.fns.remove(f);
            }
            return;
        };
        if bits & (IN | RDHUP | HUP_ERR) != 0 {
            slot.readable = true;
        }
        let state = self.clients.get(owner).map(|c| c.state);
        match state {
            Some(State::Sending) if bits & (OUT | HUP_ERR) != 0 => self.send(owner),
            Some(State::Waiting) if bits & (IN | RDHUP | HUP_ERR) != 0 => self.read_response(owner),
            _ => {}
        }
    }

    fn set_fn_out(&mut self, f: usize, on: bool) {
        let gen = self.fns.gen(f);
        let Some(slot) = self.fns.get(f) else {
            return;
        };
        if slot.out_armed == on {
            return;
        }
        slot.out_armed = on;
        let fd = conn_fd(&slot.conn);
        let events = IN | RDHUP | ET | if on { OUT } else { 0 };
        let _ = self.ctl(libc::EPOLL_CTL_MOD, fd, events, token(KIND_FN, f, gen));
    }

    fn set_client_out(&mut self, idx: usize, on: bool) {
        let gen = self.clients.gen(idx);
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        if c.out_armed == on {
            return;
        }
        c.out_armed = on;
        let fd = c.stream.as_raw_fd();
        let events = IN | RDHUP | ET | if on { OUT } else { 0 };
        let _ = self.ctl(
            libc::EPOLL_CTL_MOD,
            fd,
            events,
            token(KIND_CLIENT, idx, gen),
        );
    }

    /// Writes (more of) the request to the function.
    fn send(&mut self, idx: usize) {
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        if c.state != State::Sending {
            return;
        }
        let Some(ex) = c.ex.as_mut() else {
            return;
        };
        let Some(f) = ex.fnc else {
            return;
        };
        let Some(slot) = self.fns.get(f) else {
            return;
        };
        loop {
            match retry(|| slot.conn.write(&ex.out[ex.pos..])) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return self.fail(idx, Failure::SendHead(e));
                }
                Ok(n) => {
                    ex.pos += n;
                    if ex.pos == ex.out.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.set_fn_out(f, true);
                }
                Err(e) if undelivered(&e) => return self.resend(idx, Failure::SendHead(e)),
                Err(e) => return self.fail(idx, Failure::SendHead(e)),
            }
        }
        let answered = slot.readable;
        c.state = State::Waiting;
        self.set_fn_out(f, false);
        // Edge-triggered: an answer that arrived while sending was signalled already.
        if answered {
            self.read_response(idx);
        }
    }

    /// Reads (more of) the function's answer; relays it once complete.
    fn read_response(&mut self, idx: usize) {
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        let Some(ex) = c.ex.as_mut() else {
            return;
        };
        let Some(f) = ex.fnc else {
            return;
        };
        let Some(slot) = self.fns.get(f) else {
            return;
        };
        let mut eof = false;
        while ex.len < ex.buf.len() {
            match retry(|| slot.conn.read(&mut ex.buf[ex.len..])) {
                Ok(0) => {
                    eof = true;
                    slot.readable = false;
                    break;
                }
                Ok(n) => {
                    ex.len += n;
                    if ex.len < ex.buf.len() {
                        slot.readable = false;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    slot.readable = false;
                    break;
                }
                Err(e) if ex.len == 0 && e.kind() == io::ErrorKind::ConnectionReset => {
                    return self.resend(idx, Failure::ResponseHead(HttpError::Read(e)))
                }
                Err(e) => return self.fail(idx, Failure::ResponseHead(HttpError::Read(e))),
            }
        }
        let head_request = ex.head.method() == "HEAD";
        let parsed = parse_response_head(
            &ex.buf[..ex.len],
            &self.resp_limits,
            head_request,
            &mut ex.resp,
        );
        let head_len = match parsed {
            Ok(Some(n)) => n,
            Ok(None) if eof && ex.len == 0 => {
                return self.fail(idx, Failure::ResponseHead(HttpError::ConnectionClosed))
            }
            Ok(None) if eof => {
                return self.fail(idx, Failure::ResponseHead(HttpError::UnexpectedEof))
            }
            Ok(None) if ex.len == ex.buf.len() => {
                return self.fail(idx, Failure::ResponseHead(HttpError::HeadersTooLarge))
            }
            Ok(None) => return,
            Err(e) => return self.fail(idx, Failure::ResponseHead(e)),
        };
        let body_len = match ex.resp.framing {
            BodyFraming::None => 0,
            BodyFraming::Length(n)
                if (head_len as u64).saturating_add(n) <= ex.buf.len() as u64 =>
            {
                n as usize
            }
            // Large or not Content-Length framed: streamed by the blocking path.
            _ => return self.hand_over_exchange(idx, Some(())),
        };
        if ex.len < head_len + body_len {
            if eof {
                // The function died mid-answer; nothing was sent to the client yet, so it
                // gets fc-init's own answer instead of a truncated one.
                return self.fail(idx, Failure::ResponseHead(HttpError::UnexpectedEof));
            }
            return;
        }
        let reusable = ex.resp.keep_alive && !eof && ex.len == head_len + body_len;
        let (x, _) =
            super::forward::answer_head(self.p, &ex.head, &ex.resp, &ex.request_id, &mut ex.out);
        ex.out
            .extend_from_slice(&ex.buf[head_len..head_len + body_len]);
        ex.pos = 0;
        ex.outcome = Some(connection::answered(ex.invocation, &x));
        ex.close_after = !x.keep_alive;
        ex.fnc = None;
        self.release_fn(f, reusable);
        self.send_answer(idx);
    }

    /// Pools a function connection after a clean exchange, or closes it.
    fn release_fn(&mut self, f: usize, reusable: bool) {
        if reusable && self.idle_fns.len() < MAX_IDLE {
            if let Some(slot) = self.fns.get(f) {
                slot.owner = None;
                slot.readable = false;
                self.idle_fns.push(f);
                return;
            }
        }
        self.fns.remove(f);
    }

    /// The request did not reach the function: the connection was closed under it (`EPIPE`)
    /// or reset with the request unread (`ECONNRESET`), typically a pooled connection of an
    /// instance that just died. Nothing was processed, so it is sent again: once here on a
    /// new connection, else by the blocking path, which also waits for a new instance.
    fn resend(&mut self, idx: usize, failure: Failure) {
        let Some(ex) = self.clients.get(idx).and_then(|c| c.ex.as_mut()) else {
            return;
        };
        log::debug!("request {}: {failure}; sending it again", ex.request_id);
        if let Some(f) = ex.fnc.take() {
            self.fns.remove(f);
        }
        let (resent, instance) = (ex.resent, ex.instance);
        // The other pooled connections most likely share its fate.
        for f in std::mem::take(&mut self.idle_fns) {
            self.fns.remove(f);
        }
        if resent {
            return self.fail(idx, failure);
        }
        let (phase, now_instance) = self.p.shared.phase_and_instance();
        let fresh = match phase == Phase::Ready && now_instance == instance {
            true => self.take_fn(instance),
            false => None,
        };
        let Some(f) = fresh else {
            return self.hand_over_exchange(idx, None);
        };
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        let Some(ex) = c.ex.as_mut() else {
            return;
        };
        ex.resent = true;
        ex.fnc = Some(f);
        ex.pos = 0;
        ex.len = 0;
        c.state = State::Sending;
        if let Some(slot) = self.fns.get(f) {
            slot.owner = Some(idx);
        }
        let gen = self.clients.gen(idx);
        self.to_send.push((idx, gen));
    }

    /// Hands an exchange the loop cannot finish to a thread, with everything it holds: with
    /// its function connection (`Some`: an answer too large or not Content-Length framed), or
    /// without (`None`: the request must be sent again).
    fn hand_over_exchange(&mut self, idx: usize, answer: Option<()>) {
        let Some(mut c) = self.take_client(idx) else {
            return;
        };
        let Some(mut ex) = c.ex.take() else {
            return;
        };
        let slot = ex.fnc.take().and_then(|f| {
            let slot = self.fns.remove(f)?;
            let _ = self.ctl(libc::EPOLL_CTL_DEL, conn_fd(&slot.conn), 0, 0);
            Some(slot)
        });
        let stage = match (answer, slot) {
            (Some(()), Some(slot)) => {
                let mut io = Buffered::with_pending(
                    Timed::new(slot.conn, self.p.tick),
                    FUNCTION_BUFFER,
                    &ex.buf[..ex.len],
                );
                io.set_deadline(Some(ex.deadline));
                Stage::Answer(FnConn {
                    io,
                    instance: slot.instance,
                })
            }
            (Some(()), None) => return,
            (None, _) => {
                // The body goes back in front of whatever the client sent after it.
                let body = &ex.out[ex.out.len() - ex.body_len..];
                let mut pending = Vec::with_capacity(body.len() + c.pending.len());
                pending.extend_from_slice(body);
                pending.extend_from_slice(&c.pending);
                c.pending = pending;
                Stage::Resend {
                    instance: ex.instance,
                }
            }
        };
        let (Some(in_flight), Some(permit)) = (ex.in_flight.take(), ex.permit.take()) else {
            return;
        };
        let relay = Relay {
            head: std::mem::take(&mut ex.head),
            request_id: std::mem::take(&mut ex.request_id),
            invocation: ex.invocation,
            started: ex.started,
            stage,
            permit,
            in_flight,
        };
        self.recycle(ex);
        let p = self.p;
        let Client {
            stream,
            _slot: open,
            pending,
            ..
        } = c;
        let started = std::thread::Builder::new()
            .name("fc-init-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                connection::run_relay(p, stream, &pending, relay);
                drop(open);
            });
        if let Err(e) = started {
            log::error!("starting a connection thread: {e}; connection dropped");
        }
    }

    /// The exchange failed before its answer was written: fc-init's own answer, or a close.
    fn fail(&mut self, idx: usize, failure: Failure) {
        let p = self.p;
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        let Some(ex) = c.ex.as_mut() else {
            return self.close_client(idx);
        };
        let fnc = ex.fnc.take();
        let answer = failure.answer(ex.invocation);
        let error = answer.as_ref().map_or(
            crate::http::fc_error::ErrorType::UnhandledInvocationError,
            |a| a.error,
        );
        ex.outcome = Some((Outcome::Error(error), true));
        // As in the blocking path, the request stops counting before the answer is written.
        ex.in_flight = None;
        ex.permit = None;
        log::debug!("request {}: {failure}", ex.request_id);
        if let Some(f) = fnc {
            self.fns.remove(f);
        }
        let Some(a) = answer else {
            return self.close_client(idx);
        };
        // The body was consumed with the head, so only the failure and the client decide.
        let keep = connection::can_continue(&failure) && ex.head.keep_alive && !p.stopping();
        write_error_response(
            &mut ex.out,
            a.status,
            a.error,
            &ex.request_id,
            &a.message,
            !keep,
        );
        ex.pos = 0;
        ex.close_after = !keep;
        self.send_answer(idx);
    }

    /// The exchange's answer is ready in its buffer: sends it, each write bounded by
    /// `server.idle_timeout`.
    fn send_answer(&mut self, idx: usize) {
        if let Some(c) = self.clients.get(idx) {
            c.state = State::Writing;
        }
        let deadline = self.now + self.p.cfg.server.idle_timeout;
        self.set_deadline(idx, deadline);
        self.write_client(idx);
    }

    /// Writes (more of) the answer to the client; once it is out, ends the exchange and goes
    /// on with the next request.
    fn write_client(&mut self, idx: usize) {
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        let Some(ex) = c.ex.as_mut() else {
            return;
        };
        while ex.pos < ex.out.len() {
            match retry(|| (&c.stream).write(&ex.out[ex.pos..])) {
                Ok(0) => return self.write_failed(idx),
                Ok(n) => ex.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let deadline = self.now + self.p.cfg.server.idle_timeout;
                    self.set_deadline(idx, deadline);
                    return self.set_client_out(idx, true);
                }
                Err(_) => return self.write_failed(idx),
            }
        }
        let close = ex.close_after;
        self.end_exchange(idx);
        if close {
            return self.close_client(idx);
        }
        self.set_client_out(idx, false);
        let deadline = self.now + self.p.cfg.server.idle_timeout;
        if let Some(c) = self.clients.get(idx) {
            c.state = State::Idle;
        }
        self.set_deadline(idx, deadline);
        self.drive_input(idx);
    }

    /// The client did not take the answer (gone, or not reading within `idle_timeout`).
    fn write_failed(&mut self, idx: usize) {
        if let Some(ex) = self.clients.get(idx).and_then(|c| c.ex.as_mut()) {
            // As `Failure::WriteResponse`: the function's answer never got through.
            if let Some((Outcome::Success | Outcome::FunctionError, _)) = ex.outcome {
                ex.outcome = Some((
                    Outcome::Error(crate::http::fc_error::ErrorType::UnhandledInvocationError),
                    true,
                ));
            }
        }
        self.close_client(idx);
    }

    /// Ends the client's exchange: its slot and count, its metrics and End line.
    fn end_exchange(&mut self, idx: usize) {
        let Some(mut ex) = self.clients.get(idx).and_then(|c| c.ex.take()) else {
            return;
        };
        if let Some(f) = ex.fnc.take() {
            self.fns.remove(f);
        }
        ex.in_flight = None;
        ex.permit = None;
        if let Some((outcome, failed)) = ex.outcome.take() {
            self.p.metrics.record(outcome, ex.started.elapsed());
            if self.p.cfg.log.invocations {
                self.log.extend_from_slice(INVOKE_END.as_bytes());
                self.log.extend_from_slice(ex.request_id.as_bytes());
                if failed {
                    self.log.extend_from_slice(END_ERROR.as_bytes());
                }
                self.log.push(b'\n');
            }
        }
        self.recycle(ex);
    }

    fn recycle(&mut self, mut ex: Box<Exchange>) {
        if self.spare.len() < SPARE_EXCHANGES {
            ex.out.clear();
            self.spare.push(ex);
        }
    }

    /// A malformed, oversized or too slow head: fc-init's answer, then the connection closes
    /// (where the next request would begin is unknown).
    fn bad_request(&mut self, idx: usize, e: HttpError) {
        let failure = Failure::BadRequest(e);
        log::debug!("closing a client connection: {failure}");
        if let (Some(a), Some(c)) = (failure.answer(Invocation::Http), self.clients.get(idx)) {
            let answer = error_response(a.status, a.error, &new_request_id(), &a.message, true);
            // Nothing else is queued on the socket at this point, so the small answer fits
            // its buffer; if it does not, the client that stopped reading loses it.
            let _ = retry(|| (&c.stream).write(&answer));
        }
        self.close_client(idx);
    }

    fn close_client(&mut self, idx: usize) {
        self.end_exchange(idx);
        // Dropping the stream closes it (and removes it from the epoll set); dropping the
        // slot frees it for `max_connections`.
        drop(self.clients.remove(idx));
    }
}
