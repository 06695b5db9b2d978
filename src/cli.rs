//! The command line (docs/reference.md §2): parses arguments, loads the configuration and hands
//! over to the supervisor. Every way out of fc-init maps to its exit status here, in one place.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Value as Toml;

use crate::config::{self, Config, FlagSetting, Sources};
use crate::events::service::AsyncService;
use crate::exit;
use crate::supervisor::{self, spawn::Credentials, Supervisor};

const USAGE: &str = "\
Usage:
  fc-init [OPTIONS] [--] COMMAND [ARG...]   supervise COMMAND (or function.command from the config)
  fc-init ctl [--socket PATH] SUBCOMMAND     talk to a running fc-init over its admin socket
  fc-init --check-config [-c FILE]           validate, print the effective config as TOML

Options:
  -c, --config FILE         configuration file (env FC_INIT_CONFIG; default /etc/fc-init/fc-init.toml)
      --listen ADDR         address to serve invocations on (server.listen)
      --function-socket PATH
                            unix socket the function serves HTTP on (function.socket)
      --function-port PORT  the function serves HTTP on 127.0.0.1:PORT (function.port)
      --check-config        validate the configuration, print it and exit
  -v, --verbose             more diagnostics on stderr (repeatable; FC_INIT_LOG overrides)
  -h, --help                print this help
  -V, --version             print the version

tini's and dumb-init's flags (docs/reference.md §8):
  -s                        accepted: fc-init is always a child subreaper
  -g                        forward signals to the function's process group (signals.forward_to)
  -e CODE                   exit status CODE of the function counts as 0 (signals.success_codes)
  -p SIGNAL                 get SIGNAL when fc-init's parent dies (signals.parent_death_signal)
  -w                        warn about every reaped process that is not the function
                            (signals.warn_reaped)
  -l                        print the license and exit
  -r, --rewrite S:R         forward signal S as R; R = 0 drops it (signals.rewrite)
      --single-child        forward signals to the function's process only (also -c under
                            the name dumb-init)
Environment: TINI_SUBREAPER, TINI_KILL_PROCESS_GROUP (= -g), TINI_VERBOSITY (0-3),
DUMB_INIT_SETSID=0 (= --single-child). Installed as `tini` or `dumb-init`, fc-init takes that
tool's defaults.

Every config key can also be set as FC_INIT_<SECTION>_<KEY>; precedence: CLI > env > file > default.
A program literally named ctl is run with `fc-init -- ctl`.";

/// What `-l` prints (tini prints its license the same way).
const LICENSE: &str = "\
fc-init is licensed under the Apache License, Version 2.0 (the \"License\");
you may not use it except in compliance with the License. You may obtain a copy of the
License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the
License is distributed on an \"AS IS\" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND,
either express or implied. See the License for the specific language governing permissions
and limitations under the License.";

/// The name fc-init was started under (argv[0]'s file name): installed as `tini` or
/// `dumb-init`, it takes that tool's defaults and reads `-c` as dumb-init does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    FcInit,
    Tini,
    DumbInit,
}

impl Name {
    fn of(argv0: Option<&OsStr>) -> Name {
        let file = argv0.and_then(|a| Path::new(a).file_name());
        match file.and_then(OsStr::to_str) {
            Some("tini") => Name::Tini,
            Some("dumb-init") => Name::DumbInit,
            _ => Name::FcInit,
        }
    }

    /// The keys that differ by name: tini forwards to the process, dumb-init to the group.
    fn defaults(self) -> Vec<FlagSetting> {
        let forward_to = match self {
            Name::FcInit => return Vec::new(),
            Name::Tini => "process",
            Name::DumbInit => "group",
        };
        vec![setting(
            "signals",
            "forward_to",
            self.as_str(),
            Toml::String(forward_to.into()),
        )]
    }

    fn as_str(self) -> &'static str {
        match self {
            Name::FcInit => "fc-init",
            Name::Tini => "tini",
            Name::DumbInit => "dumb-init",
        }
    }
}

fn setting(section: &'static str, key: &'static str, flag: &str, value: Toml) -> FlagSetting {
    FlagSetting {
        section,
        key,
        flag: flag.to_owned(),
        value,
    }
}

