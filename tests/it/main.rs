//! Integration tests: the real binary on real processes, sockets and signals.

mod init;
mod util;
