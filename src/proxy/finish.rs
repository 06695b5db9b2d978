//! How an exchange ends, in one place: what it holds of the function's side given back (its
//! connection pooled or closed, its in-flight count, its slot or its place in the queue, its
//! body budget share), its outcome recorded once (the metrics and the FC Invoke End line,
//! whose Start line [`log_start`] queued), and, for a failure, fc-init's own answer or — once
//! the function's answer has started — the connection's close.

use crate::metrics::Outcome;

use super::client::{self, Client, Flow, Gone};
use super::cx::Cx;
use super::errors::Failure;
use super::exchange::{Exchange, Slot};

/// Gives back what the exchange holds of the function's side: its connection (pooled when
/// `reusable`), then its in-flight count and slot, or its place in the queue.
pub(super) fn release(cx: &mut Cx, ex: &mut Exchange, reusable: bool) {
    if let Some(f) = ex.fnc.take() {
        cx.release_fn(f, reusable);
    }
    ex.in_flight = None;
    // Its slot, or its place in the queue (given up), after the in-flight count.
    ex.slot = Slot::None;
    // The buffered body is out (or will never go): its share of the budget comes back.
    ex.reserved = None;
}

/// Fails the exchange (the one place): fc-init's own answer when nothing of the function's
/// has been sent yet, else a close; the outcome, and so the metrics and the End line. As a
/// step's result: `Ok` when the connection goes on with the answer, `Err(Gone)` when it is
/// to be closed (nothing more can be said).
pub(super) fn fail(cx: &mut Cx, c: &mut Client, failure: Failure) -> Flow {
    let p = cx.p;
    let Some(ex) = c.ex.as_mut() else {
        return Err(Gone);
    };
    let answer = failure.answer(ex.invocation());
    let error = answer.as_ref().map_or(
        crate::http::fc_error::ErrorType::UnhandledInvocationError,
        |a| a.error,
    );
    let error = match &failure {
        Failure::Timeout => crate::http::fc_error::ErrorType::FunctionTimeout,
        _ => error,
    };
    ex.outcome = Some(match failure.client_gone() {
        true => Outcome::ClientClosed,
        false => Outcome::Error(error),
    });
    log::debug!("request {}: {failure}", ex.request_id);
    // The request stops counting before the answer is written.
    release(cx, ex, false);
    conclude(cx, ex);
    let answer = answer.filter(|_| !ex.reading.started());
    let Some(a) = answer else {
        // Nothing can be said any more: the connection closes.
        return Err(Gone);
    };
    let keep =
        failure.can_continue() && ex.decoder.is_done() && ex.head.keep_alive && !p.stopping();
    client::own_answer(cx, c, a.status, a.error, &a.message, !keep);
    Ok(true)
}

/// The FC Invoke Start line, for an invocation that begins (docs/reference.md §7).
pub(super) fn log_start(cx: &mut Cx, c: &mut Client) {
    if !cx.p.cfg.log.invocations {
        return;
    }
    let Some(ex) = c.ex.as_mut() else {
        return;
    };
    ex.start_line = Some(cx.lines.start(&ex.request_id));
}

/// Ends the connection's exchange, if any: its slot and counts, its metrics and End line.
pub(super) fn end_exchange(cx: &mut Cx, c: &mut Client) {
    let Some(mut ex) = c.ex.take() else {
        return;
    };
    release(cx, &mut ex, false);
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
    let Some(mut ex) = c.ex.take() else {
        return;
    };
    release(cx, &mut ex, false);
    if ex.start_line.is_some() || ex.outcome.is_some() {
        ex.outcome = Some(Outcome::InternalError);
    }
    conclude(cx, &mut ex);
}
