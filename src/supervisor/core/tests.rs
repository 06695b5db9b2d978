//! The lifecycle contract, line by line, against the pure core: a recording fake for the
//! effects and a fake clock. No process, socket or real clock is involved.

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

// ---------------------------------------------------------------------------------------------
// Start and readiness

#[test]
fn a_plain_init_is_ready_as_soon_as_the_function_runs() {
    let mut sim = Sim::new("");
    let actions = sim.input(Input::Start);
    assert_eq!(
        actions,
        ["spawn", "phase starting", "phase ready", "notify READY=1"]
    );
}

#[test]
fn a_serving_function_without_initializer_is_ready_once_it_accepts() {
    let mut sim = Sim::started(SERVING);
    assert_eq!(sim.phase(), Phase::Starting);
    assert!(sim.has("probe"));
    assert_eq!(
        sim.done(HookKind::Probe, Ok(())),
        ["phase ready", "notify READY=1"]
    );
}

#[test]
fn the_http_initializer_waits_for_the_socket_itself_and_no_probe_runs() {
    let mut sim = Sim::started(HTTP_INIT);
    assert!(!sim.has("probe"));
    let start = sim.log.iter().find_map(|a| match a {
        Action::StartHook(HookStart {
            run: HookRun::Http { connect_by, .. },
            ..
        }) => Some(*connect_by),
        _ => None,
    });
    assert_eq!(
        start,
        Some(sim.t0 + secs(120)),
        "start_timeout after the spawn"
    );
    assert_eq!(sim.phase(), Phase::Initializing);
    assert_eq!(
        sim.done(HookKind::Initialize, Ok(())),
        [
            "phase initializing",
            "phase ready",
            "Initialize end",
            "notify READY=1"
        ]
    );
}

#[test]
fn a_command_initializer_starts_at_once_and_traffic_waits_for_it_and_the_socket() {
    let mut sim = Sim::started(COMMAND_INIT);
    assert!(sim.has("probe") && sim.has("command Initialize"));
    sim.done(HookKind::Probe, Ok(()));
    assert_eq!(
        sim.phase(),
        Phase::Initializing,
        "accepting, not initialized"
    );
    sim.exited(
        Pid::from_raw(500 + sim.token(HookKind::Initialize) as i32),
        Exit::Code(0),
    );
    assert_eq!(sim.phase(), Phase::Ready);
}

#[test]
fn a_command_initializer_runs_for_a_function_that_never_listens() {
    let mut sim = Sim::started(COMMAND_INIT);
    let init = Pid::from_raw(500 + sim.token(HookKind::Initialize) as i32);
    assert_eq!(
        sim.exited(init, Exit::Code(0)),
        ["phase initializing", "Initialize end"]
    );
    assert_eq!(
        sim.phase(),
        Phase::Initializing,
        "still waiting for the socket"
    );
}

#[test]
fn a_function_that_never_accepts_within_start_timeout_is_exit_3() {
    let mut sim = Sim::started(SERVING);
    sim.after(secs(119));
    assert_eq!(sim.phase(), Phase::Starting);
    sim.after(secs(1));
    assert_eq!(sim.phase(), Phase::Stopping);
    assert_eq!(
        sim.core.status().stop_cause,
        Some(StopCause::NotInitialized)
    );
    assert!(sim.has("SIGTERM to group 100"));
    sim.all_gone(FUNCTION, Exit::Signal(libc::SIGTERM));
    assert_eq!(sim.exit_code(), Some(3));
}

// ---------------------------------------------------------------------------------------------
// The function exits on its own

#[test]
fn a_serving_function_that_exits_before_it_listens_gives_its_own_status() {
    // `fc-init --listen :9000 -- sh -c 'exit 7'` exits 7, as under tini.
    let mut sim = Sim::started(SERVING);
    sim.all_gone(FUNCTION, Exit::Code(7));
    assert_eq!(sim.exit_code(), Some(7));
}

#[test]
fn a_function_killed_by_a_signal_gives_128_plus_the_signal() {
    let mut sim = Sim::started(SERVING);
    sim.done(HookKind::Probe, Ok(()));
    sim.all_gone(FUNCTION, Exit::Signal(libc::SIGKILL));
    assert_eq!(sim.exit_code(), Some(137));
}

