//! Typed configuration: the keys of docs/reference.md §3, their defaults, and how a file, the
//! environment (`FC_INIT_<SECTION>_<KEY>`) and the command line are merged (CLI > env > file >
//! default). Every problem is collected and reported at once, each naming the file, key and reason.
//!
//! Layout: `keys` is the key table — every key's name, kind, default, reference row and
//! printed line, one entry each; `schema` checks single values of each kind; `load` finds the
//! file, reads the three sources as layers, merges them and checks the rules that span keys
//! (exclusive keys, the serving rule); `print` writes the effective config back as TOML for
//! `--check-config`, through `show`; `units` reads and writes durations, sizes and signals.
//! The documented sample, `config/fc-init.toml`, is parsed by the tests so it cannot drift.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

mod keys;
mod load;
mod print;
pub mod redis_url;
mod schema;
mod show;
#[cfg(test)]
mod tests;
mod units;

pub use load::{
    config_path, fc_port_variable, from_str, load, runtime_dir, DEFAULT_CONFIG_PATH,
    DEFAULT_LISTEN, FC_PORT_VARIABLES,
};
pub use units::{format_duration, format_size, parse_duration, parse_signal, parse_size};

/// Every configuration key as `(section, key)`, in the documented order (the reference lists
/// each; a test checks it).
pub fn keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    keys::all().map(|k| (k.section, k.key))
}

/// The tables of docs/reference.md §3 as the key table writes them, one per section:
/// `(section, Markdown table)`. A test holds the reference to them.
pub fn reference_tables() -> Vec<(&'static str, String)> {
    keys::SECTIONS
        .iter()
        .map(|s| (s.name, keys::reference_table(s)))
        .collect()
}

/// Inputs to `load`, gathered by the CLI layer. Everything is passed in (no global environment
/// reads inside `load`) so tests can drive it.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `-c/--config` if given.
    pub config_flag: Option<PathBuf>,
    /// Snapshot of the process environment (`FC_INIT_CONFIG`, `FC_INIT_<SECTION>_<KEY>`,
    /// FC's `FC_CUSTOM_LISTEN_PORT`, `FC_SERVER_PORT`, `FC_FUNCTION_NAME` and `FC_REGION`,
    /// `XDG_RUNTIME_DIR`, `TMPDIR`).
    pub env: BTreeMap<String, String>,
    /// `--listen ADDR`
    pub listen: Option<String>,
    /// `--function-socket PATH`
    pub function_socket: Option<String>,
    /// COMMAND [ARG...] from the command line; non-empty overrides `function.command`.
    pub command: Vec<String>,
    /// Effective uid (root → runtime directory `/run/fc-init`).
    pub euid: u32,
    /// Further keys set by command-line flags (`--function-port`, tini's and dumb-init's
    /// flags and variables), with the precedence of the command line.
    pub flags: Vec<FlagSetting>,
    /// Defaults that differ by the name fc-init was started under (`tini`, `dumb-init`):
    /// below the file, the environment and the command line.
    pub defaults: Vec<FlagSetting>,
}

/// One key set by the command line: `section.key = value`, named after `flag` in problems.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagSetting {
    pub section: &'static str,
    pub key: &'static str,
    /// The flag or variable that set it, for problems (`-g`, `TINI_KILL_PROCESS_GROUP`).
    pub flag: String,
    pub value: toml::Value,
}

/// Every problem found while loading, from every source at once; shown one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(problems))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

fn lines(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

/// One problem: where it was found, which key, and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file path, `environment (FC_INIT_X_Y)` or `command line (--listen)`.
    pub source: String,
    /// `section.key`, e.g. `initializer.timeout`; empty for a problem with the whole file
    /// (unreadable, TOML syntax).
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    /// `<source>: <key>: <reason>`, or `<source>: <reason>` when no key applies.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.source, self.key, self.reason)
        }
    }
}

