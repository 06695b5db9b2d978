//! Integration tests: the real binary on real processes, sockets and signals.

mod admin;
mod async_events;
mod async_handoff;
mod async_parity;
mod deploy;
mod destination_https;
mod docs;
mod dropin;
mod dropin_signals;
mod fleet;
mod h2c;
mod h2c_hostile;
mod hooks;
mod hostile;
mod init;
mod layout;
mod limits;
mod outcomes;
mod proxy;
mod redis;
mod redis_scripts;
mod redis_tls;
mod streaming;
mod util;
mod websocket;
mod websocket_peers;
