//! Tests of how the sources combine: the environment and the command line over the file,
//! FC's own variables, exclusive keys, and the serving rule.

use super::*;

#[test]
fn environment_overrides_the_file() {
    let mut s = with_file(
        "[function]\nrestart_backoff_max = \"1m\"\n[async]\nmax_queued = 5\n[server]\nmax_body = \"1MiB\"\n",
    );
    s.env = env(&[
        ("FC_INIT_FUNCTION_RESTART_BACKOFF_MAX", "5s"),
        ("FC_INIT_ASYNC_MAX_QUEUED", "7"),
        ("FC_INIT_ASYNC_ENABLED", "false"),
        ("FC_INIT_SHUTDOWN_STOP_SIGNAL", "quit"),
        ("FC_INIT_FUNCTION_COMMAND", "/bin/app --verbose"),
        (
            "FC_INIT_FUNCTION_ENV",
            "{ LANG = \"C.UTF-8\", PORT = 8080 }",
        ),
        ("FC_INIT_FUNCTION_USER", "app:staff"),
    ]);
    let c = ok(&s);
    assert_eq!(c.function.restart_backoff_max, secs(5));
    assert_eq!(c.async_.max_queued, 7);
    assert!(!c.async_.enabled);
    assert_eq!(c.shutdown.stop_signal, Signal::SIGQUIT);
    assert_eq!(
        c.server.max_body,
        1 << 20,
        "file value kept where env is silent"
    );
    assert_eq!(c.function.command, strings(&["/bin/app", "--verbose"]));
    assert_eq!(
        c.function.env.get("LANG").map(String::as_str),
        Some("C.UTF-8")
    );
    assert_eq!(c.function.env.get("PORT").map(String::as_str), Some("8080"));
    assert_eq!(
        c.function.user,
        Some(UserSpec {
            user: "app".into(),
            group: Some("staff".into())
        })
    );
}

#[test]
fn environment_command_may_be_a_toml_array() {
    let mut s = sources();
    s.env = env(&[(
        "FC_INIT_FUNCTION_COMMAND",
        r#"["/bin/sh", "-c", "echo hi"]"#,
    )]);
    assert_eq!(
        ok(&s).function.command,
        strings(&["/bin/sh", "-c", "echo hi"])
    );
}

#[test]
fn an_environment_hook_key_configures_the_hook() {
    let mut s = sources();
    s.env = env(&[("FC_INIT_PRE_STOP_TIMEOUT", "3s")]);
    let c = ok(&s);
    let pre_stop = c.pre_stop.clone().expect("configured by the environment");
    assert_eq!(pre_stop.timeout, secs(3));
    assert_eq!(
        pre_stop.action,
        HookAction::Http {
            path: "/pre-stop".into()
        }
    );
    assert_eq!(c.initializer, None);
    assert!(c.serves_http(), "an HTTP hook means the function serves");
}

#[test]
fn non_key_fc_init_variables_are_ignored_and_unknown_keys_refused() {
    let mut s = sources();
    s.env = env(&[
        ("FC_INIT_CONFIG", ""),
        ("FC_INIT_LOG", "debug"),
        ("FC_INIT_SOMETHING_ELSE", "x"),
        ("FC_INIT_PRE_STOP_PATHS", "/x"),
    ]);
    let p = problems(&s);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_problem(
        &p,
        "environment (FC_INIT_PRE_STOP_PATHS)",
        "pre_stop.paths",
        "unknown key",
    );
}

#[test]
fn command_line_beats_environment_beats_file() {
    let mut s = with_file("[server]\nlisten = \"127.0.0.1:1000\"\n");
    assert_eq!(ok(&s).server.listen, addr("127.0.0.1:1000"));
    s.env = env(&[("FC_INIT_SERVER_LISTEN", "127.0.0.1:2000")]);
    assert_eq!(ok(&s).server.listen, addr("127.0.0.1:2000"));
    s.listen = Some("127.0.0.1:3000".into());
    assert_eq!(ok(&s).server.listen, addr("127.0.0.1:3000"));
}

