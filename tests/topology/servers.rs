//! Real Redis topologies on loopback ports in temp directories, started and stopped by the
//! tests: single nodes (with replicas), a 3-master + 3-replica Redis Cluster (`redis-cli
//! --cluster create`), and a master with replicas watched by three Sentinels
//! (`redis-server --sentinel`). Readiness is a handshake under a deadline (PING, `cluster_state:ok`,
//! a replica's `master_link_status:up`, Sentinels naming the master).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// Whether `redis-server` and `redis-cli` are here; when not, the caller skips with the reason.
pub fn available(test: &str) -> bool {
    let ok = ["redis-server", "redis-cli"].iter().all(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        eprintln!("skipped {test}: redis-server or redis-cli is not installed (.ci/run installs redis-server)");
    }
    ok
}

/// One redis-server.
pub struct Node {
    pub port: u16,
    pub dir: TempDir,
    args: Vec<String>,
    /// Listening on its TLS port only (`--port 0`).
    tls: bool,
    child: Option<Child>,
}

impl Node {
    pub fn start(tag: &str, args: &[&str]) -> Node {
        Node::launch(tag, args, false)
    }

    /// A server that speaks only TLS, on `port` (`args` give its `--tls-*` files). Not waited
    /// for: only a TLS client can tell that it answers.
    #[cfg_attr(not(feature = "redis-tls"), allow(dead_code))]
    pub fn start_tls(tag: &str, args: &[&str]) -> Node {
        Node::launch(tag, args, true)
    }

    fn launch(tag: &str, args: &[&str], tls: bool) -> Node {
        let mut node = Node {
            port: free_port(),
            dir: TempDir::new(tag),
            args: args.iter().map(|a| a.to_string()).collect(),
            tls,
            child: None,
        };
        node.run();
        node
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        match self.tls {
            true => cmd.args(["--port", "0", "--tls-port", &port]),
            false => cmd.args(["--port", &port]),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        if self.tls {
            return;
        }
        // Any answer will do: one with a password answers NOAUTH.
        wait_for(
            &format!("redis-server on {} answering PING", self.port),
            || match self.try_query(&["PING"]) {
                Ok(_) => Some(()),
                Err(e) if e.code().is_some() => Some(()),
                Err(_) => None,
            },
        );
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
    }

    /// Starts it again on the same port; `empty`: its data is gone (a host that lost its disk).
    pub fn restart(&mut self, empty: bool) {
        self.kill();
        if empty {
            for entry in std::fs::read_dir(&self.dir.0).unwrap().flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
                let _ = std::fs::remove_file(entry.path());
            }
        }
        self.run();
    }

    pub fn try_query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        query_at(self.port, args)
    }

    /// One command; its reply as text (arrays flattened, one element a line).
    pub fn query(&self, args: &[&str]) -> String {
        flatten(
            &self
                .try_query(args)
                .unwrap_or_else(|e| panic!("{args:?} on {}: {e}", self.port)),
        )
    }

    pub fn info(&self, section: &str) -> String {
        self.try_query(&["INFO", section])
            .map(|v| flatten(&v))
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGKILL ends a stopped (SIGSTOP) server too.
        self.kill();
    }
}

/// One command as the default user with `password`; its reply as text ("" on failure).
/// `redis-server CONF --sentinel`, quiet (its log goes where CONF says).
pub fn spawn_sentinel(conf: &std::path::Path) -> Child {
    Command::new("redis-server")
        .arg(conf)
        .arg("--sentinel")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server --sentinel")
}

pub fn query_auth(port: u16, password: &str, args: &[&str]) -> String {
    let run = || -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}/"))?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    };
    run().map(|v| flatten(&v)).unwrap_or_default()
}

pub fn query_at(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}

pub fn flatten(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(n) => n.to_string(),
        redis::Value::Okay => "OK".into(),
        redis::Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join("\n"),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        _ => String::new(),
    }
}

/// A field of an `INFO` text.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
        .map(str::to_owned)
}

