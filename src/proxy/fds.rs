//! File descriptors: the budget the traffic side lives within, and what it does when they run
//! out.
//!
//! At start [`budget`] raises the soft `RLIMIT_NOFILE` to the hard limit (the soft default of
//! 1024 is a relic of `select(2)`; fc-init never uses it), then caps `server.max_connections`
//! below what is left, saying so once: every client connection may bring a function connection
//! with it, and a reserve stays free for the store, the admin API, hooks and the async workers'
//! own connections to the listener. Running out anyway (another process, a limit lowered
//! under us) is fc-init's own condition, not the function's failure: `accept` and connecting to
//! the function answer `TooManyRequests` ([`is_exhausted`]), and [`log_exhausted`] says so at
//! most once a second, however often it happens.

use std::io;

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Descriptors kept free for everything but client and function connections.
const RESERVE: u64 = 64;

/// Whether `e` says a descriptor (or the kernel memory for one) ran out.
pub fn is_exhausted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Logs that descriptors ran out while doing `what`, at most once a second process-wide.
pub fn log_exhausted(what: &str, e: &io::Error) {
    static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
    if LOG.ready() {
        log::error!("{what}: {e}; answering TooManyRequests (this is logged once a second)");
    }
}

/// Descriptors open now (`/proc/self/fd`), or a guess.
fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(32, |d| d.count() as u64)
}

/// Raises the soft descriptor limit to the hard one and returns how many client connections
/// fit: at most `max_connections`, leaving room for each one's function connection (at most
/// `max_concurrency` of them at once, plus `pooled` idle ones; 0 = unlimited), for the
/// asynchronous workers' own connections, and a reserve.
pub fn budget(
    max_connections: usize,
    max_concurrency: usize,
    pooled: usize,
    async_workers: usize,
) -> usize {
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            // An unlimited hard limit is not a number setrlimit takes for NOFILE.
            let want = if hard == RLIM_INFINITY {
                soft.max(1 << 20)
            } else {
                hard
            };
            if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
                want
            } else {
                soft
            }
        }
        Err(e) => {
            log::warn!("reading RLIMIT_NOFILE: {e}");
            return max_connections;
        }
    };
    let fit = fitting(
        limit,
        open_now(),
        max_concurrency as u64,
        pooled as u64,
        async_workers as u64,
    );
    if (fit as usize) < max_connections {
        log::warn!(
            "RLIMIT_NOFILE is {limit}: serving at most {fit} connections at once, not \
             server.max_connections = {max_connections}"
        );
        return fit as usize;
    }
    max_connections
}

/// The arithmetic of [`budget`]: client connections that fit in `limit` descriptors with
/// `open` already in use.
fn fitting(limit: u64, open: u64, max_concurrency: u64, pooled: u64, async_workers: u64) -> u64 {
    // Each async worker holds a connection to the listener: both of its ends are ours.
    let free = limit.saturating_sub(open + RESERVE + 2 * async_workers);
    let function = match max_concurrency {
        0 => free / 2,
        n => (n + pooled).min(free / 2),
    };
    (free - function).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_in_what_is_left() {
        // A generous limit changes nothing.
        assert!(fitting(1 << 20, 20, 100, 128, 10) > 4096);
        // 256 descriptors: the reserve, the workers, then half for function connections.
        assert_eq!(fitting(256, 20, 1000, 128, 10), (256 - 20 - 64 - 20) / 2);
        // A small concurrency needs few function connections.
        assert_eq!(fitting(256, 20, 4, 4, 0), 256 - 20 - 64 - 8);
        // Never zero, whatever is left.
        assert_eq!(fitting(10, 20, 100, 0, 0), 1);
    }

    #[test]
    fn running_out_is_recognised() {
        assert!(is_exhausted(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_exhausted(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_exhausted(&io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
    }
}