#[test]
fn fc_server_port_sets_the_listen_port_below_explicit_settings() {
    let mut s = with_file("[server]\nlisten = \"127.0.0.1:1000\"\n");
    s.env = env(&[("FC_SERVER_PORT", "9100")]);
    assert_eq!(ok(&s).server.listen, addr("0.0.0.0:9100"));
    s.env = env(&[
        ("FC_SERVER_PORT", "9100"),
        ("FC_INIT_SERVER_LISTEN", "127.0.0.1:2000"),
    ]);
    assert_eq!(ok(&s).server.listen, addr("127.0.0.1:2000"));
    s.env = env(&[("FC_SERVER_PORT", "9100")]);
    s.listen = Some("127.0.0.1:3000".into());
    assert_eq!(ok(&s).server.listen, addr("127.0.0.1:3000"));

    let mut s = sources();
    s.env = env(&[("FC_SERVER_PORT", "nine thousand")]);
    assert_problem(
        &problems(&s),
        "environment (FC_SERVER_PORT)",
        "server.listen",
        "not a port",
    );
}

#[test]
fn fc_custom_listen_port_wins_over_fc_server_port() {
    let mut s = sources();
    s.env = env(&[
        ("FC_SERVER_PORT", "9100"),
        ("FC_CUSTOM_LISTEN_PORT", "9200"),
    ]);
    assert_eq!(ok(&s).server.listen, addr("0.0.0.0:9200"));
    s.env = env(&[("FC_SERVER_PORT", "9100"), ("FC_CUSTOM_LISTEN_PORT", "0")]);
    assert_problem(
        &problems(&s),
        "environment (FC_CUSTOM_LISTEN_PORT)",
        "server.listen",
        "not a port",
    );
}

#[test]
fn with_fc_s_port_variable_the_function_gets_a_free_loopback_port_of_its_own() {
    for var in FC_PORT_VARIABLES {
        let mut s = sources();
        s.env = env(&[(var, "9000")]);
        let c = ok(&s);
        assert_eq!(c.server.listen, addr("0.0.0.0:9000"));
        match c.function.endpoint {
            Endpoint::Tcp(port) => assert!(port != 0 && port != 9000, "{var}: port {port}"),
            other => panic!("{var}: the function serves on {other:?}"),
        }
        assert_round_trip(&c);
    }
    // A configured endpoint is kept.
    let mut s = with_file("[function]\nsocket = \"/tmp/f.sock\"\n");
    s.env = env(&[("FC_SERVER_PORT", "9000")]);
    assert_eq!(
        ok(&s).function.endpoint,
        Endpoint::Unix(PathBuf::from("/tmp/f.sock"))
    );
    let mut s = with_file("[function]\nport = 9001\n");
    s.env = env(&[("FC_SERVER_PORT", "9000")]);
    assert_eq!(ok(&s).function.endpoint, Endpoint::Tcp(9001));
}

#[test]
fn function_name_defaults_to_fc_function_name_before_the_program() {
    let mut s = sources();
    s.command = strings(&["/usr/bin/python3", "app.py"]);
    s.env = env(&[("FC_FUNCTION_NAME", "orders")]);
    assert_eq!(ok(&s).function.name, "orders");
    assert_eq!(ok(&s).async_.queue, "orders", "the queue follows the name");
    let mut s = with_file("[function]\nname = \"mine\"\n");
    s.env = env(&[("FC_FUNCTION_NAME", "orders")]);
    assert_eq!(ok(&s).function.name, "mine");
}

#[test]
fn platform_auto_is_fc_only_with_both_fc_variables() {
    let platform = |pairs: &[(&str, &str)], file: &str| {
        let mut s = with_file(file);
        s.env = env(pairs);
        let c = ok(&s);
        (c.server.platform, c.server.platform_auto)
    };
    let both = [("FC_FUNCTION_NAME", "f"), ("FC_REGION", "cn-hangzhou")];
    assert_eq!(platform(&both, ""), (Platform::Fc, true));
    assert_eq!(platform(&both[..1], ""), (Platform::None, true));
    assert_eq!(platform(&both[1..], ""), (Platform::None, true));
    assert_eq!(
        platform(&both, "[server]\nplatform = \"none\"\n"),
        (Platform::None, false)
    );
    assert_eq!(
        platform(&[], "[server]\nplatform = \"fc\"\n"),
        (Platform::Fc, false)
    );
    let mut s = sources();
    s.env = env(&both);
    let text = ok(&s).to_toml();
    assert!(
        text.contains("platform = \"auto\"  # resolves to fc here"),
        "{text}"
    );
    let s = with_file("[server]\nplatform = \"aws\"\n");
    assert_problem(&problems(&s), &file_of(&s), "server.platform", "not one of");
}

