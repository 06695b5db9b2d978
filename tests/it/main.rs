//! Integration tests: the real binary on real processes, sockets and signals.

mod admin;
mod hooks;
mod init;
mod proxy;
mod util;
