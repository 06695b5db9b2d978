//! Small system-call helpers shared by every module: the one place where an interrupted call
//! (`EINTR`) is retried.
//!
//! fc-init blocks its signals and reads them from a signalfd, so few calls are ever
//! interrupted; but a debugger, `SIGSTOP`/`SIGCONT`, or a signal that arrives before the mask is
//! set can still interrupt a blocking call, and such a call must simply be made again. Every
//! loop that would otherwise spell that out calls [`retry`].

use std::io;

/// An error that may say "interrupted by a signal".
pub trait Interrupted {
    fn is_interrupted(&self) -> bool;
}

impl Interrupted for io::Error {
    fn is_interrupted(&self) -> bool {
        self.kind() == io::ErrorKind::Interrupted
    }
}

impl Interrupted for nix::errno::Errno {
    fn is_interrupted(&self) -> bool {
        *self == nix::errno::Errno::EINTR
    }
}

/// Calls `f` again for as long as it fails with `EINTR`.
pub fn retry<T, E: Interrupted>(mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    loop {
        match f() {
            Err(e) if e.is_interrupted() => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn interrupted_calls_are_made_again_and_other_results_returned() {
        let mut calls = 0;
        let r: Result<u8, Errno> = retry(|| {
            calls += 1;
            if calls < 3 {
                Err(Errno::EINTR)
            } else {
                Ok(7)
            }
        });
        assert_eq!((r, calls), (Ok(7), 3));
        let r: io::Result<()> = retry(|| Err(io::Error::from(io::ErrorKind::WouldBlock)));
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
