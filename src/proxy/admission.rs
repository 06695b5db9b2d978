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
//! Nothing here blocks: a step that must wait returns [`Step::Wait`], and the loop drives the
//! request again when its ticket, a status change or its deadline comes; the phase's own
//! data is [`Admission`], and admission ends in [`Step::Enter`] with the forwarding phase,
//! which owns what it was given ([`Admitted`]).

use crate::config::OnFailure;
use crate::state::{NotReady, Phase as Lifecycle, Status};
use crate::supervisor::Event;

use super::client::{self, Io, Phase, Step};
use super::cx::{Cx, Mail};
use super::errors::Failure;
use super::exchange::{Admission, Admitted, Forwarding, Slot};
use super::limiter::{Admit, Denied, Permit, Ticket};
use super::shared::InFlight;

/// The body is buffered: the request waits for its admission, by `function.timeout` from now.
pub(super) fn enter_admit(cx: &mut Cx, io: &mut Io) -> Step {
    let by = cx.now + cx.p.cfg.function.timeout;
    client::set_deadline(cx, io, by);
    Step::Enter(Phase::Admit(Admission::new(by)))
}

/// Where the instance leaves a request.
pub(super) enum Readiness {
    Ready(u64),
    Wait,
    Refuse(Failure),
}

/// What a request has of its slot once it is past the queue.
enum Got {
    Permit(Permit<'static>),
    /// Admitted before (sent back to wait for the next instance).
    Admitted(Admitted),
}

impl Got {
    fn into_slot(self) -> Slot {
        match self {
            Got::Permit(p) => Slot::Held(p),
            Got::Admitted(a) => Slot::Admitted(a),
        }
    }
}

/// Admission, in the contract's order; then the exchange starts.
pub(super) fn admit(cx: &mut Cx, io: &mut Io, adm: &mut Admission) -> Step {
    let p = cx.p;
    let t = io.token;
    if p.stopping() {
        return Step::Fail(stopped(cx));
    }
    let got = match std::mem::replace(&mut adm.slot, Slot::None) {
        Slot::None => {
            let handle = cx.handle.clone();
            let admitted = p
                .limiter
                .acquire(|| Ticket::new(move || handle.push(Mail::Granted(t))));
            match admitted {
                Ok(Admit::Now(permit)) => Got::Permit(permit),
                Ok(Admit::Queued(queued)) => {
                    adm.slot = Slot::Queued(queued);
                    return Step::Wait;
                }
                Err(d) => return Step::Fail(denied(cx, d)),
            }
        }
        Slot::Queued(queued) => match queued.take() {
            None => {
                adm.slot = Slot::Queued(queued);
                return Step::Wait;
            }
            Some(Ok(permit)) => Got::Permit(permit),
            Some(Err(d)) => return Step::Fail(denied(cx, d)),
        },
        Slot::Held(permit) => Got::Permit(permit),
        Slot::Admitted(held) => Got::Admitted(held),
    };
    let instance = match readiness(cx, adm) {
        Readiness::Ready(i) => i,
        Readiness::Wait => {
            adm.slot = got.into_slot();
            if !adm.waiting_status {
                adm.waiting_status = true;
                cx.status_waiters.push(t);
            }
            return Step::Wait;
        }
        Readiness::Refuse(f) => {
            adm.slot = got.into_slot();
            return Step::Fail(f);
        }
    };
    let held = match got {
        Got::Admitted(held) => held,
        Got::Permit(permit) => match InFlight::enter(p) {
            Some(g) => Admitted::new(g, permit, cx.now + p.cfg.function.timeout),
            None => return Step::Fail(stopped(cx)),
        },
    };
    client::set_deadline(cx, io, held.deadline);
    Step::Enter(Phase::Forward(Forwarding::new(held, adm.by, instance)))
}

/// Why the limiter gave no slot.
fn denied(cx: &Cx, d: Denied) -> Failure {
    match d {
        Denied::Full => Failure::QueueFull,
        Denied::Closed => stopped(cx),
    }
}

/// Whether the instance can take the request now.
pub(super) fn readiness(cx: &Cx, adm: &mut Admission) -> Readiness {
    let p = cx.p;
    let (phase, instance) = p.shared.phase_and_instance();
    if phase == Lifecycle::Ready && adm.next_instance_of.is_none() {
        return Readiness::Ready(instance);
    }
    let s = p.shared.snapshot();
    let waiting = |s: &Status| matches!(s.phase, Lifecycle::Starting | Lifecycle::Initializing);
    if let Some((old, failure)) = adm.next_instance_of.take() {
        // A new instance, once it is up (or fc-init stops).
        if s.phase != Lifecycle::Stopping && (s.instance == old || waiting(&s)) {
            adm.next_instance_of = Some((old, failure));
            return Readiness::Wait;
        }
        if s.phase == Lifecycle::Ready {
            return Readiness::Ready(s.instance);
        }
        return Readiness::Refuse(failure);
    }
    if let Some(seen) = adm.init_seen {
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
        adm.init_seen = Some(s.initializer_failures);
        p.events.send(Event::InitRequested);
        return Readiness::Wait;
    }
    decide(&s)
}

/// A deadline of a request waiting for its admission passed (or an earlier wake-up came).
pub(super) fn on_deadline(cx: &mut Cx, io: &mut Io, adm: &mut Admission) -> Step {
    if cx.now < adm.by {
        if let Some((old, _)) = &adm.next_instance_of {
            if cx.p.shared.phase_and_instance() == (Lifecycle::Ready, *old) {
                // The instance outlived the pause after a reset: it is alive, try it again.
                adm.next_instance_of = None;
            }
        }
        // An earlier wake-up (a retry, the pause after a reset): the admission's own
        // deadline is next.
        client::set_deadline(cx, io, adm.by);
        return Step::Progress;
    }
    if let Slot::Queued(queued) = &adm.slot {
        // A slot handed over just now still counts; else the wait is over.
        match queued.take() {
            Some(Ok(permit)) => adm.slot = Slot::Held(permit),
            Some(Err(_)) => {
                adm.slot = Slot::None;
                return admit(cx, io, adm);
            }
            None => return Step::Fail(Failure::QueueTimeout),
        }
    }
    if let Some((_, failure)) = adm.next_instance_of.take() {
        return Step::Fail(failure);
    }
    match decide(&cx.p.shared.snapshot()) {
        Readiness::Refuse(f) => Step::Fail(f),
        _ => admit(cx, io, adm),
    }
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
