//! Lifecycle hooks as seen from the supervisor: the FC log lines, and the HTTP calls, which run
//! on short-lived threads and report back with an [`Event::HookDone`].
//!
//! The supervisor owns each attempt's deadline; the thread enforces the same bound on its socket
//! so it does not linger, and a result that arrives after the supervisor gave up carries a stale
//! token and is ignored. Command hooks are children of the supervisor and never waited on here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Event, Events};
use crate::config::{Config, Endpoint};
use crate::http::client::{self, Conn};
use crate::logging::line;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Waiting for a function without an initializer to accept connections (no log lines).
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

/// `FC Initialize Start RequestId: <id>` (contract section 5).
pub fn log_start(kind: HookKind, request_id: &str) {
    if let Some(name) = kind.line_name() {
        line(format_args!("FC {name} Start RequestId: {request_id}"));
    }
}

/// `FC Initialize End RequestId: <id>[, Error: <reason>]`.
pub fn log_end(kind: HookKind, request_id: &str, result: &Result<(), String>) {
    let Some(name) = kind.line_name() else {
        return;
    };
    match result {
        Ok(()) => line(format_args!("FC {name} End RequestId: {request_id}")),
        Err(reason) => line(format_args!(
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

fn http_hook(call: &HttpCall) -> Result<(), String> {
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
    let response = client::request(&mut conn, method, &call.path, &headers, b"", deadline)
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(format!("status {}", response.status))
    }
}

/// Connects to the function, retrying refusals (not listening yet) until `connect_by`.
///
/// This is a handshake with a deadline: the wait between tries starts at 1 ms and doubles up to
/// 50 ms, so a function that starts listening is noticed within milliseconds.
fn connect(endpoint: &Endpoint, connect_by: Instant) -> Result<Conn, String> {
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
            Err(e) => return Err(e.to_string()),
        }
    }
}
