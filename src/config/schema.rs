//! The kinds of value a key takes (`Kind`), with their limits, and the conversion of one raw
//! TOML value (from the file, or built from an environment string) into a checked value. Which
//! key takes which kind is the key table's (`keys`); the loader walks the file against that
//! table itself rather than through serde's `deny_unknown_fields`, which stops at the first
//! problem.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::Value;

use super::units::{format_duration, format_size, parse_duration, parse_signal, parse_size};
use super::UserSpec;

/// The longest path a unix socket address holds: `sun_path` is 108 bytes with the NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The largest integer a TOML file can hold, hence the upper bound for unbounded counts.
const TOML_INT_MAX: u64 = i64::MAX as u64;

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// Free text without control characters (it may end up in a header).
    Text,
    /// A non-empty path.
    Path,
    /// A non-empty path short enough for a unix socket address.
    SocketPath,
    Bool,
    Int {
        min: u64,
        max: u64,
    },
    Duration {
        nonzero: bool,
        max: Option<Duration>,
    },
    Size {
        min: u64,
    },
    /// An array of strings (program and arguments).
    Args {
        nonempty: bool,
    },
    /// A table of environment variables.
    EnvTable,
    /// `IP:PORT`.
    Addr,
    /// A signal the function can catch.
    CatchableSignal,
    Choice(&'static [&'static str]),
    User,
    /// An HTTP request path for a hook.
    HookPath,
    /// `redis://` or `unix://` URL of the fleet's Redis.
    RedisUrl,
    /// A queue name: text that can sit inside a Redis Cluster hash tag (no braces).
    QueueName,
    /// Any signal, by name or number, real-time ones included (`"SIGRTMIN+2"`, `"34"`).
    AnySignal,
    /// A table of signal rewrites: `{ SIGTERM = "SIGQUIT", SIGWINCH = 0 }` (0 drops).
    SignalRewrite,
    /// An array of exit statuses, each 0 to 255.
    ExitCodes,
    /// `"auto"` or a replica count (`async.redis_min_replicas`).
    MinReplicas,
    /// A destination table `{ url = "http://HOST:PORT/PATH" }` (docs/reference.md §10); the
    /// environment gives the URL alone.
    Destination,
}

pub(super) const POSITIVE: Kind = Kind::Duration {
    nonzero: true,
    max: None,
};
pub(super) const ANY_DURATION: Kind = Kind::Duration {
    nonzero: false,
    max: None,
};
pub(super) const COUNT: Kind = Kind::Int {
    min: 0,
    max: TOML_INT_MAX,
};
pub(super) const AT_LEAST_ONE: Kind = Kind::Int {
    min: 1,
    max: TOML_INT_MAX,
};
pub(super) const COUNT_U32: Kind = Kind::Int {
    min: 0,
    max: u32::MAX as u64,
};

/// The initializer's per-attempt timeout may not exceed this (as in Function Compute).
pub(super) const MAX_INITIALIZER_TIMEOUT: Duration = Duration::from_secs(300);

/// Busy polling beyond this only burns CPU: it is meant to bridge the gap between one request
/// and the next on a busy connection, never a client's think time.
pub(super) const MAX_BUSY_POLL: Duration = Duration::from_millis(1);

pub(super) const RESTART_CHOICES: &[&str] = &["never", "on-failure", "always"];
pub(super) const ON_FAILURE_CHOICES: &[&str] = &["retry", "next-request", "exit"];
pub(super) const FORMAT_CHOICES: &[&str] = &["text", "json"];
pub(super) const PLATFORM_CHOICES: &[&str] = &["auto", "fc", "none"];
pub(super) const BACKEND_CHOICES: &[&str] = &["sqlite", "redis"];
pub(super) const FORWARD_TO_CHOICES: &[&str] = &["process", "group"];
pub(super) const HTTP2_CHOICES: &[&str] = &["on", "off"];

