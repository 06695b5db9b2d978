//! The supervisor: the one thread that owns every child process and every `waitpid`.
//!
//! Its decisions live in [`core`], a pure state machine; this module is the thin shell around
//! it. The shell sleeps in a single `poll` on two file descriptors — the signalfd and a wake
//! pipe that other threads write to after sending an [`Event`] — with the core's nearest
//! deadline as the timeout, turns what woke it into [`core::Input`]s (a signal, the exits a
//! `waitpid` drain found, an event), and carries out the core's [`core::Action`]s with real
//! system calls ([`System`]). Deadlines are `Instant`s: no fixed sleeps, and the shutdown ends
//! the moment the last child is reaped.
//!
//! Other threads never touch a child: HTTP hook calls run on short-lived threads that report
//! back with an event, and the traffic side asks for things (an initializer attempt, a drain
//! notice, a lifecycle call) the same way. What the supervisor tells them goes through
//! `state::Shared`: the published status, and the watchers' notices.

pub mod core;
pub mod hooks;
pub mod listening;
pub mod reaper;
pub mod signals;
pub mod spawn;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

use self::core::{Action, CallId, Core, Effects, HookRun, HookStart, Input, Line, Target};
use crate::config::{Config, Endpoint, FC_PORT_VARIABLES};
use crate::notify::notify;
use crate::state::Shared;
use hooks::HookError;
use reaper::Remaining;
use signals::Signals;
use spawn::{Credentials, SpawnError};

/// What other threads tell the supervisor.
#[derive(Debug)]
pub enum Event {
    /// An HTTP hook thread finished (the token tells which attempt; stale ones are ignored).
    HookDone {
        token: u64,
        result: Result<(), HookError>,
    },
    /// A request is waiting while the initializer is in the `failed` state under `next-request`.
    InitRequested,
    /// The last in-flight request finished (checked during the drain).
    Drained,
    /// An operator terminated a running asynchronous event: SIGKILL the function's group
    /// (`graceful`: SIGTERM to the function process). Either way a new instance is started and
    /// initialized, whatever `restart` says.
    KillFunction { graceful: bool },
    /// A gracefully terminated event has ended: the signalled process must not serve again.
    Repossess,
    /// FC called `/initialize` or `/pre-stop` (`request_id`: FC's own, used for the hook's
    /// lines and for the call to the function).
    Lifecycle {
        call: LifecycleCall,
        request_id: String,
        reply: Reply,
    },
}

/// FC's own lifecycle calls, under `server.platform = "fc"` (docs/reference.md §4): the traffic
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
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// Blocking signals or opening the signalfd failed.
    #[error("setting up signal handling")]
    Signals(#[source] nix::Error),
    /// Creating the wake pipe failed.
    #[error("creating the wake pipe")]
    WakePipe(#[source] nix::Error),
}

/// The parts of fc-init the supervisor is wired to.
pub struct Setup {
    pub signals: Signals,
    pub events: Events,
    receiver: mpsc::Receiver<Event>,
    wake_rx: OwnedFd,
    pub shared: Arc<Shared>,
}

/// First step of start-up, before any thread exists: blocks signals, becomes subreaper, asks
/// for `signals.parent_death_signal`, and creates the event queue.
pub fn setup(cfg: &Config) -> Result<Setup, SupervisorError> {
    let signals = Signals::block_all().map_err(SupervisorError::Signals)?;
    if let Some(signo) = cfg.signals.parent_death_signal {
        ask_parent_death_signal(signo);
    }
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

/// tini's `-p`: the kernel sends `signo` to fc-init when its parent dies (PR_SET_PDEATHSIG,
/// prctl(2)). The signal is blocked like every other, so it arrives through the signalfd:
/// SIGTERM or SIGINT start the shutdown, anything else is forwarded.
fn ask_parent_death_signal(signo: i32) {
    // SAFETY: getppid and prctl with integer arguments only.
    let parent = unsafe { libc::getppid() };
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signo as libc::c_ulong, 0, 0, 0) } != 0 {
        log::warn!(
            "cannot ask for {} when the parent dies: {}",
            signals::name(signo),
            std::io::Error::last_os_error()
        );
        return;
    }
    // The parent may have died before the request: then the kernel will never send it, and
    // fc-init already has a new parent.
    // SAFETY: getppid and raise with plain integers.
    if unsafe { libc::getppid() } != parent {
        unsafe { libc::raise(signo) };
    }
}

/// The supervisor thread: the shell around [`Core`].
pub struct Supervisor {
    core: Core,
    setup: Setup,
    system: System,
}

impl Supervisor {
    pub fn new(cfg: Arc<Config>, setup: Setup, credentials: Option<Credentials>) -> Supervisor {
        let system = System {
            function_env: function_env(&cfg),
            // In plain-init mode the function gets the terminal (Ctrl-C reaches it, as with
            // tini); when fc-init serves or runs hooks it keeps the terminal, so Ctrl-C starts
            // its own shutdown, PreStop included.
            foreground: !cfg.serves_http() && cfg.initializer.is_none() && cfg.pre_stop.is_none(),
            credentials,
            events: setup.events.clone(),
            shared: setup.shared.clone(),
            replies: HashMap::new(),
            next_call: 0,
            exit: None,
            argv: None,
            fc_port: {
                let env: BTreeMap<String, String> = std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect();
                crate::config::fc_port_variable(&env).map(|(var, v)| (var, v.to_owned()))
            },
            cfg: cfg.clone(),
        };
        Supervisor {
            core: Core::new(cfg, Box::new(crate::http::request_id::new_request_id)),
            setup,
            system,
        }
    }

