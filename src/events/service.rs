//! Asynchronous invocations at run time: accepting submissions into the store (whichever
//! backend `async.backend` names), the workers that run stored events, terminate, retention,
//! and the typed answers the admin API turns into HTTP.
//!
//! Workers run each event through the same path as a synchronous request ([`super::attempt`]).
//! A worker only claims an event while the instance is ready, so attempts are not spent on an
//! instance that is still starting.
//!
//! Rules this module keeps:
//! - **Only an event's own failure uses a retry.** An attempt cut short by an operator's
//!   forced terminate of *another* event (the function was killed under it) runs again at
//!   once without using one of its `max_retries`; `attempts` still counts every start
//!   (docs/reference.md §10).
//! - **Records are retried until written.** The end of an attempt (finish, retry, abort) is
//!   written again with backoff while the store fails (a full disk, Redis unreachable); the
//!   worker holds the event meanwhile. At shutdown an unwritten record is given up: the event
//!   is RUNNING in the store, and runs again (at least once).
//! - **Nothing is RUNNING that no worker holds.** The workers' held events are known here;
//!   after a store write failed, once writing works again, and at start, the store is
//!   reconciled with them ([`Backend::reconcile`]). A terminate of an event the store says
//!   this instance runs, but no worker holds, aborts it in the store and leaves the function
//!   alone: killing a healthy function that runs nothing helps no one.
//!
//! Failure modes: store errors while claiming are logged at most once a second and the
//! worker waits a second before it looks again.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::api::{AsyncEvents, ResultAnswer, Terminated};
use super::attempt::{Attempt, Listener, Sender};
use super::backend::{Backend, BackendStatus, Claimer, Control, Holder, Retry, Sqlite};
use super::destination;
use super::error::StoreError;
use super::model::{
    AbortResult, Claimed, Delivered, Delivery, Event, ListQuery, NewEvent, Outcome, Status,
    StoreOptions, StoredAnswer, StoredRequest, Submitted,
};
use super::signal::lock;
use super::store::Completion;
use super::time::now_ms;
use super::STORE_LOG;
use crate::config::{AsyncBackend, Config};
use crate::state::{self, Notice, Phase, Shared, Watcher};
use crate::supervisor::{Event as SupervisorEvent, Events};

/// First delay before an event's failed attempt is retried; doubles up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// First delay before a record that could not be written is written again; doubles up to
/// [`RECORD_BACKOFF_MAX`].
const RECORD_BACKOFF: Duration = Duration::from_millis(50);
const RECORD_BACKOFF_MAX: Duration = Duration::from_secs(2);
const WORKER_STACK: usize = 256 * 1024;
/// Nice value of the worker threads (setpriority(2)): background work yields to requests.
const WORKER_NICE: libc::c_int = 10;
/// How long an idle worker waits for work before it looks at the phase again (the stopping
/// notice wakes it sooner).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// How an event terminated gracefully ends (docs/reference.md §10): ABORTED, with the
/// function's answer as `statusCode` when it gave one, and a message that says what happened
/// to its request.
fn graceful_outcome(
    result: &Attempt,
    timeout: Duration,
    end: u64,
    answer: Option<StoredAnswer>,
) -> Outcome {
    let (status_code, message) = match result {
        Attempt::Succeeded { status } => (Some(*status), "terminated by an operator".to_owned()),
        Attempt::Failed {
            status, error_type, ..
        } => match error_type.as_str() {
            // The function answered (an error of its own): it was running, not gone.
            "FunctionError" => (*status, "terminated by an operator".to_owned()),
            "FunctionTimeout" => (
                None,
                format!(
                    "terminated by an operator; the request was cut by function.timeout ({}) \
                     while the process was still running",
                    humantime::format_duration(timeout)
                ),
            ),
            _ => (None, "User process exit when running".to_owned()),
        },
    };
    Outcome {
        status: Status::Aborted,
        status_code,
        error_type: None,
        error_message: Some(message),
        end,
        answer,
    }
}

/// Destination deliveries by result, for `fc_init_async_destination_deliveries_total`.
#[derive(Debug, Default)]
pub struct DeliveryCounts {
    pub delivered: AtomicU64,
    /// Tries that failed and will be made again.
    pub retried: AtomicU64,
    /// Deliveries given up (`destination.status = failed`).
    pub failed: AtomicU64,
}

