//! One connection to the fleet's Redis, kept and remade: every thread of the Redis backend that
//! talks to the server (each worker, the submitters, the fleet's housekeeping, the admin side)
//! owns one [`Link`].
//!
//! Rules it keeps:
//! - **Fail fast while down.** A failure that says the connection is gone (refused, reset,
//!   timed out) drops it; the next call reconnects, but not before a backoff (100 ms doubling
//!   to 2 s) has passed: meanwhile every call fails at once with the last error, so a
//!   submission gets its 503 `AsyncStoreUnavailable` without waiting for a dead server. The
//!   backoff is one for all links to the server ([`Reach`]): the first to reconnect ends it.
//! - **Bounded waits.** Connecting waits at most [`CONNECT_TIMEOUT`]; a reply at most
//!   [`REPLY_TIMEOUT`] beyond what the command itself blocks for.
//! - **Quiet logs.** "unreachable" and "reachable again" are logged at most once a second for
//!   the whole process, however many links notice.
//! - **Replicas counted.** On each connect the server's `INFO replication` says how many
//!   replicas are attached; a submission then waits for one of them (`WAIT`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, RedisResult};

use crate::events::error::StoreError;
use crate::events::signal::lock;
use crate::logging::Throttle;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a reply may take (beyond a blocking command's own wait).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts. The fleet's takeover grace must exceed
/// it (see the backend's docs).
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Whether the server can be reached, as the links to it found: one backoff for all of them,
/// so that once one reconnects the others do not wait out a backoff of their own.
pub struct Reach {
    /// Set after a failure: no new connection attempt before this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<Arc<RedisError>>,
}

impl Default for Reach {
    fn default() -> Reach {
        Reach {
            retry_at: None,
            backoff: BACKOFF_MIN,
            last_error: None,
        }
    }
}

/// Once a second at most: many links come back at once when Redis does. (Their failures share
/// [`crate::events::STORE_LOG`] with the workers'.)
static LOG: Throttle = Throttle::new();

pub struct Link {
    client: Arc<Client>,
    /// The server, as the config says (credentials stripped), for diagnostics.
    server: Arc<str>,
    conn: Option<Connection>,
    /// Set after a failure: no new connection attempt before this instant.
    /// The backoff state, shared by every link to the same server.
    reach: Arc<std::sync::Mutex<Reach>>,
    /// When the current connection was made (the fleet's takeover grace counts from it).
    connected_since: Option<Instant>,
    /// Replicas attached to the server, as of the last connect.
    replicas: u64,
    /// Read timeout of the connection for commands that do not block.
    what: &'static str,
}

impl Link {
    pub fn new(
        client: Arc<Client>,
        server: Arc<str>,
        reach: Arc<std::sync::Mutex<Reach>>,
        what: &'static str,
    ) -> Link {
        Link {
            client,
            server,
            conn: None,
            reach,
            connected_since: None,
            replicas: 0,
            what,
        }
    }

    /// Runs `f` on the connection (made first when needed); `op` names the operation in the
    /// error. A failure that ends the connection drops it and starts the backoff.
    pub fn call<T>(
        &mut self,
        op: &'static str,
        f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.call_blocking(op, Duration::ZERO, f)
    }

    /// [`Link::call`] for a command that blocks on the server for up to `blocks`.
    ///
    /// A kept connection that the server closed meanwhile (Redis restarted: the reply is an
    /// immediate end of file) is remade and the call made once more on the new one. The
    /// closing server did not run the command; the scripts are written so that running one
    /// twice does no harm should it have (see [`super::scripts`]).
    pub fn call_blocking<T>(
        &mut self,
        op: &'static str,
        blocks: Duration,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        if let Some(e) = self.backing_off(op) {
            return Err(e);
        }
        let kept = self.conn.is_some();
        match self.attempt(blocks, &mut f) {
            Err(e) if kept && e.is_connection_dropped() => {
                self.conn = None;
                self.connected_since = None;
                log::debug!(
                    "Redis at {}: a kept connection was closed ({e}); reconnecting",
                    self.server
                );
                self.attempt(blocks, &mut f).map_err(|e| self.failed(op, e))
            }
            other => other.map_err(|e| self.failed(op, e)),
        }
    }

    fn attempt<T>(
        &mut self,
        blocks: Duration,
        f: &mut impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let conn = self.connection()?;
        if !blocks.is_zero() {
            let _ = conn.set_read_timeout(Some(REPLY_TIMEOUT + blocks));
        }
        let result = f(conn);
        if !blocks.is_zero() {
            let _ = conn.set_read_timeout(Some(REPLY_TIMEOUT));
        }
        result
    }

    /// Whether the link holds a connection now (as of its last call).
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// How long the current connection has been up.
    pub fn up_for(&self) -> Option<Duration> {
        self.connected_since.map(|t| t.elapsed())
    }

    pub fn replicas(&self) -> u64 {
        self.replicas
    }

    /// While the backoff after a failure lasts: the error to fail with at once.
    fn backing_off(&self, op: &'static str) -> Option<StoreError> {
        if self.conn.is_some() {
            return None;
        }
        let reach = lock(&self.reach);
        match (reach.retry_at, &reach.last_error) {
            (Some(at), Some(e)) if Instant::now() < at => Some(StoreError::Redis {
                op,
                server: self.server.clone(),
                source: e.clone(),
            }),
            _ => None,
        }
    }

    /// The connection, made now if needed.
    fn connection(&mut self) -> RedisResult<&mut Connection> {
        if self.conn.is_none() {
            let conn = self.connect()?;
            let mut reach = lock(&self.reach);
            if reach.last_error.take().is_some() && LOG.ready() {
                log::warn!("Redis at {} is reachable again", self.server);
            }
            reach.retry_at = None;
            reach.backoff = BACKOFF_MIN;
            drop(reach);
            self.connected_since = Some(Instant::now());
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected just above"))
    }

    fn connect(&mut self) -> RedisResult<Connection> {
        let mut conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(REPLY_TIMEOUT))?;
        conn.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut conn)?;
        self.replicas = connected_replicas(&info);
        log::debug!(
            "Redis at {}: connected ({}; {} replica(s))",
            self.server,
            self.what,
            self.replicas
        );
        Ok(conn)
    }

    /// Turns a failure of `op` into the store's error; one that ends the connection drops it
    /// and starts (or doubles) the backoff.
    fn failed(&mut self, op: &'static str, e: RedisError) -> StoreError {
        let source = Arc::new(e);
        if ends_connection(&source) {
            self.conn = None;
            self.connected_since = None;
            let mut reach = lock(&self.reach);
            reach.retry_at = Some(Instant::now() + reach.backoff);
            reach.backoff = (reach.backoff * 2).min(BACKOFF_MAX);
            reach.last_error = Some(source.clone());
            drop(reach);
            if crate::events::STORE_LOG.ready() {
                log::error!(
                    "Redis at {} is unreachable ({op}: {source}); reconnecting with backoff",
                    self.server
                );
            }
        }
        StoreError::Redis {
            op,
            server: self.server.clone(),
            source,
        }
    }
}

/// Whether `e` means the connection cannot be used any more.
fn ends_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// `connected_slaves:N` of `INFO replication` (0 when absent, or on a replica).
fn connected_replicas(info: &str) -> u64 {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_read_from_info_replication() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=...\r\n";
        assert_eq!(connected_replicas(info), 2);
        assert_eq!(connected_replicas("# Replication\r\nrole:slave\r\n"), 0);
    }
}
