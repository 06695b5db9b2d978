//! Writing values as TOML text for `--check-config`: the inverse of `schema::convert`, in the
//! forms the loader reads back (durations `"1m30s"`, sizes `"128KiB"`, signal names), and what
//! one key's line says (`Shown`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::units::{format_duration, format_size};

/// One key's line in the printed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shown {
    /// `key = value`
    Set(String),
    /// `key = value  # note`
    Noted(String, String),
    /// `# key = example  (why)`: the key is not set, and printing a value would change what
    /// the output means when it is read back.
    Unset { example: String, why: &'static str },
}

/// `key = value`.
pub(super) fn set(value: String) -> Shown {
    Shown::Set(value)
}

/// `value` when it is set, else a comment with an example and why it is not set.
pub(super) fn set_or(value: Option<String>, example: &str, why: &'static str) -> Shown {
    match value {
        Some(value) => Shown::Set(value),
        None => unset(example, why),
    }
}

/// `# key = example  (why)`.
pub(super) fn unset(example: &str, why: &'static str) -> Shown {
    Shown::Unset {
        example: example.to_owned(),
        why,
    }
}

/// A signal's name as the loader reads it back (`SIGRTMIN+2` for real-time ones).
pub(super) fn signal_name(signo: i32) -> String {
    match nix::sys::signal::Signal::try_from(signo) {
        Ok(sig) => sig.as_str().to_owned(),
        Err(_) if signo >= libc::SIGRTMIN() => format!("SIGRTMIN+{}", signo - libc::SIGRTMIN()),
        Err(_) => signo.to_string(),
    }
}

/// A TOML basic string; every control character is escaped so the value stays on one line.
pub(super) fn quote(s: &str) -> String {
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
pub(super) fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

pub(super) fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

pub(super) fn table(map: &BTreeMap<String, String>) -> String {
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

pub(super) fn duration(d: Duration) -> String {
    quote(&format_duration(d))
}

pub(super) fn size(n: u64) -> String {
    quote(&format_size(n))
}
