//! The supervisor: the one thread that owns every child process and every `waitpid`.
//!
//! It starts the function, runs the lifecycle hooks (Initializer, PreStop), forwards signals,
//! reaps every child (adopted orphans included), restarts per policy and runs the shutdown. It
//! sleeps in a single `poll` on two file descriptors — the signalfd and a wake pipe that other
//! threads write to after sending an [`Event`] — with the nearest deadline as the timeout.
//! Deadlines are `Instant`s: no fixed sleeps, and the shutdown ends the moment the last child is
//! reaped.
//!
//! Other threads never touch a child: HTTP hook calls run on short-lived threads that report
//! back with an event, and the traffic side asks for things (an initializer attempt, a drain
//! notice) the same way.

mod hooks;
pub mod reaper;
pub mod signals;
pub mod spawn;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::config::{Config, Endpoint, HookAction, OnFailure, RestartPolicy};
use crate::notify::notify;
use crate::state::{Phase, Shared, StopCause};
use hooks::HookKind;
use reaper::{Exit, Remaining};
use signals::{Disposition, Signals};
use spawn::{Credentials, SpawnError};

/// First delay before a crashed function is started again; doubles up to `restart_backoff_max`.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// What other threads tell the supervisor.
#[derive(Debug)]
pub enum Event {
    /// An HTTP hook thread finished (the token tells which attempt; stale ones are ignored).
    HookDone {
        token: u64,
        result: Result<(), String>,
    },
    /// A request is waiting while the initializer is in the `failed` state under `next-request`.
    InitRequested,
    /// The last in-flight request finished (checked during the drain).
    Drained,
    /// An operator terminated a running asynchronous event: SIGKILL the function's group
    /// (`graceful`: SIGTERM to the function process). Either way a new instance is started and
    /// initialized, whatever `restart` says.
    KillFunction { graceful: bool },
    /// FC called `/initialize` or `/pre-stop` (`request_id`: FC's own, used for the hook's
    /// lines and for the call to the function).
    Lifecycle {
        call: LifecycleCall,
        request_id: String,
        reply: Reply,
    },
}

/// FC's own lifecycle calls, under `server.platform = "fc"` (CONTRACT section 3): the traffic
/// side hands them to the supervisor, which serves them from the instance's own lifecycle, so
/// each hook runs exactly once per instance whoever asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleCall {
    /// FC's `POST /initialize`: answered once the instance is initialized (running the
    /// configured initializer attempt if none is under way; with no initializer configured,
    /// FC's call itself goes to the function as the initializer attempt).
    Initialize,
    /// FC's `GET /pre-stop`: runs PreStop once (a later SIGTERM does not run it again) and is
    /// answered when it has ended; with no PreStop configured, FC's call goes to the function
    /// as the PreStop.
    PreStop,
}

/// How a lifecycle call ended, for the answer to FC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleAnswer {
    /// The hook succeeded, or had already run for this instance: 200.
    Done,
    /// The instance could not be initialized: `InitializationError` with the reason.
    InitializationFailed(String),
    /// PreStop failed (`timed_out`: cut by its timeout).
    PreStopFailed { reason: String, timed_out: bool },
    /// fc-init is stopping, so the instance will not be initialized: `InstanceStopping`.
    Stopping,
}

/// Called once with the answer to a lifecycle call, on the supervisor thread: it must not
/// block (the traffic side queues the answer and wakes its event loop).
pub struct Reply(Box<dyn FnOnce(LifecycleAnswer) + Send>);

impl Reply {
    pub fn new(f: impl FnOnce(LifecycleAnswer) + Send + 'static) -> Reply {
        Reply(Box::new(f))
    }

