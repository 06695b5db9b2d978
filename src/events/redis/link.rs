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
//! - **Bounded waits.** Connecting waits at most [`CONNECT_TIMEOUT`]; a reply, or a write, at
//!   most [`REPLY_TIMEOUT`](super::topology::REPLY_TIMEOUT) beyond what the command itself
//!   blocks for: a frozen node (SIGSTOP) fails a call like a dead one, only later.
//! - **Quiet logs.** "unreachable" and "reachable again" are logged at most once a second for
//!   the whole process, however many links notice.
//! - **Replicas counted.** On each connect the queue's master's `INFO replication` says how
//!   many replicas keep up (the housekeeping reads it again every second); a submission
//!   waits for them as `async.redis_min_replicas` says (`WAIT`).
//! - **Never trust a stale master.** On a cluster, an answer that came more than
//!   [`SUSPECT_AFTER`] after its command's own blocking time, or on a connection made before
//!   a newer master of the queue's slot was seen, may be a thawed old master's (it answers
//!   what waited in its sockets as a master for a moment): it is used only once the node
//!   proves current ([`Topology::verify`]), else it ends the connection.
//! - **Follow the master.** A link made before the topology changed (Sentinel named another
//!   master, or a link saw a newer master of the cluster slot) reconnects before its next
//!   call; a `READONLY` answer (a demoted master) ends
//!   the connection and makes the Sentinels be asked again ([`super::topology`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind};

use super::topology::{replication, Conn, Topology, REPLY_TIMEOUT};

use crate::events::error::StoreError;
use crate::events::signal::lock;
use crate::logging::Throttle;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The operation name of the check at start ([`super::Redis`]), which reports its own failure.
pub(super) const START_CHECK: &str = "start-up check";

/// An answer that took this much longer than its command blocks for is checked before it is
/// used: shorter than any failover takes (a Redis Cluster's `cluster-node-timeout` and an
/// election), longer than a loaded server's ordinary answer.
const SUSPECT_AFTER: Duration = Duration::from_millis(500);
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
    topology: Arc<Topology>,
    /// The queue's stream (routes keyless commands to its node on a cluster).
    key: Arc<str>,
    /// The server, as the config says (credentials stripped), for diagnostics.
    server: Arc<str>,
    conn: Option<Conn>,
    /// The topology's generation when the connection was made.
    generation: u64,
    /// Set after a failure: no new connection attempt before this instant.
    /// The backoff state, shared by every link to the same server.
    reach: Arc<std::sync::Mutex<Reach>>,
    /// When the current connection was made, or last answered after a stall (the fleet's
    /// takeover grace counts from it).
    connected_since: Option<Instant>,
    /// What the link serves, for diagnostics.
    what: &'static str,
    /// Whether the last call reached the point of sending its command on a connection.
    sent: bool,
}

impl Link {
    pub fn new(
        topology: Arc<Topology>,
        key: Arc<str>,
        server: Arc<str>,
        reach: Arc<std::sync::Mutex<Reach>>,
        what: &'static str,
    ) -> Link {
        Link {
            topology,
            key,
            server,
            conn: None,
            generation: 0,
            reach,
            connected_since: None,
            what,
            sent: false,
        }
    }

    /// Whether the last call sent its command (so a failure may have come after the server
    /// ran it), rather than failing before (backoff, connect).
    pub fn sent(&self) -> bool {
        self.sent
    }

