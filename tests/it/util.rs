//! Test harness: runs the real `fc-init` binary against real processes and signals, either as a
//! child subreaper (plain `cargo test`) or as PID 1 of a new PID namespace
//! (`unshare --pid --fork --mount-proc`). Readiness is always a handshake (a line on stdout, a
//! file, a socket) under a deadline; a failing wait prints the command, its stdout and stderr.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails.
pub const WATCHDOG: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// fc-init is a normal child of the test and makes itself a child subreaper.
    Subreaper,
    /// fc-init is PID 1 of a fresh PID namespace.
    Pid1,
}

/// The modes available on this machine; PID 1 is skipped, with a printed reason, where
/// `unshare` is not permitted.
pub fn modes() -> Vec<Mode> {
    static PID1: OnceLock<bool> = OnceLock::new();
    let pid1 = *PID1.get_or_init(|| {
        let ok = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("note: `unshare --pid --fork --mount-proc` is not permitted here; PID 1 mode skipped");
        }
        ok
    });
    if pid1 {
        vec![Mode::Subreaper, Mode::Pid1]
    } else {
        vec![Mode::Subreaper]
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fc-init")
}

pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A private scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fc-init-it-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A builder for one fc-init run.
pub struct Run {
    mode: Mode,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    keep_stdin: bool,
    block_and_ignore: bool,
    program: Option<String>,
}

pub fn fc_init(mode: Mode) -> Run {
    Run {
        mode,
        args: Vec::new(),
        env: Vec::new(),
        stdin: None,
        keep_stdin: false,
        block_and_ignore: false,
        program: None,
    }
}

impl Run {
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Run {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<str>) -> Run {
        self.env.push((k.into(), v.as_ref().into()));
        self
    }

    pub fn stdin(mut self, data: &[u8]) -> Run {
        self.stdin = Some(data.to_vec());
        self
    }

    /// Keep fc-init's stdin open until [`Proc::close_stdin`]: a function blocked reading it
    /// stays alive as long as the test needs.
    pub fn keep_stdin_open(mut self) -> Run {
        self.keep_stdin = true;
        self
    }

    /// Start fc-init with many signals blocked and ignored, as a careless parent would.
    pub fn block_and_ignore_signals(mut self) -> Run {
        self.block_and_ignore = true;
        self
    }

    /// Runs fc-init through `path` (a symlink named `tini` or `dumb-init`) instead of the
    /// binary's own name.
    pub fn program(mut self, path: &std::path::Path) -> Run {
        self.program = Some(path.to_str().expect("UTF-8 path").to_owned());
        self
    }

    pub fn start(self) -> Proc {
        let program = self.program.clone().unwrap_or_else(|| bin().to_owned());
        let mut cmd = match self.mode {
            Mode::Subreaper => Command::new(&program),
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc", "--kill-child", &program]);
                c
            }
        };
        cmd.args(&self.args);
        cmd.env_remove("FC_INIT_CONFIG")
            .env_remove("FC_INIT_LOG")
            .env_remove("NOTIFY_SOCKET");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(if self.stdin.is_some() || self.keep_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if self.block_and_ignore {
            // SAFETY: only sigprocmask and signal between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    for sig in [
                        libc::SIGUSR1,
                        libc::SIGUSR2,
                        libc::SIGHUP,
                        libc::SIGTERM,
                        libc::SIGQUIT,
                        libc::SIGALRM,
                    ] {
                        libc::sigaddset(&mut set, sig);
                    }
                    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    for sig in [
                        libc::SIGINT,
                        libc::SIGPIPE,
                        libc::SIGWINCH,
                        libc::SIGUSR2,
                        libc::SIGTSTP,
                    ] {
                        libc::signal(sig, libc::SIG_IGN);
                    }
                    Ok(())
                });
            }
        }
        let description = format!("{:?} {:?} env {:?}", self.mode, self.args, self.env);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {description}: {e}"));
        let kept_stdin = if self.keep_stdin {
            child.stdin.take()
        } else {
            None
        };
        if let Some(data) = self.stdin {
            let mut stdin = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&data);
            });
        }
        let (tx, lines) = mpsc::channel();
        let stdout_log = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let log = stdout_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("piped stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(err);
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            mode: self.mode,
            child,
            stdin: kept_stdin,
            lines,
            stdout: stdout_log,
            stderr,
            description,
            status: None,
        }
    }

    /// Runs to completion and returns (exit code, stdout, stderr).
    pub fn output(self) -> (i32, String, String) {
        let mut p = self.start();
        let code = p.wait(WATCHDOG);
        (code, p.stdout(), p.stderr())
    }
}

