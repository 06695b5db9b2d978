//! Integration tests: the real binary on real processes, sockets and signals.

mod admin;
mod async_events;
mod deploy;
mod docs;
mod dropin;
mod fleet;
mod hooks;
mod hostile;
mod init;
mod proxy;
mod redis;
mod redis_tls;
mod streaming;
mod util;
mod websocket;