/// The asynchronous side of one fc-init.
pub struct AsyncService {
    pub(super) cfg: Arc<Config>,
    pub(super) store: Arc<dyn Backend>,
    pub(super) shared: Arc<Shared>,
    events: Events,
    pub(super) sender: Sender,
    /// Bumped when an operator kills the instance: attempts that fail across a bump are
    /// retried without counting.
    pub(super) kills: AtomicU64,
    /// Events being terminated gracefully: they end ABORTED when their attempt ends.
    pub(super) graceful: Mutex<HashSet<String>>,
    /// Events a worker (or a handoff) of this instance is running now.
    pub(super) held: Mutex<HashSet<String>>,
    /// The handoffs' idle connections to the listener (docs/reference.md §10).
    pub(super) handoff_conns: Mutex<Vec<Listener>>,
    /// A store write failed since the last reconcile.
    write_failed: AtomicBool,
    deliveries: DeliveryCounts,
}

/// Idle workers wait on the store; at shutdown they must look at the phase again.
impl Watcher for AsyncService {
    fn notice(&self, notice: Notice, _: &state::Status) {
        if notice == Notice::Stopping {
            self.store.notify_workers();
        }
    }
}

impl AsyncService {
    /// Opens the store `async.backend` names (the SQLite file of `async.store`, or the
    /// fleet's queue on Redis); RUNNING events left by an earlier run are queued again.
    pub fn open(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        events: Events,
    ) -> Result<Arc<Self>, StoreError> {
        let opts = StoreOptions {
            max_queued: cfg.async_.max_queued,
            retention: cfg.async_.retention,
            max_event_age: cfg.async_.max_event_age,
            on_success: cfg.async_.on_success.clone(),
            on_failure: cfg.async_.on_failure.clone(),
            destination_retry_for: cfg.async_.destination_retry_for,
        };
        let store: Arc<dyn Backend> = match cfg.async_.backend {
            AsyncBackend::Sqlite => Arc::new(Sqlite::open(&cfg.async_.store, opts)?),
            AsyncBackend::Redis => super::redis::Redis::open(&cfg, opts)?.into(),
        };
        Ok(Arc::new(AsyncService {
            sender: Sender {
                target: OnceLock::new(),
                function_timeout: cfg.function.timeout,
                max_result: cfg.async_.max_result,
            },
            cfg,
            store,
            shared,
            events,
            kills: AtomicU64::new(0),
            graceful: Mutex::new(HashSet::new()),
            held: Mutex::new(HashSet::new()),
            handoff_conns: Mutex::new(Vec::new()),
            write_failed: AtomicBool::new(false),
            deliveries: DeliveryCounts::default(),
        }))
    }

    /// Starts the workers, the retention janitor and the backend's own threads; `listen` is
    /// the traffic listener's bound address, which the workers send events to.
    pub fn start(self: &Arc<Self>, listen: SocketAddr) {
        self.sender.bind(listen);
        if let Err(e) = self.store.reconcile(&[], now_ms()) {
            log::error!("reconciling the asynchronous events at start: {e}");
        }
        let control: Arc<dyn Control> = self.clone();
        self.store.start(Arc::downgrade(&control));
        for n in 0..self.cfg.async_.max_concurrency {
            let me = self.clone();
            let claimer = self.store.claimer();
            let spawned = std::thread::Builder::new()
                .name(format!("fc-init-async-{n}"))
                .stack_size(WORKER_STACK)
                .spawn(move || me.worker(claimer));
            if let Err(e) = spawned {
                log::error!("starting an async worker: {e}");
            }
        }
        let me = Arc::downgrade(self);
        let every = (self.cfg.async_.retention / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        let spawned = std::thread::Builder::new()
            .name("fc-init-retention".into())
            .stack_size(WORKER_STACK)
            .spawn(move || janitor(&me, every));
        if let Err(e) = spawned {
            log::error!("starting the retention thread: {e}");
        }
        let me = Arc::downgrade(self);
        let store = self.store.clone();
        let spawned = std::thread::Builder::new()
            .name("fc-init-outbox".into())
            .stack_size(WORKER_STACK)
            .spawn(move || outbox(&me, &*store));
        if let Err(e) = spawned {
            log::error!("starting the destination delivery thread: {e}");
        }
        self.shared.watch(self.clone());
    }

    /// Stores a submission durably; the caller answers 202 only on `Ok`.
    pub fn submit(
        &self,
        request_id: &str,
        request: StoredRequest,
    ) -> Result<Submitted, StoreError> {
        let submitted = self.store.submit(self.new_event(request_id, request))?;
        if matches!(submitted, Submitted::Created) {
            log::debug!("stored asynchronous event {request_id}");
        }
        Ok(submitted)
    }

    /// Queues a submission and returns at once; `completion` gets the result once the event is
    /// durable, or the error that prevented it (it runs on a store thread and must not block).
    pub fn submit_async(&self, request_id: &str, request: StoredRequest, completion: Completion) {
        self.store
            .submit_async(self.new_event(request_id, request), completion);
    }

    /// The backend's part of `GET /status`.
    pub fn backend_status(&self) -> BackendStatus {
        self.store.status()
    }

    fn worker(&self, mut claimer: Box<dyn Claimer>) {
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
            match claimer.claim(now_ms(), IDLE_WAIT) {
                Ok(Some(claimed)) => {
                    let id = claimed.event.request_id.clone();
                    lock(&self.held).insert(id.clone());
                    self.run(&claimed, &mut conn);
                    lock(&self.held).remove(&id);
                }
                Ok(None) => {}
                Err(e) => {
                    if STORE_LOG.ready() {
                        log::error!("claiming an asynchronous event: {e}");
                    }
                    // A broken store: look again in a second (or at the shutdown), not spin.
                    self.shared
                        .wait_until(Instant::now() + Duration::from_secs(1), |s| {
                            s.phase == Phase::Stopping
                        });
                }
            }
        }
    }

