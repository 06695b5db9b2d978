//! Where the fleet's Redis is, in each form `async.redis_url` can take (docs/reference.md §10),
//! and how a link gets a connection to the node that holds the queue now.
//!
//! - **Standalone** (`redis://`, `rediss://`, `unix://`): one server.
//! - **Cluster** (`redis+cluster://`): the redis crate's synchronous cluster client follows
//!   `MOVED` and `ASK` and refreshes its slot map on a redirect or `READONLY`. It does not
//!   refresh it when a node stops answering (it only reconnects to the same address), so a
//!   connection that fails is dropped whole and the next one is made from the URL's seeds
//!   plus every node seen since: a failover's new master is then found from whichever node
//!   still answers. Keyless commands that must reach the queue's own master (`WAIT`, `INFO`)
//!   are routed there by the queue's key. A new connection's node, and one whose answer
//!   came after a stall, must prove a master of the newest configuration
//!   ([`Topology::verify`]): an old master frozen through a failover answers as a master for
//!   a moment after it thaws. Once a newer master of the slot is seen, every link made
//!   before reconnects ([`Topology::generation`]): a kept connection's slot map would send
//!   its next call to the old master.
//! - **Sentinel** (`redis+sentinel://`): the Sentinels are asked for the master
//!   ([`super::sentinel`]: by hand, because the crate's synchronous Sentinel client has no
//!   read timeouts) and fc-init checks its `ROLE` on every new connection,
//!   forgets the master after a connection error or a `READONLY` answer (the Sentinel client
//!   spec's rule), and asks the Sentinels every second ([`Topology::follow`]): when they name
//!   another master, every link reconnects ([`Topology::generation`]), so no link keeps
//!   writing to a demoted master.
//!
//! Every connection has connect, read and write timeouts ([`REPLY_TIMEOUT`]): a node that
//! is frozen (SIGSTOP: it accepts and buffers, never answers) fails a call in bounded time,
//! like one that is gone.
//!
//! Pub/sub is sharded where the server has it (Redis 7): the subscriber listens on the node
//! that owns the queue's slot ([`super::subscriber`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Client, Cmd, Connection, ConnectionAddr, ConnectionInfo, ConnectionLike, ErrorKind,
    FromRedisValue, RedisConnectionInfo, RedisError, RedisResult, ServerErrorKind, Value,
};

use super::connect::{bound, node_info, Certs};
use super::sentinel::{Sentinels, Watchers};
use super::stale::{myself, newest_seen, owner_epoch, replaced, stale};
use crate::config::redis_url::{RedisAddr, RedisTarget};
use crate::events::signal::lock;

/// How the store is reached: shown by `ctl status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Standalone,
    Cluster,
    Sentinel,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Standalone => "standalone",
            Form::Cluster => "cluster",
            Form::Sentinel => "sentinel",
        }
    }
}

enum Kind {
    Single(Client),
    Cluster {
        seeds: Vec<ConnectionInfo>,
        /// Every node seen in a slot map since start (new seeds after a failover).
        known: Mutex<Vec<ConnectionInfo>>,
        login: RedisConnectionInfo,
        certs: Certs,
    },
    Sentinel {
        sentinels: Sentinels,
        /// The master as the Sentinels last named it (its `ROLE` checked then); `None`: ask.
        master: Mutex<Option<Client>>,
    },
}

/// The fleet's Redis, in its form.
pub struct Topology {
    kind: Kind,
    /// The queue's stream: its slot is the queue's.
    key: String,
    /// Bumped whenever the node serving the queue changes: links made before reconnect.
    generation: AtomicU64,
    /// On a cluster, the newest configuration epoch seen of a master of the queue's slot.
    owner_epoch: AtomicU64,
    /// Replicas of the queue's master that keep up (online, acknowledged within
    /// [`REPLICA_LAG_MAX`]), as last read.
    replicas: AtomicU64,
    /// `host:port` of the node serving the queue, and whether it said it is a master.
    serving: Mutex<Option<(String, bool)>>,
}

