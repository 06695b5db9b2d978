//! Tests of the configuration: here the helpers, the defaults and the paths; by concern in
//! `problems` (what is refused and how it is reported), `precedence` (the environment, the
//! command line and FC's variables over the file; exclusive keys; the serving rule), `print`
//! (the printed configuration and the sample file) and `table` (the key table against the
//! reference).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::keys;
use super::load::load_with_default;
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

fn file_of(s: &Sources) -> String {
    s.config_flag.clone().expect("set").display().to_string()
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

mod precedence;
mod print;
mod problems;
mod table;