    fn run(&self, claimed: &Claimed, conn: &mut Option<Listener>) {
        let id = &claimed.event.request_id;
        let kills = self.kills.load(Ordering::Acquire);
        let (result, answer) = self.sender.send(id, &claimed.request, conn);
        self.settle(claimed, result, answer, kills);
    }

    /// Records how an attempt of `claimed` ended (`kills`: [`AsyncService::kills`] when it
    /// began): finished, retried, failed or aborted, as the rules of the module docs say.
    pub(super) fn settle(
        &self,
        claimed: &Claimed,
        result: Attempt,
        answer: Option<StoredAnswer>,
        kills: u64,
    ) {
        let id = &claimed.event.request_id;
        let now = now_ms();
        let graceful = lock(&self.graceful).remove(id);
        if graceful {
            let outcome = graceful_outcome(&result, self.cfg.function.timeout, now, answer);
            self.record(id, || self.store.finish(claimed, &outcome));
            // SCF's instance repossession: the signalled process does not serve again.
            self.events.send(SupervisorEvent::Repossess);
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
                    answer,
                };
                self.record(id, || self.store.finish(claimed, &outcome));
                return;
            }
            Attempt::Failed {
                status,
                error_type,
                message,
            } => (status, error_type, message),
        };
        let retry = |at: u64, charged: bool| Retry {
            at,
            status_code: code,
            error_type: Some(&error_type),
            error_message: Some(&message),
            charged,
        };
        if self.shared.phase() == Phase::Stopping {
            // Cut short by the shutdown: it runs again (here at the next start, or at once on
            // another instance of the fleet) without using a retry. Written once: an event
            // whose record fails stays RUNNING, and runs again all the same.
            if let Err(e) = self.store.retry(claimed, &retry(now, false)) {
                log::warn!("asynchronous event {id} cut short by the shutdown: {e}");
            }
            return;
        }
        if self.kills.load(Ordering::Acquire) != kills {
            log::info!("asynchronous event {id} was cut short by a terminate of another event; it runs again");
            self.record(id, || self.store.retry(claimed, &retry(now, false)));
            return;
        }
        let failures = claimed.failures + 1;
        if failures <= self.cfg.async_.max_retries {
            let delay = backoff(failures);
            log::info!(
                "asynchronous event {id} failed ({error_type}: {message}); retrying in {}",
                humantime::format_duration(delay)
            );
            let at = now + delay.as_millis() as u64;
            self.record(id, || self.store.retry(claimed, &retry(at, true)));
        } else {
            let attempts = claimed.event.attempts;
            log::warn!("asynchronous event {id} failed after {attempts} attempt(s): {error_type}: {message}");
            let outcome = Outcome {
                status: Status::Failed,
                status_code: code,
                error_type: Some(error_type.clone()),
                error_message: Some(message.clone()),
                end: now,
                answer,
            };
            self.record(id, || self.store.finish(claimed, &outcome));
        }
    }

    /// Writes a record of event `id` with `write`, again and again with backoff while the
    /// store fails, until it is written or fc-init stops (see the module docs). `None` when
    /// it was given up.
    pub(super) fn record<T>(
        &self,
        id: &str,
        mut write: impl FnMut() -> Result<T, StoreError>,
    ) -> Option<T> {
        let mut delay = RECORD_BACKOFF;
        loop {
            match write() {
                Ok(value) => {
                    if self.write_failed.swap(false, Ordering::AcqRel) {
                        self.reconcile();
                    }
                    return Some(value);
                }
                Err(e) => {
                    self.write_failed.store(true, Ordering::Release);
                    if STORE_LOG.ready() {
                        log::error!("recording asynchronous event {id}: {e}; trying again");
                    }
                    let status = self
                        .shared
                        .wait_until(Instant::now() + delay, |s| s.phase == Phase::Stopping);
                    if status.phase == Phase::Stopping {
                        log::warn!("asynchronous event {id}: its record was not written before the shutdown; it runs again");
                        return None;
                    }
                    delay = (delay * 2).min(RECORD_BACKOFF_MAX);
                }
            }
        }
    }

    /// Puts back to QUEUED what the store shows RUNNING here with no worker holding it.
    fn reconcile(&self) {
        let held = self.held();
        if let Err(e) = self.store.reconcile(&held, now_ms()) {
            self.write_failed.store(true, Ordering::Release);
            log::error!("reconciling the asynchronous events with the workers: {e}");
        }
    }

    /// Terminate of a RUNNING event that the store says this instance holds. Forced: the
    /// event is ABORTED and the function killed; graceful: the function gets SIGTERM and the
    /// worker ends the event when its attempt ends (`None`: wait for it).
    fn terminate_held(&self, id: &str, grace: bool) -> Option<Event> {
        let now = now_ms();
        if !lock(&self.held).contains(id) {
            log::warn!("terminate of asynchronous event {id}: the store shows it running here, but no worker holds it; it is aborted and the function left alone");
            return match self.record(id, || {
                self.store
                    .mark_aborted(id, Some("terminated by an operator"), now)
            })? {
                AbortResult::Aborted(e) | AbortResult::AlreadyEnded(e) => Some(e),
                AbortResult::Running(_) | AbortResult::NotFound => None,
            };
        }
        // Other attempts cut short by the kill run again without counting.
        self.kills.fetch_add(1, Ordering::AcqRel);
        if grace {
            lock(&self.graceful).insert(id.to_owned());
            self.events
                .send(SupervisorEvent::KillFunction { graceful: true });
            return None;
        }
        let aborted = self.record(id, || {
            self.store
                .mark_aborted(id, Some("terminated by an operator"), now)
        });
        self.events
            .send(SupervisorEvent::KillFunction { graceful: false });
        match aborted? {
            AbortResult::Aborted(e) | AbortResult::AlreadyEnded(e) => Some(e),
            AbortResult::Running(_) | AbortResult::NotFound => None,
        }
    }

    /// Waits until event `id` has ended, for a terminate's answer.
    fn wait_ended(&self, id: &str) -> Terminated {
        let deadline = Instant::now()
            + self.cfg.function.timeout
            + self.cfg.shutdown.grace_period
            + Duration::from_secs(10);
        loop {
            let seen = self.store.ended_seq();
            match self.store.get(id) {
                Ok(Some(e)) if e.status.is_ended() => return Terminated::Ended(e),
                Ok(Some(_)) => {}
                Ok(None) => return Terminated::NotFound,
                Err(e) => return Terminated::Failed(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Terminated::TimedOut;
            }
            // Woken when an event ends; a second at most, in case a wake-up from another
            // instance was lost.
            self.store
                .wait_for_ended(seen, left.min(Duration::from_secs(1)));
        }
    }
}

