//! What the traffic threads share: the one [`Proxy`] value (configuration, lifecycle status,
//! the concurrency limit, the body budget, counters), the guards that count a connection or a
//! request in and out whatever way it ends (also while unwinding), the FC Invoke lines' fixed
//! parts, and the sizes every loop works with.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::events::service::AsyncService;
use crate::http::Limits;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::supervisor::Event;

use super::{budget, fds, limiter};

/// What one direction of an exchange holds at most before it stops reading its source.
pub(super) const BUF: usize = 64 * 1024;

/// Idle function connections kept per loop.
pub(super) const MAX_IDLE: usize = 64;

/// Event loops at most, whatever the core count.
pub(super) const MAX_LOOPS: usize = 16;

/// How many event loops fc-init runs: one per CPU it may use (affinity and cgroup quota
/// included), at most [`MAX_LOOPS`].
pub(super) fn count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_LOOPS)
}

/// Everything the traffic threads share.
pub(super) struct Proxy {
    pub(super) cfg: Arc<Config>,
    pub(super) shared: Arc<Shared>,
    pub(super) events: Tell,
    pub(super) metrics: Arc<Metrics>,
    /// `None` when `async.enabled = false`.
    pub(super) asynchronous: Option<Arc<AsyncService>>,
    pub(super) limiter: limiter::Limiter,
    /// `server.max_connections`, fitted to the descriptor limit.
    pub(super) max_connections: usize,
    /// Set once by the stop hook; read on every request.
    pub(super) stopping: AtomicBool,
    /// Client connections open now (for `max_connections`).
    pub(super) open: AtomicUsize,
    pub(super) limits: Limits,
    /// `x-fc-function-timeout`: whole seconds, rounded up.
    pub(super) function_timeout: String,
    /// `server.busy_poll`, or zero with fewer than two CPUs (where polling would take the
    /// function's CPU).
    pub(super) busy_poll: Duration,
    /// Event loops to run ([`event_loop::count`]).
    pub(super) loops: usize,
    /// `server.body_buffer_total`, shared by every loop.
    pub(super) budget: budget::Budget,
    /// TEST ONLY, debug builds only: `FC_INIT_TEST_PANIC=1` in fc-init's environment makes a
    /// request with `x-fc-init-test-panic` panic on its event loop once it holds a slot and a
    /// function connection, so that an integration test can show that a panic costs only its
    /// own connection. Release builds have neither the field nor the trigger.
    #[cfg(debug_assertions)]
    pub(super) test_panic: bool,
}

impl Proxy {
    pub(super) fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        events: Tell,
        metrics: Arc<Metrics>,
        asynchronous: Option<Arc<AsyncService>>,
    ) -> Proxy {
        let s = &cfg.server;
        let loops = count();
        let workers = match asynchronous {
            Some(_) => cfg.async_.max_concurrency,
            None => 0,
        };
        let max_connections = fds::budget(
            s.max_connections,
            s.max_concurrency,
            loops * MAX_IDLE,
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

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The stop hook: runs once, on the supervisor thread; must not block.
    pub(super) fn begin_stopping(&self) {
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
pub(super) struct Tell(pub(super) Box<dyn Fn(Event) + Send + Sync>);

impl Tell {
    pub(super) fn send(&self, event: Event) {
        (self.0)(event)
    }
}

/// A client connection counted in `Proxy::open` (for `max_connections`); dropping it uncounts
/// it.
pub(super) struct OpenSlot {
    pub(super) proxy: &'static Proxy,
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.proxy.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request counted in `Shared::in_flight`; dropping it (also while unwinding) uncounts it and
/// tells the supervisor when it was the last one during the drain.
pub(super) struct InFlight<'a> {
    pub(super) proxy: &'a Proxy,
}

impl<'a> InFlight<'a> {
    /// Counts a request in, unless fc-init is stopping (then `None`: answer InstanceStopping).
    pub(super) fn enter(proxy: &'a Proxy) -> Option<InFlight<'a>> {
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
pub(super) fn give_back_memory() {
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
pub(super) fn large_buffers_from_mmap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tunable; called once at start, before the loops run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// `d` in whole seconds, rounded up (docs/reference.md §4).
pub(super) fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
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
