//! Lifecycle hooks as seen from the supervisor: what an attempt is ([`HookKind`]), how it can
//! fail ([`HookError`]), the FC log lines, and the HTTP calls, which run on short-lived threads
//! and report back with an [`Event::HookDone`].
//!
//! The supervisor owns each attempt's deadline; the thread enforces the same bound on its socket
//! so it does not linger, and a result that arrives after the supervisor gave up carries a stale
//! token and is ignored. Command hooks are children of the supervisor and never waited on here.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reaper::Exit;
use super::spawn::SpawnError;
use super::{Event, Events};
use crate::config::{Config, Endpoint};
use crate::http::client::{self, ClientError, Conn};
use crate::logging::line;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Waiting for a function without an HTTP initializer to accept connections (no log lines).
    Probe,
    Initialize,
    PreStop,
}

impl HookKind {
    /// `x-fc-control-path` / `FC_CONTROL_PATH`.
    pub fn control_path(self) -> &'static str {
        match self {
            HookKind::Probe => "",
            HookKind::Initialize => "/initialize",
            HookKind::PreStop => "/pre-stop",
        }
    }

    fn line_name(self) -> Option<&'static str> {
        match self {
            HookKind::Probe => None,
            HookKind::Initialize => Some("Initialize"),
            HookKind::PreStop => Some("PreStop"),
        }
    }
}

/// Why a hook attempt failed. `Display` is the reason on the FC End line
/// (`FC Initialize End RequestId: <id>, Error: <reason>`).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The function refused the connection: it is not listening (yet).
    #[error("connection refused")]
    Refused,
    /// Connecting failed otherwise (no socket file, unreachable, ...).
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The function reset or closed the connection before answering.
    #[error("connection reset")]
    Reset,
    /// Sending the request or reading the answer failed otherwise.
    #[error("{}", io_failure(.0))]
    Io(#[source] io::Error),
    /// The answer is not valid HTTP/1.1.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The attempt's timeout passed.
    #[error("timeout")]
    Timeout,
    /// The function answered with a status other than 2xx.
    #[error("status {0}")]
    Status(u16),
    /// The hook command exited with a non-zero status.
    #[error("{}", Exit::Code(*.0))]
    CommandExit(i32),
    /// The hook command was killed by a signal.
    #[error("{}", Exit::Signal(*.0))]
    CommandKilled(i32),
    /// The hook command could not be started.
    #[error("{}", crate::logging::error_chain(.0))]
    Spawn(#[source] SpawnError),
    /// The function exited while the attempt was under way.
    #[error("function {0}")]
    FunctionExited(Exit),
    /// The shutdown started during the attempt.
    #[error("aborted: fc-init is stopping")]
    Stopping,
    /// A second SIGTERM/SIGINT cut the attempt.
    #[error("interrupted by a second stop signal")]
    SecondSignal,
}

/// An i/o failure as the End line states it: our own UnexpectedEof errors carry a readable
/// message of their own.
fn io_failure(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => e.to_string(),
        _ => format!("i/o error: {e}"),
    }
}

impl HookError {
    /// How a hook command's process ended, as a hook result.
    pub fn from_command_exit(exit: Exit) -> Result<(), HookError> {
        match exit {
            Exit::Code(0) => Ok(()),
            Exit::Code(code) => Err(HookError::CommandExit(code)),
            Exit::Signal(sig) => Err(HookError::CommandKilled(sig)),
        }
    }
}

impl From<ClientError> for HookError {
    fn from(e: ClientError) -> HookError {
        match e {
            ClientError::Connect(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                HookError::Refused
            }
            ClientError::Connect(e) => HookError::Connect(e),
            ClientError::Timeout => HookError::Timeout,
            ClientError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
            {
                HookError::Reset
            }
            ClientError::Io(e) => HookError::Io(e),
            ClientError::Malformed(why) => HookError::Malformed(why),
        }
    }
}

/// `FC Initialize Start RequestId: <id>` (docs/reference.md §7).
pub fn log_start(kind: HookKind, request_id: &str) {
    if let Some(name) = kind.line_name() {
        line(format_args!("FC {name} Start RequestId: {request_id}"));
    }
}

/// `FC Initialize End RequestId: <id>[, Error: <reason>]`.
pub fn log_end(kind: HookKind, request_id: &str, error: Option<&str>) {
    let Some(name) = kind.line_name() else {
        return;
    };
    match error {
        None => line(format_args!("FC {name} End RequestId: {request_id}")),
        Some(reason) => line(format_args!(
            "FC {name} End RequestId: {request_id}, Error: {reason}"
        )),
    }
}

