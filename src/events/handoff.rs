//! The handoff's durable side (docs/reference.md §10 "Handoff"): a synchronous request with
//! `Prefer: respond-async, wait=N` is stored as an event RUNNING and held by this instance
//! (one store write: [`Backend::hand_off`]) before it is forwarded, then runs at once as one
//! attempt through fc-init's own listener, exactly as a synchronous request (the slot and its
//! queue, the wait for an instance, `function.timeout`, FC Invoke lines and metrics).
//!
//! Who has the last word is decided once ([`Race`]): if the attempt ends while the client
//! still waits, the client gets its whole answer and the event ends with it (FINISHED, or
//! FAILED for a failed attempt — the client has the answer, so it is not retried); once the
//! event loop has answered `202` (the wait is over) or the client is gone, the attempt is an
//! asynchronous one like any other ([`AsyncService::settle`]: retries, results, destinations).
//! An instance that dies meanwhile leaves the event RUNNING in the store, where it is
//! recovered as any started event is (SQLite: at the next start; Redis: by the takeover).
//!
//! Threads: the store write and the attempt block, so each handoff runs on a thread of its
//! own, as the workers' attempts do; the event loop only waits for its mail ([`Handed`]) and
//! never calls the store. The thread is what outlives the client: it is the detached part.
//!
//! Failure modes: a store that cannot take the event answers the client as an asynchronous
//! submission would be (503 `AsyncStoreUnavailable`, ...) and nothing is forwarded; an answer
//! too large to hand over whole ([`AsyncService::hand_off`]'s `whole`) and an attempt cut by
//! the shutdown leave the client with `202` and the event to go on (or run again).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::attempt::Attempt;
use super::backend::Backend;
use super::error::StoreError;
use super::model::{Outcome, Status, StoredAnswer, StoredRequest, Submitted};
use super::service::AsyncService;
use super::signal::lock;
use super::time::now_ms;
use crate::state::Phase;

/// Handoff threads need little stack: one blocking exchange with the listener.
const STACK: usize = 256 * 1024;
/// Idle connections to the listener kept for later handoffs, at most.
const POOLED: usize = 64;

/// What a handoff's thread tells the event loop that holds its client.
pub enum Handed {
    /// Stored and started: the client's wait counts from now.
    Running,
    /// Nothing was started: the id was stored already (`Ok`), or the store failed; the client
    /// is answered as an asynchronous submission with that result would be.
    NotStored(Result<Submitted, StoreError>),
    /// The attempt ended while the client waited: its whole answer (`Err`: no answer came,
    /// with why), and the event has ended with it.
    Answered(Result<StoredAnswer, String>),
    /// The answer cannot be the client's (too large to hand over whole, or cut by the
    /// shutdown): `202`, and the event goes on.
    Accepted,
}

/// Who answers a handoff's client, decided once: the attempt (its answer) or the event loop
/// (`202` when the wait is over, or nobody when the client is gone).
#[derive(Debug, Default)]
pub struct Race(AtomicU8);

const OPEN: u8 = 0;
const ANSWERED: u8 = 1;
const DETACHED: u8 = 2;