#[derive(Debug, Default, PartialEq)]
struct Options {
    config: Option<PathBuf>,
    listen: Option<String>,
    function_socket: Option<String>,
    check_config: bool,
    verbosity: u8,
    /// As given: arguments need not be UTF-8 and reach the function unchanged (as with tini).
    command: Vec<OsString>,
    /// Keys set by flags (`--function-port`, tini's and dumb-init's flags), in order.
    flags: Vec<FlagSetting>,
}

#[derive(Debug, PartialEq)]
enum Mode {
    Run(Options),
    Ctl(Vec<OsString>),
    Help,
    Version,
    License,
}

/// Parses arguments (without the program name) as fc-init under `name`. Options stop at `--`
/// or at the first word that is not an option: everything after belongs to the command.
///
/// lexopt rather than clap: it reads `OsString`s (a command's arguments need not be UTF-8),
/// lets options stop at the first word of the command, and adds a few kilobytes to a static
/// binary where clap adds hundreds.
fn parse_as(name: Name, args: Vec<OsString>) -> Result<Mode, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut opts = Options::default();
    let mut rewrite = toml::Table::new();
    let mut codes = Vec::new();
    loop {
        // `--` ends the options; the word after it is the command even when it reads `ctl`.
        if let Some(mut raw) = parser.try_raw_args() {
            if raw.peek() == Some(OsStr::new("--")) {
                raw.next();
                opts.command = raw.collect();
                break;
            }
        }
        let Some(arg) = parser.next()? else {
            break;
        };
        match arg {
            Short('h') | Long("help") => return Ok(Mode::Help),
            Short('V') | Long("version") => return Ok(Mode::Version),
            Short('l') => return Ok(Mode::License),
            Short('c') if name == Name::DumbInit => opts.flags.push(single_child("-c")),
            Long("single-child") => opts.flags.push(single_child("--single-child")),
            Short('c') | Long("config") => opts.config = Some(parser.value()?.into()),
            Long("listen") => opts.listen = Some(text(parser.value()?, "--listen")?),
            Long("function-socket") => {
                opts.function_socket = Some(text(parser.value()?, "--function-socket")?)
            }
            Long("function-port") => {
                let port: i64 = parser
                    .value()?
                    .parse()
                    .map_err(|e| format!("--function-port takes a port number: {e}"))?;
                let flag = "--function-port";
                opts.flags
                    .push(setting("function", "port", flag, Toml::Integer(port)));
            }
            Long("check-config") => opts.check_config = true,
            Short('v') | Long("verbose") => opts.verbosity = opts.verbosity.saturating_add(1),
            // tini's -s: fc-init becomes a child subreaper whenever it is not PID 1.
            Short('s') => {}
            Short('g') => opts.flags.push(setting(
                "signals",
                "forward_to",
                "-g",
                Toml::String("group".into()),
            )),
            Short('e') => {
                let code: i64 = parser
                    .value()?
                    .parse()
                    .map_err(|e| format!("-e takes an exit status: {e}"))?;
                codes.push(Toml::Integer(code));
            }
            Short('p') => {
                let signal = text(parser.value()?, "-p")?;
                let flag = "-p";
                opts.flags.push(setting(
                    "signals",
                    "parent_death_signal",
                    flag,
                    Toml::String(signal),
                ));
            }
            Short('w') => {
                opts.flags
                    .push(setting("signals", "warn_reaped", "-w", Toml::Boolean(true)))
            }
            Short('r') | Long("rewrite") => {
                let spec = text(parser.value()?, "--rewrite")?;
                let (from, to) = spec
                    .split_once(':')
                    .ok_or_else(|| format!("--rewrite takes S:R, not {spec:?}"))?;
                rewrite.insert(from.trim().into(), Toml::String(to.trim().into()));
            }
            Value(word) if word == "ctl" && opts == Options::default() => {
                return Ok(Mode::Ctl(parser.raw_args()?.collect()))
            }
            Value(word) => {
                opts.command = std::iter::once(word).chain(parser.raw_args()?).collect();
                break;
            }
            other => return Err(other.unexpected()),
        }
    }
    if !codes.is_empty() {
        let value = Toml::Array(codes);
        opts.flags
            .push(setting("signals", "success_codes", "-e", value));
    }
    if !rewrite.is_empty() {
        let value = Toml::Table(rewrite);
        opts.flags.push(setting("signals", "rewrite", "-r", value));
    }
    Ok(Mode::Run(opts))
}