impl Control for AsyncService {
    fn terminate_held(&self, id: &str, grace: bool) {
        // Called by the backend for a terminate asked on another instance, which waits for
        // the event's end in the store itself.
        let _ = AsyncService::terminate_held(self, id, grace);
    }

    fn held(&self) -> Vec<String> {
        lock(&self.held).iter().cloned().collect()
    }
}

impl AsyncEvents for AsyncService {
    fn list(&self, q: &ListQuery) -> Result<(u64, Vec<Event>), StoreError> {
        self.store.list(q)
    }

    fn lists_every_filter(&self) -> bool {
        self.store.lists_every_filter()
    }

    fn result(&self, id: &str, wait: Duration) -> Result<ResultAnswer, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            let seen = self.store.ended_seq();
            let (event, answer) = match self.store.get_result(id)? {
                None => return Ok(ResultAnswer::NotFound),
                Some(found) => found,
            };
            if event.status.is_ended() {
                return Ok(match answer {
                    Some(answer) => ResultAnswer::Answer(event, answer),
                    None => ResultAnswer::NoAnswer(event),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(ResultAnswer::NotEnded(event));
            }
            // Woken when any event ends; a second at most, in case the end was recorded by
            // another instance of the fleet.
            self.store
                .wait_for_ended(seen, left.min(Duration::from_secs(1)));
        }
    }