#[test]
fn fc_owns_async_invocations_under_platform_fc_unless_async_is_enabled_explicitly() {
    let enabled = |pairs: &[(&str, &str)], file: &str| {
        let mut s = with_file(file);
        s.env = env(pairs);
        ok(&s).async_.enabled
    };
    let both = [("FC_FUNCTION_NAME", "f"), ("FC_REGION", "cn-hangzhou")];
    assert!(enabled(&[], ""), "fc-init's own queue by default");
    assert!(!enabled(&both, ""), "auto resolving to fc");
    assert!(!enabled(&[], "[server]\nplatform = \"fc\"\n"));
    assert!(enabled(
        &[],
        "[server]\nplatform = \"fc\"\n[async]\nenabled = true\n"
    ));
    assert!(enabled(&both, "[server]\nplatform = \"none\"\n"));
}

#[test]
fn the_redis_backend_needs_a_url_and_a_queue_name_fit_for_a_hash_tag() {
    let s = with_file("[async]\nbackend = \"redis\"\n");
    assert_problem(
        &problems(&s),
        &file_of(&s),
        "async.redis_url",
        "needs async.redis_url",
    );
    let s = with_file(
        "[async]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nqueue = \"orders\"\n",
    );
    let c = ok(&s);
    assert_eq!(c.async_.backend, AsyncBackend::Redis);
    assert_eq!(
        c.async_.redis_url.as_deref(),
        Some("redis://127.0.0.1:6379/0")
    );
    assert_eq!(c.async_.queue, "orders");
    assert_round_trip(&c);
    for (bad, says) in [
        ("http://x", "not a Redis URL"),
        ("127.0.0.1:6379", "not a Redis URL"),
        ("redis://", "not a host name"),
    ] {
        let s = with_file(&format!("[async]\nredis_url = \"{bad}\"\n"));
        assert_problem(&problems(&s), &file_of(&s), "async.redis_url", says);
    }
    let rediss = with_file("[async]\nredis_url = \"rediss://r:6380/0\"\n");
    if super::redis_url::TLS {
        assert!(ok(&rediss).async_.redis_url.is_some());
    } else {
        assert_problem(
            &problems(&rediss),
            &file_of(&rediss),
            "async.redis_url",
            "--features redis-tls",
        );
    }
    for bad in ["a{b}", ""] {
        let s = with_file(&format!("[async]\nqueue = \"{bad}\"\n"));
        assert_eq!(problems(&s).len(), 1, "{bad:?}");
    }
    // A function name that cannot be a queue name matters only on Redis.
    let mut s = with_file("[async]\nbackend = \"redis\"\nredis_url = \"redis://r:6379\"\n");
    s.command = strings(&["/bin/{x}"]);
    assert_problem(
        &problems(&s),
        "command line (COMMAND)",
        "async.queue",
        "set async.queue",
    );
    s.config_flag = Some(write_config(""));
    assert_eq!(ok(&s).async_.queue, "");
}

#[test]
fn check_config_prints_how_long_a_stop_can_take() {
    let c = ok(&with_file(
        "[pre_stop]\ntimeout = \"5s\"\n[shutdown]\ndrain_timeout = \"20s\"\ngrace_period = \"1500ms\"\n",
    ));
    assert_eq!(c.stop_bound(), Duration::from_millis(26_500));
    assert!(c.to_toml().contains("= 27s;"), "{}", c.to_toml());
    assert_eq!(
        ok(&sources()).stop_bound(),
        secs(40),
        "no PreStop: drain + grace"
    );
}

// ---------------------------------------------------------------------------------------------
// Exclusive keys

