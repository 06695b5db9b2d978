//! The supervisor's decisions as a pure state machine: [`Core::on_event`] takes one [`Input`]
//! (a signal, a child's exit, a hook's result, a deadline, an operator's terminate, a request
//! for an initializer attempt, a platform lifecycle call) and the time, changes the state, and
//! returns the [`Action`]s to carry out (spawn, signal a pid or a group, start a hook, publish
//! the status, notify systemd, write an FC line, answer a call, exit).
//!
//! It makes no system call and reads no clock: the shell (`supervisor::Supervisor`) turns file
//! descriptors into inputs and runs the actions through [`Effects`], feeding the results of the
//! actions that have one (a spawned pid) back in as inputs. The unit tests drive it with a
//! recording fake and a fake clock; each reads like a line of the lifecycle contract.
//!
//! Rooms: this file holds the inputs, actions and state, and an instance's start and
//! readiness; [`attempts`] the hook attempts, [`children`] exits, forwarding and terminate,
//! [`platform`] FC's own lifecycle calls, [`stop`] the shutdown and the deadlines.
//!
//! The rules (docs/reference.md §8), in the order an instance lives them:
//! - Start: spawn the function. When fc-init serves HTTP, nothing is forwarded before the
//!   function accepts a connection: the first HTTP initializer attempt waits for that itself
//!   (up to `start_timeout`), otherwise a probe does. A command initializer starts at once, in
//!   parallel with the probe. Ready = accepting (when serving) and initialized (when an
//!   initializer is configured).
//! - Initializer failure: `retry` (backoff, `max_attempts`), `next-request` (one attempt per
//!   [`Input::InitRequested`]), `exit` (stop, no PreStop, exit 3). A probe that runs out of
//!   `start_timeout` while the function lives is exit 3 as well.
//! - The function exits on its own: whatever was under way for that instance ends with it (an
//!   attempt fails with "function exited ..."; the probe is dropped). `restart` decides: a new
//!   instance after a backoff, or the stop, and fc-init exits with the function's own status.
//! - Stop (SIGTERM/SIGINT, or the function gone for good): PreStop when the function lives, no
//!   initializer attempt is under way, PreStop has not run for this instance, and — for an HTTP
//!   PreStop — the instance is ready; then the drain, the stop signal, the grace period,
//!   SIGKILL, and the exit once every child is reaped. A second signal skips the waits.
//! - FC's own lifecycle calls (`server.platform = "fc"`) are served from the same state, so
//!   each hook runs once per instance whoever asks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::hooks::{HookError, HookKind};
use super::reaper::Exit;
use super::signals::{self, Disposition};
use super::spawn::SpawnError;
use super::{LifecycleAnswer, LifecycleCall};
use crate::config::{Config, HookAction};
use crate::exit;
use crate::state::{Phase, Status, StopCause};

mod attempts;
mod children;
mod platform;
mod stop;
#[cfg(test)]
mod tests;

/// First delay before a crashed function is started again; doubles up to `restart_backoff_max`.
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Identifies a lifecycle call waiting for its answer; the shell keeps the reply channel.
pub type CallId = u64;

/// What happened, as the core sees it.
#[derive(Debug)]
pub enum Input {
    /// fc-init starts: spawn the first instance.
    Start,
    /// A signal other than SIGCHLD (the shell reaps on SIGCHLD and reports [`Input::Reaped`]).
    Signal(i32),
    /// Children that exited, and whether any child is left at all (`waitpid` said ECHILD).
    Reaped {
        exits: Vec<(Pid, Exit)>,
        childless: bool,
    },
    /// The result of [`Action::SpawnFunction`].
    Spawned(Result<Pid, SpawnError>),
    /// A hook command was started (the result of [`Action::StartHook`] for a command).
    HookStarted { token: u64, pid: Pid },
    /// An HTTP hook or probe thread finished, or a hook command could not be started.
    HookDone {
        token: u64,
        result: Result<(), HookError>,
    },
    /// A deadline may have passed.
    Tick,
    /// `next-request`: a request waits while initialization has failed.
    InitRequested,
    /// Requests in flight to the function now (after the shutdown was announced, and when the
    /// last one finishes during it).
    InFlight(usize),
    /// An operator terminated a running asynchronous event.
    Terminate { graceful: bool },
    /// A gracefully terminated event has ended: stop the signalled process if it still runs.
    Repossess,
    /// FC called `/initialize` or `/pre-stop`.
    Lifecycle {
        call: LifecycleCall,
        request_id: String,
        id: CallId,
    },
}

