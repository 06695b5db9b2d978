//! The Redis backend's own threads besides the submitters ([`super::submit`]): the
//! housekeeping of this instance in the fleet (heartbeat and lease renewal, takeover of dead
//! instances' events, delivery of due retries, the topology); it starts the subscriber
//! ([`super::subscriber`]) too.
//!
//! Each thread owns its link; each holds the backend only through an `Arc` of its shared part
//! and the service only weakly, so the housekeeping stops with the service.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::{ScriptInvocation, Value};

use super::scripts::{array, num, scripts, text};
use super::{Inner, HEARTBEAT_TTL, LEASE, TAKEOVER_GRACE};
use crate::events::backend::Control;
use crate::events::error::StoreError;
use crate::events::signal::lock;
use crate::events::time::now_ms;

const RENEW_EVERY: Duration = Duration::from_secs(1);
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);
const PROMOTE_EVERY: Duration = Duration::from_millis(250);
/// How often the topology is looked at (Sentinel's master, the cluster's nodes, replicas).
const WATCH_EVERY: Duration = Duration::from_secs(1);
pub(super) const THREAD_STACK: usize = 256 * 1024;

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
    spawn("fc-init-redis-subscribe", move || {
        super::subscriber::subscriber(&i, &control)
    });
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
                    inner.act(&*control, id, *graceful);
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
