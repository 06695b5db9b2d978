//! The event loops: a few threads (one per core) that own every client connection and every
//! function connection, and drive each request's [`Exchange`](super::exchange::Exchange) from
//! its first byte to the last byte of its answer. No request ever gets a thread of its own.
//!
//! Readiness comes from `mio` (epoll, edge-triggered). Every socket is registered once for
//! both directions and keeps two flags, "may read" and "may write", set by its events and
//! cleared by `EAGAIN`; any event for a client or for the function connection its exchange
//! uses makes the loop *drive* that client ([`super::conn::drive`]): every step that can make
//! progress is taken, in any order the bytes allow, until none can (hyper's h1 `Conn` works the
//! same way, whatever the readiness model). So both directions of an exchange move at once
//! and each stops only for its own reason: an empty source, a full destination.
//!
//! Why `mio` rather than hand-written `epoll`: it is the thin, well-kept layer under tokio
//! with no runtime of its own; it gives the poll, the registrations and a waker (an eventfd)
//! without one line of `unsafe` here, where the hand-written loop needed `epoll_create1`,
//! `epoll_ctl`, `epoll_wait` and eventfd reads and writes, each with its own `unsafe`, and
//! non-blocking connects to the function besides. The cost is one dependency (with `libc`).
//!
//! Other threads reach a loop through its [`Handle`]: a mailbox and the waker. The accept
//! thread hands over connections, the store's committer hands back submission results, the
//! supervisor answers lifecycle calls, the limiter hands a slot to a queued request, and every
//! change of the instance's status wakes the requests that wait for it. All of them only
//! queue and wake; none blocks.
//!
//! Deadlines: one per client connection (the nearest that matters in its phase); the loop
//! sleeps until the nearest of all and then looks at every connection, which costs one pass
//! over the connections per passed deadline (rare: deadlines are seconds away).
//!
//! The FC Invoke Start line of a request is on stdout before the request reaches the
//! function: the lines of one batch of events are written together, and the requests that
//! wait for them go out right after (the rule itself: [`super::lines`]).
//!
//! Failure modes: a panic while a connection is handled is caught around that connection's
//! step: that connection alone is closed (its guards restore the counters), counted in
//! `fc_init_internal_errors_total` and logged at most once a second, and the loop goes on
//! with the others. A panic elsewhere in the loop loses its connections and the loop starts
//! again on the same poll and mailbox; a result for one of its old connections finds no live
//! connection with its token (generations never repeat) and is dropped.

use std::io;
use std::net::TcpStream;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::state::{Notice, Status, Watcher};

use super::client::{self, Client, Next};
use super::conn;
use super::cx::{Cx, Handle, Mail, Settle};
use super::finish;
use super::io::FunctionConnector;
use super::shared::{OpenSlot, Proxy};
use super::slab::{token, untoken, Slab, KIND_CLIENT, KIND_FN, WAKE};

/// Events taken per poll.
const EVENTS: usize = 256;

/// Busy polling is for a loop with at most this many client connections: with more, traffic
/// arrives often enough that the loop seldom sleeps for long, and polling on would only take
/// CPU time from the function and the clients.
const BUSY_POLL_CLIENTS: usize = 8;

/// The loops, and where the accept thread hands them connections.
pub(super) struct Loops {
    handles: Vec<Arc<Handle>>,
    next: AtomicUsize,
}

/// Tells every loop about status changes (the requests that wait for the instance look again).
struct WakeOnChange(Vec<Arc<Handle>>);

impl Watcher for WakeOnChange {
    fn notice(&self, _: Notice, _: &Status) {
        for h in &self.0 {
            h.status_changed();
        }
    }
}

impl Loops {
    /// Starts `p.loops` loops ([`count`]).
    pub(super) fn start(p: &'static Proxy) -> io::Result<Loops> {
        let n = p.loops;
        quiet_loop_panics();
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKE)?;
            let handle = Arc::new(Handle::new(Box::new(move || waker.wake())));
            let h = handle.clone();
            std::thread::Builder::new()
                .name(format!("{THREAD}{i}"))
                .spawn(move || run(p, poll, &h))?;
            handles.push(handle);
        }
        p.shared.watch(Arc::new(WakeOnChange(handles.clone())));
        Ok(Loops {
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// Waits until every loop has written the answers it has decided on, at most `within`;
    /// says whether they all did. Called once, when fc-init exits, after the listener has
    /// stopped accepting.
    pub(super) fn settle(&self, within: Duration) -> bool {
        let settle = Arc::new(Settle {
            left: Mutex::new(self.handles.len()),
            done: Condvar::new(),
        });
        for h in &self.handles {
            h.push(Mail::Settle(settle.clone()));
        }
        let left = settle.left.lock().unwrap_or_else(|e| e.into_inner());
        let (left, _) = settle
            .done
            .wait_timeout_while(left, within, |left| *left > 0)
            .unwrap_or_else(|e| e.into_inner());
        *left == 0
    }

    /// Gives `stream` to the next loop (round robin).
    pub(super) fn dispatch(&self, stream: TcpStream, slot: OpenSlot) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].push(Mail::Connection(stream, slot));
    }
}

