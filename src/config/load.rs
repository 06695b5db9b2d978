//! Loading: find the config file, read it, the environment and the command line as three
//! layers of checked values, merge them (CLI > env > file > default), then build the typed
//! `Config` and check the rules that span keys. Every problem of every layer is collected, so
//! one run of `--check-config` shows them all.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{self, Key, EXCLUSIVE};
use super::schema::{self, Val};
use super::{Config, ConfigError, HookAction, Problem, Sources};

mod build;
use build::build;

/// The config file read when neither `-c` nor `FC_INIT_CONFIG` names one, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/fc-init/fc-init.toml";

/// Where fc-init listens when the function serves HTTP and nothing else says where.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9000);

/// `FC_INIT_*` variables that are not config keys: the config path and the log filter.
const NOT_CONFIG_KEYS: &[&str] = &["FC_INIT_CONFIG", "FC_INIT_LOG"];

/// Builds the effective configuration from the file, the environment and the command line.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    load_with_default(sources, Path::new(DEFAULT_CONFIG_PATH))
}

/// `load`, with the default config path as a parameter so tests do not depend on whether
/// `/etc/fc-init/fc-init.toml` exists on the machine running them.
pub(super) fn load_with_default(
    sources: &Sources,
    default_path: &Path,
) -> Result<Config, ConfigError> {
    layered(sources, |problems| {
        choose_file(sources, default_path).map(|file| file_layer(&file, problems))
    })
}

/// Merges the layers — the name's defaults, the file's layer that `file` reads, the
/// environment, the command line — and builds the `Config`, or every problem of them all.
fn layered(
    sources: &Sources,
    file: impl FnOnce(&mut Vec<Problem>) -> Option<Layer>,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut settings = Settings::default();
    settings.merge(flag_layer(
        &sources.defaults,
        "default for this name",
        &mut problems,
    ));
    if let Some(layer) = file(&mut problems) {
        settings.merge(layer);
    }
    settings.merge(env_layer(&sources.env, &mut problems));
    settings.merge(cli_layer(sources, &mut problems));
    let config = build(&settings, sources, &mut problems);
    match problems.is_empty() {
        true => Ok(config),
        false => Err(ConfigError { problems }),
    }
}

/// The private runtime directory: `/run/fc-init` as root; else `$XDG_RUNTIME_DIR/fc-init`;
/// else `<temp dir>/fc-init-<uid>` (the uid keeps users sharing `/tmp` apart).
pub fn runtime_dir(euid: u32, env: &BTreeMap<String, String>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/run/fc-init");
    }
    // Only an absolute XDG_RUNTIME_DIR counts, as the XDG base directory spec says.
    if let Some(xdg) = env.get("XDG_RUNTIME_DIR").filter(|d| d.starts_with('/')) {
        return Path::new(xdg).join("fc-init");
    }
    let temp = env
        .get("TMPDIR")
        .filter(|d| !d.is_empty())
        .map_or("/tmp", String::as_str);
    Path::new(temp).join(format!("fc-init-{euid}"))
}

/// Which config file applies: `-c`, else `FC_INIT_CONFIG`, else the default file when it exists.
pub fn config_path(sources: &Sources) -> Option<PathBuf> {
    choose_file(sources, Path::new(DEFAULT_CONFIG_PATH)).map(|f| f.path)
}

struct ChosenFile {
    path: PathBuf,
    /// What named the file explicitly; a missing explicit file is a problem, a missing
    /// default file is not.
    named_by: Option<&'static str>,
}

fn choose_file(sources: &Sources, default_path: &Path) -> Option<ChosenFile> {
    if let Some(path) = &sources.config_flag {
        return Some(ChosenFile {
            path: path.clone(),
            named_by: Some("-c/--config"),
        });
    }
    if let Some(path) = sources.env.get("FC_INIT_CONFIG").filter(|p| !p.is_empty()) {
        return Some(ChosenFile {
            path: PathBuf::from(path),
            named_by: Some("FC_INIT_CONFIG"),
        });
    }
    default_path.exists().then(|| ChosenFile {
        path: default_path.to_owned(),
        named_by: None,
    })
}

/// One checked value and where it came from, for the problems that mention it later.
#[derive(Debug, Clone)]
struct Setting {
    val: Val,
    source: String,
}

type Slot = (&'static str, &'static str);

/// The values one source sets, and the sections it mentions (presence of `[initializer]`
/// and `[pre_stop]` means "configured").
#[derive(Debug, Default)]
struct Layer {
    values: BTreeMap<Slot, Setting>,
    sections: BTreeSet<&'static str>,
}

