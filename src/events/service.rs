//! Asynchronous invocations at run time: accepting submissions into the store, the workers that
//! run stored events, terminate, retention, and the admin API's view of it all.
//!
//! Workers run each event through the same path as a synchronous request: they send it to
//! fc-init's own listener on loopback, so concurrency limits, the wait for initialization,
//! timeouts, FC Invoke lines and metrics apply to events exactly as to any request. A worker
//! only claims an event while the instance is ready, so attempts are not spent on an instance
//! that is still starting.
//!
//! Failure modes: a store error while claiming or finishing is logged and the event stays as
//! the store has it (RUNNING events run again at the next start: at least once). An attempt cut
//! short by the shutdown is left RUNNING for the same reason. An attempt cut short by an
//! operator's terminate of *another* event is retried without counting against `max_retries`.

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::model::list_to_json;
use super::store::{
    AbortResult, Claimed, ListQuery, NewEvent, Order, Outcome, Status, Store, StoreError,
    StoreOptions, StoredRequest, Submitted,
};
use super::time::{now_ms, parse_time_ms};
use crate::admin::{error_body, Answer, AsyncEvents};
use crate::config::Config;
use crate::http::{self, Buffered, Limits};
use crate::state::{self, Notice, Phase, Shared, Watcher};
use crate::supervisor::{Event, Events};

/// Idle workers wait on the store; at shutdown they must look at the phase again.
impl Watcher for AsyncService {
    fn notice(&self, notice: Notice, _: &state::Status) {
        if notice == Notice::Stopping {
            self.store.notify_workers();
        }
    }
}

/// First delay before an event's failed attempt is retried; doubles up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Most of a failed answer's body kept as the event's `errorMessage`.
const MAX_ERROR_MESSAGE: usize = 512;
const WORKER_STACK: usize = 256 * 1024;
/// Nice value of the worker threads (setpriority(2)): background work yields to requests.
const WORKER_NICE: libc::c_int = 10;

/// A worker's connection to fc-init's own listener.
type Listener = Buffered<TcpStream>;

/// The asynchronous side of one fc-init.
pub struct AsyncService {
    cfg: Arc<Config>,
    /// In an `Arc` for the store's committer thread ([`Store::submit_async`]).
    store: Arc<Store>,
    shared: Arc<Shared>,
    events: Events,
    /// fc-init's own listener, as reachable on loopback (known once it is bound).
    target: OnceLock<SocketAddr>,
    /// Bumped when an operator kills the instance: attempts that fail across a bump are
    /// retried without counting.
    kills: AtomicU64,
    /// Events being terminated gracefully: they end ABORTED when their attempt ends.
    graceful: Mutex<HashSet<String>>,
}

impl AsyncService {
    /// Opens (or creates) the store of `async.store`; RUNNING events left by an earlier run are
    /// queued again.
    pub fn open(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        events: Events,
    ) -> Result<Arc<Self>, StoreError> {
        let opts = StoreOptions {
            max_queued: cfg.async_.max_queued,
            retention: cfg.async_.retention,
        };
        let store = Store::open(&cfg.async_.store, opts)?;
        let recovered = store.recovered_at_open();
        if recovered > 0 {
            log::warn!("{recovered} asynchronous event(s) were running when fc-init stopped; they run again");
        }
        Ok(Arc::new(AsyncService {
            cfg,
            store: Arc::new(store),
            shared,
            events,
            target: OnceLock::new(),
            kills: AtomicU64::new(0),
            graceful: Mutex::new(HashSet::new()),
        }))
    }