    /// Runs `f` on the connection (made first when needed); `op` names the operation in the
    /// error. A failure that ends the connection drops it and starts the backoff.
    pub fn call<T>(
        &mut self,
        op: &'static str,
        f: impl FnMut(&mut Conn) -> RedisResult<T>,
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
        mut f: impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        if self.conn.is_some() && self.generation != self.topology.generation() {
            log::debug!("Redis at {}: the master changed; reconnecting", self.server);
            self.conn = None;
            self.connected_since = None;
        }
        self.sent = false;
        if let Some(e) = self.backing_off(op) {
            return Err(e);
        }
        let kept = self.conn.is_some();
        let began = Instant::now();
        let result = match self.attempt(blocks, &mut f) {
            Err(e) if kept && e.is_connection_dropped() => {
                self.conn = None;
                self.connected_since = None;
                log::debug!(
                    "Redis at {}: a kept connection was closed ({e}); reconnecting",
                    self.server
                );
                self.attempt(blocks, &mut f)
            }
            other => other,
        };
        // An answer after a stall, or one on a connection made before the topology changed,
        // may come from a node that was frozen and has just thawed, still believing itself
        // the master (see [`Topology::verify`]): trusted only once the node proves current;
        // else it ends the connection like a broken one.
        let moved = self.generation != self.topology.generation();
        let result = match result {
            Ok(v) if moved || began.elapsed() > blocks + SUSPECT_AFTER => {
                match self.conn.as_mut() {
                    Some(conn) => self.topology.verify(conn).map(|()| v),
                    None => Ok(v),
                }
            }
            other => other,
        };
        match result {
            Ok(v) => {
                if began.elapsed() > REPLY_TIMEOUT + blocks {
                    // An answer after a stall: the crate's cluster client retried a node that
                    // did not answer and found the slot elsewhere. As good as a reconnect for
                    // the takeover grace: others may have been held up as long.
                    self.connected_since = Some(Instant::now());
                }
                self.answered();
                Ok(v)
            }
            Err(e) => Err(self.failed(op, e)),
        }
    }

    /// The server answered: a backoff other links started is over (the bug: a link whose kept
    /// connection answered again after a freeze left the others failing at once until their
    /// backoff ran out, so a submission got 503 from a server that was serving).
    fn answered(&self) {
        let mut reach = lock(&self.reach);
        if reach.last_error.take().is_some() && LOG.ready() {
            log::warn!("Redis at {} is reachable again", self.server);
        }
        reach.retry_at = None;
        reach.backoff = BACKOFF_MIN;
    }

    fn attempt<T>(
        &mut self,
        blocks: Duration,
        f: &mut impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> RedisResult<T> {
        self.connection()?;
        self.sent = true;
        let conn = self.conn.as_mut().expect("connected just above");
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

    /// How long the current connection has been up (and answering without a stall).
    pub fn up_for(&self) -> Option<Duration> {
        self.connected_since.map(|t| t.elapsed())
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
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
    fn connection(&mut self) -> RedisResult<&mut Conn> {
        if self.conn.is_none() {
            let conn = self.connect()?;
            self.connected_since = Some(Instant::now());
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected just above"))
    }

    fn connect(&mut self) -> RedisResult<Conn> {
        self.generation = self.topology.generation();
        let mut conn = self.topology.connect(CONNECT_TIMEOUT)?;
        conn.bound()?;
        let info: String = conn.on_node_of(redis::cmd("INFO").arg("replication"), &self.key)?;
        let (_, replicas) = replication(&info);
        self.topology.set_replicas(replicas);
        log::debug!(
            "Redis at {}: connected ({}; {replicas} replica(s) keep up)",
            self.server,
            self.what,
        );
        Ok(conn)
    }

    /// Turns a failure of `op` into the store's error; one that ends the connection drops it
    /// and starts (or doubles) the backoff.
    fn failed(&mut self, op: &'static str, e: RedisError) -> StoreError {
        let source = Arc::new(e);
        if ends_connection(&source) {
            // A demoted master (`READONLY`) or one that cannot be reached: the Sentinels are
            // asked again before the next connection (the Sentinel client spec).
            self.topology.forget_master();
            self.conn = None;
            self.connected_since = None;
            let mut reach = lock(&self.reach);
            reach.retry_at = Some(Instant::now() + reach.backoff);
            reach.backoff = (reach.backoff * 2).min(BACKOFF_MAX);
            reach.last_error = Some(source.clone());
            drop(reach);
            // The start-up check says itself what its failure means (exit 2 for a refused
            // login or certificate, a warning otherwise): no "reconnecting" before an exit.
            if op != START_CHECK && crate::events::STORE_LOG.ready() {
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

/// Whether `e` means the connection cannot be used any more: it broke, or the node it
/// reaches is no longer the master (`READONLY`), or the cluster or the Sentinels have no
/// master for it now.
pub fn ends_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || is_readonly(e)
        || matches!(
            e.kind(),
            ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(ServerErrorKind::ClusterDown)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
        )
}

fn is_readonly(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// Whether `e` is the server refusing the login or the user's rights (`WRONGPASS`,
/// `NOAUTH`, `NOPERM`): a configuration error, not an outage.
pub fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}