#[test]
fn a_function_that_exits_during_its_first_initializer_attempt_gives_its_own_status() {
    let mut sim = Sim::started(with(&[HTTP_INIT, "on_failure = \"exit\"\n"]).as_str());
    let actions = sim.all_gone(FUNCTION, Exit::Code(5));
    assert!(
        actions.contains(&"Initialize end: function exited with status 5".to_owned()),
        "{actions:?}"
    );
    assert_eq!(sim.exit_code(), Some(5), "not 3: the function's own exit");
}

#[test]
fn a_plain_function_that_exits_is_followed_by_fc_init_at_once() {
    let mut sim = Sim::started("");
    let actions = sim.all_gone(FUNCTION, Exit::Code(0));
    assert_eq!(actions.last().map(String::as_str), Some("exit 0"));
    assert!(!sim.has("SIGTERM"), "nothing left to signal");
}

// Restart policy × exit kind, as a matrix.
#[test]
fn restart_policy_matrix() {
    let cases = [
        ("never", Exit::Code(0), false),
        ("never", Exit::Code(1), false),
        ("never", Exit::Signal(9), false),
        ("on-failure", Exit::Code(0), false),
        ("on-failure", Exit::Code(1), true),
        ("on-failure", Exit::Signal(9), true),
        ("always", Exit::Code(0), true),
        ("always", Exit::Code(1), true),
        ("always", Exit::Signal(9), true),
    ];
    for (policy, exit, restarts) in cases {
        let mut sim = Sim::started(&format!("[function]\nrestart = \"{policy}\"\n"));
        sim.exited(FUNCTION, exit);
        sim.after(secs(60));
        assert_eq!(
            sim.count("spawn") == 2,
            restarts,
            "{policy} after {exit}: {:?}",
            sim.log.iter().map(describe).collect::<Vec<_>>()
        );
        if !restarts {
            assert_eq!(sim.phase(), Phase::Stopping, "{policy} after {exit}");
        }
    }
}

#[test]
fn restarts_back_off_exponentially_up_to_the_maximum() {
    let mut sim =
        Sim::started("[function]\nrestart = \"always\"\nrestart_backoff_max = \"400ms\"\n");
    let mut delays = Vec::new();
    for n in 0..5 {
        let pid = Pid::from_raw(FUNCTION.as_raw() + n);
        sim.exited(pid, Exit::Code(1));
        let at = sim.now;
        while sim.count("spawn") < n as usize + 2 {
            sim.after(ms(10));
        }
        delays.push((sim.now - at).as_millis());
    }
    assert_eq!(delays, [100, 200, 400, 400, 400]);
    assert_eq!(sim.core.status().restarts, 5);
}

#[test]
fn requests_waiting_through_a_restart_backoff_are_told_the_function_is_restarting() {
    let mut sim = Sim::started("[function]\nrestart = \"on-failure\"\n");
    sim.exited(FUNCTION, Exit::Code(1));
    assert_eq!(
        sim.core.status().restarting.as_deref(),
        Some("exited with status 1")
    );
    sim.after(ms(100));
    assert_eq!(sim.core.status().restarting, None, "a new instance runs");
}

#[test]
fn a_restart_initializes_the_new_instance_again() {
    let mut sim = Sim::started(&with(&["[function]\nrestart = \"always\"\n", HTTP_INIT]));
    sim.done(HookKind::Initialize, Ok(()));
    sim.exited(FUNCTION, Exit::Code(1));
    sim.after(ms(100));
    assert_eq!(sim.count("http Initialize /initialize"), 2);
    assert_eq!(sim.core.status().instance, 2);
}

// ---------------------------------------------------------------------------------------------
// Initializer policies: on_failure × attempts × timing

#[test]
fn retry_backs_off_doubling_until_it_succeeds() {
    let mut sim = Sim::started(&with(&[
        HTTP_INIT,
        "backoff = \"100ms\"\nbackoff_max = \"300ms\"\n",
    ]));
    let mut starts = Vec::new();
    for _ in 0..4 {
        sim.done(HookKind::Initialize, Err(HookError::Status(500)));
        assert_eq!(
            sim.phase(),
            Phase::Initializing,
            "health: initializing between retries"
        );
        let at = sim.now;
        let before = sim.count("http Initialize /initialize");
        while sim.count("http Initialize /initialize") == before {
            sim.after(ms(50));
        }
        starts.push((sim.now - at).as_millis());
    }
    assert_eq!(starts, [100, 200, 300, 300]);
    sim.done(HookKind::Initialize, Ok(()));
    assert_eq!(sim.phase(), Phase::Ready);
    assert_eq!(sim.core.status().initializer_attempts, 5);
}

