//! Invocation traffic: the listener and the forwarding of requests to the function
//! (CONTRACT §3, §4, §5, §6, §8).
//!
//! One path for every request. One accept thread ([`listener`]) hands each client connection
//! to one of a few event loops (one per core, [`event_loop`]), which own it until it closes:
//! [`conn`] reads its requests (strict head parsing in `crate::http`, the body buffered before
//! a slot is taken), and [`exchange`] admits each one (the concurrency limit and its FIFO
//! queue, [`limiter`]; the wait for an initialized instance, woken by the supervisor's
//! `Notice::Changed`) and relays it to the function and the answer back, both directions at
//! once, over pooled non-blocking function connections; WebSocket-style upgrades are relayed
//! byte for byte. Asynchronous submissions go to the store ([`submit`]) and FC's lifecycle
//! calls to the supervisor, both answered when their result comes back to the loop. Threads
//! remain only for hooks and the store: no request ever waits on a thread of its own. What a
//! request is comes from one pure rule ([`kind`]); every way it can fail ends in one of
//! fc-init's own answers ([`errors`]) or, once the function's answer has started, in closing
//! the client connection.
//!
//! Shutdown: the supervisor's `Notice::Stopping` (a `state::Watcher`) stops the accept loop,
//! sends queued requests away (`InstanceStopping`) and makes later requests on open
//! connections fail the same way; requests already forwarded continue, and the last one to
//! finish tells the supervisor (`Event::Drained`). `Shared::in_flight` counts exactly the
//! requests that hold a slot and have been let through to the function (an upgraded
//! connection for its whole life).
//!
//! Resources: [`fds`] raises the descriptor limit and fits `max_connections` below it; memory
//! per connection is bounded by its buffers (see [`event_loop::BUF`]); a loop that panics
//! loses its connections and starts again (guards restore the counters).

mod admission;
mod budget;
mod conn;
mod errors;
mod event_loop;
mod exchange;
#[cfg(test)]
mod exchange_tests;
mod fds;
mod io;
mod kind;
mod limiter;
mod listener;
mod submit;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::events::service::AsyncService;
use crate::http::Limits;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::supervisor::{Event, Events};

/// Why the listener could not be started.
#[derive(Debug)]
pub enum ProxyError {
    /// Binding or listening on `server.listen` failed.
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The accept thread or an event loop could not be started.
    Thread(std::io::Error),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Bind { addr, source } => write!(f, "listening on {addr}: {source}"),
            ProxyError::Thread(e) => write!(f, "starting the traffic threads: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Bind { source, .. } => Some(source),
            ProxyError::Thread(e) => Some(e),
        }
    }
}

/// The FC Invoke lines (CONTRACT §5), written by the event loops.
const INVOKE_START: &str = "FC Invoke Start RequestId: ";
const INVOKE_END: &str = "FC Invoke End RequestId: ";
/// After `, Error: ` on the End line of a failed invocation (CONTRACT §8).
const END_ERROR: &str = "Unhandled function error";
/// ... of an invocation whose client closed its connection before the answer was complete
/// (CONTRACT §11).
const CLIENT_CLOSED: &str = "client closed the connection";
/// ... of an invocation cut by a fault of fc-init's own (a panic while handling it).
const INTERNAL_ERROR: &str = "fc-init internal error";

/// Everything the traffic threads share.
pub(crate) struct Proxy {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    events: Tell,
    metrics: Arc<Metrics>,
    /// `None` when `async.enabled = false`.
    asynchronous: Option<Arc<AsyncService>>,
    limiter: limiter::Limiter,
    /// `server.max_connections`, fitted to the descriptor limit.
    max_connections: usize,
    /// Set once by the stop hook; read on every request.
    stopping: AtomicBool,
    /// Client connections open now (for `max_connections`).
    open: AtomicUsize,
    limits: Limits,
    /// `x-fc-function-timeout`: whole seconds, rounded up.
    function_timeout: String,
    /// `server.busy_poll`, or zero with fewer than two CPUs (where polling would take the
    /// function's CPU).
    busy_poll: Duration,
    /// Event loops to run ([`event_loop::count`]).
    loops: usize,
    /// `server.body_buffer_total`, shared by every loop.
    budget: budget::Budget,
    /// TEST ONLY, debug builds only: `FC_INIT_TEST_PANIC=1` in fc-init's environment makes a
    /// request with `x-fc-init-test-panic` panic on its event loop once it holds a slot and a
    /// function connection, so that an integration test can show that a panic costs only its
    /// own connection. Release builds have neither the field nor the trigger.
    #[cfg(debug_assertions)]
    test_panic: bool,
}

impl Proxy {
    fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        events: Tell,
        metrics: Arc<Metrics>,
        asynchronous: Option<Arc<AsyncService>>,
    ) -> Proxy {
        let s = &cfg.server;
        let loops = event_loop::count();
        let workers = match asynchronous {
            Some(_) => cfg.async_.max_concurrency,
            None => 0,
        };
        let max_connections = fds::budget(
            s.max_connections,
            s.max_concurrency,
            loops * event_loop::MAX_IDLE,
            workers,
        );
        let limits = Limits {
            max_header_bytes: s.max_header_bytes,
            ..Limits::default()
        };
        Proxy {
            limiter: limiter::Limiter::new(s.max_concurrency, s.max_queue),
            max_connections,
            stopping: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            limits,
            function_timeout: whole_seconds_up(cfg.function.timeout).to_string(),
            busy_poll: match loops {
                1 => Duration::ZERO,
                _ => s.busy_poll,
            },
            loops,
            budget: budget::Budget::new(s.body_buffer_total),
            #[cfg(debug_assertions)]
            test_panic: std::env::var_os("FC_INIT_TEST_PANIC").is_some_and(|v| v == "1"),
            cfg,
            shared,
            events,
            metrics,
            asynchronous,
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The stop hook: runs once, on the supervisor thread; must not block.
    fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // An RMW on `in_flight` after the flag: a request that incremented it before seeing
        // the flag is ordered before this, so the supervisor's next read of `in_flight`
        // includes it (see `InFlight::enter`).
        self.shared.in_flight.fetch_add(0, Ordering::SeqCst);
        self.limiter.close();
    }
}

