//! The Redis backend's own threads: the submitters (group commit of submissions), the
//! housekeeping of this instance in the fleet (heartbeat and lease renewal, takeover of dead
//! instances' events, delivery of due retries), and the subscriber that hears terminates meant
//! for this instance and the ends of events that terminates wait for.
//!
//! Each thread owns its link; each holds the backend only through an `Arc` of its shared part
//! and the service only weakly, so the housekeeping stops with the service.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::{ScriptInvocation, Value};

use super::scripts::{array, event, num, scripts, text};
use super::{push_submission, Inner, HEARTBEAT_TTL, LEASE, TAKEOVER_GRACE};
use crate::events::backend::Control;
use crate::events::error::StoreError;
use crate::events::model::{NewEvent, Submitted};
use crate::events::signal::lock;
use crate::events::store::Completion;
use crate::events::time::now_ms;

/// Submitter threads: while one waits for Redis, the next batch gathers and goes on another.
const SUBMITTERS: usize = 2;
/// The most submissions in one script call.
const MAX_BATCH: usize = 256;
/// How long `WAIT` waits for a replica to acknowledge a batch.
const REPLICA_WAIT_MS: u64 = 1000;
const RENEW_EVERY: Duration = Duration::from_secs(1);
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);
const PROMOTE_EVERY: Duration = Duration::from_millis(250);
const THREAD_STACK: usize = 256 * 1024;

/// Starts the submitter threads once.
pub(super) fn start_submitters(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let mut failed = None;
    inner.submitters.get_or_init(|| {
        for n in 0..SUBMITTERS {
            let me = Arc::downgrade(inner);
            let spawned = std::thread::Builder::new()
                .name(format!("fc-init-redis-submit-{n}"))
                .stack_size(THREAD_STACK)
                .spawn(move || submitter(&me));
            if let Err(e) = spawned {
                log::error!("starting a Redis submitter thread: {e}");
                failed = Some(e);
            }
        }
    });
    match failed {
        Some(e) => Err(StoreError::Committer {
            source: Arc::new(e),
        }),
        None => Ok(()),
    }
}

/// Takes every queued submission (up to [`MAX_BATCH`]) into one SUBMIT script call, and gives
/// each its own result.
fn submitter(inner: &Weak<Inner>) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let mut link = strong.link("submitter");
    drop(strong);
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let batch: Vec<(NewEvent, Completion)> = {
            let mut pending = lock(&inner.pending);
            while pending.is_empty() {
                let (guard, timeout) = inner
                    .submissions
                    .wait_timeout(pending, Duration::from_secs(1))
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                pending = guard;
                if timeout.timed_out() && pending.is_empty() && Arc::strong_count(&inner) <= 1 {
                    return;
                }
            }
            let n = pending.len().min(MAX_BATCH);
            pending.drain(..n).collect()
        };
        let results = submit_batch(&inner, &mut link, &batch);
        drop(inner);
        for ((_, completion), result) in batch.into_iter().zip(results) {
            completion(result);
        }
    }
}