/// The name of every loop thread starts so.
const THREAD: &str = "fc-init-loop-";

std::thread_local! {
    /// What the last panic on this loop thread said (where, and its message), for the loop's
    /// own once-a-second log line.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Keeps panics on the loop threads off stderr (the loop logs them itself, at most once a
/// second: a request that panics fc-init must not also flood its log); panics elsewhere go
/// to the hook that was there before.
fn quiet_loop_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_loop = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(THREAD));
            if !on_loop {
                return previous(info);
            }
            LAST_PANIC.with(|l| *l.borrow_mut() = Some(info.to_string()));
        }));
    });
}

/// The body of a loop thread: restarts the loop after a panic outside the handling of one
/// connection (its connections are lost, the poll and the mailbox stay).
fn run(p: &'static Proxy, mut poll: Poll, h: &Arc<Handle>) {
    loop {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let made = poll
                .registry()
                .try_clone()
                .and_then(|registry| Loop::new(p, registry, h.clone()));
            match made {
                Ok(mut l) => l.run(&mut poll),
                Err(e) => log::error!("starting an event loop: {e}"),
            }
        }));
        match result {
            // Only a failing poll ends a loop; pause so as not to spin on it.
            Ok(()) => std::thread::sleep(Duration::from_secs(1)),
            Err(_) => {
                let what = LAST_PANIC
                    .with(|l| l.borrow_mut().take())
                    .unwrap_or_default();
                p.metrics.internal_error();
                log::error!("an event loop panicked; its connections were closed: {what}");
            }
        }
    }
}

/// What a loop does when it has handled its events.
#[derive(Debug, PartialEq, Eq)]
enum Wait {
    /// Poll again at once, after yielding the CPU to whatever else wants it.
    Spin,
    /// Sleep in the poll until an event, at most this long (the nearest deadline).
    Sleep(Duration),
}

/// Busy polling (`server.busy_poll`): a loop that had an event within `busy_poll` polls again
/// without sleeping. On a virtual machine a sleeping thread woken by a socket costs tens of
/// microseconds, and a proxy pays that twice per request (the client's bytes, the function's
/// answer); polling through the short gap between them, and between one request of a
/// connection and its next, avoids it. Only a loop with few connections polls on (see
/// [`BUSY_POLL_CLIENTS`]). The loop yields before each such poll, so the function
/// or anything else runnable on its CPU goes first, and it goes to sleep as soon as traffic
/// pauses: an idle instance never polls. HAProxy's `busy-polling` does the same without the
/// bound, and Go's scheduler (of-watchdog, Knative's queue-proxy) spins briefly before parking
/// a thread.
fn idle_wait(
    now: Instant,
    last_event: Instant,
    busy_poll: Duration,
    clients: usize,
    next_scan: Instant,
) -> Wait {
    if clients <= BUSY_POLL_CLIENTS
        && now.saturating_duration_since(last_event) < busy_poll
        && now < next_scan
    {
        return Wait::Spin;
    }
    // Round up: waking a little after a deadline is fine, before it only spins.
    let wait = next_scan.saturating_duration_since(now);
    Wait::Sleep(Duration::from_millis(
        wait.as_nanos().div_ceil(1_000_000) as u64
    ))
}

struct Loop {
    clients: Slab<Client>,
    cx: Cx,
    /// Client connections are registered here.
    registry: Registry,
    /// Set when fc-init is about to exit ([`Mail::Settle`]).
    settling: Option<Arc<Settle>>,
}

impl Loop {
    fn new(p: &'static Proxy, registry: Registry, handle: Arc<Handle>) -> io::Result<Loop> {
        let connector = FunctionConnector {
            registry: registry.try_clone()?,
            endpoint: &p.cfg.function.endpoint,
        };
        Ok(Loop {
            clients: Slab::new(),
            cx: Cx::new(p, Box::new(connector), handle, Instant::now()),
            registry,
            settling: None,
        })
    }