    fn deliveries(&self) -> Vec<(&'static str, u64)> {
        let d = &self.deliveries;
        vec![
            ("delivered", d.delivered.load(Ordering::Relaxed)),
            ("retried", d.retried.load(Ordering::Relaxed)),
            ("failed", d.failed.load(Ordering::Relaxed)),
        ]
    }

    fn get(&self, id: &str) -> Result<Option<Event>, StoreError> {
        self.store.get(id)
    }

    fn terminate(&self, id: &str, grace: bool) -> Terminated {
        match self.store.terminate_queued(id, grace, now_ms()) {
            Err(e) => Terminated::Failed(e),
            Ok((AbortResult::NotFound, _)) => Terminated::NotFound,
            Ok((AbortResult::AlreadyEnded(e), _)) => Terminated::AlreadyEnded(e),
            Ok((AbortResult::Aborted(e), _)) => Terminated::Ended(e),
            Ok((AbortResult::Running(_), Holder::Me)) => match self.terminate_held(id, grace) {
                Some(e) => Terminated::Ended(e),
                None => self.wait_ended(id),
            },
            // The holder was told (or a live instance takes the event over and ends it).
            Ok((AbortResult::Running(_), Holder::Other(_) | Holder::Nobody)) => self.wait_ended(id),
        }
    }

    fn counts(&self) -> Vec<(&'static str, u64)> {
        match self.store.counts_by_status() {
            Ok(counts) => counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
            Err(e) => {
                if STORE_LOG.ready() {
                    log::error!("counting asynchronous events: {e}");
                }
                Vec::new()
            }
        }
    }

    fn status(&self) -> BackendStatus {
        self.backend_status()
    }
}

/// The retention janitor: forgets ended events past `async.retention`. It holds the service
/// only weakly, and ends with it.
fn janitor(service: &Weak<AsyncService>, every: Duration) {
    loop {
        let Some(service) = service.upgrade() else {
            return;
        };
        match service.store.purge_expired(now_ms()) {
            Ok(0) => {}
            Ok(n) => log::info!("forgot {n} asynchronous event(s) past their retention"),
            Err(e) => {
                if STORE_LOG.ready() {
                    log::error!("purging expired asynchronous events: {e}");
                }
            }
        }
        drop(service);
        // A periodic chore with no event to wait for: the pause is its schedule.
        std::thread::sleep(every);
    }
}

impl AsyncService {
    /// The event a submission stores: its function, its qualifier (the request's
    /// `x-fc-qualifier`, else `function.qualifier`) and, when it asked for a delay, when it
    /// may run (docs/reference.md §10).
    pub(super) fn new_event(&self, request_id: &str, request: StoredRequest) -> NewEvent {
        let submit_time = now_ms();
        let delay = super::submission::stored_delay(&request.headers);
        NewEvent {
            request_id: request_id.to_owned(),
            submit_time,
            function_name: self.cfg.function.name.clone(),
            qualifier: super::submission::stored_qualifier(&request.headers)
                .unwrap_or_else(|| self.cfg.function.qualifier.clone()),
            not_before: (delay > 0).then(|| submit_time + delay * 1000),
            request,
            claimed_at: None,
        }
    }

