//! The command line (contract section 1): parses arguments, loads the configuration and hands
//! over to the supervisor. Every way out of fc-init maps to its exit status here, in one place.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, Config, Sources};
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
      --check-config        validate the configuration, print it and exit
  -v                        more diagnostics on stderr (repeatable; FC_INIT_LOG overrides)
  -h, --help                print this help
  -V, --version             print the version

Every config key can also be set as FC_INIT_<SECTION>_<KEY>; precedence: CLI > env > file > default.
A program literally named ctl is run with `fc-init -- ctl`.";

#[derive(Debug, Default, PartialEq)]
struct Options {
    config: Option<PathBuf>,
    listen: Option<String>,
    function_socket: Option<String>,
    check_config: bool,
    verbosity: u8,
    command: Vec<String>,
}

#[derive(Debug, PartialEq)]
enum Mode {
    Run(Options),
    Ctl(Vec<String>),
    Help,
    Version,
}

/// Parses arguments (without the program name). Options stop at `--` or at the first word that
/// is not an option: everything after belongs to the command.
fn parse(args: Vec<OsString>) -> Result<Mode, String> {
    let mut args = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument is not valid UTF-8: {a:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let mut opts = Options::default();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match name.as_str() {
            "--" => {
                opts.command = args.collect();
                break;
            }
            "-h" | "--help" => return Ok(Mode::Help),
            "-V" | "--version" => return Ok(Mode::Version),
            "-c" | "--config" => opts.config = Some(value(&name)?.into()),
            "--listen" => opts.listen = Some(value(&name)?),
            "--function-socket" => opts.function_socket = Some(value(&name)?),
            "--check-config" => opts.check_config = true,
            s if s.starts_with("-c") && s.len() > 2 => opts.config = Some(s[2..].into()),
            s if s.starts_with('-') && s.len() > 1 && s[1..].bytes().all(|b| b == b'v') => {
                opts.verbosity = opts.verbosity.saturating_add((s.len() - 1) as u8);
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            "ctl" if opts == Options::default() => return Ok(Mode::Ctl(args.collect())),
            _ => {
                opts.command = std::iter::once(arg).chain(args).collect();
                break;
            }
        }
    }
    Ok(Mode::Run(opts))
}

/// Runs fc-init with the process's arguments; returns the exit status.
pub fn main() -> i32 {
    let mode = match parse(std::env::args_os().skip(1).collect()) {
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
        Mode::Ctl(args) => return crate::admin::ctl::main(args),
        Mode::Run(opts) => opts,
    };
    let sources = Sources {
        config_flag: opts.config.clone(),
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        listen: opts.listen.clone(),
        function_socket: opts.function_socket.clone(),
        command: opts.command.clone(),
        euid: nix::unistd::geteuid().as_raw(),
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
    crate::logging::init(opts.verbosity, cfg.log.format);
    match run(cfg) {
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

/// Sets up and runs the supervisor.
fn run(cfg: Config) -> Result<i32, Failure> {
    // Signals are blocked before anything else can start a thread.
    let setup = supervisor::setup().map_err(|e| {
        let code = e.exit_code();
        Failure(e.into(), code)
    })?;
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
            .map(|a| a as Arc<dyn crate::admin::AsyncEvents>);
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
    let result = Supervisor::new(cfg, setup, credentials).run();
    if let Some(t) = &traffic {
        t.settle();
    }
    drop(admin_socket);
    result.map_err(|e| {
        let code = e.exit_code();
        Failure(e.into(), code)
    })
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
}
