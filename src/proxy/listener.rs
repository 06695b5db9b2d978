//! The accept loop: one thread that accepts client connections on `server.listen` and hands
//! each to an event loop ([`super::event_loop`]), until the shutdown begins.
//!
//! Rules: at most `server.max_connections` connections are served at once; one more is
//! answered `429` (`TooManyRequests`, as the contract's table gives it: "too many open
//! connections") with a non-blocking send and
//! closed at once, so the accept loop never waits on a client. When the shutdown starts, the
//! stop hook `shutdown(2)`s the listening socket: a blocked `accept` returns (EINVAL) and new
//! connection attempts are refused by the kernel.
//!
//! Failure modes: binding fails at start-up ([`ProxyError::Bind`]). Later, `accept` errors are
//! tolerated: ECONNABORTED/EPROTO (the client gave up) are skipped. Out of descriptors
//! (EMFILE/ENFILE, or the kernel's memory for a socket) is fc-init's own condition: one
//! descriptor is kept in reserve, freed to take the waiting connection off the queue and
//! answer it `429` ("out of file descriptors") instead of leaving it to time out in the
//! backlog, then taken again; it is logged at most once a second ([`super::fds`]). Other
//! errors pause the loop briefly, since retrying at once would spin.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::http::fc_error::{error_response, ErrorType};
use crate::http::new_request_id;

use super::errors::ProxyError;
use super::event_loop::Loops;
use super::shared::{OpenSlot, Proxy};
use crate::state::{Notice, Status, Watcher};

/// `listen(2)` backlog: bursts of new connections (a load balancer opening its pool) should
/// wait in the kernel rather than be refused.
const BACKLOG: i32 = 1024;

/// Pause after an `accept` error that freeing the reserve did not cure.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

pub(super) fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    let listener = TcpListener::bind(addr).map_err(|source| ProxyError::Bind { addr, source })?;
    // std listens with a backlog of 128; a second listen(2) only changes the backlog.
    // SAFETY: listen on a socket fd owned by `listener`, integer arguments only.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        log::warn!(
            "raising the listen backlog on {addr}: {}",
            io::Error::last_os_error()
        );
    }
    Ok(listener)
}

pub(super) fn spawn(
    proxy: &'static Proxy,
    listener: TcpListener,
    loops: Arc<Loops>,
) -> Result<(), ProxyError> {
    let listener = Arc::new(listener);
    proxy.shared.watch(Arc::new(StopAccepting {
        proxy,
        listener: listener.clone(),
    }));
    std::thread::Builder::new()
        .name("fc-init-accept".into())
        .spawn(move || accept_loop(proxy, &listener, &loops))
        .map(|_| ())
        .map_err(ProxyError::Thread)
}

/// Ends the accepting when the supervisor announces the shutdown.
struct StopAccepting {
    proxy: &'static Proxy,
    listener: Arc<TcpListener>,
}

impl Watcher for StopAccepting {
    fn notice(&self, notice: Notice, _: &Status) {
        if notice != Notice::Stopping {
            return;
        }
        self.proxy.begin_stopping();
        // Wakes the blocked accept (it fails with EINVAL) and refuses new connections. The fd
        // stays open as long as this watcher holds the listener, so it cannot have been reused
        // for something else.
        // SAFETY: shutdown on a socket fd owned by `listener`.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// The descriptor kept in reserve for answering while descriptors are exhausted.
fn reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

fn accept_loop(proxy: &'static Proxy, listener: &TcpListener, loops: &Loops) {
    let mut spare = reserve();
    loop {
        let stream = match crate::sys::retry(|| listener.accept()) {
            Ok((stream, _)) => stream,
            Err(_) if proxy.stopping() => break,
            Err(e) if super::fds::is_exhausted(&e) => {
                super::fds::log_exhausted("accepting a connection", &e);
                match spare.take() {
                    Some(fd) => {
                        drop(fd);
                        if let Ok((stream, _)) = listener.accept() {
                            refuse(
                                &stream,
                                429,
                                ErrorType::TooManyRequests,
                                "fc-init is out of file descriptors",
                            );
                        }
                        spare = reserve();
                    }
                    None => {
                        std::thread::sleep(ACCEPT_BACKOFF);
                        spare = reserve();
                    }
                }
                continue;
            }
            // The client reset the connection before it was accepted.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => {
                continue
            }
            Err(e) => {
                log::error!("accepting a connection: {e}");
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if proxy.stopping() {
            // Accepted as the listener closed: it gets an answer, not a bare close.
            refuse(
                &stream,
                503,
                ErrorType::InstanceStopping,
                "fc-init is shutting down",
            );
            break;
        }
        let open = proxy.open.fetch_add(1, Ordering::AcqRel);
        if open >= proxy.max_connections {
            proxy.open.fetch_sub(1, Ordering::AcqRel);
            refuse(
                &stream,
                429,
                ErrorType::TooManyRequests,
                "too many open connections",
            );
            continue;
        }
        loops.dispatch(stream, OpenSlot { proxy });
    }
    log::debug!("listener closed");
}

/// Answers a connection fc-init cannot serve without ever blocking, then closes it.
fn refuse(mut stream: &TcpStream, status: u16, error: ErrorType, why: &str) {
    let answer = error_response(status, error, &new_request_id(), why, true);
    // Non-blocking: a full socket buffer drops the answer rather than stalling the accept
    // loop (std sends with MSG_NOSIGNAL).
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = stream.write(&answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Whatever of the request has arrived is read and dropped: closing a socket with unread
    // input resets the connection, which can destroy the answer before the client reads it.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}
