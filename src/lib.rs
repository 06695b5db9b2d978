//! fc-init: a small, trustworthy PID 1 and function supervisor with Function-Compute-style
//! lifecycle hooks.
//!
//! Layout, one module per concern:
//! - [`admin`]: the admin API on a private socket, and `fc-init ctl`.
//! - [`cli`]: arguments, configuration loading, exit statuses (the only place they are decided).
//! - [`config`]: typed configuration from file, environment and command line.
//! - [`supervisor`]: the one thread that owns children. Its decisions — lifecycle hooks,
//!   restarts, terminate, shutdown — are a pure state machine ([`supervisor::core`]); around it
//!   a thin shell: spawning ([`supervisor::spawn`]), signals ([`supervisor::signals`]),
//!   reaping ([`supervisor::reaper`]), hook calls ([`supervisor::hooks`]), where a function that
//!   does not accept listens instead ([`supervisor::listening`]).
//! - [`state`]: the instance state the supervisor publishes to the rest, and its watchers.
//! - [`runtime_dir`]: the private runtime directory (0700, ours, or refused).
//! - [`events`]: asynchronous invocations: the durable store, workers, terminate.
//! - [`exit`]: fc-init's exit statuses, one table for `fc-init` and `fc-init ctl`.
//! - [`h2`]: h2c (HTTP/2 over cleartext) relaying as a pure core: frames, HPACK, one
//!   connection's streams as invocations.
//! - [`http`]: strict HTTP/1.1 parsing, framing and the hook client.
//! - [`proxy`]: the listener and the forwarding of invocations to the function.
//! - [`metrics`]: request counters and the Prometheus text.
//! - [`notify`]: systemd's `NOTIFY_SOCKET` readiness protocol.
//! - [`logging`]: diagnostics on stderr (`FC_INIT_LOG`).
//! - [`sys`]: system-call helpers (the one `EINTR` retry).

pub mod admin;
pub mod cli;
pub mod config;
pub mod events;
pub mod exit;
pub mod h2;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod proxy;
pub mod runtime_dir;
pub mod state;
pub mod supervisor;
pub mod sys;
#[cfg(test)]
mod test_support;