    /// One try of a due delivery, recorded in the store.
    fn deliver(&self, d: &Delivery) {
        let Some(dest) = &d.event.destination else {
            return;
        };
        let id = &d.event.request_id;
        let result = match destination::post(&dest.url, &destination::body(d)) {
            Ok(true) => Delivered::Yes,
            outcome => {
                let why = match outcome {
                    Ok(_) => "a status other than 2xx".to_owned(),
                    Err(e) => e,
                };
                let next = destination::after_failure(dest.attempts + 1, now_ms(), d.until);
                match next {
                    Delivered::GiveUp => log::warn!(
                        "asynchronous event {id}: delivery to {} given up after {} tries: {why}",
                        dest.url,
                        dest.attempts + 1
                    ),
                    _ => log::info!(
                        "asynchronous event {id}: delivery to {} failed ({why}); trying again",
                        dest.url
                    ),
                }
                next
            }
        };
        let counter = match result {
            Delivered::Yes => &self.deliveries.delivered,
            Delivered::RetryAt(_) => &self.deliveries.retried,
            Delivered::GiveUp => &self.deliveries.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // Unrecorded, a delivery stays pending and is sent again: at least once.
        if let Err(e) = self.store.record_delivery(id, result) {
            if STORE_LOG.ready() {
                log::error!("recording the delivery of asynchronous event {id}: {e}");
            }
        }
    }
}

/// The outbox thread: expires events past `async.max_event_age` while the workers are busy,
/// and tries the destination deliveries that are due, one at a time, until each is
/// delivered or given up. It holds the service only weakly, and ends with it.
fn outbox(service: &Weak<AsyncService>, store: &dyn Backend) {
    /// The longest it sleeps without a reason: a delivery recorded by another instance (Redis)
    /// or a lost wake-up is noticed within this.
    const MAX_WAIT: Duration = Duration::from_secs(5);
    loop {
        let seen = store.outbox_seq();
        let now = now_ms();
        {
            let Some(service) = service.upgrade() else {
                return;
            };
            if service.shared.phase() == Phase::Stopping {
                return;
            }
            if let Err(e) = store.expire_overdue(now) {
                if STORE_LOG.ready() {
                    log::error!("expiring asynchronous events: {e}");
                }
            }
            match store.due_deliveries(now, 16) {
                Ok(due) => {
                    for d in &due {
                        service.deliver(d);
                    }
                    if !due.is_empty() {
                        continue;
                    }
                }
                Err(e) => {
                    if STORE_LOG.ready() {
                        log::error!("reading the destination outbox: {e}");
                    }
                }
            }
        }
        // An event submitted after this look expires no sooner than `max_event_age` from
        // now: waking by then finds it, and the next wait ends at its expiry exactly.
        let mut most = MAX_WAIT;
        if let Some(service) = service.upgrade() {
            let age = service.cfg.async_.max_event_age;
            if !age.is_zero() {
                most = most.min(age);
            }
        }
        let wait = match store.next_outbox_wake() {
            Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now)).min(most),
            _ => most,
        };
        store.wait_for_outbox(seen, wait.max(Duration::from_millis(5)));
    }
}

/// The delay before the retry that follows an event's `failures`-th own failure.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (RETRY_BACKOFF * 2u32.pow(doublings)).min(RETRY_BACKOFF_MAX)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(30), RETRY_BACKOFF_MAX);
    }

    #[test]
    fn a_graceful_terminate_says_what_happened_to_the_request() {
        let failed = |status: Option<u16>, error_type: &str| Attempt::Failed {
            status,
            error_type: error_type.into(),
            message: String::new(),
        };
        let timeout = Duration::from_secs(3);
        let o = graceful_outcome(&Attempt::Succeeded { status: 200 }, timeout, 7, None);
        assert_eq!(
            (o.status, o.status_code, o.end),
            (Status::Aborted, Some(200), 7)
        );
        assert_eq!(
            o.error_message.as_deref(),
            Some("terminated by an operator")
        );
        let o = graceful_outcome(&failed(Some(500), "FunctionError"), timeout, 7, None);
        assert_eq!(o.status_code, Some(500));
        let o = graceful_outcome(&failed(Some(504), "FunctionTimeout"), timeout, 7, None);
        let message = o.error_message.unwrap();
        assert!(
            message.contains("cut by function.timeout (3s)"),
            "{message}"
        );
        assert!(!message.contains("User process exit"));
        let o = graceful_outcome(
            &failed(Some(502), "UnhandledInvocationError"),
            timeout,
            7,
            None,
        );
        assert_eq!(
            o.error_message.as_deref(),
            Some("User process exit when running")
        );
    }
}