#[test]
fn socket_and_port_in_one_source_are_exclusive() {
    let s = with_file("[function]\nsocket = \"/tmp/f.sock\"\nport = 9001\n");
    assert_problem(&problems(&s), &file_of(&s), "function.socket", "exclusive");

    let mut s = sources();
    s.env = env(&[
        ("FC_INIT_FUNCTION_SOCKET", "/tmp/f.sock"),
        ("FC_INIT_FUNCTION_PORT", "9001"),
    ]);
    assert_problem(
        &problems(&s),
        "environment (FC_INIT_FUNCTION_SOCKET)",
        "function.socket",
        "exclusive",
    );
}

#[test]
fn a_higher_source_replaces_the_other_endpoint_key() {
    let mut s = with_file("[function]\nport = 9001\n");
    assert_eq!(ok(&s).function.endpoint, Endpoint::Tcp(9001));
    s.function_socket = Some("/tmp/cli.sock".into());
    assert_eq!(
        ok(&s).function.endpoint,
        Endpoint::Unix(PathBuf::from("/tmp/cli.sock"))
    );

    let mut s = with_file("[function]\nsocket = \"/tmp/file.sock\"\n");
    s.env = env(&[("FC_INIT_FUNCTION_PORT", "9001")]);
    assert_eq!(ok(&s).function.endpoint, Endpoint::Tcp(9001));
}

#[test]
fn hook_path_and_command_are_exclusive() {
    let s = with_file("[initializer]\npath = \"/init\"\ncommand = [\"/bin/init\"]\n");
    assert_problem(&problems(&s), &file_of(&s), "initializer.path", "exclusive");
    let s = with_file("[pre_stop]\npath = \"/stop\"\ncommand = [\"/bin/stop\"]\n");
    assert_problem(&problems(&s), &file_of(&s), "pre_stop.path", "exclusive");
    let s = with_file("[initializer]\ncommand = []\n");
    assert_problem(
        &problems(&s),
        &file_of(&s),
        "initializer.command",
        "must not be empty",
    );

    // The environment's command replaces the file's path.
    let mut s = with_file("[initializer]\npath = \"/init\"\n");
    s.env = env(&[("FC_INIT_INITIALIZER_COMMAND", "/bin/init --once")]);
    assert_eq!(
        ok(&s).initializer.map(|i| i.action),
        Some(HookAction::Command(strings(&["/bin/init", "--once"])))
    );
}

#[test]
fn the_function_port_cannot_be_the_listen_port() {
    let s = with_file("[function]\nport = 9000\n");
    assert_problem(
        &problems(&s),
        &file_of(&s),
        "function.port",
        "fc-init itself listens",
    );
}

// ---------------------------------------------------------------------------------------------
// The serving rule

#[test]
fn serving_is_off_unless_the_function_serves_http() {
    assert_eq!(ok(&sources()).server.listen, None);
    // A command hook does not need the function to listen.
    let c = ok(&with_file(
        "[initializer]\ncommand = [\"/bin/init\"]\n[pre_stop]\ncommand = [\"/bin/stop\"]\n",
    ));
    assert_eq!(c.server.listen, None);
    assert!(!c.serves_http());
}

#[test]
fn serving_turns_on_with_an_endpoint_an_http_hook_or_a_listen_setting() {
    let on = addr("0.0.0.0:9000");
    assert_eq!(
        ok(&with_file("[function]\nport = 8080\n")).server.listen,
        on
    );
    assert_eq!(
        ok(&with_file("[function]\nsocket = \"/tmp/f.sock\"\n"))
            .server
            .listen,
        on
    );
    assert_eq!(ok(&with_file("[initializer]\n")).server.listen, on);
    assert_eq!(
        ok(&with_file("[pre_stop]\npath = \"/stop\"\n"))
            .server
            .listen,
        on
    );
    let mut s = sources();
    s.function_socket = Some("/tmp/f.sock".into());
    assert_eq!(ok(&s).server.listen, on);

    let mut s = sources();
    s.listen = Some("127.0.0.1:0".into());
    assert_eq!(ok(&s).server.listen, addr("127.0.0.1:0"));
    let mut s = sources();
    s.env = env(&[("FC_SERVER_PORT", "9500")]);
    assert_eq!(ok(&s).server.listen, addr("0.0.0.0:9500"));
    assert_eq!(
        ok(&with_file("[server]\nlisten = \"[::1]:9000\"\n"))
            .server
            .listen,
        addr("[::1]:9000")
    );
}