/// [`parse_as`] under fc-init's own name.
#[cfg(test)]
fn parse(args: Vec<OsString>) -> Result<Mode, String> {
    parse_as(Name::FcInit, args).map_err(|e| e.to_string())
}

fn single_child(flag: &str) -> FlagSetting {
    setting(
        "signals",
        "forward_to",
        flag,
        Toml::String("process".into()),
    )
}

/// An option value that must be text (an address, a path fc-init keeps in its config).
fn text(value: OsString, flag: &str) -> Result<String, String> {
    value
        .into_string()
        .map_err(|v| format!("{flag}: {v:?} is not valid UTF-8"))
}

/// tini's and dumb-init's environment variables, read as their flags (so with the command
/// line's precedence), and the verbosity `TINI_VERBOSITY` asks for.
fn env_flags(env: &BTreeMap<String, String>) -> Result<(Vec<FlagSetting>, u8), String> {
    let mut flags = Vec::new();
    // TINI_SUBREAPER asks tini to register as a subreaper: fc-init always does.
    // tini reads TINI_KILL_PROCESS_GROUP as set or not, whatever its value.
    if env.contains_key("TINI_KILL_PROCESS_GROUP") {
        let var = "TINI_KILL_PROCESS_GROUP";
        flags.push(setting(
            "signals",
            "forward_to",
            var,
            Toml::String("group".into()),
        ));
    }
    if env.get("DUMB_INIT_SETSID").map(String::as_str) == Some("0") {
        flags.push(single_child("DUMB_INIT_SETSID=0"));
    }
    // tini's levels: 1 (its default) warnings, 2 information, 3 debugging; fc-init's warnings
    // are its quietest level.
    let verbosity = match env.get("TINI_VERBOSITY").map(|v| v.trim()) {
        None | Some("") => 0,
        Some(v) => match v.parse::<u8>() {
            Ok(n @ 0..=3) => n.saturating_sub(1),
            _ => return Err(format!("TINI_VERBOSITY must be 0 to 3, not {v:?}")),
        },
    };
    Ok((flags, verbosity))
}

/// Runs fc-init with the process's arguments; returns the exit status.
pub fn main() -> i32 {
    let mut args = std::env::args_os();
    let name = Name::of(args.next().as_deref());
    let mode = match parse_as(name, args.collect()) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("fc-init: {e}\n\n{USAGE}");
            return exit::USAGE;
        }
    };
    let opts = match mode {
        Mode::Help => {
            println!(
                "fc-init {}: a PID 1 and function supervisor\n\n{USAGE}",
                env!("CARGO_PKG_VERSION")
            );
            return 0;
        }
        Mode::Version => {
            println!("fc-init {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Mode::License => {
            println!("{LICENSE}");
            return 0;
        }
        Mode::Ctl(args) => return crate::admin::ctl::main(args),
        Mode::Run(opts) => opts,
    };
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let (env_flags, env_verbosity) = match env_flags(&env) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("fc-init: {e}");
            return exit::USAGE;
        }
    };
    let sources = Sources {
        config_flag: opts.config.clone(),
        env,
        listen: opts.listen.clone(),
        function_socket: opts.function_socket.clone(),
        // The configuration keeps text (it is printed as TOML and names the function); the
        // program itself is started with the arguments exactly as given.
        command: opts
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        euid: nix::unistd::geteuid().as_raw(),
        flags: env_flags.into_iter().chain(opts.flags.clone()).collect(),
        defaults: name.defaults(),
    };
    let cfg = match config::load(&sources) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("fc-init: invalid configuration:\n{e}");
            return exit::USAGE;
        }
    };
    if opts.check_config {
        print!("{}", cfg.to_toml());
        return 0;
    }
    if cfg.function.command.is_empty() {
        eprintln!("fc-init: no command: give COMMAND [ARG...] or set function.command\n\n{USAGE}");
        return exit::USAGE;
    }
    let verbosity = opts.verbosity.max(env_verbosity);
    crate::logging::init(verbosity, cfg.log.format);
    let argv = (!opts.command.is_empty()).then_some(opts.command);
    match run(cfg, argv) {
        Ok(code) => code,
        Err(Failure(e, code)) => {
            eprintln!("fc-init: {}", crate::logging::error_chain(e.as_ref()));
            code
        }
    }
}

