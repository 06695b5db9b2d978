//! Invocation traffic: the listener and the forwarding of requests to the function
//! (docs/reference.md §4, §6, §7, §8).
//!
//! One path for every request. One accept thread ([`listener`]) hands each client connection
//! to one of a few event loops (one per core, [`event_loop`]), which own it until it closes:
//! [`conn`] reads its requests (strict head parsing in `crate::http`, the body buffered before
//! a slot is taken, within the shared [`budget`]), [`admission`] admits each one (the
//! concurrency limit and its FIFO queue, [`limiter`]; the wait for an initialized instance,
//! woken by the supervisor's `Notice::Changed`), and [`forward`] relays it to the function and
//! the answer back, both directions at once, over pooled non-blocking function connections;
//! WebSocket-style upgrades are relayed byte for byte. Asynchronous submissions go to the
//! store ([`submit`]) and FC's lifecycle calls to the supervisor, both answered when their
//! result comes back to the loop; so is a handoff (`Prefer: respond-async, wait=N`,
//! [`handoff`]), which the async service stores and runs, as an event's attempt, on a thread
//! of its own (the part that outlives its client) while the client waits in the loop. Other
//! threads remain only for hooks and the store: no other request waits on a thread of its
//! own. What a request is comes from one pure rule ([`kind`]); every way it can fail ends in
//! one of fc-init's own answers ([`errors`]) or, once the function's answer has started, in
//! closing the client connection ([`finish`]). A connection that opens with the HTTP/2
//! preface becomes an h2c relay ([`h2c`], docs/reference.md §14): its phase owns the relay,
//! with its own function connection and its streams, each an invocation.
//!
//! A connection's state is one value, in hyper's shape: its [`client::Phase`], each variant
//! owning what only that phase needs (the admission's wait and slot, what admission gave —
//! in-flight count, slot, deadline — and the function connection's `Wire` with its
//! `Writing` and `Reading`), so that no request can be forwarded without its slot or wait
//! for a slot while holding one; the request itself ([`exchange::Exchange`]: its id, kind,
//! body and outcome) across every phase; and its I/O ([`client::Io`]). Each step of a phase
//! returns what happened ([`client::Step`]: progress, wait, the next phase, the answer
//! complete, a failure, a close), and [`conn`] alone acts on it: no step changes its
//! caller's phase.
//!
//! The rooms, lowest first (each imports only rooms above it in this list): [`io`] (the
//! streams of both sides behind a trait: the seam the exchange tests drive), [`slab`],
//! [`kind`], [`limiter`], [`lines`], [`budget`], [`errors`], [`shared`] (the one `Proxy` value and its
//! guards), [`exchange`] (one request, and the phases' own data), [`cx`] (a loop's context
//! and mailbox), [`client`] (a client connection's phase, I/O and step results), [`finish`],
//! [`admission`], [`forward`], [`handoff`], [`h2c`] (its data, `h2c::relay`, comes before
//! [`client`]), [`conn`], [`event_loop`], [`listener`].
//!
//! Shutdown: the supervisor's `Notice::Stopping` (a `state::Watcher`) stops the accept loop,
//! sends queued requests away (`InstanceStopping`) and makes later requests on open
//! connections fail the same way; requests already forwarded continue, and the last one to
//! finish tells the supervisor (`Event::Drained`). `Shared::in_flight` counts exactly the
//! requests that hold a slot and have been let through to the function (an upgraded
//! connection for its whole life).
//!
//! Resources: [`fds`] raises the descriptor limit and fits `max_connections` below it; memory
//! per connection is bounded by its buffers (see [`shared::BUF`]) and buffered bodies by
//! `server.body_buffer_total`; a panic while handling a connection costs that connection
//! only (guards restore the counters; `fc_init_internal_errors_total`).

mod admission;
mod budget;
mod client;
mod conn;
mod cx;
mod errors;
mod event_loop;
mod exchange;
#[cfg(test)]
mod exchange_tests;
mod fds;
mod finish;
mod forward;
mod h2c;
mod handoff;
mod io;
mod kind;
mod limiter;
mod lines;
mod listener;
mod shared;
#[cfg(any(test, feature = "exchange-seam"))]
mod sim;
mod slab;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::events::service::AsyncService;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::supervisor::Events;

pub use errors::ProxyError;
use shared::{Proxy, Tell};
#[cfg(feature = "exchange-seam")]
pub use sim::fuzz_exchange;

/// What the traffic side is wired to besides the configuration and the lifecycle.
pub struct Wiring {
    pub shared: Arc<Shared>,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    pub asynchronous: Option<Arc<AsyncService>>,
}

/// How long fc-init's exit waits for the answers the loops have decided on to be written.
const SETTLE: Duration = Duration::from_millis(500);

/// The traffic side, serving on its background threads.
pub struct Traffic {
    addr: std::net::SocketAddr,
    loops: Arc<event_loop::Loops>,
}

impl Traffic {
    /// The address the listener is bound to.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// fc-init's last step before it exits (the listener has stopped accepting by then): waits
    /// until every answer fc-init has decided on is written, at most half a second, so a
    /// request answered in the last moment (`InitializationError` before exit 3,
    /// `InstanceStopping`, the requests of a function that exited) still gets its answer.
    pub fn settle(&self) {
        if !self.loops.settle(SETTLE) {
            log::debug!("exiting with answers still unwritten after {SETTLE:?}");
        }
    }
}

/// Binds `server.listen` and starts serving on background threads (`None` when fc-init does
/// not serve).
pub fn start(cfg: Arc<Config>, w: Wiring) -> Result<Option<Traffic>, ProxyError> {
    let Some(addr) = cfg.server.listen else {
        return Ok(None);
    };
    let listener = listener::bind(addr)?;
    shared::large_buffers_from_mmap();
    let bound = listener.local_addr().unwrap_or(addr);
    // One per process, alive until it exits: a `'static` borrow lets a request's guards
    // (`Permit`, `InFlight`) live in the loops' connections and in the limiter's tickets.
    let events = w.events;
    let proxy: &'static Proxy = Box::leak(Box::new(Proxy::new(
        cfg,
        w.shared,
        Tell(Box::new(move |e| events.send(e))),
        w.metrics.clone(),
        w.asynchronous,
    )));
    w.metrics.set_queued_source(move || proxy.limiter.queued());
    let loops = Arc::new(event_loop::Loops::start(proxy).map_err(ProxyError::Thread)?);
    listener::spawn(proxy, listener, loops.clone())?;
    Ok(Some(Traffic { addr: bound, loops }))
}
