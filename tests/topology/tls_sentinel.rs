//! `rediss+sentinel://` (the `redis-tls` build, docs/reference.md §10): a master, one replica
//! and three Sentinels that all speak only TLS (replication and the Sentinels' own links
//! included), with a password on the master and one on the Sentinels, and a throwaway CA made
//! by the `openssl` CLI that fc-init trusts through `?ca=`. Submissions run; a SIGKILL of the
//! master mid-burst loses nothing acknowledged and fc-init serves the new master; a CA that
//! did not sign the certificates stops fc-init at start (exit 2) without a password shown.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::counts::failover_mid_burst;
use crate::servers::{available, flatten, info_field, spawn_sentinel, until, Node, MASTER};
use crate::tls::{certificates, run, server_tls};
use crate::util::*;
use crate::{config, Instance};

/// The master's and the replicas' password (`requirepass`, `masterauth`).
const PASS: &str = "MasterSecret";
/// The Sentinels' own password (`requirepass` on each, `sentinel sentinel-pass`).
const SENTINEL_PASS: &str = "WatcherSecret";

/// One command over TLS to the node on `port` (trusting `ca`), as the default user with
/// `password`; its reply as text.
fn query(port: u16, ca: &[u8], password: &str, args: &[&str]) -> redis::RedisResult<String> {
    let addr = redis::ConnectionAddr::TcpTls {
        host: "127.0.0.1".into(),
        port,
        insecure: false,
        tls_params: None,
    };
    let info = redis::IntoConnectionInfo::into_connection_info(addr)?.set_redis_settings(
        redis::RedisConnectionInfo::default().set_password(password.to_owned()),
    );
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    };
    let client = redis::Client::build_with_tls(info, certs)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<redis::Value>(&mut conn).map(|v| flatten(&v))
}

/// `other.pem`: a CA of another name that signed nothing of the topology.
pub fn other_ca(dir: &TempDir) -> String {
    let args = [
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "other.key",
        "-subj",
        "/CN=fc-init other ca",
        "-x509",
        "-days",
        "1",
        "-out",
        "other.pem",
    ];
    run(dir, "openssl", &args);
    dir.path("other.pem").display().to_string()
}

/// The master, its replica and three Sentinels (quorum 2), all TLS only.
struct Topology {
    servers: Vec<Node>,
    sentinels: Vec<(u16, Child, TempDir)>,
    ca: Vec<u8>,
}

impl Topology {
    fn start(dir: &TempDir) -> Topology {
        let file = |f: &str| dir.path(f).display().to_string();
        let files = server_tls(dir);
        let mut tls = vec!["--tls-replication", "yes"];
        tls.extend(files.iter().map(String::as_str));
        let ca = std::fs::read(dir.path("ca.pem")).unwrap();
        let auth = ["--requirepass", PASS, "--masterauth", PASS];
        let master = Node::start_tls("tls-sentinel-m", &[&tls[..], &auth].concat());
        let mp = master.port.to_string();
        let replica = Node::start_tls(
            "tls-sentinel-r",
            &[&tls[..], &auth, &["--replicaof", "127.0.0.1", &mp]].concat(),
        );
        let mut topo = Topology {
            servers: vec![master, replica],
            sentinels: Vec::new(),
            ca,
        };
        until("the TLS replica in sync", || {
            let info = topo.query(topo.servers[1].port, &["INFO", "replication"]);
            info_field(&info, "master_link_status").as_deref() == Some("up")
        });
        let mp = topo.servers[0].port;
        for i in 0..3 {
            let sdir = TempDir::new(&format!("tls-sentinel-s{i}"));
            let port = free_port();
            // `port 0`: the Sentinel listens on its TLS port only; `tls-replication yes`
            // makes it speak TLS to the servers and to the other Sentinels.
            let conf = sdir.write(
                "sentinel.conf",
                &format!(
                    "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {sd}\n\
                     tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
                     tls-auth-clients no\ntls-replication yes\n\
                     requirepass {SENTINEL_PASS}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {mp} 2\n\
                     sentinel auth-pass {MASTER} {PASS}\n\
                     sentinel sentinel-pass {SENTINEL_PASS}\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    sd = sdir.0.display(),
                    cert = file("node.pem"),
                    key = file("node.key"),
                    ca = file("ca.pem"),
                ),
            );
            topo.sentinels.push((port, spawn_sentinel(&conf), sdir));
        }
        until(
            "every TLS Sentinel knows the master, its replica and the others",
            || {
                topo.sentinels.iter().all(|(port, _, _)| {
                    let count = |what: &str| {
                        query(*port, &topo.ca, SENTINEL_PASS, &["SENTINEL", what, MASTER])
                            .map(|r| r.lines().filter(|l| *l == "name").count())
                            .unwrap_or(0)
                    };
                    count("REPLICAS") == 1 && count("SENTINELS") == 2
                })
            },
        );
        topo
    }