/// Why fc-init could not run, and its exit status (from [`crate::exit`]).
struct Failure(Box<dyn std::error::Error>, i32);

impl Failure {
    fn own(e: impl Into<Box<dyn std::error::Error>>) -> Failure {
        Failure(e.into(), exit::FAILURE)
    }
}

/// Sets up and runs the supervisor; `argv`: the command as given on the command line, which
/// overrides `function.command`'s text.
fn run(cfg: Config, argv: Option<Vec<OsString>>) -> Result<i32, Failure> {
    // Signals are blocked before anything else can start a thread.
    let setup = supervisor::setup(&cfg).map_err(Failure::own)?;
    let credentials = match &cfg.function.user {
        Some(spec) => Some(Credentials::resolve(spec).map_err(Failure::own)?),
        None => None,
    };
    if cfg.serves_http() {
        // The sockets and the default store live in the private runtime directory; a plain
        // init needs none of it (and may run on a read-only root).
        crate::runtime_dir::ensure_private(&cfg.runtime_dir).map_err(Failure::own)?;
        if let config::Endpoint::Unix(path) = &cfg.function.endpoint {
            if let Some(dir) = path.parent() {
                crate::runtime_dir::create_missing(dir).map_err(Failure::own)?;
            }
        }
    }
    let cfg = Arc::new(cfg);
    let mut admin_socket = None;
    let mut traffic = None;
    if cfg.serves_http() {
        // Like the listener, the admin API exists only when fc-init serves: a plain init
        // listens nowhere.
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let asynchronous = match cfg.async_.enabled {
            true => Some(
                AsyncService::open(cfg.clone(), setup.shared.clone(), setup.events.clone())
                    .map_err(|e| {
                        let code = e.exit_code();
                        Failure(e.into(), code)
                    })?,
            ),
            false => None,
        };
        let async_events = asynchronous
            .clone()
            .map(|a| a as Arc<dyn crate::events::api::AsyncEvents>);
        let ctx = crate::admin::Context {
            shared: setup.shared.clone(),
            metrics: metrics.clone(),
            async_events,
        };
        crate::admin::start(&cfg, Arc::new(ctx)).map_err(Failure::own)?;
        admin_socket = Some(RemoveOnExit(cfg.admin.socket.clone()));
        // The listener accepts from the start; requests wait until the instance is ready.
        let wiring = crate::proxy::Wiring {
            shared: setup.shared.clone(),
            events: setup.events.clone(),
            metrics,
            asynchronous: asynchronous.clone(),
        };
        traffic = crate::proxy::start(cfg.clone(), wiring).map_err(Failure::own)?;
        if let (Some(service), Some(t)) = (asynchronous, &traffic) {
            service.start(t.addr());
        }
    }
    let result = Supervisor::new(cfg, setup, credentials)
        .with_argv(argv)
        .run();
    if let Some(t) = &traffic {
        t.settle();
    }
    drop(admin_socket);
    result.map_err(Failure::own)
}

/// The admin socket file, removed when fc-init is done with it: a clean exit leaves nothing
/// behind for `ctl` to find (a SIGKILLed fc-init's socket is replaced by the next start).
struct RemoveOnExit(PathBuf);

