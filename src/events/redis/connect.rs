//! Connecting to the configured server: the redis crate's client for a parsed
//! `async.redis_url`, and the names this instance shows (the server without credentials, its
//! consumer name).

use redis::{Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

#[cfg(feature = "redis-tls")]
use super::tls;
use crate::config::redis_url::{RedisAddr, RedisTarget};
use crate::events::time::now_ms;

/// The redis crate's form of a parsed standalone `async.redis_url`.
pub(super) fn connection_info(target: RedisTarget) -> ConnectionInfo {
    let addr = match target.addr {
        RedisAddr::Tcp { host, port } => ConnectionAddr::Tcp(host, port),
        // The CA, if any, is the client's (see `client`); never insecure.
        RedisAddr::Tls { host, port, .. } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        },
        RedisAddr::Unix(path) => ConnectionAddr::Unix(path),
        // Made by `topology`, never here: their nodes are found at run time.
        RedisAddr::Cluster { .. } | RedisAddr::Sentinel { .. } => {
            unreachable!("the cluster and Sentinel forms are not single servers")
        }
    };
    let mut login = RedisConnectionInfo::default().set_db(target.db);
    if let Some(user) = target.username {
        login = login.set_username(user);
    }
    if let Some(password) = target.password {
        login = login.set_password(password);
    }
    // Infallible for an address: it is only wrapped, with the default TCP settings.
    redis::IntoConnectionInfo::into_connection_info(addr)
        .expect("a ConnectionAddr is always a valid ConnectionInfo")
        .set_redis_settings(login)
}

/// The redis crate's client for a parsed `async.redis_url`.
pub(super) fn client(target: RedisTarget) -> Result<Client, String> {
    #[cfg(feature = "redis-tls")]
    if let RedisAddr::Tls { ca, .. } = &target.addr {
        return tls::client(ca.clone(), connection_info(target));
    }
    Client::open(connection_info(target)).map_err(|e| e.to_string())
}

/// `host:port/db` (or the socket) of a Redis URL, without credentials or query (which may
/// hold a password), for messages.
pub(super) fn server_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.to_owned()
}

/// `<hostname>-<pid>-<start time>`: unique per process, readable in `XINFO CONSUMERS`.
pub(super) fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "fc-init".into()
    } else {
        host
    };
    format!("{host}-{}-{:x}", std::process::id(), now_ms())
}

/// Whether `e` is a node's TLS certificate that did not verify (at start a configuration
/// error; only the `redis-tls` build makes such failures).
pub(super) fn is_certificate_error(e: &redis::RedisError) -> bool {
    #[cfg(feature = "redis-tls")]
    {
        tls::is_certificate_error(e)
    }
    #[cfg(not(feature = "redis-tls"))]
    {
        let _ = e;
        false
    }
}

/// The CA certificates of `?ca=` for the clients the cluster and Sentinel forms make at run
/// time (only the `redis-tls` build has any; otherwise this is empty).
#[derive(Clone, Default)]
pub(super) struct Certs(#[cfg(feature = "redis-tls")] Option<redis::TlsCertificates>);

impl Certs {
    /// The CAs of the file `ca`, read and checked once, at start.
    pub(super) fn of(ca: &Option<std::path::PathBuf>) -> Result<Certs, String> {
        #[cfg(feature = "redis-tls")]
        {
            tls::install_provider();
            let Some(path) = ca else {
                return Ok(Certs(None));
            };
            let pem = tls::ca_pem(path)?;
            Ok(Certs(Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            })))
        }
        #[cfg(not(feature = "redis-tls"))]
        {
            // The configuration refuses `?ca=` (and any TLS form) without the TLS build.
            let _ = ca;
            Ok(Certs())
        }
    }

    /// The certificates for the cluster client's builder.
    #[cfg(feature = "redis-tls")]
    pub(super) fn get(&self) -> Option<&redis::TlsCertificates> {
        self.0.as_ref()
    }

    /// A client of one node, trusting these CAs when there are any.
    pub(super) fn client(&self, info: ConnectionInfo) -> redis::RedisResult<Client> {
        #[cfg(feature = "redis-tls")]
        if let Some(certs) = &self.0 {
            return Client::build_with_tls(info, certs.clone());
        }
        Client::open(info)
    }
}

/// The redis crate's form of a node found at run time (a cluster's seed, a Sentinel, the
/// master a Sentinel names), with `login`.
pub(super) fn node_info(
    host: &str,
    port: u16,
    tls: bool,
    login: &RedisConnectionInfo,
) -> ConnectionInfo {
    let addr = match tls {
        false => ConnectionAddr::Tcp(host.to_owned(), port),
        true => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        },
    };
    redis::IntoConnectionInfo::into_connection_info(addr)
        .expect("a ConnectionAddr is always a valid ConnectionInfo")
        .set_redis_settings(login.clone())
}

/// Read and write timeouts on a new connection: a node that accepts but never answers (a
/// SIGSTOPped server: the kernel completes the handshake and buffers the bytes) fails the
/// call after `reply` instead of hanging it.
pub(super) fn bound(
    conn: &redis::Connection,
    reply: std::time::Duration,
) -> redis::RedisResult<()> {
    conn.set_read_timeout(Some(reply))?;
    conn.set_write_timeout(Some(reply))
}
