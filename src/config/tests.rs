//! Tests of loading, merging and checking the configuration; those of printing it and of the
//! sample config file are in `print`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::load::load_with_default;
use super::schema::{SCHEMA, SECTIONS};
use super::*;

const RUNTIME: &str = "/run/user/1000/fc-init";

/// A default path that never exists, so the machine's /etc does not leak into the tests.
fn load_test(sources: &Sources) -> Result<Config, ConfigError> {
    load_with_default(sources, Path::new("/nonexistent/fc-init/fc-init.toml"))
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.entry("XDG_RUNTIME_DIR".to_owned())
        .or_insert_with(|| "/run/user/1000".to_owned());
    env
}

fn sources() -> Sources {
    Sources {
        env: env(&[]),
        euid: 1000,
        ..Sources::default()
    }
}

fn write_config(text: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("fc-init-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let path = dir.join(format!("{}.toml", COUNTER.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&path, text).expect("write the test config");
    path
}

fn with_file(text: &str) -> Sources {
    Sources {
        config_flag: Some(write_config(text)),
        ..sources()
    }
}

fn ok(sources: &Sources) -> Config {
    match load_test(sources) {
        Ok(config) => config,
        Err(e) => panic!("unexpected problems:\n{e}"),
    }
}

fn problems(sources: &Sources) -> Vec<Problem> {
    match load_test(sources) {
        Ok(config) => panic!("expected problems, got {config:#?}"),
        Err(e) => e.problems,
    }
}

/// Asserts that exactly one problem has this source and key, and that its reason mentions
/// `reason`.
#[track_caller]
fn assert_problem(problems: &[Problem], source: &str, key: &str, reason: &str) {
    let found: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.source == source && p.key == key && p.reason.contains(reason))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want one problem {source}: {key}: ...{reason}...; got:\n{}",
        ConfigError {
            problems: problems.to_vec()
        }
    );
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().expect("a test address"))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `config` printed (`--check-config`) loads back to an equal `Config`.
#[track_caller]
fn assert_round_trip(config: &Config) {
    let text = config.to_toml();
    let again = match load_test(&with_file(&text)) {
        Ok(again) => again,
        Err(e) => panic!("to_toml output does not load:\n{e}\n---\n{text}"),
    };
    assert_eq!(
        &again, config,
        "round trip changed the config; output was:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Defaults

#[test]
fn defaults_are_those_of_the_contract() {
    let c = ok(&sources());
    let f = &c.function;
    assert!(f.command.is_empty());
    assert_eq!(f.working_dir, None);
    assert!(f.env.is_empty());
    assert_eq!(
        f.endpoint,
        Endpoint::Unix(PathBuf::from(RUNTIME).join("function.sock"))
    );
    assert_eq!(f.start_timeout, secs(120));
    assert_eq!(f.name, "");
    assert_eq!(f.timeout, secs(60));
    assert_eq!(f.user, None);
    assert_eq!(f.restart, RestartPolicy::Never);
    assert_eq!(f.restart_backoff_max, secs(30));

    let s = &c.server;
    assert_eq!(s.listen, None, "plain init by default");
    assert!(!c.serves_http());
    assert_eq!(s.max_concurrency, 100);
    assert_eq!(s.max_queue, 1000);
    assert_eq!(s.max_connections, 4096);
    assert_eq!(s.max_header_bytes, 8 * 1024);
    assert_eq!(s.max_body, 32 * 1024 * 1024);
    assert_eq!(s.header_timeout, secs(10));
    assert_eq!(s.body_buffer, 1 << 20);
    assert_eq!(s.body_timeout, secs(30));
    assert_eq!(s.idle_timeout, secs(60));
    assert_eq!(s.busy_poll, Duration::from_micros(50));
    assert_eq!(s.body_buffer_total, 64 << 20);
    assert_eq!(s.platform, Platform::None);
    assert!(s.platform_auto);

    assert_eq!(c.initializer, None);
    assert_eq!(c.pre_stop, None);

    assert_eq!(c.shutdown.stop_signal, Signal::SIGTERM);
    assert_eq!(c.shutdown.drain_timeout, secs(30));
    assert_eq!(c.shutdown.grace_period, secs(10));
    assert!(c.shutdown.kill_group);

    let a = &c.async_;
    assert!(a.enabled);
    assert_eq!(a.backend, AsyncBackend::Sqlite);
    assert_eq!(a.redis_url, None);
    assert_eq!(a.queue, "", "function.name, empty without a command");
    assert_eq!(a.store, PathBuf::from(RUNTIME).join("events.db"));
    assert_eq!(a.retention, secs(72 * 3600));
    assert_eq!(a.max_concurrency, 10);
    assert_eq!(a.max_retries, 3);
    assert_eq!(a.max_queued, 10_000);
    assert_eq!(a.max_payload, 128 * 1024);

    assert_eq!(c.admin.socket, PathBuf::from(RUNTIME).join("admin.sock"));
    assert_eq!(c.admin.listen, None);
    assert!(c.log.invocations);
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn empty_hook_sections_configure_the_hooks_with_their_defaults() {
    let c = ok(&with_file("[initializer]\n[pre_stop]\n"));
    let init = c.initializer.expect("initializer configured");
    assert_eq!(
        init.action,
        HookAction::Http {
            path: "/initialize".into()
        }
    );
    assert_eq!(init.timeout, secs(60));
    assert_eq!(init.on_failure, OnFailure::Retry);
    assert_eq!(init.max_attempts, 0);
    assert_eq!(init.backoff, Duration::from_millis(100));
    assert_eq!(init.backoff_max, secs(10));
    let pre_stop = c.pre_stop.expect("pre_stop configured");
    assert_eq!(
        pre_stop.action,
        HookAction::Http {
            path: "/pre-stop".into()
        }
    );
    assert_eq!(pre_stop.timeout, secs(10));
}

#[test]
fn function_name_defaults_to_the_file_name_of_the_program() {
    let c = ok(&with_file(
        "[function]\ncommand = [\"/usr/bin/python3\", \"app.py\"]\n",
    ));
    assert_eq!(c.function.name, "python3");
    let c = ok(&with_file(
        "[function]\ncommand = [\"/usr/bin/python3\"]\nname = \"orders\"\n",
    ));
    assert_eq!(c.function.name, "orders");
}

#[test]
fn the_command_line_command_replaces_the_configured_one() {
    let mut s = with_file("[function]\ncommand = [\"/bin/from-file\", \"x\"]\n");
    s.command = strings(&["/opt/app/server", "--port", "1"]);
    let c = ok(&s);
    assert_eq!(
        c.function.command,
        strings(&["/opt/app/server", "--port", "1"])
    );
    assert_eq!(c.function.name, "server");
}

// ---------------------------------------------------------------------------------------------
// Paths

#[test]
fn runtime_dir_follows_root_xdg_then_temp() {
    let none = BTreeMap::new();
    assert_eq!(runtime_dir(0, &env(&[])), PathBuf::from("/run/fc-init"));
    assert_eq!(
        runtime_dir(1000, &env(&[("XDG_RUNTIME_DIR", "/run/user/1000")])),
        PathBuf::from("/run/user/1000/fc-init")
    );
    let tmp = env(&[("XDG_RUNTIME_DIR", "relative"), ("TMPDIR", "/var/tmp")]);
    assert_eq!(
        runtime_dir(1000, &tmp),
        PathBuf::from("/var/tmp/fc-init-1000")
    );
    assert_eq!(runtime_dir(42, &none), PathBuf::from("/tmp/fc-init-42"));
}

#[test]
fn config_path_prefers_the_flag_then_the_environment() {
    let mut s = sources();
    s.env
        .insert("FC_INIT_CONFIG".into(), "/from/env.toml".into());
    assert_eq!(config_path(&s), Some(PathBuf::from("/from/env.toml")));
    s.config_flag = Some(PathBuf::from("/from/flag.toml"));
    assert_eq!(config_path(&s), Some(PathBuf::from("/from/flag.toml")));
}

#[test]
fn an_existing_default_file_is_read_and_a_missing_one_is_not_a_problem() {
    let default = write_config("[log]\nformat = \"json\"\n");
    let c = load_with_default(&sources(), &default).expect("loads the default file");
    assert_eq!(c.log.format, LogFormat::Json);
    let c = load_with_default(&sources(), Path::new("/nonexistent/fc-init.toml"))
        .expect("no default file is fine");
    assert_eq!(c.log.format, LogFormat::Text);
}

// ---------------------------------------------------------------------------------------------
// Problems

#[test]
fn a_missing_explicit_file_is_a_problem() {
    let mut s = sources();
    s.config_flag = Some(PathBuf::from("/nonexistent/flag.toml"));
    let p = problems(&s);
    assert_problem(&p, "/nonexistent/flag.toml", "", "named by -c/--config");

    let mut s = sources();
    s.env
        .insert("FC_INIT_CONFIG".into(), "/nonexistent/env.toml".into());
    let p = problems(&s);
    assert_problem(&p, "/nonexistent/env.toml", "", "named by FC_INIT_CONFIG");
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let s = with_file("[server]\nmax_queue = 10\nlisten = \"0.0.0.0:1\n");
    let path = s.config_flag.clone().expect("set by with_file");
    let p = problems(&s);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].source, path.display().to_string());
    assert!(p[0].reason.contains("line 3"), "{}", p[0]);
    assert!(!p[0].to_string().contains('\n'), "one line: {}", p[0]);
}

#[test]
fn unknown_sections_and_keys_are_problems() {
    let s = with_file("[function]\ncomand = [\"x\"]\n[sever]\nlisten = \"0.0.0.0:1\"\n");
    let file = file_of(&s);
    let p = problems(&s);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_problem(&p, &file, "function.comand", "unknown key");
    assert_problem(&p, &file, "sever", "unknown section");
}

#[test]
fn a_section_that_is_not_a_table_is_a_problem() {
    let s = with_file("server = 3\n");
    let file = file_of(&s);
    assert_problem(&problems(&s), &file, "server", "expected a table");
}

#[test]
fn wrong_types_and_bad_values_are_problems() {
    let s = with_file(
        r#"
[function]
command = "/bin/app"
port = 70000
restart = "sometimes"
user = ""
timeout = 30
env = { A = [1] }
[server]
listen = "localhost:9000"
max_connections = 0
max_header_bytes = "512"
max_body = "lots"
header_timeout = "0s"
max_concurrency = -1
[initializer]
path = "initialize"
on_failure = "panic"
[shutdown]
stop_signal = "SIGKILL"
kill_group = "yes"
[async]
max_concurrency = 0
max_queued = 0
[log]
format = "xml"
"#,
    );
    let file = file_of(&s);
    let p = problems(&s);
    let expected = [
        ("function.command", "expected an array of strings"),
        ("function.port", "not between 1 and 65535"),
        (
            "function.restart",
            "is not one of \"never\", \"on-failure\", \"always\"",
        ),
        ("function.user", "is not a user"),
        ("function.timeout", "expected a duration string"),
        ("function.env", "variable A"),
        ("server.listen", "IP:PORT"),
        ("server.max_connections", "below the minimum of 1"),
        (
            "server.max_header_bytes",
            "512 is below the minimum of 1KiB",
        ),
        ("server.max_body", "invalid size"),
        ("server.header_timeout", "must be greater than 0s"),
        ("server.max_concurrency", "-1 is below the minimum of 0"),
        ("initializer.path", "must start with '/'"),
        ("initializer.on_failure", "\"panic\" is not one of"),
        ("shutdown.stop_signal", "SIGKILL cannot be caught"),
        ("shutdown.kill_group", "expected true or false"),
        ("async.max_concurrency", "below the minimum of 1"),
        ("async.max_queued", "below the minimum of 1"),
        ("log.format", "\"xml\" is not one of \"text\", \"json\""),
    ];
    for (key, reason) in expected {
        assert_problem(&p, &file, key, reason);
    }
    assert_eq!(p.len(), expected.len(), "{p:#?}");
}

#[test]
fn initializer_timeout_above_300s_is_refused() {
    let s = with_file("[initializer]\ntimeout = \"400s\"\n");
    let file = file_of(&s);
    let p = problems(&s);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].to_string(),
        format!("{file}: initializer.timeout: 400s exceeds the maximum of 300s")
    );
    assert!(ok(&with_file("[initializer]\ntimeout = \"5m\"\n"))
        .initializer
        .is_some());
}