impl Layer {
    /// Checks `value` against the key's schema; a bad value becomes a problem.
    fn set(
        &mut self,
        spec: &'static Key,
        value: &toml::Value,
        source: &str,
        problems: &mut Vec<Problem>,
    ) {
        match schema::convert(spec.kind, value) {
            Ok(val) => {
                self.values.insert(
                    (spec.section, spec.key),
                    Setting {
                        val,
                        source: source.to_owned(),
                    },
                );
            }
            Err(reason) => problems.push(problem(source, spec, reason)),
        }
    }
}

fn problem(source: &str, spec: &Key, reason: String) -> Problem {
    Problem {
        source: source.to_owned(),
        key: format!("{}.{}", spec.section, spec.key),
        reason,
    }
}

/// Builds the configuration from a TOML text instead of a file (plus the environment and the
/// command line of `sources`; its `config_flag` is not read).
pub fn from_str(text: &str, sources: &Sources) -> Result<Config, ConfigError> {
    layered(sources, |problems| {
        Some(text_layer("<config text>", text, problems))
    })
}

fn file_layer(file: &ChosenFile, problems: &mut Vec<Problem>) -> Layer {
    let source = file.path.display().to_string();
    match fs::read_to_string(&file.path) {
        Ok(text) => text_layer(&source, &text, problems),
        Err(e) => {
            let reason = match file.named_by {
                Some(by) => format!("cannot read the config file named by {by}: {e}"),
                None => format!("cannot read the config file: {e}"),
            };
            problems.push(Problem {
                source,
                key: String::new(),
                reason,
            });
            Layer::default()
        }
    }
}

fn text_layer(source: &str, text: &str, problems: &mut Vec<Problem>) -> Layer {
    let source = source.to_owned();
    let mut layer = Layer::default();
    let table: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(e) => {
            problems.push(Problem {
                source,
                key: String::new(),
                reason: syntax_error(text, &e),
            });
            return layer;
        }
    };
    for (section_name, section_value) in &table {
        let Some(section) = keys::section(section_name).map(|s| s.name) else {
            problems.push(Problem {
                source: source.clone(),
                key: section_name.clone(),
                reason: format!(
                    "unknown section; the sections are {}",
                    keys::section_names().join(", ")
                ),
            });
            continue;
        };
        let Some(entries) = section_value.as_table() else {
            problems.push(Problem {
                source: source.clone(),
                key: section_name.clone(),
                reason: format!("expected a table ([{section}])"),
            });
            continue;
        };
        layer.sections.insert(section);
        for (key, value) in entries {
            match keys::find(section, key) {
                Some(spec) => layer.set(spec, value, &source, problems),
                None => problems.push(Problem {
                    source: source.clone(),
                    key: format!("{section}.{key}"),
                    reason: format!(
                        "unknown key; the keys of [{section}] are {}",
                        keys::keys_of(section)
                    ),
                }),
            }
        }
    }
    layer
}

/// "TOML syntax error at line L, column C: message", on one line.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            // Counted on bytes: the parser's offset need not fall on a character boundary of
            // `text` (slicing the `&str` there would panic on a malformed file).
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            // Characters, not bytes: every byte but a UTF-8 continuation byte starts one.
            let column = before[line_start..]
                .iter()
                .filter(|&&b| b & 0xc0 != 0x80)
                .count()
                + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

fn env_layer(env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) -> Layer {
    let mut layer = Layer::default();
    for (name, raw) in env {
        if !name.starts_with("FC_INIT_") || NOT_CONFIG_KEYS.contains(&name.as_str()) {
            continue;
        }
        // Other FC_INIT_* variables that do not start with a section name are left alone: they
        // are not config keys, whoever set them.
        let Some((section, key_upper)) = split_env_name(name) else {
            continue;
        };
        let source = format!("environment ({name})");
        let Some(spec) =
            keys::all().find(|k| k.section == section && k.key.eq_ignore_ascii_case(key_upper))
        else {
            problems.push(Problem {
                source,
                key: format!("{section}.{}", key_upper.to_ascii_lowercase()),
                reason: format!(
                    "unknown key; the keys of [{section}] are {}",
                    keys::keys_of(section)
                ),
            });
            continue;
        };
        // Naming a hook's key configures the hook, even if the value turns out to be bad.
        layer.sections.insert(section);
        match schema::env_value(spec.kind, raw) {
            Ok(value) => layer.set(spec, &value, &source, problems),
            Err(reason) => problems.push(problem(&source, spec, reason)),
        }
    }
    // FC's own variables, below an explicit FC_INIT_SERVER_LISTEN.
    if let Some((var, port)) = fc_port_variable(env) {
        if !env.contains_key("FC_INIT_SERVER_LISTEN") {
            let source = format!("environment ({var})");
            match port.trim().parse::<u16>() {
                Ok(port) if port != 0 => {
                    let addr = SocketAddr::new(DEFAULT_LISTEN.ip(), port);
                    layer.values.insert(
                        ("server", "listen"),
                        Setting {
                            val: Val::Addr(addr),
                            source,
                        },
                    );
                }
                _ => problems.push(Problem {
                    source,
                    key: "server.listen".to_owned(),
                    reason: format!("{port:?} is not a port between 1 and 65535"),
                }),
            }
        }
    }
    layer
}

