//! The core from start to readiness: the socket, the initializer's policies, and a function
//! that exits on its own (restart policy, backoff).

use super::*;

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
