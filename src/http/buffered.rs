//! [`Buffered`]: one fixed-size, reusable buffer over a stream, shared by the head parser and
//! the body copier so that bytes read past the end of a head (the start of the body, or a
//! pipelined next request) are never lost and never copied into a second buffer.
//!
//! Deadlines: when [`Buffered::set_deadline`] is set, every read and write syscall first sets
//! the socket timeout to the time remaining, so a peer trickling one byte at a time cannot
//! stretch the total past the deadline (docs/reference.md §12: `header_timeout` bounds the whole header
//! block). An expired deadline surfaces as `io::ErrorKind::TimedOut`. `EINTR` is retried by
//! `crate::sys::retry`, the one helper.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Default buffer size: large enough for the default 8 KiB head limit plus a good share of
/// body, small enough for thousands of connections.
pub const DEFAULT_CAPACITY: usize = 16 * 1024;

/// Streams whose blocking syscalls can be bounded (sockets). In-memory readers implement it as
/// a no-op.
pub trait Timeouts {
    /// `SO_RCVTIMEO`; `None` blocks forever.
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// `SO_SNDTIMEO`; `None` blocks forever.
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Timeouts for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
}

impl Timeouts for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, t)
    }
}

impl<T: Timeouts + ?Sized> Timeouts for &T {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        (**self).set_write_timeout(t)
    }
}

impl<T: Timeouts + ?Sized> Timeouts for &mut T {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        (**self).set_write_timeout(t)
    }
}

impl Timeouts for &[u8] {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

impl<T> Timeouts for io::Cursor<T> {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// A stream plus one fixed buffer. Pending (read but not consumed) bytes are
/// `buf[start..end]`.
#[derive(Debug)]
pub struct Buffered<S> {
    inner: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    deadline: Option<Instant>,
    /// Whether a socket timeout was set by us and must be cleared when the deadline goes away.
    read_armed: bool,
    write_armed: bool,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
}

/// Time left before `deadline`, or a `TimedOut` error when none is left.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(timed_out()),
    }
}

impl<S> Buffered<S> {
    /// Wrap `inner` with a [`DEFAULT_CAPACITY`] buffer.
    pub fn new(inner: S) -> Self {
        Self::with_capacity(inner, DEFAULT_CAPACITY)
    }

    /// Wrap `inner` with a buffer of `capacity` bytes (at least 64). Head parsing grows it once
    /// if `max_header_bytes` does not fit.
    pub fn with_capacity(inner: S, capacity: usize) -> Self {
        Buffered {
            inner,
            buf: vec![0; capacity.max(64)].into_boxed_slice(),
            start: 0,
            end: 0,
            deadline: None,
            read_armed: false,
            write_armed: false,
        }
    }

    /// Wrap `inner` with a buffer of at least `capacity` bytes that already holds `pending`
    /// (bytes read from the stream by someone else, e.g. an event loop handing a connection
    /// over): they are served before anything is read from the stream.
    pub fn with_pending(inner: S, capacity: usize, pending: &[u8]) -> Self {
        let mut b = Self::with_capacity(inner, capacity.max(pending.len()));
        b.buf[..pending.len()].copy_from_slice(pending);
        b.end = pending.len();
        b
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The stream, mutably. Bytes read through it bypass (and may desynchronise) the buffer.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The stream; pending buffered bytes are dropped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Bytes read from the stream but not consumed yet (e.g. a pipelined next request).
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Size of the fixed buffer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Mark `n` pending bytes as used.
    pub fn consume_bytes(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            // Empty: rewind so the next fill gets the whole buffer without a memmove.
            self.start = 0;
            self.end = 0;
        }
    }

    /// Bound every later read and write syscall by `deadline`; `None` removes the bound.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The current deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Move pending bytes to the front so that the free tail is as large as possible.
    pub(crate) fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Make sure the pending bytes can grow to `n` bytes without wrapping: compact when the
    /// tail after `start` is shorter than `n`.
    pub(crate) fn make_room(&mut self, n: usize) {
        if self.buf.len() - self.start < n {
            self.compact();
        }
    }

    /// Make the buffer at least `n` bytes long (only ever grows; used once per connection when
    /// the configured head limit is larger than the buffer).
    pub(crate) fn ensure_capacity(&mut self, n: usize) {
        if self.buf.len() < n {
            let mut bigger = vec![0; n].into_boxed_slice();
            bigger[..self.end - self.start].copy_from_slice(&self.buf[self.start..self.end]);
            self.end -= self.start;
            self.start = 0;
            self.buf = bigger;
        }
    }
}

impl<S: Timeouts> Buffered<S> {
    fn arm_read(&mut self) -> io::Result<()> {
        let inner = &self.inner;
        arm(self.deadline, &mut self.read_armed, |t| {
            inner.set_read_timeout(t)
        })
    }

    fn arm_write(&mut self) -> io::Result<()> {
        let inner = &self.inner;
        arm(self.deadline, &mut self.write_armed, |t| {
            inner.set_write_timeout(t)
        })
    }
}