/// Where the traffic side tells the supervisor what happened (its `Events` queue; a recorder
/// in the exchange tests).
struct Tell(Box<dyn Fn(Event) + Send + Sync>);

impl Tell {
    fn send(&self, event: Event) {
        (self.0)(event)
    }
}

/// A client connection counted in `Proxy::open` (for `max_connections`); dropping it uncounts
/// it.
struct OpenSlot {
    proxy: &'static Proxy,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.proxy.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request counted in `Shared::in_flight`; dropping it (also while unwinding) uncounts it and
/// tells the supervisor when it was the last one during the drain.
struct InFlight<'a> {
    proxy: &'a Proxy,
}

impl<'a> InFlight<'a> {
    /// Counts a request in, unless fc-init is stopping (then `None`: answer InstanceStopping).
    fn enter(proxy: &'a Proxy) -> Option<InFlight<'a>> {
        // Increment first, then look at the flag (both SeqCst): either the stop hook's RMW sees
        // this increment, or this load sees the flag. The supervisor can never see 0 while a
        // request it did not stop is on its way to the function.
        proxy.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight { proxy };
        if proxy.stopping() {
            return None;
        }
        Some(guard)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let before = self.proxy.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && self.proxy.stopping() {
            self.proxy.events.send(Event::Drained);
        }
    }
}

/// Returns freed heap memory to the kernel, at most once a second process-wide. glibc keeps
/// the buffers that connections free in its per-thread arenas, so without this the memory of a
/// burst of connections stays resident after they go idle.
fn give_back_memory() {
    // The events module's once-a-second gate, also the descriptor log's ([`fds`]).
    static TRIM: crate::logging::Throttle = crate::logging::Throttle::new();
    if TRIM.ready() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks glibc's own arenas; it takes their locks itself.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Makes glibc serve every allocation of 128 KiB or more (buffered bodies) with its own
/// mapping, given back to the kernel the moment it is freed. By default glibc raises that
/// threshold to the size of the largest block freed so far, after which 1 MiB bodies come
/// from the per-thread heaps and stay resident after they are freed: fc-init's memory would
/// then be bounded by `server.body_buffer_total` only on paper.
fn large_buffers_from_mmap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tunable; called once at start, before the loops run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// `d` in whole seconds, rounded up (CONTRACT §8).
fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What the traffic side is wired to besides the configuration and the lifecycle.
pub struct Wiring {
    pub shared: Arc<Shared>,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    pub asynchronous: Option<Arc<AsyncService>>,
}

/// How long fc-init's exit waits for the answers the loops have decided on to be written.
const SETTLE: Duration = Duration::from_millis(500);

/// The traffic side, serving on its background threads.
pub struct Traffic {
    addr: std::net::SocketAddr,
    loops: Arc<event_loop::Loops>,
}

impl Traffic {
    /// The address the listener is bound to.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// fc-init's last step before it exits (the listener has stopped accepting by then): waits
    /// until every answer fc-init has decided on is written, at most half a second, so a
    /// request answered in the last moment (`InitializationError` before exit 3,
    /// `InstanceStopping`, the requests of a function that exited) still gets its answer.
    pub fn settle(&self) {
        if !self.loops.settle(SETTLE) {
            log::debug!("exiting with answers still unwritten after {SETTLE:?}");
        }
    }
}

/// Binds `server.listen` and starts serving on background threads (`None` when fc-init does
/// not serve).
pub fn start(cfg: Arc<Config>, w: Wiring) -> Result<Option<Traffic>, ProxyError> {
    let Some(addr) = cfg.server.listen else {
        return Ok(None);
    };
    let listener = listener::bind(addr)?;
    large_buffers_from_mmap();
    let bound = listener.local_addr().unwrap_or(addr);
    // One per process, alive until it exits: a `'static` borrow lets a request's guards
    // (`Permit`, `InFlight`) live in the loops' connections and in the limiter's tickets.
    let events = w.events;
    let proxy: &'static Proxy = Box::leak(Box::new(Proxy::new(
        cfg,
        w.shared,
        Tell(Box::new(move |e| events.send(e))),
        w.metrics.clone(),
        w.asynchronous,
    )));
    w.metrics.set_queued_source(move || proxy.limiter.queued());
    let loops = Arc::new(event_loop::Loops::start(proxy).map_err(ProxyError::Thread)?);
    listener::spawn(proxy, listener, loops.clone())?;
    Ok(Some(Traffic { addr: bound, loops }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_header_rounds_up() {
        assert_eq!(whole_seconds_up(Duration::from_secs(60)), 60);
        assert_eq!(whole_seconds_up(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::ZERO), 0);
    }
}
