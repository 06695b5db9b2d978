//! `rediss+cluster://` (the `redis-tls` build): a 3-master Redis Cluster that speaks only TLS,
//! bus included, with a throwaway CA made by the `openssl` CLI; fc-init verifies every node's
//! certificate against that CA (`?ca=`), and another CA stops it at start.

use std::process::{Child, Command, Stdio};

use crate::servers::{available, Node};
use crate::util::*;
use crate::Instance;

pub fn run(dir: &TempDir, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} (`.ci/run` installs it when missing): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TLS-only redis-server's `--tls-*` arguments for the files [`certificates`] made in `dir`
/// (clients are not asked for certificates).
pub fn server_tls(dir: &TempDir) -> Vec<String> {
    let file = |f: &str| dir.path(f).display().to_string();
    vec![
        "--tls-auth-clients".into(),
        "no".into(),
        "--tls-cert-file".into(),
        file("node.pem"),
        "--tls-key-file".into(),
        file("node.key"),
        "--tls-ca-cert-file".into(),
        file("ca.pem"),
    ]
}

/// `ca.pem`/`ca.key`, and `node.pem`/`node.key` for IP 127.0.0.1 (server and client use: the
/// cluster bus is TLS both ways).
pub fn certificates(dir: &TempDir) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-subj",
        "/CN=fc-init test ca",
        "-x509",
        "-days",
        "1",
    ]);
    ca.extend([
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign"]);
    run(dir, "openssl", &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "node.key",
        "-subj",
        "/CN=fc-init test node",
        "-out",
        "node.csr",
    ]);
    run(dir, "openssl", &csr);
    dir.write(
        "node.ext",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    run(
        dir,
        "openssl",
        &[
            "x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "1",
            "-extfile", "node.ext", "-out", "node.pem",
        ],
    );
}

#[test]
fn a_tls_cluster_over_rediss_cluster_runs_the_queue() {
    if !available("tls cluster") {
        return;
    }
    let dir = TempDir::new("tls-cluster");
    certificates(&dir);
    let ca = dir.path("ca.pem").display().to_string();
    let files = server_tls(&dir);
    let mut tls = vec!["--tls-cluster", "yes"];
    tls.extend(files.iter().map(String::as_str));
    let servers: Vec<Node> = (0..3)
        .map(|i| {
            let bus = free_port().to_string();
            let cluster = ["--cluster-port", &bus, "--cluster-enabled", "yes"];
            Node::start_tls(&format!("tls-cluster-n{i}"), &[&cluster[..], &tls].concat())
        })
        .collect();
    let ports: Vec<u16> = servers.iter().map(|n| n.port).collect();
    let cli = |port: u16, args: &[&str]| {
        let mut all = vec!["--tls", "--cacert", &ca, "-p"];
        let port = port.to_string();
        all.push(&port);
        all.extend(args);
        Command::new("redis-cli")
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    for port in &ports {
        wait_for("a TLS node answers", || {
            cli(*port, &["ping"]).contains("PONG").then_some(())
        });
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = vec!["--tls", "--cacert", &ca, "--cluster", "create"];
    create.extend(nodes.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    run(&dir, "redis-cli", &create);
    wait_for("the TLS cluster is ok", || {
        ports
            .iter()
            .all(|p| cli(*p, &["cluster", "info"]).contains("cluster_state:ok"))
            .then_some(())
    });
    // A CA that signed none of the nodes' certificates: a configuration error at start.
    let other = crate::tls_sentinel::other_ca(&dir);
    let foreign = format!("rediss+cluster://127.0.0.1:{}?ca={other}", ports[0]);
    let (_cfg_dir, cfg, _fx) = crate::config("tls-cluster-foreign", &foreign, "tls", "");
    let (code, out, err) = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .output();
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    let url = format!("rediss+cluster://127.0.0.1:{}?ca={ca}", ports[0]);
    let i = Instance::start("tls-cluster-i", &url, "tls", "");
    for n in 0..10 {
        assert_eq!(i.submit(&format!("tls-{n}"), "0").0, 202);
    }
    wait_for("every event ran over TLS", || {
        (i.runs().len() >= 10).then_some(())
    });
    let st = i.status();
    assert_eq!(st["form"], "cluster", "{st}");
}
