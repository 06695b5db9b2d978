//! A real `redis-server` for the tests: started by the test itself on a free port in a temp
//! directory (append-only file on, so a stop and restart keeps what it acknowledged), stopped
//! when dropped. Missing `redis-server` fails the test with the way out: `.ci/run` installs it.
//! A TLS-only one (`--port 0`) serves the `redis-tls` tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    tls: Option<Tls>,
}

/// How a TLS-only server is started, and reached.
#[cfg_attr(not(feature = "redis-tls"), allow(dead_code))]
pub struct Tls {
    /// `--tls-*` arguments: at least the certificate and key files.
    pub args: Vec<String>,
    /// The host of the URL: the name the certificate is checked for.
    pub host: &'static str,
    /// The CA file fc-init is given (`?ca=`).
    pub ca: PathBuf,
}

impl RedisServer {
    pub fn start(tag: &str) -> RedisServer {
        RedisServer::start_with(tag, None)
    }

    /// A server that speaks only TLS.
    #[cfg_attr(not(feature = "redis-tls"), allow(dead_code))]
    pub fn start_tls(tag: &str, tls: Tls) -> RedisServer {
        RedisServer::start_with(tag, Some(tls))
    }

    fn start_with(tag: &str, tls: Option<Tls>) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: TempDir::new(&format!("redis-{tag}")),
            child: None,
            tls,
        };
        server.run();
        server
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://HOST:PORT/0?ca=CA` for a TLS server.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}/0", self.port),
            Some(t) => format!("rediss://{}:{}/0?ca={}", t.host, self.port, t.ca.display()),
        }
    }

    fn run(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(tls) => command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .args(&tls.args),
        };
        let spawned = command
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: the Redis tests need it (Debian's redis-server \
                 package; `.ci/run` installs it when missing)"
            ),
            Err(e) => panic!("starting redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + WATCHDOG;
        // The tests' own client does not trust the test CA: a TLS server is up once it accepts.
        let up = |s: &RedisServer| match s.tls {
            None => s.query(&["PING"]).is_some(),
            Some(_) => std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok(),
        };
        while !up(self) {
            assert!(
                Instant::now() < deadline,
                "redis-server never answered PING"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server the way an operator would (SIGTERM: it writes its append-only file
    /// and exits), and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Starts a TLS server again on the same port and directory, serving the certificate
    /// of `args` (`--tls-*`) from now on: a certificate renewed by another CA.
    #[cfg_attr(not(feature = "redis-tls"), allow(dead_code))]
    pub fn restart_with_tls(&mut self, args: Vec<String>) {
        self.stop();
        if let Some(tls) = &mut self.tls {
            tls.args = args;
        }
        self.run();
    }

    /// One command; its reply as text (arrays flattened, one element a line), or `None` when
    /// the server does not answer (always, for a TLS server).
    pub fn query(&self, args: &[&str]) -> Option<String> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let value: redis::Value = cmd.query(&mut conn).ok()?;
        Some(flatten(&value))
    }
}

fn flatten(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(n) => n.to_string(),
        redis::Value::Okay => "OK".into(),
        redis::Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