    fn run(&mut self, poll: &mut Poll) {
        let mut events = Events::with_capacity(EVENTS);
        let busy_poll = self.cx.p.busy_poll;
        let mut last_event = Instant::now();
        loop {
            self.write_lines();
            let now = Instant::now();
            let clients = self.clients.len();
            let wait = match idle_wait(now, last_event, busy_poll, clients, self.cx.next_scan) {
                Wait::Spin => {
                    std::thread::yield_now();
                    Duration::ZERO
                }
                Wait::Sleep(wait) => {
                    if self.clients.is_empty() {
                        super::shared::give_back_memory();
                    }
                    wait
                }
            };
            if let Err(e) = crate::sys::retry(|| poll.poll(&mut events, Some(wait))) {
                log::error!("polling: {e}");
                return;
            }
            self.cx.now = Instant::now();
            if !events.is_empty() {
                last_event = self.cx.now;
            }
            for ev in events.iter() {
                if ev.token() == WAKE {
                    self.mail();
                    continue;
                }
                let (kind, idx, gen) = untoken(ev.token());
                let rd = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let wr = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                let hup = ev.is_read_closed() || ev.is_error();
                match kind {
                    KIND_CLIENT => {
                        let Some(c) = self.clients.live(idx, gen) else {
                            continue;
                        };
                        c.io.rd |= rd;
                        c.io.wr |= wr;
                        c.io.hup |= hup;
                        self.drive(idx);
                    }
                    KIND_FN => {
                        let Some(slot) = self.cx.pool.slots.live(idx, gen) else {
                            continue;
                        };
                        slot.rd |= rd;
                        slot.wr |= wr;
                        slot.hup |= hup;
                        match slot.owner {
                            Some(owner) => self.drive_token(owner),
                            // Pooled: input or a hang-up means the function closed it (or
                            // sent bytes nobody asked for). Drop it now rather than fail the
                            // next request with it.
                            None if rd => {
                                self.cx.pool.idle.retain(|&i| i != idx);
                                self.cx.pool.slots.remove(idx);
                            }
                            None => {}
                        }
                    }
                    _ => {}
                }
            }
            self.write_lines();
            if self.cx.now >= self.cx.next_scan {
                self.scan_deadlines();
            }
            self.maybe_settled();
        }
    }

    /// Counts this loop out of the exit's [`Settle`] once no connection has an answer left.
    fn maybe_settled(&mut self) {
        if self.settling.is_none() {
            return;
        }
        if self.clients.values().all(client::settled) {
            if let Some(settle) = self.settling.take() {
                settle.count_out();
            }
        }
    }

    fn drive(&mut self, idx: usize) {
        self.guarded(idx, conn::drive);
    }

    /// Runs `step` on client `idx` and acts on its [`Next`]; a panic inside it costs that
    /// connection only ([`Loop::contain`]).
    fn guarded(&mut self, idx: usize, step: impl FnOnce(&mut Cx, &mut Client) -> Next) {
        let Some(c) = self.clients.get(idx) else {
            return;
        };
        let cx = &mut self.cx;
        match std::panic::catch_unwind(AssertUnwindSafe(|| step(cx, c))) {
            Ok(Next::Keep) => {}
            // Dropping the client closes its socket (which leaves the poll) and frees its
            // `max_connections` slot.
            Ok(Next::Close) => drop(self.clients.remove(idx)),
            Err(_) => self.contain(idx),
        }
    }

    /// A panic while handling client `idx`: that connection is closed, and only it. What its
    /// exchange held is given back (the function connection closed, not pooled: its state is
    /// unknown; the slot and the in-flight count by their guards), its invocation ends with
    /// fc-init's own fault, and the panic is counted and logged at most once a second. Other
    /// exchanges on this loop go on.
    fn contain(&mut self, idx: usize) {
        static LOGGED: crate::logging::Throttle = crate::logging::Throttle::new();
        let p = self.cx.p;
        p.metrics.internal_error();
        let what = LAST_PANIC
            .with(|l| l.borrow_mut().take())
            .unwrap_or_default();
        if LOGGED.ready() {
            log::error!("internal error while handling a client connection (closed): {what}");
        }
        let Some(mut c) = self.clients.remove(idx) else {
            return;
        };
        let cx = &mut self.cx;
        let cleaned = std::panic::catch_unwind(AssertUnwindSafe(|| {
            super::h2c::abandon(cx, &mut c);
            finish::abandon(cx, &mut c);
        }));
        if cleaned.is_err() {
            // Its guards still give back what they hold when `c` drops.
            p.metrics.internal_error();
        }
    }

    fn drive_token(&mut self, t: Token) {
        let (_, idx, gen) = untoken(t);
        if self.clients.live(idx, gen).is_some() {
            self.drive(idx);
        }
    }

