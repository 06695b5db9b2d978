//! The fleet's store on Redis (`async.backend = "redis"`, docs/reference.md §10 "A fleet on
//! Redis", section 10): every fc-init with the same `redis_url` and `queue` shares one queue, one event
//! index and one set of limits, through the `redis` crate's synchronous API (no async
//! runtime: each thread that talks to Redis owns its connection, a [`link::Link`]).
//!
//! # Keys
//!
//! All keys of queue `q` start with `fc-init:{q}:` — one hash tag, so Redis Cluster keeps
//! them on one slot, and every script (which names the stream as its key) runs there:
//!
//! | key | type | what |
//! |---|---|---|
//! | `fc-init:{q}:stream` | stream, group `workers` | one entry per delivery of a QUEUED event (`id` field); each instance is a consumer |
//! | `fc-init:{q}:ev:<id>` | hash | the event: `status submit start end dur code attempts failures etype emsg next score`, the request (`method target headers body`), and while it runs `owner` (consumer), `lease` (the delivering entry), `entry`; `term` while a terminate waits |
//! | `fc-init:{q}:all` | sorted set | every event by submit time (list, paging) |
//! | `fc-init:{q}:st:<STATUS>` | sorted sets | the events of each status by submit time (filtered lists, counts, fleet-wide `max_queued`) |
//! | `fc-init:{q}:ended` | sorted set | ended events by end time (retention) |
//! | `fc-init:{q}:delayed` | sorted set | QUEUED events waiting out a retry backoff, by due time |
//! | `fc-init:{q}:alive:<consumer>` | string, 5 s TTL | an instance's heartbeat |
//! | `fc-init:{q}:seq` | counter | orders submissions within one millisecond |
//! | `fc-init:{q}:cursor` | counter | where the renewal of queued events' expiry goes on |
//! | channel `fc-init:{q}:ctl:<consumer>` | pub/sub (sharded on Redis 7) | "terminate this event" to the instance running it |
//! | channel `fc-init:{q}:ended` | pub/sub (sharded on Redis 7) | an event a terminate waits for has ended |
//!
//! # Design, and why
//!
//! - **Delivery by a consumer group.** A submission adds a stream entry; each worker reads
//!   with `XREADGROUP ... >` (blocking, on its own connection), so each entry goes to exactly
//!   one instance that has a free worker. The group's pending list (PEL) records who holds
//!   what.
//! - **Every change is one Lua script** ([`scripts`]): submit (idempotent: an existing id
//!   answers with the stored event, fleet-wide; the queue limit is counted on `st:QUEUED`, so
//!   `max_queued` is fleet-wide), start, finish, retry, terminate, takeover. Atomic on the
//!   server, so two instances can never both start, end or take over one event. Scripts
//!   rather than MULTI: each step reads before it writes (is the lease still this attempt's?).
//! - **Leases.** A started event's `lease` is the stream entry that delivered it; finish and
//!   retry apply only while it is still the event's, so an attempt that was taken over can
//!   never overwrite what the new one records. A live instance renews its leases every second
//!   (`XCLAIM ... JUSTID` of its own entries resets their idle time) together with its
//!   heartbeat key (`SET alive:<me> PX 5000`).
//! - **Takeover.** Every second each instance looks for consumers whose heartbeat has expired
//!   and takes their pending entries over (`XCLAIM`), and `XAUTOCLAIM`s any entry idle longer
//!   than the lease ([`LEASE`], 30 s): only then was it not renewed, so an event runs again
//!   only when its instance died (or lost Redis for that long). A taken-over event goes back
//!   to the queue without using a retry (docs/reference.md §10), as a new delivery. A SIGKILLed
//!   instance's events are running elsewhere about 5 s later (the heartbeat's TTL), not 30 s:
//!   the heartbeat is the fast path, the lease the backstop. An instance takes nothing over
//!   until its link has answered without a stall for [`TAKEOVER_GRACE`] — longer than a live
//!   instance's renewal can be held up after an outage of Redis itself (a call to a frozen
//!   node, the reconnect backoff, a renewal period) — so that every live instance has
//!   renewed its heartbeat before anyone judges it dead (the bug: after a cluster master
//!   froze, an instance took over a live one's running event as soon as it reconnected, and
//!   the event ran twice).
//! - **Terminate.** A QUEUED event is aborted inside the script (its entry deleted, so no
//!   worker can start it). For a RUNNING one the script records `term` on the event and
//!   publishes `forced|graceful <id>` on the owner's control channel; the owner kills or
//!   SIGTERMs its function as section 7 says. The word cannot be lost: the owner's renewal
//!   also returns its held events with `term` set, every second, and a takeover ends such an
//!   event as ABORTED instead of running it again. The caller's answer comes when the event
//!   has ended: a script ending an event with `term` publishes its id on `ended`, which every
//!   instance's subscriber turns into a local wake-up.
//! - **Retention is key expiry.** An ended event's hash expires a margin (the retention
//!   again, a minute at most) after its retention; the indexes forget it at the retention
//!   itself (each script that reads them first drops what `ended` says is past it), so lists
//!   and counts never show half-forgotten events. Every other key expires too: each live
//!   instance's renewal pushes the expiry of the queue's keys on every second (and of the
//!   hashes of unended events, at least 10 minutes, 200 queued ones a second), so a fleet that
//!   stops leaves nothing behind once the queue is unused for the retention.
//! - **Retries** wait in `delayed` and are delivered again when due (every instance moves due
//!   ones every 250 ms).
//!
//! # Durability before 202
//!
//! A submission is answered 202 only once the script that stored it has returned, i.e. the
//! Redis server has executed and acknowledged it, and `async.redis_min_replicas` replicas
//! confirmed it (`WAIT`, at most a second, pipelined with the script: [`submit`]); a handoff's
//! store write is confirmed the same way, before the request is forwarded ([`handoff`]). `auto` waits for one whenever the queue's master
//! has a replica that keeps up ([`topology::replication`]: online, acknowledged within 2 s, so
//! a paused replica stops being waited for); the count is read at every connection and every
//! second, never only at connect. While replicas are waited for, new events are stored
//! *held* (in `delayed`, not delivered), so no worker can start one before it is confirmed:
//! confirmed, they are released (delivered); not, they are withdrawn (deleted) and the
//! submission answered 503, so a 503 never stands for an event that will run. A batch whose
//! outcome is unknown (the connection broke after its script was sent) is tried again until
//! the store answers or [`submit::SUBMIT_DEADLINE`] passes: the script is idempotent, so what
//! was stored answers as stored. What a single Redis keeps across its own crash is its
//! persistence setting: only `appendonly yes` with `appendfsync always` makes an acknowledged
//! event survive a crash or power loss of the Redis host (`everysec` may lose the last
//! second). Submissions from many connections are group-committed: a few submitter threads
//! each take every submission queued meanwhile into one script call.
//!
//! # Topologies
//!
//! A standalone server, a Redis Cluster or a Sentinel-watched master ([`topology`]): links
//! reach the node that holds the queue's slot through the crate's own clients, follow
//! redirects and failovers, and reconnect when the master changes.
//!
//! # Failure modes
//!
//! Redis unreachable (or refusing writes): submissions get 503 `AsyncStoreUnavailable`
//! (nothing is acknowledged that is not stored), synchronous traffic and health are untouched,
//! every link reconnects with backoff and the log says so at most once a second. Events that
//! were running finish; their records are written again until Redis is back (the service's
//! rule), and their leases still hold then. A server whose certificate does not verify is a
//! configuration error at start (exit 2, like a refused login); once running, it is the same
//! as unreachable, with the reason (`invalid peer certificate: ...`) in the log line.
//!
//! # TLS
//!
//! `rediss://` needs a build with the cargo feature `redis-tls` (`cargo build --features
//! redis-tls`); without it the configuration refuses such a URL (exit 2), since a TLS stack
//! would be a large part of a small static binary. With it, the redis crate speaks TLS 1.2 or
//! 1.3 through rustls with the ring provider (module `tls`), and the server's certificate is
//! verified, host name included, against the system's roots (read at every connect, by
//! rustls-native-certs: `/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`) or, with
//! `?ca=/path/ca.pem`, against the CAs of that file only (read once, at start). There is no
//! insecure mode. The URL itself is read by `config::redis_url`, not by the redis crate's
//! `url`-based parser (see there why).