#[test]
fn retry_gives_up_after_max_attempts_with_exit_3_and_no_pre_stop() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "max_attempts = 2\n[pre_stop]\n"]));
    sim.done(HookKind::Initialize, Err(HookError::Status(500)));
    sim.after(secs(1));
    sim.done(HookKind::Initialize, Err(HookError::Status(500)));
    assert_eq!(sim.phase(), Phase::Stopping);
    assert!(!sim.has("http PreStop"));
    sim.all_gone(FUNCTION, Exit::Signal(libc::SIGTERM));
    assert_eq!(sim.exit_code(), Some(3));
}

#[test]
fn exit_gives_up_on_the_first_failure_and_waiting_requests_get_initialization_error() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "on_failure = \"exit\"\n"]));
    sim.done(HookKind::Initialize, Err(HookError::Status(503)));
    let status = sim.core.status();
    assert_eq!(status.phase, Phase::Stopping);
    assert_eq!(
        status.not_ready(),
        Some(crate::state::NotReady::Initialization("status 503".into()))
    );
    sim.all_gone(FUNCTION, Exit::Signal(libc::SIGTERM));
    assert_eq!(sim.exit_code(), Some(3));
}

#[test]
fn next_request_tries_once_per_request_and_not_in_the_background() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "on_failure = \"next-request\"\n"]));
    sim.done(HookKind::Initialize, Err(HookError::Timeout));
    assert_eq!(sim.phase(), Phase::Failed);
    sim.after(secs(600));
    assert_eq!(
        sim.count("http Initialize /initialize"),
        1,
        "no background retry"
    );
    sim.input(Input::InitRequested);
    assert_eq!(sim.count("http Initialize /initialize"), 2);
    sim.input(Input::InitRequested);
    assert_eq!(
        sim.count("http Initialize /initialize"),
        2,
        "one attempt at a time"
    );
    sim.done(HookKind::Initialize, Ok(()));
    assert_eq!(sim.phase(), Phase::Ready);
}

#[test]
fn an_attempt_is_cut_at_its_timeout_with_the_timeout_reason() {
    let mut sim = Sim::started(&with(&[
        SERVING,
        "[initializer]\ntimeout = \"5s\"\non_failure = \"next-request\"\n",
    ]));
    sim.after(secs(1));
    // The first attempt may wait start_timeout for the socket, then has its own 5s.
    sim.after(secs(124));
    assert!(sim.has("Initialize end: timeout"));
    assert_eq!(
        sim.core.status().last_init_error.as_deref(),
        Some("timeout")
    );
}

#[test]
fn a_hanging_command_initializer_is_killed_with_its_group_at_the_timeout() {
    let mut sim = Sim::started(
        "[initializer]\ncommand = [\"/bin/init\"]\ntimeout = \"2s\"\non_failure = \"next-request\"\n",
    );
    let group = 500 + sim.token(HookKind::Initialize);
    let actions = sim.after(secs(2));
    assert!(
        actions.contains(&format!("SIGKILL to group {group}")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"Initialize end: timeout".to_owned()),
        "{actions:?}"
    );
}

#[test]
fn each_initializer_attempt_has_its_own_request_id() {
    let mut sim = Sim::started(HTTP_INIT);
    sim.done(HookKind::Initialize, Err(HookError::Refused));
    sim.after(secs(1));
    let ids: Vec<&str> = sim
        .log
        .iter()
        .filter_map(|a| match a {
            Action::StartHook(h) if h.kind == HookKind::Initialize => Some(h.request_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

// ---------------------------------------------------------------------------------------------
// The shutdown sequence

#[test]
fn sigterm_runs_pre_stop_before_draining_and_the_stop_signal() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "[pre_stop]\n"]));
    sim.done(HookKind::Initialize, Ok(()));
    sim.in_flight = 1;
    let actions = sim.signal(Signal::SIGTERM);
    assert_eq!(
        actions,
        [
            "phase stopping",
            "announce stopping",
            "notify STOPPING=1",
            "PreStop start",
            "http PreStop /pre-stop"
        ]
    );
    assert_eq!(sim.done(HookKind::PreStop, Ok(())), ["PreStop end"]);
    // One request still in flight: the drain waits for it.
    assert!(!sim.has("SIGTERM to"));
    assert_eq!(sim.input(Input::InFlight(0)), ["SIGTERM to group 100"]);
    sim.all_gone(FUNCTION, Exit::Code(0));
    assert_eq!(sim.exit_code(), Some(0));
}

