//! Printing the effective configuration as TOML (`--check-config`): every key with its value,
//! defaults included, in the contract's order, as a file that `load` reads back to an equal
//! `Config`. Options that are not set are printed as comments, so the output stays valid.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::units::{format_duration, format_size};
use super::{
    AsyncBackend, Config, Endpoint, ForwardTo, HookAction, LogFormat, OnFailure, Platform,
    RestartPolicy,
};

pub(super) fn to_toml(c: &Config) -> String {
    let mut out = Out::default();
    out.line("# fc-init effective configuration: every key after the file, the environment and");
    out.line("# the command line are merged. Options that are not set appear as comments.");

    let f = &c.function;
    out.section("function");
    out.key("command", list(&f.command));
    out.key_or_unset(
        "working_dir",
        f.working_dir.as_deref().map(path),
        "\"\"",
        "not set: fc-init's working directory",
    );
    out.key("env", table(&f.env));
    // With no listener the function need not serve at all; the socket line stays a comment so
    // that reading this output back keeps plain-init mode (setting it would turn serving on).
    match (&f.endpoint, c.serves_http()) {
        (Endpoint::Unix(socket), true) => {
            out.key("socket", path(socket));
            out.unset("port", "9001", "not set: the function serves on socket");
        }
        (Endpoint::Unix(socket), false) => {
            out.unset(
                "socket",
                &path(socket),
                "plain-init mode: nothing listens and the function need not serve",
            );
            out.unset("port", "9001", "not set");
        }
        (Endpoint::Tcp(port), _) => {
            out.unset("socket", "\"\"", "not set: the function serves on port");
            out.key("port", port.to_string());
        }
    }
    out.key("start_timeout", duration(f.start_timeout));
    out.key("name", quote(&f.name));
    out.key("timeout", duration(f.timeout));
    let user = f.user.as_ref().map(|user| match &user.group {
        Some(group) => quote(&format!("{}:{group}", user.user)),
        None => quote(&user.user),
    });
    out.key_or_unset("user", user, "\"\"", "not set: runs as fc-init's user");
    let restart = match f.restart {
        RestartPolicy::Never => "never",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Always => "always",
    };
    out.key("restart", quote(restart));
    out.key("restart_backoff_max", duration(f.restart_backoff_max));
    out.key("qualifier", quote(&f.qualifier));

    let s = &c.server;
    out.section("server");
    out.key_or_unset(
        "listen",
        s.listen.map(|listen| quote(&listen.to_string())),
        "\"0.0.0.0:9000\"",
        "plain-init mode: nothing listens, as with tini",
    );
    let platform = match s.platform {
        Platform::Fc => "fc",
        Platform::None => "none",
    };
    match s.platform_auto {
        true => out.key_noted(
            "platform",
            quote("auto"),
            &format!("resolves to {platform} here"),
        ),
        false => out.key("platform", quote(platform)),
    }
    out.key("max_concurrency", s.max_concurrency.to_string());
    out.key("max_queue", s.max_queue.to_string());
    out.key("max_connections", s.max_connections.to_string());
    out.key("max_header_bytes", size(s.max_header_bytes as u64));
    out.key("max_body", size(s.max_body));
    out.key("header_timeout", duration(s.header_timeout));
    out.key("body_buffer", size(s.body_buffer));
    out.key("body_timeout", duration(s.body_timeout));
    out.key("idle_timeout", duration(s.idle_timeout));
    out.key("busy_poll", duration(s.busy_poll));
    out.key("body_buffer_total", size(s.body_buffer_total));
    out.key("http2", quote(if s.http2 { "on" } else { "off" }));

    match &c.initializer {
        Some(init) => {
            out.section("initializer");
            out.hook(&init.action);
            out.key("timeout", duration(init.timeout));
            let on_failure = match init.on_failure {
                OnFailure::Retry => "retry",
                OnFailure::NextRequest => "next-request",
                OnFailure::Exit => "exit",
            };
            out.key("on_failure", quote(on_failure));
            out.key("max_attempts", init.max_attempts.to_string());
            out.key("backoff", duration(init.backoff));
            out.key("backoff_max", duration(init.backoff_max));
        }
        None => out.absent("initializer"),
    }

    match &c.pre_stop {
        Some(pre_stop) => {
            out.section("pre_stop");
            out.hook(&pre_stop.action);
            out.key("timeout", duration(pre_stop.timeout));
        }
        None => out.absent("pre_stop"),
    }

    let sd = &c.shutdown;
    out.section("shutdown");
    out.key("stop_signal", quote(sd.stop_signal.as_str()));
    out.key("drain_timeout", duration(sd.drain_timeout));
    out.key("grace_period", duration(sd.grace_period));
    out.key("kill_group", sd.kill_group.to_string());
    let bound = c.stop_bound();
    out.line(&format!(
        "# A stop takes at most pre_stop.timeout + drain_timeout + grace_period = {}s; give the",
        bound.as_secs() + u64::from(bound.subsec_nanos() > 0)
    ));
    out.line("# platform at least that long (Kubernetes: terminationGracePeriodSeconds).");

    let a = &c.async_;
    out.section("async");
    out.key("enabled", a.enabled.to_string());
    let backend = match a.backend {
        AsyncBackend::Sqlite => "sqlite",
        AsyncBackend::Redis => "redis",
    };
    out.key("backend", quote(backend));
    out.key("store", path(&a.store));
    out.key_or_unset(
        "redis_url",
        a.redis_url
            .as_deref()
            .map(|url| quote(&super::redis_url::redacted(url))),
        "\"redis://127.0.0.1:6379/0\"",
        "not set: needed with backend = \"redis\"",
    );
    out.key_or_unset(
        "queue",
        (!a.queue.is_empty()).then(|| quote(&a.queue)),
        "\"\"",
        "not set: function.name is not a queue name",
    );
    out.key("retention", duration(a.retention));
    out.key("max_concurrency", a.max_concurrency.to_string());
    out.key("max_retries", a.max_retries.to_string());
    out.key("max_queued", a.max_queued.to_string());
    out.key("max_payload", size(a.max_payload));
    out.key(
        "redis_min_replicas",
        match a.redis_min_replicas {
            Some(n) => n.to_string(),
            None => quote("auto"),
        },
    );
    out.key("max_event_age", duration(a.max_event_age));
    out.key("max_result", size(a.max_result));
    out.key("destination_retry_for", duration(a.destination_retry_for));
    for (name, url) in [("on_success", &a.on_success), ("on_failure", &a.on_failure)] {
        out.key_or_unset(
            name,
            url.as_deref().map(|u| format!("{{ url = {} }}", quote(u))),
            "{ url = \"http://127.0.0.1:8080/events\" }",
            "not set: no delivery",
        );
    }

    out.section("admin");
    out.key("socket", path(&c.admin.socket));
    let listen = c.admin.listen.map(|listen| quote(&listen.to_string()));
    out.key_or_unset(
        "listen",
        listen,
        "\"\"",
        "not set: only the admin socket serves",
    );

    out.section("log");
    out.key("invocations", c.log.invocations.to_string());
    let format = match c.log.format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    out.key("format", quote(format));

    let sig = &c.signals;
    out.section("signals");
    let forward_to = match sig.forward_to {
        ForwardTo::Process => "process",
        ForwardTo::Group => "group",
    };
    out.key("forward_to", quote(forward_to));
    let rewrite: Vec<String> = sig
        .rewrite
        .iter()
        .map(|(from, to)| match to {
            // `SIGRTMIN+2` is not a bare TOML key.
            0 => format!("{} = 0", quote(&signal_name(*from))),
            to => format!(
                "{} = {}",
                quote(&signal_name(*from)),
                quote(&signal_name(*to))
            ),
        })
        .collect();
    out.key(
        "rewrite",
        match rewrite.is_empty() {
            true => "{}".to_owned(),
            false => format!("{{ {} }}", rewrite.join(", ")),
        },
    );
    let codes: Vec<String> = sig.success_codes.iter().map(i32::to_string).collect();
    out.key("success_codes", format!("[{}]", codes.join(", ")));
    out.key_or_unset(
        "parent_death_signal",
        sig.parent_death_signal.map(|s| quote(&signal_name(s))),
        "\"SIGTERM\"",
        "not set: fc-init outlives its parent",
    );
    out.key("warn_reaped", sig.warn_reaped.to_string());
    out.text
}

