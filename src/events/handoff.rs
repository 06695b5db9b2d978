//! The handoff's durable side (docs/reference.md §10 "Handoff"): a synchronous request with
//! `Prefer: respond-async, wait=N` is stored as an event RUNNING and held by this instance
//! (one store write: [`Backend::hand_off`]) before it is forwarded, then runs at once as one
//! attempt through fc-init's own listener, exactly as a synchronous request (the slot and its
//! queue, the wait for an instance, `function.timeout`, FC Invoke lines and metrics).
//!
//! Who has the last word is decided once, when the answer's head comes ([`Race`]): while the
//! client still waits, the answer is its, streamed as it comes (at most [`WINDOW`] bytes ahead
//! of what the client has taken: [`Flow`]), and the event ends with it (FINISHED, or FAILED
//! for a failed attempt — the client has the answer, so it is not retried); once the event
//! loop has answered `202` (the wait is over) or the client is gone, the attempt is an
//! asynchronous one like any other ([`AsyncService::settle`]: retries, results, destinations).
//! An instance that dies meanwhile leaves the event RUNNING in the store, where it is
//! recovered as any started event is (SQLite: at the next start; Redis: by the takeover).
//!
//! Threads: the store write and the attempt block, so each handoff runs on a thread of its
//! own, as the workers' attempts do; the event loop only takes its mail ([`Handed`]) and never
//! calls the store. The thread is what outlives the client: it is the detached part.
//!
//! Failure modes: a store that cannot take the event answers the client as an asynchronous
//! submission would be (503 `AsyncStoreUnavailable`, ...) and nothing is forwarded; an attempt
//! cut by the shutdown, or terminated gracefully, before its answer leaves the client with
//! `202` and the event to go on (or run again); a client that has not taken its answer by
//! `function.timeout` is let go, and the event ends FAILED with the cut answer, as it does
//! when the function cut it.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::attempt::{end_to_end, Attempt};
use super::backend::Backend;
use super::error::StoreError;
use super::model::{Outcome, Status, StoredAnswer, StoredRequest, Submitted};
use super::service::AsyncService;
use super::signal::lock;
use super::time::now_ms;
use crate::http::codec::Encoder;
use crate::http::BodyFraming;
use crate::state::Phase;

/// Handoff threads need little stack: one blocking exchange with the listener.
const STACK: usize = 256 * 1024;
/// Idle connections to the listener kept for later handoffs, at most.
const POOLED: usize = 64;
/// How far the streamed answer may run ahead of what the client has taken.
pub const WINDOW: u64 = 256 * 1024;

/// What a handoff's thread tells the event loop that holds its client.
pub enum Handed {
    /// Stored and started: the client's wait counts from now.
    Running,
    /// Nothing was started: the id was stored already (`Ok`), or the store failed; the client
    /// is answered as an asynchronous submission with that result would be.
    NotStored(Result<Submitted, StoreError>),
    /// The answer has begun while the client waited: it is the client's. Its body follows.
    Head(Head),
    Body(Vec<u8>),
    /// The answer is complete (`true`), or was cut (`false`); the event has ended with it.
    End(bool),
    /// No answer came (fc-init's own listener could not be reached): why. The event has
    /// ended FAILED.
    NoAnswer(String),
    /// The answer will not be the client's (the shutdown cut the attempt, or an operator
    /// terminated it gracefully): `202`, and the event goes on.
    Accepted,
}

/// The head of an answer handed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// End-to-end fields (framing and connection fields dropped).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's length when the answer said it (`Content-Length`).
    pub length: Option<u64>,
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

/// How far a streamed answer has gone: the thread mails body bytes only while fewer than
/// [`WINDOW`] of them wait for the client.
#[derive(Debug, Default)]
pub struct Flow {
    state: Mutex<FlowState>,
    moved: Condvar,
}

#[derive(Debug, Default)]
struct FlowState {
    mailed: u64,
    delivered: u64,
    gone: bool,
}

impl Flow {
    /// The event loop: `total` body bytes have reached the client.
    pub fn delivered(&self, total: u64) {
        let mut s = lock(&self.state);
        if total > s.delivered {
            s.delivered = total;
            self.moved.notify_all();
        }
    }

    /// The event loop: the client is gone; nothing more is mailed.
    fn gone(&self) {
        lock(&self.state).gone = true;
        self.moved.notify_all();
    }

    /// The thread: waits for room to mail `n` more bytes, and counts them; false when the
    /// client is gone or took nothing until `deadline`.
    fn take(&self, n: u64, deadline: Instant) -> bool {
        let mut s = lock(&self.state);
        while !s.gone && s.mailed - s.delivered >= WINDOW {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .moved
                .wait_timeout(s, left)
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
        s.mailed += n;
        !s.gone
    }
}

/// What the thread and the event loop share of one handoff.
#[derive(Debug, Default)]
pub struct Link {
    pub race: Race,
    pub flow: Flow,
}

/// A client waiting for its handoff, kept with its request by the event loop.
pub struct Waiter {
    /// How long it waits once the event is stored.
    pub wait: Duration,
    pub link: Arc<Link>,
    /// When the wait is over: set once the event is stored.
    pub due: Option<Instant>,
    /// The answer is the client's: how its body is framed, and how much of it was queued.
    pub streaming: Option<(Encoder, u64)>,
}

impl Waiter {
    pub fn new(wait: Duration) -> Waiter {
        Waiter {
            wait,
            link: Arc::default(),
            due: None,
            streaming: None,
        }
    }
}

impl Drop for Waiter {
    /// The client is gone (or answered): whatever the attempt does now, it does detached.
    fn drop(&mut self) {
        self.link.race.detach();
        self.link.flow.gone();
    }
}

/// The body of an answer streamed to the client, as mail.
struct Streamer<'a> {
    link: &'a Link,
    mail: &'a Mailer,
    /// A client that takes nothing for this long is let go.
    deadline: Instant,
}

