//! `https://` destinations (docs/reference.md §10), built only with the `tls` feature (which
//! `redis-tls` implies): one TLS 1.2 or 1.3 connection per try, through rustls with the ring
//! provider, the server's certificate verified, host name included, against the system's roots
//! — read at every connect by rustls-native-certs, as the Redis client reads them for
//! `rediss://`: `/etc/ssl/certs`, or the files named by `SSL_CERT_FILE` / `SSL_CERT_DIR`, which
//! is how a private CA is trusted. There is no insecure mode.
//!
//! Failure modes: no root certificate at all, a name that is not a valid server name, a
//! refused connect or a certificate that does not verify are a failed try (retried with
//! backoff), with the reason in the log line (`invalid peer certificate: UnknownIssuer`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::http::buffered::Timeouts;

/// A TLS connection to a destination.
pub struct TlsConn(StreamOwned<ClientConnection, TcpStream>);

impl Read for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Timeouts for TlsConn {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.0.sock.set_read_timeout(t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.0.sock.set_write_timeout(t)
    }
}

/// A TLS connection to `host` at `addr` (the handshake happens with the first bytes sent).
pub fn connect(host: &str, addr: SocketAddr, deadline: Instant) -> Result<TlsConn, String> {
    install_provider();
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "no trusted root certificate (the system's store, SSL_CERT_FILE, SSL_CERT_DIR){why}"
        ));
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a server name for TLS: {e}"))?;
    let conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| format!("starting TLS with {host}: {e}"))?;
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "timeout".to_owned())?;
    let tcp = TcpStream::connect_timeout(&addr, left)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(TlsConn(StreamOwned::new(conn, tcp)))
}

/// Makes ring rustls's process-wide crypto provider, once, before the first handshake (see
/// the Redis client's own, which may have installed it first: either install is the same).
fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