fn submit_batch(
    inner: &Inner,
    link: &mut super::Link,
    batch: &[(NewEvent, Completion)],
) -> Vec<Result<Submitted, StoreError>> {
    let mut inv = inner.invocation(&scripts().submit, now_ms());
    inv.arg(inner.opts.max_queued);
    for (event, _) in batch {
        push_submission(&mut inv, event);
    }
    let stored = link.call("submit", |c| {
        let reply: Value = inv.invoke(c)?;
        Ok(reply)
    });
    // With replicas attached, a batch is acknowledged once one of them has it too.
    let stored = stored.and_then(|reply| {
        if link.replicas() == 0 {
            return Ok(reply);
        }
        let acked: u64 = link.call("submit (WAIT for a replica)", |c| {
            redis::cmd("WAIT").arg(1).arg(REPLICA_WAIT_MS).query(c)
        })?;
        match acked {
            0 => Err(StoreError::RedisReply {
                op: "submit",
                detail: format!("no replica acknowledged the write within {REPLICA_WAIT_MS} ms"),
            }),
            _ => Ok(reply),
        }
    });
    let max_queued = inner.opts.max_queued;
    let per_event = stored.and_then(|reply| {
        let items = array("submit", &reply)?;
        Ok(items
            .iter()
            .map(|item| {
                let parts = array("submit", item)?;
                match parts.first().and_then(num) {
                    Some(0) => Ok(Submitted::Created),
                    Some(1) => event("submit", parts.get(1).unwrap_or(&Value::Nil))
                        .map(|e| Submitted::AlreadyExists(Box::new(e))),
                    Some(2) => Err(StoreError::Full { max_queued }),
                    _ => Err(StoreError::RedisReply {
                        op: "submit",
                        detail: format!("{item:?}"),
                    }),
                }
            })
            .collect::<Vec<_>>())
    });
    match per_event {
        Ok(results) if results.len() == batch.len() => results,
        Ok(_) => batch
            .iter()
            .map(|_| {
                Err(StoreError::RedisReply {
                    op: "submit",
                    detail: "one result per submission expected".into(),
                })
            })
            .collect(),
        Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// One renewal (RENEW): the heartbeat, the held leases, reconcile of this consumer's other
/// pending entries. Returns `(id, graceful)` of held events a terminate was asked for.
pub(super) fn renew(
    inner: &Inner,
    held: &[String],
    now: u64,
    run: impl FnOnce(&ScriptInvocation<'_>) -> Result<Value, StoreError>,
) -> Result<Vec<(String, bool)>, StoreError> {
    let ttl = HEARTBEAT_TTL.as_millis() as u64;
    let mut inv = inner.invocation(&scripts().renew, now);
    inv.arg(ttl);
    for id in held {
        inv.arg(id);
    }
    let reply = run(&inv)?;
    let items = array("renew", &reply)?;
    Ok(items
        .chunks(2)
        .filter_map(|kv| Some((text(&kv[0])?, text(kv.get(1)?)? == "graceful")))
        .collect())
}

/// Starts the housekeeping and the subscriber.
pub(super) fn start(inner: &Arc<Inner>, control: Weak<dyn Control>) {
    let (i, c) = (inner.clone(), control.clone());
    spawn("fc-init-redis-fleet", move || housekeeping(&i, &c));
    let i = inner.clone();
    spawn("fc-init-redis-subscribe", move || subscriber(&i, &control));
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(f);
    if let Err(e) = spawned {
        log::error!("{name}: cannot start a thread: {e}");
    }
}

/// Acts once on each terminate meant for an event this instance holds.
fn act(inner: &Inner, control: &dyn Control, id: &str, graceful: bool) {
    if lock(&inner.acted).insert(id.to_owned()) {
        control.terminate_held(id, graceful);
    }
}

/// Every [`RENEW_EVERY`] the heartbeat and leases, every [`TAKEOVER_EVERY`] the takeover
/// (once connected for [`TAKEOVER_GRACE`]), every [`PROMOTE_EVERY`] the due retries.
fn housekeeping(inner: &Arc<Inner>, control: &Weak<dyn Control>) {
    let mut link = inner.link("fleet");
    let start = Instant::now();
    let (mut renew_at, mut takeover_at, mut promote_at) = (start, start + TAKEOVER_EVERY, start);
    loop {
        let Some(control) = control.upgrade() else {
            return;
        };
        let now = Instant::now();
        if now >= renew_at {
            renew_at = now + RENEW_EVERY;
            let held = control.held();
            let asked = renew(inner, &held, now_ms(), |inv| {
                link.call("renew", |c| inv.invoke::<Value>(c))
            });
            if let Ok(asked) = asked {
                let asked_ids: HashSet<&str> = asked.iter().map(|(id, _)| id.as_str()).collect();
                lock(&inner.acted).retain(|id| asked_ids.contains(id.as_str()));
                for (id, graceful) in &asked {
                    act(inner, &*control, id, *graceful);
                }
            }
        }
        if now >= takeover_at {
            takeover_at = now + TAKEOVER_EVERY;
            if link.up_for().is_some_and(|up| up >= TAKEOVER_GRACE) {
                let mut inv = inner.invocation(&scripts().takeover, now_ms());
                inv.arg(LEASE.as_millis() as u64);
                match link.call("takeover", |c| inv.invoke::<Value>(c)) {
                    Ok(n) if num(&n).unwrap_or(0) > 0 => log::warn!(
                        "took over {} asynchronous event(s) of instance(s) that stopped renewing their leases",
                        num(&n).unwrap_or(0)
                    ),
                    Ok(_) => {}
                    // Logged by the link (at most once a second).
                    Err(_) => {}
                }
            }
        }
        if now >= promote_at {
            promote_at = now + PROMOTE_EVERY;
            let inv = inner.invocation(&scripts().promote, now_ms());
            let _ = link.call("promote", |c| inv.invoke::<Value>(c));
        }
        drop(control);
        let next = renew_at.min(takeover_at).min(promote_at);
        // A schedule of periodic chores: the pause is the time to the next one.
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Listens on this instance's control channel and on `ended`; reconnects with backoff.
fn subscriber(inner: &Arc<Inner>, control: &Weak<dyn Control>) {
    let ctl = format!("{}ctl:{}", inner.prefix, inner.me);
    let ended = format!("{}ended", inner.prefix);
    let mut backoff = Duration::from_millis(100);
    loop {
        if control.strong_count() == 0 {
            return;
        }
        let session = (|| -> redis::RedisResult<()> {
            let mut conn = inner
                .client
                .get_connection_with_timeout(Duration::from_secs(1))?;
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe(&ctl)?;
            pubsub.subscribe(&ended)?;
            pubsub.set_read_timeout(Some(Duration::from_secs(1)))?;
            // Whatever ended while this instance did not listen: waiters look again.
            inner.ended.bump();
            backoff = Duration::from_millis(100);
            loop {
                let msg = match pubsub.get_message() {
                    Ok(msg) => msg,
                    Err(e) if e.is_timeout() => {
                        if control.strong_count() == 0 {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let payload: String = msg.get_payload().unwrap_or_default();
                if msg.get_channel_name() == ended {
                    inner.ended.bump();
                } else if let Some((term, id)) = payload.split_once(' ') {
                    if let Some(control) = control.upgrade() {
                        act(inner, &*control, id, term == "graceful");
                    }
                }
            }
        })();
        match session {
            Ok(()) => return,
            Err(e) => {
                log::debug!("Redis subscriber: {e}; reconnecting");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(super::link::BACKOFF_MAX);
            }
        }
    }
}