    /// Starts the workers and the retention janitor; `listen` is the traffic listener's bound
    /// address, which the workers send events to.
    pub fn start(self: &Arc<Self>, listen: SocketAddr) {
        let target = match listen.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => {
                SocketAddr::from(([127, 0, 0, 1], listen.port()))
            }
            ip if ip.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
            }
            _ => listen,
        };
        let _ = self.target.set(target);
        for n in 0..self.cfg.async_.max_concurrency {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fc-init-async-{n}"))
                .stack_size(WORKER_STACK)
                .spawn(move || me.worker());
            if let Err(e) = spawned {
                log::error!("starting an async worker: {e}");
            }
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("fc-init-retention".into())
            .stack_size(WORKER_STACK)
            .spawn(move || me.janitor());
        if let Err(e) = spawned {
            log::error!("starting the retention thread: {e}");
        }
        self.shared.watch(self.clone());
    }

    /// Stores a submission durably; the caller answers 202 only on `Ok`.
    pub fn submit(
        &self,
        request_id: &str,
        request: StoredRequest,
    ) -> Result<Submitted, StoreError> {
        let submitted = self.store.submit(NewEvent {
            request_id: request_id.to_owned(),
            submit_time: now_ms(),
            request,
        })?;
        if matches!(submitted, Submitted::Created) {
            log::debug!("stored asynchronous event {request_id}");
        }
        Ok(submitted)
    }

    /// Queues a submission and returns at once; `completion` gets the result once the event is
    /// committed durably, or the error that prevented it (see [`Store::submit_async`]: it runs
    /// on the store's committer thread and must not block).
    pub fn submit_async(
        &self,
        request_id: &str,
        request: StoredRequest,
        completion: super::store::Completion,
    ) {
        self.store.submit_async(
            NewEvent {
                request_id: request_id.to_owned(),
                submit_time: now_ms(),
                request,
            },
            completion,
        );
    }

    fn worker(&self) {
        // Events are background work: under CPU contention, requests and submissions that a
        // client is waiting for go first (setpriority(2) on this thread only).
        // SAFETY: gettid and setpriority take plain integers.
        unsafe {
            let tid = libc::gettid();
            if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WORKER_NICE) != 0 {
                log::debug!(
                    "lowering an async worker's priority: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        // One keep-alive connection to the listener per worker, reused from event to event.
        let mut conn: Option<Listener> = None;
        loop {
            // Attempts are spent only on a ready instance.
            let status = self.shared.wait_until(far_future(), |s| {
                matches!(s.phase, Phase::Ready | Phase::Stopping)
            });
            if status.phase == Phase::Stopping {
                return;
            }
            let seen = self.store.work_seq();
            match self.store.claim_next(now_ms()) {
                Ok(Some(claimed)) => self.run(claimed, &mut conn),
                Ok(None) => {
                    let wait = match self.store.next_due() {
                        Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms())),
                        _ => Duration::from_secs(3600),
                    };
                    self.store
                        .wait_for_work(seen, wait.max(Duration::from_millis(1)));
                }
                Err(e) => {
                    log::error!("claiming an asynchronous event: {e}");
                    // A broken store: wait for a change or a second, not spin.
                    self.store.wait_for_work(seen, Duration::from_secs(1));
                }
            }
        }
    }

    fn run(&self, claimed: Claimed, conn: &mut Option<Listener>) {
        let id = claimed.event.request_id.clone();
        let kills = self.kills.load(Ordering::Acquire);
        let result = self.send(&id, &claimed.request, conn);
        let now = now_ms();
        let graceful = self
            .graceful
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if graceful {
            let message = match &result {
                Attempt::Succeeded { .. } => "terminated by an operator",
                _ => "User process exit when running",
            };
            self.log_store_error(
                &id,
                self.store.mark_aborted(&id, Some(message), now).map(drop),
            );
            return;
        }
        if self.shared.phase() == Phase::Stopping && !matches!(result, Attempt::Succeeded { .. }) {
            // Cut short by the shutdown: left RUNNING, it runs again at the next start.
            return;
        }
        let (code, error_type, message) = match result {
            Attempt::Succeeded { status } => {
                let outcome = Outcome {
                    status: Status::Finished,
                    status_code: Some(status),
                    error_type: None,
                    error_message: None,
                    end: now,
                };
                self.log_store_error(&id, self.store.finish(&id, &outcome).map(drop));
                return;
            }
            Attempt::Failed {
                status,
                error_type,
                message,
            } => (status, error_type, message),
        };
        let attempts = claimed.event.attempts;
        let killed_under_it = self.kills.load(Ordering::Acquire) != kills;
        if killed_under_it || attempts <= self.cfg.async_.max_retries {
            let delay = if killed_under_it {
                Duration::ZERO
            } else {
                backoff(attempts)
            };
            log::info!(
                "asynchronous event {id} failed ({error_type}: {message}); retrying in {}",
                humantime::format_duration(delay)
            );
            let at = now + delay.as_millis() as u64;
            self.log_store_error(
                &id,
                self.store
                    .retry_later(&id, at, code, Some(&error_type), Some(&message))
                    .map(drop),
            );
        } else {
            log::warn!("asynchronous event {id} failed after {attempts} attempt(s): {error_type}: {message}");
            let outcome = Outcome {
                status: Status::Failed,
                status_code: code,
                error_type: Some(error_type),
                error_message: Some(message),
                end: now,
            };
            self.log_store_error(&id, self.store.finish(&id, &outcome).map(drop));
        }
    }

    fn log_store_error(&self, id: &str, result: Result<(), StoreError>) {
        if let Err(e) = result {
            log::error!("recording asynchronous event {id}: {e}");
        }
    }

    /// One attempt: the stored request sent through fc-init's own listener, on the worker's
    /// kept connection when it has one.
    fn send(&self, id: &str, req: &StoredRequest, kept: &mut Option<Listener>) -> Attempt {
        // The listener waits up to function.timeout for initialization and again for the
        // answer; the margin covers the queue.
        let deadline = Instant::now() + self.cfg.function.timeout * 2 + Duration::from_secs(10);
        let failed = |message: String| Attempt::Failed {
            status: None,
            error_type: "UnhandledInvocationError".into(),
            message,
        };
        let mut head = Vec::with_capacity(512 + req.headers.len() * 64);
        let _ = write!(head, "{} {} HTTP/1.1\r\n", req.method, req.target);
        for (name, value) in &req.headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        let _ = write!(
            head,
            "x-fc-request-id: {id}\r\nContent-Length: {}\r\n\r\n",
            req.body.len()
        );
        let limits = Limits {
            require_host: false,
            ..Limits::default()
        };
        let (mut conn, response) = loop {
            let reused = kept.is_some();
            let mut conn = match kept.take() {
                Some(c) => c,
                None => match self.connect() {
                    Ok(c) => c,
                    Err(message) => return failed(message),
                },
            };
            conn.set_deadline(Some(deadline));
            let sent = conn
                .write_all(&head)
                .and_then(|()| conn.write_all(&req.body));
            let answer = sent
                .map_err(|e| {
                    (
                        e.kind() == std::io::ErrorKind::BrokenPipe
                            || e.kind() == std::io::ErrorKind::ConnectionReset,
                        e.to_string(),
                    )
                })
                .and_then(|()| {
                    http::read_response_head(&mut conn, &limits, req.method == "HEAD").map_err(
                        |e| {
                            (
                                matches!(e, http::HttpError::ConnectionClosed),
                                e.to_string(),
                            )
                        },
                    )
                });
            match answer {
                Ok(response) => break (conn, response),
                // A kept connection the listener closed while idle: nothing was read from it,
                // so the event goes again on a new one.
                Err((true, _)) if reused => continue,
                Err((_, e)) => {
                    return failed(format!("sending the event through the listener: {e}"))
                }
            }
        };
        let mut body = Vec::new();
        // Only the start of a failed answer is kept; the rest is read and dropped, so the
        // connection is ready for the next event.
        let copied = http::copy_body(
            &mut conn,
            &mut LimitedSink(&mut body),
            response.framing,
            http::Output::Raw,
            u64::MAX,
        );
        if copied.is_ok() && response.keep_alive {
            *kept = Some(conn);
        }
        let header = |name: &str| {
            response
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let own_error = header("x-fc-error-type");
        let fc_404 = header("x-fc-status").is_some_and(|v| v.trim() == "404");
        let event_invocation =
            req.method == "POST" && req.target.split('?').next() == Some("/invoke");
        let status = response.status;
        let failed = own_error.is_some()
            || (event_invocation && (!(200..300).contains(&status) || fc_404))
            || (!event_invocation && status >= 500);
        if !failed {
            return Attempt::Succeeded { status };
        }
        let mut message = String::from_utf8_lossy(&body).into_owned();
        if message.is_empty() {
            message = format!("status {status}");
        }
        Attempt::Failed {
            status: Some(status),
            error_type: own_error.unwrap_or_else(|| "FunctionError".into()),
            message,
        }
    }

    /// A new connection to fc-init's own listener.
    fn connect(&self) -> Result<Listener, String> {
        let Some(target) = self.target.get() else {
            return Err("the listener is not bound".into());
        };
        let stream = TcpStream::connect_timeout(target, Duration::from_secs(5))
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Buffered::with_capacity(stream, 16 * 1024))
    }

    fn janitor(&self) {
        let every = (self.cfg.async_.retention / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        loop {
            match self.store.purge_expired(now_ms()) {
                Ok(0) => {}
                Ok(n) => log::info!("forgot {n} asynchronous event(s) past their retention"),
                Err(e) => log::error!("purging expired asynchronous events: {e}"),
            }
            // A periodic chore with no event to wait for: the pause is its schedule.
            std::thread::sleep(every);
        }
    }

    fn terminate_running(&self, id: &str, grace: bool) -> Answer {
        // Other attempts cut short by the kill run again without counting.
        self.kills.fetch_add(1, Ordering::AcqRel);
        if grace {
            self.graceful
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_owned());
            let seen = self.store.ended_seq();
            self.events.send(Event::KillFunction { graceful: true });
            let deadline = Instant::now()
                + self.cfg.function.timeout
                + self.cfg.shutdown.grace_period
                + Duration::from_secs(10);
            let mut seen = seen;
            loop {
                match self.store.get(id) {
                    Ok(Some(e)) if e.status.is_ended() => {
                        return Answer {
                            status: 200,
                            body: e.to_json(),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return store_failure(&e),
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Answer {
                        status: 504,
                        body: error_body("Timeout", "the event did not end in time"),
                    };
                }
                let now_seen = self.store.ended_seq();
                if now_seen == seen {
                    self.store.wait_for_ended(seen, left);
                }
                seen = self.store.ended_seq();
            }
        }
        let answer = match self
            .store
            .mark_aborted(id, Some("terminated by an operator"), now_ms())
        {
            Ok(AbortResult::Aborted(e)) => Answer {
                status: 200,
                body: e.to_json(),
            },
            Ok(other) => return abort_answer(other),
            Err(e) => return store_failure(&e),
        };
        self.events.send(Event::KillFunction { graceful: false });
        answer
    }
}

enum Attempt {
    Succeeded {
        status: u16,
    },
    Failed {
        status: Option<u16>,
        error_type: String,
        message: String,
    },
}

fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (RETRY_BACKOFF * 2u32.pow(doublings)).min(RETRY_BACKOFF_MAX)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// Keeps the first [`MAX_ERROR_MESSAGE`] bytes written and discards the rest.
struct LimitedSink<'a>(&'a mut Vec<u8>);

