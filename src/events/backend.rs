//! The store interface the async service runs on, and its embedded backend: the SQLite store
//! of one instance ([`Sqlite`]). The fleet's backend on Redis is [`super::redis`].
//!
//! What a backend promises, whichever it is:
//! - a submission returns (or completes) `Ok` only once the event is durable in the store;
//! - a claimed event is held by the claiming worker until it records the attempt's end
//!   (finish, retry) — a record applies only while the attempt's lease is still the event's;
//! - [`Backend::reconcile`] puts back to QUEUED every event the store shows RUNNING on this
//!   instance that no worker of it holds, so that the store never reports RUNNING for an event
//!   nobody runs;
//! - terminate of a QUEUED event is atomic (no worker can start it afterwards), and
//!   [`Backend::terminate_queued`] says who holds a RUNNING one, so that only that instance
//!   stops its function.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;

use super::error::StoreError;
pub use super::model::Retry;
use super::model::{
    AbortResult, Claimed, Delivered, Delivery, Event, ListQuery, NewEvent, Outcome, Status,
    StoreOptions, StoredAnswer, Submitted, STATUS_COUNT,
};
use super::store::{Completion, Store};

/// What ending an event in the store gives.
pub type Aborted = Result<AbortResult, StoreError>;
/// What the store's part of a terminate gives: the result, and who holds a RUNNING event.
pub type Terminating = Result<(AbortResult, Holder), StoreError>;

/// Who runs a RUNNING event, as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// This instance (one of its workers, or a record of one that reconcile will correct).
    Me,
    /// Another live instance of the fleet; it was told to terminate the event.
    Other(String),
    /// An instance that is gone: a live one takes the event over once its lease expires,
    /// and then ends it as the terminate asked.
    Nobody,
}

/// The backend's part of `GET /status` (the `async` object).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// `sqlite` or `redis`.
    pub backend: &'static str,
    /// The SQLite file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Redis: the fleet's queue and this instance's consumer name in its group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Redis: whether the server answers now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// Redis: `standalone`, `cluster` or `sentinel` (the form of `async.redis_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<&'static str>,
    /// Redis: the node that serves the queue now (`host:port`, never a password), and
    /// whether it is a master; null until it was first seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<bool>,
    /// Redis: replicas of the queue's master that keep up (what `auto` waits for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    /// QUEUED and RUNNING events in the store (on Redis: the fleet's); null when the store
    /// cannot be read now.
    pub queued: Option<u64>,
    pub running: Option<u64>,
}

impl BackendStatus {
    /// The status of `backend` with the QUEUED and RUNNING figures of `counts` (the store's
    /// counts by status; `None` when it could not be read).
    pub fn counted(
        backend: &'static str,
        counts: Option<[(Status, u64); STATUS_COUNT]>,
    ) -> BackendStatus {
        let count =
            |status| counts.map(|c| c.iter().find(|(s, _)| *s == status).map_or(0, |c| c.1));
        BackendStatus {
            backend,
            queued: count(Status::Queued),
            running: count(Status::Running),
            ..BackendStatus::default()
        }
    }
}

/// What a backend offers the service to act on requests that reach this instance through the
/// store (Redis: a terminate asked on another instance for an event this one runs).
pub trait Control: Send + Sync {
    /// An operator terminated `id`, which a worker of this instance may be running.
    fn terminate_held(&self, id: &str, grace: bool);
    /// The ids of the events this instance's workers are running now.
    fn held(&self) -> Vec<String>;
}

/// A worker's own way to claim events (on Redis a claim blocks on its own connection).
pub trait Claimer: Send {
    /// The next due event, now RUNNING and held by this worker; waits at most `wait` for one
    /// (less when the backend must look again sooner), then `None`.
    fn claim(&mut self, now: u64, wait: Duration) -> Result<Option<Claimed>, StoreError>;
}