#[test]
fn sigterm_during_initialization_aborts_the_attempt_and_skips_pre_stop() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "[pre_stop]\n"]));
    let actions = sim.signal(Signal::SIGTERM);
    assert!(actions.contains(&"Initialize end: aborted: fc-init is stopping".to_owned()));
    assert!(!sim.has("http PreStop"));
    assert!(
        sim.has("SIGTERM to group 100"),
        "nothing in flight: straight to the signal"
    );
}

#[test]
fn a_command_pre_stop_runs_even_while_fc_init_still_waits_for_the_socket() {
    let mut sim = Sim::started(&with(&[SERVING, "[pre_stop]\ncommand = [\"/bin/bye\"]\n"]));
    assert_eq!(sim.phase(), Phase::Starting);
    sim.signal(Signal::SIGTERM);
    assert!(sim.has("command PreStop"));
}

#[test]
fn an_http_pre_stop_is_skipped_for_a_function_that_never_accepted() {
    let mut sim = Sim::started(&with(&[SERVING, "[pre_stop]\n"]));
    sim.signal(Signal::SIGTERM);
    assert!(!sim.has("http PreStop"));
    assert!(sim.has("SIGTERM to group 100"));
}

#[test]
fn a_hanging_pre_stop_is_cut_at_its_timeout_and_the_stop_goes_on() {
    let mut sim =
        Sim::started("[function]\nsocket = \"/tmp/f.sock\"\n[pre_stop]\ntimeout = \"3s\"\n");
    sim.done(HookKind::Probe, Ok(()));
    sim.signal(Signal::SIGTERM);
    sim.after(secs(3));
    assert!(sim.has("PreStop end: timeout"));
    assert!(sim.has("SIGTERM to group 100"));
}

#[test]
fn the_drain_ends_at_drain_timeout_even_with_requests_in_flight() {
    let mut sim =
        Sim::started("[function]\nsocket = \"/tmp/f.sock\"\n[shutdown]\ndrain_timeout = \"5s\"\n");
    sim.done(HookKind::Probe, Ok(()));
    sim.in_flight = 3;
    sim.signal(Signal::SIGTERM);
    sim.after(ms(4999));
    assert!(!sim.has("SIGTERM to"));
    sim.after(ms(1));
    assert!(sim.has("SIGTERM to group 100"));
}

#[test]
fn what_is_left_after_the_grace_period_is_killed_and_the_exit_waits_for_the_last_child() {
    let mut sim = Sim::started("[shutdown]\ngrace_period = \"2s\"\n");
    sim.signal(Signal::SIGTERM);
    assert!(sim.has("SIGTERM to group 100"));
    sim.after(secs(2));
    assert!(sim.has("SIGKILL to what is left"));
    assert_eq!(sim.exit_code(), None, "not before everything is reaped");
    sim.all_gone(FUNCTION, Exit::Signal(libc::SIGKILL));
    assert_eq!(sim.exit_code(), Some(137));
    assert_eq!(sim.elapsed(), secs(2));
}

#[test]
fn a_second_sigterm_skips_the_remaining_waits() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "[pre_stop]\n"]));
    sim.done(HookKind::Initialize, Ok(()));
    sim.in_flight = 5;
    sim.signal(Signal::SIGTERM);
    let actions = sim.signal(Signal::SIGINT);
    assert!(actions.contains(&"PreStop end: interrupted by a second stop signal".to_owned()));
    assert!(actions.contains(&"SIGTERM to group 100".to_owned()));
    assert!(actions.contains(&"SIGKILL to what is left".to_owned()));
}

#[test]
fn orphans_get_the_stop_signal_once_the_function_is_gone() {
    let mut sim = Sim::started("");
    sim.signal(Signal::SIGTERM);
    assert!(!sim.has("SIGTERM to orphans"));
    sim.exited(FUNCTION, Exit::Code(0));
    assert!(sim.has("SIGTERM to orphans"));
    assert_eq!(sim.exit_code(), None);
    sim.input(Input::Reaped {
        exits: vec![(Pid::from_raw(999), Exit::Signal(libc::SIGTERM))],
        childless: true,
    });
    assert_eq!(
        sim.exit_code(),
        Some(0),
        "the function's status, not the orphan's"
    );
}