    /// Starts the function with `argv` exactly as given (not UTF-8 perhaps) instead of
    /// `function.command`'s text.
    pub fn with_argv(mut self, argv: Option<Vec<OsString>>) -> Supervisor {
        self.system.argv = argv;
        self
    }

    /// Runs until everything has been stopped and reaped; returns fc-init's exit status.
    pub fn run(mut self) -> Result<i32, SupervisorError> {
        self.feed(Input::Start);
        loop {
            if let Some(code) = self.system.exit {
                return Ok(code);
            }
            self.wait(self.core.next_deadline());
            self.handle_signals();
            self.handle_events();
            self.feed(Input::Tick);
        }
    }

    fn feed(&mut self, input: Input) {
        core::drive(&mut self.core, &mut self.system, input, Instant::now());
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
        // EINTR: woken early; the loop looks at everything and sleeps again.
        if let Err(e) = nix::poll::poll(&mut fds, timeout) {
            if e != Errno::EINTR {
                log::error!("poll: {e}");
            }
        }
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
            if signals::disposition(signo) == signals::Disposition::Reap {
                let mut exits = Vec::new();
                let remaining = reaper::reap(|pid, exit| exits.push((pid, exit)));
                let childless = remaining == Remaining::None;
                self.feed(Input::Reaped { exits, childless });
            } else {
                self.feed(Input::Signal(signo));
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
            let input = match event {
                Event::HookDone { token, result } => Input::HookDone { token, result },
                Event::InitRequested => Input::InitRequested,
                Event::Drained => Input::InFlight(0),
                Event::KillFunction { graceful } => Input::Terminate { graceful },
                Event::Repossess => Input::Repossess,
                Event::Lifecycle {
                    call,
                    request_id,
                    reply,
                } => {
                    let id = self.system.next_call;
                    self.system.next_call += 1;
                    self.system.replies.insert(id, reply);
                    Input::Lifecycle {
                        call,
                        request_id,
                        id,
                    }
                }
            };
            self.feed(input);
        }
    }
}

/// The function's environment: its configured variables, where it serves, and FC's port
/// variables pointed at its own port (or removed when it serves on a socket), so an FC-style
/// server that listens on `$FC_SERVER_PORT` never collides with fc-init's listener.
fn function_env(cfg: &Config) -> FunctionEnv {
    let mut set = cfg.function.env.clone();
    let mut remove = Vec::new();
    if cfg.serves_http() {
        match &cfg.function.endpoint {
            Endpoint::Unix(path) => {
                set.insert(
                    "FC_FUNCTION_SOCKET".into(),
                    path.to_string_lossy().into_owned(),
                );
                remove.extend(FC_PORT_VARIABLES.iter().map(|v| v.to_string()));
            }
            Endpoint::Tcp(port) => {
                for var in FC_PORT_VARIABLES.iter().chain(&["FC_FUNCTION_PORT"]) {
                    set.insert(var.to_string(), port.to_string());
                }
            }
        }
    }
    // A variable the configuration sets on purpose wins over the removal.
    remove.retain(|v| !cfg.function.env.contains_key(v));
    FunctionEnv { set, remove }
}

/// Variables added to (or overriding) the inherited environment, and ones taken out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionEnv {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// The real [`Effects`]: system calls, threads, the shared state, stdout.
struct System {
    cfg: Arc<Config>,
    function_env: FunctionEnv,
    foreground: bool,
    credentials: Option<Credentials>,
    events: Events,
    shared: Arc<Shared>,
    replies: HashMap<CallId, Reply>,
    next_call: CallId,
    exit: Option<i32>,
    /// The command line's command as given; `None`: `function.command`.
    argv: Option<Vec<OsString>>,
    /// FC's port variable and its value, when set (for the collision hint).
    fc_port: Option<(&'static str, String)>,
}

impl System {
    fn spawn_function(&self) -> Result<Pid, SpawnError> {
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
        let configured: Vec<OsString>;
        let argv = match &self.argv {
            Some(argv) => argv,
            None => {
                configured = os_args(&self.cfg.function.command);
                &configured
            }
        };
        spawn::spawn(&spawn::Spec {
            argv,
            working_dir: self.cfg.function.working_dir.as_deref(),
            env: &self.function_env,
            credentials: self.credentials.as_ref(),
            foreground: self.foreground,
        })
    }

