//! Asynchronous invocations (CONTRACT section 7): durable events, the workers that run them,
//! terminate, retention.
//!
//! - [`model`]: the event model both stores share, and its JSON.
//! - [`error`]: how a store fails.
//! - [`store`]: the embedded SQLite store of one instance — group-committed submissions, the
//!   workers' claim / finish / retry transitions, the operator's list / get / abort,
//!   retention.
//! - [`service`]: submissions, workers, terminate and retention at run time.
//! - [`signal`]: wake-ups between the async threads.
//! - [`time`]: wall-clock milliseconds and their RFC 3339 form.

pub mod error;
pub mod model;
pub mod service;
pub mod signal;
pub mod store;
pub mod time;
