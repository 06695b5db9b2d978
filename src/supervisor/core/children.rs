//! The children: exits the reaper found, signals to forward, an operator's terminate.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Action, Core, Stage, Target, RESTART_BACKOFF_MIN};
use crate::config::{ForwardTo, RestartPolicy};
use crate::state::{Phase, StopCause};
use crate::supervisor::hooks::{HookError, HookKind};
use crate::supervisor::reaper::Exit;
use crate::supervisor::signals;
use crate::supervisor::LifecycleAnswer;

impl Core {
    pub(super) fn reaped(&mut self, exits: Vec<(Pid, Exit)>, childless: bool, now: Instant) {
        self.childless = childless;
        for (pid, exit) in exits {
            if self.function.as_ref().is_some_and(|f| f.pid == pid) {
                self.function_exited(exit, now);
            } else if self.hook.as_ref().is_some_and(|h| h.command == Some(pid)) {
                self.finish_hook(HookError::from_command_exit(exit), now);
            } else if self.cfg.signals.warn_reaped {
                // tini's -w: a zombie that is not the function was someone else's to reap.
                log::warn!("reaped zombie process (pid {pid}): {exit}");
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

    pub(super) fn function_exited(&mut self, exit: Exit, now: Instant) {
        let f = self
            .function
            .take()
            .expect("called only for the running function");
        self.last_exit = Some(exit);
        self.repossess_kill_at = None;
        self.hint_at = None;
        log::info!("function (pid {}) {exit}", f.pid);
        if self.serves() && !f.accepting {
            self.act(Action::ExitedBeforeAccepting);
        }
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

    /// Passes a signal on to the function, rewritten by `signals.rewrite`: to its process or
    /// its process group (`signals.forward_to`).
    pub(super) fn forward(&mut self, received: i32) {
        let Some(f) = &self.function else {
            log::debug!("no function to forward {} to", signals::name(received));
            return;
        };
        let Some(signo) = self.cfg.signals.rewritten(received) else {
            log::debug!("{} dropped (signals.rewrite)", signals::name(received));
            return;
        };
        let to = match self.cfg.signals.forward_to {
            ForwardTo::Group => Target::Group(f.pid),
            ForwardTo::Process => Target::Process(f.pid),
        };
        self.act(Action::Signal { to, signal: signo });
    }

    /// Ends the instance for an operator's terminate; a new one is started once it is reaped.
    pub(super) fn terminate(&mut self, graceful: bool) {
        let Some(f) = &self.function else {
            return;
        };
        if self.stop.is_some() {
            return;
        }
        self.respawn_forced = true;
        if graceful {
            self.signalled = Some(f.pid);
        }
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
}

impl Core {
    /// A gracefully terminated event has ended: the process that got SIGTERM must not serve
    /// again (SCF repossesses the instance). If it still runs, it is stopped — the stop signal,
    /// SIGKILL after `grace_period` — and a new instance is started and initialized once it is
    /// reaped, whatever `restart` says.
    pub(super) fn repossess(&mut self, now: Instant) {
        let Some(pid) = self.signalled.take() else {
            return;
        };
        if self.stop.is_some() {
            return;
        }
        let Some(f) = &mut self.function else {
            // It exited: the new instance is on its way.
            return;
        };
        if f.pid != pid {
            return;
        }
        f.ready = false;
        log::warn!(
            "the instance (pid {pid}) was terminated gracefully and still runs: stopping it; a new instance takes over"
        );
        self.publish(|s| s.phase = Phase::Starting);
        self.respawn_forced = true;
        let signal = self.cfg.shutdown.stop_signal as i32;
        let to = match self.cfg.shutdown.kill_group {
            true => Target::Group(pid),
            false => Target::Process(pid),
        };
        self.act(Action::Signal { to, signal });
        self.repossess_kill_at = Some(now + self.cfg.shutdown.grace_period);
    }

    /// The repossessed process outlived its grace period: SIGKILL its group.
    pub(super) fn repossess_deadline(&mut self, now: Instant) {
        if self.repossess_kill_at.is_none_or(|t| now < t) {
            return;
        }
        self.repossess_kill_at = None;
        if let Some(f) = &self.function {
            log::warn!("grace period over: killing the instance (pid {})", f.pid);
            let to = Target::Group(f.pid);
            self.act(Action::Signal {
                to,
                signal: Signal::SIGKILL as i32,
            });
        }
    }
}
