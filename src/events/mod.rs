//! Asynchronous invocations (CONTRACT section 7): durable events, the workers that run them,
//! terminate, retention — on the embedded SQLite store of one instance, or on Redis for a
//! fleet of instances sharing one queue.
//!
//! - [`model`]: the event model both stores share, and its JSON.
//! - [`error`]: how a store fails.
//! - [`backend`]: the store interface the service runs on, and the SQLite backend.
//! - [`store`]: the embedded SQLite store — group-committed submissions, the workers' claim /
//!   finish / retry transitions, the operator's list / get / abort, retention.
//! - [`redis`]: the fleet's store on Redis Streams.
//! - [`service`]: submissions, workers, terminate and retention at run time.
//! - [`attempt`]: one attempt of an event through fc-init's own listener.
//! - [`signal`]: wake-ups between the async threads.
//! - [`time`]: wall-clock milliseconds and their RFC 3339 form.

use std::sync::atomic::{AtomicU64, Ordering};

pub mod attempt;
pub mod backend;
pub mod error;
pub mod model;
pub mod redis;
pub mod service;
pub mod signal;
pub mod store;
pub mod time;

/// One line a second, process-wide, for the store's trouble (a full disk, Redis gone): every
/// worker and every Redis link meets the same outage at once, and one line says it.
pub static STORE_LOG: Throttle = Throttle::new();

/// Lets a repeated diagnostic through at most once a second (a store that is down fails
/// every call; its log must not flood stderr).
#[derive(Debug, Default)]
pub struct Throttle {
    /// When a line last went through, ms since the epoch.
    last: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now; if so, the next one may only in a second.
    pub fn ready(&self) -> bool {
        let now = time::now_ms();
        let last = self.last.load(Ordering::Relaxed);
        now.saturating_sub(last) >= 1000
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
