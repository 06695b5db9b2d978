//! The concurrency limit: at most `server.max_concurrency` requests hold a slot, at most
//! `server.max_queue` wait for one, first come first served.
//!
//! A released slot is handed directly to the oldest waiter (and its thread unparked), so a
//! release wakes exactly one thread and a newcomer can never overtake the queue. Waiting ends
//! with a slot, at the caller's deadline, or when the limiter is closed at shutdown (CONTRACT
//! §6: queued requests get `InstanceStopping`).
//!
//! Failure modes: [`Denied::Full`] (the queue is full: `TooManyRequests`), [`Denied::Timeout`],
//! [`Denied::Closed`]. A poisoned lock is recovered: the state is plain counters that every
//! critical section leaves consistent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::Instant;

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The queue is full.
    Full,
    /// The deadline passed while queued.
    Timeout,
    /// The limiter was closed (shutdown).
    Closed,
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const CLOSED: u8 = 2;

struct Waiter {
    thread: Thread,
    state: AtomicU8,
}

#[derive(Default)]
struct State {
    active: usize,
    queue: VecDeque<Arc<Waiter>>,
}

/// A FIFO counting semaphore with a bounded queue.
pub struct Limiter {
    /// 0 = unlimited.
    max: usize,
    max_queue: usize,
    closed: AtomicBool,
    state: Mutex<State>,
}

/// A held slot; dropping it hands the slot on.
pub struct Permit<'a> {
    limiter: Option<&'a Limiter>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.limiter {
            l.release();
        }
    }
}

impl Limiter {
    pub fn new(max: usize, max_queue: usize) -> Limiter {
        Limiter {
            max,
            max_queue,
            closed: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests waiting for a slot (`queued` of `GET /status` and the metrics).
    pub fn queued(&self) -> usize {
        if self.max == 0 {
            return 0;
        }
        self.lock().queue.len()
    }

    /// Takes a slot, waiting in line until `deadline` if none is free.
    pub fn acquire(&self, deadline: Instant) -> Result<Permit<'_>, Denied> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Denied::Closed);
        }
        if self.max == 0 {
            return Ok(Permit { limiter: None });
        }
        let me = {
            let mut st = self.lock();
            if st.queue.is_empty() && st.active < self.max {
                st.active += 1;
                return Ok(Permit {
                    limiter: Some(self),
                });
            }
            if st.queue.len() >= self.max_queue {
                return Err(Denied::Full);
            }
            let me = Arc::new(Waiter {
                thread: std::thread::current(),
                state: AtomicU8::new(WAITING),
            });
            st.queue.push_back(me.clone());
            me
        };
        loop {
            match me.state.load(Ordering::Acquire) {
                GRANTED => {
                    return Ok(Permit {
                        limiter: Some(self),
                    })
                }
                CLOSED => return Err(Denied::Closed),
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                let mut st = self.lock();
                // Decide under the lock: a grant may have raced the deadline.
                return match me.state.load(Ordering::Acquire) {
                    GRANTED => Ok(Permit {
                        limiter: Some(self),
                    }),
                    CLOSED => Err(Denied::Closed),
                    _ => {
                        st.queue.retain(|w| !Arc::ptr_eq(w, &me));
                        Err(Denied::Timeout)
                    }
                };
            }
            // Spurious wake-ups are fine: the state is checked again.
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Takes a slot only if one is free right now and nobody waits for one (a newcomer never
    /// overtakes the queue); `None` otherwise, also when closed. Never blocks beyond the lock:
    /// the event loop uses it to decide whether a request can take the fast path.
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if self.max == 0 {
            return Some(Permit { limiter: None });
        }
        let mut st = self.lock();
        if st.queue.is_empty() && st.active < self.max {
            st.active += 1;
            return Some(Permit {
                limiter: Some(self),
            });
        }
        None
    }

    /// Hands the slot to the oldest waiter, or frees it.
    fn release(&self) {
        let mut st = self.lock();
        match st.queue.pop_front() {
            // The slot passes on: `active` does not change.
            Some(next) => {
                next.state.store(GRANTED, Ordering::Release);
                drop(st);
                next.thread.unpark();
            }
            None => st.active = st.active.saturating_sub(1),
        }
    }

    /// Refuses every later request and sends every waiter away; does not block.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let waiters: Vec<_> = self.lock().queue.drain(..).collect();
        for w in waiters {
            w.state.store(CLOSED, Ordering::Release);
            w.thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn limits_queues_and_refuses() {
        let l = Arc::new(Limiter::new(1, 1));
        let p = l.acquire(far()).unwrap();
        let (tx, rx) = mpsc::channel();
        let l2 = l.clone();
        let waiter = std::thread::spawn(move || {
            let r = l2.acquire(far()).map(|_| ());
            tx.send(r).unwrap();
        });
        // Wait until the waiter is queued, then a third is refused.
        while l.queued() == 0 {
            std::thread::yield_now();
        }
        assert_eq!(l.acquire(far()).err(), Some(Denied::Full));
        drop(p);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(()));
        waiter.join().unwrap();
        // The waiter's permit was dropped: the slot is free again.
        drop(l.acquire(far()).unwrap());
    }

    #[test]
    fn fifo_order() {
        let l = Arc::new(Limiter::new(1, 10));
        let p = l.acquire(far()).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for i in 0..5 {
            let (l2, tx) = (l.clone(), tx.clone());
            threads.push(std::thread::spawn(move || {
                let _p = l2.acquire(far()).unwrap();
                tx.send(i).unwrap();
            }));
            while l.queued() <= i {
                std::thread::yield_now();
            }
        }
        drop(p);
        let order: Vec<_> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn timeout_and_close() {
        let l = Arc::new(Limiter::new(1, 10));
        let p = l.acquire(far()).unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(l.acquire(soon).err(), Some(Denied::Timeout));
        assert_eq!(l.queued(), 0);
        let l2 = l.clone();
        let waiter = std::thread::spawn(move || l2.acquire(far()).err());
        while l.queued() == 0 {
            std::thread::yield_now();
        }
        l.close();
        assert_eq!(waiter.join().unwrap(), Some(Denied::Closed));
        assert_eq!(l.acquire(far()).err(), Some(Denied::Closed));
        drop(p);
    }

    #[test]
    fn try_acquire_never_waits_nor_overtakes() {
        let l = Arc::new(Limiter::new(1, 10));
        let p = l.try_acquire().expect("a free slot");
        assert!(l.try_acquire().is_none(), "no slot left");
        let l2 = l.clone();
        let waiter = std::thread::spawn(move || l2.acquire(far()).map(|_| ()));
        while l.queued() == 0 {
            std::thread::yield_now();
        }
        drop(p);
        // The slot went to the waiter, not to a newcomer.
        assert_eq!(waiter.join().unwrap(), Ok(()));
        let again = l.try_acquire().expect("the waiter released it");
        drop(again);
        l.close();
        assert!(l.try_acquire().is_none(), "closed");
        assert!(Limiter::new(0, 0).try_acquire().is_some(), "unlimited");
    }

    #[test]
    fn unlimited() {
        let l = Limiter::new(0, 0);
        let permits: Vec<_> = (0..100).map(|_| l.acquire(far()).unwrap()).collect();
        assert_eq!(permits.len(), 100);
    }
}
