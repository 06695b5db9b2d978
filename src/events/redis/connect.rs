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
