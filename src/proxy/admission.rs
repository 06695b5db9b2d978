//! Admission of a request whose body is buffered, in the contract's order: fc-init is not
//! stopping, a concurrency slot is free (or the request waits in the limiter's FIFO queue,
//! `max_queue` long, woken by its ticket), the instance is initialized (or the request waits,
//! woken by the supervisor's `Notice::Changed`; under `next-request` it asks for one attempt
//! and waits for its outcome), then it counts as in flight. All of it within
//! `function.timeout` from the request's arrival; what a request that can wait no longer gets
//! is [`Status::not_ready`]'s, the one rule (`InitializationError` with the reason, or
//! `InstanceStopping`). The same wait serves a request whose instance vanished under it: it
//! goes to the next instance once that one is ready.
//!
//! Nothing here blocks: a step that must wait returns, and the loop drives the request again
//! when its ticket, a status change or its deadline comes.

use crate::config::OnFailure;
use crate::state::{NotReady, Phase as Lifecycle, Status};
use crate::supervisor::Event;

use super::client::{self, Client, Flow, Phase};
use super::cx::{Cx, Mail};
use super::errors::Failure;
use super::exchange::{Exchange, Slot};
use super::finish::fail;
use super::limiter::{Admit, Denied, Ticket};
use super::shared::InFlight;

/// The body is buffered: the request waits for its admission.
pub(super) fn enter_admit(cx: &mut Cx, c: &mut Client) {
    let Some(ex) = c.ex.as_mut() else {
        return;
    };
    ex.admit_deadline = cx.now + cx.p.cfg.function.timeout;
    let deadline = ex.admit_deadline;
    c.phase = Phase::Admit;
    client::set_deadline(cx, c, deadline);
}

/// Where the instance leaves a request.
pub(super) enum Readiness {
    Ready(u64),
    Wait,
    Refuse(Failure),
}

/// Admission, in the contract's order; then the exchange starts.
pub(super) fn admit(cx: &mut Cx, c: &mut Client) -> Flow {
    let p = cx.p;
    let t = c.token;
    let ex = c.ex.as_mut().expect("a request is being admitted");
    if p.stopping() {
        return fail(cx, c, stopped(cx));
    }
    if !matches!(ex.slot, Slot::Held(_)) {
        let taken = match &ex.slot {
            Slot::Queued(queued) => match queued.take() {
                None => return Ok(false),
                Some(r) => r,
            },
            _ => {
                let handle = cx.handle.clone();
                let admitted = p
                    .limiter
                    .acquire(|| Ticket::new(move || handle.push(Mail::Granted(t))));
                match admitted {
                    Ok(Admit::Now(permit)) => Ok(permit),
                    Ok(Admit::Queued(queued)) => {
                        ex.slot = Slot::Queued(queued);
                        return Ok(false);
                    }
                    Err(d) => Err(d),
                }
            }
        };
        ex.slot = Slot::None;
        match taken {
            Ok(permit) => ex.slot = Slot::Held(permit),
            Err(Denied::Full) => return fail(cx, c, Failure::QueueFull),
            Err(Denied::Closed) => return fail(cx, c, stopped(cx)),
        }
    }
    let instance = match readiness(cx, ex) {
        Readiness::Ready(i) => i,
        Readiness::Wait => {
            if !ex.waiting_status {
                ex.waiting_status = true;
                cx.status_waiters.push(t);
            }
            return Ok(false);
        }
        Readiness::Refuse(f) => return fail(cx, c, f),
    };
    if ex.in_flight.is_none() {
        match InFlight::enter(p) {
            Some(g) => ex.in_flight = Some(g),
            None => return fail(cx, c, stopped(cx)),
        }
        ex.deadline = cx.now + p.cfg.function.timeout;
    }
    ex.instance = instance;
    let deadline = ex.deadline;
    c.phase = Phase::Forward;
    client::set_deadline(cx, c, deadline);
    Ok(true)
}

/// Whether the instance can take the request now.
pub(super) fn readiness(cx: &Cx, ex: &mut Exchange) -> Readiness {
    let p = cx.p;
    let (phase, instance) = p.shared.phase_and_instance();
    if phase == Lifecycle::Ready && ex.next_instance_of.is_none() {
        return Readiness::Ready(instance);
    }
    let s = p.shared.snapshot();
    let waiting = |s: &Status| matches!(s.phase, Lifecycle::Starting | Lifecycle::Initializing);
    if let Some((old, _)) = &ex.next_instance_of {
        // A new instance, once it is up (or fc-init stops).
        if s.phase != Lifecycle::Stopping && (s.instance == *old || waiting(&s)) {
            return Readiness::Wait;
        }
        let (_, failure) = ex.next_instance_of.take().expect("checked above");
        if s.phase == Lifecycle::Ready {
            return Readiness::Ready(s.instance);
        }
        return Readiness::Refuse(failure);
    }
    if let Some(seen) = ex.init_seen {
        if matches!(s.phase, Lifecycle::Ready | Lifecycle::Stopping)
            || s.initializer_failures > seen
        {
            return decide(&s);
        }
        return Readiness::Wait;
    }
    if waiting(&s) {
        return Readiness::Wait;
    }
    let next_request = p
        .cfg
        .initializer
        .as_ref()
        .is_some_and(|i| i.on_failure == OnFailure::NextRequest);
    if s.phase == Lifecycle::Failed && next_request {
        // `next-request`: this request triggers one attempt and waits for its outcome.
        ex.init_seen = Some(s.initializer_failures);
        p.events.send(Event::InitRequested);
        return Readiness::Wait;
    }
    decide(&s)
}

/// What a request gets that fc-init's shutdown sent away: `InstanceStopping`, unless the
/// shutdown is because the instance could not be initialized (`on_failure = "exit"`), then
/// `InitializationError` — the one rule of [`Status::not_ready`].
pub(super) fn stopped(cx: &Cx) -> Failure {
    match decide(&cx.p.shared.snapshot()) {
        Readiness::Refuse(f) => f,
        _ => Failure::Stopping,
    }
}

/// What a request that can wait no longer gets (the one rule: `Status::not_ready`).
pub(super) fn decide(s: &Status) -> Readiness {
    match s.not_ready() {
        None => Readiness::Ready(s.instance),
        Some(NotReady::Stopping) => Readiness::Refuse(Failure::Stopping),
        Some(NotReady::Initialization(reason)) => {
            Readiness::Refuse(Failure::Initialization(reason))
        }
    }
}