/// FC's port variables, the first set one winning: `FC_CUSTOM_LISTEN_PORT` (FC 3.0), then
/// `FC_SERVER_PORT`. FC sets one in every custom container: it is the port the container serves.
pub fn fc_port_variable(env: &BTreeMap<String, String>) -> Option<(&'static str, &str)> {
    FC_PORT_VARIABLES
        .iter()
        .find_map(|var| env.get(*var).map(|v| (*var, v.as_str())))
}

/// FC's variables that name the port the container serves, in precedence order.
pub const FC_PORT_VARIABLES: [&str; 2] = ["FC_CUSTOM_LISTEN_PORT", "FC_SERVER_PORT"];

/// A free loopback port for a function whose FC-style server listens on `$FC_SERVER_PORT`
/// while fc-init holds FC's own port: the kernel picks one (bind to port 0), which is free
/// again once the probe socket closes, for the function to bind when it starts.
fn free_loopback_port() -> std::io::Result<u16> {
    let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(probe.local_addr()?.port())
}

/// `FC_INIT_PRE_STOP_TIMEOUT` → `("pre_stop", "TIMEOUT")`. Section names contain underscores,
/// so the known names are matched rather than splitting at the first underscore.
fn split_env_name(name: &str) -> Option<(&'static str, &str)> {
    let rest = name.strip_prefix("FC_INIT_")?;
    let mut sections = keys::section_names();
    // Longest first, so no section name can shadow a longer one that starts with it.
    sections.sort_by_key(|s| std::cmp::Reverse(s.len()));
    sections.into_iter().find_map(|section| {
        let upper = section.to_ascii_uppercase();
        let key = rest.strip_prefix(upper.as_str())?.strip_prefix('_')?;
        Some((section, key))
    })
}

fn cli_layer(sources: &Sources, problems: &mut Vec<Problem>) -> Layer {
    let mut layer = Layer::default();
    let mut set = |section: &str, key: &str, flag: &str, value: toml::Value| {
        if let Some(spec) = keys::find(section, key) {
            layer.set(spec, &value, &format!("command line ({flag})"), problems);
        }
    };
    let flags = [
        ("server", "listen", "--listen", &sources.listen),
        (
            "function",
            "socket",
            "--function-socket",
            &sources.function_socket,
        ),
    ];
    for (section, key, flag, value) in flags {
        if let Some(value) = value {
            set(section, key, flag, toml::Value::String(value.clone()));
        }
    }
    // An empty command is not a problem here: the CLI layer reports "no command".
    if !sources.command.is_empty() {
        let args = sources
            .command
            .iter()
            .map(|a| toml::Value::String(a.clone()))
            .collect();
        set("function", "command", "COMMAND", toml::Value::Array(args));
    }
    for flag in &sources.flags {
        set(flag.section, flag.key, &flag.flag, flag.value.clone());
    }
    layer
}

/// Keys that the name fc-init runs under sets (`tini`, `dumb-init`): its own layer, below
/// the file.
fn flag_layer(flags: &[super::FlagSetting], what: &str, problems: &mut Vec<Problem>) -> Layer {
    let mut layer = Layer::default();
    for flag in flags {
        if let Some(spec) = keys::find(flag.section, flag.key) {
            let source = format!("{what} ({})", flag.flag);
            layer.set(spec, &flag.value, &source, problems);
        }
    }
    layer
}

/// The layers merged so far, over the key table's defaults.
#[derive(Debug)]
struct Settings {
    values: BTreeMap<Slot, Setting>,
    sections: BTreeSet<&'static str>,
    /// Every key's fixed default, checked as a value of its kind (a test proves that each
    /// converts).
    defaults: BTreeMap<Slot, Val>,
}

impl Default for Settings {
    fn default() -> Self {
        let defaults = keys::all()
            .filter_map(|k| Some(((k.section, k.key), k.default_value()?.ok()?)))
            .collect();
        Settings {
            values: BTreeMap::new(),
            sections: BTreeSet::new(),
            defaults,
        }
    }
}

