//! The admin API (docs/reference.md §10): health, status, metrics and the asynchronous events, as
//! HTTP/1.1 on a private unix socket — mode 0600 inside the 0700 runtime directory, and every
//! peer's uid checked with SO_PEERCRED (only fc-init's own uid or root) — plus an optional TCP
//! listener (`admin.listen`) that serves nothing but `GET /health` and `GET /metrics`.
//!
//! One request per connection (`Connection: close`): the callers are probes and `fc-init ctl`,
//! not traffic. Each connection runs on its own small thread, bounded by a deadline, so a stuck
//! client cannot hold the API; each listener serves at most [`MAX_CONNECTIONS`] connections at
//! once and leaves further ones in the kernel's backlog until one ends, so a flood of idle
//! connections (the TCP listener is reachable by anyone) costs a bounded number of threads and
//! never delays the private socket, whose listener has slots of its own.

pub mod ctl;

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::events::api::AsyncEvents;
use crate::events::api::{ResultAnswer, Terminated};
use crate::events::backend::BackendStatus;
use crate::events::error::StoreError;
use crate::events::model::{to_json_text, EventList, ListQuery, Order, OrderBy, Status};
use crate::events::time::parse_time_ms;
use crate::http::{self, Buffered, Limits, Timeouts};
use crate::metrics::{Metrics, Snapshot};
use crate::state::{Phase, Shared};

/// How long one admin connection may take, request and answer together.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Largest request body the admin API reads (terminate's small JSON object).
const MAX_BODY: u64 = 64 * 1024;
const THREAD_STACK: usize = 128 * 1024;
/// Connections one listener serves at once (each a thread of [`THREAD_STACK`]).
pub const MAX_CONNECTIONS: usize = 32;

/// What the API reads from.
pub struct Context {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub async_events: Option<Arc<dyn AsyncEvents>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Another fc-init answers on the socket already.
    #[error("admin socket {}: another fc-init is serving on it", .0.display())]
    InUse(PathBuf),
    #[error("admin API: binding {what}: {source}")]
    Bind { what: String, source: io::Error },
}

