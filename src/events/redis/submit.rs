//! Submissions on the Redis backend: a few submitter threads group-commit whatever was
//! submitted meanwhile into one SUBMIT script call, wait for the replicas
//! `async.redis_min_replicas` asks for, and give each submission its own answer.
//!
//! **One round trip per batch.** With replicas to wait for, a batch is stored *held* (not
//! delivered) and `WAIT` follows it in the same pipeline; the RELEASE of the batch before,
//! once confirmed, leads it. So a submission's answer costs one round trip (plus the
//! replicas' acknowledgement), as a raw `XADD` does. The answer (202) goes out once `WAIT`
//! confirmed the batch, before its release: the event is durable then; its delivery follows
//! with the next batch, or at once when no other submission waits. Should the instance die in
//! between, the hold runs out and the event is delivered anyway ([`HOLD`]). Without replicas
//! to wait for, a batch is one script call, delivered at once. (On a cluster the calls go one
//! by one: the crate's cluster pipeline routes a keyless `WAIT` to every master.)
//!
//! **Never a 503 for an event that runs.** A batch too few replicas confirmed is withdrawn
//! (WITHDRAW, before its hold runs out) and answered 503. A batch whose outcome is unknown
//! (the connection broke after it was sent) is tried again until the store answers or
//! [`SUBMIT_DEADLINE`] passes: the script is idempotent, so what was stored answers as stored.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::{Cmd, Script, Value};

use super::fleet::THREAD_STACK;
use super::link::{ends_connection, Link};
use super::scripts::{array, eval, event, is_noscript, num, scripts, will_not_run};
use super::topology::Conn;
use super::{push_submission, Inner};
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
pub(super) const REPLICA_WAIT: Duration = Duration::from_secs(1);
/// How long a submission whose outcome is unknown (the connection broke after its script
/// was sent) is checked for before it is answered 503: the request's own deadline.
pub const SUBMIT_DEADLINE: Duration = Duration::from_secs(10);
/// The pause between two checks of an unknown outcome: the links' backoff decides when a
/// connection is tried again; this only keeps the loop from spinning meanwhile.
pub(super) const RECHECK_PAUSE: Duration = Duration::from_millis(50);
/// How long a new event waits undelivered for its replicas' confirmation: longer than
/// [`REPLICA_WAIT`] and a withdrawal, so that an unconfirmed event is withdrawn before any
/// worker could start it; should the instance die meanwhile, it is delivered after this.
const HOLD: Duration = Duration::from_secs(3);

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
    // Confirmed events of earlier batches still to deliver (RELEASE).
    let mut release: Vec<String> = Vec::new();
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let batch: Vec<(NewEvent, Completion)> = {
            let mut pending = lock(&inner.pending);
            while pending.is_empty() {
                if !release.is_empty() {
                    // Nothing to carry the release: it goes alone, off any answer's path.
                    drop(pending);
                    flush(&inner, &mut link, &mut release);
                    pending = lock(&inner.pending);
                    continue;
                }
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
        let results = submit_batch(&inner, &mut link, &batch, &mut release);
        drop(inner);
        for ((_, completion), result) in batch.into_iter().zip(results) {
            completion(result);
        }
    }
}