    /// Acts on what other threads handed over.
    fn mail(&mut self) {
        let (mail, changed) = self.cx.handle.take_mail();
        for m in mail {
            match m {
                Mail::Connection(stream, slot) => self.accept(stream, slot),
                Mail::Stored(t, result) => {
                    self.answered(t, |cx, c| conn::stored(cx, c, result));
                }
                Mail::Lifecycle(t, answer) => {
                    self.answered(t, |cx, c| conn::lifecycle_answered(cx, c, answer));
                }
                Mail::Handoff(t, handed) => {
                    self.answered(t, |cx, c| conn::handed_off(cx, c, handed));
                }
                Mail::Granted(t) => self.drive_token(t),
                Mail::Budget(t) => {
                    let (_, idx, gen) = untoken(t);
                    if let Some(c) = self.clients.live(idx, gen) {
                        c.budget_back();
                        self.drive(idx);
                    }
                    // Whatever the woken connection did not take (it is gone, or needed less)
                    // goes to the next waiter.
                    self.cx.p.budget.wake();
                }
                Mail::Settle(settle) => self.settling = Some(settle),
            }
        }
        if changed {
            for t in std::mem::take(&mut self.cx.status_waiters) {
                let (_, idx, gen) = untoken(t);
                if let Some(c) = self.clients.live(idx, gen) {
                    c.status_changed();
                    self.drive(idx);
                }
            }
        }
    }

    /// Hands client `t` the result it waited for (`take`), then drives it; a result for a
    /// connection that is gone is dropped.
    fn answered(&mut self, t: Token, take: impl FnOnce(&mut Cx, &mut Client)) {
        let (_, idx, gen) = untoken(t);
        if self.clients.live(idx, gen).is_some() {
            self.guarded(idx, |cx, c| {
                take(cx, c);
                conn::drive(cx, c)
            });
        }
    }

    /// Registers a connection the accept thread handed over.
    fn accept(&mut self, stream: TcpStream, slot: OpenSlot) {
        if let Err(e) = stream.set_nonblocking(true) {
            log::debug!("dropping a connection: {e}");
            return;
        }
        // Small answers must not wait for Nagle (RFC 896) on a keep-alive connection.
        let _ = stream.set_nodelay(true);
        let mut stream = mio::net::TcpStream::from_std(stream);
        let gen = self.cx.handle.generations.fetch_add(1, Ordering::Relaxed);
        let t = token(KIND_CLIENT, self.clients.next_index(), gen);
        if let Err(e) =
            self.registry
                .register(&mut stream, t, Interest::READABLE | Interest::WRITABLE)
        {
            log::error!("registering a connection: {e}");
            return;
        }
        // `header_timeout` runs from accept for the first request.
        let deadline = self.cx.now + self.cx.p.cfg.server.header_timeout;
        let idx = self
            .clients
            .insert(Client::new(Box::new(stream), slot, t, deadline), gen);
        if let Some(c) = self.clients.get(idx) {
            client::set_deadline(&mut self.cx, &mut c.io, deadline);
        }
        self.drive(idx);
    }

    /// Writes the FC lines of this batch, then lets the requests that waited for their Start
    /// line go (which may queue more lines: until none waits).
    fn write_lines(&mut self) {
        loop {
            let go = self.cx.lines.write(&mut std::io::stdout().lock());
            if go.is_empty() {
                return;
            }
            for t in go {
                self.drive_token(t);
            }
        }
    }

    /// Acts on every passed deadline and finds the next one.
    fn scan_deadlines(&mut self) {
        let now = self.cx.now;
        let mut next = now + Duration::from_secs(3600);
        for idx in self.clients.indices() {
            let Some(c) = self.clients.get(idx) else {
                continue;
            };
            if c.io.deadline <= now {
                self.guarded(idx, conn::on_deadline);
            }
            if let Some(c) = self.clients.get(idx) {
                next = next.min(c.io.deadline);
            }
        }
        self.cx.next_scan = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_polls_on_only_within_busy_poll_of_its_last_event() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let scan = t0 + Duration::from_secs(5);
        assert_eq!(idle_wait(t0 + us(10), t0, us(50), 1, scan), Wait::Spin);
        assert_eq!(idle_wait(t0 + us(49), t0, us(50), 1, scan), Wait::Spin);
        assert_eq!(idle_wait(t0 + us(10), t0, us(50), 8, scan), Wait::Spin);
        // A loop with more connections than that sleeps at once.
        assert_eq!(
            idle_wait(t0 + us(10), t0, us(50), 9, scan),
            Wait::Sleep(Duration::from_millis(5000))
        );
        // Past the bound it sleeps until the next deadline, rounded up to whole milliseconds.
        assert_eq!(
            idle_wait(t0 + us(50), t0, us(50), 1, scan),
            Wait::Sleep(Duration::from_millis(5000))
        );
        assert_eq!(
            idle_wait(t0 + us(10), t0, Duration::ZERO, 1, scan),
            Wait::Sleep(Duration::from_millis(5000))
        );
        // A deadline that is due is looked at, not polled past.
        assert_eq!(
            idle_wait(t0 + us(10), t0, us(50), 1, t0 + us(5)),
            Wait::Sleep(Duration::ZERO)
        );
        assert_eq!(
            idle_wait(t0, t0, Duration::ZERO, 1, t0 + us(1500)),
            Wait::Sleep(Duration::from_millis(2))
        );
    }
}