/// How long a reply may take (beyond a blocking command's own wait), and a write: a frozen
/// node costs a call this long at most. The scripts answer in milliseconds.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a cluster node may take to accept a connection and its handshake: the crate
/// reconnects to a node that stopped answering before each retry, so a frozen node costs
/// (retries + 1) × ([`REPLY_TIMEOUT`] + this) at most, well within a request's deadline.
const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long [`Topology::verify`] waits for a replica's view of the cluster.
const REPLICA_VIEW_TIMEOUT: Duration = Duration::from_millis(250);

/// A replica that has not acknowledged the replication stream for longer is not waited for
/// by `redis_min_replicas = "auto"` (a paused replica stays "connected" for `repl-timeout`).
pub const REPLICA_LAG_MAX: u64 = 2;

/// A connection to the node (or, on a cluster, the nodes) that holds the queue.
pub enum Conn {
    Plain(Connection),
    Cluster(Box<ClusterConnection>),
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Plain(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::Plain(c) => c.req_command(cmd),
            Conn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Plain(c) => c.check_connection(),
            Conn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Plain(c) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
        }
    }
}

impl Conn {
    pub fn set_read_timeout(&self, dur: Option<Duration>) -> RedisResult<()> {
        match self {
            Conn::Plain(c) => c.set_read_timeout(dur),
            Conn::Cluster(c) => c.set_read_timeout(dur),
        }
    }

    /// Read and write timeouts of [`REPLY_TIMEOUT`] (on a cluster: on every node's
    /// connection, those made later included).
    pub fn bound(&self) -> RedisResult<()> {
        match self {
            Conn::Plain(c) => bound(c, REPLY_TIMEOUT),
            Conn::Cluster(c) => {
                c.set_read_timeout(Some(REPLY_TIMEOUT))?;
                c.set_write_timeout(Some(REPLY_TIMEOUT))
            }
        }
    }

    /// A command without keys (`WAIT`, `INFO`, `ROLE`, `CLUSTER SLOTS`) on the master that
    /// holds `key`: on a cluster the crate would send it to a random node.
    pub fn on_node_of<T: FromRedisValue>(&mut self, cmd: &Cmd, key: &str) -> RedisResult<T> {
        self.routed(cmd, key, SlotAddr::Master)
    }

    /// [`Conn::on_node_of`] on the master, or (`SlotAddr::ReplicaRequired`) on a replica of
    /// the slot when the slot map names one.
    fn routed<T: FromRedisValue>(&mut self, cmd: &Cmd, key: &str, to: SlotAddr) -> RedisResult<T> {
        match self {
            Conn::Plain(c) => cmd.query(c),
            Conn::Cluster(c) => {
                let route = Route::with_key(key.as_bytes(), to);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = c.route_command(cmd, routing)?;
                redis::from_redis_value(value).map_err(RedisError::from)
            }
        }
    }
}

impl Topology {
    /// The topology of a parsed URL; `client` makes the standalone form's client (TLS and
    /// CA handled by the backend).
    pub fn new(
        target: RedisTarget,
        key: &str,
        single: impl FnOnce(RedisTarget) -> Result<Client, String>,
    ) -> Result<Topology, String> {
        let mut login = RedisConnectionInfo::default().set_db(target.db);
        if let Some(user) = &target.username {
            login = login.set_username(user);
        }
        if let Some(password) = &target.password {
            login = login.set_password(password);
        }
        let kind = match target.addr {
            RedisAddr::Cluster { nodes, tls, ca } => Kind::Cluster {
                seeds: nodes
                    .iter()
                    .map(|(h, p)| node_info(h, *p, tls, &login))
                    .collect(),
                known: Mutex::new(Vec::new()),
                login,
                certs: Certs::of(&ca)?,
            },
            RedisAddr::Sentinel {
                sentinels,
                master,
                tls,
                ca,
                username,
                password,
            } => {
                let watchers = Watchers {
                    nodes: &sentinels,
                    username: username.as_deref(),
                    password: password.as_deref(),
                };
                Kind::Sentinel {
                    sentinels: Sentinels::new(watchers, &master, login, tls, Certs::of(&ca)?)?,
                    master: Mutex::new(None),
                }
            }
            _ => Kind::Single(single(target)?),
        };
        Ok(Topology {
            kind,
            key: key.to_owned(),
            generation: AtomicU64::new(0),
            owner_epoch: AtomicU64::new(0),
            replicas: AtomicU64::new(0),
            serving: Mutex::new(None),
        })
    }