mod claimer;
mod connect;
mod fleet;
mod handoff;
pub mod link;
mod scripts;
mod sentinel;
mod stale;
mod submit;
mod subscriber;
#[cfg(feature = "redis-tls")]
mod tls;
pub mod topology;

use std::collections::HashSet;
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use redis::{ScriptInvocation, Value};
use topology::{Conn, Topology};

use super::backend::{
    Aborted, Backend, BackendStatus, Claimer, Control, Holder, Retry, Terminating,
};
use super::error::StoreError;
use super::model::{
    decode_headers, encode_headers, AbortResult, Claimed, Delivered, Delivery, Event, ListQuery,
    NewEvent, Order, OrderBy, Outcome, Status, StoreOptions, StoredAnswer, Submitted,
    MAX_LIST_LIMIT, STATUS_COUNT,
};
use super::signal::{lock, Signal};
use super::store::Completion;
use super::time::now_ms;
use crate::config::Config;
use claimer::RedisClaimer;
use connect::{client, consumer_name, is_certificate_error, server_of};
use link::Link;
use scripts::{array, bytes, event, num, scripts, text, EVENT_ITEMS};

/// How long a lease lasts without renewal before a live instance may take the event over
/// (docs/reference.md §10: at most 30 s).
pub const LEASE: Duration = Duration::from_secs(30);
/// An instance's heartbeat lives this long without renewal.
const HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// How long an instance's link must have answered without a stall before it takes anything
/// over: a live instance's housekeeping may be held up that long after an outage by one call
/// to a frozen node (a cluster tries it three times: 3 × (0.5 s + 2 s)), the reconnect
/// backoff ([`link::BACKOFF_MAX`]) and a renewal period, 10.5 s in all.
const TAKEOVER_GRACE: Duration = Duration::from_secs(12);
/// The consumer group of a queue's stream.
const GROUP: &str = "workers";
/// The longest a claim blocks on the server before the worker looks at its phase again.
const CLAIM_BLOCK: Duration = Duration::from_secs(1);