impl Config {
    /// The effective configuration as TOML: every key, defaults included; `load` reads it
    /// back to an equal `Config` (given the same runtime directory).
    pub fn to_toml(&self) -> String {
        print::to_toml(self)
    }

    /// The longest a stop can take once it starts: PreStop (when configured), the drain and
    /// the grace period. A platform's own grace period (Kubernetes'
    /// `terminationGracePeriodSeconds`) must cover it, or it SIGKILLs fc-init mid-stop.
    pub fn stop_bound(&self) -> Duration {
        let pre_stop = self.pre_stop.as_ref().map_or(Duration::ZERO, |p| p.timeout);
        pre_stop + self.shutdown.drain_timeout + self.shutdown.grace_period
    }

    /// True when fc-init serves HTTP traffic (`server.listen` is set).
    pub fn serves_http(&self) -> bool {
        self.server.listen.is_some()
    }
}

/// The effective configuration after every source has been merged and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub function: FunctionConfig,
    pub server: ServerConfig,
    /// `Some` when an `[initializer]` section is present (presence means "configured").
    pub initializer: Option<InitializerConfig>,
    /// `Some` when a `[pre_stop]` section is present.
    pub pre_stop: Option<PreStopConfig>,
    pub shutdown: ShutdownConfig,
    pub async_: AsyncConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub signals: SignalsConfig,
    /// fc-init's private runtime directory (`/run/fc-init` as root, else
    /// `$XDG_RUNTIME_DIR/fc-init`, else `<temp dir>/fc-init-<uid>`): the defaults of the
    /// sockets and the store live there. Not a key: it follows from the uid and environment.
    pub runtime_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionConfig {
    /// Program and arguments; empty when neither the config nor the command line names one.
    pub command: Vec<String>,
    pub working_dir: Option<PathBuf>,
    /// Added to the inherited environment.
    pub env: BTreeMap<String, String>,
    /// Where the function serves HTTP/1.1: a unix socket (the default, in the runtime directory)
    /// or 127.0.0.1:PORT.
    pub endpoint: Endpoint,
    pub start_timeout: Duration,
    /// Sent as `x-fc-function-name`; defaults to `FC_FUNCTION_NAME`, else the file name of
    /// `command[0]`.
    pub name: String,
    pub timeout: Duration,
    pub user: Option<UserSpec>,
    pub restart: RestartPolicy,
    pub restart_backoff_max: Duration,
    /// An event's qualifier when its request has no `x-fc-qualifier`: `$FC_QUALIFIER`, else
    /// `LATEST`.
    pub qualifier: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `function.socket` (or the default `<runtime dir>/function.sock`).
    Unix(PathBuf),
    /// `function.port`: the function serves on 127.0.0.1:PORT. With FC's port variable set and
    /// no endpoint configured, a free loopback port fc-init chose at start-up.
    Tcp(u16),
}

/// `server.platform`, resolved: whether fc-init runs under Function Compute itself, which
/// sends its own `x-fc-control-path` and lifecycle calls (docs/reference.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// FC's control path decides the kind; `/initialize` and `/pre-stop` are served by
    /// fc-init's own lifecycle.
    Fc,
    /// Any other host: an incoming `x-fc-control-path` is replaced, no client triggers a hook.
    None,
}

/// `async.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncBackend {
    /// One instance's embedded SQLite file (`async.store`).
    Sqlite,
    /// A queue shared by a fleet of instances on Redis (`async.redis_url`, `async.queue`).
    Redis,
}