/// Binds the admin socket (and `admin.listen`) and serves them on background threads.
pub fn start(cfg: &Config, ctx: Arc<Context>) -> Result<(), AdminError> {
    let listener = bind_private(&cfg.admin.socket)?;
    let c = ctx.clone();
    spawn("fc-init-admin", move || {
        accept(
            listener.incoming(),
            "admin socket",
            "fc-admin-unix",
            c,
            unix_access,
        )
    });
    if let Some(addr) = cfg.admin.listen {
        let listener = TcpListener::bind(addr).map_err(|source| AdminError::Bind {
            what: addr.to_string(),
            source,
        })?;
        spawn("fc-init-admin-tcp", move || {
            accept(
                listener.incoming(),
                "admin listener",
                "fc-admin-tcp",
                ctx,
                |_| Access::HealthAndMetrics,
            )
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

/// Serves every connection of `incoming` on its own thread (named `conn_thread`, at most 15
/// bytes so that `/proc/PID/task/*/comm` shows it whole), at most [`MAX_CONNECTIONS`] at once;
/// `access` decides what each may ask.
fn accept<S>(
    incoming: impl Iterator<Item = io::Result<S>>,
    what: &str,
    conn_thread: &str,
    ctx: Arc<Context>,
    access: fn(&S) -> Access,
) where
    S: io::Read + Write + Timeouts + Send + 'static,
{
    let slots = Arc::new(Slots::new(MAX_CONNECTIONS));
    // Taking a slot before accepting leaves a connection over the limit in the backlog, where
    // it costs no thread, until a served one ends (each within CONNECTION_DEADLINE).
    let mut slot = slots.take();
    for conn in incoming {
        match conn {
            Ok(conn) => {
                let ctx = ctx.clone();
                spawn(conn_thread, move || {
                    let _slot = slot;
                    let access = access(&conn);
                    serve(conn, &ctx, access);
                });
                slot = slots.take();
            }
            // EMFILE and friends: transient; the next accept may succeed.
            Err(e) => log::warn!("{what}: accept: {e}"),
        }
    }
}

/// A counting semaphore: the connections a listener may serve at once.
struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

/// One taken slot, given back when dropped (also when the thread that holds it panics, or
/// could not be started and drops it unrun).
struct Slot(Arc<Slots>);

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            free: std::sync::Mutex::new(n),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits until a slot is free and takes it.
    fn take(self: &Arc<Self>) -> Slot {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
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
    if let (true, "GET", Some(events)) = (full, head.method(), &ctx.async_events) {
        let id = head
            .path()
            .strip_prefix("/async-events/")
            .and_then(|rest| rest.strip_suffix("/result"))
            .filter(|id| !id.is_empty() && !id.contains('/'));
        if let Some(id) = id {
            // The wait may be a minute: the answer gets a deadline of its own.
            let wait = parse_result_query(head.query().unwrap_or("")).unwrap_or_default();
            buf.set_deadline(Some(Instant::now() + wait + CONNECTION_DEADLINE));
            return serve_result(&mut buf, &**events, id, head.query().unwrap_or(""));
        }
    }
    let (status, content_type, text) = route(
        ctx,
        head.method(),
        head.path(),
        head.query().unwrap_or(""),
        &body,
        full,
    );
    // A terminate waits for its event to end, which may take longer than the deadline for
    // reading the request: the answer gets a deadline of its own.
    buf.set_deadline(Some(Instant::now() + CONNECTION_DEADLINE));
    let _ = respond(&mut buf, status, content_type, text.as_bytes());
}

/// An answer: status, content type, body.
type Reply = (u16, &'static str, String);

const JSON: &str = "application/json";

fn route(ctx: &Context, method: &str, path: &str, query: &str, body: &[u8], full: bool) -> Reply {
    match (method, path) {
        ("GET", "/health") => {
            let phase = ctx.shared.phase();
            let status = if phase == Phase::Ready { 200 } else { 503 };
            json(
                status,
                &Health {
                    status: phase.as_str(),
                },
            )
        }
        ("GET", "/metrics") => {
            let status = ctx.shared.snapshot();
            let snap = Snapshot {
                status: &status,
                in_flight: ctx.shared.in_flight(),
                async_events: ctx.async_events.as_ref().map(|a| a.counts()),
            };
            let mut text = ctx.metrics.render(&snap);
            if let Some(events) = &ctx.async_events {
                crate::metrics::render_deliveries(&mut text, &events.deliveries());
            }
            (200, "text/plain; version=0.0.4", text)
        }
        _ if !full => error(
            404,
            "NotFound",
            "only GET /health and GET /metrics are served here",
        ),
        ("GET", "/status") => json(200, &status(ctx)),
        (_, p) if p == "/async-events" || p.starts_with("/async-events/") => {
            let Some(events) = &ctx.async_events else {
                return error(
                    404,
                    "NotFound",
                    "asynchronous invocations are disabled (async.enabled = false)",
                );
            };
            let rest = p
                .trim_start_matches("/async-events")
                .trim_start_matches('/');
            match (method, rest.split_once('/')) {
                ("GET", None) if rest.is_empty() => list(&**events, query),
                ("GET", None) => match events.get(rest) {
                    Ok(Some(e)) => json(200, &e),
                    Ok(None) => not_found(rest),
                    Err(e) => store_failure(&e),
                },
                ("POST", Some((id, "terminate"))) if !id.is_empty() => match parse_grace(body) {
                    Ok(grace) => terminated(id, events.terminate(id, grace)),
                    Err(msg) => error(400, "InvalidArgument", &msg),
                },
                _ => error(405, "MethodNotAllowed", &format!("{method} {path}")),
            }
        }
        _ => error(
            404,
            "NotFound",
            &format!("no such endpoint: {method} {path}"),
        ),
    }
}

fn list(events: &dyn AsyncEvents, query: &str) -> Reply {
    let q = match parse_list_query(query) {
        Ok(q) => q,
        Err(msg) => return error(400, "InvalidArgument", &msg),
    };
    if q.uses_section_12() && !events.lists_every_filter() {
        let m = "this store (async.backend = \"redis\") does not filter by requestIdPrefix, \
                 functionName, qualifier, invocationType, start or end time, nor order by them yet";
        return error(400, "InvalidArgument", m);
    }
    match events.list(&q) {
        Ok((total_count, events)) => json(
            200,
            &EventList {
                total_count,
                events: &events,
            },
        ),
        Err(e) => store_failure(&e),
    }
}

fn terminated(id: &str, t: Terminated) -> Reply {
    match t {
        Terminated::Ended(e) => json(200, &e),
        Terminated::NotFound => not_found(id),
        Terminated::AlreadyEnded(e) => error(
            409,
            "EventAlreadyEnded",
            &format!("the event already ended as {}", e.status.as_str()),
        ),
        Terminated::TimedOut => error(504, "Timeout", "the event did not end in time"),
        Terminated::Failed(e) => store_failure(&e),
    }
}

fn not_found(id: &str) -> Reply {
    error(
        404,
        "EventNotFound",
        &format!("no event with request id {id:?}"),
    )
}

/// A store that cannot be read or written now is `AsyncStoreUnavailable` (503), as for a
/// submission; anything else is fc-init's own failure.
fn store_failure(e: &StoreError) -> Reply {
    let message = format!("event store: {e}");
    match e.is_unavailable() {
        true => error(503, "AsyncStoreUnavailable", &message),
        false => error(500, "InternalError", &message),
    }
}

/// `{"status":"ready"}`.
#[derive(Serialize)]
struct Health {
    status: &'static str,
}

/// `GET /status` (docs/reference.md §11 lists the keys that must be there).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusJson {
    state: &'static str,
    function_pid: Option<i32>,
    restarts: u64,
    initializer_attempts: u64,
    in_flight: usize,
    queued: usize,
    version: &'static str,
    uptime_seconds: u64,
    /// The async store: its backend and, for Redis, the fleet's queue, this instance's
    /// consumer name and the fleet's queued and running counts; null when async is disabled.
    #[serde(rename = "async")]
    async_: Option<BackendStatus>,
}

fn status(ctx: &Context) -> StatusJson {
    let s = ctx.shared.snapshot();
    StatusJson {
        state: s.phase.as_str(),
        function_pid: s.function_pid,
        restarts: s.restarts,
        initializer_attempts: s.initializer_attempts,
        in_flight: ctx.shared.in_flight(),
        queued: ctx.metrics.queued(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: ctx.shared.started.elapsed().as_secs(),
        async_: ctx.async_events.as_ref().map(|a| a.status()),
    }
}

fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Reply {
    (status, JSON, to_json_text(value))
}

fn error(status: u16, kind: &str, message: &str) -> Reply {
    (status, JSON, error_body(kind, message))
}

/// `{"errorType":..,"errorMessage":..}`, the admin API's error answers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error_type: &'a str,
    error_message: &'a str,
}

pub fn error_body(kind: &str, message: &str) -> String {
    to_json_text(&ErrorBody {
        error_type: kind,
        error_message: message,
    })
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

/// The body of `POST /async-events/{id}/terminate`: `{"graceShutdown": bool}`. Other fields
/// are accepted and ignored (a client may say more than fc-init needs, e.g. a reason).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TerminateBody {
    #[serde(default)]
    grace_shutdown: bool,
}

/// Whether a terminate body asks for a graceful shutdown; an empty body means forced.
fn parse_grace(body: &[u8]) -> Result<bool, String> {
    if body.trim_ascii().is_empty() {
        return Ok(false);
    }
    serde_json::from_slice::<TerminateBody>(body)
        .map(|b| b.grace_shutdown)
        .map_err(|e| format!("expected a JSON object like {{\"graceShutdown\":true}}: {e}"))
}

/// `status=A,B&requestId=&requestIdPrefix=&functionName=&qualifier=&invocationType=&since=&until=
/// &startedSince=&startedUntil=&endedSince=&endedUntil=&orderBy=submitTime|startTime|endTime
/// &order=asc|desc&offset=0&limit=20` (docs/reference.md §10).
pub fn parse_list_query(query: &str) -> Result<ListQuery, String> {
    let mut q = ListQuery::default();
    let time = |key: &str, value: &str| {
        parse_time_ms(value).ok_or_else(|| format!("{key}: not a time: {value:?}"))
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if value.is_empty() {
            continue;
        }
        let value = value.into_owned();
        match &*key {
            "status" => {
                for s in value.split(',').filter(|s| !s.is_empty()) {
                    q.statuses.push(
                        Status::parse(s).ok_or_else(|| format!("status: unknown status {s:?}"))?,
                    );
                }
            }
            "requestId" => q.request_id = Some(value),
            "requestIdPrefix" => {
                // Ids are [A-Za-z0-9._:-]; a prefix of anything else matches nothing and
                // is most likely a mistake.
                if value.len() > 128 || !crate::http::valid_request_id(value.as_bytes()) {
                    return Err(format!(
                        "requestIdPrefix: not the start of a request id: {value:?}"
                    ));
                }
                q.request_id_prefix = Some(value)
            }
            "functionName" => q.function_name = Some(value),
            "qualifier" => q.qualifier = Some(value),
            "invocationType" => {
                if !["Async", "Sync"]
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&value))
                {
                    return Err(format!("invocationType: Async or Sync, not {value:?}"));
                }
                q.invocation_type = Some(value)
            }
            "since" => q.since = Some(time("since", &value)?),
            "until" => q.until = Some(time("until", &value)?),
            "startedSince" => q.started_since = Some(time("startedSince", &value)?),
            "startedUntil" => q.started_until = Some(time("startedUntil", &value)?),
            "endedSince" => q.ended_since = Some(time("endedSince", &value)?),
            "endedUntil" => q.ended_until = Some(time("endedUntil", &value)?),
            "orderBy" => {
                q.order_by = OrderBy::parse(&value).ok_or_else(|| {
                    format!("orderBy: submitTime, startTime or endTime, not {value:?}")
                })?
            }
            "order" => {
                q.order = match value.to_ascii_lowercase().as_str() {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => return Err(format!("order: asc or desc, not {value:?}")),
                }
            }
            "offset" => {
                q.offset = value
                    .parse()
                    .map_err(|_| format!("offset: not a number: {value:?}"))?
            }
            "limit" => {
                let limit: u32 = value
                    .parse()
                    .map_err(|_| format!("limit: not a number: {value:?}"))?;
                if limit > 100 {
                    return Err(format!("limit: at most 100, not {limit}"));
                }
                q.limit = limit;
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(q)
}

/// The longest `wait` of `GET /async-events/{id}/result`.
const MAX_RESULT_WAIT: Duration = Duration::from_secs(60);

/// `wait=DURATION` of `GET /async-events/{id}/result` (≤ 60s; a bare number is seconds).
fn parse_result_query(query: &str) -> Result<Duration, String> {
    let mut wait = Duration::ZERO;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "wait" => {
                let v = value.trim();
                wait = match v.parse::<u64>() {
                    Ok(secs) => Duration::from_secs(secs),
                    Err(_) => humantime::parse_duration(v)
                        .map_err(|_| format!("wait: not a duration such as \"30s\": {v:?}"))?,
                };
                if wait > MAX_RESULT_WAIT {
                    return Err(format!("wait: at most 60s, not {v:?}"));
                }
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(wait)
}

/// `GET /async-events/{id}/result[?wait=]`, written to `w` (docs/reference.md §10): the stored
/// answer as the function gave it, plus `x-fc-request-id` and `x-fc-async-status`.
fn serve_result(w: &mut impl Write, events: &dyn AsyncEvents, id: &str, query: &str) {
    let wait = match parse_result_query(query) {
        Ok(wait) => wait,
        Err(msg) => return send(w, error(400, "InvalidArgument", &msg)),
    };
    let answer = match events.result(id, wait) {
        Ok(answer) => answer,
        Err(e) => return send(w, store_failure(&e)),
    };
    let (event, answer) = match answer {
        ResultAnswer::NotFound => return send(w, not_found(id)),
        ResultAnswer::NotEnded(e) => return send(w, json(202, &e)),
        ResultAnswer::NoAnswer(e) => {
            let message = format!("event {id} ended {} without a stored answer", e.status);
            return send(w, error(404, "ResultNotFound", &message));
        }
        ResultAnswer::Answer(e, a) => (e, a),
    };
    let mut out = Vec::with_capacity(answer.body.len() + 512);
    // fc-init's own fields are set below; framing follows the stored body.
    let own = ["x-fc-request-id", "x-fc-async-status", "connection"];
    http::write::push_answer_start(&mut out, answer.status, &answer.headers, &own);
    let _ = write!(
        out,
        "x-fc-request-id: {}\r\nx-fc-async-status: {}\r\n",
        event.request_id, event.status
    );
    if answer.truncated {
        out.extend_from_slice(b"x-fc-result-truncated: true\r\n");
    }
    let _ = write!(
        out,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.body.len()
    );
    out.extend_from_slice(&answer.body);
    let _ = w.write_all(&out).and_then(|()| w.flush());
}

fn send(w: &mut impl Write, (status, content_type, text): Reply) {
    let _ = respond(w, status, content_type, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_bound_what_is_served_at_once() {
        let slots = Arc::new(Slots::new(2));
        let a = slots.take();
        let b = slots.take();
        assert_eq!(*slots.free.lock().unwrap(), 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let c = slots.take();
                tx.send(()).unwrap();
                c
            })
        };
        // The third waits while both are held…
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(a);
        // …and gets the slot the first gives back.
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let c = waiter.join().unwrap();
        drop((b, c));
        assert_eq!(*slots.free.lock().unwrap(), 2);
    }

    #[test]
    fn list_queries() {
        let q =
            parse_list_query("status=QUEUED,running&order=asc&offset=5&limit=100&requestId=a%2Db")
                .unwrap();
        assert_eq!(q.statuses, [Status::Queued, Status::Running]);
        assert_eq!((q.order, q.offset, q.limit), (Order::Asc, 5, 100));
        assert_eq!(q.request_id.as_deref(), Some("a-b"));
        assert!(parse_list_query("limit=101").is_err());
        assert!(parse_list_query("status=DONE").is_err());
        assert!(parse_list_query("bogus=1").is_err());
        assert_eq!(parse_list_query("").unwrap(), ListQuery::default());
    }

    #[test]
    fn grace_bodies() {
        assert_eq!(parse_grace(b""), Ok(false));
        assert_eq!(parse_grace(br#"{"graceShutdown": true}"#), Ok(true));
        assert_eq!(parse_grace(br#" { "graceShutdown":false } "#), Ok(false));
        // Unknown fields are accepted (and ignored): they used to be refused.
        assert_eq!(parse_grace(br#"{"grace":true}"#), Ok(false));
        assert_eq!(
            parse_grace(br#"{"graceShutdown":true,"reason":"x"}"#),
            Ok(true)
        );
        assert!(parse_grace(br#"{"graceShutdown":"yes"}"#).is_err());
        assert!(parse_grace(b"true").is_err());
    }
}
