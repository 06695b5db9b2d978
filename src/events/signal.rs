//! Wake-ups between the threads of the async side: a counter with a condition variable, so
//! that a waiter compares against the value it saw before it looked for work, and a signal
//! between "nothing to do" and "wait" is never lost.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Locks a mutex, taking over a poisoned one: what the async side guards with its locks is
/// plain data that stays consistent between statements (see the stores' docs).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A counter with a condition variable: waiters compare against the value they saw, so a
/// signal between "nothing to do" and "wait" is never lost.
#[derive(Default)]
pub struct Signal {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl Signal {
    pub fn bump(&self) {
        let mut seq = lock(&self.seq);
        *seq = seq.wrapping_add(1);
        drop(seq);
        self.cv.notify_all();
    }

    pub fn current(&self) -> u64 {
        *lock(&self.seq)
    }

    pub fn wait(&self, seen: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut seq = lock(&self.seq);
        while *seq == seen {
            // A timeout too large for an Instant means "forever": wait in long slices.
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return false,
                },
                None => Duration::from_secs(3600),
            };
            seq = self
                .cv
                .wait_timeout(seq, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}
