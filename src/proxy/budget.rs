//! The shared budget of buffered request bodies (`server.body_buffer_total`): every
//! connection, on every event loop, reserves here the bytes of a request body it is about to
//! buffer before the request takes a slot, and gives them back when the request's exchange
//! ends. A connection whose body does not fit reads nothing more (its client meets TCP
//! backpressure) and waits, in first-come order, to be woken when bytes come back; its own
//! `body_timeout` still bounds the wait.
//!
//! Without it each connection could hold `body_buffer` bytes: 1,000 clients sending 1 MiB
//! bodies took fc-init to 1.1 GB in under a second.
//!
//! A reservation is all or nothing for a body of known length, so that many partly buffered
//! bodies can never hold the whole budget between them and wait for each other. A chunked
//! body grows its reservation a step at a time; see [`super::conn`] for what it does when a
//! step does not fit.
//!
//! Failure modes: none of its own. A waiter whose connection is gone by the time it is woken
//! passes the wake-up on ([`Budget::wake`] again), so no bytes sit unused while others wait.
//! A poisoned lock is recovered: the state is a counter and a queue that every critical
//! section leaves consistent.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// Wakes a waiting connection (on whichever thread gave bytes back); must not block.
pub(super) type Wake = Box<dyn FnOnce() + Send>;

struct State {
    used: u64,
    /// Waiting connections, oldest first, with the bytes each waits for.
    waiters: VecDeque<(u64, Wake)>,
}

/// The budget, shared by every loop.
pub(super) struct Budget {
    total: u64,
    state: Mutex<State>,
}

impl Budget {
    pub(super) fn new(total: u64) -> Budget {
        Budget {
            total,
            state: Mutex::new(State {
                used: 0,
                waiters: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Grows `r` to `bytes` (never shrinks it); false when that does not fit now.
    pub(super) fn grow(&'static self, r: &mut Option<Reservation>, bytes: u64) -> bool {
        let have = r.as_ref().map_or(0, |r| r.bytes);
        if bytes <= have {
            return true;
        }
        let extra = bytes - have;
        {
            let mut s = self.lock();
            if s.used + extra > self.total {
                return false;
            }
            s.used += extra;
        }
        match r {
            Some(r) => r.bytes = bytes,
            None => {
                *r = Some(Reservation {
                    budget: self,
                    bytes,
                })
            }
        }
        true
    }

    /// Queues a connection that waits for `bytes` more to be free; `wake` runs once, when
    /// bytes come back.
    pub(super) fn wait(&self, bytes: u64, wake: Wake) {
        let ready = {
            let mut s = self.lock();
            s.waiters.push_back((bytes, wake));
            self.due(&mut s)
        };
        // Bytes may have come back between the failed `grow` and the queueing.
        for w in ready {
            w();
        }
    }

    /// Wakes the oldest waiters whose bytes fit in what is free now (at least the oldest,
    /// when anything is free).
    pub(super) fn wake(&self) {
        let ready = self.due(&mut self.lock());
        for w in ready {
            w();
        }
    }

    fn due(&self, s: &mut State) -> Vec<Wake> {
        let mut free = self.total.saturating_sub(s.used);
        let mut ready = Vec::new();
        while let Some((bytes, _)) = s.waiters.front() {
            if *bytes > free && !(ready.is_empty() && free > 0 && *bytes > self.total) {
                break;
            }
            free = free.saturating_sub(*bytes);
            if let Some((_, w)) = s.waiters.pop_front() {
                ready.push(w);
            }
        }
        ready
    }

    fn give_back(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let ready = {
            let mut s = self.lock();
            s.used = s.used.saturating_sub(bytes);
            self.due(&mut s)
        };
        for w in ready {
            w();
        }
    }

    /// Bytes reserved now (for tests and the fuzz target's end-of-run check).
    #[cfg(any(test, feature = "exchange-seam"))]
    pub(super) fn used(&self) -> u64 {
        self.lock().used
    }
}

/// Bytes of the budget held by one request; dropping it gives them back.
pub(super) struct Reservation {
    budget: &'static Budget,
    bytes: u64,
}

impl Reservation {
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Keeps only `bytes` of it (what the buffered body really took).
    pub(super) fn shrink(&mut self, bytes: u64) {
        if bytes < self.bytes {
            let extra = self.bytes - bytes;
            self.bytes = bytes;
            self.budget.give_back(extra);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn leaked(total: u64) -> &'static Budget {
        Box::leak(Box::new(Budget::new(total)))
    }

    #[test]
    fn a_body_that_does_not_fit_waits_until_bytes_come_back() {
        let b = leaked(100);
        let mut first = None;
        assert!(b.grow(&mut first, 60));
        let mut second = None;
        assert!(!b.grow(&mut second, 60), "all or nothing");
        assert!(second.is_none());
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        b.wait(
            60,
            Box::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        drop(first);
        assert_eq!(
            woken.load(Ordering::SeqCst),
            1,
            "woken when the bytes came back"
        );
        assert_eq!(b.used(), 0);
        assert!(b.grow(&mut second, 60));
        assert_eq!(b.used(), 60);
    }

    #[test]
    fn a_reservation_grows_and_shrinks() {
        let b = leaked(100);
        let mut r = None;
        assert!(b.grow(&mut r, 30));
        assert!(b.grow(&mut r, 80));
        assert!(b.grow(&mut r, 50), "never shrinks by growing");
        assert_eq!(b.used(), 80);
        assert!(!b.grow(&mut r, 101));
        r.as_mut().expect("held").shrink(10);
        assert_eq!(b.used(), 10);
        drop(r);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn waiters_are_woken_oldest_first_as_far_as_the_free_bytes_go() {
        let b = leaked(100);
        let mut all = None;
        assert!(b.grow(&mut all, 100));
        let order = Arc::new(Mutex::new(Vec::new()));
        for (i, bytes) in [(1, 50), (2, 40), (3, 30)] {
            let o = order.clone();
            b.wait(bytes, Box::new(move || o.lock().expect("lock").push(i)));
        }
        all.as_mut().expect("held").shrink(10);
        assert_eq!(*order.lock().expect("lock"), vec![1, 2], "90 free: 50 + 40");
        // The woken take their bytes; nothing is left for the third.
        let (mut one, mut two) = (None, None);
        assert!(b.grow(&mut one, 50) && b.grow(&mut two, 40));
        b.wake();
        assert_eq!(
            *order.lock().expect("lock"),
            vec![1, 2],
            "none free, 30 waits"
        );
        drop(one);
        assert_eq!(*order.lock().expect("lock"), vec![1, 2, 3]);
    }

    #[test]
    fn a_waiter_larger_than_the_budget_is_woken_when_anything_is_free() {
        let b = leaked(100);
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        b.wait(
            500,
            Box::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }
}
