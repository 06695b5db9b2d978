//! Group commit of submissions into the SQLite store: many submitters, one transaction (one
//! fsync) per batch, each submitter answered with its own result (see the store's docs,
//! "Group commit"). Blocking submitters lead batches themselves; the asynchronous ones (the
//! event loops) are led by a committer thread that holds the store only weakly.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::params;

use super::rows::{encode_headers, run_tx, select_event, sql_err, sql_int};
use super::Store;
use crate::events::error::StoreError;
use crate::events::model::{valid_request_id, NewEvent, Submitted};
use crate::events::signal::lock;

/// How durable a transaction's commit must be (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// `synchronous=FULL`: fsynced before `COMMIT` returns.
    Full,
    /// `synchronous=NORMAL`: durable with the next FULL commit or checkpoint.
    Relaxed,
}

/// What [`Store::submit_async`] calls with a submission's result.
pub type Completion = Box<dyn FnOnce(Result<Submitted, StoreError>) + Send>;

pub(super) type SubmitResult = Result<Submitted, StoreError>;

/// Runs the completions of a committed batch, outside every lock.
fn run_completions(completions: Vec<(Completion, SubmitResult)>) {
    for (c, result) in completions {
        c(result);
    }
}

impl Store {
    // ---- submissions -----------------------------------------------------------------------