/// The fleet's store.
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    topology: Arc<Topology>,
    server: Arc<str>,
    reach: Arc<Mutex<link::Reach>>,
    queue: String,
    /// `fc-init:{queue}:`.
    prefix: String,
    stream: String,
    /// The stream again, shared by the links (their keyless commands go to its node).
    key: Arc<str>,
    /// `async.redis_min_replicas`: `None` is `auto`.
    min_replicas: Option<u32>,
    /// This instance's consumer name in the group.
    me: String,
    opts: StoreOptions,
    /// Links for the calls that do not block (records, the operator's reads).
    pool: Mutex<Vec<Link>>,
    /// Submissions waiting for a submitter thread.
    pending: Mutex<Vec<(NewEvent, Completion)>>,
    submissions: std::sync::Condvar,
    submitters: OnceLock<()>,
    ended: Signal,
    /// Events whose terminate this instance has acted on (a word arrives by pub/sub and again
    /// with every renewal until the event ends).
    acted: Mutex<HashSet<String>>,
}

impl Redis {
    /// Prepares the queue of `async.queue` on `async.redis_url`. Nothing is connected yet:
    /// fc-init starts (and serves synchronous traffic) whether Redis is up or not.
    pub fn open(cfg: &Config, opts: StoreOptions) -> Result<Box<dyn Backend>, StoreError> {
        let url = cfg.async_.redis_url.clone().unwrap_or_default();
        let refuse = |reason: &str| StoreError::RedisUrl {
            url: server_of(&url),
            reason: reason.to_owned(),
        };
        // The configuration checked the URL already; a failure here names it again.
        let target = crate::config::redis_url::parse(&url).map_err(|why| refuse(&why))?;
        let queue = cfg.async_.queue.clone();
        let prefix = format!("fc-init:{{{queue}}}:");
        let stream = format!("{prefix}stream");
        let topology = Topology::new(target, &stream, client).map_err(|why| refuse(&why))?;
        let redis = Redis {
            inner: Arc::new(Inner {
                topology: Arc::new(topology),
                server: server_of(&url).into(),
                reach: Arc::default(),
                key: stream.as_str().into(),
                min_replicas: cfg.async_.redis_min_replicas,
                stream,
                prefix,
                queue,
                me: consumer_name(),
                opts,
                pool: Mutex::new(Vec::new()),
                pending: Mutex::new(Vec::new()),
                submissions: std::sync::Condvar::new(),
                submitters: OnceLock::new(),
                ended: Signal::default(),
                acted: Mutex::new(HashSet::new()),
            }),
        };
        redis.check_access(&url)?;
        Ok(Box::new(redis))
    }