impl Write for LimitedSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = MAX_ERROR_MESSAGE.saturating_sub(self.0.len());
        self.0.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn store_failure(e: &StoreError) -> Answer {
    Answer {
        status: 500,
        body: error_body("InternalError", &format!("event store: {e}")),
    }
}

fn not_found(id: &str) -> Answer {
    Answer {
        status: 404,
        body: error_body("EventNotFound", &format!("no event with request id {id:?}")),
    }
}

fn abort_answer(result: AbortResult) -> Answer {
    match result {
        AbortResult::NotFound => Answer {
            status: 404,
            body: error_body("EventNotFound", "no such event"),
        },
        AbortResult::AlreadyEnded(e) => Answer {
            status: 409,
            body: error_body(
                "EventAlreadyEnded",
                &format!("the event already ended as {}", e.status.as_str()),
            ),
        },
        AbortResult::Aborted(e) | AbortResult::Running(e) => Answer {
            status: 200,
            body: e.to_json(),
        },
    }
}

impl AsyncEvents for AsyncService {
    fn list(&self, query: &str) -> Answer {
        let q = match parse_list_query(query) {
            Ok(q) => q,
            Err(msg) => {
                return Answer {
                    status: 400,
                    body: error_body("InvalidArgument", &msg),
                }
            }
        };
        match self.store.list(&q) {
            Ok((total, events)) => Answer {
                status: 200,
                body: list_to_json(total, &events),
            },
            Err(e) => store_failure(&e),
        }
    }

