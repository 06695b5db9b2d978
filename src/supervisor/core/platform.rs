//! FC's own lifecycle calls (`server.platform = "fc"`): `/initialize` and `/pre-stop` served
//! from the instance's lifecycle, so each hook runs once per instance whoever asks.

use std::time::Instant;

use super::{Action, CallId, Core, PreStop};
use crate::config::HookAction;
use crate::state::StopCause;
use crate::supervisor::hooks::HookKind;
use crate::supervisor::LifecycleAnswer;

impl Core {
    pub(super) fn platform_initialize(&mut self, request_id: String, id: CallId, now: Instant) {
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

    pub(super) fn platform_pre_stop(&mut self, request_id: String, id: CallId, now: Instant) {
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
    pub(super) fn stopping_answer(&self) -> Option<LifecycleAnswer> {
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
}

fn skipped(why: &str) -> LifecycleAnswer {
    LifecycleAnswer::PreStopFailed {
        reason: format!("skipped: {why}"),
        timed_out: false,
    }
}