/// A store of asynchronous events.
pub trait Backend: Send + Sync {
    /// Stores `event` durably (blocking).
    fn submit(&self, event: NewEvent) -> Result<Submitted, StoreError>;
    /// Queues `event`; `completion` gets the result once it is durable or has failed. Must
    /// not block; `completion` runs on a store thread and must not block either.
    fn submit_async(&self, event: NewEvent, completion: Completion);
    /// The handoff (docs/reference.md §10): stores `event` (its `claimed_at` set) RUNNING and
    /// held by the caller, in one write (blocking), so that if this instance dies the event
    /// runs again like any other. `Ok(Err(existing))` when the id is stored already (nothing
    /// was stored, nothing runs).
    fn hand_off(&self, event: NewEvent) -> Result<Result<Claimed, Box<Event>>, StoreError>;
    /// A claimer for one worker.
    fn claimer(&self) -> Box<dyn Claimer>;
    /// Ends a held attempt; `None` when the attempt is no longer the event's (terminated,
    /// taken over).
    fn finish(&self, claimed: &Claimed, outcome: &Outcome) -> Result<Option<Event>, StoreError>;
    /// Puts a held attempt's event back to QUEUED; `false` when the attempt is no longer
    /// the event's.
    fn retry(&self, claimed: &Claimed, retry: &Retry<'_>) -> Result<bool, StoreError>;
    /// Wakes every waiting claimer (at shutdown, so the workers notice).
    fn notify_workers(&self);

    fn get(&self, id: &str) -> Result<Option<Event>, StoreError>;
    fn list(&self, q: &ListQuery) -> Result<(u64, Vec<Event>), StoreError>;
    /// Terminate, the store's part: a QUEUED event becomes ABORTED at `now` (atomically, so
    /// no worker starts it); a RUNNING one is returned with its [`Holder`], which has been
    /// asked to stop it when it is another instance.
    fn terminate_queued(&self, id: &str, grace: bool, now: u64) -> Terminating;
    /// Ends a RUNNING (or still QUEUED) event as ABORTED, once its attempt was stopped.
    fn mark_aborted(&self, id: &str, message: Option<&str>, now: u64) -> Aborted;
    /// Like a work sequence, for events reaching an ended status (terminate waits on it).
    fn ended_seq(&self) -> u64;
    fn wait_for_ended(&self, seen: u64, timeout: Duration) -> bool;
    fn counts_by_status(&self) -> Result<[(Status, u64); STATUS_COUNT], StoreError>;
    /// Forgets ended events past the retention; returns how many.
    fn purge_expired(&self, now: u64) -> Result<u64, StoreError>;
    /// See the module docs; `held` are the ids this instance's workers are running.
    fn reconcile(&self, held: &[String], now: u64) -> Result<u64, StoreError>;
    /// Starts the backend's own threads, if it has any; `control` is the service.
    fn start(&self, control: Weak<dyn Control>) {
        let _ = control;
    }
    fn status(&self) -> BackendStatus;

    // docs/reference.md §10. The defaults are the behaviour of a backend that does not keep
    // answers, expire events or hold an outbox yet (Redis, for now): nothing expires, no
    // answer is stored, no delivery is ever due.

    /// Ends EXPIRED the QUEUED events past `async.max_event_age` at `now`; how many.
    fn expire_overdue(&self, now: u64) -> Result<u64, StoreError> {
        let _ = now;
        Ok(0)
    }
    /// EXPIRED events since this instance started, for the logs.
    fn expired_count(&self) -> u64 {
        0
    }
    /// When the outbox thread must look again at the latest (ms): the next delivery due, the
    /// next expiry.
    fn next_outbox_wake(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Deliveries due at `now`, at most `limit`.
    fn due_deliveries(&self, now: u64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let _ = (now, limit);
        Ok(Vec::new())
    }
    /// Records a try of event `id`'s delivery.
    fn record_delivery(&self, id: &str, result: Delivered) -> Result<(), StoreError> {
        let _ = (id, result);
        Ok(())
    }
    /// Like [`Backend::ended_seq`], for the outbox.
    fn outbox_seq(&self) -> u64 {
        0
    }
    fn wait_for_outbox(&self, seen: u64, timeout: Duration) -> bool {
        let _ = seen;
        std::thread::sleep(timeout.min(Duration::from_secs(1)));
        false
    }
    /// The event and its stored answer, if it has one.
    fn get_result(&self, id: &str) -> Result<Option<(Event, Option<StoredAnswer>)>, StoreError> {
        Ok(self.get(id)?.map(|e| (e, None)))
    }
    /// Whether [`Backend::list`] honours every filter of docs/reference.md §10 (else only
    /// those of section 7).
    fn lists_every_filter(&self) -> bool {
        false
    }
}

/// The SQLite store as a [`Backend`]: one process holds every attempt, so leases and holders
/// are trivially this instance's.
pub struct Sqlite {
    /// In an `Arc` for the store's committer thread ([`Store::submit_async`]).
    store: Arc<Store>,
    path: String,
}

impl Sqlite {
    pub fn open(path: &std::path::Path, opts: StoreOptions) -> Result<Sqlite, StoreError> {
        let store = Store::open(path, opts)?;
        let recovered = store.recovered_at_open();
        if recovered > 0 {
            log::warn!("{recovered} asynchronous event(s) were running when fc-init stopped; they run again");
        }
        Ok(Sqlite {
            store: Arc::new(store),
            path: path.display().to_string(),
        })
    }
}

struct SqliteClaimer(Arc<Store>);

impl Claimer for SqliteClaimer {
    fn claim(&mut self, now: u64, wait: Duration) -> Result<Option<Claimed>, StoreError> {
        let store = &self.0;
        // Read before looking, so a submission in between is not missed (see `work_seq`).
        let seen = store.work_seq();
        if let Some(claimed) = store.claim_next(now)? {
            return Ok(Some(claimed));
        }
        let wait = match store.next_due()? {
            Some(due) => wait.min(Duration::from_millis(due.saturating_sub(now))),
            None => wait,
        };
        store.wait_for_work(seen, wait.max(Duration::from_millis(1)));
        Ok(None)
    }
}

impl Backend for Sqlite {
    fn submit(&self, event: NewEvent) -> Result<Submitted, StoreError> {
        self.store.submit(event)
    }

    fn submit_async(&self, event: NewEvent, completion: Completion) {
        self.store.submit_async(event, completion)
    }

    fn hand_off(&self, event: NewEvent) -> Result<Result<Claimed, Box<Event>>, StoreError> {
        let claimed = Claimed::of_handoff(&event, String::new());
        Ok(match self.store.submit(event)? {
            Submitted::Created => Ok(claimed),
            Submitted::AlreadyExists(existing) => Err(existing),
        })
    }

    fn claimer(&self) -> Box<dyn Claimer> {
        Box::new(SqliteClaimer(self.store.clone()))
    }

    fn finish(&self, claimed: &Claimed, outcome: &Outcome) -> Result<Option<Event>, StoreError> {
        self.store.finish(&claimed.event.request_id, outcome)
    }

    fn retry(&self, claimed: &Claimed, r: &Retry<'_>) -> Result<bool, StoreError> {
        self.store.requeue(&claimed.event.request_id, r)
    }

    fn notify_workers(&self) {
        self.store.notify_workers()
    }

    fn get(&self, id: &str) -> Result<Option<Event>, StoreError> {
        self.store.get(id)
    }

    fn list(&self, q: &ListQuery) -> Result<(u64, Vec<Event>), StoreError> {
        self.store.list(q)
    }

    fn terminate_queued(&self, id: &str, _grace: bool, now: u64) -> Terminating {
        Ok((self.store.abort_queued(id, now)?, Holder::Me))
    }

    fn mark_aborted(&self, id: &str, message: Option<&str>, now: u64) -> Aborted {
        self.store.mark_aborted(id, message, now)
    }

    fn ended_seq(&self) -> u64 {
        self.store.ended_seq()
    }

    fn wait_for_ended(&self, seen: u64, timeout: Duration) -> bool {
        self.store.wait_for_ended(seen, timeout)
    }

    fn counts_by_status(&self) -> Result<[(Status, u64); STATUS_COUNT], StoreError> {
        self.store.counts_by_status()
    }

    fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        self.store.purge_expired(now)
    }

    fn reconcile(&self, held: &[String], now: u64) -> Result<u64, StoreError> {
        self.store.reconcile(held, now)
    }

    fn expire_overdue(&self, now: u64) -> Result<u64, StoreError> {
        self.store.expire_overdue(now)
    }

    fn expired_count(&self) -> u64 {
        self.store.expired_count()
    }

    fn next_outbox_wake(&self) -> Result<Option<u64>, StoreError> {
        let delivery = self.store.next_delivery_due()?;
        let expiry = self.store.next_expiry()?;
        Ok(match (delivery, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn due_deliveries(&self, now: u64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        self.store.due_deliveries(now, limit)
    }

    fn record_delivery(&self, id: &str, result: Delivered) -> Result<(), StoreError> {
        self.store.record_delivery(id, result)
    }

    fn outbox_seq(&self) -> u64 {
        self.store.outbox_seq()
    }

    fn wait_for_outbox(&self, seen: u64, timeout: Duration) -> bool {
        self.store.wait_for_outbox(seen, timeout)
    }

    fn get_result(&self, id: &str) -> Result<Option<(Event, Option<StoredAnswer>)>, StoreError> {
        self.store.get_result(id)
    }

    fn lists_every_filter(&self) -> bool {
        true
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            store: Some(self.path.clone()),
            ..BackendStatus::counted("sqlite", self.store.counts_by_status().ok())
        }
    }
}
