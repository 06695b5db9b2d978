//! The lifecycle contract, line by line, against the pure core: a recording fake for the
//! effects and a fake clock. No process, socket or real clock is involved. Here the harness;
//! the tests by concern in `lifecycle`, `stop` and `platform`.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::*;
use crate::config::{self, Sources};

const FUNCTION: Pid = Pid::from_raw(100);

fn config(toml: &str) -> Arc<Config> {
    let sources = Sources {
        command: vec!["/bin/app".into()],
        env: BTreeMap::from([("XDG_RUNTIME_DIR".to_owned(), "/run/user/1000".to_owned())]),
        euid: 1000,
        ..Sources::default()
    };
    match config::from_str(toml, &sources) {
        Ok(cfg) => Arc::new(cfg),
        Err(e) => panic!("test config:\n{e}"),
    }
}

/// The core, a fake clock, and every action it asked for.
struct Sim {
    core: Core,
    now: Instant,
    t0: Instant,
    next_pid: i32,
    /// Every action, in order.
    log: Vec<Action>,
    /// The next `SpawnFunction` fails with this.
    spawn_error: Option<SpawnError>,
    /// What `AnnounceStopping` answers (requests in flight).
    in_flight: usize,
}

impl Effects for Sim {
    fn run(&mut self, action: Action) -> Option<Input> {
        let feedback = match &action {
            Action::SpawnFunction => Some(Input::Spawned(match self.spawn_error.take() {
                Some(e) => Err(e),
                None => {
                    self.next_pid += 1;
                    Ok(Pid::from_raw(self.next_pid - 1))
                }
            })),
            Action::StartHook(HookStart {
                token,
                run: HookRun::Command { .. },
                ..
            }) => Some(Input::HookStarted {
                token: *token,
                pid: Pid::from_raw(500 + *token as i32),
            }),
            Action::AnnounceStopping => Some(Input::InFlight(self.in_flight)),
            _ => None,
        };
        self.log.push(action);
        feedback
    }
}

/// Request ids `req-1`, `req-2`, …: the core takes them as given.
fn counted_ids() -> RequestIds {
    let mut n = 0;
    Box::new(move || {
        n += 1;
        format!("req-{n}")
    })
}

impl Sim {
    fn new(toml: &str) -> Sim {
        let now = Instant::now();
        Sim {
            core: Core::new(config(toml), counted_ids()),
            now,
            t0: now,
            next_pid: FUNCTION.as_raw(),
            log: Vec::new(),
            spawn_error: None,
            in_flight: 0,
        }
    }

    /// Started: the first instance spawned.
    fn started(toml: &str) -> Sim {
        let mut sim = Sim::new(toml);
        sim.input(Input::Start);
        sim
    }

    /// Feeds one input (and the feedback of its actions); returns the new actions.
    fn input(&mut self, input: Input) -> Vec<String> {
        let from = self.log.len();
        let mut core = std::mem::replace(&mut self.core, Core::new(config(""), counted_ids()));
        let now = self.now;
        drive(&mut core, self, input, now);
        self.core = core;
        self.log[from..].iter().map(describe).collect()
    }

    fn after(&mut self, d: Duration) -> Vec<String> {
        self.now += d;
        self.input(Input::Tick)
    }

    fn phase(&self) -> Phase {
        self.core.status().phase
    }

    fn exited(&mut self, pid: Pid, exit: Exit) -> Vec<String> {
        self.input(Input::Reaped {
            exits: vec![(pid, exit)],
            childless: false,
        })
    }

    /// The function (and everything else) is gone.
    fn all_gone(&mut self, pid: Pid, exit: Exit) -> Vec<String> {
        self.input(Input::Reaped {
            exits: vec![(pid, exit)],
            childless: true,
        })
    }

    fn signal(&mut self, sig: Signal) -> Vec<String> {
        self.input(Input::Signal(sig as i32))
    }

    /// The token of the last hook (or probe) of `kind` started.
    fn token(&self, kind: HookKind) -> u64 {
        self.log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::StartHook(h) if h.kind == kind => Some(h.token),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {kind:?} started: {:#?}", self.log))
    }

    fn done(&mut self, kind: HookKind, result: Result<(), HookError>) -> Vec<String> {
        let token = self.token(kind);
        self.input(Input::HookDone { token, result })
    }

    fn exit_code(&self) -> Option<i32> {
        self.log.iter().find_map(|a| match a {
            Action::Exit(code) => Some(*code),
            _ => None,
        })
    }

    fn count(&self, what: &str) -> usize {
        self.log.iter().map(describe).filter(|a| a == what).count()
    }

    fn has(&self, what: &str) -> bool {
        self.log.iter().map(describe).any(|a| a.starts_with(what))
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }
}

/// One action as a short line, so tests can compare sequences.
fn describe(action: &Action) -> String {
    match action {
        Action::SpawnFunction => "spawn".into(),
        Action::StartHook(h) => match &h.run {
            HookRun::Probe { .. } => "probe".into(),
            HookRun::Http { path, .. } => format!("http {:?} {path}", h.kind),
            HookRun::Command { .. } => format!("command {:?}", h.kind),
        },
        Action::Signal { to, signal } => {
            let name = crate::supervisor::signals::name(*signal);
            match to {
                Target::Process(p) => format!("{name} to {p}"),
                Target::Group(p) => format!("{name} to group {p}"),
                Target::Orphans => format!("{name} to orphans"),
                Target::Remaining { .. } => format!("{name} to what is left"),
            }
        }
        Action::Publish(s) => format!("phase {}", s.phase.as_str()),
        Action::AnnounceStopping => "announce stopping".into(),
        Action::Notify(s) => format!("notify {s}"),
        Action::Line(Line::Start { kind, .. }) => format!("{kind:?} start"),
        Action::Line(Line::End { kind, error, .. }) => match error {
            None => format!("{kind:?} end"),
            Some(e) => format!("{kind:?} end: {e}"),
        },
        Action::Reply { answer, .. } => format!("reply {answer:?}"),
        Action::Exit(code) => format!("exit {code}"),
        Action::StartHint(pid) => format!("start hint {pid}"),
        Action::ExitedBeforeAccepting => "exited before accepting".into(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const SERVING: &str = "[function]\nsocket = \"/tmp/f.sock\"\n";
const HTTP_INIT: &str = "[initializer]\n";
const COMMAND_INIT: &str =
    "[function]\nsocket = \"/tmp/f.sock\"\n[initializer]\ncommand = [\"/bin/init\"]\n";

fn with(parts: &[&str]) -> String {
    parts.concat()
}

mod lifecycle;
mod platform;
mod stop;