#[test]
fn the_stop_signal_goes_to_the_process_only_without_kill_group() {
    let mut sim = Sim::started("[shutdown]\nkill_group = false\nstop_signal = \"SIGQUIT\"\n");
    sim.signal(Signal::SIGTERM);
    assert!(sim.has("SIGQUIT to 100"));
}

#[test]
fn other_signals_are_forwarded_to_the_process_as_tini_does() {
    // kill_group = true (the default) is the stop's business, not the forwarding's: a
    // reloading master's workers are spared (gunicorn's die on SIGHUP).
    let mut sim = Sim::started("");
    for sig in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGWINCH] {
        let actions = sim.signal(sig);
        assert_eq!(actions, [format!("{} to 100", sig.as_str())]);
    }
    assert_eq!(sim.phase(), Phase::Ready);
}

#[test]
fn other_signals_are_forwarded_to_the_group_with_forward_to_group() {
    let mut sim = Sim::started("[signals]\nforward_to = \"group\"\n");
    for sig in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGWINCH] {
        let actions = sim.signal(sig);
        assert_eq!(actions, [format!("{} to group 100", sig.as_str())]);
    }
}

#[test]
fn forwarded_signals_are_rewritten_or_dropped() {
    let mut sim = Sim::started("[signals]\nrewrite = { SIGHUP = \"SIGUSR2\", SIGWINCH = 0 }\n");
    assert_eq!(sim.signal(Signal::SIGHUP), ["SIGUSR2 to 100"]);
    assert!(sim.signal(Signal::SIGWINCH).is_empty());
    assert_eq!(sim.signal(Signal::SIGUSR1), ["SIGUSR1 to 100"]);
}

#[test]
fn plain_mode_sigterm_reaches_the_function_rewritten() {
    let mut sim = Sim::started("[signals]\nrewrite = { SIGTERM = \"SIGQUIT\" }\n");
    sim.signal(Signal::SIGTERM);
    assert!(sim.has("SIGQUIT to group 100"), "{:#?}", sim.log);
    assert!(!sim.has("SIGTERM"));
}

#[test]
fn plain_mode_sigterm_rewritten_to_0_is_dropped() {
    let mut sim = Sim::started("[signals]\nrewrite = { SIGTERM = 0 }\n");
    assert!(sim.signal(Signal::SIGTERM).is_empty());
    assert_ne!(sim.phase(), Phase::Stopping);
}

#[test]
fn serving_shutdown_keeps_stop_signal_whatever_rewrite_says() {
    let mut sim =
        Sim::started("[function]\nport = 9001\n[signals]\nrewrite = { SIGTERM = \"SIGQUIT\" }\n");
    sim.signal(Signal::SIGTERM);
    assert!(sim.has("SIGTERM to group 100"), "{:#?}", sim.log);
}

#[test]
fn a_function_not_accepting_after_5s_gets_one_hint() {
    let mut sim = Sim::started("[function]\nport = 9001\n");
    assert!(!sim
        .after(ms(4999))
        .iter()
        .any(|a| a.starts_with("start hint")));
    assert_eq!(sim.after(ms(1)), ["start hint 100"]);
    assert!(sim.after(Duration::from_secs(10)).is_empty());
    let mut sim = Sim::started("");
    sim.after(Duration::from_secs(6));
    assert!(!sim.has("start hint"), "plain mode waits for nobody");
}

#[test]
fn success_codes_count_as_0() {
    let mut sim = Sim::started("[signals]\nsuccess_codes = [143]\n");
    sim.all_gone(FUNCTION, Exit::Code(143));
    assert_eq!(sim.exit_code(), Some(0));
    let mut sim = Sim::started("[signals]\nsuccess_codes = [143]\n");
    sim.all_gone(FUNCTION, Exit::Code(1));
    assert_eq!(sim.exit_code(), Some(1));
}

// ---------------------------------------------------------------------------------------------
// An operator's terminate

#[test]
fn a_forced_terminate_kills_the_group_and_respawns_whatever_restart_says() {
    let mut sim = Sim::started("[function]\nrestart = \"never\"\n");
    assert_eq!(
        sim.input(Input::Terminate { graceful: false }),
        ["SIGKILL to group 100"]
    );
    sim.exited(FUNCTION, Exit::Signal(libc::SIGKILL));
    assert_eq!(sim.count("spawn"), 2, "at once, no backoff");
    assert_ne!(sim.phase(), Phase::Stopping);
}