#[test]
fn busy_poll_takes_zero_and_at_most_1ms() {
    let s = with_file("[server]\nbusy_poll = \"2ms\"\n");
    let file = file_of(&s);
    let p = problems(&s);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].to_string(),
        format!("{file}: server.busy_poll: 2ms exceeds the maximum of 1ms")
    );
    let zero = ok(&with_file("[server]\nbusy_poll = \"0s\"\n"));
    assert_eq!(zero.server.busy_poll, Duration::ZERO);
    let most = ok(&with_file("[server]\nbusy_poll = \"1ms\"\n"));
    assert_eq!(most.server.busy_poll, Duration::from_millis(1));
}

#[test]
fn stop_signal_must_be_catchable_and_reads_every_form() {
    for (text, signal) in [
        ("\"SIGQUIT\"", Signal::SIGQUIT),
        ("\"int\"", Signal::SIGINT),
        ("\"15\"", Signal::SIGTERM),
        ("10", Signal::SIGUSR1),
    ] {
        let c = ok(&with_file(&format!("[shutdown]\nstop_signal = {text}\n")));
        assert_eq!(c.shutdown.stop_signal, signal, "{text}");
    }
    for bad in ["\"SIGSTOP\"", "9", "\"SIGNOPE\""] {
        problems(&with_file(&format!("[shutdown]\nstop_signal = {bad}\n")));
    }
}