/// `function.user`: a name, a uid, or `uid:gid` (either side may be a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub user: String,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `None` = plain init: nothing listens. Defaults to `0.0.0.0:9000` (or `FC_SERVER_PORT`)
    /// when the function serves HTTP, i.e. when `function.socket`, `function.port` or an HTTP
    /// hook is configured; `listen` itself, `--listen` or `FC_SERVER_PORT` also turn serving on.
    pub listen: Option<SocketAddr>,
    /// Resolved from `auto` by the environment when `platform_auto`.
    pub platform: Platform,
    /// `platform = "auto"` (the default): `Fc` when `FC_FUNCTION_NAME` and `FC_REGION` are set.
    pub platform_auto: bool,
    /// Requests in flight to the function; 0 = unlimited.
    pub max_concurrency: usize,
    pub max_queue: usize,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_body: u64,
    pub header_timeout: Duration,
    /// A request body up to this size is read whole before a concurrency slot is taken.
    pub body_buffer: u64,
    /// Bounds the whole of that buffered read (408).
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long an event loop keeps polling without sleeping after its last event; 0 = never.
    pub busy_poll: Duration,
    /// What all connections' buffered request bodies may take together (across the loops).
    pub body_buffer_total: u64,
    /// `server.http2 = "on"`: a connection opening with the HTTP/2 preface is relayed as h2c
    /// (docs/reference.md §14).
    pub http2: bool,
}

/// What a lifecycle hook does: an HTTP request to the function, or a command fc-init runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    Http { path: String },
    Command(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct InitializerConfig {
    pub action: HookAction,
    /// Per attempt; at most 300s.
    pub timeout: Duration,
    pub on_failure: OnFailure,
    /// 0 = unlimited.
    pub max_attempts: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Retry,
    NextRequest,
    Exit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreStopConfig {
    pub action: HookAction,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownConfig {
    pub stop_signal: Signal,
    pub drain_timeout: Duration,
    pub grace_period: Duration,
    pub kill_group: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AsyncConfig {
    pub enabled: bool,
    pub backend: AsyncBackend,
    /// The SQLite store; defaults to `<runtime dir>/events.db`.
    pub store: PathBuf,
    /// Required (and only used) with `backend = "redis"`.
    pub redis_url: Option<String>,
    /// The fleet's shared queue on Redis; defaults to `function.name`.
    pub queue: String,
    pub retention: Duration,
    pub max_concurrency: usize,
    pub max_retries: u32,
    pub max_queued: u64,
    pub max_payload: u64,
    /// `async.redis_min_replicas`: replicas that must confirm a submission (`WAIT`);
    /// `None` is `auto` (one, whenever the queue's master has a replica that keeps up).
    pub redis_min_replicas: Option<u32>,
    /// A QUEUED event not started within this of its submission ends EXPIRED; zero: never.
    pub max_event_age: Duration,
    /// The most of a function's answer kept with an event; 0 keeps none.
    pub max_result: u64,
    /// How long a destination delivery is tried.
    pub destination_retry_for: Duration,
    /// `[async.on_success] url` and `[async.on_failure] url`.
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Defaults to `<runtime dir>/admin.sock`.
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub invocations: bool,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[signals]`: what fc-init does with the signals it passes on (docs/reference.md §8).
#[derive(Debug, Clone, PartialEq)]
pub struct SignalsConfig {
    pub forward_to: ForwardTo,
    /// A received signal → the one forwarded in its place; 0 drops it.
    pub rewrite: BTreeMap<i32, i32>,
    /// The function's exit statuses that count as 0 in fc-init's own (tini's `-e`).
    pub success_codes: Vec<i32>,
    /// Asked of the kernel for fc-init when its parent dies (`PR_SET_PDEATHSIG`, tini's `-p`).
    pub parent_death_signal: Option<i32>,
    /// A warning on stderr for every reaped process that is not the function (tini's `-w`).
    pub warn_reaped: bool,
}

impl SignalsConfig {
    /// The signal forwarded in place of `signo`; `None`: dropped.
    pub fn rewritten(&self, signo: i32) -> Option<i32> {
        match self.rewrite.get(&signo) {
            Some(0) => None,
            Some(to) => Some(*to),
            None => Some(signo),
        }
    }
}

/// `signals.forward_to`: where forwarded signals (SIGHUP, SIGUSR1, ...) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardTo {
    /// The function's own process (tini's default): a master reloads, its workers are spared.
    Process,
    /// The function's whole process group (tini's `-g`, dumb-init's default).
    Group,
}
