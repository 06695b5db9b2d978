//! The keys of `[async]`: asynchronous invocations and where their events are kept (docs/reference.md §3).

use crate::config::redis_url::redacted;
use crate::config::schema::{Kind, ANY_DURATION, AT_LEAST_ONE, BACKEND_CHOICES, COUNT_U32};
use crate::config::show::{duration, path, quote, set, set_or, size, Shown};
use crate::config::AsyncBackend;

use super::KeyDefault::{Depends, Is};
use super::{Key, Section};

pub(super) const SECTION: Section = Section::plain("async", KEYS);

const KEYS: &[Key] = &[
    Key {
        section: "async",
        key: "enabled",
        kind: Kind::Bool,
        default: Depends("`true` (`false` under `server.platform = \"fc\"`)"),
        ty: "bool",
        doc: "accept asynchronous invocations (section 10); when false they get 400 \
            `InvalidArgument`, except under `platform = \"fc\"`, where Function Compute owns \
            asynchronous invocations: a request with `X-Fc-Invocation-Type: Async` is forwarded \
            to the function as it came, synchronously, never queued by fc-init. Setting it \
            `true` explicitly under `fc` brings fc-init's own queue back. Used only when fc-init \
            serves",
        show: |c| set(c.async_.enabled.to_string()),
    },
    Key {
        section: "async",
        key: "backend",
        kind: Kind::Choice(BACKEND_CHOICES),
        default: Is("sqlite"),
        ty: "`sqlite` \\| `redis`",
        doc: "where events are kept: one instance's SQLite file, or a Redis queue a fleet shares",
        show: |c| {
            set(quote(match c.async_.backend {
                AsyncBackend::Sqlite => "sqlite",
                AsyncBackend::Redis => "redis",
            }))
        },
    },
    Key {
        section: "async",
        key: "store",
        kind: Kind::Path,
        default: Depends("`events.db` in the runtime directory"),
        ty: "path",
        doc: "the SQLite event store; put it on a volume for events to outlive the container; one \
            fc-init at a time may use it (it is locked)",
        show: |c| set(path(&c.async_.store)),
    },
    Key {
        section: "async",
        key: "redis_url",
        kind: Kind::RedisUrl,
        default: Depends("unset"),
        ty: "`redis://[user[:pass]@]host[:port][/db]` (user and password percent-encoded), \
            `unix:///path[?db=N&user=U&pass=P]`, \
            `redis+cluster://[user[:pass]@]host:port[,host:port...]`, \
            `redis+sentinel://[user[:pass]@]host:port[,host:port...]/MASTER[/db][?sentinel_user=U&sentinel_pass=P]`, \
            and with the `redis-tls` build `rediss://[user[:pass]@]host[:port][/db][?ca=PATH]`, \
            `rediss+cluster://...` and `rediss+sentinel://...`",
        doc: "the Redis server, cluster or Sentinel-watched master (see [Cluster and \
            Sentinel](#10-asynchronous-invocations)); required with `backend = \"redis\"`. Its \
            passwords print as `****` everywhere. `rediss://` is TLS, verified against the \
            system's roots or only the CA file `ca` (see [Redis over \
            TLS](#10-asynchronous-invocations)); a build without the `redis-tls` feature refuses \
            it (exit 2)",
        show: |c| {
            set_or(
                (c.async_.redis_url.as_deref()).map(|url| quote(&redacted(url))),
                "\"redis://127.0.0.1:6379/0\"",
                "not set: needed with backend = \"redis\"",
            )
        },
    },
    Key {
        section: "async",
        key: "queue",
        kind: Kind::QueueName,
        default: Depends("`function.name`"),
        ty: "text without braces",
        doc: "with `redis`: the queue name the instances of one function share (it is the Redis \
            Cluster hash tag of the queue's keys)",
        show: |c| {
            set_or(
                (!c.async_.queue.is_empty()).then(|| quote(&c.async_.queue)),
                "\"\"",
                "not set: function.name is not a queue name",
            )
        },
    },
    Key {
        section: "async",
        key: "retention",
        kind: ANY_DURATION,
        default: Is("72h"),
        ty: "duration",
        doc: "how long ended events are kept",
        show: |c| set(duration(c.async_.retention)),
    },
    Key {
        section: "async",
        key: "max_concurrency",
        kind: AT_LEAST_ONE,
        default: Is("10"),
        ty: "integer ≥ 1",
        doc: "events run at once by this instance",
        show: |c| set(c.async_.max_concurrency.to_string()),
    },
    Key {
        section: "async",
        key: "max_retries",
        kind: COUNT_U32,
        default: Is("3"),
        ty: "integer",
        doc: "retries of a failed event (after 500 ms, doubling up to 60 s; each retry keeps the \
            request id)",
        show: |c| set(c.async_.max_retries.to_string()),
    },
    Key {
        section: "async",
        key: "max_queued",
        kind: AT_LEAST_ONE,
        default: Is("10000"),
        ty: "integer ≥ 1",
        doc: "events waiting to run (fleet-wide with Redis); beyond it 429 `TooManyRequests`",
        show: |c| set(c.async_.max_queued.to_string()),
    },
    Key {
        section: "async",
        key: "max_payload",
        kind: Kind::Size { min: 0 },
        default: Is("128KiB"),
        ty: "size",
        doc: "largest event payload; beyond it 413",
        show: |c| set(size(c.async_.max_payload)),
    },
    Key {
        section: "async",
        key: "redis_min_replicas",
        kind: Kind::MinReplicas,
        default: Is("auto"),
        ty: "`\"auto\"` \\| integer",
        doc: "with `redis`: replicas that must confirm a submission (`WAIT`, 1 s) before its 202; \
            `auto` waits for one whenever the queue's master has a replica that keeps up \
            (online, acknowledged within 2 s); the count is read again every second and at every \
            connection. Too few in time: the event is withdrawn (it had not started) and the \
            submission gets 503 `AsyncStoreUnavailable`",
        show: |c| {
            set(match c.async_.redis_min_replicas {
                Some(n) => n.to_string(),
                None => quote("auto"),
            })
        },
    },
    Key {
        section: "async",
        key: "max_event_age",
        kind: ANY_DURATION,
        default: Is("24h"),
        ty: "duration",
        doc: "an event not started within this of its submission (retries included) ends \
            `EXPIRED` with `errorType` `EventAgeExceeded`; a running attempt is never cut; `0s`: \
            no limit",
        show: |c| set(duration(c.async_.max_event_age)),
    },
    Key {
        section: "async",
        key: "max_result",
        kind: Kind::Size { min: 0 },
        default: Is("1MiB"),
        ty: "size",
        doc: "the most of the function's answer kept with an event (its status, headers and body; \
            a longer body is kept cut, `truncated`); `0` keeps none",
        show: |c| set(size(c.async_.max_result)),
    },
    Key {
        section: "async",
        key: "destination_retry_for",
        kind: ANY_DURATION,
        default: Is("24h"),
        ty: "duration",
        doc: "how long a destination delivery is tried (500 ms doubling up to 60 s) before \
            `destination.status` is `failed`",
        show: |c| set(duration(c.async_.destination_retry_for)),
    },
    Key {
        section: "async",
        key: "on_success",
        kind: Kind::Destination,
        default: Depends("unset"),
        ty: "table `{ url = \"http://HOST:PORT/PATH\" }` (also `[async.on_success]` with `url = \
            ...`; `FC_INIT_ASYNC_ON_SUCCESS` holds the URL alone)",
        doc: "where FINISHED events are POSTed (section 10); `https://` only with the TLS build \
            (the cargo feature `tls`, which `redis-tls` implies), verified against the system's \
            roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` name others); a build without it refuses an \
            `https://` URL (exit 2)",
        show: |c| destination(c.async_.on_success.as_deref()),
    },
    Key {
        section: "async",
        key: "on_failure",
        kind: Kind::Destination,
        default: Depends("unset"),
        ty: "table, as `on_success`",
        doc: "where FAILED and EXPIRED events are POSTed",
        show: |c| destination(c.async_.on_failure.as_deref()),
    },
];

fn destination(url: Option<&str>) -> Shown {
    set_or(
        url.map(|u| format!("{{ url = {} }}", quote(u))),
        "{ url = \"http://127.0.0.1:8080/events\" }",
        "not set: no delivery",
    )
}