/// Waits, under the watchdog, until `f` holds.
pub fn until(what: &str, mut f: impl FnMut() -> bool) {
    wait_for(what, || f().then_some(()));
}

/// A 3-master + 3-replica Redis Cluster.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// One node of a cluster, not yet in it.
    fn node(tag: &str) -> Node {
        // The bus port would be port + 10000, past 65535 for a high free port.
        let bus = free_port().to_string();
        Node::start(
            tag,
            &[
                "--cluster-port",
                &bus,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
            ],
        )
    }

    pub fn start(tag: &str) -> Cluster {
        let nodes: Vec<Node> = (0..6)
            .map(|i| Cluster::node(&format!("{tag}-{i}")))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(Node::addr))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        until(
            "the cluster is ok on every node, every replica in sync",
            || {
                cluster.nodes.iter().all(|n| {
                    let info = n
                        .try_query(&["CLUSTER", "INFO"])
                        .map(|v| flatten(&v))
                        .unwrap_or_default();
                    let repl = n.info("replication");
                    info.contains("cluster_state:ok")
                        && (info_field(&repl, "role").as_deref() == Some("master")
                            || info_field(&repl, "master_link_status").as_deref() == Some("up"))
                })
            },
        );
        cluster
    }

    /// The index of the node that is master of `slot` now, asked of any live node.
    pub fn master_of(&self, slot: u16) -> Option<usize> {
        for n in &self.nodes {
            let Ok(redis::Value::Array(ranges)) = n.try_query(&["CLUSTER", "SLOTS"]) else {
                continue;
            };
            for r in ranges {
                let redis::Value::Array(r) = r else { continue };
                let (Some(redis::Value::Int(a)), Some(redis::Value::Int(b))) =
                    (r.first(), r.get(1))
                else {
                    continue;
                };
                if (*a..=*b).contains(&i64::from(slot)) {
                    let redis::Value::Array(m) = &r[2] else {
                        return None;
                    };
                    let port = match &m[1] {
                        redis::Value::Int(p) => *p as u16,
                        _ => return None,
                    };
                    return self.nodes.iter().position(|n| n.port == port);
                }
            }
        }
        None
    }

    pub fn slot(&self, key: &str) -> u16 {
        self.nodes[0]
            .query(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap()
    }

    pub fn node_id(&self, i: usize) -> String {
        self.nodes[i].query(&["CLUSTER", "MYID"])
    }

    /// A new node, made a replica of master `i`, in sync; its index.
    pub fn add_replica(&mut self, i: usize, tag: &str) -> usize {
        let node = Cluster::node(tag);
        let port = self.nodes[i].port.to_string();
        // The master's bus port ("<id> <ip>:<port>@<bus> myself,master ..."): not port + 10000.
        let nodes = self.nodes[i].query(&["CLUSTER", "NODES"]);
        let bus = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .and_then(|l| l.split_whitespace().nth(1)?.split_once('@'))
            .map(|(_, bus)| bus.split(',').next().unwrap_or(bus).to_owned())
            .expect("CLUSTER NODES names this node's bus port");
        node.query(&["CLUSTER", "MEET", "127.0.0.1", &port, &bus]);
        let master = self.node_id(i);
        until("the new node knows the master", || {
            node.try_query(&["CLUSTER", "NODES"])
                .is_ok_and(|v| flatten(&v).contains(&master))
        });
        node.query(&["CLUSTER", "REPLICATE", &master]);
        until("the new replica in sync", || {
            info_field(&node.info("replication"), "master_link_status").as_deref() == Some("up")
        });
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The replica of master `i` (the first one).
    pub fn replica_of(&self, i: usize) -> usize {
        let id = self.node_id(i);
        (0..self.nodes.len())
            .find(|j| {
                let repl = self.nodes[*j].info("replication");
                info_field(&repl, "role").as_deref() == Some("slave")
                    && info_field(&repl, "master_port").as_deref()
                        == Some(&self.nodes[i].port.to_string())
            })
            .unwrap_or_else(|| panic!("no replica of {id}"))
    }

    /// Moves `slot` from master `from` to master `to`, the way `redis-cli --cluster reshard`
    /// does: IMPORTING/MIGRATING, the keys in batches, then the new owner on both.
    pub fn migrate(&self, slot: u16, from: usize, to: usize) {
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        let slot_s = slot.to_string();
        let (src_id, dst_id) = (self.node_id(from), self.node_id(to));
        dst.query(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id]);
        src.query(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id]);
        loop {
            let keys = src.query(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "10"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = dst.port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().copied());
            src.query(&args);
        }
        for n in [dst, src] {
            n.query(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]);
        }
    }
}

