//! The admin API (contract section 7): health, status, metrics and the asynchronous events, as
//! HTTP/1.1 on a private unix socket — mode 0600 inside the 0700 runtime directory, and every
//! peer's uid checked with SO_PEERCRED (only fc-init's own uid or root) — plus an optional TCP
//! listener (`admin.listen`) that serves nothing but `GET /health` and `GET /metrics`.
//!
//! One request per connection (`Connection: close`): the callers are probes and `fc-init ctl`,
//! not traffic. Each connection runs on its own small thread, bounded by a deadline, so a stuck
//! client cannot hold the API.

pub mod ctl;

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::http::{self, Buffered, Limits, Timeouts};
use crate::metrics::{Metrics, Snapshot};
use crate::state::{Phase, Shared};

/// How long one admin connection may take, request and answer together.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Largest request body the admin API reads (terminate's small JSON object).
const MAX_BODY: u64 = 64 * 1024;
const THREAD_STACK: usize = 128 * 1024;

/// An answer from the asynchronous-event side: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// The asynchronous-event operations the admin API exposes.
pub trait AsyncEvents: Send + Sync {
    /// `GET /async-events?...` with the raw query string.
    fn list(&self, query: &str) -> Answer;
    /// `GET /async-events/{id}`.
    fn get(&self, id: &str) -> Answer;
    /// `POST /async-events/{id}/terminate` with its JSON body.
    fn terminate(&self, id: &str, body: &[u8]) -> Answer;
    /// Stored events per status, for the metrics.
    fn counts(&self) -> Vec<(&'static str, u64)>;
}

/// What the API reads from.
pub struct Context {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub async_events: Option<Arc<dyn AsyncEvents>>,
}

#[derive(Debug)]
pub enum AdminError {
    /// Another fc-init answers on the socket already.
    InUse(PathBuf),
    Bind {
        what: String,
        source: io::Error,
    },
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::InUse(p) => write!(
                f,
                "admin socket {}: another fc-init is serving on it",
                p.display()
            ),
            AdminError::Bind { what, source } => write!(f, "admin API: binding {what}: {source}"),
        }
    }
}

impl std::error::Error for AdminError {}

/// Binds the admin socket (and `admin.listen`) and serves them on background threads.
pub fn start(cfg: &Config, ctx: Arc<Context>) -> Result<(), AdminError> {
    let listener = bind_private(&cfg.admin.socket)?;
    let c = ctx.clone();
    spawn("fc-init-admin", move || {
        accept(listener.incoming(), "admin socket", c, unix_access)
    });
    if let Some(addr) = cfg.admin.listen {
        let listener = TcpListener::bind(addr).map_err(|source| AdminError::Bind {
            what: addr.to_string(),
            source,
        })?;
        spawn("fc-init-admin-tcp", move || {
            accept(listener.incoming(), "admin listener", ctx, |_| {
                Access::HealthAndMetrics
            })
        });
    }
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(f)
    {
        log::error!("{name}: cannot start a thread: {e}");
    }
}

/// Binds a unix socket that only its owner can use, replacing a stale socket file.
fn bind_private(path: &Path) -> Result<UnixListener, AdminError> {
    let what = || path.display().to_string();
    if path.exists() {
        // A socket file nobody answers on is left from an earlier run; a live one is not ours.
        if UnixStream::connect(path).is_ok() {
            return Err(AdminError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(|source| AdminError::Bind {
            what: what(),
            source,
        })?;
    }
    if let Some(dir) = path.parent() {
        crate::runtime_dir::create_missing(dir).map_err(|e| AdminError::Bind {
            what: what(),
            source: io::Error::other(e.to_string()),
        })?;
    }
    // The umask makes the socket 0600 from the moment it exists (no window in which another
    // user could connect); fc-init starts no other thread before this point that creates files.
    // SAFETY: umask(2) only changes the process's file mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|source| AdminError::Bind {
        what: what(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        AdminError::Bind {
            what: what(),
            source,
        }
    })?;
    Ok(listener)
}

/// Serves every connection of `incoming` on its own thread; `access` decides what each may ask.
fn accept<S>(
    incoming: impl Iterator<Item = io::Result<S>>,
    what: &str,
    ctx: Arc<Context>,
    access: fn(&S) -> Access,
) where
    S: io::Read + Write + Timeouts + Send + 'static,
{
    for conn in incoming {
        match conn {
            Ok(conn) => {
                let ctx = ctx.clone();
                spawn("fc-init-admin-conn", move || {
                    let access = access(&conn);
                    serve(conn, &ctx, access);
                });
            }
            // EMFILE and friends: transient; the next accept may succeed.
            Err(e) => log::warn!("{what}: accept: {e}"),
        }
    }
}

fn unix_access(conn: &UnixStream) -> Access {
    match refused_peer(conn) {
        Some(uid) => {
            log::warn!("admin socket: refused a connection from uid {uid}");
            Access::Refused
        }
        None => Access::Full,
    }
}

/// The peer's uid when it is neither fc-init's own nor root (SO_PEERCRED, unix(7)).
fn refused_peer(conn: &UnixStream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(conn, PeerCredentials) {
        Ok(cred) => {
            let uid = cred.uid();
            (uid != 0 && uid != nix::unistd::geteuid().as_raw()).then_some(uid)
        }
        // Without credentials the peer cannot be trusted.
        Err(_) => Some(u32::MAX),
    }
}

/// What a connection may ask for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// The private socket, from fc-init's uid or root.
    Full,
    /// The TCP listener.
    HealthAndMetrics,
    /// The private socket, from any other uid: every request is answered 403.
    Refused,
}

