//! Hook attempts: starting an initializer or PreStop attempt (configured, or FC's own call
//! forwarded to the function), ending it, and what its outcome means for the instance.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Action, Core, Hook, HookRun, HookStart, Line, PreStop, Target};
use crate::config::{HookAction, OnFailure};
use crate::exit;
use crate::state::{Phase, StopCause};
use crate::supervisor::hooks::{HookError, HookKind};
use crate::supervisor::LifecycleAnswer;

/// Per-attempt timeouts of FC's lifecycle calls forwarded to the function when no hook is
/// configured: the defaults of `initializer.timeout` and `pre_stop.timeout`.
const FORWARDED_INITIALIZE_TIMEOUT: Duration = Duration::from_secs(60);
const FORWARDED_PRE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Core {
    /// Starts an attempt of the configured initializer (`request_id`: FC's, when its call
    /// started it).
    pub(super) fn start_initializer(&mut self, request_id: Option<String>, now: Instant) {
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
        let request_id = request_id.unwrap_or_else(|| (self.request_ids)());
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
    pub(super) fn start_forwarded_initialize(&mut self, request_id: String, now: Instant) {
        self.publish(|s| s.initializer_attempts += 1);
        let action = HookAction::Http {
            path: HookKind::Initialize.control_path().to_owned(),
        };
        let timeout = FORWARDED_INITIALIZE_TIMEOUT;
        self.start_hook(HookKind::Initialize, action, timeout, request_id, true, now);
    }

    pub(super) fn start_pre_stop(&mut self, request_id: String, now: Instant) {
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

    pub(super) fn start_hook(
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
    pub(super) fn finish_hook(&mut self, result: Result<(), HookError>, now: Instant) {
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
        let mut ready = false;
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
                        ready = self.maybe_ready();
                    }
                    Some(reason) => self.initializer_failed(reason.clone(), now),
                }
            }
            HookKind::Probe => unreachable!("the probe is not a hook attempt"),
        }
        self.act(Action::Line(Line::End {
            kind: hook.kind,
            request_id: hook.request_id,
            error: error.clone(),
        }));
        self.answer_hook_calls(hook.kind, hook.forwarded, &error, &result);
        if ready {
            self.act(Action::Notify("READY=1"));
        }
    }

    /// Counts an initializer attempt's outcome in the published status.
    pub(super) fn initialization_counted(&mut self, error: &Option<String>) {
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
    pub(super) fn answer_hook_calls(
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

    pub(super) fn initializer_failed(&mut self, reason: String, now: Instant) {
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
    pub(super) fn abort_hook(&mut self, reason: HookError, now: Instant) {
        if self.hook.is_some() {
            self.finish_hook(Err(reason), now);
        }
    }
}