#[test]
fn backoff_max_below_backoff_is_a_problem() {
    let s = with_file("[initializer]\nbackoff = \"2s\"\nbackoff_max = \"1s\"\n");
    let file = file_of(&s);
    assert_problem(
        &problems(&s),
        &file,
        "initializer.backoff_max",
        "backoff_max (1s) is less than backoff (2s)",
    );
    // Only backoff set, above the default backoff_max: blame backoff.
    let s = with_file("[initializer]\nbackoff = \"1m\"\n");
    assert_problem(
        &problems(&s),
        &file_of(&s),
        "initializer.backoff",
        "less than",
    );
}

fn file_of(s: &Sources) -> String {
    s.config_flag.clone().expect("set").display().to_string()
}

#[test]
fn problems_from_file_environment_and_command_line_are_reported_together() {
    let mut s = with_file("[function]\ntimeout = \"forever\"\nbogus = 1\n");
    let file = file_of(&s);
    s.env = env(&[
        ("FC_INIT_SERVER_MAX_QUEUE", "many"),
        ("FC_INIT_LOG_COLOUR", "yes"),
    ]);
    s.listen = Some("not an address".into());
    let e = load_test(&s).expect_err("four problems");
    let p = &e.problems;
    assert_problem(p, &file, "function.timeout", "invalid duration");
    assert_problem(p, &file, "function.bogus", "unknown key");
    assert_problem(
        p,
        "environment (FC_INIT_SERVER_MAX_QUEUE)",
        "server.max_queue",
        "expected an integer",
    );
    assert_problem(
        p,
        "environment (FC_INIT_LOG_COLOUR)",
        "log.colour",
        "unknown key",
    );
    assert_problem(p, "command line (--listen)", "server.listen", "IP:PORT");
    assert_eq!(p.len(), 5);
    // Display: one line per problem, in the documented form.
    let text = e.to_string();
    assert_eq!(text.lines().count(), 5);
    assert!(text.contains(&format!("{file}: function.bogus: unknown key")));
}

