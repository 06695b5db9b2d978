//! Tests of the printed configuration (`--check-config`): it loads back to the same `Config`
//! and names every key; and of the sample config file, which must hold the defaults and
//! document every key in the contract's order.

use super::*;

#[test]
fn defaults_round_trip_through_to_toml() {
    let c = ok(&sources());
    assert_round_trip(&c);
    let text = c.to_toml();
    assert!(!text.contains("[initializer]\n"), "{text}");
    assert!(text.contains("# listen = "), "{text}");
    assert!(text.contains("# socket = "), "{text}");
    assert!(text.contains("retention = \"72h\""), "{text}");
    assert!(text.contains("max_payload = \"128KiB\""), "{text}");
    assert!(text.contains("# working_dir = \"\"  (not set"), "{text}");
}

const BUSY: &str = r#"
[function]
command = ["/usr/bin/env", "python3", "app \"quoted\"", "tab\there"]
working_dir = "/code"
env = { LANG = "C.UTF-8", "ODD KEY" = "line1\nline2", EMPTY = "" }
port = 9001
start_timeout = "1m30s"
name = "orders"
timeout = "250ms"
user = "1000:1000"
restart = "on-failure"
restart_backoff_max = "0s"

[server]
listen = "[::]:8080"
max_concurrency = 0
max_queue = 0
max_connections = 1
max_header_bytes = "1536"
max_body = "1GiB"
header_timeout = "2s"
idle_timeout = "5m"

[initializer]
path = "/init?x=1"
timeout = "300s"
on_failure = "next-request"
max_attempts = 5
backoff = "1s"
backoff_max = "1s"

[pre_stop]
command = ["/bin/sh", "-c", "kill -TERM 1"]
timeout = "1s"

[shutdown]
stop_signal = "SIGUSR2"
drain_timeout = "0s"
grace_period = "1h"
kill_group = false

[async]
enabled = false
store = "/data/events.db"
retention = "1h30m"
max_concurrency = 1
max_retries = 0
max_queued = 1
max_payload = "1000"

[admin]
socket = "/tmp/admin.sock"
listen = "127.0.0.1:9100"

[log]
invocations = false
format = "json"
"#;

#[test]
fn a_busy_config_round_trips_through_to_toml() {
    let c = ok(&with_file(BUSY));
    assert_eq!(c.function.endpoint, Endpoint::Tcp(9001));
    assert_eq!(c.server.max_header_bytes, 1536);
    assert_eq!(c.async_.max_payload, 1000);
    assert_round_trip(&c);
    let text = c.to_toml();
    assert!(text.contains("start_timeout = \"1m30s\""), "{text}");
    assert!(text.contains("max_payload = \"1000B\""), "{text}");
    assert!(text.contains("stop_signal = \"SIGUSR2\""), "{text}");
    assert!(text.contains("\n[pre_stop]\n"), "{text}");
}

#[test]
fn other_shapes_round_trip_through_to_toml() {
    // Serving on the default socket because of --listen; command initializer; no pre_stop.
    let mut s = with_file("[initializer]\ncommand = [\"/bin/init\"]\n");
    s.listen = Some("127.0.0.1:0".into());
    s.command = strings(&["/bin/app"]);
    assert_round_trip(&ok(&s));
    // Serving because of an explicit socket, with env and CLI overrides applied.
    let mut s = with_file("[function]\nsocket = \"/tmp/f.sock\"\n[pre_stop]\n");
    s.env = env(&[
        ("FC_INIT_PRE_STOP_TIMEOUT", "2s"),
        ("FC_SERVER_PORT", "9200"),
    ]);
    let c = ok(&s);
    assert_eq!(c.server.listen, addr("0.0.0.0:9200"));
    assert_round_trip(&c);
}