/// A checked value; which variant a key holds follows from its `Kind`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    Text(String),
    Bool(bool),
    Int(u64),
    Duration(Duration),
    Size(u64),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    Addr(SocketAddr),
    Signal(Signal),
    User(UserSpec),
    /// A signal number (real-time signals have no [`Signal`]).
    Signo(i32),
    /// Received signal → forwarded signal (0: dropped).
    Rewrite(BTreeMap<i32, i32>),
    Codes(Vec<i32>),
}

/// Checks one raw value against its key's kind; the error is the reason of a problem.
pub(super) fn convert(kind: Kind, value: &Value) -> Result<Val, String> {
    match kind {
        Kind::Text => {
            let s = expect_str(value, "a string")?;
            if s.chars().any(char::is_control) {
                return Err(format!("{s:?} contains a control character"));
            }
            Ok(Val::Text(s.to_owned()))
        }
        Kind::Path => non_empty_path(value).map(|p| Val::Text(p.to_owned())),
        Kind::SocketPath => {
            let p = non_empty_path(value)?;
            if p.len() > MAX_SOCKET_PATH {
                return Err(format!(
                    "{p:?} is {} bytes long; a unix socket path holds at most {MAX_SOCKET_PATH}",
                    p.len()
                ));
            }
            Ok(Val::Text(p.to_owned()))
        }
        Kind::Bool => value
            .as_bool()
            .map(Val::Bool)
            .ok_or_else(|| expected("true or false", value)),
        Kind::Int { min, max } => {
            let n = value
                .as_integer()
                .ok_or_else(|| expected("an integer", value))?;
            match u64::try_from(n) {
                Ok(n) if (min..=max).contains(&n) => Ok(Val::Int(n)),
                _ if max == TOML_INT_MAX => Err(format!("{n} is below the minimum of {min}")),
                _ => Err(format!("{n} is not between {min} and {max}")),
            }
        }
        Kind::Duration { nonzero, max } => {
            let s = expect_str(value, "a duration string such as \"30s\"")?;
            let d = parse_duration(s)?;
            if nonzero && d.is_zero() {
                return Err(format!("{} must be greater than 0s", s.trim()));
            }
            match max {
                // A whole maximum is printed in seconds, as the contract states it ("at most
                // 300s"); a smaller one in the form durations are read in ("1ms").
                Some(max) if d > max => Err(format!(
                    "{} exceeds the maximum of {}",
                    s.trim(),
                    match max.subsec_nanos() {
                        0 => format!("{}s", max.as_secs()),
                        _ => format_duration(max),
                    }
                )),
                _ => Ok(Val::Duration(d)),
            }
        }
        Kind::Size { min } => {
            let (n, shown) = match value {
                Value::String(s) => (parse_size(s)?, s.trim().to_owned()),
                Value::Integer(i) => match u64::try_from(*i) {
                    Ok(n) => (n, n.to_string()),
                    Err(_) => return Err(format!("{i} is negative")),
                },
                other => return Err(expected("a size such as \"32MiB\"", other)),
            };
            if n < min {
                return Err(format!(
                    "{shown} is below the minimum of {}",
                    format_size(min)
                ));
            }
            Ok(Val::Size(n))
        }
        Kind::Args { nonempty } => {
            let items = string_array(value)?;
            if nonempty && items.is_empty() {
                return Err("the command must not be empty".to_owned());
            }
            Ok(Val::List(items))
        }
        Kind::EnvTable => env_table(value).map(Val::Map),
        Kind::Addr => {
            let s = expect_str(value, "an address such as \"0.0.0.0:9000\"")?;
            s.trim().parse::<SocketAddr>().map(Val::Addr).map_err(|_| {
                format!("{s:?} is not an address of the form IP:PORT such as \"0.0.0.0:9000\"")
            })
        }
        Kind::CatchableSignal => {
            let signal = match value {
                Value::String(s) => parse_signal(s)?,
                Value::Integer(i) => parse_signal(&i.to_string())?,
                other => return Err(expected("a signal such as \"SIGTERM\"", other)),
            };
            // SIGKILL and SIGSTOP cannot be caught: the function would get no chance to
            // shut down cleanly, which is the point of a stop signal followed by a grace period.
            if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
                return Err(format!(
                    "{} cannot be caught, so the function could not shut down cleanly; \
                     fc-init already sends SIGKILL after the grace period",
                    signal.as_str()
                ));
            }
            Ok(Val::Signal(signal))
        }
        Kind::Choice(choices) => {
            let s = expect_str(value, "a string")?;
            if choices.contains(&s) {
                Ok(Val::Text(s.to_owned()))
            } else {
                let list: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
                Err(format!("{s:?} is not one of {}", list.join(", ")))
            }
        }
        Kind::User => parse_user(expect_str(
            value,
            "a user such as \"app\" or \"1000:1000\"",
        )?)
        .map(Val::User),
        Kind::HookPath => {
            let s = expect_str(value, "a path such as \"/initialize\"")?;
            if !s.starts_with('/') {
                return Err(format!("{s:?} must start with '/'"));
            }
            // The path goes verbatim into a request line, where whitespace would split it.
            if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("{s:?} contains whitespace or a control character"));
            }
            Ok(Val::Text(s.to_owned()))
        }
        Kind::RedisUrl => {
            let s = expect_str(value, "a URL such as \"redis://127.0.0.1:6379/0\"")?.trim();
            super::redis_url::parse(s)?;
            Ok(Val::Text(s.to_owned()))
        }
        Kind::QueueName => {
            let s = expect_str(value, "a string")?;
            queue_name(s).map(Val::Text)
        }
        Kind::AnySignal => signal_value(value).map(Val::Signo),
        Kind::SignalRewrite => {
            let table = value.as_table().ok_or_else(|| {
                expected(
                    "a table such as { SIGTERM = \"SIGQUIT\", SIGWINCH = 0 }",
                    value,
                )
            })?;
            let mut out = BTreeMap::new();
            for (from, to) in table {
                let from = parse_signo(from)?;
                let to = match to {
                    // 0 drops the signal, as dumb-init's `-r S:0`.
                    Value::Integer(0) => 0,
                    Value::String(s) if s.trim() == "0" => 0,
                    other => signal_value(other)?,
                };
                out.insert(from, to);
            }
            Ok(Val::Rewrite(out))
        }
        Kind::Destination => {
            let url = match value {
                Value::String(url) => url.as_str(),
                Value::Table(t) => {
                    if let Some(other) = t.keys().find(|k| *k != "url") {
                        return Err(format!("unknown key {other:?}; a destination has url"));
                    }
                    let url = t
                        .get("url")
                        .ok_or_else(|| "a destination needs url".to_owned())?;
                    expect_str(url, "a URL such as \"http://127.0.0.1:8080/done\"")?
                }
                other => {
                    return Err(expected(
                        "a table such as { url = \"http://127.0.0.1:8080/done\" }",
                        other,
                    ))
                }
            };
            crate::events::destination::parse_url(url)?;
            Ok(Val::Text(url.to_owned()))
        }
        Kind::ExitCodes => {
            let array = value
                .as_array()
                .ok_or_else(|| expected("an array of exit statuses such as [143]", value))?;
            array
                .iter()
                .map(|item| match item.as_integer() {
                    Some(n @ 0..=255) => Ok(n as i32),
                    Some(n) => Err(format!("exit status {n} is not between 0 and 255")),
                    None => Err(expected("an exit status between 0 and 255", item)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Val::Codes)
        }
        Kind::MinReplicas => match (value.as_str(), value.as_integer()) {
            (Some("auto"), _) => Ok(Val::Text("auto".to_owned())),
            (_, Some(n)) if (0..=i64::from(u32::MAX)).contains(&n) => Ok(Val::Int(n as u64)),
            _ => Err(expected("\"auto\" or a replica count such as 1", value)),
        },
    }
}

