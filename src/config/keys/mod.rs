//! The key table: one entry per configuration key — its name, the kind of value it takes, its
//! default, its row in docs/reference.md §3 and its line in `--check-config` — read by the
//! loader (`load`: which keys exist, how each value is checked, the defaults), by `print` and
//! by the test that holds the reference's tables and the sample config to it.
//!
//! A new key is an entry in its section's file, a field of its section's struct in
//! `config/mod.rs`, and the line of `load/build.rs` that fills that field (the default comes
//! from here). The reference's row is what `reference_table` writes for it
//! (`FC_INIT_WRITE_REFERENCE=1 cargo test --lib config::tests::table` writes it in), and
//! config/fc-init.toml shows the key, with its default when it has a fixed one; the tests of
//! `config::tests::table` and `print` check both.

use super::schema::{self, Kind, Val};
use super::show::Shown;
use super::Config;

mod admin;
mod async_;
mod function;
mod hook;
mod initializer;
mod log;
mod pre_stop;
mod server;
mod shutdown;
mod signals;

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    pub section: &'static str,
    pub key: &'static str,
    /// What values it takes (`schema::convert` checks them).
    pub kind: Kind,
    pub default: KeyDefault,
    /// The reference's "type" cell (Markdown).
    pub ty: &'static str,
    /// The reference's "meaning" cell (Markdown).
    pub doc: &'static str,
    /// The key's line in the effective configuration (`--check-config`).
    pub show: fn(&Config) -> Shown,
}

impl Key {
    /// The key's fixed default as a checked value; `None` when it depends on other keys.
    pub(super) fn default_value(&self) -> Option<Result<Val, String>> {
        let text = self.default.value()?;
        Some(schema::env_value(self.kind, text).and_then(|v| schema::convert(self.kind, &v)))
    }
}

/// A key's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyDefault {
    /// This value, written as the environment would set it (`"120s"`, `"100"`, `"{}"`); the
    /// loader falls back to it, the reference shows it in backticks.
    Is(&'static str),
    /// As `Is`, followed in the reference by the words on when another default applies.
    IsUnless(&'static str, &'static str),
    /// No fixed value: the loader works it out from other keys or the machine; the reference's
    /// words for it.
    Depends(&'static str),
}

impl KeyDefault {
    /// The value the loader falls back to, as environment text.
    pub(super) fn value(self) -> Option<&'static str> {
        match self {
            KeyDefault::Is(value) | KeyDefault::IsUnless(value, _) => Some(value),
            KeyDefault::Depends(_) => None,
        }
    }

    /// The reference's "default" cell.
    fn cell(self) -> String {
        match self {
            KeyDefault::Is(value) => format!("`{value}`"),
            KeyDefault::IsUnless(value, unless) => format!("`{value}` {unless}"),
            KeyDefault::Depends(words) => words.to_owned(),
        }
    }
}

/// One `[section]` and its keys, in the reference's order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Section {
    pub name: &'static str,
    pub keys: &'static [Key],
    /// False when the effective configuration leaves the section out (a hook not configured:
    /// printing its header would configure it).
    pub present: fn(&Config) -> bool,
    /// Comment lines `--check-config` prints after the section's keys.
    pub footer: fn(&Config) -> Vec<String>,
}

/// Every section, in the reference's order (the sample file follows it; a test checks that).
pub(super) const SECTIONS: &[Section] = &[
    function::SECTION,
    server::SECTION,
    initializer::SECTION,
    pre_stop::SECTION,
    shutdown::SECTION,
    async_::SECTION,
    admin::SECTION,
    log::SECTION,
    signals::SECTION,
];

/// Pairs of keys of one section that may not both be set: a source that sets one replaces
/// the other from a source of lower precedence, and setting both in one source is a problem.
pub(super) const EXCLUSIVE: &[(&str, &str, &str)] = &[
    ("function", "socket", "port"),
    ("initializer", "path", "command"),
    ("pre_stop", "path", "command"),
];

/// Every key, in the reference's order.
pub(super) fn all() -> impl Iterator<Item = &'static Key> {
    SECTIONS.iter().flat_map(|s| s.keys)
}

pub(super) fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name == name)
}

pub(super) fn find(section: &str, key: &str) -> Option<&'static Key> {
    all().find(|k| k.section == section && k.key == key)
}

/// The keys of one section, for "unknown key" hints.
pub(super) fn keys_of(section: &str) -> String {
    all()
        .filter(|k| k.section == section)
        .map(|k| k.key)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The section names, for "unknown section" hints.
pub(super) fn section_names() -> Vec<&'static str> {
    SECTIONS.iter().map(|s| s.name).collect()
}

/// The Markdown table of one section as docs/reference.md §3 holds it.
pub(super) fn reference_table(section: &Section) -> String {
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for k in section.keys {
        out.push_str(&format!(
            "| `{}.{}` | {} | {} | {} |\n",
            k.section,
            k.key,
            k.ty,
            k.default.cell(),
            k.doc
        ));
    }
    out
}

impl Section {
    /// A section that is always present and prints nothing after its keys.
    const fn plain(name: &'static str, keys: &'static [Key]) -> Section {
        Section {
            name,
            keys,
            present: |_| true,
            footer: |_| Vec::new(),
        }
    }
}
