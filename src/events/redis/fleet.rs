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
/// How long `WAIT` waits for the replicas to acknowledge a batch.
const REPLICA_WAIT: Duration = Duration::from_secs(1);
/// How long a submission whose outcome is unknown (the connection broke after its script
/// was sent) is checked for before it is answered 503: the request's own deadline.
pub const SUBMIT_DEADLINE: Duration = Duration::from_secs(10);
/// The pause between two checks of an unknown outcome: the links' backoff decides when a
/// connection is tried again; this only keeps the loop from spinning meanwhile.
const RECHECK_PAUSE: Duration = Duration::from_millis(50);
/// How long a new event waits undelivered for its replicas' confirmation: longer than
/// [`REPLICA_WAIT`] and a withdrawal, so that an unconfirmed event is withdrawn before any
/// worker could start it; should the instance die meanwhile, it is delivered after this.
const HOLD: Duration = Duration::from_secs(3);
const RENEW_EVERY: Duration = Duration::from_secs(1);
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);
const PROMOTE_EVERY: Duration = Duration::from_millis(250);
/// How often the topology is looked at (Sentinel's master, the cluster's nodes, replicas).
const WATCH_EVERY: Duration = Duration::from_secs(1);
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

/// What one try of a batch gave.
enum Try {
    /// Each submission's answer.
    Known(Vec<Result<Submitted, StoreError>>),
    /// The connection broke after the script may have reached the server: whether the
    /// batch was stored is not known.
    Unknown(StoreError),
}

/// Stores a batch and waits for the replicas `async.redis_min_replicas` asks for. An unknown
/// outcome is resolved by trying again (the script is idempotent: what was stored answers as
/// stored) until [`SUBMIT_DEADLINE`]; only then is it a 503.
fn submit_batch(
    inner: &Inner,
    link: &mut super::Link,
    batch: &[(NewEvent, Completion)],
) -> Vec<Result<Submitted, StoreError>> {
    let deadline = Instant::now() + SUBMIT_DEADLINE;
    let mut retry = false;
    loop {
        let tried = try_batch(inner, link, batch, retry);
        retry = true;
        match tried {
            Try::Known(results) => return results,
            Try::Unknown(e) if Instant::now() >= deadline => {
                return batch.iter().map(|_| Err(e.clone())).collect();
            }
            Try::Unknown(e) => {
                log::debug!("a submission's outcome is unknown ({e}); checking again");
                std::thread::sleep(RECHECK_PAUSE.min(deadline - Instant::now()));
            }
        }
    }
}

/// Whether a failed call may have reached the server (its connection broke after sending).
fn unknown(link: &super::Link, e: &StoreError) -> bool {
    link.sent()
        && matches!(e, StoreError::Redis { source, .. } if super::link::ends_connection(source))
}