    /// A command to a server (with the servers' password); "" when it fails.
    fn query(&self, port: u16, args: &[&str]) -> String {
        query(port, &self.ca, PASS, args).unwrap_or_default()
    }

    /// The URL fc-init is given, trusting the CA file `ca`.
    fn url(&self, password: &str, ca: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "rediss+sentinel://:{password}@{}/{MASTER}?sentinel_pass={SENTINEL_PASS}&ca={ca}",
            hosts.join(",")
        )
    }

    /// The master's port as the Sentinels name it now.
    fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|(port, _, _)| {
            let args = ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER];
            let reply = query(*port, &self.ca, SENTINEL_PASS, &args).ok()?;
            reply.lines().nth(1)?.parse().ok()
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_tls_sentinel_topology_over_rediss_sentinel_survives_a_master_sigkill_and_refuses_a_foreign_ca()
{
    if !available("tls sentinel") {
        return;
    }
    let dir = TempDir::new("tls-sentinel");
    certificates(&dir);
    let other = other_ca(&dir);
    let mut topo = Topology::start(&dir);
    let ca = dir.path("ca.pem").display().to_string();

    // Certificates signed by a CA other than the one of `?ca=`: a configuration error at
    // start, saying why, and no password shown.
    let foreign = topo.url(PASS, &other);
    let (_cfg_dir, cfg, fx) = config("tls-sentinel-foreign", &foreign, "q", "");
    let (code, out, err) = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .output();
    assert_eq!(code, 2, "{out}{err}");
    eprintln!("a foreign CA at start:\n{}", err.trim_end());
    assert!(
        err.contains("does not verify")
            && err.contains("invalid peer certificate: UnknownIssuer")
            && err.contains(":****@")
            && err.contains("sentinel_pass=****"),
        "{err}"
    );
    for secret in [PASS, SENTINEL_PASS] {
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    }
    assert!(fx.record().is_empty(), "nothing was started");

    // The right CA: events are acknowledged and run, on the master the Sentinels name.
    let url = topo.url(PASS, &ca);
    let a = Instance::start("tls-sentinel-a", &url, "tlsq", "");
    let b = Instance::start("tls-sentinel-b", &url, "tlsq", "");
    for n in 0..10 {
        assert_eq!([&a, &b][n % 2].submit(&format!("tls-s-{n}"), "0").0, 202);
    }
    until("every event ran over TLS", || {
        a.runs().len() + b.runs().len() >= 10
    });
    let old = topo.servers[0].port;
    until("ctl status names the TLS master", || {
        let st = a.status();
        st["form"] == "sentinel"
            && st["node"] == format!("127.0.0.1:{old}").as_str()
            && st["master"] == true
    });

    // The master SIGKILLed mid-burst: the Sentinels promote the replica. (`auto` waits for the
    // replica while the master has it, so what was acknowledged before is on the new master;
    // the old master comes back with its data and is made a replica.)
    let fleet = [&a, &b];
    failover_mid_burst(
        &fleet,
        "TLS Sentinel failover",
        &mut topo,
        |t| t.servers[0].kill(),
        |t| t.master_port().is_some_and(|p| p != old),
        |t| t.servers[0].restart(false),
    );
    let new = topo.master_port().unwrap();
    until("ctl status names the new TLS master", || {
        let st = b.status();
        st["node"] == format!("127.0.0.1:{new}").as_str() && st["master"] == true
    });
    until("the old master is the new one's replica", || {
        let info = topo.query(old, &["INFO", "replication"]);
        info_field(&info, "role").as_deref() == Some("slave")
    });
}
