//! The instance state other parts of fc-init can see: the supervisor thread writes it, the
//! traffic, admin and health code read it and wait on its changes.
//!
//! The supervisor is the only writer of the lifecycle fields; readers never act on a child
//! themselves, they send the supervisor an event instead (see `supervisor::Events`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
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

/// A snapshot of the lifecycle, as `GET /status` reports it.
#[derive(Debug, Clone)]
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
}

type StopHook = Box<dyn Fn() + Send + Sync>;

/// Shared between the supervisor and everything else.
pub struct Shared {
    status: Mutex<Status>,
    /// Run once when the shutdown starts (e.g. the listener stops accepting).
    stop_hooks: Mutex<Vec<StopHook>>,
    changed: Condvar,
    /// Requests currently being forwarded to the function.
    pub in_flight: AtomicUsize,
    pub started: Instant,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            status: Mutex::new(Status {
                phase: Phase::Starting,
                function_pid: None,
                instance: 0,
                restarts: 0,
                initializer_attempts: 0,
                initializer_successes: 0,
                initializer_failures: 0,
                last_init_error: None,
            }),
            stop_hooks: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            in_flight: AtomicUsize::new(0),
            started: Instant::now(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Status> {
        // A panic while holding this lock cannot leave the plain-data Status half-written in a
        // way that matters more than stopping would; keep serving with what is there.
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// Changes the status and wakes every waiter.
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut status = self.lock();
        f(&mut status);
        drop(status);
        self.changed.notify_all();
    }

    /// Registers `hook` to run (on the supervisor thread, so it must not block) when the
    /// shutdown starts.
    pub fn on_stopping(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.stop_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(hook));
    }

    /// Enters [`Phase::Stopping`] and runs the stop hooks; the supervisor calls this once.
    pub fn begin_stopping(&self) {
        self.update(|s| s.phase = Phase::Stopping);
        for hook in self
            .stop_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook();
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