/// One try of a batch; `retry`: an earlier try's outcome was unknown, so the events it may
/// have stored answer as existing, and are withdrawn or released as this try's own.
fn try_batch(
    inner: &Inner,
    link: &mut super::Link,
    batch: &[(NewEvent, Completion)],
    retry: bool,
) -> Try {
    // After an unknown outcome, a failure (even one that sent nothing) leaves it unknown: only
    // an answer from the store resolves it.
    let all = |e: StoreError| match retry {
        true => Try::Unknown(e),
        false => Try::Known(batch.iter().map(|_| Err(e.clone())).collect()),
    };
    // Connected first (no round trip when it is): a new connection reads the replicas, which
    // decide whether this batch is held and waited for.
    if let Err(e) = link.call("submit (connect)", |_| Ok(())) {
        return all(e);
    }
    let wanted = match inner.min_replicas {
        Some(n) => n,
        None => u32::from(link.topology().replicas() > 0),
    };
    let hold = match wanted {
        0 => 0,
        _ => HOLD.as_millis() as u64,
    };
    let mut inv = inner.invocation(&scripts().submit, now_ms());
    inv.arg(inner.opts.max_queued).arg(hold);
    for (event, _) in batch {
        push_submission(&mut inv, event);
    }
    let reply = match link.call("submit", |c| inv.invoke::<Value>(c)) {
        Ok(reply) => reply,
        Err(e) if unknown(link, &e) => return Try::Unknown(e),
        Err(e) => return all(e),
    };
    let mut results = match per_event(inner, &reply, batch.len()) {
        Ok(results) => results,
        Err(e) => return all(e),
    };
    if wanted == 0 {
        return Try::Known(results);
    }
    let ours: Vec<usize> = (0..results.len())
        .filter(|i| match &results[*i] {
            Ok(Submitted::Created) => true,
            Ok(Submitted::AlreadyExists(_)) => retry,
            _ => false,
        })
        .collect();
    let ids = |inv: &mut ScriptInvocation<'_>| {
        for i in &ours {
            inv.arg(&batch[*i].0.request_id);
        }
    };
    let wait = redis::cmd("WAIT")
        .arg(wanted)
        .arg(REPLICA_WAIT.as_millis() as u64)
        .clone();
    let key = inner.stream.clone();
    let confirmed: u64 = match link.call_blocking("submit (WAIT for replicas)", REPLICA_WAIT, |c| {
        c.on_node_of(&wait, &key)
    }) {
        Ok(n) => n,
        Err(e) if unknown(link, &e) => return Try::Unknown(e),
        Err(e) => return all(e),
    };
    if ours.is_empty() {
        return Try::Known(results);
    }
    if confirmed >= u64::from(wanted) {
        // Confirmed: deliver them now. Should this fail, they are delivered when their hold
        // is over.
        let mut inv = inner.invocation(&scripts().release, now_ms());
        ids(&mut inv);
        let _ = link.call("submit (release)", |c| inv.invoke::<Value>(c));
        return Try::Known(results);
    }
    // Too few replicas have the new events: take them back before answering 503, unless one
    // was delivered meanwhile (it runs, so it is answered 202).
    let mut inv = inner.invocation(&scripts().withdraw, now_ms());
    ids(&mut inv);
    let withdrawn = match link.call("submit (withdraw)", |c| inv.invoke::<Value>(c)) {
        Ok(v) => v,
        Err(e) if unknown(link, &e) => return Try::Unknown(e),
        // Not withdrawn, and the events may run: try again (the next try finds them stored
        // and waits for the replicas once more).
        Err(e) => return Try::Unknown(e),
    };
    let flags = array("withdraw", &withdrawn)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    for (k, i) in ours.iter().enumerate() {
        if flags.get(k).and_then(num) == Some(1) {
            results[*i] = Err(StoreError::NotReplicated { wanted, confirmed });
        }
    }
    log::warn!(
        "{confirmed} of {wanted} replica(s) confirmed a submission within {} ms: withdrawn (async.redis_min_replicas)",
        REPLICA_WAIT.as_millis()
    );
    Try::Known(results)
}

/// Each submission's answer in a SUBMIT reply.
fn per_event(
    inner: &Inner,
    reply: &Value,
    expected: usize,
) -> Result<Vec<Result<Submitted, StoreError>>, StoreError> {
    let max_queued = inner.opts.max_queued;
    let items = array("submit", reply)?;
    if items.len() != expected {
        return Err(StoreError::RedisReply {
            op: "submit",
            detail: "one result per submission expected".into(),
        });
    }
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
        .collect())
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
    let mut watch_at = start;
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
        if now >= watch_at {
            watch_at = now + WATCH_EVERY;
            // Asked apart from the link: while the master is gone or frozen, the link is
            // backing off, and the Sentinels are what says where to go next.
            inner.topology.follow();
            let topology = inner.topology.clone();
            let _ = link.call("topology", |c| topology.watch(c));
        }
        drop(control);
        let next = renew_at.min(takeover_at).min(promote_at).min(watch_at);
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
            let mut conn = inner.topology.pubsub_connection(Duration::from_secs(1))?;
            let generation = inner.topology.generation();
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
                        if inner.topology.generation() != generation {
                            // The master moved: listen on the new one.
                            return Err(redis::RedisError::from((
                                redis::ErrorKind::Io,
                                "the master changed",
                            )));
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