/// Writes `Settings`' typed getters: each returns the value of variant `Val::Variant` for
/// `name -> T = Variant`. Under `or_default:` a getter falls back to the key table's default
/// when the key is unset; under `optional:` it returns `Option<T>`, `None` when the key is
/// unset (`T` may borrow from the value).
macro_rules! typed_getters {
    (or_default: $($name:ident -> $ty:ty = $variant:ident;)*) => {$(
        fn $name(&self, section: &'static str, key: &'static str) -> $ty {
            match self.val_or_default(section, key) {
                Some(Val::$variant(v)) => *v,
                // Cannot occur for a key with a fixed default:
                // `defaults_are_those_of_the_contract` loads every one.
                _ => <$ty>::default(),
            }
        }
    )*};
    (optional: $($name:ident -> $ty:ty = $variant:ident;)*) => {$(
        fn $name(&self, section: &'static str, key: &'static str) -> Option<$ty> {
            match self.val(section, key) {
                Some(Val::$variant(v)) => Some(v),
                _ => None,
            }
        }
    )*};
}

impl Settings {
    /// Lays `layer` over what is there. A layer that sets one key of an exclusive pair also
    /// removes the other key set by a lower layer (`--function-socket` beats a file's
    /// `port`); both keys in one layer stay, to be reported by `build`.
    fn merge(&mut self, layer: Layer) {
        for (section, a, b) in EXCLUSIVE {
            let has = |key: &str| layer.values.contains_key(&(*section, key));
            match (has(a), has(b)) {
                (true, false) => {
                    self.values.remove(&(*section, *b));
                }
                (false, true) => {
                    self.values.remove(&(*section, *a));
                }
                _ => {}
            }
        }
        self.values.extend(layer.values);
        self.sections.extend(layer.sections);
    }

    fn get(&self, section: &'static str, key: &'static str) -> Option<&Setting> {
        self.values.get(&(section, key))
    }

    /// Where `section.key` was set, for a problem found with it; empty when it is unset.
    fn source_of(&self, section: &'static str, key: &'static str) -> String {
        self.get(section, key)
            .map(|s| s.source.clone())
            .unwrap_or_default()
    }

    fn val(&self, section: &'static str, key: &'static str) -> Option<&Val> {
        self.get(section, key).map(|s| &s.val)
    }

    /// The value set, else the key table's default.
    fn val_or_default(&self, section: &'static str, key: &'static str) -> Option<&Val> {
        self.val(section, key)
            .or_else(|| self.defaults.get(&(section, key)))
    }

    // The typed getters: each is the same match on another variant, so one macro writes
    // them. Those with a default fall back to it when the key is unset; the others are
    // `None` then. A value of another variant cannot occur: `schema::convert` makes each
    // key's variant from its kind.
    typed_getters! {or_default:
        duration -> Duration = Duration;
        int -> u64 = Int;
        size -> u64 = Size;
        bool -> bool = Bool;
    }
    typed_getters! {optional:
        text -> &str = Text;
        list -> &[String] = List;
        addr -> &SocketAddr = Addr;
    }

    /// A text value (a choice, a hook path), or its default.
    fn text_or_default(&self, section: &'static str, key: &'static str) -> &str {
        match self.val_or_default(section, key) {
            Some(Val::Text(text)) => text,
            _ => "",
        }
    }

    fn count(&self, section: &'static str, key: &'static str) -> usize {
        // The schema bounds counts by i64::MAX; saturate on a 32-bit target.
        usize::try_from(self.int(section, key)).unwrap_or(usize::MAX)
    }

    fn count_u32(&self, section: &'static str, key: &'static str) -> u32 {
        // The schema bounds these keys by u32::MAX.
        u32::try_from(self.int(section, key)).unwrap_or(u32::MAX)
    }

    /// Both keys of an exclusive pair left after merging come from the same source.
    fn check_exclusive(
        &self,
        section: &'static str,
        a: &'static str,
        b: &'static str,
    ) -> Option<Problem> {
        let (Some(first), Some(_)) = (self.get(section, a), self.get(section, b)) else {
            return None;
        };
        Some(Problem {
            source: first.source.clone(),
            key: format!("{section}.{a}"),
            reason: format!("{section}.{a} and {section}.{b} are exclusive; set only one"),
        })
    }

    fn hook(&self, section: &'static str, problems: &mut Vec<Problem>) -> Option<HookAction> {
        if !self.sections.contains(section) {
            return None;
        }
        problems.extend(self.check_exclusive(section, "path", "command"));
        Some(match self.list(section, "command") {
            Some(command) => HookAction::Command(command.to_vec()),
            None => HookAction::Http {
                path: self.text_or_default(section, "path").to_owned(),
            },
        })
    }
}