/// A master, `replicas` replicas and three Sentinels (quorum 2) watching it as `mymaster`.
pub struct Sentinels {
    pub servers: Vec<Node>,
    pub sentinels: Vec<(u16, Child, TempDir)>,
}

pub const MASTER: &str = "mymaster";

impl Sentinels {
    pub fn start(tag: &str, replicas: usize) -> Sentinels {
        Sentinels::start_with(tag, replicas, None)
    }

    /// With `password`, every server requires it (and the Sentinels know it).
    pub fn start_with(tag: &str, replicas: usize, password: Option<&str>) -> Sentinels {
        let auth: Vec<&str> = match password {
            Some(p) => vec!["--requirepass", p, "--masterauth", p],
            None => vec![],
        };
        let master = Node::start(&format!("{tag}-m"), &auth);
        let mp = master.port.to_string();
        let mut servers = vec![master];
        for i in 0..replicas {
            let mut args = vec!["--replicaof", "127.0.0.1", &mp];
            args.extend(&auth);
            servers.push(Node::start(&format!("{tag}-r{i}"), &args));
        }
        until("the replicas in sync", || {
            servers[1..].iter().all(|r| {
                let info = match password {
                    Some(p) => query_auth(r.port, p, &["INFO", "replication"]),
                    None => r.info("replication"),
                };
                info_field(&info, "master_link_status").as_deref() == Some("up")
            })
        });
        let auth_pass = password
            .map(|p| format!("sentinel auth-pass {MASTER} {p}\n"))
            .unwrap_or_default();
        let sentinels = (0..3)
            .map(|i| {
                let dir = TempDir::new(&format!("{tag}-s{i}"));
                let port = free_port();
                let conf = dir.write(
                    "sentinel.conf",
                    &format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {MASTER} 127.0.0.1 {mp} 2\n\
                         sentinel down-after-milliseconds {MASTER} 1000\n\
                         sentinel failover-timeout {MASTER} 5000\n\
                         sentinel parallel-syncs {MASTER} 1\n{auth_pass}",
                        dir = dir.0.display()
                    ),
                );
                (port, spawn_sentinel(&conf), dir)
            })
            .collect();
        let s = Sentinels { servers, sentinels };
        until("every Sentinel knows the master and its replicas", || {
            s.sentinels.iter().all(|(port, _, _)| {
                query_at(*port, &["SENTINEL", "REPLICAS", MASTER])
                    .ok()
                    .is_some_and(|v| matches!(v, redis::Value::Array(r) if r.len() == replicas))
                    && query_at(*port, &["SENTINEL", "SENTINELS", MASTER])
                        .ok()
                        .is_some_and(|v| matches!(v, redis::Value::Array(r) if r.len() == 2))
            })
        });
        s
    }

    pub fn url(&self, login: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{login}{}/{MASTER}", hosts.join(","))
    }

    /// The master's port as the Sentinels name it now.
    pub fn master_port(&self) -> Option<u16> {
        for (port, _, _) in &self.sentinels {
            if let Ok(v) = query_at(*port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]) {
                if let Some(p) = flatten(&v).lines().nth(1).and_then(|p| p.parse().ok()) {
                    return Some(p);
                }
            }
        }
        None
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