#[test]
fn to_toml_mentions_every_key() {
    for config in [ok(&sources()), ok(&with_file(BUSY))] {
        let text = config.to_toml();
        let keys = documented_keys(&text);
        for spec in keys::all() {
            // Unconfigured hooks are left out entirely; the busy config has both.
            if config.initializer.is_none() && matches!(spec.section, "initializer" | "pre_stop") {
                continue;
            }
            assert!(
                keys.contains(&(spec.section.to_owned(), spec.key.to_owned())),
                "{}.{} missing from:\n{text}",
                spec.section,
                spec.key
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sample config

fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fc-init.toml")
}

fn sample_text() -> String {
    std::fs::read_to_string(sample_path()).expect("config/fc-init.toml is readable")
}

#[test]
fn the_sample_config_loads_and_holds_the_defaults() {
    let mut s = sources();
    s.config_flag = Some(sample_path());
    let c = ok(&s);
    assert_eq!(c.server.max_concurrency, 100);
    assert_eq!(c.server.max_header_bytes, 8 * 1024);
    assert_eq!(c.async_.retention, secs(72 * 3600));
    assert_eq!(c.shutdown.stop_signal, Signal::SIGTERM);
    assert_eq!(c.server.listen, None);
    // Every value it sets is the default, so the documentation cannot drift from the code.
    assert_eq!(c, ok(&sources()));
}

#[test]
fn the_sample_config_uncommented_loads() {
    // Every commented-out example must be a valid value: uncomment them all, except the
    // second key of each exclusive pair.
    let skip = [
        ("function", "port"),
        ("initializer", "path"),
        ("pre_stop", "path"),
    ];
    let mut section = String::new();
    let mut text = String::new();
    for line in sample_text().lines() {
        if let Some(name) = section_header(line) {
            section = name;
        }
        let example = line.strip_prefix("# ").filter(|rest| {
            section_header(rest).is_some()
                || rest
                    .split_once(" = ")
                    .is_some_and(|(key, _)| is_key(key) && !skip.contains(&(section.as_str(), key)))
        });
        text.push_str(example.unwrap_or(line));
        text.push('\n');
    }
    let c = ok(&with_file(&text));
    assert_eq!(
        c.function.command,
        strings(&["/usr/bin/python3", "/code/app.py"])
    );
    assert_eq!(
        c.function.endpoint,
        Endpoint::Unix("/run/fc-init/function.sock".into())
    );
    assert!(matches!(
        c.initializer.map(|i| i.action),
        Some(HookAction::Command(_))
    ));
    assert!(matches!(
        c.pre_stop.map(|p| p.action),
        Some(HookAction::Command(_))
    ));
    assert_eq!(c.server.listen, addr("0.0.0.0:9000"));
    assert_eq!(c.admin.listen, addr("127.0.0.1:9100"));
}

#[test]
fn the_sample_config_documents_every_key_in_the_contract_order() {
    let text = sample_text();
    let documented = documented_key_list(&text);
    let known: Vec<(String, String)> = keys::all()
        .map(|k| (k.section.to_owned(), k.key.to_owned()))
        .collect();
    assert_eq!(
        documented, known,
        "config/fc-init.toml and the schema differ"
    );
    let sections: Vec<String> = section_headers(&text);
    assert_eq!(
        sections,
        keys::section_names()
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
    );
}

fn is_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn section_header(line: &str) -> Option<String> {
    let bare = line.strip_prefix("# ").unwrap_or(line);
    let (name, rest) = bare.strip_prefix('[')?.split_once(']')?;
    let rest = rest.trim();
    (is_key(name) && (rest.is_empty() || rest.starts_with('('))).then(|| name.to_owned())
}

fn section_headers(text: &str) -> Vec<String> {
    text.lines().filter_map(section_header).collect()
}

/// `(section, key)` for every line `key = ...` or `# key = ...`, in order.
fn documented_key_list(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        if let Some(name) = section_header(line) {
            section = name;
            continue;
        }
        let bare = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = bare.split_once(" = ") {
            if is_key(key) {
                keys.push((section.clone(), key.to_owned()));
            }
        }
    }
    keys
}

fn documented_keys(text: &str) -> BTreeSet<(String, String)> {
    documented_key_list(text).into_iter().collect()
}

#[test]
fn signals_round_trip_through_to_toml() {
    let c = ok(&with_file(
        "[signals]\nforward_to = \"group\"\n\
         rewrite = { SIGTERM = \"SIGQUIT\", SIGWINCH = 0, 10 = 12, \"SIGRTMIN+2\" = \"HUP\" }\n\
         success_codes = [143, 0]\nparent_death_signal = \"SIGKILL\"\nwarn_reaped = true\n",
    ));
    assert_eq!(c.signals.forward_to, ForwardTo::Group);
    assert_eq!(c.signals.rewritten(libc::SIGTERM), Some(libc::SIGQUIT));
    assert_eq!(c.signals.rewritten(libc::SIGWINCH), None);
    assert_eq!(c.signals.rewritten(libc::SIGUSR1), Some(libc::SIGUSR2));
    assert_eq!(
        c.signals.rewritten(libc::SIGRTMIN() + 2),
        Some(libc::SIGHUP)
    );
    assert_eq!(c.signals.rewritten(libc::SIGINT), Some(libc::SIGINT));
    assert_eq!(c.signals.success_codes, [143, 0]);
    assert_eq!(c.signals.parent_death_signal, Some(libc::SIGKILL));
    assert_round_trip(&c);
    for bad in [
        "rewrite = { SIGNOPE = 1 }",
        "rewrite = { SIGTERM = \"SIGNOPE\" }",
        "rewrite = { SIGTERM = 99 }",
        "success_codes = [256]",
        "success_codes = \"143\"",
        "forward_to = \"session\"",
        "parent_death_signal = \"SIGRTMIN+99\"",
    ] {
        assert!(
            crate::config::from_str(&format!("[signals]\n{bad}\n"), &sources()).is_err(),
            "{bad}"
        );
    }
}
