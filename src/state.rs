//! The instance state other parts of fc-init can see: the supervisor thread writes it, the
//! traffic, admin and health code read it and wait on its changes.
//!
//! The supervisor is the only writer of the lifecycle fields; readers never act on a child
//! themselves, they send the supervisor an event instead (see `supervisor::Events`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Where the instance is in its life (the contract's health states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The function is being started or restarted and does not yet accept connections.
    Starting,
    /// The initializer is running or a retry is scheduled.
    Initializing,
    /// Initialized (or nothing to initialize): traffic flows.
    Ready,
    /// Initialization failed and nothing is under way or scheduled (`next-request`, `exit`).
    Failed,
    /// Shutting down.
    Stopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Initializing => "initializing",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
            Phase::Stopping => "stopping",
        }
    }
}

/// Why the instance is stopping, for the answers of requests that were waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// SIGTERM/SIGINT, or FC's `/pre-stop` followed by one.
    Signal,
    /// The function exited and `restart` does not bring it back.
    FunctionExited,
    /// The instance could not be initialized (exit 3): waiting requests get
    /// `InitializationError`, not `InstanceStopping`.
    NotInitialized,
    /// fc-init itself failed (a respawn that could not start the program).
    Failure,
}

/// A snapshot of the lifecycle, as `GET /status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    pub function_pid: Option<i32>,
    /// Counts instances: bumped at every spawn of the function.
    pub instance: u64,
    pub restarts: u64,
    pub initializer_attempts: u64,
    pub initializer_successes: u64,
    pub initializer_failures: u64,
    /// The last initializer attempt's failure, for `InitializationError` answers.
    pub last_init_error: Option<String>,
    /// Set with [`Phase::Stopping`].
    pub stop_cause: Option<StopCause>,
    /// While a crashed function waits out its restart backoff: what happened to it (e.g.
    /// "exited with status 1"), for the answers of the requests that wait for the next one.
    pub restarting: Option<String>,
}

/// What a request gets when the instance cannot serve it (docs/reference.md §6, §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// `InstanceStopping`.
    Stopping,
    /// `InitializationError`, with the reason.
    Initialization(String),
}

impl Status {
    /// Why a request that waited for this instance and can wait no longer is not served;
    /// `None` when the instance is ready.
    pub fn not_ready(&self) -> Option<NotReady> {
        let init_reason = || {
            self.last_init_error
                .clone()
                .unwrap_or_else(|| "timed out waiting for the instance to initialize".to_owned())
        };
        Some(match self.phase {
            Phase::Ready => return None,
            Phase::Stopping if self.stop_cause == Some(StopCause::NotInitialized) => {
                NotReady::Initialization(init_reason())
            }
            Phase::Stopping => NotReady::Stopping,
            Phase::Starting => match &self.restarting {
                Some(what) => NotReady::Initialization(format!(
                    "timed out waiting for the function to restart: it {what}"
                )),
                None => NotReady::Initialization(
                    "timed out waiting for the function to accept connections".to_owned(),
                ),
            },
            Phase::Initializing | Phase::Failed => NotReady::Initialization(init_reason()),
        })
    }
}

/// A change the supervisor announces to the parts of fc-init that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The status changed (phase, instance, counters): whoever waits on it looks again.
    Changed,
    /// The shutdown started: stop accepting, send queued requests away, stop claiming work.
    /// Sent once, after the status says [`Phase::Stopping`].
    Stopping,
}

/// A part of fc-init that the supervisor tells about changes (the traffic side, the async
/// workers). Called on the supervisor thread, so it must not block.
pub trait Watcher: Send + Sync {
    fn notice(&self, notice: Notice, status: &Status);
}

/// Shared between the supervisor and everything else.
pub struct Shared {
    status: Mutex<Status>,
    watchers: Mutex<Vec<Arc<dyn Watcher>>>,
    changed: Condvar,
    /// Requests currently being forwarded to the function.
    pub in_flight: AtomicUsize,
    pub started: Instant,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            phase: Phase::Starting,
            function_pid: None,
            instance: 0,
            restarts: 0,
            initializer_attempts: 0,
            initializer_successes: 0,
            initializer_failures: 0,
            last_init_error: None,
            stop_cause: None,
            restarting: None,
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            status: Mutex::new(Status::default()),
            watchers: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            in_flight: AtomicUsize::new(0),
            started: Instant::now(),
        }
    }
}

/// Locks `m` even if a thread panicked while holding it: what these locks guard is plain
/// data that stays consistent between statements, and serving on matters more than stopping.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }

    pub fn snapshot(&self) -> Status {
        self.lock().clone()
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// The phase and the instance counter in one lock, without cloning the status: the
    /// traffic side reads both for every request.
    pub fn phase_and_instance(&self) -> (Phase, u64) {
        let status = self.lock();
        (status.phase, status.instance)
    }

    /// Replaces the status (the supervisor is its only writer), wakes every waiter and tells
    /// every watcher ([`Notice::Changed`]).
    pub fn publish(&self, status: Status) {
        let snapshot = status.clone();
        *self.lock() = status;
        self.changed.notify_all();
        self.announce(Notice::Changed, &snapshot);
    }

    /// Registers a part of fc-init to be told about changes.
    pub fn watch(&self, watcher: Arc<dyn Watcher>) {
        lock(&self.watchers).push(watcher);
    }

    /// Tells every watcher that the shutdown started ([`Notice::Stopping`]); the supervisor
    /// calls this once, after publishing [`Phase::Stopping`].
    pub fn announce_stopping(&self) {
        let snapshot = self.snapshot();
        self.announce(Notice::Stopping, &snapshot);
    }

    fn announce(&self, notice: Notice, status: &Status) {
        // A clone of the list, so a watcher may register another without deadlocking.
        let watchers = lock(&self.watchers).clone();
        for watcher in watchers {
            watcher.notice(notice, status);
        }
    }

    /// Waits until `done` holds or `deadline` passes; returns the last status seen.
    pub fn wait_until(&self, deadline: Instant, mut done: impl FnMut(&Status) -> bool) -> Status {
        let mut status = self.lock();
        loop {
            if done(&status) {
                return status.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return status.clone();
            }
            status = match self.changed.wait_timeout(status, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase) -> Status {
        Status {
            phase,
            ..Status::default()
        }
    }

    #[test]
    fn a_request_refused_after_a_failed_initialization_under_exit_gets_initialization_error() {
        let mut s = status(Phase::Stopping);
        s.stop_cause = Some(StopCause::NotInitialized);
        s.last_init_error = Some("status 500".into());
        assert_eq!(
            s.not_ready(),
            Some(NotReady::Initialization("status 500".into()))
        );
        s.stop_cause = Some(StopCause::Signal);
        assert_eq!(s.not_ready(), Some(NotReady::Stopping));
    }

    #[test]
    fn a_request_waiting_through_a_restart_backoff_is_told_the_function_is_restarting() {
        let mut s = status(Phase::Starting);
        s.restarting = Some("exited with status 1".into());
        match s.not_ready() {
            Some(NotReady::Initialization(m)) => {
                assert!(m.contains("restart") && m.contains("status 1"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(status(Phase::Ready).not_ready(), None);
    }
}