/// Who a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One process.
    Process(Pid),
    /// A process group (the function's, or a hook command's).
    Group(Pid),
    /// Every child of fc-init that is left (adopted orphans).
    Orphans,
    /// The function's group, if any, and every child left; as PID 1 with no way to list the
    /// children, every process of the namespace.
    Remaining { group: Option<Pid> },
}

/// How a hook attempt is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookRun {
    /// Wait until the function accepts a connection, up to `deadline`.
    Probe { deadline: Instant },
    /// An HTTP request to the function; refusals are retried until `connect_by`, and the
    /// attempt's `timeout` runs from the connection.
    Http {
        path: String,
        connect_by: Instant,
        timeout: Duration,
    },
    /// A command in its own process group.
    Command { argv: Vec<String> },
}

/// A hook attempt to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStart {
    pub token: u64,
    pub kind: HookKind,
    pub request_id: String,
    pub run: HookRun,
}

/// An FC line on stdout (docs/reference.md §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Start {
        kind: HookKind,
        request_id: String,
    },
    End {
        kind: HookKind,
        request_id: String,
        error: Option<String>,
    },
}

/// What the shell must do.
#[derive(Debug)]
pub enum Action {
    /// Start a new instance of the function; answered by [`Input::Spawned`].
    SpawnFunction,
    /// Start a hook attempt; a command's start is answered by [`Input::HookStarted`] (or
    /// [`Input::HookDone`] when it cannot start), an HTTP call or probe by a later `HookDone`.
    StartHook(HookStart),
    Signal {
        to: Target,
        signal: i32,
    },
    /// The new status for everyone to read.
    Publish(Status),
    /// Tell the traffic side and the workers that the shutdown started; answered by
    /// [`Input::InFlight`].
    AnnounceStopping,
    /// A line for systemd's `NOTIFY_SOCKET`.
    Notify(&'static str),
    Line(Line),
    Reply {
        id: CallId,
        answer: LifecycleAnswer,
    },
    /// Everything is stopped and reaped: exit with this status.
    Exit(i32),
    /// The function (pid) has not accepted where fc-init waits for [`START_HINT_AFTER`]: say
    /// where it listens instead.
    StartHint(Pid),
    /// The function exited before it ever accepted a connection: say why that may be.
    ExitedBeforeAccepting,
}

/// How long a function may take to accept before fc-init says where it listens instead.
pub const START_HINT_AFTER: Duration = Duration::from_secs(5);

/// Carries out actions for [`Core`]; the result of an action that has one comes back as the
/// next input. The real one makes system calls; the tests' one records.
pub trait Effects {
    fn run(&mut self, action: Action) -> Option<Input>;
}

/// Feeds `input` to `core`, runs its actions through `effects`, and feeds back their results
/// until nothing is left.
pub fn drive(core: &mut Core, effects: &mut dyn Effects, input: Input, now: Instant) {
    let mut queue = std::collections::VecDeque::from([input]);
    while let Some(input) = queue.pop_front() {
        for action in core.on_event(input, now) {
            if let Some(feedback) = effects.run(action) {
                queue.push_back(feedback);
            }
        }
    }
}

/// The running instance.
#[derive(Debug)]
struct Function {
    pid: Pid,
    started: Instant,
    /// Accepted a connection (or fc-init does not serve, so nobody needs it to).
    accepting: bool,
    /// The configured initializer succeeded (or none is configured).
    initialized: bool,
    /// Ready: both of the above, published as [`Phase::Ready`].
    ready: bool,
}

/// A hook attempt under way (an initializer or PreStop attempt; the probe is separate).
#[derive(Debug)]
struct Hook {
    token: u64,
    kind: HookKind,
    request_id: String,
    /// The core's own bound on the attempt; the hook thread enforces the same one.
    deadline: Instant,
    /// The hook command's pid (its process group) once started.
    command: Option<Pid>,
    /// FC's own call forwarded to the function because no such hook is configured.
    forwarded: bool,
}

#[derive(Debug)]
struct Probe {
    token: u64,
    deadline: Instant,
}

#[derive(Debug)]
struct InitProgress {
    /// Failures since the last success, for `max_attempts`.
    failures: u32,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The first attempt of an instance waits up to `start_timeout` for the function to listen.
    first: bool,
    /// FC's forwarded `/initialize` succeeded for this instance (no initializer configured).
    forwarded_done: bool,
}

/// PreStop, once per instance.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PreStop {
    NotRun,
    Running,
    Ended(Result<(), (String, bool)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    PreStop,
    Drain { until: Instant },
    Grace { until: Instant },
    Killed,
}

#[derive(Debug)]
struct Stop {
    stage: Stage,
    /// A second SIGTERM/SIGINT: skip the remaining waits.
    forced: bool,
    /// Exit status that overrides the function's (3 for a failed initialization).
    code: Option<i32>,
}

/// The supervisor's whole state.
/// A source of fresh request ids (`crate::http::request_id::new_request_id` in the shell).
pub type RequestIds = Box<dyn FnMut() -> String + Send>;

pub struct Core {
    cfg: Arc<Config>,
    /// Where the request ids of hook attempts come from: random in the shell, counted in tests,
    /// so the core itself stays deterministic.
    request_ids: RequestIds,
    status: Status,
    function: Option<Function>,
    /// The function's process group, kept after it exits so what is left of it can be stopped.
    pgid: Option<Pid>,
    last_exit: Option<Exit>,
    respawn_at: Option<Instant>,
    restart_delay: Duration,
    /// The next exit of the function is followed by a new instance, whatever `restart` says.
    respawn_forced: bool,
    probe: Option<Probe>,
    hook: Option<Hook>,
    init: InitProgress,
    pre_stop: PreStop,
    stop: Option<Stop>,
    /// waitpid said ECHILD: nothing left to reap.
    childless: bool,
    /// The stop signal went to the function; adopted orphans get it once the function is gone.
    orphans_to_stop: bool,
    /// Requests in flight, as last reported; `None` from the announcement of the shutdown until
    /// its answer, so the drain never ends on a count from before the traffic side stopped.
    in_flight: Option<usize>,
    next_token: u64,
    /// FC's `/initialize` calls waiting for this instance's initialization.
    initialize_calls: Vec<CallId>,
    /// FC's `/pre-stop` calls waiting for PreStop to end.
    pre_stop_calls: Vec<CallId>,
    exited: bool,
    actions: Vec<Action>,
    /// The process a graceful terminate sent SIGTERM to, until its event has ended.
    signalled: Option<Pid>,
    /// When the repossessed process gets SIGKILL.
    repossess_kill_at: Option<Instant>,
    /// When to give the start hint, while the function does not accept.
    hint_at: Option<Instant>,
    /// Plain mode under `signals.rewrite`: the signal the stop sends instead of
    /// `stop_signal` (the received SIGTERM or SIGINT, rewritten).
    stop_signal_override: Option<i32>,
}

impl Core {
    pub fn new(cfg: Arc<Config>, request_ids: RequestIds) -> Core {
        Core {
            request_ids,
            init: InitProgress::new(&cfg),
            cfg,
            status: Status::default(),
            function: None,
            pgid: None,
            last_exit: None,
            respawn_at: None,
            restart_delay: RESTART_BACKOFF_MIN,
            respawn_forced: false,
            probe: None,
            hook: None,
            pre_stop: PreStop::NotRun,
            stop: None,
            childless: true,
            orphans_to_stop: false,
            in_flight: Some(0),
            next_token: 1,
            initialize_calls: Vec::new(),
            pre_stop_calls: Vec::new(),
            exited: false,
            actions: Vec::new(),
            signalled: None,
            repossess_kill_at: None,
            hint_at: None,
            stop_signal_override: None,
        }
    }