    /// Stores `event` durably, sharing the transaction with concurrent submissions. Returns
    /// once that transaction is committed (fsynced) or failed.
    pub fn submit(&self, event: NewEvent) -> Result<Submitted, StoreError> {
        if !valid_request_id(&event.request_id) {
            return Err(StoreError::InvalidRequestId {
                id: event.request_id,
            });
        }
        let mut state = lock(&self.batch.state);
        let ticket = state.enqueue(event, None);
        state.waiting.insert(ticket, std::thread::current());
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                state.waiting.remove(&ticket);
                return result;
            }
            if !state.leader {
                // Nobody is committing: lead. Our own submission is still queued, because a
                // leader deposits its results before it steps down.
                let completions = self.lead(state);
                run_completions(completions);
                state = lock(&self.batch.state);
                continue;
            }
            drop(state);
            // Spurious wake-ups are fine: the loop looks again.
            std::thread::park();
            state = lock(&self.batch.state);
        }
    }

    /// Queues `event` and returns at once; `completion` gets the result once the transaction
    /// that holds the event is committed (fsynced) or failed. Never a false success: an event
    /// that cannot be committed (the committer thread cannot start, the store is dropped with
    /// it still queued) completes with an error.
    ///
    /// `completion` runs on the committer thread (or on a thread in [`Store::submit`] that led
    /// the batch): it must be quick and must not block (hand the result over and return).
    pub fn submit_async(self: &Arc<Self>, event: NewEvent, completion: Completion) {
        if !valid_request_id(&event.request_id) {
            return completion(Err(StoreError::InvalidRequestId {
                id: event.request_id,
            }));
        }
        if let Err(e) = self.committer_started() {
            return completion(Err(e));
        }
        let mut state = lock(&self.batch.state);
        state.enqueue(event, Some(completion));
        // A leader at work takes it with its next batch (see `lead`); else the committer must.
        let wake = !state.leader && state.queue.len() == 1;
        drop(state);
        if wake {
            self.batch.committer.notify_one();
        }
    }

    /// Starts the committer thread once (see [`Store::submit_async`]). It holds the store only
    /// weakly, and only while it commits, so dropping the last `Arc` closes the store.
    fn committer_started(self: &Arc<Self>) -> Result<(), StoreError> {
        let started = self.batch.started.get_or_init(|| {
            let store = Arc::downgrade(self);
            let batcher = self.batch.clone();
            std::thread::Builder::new()
                .name("fc-init-commit".into())
                .spawn(move || committer(&batcher, &store))
                .map(|_| ())
                .map_err(|e| {
                    log::error!("starting the event store's committer thread: {e}");
                    Arc::new(e)
                })
        });
        started
            .clone()
            .map_err(|source| StoreError::Committer { source })
    }

    /// Commits one batch: everything queued now, in one transaction. Called with the batch
    /// lock held and no leader; returns with it released. Threads in [`Store::submit`] get
    /// their results through `results` and are woken; the completions of
    /// [`Store::submit_async`] are returned, to be run by the caller with no lock held.
    fn lead(&self, mut state: MutexGuard<'_, BatchState>) -> Vec<(Completion, SubmitResult)> {
        state.leader = true;
        let queued = std::mem::take(&mut state.queue);
        drop(state);
        let mut batch = Vec::with_capacity(queued.len());
        let mut completions = HashMap::new();
        for q in queued {
            if let Some(c) = q.completion {
                completions.insert(q.ticket, c);
            }
            batch.push((q.ticket, q.event));
        }
        let mut guard = LeaderGuard {
            batcher: &self.batch,
            tickets: batch.iter().map(|(t, _)| *t).collect(),
            completions,
            done: false,
        };
        let results = self.commit_batch(batch);
        guard.done = true;
        let created = results
            .iter()
            .any(|(_, r)| matches!(r, Ok(Submitted::Created)));
        let mut to_run = Vec::with_capacity(guard.completions.len());
        let mut state = lock(&self.batch.state);
        for (ticket, result) in results {
            match guard.completions.remove(&ticket) {
                Some(c) => to_run.push((c, result)),
                None => {
                    state.results.insert(ticket, result);
                }
            }
        }
        state.leader = false;
        let wake = state.to_wake(&guard.tickets);
        let committer = state.next_is_async();
        let idle = state.queue.is_empty();
        drop(state);
        drop(guard);
        if idle {
            self.batch.idle.notify_all();
        }
        // Only the followers whose results are in, and the next leader, are woken: waking
        // every waiter after every commit costs more than the commit at 64 concurrent
        // submitters.
        for thread in wake {
            thread.unpark();
        }
        if committer {
            self.batch.committer.notify_one();
        }
        if created {
            self.work.bump();
        }
        to_run
    }

    /// Inserts a batch in one transaction; one result per ticket.
    fn commit_batch(
        &self,
        batch: Vec<(u64, NewEvent)>,
    ) -> Vec<(u64, Result<Submitted, StoreError>)> {
        if batch.is_empty() {
            return Vec::new();
        }
        self.batch.batches.fetch_add(1, Ordering::Relaxed);
        self.batch
            .submissions
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
        let max_queued = self.opts.max_queued;
        let conn = lock(&self.writer);
        // Read and updated under the writer lock, like every other change of the count.
        let queued_before = self.queued.load(Ordering::Relaxed);
        let outcome = self
            .set_durability(&conn, Durability::Full)
            .map_err(sql_err("submit"))
            .and_then(|()| {
                run_tx(&conn, "submit", |tx| {
                    let mut queued = queued_before;
                    let mut insert = tx.prepare_cached(
                "INSERT INTO events (request_id, status, submit_time, attempts, next_attempt_at, \
                     method, target, headers, body, function_name, qualifier, not_before, \
                     start_time) \
                 VALUES (?1, IIF(?10 IS NULL, 'QUEUED', 'RUNNING'), ?2, IIF(?10 IS NULL, 0, 1), \
                     MAX(?2, COALESCE(?9, 0)), ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (request_id) DO NOTHING",
            )?;
                    let mut results = Vec::with_capacity(batch.len());
                    for (ticket, event) in &batch {
                        // A handoff (`claimed_at`) runs at once: it never waits in the queue.
                        let claimed = event.claimed_at.is_some();
                        let full = !claimed && max_queued != 0 && queued >= max_queued;
                        // One statement for the common new id; the stored event is read only for an
                        // id that exists (also when it came earlier in this batch).
                        let inserted = !full && {
                            let req = &event.request;
                            insert.execute(params![
                                event.request_id,
                                sql_int(event.submit_time),
                                req.method,
                                req.target,
                                encode_headers(&req.headers),
                                req.body,
                                event.function_name,
                                event.qualifier,
                                event.not_before.map(sql_int),
                                event.claimed_at.map(sql_int),
                            ])? == 1
                        };
                        if inserted {
                            queued += u64::from(!claimed);
                            results.push((*ticket, Ok(Submitted::Created)));
                            continue;
                        }
                        // An existing id wins over the limit: a client retrying an accepted event
                        // must get its 202, not a 429.
                        let result = match select_event(tx, &event.request_id)? {
                            Some(existing) => Ok(Submitted::AlreadyExists(Box::new(existing))),
                            None if full => Err(StoreError::Full { max_queued }),
                            // Not inserted and not there: cannot happen inside one transaction.
                            None => Err(StoreError::Corrupt {
                                op: "submit",
                                detail: format!("{} neither inserted nor found", event.request_id),
                            }),
                        };
                        results.push((*ticket, result));
                    }
                    Ok((results, queued))
                })
            });
        let outcome = outcome.map(|(results, queued)| {
            self.queued.store(queued, Ordering::Relaxed);
            self.committed();
            results
        });
        drop(conn);
        match outcome {
            Ok(results) => results,
            Err(err) => {
                log::error!("{err}");
                tickets.into_iter().map(|t| (t, Err(err.clone()))).collect()
            }
        }
    }
}