/// One HTTP hook attempt.
pub struct HttpCall {
    pub cfg: Arc<Config>,
    pub kind: HookKind,
    pub path: String,
    pub request_id: String,
    /// Until when connection refusals are retried (the function may not be listening yet).
    pub connect_by: Instant,
    /// The attempt's timeout, counted from the moment the connection is made.
    pub timeout: Duration,
    pub token: u64,
    pub events: Events,
}

pub fn spawn_http(call: HttpCall) {
    let spawned = std::thread::Builder::new()
        .name("fc-init-hook".into())
        .spawn(move || {
            let result = http_hook(&call);
            call.events.send(Event::HookDone {
                token: call.token,
                result,
            });
        });
    if let Err(e) = spawned {
        // The supervisor's deadline ends the attempt as a timeout.
        log::error!("starting a hook thread: {e}");
    }
}

/// Waits until the function accepts a connection, up to `deadline`.
pub fn spawn_probe(cfg: Arc<Config>, deadline: Instant, token: u64, events: Events) {
    let spawned = std::thread::Builder::new()
        .name("fc-init-probe".into())
        .spawn(move || {
            let result = connect(&cfg.function.endpoint, deadline).map(drop);
            events.send(Event::HookDone { token, result });
        });
    if let Err(e) = spawned {
        log::error!("starting a probe thread: {e}");
    }
}

fn http_hook(call: &HttpCall) -> Result<(), HookError> {
    let mut conn = connect(&call.cfg.function.endpoint, call.connect_by)?;
    let deadline = Instant::now() + call.timeout;
    let timeout_secs = call.timeout.as_nanos().div_ceil(1_000_000_000).to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("x-fc-request-id", &call.request_id),
        ("x-fc-control-path", call.kind.control_path()),
        ("x-fc-function-name", &call.cfg.function.name),
    ];
    let method = match call.kind {
        HookKind::Initialize => {
            headers.push(("x-fc-initialization-timeout", &timeout_secs));
            "POST"
        }
        _ => "GET",
    };
    let response = client::request(&mut conn, method, &call.path, &headers, b"", deadline)?;
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(HookError::Status(response.status))
    }
}

/// Connects to the function, retrying refusals (not listening yet) until `connect_by`.
///
/// This is a handshake with a deadline: the wait between tries starts at 1 ms and doubles up to
/// 50 ms, so a function that starts listening is noticed within milliseconds.
fn connect(endpoint: &Endpoint, connect_by: Instant) -> Result<Conn, HookError> {
    let mut pause = Duration::from_millis(1);
    loop {
        let now = Instant::now();
        // Each try gets at least a short window, so an already-listening function is reached even
        // when no waiting is allowed.
        let bound = connect_by.max(now + Duration::from_secs(1));
        let result = match endpoint {
            Endpoint::Unix(path) => client::connect_unix(path, bound),
            Endpoint::Tcp(port) => {
                client::connect_tcp(std::net::SocketAddr::from(([127, 0, 0, 1], *port)), bound)
            }
        };
        match result {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() + pause < connect_by => {
                log::trace!("function not accepting yet: {e}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_errors_read_as_the_reasons_on_the_end_line() {
        let cases: Vec<(HookError, &str)> = vec![
            (HookError::Refused, "connection refused"),
            (HookError::Reset, "connection reset"),
            (HookError::Timeout, "timeout"),
            (HookError::Status(500), "status 500"),
            (HookError::CommandExit(2), "exited with status 2"),
            (HookError::CommandKilled(libc::SIGKILL), "killed by SIGKILL"),
            (
                HookError::FunctionExited(Exit::Code(7)),
                "function exited with status 7",
            ),
            (HookError::Stopping, "aborted: fc-init is stopping"),
            (
                HookError::SecondSignal,
                "interrupted by a second stop signal",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(error.to_string(), reason);
        }
        let refused = ClientError::Connect(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(matches!(HookError::from(refused), HookError::Refused));
        let reset = ClientError::Io(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(matches!(HookError::from(reset), HookError::Reset));
        let missing = HookError::from(ClientError::Connect(io::Error::from(
            io::ErrorKind::NotFound,
        )));
        assert!(std::error::Error::source(&missing).is_some());
    }

    #[test]
    fn a_hook_command_succeeds_only_with_status_zero() {
        assert!(HookError::from_command_exit(Exit::Code(0)).is_ok());
        assert!(matches!(
            HookError::from_command_exit(Exit::Code(3)),
            Err(HookError::CommandExit(3))
        ));
        assert!(matches!(
            HookError::from_command_exit(Exit::Signal(9)),
            Err(HookError::CommandKilled(9))
        ));
    }
}