/// Sets one socket timeout (through `set`) to what is left of `deadline`; with no deadline,
/// clears a timeout an earlier deadline left (`armed` says whether one is set), and otherwise
/// makes no syscall.
fn arm(
    deadline: Option<Instant>,
    armed: &mut bool,
    set: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    match deadline {
        Some(d) => {
            set(Some(remaining(d)?))?;
            *armed = true;
        }
        None if *armed => {
            set(None)?;
            *armed = false;
        }
        None => {}
    }
    Ok(())
}

/// A socket timeout (`EAGAIN` from `SO_RCVTIMEO`/`SO_SNDTIMEO`) is our deadline expiring.
fn map_timeout(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        timed_out()
    } else {
        e
    }
}

impl<S: Read + Timeouts> Buffered<S> {
    /// One read from the stream into `dst`, honouring the deadline and retrying `EINTR`.
    fn read_inner(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        crate::sys::retry(|| {
            self.arm_read()?;
            self.inner.read(dst)
        })
        .map_err(map_timeout)
    }

    /// Read once more from the stream, appending to the pending bytes. Returns the number of
    /// new bytes; 0 means end of stream. Compacts first when the tail of the buffer is full;
    /// fails with `InvalidInput` when the pending bytes already fill the whole buffer.
    pub fn fill_more(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "buffer full of unconsumed bytes",
                ));
            }
            self.compact();
        }
        let end = self.end;
        // Split borrow: read_inner needs &mut self, so read into a temporary view first.
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.read_inner(&mut buf[end..]);
        self.buf = buf;
        let n = r?;
        self.end += n;
        Ok(n)
    }
}

impl<S: Read + Timeouts> Read for Buffered<S> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            // Nothing pending: a large read goes straight to the caller's buffer (no double copy).
            if dst.len() >= self.buf.len() {
                return self.read_inner(dst);
            }
            if self.fill_more()? == 0 {
                return Ok(0);
            }
        }
        let n = dst.len().min(self.end - self.start);
        dst[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.consume_bytes(n);
        Ok(n)
    }
}

impl<S: Read + Timeouts> BufRead for Buffered<S> {
    /// The pending bytes, reading once if there are none (empty = end of stream). The proxy can
    /// use it to wait for the first byte of a request under the idle timeout before it starts
    /// the header timeout.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.fill_more()?;
        }
        Ok(self.buffer())
    }

    fn consume(&mut self, amt: usize) {
        self.consume_bytes(amt);
    }
}

impl<S: Write + Timeouts> Write for Buffered<S> {
    /// Writes go straight to the stream (the buffer is for reading only), under the deadline.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        crate::sys::retry(|| {
            self.arm_write()?;
            self.inner.write(data)
        })
        .map_err(map_timeout)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        crate::sys::retry(|| {
            self.arm_write()?;
            self.inner.write_vectored(bufs)
        })
        .map_err(map_timeout)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_drains_buffer_then_stream() {
        let data: &[u8] = b"hello world";
        let mut b = Buffered::with_capacity(data, 64);
        assert_eq!(b.fill_more().unwrap(), 11);
        b.consume_bytes(6);
        let mut out = String::new();
        b.read_to_string(&mut out).unwrap();
        assert_eq!(out, "world");
    }

    #[test]
    fn expired_deadline_is_timed_out() {
        let data: &[u8] = b"x";
        let mut b = Buffered::new(data);
        b.set_deadline(Some(Instant::now()));
        let e = b.fill_more().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn socket_read_timeout_maps_to_timed_out() {
        let (a, _keep_open) = UnixStream::pair().unwrap();
        let mut b = Buffered::new(a);
        let start = Instant::now();
        b.set_deadline(Some(start + Duration::from_millis(50)));
        let e = b.fill_more().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
        // Clearing the deadline clears the socket timeout we set.
        b.set_deadline(None);
        b.arm_read().unwrap();
        assert_eq!(b.get_ref().read_timeout().unwrap(), None);
    }

    #[test]
    fn pending_bytes_come_first() {
        let data: &[u8] = b" world";
        let mut b = Buffered::with_pending(data, 64, b"hello");
        assert_eq!(b.buffer(), b"hello");
        let mut out = String::new();
        b.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
        // More pending bytes than the capacity asked for: the buffer grows to hold them.
        let b = Buffered::with_pending(&b""[..], 64, &[7u8; 100]);
        assert_eq!((b.capacity(), b.buffer().len()), (100, 100));
    }

    #[test]
    fn compaction_keeps_pending_bytes() {
        let data: &[u8] =
            b"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789";
        let mut b = Buffered::with_capacity(data, 64);
        b.fill_more().unwrap();
        assert_eq!(b.buffer().len(), 64);
        b.consume_bytes(60);
        b.fill_more().unwrap();
        assert_eq!(b.buffer(), b"yz0123456789");
    }
}