/// The committer thread: leads a batch whenever submissions are queued and nobody else
/// (a thread in [`Store::submit`]) is committing. It holds the store only while it commits,
/// and ends once the store is dropped; submissions still queued then complete with
/// [`StoreError::CommitAbandoned`] (never a false success).
fn committer(batcher: &Batcher, store: &std::sync::Weak<Store>) {
    let mut state = lock(&batcher.state);
    loop {
        if state.closed {
            break;
        }
        if state.leader || state.queue.is_empty() {
            state = batcher
                .committer
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        // Upgraded under the lock, so that no other thread can become leader meanwhile. (A
        // last owner dropping the store meanwhile waits for this lock in `Store::drop`.)
        let Some(s) = store.upgrade() else {
            break;
        };
        let completions = s.lead(state);
        // Released before the completions run: one of them may be what lets the last owner
        // drop the store, and the file must then close at once.
        drop(s);
        run_completions(completions);
        state = lock(&batcher.state);
    }
    let left: Vec<Queued> = std::mem::take(&mut state.queue);
    drop(state);
    for q in left {
        if let Some(c) = q.completion {
            c(Err(StoreError::CommitAbandoned));
        }
    }
}

/// Leader/follower batching of submissions (see the module docs).
#[derive(Default)]
pub(super) struct Batcher {
    state: Mutex<BatchState>,
    /// Wakes the committer thread: an asynchronous submission is queued and no leader is at
    /// work, or the store was dropped.
    committer: Condvar,
    /// Wakes relaxed writers waiting in [`Batcher::yield_to_submissions`]: no submission is
    /// queued or being committed any more.
    idle: Condvar,
    /// Whether the committer thread was started (once, by the first `submit_async`).
    started: OnceLock<Result<(), Arc<io::Error>>>,
    pub(super) batches: AtomicU64,
    pub(super) submissions: AtomicU64,
}

/// A queued submission: a thread in [`Store::submit`] waits for it (`completion` is `None`),
/// or a completion of [`Store::submit_async`] does.
struct Queued {
    ticket: u64,
    event: NewEvent,
    completion: Option<Completion>,
}

#[derive(Default)]
struct BatchState {
    /// Submissions waiting for the next leader.
    queue: Vec<Queued>,
    /// A thread is committing a batch right now.
    leader: bool,
    /// The store was dropped: the committer thread ends.
    closed: bool,
    next_ticket: u64,
    /// Results waiting for their submitter to pick them up.
    results: HashMap<u64, Result<Submitted, StoreError>>,
    /// The thread of every blocking submission not yet returned, to be unparked when its
    /// result is in.
    waiting: HashMap<u64, std::thread::Thread>,
}

impl Batcher {
    /// Makes a worker's relaxed transaction wait while submissions are queued or being
    /// committed, for at most [`YIELD_TO_SUBMISSIONS`]: there is one writer connection, and a
    /// client waits for each submission while the workers' claims and finishes are background
    /// work (their threads are niced for the same reason). Bounded, so that the workers keep
    /// draining the queue, more slowly, under a sustained burst of submissions.
    pub(super) fn yield_to_submissions(&self) {
        let deadline = Instant::now() + YIELD_TO_SUBMISSIONS;
        let mut state = lock(&self.state);
        while state.leader || !state.queue.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            state = self
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// How long a worker's transaction waits at most for the submissions under way
/// ([`Batcher::yield_to_submissions`]).
const YIELD_TO_SUBMISSIONS: Duration = Duration::from_millis(50);

impl BatchState {
    /// Queues a submission for the next batch; returns its ticket.
    fn enqueue(&mut self, event: NewEvent, completion: Option<Completion>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.queue.push(Queued {
            ticket,
            event,
            completion,
        });
        ticket
    }

    /// The threads to wake after a leader stepped down: the owners of `done` (the batch it
    /// committed) and the oldest queued blocking submitter, who becomes the next leader.
    fn to_wake(&self, done: &[u64]) -> Vec<std::thread::Thread> {
        let next_leader = self
            .queue
            .first()
            .filter(|q| q.completion.is_none())
            .map(|q| q.ticket);
        done.iter()
            .copied()
            .chain(next_leader)
            .filter_map(|t| self.waiting.get(&t).cloned())
            .collect()
    }

    /// Whether the next batch is the committer's to lead: its oldest submission is
    /// asynchronous, so no thread waits to lead it.
    fn next_is_async(&self) -> bool {
        self.queue.first().is_some_and(|q| q.completion.is_some())
    }
}

/// Should the leader panic inside SQLite code, its followers must not wait forever: they get
/// [`StoreError::CommitAbandoned`] and the next submitter becomes leader.
struct LeaderGuard<'a> {
    batcher: &'a Batcher,
    tickets: Vec<u64>,
    /// The completions of the batch's asynchronous submissions, by ticket.
    completions: HashMap<u64, Completion>,
    done: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = lock(&self.batcher.state);
        for ticket in &self.tickets {
            if !self.completions.contains_key(ticket) {
                state
                    .results
                    .insert(*ticket, Err(StoreError::CommitAbandoned));
            }
        }
        state.leader = false;
        let wake = state.to_wake(&self.tickets);
        let committer = state.next_is_async();
        drop(state);
        self.batcher.idle.notify_all();
        for thread in wake {
            thread.unpark();
        }
        if committer {
            self.batcher.committer.notify_one();
        }
        for (_, c) in self.completions.drain() {
            c(Err(StoreError::CommitAbandoned));
        }
    }
}

impl Drop for Store {
    /// Ends the committer thread (if it was started). The checkpointer ends when its field is
    /// dropped, which is before the file's lock (declared last).
    fn drop(&mut self) {
        lock(&self.batch.state).closed = true;
        self.batch.committer.notify_all();
    }
}