    pub fn send(self, answer: LifecycleAnswer) {
        (self.0)(answer)
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// The sending side of the supervisor's event queue; cheap to clone into any thread.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Event>,
    wake: Arc<OwnedFd>,
}

impl Events {
    pub fn send(&self, event: Event) {
        // A closed receiver means the supervisor has returned and fc-init is exiting: nothing
        // is left to tell.
        if self.tx.send(event).is_ok() {
            // EAGAIN: the pipe is full, so a wake-up is already pending.
            let _ = nix::unistd::write(self.wake.as_fd(), &[1u8]);
        }
    }
}

/// Why the supervisor could not run at all.
#[derive(Debug)]
pub enum SupervisorError {
    /// Blocking signals or opening the signalfd failed.
    Signals(nix::Error),
    /// Creating the wake pipe failed.
    WakePipe(nix::Error),
    /// Making the private runtime directory failed.
    RuntimeDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The function could not be started (126/127).
    Spawn(SpawnError),
}

impl SupervisorError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SupervisorError::Spawn(e) => e.exit_code(),
            _ => 1,
        }
    }
}

impl std::fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SupervisorError::Signals(e) => write!(f, "setting up signal handling: {e}"),
            SupervisorError::WakePipe(e) => write!(f, "creating the wake pipe: {e}"),
            SupervisorError::RuntimeDir { path, source } => {
                write!(
                    f,
                    "creating the runtime directory {}: {source}",
                    path.display()
                )
            }
            SupervisorError::Spawn(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SupervisorError {}

/// The parts of fc-init the supervisor is wired to.
pub struct Setup {
    pub signals: Signals,
    pub events: Events,
    receiver: mpsc::Receiver<Event>,
    wake_rx: OwnedFd,
    pub shared: Arc<Shared>,
}

/// First step of start-up, before any thread exists: blocks signals, becomes subreaper and
/// creates the event queue.
pub fn setup() -> Result<Setup, SupervisorError> {
    let signals = Signals::block_all().map_err(SupervisorError::Signals)?;
    if std::process::id() != 1 {
        // Orphans of the function are re-parented to fc-init instead of the host's init, so they
        // are reaped and stopped with the rest. PR_SET_CHILD_SUBREAPER: prctl(2).
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            log::warn!(
                "cannot become child subreaper: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    let (wake_rx, wake_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(SupervisorError::WakePipe)?;
    let (tx, receiver) = mpsc::channel();
    Ok(Setup {
        signals,
        events: Events {
            tx,
            wake: Arc::new(wake_tx),
        },
        receiver,
        wake_rx,
        shared: Arc::new(Shared::default()),
    })
}

/// Makes the private runtime directory (mode 0700) if it does not exist.
pub fn make_private_dir(path: &Path) -> Result<(), SupervisorError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| SupervisorError::RuntimeDir {
            path: path.to_owned(),
            source,
        })
}

struct Function {
    pid: Pid,
    started: Instant,
    /// Initialized (or nothing to initialize): PreStop applies to it.
    ready: bool,
}

/// A lifecycle hook attempt under way.
struct Hook {
    token: u64,
    kind: HookKind,
    request_id: String,
    /// The supervisor's own bound on the attempt; the hook thread enforces the same one.
    deadline: Instant,
    /// The hook command's pid (its process group) when the hook is a command.
    command: Option<Pid>,
}

struct InitProgress {
    /// Failures since the last success, for `max_attempts`.
    failures: u32,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The first attempt of an instance waits up to `start_timeout` for the function to listen.
    first: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    PreStop,
    Drain { until: Instant },
    Grace { until: Instant },
    Killed,
}

struct Stop {
    stage: Stage,
    /// A second SIGTERM/SIGINT: skip the remaining waits.
    forced: bool,
    /// Exit status that overrides the function's (3 for a failed initialization).
    code: Option<i32>,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

pub struct Supervisor {
    cfg: Arc<Config>,
    setup: Setup,
    credentials: Option<Credentials>,
    function_env: BTreeMap<String, String>,
    function: Option<Function>,
    /// The function's process group, kept after it exits so what is left of it can be stopped.
    pgid: Option<Pid>,
    last_exit: Option<Exit>,
    respawn_at: Option<Instant>,
    restart_delay: Duration,
    hook: Option<Hook>,
    init: InitProgress,
    stop: Option<Stop>,
    /// waitpid said ECHILD: nothing left to reap.
    childless: bool,
    /// The next exit of the function is followed by a new instance, whatever `restart` says.
    respawn_forced: bool,
    /// The stop signal went to the function; adopted orphans get it once the function is gone.
    orphans_to_stop: bool,
}

impl Supervisor {
    pub fn new(cfg: Arc<Config>, setup: Setup, credentials: Option<Credentials>) -> Supervisor {
        let mut function_env = cfg.function.env.clone();
        if cfg.serves_http() {
            match &cfg.function.endpoint {
                Endpoint::Unix(path) => {
                    function_env.insert(
                        "FC_FUNCTION_SOCKET".into(),
                        path.to_string_lossy().into_owned(),
                    );
                }
                Endpoint::Tcp(port) => {
                    function_env.insert("FC_SERVER_PORT".into(), port.to_string());
                    function_env.insert("FC_FUNCTION_PORT".into(), port.to_string());
                }
            }
        }
        let backoff = cfg
            .initializer
            .as_ref()
            .map(|i| i.backoff)
            .unwrap_or_default();
        Supervisor {
            cfg,
            setup,
            credentials,
            function_env,
            function: None,
            pgid: None,
            last_exit: None,
            respawn_at: None,
            restart_delay: RESTART_BACKOFF_MIN,
            hook: None,
            init: InitProgress {
                failures: 0,
                retry_at: None,
                backoff,
                first: true,
            },
            stop: None,
            childless: true,
            respawn_forced: false,
            orphans_to_stop: false,
        }
    }

    /// Runs until everything has been stopped and reaped; returns fc-init's exit status.
    pub fn run(mut self) -> Result<i32, SupervisorError> {
        self.spawn_function(Instant::now())
            .map_err(SupervisorError::Spawn)?;
        loop {
            let now = Instant::now();
            self.advance(now);
            if let Some(code) = self.finished() {
                return Ok(code);
            }
            self.wait(self.next_deadline());
            self.handle_signals();
            self.handle_events();
        }
    }

    /// Sleeps until a signal, an event or the deadline.
    fn wait(&self, deadline: Option<Instant>) {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                // Round up so a wake-up never comes a fraction of a millisecond early and spins.
                let ms = d
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [
            PollFd::new(self.setup.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.setup.wake_rx.as_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => log::error!("poll: {e}"),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let stage = self.stop.as_ref().and_then(|s| match s.stage {
            Stage::Drain { until } | Stage::Grace { until } => Some(until),
            _ => None,
        });
        [
            self.respawn_at,
            self.init.retry_at,
            self.hook.as_ref().map(|h| h.deadline),
            stage,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_signals(&mut self) {
        loop {
            let signo = match self.setup.signals.read() {
                Ok(Some(signo)) => signo,
                Ok(None) => return,
                Err(e) => {
                    log::error!("reading signals: {e}");
                    return;
                }
            };
            match signals::disposition(signo) {
                Disposition::Reap => self.reap(),
                Disposition::Shutdown => {
                    log::info!("received {}", signals::name(signo));
                    self.request_stop(Instant::now());
                }
                Disposition::Forward => self.forward(signo),
            }
        }
    }

    fn handle_events(&mut self) {
        let mut buf = [0u8; 64];
        // Drain the wake pipe first, then the queue: an event sent after the drain writes the
        // pipe again, so nothing is missed.
        while matches!(nix::unistd::read(self.setup.wake_rx.as_raw_fd(), &mut buf), Ok(n) if n > 0)
        {
        }
        while let Ok(event) = self.setup.receiver.try_recv() {
            match event {
                Event::HookDone { token, result } => {
                    if self.hook.as_ref().is_some_and(|h| h.token == token) {
                        self.finish_hook(result, Instant::now());
                    }
                }
                Event::InitRequested => self.init_requested(Instant::now()),
                // The drain stage re-checks the in-flight count in `advance`.
                Event::Drained => {}
                Event::KillFunction { graceful } => self.kill_function(graceful),
                // Served by the lifecycle core, which replaces this loop.
                Event::Lifecycle { reply, .. } => reply.send(LifecycleAnswer::Stopping),
            }
        }
    }

    /// Ends the instance for an operator's terminate; the function is started again once reaped.
    fn kill_function(&mut self, graceful: bool) {
        let Some(f) = &self.function else {
            return;
        };
        if self.stop.is_some() {
            return;
        }
        self.respawn_forced = true;
        let (sig, result) = if graceful {
            (Signal::SIGTERM, kill(f.pid, Signal::SIGTERM))
        } else {
            (Signal::SIGKILL, killpg(f.pid, Signal::SIGKILL))
        };
        log::warn!(
            "terminating the instance (pid {}) for an asynchronous event with {sig}",
            f.pid
        );
        tolerate_esrch(result, "function", sig);
    }

    /// Passes a signal on to the function: its process group (`kill_group`) or its pid.
    fn forward(&self, signo: i32) {
        let Some(f) = &self.function else {
            log::debug!("no function to forward {} to", signals::name(signo));
            return;
        };
        let target = if self.cfg.shutdown.kill_group {
            -f.pid.as_raw()
        } else {
            f.pid.as_raw()
        };
        // SAFETY: kill(2) with plain integers; real-time signals have no nix `Signal` variant.
        let rc = unsafe { libc::kill(target, signo) };
        if rc != 0 {
            let err = Errno::last();
            // ESRCH: the process (group) is already gone; its exit is about to be reaped.
            if err != Errno::ESRCH {
                log::warn!("forwarding {} to {target}: {err}", signals::name(signo));
            }
        } else {
            log::debug!("forwarded {} to {target}", signals::name(signo));
        }
    }

    fn reap(&mut self) {
        let mut exits = Vec::new();
        let remaining = reaper::reap(|pid, exit| exits.push((pid, exit)));
        self.childless = remaining == Remaining::None;
        let now = Instant::now();
        for (pid, exit) in exits {
            self.on_exit(pid, exit, now);
        }
        if !self.childless && self.orphans_to_stop && self.function.is_none() {
            self.stop_orphans();
        }
        if !self.childless && self.stop.as_ref().is_some_and(|s| s.stage == Stage::Killed) {
            // Killing an orphan can orphan its own children onto fc-init: kill again until
            // nothing is left.
            self.kill_remaining(Signal::SIGKILL);
        }
    }

    fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant) {
        if self.function.as_ref().is_some_and(|f| f.pid == pid) {
            self.function_exited(exit, now);
        } else if self.hook.as_ref().is_some_and(|h| h.command == Some(pid)) {
            let result = if exit.success() {
                Ok(())
            } else {
                Err(exit.to_string())
            };
            self.finish_hook(result, now);
        } else {
            log::debug!("reaped pid {pid}: {exit}");
        }
    }

    fn function_exited(&mut self, exit: Exit, now: Instant) {
        let f = self
            .function
            .take()
            .expect("called only for the running function");
        self.last_exit = Some(exit);
        log::info!("function (pid {}) {exit}", f.pid);
        self.setup.shared.update(|s| s.function_pid = None);
        if let Some(hook) = &self.hook {
            if hook.kind != HookKind::PreStop || hook.command.is_none() {
                // The instance it was talking to is gone.
                self.finish_hook(Err(format!("function {exit}")), now);
            }
        }
        if self.stop.is_some() {
            return;
        }
        let forced = std::mem::take(&mut self.respawn_forced);
        let restart = forced
            || match self.cfg.function.restart {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => !exit.success(),
                RestartPolicy::Always => true,
            };
        if !restart {
            self.begin_stop(None, now);
            return;
        }
        if now.duration_since(f.started) >= self.cfg.function.restart_backoff_max {
            // It ran long enough to count as healthy: a new crash starts the backoff over.
            self.restart_delay = RESTART_BACKOFF_MIN;
        }
        // An operator's terminate is not a crash: the new instance starts at once.
        let delay = match forced {
            true => Duration::ZERO,
            false => self
                .restart_delay
                .min(self.cfg.function.restart_backoff_max),
        };
        log::warn!(
            "function {exit}; restarting in {}",
            humantime::format_duration(delay)
        );
        self.respawn_at = Some(now + delay);
        if !forced {
            self.restart_delay = (delay * 2).min(self.cfg.function.restart_backoff_max);
        }
        self.init.retry_at = None;
        let what = exit.to_string();
        self.setup.shared.update(|s| {
            s.phase = Phase::Starting;
            s.restarting = Some(what);
        });
    }

    /// Starts a new instance of the function and its initialization.
    fn spawn_function(&mut self, now: Instant) -> Result<(), SpawnError> {
        if self.cfg.serves_http() {
            if let Endpoint::Unix(path) = &self.cfg.function.endpoint {
                // A socket file left by an earlier instance would make connects fail until the
                // new one binds; the function may also refuse to bind over it.
                match std::fs::remove_file(path) {
                    Ok(()) => log::debug!("removed stale socket {}", path.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => log::warn!("removing stale socket {}: {e}", path.display()),
                }
            }
        }
        let pid = spawn::spawn(&spawn::Spec {
            argv: &self.cfg.function.command,
            working_dir: self.cfg.function.working_dir.as_deref(),
            env: &self.function_env,
            credentials: self.credentials.as_ref(),
            foreground: true,
        })?;
        log::info!(
            "started function (pid {pid}): {:?}",
            self.cfg.function.command
        );
        self.childless = false;
        self.function = Some(Function {
            pid,
            started: now,
            ready: false,
        });
        self.pgid = Some(pid);
        self.init = InitProgress {
            failures: 0,
            retry_at: None,
            backoff: self
                .cfg
                .initializer
                .as_ref()
                .map(|i| i.backoff)
                .unwrap_or_default(),
            first: true,
        };
        self.setup.shared.update(|s| {
            s.phase = Phase::Starting;
            s.function_pid = Some(pid.as_raw());
            s.instance += 1;
            s.restarting = None;
        });
        if self.cfg.serves_http() && !self.has_http_initializer() {
            // Nothing is forwarded before the function accepts connections.
            self.start_hook(HookKind::Probe, now);
        } else if self.cfg.initializer.is_some() {
            self.start_hook(HookKind::Initialize, now);
        } else {
            self.set_ready();
            notify("READY=1");
        }
        Ok(())
    }

    fn has_http_initializer(&self) -> bool {
        matches!(
            self.cfg.initializer.as_ref().map(|i| &i.action),
            Some(HookAction::Http { .. })
        )
    }

    fn set_ready(&mut self) {
        if let Some(f) = &mut self.function {
            f.ready = true;
        }
        self.setup.shared.update(|s| s.phase = Phase::Ready);
        log::info!("instance ready");
    }

    /// Starts a hook attempt: a thread for HTTP hooks, a child process for command hooks.
    fn start_hook(&mut self, kind: HookKind, now: Instant) {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let (action, timeout) = match kind {
            HookKind::Probe => (None, Duration::ZERO),
            HookKind::Initialize => {
                let init = self
                    .cfg
                    .initializer
                    .as_ref()
                    .expect("initializer configured");
                (Some(&init.action), init.timeout)
            }
            HookKind::PreStop => {
                let pre = self.cfg.pre_stop.as_ref().expect("pre_stop configured");
                (Some(&pre.action), pre.timeout)
            }
        };
        let request_id = crate::http::request_id::new_request_id();
        if kind == HookKind::Initialize {
            self.setup.shared.update(|s| {
                s.phase = Phase::Initializing;
                s.initializer_attempts += 1;
            });
        }
        hooks::log_start(kind, &request_id);
        // Only the first attempt of an instance (and the readiness probe) waits for the function
        // to start listening, up to `start_timeout` after it was spawned.
        let listen_wait = match (kind, &self.function) {
            (HookKind::Probe, Some(f)) | (HookKind::Initialize, Some(f)) if self.init.first => {
                Some(f.started + self.cfg.function.start_timeout)
            }
            _ => None,
        };
        if kind == HookKind::Initialize {
            self.init.first = false;
        }
        let mut hook = Hook {
            token,
            kind,
            request_id,
            deadline: now + timeout,
            command: None,
        };
        match action {
            Some(HookAction::Command(argv)) => {
                let mut env = self.function_env.clone();
                env.insert("FC_REQUEST_ID".into(), hook.request_id.clone());
                env.insert("FC_CONTROL_PATH".into(), kind.control_path().into());
                match spawn::spawn(&spawn::Spec {
                    argv,
                    working_dir: self.cfg.function.working_dir.as_deref(),
                    env: &env,
                    credentials: self.credentials.as_ref(),
                    foreground: false,
                }) {
                    Ok(pid) => {
                        self.childless = false;
                        hook.command = Some(pid);
                        self.hook = Some(hook);
                    }
                    Err(e) => {
                        self.hook = Some(hook);
                        self.finish_hook(Err(e.to_string()), now);
                    }
                }
            }
            Some(HookAction::Http { path }) => {
                let connect_by = listen_wait.unwrap_or(now);
                // The attempt's own timeout starts once the function accepts; the supervisor's
                // bound covers the longest the thread can legitimately take.
                hook.deadline = connect_by.max(now) + timeout;
                hooks::spawn_http(hooks::HttpCall {
                    cfg: self.cfg.clone(),
                    kind,
                    path: path.clone(),
                    request_id: hook.request_id.clone(),
                    connect_by,
                    timeout,
                    token,
                    events: self.setup.events.clone(),
                });
                self.hook = Some(hook);
            }
            None => {
                hook.deadline = listen_wait.unwrap_or(now);
                hooks::spawn_probe(
                    self.cfg.clone(),
                    hook.deadline,
                    token,
                    self.setup.events.clone(),
                );
                self.hook = Some(hook);
            }
        }
    }

    /// Ends the hook attempt under way, if any, as failed, with no further consequence: used
    /// when the shutdown overtakes it.
    fn abort_hook(&mut self, reason: &str) {
        if let Some(hook) = self.hook.take() {
            if let Some(pid) = hook.command {
                // ESRCH: the hook already exited; its status is reaped as an unknown child.
                let _ = killpg(pid, Signal::SIGKILL);
            }
            hooks::log_end(hook.kind, &hook.request_id, &Err(reason.to_owned()));
        }
    }

    /// Ends the hook attempt under way with `result`.
    fn finish_hook(&mut self, result: Result<(), String>, now: Instant) {
        let Some(hook) = self.hook.take() else {
            return;
        };
        if let (Err(_), Some(pid)) = (&result, hook.command) {
            // Timed out or aborted: the hook's whole process group goes (ESRCH: already gone).
            let _ = killpg(pid, Signal::SIGKILL);
        }
        // The state changes first, so whoever reads the End line sees the instance ready (or
        // failed) already; systemd hears READY=1 after the line.
        let mut ready = false;
        match (hook.kind, result.clone()) {
            (HookKind::PreStop, _) => {}
            (_, _) if self.stop.is_some() => {}
            (HookKind::Probe, Ok(())) => {
                if self.cfg.initializer.is_some() {
                    self.start_hook(HookKind::Initialize, now);
                } else {
                    ready = true;
                }
            }
            (HookKind::Probe, Err(reason)) => {
                log::error!(
                    "the function did not accept connections within start_timeout ({}): {reason}",
                    humantime::format_duration(self.cfg.function.start_timeout)
                );
                self.setup.shared.update(|s| {
                    s.phase = Phase::Failed;
                    s.last_init_error = Some(reason);
                });
                self.begin_stop(Some(crate::exit::NOT_INITIALIZED), now);
            }
            (HookKind::Initialize, Ok(())) => {
                self.init.failures = 0;
                self.setup.shared.update(|s| s.initializer_successes += 1);
                ready = true;
            }
            (HookKind::Initialize, Err(reason)) => self.initializer_failed(reason, now),
        }
        if ready {
            self.set_ready();
        }
        hooks::log_end(hook.kind, &hook.request_id, &result);
        if ready {
            notify("READY=1");
        }
    }

    fn initializer_failed(&mut self, reason: String, now: Instant) {
        let init = self
            .cfg
            .initializer
            .clone()
            .expect("initializer configured");
        self.init.failures += 1;
        self.setup.shared.update(|s| {
            s.initializer_failures += 1;
            s.last_init_error = Some(reason.clone());
        });
        if self.function.is_none() {
            // The instance died under the attempt: the restart policy decides what comes next.
            return;
        }
        let give_up = match init.on_failure {
            OnFailure::Exit => true,
            OnFailure::Retry => init.max_attempts > 0 && self.init.failures >= init.max_attempts,
            OnFailure::NextRequest => false,
        };
        if give_up {
            log::error!(
                "initializer failed after {} attempt(s): {reason}",
                self.init.failures
            );
            self.setup.shared.update(|s| s.phase = Phase::Failed);
            self.begin_stop(Some(crate::exit::NOT_INITIALIZED), now);
        } else if init.on_failure == OnFailure::Retry {
            let delay = self.init.backoff;
            log::warn!(
                "initializer failed: {reason}; retrying in {}",
                humantime::format_duration(delay)
            );
            self.init.retry_at = Some(now + delay);
            self.init.backoff = (delay * 2).min(init.backoff_max);
        } else {
            log::warn!("initializer failed: {reason}; the next request tries again");
            self.setup.shared.update(|s| s.phase = Phase::Failed);
        }
    }

    /// `next-request`: a request arrived while initialization had failed.
    fn init_requested(&mut self, now: Instant) {
        let failed = self.setup.shared.phase() == Phase::Failed;
        if failed && self.stop.is_none() && self.hook.is_none() && self.function.is_some() {
            self.start_hook(HookKind::Initialize, now);
        }
    }

    /// SIGTERM/SIGINT: the first starts the shutdown, the second skips the remaining waits.
    fn request_stop(&mut self, now: Instant) {
        match &mut self.stop {
            None => self.begin_stop(None, now),
            Some(stop) => {
                log::info!("second stop signal: skipping the remaining waits");
                stop.forced = true;
                self.abort_hook("interrupted by a second stop signal");
            }
        }
    }

    /// Starts the shutdown: PreStop (when the instance is initialized and alive), drain, stop
    /// signal, grace period, SIGKILL. `code` overrides the exit status.
    fn begin_stop(&mut self, code: Option<i32>, now: Instant) {
        if self.stop.is_some() {
            return;
        }
        let cause = match code {
            None if self.function.is_none() => StopCause::FunctionExited,
            None => StopCause::Signal,
            Some(crate::exit::NOT_INITIALIZED) => StopCause::NotInitialized,
            Some(_) => StopCause::Failure,
        };
        self.setup.shared.begin_stopping(cause);
        notify("STOPPING=1");
        self.respawn_at = None;
        self.init.retry_at = None;
        // Initialization in progress: abort it; PreStop is skipped.
        self.abort_hook("aborted: fc-init is stopping");
        let ready = self.function.as_ref().is_some_and(|f| f.ready);
        let stage = if ready && code.is_none() && self.cfg.pre_stop.is_some() {
            Stage::PreStop
        } else {
            Stage::Drain {
                until: now + self.cfg.shutdown.drain_timeout,
            }
        };
        self.stop = Some(Stop {
            stage,
            forced: false,
            code,
        });
        if stage == Stage::PreStop {
            self.start_hook(HookKind::PreStop, now);
        }
    }

    /// Moves timers and the shutdown forward.
    fn advance(&mut self, now: Instant) {
        if self.hook.as_ref().is_some_and(|h| now >= h.deadline) {
            self.finish_hook(Err("timeout".into()), now);
        }
        if self.stop.is_none() {
            if self.respawn_at.is_some_and(|t| now >= t) {
                self.respawn_at = None;
                self.setup.shared.update(|s| s.restarts += 1);
                if let Err(e) = self.spawn_function(now) {
                    log::error!("restarting the function: {e}");
                    self.begin_stop(Some(e.exit_code()), now);
                }
            }
            if self.init.retry_at.is_some_and(|t| now >= t) && self.hook.is_none() {
                self.init.retry_at = None;
                self.start_hook(HookKind::Initialize, now);
            }
        }
        let Some(stop) = &self.stop else {
            return;
        };
        let (stage, forced) = (stop.stage, stop.forced);
        let next = match stage {
            Stage::PreStop if self.hook.is_none() => Some(Stage::Drain {
                until: now + self.cfg.shutdown.drain_timeout,
            }),
            Stage::PreStop => None,
            // Nothing left to stop (the function exited and left no one behind): done.
            Stage::Drain { .. } if self.childless => Some(Stage::Killed),
            Stage::Drain { until }
                if forced || now >= until || self.setup.shared.in_flight() == 0 =>
            {
                self.send_stop_signal();
                Some(Stage::Grace {
                    until: now + self.cfg.shutdown.grace_period,
                })
            }
            Stage::Grace { until } if forced || now >= until || self.childless => {
                if !self.childless {
                    log::warn!("grace period over: killing what is left");
                    self.kill_remaining(Signal::SIGKILL);
                }
                Some(Stage::Killed)
            }
            _ => None,
        };
        if let Some(next) = next {
            self.stop.as_mut().expect("checked above").stage = next;
            self.advance(now);
        }
    }

    /// Sends `stop_signal` to the function (group or pid), and to every adopted orphan once
    /// the function is gone.
    ///
    /// Orphans come second: while the function runs they are usually its helpers, which it may
    /// want to stop itself, and finding them costs a look into /proc that the common case (no
    /// orphans at all) should not pay on its way to exiting.
    fn send_stop_signal(&mut self) {
        let sig = self.cfg.shutdown.stop_signal;
        match (&self.function, self.cfg.shutdown.kill_group) {
            (Some(f), false) => tolerate_esrch(kill(f.pid, sig), "function", sig),
            (_, _) => {
                if let Some(pgid) = self.pgid {
                    tolerate_esrch(killpg(pgid, sig), "function's process group", sig);
                }
            }
        }
        if self.function.is_some() {
            self.orphans_to_stop = true;
        } else {
            self.stop_orphans();
        }
    }

    /// Sends `stop_signal` to every child left after the function (adopted orphans).
    fn stop_orphans(&mut self) {
        self.orphans_to_stop = false;
        let sig = self.cfg.shutdown.stop_signal;
        for pid in reaper::children() {
            tolerate_esrch(kill(pid, sig), "adopted process", sig);
        }
    }

    /// Sends `sig` to the function's group and every remaining child.
    fn kill_remaining(&mut self, sig: Signal) {
        if let Some(pgid) = self.pgid {
            tolerate_esrch(killpg(pgid, sig), "function's process group", sig);
        }
        let children = reaper::children();
        if children.is_empty() && std::process::id() == 1 {
            // /proc is not readable but fc-init is PID 1 of its namespace: kill(-1) reaches
            // every other process in it (kill(2)).
            tolerate_esrch(kill(Pid::from_raw(-1), sig), "every process", sig);
        }
        for pid in children {
            tolerate_esrch(kill(pid, sig), "adopted process", sig);
        }
    }

    /// The exit status once the shutdown has reaped everything.
    fn finished(&self) -> Option<i32> {
        let stop = self.stop.as_ref()?;
        if !matches!(stop.stage, Stage::Grace { .. } | Stage::Killed) || !self.childless {
            return None;
        }
        Some(stop.code.or(self.last_exit.map(Exit::status)).unwrap_or(0))
    }
}

fn tolerate_esrch(result: nix::Result<()>, what: &str, sig: Signal) {
    match result {
        // ESRCH: it is already gone, and its exit is reaped as usual.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => log::warn!("sending {sig} to {what}: {e}"),
    }
}
