//! Keep-alive connections to the function, reused across requests and client connections.
//!
//! Each pooled connection remembers the instance (`Status.instance`) it was opened to: a
//! connection of an instance that has since died is dropped instead of reused, so fc-init keeps
//! serving once a new instance is up. A connection is also dropped when the function has
//! closed it (or sent bytes nobody asked for) while it sat idle, which a zero-timeout `poll`
//! tells before it is reused: that is the usual end of a keep-alive connection on the
//! function's side, and must not turn into a 502 for the next request.
//!
//! Connections are taken last-in first-out (the warmest first); at most [`MAX_IDLE`] are kept.
//!
//! Failure modes: [`ConnectError`] — the function's socket refused, is missing, or the connect
//! did not finish before the deadline.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::config::Endpoint;
use crate::http::client::{self, ClientError, Conn};
use crate::http::Buffered;

use super::timed::Timed;

/// Idle connections kept at most.
pub const MAX_IDLE: usize = 1024;

/// Read buffer per function connection: the longest response head accepted, and the size of
/// the pieces a response body is copied in.
pub const FUNCTION_BUFFER: usize = 16 * 1024;

/// A connection to the function.
pub struct FnConn {
    pub io: Buffered<Timed<Conn>>,
    pub instance: u64,
}

impl FnConn {
    fn fd(&self) -> BorrowedFd<'_> {
        match self.io.get_ref().get_ref() {
            Conn::Unix(s) => s.as_fd(),
            Conn::Tcp(s) => s.as_fd(),
        }
    }

    /// Whether the function closed the connection or sent something while it sat idle.
    fn is_stale(&self) -> bool {
        if !self.io.buffer().is_empty() {
            return true;
        }
        let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
        loop {
            match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
                Ok(0) => return false,
                Ok(_) => return true,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return true,
            }
        }
    }
}

/// Why no connection to the function could be made.
#[derive(Debug)]
pub struct ConnectError(pub ClientError);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connecting to the function: {}", self.0)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

pub struct Pool {
    endpoint: Endpoint,
    tick: Duration,
    idle: Mutex<Vec<FnConn>>,
}

impl Pool {
    pub fn new(endpoint: Endpoint, tick: Duration) -> Pool {
        Pool {
            endpoint,
            tick,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<FnConn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to the current instance: a pooled one if one is usable, else a new one.
    pub fn get(&self, instance: u64, deadline: Instant) -> Result<FnConn, ConnectError> {
        loop {
            let Some(conn) = self.lock().pop() else { break };
            // Dropped outside the lock: closing a socket is a syscall.
            if conn.instance != instance {
                // A new instance: every connection to the old one is dead.
                let old: Vec<FnConn> = {
                    let mut idle = self.lock();
                    let (keep, old) = idle.drain(..).partition(|c| c.instance == instance);
                    *idle = keep;
                    old
                };
                drop(old);
            } else if !conn.is_stale() {
                return Ok(conn);
            }
        }
        let conn = self.connect(deadline)?;
        Ok(FnConn {
            io: Buffered::with_capacity(Timed::new(conn, self.tick), FUNCTION_BUFFER),
            instance,
        })
    }

    /// A new connection to the function (blocking, not pooled), made before `deadline`.
    pub fn connect(&self, deadline: Instant) -> Result<Conn, ConnectError> {
        match &self.endpoint {
            Endpoint::Unix(path) => client::connect_unix(path, deadline),
            Endpoint::Tcp(port) => client::connect_tcp(
                std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                deadline,
            ),
        }
        .map_err(ConnectError)
    }

    /// Returns a connection whose last exchange ended cleanly.
    pub fn put(&self, mut conn: FnConn) {
        conn.io.set_deadline(None);
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

impl ConnectError {
    /// The function is not there (refused, no socket), rather than slow to accept.
    pub fn is_absent(&self) -> bool {
        !matches!(self.0, ClientError::Timeout)
    }
}
