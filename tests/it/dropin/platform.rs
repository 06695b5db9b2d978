//! `server.platform`: FC's own lifecycle calls under `fc` (each hook still runs once per
//! instance), ordinary invocations under `none`, and what `auto` resolves to.

use super::*;

#[test]
fn platform_fc_initialize_waits_for_the_configured_initializer_which_runs_once() {
    let dir = TempDir::new("fc-init-call");
    let (mut p, fx) = start_platform(
        &dir,
        "fc",
        &[("FIXTURE_INIT_DELAY", "0.5")],
        "[initializer]\n",
    );
    // FC calls /initialize at once; it waits for the instance to be initialized.
    let status = fc_call(fx.port, "POST", "/initialize", "/initialize", "fc-init-1");
    assert_eq!(status, 200, "{}", p.stderr());
    let end = p.expect_line("initialized", |l| l.starts_with(INIT_END));
    assert!(!end.contains("Error"), "{end}");
    assert_eq!(
        fc_call(fx.port, "POST", "/initialize", "/initialize", "fc-init-2"),
        200
    );
    assert_eq!(
        fx.requests("/initialize").len(),
        1,
        "the initializer ran more than once: {:?}",
        fx.requests("/initialize")
    );
    assert_eq!(p.stdout().matches(INIT_START).count(), 1, "{}", p.stdout());
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

#[test]
fn platform_fc_initialize_without_an_initializer_is_forwarded_once_as_the_initializer() {
    let dir = TempDir::new("fc-init-fwd");
    let (mut p, fx) = start_platform(&dir, "fc", &[], "");
    wait_ready(&p, &fx);
    assert_eq!(
        fc_call(fx.port, "POST", "/initialize", "/initialize", "fc-init-a"),
        200
    );
    let call = request_with_id(&fx, "fc-init-a");
    assert_eq!(call["method"], "POST");
    assert_eq!(call["path"], "/initialize");
    assert_eq!(call["headers"]["x-fc-control-path"], "/initialize");
    // FC's request id is the attempt's.
    p.expect_line("FC's initializer call", |l| {
        l == format!("{INIT_START}fc-init-a")
    });
    p.expect_line("its end", |l| l == format!("{INIT_END}fc-init-a"));
    // Once per instance, whoever asks.
    assert_eq!(
        fc_call(fx.port, "POST", "/initialize", "/initialize", "fc-init-b"),
        200
    );
    assert_eq!(fx.requests("/initialize").len(), 1, "{:?}", fx.record());
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
}

#[test]
fn platform_fc_pre_stop_runs_prestop_once_and_a_later_sigterm_does_not_run_it_again() {
    let dir = TempDir::new("fc-prestop");
    let (mut p, fx) = start_platform(
        &dir,
        "fc",
        &[("FIXTURE_PRESTOP_DELAY", "0.5")],
        "[initializer]\n[pre_stop]\n",
    );
    p.expect_line("initialized", |l| l.starts_with(INIT_END));
    let asked = Instant::now();
    assert_eq!(
        fc_call(fx.port, "GET", "/pre-stop", "/pre-stop", "fc-ps-1"),
        200
    );
    // Answered when PreStop (0.5s) has ended.
    assert!(
        asked.elapsed() >= Duration::from_millis(500),
        "answered early"
    );
    p.expect_line("PreStop under FC's id", |l| {
        l == format!("{PRESTOP_END}fc-ps-1")
    });
    assert_eq!(
        hook_calls(&fx, "/pre-stop", "/pre-stop"),
        1,
        "{:?}",
        fx.record()
    );
    assert_eq!(
        request_with_id(&fx, "fc-ps-1")["headers"]["x-fc-control-path"],
        "/pre-stop"
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
    assert_eq!(fx.requests("/pre-stop").len(), 1, "PreStop ran again");
    assert_eq!(
        p.stdout().matches(PRESTOP_START).count(),
        1,
        "{}",
        p.stdout()
    );
    let record = fx.record();
    let prestop = record.iter().position(|r| r["path"] == "/pre-stop");
    let term = record.iter().position(|r| r["signal"] == "SIGTERM");
    assert!(prestop < term && term.is_some(), "{record:?}");
}

#[test]
fn platform_fc_pre_stop_without_a_prestop_is_forwarded_once_as_the_prestop() {
    let dir = TempDir::new("fc-prestop-fwd");
    let (mut p, fx) = start_platform(&dir, "fc", &[], "");
    wait_ready(&p, &fx);
    assert_eq!(
        fc_call(fx.port, "GET", "/pre-stop", "/pre-stop", "fc-ps-a"),
        200
    );
    assert_eq!(
        request_with_id(&fx, "fc-ps-a")["headers"]["x-fc-control-path"],
        "/pre-stop"
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
    assert_eq!(fx.requests("/pre-stop").len(), 1, "{:?}", fx.record());
}

#[test]
fn platform_fc_control_path_decides_the_kind_whatever_the_path() {
    let dir = TempDir::new("fc-kind");
    let (mut p, fx) = start_platform(&dir, "fc", &[], "");
    wait_ready(&p, &fx);
    let failing = |path: &str, control_path: &str, id: &str| {
        http(
            fx.port,
            "POST",
            path,
            &[
                ("x-fc-control-path", control_path),
                ("x-fc-request-id", id),
                ("x-test-status", "500"),
            ],
            b"{}",
        )
        .0
    };
    // An event invocation on another path: a 500 from the function is a failed event.
    assert_eq!(failing("/custom/path", "/invoke", "kind-event"), 500);
    let event = request_with_id(&fx, "kind-event");
    assert_eq!(event["headers"]["x-fc-control-path"], "/invoke", "{event}");
    assert!(
        event["headers"]["x-fc-function-timeout"].is_string(),
        "{event}"
    );
    // An HTTP invocation on /invoke: the function's 500 is just its answer.
    assert_eq!(failing("/invoke", "/http-invoke", "kind-http"), 500);
    let plain = request_with_id(&fx, "kind-http");
    assert_eq!(
        plain["headers"]["x-fc-control-path"], "/http-invoke",
        "{plain}"
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
    let out = p.stdout();
    assert!(
        out.contains(&format!(
            "{INVOKE_END}kind-event, Error: Unhandled function error\n"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("{INVOKE_END}kind-http\n")), "{out}");
}

#[test]
fn platform_none_lifecycle_paths_from_clients_are_ordinary_http_invocations() {
    let dir = TempDir::new("none-paths");
    let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "[initializer]\n[pre_stop]\n");
    // An explicit `none` wins over what FC's variables would select under `auto`.
    let mut p = fc_init(Mode::Subreaper)
        .args(["-c", cfg.to_str().unwrap()])
        .env("FC_INIT_SERVER_PLATFORM", "none")
        .env("FC_FUNCTION_NAME", "f")
        .env("FC_REGION", "cn-hangzhou")
        .start();
    p.expect_line("initialized", |l| l.starts_with(INIT_END));
    wait_port(&p, fx.port);
    assert_eq!(
        fc_call(fx.port, "POST", "/initialize", "/initialize", "none-init"),
        200
    );
    assert_eq!(
        fc_call(fx.port, "GET", "/pre-stop", "/pre-stop", "none-ps"),
        200
    );
    for id in ["none-init", "none-ps"] {
        let r = request_with_id(&fx, id);
        assert_eq!(r["headers"]["x-fc-control-path"], "/http-invoke", "{r}");
    }
    assert_eq!(hook_calls(&fx, "/initialize", "/initialize"), 1);
    assert!(!p.stdout().contains(PRESTOP_START), "{}", p.stdout());
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(WATCHDOG), 0);
    // Only fc-init's own PreStop, at the SIGTERM.
    assert_eq!(hook_calls(&fx, "/pre-stop", "/pre-stop"), 1);
    assert_eq!(p.stdout().matches(PRESTOP_START).count(), 1);
}

#[test]
fn platform_auto_resolves_to_fc_with_fc_function_name_and_fc_region() {
    for (env, want) in [
        (
            &[("FC_FUNCTION_NAME", "f"), ("FC_REGION", "cn-hangzhou")][..],
            "fc",
        ),
        (&[("FC_FUNCTION_NAME", "f")][..], "none"),
        (&[("FC_REGION", "cn-hangzhou")][..], "none"),
    ] {
        let mut run = fc_init(Mode::Subreaper).args(["--check-config"]);
        for (k, v) in env {
            run = run.env(k, v);
        }
        let (code, out, err) = run.output();
        assert_eq!(code, 0, "{err}");
        let line = format!("platform = \"auto\"  # resolves to {want} here");
        assert!(out.lines().any(|l| l == line), "{env:?}: {out}");
    }
}

#[test]
fn platform_auto_under_fc_s_variables_serves_fc_s_initialize_as_the_lifecycle_call() {
    for (env, control_path) in [
        (
            &[("FC_FUNCTION_NAME", "f"), ("FC_REGION", "cn-hangzhou")][..],
            "/initialize",
        ),
        (&[("FC_FUNCTION_NAME", "f")][..], "/http-invoke"),
    ] {
        let dir = TempDir::new("auto");
        let (cfg, fx) = FixtureConfig::write(&dir, &[], "", "");
        let mut run = fc_init(Mode::Subreaper).args(["-c", cfg.to_str().unwrap()]);
        for (k, v) in env {
            run = run.env(k, v);
        }
        let mut p = run.start();
        wait_ready(&p, &fx);
        assert_eq!(
            fc_call(fx.port, "POST", "/initialize", "/initialize", "auto-1"),
            200
        );
        let r = request_with_id(&fx, "auto-1");
        assert_eq!(r["headers"]["x-fc-control-path"], control_path, "{env:?}");
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(WATCHDOG), 0);
    }
}
