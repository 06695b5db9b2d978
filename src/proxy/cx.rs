//! What an event loop has besides its client connections: the context every step of a
//! connection is driven with ([`Cx`]: the shared [`Proxy`], the function connections and
//! their pool, the FC lines not yet written, the requests waiting for them or for a status
//! change, the loop's clock and scratch buffers), and how other threads reach the loop
//! ([`Handle`]: a mailbox and a waker).

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::Token;

use crate::events::store::{StoreError, Submitted};
use crate::http::{Limits, RequestHead};
use crate::supervisor::LifecycleAnswer;

use super::errors::ConnectError;
use super::exchange::Exchange;
use super::io::{Connector, Transport};
use super::lines::Lines;
use super::shared::{OpenSlot, Proxy, BUF, MAX_IDLE};
use super::slab::{token, Slab, KIND_FN};

/// A function connection owned by a loop.
pub(super) struct FnSlot {
    pub stream: Box<dyn Transport>,
    /// The instance it was opened to.
    pub instance: u64,
    /// The client whose exchange uses it; `None` while pooled.
    pub owner: Option<Token>,
    pub rd: bool,
    pub wr: bool,
    /// The function's end of input was signalled.
    pub hup: bool,
    /// Exchanges it served before (0: a fresh connection).
    pub served: u32,
}

/// What other threads hand a loop.
pub(super) enum Mail {
    /// A new client connection from the accept thread.
    Connection(TcpStream, OpenSlot),
    /// The store's result for the asynchronous submission of this client.
    Stored(Token, Result<Submitted, StoreError>),
    /// The supervisor's answer to this client's lifecycle call.
    Lifecycle(Token, LifecycleAnswer),
    /// The limiter handed this client's request a slot (or closed).
    Granted(Token),
    /// Bytes of the body budget came back: this client may buffer its body now.
    Budget(Token),
    /// The async service's word on this client's handoff.
    Handoff(Token, crate::events::handoff::Handed),
    /// fc-init is about to exit: say when every answer decided on has been written.
    Settle(Arc<Settle>),
}

/// The loops' last act before fc-init exits ([`Loops::settle`]): each loop counts itself out
/// once none of its connections has an answer left to write. Without it the process could
/// exit between deciding an answer (`InitializationError` before exit 3, `InstanceStopping`,
/// `UnhandledInvocationError` for the requests of a function that exited) and writing it,
/// and the client would see its connection closed with no answer at all.
pub(super) struct Settle {
    pub(super) left: Mutex<usize>,
    pub(super) done: Condvar,
}

impl Settle {
    pub(super) fn count_out(&self) {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.done.notify_all();
        }
    }
}

/// What other threads share with one loop.
pub(super) struct Handle {
    pub(super) mail: Mutex<Vec<Mail>>,
    /// Wakes the loop from its poll (a `mio::Waker`; a recorder in tests).
    pub(super) waker: Box<dyn Fn() -> io::Result<()> + Send + Sync>,
    /// The instance's status changed since the loop last looked.
    pub(super) changed: AtomicBool,
    /// Generations of tokens: never repeated, across restarts of the loop too.
    pub(super) generations: AtomicU32,
}

impl Handle {
    /// A loop's handle, woken by `waker`.
    pub(super) fn new(waker: Box<dyn Fn() -> io::Result<()> + Send + Sync>) -> Handle {
        Handle {
            mail: Mutex::new(Vec::new()),
            waker,
            changed: AtomicBool::new(false),
            generations: AtomicU32::new(0),
        }
    }

    /// What other threads handed over since the last look, and whether the instance's status
    /// changed meanwhile.
    pub(super) fn take_mail(&self) -> (Vec<Mail>, bool) {
        let mail = std::mem::take(&mut *self.mail.lock().unwrap_or_else(|e| e.into_inner()));
        (mail, self.changed.swap(false, Ordering::AcqRel))
    }

    /// Queues `mail` and wakes the loop; never blocks beyond a short lock.
    pub(super) fn push(&self, mail: Mail) {
        let first = {
            let mut queue = self.mail.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(mail);
            queue.len() == 1
        };
        // One wake-up per batch: the loop empties the whole queue when it wakes, and a push
        // that finds the queue non-empty is sure to be seen by that emptying.
        if first {
            self.wake();
        }
    }

    pub(super) fn status_changed(&self) {
        if !self.changed.swap(true, Ordering::AcqRel) {
            self.wake();
        }
    }

    pub(super) fn wake(&self) {
        if let Err(e) = (self.waker)() {
            log::error!("waking an event loop: {e}");
        }
    }
}

/// Everything a loop has besides its client connections: what driving one client needs.
pub(super) struct Cx {
    pub p: &'static Proxy,
    pub handle: Arc<Handle>,
    /// The loop's clock: set once per batch of events (a test moves it by hand).
    pub now: Instant,
    /// The nearest deadline of any connection (see [`Cx::note_deadline`]).
    pub(super) next_scan: Instant,
    /// Clients whose request waits for a change of the instance's status.
    pub status_waiters: Vec<Token>,
    /// The function connections.
    pub pool: FnPool,
    /// The FC Invoke lines not yet on stdout, and the requests that wait for theirs.
    pub lines: Lines,
    /// Buffers every connection of the loop uses in turn.
    pub bufs: Scratch,
}

/// A loop's function connections: each in use by one exchange, or pooled.
pub(super) struct FnPool {
    /// Makes function connections (registered with this loop's poll).
    pub(super) connector: Box<dyn Connector>,
    pub(super) slots: Slab<FnSlot>,
    /// Pooled connections (indices in `slots`), the warmest last.
    pub(super) idle: Vec<usize>,
}

