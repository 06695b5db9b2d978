//! The handoff's store write on Redis (docs/reference.md §10 "Handoff"): HANDOFF stores the
//! request RUNNING for this instance, and it is confirmed exactly as a submission is — the
//! `WAIT` for `async.redis_min_replicas` replicas in the same round trip as the script
//! ([`Trip`], the submitters' own) — before the request is forwarded.
//!
//! **Refused before it is forwarded.** A handoff too few replicas confirmed is withdrawn
//! (UNHAND: deleted while it is still the RUNNING event this call stored) and answered 503, as
//! a submission is; since nothing was forwarded yet, the refusal costs the caller nothing but a
//! retry with the same id, and neither the `202` nor a fast answer ever stands for an event a
//! failover can lose. An outcome that is unknown (the connection broke after the script was
//! sent, or the withdrawal failed) is tried again until the store answers or
//! [`SUBMIT_DEADLINE`] passes: HANDOFF is idempotent for the instance that stored it. An event
//! stored and not taken back by then is run (it is this instance's, RUNNING: a 503 would leave
//! it to no one), so a 503 never stands for an event that runs.

use std::time::Instant;

use redis::Value;

use super::link::Link;
use super::scripts::{array, eval, event, num, scripts, text, will_not_run};
use super::submit::{blocks, unknown, wait_for, wanted, Trip, RECHECK_PAUSE, SUBMIT_DEADLINE};
use super::{push_submission, Inner};
use crate::events::error::StoreError;
use crate::events::model::{Claimed, Event, NewEvent};
use crate::events::signal::lock;
use crate::events::time::now_ms;

/// What `Backend::hand_off` answers: the event stored and claimed, or the one that exists.
type HandOff = Result<Result<Claimed, Box<Event>>, StoreError>;

/// Stores handoff `e`, confirmed by the replicas `async.redis_min_replicas` asks for.
pub(super) fn hand_off(inner: &Inner, e: &NewEvent) -> HandOff {
    let mut link = lock(&inner.pool)
        .pop()
        .unwrap_or_else(|| inner.link("pool"));
    let result = confirmed(inner, &mut link, e);
    lock(&inner.pool).push(link);
    result
}

/// What one try gave.
enum Step {
    Done(HandOff),
    /// Whether the event is stored is not known, or it is stored (the claim) and was neither
    /// confirmed nor withdrawn.
    Unknown(StoreError, Option<Claimed>),
}

fn confirmed(inner: &Inner, link: &mut Link, e: &NewEvent) -> HandOff {
    let deadline = Instant::now() + SUBMIT_DEADLINE;
    let mut stored: Option<Claimed> = None;
    let mut retry = false;
    loop {
        match try_once(inner, link, e, retry) {
            Step::Done(result) => return result,
            Step::Unknown(err, claimed) => {
                stored = claimed.or(stored);
                if Instant::now() >= deadline {
                    return match stored {
                        Some(claimed) => {
                            log::warn!(
                                "handoff {}: stored, neither confirmed nor withdrawn within {} s ({err}); it runs",
                                e.request_id,
                                SUBMIT_DEADLINE.as_secs()
                            );
                            Ok(Ok(claimed))
                        }
                        None => Err(err),
                    };
                }
                log::debug!(
                    "handoff {}: outcome unknown ({err}); checking again",
                    e.request_id
                );
                std::thread::sleep(RECHECK_PAUSE.min(deadline - Instant::now()));
            }
        }
        retry = true;
    }
}

/// One try: HANDOFF and `WAIT` in one round trip, then the withdrawal if too few confirmed.
/// `retry`: an earlier try's outcome was unknown, so any failure leaves it unknown.
fn try_once(inner: &Inner, link: &mut Link, e: &NewEvent, retry: bool) -> Step {
    let fail = |err: StoreError| match retry {
        true => Step::Unknown(err, None),
        false => Step::Done(Err(err)),
    };
    // Connected first: a new connection reads the replicas, which decide what is waited for.
    if let Err(err) = link.call("handoff (connect)", |_| Ok(())) {
        return fail(err);
    }
    let wanted = wanted(inner, link);
    let mut cmd = inner.command(&scripts().handoff, now_ms());
    push_submission(&mut cmd, e);
    let trip = Trip {
        release: None,
        script: &scripts().handoff,
        submit: &cmd,
        wait: wait_for(wanted),
        key: &inner.stream,
    };
    let (reply, confirmed) = match link.call_blocking("handoff", blocks(wanted), |c| trip.run(c)) {
        Ok(replies) => replies,
        Err(err) if unknown(link, &err) => return Step::Unknown(err, None),
        Err(err) => return fail(err),
    };
    let claimed = match parse(e, &reply) {
        Ok(Ok(claimed)) => claimed,
        other => return Step::Done(other),
    };
    if confirmed >= u64::from(wanted) {
        return Step::Done(Ok(Ok(claimed)));
    }
    let mut unhand = inner.command(&scripts().unhand, now_ms());
    unhand.arg(&e.request_id).arg(&claimed.lease);
    match link.call("handoff (withdraw)", |c| {
        eval(c, &scripts().unhand, &unhand)
    }) {
        Ok(v) if will_not_run(&v) => {
            log::warn!(
                "{confirmed} of {wanted} replica(s) confirmed handoff {} within {} ms: withdrawn, not forwarded (async.redis_min_replicas)",
                e.request_id,
                super::submit::REPLICA_WAIT.as_millis()
            );
            Step::Done(Err(StoreError::NotReplicated { wanted, confirmed }))
        }
        // No longer the handoff this call stored (taken over, and running elsewhere): it runs,
        // so it is answered as an event that exists, and not forwarded here.
        Ok(_) => Step::Done(Ok(Err(Box::new(claimed.event)))),
        Err(err) => Step::Unknown(err, Some(claimed)),
    }
}

/// A HANDOFF reply: `{0, event, lease}` stored and claimed, `{1, event}` the id exists.
fn parse(e: &NewEvent, reply: &Value) -> HandOff {
    let items = array("handoff", reply)?;
    let stored = items.get(1).map(|v| event("handoff", v)).transpose()?;
    match (
        items.first().and_then(num),
        stored,
        items.get(2).and_then(text),
    ) {
        (Some(0), Some(stored), Some(lease)) => {
            let mut claimed = Claimed::of_handoff(e, lease);
            claimed.event = stored;
            Ok(Ok(claimed))
        }
        (Some(1), Some(existing), _) => Ok(Err(Box::new(existing))),
        _ => Err(StoreError::RedisReply {
            op: "handoff",
            detail: format!("{reply:?}"),
        }),
    }
}
