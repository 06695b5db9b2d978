//! Signal intake: every asynchronous signal is blocked in fc-init and read from a `signalfd`.
//!
//! Rules this module relies on:
//! - `block_all` must run before any thread or child exists: threads inherit the mask, so no
//!   signal is ever delivered to a handler on some random thread. That leaves no handler code at
//!   all (nothing async-signal-unsafe can happen in one) and turns signals into readable events.
//! - Standard signals coalesce: two SIGCHLDs may be read as one, so the reaper drains `waitpid`
//!   until nothing is left instead of reaping once per SIGCHLD.
//! - The function must not inherit this mask: `spawn` clears the mask and resets every
//!   disposition before `exec`.
//!
//! Synchronous signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT) stay unblocked:
//! they report a fault in fc-init itself and blocking them would only hide it. SIGPIPE stays
//! ignored (the Rust runtime ignores it) so a write to a closed socket is an `EPIPE` error.
//! SIGTTIN and SIGTTOU are ignored so fc-init is never stopped by its terminal.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Signals fc-init never blocks: faults in its own code, and SIGPIPE (ignored instead).
const UNBLOCKED: &[Signal] = &[
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGABRT,
    Signal::SIGPIPE,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

/// What fc-init does with a signal it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// SIGCHLD: reap.
    Reap,
    /// SIGTERM, SIGINT: start (or, the second time, hurry) the shutdown.
    Shutdown,
    /// Every other catchable signal: pass it on to the function.
    Forward,
}

/// Classifies a signal number read from the signalfd.
pub fn disposition(signo: i32) -> Disposition {
    match Signal::try_from(signo) {
        Ok(Signal::SIGCHLD) => Disposition::Reap,
        Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => Disposition::Shutdown,
        // Real-time signals have no `Signal` variant; they are forwarded like the rest.
        _ => Disposition::Forward,
    }
}

/// The blocked signals, readable as events.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks every asynchronous signal in the calling thread (and so in every thread it starts
    /// afterwards) and opens a non-blocking signalfd for them.
    pub fn block_all() -> nix::Result<Signals> {
        let mut mask = SigSet::all();
        for sig in UNBLOCKED {
            mask.remove(*sig);
        }
        for sig in [Signal::SIGTTIN, Signal::SIGTTOU] {
            // SAFETY: installing SIG_IGN runs no code of ours in signal context.
            unsafe {
                sigaction(
                    sig,
                    &SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty()),
                )?;
            }
        }
        mask.thread_set_mask()?;
        // Paranoia against a parent that left these blocked: a fault must not be silently masked.
        let mut unblock = SigSet::empty();
        for sig in UNBLOCKED {
            unblock.add(*sig);
        }
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&unblock), None)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    /// Reads one pending signal number, or `None` when none is pending.
    pub fn read(&self) -> nix::Result<Option<i32>> {
        let info = crate::sys::retry(|| self.fd.read_signal())?;
        Ok(info.map(|info| info.ssi_signo as i32))
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Human name of a signal number, for logs ("SIGTERM", "SIGRTMIN+3").
pub fn name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(sig) => sig.as_str().to_owned(),
        Err(_) if signo >= libc::SIGRTMIN() => format!("SIGRTMIN+{}", signo - libc::SIGRTMIN()),
        Err(_) => format!("signal {signo}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_signals_are_not_forwarded() {
        assert_eq!(disposition(libc::SIGTERM), Disposition::Shutdown);
        assert_eq!(disposition(libc::SIGINT), Disposition::Shutdown);
        assert_eq!(disposition(libc::SIGCHLD), Disposition::Reap);
        for sig in [
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
            libc::SIGCONT,
        ] {
            assert_eq!(disposition(sig), Disposition::Forward, "{}", name(sig));
        }
        assert_eq!(disposition(libc::SIGRTMIN() + 2), Disposition::Forward);
    }

    #[test]
    fn names() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
    }
}