impl Drop for RemoveOnExit {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("removing {}: {e}", self.0.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn run_opts(list: &[&str]) -> Options {
        match parse(args(list)) {
            Ok(Mode::Run(o)) => o,
            other => panic!("{list:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn options_stop_at_the_command() {
        let o = run_opts(&[
            "-vv",
            "-c",
            "x.toml",
            "--listen=127.0.0.1:1",
            "sleep",
            "-v",
            "5",
        ]);
        assert_eq!(o.verbosity, 2);
        assert_eq!(o.config, Some("x.toml".into()));
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(o.command, ["sleep", "-v", "5"]);
    }

    #[test]
    fn double_dash_runs_a_program_named_ctl() {
        assert_eq!(run_opts(&["--", "ctl", "x"]).command, ["ctl", "x"]);
        assert_eq!(
            parse(args(&["ctl", "health"])),
            Ok(Mode::Ctl(vec!["health".into()]))
        );
        assert_eq!(run_opts(&["-v", "ctl"]).command, ["ctl"]);
    }

    #[test]
    fn usage_errors() {
        assert!(parse(args(&["--nope"])).is_err());
        assert!(parse(args(&["-c"])).is_err());
        assert_eq!(
            run_opts(&["--check-config", "-cfile"]).config,
            Some("file".into())
        );
    }

    fn flags_of(name: Name, list: &[&str]) -> Vec<(String, String, Toml)> {
        match parse_as(name, args(list)) {
            Ok(Mode::Run(o)) => o
                .flags
                .into_iter()
                .map(|f| (format!("{}.{}", f.section, f.key), f.flag, f.value))
                .collect(),
            other => panic!("{list:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn tinis_flags_set_their_keys() {
        let flags = flags_of(
            Name::FcInit,
            &[
                "-s", "-g", "-e", "143", "-e", "137", "-p", "SIGTERM", "-w", "--", "app",
            ],
        );
        let keys: Vec<&str> = flags.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "signals.forward_to",
                "signals.parent_death_signal",
                "signals.warn_reaped",
                "signals.success_codes"
            ]
        );
        assert_eq!(
            flags[3].2,
            Toml::Array(vec![Toml::Integer(143), Toml::Integer(137)])
        );
        assert_eq!(
            parse_as(Name::Tini, args(&["-l"])).ok(),
            Some(Mode::License)
        );
        assert!(parse_as(Name::FcInit, args(&["-e", "x", "app"])).is_err());
    }

    #[test]
    fn dumb_inits_c_is_single_child_only_under_its_name() {
        let flags = flags_of(Name::DumbInit, &["-c", "-r", "15:3", "-r", "28:0", "app"]);
        assert_eq!(flags[0].0, "signals.forward_to");
        assert_eq!(flags[0].2, Toml::String("process".into()));
        let mut table = toml::Table::new();
        table.insert("15".into(), Toml::String("3".into()));
        table.insert("28".into(), Toml::String("0".into()));
        assert_eq!(flags[1].2, Toml::Table(table));
        assert_eq!(
            run_opts(&["-c", "x.toml", "app"]).config,
            Some("x.toml".into())
        );
        assert_eq!(
            Name::of(Some(OsStr::new("/usr/bin/dumb-init"))),
            Name::DumbInit
        );
        assert_eq!(Name::of(Some(OsStr::new("tini"))), Name::Tini);
        assert_eq!(Name::of(Some(OsStr::new("/sbin/fc-init"))), Name::FcInit);
    }

    #[test]
    fn a_non_utf8_argument_reaches_the_command_unchanged() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'a', 0xff, b'b']);
        let o = match parse(vec!["--".into(), "app".into(), odd.clone()]) {
            Ok(Mode::Run(o)) => o,
            other => panic!("{other:?}"),
        };
        assert_eq!(o.command, [OsString::from("app"), odd]);
    }

    #[test]
    fn tinis_environment() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let (flags, verbosity) = env_flags(&env(&[
            ("TINI_KILL_PROCESS_GROUP", "1"),
            ("TINI_VERBOSITY", "3"),
        ]))
        .unwrap();
        assert_eq!(flags[0].value, Toml::String("group".into()));
        assert_eq!(verbosity, 2);
        let (flags, _) = env_flags(&env(&[("DUMB_INIT_SETSID", "0")])).unwrap();
        assert_eq!(flags[0].value, Toml::String("process".into()));
        assert!(env_flags(&env(&[("TINI_VERBOSITY", "9")])).is_err());
    }
}
