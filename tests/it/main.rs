//! Integration tests: the real binary on real processes, sockets and signals.

mod hooks;
mod init;
mod proxy;
mod util;