/// A signal given as a name (`"SIGHUP"`, `"HUP"`, `"SIGRTMIN+2"`) or a number.
fn signal_value(value: &Value) -> Result<i32, String> {
    match value {
        Value::String(s) => parse_signo(s),
        Value::Integer(i) => parse_signo(&i.to_string()),
        other => Err(expected("a signal such as \"SIGTERM\"", other)),
    }
}

/// Any signal number the kernel delivers (1 to SIGRTMAX), by name or number.
pub(crate) fn parse_signo(s: &str) -> Result<i32, String> {
    let text = s.trim();
    let upper = text.to_ascii_uppercase();
    let rt = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(n) = rt.strip_prefix("RTMIN") {
        let offset = match n {
            "" => 0,
            n => n
                .strip_prefix('+')
                .and_then(|n| n.parse::<i32>().ok())
                .ok_or_else(|| format!("unknown signal {s:?}"))?,
        };
        let signo = libc::SIGRTMIN() + offset;
        return match signo <= libc::SIGRTMAX() {
            true => Ok(signo),
            false => Err(format!("{s:?} is beyond SIGRTMAX")),
        };
    }
    match text.parse::<i32>() {
        Ok(n) if (1..=libc::SIGRTMAX()).contains(&n) => Ok(n),
        Ok(n) => Err(format!("unknown signal number {n}")),
        Err(_) => parse_signal(text).map(|sig| sig as i32),
    }
}

