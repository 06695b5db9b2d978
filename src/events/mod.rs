//! Asynchronous invocations (docs/reference.md §10): durable events, the workers that run them,
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
//! - [`submission`]: what a submission's headers ask (task id, delay, qualifier).
//! - [`destination`]: `[async.on_success]` / `[async.on_failure]` deliveries.
//! - [`api`]: what the operator may ask of the events (the admin API's view).
//! - [`attempt`]: one attempt of an event through fc-init's own listener.
//! - [`handoff`]: the handoff of a synchronous request that asks `Prefer: respond-async`.
//! - [`signal`]: wake-ups between the async threads.
//! - [`time`]: wall-clock milliseconds and their RFC 3339 form.
//! - `tls` (the `tls` feature): `https://` destinations.

use crate::logging::Throttle;

pub mod api;
pub mod attempt;
pub mod backend;
pub mod destination;
pub mod error;
pub mod handoff;
pub mod model;
pub mod redis;
pub mod service;
pub mod signal;
pub mod store;
pub mod submission;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;

/// One line a second, process-wide, for the store's trouble (a full disk, Redis gone): every
/// worker and every Redis link meets the same outage at once, and one line says it.
pub static STORE_LOG: Throttle = Throttle::new();