    fn start_hook(&self, start: HookStart) -> Option<Input> {
        let HookStart {
            token,
            kind,
            request_id,
            run,
        } = start;
        match run {
            HookRun::Probe { deadline } => {
                hooks::spawn_probe(self.cfg.clone(), deadline, token, self.events.clone());
                None
            }
            HookRun::Http {
                path,
                connect_by,
                timeout,
            } => {
                hooks::spawn_http(hooks::HttpCall {
                    cfg: self.cfg.clone(),
                    kind,
                    path,
                    request_id,
                    connect_by,
                    timeout,
                    token,
                    events: self.events.clone(),
                });
                None
            }
            HookRun::Command { argv } => {
                let mut env = self.function_env.clone();
                env.set.insert("FC_REQUEST_ID".into(), request_id);
                env.set
                    .insert("FC_CONTROL_PATH".into(), kind.control_path().into());
                let spawned = spawn::spawn(&spawn::Spec {
                    argv: &os_args(&argv),
                    working_dir: self.cfg.function.working_dir.as_deref(),
                    env: &env,
                    credentials: self.credentials.as_ref(),
                    foreground: false,
                });
                Some(match spawned {
                    Ok(pid) => Input::HookStarted { token, pid },
                    Err(e) => Input::HookDone {
                        token,
                        result: Err(HookError::Spawn(e)),
                    },
                })
            }
        }
    }

    fn signal(&self, to: Target, signo: i32) {
        let name = signals::name(signo);
        match to {
            Target::Process(pid) => send(pid.as_raw(), signo, "function"),
            Target::Group(pid) => send(-pid.as_raw(), signo, "process group"),
            Target::Orphans => {
                for pid in reaper::children() {
                    send(pid.as_raw(), signo, "adopted process");
                }
            }
            Target::Remaining { group } => {
                if let Some(group) = group {
                    send(-group.as_raw(), signo, "function's process group");
                }
                let children = reaper::children();
                if children.is_empty() && std::process::id() == 1 {
                    // /proc is not readable but fc-init is PID 1 of its namespace: kill(-1)
                    // reaches every other process in it (kill(2)).
                    send(-1, signo, "every process");
                }
                for pid in children {
                    send(pid.as_raw(), signo, "adopted process");
                }
            }
        }
        log::debug!("sent {name} to {to:?}");
    }
}

/// Why a function may have exited before it accepted: fc-init itself listens on the port of
/// FC's variable, so a function with that port written into it cannot bind it.
fn collision_hint(cfg: &Config, fc_port: Option<&(&'static str, String)>) -> Option<String> {
    let (var, value) = fc_port?;
    let listen = cfg.server.listen?;
    if value.trim().parse::<u16>().ok()? != listen.port() {
        return None;
    }
    let own = match &cfg.function.endpoint {
        Endpoint::Tcp(port) => {
            format!("port {port} ({var} is set to it in the function's environment)")
        }
        Endpoint::Unix(path) => format!("the socket {} (FC_FUNCTION_SOCKET)", path.display()),
    };
    Some(format!(
        "the function exited before it accepted a connection. fc-init itself listens on {listen} \
         ({var}={value}), so a function that binds port {} fails (\"Address already in use\"). \
         The function's own endpoint is {own}: have it listen on ${var}, or set function.port to \
         the port it listens on (another one than {})",
        listen.port(),
        listen.port()
    ))
}

fn os_args(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// kill(2) that tolerates ESRCH: the process (group) is already gone, and its exit is reaped as
/// usual.
fn send(target: i32, signo: i32, what: &str) {
    // SAFETY: kill(2) with plain integers; real-time signals have no nix `Signal` variant.
    if unsafe { libc::kill(target, signo) } != 0 {
        let err = Errno::last();
        if err != Errno::ESRCH {
            log::warn!(
                "sending {} to {what} ({target}): {err}",
                signals::name(signo)
            );
        }
    }
}

impl Effects for System {
    fn run(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::SpawnFunction => return Some(Input::Spawned(self.spawn_function())),
            Action::StartHook(start) => return self.start_hook(start),
            Action::Signal { to, signal } => self.signal(to, signal),
            Action::Publish(status) => self.shared.publish(status),
            Action::AnnounceStopping => {
                self.shared.announce_stopping();
                return Some(Input::InFlight(self.shared.in_flight()));
            }
            Action::Notify(state) => notify(state),
            Action::Line(Line::Start { kind, request_id }) => hooks::log_start(kind, &request_id),
            Action::Line(Line::End {
                kind,
                request_id,
                error,
            }) => hooks::log_end(kind, &request_id, error.as_deref()),
            Action::Reply { id, answer } => {
                if let Some(reply) = self.replies.remove(&id) {
                    reply.send(answer);
                }
            }
            Action::Exit(code) => self.exit = Some(code),
            Action::StartHint(pid) => {
                let waits_on = match &self.cfg.function.endpoint {
                    Endpoint::Unix(path) => path.display().to_string(),
                    Endpoint::Tcp(port) => format!("127.0.0.1:{port}"),
                };
                let listens = listening::listening_addresses(pid.as_raw());
                log::warn!(
                    "{}",
                    listening::start_hint(pid.as_raw(), &waits_on, &listens)
                );
            }
            Action::ExitedBeforeAccepting => {
                if let Some(hint) = collision_hint(&self.cfg, self.fc_port.as_ref()) {
                    log::error!("{hint}");
                }
            }
        }
        None
    }
}