#[test]
fn a_graceful_terminate_sends_sigterm_to_the_process_only() {
    let mut sim = Sim::started("");
    assert_eq!(
        sim.input(Input::Terminate { graceful: true }),
        ["SIGTERM to 100"]
    );
}

#[test]
fn a_gracefully_terminated_process_that_still_runs_is_repossessed() {
    let mut sim =
        Sim::started("[function]\nrestart = \"never\"\n[shutdown]\ngrace_period = \"2s\"\n");
    sim.input(Input::Terminate { graceful: true });
    // The event ended; the process ignored SIGTERM (SCF's stop-flag handler).
    let actions = sim.input(Input::Repossess);
    assert_eq!(actions, ["phase starting", "SIGTERM to group 100"]);
    assert!(sim.after(ms(1999)).is_empty());
    assert_eq!(sim.after(ms(1)), ["SIGKILL to group 100"]);
    sim.exited(FUNCTION, Exit::Signal(libc::SIGKILL));
    assert_eq!(
        sim.count("spawn"),
        2,
        "a new instance, whatever restart says"
    );
    assert_ne!(sim.phase(), Phase::Stopping);
}

#[test]
fn a_gracefully_terminated_process_that_exited_is_not_repossessed_again() {
    let mut sim = Sim::started("");
    sim.input(Input::Terminate { graceful: true });
    sim.exited(FUNCTION, Exit::Code(0));
    assert_eq!(sim.count("spawn"), 2);
    // The new instance is not the signalled one.
    assert!(sim.input(Input::Repossess).is_empty());
}

// ---------------------------------------------------------------------------------------------
// FC's lifecycle calls (server.platform = "fc")

fn replies(actions: &[String]) -> Vec<&str> {
    actions
        .iter()
        .filter(|a| a.starts_with("reply"))
        .map(String::as_str)
        .collect()
}

fn call(sim: &mut Sim, call: LifecycleCall, id: CallId) -> Vec<String> {
    sim.input(Input::Lifecycle {
        call,
        request_id: format!("fc-{id}"),
        id,
    })
}

#[test]
fn fc_initialize_waits_for_the_configured_initializer_and_it_runs_once() {
    let mut sim = Sim::started(HTTP_INIT);
    assert!(replies(&call(&mut sim, LifecycleCall::Initialize, 1)).is_empty());
    let done = sim.done(HookKind::Initialize, Ok(()));
    assert_eq!(replies(&done), ["reply Done"]);
    assert_eq!(
        replies(&call(&mut sim, LifecycleCall::Initialize, 2)),
        ["reply Done"]
    );
    assert_eq!(sim.count("http Initialize /initialize"), 1);
}

#[test]
fn fc_initialize_without_an_initializer_is_forwarded_as_the_attempt_once() {
    let mut sim = Sim::started(SERVING);
    sim.done(HookKind::Probe, Ok(()));
    let actions = call(&mut sim, LifecycleCall::Initialize, 1);
    assert!(actions.contains(&"http Initialize /initialize".to_owned()));
    let forwarded = sim.log.iter().find_map(|a| match a {
        Action::StartHook(h) if h.kind == HookKind::Initialize => Some(h.request_id.clone()),
        _ => None,
    });
    assert_eq!(forwarded.as_deref(), Some("fc-1"), "FC's own request id");
    assert_eq!(
        replies(&sim.done(HookKind::Initialize, Ok(()))),
        ["reply Done"]
    );
    assert_eq!(
        replies(&call(&mut sim, LifecycleCall::Initialize, 2)),
        ["reply Done"]
    );
    assert_eq!(sim.count("http Initialize /initialize"), 1);
}

#[test]
fn fc_initialize_gets_the_failed_attempt_s_reason() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "on_failure = \"next-request\"\n"]));
    call(&mut sim, LifecycleCall::Initialize, 1);
    let actions = sim.done(HookKind::Initialize, Err(HookError::Status(500)));
    assert_eq!(
        replies(&actions),
        ["reply InitializationFailed(\"status 500\")"]
    );
    // A later call is the next attempt.
    call(&mut sim, LifecycleCall::Initialize, 2);
    assert_eq!(sim.count("http Initialize /initialize"), 2);
}