    /// The published status, as the last [`Action::Publish`] gave it.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// When the core next wants an [`Input::Tick`]; `None`: only on other inputs.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stage = self.stop.as_ref().and_then(|s| match s.stage {
            Stage::Drain { until } | Stage::Grace { until } => Some(until),
            _ => None,
        });
        [
            self.respawn_at,
            self.init.retry_at,
            self.hook.as_ref().map(|h| h.deadline),
            self.probe.as_ref().map(|p| p.deadline),
            self.repossess_kill_at,
            self.hint_at,
            stage,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes one input at time `now`; returns what to do, in order.
    pub fn on_event(&mut self, input: Input, now: Instant) -> Vec<Action> {
        if self.exited {
            return Vec::new();
        }
        match input {
            Input::Start => self.act(Action::SpawnFunction),
            Input::Spawned(Ok(pid)) => self.spawned(pid, now),
            Input::Spawned(Err(e)) => {
                // The first start failing is the exit status itself (126/127, as tini); a
                // respawn failing stops what is left the same way.
                let what = match self.status.restarts {
                    0 if self.pgid.is_none() => "starting the function",
                    _ => "restarting the function",
                };
                log::error!("{what}: {}", crate::logging::error_chain(&e));
                let code = e.exit_code();
                self.begin_stop(StopCause::Failure, Some(code), now);
            }
            Input::Signal(signo) => match signals::disposition(signo) {
                // The shell reaps on SIGCHLD; a stray one changes nothing.
                Disposition::Reap => {}
                Disposition::Shutdown => {
                    log::info!("received {}", signals::name(signo));
                    if self.plain() && self.cfg.signals.rewrite.contains_key(&signo) {
                        // Plain mode forwards the signal, so `signals.rewrite` applies to it
                        // (dumb-init's `-r 15:3`); rewritten to 0, it is dropped.
                        match self.cfg.signals.rewritten(signo) {
                            None => {
                                log::info!("{} dropped (signals.rewrite)", signals::name(signo));
                                return std::mem::take(&mut self.actions);
                            }
                            Some(to) => self.stop_signal_override = Some(to),
                        }
                    }
                    self.request_stop(now);
                }
                Disposition::Forward => self.forward(signo),
            },
            Input::Reaped { exits, childless } => self.reaped(exits, childless, now),
            Input::HookStarted { token, pid } => {
                if let Some(hook) = self.hook.as_mut().filter(|h| h.token == token) {
                    hook.command = Some(pid);
                    self.childless = false;
                }
            }
            Input::HookDone { token, result } => {
                if self.probe.as_ref().is_some_and(|p| p.token == token) {
                    self.probe_done(result, now);
                } else if self.hook.as_ref().is_some_and(|h| h.token == token) {
                    self.finish_hook(result, now);
                }
            }
            Input::Tick => {}
            Input::InitRequested => {
                let failed = self.status.phase == Phase::Failed;
                if failed && self.stop.is_none() && self.hook.is_none() && self.function.is_some() {
                    self.start_initializer(None, now);
                }
            }
            Input::InFlight(n) => self.in_flight = Some(n),
            Input::Terminate { graceful } => self.terminate(graceful),
            Input::Repossess => self.repossess(now),
            Input::Lifecycle {
                call: LifecycleCall::Initialize,
                request_id,
                id,
            } => self.platform_initialize(request_id, id, now),
            Input::Lifecycle {
                call: LifecycleCall::PreStop,
                request_id,
                id,
            } => self.platform_pre_stop(request_id, id, now),
        }
        self.advance(now);
        std::mem::take(&mut self.actions)
    }

    fn act(&mut self, action: Action) {
        self.actions.push(action);
    }

    fn publish(&mut self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status);
        self.act(Action::Publish(self.status.clone()));
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn serves(&self) -> bool {
        self.cfg.serves_http()
    }

    /// Plain-init mode: no listener and no hooks, fc-init only passes signals on (as tini).
    fn plain(&self) -> bool {
        !self.serves() && self.cfg.initializer.is_none() && self.cfg.pre_stop.is_none()
    }

    // -----------------------------------------------------------------------------------------
    // An instance's start and readiness

    fn spawned(&mut self, pid: Pid, now: Instant) {
        log::info!(
            "started function (pid {pid}): {:?}",
            self.cfg.function.command
        );
        self.childless = false;
        self.pgid = Some(pid);
        self.init = InitProgress::new(&self.cfg);
        self.pre_stop = PreStop::NotRun;
        let http_initializer = matches!(
            self.cfg.initializer.as_ref().map(|i| &i.action),
            Some(HookAction::Http { .. })
        );
        self.function = Some(Function {
            pid,
            started: now,
            accepting: !self.serves(),
            initialized: self.cfg.initializer.is_none(),
            ready: false,
        });
        self.publish(|s| {
            s.phase = Phase::Starting;
            s.function_pid = Some(pid.as_raw());
            s.instance += 1;
            s.restarting = None;
        });
        if self.serves() {
            self.hint_at = Some(now + START_HINT_AFTER);
        }
        if self.serves() && !http_initializer {
            // Nothing is forwarded before the function accepts connections.
            let token = self.token();
            let deadline = now + self.cfg.function.start_timeout;
            self.probe = Some(Probe { token, deadline });
            self.act(Action::StartHook(HookStart {
                token,
                kind: HookKind::Probe,
                request_id: String::new(),
                run: HookRun::Probe { deadline },
            }));
        }
        if self.cfg.initializer.is_some() {
            self.start_initializer(None, now);
        } else if !self.initialize_calls.is_empty() {
            // FC asked before this instance existed: its call is this instance's attempt.
            let request_id = (self.request_ids)();
            self.start_forwarded_initialize(request_id, now);
        }
        self.maybe_ready_now();
    }

    fn probe_done(&mut self, result: Result<(), HookError>, now: Instant) {
        self.probe = None;
        match result {
            Ok(()) => {
                if let Some(f) = &mut self.function {
                    f.accepting = true;
                }
                self.maybe_ready_now();
            }
            Err(reason) => {
                let endpoint = match &self.cfg.function.endpoint {
                    crate::config::Endpoint::Unix(path) => path.display().to_string(),
                    crate::config::Endpoint::Tcp(port) => format!("127.0.0.1:{port}"),
                };
                log::error!(
                    "the function did not accept connections on {endpoint} within start_timeout ({}): {reason}",
                    humantime::format_duration(self.cfg.function.start_timeout)
                );
                let reason = reason.to_string();
                self.publish(|s| {
                    s.phase = Phase::Failed;
                    s.last_init_error = Some(reason);
                });
                self.begin_stop(StopCause::NotInitialized, Some(exit::NOT_INITIALIZED), now);
            }
        }
    }

    /// Publishes `Ready` once the instance accepts and is initialized; true when it just
    /// became ready (the caller tells systemd, after whatever line it writes).
    fn maybe_ready(&mut self) -> bool {
        if self.stop.is_some() {
            return false;
        }
        let Some(f) = &mut self.function else {
            return false;
        };
        if f.ready || !f.accepting || !f.initialized {
            return false;
        }
        f.ready = true;
        self.publish(|s| s.phase = Phase::Ready);
        log::info!("instance ready");
        if self.cfg.initializer.is_some() {
            for id in std::mem::take(&mut self.initialize_calls) {
                self.act(Action::Reply {
                    id,
                    answer: LifecycleAnswer::Done,
                });
            }
        }
        true
    }

    /// [`Core::maybe_ready`], telling systemd at once.
    fn maybe_ready_now(&mut self) {
        if self.maybe_ready() {
            self.act(Action::Notify("READY=1"));
        }
    }
}

impl InitProgress {
    fn new(cfg: &Config) -> InitProgress {
        InitProgress {
            failures: 0,
            retry_at: None,
            backoff: cfg
                .initializer
                .as_ref()
                .map(|i| i.backoff)
                .unwrap_or_default(),
            first: true,
            forwarded_done: false,
        }
    }
}