/// Reads one request and answers it. The request is read even when refused, so the answer is
/// not lost to a reset of a connection with unread data.
fn serve<S: io::Read + Write + Timeouts>(conn: S, ctx: &Context, access: Access) {
    let mut buf = Buffered::with_capacity(conn, 8 * 1024);
    buf.set_deadline(Some(Instant::now() + CONNECTION_DEADLINE));
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        require_host: false,
        ..Limits::default()
    };
    let read = http::read_request_head(&mut buf, &limits).and_then(|head| {
        let mut body = Vec::new();
        http::copy_body(
            &mut buf,
            &mut body,
            head.framing,
            http::Output::Raw,
            MAX_BODY,
        )?;
        Ok((head, body))
    });
    let (head, body) = match read {
        Ok(request) => request,
        Err(http::HttpError::ConnectionClosed) => return,
        Err(e) => {
            let body = error_body("InvalidArgument", &e.to_string());
            let _ = respond(
                &mut buf,
                e.status().unwrap_or(400),
                "application/json",
                body.as_bytes(),
            );
            return;
        }
    };
    if access == Access::Refused {
        let body = error_body(
            "Forbidden",
            "only fc-init's user or root may use the admin API",
        );
        let _ = respond(&mut buf, 403, "application/json", body.as_bytes());
        return;
    }
    let full = access == Access::Full;
    let (status, content_type, text) = route(
        ctx,
        head.method(),
        head.path(),
        head.query().unwrap_or(""),
        &body,
        full,
    );
    let _ = respond(&mut buf, status, content_type, text.as_bytes());
}

fn route(
    ctx: &Context,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    full: bool,
) -> (u16, &'static str, String) {
    const JSON: &str = "application/json";
    match (method, path) {
        ("GET", "/health") => {
            let phase = ctx.shared.phase();
            let status = if phase == Phase::Ready { 200 } else { 503 };
            (
                status,
                JSON,
                format!(r#"{{"status":"{}"}}"#, phase.as_str()),
            )
        }
        ("GET", "/metrics") => {
            let status = ctx.shared.snapshot();
            let snap = Snapshot {
                status: &status,
                in_flight: ctx.shared.in_flight(),
                async_events: ctx.async_events.as_ref().map(|a| a.counts()),
            };
            (200, "text/plain; version=0.0.4", ctx.metrics.render(&snap))
        }
        _ if !full => (
            404,
            JSON,
            error_body(
                "NotFound",
                "only GET /health and GET /metrics are served here",
            ),
        ),
        ("GET", "/status") => (200, JSON, status_json(ctx)),
        (_, p) if p == "/async-events" || p.starts_with("/async-events/") => {
            let Some(events) = &ctx.async_events else {
                return (
                    404,
                    JSON,
                    error_body(
                        "NotFound",
                        "asynchronous invocations are disabled (async.enabled = false)",
                    ),
                );
            };
            let rest = p
                .trim_start_matches("/async-events")
                .trim_start_matches('/');
            let answer = match (method, rest.split_once('/')) {
                ("GET", None) if rest.is_empty() => events.list(query),
                ("GET", None) => events.get(rest),
                ("POST", Some((id, "terminate"))) if !id.is_empty() => events.terminate(id, body),
                _ => {
                    return (
                        405,
                        JSON,
                        error_body("MethodNotAllowed", &format!("{method} {path}")),
                    )
                }
            };
            (answer.status, JSON, answer.body)
        }
        _ => (
            404,
            JSON,
            error_body("NotFound", &format!("no such endpoint: {method} {path}")),
        ),
    }
}

fn status_json(ctx: &Context) -> String {
    let s = ctx.shared.snapshot();
    let pid = s.function_pid.map_or("null".to_owned(), |p| p.to_string());
    format!(
        r#"{{"state":"{}","functionPid":{pid},"restarts":{},"initializerAttempts":{},"inFlight":{},"queued":{},"version":"{}","uptimeSeconds":{}}}"#,
        s.phase.as_str(),
        s.restarts,
        s.initializer_attempts,
        ctx.shared.in_flight(),
        ctx.metrics.queued(),
        env!("CARGO_PKG_VERSION"),
        ctx.shared.started.elapsed().as_secs(),
    )
}

/// `{"errorType":..,"errorMessage":..}` with the message JSON-escaped.
pub fn error_body(kind: &str, message: &str) -> String {
    format!(
        r#"{{"errorType":"{kind}","errorMessage":{}}}"#,
        crate::logging::json_string(message)
    )
}

fn respond(w: &mut impl Write, status: u16, content_type: &str, body: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 160);
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        http::reason_phrase(status),
        body.len()
    )?;
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}