// ---------------------------------------------------------------------------------------------
// Environment and precedence

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

mod print;

#[test]
fn a_syntax_error_after_multibyte_text_counts_characters() {
    // The column is counted on bytes up to the parser's offset (never by slicing the text
    // there, which need not be a character boundary) and reported in characters.
    let e = load::from_str("[function]\nname = \"\u{e9}\u{20ac}\" x\n", &sources())
        .expect_err("trailing garbage after a value");
    let reason = &e.problems[0].reason;
    assert!(reason.contains("line 2, column 13"), "{reason}");
    for text in [
        "\u{e9}",
        "a = \"\u{20ac}",
        "[\u{e9}\u{e9}]\nx=\u{e9}",
        "\u{feff}\u{0}",
    ] {
        assert!(load::from_str(text, &sources()).is_err(), "{text:?}");
    }
}

#[test]
fn a_control_character_in_the_program_name_made_a_printed_config_that_does_not_load() {
    // Found by the config fuzz target: the default function name was the program's file name
    // as it was, so `fc-init config` printed a `name` that `name` itself refuses.
    let text = "[function]\ncommand = [\"pyth\\tn3\", \"app.py\"]\n";
    let c = load::from_str(text, &sources()).expect("a program name may hold a tab");
    assert_eq!(c.function.name, "");
    let printed = c.to_toml();
    let again = load::from_str(&printed, &sources())
        .unwrap_or_else(|e| panic!("the printed configuration does not load: {e}\n{printed}"));
    assert_eq!(again.to_toml(), printed);
}