impl Race {
    /// The attempt's answer goes to the client; false when the loop decided first.
    pub fn answer(&self) -> bool {
        self.0
            .compare_exchange(OPEN, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The client gets `202` (or is gone) and the attempt goes on detached; false when the
    /// attempt's answer is on its way to the client already.
    pub fn detach(&self) -> bool {
        self.0
            .compare_exchange(OPEN, DETACHED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// A client waiting for its handoff, kept with its request by the event loop.
pub struct Waiter {
    /// How long it waits once the event is stored.
    pub wait: Duration,
    pub race: Arc<Race>,
    /// When the wait is over: set once the event is stored.
    pub due: Option<Instant>,
}

impl Waiter {
    pub fn new(wait: Duration, race: Race) -> Waiter {
        Waiter {
            wait,
            race: Arc::new(race),
            due: None,
        }
    }
}

impl Drop for Waiter {
    /// The client is gone (or answered): whatever the attempt does now, it does detached.
    fn drop(&mut self) {
        self.race.detach();
    }
}

/// Hands a [`Handed`] to the event loop (it must not block).
pub type Mailer = Box<dyn Fn(Handed) + Send>;

impl AsyncService {
    /// Starts the handoff of request `request_id` on a thread of its own; `whole` is the
    /// largest answer body handed over to the client whole. `Err` when no thread could be
    /// started (nothing was stored).
    pub fn hand_off(
        self: &Arc<Self>,
        request_id: &str,
        request: StoredRequest,
        race: Arc<Race>,
        whole: usize,
        mail: Mailer,
    ) -> std::io::Result<()> {
        let me = self.clone();
        let id = request_id.to_owned();
        std::thread::Builder::new()
            .name("fc-init-handoff".into())
            .stack_size(STACK)
            .spawn(move || me.handoff(id, request, &race, whole, &mail))
            .map(|_| ())
    }

    fn handoff(
        &self,
        id: String,
        request: StoredRequest,
        race: &Race,
        whole: usize,
        mail: &Mailer,
    ) {
        // Held before it is stored RUNNING, so that a reconcile meanwhile leaves it alone.
        let held = lock(&self.held).insert(id.clone());
        self.handoff_held(&id, request, race, whole, mail);
        if held {
            lock(&self.held).remove(&id);
        }
    }

    fn handoff_held(
        &self,
        id: &str,
        request: StoredRequest,
        race: &Race,
        whole: usize,
        mail: &Mailer,
    ) {
        let mut event = self.new_event(id, request);
        // A delay means nothing to a request that runs now.
        event.not_before = None;
        event.claimed_at = Some(event.submit_time);
        let claimed = match Backend::hand_off(&*self.store, event) {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(existing)) => {
                return mail(Handed::NotStored(Ok(Submitted::AlreadyExists(existing))))
            }
            Err(e) => return mail(Handed::NotStored(Err(e))),
        };
        log::debug!("handoff {id}: stored, running");
        mail(Handed::Running);
        let kills = self.kills.load(Ordering::Acquire);
        let mut conn = lock(&self.handoff_conns).pop();
        let (result, answer, full) =
            self.sender
                .send_keeping(id, &claimed.request, &mut conn, whole);
        if let Some(conn) = conn {
            let mut pool = lock(&self.handoff_conns);
            if pool.len() < POOLED {
                pool.push(conn);
            }
        }
        let failed = matches!(result, Attempt::Failed { .. });
        let for_client = match (full, &result) {
            // An operator's graceful terminate ends it as the workers end theirs.
            _ if lock(&self.graceful).contains(id) => None,
            // Cut by the shutdown: it runs again, as a worker's attempt would.
            _ if failed && self.shared.phase() == Phase::Stopping => None,
            (Some(full), _) => Some(Ok(full)),
            (
                None,
                Attempt::Failed {
                    status: None,
                    message,
                    ..
                },
            ) => Some(Err(message.clone())),
            // Too large to hand over whole.
            (None, _) => None,
        };
        match for_client {
            Some(for_client) if race.answer() => {
                let outcome = final_outcome(result, answer, now_ms());
                self.record(id, || self.store.finish(&claimed, &outcome));
                mail(Handed::Answered(for_client));
            }
            for_client => {
                if for_client.is_none() && race.detach() {
                    mail(Handed::Accepted);
                }
                log::debug!("handoff {id}: the attempt ended after the client's wait");
                self.settle(&claimed, result, answer, kills);
            }
        }
    }
}

/// How a handoff's event ends when its client got the answer: FINISHED, or FAILED without a
/// retry (the client has the answer and acts on it).
fn final_outcome(result: Attempt, answer: Option<StoredAnswer>, end: u64) -> Outcome {
    match result {
        Attempt::Succeeded { status } => Outcome {
            status: Status::Finished,
            status_code: Some(status),
            error_type: None,
            error_message: None,
            end,
            answer,
        },
        Attempt::Failed {
            status,
            error_type,
            message,
        } => Outcome {
            status: Status::Failed,
            status_code: status,
            error_type: Some(error_type),
            error_message: Some(message),
            end,
            answer,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_race_is_decided_once() {
        let r = Race::default();
        assert!(r.answer());
        assert!(!r.detach());
        assert!(!r.answer());
        let r = Race::default();
        assert!(r.detach());
        assert!(!r.answer());
        assert!(!r.detach());
    }

    #[test]
    fn a_failed_attempt_the_client_saw_ends_failed_without_a_retry() {
        let failed = Attempt::Failed {
            status: Some(500),
            error_type: "FunctionError".into(),
            message: "no".into(),
        };
        let o = final_outcome(failed, None, 7);
        assert_eq!(
            (o.status, o.status_code, o.end),
            (Status::Failed, Some(500), 7)
        );
        let o = final_outcome(Attempt::Succeeded { status: 200 }, None, 7);
        assert_eq!(o.status, Status::Finished);
    }
}