    /// At start: a server that refuses the login or the rights fc-init needs, or whose TLS
    /// certificate does not verify, is a configuration error (exit 2); one that cannot be
    /// reached is not (fc-init serves and reconnects). The probe is what the fleet does: a
    /// script on the queue's keys, the group's creation, a publish on this instance's own
    /// channel.
    fn check_access(&self, url: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut link = inner.link("start");
        let ctl = format!("{}ctl:{}", inner.prefix, inner.me);
        let inv = inner.invocation(&scripts().counts, now_ms());
        // A command the server does not have (an older Redis), not one the user may not run.
        let unknown = |e: &redis::RedisError| {
            e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                && !link::is_auth_error(e)
        };
        let probe = link.call(link::START_CHECK, |c| {
            inv.invoke::<Value>(c)?;
            inner.ensure_group(c)?;
            // What the scripts publish with: SPUBLISH, or PUBLISH before Redis 7.
            match redis::cmd("SPUBLISH").arg(&ctl).arg("").query::<i64>(c) {
                Err(e) if unknown(&e) => redis::cmd("PUBLISH").arg(&ctl).arg("").query(c)?,
                other => other?,
            };
            Ok(())
        });
        let refused = |source: &Arc<redis::RedisError>| StoreError::RedisAccess {
            url: crate::config::redis_url::redacted(url),
            source: source.clone(),
        };
        match probe {
            Err(StoreError::Redis { source, .. }) if link::is_auth_error(&source) => {
                Err(refused(&source))
            }
            Err(StoreError::Redis { source, .. }) if is_certificate_error(&source) => {
                Err(StoreError::RedisCertificate {
                    url: crate::config::redis_url::redacted(url),
                    source,
                })
            }
            Err(e) => {
                log::warn!("the Redis store cannot be reached at start ({e}); serving, and reconnecting with backoff");
                Ok(())
            }
            Ok(()) => {
                lock(&inner.pool).push(link);
                Ok(())
            }
        }
    }
}

impl Inner {
    fn link(&self, what: &'static str) -> Link {
        Link::new(
            self.topology.clone(),
            self.key.clone(),
            self.server.clone(),
            self.reach.clone(),
            what,
        )
    }

    /// Acts once on each terminate meant for an event this instance holds (the word comes
    /// by pub/sub, and again with every renewal until the event ends).
    fn act(&self, control: &dyn Control, id: &str, graceful: bool) {
        if lock(&self.acted).insert(id.to_owned()) {
            control.terminate_held(id, graceful);
        }
    }