impl Write for Streamer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.link.flow.take(buf.len() as u64, self.deadline) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        (self.mail)(Handed::Body(buf.to_vec()));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hands a [`Handed`] to the event loop (it must not block).
pub type Mailer = Box<dyn Fn(Handed) + Send>;

impl AsyncService {
    /// Starts the handoff of request `request_id` on a thread of its own. `Err` when no thread
    /// could be started (nothing was stored).
    pub fn hand_off(
        self: &Arc<Self>,
        request_id: &str,
        request: StoredRequest,
        link: Arc<Link>,
        mail: Mailer,
    ) -> io::Result<()> {
        let me = self.clone();
        let id = request_id.to_owned();
        std::thread::Builder::new()
            .name("fc-init-handoff".into())
            .stack_size(STACK)
            .spawn(move || me.handoff(id, request, &link, &mail))
            .map(|_| ())
    }

    fn handoff(&self, id: String, request: StoredRequest, link: &Link, mail: &Mailer) {
        // Held before it is stored RUNNING, so that a reconcile meanwhile leaves it alone.
        let held = lock(&self.held).insert(id.clone());
        self.handoff_held(&id, request, link, mail);
        if held {
            lock(&self.held).remove(&id);
        }
    }

    fn handoff_held(&self, id: &str, request: StoredRequest, link: &Link, mail: &Mailer) {
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
        let mut streamed = false;
        let deadline = Instant::now() + self.cfg.function.timeout * 2 + Duration::from_secs(10);
        let (result, answer, whole) =
            self.sender
                .send_streaming(id, &claimed.request, &mut conn, &mut |head| {
                    let own = head.header("x-fc-error-type").is_some();
                    if self.goes_on(id, own) || !link.race.answer() {
                        return None;
                    }
                    streamed = true;
                    mail(Handed::Head(Head {
                        status: head.status,
                        headers: end_to_end(head),
                        length: match head.framing {
                            BodyFraming::Length(n) => Some(n),
                            BodyFraming::None => Some(0),
                            _ => None,
                        },
                    }));
                    let streamer = Streamer {
                        link,
                        mail,
                        deadline,
                    };
                    Some(Box::new(streamer) as Box<dyn Write + '_>)
                });
        if let Some(conn) = conn {
            let mut pool = lock(&self.handoff_conns);
            if pool.len() < POOLED {
                pool.push(conn);
            }
        }
        let no_answer = match &result {
            Attempt::Failed {
                status: None,
                message,
                ..
            } if !streamed && !self.goes_on(id, true) => Some(message.clone()),
            _ => None,
        };
        if streamed || no_answer.as_ref().is_some_and(|_| link.race.answer()) {
            let result = match result {
                // The answer's body was cut (the exchange hit function.timeout, or the
                // function's connection broke): the client saw it fail, and so does the event.
                Attempt::Succeeded { status } if streamed && !whole => Attempt::Failed {
                    status: Some(status),
                    error_type: "UnhandledInvocationError".into(),
                    message: "the answer was cut before its end".into(),
                },
                other => other,
            };
            let outcome = final_outcome(result, answer, now_ms());
            self.record(id, || self.store.finish(&claimed, &outcome));
            mail(match no_answer {
                Some(message) => Handed::NoAnswer(message),
                None => Handed::End(whole),
            });
            return;
        }
        if link.race.detach() {
            mail(Handed::Accepted);
        }
        log::debug!("handoff {id}: the attempt ended after the client's wait");
        self.settle(&claimed, result, answer, kills);
    }

    /// Whether an attempt of `id` that got this far (`own`: fc-init's own answer, or none)
    /// must go on as an asynchronous one rather than end with its client: an operator's
    /// graceful terminate, which the workers' rules end; a shutdown that cut it, which
    /// makes it run again.
    fn goes_on(&self, id: &str, own: bool) -> bool {
        lock(&self.graceful).contains(id) || (own && self.shared.phase() == Phase::Stopping)
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
    fn the_stream_waits_for_the_client_and_stops_when_it_is_gone() {
        let flow = Arc::new(Flow::default());
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(flow.take(WINDOW, soon));
        // The window is full: nothing more until the client takes some, or the deadline.
        assert!(!flow.take(1, soon));
        flow.delivered(WINDOW);
        assert!(flow.take(WINDOW, Instant::now() + Duration::from_secs(5)));
        // Full again: a waiting thread is let go when the client is gone.
        let f = flow.clone();
        let waiting =
            std::thread::spawn(move || f.take(WINDOW, Instant::now() + Duration::from_secs(30)));
        flow.gone();
        assert!(!waiting.join().unwrap());
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