    pub fn form(&self) -> Form {
        match self.kind {
            Kind::Single(_) => Form::Standalone,
            Kind::Cluster { .. } => Form::Cluster,
            Kind::Sentinel { .. } => Form::Sentinel,
        }
    }

    /// Changes whenever links made before must reconnect.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn replicas(&self) -> u64 {
        self.replicas.load(Ordering::Acquire)
    }

    /// The node serving the queue (`host:port`) and whether it is the master, as last seen.
    pub fn serving(&self) -> Option<(String, bool)> {
        lock(&self.serving).clone()
    }

    /// A new connection to the queue's node (on a cluster: to the cluster).
    pub fn connect(&self, timeout: Duration) -> RedisResult<Conn> {
        match &self.kind {
            Kind::Single(client) => Ok(Conn::Plain(client.get_connection_with_timeout(timeout)?)),
            Kind::Cluster {
                seeds,
                known,
                login,
                certs,
            } => {
                let mut nodes = seeds.clone();
                for node in lock(known).iter() {
                    if !nodes.iter().any(|n| n.addr() == node.addr()) {
                        nodes.push(node.clone());
                    }
                }
                let mut b = ClusterClientBuilder::new(nodes)
                    // The crate tries a node that stopped answering again, reconnecting
                    // first, on every retry: each try is bounded, and there are few of them.
                    .connection_timeout(timeout.min(CLUSTER_CONNECT_TIMEOUT))
                    .response_timeout(REPLY_TIMEOUT)
                    // A redirect or two (a migration: MOVED then ASK), not minutes of retries
                    // during a failover: the link's backoff takes over from there.
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(200);
                if let Some(user) = login.username() {
                    b = b.username(user);
                }
                if let Some(password) = login.password() {
                    b = b.password(password);
                }
                #[cfg(feature = "redis-tls")]
                if let Some(certs) = certs.get() {
                    b = b.certs(certs.clone());
                }
                #[cfg(not(feature = "redis-tls"))]
                let _ = certs;
                let client: ClusterClient = b.build()?;
                let conn = client.get_connection()?;
                // The builder sets the read timeout of every node's connection; not the write.
                conn.set_write_timeout(Some(REPLY_TIMEOUT))?;
                let mut conn = Conn::Cluster(Box::new(conn));
                // The slot map may come from an old master just thawed (the URL's seed is
                // asked first): nothing is written through it unless its master is current.
                self.verify(&mut conn)?;
                Ok(conn)
            }
            Kind::Sentinel { .. } => {
                let client = self.master()?;
                let mut conn = client.get_connection_with_timeout(timeout)?;
                bound(&conn, REPLY_TIMEOUT)?;
                // The Sentinel client spec: check ROLE before writing.
                let role: Value = redis::cmd("ROLE").query(&mut conn)?;
                if !is_master(&role) {
                    self.forget_master();
                    return Err(not_master(&client));
                }
                Ok(Conn::Plain(conn))
            }
        }
    }

    /// A plain connection for pub/sub: the standalone server, the Sentinel's master, or on
    /// a cluster the node `at` (`host:port`, where a `MOVED` pointed), else the node last seen
    /// serving the queue, else any node that answers (the subscriber follows `MOVED` from
    /// there: [`super::subscriber`]).
    pub fn pubsub_connection(
        &self,
        timeout: Duration,
        at: Option<&str>,
    ) -> RedisResult<Connection> {
        let conn = match &self.kind {
            Kind::Single(client) => client.get_connection_with_timeout(timeout),
            Kind::Sentinel { .. } => self.master()?.get_connection_with_timeout(timeout),
            Kind::Cluster {
                seeds,
                known,
                certs,
                login,
            } => {
                let tls = self.cluster_tls();
                let serving = self.serving().map(|(node, _)| node);
                let first = at.map(str::to_owned).or(serving);
                let first = first.as_deref().and_then(|node| {
                    let (host, port) = node.rsplit_once(':')?;
                    Some(node_info(host, port.parse().ok()?, tls, login))
                });
                let mut nodes: Vec<ConnectionInfo> = first.into_iter().collect();
                nodes.extend(lock(known).iter().cloned());
                nodes.extend(seeds.iter().cloned());
                let mut last = None;
                for node in nodes {
                    match certs
                        .client(node)
                        .and_then(|c| c.get_connection_with_timeout(timeout))
                    {
                        Ok(conn) => return bound(&conn, REPLY_TIMEOUT).map(|()| conn),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    RedisError::from((ErrorKind::Io, "no cluster node to subscribe on"))
                }))
            }
        }?;
        bound(&conn, REPLY_TIMEOUT)?;
        Ok(conn)
    }

    /// Whether the cluster's nodes speak TLS (as its seeds do).
    fn cluster_tls(&self) -> bool {
        matches!(&self.kind, Kind::Cluster { seeds, .. }
            if seeds.first().is_some_and(|s| matches!(s.addr(), ConnectionAddr::TcpTls { .. })))
    }

    /// The master the Sentinels name (asked when not known).
    fn master(&self) -> RedisResult<Client> {
        let Kind::Sentinel { sentinels, master } = &self.kind else {
            return Err(RedisError::from((
                ErrorKind::Client,
                "not a Sentinel topology",
            )));
        };
        let mut current = lock(master);
        if let Some(client) = &*current {
            return Ok(client.clone());
        }
        let client = sentinels.master()?;
        *current = Some(client.clone());
        Ok(client)
    }

    /// After a connection error or `READONLY`: the Sentinels are asked again before the
    /// next connection, and every link reconnects.
    pub fn forget_master(&self) {
        if let Kind::Sentinel { master, .. } = &self.kind {
            if lock(master).take().is_some() {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Called every second, whether the master answers or not: asks the Sentinels whether
    /// the master moved; when it did, every link reconnects (to the new one).
    pub fn follow(&self) {
        let Kind::Sentinel { sentinels, master } = &self.kind else {
            return;
        };
        // A Sentinel that cannot answer now changes nothing: the links find out.
        let Ok(named) = sentinels.master() else {
            return;
        };
        let mut current = lock(master);
        let moved = current
            .as_ref()
            .is_some_and(|c| c.get_connection_info().addr() != named.get_connection_info().addr());
        if moved {
            log::warn!(
                "Redis Sentinel: the master is now {}",
                shown(named.get_connection_info())
            );
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        if moved || current.is_none() {
            *current = Some(named);
        }
    }

    /// Called every second on the housekeeping's connection: records the cluster's nodes,
    /// and reads the queue's node: its address, its role and its replicas that keep up.
    pub fn watch(&self, conn: &mut Conn) -> RedisResult<()> {
        let addr = match &self.kind {
            Kind::Single(client) => Some(shown(client.get_connection_info())),
            Kind::Sentinel { master, .. } => lock(master)
                .as_ref()
                .map(|c| shown(c.get_connection_info())),
            Kind::Cluster { known, login, .. } => {
                let slots: Value =
                    conn.on_node_of(redis::cmd("CLUSTER").arg("SLOTS"), &self.key)?;
                let (nodes, owner) = cluster_nodes(&slots, slot_of(&self.key));
                let tls = self.cluster_tls();
                *lock(known) = nodes
                    .iter()
                    .map(|(h, p)| node_info(h, *p, tls, login))
                    .collect();
                owner.map(|(h, p)| format!("{h}:{p}"))
            }
        };
        let info: String = conn.on_node_of(redis::cmd("INFO").arg("replication"), &self.key)?;
        let (master, replicas) = replication(&info);
        self.set_replicas(replicas);
        if let Some(addr) = addr {
            *lock(&self.serving) = Some((addr, master));
        }
        Ok(())
    }

    /// On a cluster: whether the node `conn` sends the queue's commands to is a master of
    /// the newest configuration: an error (a `READONLY` one, which ends the connection)
    /// when it says it is not a master, or when a replica of the slot names a master of the
    /// slot with a newer configuration epoch. Elsewhere nothing to check.
    ///
    /// Why: a master that was frozen (SIGSTOP, a VM paused) while its replica was promoted
    /// still believes, for the few milliseconds after it thaws, that it owns the slot. It
    /// then runs the commands that waited in its sockets and answers them: a worker's
    /// blocked `XREADGROUP` (retried by the crate on the same connection) got a stale
    /// entry, and its START, sent on to the same node, started there an event the new
    /// master ran too (the bug: an event ran twice, or one stayed QUEUED after an entry id
    /// of the old master acknowledged the new master's entry of another event away). What
    /// the old master writes then is lost when it resyncs as a replica; only its answers
    /// did harm, so answers that may come from it are checked ([`super::link::Link`]: one
    /// after a stall or across a topology change, or a new connection's slot map), and a
    /// newer master seen here makes every link made before reconnect (the bug, once answers
    /// after a stall were checked: a worker idle through the freeze sent its next read, on
    /// its kept connection, to the frozen old master less than a second before it thawed).
    pub fn verify(&self, conn: &mut Conn) -> RedisResult<()> {
        if !matches!(conn, Conn::Cluster(_)) {
            return Ok(());
        }
        let nodes = redis::cmd("CLUSTER").arg("NODES").clone();
        let slot = slot_of(&self.key);
        let own: String = conn.routed(&nodes, &self.key, SlotAddr::Master)?;
        // A replica's view, when one answers soon: a frozen or loading replica must not
        // hold up every new connection (the crate tries a node three times).
        conn.set_read_timeout(Some(REPLICA_VIEW_TIMEOUT))?;
        let view = conn.routed::<String>(&nodes, &self.key, SlotAddr::ReplicaRequired);
        conn.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let other = view.ok().and_then(|view| owner_epoch(&view, slot));
        let claim = myself(&own, slot);
        // A newer master of the slot than any seen: links made before reconnect (a kept
        // connection's slot map still names the old master, which may thaw any moment).
        let seen = newest_seen(claim, other);
        let before = self.owner_epoch.fetch_max(seen, Ordering::AcqRel);
        if replaced(before, seen) {
            log::info!("Redis Cluster: the queue's slot has a newer master (configuration epoch {seen}); every link reconnects");
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        match stale(claim, other) {
            None => Ok(()),
            Some(why) => {
                log::warn!(
                    "Redis Cluster: not writing through a stale master ({why}); reconnecting"
                );
                Err(RedisError::from((
                    ErrorKind::Server(ServerErrorKind::ReadOnly),
                    "a stale master of the queue's slot",
                    why,
                )))
            }
        }
    }

    /// Records the replica count a link read (at its connect, or the watch).
    pub fn set_replicas(&self, n: u64) {
        let before = self.replicas.swap(n, Ordering::AcqRel);
        if before != n {
            log::info!("Redis: the queue's master has {n} replica(s) that keep up (was {before})");
        }
    }
}

/// `host:port` (or the socket) of a node, without login.
fn shown(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(h, p)
        | ConnectionAddr::TcpTls {
            host: h, port: p, ..
        } => {
            format!("{h}:{p}")
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => format!("{other:?}"),
    }
}

fn not_master(client: &Client) -> RedisError {
    RedisError::from((
        ErrorKind::Server(ServerErrorKind::ReadOnly),
        "the node Sentinel named is not a master (ROLE)",
        shown(client.get_connection_info()),
    ))
}

/// Whether a `ROLE` reply says master.
pub fn is_master(role: &Value) -> bool {
    match role {
        Value::Array(items) => items.first().and_then(text).as_deref() == Some("master"),
        _ => false,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag, modulo 16384 (the Redis
/// Cluster specification; the crate keeps its own to itself).
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    let mut crc: u16 = 0;
    for byte in tagged.unwrap_or(bytes) {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// A node's host and port.
type HostPort = (String, u16);

/// Every node of a `CLUSTER SLOTS` reply, and the master of `slot`.
fn cluster_nodes(slots: &Value, slot: u16) -> (Vec<HostPort>, Option<HostPort>) {
    let mut nodes: Vec<HostPort> = Vec::new();
    let mut owner = None;
    let Value::Array(ranges) = slots else {
        return (nodes, owner);
    };
    let node = |v: &Value| -> Option<HostPort> {
        let Value::Array(n) = v else { return None };
        let host = text(n.first()?)?;
        let port = match n.get(1)? {
            Value::Int(p) => u16::try_from(*p).ok()?,
            other => text(other)?.parse().ok()?,
        };
        Some((host, port))
    };
    for range in ranges {
        let Value::Array(r) = range else { continue };
        let bound = |i: usize| match r.get(i) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        let (Some(start), Some(end)) = (bound(0), bound(1)) else {
            continue;
        };
        for (i, n) in r.iter().enumerate().skip(2) {
            if let Some(n) = node(n) {
                if i == 2 && (start..=end).contains(&i64::from(slot)) {
                    owner = Some(n.clone());
                }
                if !nodes.contains(&n) {
                    nodes.push(n);
                }
            }
        }
    }
    (nodes, owner)
}

/// From `INFO replication`: whether the node is a master, and how many of its replicas are
/// online and acknowledged within [`REPLICA_LAG_MAX`] seconds.
pub fn replication(info: &str) -> (bool, u64) {
    let mut master = false;
    let mut healthy = 0;
    for line in info.lines().map(str::trim) {
        if line == "role:master" {
            master = true;
        }
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        if !(name.starts_with("slave") && name[5..].chars().all(|c| c.is_ascii_digit())) {
            continue;
        }
        let field = |k: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        let online = field("state") == Some("online");
        let lag = field("lag").and_then(|l| l.parse::<u64>().ok());
        if online && lag.is_some_and(|l| l <= REPLICA_LAG_MAX) {
            healthy += 1;
        }
    }
    (master, healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_that_keep_up_are_counted() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
            slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n\
            slave1:ip=127.0.0.1,port=7002,state=online,offset=10,lag=9\r\n\
            slave2:ip=127.0.0.1,port=7003,state=wait_bgsave,offset=0,lag=0\r\n\
            slave_read_repl_offset:10\r\n";
        assert_eq!(replication(info), (true, 1));
        assert_eq!(replication("# Replication\r\nrole:slave\r\n"), (false, 0));
    }

    #[test]
    fn the_owner_of_a_slot_is_found_in_cluster_slots() {
        let n = |h: &str, p: i64| {
            Value::Array(vec![
                Value::BulkString(h.as_bytes().to_vec()),
                Value::Int(p),
            ])
        };
        let slots = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), n("a", 1), n("b", 2)]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                n("c", 3),
                n("d", 4),
            ]),
        ]);
        let (nodes, owner) = cluster_nodes(&slots, 14220);
        assert_eq!(owner, Some(("c".into(), 3)));
        assert_eq!(nodes.len(), 4);
        assert_eq!(slot_of("fc-init:{q}:stream"), slot_of("q"));
        // The specification's vector, and what `CLUSTER KEYSLOT` answers.
        assert_eq!(slot_of("123456789"), 0x31C3);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("a{}b"), slot_of("a{}b"));
    }

    #[test]
    fn role_says_master() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert!(is_master(&Value::Array(vec![
            bulk("master"),
            Value::Int(0)
        ])));
        assert!(!is_master(&Value::Array(vec![bulk("slave")])));
    }
}
