//! [`Timed`]: a socket wrapper that honours read and write deadlines without a `setsockopt`
//! before every syscall.
//!
//! [`Buffered`](crate::http::Buffered) bounds each syscall by setting `SO_RCVTIMEO` /
//! `SO_SNDTIMEO` to the time left before its deadline, which costs one extra syscall per read
//! and per write: on a keep-alive connection doing small requests that is a third of all
//! syscalls. `Timed` implements [`Timeouts`] by *recording* the wanted expiry instead, and keeps
//! the socket's own timeout at a coarse `tick`, lowering it only when the time left is shorter
//! than what is armed (near a deadline) and raising it back when it has become much shorter
//! than needed. A syscall cut early by the coarse timeout is simply retried until the recorded
//! expiry has really passed; one that would outlast the expiry cannot happen, because the armed
//! value is never longer than the time left (plus [`SLACK`]).
//!
//! Failure modes: the recorded expiry passing is `io::ErrorKind::TimedOut`; `EINTR` is retried
//! here; every other error is the socket's own.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::http::Timeouts;

/// How far past its expiry a blocked syscall may run: re-arming the socket for less than this
/// would cost more than it saves.
pub const SLACK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// When the current operation must give up; `None` = no bound.
    want: Option<Instant>,
    /// The timeout currently set on the socket; `None` = blocks forever (never set yet).
    armed: Option<Duration>,
}

/// A stream with lazily applied read and write deadlines.
#[derive(Debug)]
pub struct Timed<S> {
    inner: S,
    tick: Duration,
    read: Cell<Slot>,
    write: Cell<Slot>,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
}

impl<S> Timed<S> {
    /// Wraps `inner`; `tick` is the longest timeout ever set on the socket, i.e. how often a
    /// syscall with a far (or no) deadline wakes up to check it.
    pub fn new(inner: S, tick: Duration) -> Timed<S> {
        Timed {
            inner,
            tick: tick.max(Duration::from_millis(10)),
            read: Cell::default(),
            write: Cell::default(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bounds later writes by `deadline` (`None`: no bound).
    pub fn set_write_deadline(&self, deadline: Option<Instant>) {
        let mut slot = self.write.get();
        slot.want = deadline;
        self.write.set(slot);
    }
}

/// What to arm the socket with before a syscall, if it must change: the time left when the
/// armed value is longer than that (plus slack), or the tick when the armed value has become
/// much shorter than both.
fn rearm(slot: &Slot, tick: Duration, now: Instant) -> io::Result<Option<Duration>> {
    let Some(want) = slot.want else {
        // No deadline: whatever is armed only causes a retried wake-up, unless it is tiny.
        return Ok(match slot.armed {
            Some(a) if a >= tick / 2 => None,
            _ => Some(tick),
        });
    };
    let left = want.saturating_duration_since(now);
    if left.is_zero() {
        return Err(timed_out());
    }
    let target = left.min(tick);
    Ok(match slot.armed {
        Some(a) if a <= left + SLACK && a >= target / 2 => None,
        _ => Some(target),
    })
}

impl<S: Timeouts> Timed<S> {
    fn arm(&self, cell: &Cell<Slot>, read: bool) -> io::Result<()> {
        let mut slot = cell.get();
        if let Some(t) = rearm(&slot, self.tick, Instant::now())? {
            if read {
                self.inner.set_read_timeout(Some(t))?;
            } else {
                self.inner.set_write_timeout(Some(t))?;
            }
            slot.armed = Some(t);
            cell.set(slot);
        }
        Ok(())
    }

    /// Runs one syscall under the slot's deadline, retrying `EINTR` and early wake-ups.
    fn run<T>(&mut self, read: bool, mut op: impl FnMut(&mut S) -> io::Result<T>) -> io::Result<T> {
        loop {
            {
                let cell = if read { &self.read } else { &self.write };
                self.arm(cell, read)?;
            }
            match op(&mut self.inner) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // SO_RCVTIMEO/SO_SNDTIMEO expiry is EAGAIN (socket(7)).
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let slot = if read {
                        self.read.get()
                    } else {
                        self.write.get()
                    };
                    match slot.want {
                        Some(w) if Instant::now() >= w => return Err(timed_out()),
                        _ => continue,
                    }
                }
                other => return other,
            }
        }
    }
}

impl<S: Timeouts> Timeouts for Timed<S> {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        let mut slot = self.read.get();
        slot.want = t.map(|d| Instant::now() + d);
        self.read.set(slot);
        Ok(())
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        let mut slot = self.write.get();
        slot.want = t.map(|d| Instant::now() + d);
        self.write.set(slot);
        Ok(())
    }
}

impl<S: Read + Timeouts> Read for Timed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.run(true, |s| s.read(buf))
    }
}

impl<S: Write + Timeouts> Write for Timed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.run(false, |s| s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.run(false, |s| s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn rearm_rules() {
        let now = Instant::now();
        let tick = Duration::from_secs(5);
        let slot = |want: Option<Duration>, armed: Option<Duration>| Slot {
            want: want.map(|d| now + d),
            armed,
        };
        let s = Duration::from_secs;
        // Never armed: arm with the tick or the time left.
        assert_eq!(rearm(&slot(None, None), tick, now).unwrap(), Some(tick));
        assert_eq!(
            rearm(&slot(Some(s(60)), None), tick, now).unwrap(),
            Some(tick)
        );
        assert_eq!(
            rearm(&slot(Some(s(1)), None), tick, now).unwrap(),
            Some(s(1))
        );
        // Armed at the tick, far deadline: nothing to do.
        assert_eq!(
            rearm(&slot(Some(s(60)), Some(tick)), tick, now).unwrap(),
            None
        );
        assert_eq!(rearm(&slot(None, Some(tick)), tick, now).unwrap(), None);
        // Armed longer than the time left: lower it.
        assert_eq!(
            rearm(&slot(Some(s(1)), Some(tick)), tick, now).unwrap(),
            Some(s(1))
        );
        // Armed much shorter than needed: raise it back.
        assert_eq!(
            rearm(
                &slot(Some(s(60)), Some(Duration::from_millis(3))),
                tick,
                now
            )
            .unwrap(),
            Some(tick)
        );
        // Passed.
        assert!(rearm(&slot(Some(Duration::ZERO), Some(tick)), tick, now).is_err());
    }

    #[test]
    fn deadline_is_honoured_with_a_coarse_tick() {
        let (a, _peer) = UnixStream::pair().unwrap();
        let mut t = Timed::new(a, Duration::from_millis(30));
        let start = Instant::now();
        t.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let e = t.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    #[test]
    fn no_deadline_reads_data() {
        let (a, mut peer) = UnixStream::pair().unwrap();
        let mut t = Timed::new(a, Duration::from_millis(10));
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            peer.write_all(b"hi").unwrap();
        });
        let mut buf = [0u8; 2];
        t.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        writer.join().unwrap();
    }
}