/// A signal's name as the loader reads it back (`SIGRTMIN+2` for real-time ones).
fn signal_name(signo: i32) -> String {
    match nix::sys::signal::Signal::try_from(signo) {
        Ok(sig) => sig.as_str().to_owned(),
        Err(_) if signo >= libc::SIGRTMIN() => format!("SIGRTMIN+{}", signo - libc::SIGRTMIN()),
        Err(_) => signo.to_string(),
    }
}

#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn section(&mut self, name: &str) {
        self.line("");
        self.line(&format!("[{name}]"));
    }

    /// A hook section that is not configured: printing the header would configure it.
    fn absent(&mut self, name: &str) {
        self.line("");
        self.line(&format!("# [{name}]  (not configured)"));
    }

    fn key(&mut self, key: &str, value: String) {
        self.line(&format!("{key} = {value}"));
    }

    /// A key with a note after its value: `key = value  # note`.
    fn key_noted(&mut self, key: &str, value: String, note: &str) {
        self.line(&format!("{key} = {value}  # {note}"));
    }

    fn unset(&mut self, key: &str, example: &str, why: &str) {
        self.line(&format!("# {key} = {example}  ({why})"));
    }

    /// An optional key: `value` when it is set, else commented out as [`Out::unset`].
    fn key_or_unset(&mut self, key: &str, value: Option<String>, example: &str, why: &str) {
        match value {
            Some(value) => self.key(key, value),
            None => self.unset(key, example, why),
        }
    }

    fn hook(&mut self, action: &HookAction) {
        match action {
            HookAction::Http { path } => {
                self.key("path", quote(path));
                self.unset(
                    "command",
                    "[]",
                    "not set: the hook is an HTTP request to path",
                );
            }
            HookAction::Command(command) => {
                self.unset("path", "\"\"", "not set: the hook runs command");
                self.key("command", list(command));
            }
        }
    }
}

/// A TOML basic string; every control character is escaped so the value stays on one line.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Paths are printed as strings; a non-UTF-8 path loses its invalid bytes here (the loader
/// only reads UTF-8 TOML, so such a path cannot have come from a file anyway).
fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

fn table(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "{}".to_owned();
    }
    let bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            let key = if bare(k) { k.clone() } else { quote(k) };
            format!("{key} = {}", quote(v))
        })
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

fn duration(d: Duration) -> String {
    quote(&format_duration(d))
}

fn size(n: u64) -> String {
    quote(&format_size(n))
}
