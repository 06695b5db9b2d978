//! FC's lifecycle calls under `server.platform = "fc"`, failures to start the program, and
//! request ids.

use super::*;

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
