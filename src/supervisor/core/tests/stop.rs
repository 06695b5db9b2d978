//! The shutdown sequence (PreStop, drain, stop signal, grace period), signal forwarding and
//! rewriting, and an operator's terminate.

use super::*;

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