/// A queue name goes inside the hash tag `{...}` of every Redis key of the queue, so that
/// Redis Cluster keeps them on one slot: braces would end the tag early.
pub(super) fn queue_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the queue name must not be empty".to_owned());
    }
    if s.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        return Err(format!(
            "{s:?} contains a brace or a control character (the name sits inside a Redis hash tag)"
        ));
    }
    Ok(s.to_owned())
}

/// Turns an environment variable's text into the TOML value its key expects, so that the
/// file and the environment share one conversion.
pub(super) fn env_value(kind: Kind, raw: &str) -> Result<Value, String> {
    match kind {
        Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Kind::Int { .. } => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Kind::Args { .. } => {
            if raw.trim_start().starts_with('[') {
                inline_toml(raw, "a TOML array such as [\"/bin/app\", \"--flag\"]")
            } else {
                Ok(Value::Array(
                    raw.split_whitespace()
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                ))
            }
        }
        Kind::EnvTable => inline_toml(raw, "a TOML inline table such as { NAME = \"value\" }"),
        Kind::SignalRewrite => {
            inline_toml(raw, "a TOML inline table such as { SIGTERM = \"SIGQUIT\" }")
        }
        Kind::ExitCodes => {
            if raw.trim_start().starts_with('[') {
                inline_toml(raw, "a TOML array such as [143, 137]")
            } else {
                raw.split([' ', ','])
                    .filter(|w| !w.is_empty())
                    .map(|w| {
                        w.parse::<i64>().map(Value::Integer).map_err(|_| {
                            format!("expected exit statuses such as \"143 137\", got {raw:?}")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            }
        }
        _ => Ok(Value::String(raw.to_owned())),
    }
}

/// Parses `raw` as one TOML value by reading it as the right-hand side of an assignment.
fn inline_toml(raw: &str, what: &str) -> Result<Value, String> {
    let document = format!("v = {raw}");
    let mut table: toml::Table = toml::from_str(&document)
        .map_err(|e| format!("expected {what}: {}", e.message().trim()))?;
    // A value with a newline could smuggle in further assignments; only `v` may exist.
    match (table.remove("v"), table.is_empty()) {
        (Some(v), true) => Ok(v),
        _ => Err(format!("expected {what}, got {raw:?}")),
    }
}

/// `function.user`: `name`, `uid`, `uid:gid`, `name:group`.
fn parse_user(s: &str) -> Result<UserSpec, String> {
    let bad = || format!("{s:?} is not a user of the form NAME, UID, UID:GID or NAME:GROUP");
    let valid =
        |part: &str| !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c.is_control());
    match s.split_once(':') {
        None if valid(s) => Ok(UserSpec {
            user: s.to_owned(),
            group: None,
        }),
        Some((user, group)) if valid(user) && valid(group) && !group.contains(':') => {
            Ok(UserSpec {
                user: user.to_owned(),
                group: Some(group.to_owned()),
            })
        }
        _ => Err(bad()),
    }
}

fn expect_str<'v>(value: &'v Value, what: &str) -> Result<&'v str, String> {
    value.as_str().ok_or_else(|| expected(what, value))
}

fn non_empty_path(value: &Value) -> Result<&str, String> {
    let s = expect_str(value, "a path")?;
    if s.is_empty() {
        return Err("the path must not be empty".to_owned());
    }
    if s.contains('\0') {
        return Err(format!("{s:?} contains a NUL byte"));
    }
    Ok(s)
}

fn string_array(value: &Value) -> Result<Vec<String>, String> {
    let array = value
        .as_array()
        .ok_or_else(|| expected("an array of strings", value))?;
    array
        .iter()
        .enumerate()
        .map(|(i, item)| match item.as_str() {
            Some(s) if s.contains('\0') => Err(format!("element {i} contains a NUL byte")),
            Some(s) => Ok(s.to_owned()),
            None => Err(format!(
                "expected an array of strings, but element {i} is {}",
                describe(item)
            )),
        })
        .collect()
}

fn env_table(value: &Value) -> Result<BTreeMap<String, String>, String> {
    let table = value
        .as_table()
        .ok_or_else(|| expected("a table of NAME = \"value\"", value))?;
    let mut out = BTreeMap::new();
    for (name, v) in table {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!(
                "{name:?} is not a valid variable name (empty, or contains '=' or NUL)"
            ));
        }
        // Numbers and booleans are accepted as a convenience (`PORT = 8080`); they reach
        // the function as their TOML text.
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "variable {name}: expected a string, got {}",
                    describe(other)
                ))
            }
        };
        if text.contains('\0') {
            return Err(format!("variable {name}: the value contains a NUL byte"));
        }
        out.insert(name.clone(), text);
    }
    Ok(out)
}