    /// Runs `f` on a pooled link.
    fn with<T>(
        &self,
        op: &'static str,
        f: impl FnMut(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut link = lock(&self.pool).pop().unwrap_or_else(|| self.link("pool"));
        let result = link.call(op, f);
        lock(&self.pool).push(link);
        result
    }

    /// A script invocation with the arguments every script starts with (see [`scripts`]).
    /// Until when a delivery of an event that ends at `end` is tried.
    fn delivery_until(&self, end: u64) -> u64 {
        let retry_for =
            u64::try_from(self.opts.destination_retry_for.as_millis()).unwrap_or(u64::MAX);
        end.saturating_add(retry_for)
    }

    fn invocation<'a>(&self, script: &'a redis::Script, now: u64) -> ScriptInvocation<'a> {
        let mut inv = script.key(&self.stream);
        inv.arg(&self.prefix)
            .arg(now)
            .arg(self.retention_ms())
            .arg(&self.me);
        inv
    }

    /// [`Inner::invocation`] as a plain `EVALSHA` command, for a pipeline (see
    /// [`scripts::eval`] for the script's loading).
    fn command(&self, script: &redis::Script, now: u64) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(1).arg(&self.stream);
        cmd.arg(&self.prefix)
            .arg(now)
            .arg(self.retention_ms())
            .arg(&self.me);
        cmd
    }

    fn retention_ms(&self) -> u64 {
        u64::try_from(self.opts.retention.as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `inv` on a pooled link.
    fn run(&self, op: &'static str, inv: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        self.with(op, |c| inv.invoke(c))
    }

    /// Creates the queue's stream and group when missing (the first instance ever, or a
    /// Redis that lost its data).
    fn ensure_group(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query(conn);
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// `{0}` / `{1, event}` / `{3, event}` / `{2, event, ...}` of TERMINATE and MARK_ABORTED.
    fn abort_result(
        &self,
        op: &'static str,
        v: &Value,
    ) -> Result<(AbortResult, Holder), StoreError> {
        let items = array(op, v)?;
        let kind = items.first().and_then(num);
        let ev = || items.get(1).map(|e| event(op, e)).transpose();
        let result = match (kind, ev()?) {
            (Some(0), _) => (AbortResult::NotFound, Holder::Me),
            (Some(1), Some(e)) => (AbortResult::AlreadyEnded(e), Holder::Me),
            (Some(3), Some(e)) => {
                self.ended.bump();
                (AbortResult::Aborted(e), Holder::Me)
            }
            (Some(2), Some(e)) => {
                let owner = items.get(2).and_then(text).unwrap_or_default();
                let alive = items.get(3).and_then(num) == Some(1);
                let holder = match () {
                    _ if owner == self.me => Holder::Me,
                    _ if alive => Holder::Other(owner),
                    _ => Holder::Nobody,
                };
                (AbortResult::Running(e), holder)
            }
            _ => {
                return Err(StoreError::RedisReply {
                    op,
                    detail: format!("{v:?}"),
                })
            }
        };
        Ok(result)
    }

    fn counts(&self) -> Result<[(Status, u64); STATUS_COUNT], StoreError> {
        let reply = self.run("count", &self.invocation(&scripts().counts, now_ms()))?;
        let items = array("count", &reply)?;
        let mut counts = Status::ALL.map(|s| (s, 0));
        for (slot, v) in counts.iter_mut().zip(items) {
            slot.1 = num(v).unwrap_or(0);
        }
        Ok(counts)
    }
}

impl Backend for Redis {
    fn submit(&self, event: NewEvent) -> Result<Submitted, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit_async(
            event,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx.recv().unwrap_or(Err(StoreError::CommitAbandoned))
    }

    fn submit_async(&self, event: NewEvent, completion: Completion) {
        if !super::model::valid_request_id(&event.request_id) {
            return completion(Err(StoreError::InvalidRequestId {
                id: event.request_id,
            }));
        }
        if let Err(e) = submit::start_submitters(&self.inner) {
            return completion(Err(e));
        }
        lock(&self.inner.pending).push((event, completion));
        self.inner.submissions.notify_one();
    }

    fn hand_off(&self, e: NewEvent) -> Result<Result<Claimed, Box<Event>>, StoreError> {
        if !super::model::valid_request_id(&e.request_id) {
            return Err(StoreError::InvalidRequestId { id: e.request_id });
        }
        handoff::hand_off(&self.inner, &e)
    }

    fn claimer(&self) -> Box<dyn Claimer> {
        Box::new(RedisClaimer {
            link: self.inner.link("worker"),
            inner: self.inner.clone(),
        })
    }

    fn finish(&self, claimed: &Claimed, o: &Outcome) -> Result<Option<Event>, StoreError> {
        if !o.status.is_ended() {
            return Err(StoreError::InvalidStatus {
                op: "finish",
                status: o.status,
            });
        }
        let mut inv = self.inner.invocation(&scripts().finish, o.end);
        inv.arg(&claimed.lease)
            .arg(&claimed.event.request_id)
            .arg(o.status.as_str())
            .arg(o.status_code.map(|c| c.to_string()).unwrap_or_default())
            .arg(o.error_type.as_deref().unwrap_or(""))
            .arg(o.error_message.as_deref().unwrap_or(""));
        match &o.answer {
            Some(a) => inv
                .arg(a.status)
                .arg(u8::from(a.truncated))
                .arg(a.body.len())
                .arg(encode_headers(&a.headers))
                .arg(&a.body),
            None => inv.arg("").arg("").arg("").arg("").arg(""),
        };
        inv.arg(self.inner.opts.destination_for(o.status).unwrap_or(""))
            .arg(self.inner.delivery_until(o.end));
        let reply = self.inner.run("finish", &inv)?;
        if reply == Value::Nil {
            return Ok(None);
        }
        self.inner.ended.bump();
        event("finish", &reply).map(Some)
    }

    fn retry(&self, claimed: &Claimed, r: &Retry<'_>) -> Result<bool, StoreError> {
        let mut inv = self.inner.invocation(&scripts().retry, now_ms());
        inv.arg(&claimed.lease)
            .arg(&claimed.event.request_id)
            .arg(r.at)
            .arg(r.status_code.map(|c| c.to_string()).unwrap_or_default())
            .arg(r.error_type.unwrap_or(""))
            .arg(r.error_message.unwrap_or(""))
            .arg(u8::from(r.charged));
        let reply = self.inner.run("retry", &inv)?;
        Ok(num(&reply) == Some(1))
    }

    /// Workers block at most [`CLAIM_BLOCK`] on the server, then look at the phase again.
    fn notify_workers(&self) {}

    fn lists_every_filter(&self) -> bool {
        true
    }

    fn next_outbox_wake(&self) -> Result<Option<u64>, StoreError> {
        let inv = self.inner.invocation(&scripts().next_due, now_ms());
        Ok(num(&self.inner.run("outbox", &inv)?))
    }

    fn due_deliveries(&self, now: u64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let mut inv = self.inner.invocation(&scripts().due, now);
        inv.arg(limit);
        let reply = self.inner.run("outbox", &inv)?;
        array("outbox", &reply)?
            .iter()
            .map(|item| {
                let event = event("outbox", item)?;
                let items = array("outbox", item)?;
                let at = |k: usize| items.get(EVENT_ITEMS + k).unwrap_or(&Value::Nil);
                Ok(Delivery {
                    event,
                    request_body: bytes(at(0)),
                    response_body: (*at(1) != Value::Nil).then(|| bytes(at(1))),
                    until: num(at(2)).unwrap_or(0),
                })
            })
            .collect()
    }

    fn record_delivery(&self, id: &str, result: Delivered) -> Result<(), StoreError> {
        let mut inv = self.inner.invocation(&scripts().record, now_ms());
        match result {
            Delivered::Yes => inv.arg(id).arg("delivered").arg(0),
            Delivered::GiveUp => inv.arg(id).arg("failed").arg(0),
            Delivered::RetryAt(at) => inv.arg(id).arg("pending").arg(at),
        };
        self.inner.run("record delivery", &inv).map(|_| ())
    }

    fn expire_overdue(&self, now: u64) -> Result<u64, StoreError> {
        let Some(cutoff) = self.inner.opts.expiry_cutoff(now) else {
            return Ok(0);
        };
        let mut inv = self.inner.invocation(&scripts().expire, now);
        inv.arg(cutoff)
            .arg(self.inner.opts.expiry_message())
            .arg(
                self.inner
                    .opts
                    .destination_for(Status::Expired)
                    .unwrap_or(""),
            )
            .arg(self.inner.delivery_until(now));
        let n = num(&self.inner.run("expire", &inv)?).unwrap_or(0);
        if n > 0 {
            log::warn!("{n} asynchronous event(s) were not started within async.max_event_age; they ended EXPIRED");
            self.inner.ended.bump();
        }
        Ok(n)
    }

    fn get_result(&self, id: &str) -> Result<Option<(Event, Option<StoredAnswer>)>, StoreError> {
        let mut inv = self.inner.invocation(&scripts().result, now_ms());
        inv.arg(id);
        let reply = self.inner.run("result", &inv)?;
        if reply == Value::Nil {
            return Ok(None);
        }
        let event = event("result", &reply)?;
        let items = array("result", &reply)?;
        let answer = match (
            &event.result,
            items.get(EVENT_ITEMS),
            items.get(EVENT_ITEMS + 1),
        ) {
            (Some(info), Some(head), Some(body)) if *head != Value::Nil => Some(StoredAnswer {
                status: info.status_code,
                headers: decode_headers(&bytes(head)).ok_or_else(|| StoreError::Corrupt {
                    op: "result",
                    detail: format!("headers of the answer to {id}"),
                })?,
                body: bytes(body),
                truncated: info.truncated,
            }),
            _ => None,
        };
        Ok(Some((event, answer)))
    }

    fn get(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let mut inv = self.inner.invocation(&scripts().get, now_ms());
        inv.arg(id);
        match self.inner.run("get", &inv)? {
            Value::Nil => Ok(None),
            reply => event("get", &reply).map(Some),
        }
    }

    fn list(&self, q: &ListQuery) -> Result<(u64, Vec<Event>), StoreError> {
        let statuses: Vec<&str> = q.statuses.iter().map(|s| s.as_str()).collect();
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let filtered = q.uses_section_12();
        let script = match filtered {
            true => &scripts().list_filtered,
            false => &scripts().list,
        };
        let mut inv = self.inner.invocation(script, now_ms());
        inv.arg(statuses.join(","))
            .arg(opt(q.since))
            .arg(opt(q.until))
            .arg(match q.order {
                Order::Asc => "asc",
                Order::Desc => "desc",
            })
            .arg(q.offset)
            .arg(q.limit.min(MAX_LIST_LIMIT))
            .arg(q.request_id.as_deref().unwrap_or(""));
        if filtered {
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            inv.arg(text(&q.request_id_prefix))
                .arg(text(&q.function_name))
                .arg(text(&q.qualifier))
                .arg(match &q.invocation_type {
                    Some(t) if t.eq_ignore_ascii_case("Async") => "Async",
                    Some(_) => "Sync",
                    None => "",
                })
                .arg(opt(q.started_since))
                .arg(opt(q.started_until))
                .arg(opt(q.ended_since))
                .arg(opt(q.ended_until))
                .arg(match q.order_by {
                    OrderBy::SubmitTime => "submit",
                    OrderBy::StartTime => "start",
                    OrderBy::EndTime => "end",
                });
        }
        let reply = self.inner.run("list", &inv)?;
        let items = array("list", &reply)?;
        let total = items.first().and_then(num).unwrap_or(0);
        let events = items[1.min(items.len())..]
            .iter()
            .map(|e| event("list", e))
            .collect::<Result<_, _>>()?;
        Ok((total, events))
    }

    fn terminate_queued(&self, id: &str, grace: bool, now: u64) -> Terminating {
        let mut inv = self.inner.invocation(&scripts().terminate, now);
        inv.arg(id).arg(u8::from(grace));
        let reply = self.inner.run("terminate", &inv)?;
        self.inner.abort_result("terminate", &reply)
    }

    fn mark_aborted(&self, id: &str, message: Option<&str>, now: u64) -> Aborted {
        let mut inv = self.inner.invocation(&scripts().mark_aborted, now);
        inv.arg(id).arg(message.unwrap_or(""));
        let reply = self.inner.run("mark aborted", &inv)?;
        Ok(self.inner.abort_result("mark aborted", &reply)?.0)
    }

    fn ended_seq(&self) -> u64 {
        self.inner.ended.current()
    }

    fn wait_for_ended(&self, seen: u64, timeout: Duration) -> bool {
        self.inner.ended.wait(seen, timeout)
    }

    fn counts_by_status(&self) -> Result<[(Status, u64); STATUS_COUNT], StoreError> {
        self.inner.counts()
    }

    fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let reply = self
            .inner
            .run("purge", &self.inner.invocation(&scripts().purge, now))?;
        Ok(num(&reply).unwrap_or(0))
    }

    fn reconcile(&self, held: &[String], now: u64) -> Result<u64, StoreError> {
        fleet::renew(&self.inner, held, now, |inv| {
            self.inner.run("reconcile", inv)
        })
        .map(|_| 0)
    }

    fn start(&self, control: Weak<dyn Control>) {
        fleet::start(&self.inner, control);
    }

    fn status(&self) -> BackendStatus {
        let counts = self.inner.counts().ok();
        let topology = &self.inner.topology;
        let serving = topology.serving();
        BackendStatus {
            queue: Some(self.inner.queue.clone()),
            consumer: Some(self.inner.me.clone()),
            connected: Some(counts.is_some()),
            form: Some(topology.form().as_str()),
            node: serving.as_ref().map(|(node, _)| node.clone()),
            master: serving.map(|(_, master)| master),
            replicas: Some(topology.replicas()),
            ..BackendStatus::counted("redis", counts)
        }
    }
}

/// The arguments of one submission in the SUBMIT script (and the HANDOFF one).
fn push_submission(cmd: &mut redis::Cmd, e: &NewEvent) {
    cmd.arg(&e.request_id)
        .arg(e.submit_time)
        .arg(&e.request.method)
        .arg(&e.request.target)
        .arg(encode_headers(&e.request.headers))
        .arg(&e.request.body)
        .arg(&e.function_name)
        .arg(&e.qualifier)
        .arg(e.not_before.map(|t| t.to_string()).unwrap_or_default());
}

#[cfg(test)]
mod tests;