pub struct Proc {
    pub mode: Mode,
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    description: String,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n--- command: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.description,
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits for the next stdout line satisfying `pred`, skipping others.
    pub fn expect_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.expect_line_within(what, WATCHDOG, pred)
    }

    /// The pid of fc-init itself, as seen from the test (outside the namespace in PID 1 mode).
    pub fn pid(&self) -> i32 {
        match self.mode {
            Mode::Subreaper => self.child.id() as i32,
            Mode::Pid1 => {
                let unshare = self.child.id();
                let path = format!("/proc/{unshare}/task/{unshare}/children");
                let pid = wait_for(&format!("fc-init forked by unshare {unshare}"), || {
                    std::fs::read_to_string(&path)
                        .ok()?
                        .split_whitespace()
                        .next()?
                        .parse::<i32>()
                        .ok()
                });
                pid
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits for fc-init to die of a signal (the test killed it); returns the signal.
    pub fn wait_signaled(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        let status = wait_for("fc-init to die", || {
            self.child.try_wait().expect("try_wait")
        });
        self.status = Some(status);
        status
            .signal()
            .unwrap_or_else(|| self.fail(&format!("fc-init exited instead: {status:?}")))
    }

    /// Waits for fc-init to exit; returns its exit code. Kills it and fails after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                // Let the reader threads collect the last output.
                let _ = wait_until(Instant::now() + Duration::from_secs(5), || {
                    Arc::strong_count(&self.stdout) == 1 && Arc::strong_count(&self.stderr) == 1
                });
                return status
                    .code()
                    .unwrap_or_else(|| self.fail(&format!("fc-init died: {status:?}")));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                self.fail("fc-init did not exit in time");
            }
            // A child's exit is not an event a test thread can block on without racing
            // `try_wait`; a short pause between checks bounds only the latency of the test.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    /// Stops an fc-init the test did not wait for (a test that ends early, or a failing one)
    /// the way a user would: SIGTERM, then a second SIGTERM (skip the waits), then SIGKILL.
    /// A SIGKILL first would leave its function, in a process group of its own, running as an
    /// orphan of the machine's init; in PID 1 mode `unshare --kill-child` takes the namespace
    /// down with it.
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let pid = self.child.id() as i32;
        if self.mode == Mode::Subreaper {
            for _ in 0..2 {
                // SAFETY: kill(2) on our own child, which is not reaped yet (no pid reuse).
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(5);
                if wait_until(deadline, || matches!(self.child.try_wait(), Ok(Some(_)))) {
                    return;
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, under the watchdog.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls `f` until it is true or `deadline` passes; returns whether it became true.
pub fn wait_until(deadline: Instant, mut f: impl FnMut() -> bool) -> bool {
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Children of `pid` with their state letter ('Z' for zombies), read from /proc.
pub fn children_of(pid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = rest.split(' ');
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|s| s.parse::<i32>().ok()) == Some(pid) {
            out.push((p, state));
        }
    }
    out
}

/// A port on 127.0.0.1 that was free a moment ago, taken below the kernel's ephemeral range
/// (ip_local_port_range, 32768 and up by default): a port picked from that range can be taken
/// by some test's outgoing connection before fc-init binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread the test processes (pid) and the tests within one (counter) over the range.
    let base = 20_000 + (std::process::id() % 1000) * 12;
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (20_000 + (base - 20_000 + n * 7) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

/// Whether something accepts connections on the unix socket `path` (a socket file can exist a
/// moment before its listener, or be left by a killed process).
pub fn accepting(path: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// A test function run by fc-init: the Python fixture with its socket, record file and a free
/// listen port in `dir`.
pub struct FixtureConfig {
    pub admin: PathBuf,
    pub port: u16,
    pub record: PathBuf,
    pub socket: PathBuf,
}

impl FixtureConfig {
    /// Writes `fc-init.toml` in `dir`: `[function]` running the fixture with `fixture_env`, then
    /// `extra` (more sections) appended verbatim. Returns the config path and the details.
    pub fn write(
        dir: &TempDir,
        fixture_env: &[(&str, &str)],
        function_extra: &str,
        extra: &str,
    ) -> (PathBuf, FixtureConfig) {
        let port = free_port();
        let record = dir.path("record.jsonl");
        let socket = dir.path("fn.sock");
        let mut env = format!("FIXTURE_RECORD = {:?}", record.display().to_string());
        for (k, v) in fixture_env {
            env.push_str(&format!(", {k} = {v:?}"));
        }
        let text = format!(
            "[function]\ncommand = [\"python3\", {fixture:?}]\nsocket = {socket:?}\nenv = {{ {env} }}\n{function_extra}\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nsocket = {admin:?}\n\n{extra}\n",
            fixture = fixture("function.py"),
            socket = socket.display().to_string(),
            admin = dir.path("admin.sock").display().to_string(),
        );
        // Each fc-init needs its own event store: the store is locked by the one using it.
        let text = match extra.contains("[async]") {
            true => text,
            false => format!(
                "{text}\n[async]\nstore = {:?}\n",
                dir.path("events.db").display().to_string()
            ),
        };
        let path = dir.write("fc-init.toml", &text);
        (
            path,
            FixtureConfig {
                admin: dir.path("admin.sock"),
                port,
                record,
                socket,
            },
        )
    }

    /// The fixture's record so far, one JSON value per line.
    pub fn record(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record line {l:?}: {e}"))
            })
            .collect()
    }

    /// The pid of the fixture's first instance (its process group, too).
    pub fn first_pid(&self) -> i32 {
        let record = self.record();
        let start = record.iter().find(|r| r["event"] == "start");
        start
            .and_then(|r| r["pid"].as_i64())
            .expect("the fixture has started") as i32
    }

    /// The recorded requests to `path`.
    pub fn requests(&self, path: &str) -> Vec<serde_json::Value> {
        self.record()
            .into_iter()
            .filter(|r| r["event"] == "request" && r["path"] == path)
            .collect()
    }
}

/// SIGKILLs fc-init and the process group of the fixture's first instance, so that nothing gets
/// to clean up (a crash of the whole instance), and reaps fc-init.
pub fn kill_instance(mut p: Proc, fx: &FixtureConfig) -> Proc {
    let function_pid = fx.first_pid();
    // SAFETY: kill(2) on processes this test started.
    unsafe {
        libc::kill(p.pid(), libc::SIGKILL);
        libc::kill(-function_pid, libc::SIGKILL);
    }
    assert_eq!(p.wait_signaled(), libc::SIGKILL);
    p
}

/// One request over the admin socket; returns (status, body).
pub fn admin_get(socket: &std::path::Path, path: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    std::io::Write::write_fmt(
        &mut s,
        format_args!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad answer {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sends one request with `Connection: close` to 127.0.0.1:`port`; returns the status, the
/// headers (lower-cased names) and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to port {port}: {e}"));
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    split_answer(&raw)
}

/// A whole HTTP answer read to its end: the status, the headers (lower-cased names) and the
/// body.
pub fn split_answer(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// The first value of header `name` (lower case) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Proc {
    /// [`Proc::expect_line`] with a deadline of its own, for a line that must come soon (a
    /// behaviour that would otherwise only show after some long timeout of fc-init's).
    pub fn expect_line_within(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no line within {timeout:?}: {what}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("stdout closed before a line: {what}"))
                }
            }
        }
    }
}

/// Keeps an fc-init started without a config file out of the shared default runtime directory
/// (`/run/fc-init` as root), where concurrent tests would meet each other's admin socket and
/// event store: both, and with `socket` the function's socket too, go into `dir`.
pub fn isolated(run: Run, dir: &TempDir, socket: bool) -> Run {
    let run = run
        .env(
            "FC_INIT_ADMIN_SOCKET",
            dir.path("admin.sock").to_str().unwrap(),
        )
        .env(
            "FC_INIT_ASYNC_STORE",
            dir.path("events.db").to_str().unwrap(),
        );
    match socket {
        true => run.env(
            "FC_INIT_FUNCTION_SOCKET",
            dir.path("fn.sock").to_str().unwrap(),
        ),
        false => run,
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_port(p: &Proc, port: u16) {
    let deadline = Instant::now() + WATCHDOG;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            p.fail(&format!("nothing accepted on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One metric's value in the admin API's `/metrics`: the number after the line that starts
/// with `line_start`.
pub fn metric(fx: &FixtureConfig, line_start: &str) -> u64 {
    let (_, text) = admin_get(&fx.admin, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in {text}"))
}

/// One `GET path` on the admin socket `socket`, the whole answer: the status, the headers
/// (lower-cased names) and the body.
pub fn admin_raw(socket: &std::path::Path, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut c = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    c.set_read_timeout(Some(WATCHDOG)).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    split_answer(&raw)
}

/// `fc-init ctl --socket ADMIN ARGS…`, run to its end.
pub fn ctl_output(admin: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut ctl = std::process::Command::new(bin());
    ctl.args([
        "ctl",
        "--socket",
        admin.to_str().expect("a UTF-8 socket path"),
    ]);
    ctl.args(args).output().expect("run fc-init ctl")
}

/// Starts fc-init in `dir` with `python3 SCRIPT ARGS…` (a fixture of tests/fixtures/) as its
/// function, `function` and `server` more keys of those sections (`env = { … }`, `timeout`,
/// `http2`, …), and the function's socket, the admin socket and the event store in `dir`.
/// Returns it and its port once its listener accepts (the instance may not be ready yet).
pub fn start_with_fixture(
    dir: &TempDir,
    script: &str,
    args: &[&str],
    function: &str,
    server: &str,
) -> (Proc, u16) {
    let port = free_port();
    let mut command = format!("\"python3\", {:?}", fixture(script));
    for arg in args {
        command.push_str(&format!(", {arg:?}"));
    }
    let text = format!(
        "[function]\ncommand = [{command}]\nsocket = {socket:?}\n{function}\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\n{server}\n\
         [admin]\nsocket = {admin:?}\n[async]\nstore = {store:?}\n",
        socket = dir.path("fn.sock").display().to_string(),
        admin = dir.path("admin.sock").display().to_string(),
        store = dir.path("events.db").display().to_string(),
    );
    let cfg = dir.write("fc-init.toml", &text);
    let p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .start();
    wait_port(&p, port);
    (p, port)
}