fn expected(what: &str, got: &Value) -> String {
    format!("expected {what}, got {}", describe(got))
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {s:?}"),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Datetime(d) => format!("the date-time {d}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_in_every_documented_form() {
        let spec = |u: &str, g: Option<&str>| UserSpec {
            user: u.to_owned(),
            group: g.map(str::to_owned),
        };
        assert_eq!(parse_user("app"), Ok(spec("app", None)));
        assert_eq!(parse_user("1000"), Ok(spec("1000", None)));
        assert_eq!(parse_user("1000:1000"), Ok(spec("1000", Some("1000"))));
        assert_eq!(parse_user("app:staff"), Ok(spec("app", Some("staff"))));
        for bad in ["", ":", "app:", ":staff", "a:b:c", "my user"] {
            assert!(parse_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_text_becomes_the_value_its_key_expects() {
        let args = Kind::Args { nonempty: false };
        assert_eq!(
            env_value(args, "/bin/app  --flag x"),
            Ok(Value::Array(vec![
                Value::String("/bin/app".into()),
                Value::String("--flag".into()),
                Value::String("x".into()),
            ]))
        );
        assert_eq!(
            env_value(args, r#"["/bin/sh", "-c", "echo hi"]"#),
            Ok(Value::Array(vec![
                Value::String("/bin/sh".into()),
                Value::String("-c".into()),
                Value::String("echo hi".into()),
            ]))
        );
        assert!(env_value(args, "[\"a\"]\nx = 1").is_err());
        assert!(env_value(Kind::EnvTable, "{ A = \"1\" }").is_ok());
        assert!(env_value(Kind::EnvTable, "A=1").is_err());
        assert_eq!(env_value(Kind::Bool, "TRUE"), Ok(Value::Boolean(true)));
        assert!(env_value(Kind::Bool, "yes").is_err());
        assert_eq!(env_value(COUNT, " 12 "), Ok(Value::Integer(12)));
        assert!(env_value(COUNT, "12x").is_err());
    }
}
