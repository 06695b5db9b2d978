//! The concurrency limit: at most `server.max_concurrency` requests hold a slot, at most
//! `server.max_queue` wait for one, first come first served.
//!
//! Nobody blocks here: a request that finds no free slot gets a place in the queue
//! ([`Queued`], holding a [`Ticket`]), whose `wake` callback runs when the slot is handed to
//! it (or the limiter closes); the event loop that owns the request then collects the
//! [`Permit`] with [`Queued::take`]. A released slot goes directly to the oldest ticket, so a
//! newcomer can never overtake the queue. A request that stops waiting (its deadline, its
//! client gone, its loop panicking) drops its place, which leaves the queue and frees a slot
//! granted in the meantime: no slot is ever lost. At shutdown
//! [`Limiter::close`] sends every waiter away (docs/reference.md §8: queued requests get
//! `InstanceStopping`).
//!
//! Failure modes: [`Denied::Full`] (the queue is full: `TooManyRequests`), [`Denied::Closed`].
//! A poisoned lock is recovered: the state is plain counters that every critical section
//! leaves consistent. `wake` runs with no lock held, on whichever thread released the slot; it
//! must not block.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The queue is full.
    Full,
    /// The limiter was closed (shutdown).
    Closed,
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const CLOSED: u8 = 2;
/// Granted, and the permit collected (or released by `cancel`).
const TAKEN: u8 = 3;

/// A place in the queue.
pub struct Ticket {
    state: AtomicU8,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Ticket {
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Arc<Ticket> {
        Arc::new(Ticket {
            state: AtomicU8::new(WAITING),
            wake: Box::new(wake),
        })
    }
}

#[derive(Default)]
struct State {
    active: usize,
    queue: VecDeque<Arc<Ticket>>,
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

/// What [`Limiter::acquire`] gave.
pub enum Admit<'a> {
    /// A slot at once.
    Now(Permit<'a>),
    /// In the queue: the ticket's `wake` runs when a slot is handed over.
    Queued(Queued<'a>),
}

/// A place in the queue; dropping it gives the place up (and a slot granted to it).
pub struct Queued<'a> {
    limiter: &'a Limiter,
    ticket: Arc<Ticket>,
}

impl<'a> Queued<'a> {
    /// The slot, once the ticket has been woken: `None` while it still waits.
    pub fn take(&self) -> Option<Result<Permit<'a>, Denied>> {
        match self.ticket.state.compare_exchange(
            GRANTED,
            TAKEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Some(Ok(self.limiter.permit())),
            Err(CLOSED) => Some(Err(Denied::Closed)),
            Err(_) => None,
        }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.limiter.cancel(&self.ticket);
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

    fn permit(&self) -> Permit<'_> {
        Permit {
            limiter: Some(self),
        }
    }

    /// Slots held now (for the fuzz target's end-of-run check).
    #[cfg(any(test, feature = "exchange-seam"))]
    pub fn active(&self) -> usize {
        self.lock().active
    }

    /// Requests waiting for a slot (`queued` of `GET /status` and the metrics).
    pub fn queued(&self) -> usize {
        if self.max == 0 {
            return 0;
        }
        self.lock().queue.len()
    }

