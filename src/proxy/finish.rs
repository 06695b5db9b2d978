//! How an exchange ends, in one place: what it holds of the function's side given back (its
//! connection pooled or closed, its in-flight count, its slot or its place in the queue, its
//! body budget share), its outcome recorded once (the metrics and the FC Invoke End line,
//! whose Start line [`log_start`] queued), and, for a failure, fc-init's own answer or — once
//! the function's answer has started — the connection's close.

use crate::http::fc_error::ErrorType;
use crate::metrics::Outcome;

use super::client::{self, Client, Gone, Phase};
use super::cx::Cx;
use super::errors::Failure;
use super::exchange::{Exchange, Reading, Writing};

/// Gives back what the phase `left` holds of the function's side: its connection (pooled
/// when `reusable`), then its in-flight count and slot (in that order: [`Admitted`]'s
/// fields), or its place in the queue; and the buffered body's share of the budget.
///
/// [`Admitted`]: super::exchange::Admitted
pub(super) fn release(cx: &mut Cx, left: Phase, ex: &mut Exchange, reusable: bool) {
    match left {
        Phase::Forward(fw) => {
            if let Some(w) = &fw.wire {
                cx.release_fn(w.f, reusable);
            }
        }
        Phase::Upgraded(up) => cx.release_fn(up.f, false),
        _ => {}
    }
    // The buffered body is out (or will never go): its share of the budget comes back.
    ex.reserved = None;
}

/// Fails the exchange (the one place): fc-init's own answer when nothing of the function's
/// has been sent yet, else a close; the outcome, and so the metrics and the End line.
/// `Ok` when the connection goes on with the answer (it delivers it), `Err(Gone)` when it
/// is to be closed (nothing more can be said).
pub(super) fn fail(cx: &mut Cx, c: &mut Client, failure: Failure) -> Result<(), Gone> {
    let p = cx.p;
    let left = std::mem::replace(&mut c.phase, Phase::Deliver);
    let started = match &left {
        Phase::Forward(fw) => fw.answer_started(),
        Phase::Upgraded(_) => true,
        _ => false,
    };
    let Some(ex) = c.ex.as_deref_mut() else {
        return Err(Gone);
    };
    let answer = failure.answer(ex.invocation());
    let error = answer
        .as_ref()
        .map_or(ErrorType::UnhandledInvocationError, |a| a.error);
    let error = match &failure {
        Failure::Timeout => ErrorType::FunctionTimeout,
        _ => error,
    };
    ex.outcome = Some(match failure.client_gone() {
        true => Outcome::ClientClosed,
        false => Outcome::Error(error),
    });
    log::debug!("request {}: {failure}", ex.request_id);
    // The request stops counting before the answer is written.
    release(cx, left, ex, false);
    conclude(cx, ex);
    let Some(a) = answer.filter(|_| !started) else {
        // Nothing can be said any more: the connection closes.
        return Err(Gone);
    };
    let keep =
        failure.can_continue() && ex.decoder.is_done() && ex.head.keep_alive && !p.stopping();
    let id = Some(ex.request_id.as_str());
    let answer = (a.status, a.error, a.message.as_str());
    // Its phase is Deliver already.
    let _ = client::own_answer(cx, &mut c.io, id, answer, !keep);
    Ok(())
}

/// The function's answer is complete (and at most a buffer of it is still to be delivered):
/// its slot and its connection are released now, the invocation concluded, and the
/// connection delivers the rest by the exchange's deadline.
pub(super) fn complete(cx: &mut Cx, c: &mut Client) {
    let left = std::mem::replace(&mut c.phase, Phase::Deliver);
    let Some(ex) = c.ex.as_deref_mut() else {
        return;
    };
    let Phase::Forward(fw) = &left else {
        return release(cx, left, ex, false);
    };
    let deadline = fw.held.deadline;
    let reusable = match &fw.wire {
        Some(w) => {
            if let Reading::Body { encoder, .. } = &w.reading {
                encoder.finish(&mut c.io.out);
            }
            ex.resp.keep_alive
                && ex.fn_in.is_empty()
                && !w.fn_eof
                && matches!(w.writing, Writing::Done)
        }
        None => false,
    };
    if !ex.decoder.is_done() {
        c.io.close_after = true;
    }
    release(cx, left, ex, reusable);
    // The invocation is over: what is left is fc-init's delivery.
    conclude(cx, ex);
    client::set_deadline(cx, &mut c.io, deadline);
}

/// The FC Invoke Start line, for an invocation that begins (docs/reference.md §7).
pub(super) fn log_start(cx: &mut Cx, ex: &mut Exchange) {
    if !cx.p.cfg.log.invocations {
        return;
    }
    ex.start_line = Some(cx.lines.start(&ex.request_id));
}

/// Ends a connection's exchange `ex`, if any, which left the phase `left`: what that phase
/// held, its metrics and End line.
pub(super) fn end_exchange(cx: &mut Cx, ex: Option<Box<Exchange>>, left: Phase) {
    let Some(mut ex) = ex else {
        return;
    };
    release(cx, left, &mut ex, false);
    if ex.start_line.is_some() && ex.outcome.is_none() {
        // An invocation that ended without an answer: the client went away.
        ex.outcome = Some(Outcome::ClientClosed);
    }
    conclude(cx, &mut ex);
    cx.recycle(ex);
}

/// Records how the invocation ended, once: its metrics and its End line. Called as soon as
/// the outcome is known (the function's answer complete in the buffers, or fc-init's own
/// answer decided), so both are there before the client can have read the answer.
pub(super) fn conclude(cx: &mut Cx, ex: &mut Exchange) {
    let Some(outcome) = ex.outcome.take() else {
        return;
    };
    cx.p.metrics.record(outcome, ex.started.elapsed());
    if ex.start_line.take().is_some() {
        cx.lines.end(&ex.request_id, outcome);
    }
}

/// The connection is dropped after a panic while handling it: its exchange ends as fc-init's
/// own fault (its End line and metrics), and the function connection it used is closed, not
/// pooled (where its answer stands is unknown).
pub(super) fn abandon(cx: &mut Cx, c: &mut Client) {
    let left = std::mem::replace(&mut c.phase, Phase::Idle);
    // Whatever function connection it used goes, whether or not its phase still said so;
    // then its in-flight count and its slot.
    cx.close_fns_of(c.io.token);
    drop(left);
    let Some(mut ex) = c.ex.take() else {
        return;
    };
    ex.reserved = None;
    if ex.start_line.is_some() || ex.outcome.is_some() {
        ex.outcome = Some(Outcome::InternalError);
    }
    conclude(cx, &mut ex);
}
