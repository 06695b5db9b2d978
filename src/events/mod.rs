//! Asynchronous invocations (CONTRACT section 7): the durable event store and its JSON.
//!
//! - [`store`]: the SQLite-backed store — group-committed submissions, the workers' claim /
//!   finish / retry transitions, the operator's list / get / abort, retention.
//! - [`service`]: submissions, workers, terminate and retention at run time.
//! - [`time`]: wall-clock milliseconds and their RFC 3339 form.

pub mod service;
pub mod store;
pub mod time;