    /// Takes a free slot, or queues `ticket()` for the next one.
    pub fn acquire(&self, ticket: impl FnOnce() -> Arc<Ticket>) -> Result<Admit<'_>, Denied> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Denied::Closed);
        }
        if self.max == 0 {
            return Ok(Admit::Now(Permit { limiter: None }));
        }
        let mut st = self.lock();
        if st.queue.is_empty() && st.active < self.max {
            st.active += 1;
            return Ok(Admit::Now(self.permit()));
        }
        if st.queue.len() >= self.max_queue {
            return Err(Denied::Full);
        }
        let t = ticket();
        st.queue.push_back(t.clone());
        Ok(Admit::Queued(Queued {
            limiter: self,
            ticket: t,
        }))
    }

    /// A free slot now, or `None`, never a place in the queue: for an h2c stream, which a
    /// full limit refuses (`REFUSED_STREAM`, which clients retry) rather than queues. A
    /// request already waiting in the queue is not overtaken, and a closed limiter gives none.
    pub fn try_now(&self) -> Option<Permit<'_>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if self.max == 0 {
            return Some(Permit { limiter: None });
        }
        let mut st = self.lock();
        if st.queue.is_empty() && st.active < self.max {
            st.active += 1;
            return Some(self.permit());
        }
        None
    }

    /// Gives up a ticket: it leaves the queue, and a slot granted to it meanwhile is released.
    fn cancel(&self, ticket: &Arc<Ticket>) {
        let granted = {
            let mut st = self.lock();
            // Decided under the lock: a grant may race the cancel.
            st.queue.retain(|t| !Arc::ptr_eq(t, ticket));
            ticket
                .state
                .compare_exchange(GRANTED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        };
        if granted {
            drop(self.permit());
        }
    }

    /// Hands the slot to the oldest waiter, or frees it.
    fn release(&self) {
        let mut st = self.lock();
        match st.queue.pop_front() {
            // The slot passes on: `active` does not change.
            Some(next) => {
                next.state.store(GRANTED, Ordering::Release);
                drop(st);
                (next.wake)();
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
            (w.wake)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A ticket that counts its wake-ups.
    fn counted() -> (Arc<Ticket>, Arc<AtomicUsize>) {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        (
            Ticket::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
            woken,
        )
    }

    fn queued(l: &Limiter) -> (Queued<'_>, Arc<AtomicUsize>) {
        let (t, woken) = counted();
        match l.acquire(|| t) {
            Ok(Admit::Queued(q)) => (q, woken),
            _ => panic!("expected to be queued"),
        }
    }

    fn now(l: &Limiter) -> Permit<'_> {
        match l.acquire(|| counted().0) {
            Ok(Admit::Now(p)) => p,
            _ => panic!("expected a slot"),
        }
    }

    #[test]
    fn limits_queues_and_refuses() {
        let l = Limiter::new(1, 1);
        let p = now(&l);
        let (t, woken) = queued(&l);
        assert_eq!(l.queued(), 1);
        assert!(matches!(l.acquire(|| counted().0), Err(Denied::Full)));
        assert!(t.take().is_none(), "still waiting");
        drop(p);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        let p2 = t.take().expect("granted").expect("a slot");
        assert!(t.take().is_none(), "taken once");
        drop(t);
        drop(p2);
        drop(now(&l));
    }

    #[test]
    fn fifo_order() {
        let l = Limiter::new(1, 10);
        let p = now(&l);
        let tickets: Vec<_> = (0..5).map(|_| queued(&l)).collect();
        drop(p);
        for (i, (t, woken)) in tickets.iter().enumerate() {
            assert_eq!(woken.load(Ordering::SeqCst), 1, "ticket {i} woken");
            for (later, w) in &tickets[i + 1..] {
                assert_eq!(w.load(Ordering::SeqCst), 0);
                assert!(later.take().is_none());
            }
            drop(t.take().unwrap().unwrap());
        }
    }

    #[test]
    fn a_place_given_up_never_loses_a_slot() {
        let l = Limiter::new(1, 10);
        let p = now(&l);
        let (gone, _) = queued(&l);
        drop(gone);
        assert_eq!(l.queued(), 0);
        // Granted and given up before it was taken (its client gone, its loop panicking):
        // the slot is freed, not lost.
        let (late, _) = queued(&l);
        drop(p);
        drop(late);
        let p = now(&l);
        let (t, woken) = queued(&l);
        l.close();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(matches!(t.take(), Some(Err(Denied::Closed))));
        assert!(matches!(l.acquire(|| counted().0), Err(Denied::Closed)));
        drop(p);
    }

    #[test]
    fn try_now_takes_a_free_slot_and_never_queues_or_overtakes() {
        let l = Limiter::new(1, 10);
        let p = l.try_now().expect("a free slot");
        assert!(l.try_now().is_none(), "full: refused, not queued");
        assert_eq!(l.queued(), 0);
        let (t, _) = queued(&l);
        drop(p);
        // The slot went to the waiter: a newcomer does not overtake it.
        assert!(l.try_now().is_none());
        drop(t.take().unwrap().unwrap());
        drop(t);
        let p = l.try_now().expect("free again");
        drop(p);
        l.close();
        assert!(l.try_now().is_none(), "closed");
        assert!(Limiter::new(0, 0).try_now().is_some(), "unlimited");
    }

    #[test]
    fn unlimited() {
        let l = Limiter::new(0, 0);
        let permits: Vec<_> = (0..100).map(|_| now(&l)).collect();
        assert_eq!(permits.len(), 100);
        assert_eq!(l.queued(), 0);
    }
}