/// Delivers the confirmed events of `release` now. Should this fail, their hold runs out and
/// they are delivered then.
fn flush(inner: &Inner, link: &mut Link, release: &mut Vec<String>) {
    let mut cmd = inner.command(&scripts().release, now_ms());
    for id in release.drain(..) {
        cmd.arg(id);
    }
    let _ = link.call("submit (release)", |c| eval(c, &scripts().release, &cmd));
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
    link: &mut Link,
    batch: &[(NewEvent, Completion)],
    release: &mut Vec<String>,
) -> Vec<Result<Submitted, StoreError>> {
    let deadline = Instant::now() + SUBMIT_DEADLINE;
    let mut retry = false;
    loop {
        let tried = try_batch(inner, link, batch, retry, release);
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
pub(super) fn unknown(link: &Link, e: &StoreError) -> bool {
    link.sent() && matches!(e, StoreError::Redis { source, .. } if ends_connection(source))
}

/// The commands of one round trip: the release of earlier batches, the batch, the `WAIT`.
/// A handoff's store write takes the same trip (no release; `script` its own).
pub(super) struct Trip<'a> {
    pub release: Option<Cmd>,
    /// The script `submit` calls (`EVALSHA`): SUBMIT, or HANDOFF.
    pub script: &'a Script,
    pub submit: &'a Cmd,
    pub wait: Option<Cmd>,
    /// The queue's key: a keyless `WAIT` goes to its master.
    pub key: &'a str,
}

impl Trip<'_> {
    /// The SUBMIT reply and how many replicas confirmed (0 when not waited for).
    pub fn run(&self, conn: &mut Conn) -> redis::RedisResult<(Value, u64)> {
        if matches!(conn, Conn::Cluster(_)) {
            if let Some(release) = &self.release {
                // Not delivered now, delivered when the hold runs out: never lost.
                let _ = eval(conn, &scripts().release, release);
            }
            let reply = eval(conn, self.script, self.submit)?;
            let confirmed = match &self.wait {
                Some(wait) => conn.on_node_of(wait, self.key)?,
                None => 0,
            };
            return Ok((reply, confirmed));
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if let Some(release) = &self.release {
            pipe.add_command(release.clone());
        }
        pipe.add_command(self.submit.clone());
        if let Some(wait) = &self.wait {
            pipe.add_command(wait.clone());
        }
        let mut replies: Vec<Value> = pipe.query(conn)?;
        let noscript = replies
            .iter()
            .any(|r| matches!(r, Value::ServerError(e) if is_noscript(&e.clone().into())));
        if noscript {
            // A new or restarted master: nothing of the scripts ran; load them, go again.
            self.script.load(conn)?;
            scripts().release.load(conn)?;
            replies = pipe.query(conn)?;
        }
        let mut replies = replies
            .into_iter()
            .skip(usize::from(self.release.is_some()));
        let reply = replies.next().unwrap_or(Value::Nil).extract_error()?;
        let confirmed = match replies.next() {
            Some(v) => redis::from_redis_value(v.extract_error()?)?,
            None => 0,
        };
        Ok((reply, confirmed))
    }
}

/// One try of a batch; `retry`: an earlier try's outcome was unknown, so the events it may
/// have stored answer as existing, and are withdrawn or released as this try's own.
/// `release`: confirmed events of earlier batches, delivered in the same round trip; the
/// events this batch gets confirmed are added to it.
fn try_batch(
    inner: &Inner,
    link: &mut Link,
    batch: &[(NewEvent, Completion)],
    retry: bool,
    release: &mut Vec<String>,
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
    let wanted = wanted(inner, link);
    let hold = match wanted {
        0 => 0,
        _ => HOLD.as_millis() as u64,
    };
    let mut submit = inner.command(&scripts().submit, now_ms());
    submit.arg(inner.opts.max_queued).arg(hold);
    for (event, _) in batch {
        push_submission(&mut submit, event);
    }
    let trip = Trip {
        release: (!release.is_empty()).then(|| {
            let mut cmd = inner.command(&scripts().release, now_ms());
            cmd.arg(release.as_slice());
            cmd
        }),
        script: &scripts().submit,
        submit: &submit,
        wait: wait_for(wanted),
        key: &inner.stream,
    };
    let (reply, confirmed) = match link.call_blocking("submit", blocks(wanted), |c| trip.run(c)) {
        Ok(replies) => replies,
        Err(e) if unknown(link, &e) => return Try::Unknown(e),
        Err(e) => return all(e),
    };
    // Released, or their hold runs out: either way delivered.
    release.clear();
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
    if confirmed >= u64::from(wanted) {
        release.extend(ours.iter().map(|i| batch[*i].0.request_id.clone()));
        return Try::Known(results);
    }
    if ours.is_empty() {
        return Try::Known(results);
    }
    // Too few replicas have the new events: take them back before answering 503, unless one
    // was delivered meanwhile (it runs, so it is answered 202).
    let mut withdraw = inner.command(&scripts().withdraw, now_ms());
    for i in &ours {
        withdraw.arg(&batch[*i].0.request_id);
    }
    let withdrawn = match link.call("submit (withdraw)", |c| {
        eval(c, &scripts().withdraw, &withdraw)
    }) {
        Ok(v) => v,
        // Not withdrawn, and the events may run: try again (the next try finds them stored
        // and waits for the replicas once more).
        Err(e) => return Try::Unknown(e),
    };
    let flags = array("withdraw", &withdrawn)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    for (k, i) in ours.iter().enumerate() {
        // One that will not run is a 503; one that stays (delivered meanwhile) is a 202.
        if flags.get(k).is_some_and(will_not_run) {
            results[*i] = Err(StoreError::NotReplicated { wanted, confirmed });
        }
    }
    log::warn!(
        "{confirmed} of {wanted} replica(s) confirmed a submission within {} ms: withdrawn (async.redis_min_replicas)",
        REPLICA_WAIT.as_millis()
    );
    Try::Known(results)
}

/// How many replicas must confirm a write now (`async.redis_min_replicas`; `auto`: one while
/// the queue's master has one that keeps up). `link` is connected.
pub(super) fn wanted(inner: &Inner, link: &Link) -> u32 {
    match inner.min_replicas {
        Some(n) => n,
        None => u32::from(link.topology().replicas() > 0),
    }
}

/// The `WAIT` for `wanted` replicas (none for 0), bounded by [`REPLICA_WAIT`].
pub(super) fn wait_for(wanted: u32) -> Option<Cmd> {
    (wanted > 0).then(|| {
        redis::cmd("WAIT")
            .arg(wanted)
            .arg(REPLICA_WAIT.as_millis() as u64)
            .clone()
    })
}

/// How long a trip waiting for `wanted` replicas may block on the server.
pub(super) fn blocks(wanted: u32) -> Duration {
    match wanted {
        0 => Duration::ZERO,
        _ => REPLICA_WAIT,
    }
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