impl FnPool {
    /// The function connection `f` an exchange owns.
    pub(super) fn slot(&mut self, f: usize) -> &mut FnSlot {
        // Proven: an exchange's connection leaves the slab only through `Cx::release_fn`,
        // the resend's removal or `Cx::close_fns_of`, each of which drops the exchange's index.
        self.slots
            .get(f)
            .expect("an exchange's function connection is live until it gives it back")
    }
}

/// Buffers a loop's connections use in turn, and recycled exchanges.
pub(super) struct Scratch {
    /// Every read lands here first.
    pub(super) read: Box<[u8]>,
    /// For answers built before they are appended to a client's output.
    pub(super) answer: Vec<u8>,
    /// The head being parsed (swapped into an exchange when one starts).
    pub(super) head: RequestHead,
    #[allow(clippy::vec_box)]
    pub(super) spare: Vec<Box<Exchange>>,
}

/// What a function's answer head may be: fc-init's own limits, not the client-facing ones.
pub(super) const RESPONSE_LIMITS: Limits = Limits {
    max_header_bytes: RESPONSE_HEAD,
    max_headers: crate::http::MAX_HEADERS,
    require_host: false,
};

impl Cx {
    /// A connection's deadline is now `deadline`: the loop looks at its connections again by
    /// then.
    pub(super) fn note_deadline(&mut self, deadline: Instant) {
        if deadline < self.next_scan {
            self.next_scan = deadline;
        }
    }

    /// A recycled exchange, or a new one.
    pub(super) fn exchange(&mut self) -> Box<Exchange> {
        self.bufs.spare.pop().unwrap_or_else(Exchange::new)
    }

    pub(super) fn recycle(&mut self, mut ex: Box<Exchange>) {
        // A handoff's client is done with: its attempt, if still running, goes on detached.
        ex.handoff = None;
        if self.bufs.spare.len() < 16 {
            ex.shed();
            self.bufs.spare.push(ex);
        }
    }

    /// A pooled connection to `instance`, or a new one (non-blocking) owned by `owner`.
    pub(super) fn take_fn(&mut self, instance: u64, owner: Token) -> Result<usize, ConnectError> {
        while let Some(f) = self.pool.idle.pop() {
            let Some(slot) = self.pool.slots.get(f) else {
                continue;
            };
            if slot.instance == instance {
                slot.owner = Some(owner);
                return Ok(f);
            }
            // A new instance: every connection to an older one is dead.
            self.pool.slots.remove(f);
            self.purge_idle();
        }
        self.connect_fn(instance, owner)
    }

    /// A new function connection (non-blocking) to `instance`, owned by `owner`, never a pooled
    /// one: an h2c relay speaks HTTP/2 on it from its first byte.
    pub(super) fn connect_fn(
        &mut self,
        instance: u64,
        owner: Token,
    ) -> Result<usize, ConnectError> {
        let gen = self.handle.generations.fetch_add(1, Ordering::Relaxed);
        let f = self.pool.slots.next_index();
        let stream = self
            .pool
            .connector
            .connect(token(KIND_FN, f, gen))
            .map_err(ConnectError::of)?;
        let f = self.pool.slots.insert(
            FnSlot {
                stream,
                instance,
                owner: Some(owner),
                rd: false,
                hup: false,
                served: 0,
                // A fresh connection takes the request at once (a TCP one still connecting
                // says EAGAIN, and its writability event follows).
                wr: true,
            },
            gen,
        );
        Ok(f)
    }

    /// Gives back a function connection after a clean exchange (pooled), or closes it.
    pub(super) fn release_fn(&mut self, f: usize, reusable: bool) {
        if reusable && self.pool.idle.len() < MAX_IDLE {
            if let Some(slot) = self.pool.slots.get(f) {
                slot.owner = None;
                slot.served += 1;
                self.pool.idle.push(f);
                return;
            }
        }
        self.pool.slots.remove(f);
    }

    /// Closes the function connections client `owner`'s exchange uses (after a panic, where
    /// its phase stands is unknown).
    pub(super) fn close_fns_of(&mut self, owner: Token) {
        for f in self.pool.slots.indices() {
            if self
                .pool
                .slots
                .get(f)
                .is_some_and(|s| s.owner == Some(owner))
            {
                self.pool.slots.remove(f);
            }
        }
    }

    /// Closes every pooled function connection (the instance they reach is most likely dead).
    pub(super) fn purge_idle(&mut self) {
        for f in std::mem::take(&mut self.pool.idle) {
            self.pool.slots.remove(f);
        }
    }
}

impl Cx {
    /// A loop's context, its function connections made by `connector`.
    pub(super) fn new(
        p: &'static Proxy,
        connector: Box<dyn Connector>,
        handle: Arc<Handle>,
        now: Instant,
    ) -> Cx {
        Cx {
            p,
            handle,
            now,
            next_scan: now + Duration::from_secs(3600),
            status_waiters: Vec::new(),
            pool: FnPool {
                connector,
                slots: Slab::new(),
                idle: Vec::new(),
            },
            lines: Lines::default(),
            bufs: Scratch {
                read: vec![0; BUF].into_boxed_slice(),
                answer: Vec::new(),
                head: RequestHead::default(),
                spare: Vec::new(),
            },
        }
    }
}

/// Longest head accepted from the function.
pub(super) const RESPONSE_HEAD: usize = 16 * 1024;
