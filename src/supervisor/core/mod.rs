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
//! The rules (CONTRACT section 6), in the order an instance lives them:
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

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::hooks::{HookError, HookKind};
use super::reaper::Exit;
use super::signals::{self, Disposition};
use super::spawn::SpawnError;
use super::{LifecycleAnswer, LifecycleCall};
use crate::config::{Config, HookAction, OnFailure, RestartPolicy};
use crate::exit;
use crate::state::{Phase, Status, StopCause};

#[cfg(test)]
mod tests;

/// First delay before a crashed function is started again; doubles up to `restart_backoff_max`.
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Per-attempt timeouts of FC's lifecycle calls forwarded to the function when no hook is
/// configured: the defaults of `initializer.timeout` and `pre_stop.timeout`.
const FORWARDED_INITIALIZE_TIMEOUT: Duration = Duration::from_secs(60);
const FORWARDED_PRE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

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

/// An FC line on stdout (CONTRACT section 5).
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
}

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
pub struct Core {
    cfg: Arc<Config>,
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
}

impl Core {
    pub fn new(cfg: Arc<Config>) -> Core {
        Core {
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
                log::error!(
                    "restarting the function: {}",
                    crate::logging::error_chain(&e)
                );
                let code = e.exit_code();
                self.begin_stop(StopCause::Failure, Some(code), now);
            }
            Input::Signal(signo) => match signals::disposition(signo) {
                // The shell reaps on SIGCHLD; a stray one changes nothing.
                Disposition::Reap => {}
                Disposition::Shutdown => {
                    log::info!("received {}", signals::name(signo));
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
            self.start_forwarded_initialize(crate::http::request_id::new_request_id(), now);
        }
        self.maybe_ready();
    }

    fn probe_done(&mut self, result: Result<(), HookError>, now: Instant) {
        self.probe = None;
        match result {
            Ok(()) => {
                if let Some(f) = &mut self.function {
                    f.accepting = true;
                }
                self.maybe_ready();
            }
            Err(reason) => {
                log::error!(
                    "the function did not accept connections within start_timeout ({}): {reason}",
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

    /// Publishes `Ready` once the instance accepts and is initialized.
    fn maybe_ready(&mut self) {
        if self.stop.is_some() {
            return;
        }
        let Some(f) = &mut self.function else {
            return;
        };
        if f.ready || !f.accepting || !f.initialized {
            return;
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
        self.act(Action::Notify("READY=1"));
    }

    // -----------------------------------------------------------------------------------------
    // Hook attempts

    /// Starts an attempt of the configured initializer (`request_id`: FC's, when its call
    /// started it).
    fn start_initializer(&mut self, request_id: Option<String>, now: Instant) {
        let init = self
            .cfg
            .initializer
            .as_ref()
            .expect("called only with an initializer configured");
        let (action, timeout) = (init.action.clone(), init.timeout);
        self.init.retry_at = None;
        self.publish(|s| {
            s.phase = Phase::Initializing;
            s.initializer_attempts += 1;
        });
        let request_id = request_id.unwrap_or_else(crate::http::request_id::new_request_id);
        self.start_hook(
            HookKind::Initialize,
            action,
            timeout,
            request_id,
            false,
            now,
        );
    }

    /// FC's `/initialize` with no initializer configured: the call itself goes to the function.
    fn start_forwarded_initialize(&mut self, request_id: String, now: Instant) {
        self.publish(|s| s.initializer_attempts += 1);
        let action = HookAction::Http {
            path: HookKind::Initialize.control_path().to_owned(),
        };
        let timeout = FORWARDED_INITIALIZE_TIMEOUT;
        self.start_hook(HookKind::Initialize, action, timeout, request_id, true, now);
    }

    fn start_pre_stop(&mut self, request_id: String, now: Instant) {
        let (action, timeout, forwarded) = match &self.cfg.pre_stop {
            Some(p) => (p.action.clone(), p.timeout, false),
            None => (
                HookAction::Http {
                    path: HookKind::PreStop.control_path().to_owned(),
                },
                FORWARDED_PRE_STOP_TIMEOUT,
                true,
            ),
        };
        self.pre_stop = PreStop::Running;
        self.start_hook(
            HookKind::PreStop,
            action,
            timeout,
            request_id,
            forwarded,
            now,
        );
    }

    fn start_hook(
        &mut self,
        kind: HookKind,
        action: HookAction,
        timeout: Duration,
        request_id: String,
        forwarded: bool,
        now: Instant,
    ) {
        let token = self.token();
        self.act(Action::Line(Line::Start {
            kind,
            request_id: request_id.clone(),
        }));
        let (run, deadline) = match action {
            HookAction::Command(argv) => (HookRun::Command { argv }, now + timeout),
            HookAction::Http { path } => {
                // Only the first initializer attempt of an instance waits for the function to
                // start listening, up to `start_timeout` after it was spawned.
                let connect_by = match (&self.function, kind) {
                    (Some(f), HookKind::Initialize) if self.init.first => {
                        f.started + self.cfg.function.start_timeout
                    }
                    _ => now,
                };
                // The attempt's own timeout starts once the function accepts; the core's bound
                // covers the longest the thread can legitimately take.
                let deadline = connect_by.max(now) + timeout;
                let run = HookRun::Http {
                    path,
                    connect_by,
                    timeout,
                };
                (run, deadline)
            }
        };
        if kind == HookKind::Initialize {
            self.init.first = false;
        }
        self.hook = Some(Hook {
            token,
            kind,
            request_id: request_id.clone(),
            deadline,
            command: None,
            forwarded,
        });
        self.act(Action::StartHook(HookStart {
            token,
            kind,
            request_id,
            run,
        }));
    }

    /// Ends the hook attempt under way with `result`.
    fn finish_hook(&mut self, result: Result<(), HookError>, now: Instant) {
        let Some(hook) = self.hook.take() else {
            return;
        };
        if let (Err(_), Some(pid)) = (&result, hook.command) {
            // Timed out or aborted: the hook's whole process group goes (ESRCH: already gone).
            self.act(Action::Signal {
                to: Target::Group(pid),
                signal: Signal::SIGKILL as i32,
            });
        }
        let error = result.as_ref().err().map(ToString::to_string);
        // The state changes first, so whoever reads the End line sees the instance ready (or
        // failed) already; systemd hears READY=1 after the line.
        let mut notices = Vec::new();
        match hook.kind {
            HookKind::PreStop => {
                let timed_out = matches!(result, Err(HookError::Timeout));
                let ended = match &error {
                    None => Ok(()),
                    Some(reason) => Err((reason.clone(), timed_out)),
                };
                self.pre_stop = PreStop::Ended(ended);
            }
            HookKind::Initialize if hook.forwarded => {
                if error.is_none() {
                    self.init.forwarded_done = true;
                }
                self.initialization_counted(&error);
            }
            HookKind::Initialize => {
                self.initialization_counted(&error);
                match &error {
                    None => {
                        self.init.failures = 0;
                        if let Some(f) = &mut self.function {
                            f.initialized = true;
                            // An HTTP initializer answered: the function accepts connections.
                            if matches!(
                                self.cfg.initializer.as_ref().map(|i| &i.action),
                                Some(HookAction::Http { .. })
                            ) {
                                f.accepting = true;
                            }
                        }
                        self.maybe_ready();
                    }
                    Some(reason) => self.initializer_failed(reason.clone(), now),
                }
            }
            HookKind::Probe => unreachable!("the probe is not a hook attempt"),
        }
        // The Notify(READY=1) that `maybe_ready` queued goes after the End line.
        if let Some(at) = self
            .actions
            .iter()
            .position(|a| matches!(a, Action::Notify("READY=1")))
        {
            notices.push(self.actions.remove(at));
        }
        self.act(Action::Line(Line::End {
            kind: hook.kind,
            request_id: hook.request_id,
            error: error.clone(),
        }));
        self.answer_hook_calls(hook.kind, hook.forwarded, &error, &result);
        self.actions.extend(notices);
    }

    /// Counts an initializer attempt's outcome in the published status.
    fn initialization_counted(&mut self, error: &Option<String>) {
        let error = error.clone();
        self.publish(|s| match error {
            None => s.initializer_successes += 1,
            Some(reason) => {
                s.initializer_failures += 1;
                s.last_init_error = Some(reason);
            }
        });
    }

    /// Answers the lifecycle calls that waited for the attempt that just ended.
    fn answer_hook_calls(
        &mut self,
        kind: HookKind,
        forwarded: bool,
        error: &Option<String>,
        result: &Result<(), HookError>,
    ) {
        let (calls, answer) = match (kind, error) {
            (HookKind::PreStop, None) => (
                std::mem::take(&mut self.pre_stop_calls),
                LifecycleAnswer::Done,
            ),
            (HookKind::PreStop, Some(reason)) => (
                std::mem::take(&mut self.pre_stop_calls),
                LifecycleAnswer::PreStopFailed {
                    reason: reason.clone(),
                    timed_out: matches!(result, Err(HookError::Timeout)),
                },
            ),
            // A forwarded attempt's success is FC's answer; a configured initializer's success
            // is answered when the instance is ready (`maybe_ready`).
            (HookKind::Initialize, None) if forwarded => (
                std::mem::take(&mut self.initialize_calls),
                LifecycleAnswer::Done,
            ),
            (HookKind::Initialize, None) => return,
            (HookKind::Initialize, Some(reason)) => (
                std::mem::take(&mut self.initialize_calls),
                LifecycleAnswer::InitializationFailed(reason.clone()),
            ),
            (HookKind::Probe, _) => return,
        };
        for id in calls {
            self.act(Action::Reply {
                id,
                answer: answer.clone(),
            });
        }
    }

    fn initializer_failed(&mut self, reason: String, now: Instant) {
        let init = self
            .cfg
            .initializer
            .clone()
            .expect("called only with an initializer configured");
        self.init.failures += 1;
        if self.function.is_none() || self.stop.is_some() {
            // The instance died under the attempt (the restart policy decides what comes
            // next), or the shutdown cut it.
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
            self.publish(|s| s.phase = Phase::Failed);
            self.begin_stop(StopCause::NotInitialized, Some(exit::NOT_INITIALIZED), now);
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
            self.publish(|s| s.phase = Phase::Failed);
        }
    }

    /// Ends the hook attempt under way, if any, as failed, with no further consequence: used
    /// when the shutdown overtakes it.
    fn abort_hook(&mut self, reason: HookError, now: Instant) {
        if self.hook.is_some() {
            self.finish_hook(Err(reason), now);
        }
    }

    // -----------------------------------------------------------------------------------------
    // FC's lifecycle calls

    fn platform_initialize(&mut self, request_id: String, id: CallId, now: Instant) {
        if let Some(answer) = self.stopping_answer() {
            return self.act(Action::Reply { id, answer });
        }
        let done = match self.cfg.initializer {
            Some(_) => self.function.as_ref().is_some_and(|f| f.ready),
            None => self.init.forwarded_done,
        };
        if done {
            return self.act(Action::Reply {
                id,
                answer: LifecycleAnswer::Done,
            });
        }
        self.initialize_calls.push(id);
        let attempt_under_way = self
            .hook
            .as_ref()
            .is_some_and(|h| h.kind == HookKind::Initialize);
        if attempt_under_way || self.function.is_none() {
            // It waits for that attempt, or for the next instance.
            return;
        }
        if self.hook.is_some() {
            // FC's own PreStop runs: nothing will initialize this instance any more.
            let calls = std::mem::take(&mut self.initialize_calls);
            for id in calls {
                self.act(Action::Reply {
                    id,
                    answer: LifecycleAnswer::InitializationFailed(
                        "the instance is running its PreStop hook".to_owned(),
                    ),
                });
            }
            return;
        }
        match self.cfg.initializer {
            // A retry scheduled, a failed `next-request`: FC's call is the next attempt. An
            // instance that only waits to accept connections is answered when it is ready.
            Some(_) if self.function.as_ref().is_some_and(|f| !f.initialized) => {
                self.start_initializer(Some(request_id), now)
            }
            Some(_) => {}
            None => self.start_forwarded_initialize(request_id, now),
        }
    }

    fn platform_pre_stop(&mut self, request_id: String, id: CallId, now: Instant) {
        let answer = match (&self.pre_stop, &self.function, &self.hook) {
            (PreStop::Running, _, _) => return self.pre_stop_calls.push(id),
            (PreStop::Ended(Ok(())), _, _) => LifecycleAnswer::Done,
            (PreStop::Ended(Err((reason, timed_out))), _, _) => LifecycleAnswer::PreStopFailed {
                reason: reason.clone(),
                timed_out: *timed_out,
            },
            (PreStop::NotRun, _, _) if self.stop.is_some() => skipped("fc-init is stopping"),
            (PreStop::NotRun, None, _) => skipped("the function is not running"),
            (PreStop::NotRun, Some(_), Some(_)) => skipped("an initializer attempt is under way"),
            (PreStop::NotRun, Some(f), None) => {
                let http = !matches!(
                    self.cfg.pre_stop.as_ref().map(|p| &p.action),
                    Some(HookAction::Command(_))
                );
                if http && !f.accepting {
                    skipped("the function never accepted connections")
                } else {
                    self.pre_stop_calls.push(id);
                    return self.start_pre_stop(request_id, now);
                }
            }
        };
        self.act(Action::Reply { id, answer });
    }

    /// What a lifecycle call gets once the shutdown has started.
    fn stopping_answer(&self) -> Option<LifecycleAnswer> {
        self.stop.as_ref()?;
        Some(match self.status.stop_cause {
            Some(StopCause::NotInitialized) => LifecycleAnswer::InitializationFailed(
                self.status
                    .last_init_error
                    .clone()
                    .unwrap_or_else(|| "the instance could not be initialized".to_owned()),
            ),
            _ => LifecycleAnswer::Stopping,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Children: exits, signals, terminate

    fn reaped(&mut self, exits: Vec<(Pid, Exit)>, childless: bool, now: Instant) {
        self.childless = childless;
        for (pid, exit) in exits {
            if self.function.as_ref().is_some_and(|f| f.pid == pid) {
                self.function_exited(exit, now);
            } else if self.hook.as_ref().is_some_and(|h| h.command == Some(pid)) {
                self.finish_hook(HookError::from_command_exit(exit), now);
            } else {
                log::debug!("reaped pid {pid}: {exit}");
            }
        }
        if !self.childless && self.orphans_to_stop && self.function.is_none() {
            self.orphans_to_stop = false;
            let signal = self.cfg.shutdown.stop_signal as i32;
            self.act(Action::Signal {
                to: Target::Orphans,
                signal,
            });
        }
        if !self.childless && self.stop.as_ref().is_some_and(|s| s.stage == Stage::Killed) {
            // Killing an orphan can orphan its own children onto fc-init: kill again until
            // nothing is left.
            self.kill_remaining();
        }
    }

    fn function_exited(&mut self, exit: Exit, now: Instant) {
        let f = self
            .function
            .take()
            .expect("called only for the running function");
        self.last_exit = Some(exit);
        log::info!("function (pid {}) {exit}", f.pid);
        self.publish(|s| s.function_pid = None);
        // The probe was waiting for this instance: it simply ends with it.
        self.probe = None;
        let ends_with_instance = self
            .hook
            .as_ref()
            .is_some_and(|h| h.kind != HookKind::PreStop || h.command.is_none());
        if ends_with_instance {
            // The instance it was talking to is gone (a command PreStop goes on: it may be
            // cleaning up after the function).
            self.finish_hook(Err(HookError::FunctionExited(exit)), now);
        }
        for id in std::mem::take(&mut self.initialize_calls) {
            self.act(Action::Reply {
                id,
                answer: LifecycleAnswer::InitializationFailed(format!("function {exit}")),
            });
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
            // fc-init ends with the function's own status, whatever was under way.
            self.begin_stop(StopCause::FunctionExited, None, now);
            return;
        }
        let backoff_max = self.cfg.function.restart_backoff_max;
        if now.duration_since(f.started) >= backoff_max {
            // It ran long enough to count as healthy: a new crash starts the backoff over.
            self.restart_delay = RESTART_BACKOFF_MIN;
        }
        // An operator's terminate is not a crash: the new instance starts at once.
        let delay = match forced {
            true => Duration::ZERO,
            false => self.restart_delay.min(backoff_max),
        };
        log::warn!(
            "function {exit}; restarting in {}",
            humantime::format_duration(delay)
        );
        self.respawn_at = Some(now + delay);
        if !forced {
            self.restart_delay = (delay * 2).min(backoff_max);
        }
        self.init.retry_at = None;
        let what = exit.to_string();
        self.publish(|s| {
            s.phase = Phase::Starting;
            s.restarting = Some(what);
        });
    }

    /// Passes a signal on to the function: its process group (`kill_group`) or its pid.
    fn forward(&mut self, signo: i32) {
        let Some(f) = &self.function else {
            log::debug!("no function to forward {} to", signals::name(signo));
            return;
        };
        let to = match self.cfg.shutdown.kill_group {
            true => Target::Group(f.pid),
            false => Target::Process(f.pid),
        };
        self.act(Action::Signal { to, signal: signo });
    }

    /// Ends the instance for an operator's terminate; a new one is started once it is reaped.
    fn terminate(&mut self, graceful: bool) {
        let Some(f) = &self.function else {
            return;
        };
        if self.stop.is_some() {
            return;
        }
        self.respawn_forced = true;
        let (to, signal) = match graceful {
            true => (Target::Process(f.pid), Signal::SIGTERM),
            false => (Target::Group(f.pid), Signal::SIGKILL),
        };
        log::warn!(
            "terminating the instance (pid {}) for an asynchronous event with {signal}",
            f.pid
        );
        self.act(Action::Signal {
            to,
            signal: signal as i32,
        });
    }

    // -----------------------------------------------------------------------------------------
    // The shutdown

    /// SIGTERM/SIGINT: the first starts the shutdown, the second skips the remaining waits.
    fn request_stop(&mut self, now: Instant) {
        match &mut self.stop {
            None => self.begin_stop(StopCause::Signal, None, now),
            Some(stop) => {
                log::info!("second stop signal: skipping the remaining waits");
                stop.forced = true;
                self.abort_hook(HookError::SecondSignal, now);
            }
        }
    }

    /// Starts the shutdown. `code` overrides the exit status (3: not initialized).
    fn begin_stop(&mut self, cause: StopCause, code: Option<i32>, now: Instant) {
        if self.stop.is_some() {
            return;
        }
        self.publish(|s| {
            s.phase = Phase::Stopping;
            s.stop_cause = Some(cause);
        });
        self.act(Action::AnnounceStopping);
        self.in_flight = None;
        self.act(Action::Notify("STOPPING=1"));
        self.respawn_at = None;
        self.init.retry_at = None;
        self.probe = None;
        // Stop now so that the aborted attempt below has no further consequence.
        self.stop = Some(Stop {
            stage: Stage::Killed,
            forced: false,
            code,
        });
        let initializing = self
            .hook
            .as_ref()
            .is_some_and(|h| h.kind == HookKind::Initialize);
        // Initialization in progress: abort it; PreStop is skipped.
        if initializing {
            self.abort_hook(HookError::Stopping, now);
        }
        if let Some(answer) = self.stopping_answer() {
            for id in std::mem::take(&mut self.initialize_calls) {
                self.act(Action::Reply {
                    id,
                    answer: answer.clone(),
                });
            }
        }
        let stage = match self.pre_stop_decision(code, initializing) {
            Ok(()) => {
                let request_id = crate::http::request_id::new_request_id();
                self.start_pre_stop(request_id, now);
                Stage::PreStop
            }
            // FC's own `/pre-stop` is running it: the stop waits for it.
            Err(None) if self.pre_stop == PreStop::Running => Stage::PreStop,
            Err(why) => {
                if let Some(why) = why {
                    log::warn!("PreStop skipped: {why}");
                }
                Stage::Drain {
                    until: now + self.cfg.shutdown.drain_timeout,
                }
            }
        };
        self.stop.as_mut().expect("set above").stage = stage;
    }

    /// Whether the stop runs PreStop; `Err(Some(why))` when a configured PreStop is skipped
    /// for a reason worth a diagnostic.
    fn pre_stop_decision(&self, code: Option<i32>, initializing: bool) -> Result<(), Option<&str>> {
        let Some(pre_stop) = &self.cfg.pre_stop else {
            return Err(None);
        };
        if self.pre_stop != PreStop::NotRun || code.is_some() {
            // It ran already (FC's `/pre-stop`), or the instance is being given up.
            return Err(None);
        }
        let Some(f) = &self.function else {
            return Err(None);
        };
        if initializing {
            return Err(Some("the stop came during initialization"));
        }
        match pre_stop.action {
            HookAction::Command(_) => Ok(()),
            HookAction::Http { .. } if f.ready => Ok(()),
            HookAction::Http { .. } if !f.accepting => {
                Err(Some("the function never accepted connections"))
            }
            HookAction::Http { .. } => Err(Some("the instance was never initialized")),
        }
    }

    /// Moves deadlines and the shutdown forward.
    fn advance(&mut self, now: Instant) {
        if self.probe.as_ref().is_some_and(|p| now >= p.deadline) {
            self.probe_done(Err(HookError::Timeout), now);
        }
        if self.hook.as_ref().is_some_and(|h| now >= h.deadline) {
            self.finish_hook(Err(HookError::Timeout), now);
        }
        if self.stop.is_none() {
            if self.respawn_at.is_some_and(|t| now >= t) {
                self.respawn_at = None;
                self.publish(|s| s.restarts += 1);
                self.act(Action::SpawnFunction);
            }
            if self.init.retry_at.is_some_and(|t| now >= t) && self.hook.is_none() {
                self.start_initializer(None, now);
            }
        }
        loop {
            let Some(stop) = &self.stop else {
                return;
            };
            let (stage, forced) = (stop.stage, stop.forced);
            let next = match stage {
                Stage::PreStop if self.pre_stop == PreStop::Running => None,
                Stage::PreStop => Some(Stage::Drain {
                    until: now + self.cfg.shutdown.drain_timeout,
                }),
                // Nothing left to stop (the function exited and left no one behind): done.
                Stage::Drain { .. } if self.childless => Some(Stage::Killed),
                Stage::Drain { until } if forced || now >= until || self.in_flight == Some(0) => {
                    self.send_stop_signal();
                    Some(Stage::Grace {
                        until: now + self.cfg.shutdown.grace_period,
                    })
                }
                Stage::Grace { until } if forced || now >= until || self.childless => {
                    if !self.childless {
                        log::warn!("grace period over: killing what is left");
                        self.kill_remaining();
                    }
                    Some(Stage::Killed)
                }
                _ => None,
            };
            match next {
                Some(next) => self.stop.as_mut().expect("checked above").stage = next,
                None => break,
            }
        }
        let stop = self.stop.as_ref().expect("checked in the loop");
        if matches!(stop.stage, Stage::Grace { .. } | Stage::Killed) && self.childless {
            let code = stop
                .code
                .or(self.last_exit.map(Exit::status))
                .unwrap_or(exit::OK);
            self.exited = true;
            self.act(Action::Exit(code));
        }
    }

    /// Sends `stop_signal` to the function (group or pid), and to every adopted orphan once
    /// the function is gone.
    ///
    /// Orphans come second: while the function runs they are usually its helpers, which it may
    /// want to stop itself, and finding them costs a look into /proc that the common case (no
    /// orphans at all) should not pay on its way to exiting.
    fn send_stop_signal(&mut self) {
        let signal = self.cfg.shutdown.stop_signal as i32;
        match (&self.function, self.cfg.shutdown.kill_group, self.pgid) {
            (Some(f), false, _) => self.act(Action::Signal {
                to: Target::Process(f.pid),
                signal,
            }),
            (_, _, Some(group)) => self.act(Action::Signal {
                to: Target::Group(group),
                signal,
            }),
            _ => {}
        }
        if self.function.is_some() {
            self.orphans_to_stop = true;
        } else {
            self.orphans_to_stop = false;
            self.act(Action::Signal {
                to: Target::Orphans,
                signal,
            });
        }
    }

    fn kill_remaining(&mut self) {
        self.act(Action::Signal {
            to: Target::Remaining { group: self.pgid },
            signal: Signal::SIGKILL as i32,
        });
    }
}

fn skipped(why: &str) -> LifecycleAnswer {
    LifecycleAnswer::PreStopFailed {
        reason: format!("skipped: {why}"),
        timed_out: false,
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