#[test]
fn fc_pre_stop_runs_pre_stop_once_and_a_later_sigterm_does_not_run_it_again() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "[pre_stop]\n"]));
    sim.done(HookKind::Initialize, Ok(()));
    call(&mut sim, LifecycleCall::PreStop, 1);
    assert_eq!(
        sim.phase(),
        Phase::Ready,
        "FC's call does not stop the instance"
    );
    assert_eq!(
        replies(&sim.done(HookKind::PreStop, Ok(()))),
        ["reply Done"]
    );
    sim.signal(Signal::SIGTERM);
    assert_eq!(sim.count("http PreStop /pre-stop"), 1);
    assert!(sim.has("SIGTERM to group 100"));
}

#[test]
fn sigterm_while_fc_s_pre_stop_runs_waits_for_it() {
    let mut sim = Sim::started("[function]\nsocket = \"/tmp/f.sock\"\n");
    sim.done(HookKind::Probe, Ok(()));
    call(&mut sim, LifecycleCall::PreStop, 1);
    assert!(
        sim.has("http PreStop /pre-stop"),
        "forwarded: no PreStop configured"
    );
    sim.signal(Signal::SIGTERM);
    assert!(!sim.has("SIGTERM to"));
    let actions = sim.done(HookKind::PreStop, Err(HookError::Timeout));
    assert!(actions
        .contains(&"reply PreStopFailed { reason: \"timeout\", timed_out: true }".to_owned()));
    assert!(actions.contains(&"SIGTERM to group 100".to_owned()));
}

#[test]
fn lifecycle_calls_during_the_shutdown_are_answered_at_once() {
    let mut sim = Sim::started(SERVING);
    sim.done(HookKind::Probe, Ok(()));
    sim.in_flight = 1;
    sim.signal(Signal::SIGTERM);
    assert_eq!(
        replies(&call(&mut sim, LifecycleCall::Initialize, 1)),
        ["reply Stopping"]
    );
    assert_eq!(
        replies(&call(&mut sim, LifecycleCall::PreStop, 2)),
        ["reply PreStopFailed { reason: \"skipped: fc-init is stopping\", timed_out: false }"]
    );
}

#[test]
fn a_respawn_that_cannot_start_the_program_stops_with_its_status() {
    let mut sim = Sim::started("[function]\nrestart = \"always\"\n");
    sim.spawn_error = Some(SpawnError::NotFound {
        program: "/bin/app".into(),
        source: io::Error::from(io::ErrorKind::NotFound),
    });
    sim.all_gone(FUNCTION, Exit::Code(1));
    sim.after(ms(100));
    assert_eq!(sim.exit_code(), Some(127));
}

/// The shell starts the first instance through `Input::Start` too, so a program that cannot
/// start is decided here: its exit status (127 not found, 126 not executable), in every mode.
#[test]
fn a_first_start_that_cannot_start_the_program_exits_with_its_status() {
    for (config, error, code) in [
        (
            "",
            SpawnError::NotFound {
                program: "/bin/app".into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            },
            127,
        ),
        (
            SERVING,
            SpawnError::NotExecutable {
                program: "/bin/app".into(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
            126,
        ),
    ] {
        let mut sim = Sim::new(config);
        sim.spawn_error = Some(error);
        sim.input(Input::Start);
        assert_eq!(sim.exit_code(), Some(code), "{config:?}");
    }
}

/// Each hook attempt's request id comes from the id source the core was given, one per
/// attempt, and each attempt's Start and End lines carry the same one.
#[test]
fn every_hook_attempt_takes_the_next_request_id_it_was_given() {
    let mut sim = Sim::started(&with(&[HTTP_INIT, "backoff = \"100ms\"\n", "[pre_stop]\n"]));
    sim.done(HookKind::Initialize, Err(HookError::Status(500)));
    while sim.count("http Initialize /initialize") < 2 {
        sim.after(ms(50));
    }
    sim.done(HookKind::Initialize, Ok(()));
    sim.signal(Signal::SIGTERM);
    sim.done(HookKind::PreStop, Ok(()));
    let lines: Vec<String> = sim
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Line(Line::Start { kind, request_id }) => {
                Some(format!("{kind:?} start {request_id}"))
            }
            Action::Line(Line::End {
                kind, request_id, ..
            }) => Some(format!("{kind:?} end {request_id}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        lines,
        [
            "Initialize start req-1",
            "Initialize end req-1",
            "Initialize start req-2",
            "Initialize end req-2",
            "PreStop start req-3",
            "PreStop end req-3",
        ]
    );
}
