//! The shutdown: PreStop (when it applies), the drain, the stop signal, the grace period,
//! SIGKILL, and the exit once every child is reaped; and the deadlines that move it on.

use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Action, Core, PreStop, Stage, Stop, Target};
use crate::config::HookAction;
use crate::exit;
use crate::state::{Phase, StopCause};
use crate::supervisor::hooks::{HookError, HookKind};
use crate::supervisor::reaper::Exit;

impl Core {
    /// SIGTERM/SIGINT: the first starts the shutdown, the second skips the remaining waits.
    pub(super) fn request_stop(&mut self, now: Instant) {
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
    pub(super) fn begin_stop(&mut self, cause: StopCause, code: Option<i32>, now: Instant) {
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
                let request_id = (self.request_ids)();
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
    pub(super) fn pre_stop_decision(
        &self,
        code: Option<i32>,
        initializing: bool,
    ) -> Result<(), Option<&str>> {
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
    pub(super) fn advance(&mut self, now: Instant) {
        self.repossess_deadline(now);
        if self.hint_at.is_some_and(|t| now >= t) {
            self.hint_at = None;
            if let Some(f) = self.function.as_ref().filter(|f| !f.accepting) {
                let pid = f.pid;
                self.act(Action::StartHint(pid));
            }
        }
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
            // tini's -e: the function's listed statuses count as success.
            let function_status = self.last_exit.map(Exit::status).map(|s| {
                match self.cfg.signals.success_codes.contains(&s) {
                    true => exit::OK,
                    false => s,
                }
            });
            let code = stop.code.or(function_status).unwrap_or(exit::OK);
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
    pub(super) fn send_stop_signal(&mut self) {
        let signal = self
            .stop_signal_override
            .unwrap_or(self.cfg.shutdown.stop_signal as i32);
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

    pub(super) fn kill_remaining(&mut self) {
        self.act(Action::Signal {
            to: Target::Remaining { group: self.pgid },
            signal: Signal::SIGKILL as i32,
        });
    }
}
