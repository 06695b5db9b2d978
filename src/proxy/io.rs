//! The proxy's seam to the outside: the byte streams of the two sides (a client connection, a
//! function connection) behind one small trait, and the making of function connections
//! behind another. The event loops use `mio`'s sockets through them; the exchange tests
//! ([`super::exchange_tests`]) use scripted streams and drive whole exchanges with no socket, process
//! or clock (hyper's h1 `Conn` is tested the same way, over a mock IO).
//!
//! The methods take `&self`, as `Read`/`Write` for `&TcpStream` do: a stream is one
//! descriptor the kernel serialises, and the loop reads one side while it writes the other.
//! Every stream is non-blocking: `WouldBlock` means "wait for the next readiness event".

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;

use mio::{Interest, Registry, Token};

use crate::config::Endpoint;

/// One side's byte stream.
pub(super) trait Transport {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Writes `a` then `b` in one call where the stream can.
    fn write_parts(&self, a: &[u8], b: &[u8]) -> io::Result<usize>;
    /// Closes the write side (the peer reads its end).
    fn shutdown_write(&self) -> io::Result<()>;
    /// The local address, for a client connection (the listener's address as the client
    /// reached it).
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// `mio`'s TCP and unix streams read, write and shut down alike (through `&stream`, as
/// `std`'s do): one body serves both; only the local address differs.
macro_rules! socket_transport {
    ($stream:ty, $local_addr:expr) => {
        impl Transport for $stream {
            fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
                Read::read(&mut &*self, buf)
            }

            fn write(&self, buf: &[u8]) -> io::Result<usize> {
                Write::write(&mut &*self, buf)
            }

            fn write_parts(&self, a: &[u8], b: &[u8]) -> io::Result<usize> {
                Write::write_vectored(&mut &*self, &[IoSlice::new(a), IoSlice::new(b)])
            }

            fn shutdown_write(&self) -> io::Result<()> {
                self.shutdown(std::net::Shutdown::Write)
            }

            fn local_addr(&self) -> Option<SocketAddr> {
                let local_addr: fn(&$stream) -> Option<SocketAddr> = $local_addr;
                local_addr(self)
            }
        }
    };
}

socket_transport!(mio::net::TcpStream, |s| s.local_addr().ok());
// A function connection: its local address is never asked for.
socket_transport!(mio::net::UnixStream, |_| None);

/// Makes connections to the function.
pub(super) trait Connector {
    /// A new non-blocking connection, registered (where that applies) so that its readiness
    /// comes as events for `token`. A TCP connect still under way counts as made: its first
    /// write says `WouldBlock` until it completes, or fails as a refused connect.
    fn connect(&mut self, token: Token) -> io::Result<Box<dyn Transport>>;
}

/// The real one: `function.socket` or `function.port`, registered with the loop's poll.
pub(super) struct FunctionConnector {
    pub(super) registry: Registry,
    pub(super) endpoint: &'static Endpoint,
}

impl Connector for FunctionConnector {
    fn connect(&mut self, token: Token) -> io::Result<Box<dyn Transport>> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self.endpoint {
            Endpoint::Unix(path) => {
                let mut s = mio::net::UnixStream::connect(path)?;
                self.registry.register(&mut s, token, interest)?;
                Ok(Box::new(s))
            }
            Endpoint::Tcp(port) => {
                let addr = SocketAddr::from(([127, 0, 0, 1], *port));
                let mut s = mio::net::TcpStream::connect(addr)?;
                // Small exchanges must not wait for Nagle (RFC 896).
                let _ = s.set_nodelay(true);
                self.registry.register(&mut s, token, interest)?;
                Ok(Box::new(s))
            }
        }
    }
}