    fn get(&self, id: &str) -> Answer {
        match self.store.get(id) {
            Ok(Some(e)) => Answer {
                status: 200,
                body: e.to_json(),
            },
            Ok(None) => not_found(id),
            Err(e) => store_failure(&e),
        }
    }

    fn terminate(&self, id: &str, body: &[u8]) -> Answer {
        let grace = match parse_grace(body) {
            Ok(g) => g,
            Err(msg) => {
                return Answer {
                    status: 400,
                    body: error_body("InvalidArgument", &msg),
                }
            }
        };
        match self.store.abort_queued(id, now_ms()) {
            Ok(AbortResult::Running(_)) => self.terminate_running(id, grace),
            Ok(AbortResult::NotFound) => not_found(id),
            Ok(other) => abort_answer(other),
            Err(e) => store_failure(&e),
        }
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        match self.store.counts_by_status() {
            Ok(counts) => counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
            Err(e) => {
                log::error!("counting asynchronous events: {e}");
                Vec::new()
            }
        }
    }
}

/// The body of `POST /async-events/{id}/terminate`: `{"graceShutdown": bool}`. Other fields
/// are accepted and ignored (a client may say more than fc-init needs, e.g. a reason).
#[derive(serde::Deserialize)]
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

/// `status=A,B&requestId=&since=&until=&order=asc|desc&offset=0&limit=20`.
fn parse_list_query(query: &str) -> Result<ListQuery, String> {
    let mut q = ListQuery::default();
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
            "since" => {
                q.since = Some(
                    parse_time_ms(&value).ok_or_else(|| format!("since: not a time: {value:?}"))?,
                )
            }
            "until" => {
                q.until = Some(
                    parse_time_ms(&value).ok_or_else(|| format!("until: not a time: {value:?}"))?,
                )
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn retry_backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(30), RETRY_BACKOFF_MAX);
    }
}
