//! The durable store of asynchronous events (CONTRACT section 7): one SQLite file that holds
//! every accepted event, its state, and the request to replay, so that a `202 Accepted` means
//! the event survives a SIGKILL of fc-init and a power loss of the machine.
//!
//! Rules this module keeps:
//! - **Durable before success.** The database runs in WAL mode with `synchronous=FULL`: every
//!   commit appends to the WAL and fsyncs it before `COMMIT` returns. (`NORMAL` in WAL mode
//!   fsyncs only at checkpoints, so a commit survives a process crash but not a power loss;
//!   a 202 must survive both, and group commit below makes the per-commit fsync affordable.)
//!   A new database file's directory entry is fsynced too; SQLite does the same for the WAL.
//! - **Group commit.** [`Store::submit`] is called from many connection threads at once.
//!   Submissions queue up; a thread that finds no commit under way becomes the leader, takes
//!   every queued submission, inserts them all in one transaction (one fsync), and wakes the
//!   others with their own results. While it commits, the next batch accumulates. A submission
//!   returns only once the transaction that holds it is durable, or with the error that
//!   prevented it: never a false success. [`Store::submit_async`] is the same without a
//!   waiting thread (for the event loops, which must not block): it queues the submission with
//!   a completion and returns; a committer thread leads the batches that no blocking submitter
//!   leads, and each completion is called with its own result once its batch is committed.
//! - **Idempotent.** The request id is unique; a repeated id (even within one batch) returns
//!   [`Submitted::AlreadyExists`] with the stored event and stores nothing.
//! - **At least once.** Events left RUNNING by a crashed fc-init are QUEUED again by
//!   [`Store::open`]; [`Store::requeue_running`] does the same when the function is restarted.
//!   A worker's [`Store::finish`] applies only to an event still RUNNING, so a terminate that
//!   won the race is never overwritten.
//! - **One process.** The file is `flock`ed for the life of the store: a second fc-init on the
//!   same file gets [`StoreError::Locked`] instead of re-running the first one's events.
//!   (Open one store per file per process: a refused second open in the *same* process closes
//!   its descriptor, and closing any descriptor of a file drops the process's POSIX locks on
//!   it, SQLite's included.) Local file systems only: WAL needs shared memory, which network
//!   file systems do not provide coherently.
//!
//! Failure modes: a full or failing disk gives [`StoreError::Disk`], any other SQLite failure
//! [`StoreError::Sqlite`]; the failed transaction is rolled back and the store stays usable
//! (it succeeds again once space is freed). A failed fsync may still leave the rows in the WAL
//! (SQLite cannot tell whether they reached the disk); the client got an error and a retry
//! with the same id is answered idempotently. The queue limit gives [`StoreError::Full`].
//!
//! - **Durable where it matters.** Submissions and terminates commit with `synchronous=FULL`.
//!   A worker's claim, finish and retry commit with `NORMAL` (no fsync of their own; the next
//!   FULL commit, or a checkpoint, makes them durable): losing one to a power cut leaves the
//!   event QUEUED or RUNNING, and a RUNNING event is queued again at the next open — at least
//!   once still holds, and a worker does not pay an fsync per state change.
//! - **Submissions first.** There is one writer connection. A worker's relaxed transaction
//!   waits (at most 50 ms) while submissions are queued or being committed: a client waits for
//!   each submission, the workers' claims and finishes are background work. The writer stays
//!   in the `synchronous` mode of its last transaction and switches only when the next one
//!   needs the other, checked before every commit.
//! - **Checkpoints off the commit path.** A checkpointer thread with its own connection runs a
//!   PASSIVE checkpoint every 64 commits; the writer's own automatic checkpoint (at 32 MiB of
//!   WAL) is the backstop and rewinds the WAL, finding most pages copied already.
//! - **The queue limit is counted in memory.** The number of QUEUED events is read once at
//!   open and kept up to date under the writer lock by every transition, so a submission never
//!   counts a queue that may hold hundreds of thousands of events.
//!
//! Connections: SQLite connections are `Send` but not `Sync`, so there is one writer
//! connection behind a mutex (every state change, all in `BEGIN IMMEDIATE` transactions whose
//! `COMMIT` errors are checked) and one reader connection behind another (`query_only`; in WAL
//! mode readers never block the writer, so the admin API does not stall submissions), plus
//! the checkpointer's own. Threads: the committer (started by the first
//! [`Store::submit_async`]; it holds the store only weakly) and the checkpointer (joined when
//! the store is dropped, so that every connection is closed before the `flock`ed file).
//!
//! Times are milliseconds since the Unix epoch, passed in by the caller (`now`), so the state
//! changes are testable without a clock.

mod checkpoint;
mod group_commit;
mod rows;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};

pub use super::error::StoreError;
pub use super::model::{
    valid_request_id, AbortResult, Claimed, Delivered, Delivery, Event, ListQuery, NewEvent, Order,
    OrderBy, Outcome, Retry, Status, StoreOptions, StoreStats, StoredAnswer, StoredRequest,
    Submitted, MAX_LIST_LIMIT, STATUS_COUNT,
};
// The JSON of the model, for the tests of this module.
#[cfg(test)]
use super::model::list_to_json;
use super::signal::{lock, Signal};
use checkpoint::{Checkpointer, CHECKPOINT_EVERY};
pub use group_commit::Completion;
#[cfg(test)]
use group_commit::SubmitResult;
use group_commit::{Batcher, Durability};
#[cfg(test)]
use rows::encode_headers;
use rows::{
    decode_headers, encode_headers as encode_answer_headers, event_from_row, migrate,
    raw_request_from_row, run_tx, select_event, sql_err, sql_int, EVENT_COLUMNS,
    EVENT_COLUMN_COUNT, REQUEST_COLUMNS,
};
// What the tests of this module use besides the store's own names.
#[cfg(test)]
use std::{path::PathBuf, time::Instant};

/// `PRAGMA user_version` of the schema this code writes. Older versions are migrated on open;
/// a newer one (written by a newer fc-init) is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 3;

/// WAL pages between automatic checkpoints (32 MiB at 4 KiB pages, as `journal_size_limit`).
const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// How long a statement waits for a lock held by another connection. Only our own reader and
/// writer share the file (the flock keeps other processes out), so this bounds checkpoints.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The open store. `Send + Sync`: share it behind an `Arc`.
pub struct Store {
    /// Every state change goes through this connection, in `BEGIN IMMEDIATE` transactions.
    writer: Mutex<Connection>,
    /// The writer connection is in `synchronous=NORMAL` now (see [`Store::set_durability`]);
    /// read and changed only under the writer lock.
    writer_relaxed: AtomicBool,
    /// Reads for the admin API and metrics (`query_only`).
    reader: Mutex<Connection>,
    /// Shared with the committer thread.
    batch: Arc<Batcher>,
    /// QUEUED events now; changed only under the writer lock, after a commit.
    queued: AtomicU64,
    /// Signalled when an event may have become claimable (submit, retry, requeue).
    work: Signal,
    /// Signalled when an event reached an ended status (terminate waits on it).
    ended: Signal,
    /// Signalled when a destination delivery was recorded (the delivery thread waits on it).
    outbox: Signal,
    /// EXPIRED events so far, for the metrics.
    expired: AtomicU64,
    opts: StoreOptions,
    recovered_at_open: u64,
    /// Commits on the writer connection so far (for the checkpointer).
    commits: AtomicU64,
    checkpointer: Checkpointer,
    /// Holds the `flock` for the store's lifetime. Declared last so it is closed after the
    /// connections: closing any descriptor of the file drops the process's POSIX locks on it,
    /// and SQLite's own locks are POSIX locks (see "How To Corrupt An SQLite Database File",
    /// section 2.2).
    _lock: File,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("opts", &self.opts)
            .field("recovered_at_open", &self.recovered_at_open)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, taking over a poisoned one: a panic elsewhere leaves the connection usable
/// (its open transaction, if any, was rolled back when the `Transaction` unwound) and the
/// batch state consistent (every change to it is complete before any call that can panic).
impl Store {
    /// Opens (creating if needed, mode 0600) the store at `path`, migrates its schema, and puts
    /// events a crashed fc-init left RUNNING back to QUEUED (see [`Store::recovered_at_open`]).
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let open_err = |source: io::Error| StoreError::OpenFile {
            path: path.to_path_buf(),
            source: Arc::new(source),
        };
        // Create the file ourselves: SQLite would use 0644, and the store holds request
        // bodies. SQLite gives its -wal and -shm files the database file's mode.
        let (file, created) = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(open_err)?,
                false,
            ),
            Err(e) => return Err(open_err(e)),
        };
        flock_exclusive(&file).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                StoreError::Locked {
                    path: path.to_path_buf(),
                }
            } else {
                open_err(e)
            }
        })?;
        if created {
            // The new directory entry must be durable before any event in the file is.
            sync_parent_dir(path).map_err(open_err)?;
        }

        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer = Connection::open_with_flags(path, flags).map_err(sql_err("open"))?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(sql_err("open"))?;
        let journal_mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql_err("open"))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::WalUnavailable {
                path: path.to_path_buf(),
                journal_mode,
            });
        }
        // FULL: fsync the WAL on every commit (see the module docs).
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql_err("open"))?;
        // The WAL is reused, not shrunk, after a checkpoint; cap what a burst leaves behind.
        writer
            .pragma_update(None, "journal_size_limit", 32 * 1024 * 1024)
            .map_err(sql_err("open"))?;
        // A checkpoint runs inside the commit that crosses this many WAL pages, on the
        // submissions' critical path; SQLite's 1000 pages (4 MiB) means one every few dozen
        // group commits under load. Fewer, larger checkpoints also write a page rewritten by
        // many commits (the tail of the time-ordered indexes) once instead of many times.
        writer
            .pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(sql_err("open"))?;
        // The page cache stays at SQLite's default (2 MiB): every commit ends by scanning the
        // cache's hash table (`pcache1TruncateUnsafe`), so a larger cache measured slower under
        // load (33k against 36k submissions/s with 16 MiB), preads saved included.
        writer.set_prepared_statement_cache_capacity(32);
        migrate(&writer, path)?;

        let recovered = run_tx(&writer, "recover running events", |tx| {
            let n = tx
                .prepare_cached("UPDATE events SET status = 'QUEUED' WHERE status = 'RUNNING'")?
                .execute([])?;
            Ok(n as u64)
        })?;
        if recovered > 0 {
            log::warn!(
                "event store {}: {recovered} event(s) were running when fc-init stopped; they run again",
                path.display()
            );
        }

        let queued = run_tx(&writer, "count queued events", |tx| {
            tx.prepare_cached("SELECT COUNT(*) FROM events WHERE status = 'QUEUED'")?
                .query_row([], |row| row.get::<_, i64>(0))
        })?;
        let queued = u64::try_from(queued).unwrap_or(0);

        let reader = Connection::open_with_flags(path, flags).map_err(sql_err("open"))?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(sql_err("open"))?;
        // Belt and braces: every write must go through the writer's transactions.
        reader
            .pragma_update(None, "query_only", true)
            .map_err(sql_err("open"))?;
        reader.set_prepared_statement_cache_capacity(32);

        let checkpointer = Checkpointer::start(path, flags)?;
        Ok(Store {
            commits: AtomicU64::new(0),
            checkpointer,
            writer: Mutex::new(writer),
            writer_relaxed: AtomicBool::new(false),
            reader: Mutex::new(reader),
            batch: Arc::default(),
            queued: AtomicU64::new(queued),
            work: Signal::default(),
            ended: Signal::default(),
            outbox: Signal::default(),
            expired: AtomicU64::new(0),
            opts,
            recovered_at_open: recovered,
            _lock: file,
        })
    }

    /// How many RUNNING events [`Store::open`] put back to QUEUED.
    pub fn recovered_at_open(&self) -> u64 {
        self.recovered_at_open
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Group-commit counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            batches: self.batch.batches.load(Ordering::Relaxed),
            submissions: self.batch.submissions.load(Ordering::Relaxed),
        }
    }

    // ---- workers ---------------------------------------------------------------------------

    /// Moves the oldest due QUEUED event (`next_attempt_at <= now`) to RUNNING, counting the
    /// attempt and setting the start time on the first one, and returns it with its request.
    pub fn claim_next(&self, now: u64) -> Result<Option<Claimed>, StoreError> {
        let sql = format!(
            "UPDATE events SET status = 'RUNNING', attempts = attempts + 1, \
                 start_time = COALESCE(start_time, ?1) \
             WHERE seq = (SELECT seq FROM events WHERE status = 'QUEUED' AND next_attempt_at <= ?1 \
                          ORDER BY next_attempt_at, seq LIMIT 1) \
             RETURNING {EVENT_COLUMNS}, {REQUEST_COLUMNS}, failures"
        );
        let (expired, row) = self.write_tx(
            "claim",
            Durability::Relaxed,
            |tx| {
                // Expired events first: the oldest due event may be one.
                let expired = self.expire_in(tx, now)?;
                let row = tx
                    .prepare_cached(&sql)?
                    .query_row([sql_int(now)], |row| {
                        Ok((
                            event_from_row(row)?,
                            raw_request_from_row(row, EVENT_COLUMN_COUNT)?,
                            row.get::<_, u32>(EVENT_COLUMN_COUNT + 4)?,
                        ))
                    })
                    .optional()?;
                Ok((expired, row))
            },
            |(expired, row)| -(*expired as i64) - i64::from(row.is_some()),
        )?;
        if expired > 0 {
            self.expired_now(expired);
        }
        let Some((event, (method, target, headers, body), failures)) = row else {
            return Ok(None);
        };
        let headers = decode_headers(&headers).ok_or_else(|| StoreError::Corrupt {
            op: "claim",
            detail: format!("headers of event {}", event.request_id),
        })?;
        Ok(Some(Claimed {
            event,
            request: StoredRequest {
                method,
                target,
                headers,
                body,
            },
            failures,
            lease: String::new(),
        }))
    }

    /// Ends a RUNNING event. `None` when the event is not RUNNING (it was terminated meanwhile,
    /// or is unknown): the outcome is dropped, the terminate stands.
    pub fn finish(&self, id: &str, outcome: &Outcome) -> Result<Option<Event>, StoreError> {
        if !outcome.status.is_ended() {
            return Err(StoreError::InvalidStatus {
                op: "finish",
                status: outcome.status,
            });
        }
        let sql = format!(
            "UPDATE events SET status = ?2, end_time = ?3, \
                 duration_ms = MAX(?3 - COALESCE(start_time, ?3), 0), \
                 status_code = ?4, error_type = ?5, error_message = ?6, \
                 result_code = ?7, result_truncated = ?8, result_bytes = ?9, \
                 dest_url = ?10, dest_status = CASE WHEN ?10 IS NULL THEN NULL ELSE 'pending' END, \
                 dest_next_at = CASE WHEN ?10 IS NULL THEN NULL ELSE ?3 END, dest_until = ?11 \
             WHERE request_id = ?1 AND status = 'RUNNING' \
             RETURNING {EVENT_COLUMNS}"
        );
        let answer = outcome.answer.as_ref();
        let destination = self.opts.destination_for(outcome.status);
        let until = outcome.end.saturating_add(self.retry_for_ms());
        let ended = self.write_tx(
            "finish",
            Durability::Relaxed,
            |tx| {
                let ended = tx
                    .prepare_cached(&sql)?
                    .query_row(
                        params![
                            id,
                            outcome.status,
                            sql_int(outcome.end),
                            outcome.status_code,
                            outcome.error_type,
                            outcome.error_message,
                            answer.map(|a| a.status),
                            answer.map(|a| a.truncated),
                            answer.map(|a| a.body.len() as i64),
                            destination,
                            sql_int(until),
                        ],
                        event_from_row,
                    )
                    .optional()?;
                if let (Some(_), Some(answer)) = (&ended, answer) {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO results (request_id, headers, body) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![id, encode_answer_headers(&answer.headers), answer.body])?;
                }
                Ok(ended)
            },
            |_| 0,
        )?;
        if ended.as_ref().is_some_and(|e| e.destination.is_some()) {
            self.outbox.bump();
        }
        if ended.is_some() {
            self.ended.bump();
        }
        Ok(ended)
    }

    /// Puts a RUNNING event back to QUEUED, due at `at`, after a failure of its own (it uses
    /// one of its retries), recording the failed attempt's status code and error (shown while
    /// it waits). `false` when it was not RUNNING.
    pub fn retry_later(
        &self,
        id: &str,
        at: u64,
        status_code: Option<u16>,
        error_type: Option<&str>,
        error_message: Option<&str>,
    ) -> Result<bool, StoreError> {
        let retry = Retry {
            at,
            status_code,
            error_type,
            error_message,
            charged: true,
        };
        self.requeue(id, &retry)
    }

    /// [`Store::retry_later`], with `retry.charged` saying whether the failure was the
    /// event's own (it uses a retry) or a cut by something else (another event's forced
    /// terminate: it runs again without using one, CONTRACT section 8).
    pub fn requeue(&self, id: &str, r: &Retry<'_>) -> Result<bool, StoreError> {
        let changed = self.write_tx(
            "retry",
            Durability::Relaxed,
            |tx| {
                tx.prepare_cached(
                    "UPDATE events SET status = 'QUEUED', next_attempt_at = ?2, status_code = ?3, \
                         error_type = ?4, error_message = ?5, failures = failures + ?6 \
                     WHERE request_id = ?1 AND status = 'RUNNING'",
                )?
                .execute(params![
                    id,
                    sql_int(r.at),
                    r.status_code,
                    r.error_type,
                    r.error_message,
                    u32::from(r.charged)
                ])
            },
            |&changed| changed as i64,
        )?;
        if changed > 0 {
            self.work.bump();
        }
        Ok(changed > 0)
    }

    /// Puts every RUNNING event that no worker holds (`held`: the ids the workers are
    /// running) back to QUEUED, due at once, without using a retry: the store must never
    /// report RUNNING for an event nobody runs (after a record that could not be written, a
    /// crash). Returns how many.
    pub fn reconcile(&self, held: &[String], now: u64) -> Result<u64, StoreError> {
        // The held ids are compared here rather than in SQL: the bundled SQLite is built
        // without its JSON functions (.cargo/config.toml), and the RUNNING events of one
        // instance are at most its `async.max_concurrency`.
        let n = self.write_tx(
            "reconcile",
            Durability::Relaxed,
            |tx| {
                let running = tx
                    .prepare_cached("SELECT request_id FROM events WHERE status = 'RUNNING'")?
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                let mut requeue = tx.prepare_cached(
                    "UPDATE events SET status = 'QUEUED', next_attempt_at = MIN(next_attempt_at, ?2) \
                     WHERE request_id = ?1 AND status = 'RUNNING'",
                )?;
                let mut n = 0;
                for id in running.iter().filter(|id| !held.contains(id)) {
                    n += requeue.execute(params![id, sql_int(now)])?;
                }
                Ok(n)
            },
            |&n| n as i64,
        )? as u64;
        if n > 0 {
            log::warn!("{n} asynchronous event(s) were RUNNING with no worker holding them; they run again");
            self.work.bump();
        }
        Ok(n)
    }

    /// Puts every RUNNING event back to QUEUED (the function was restarted under them: they
    /// run again, at least once). Their attempts stay counted. Returns how many.
    pub fn requeue_running(&self) -> Result<u64, StoreError> {
        let n = self.write_tx(
            "requeue running",
            Durability::Relaxed,
            |tx| {
                tx.prepare_cached("UPDATE events SET status = 'QUEUED' WHERE status = 'RUNNING'")?
                    .execute([])
            },
            |&n| n as i64,
        )? as u64;
        if n > 0 {
            self.work.bump();
        }
        Ok(n)
    }

    /// The earliest `next_attempt_at` of a QUEUED event: how long an idle worker may sleep.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        let conn = lock(&self.reader);
        let due: Option<i64> = conn
            .prepare_cached("SELECT MIN(next_attempt_at) FROM events WHERE status = 'QUEUED'")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(sql_err("next due"))?;
        Ok(due.map(|d| u64::try_from(d).unwrap_or(0)))
    }

    /// A sequence number that changes whenever work may have appeared. Read it *before*
    /// [`Store::claim_next`], and pass it to [`Store::wait_for_work`], so a submission between
    /// the two is not missed:
    ///
    /// ```ignore
    /// let seen = store.work_seq();
    /// match store.claim_next(now_ms())? {
    ///     Some(claimed) => run(claimed),
    ///     None => { store.wait_for_work(seen, until_next_due); }
    /// }
    /// ```
    pub fn work_seq(&self) -> u64 {
        self.work.current()
    }

    /// Blocks until the work sequence differs from `seen` or `timeout` passes. `true` when it
    /// changed.
    pub fn wait_for_work(&self, seen: u64, timeout: Duration) -> bool {
        self.work.wait(seen, timeout)
    }

    /// Wakes every waiting worker (at shutdown, so they notice the stop flag).
    pub fn notify_workers(&self) {
        self.work.bump();
    }

    /// Like [`Store::work_seq`], for events reaching an ended status.
    pub fn ended_seq(&self) -> u64 {
        self.ended.current()
    }

    /// Blocks until some event ended after `seen` was read, or `timeout` passes (a terminate
    /// waits for its event this way, rechecking with [`Store::get`]).
    pub fn wait_for_ended(&self, seen: u64, timeout: Duration) -> bool {
        self.ended.wait(seen, timeout)
    }

    // ---- expiry and the outbox (CONTRACT section 12) ----------------------------------------

    /// `async.destination_retry_for` in ms.
    fn retry_for_ms(&self) -> u64 {
        u64::try_from(self.opts.destination_retry_for.as_millis()).unwrap_or(u64::MAX)
    }

    /// Ends EXPIRED every QUEUED event submitted more than `async.max_event_age` before
    /// `now`, inside the caller's transaction `tx`, recording their `on_failure` delivery.
    /// A RUNNING event is never touched: an attempt is not cut for age. Returns how many.
    fn expire_in(&self, tx: &Connection, now: u64) -> rusqlite::Result<usize> {
        let Some(cutoff) = self.opts.expiry_cutoff(now) else {
            return Ok(0);
        };
        let message = self.opts.expiry_message();
        let destination = self.opts.destination_for(Status::Expired);
        tx.prepare_cached(
            "UPDATE events SET status = 'EXPIRED', end_time = ?1, \
                 duration_ms = MAX(?1 - COALESCE(start_time, ?1), 0), \
                 error_type = 'EventAgeExceeded', error_message = ?3, \
                 dest_url = ?4, dest_status = CASE WHEN ?4 IS NULL THEN NULL ELSE 'pending' END, \
                 dest_next_at = CASE WHEN ?4 IS NULL THEN NULL ELSE ?1 END, dest_until = ?5 \
             WHERE status = 'QUEUED' AND submit_time < ?2",
        )?
        .execute(params![
            sql_int(now),
            sql_int(cutoff),
            message,
            destination,
            sql_int(now.saturating_add(self.retry_for_ms()))
        ])
    }

    /// Counts and announces `n` events that just expired.
    fn expired_now(&self, n: usize) {
        log::warn!("{n} asynchronous event(s) were not started within async.max_event_age; they ended EXPIRED");
        self.expired.fetch_add(n as u64, Ordering::Relaxed);
        self.ended.bump();
        self.outbox.bump();
    }

    /// Ends EXPIRED the QUEUED events past `async.max_event_age` at `now` (also while every
    /// worker is busy and nobody claims). Returns how many.
    pub fn expire_overdue(&self, now: u64) -> Result<u64, StoreError> {
        if self.opts.expiry_cutoff(now).is_none() {
            return Ok(0);
        }
        let n = self.write_tx(
            "expire",
            Durability::Relaxed,
            |tx| self.expire_in(tx, now),
            |&n| -(n as i64),
        )?;
        if n > 0 {
            self.expired_now(n);
        }
        Ok(n as u64)
    }

    /// When the next QUEUED event expires (ms), if any may.
    pub fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        if self.opts.expiry_cutoff(0).is_none() {
            return Ok(None);
        }
        let oldest: Option<i64> = lock(&self.reader)
            .prepare_cached("SELECT MIN(submit_time) FROM events WHERE status = 'QUEUED'")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(sql_err("next expiry"))?;
        let age = u64::try_from(self.opts.max_event_age.as_millis()).unwrap_or(u64::MAX);
        Ok(oldest.map(|t| u64::try_from(t).unwrap_or(0).saturating_add(age)))
    }

    /// Events that expired since this store opened.
    pub fn expired_count(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Up to `limit` deliveries due at `now`, oldest due first.
    pub fn due_deliveries(&self, now: u64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, body, dest_until, \
                 (SELECT r.body FROM results r WHERE r.request_id = events.request_id) \
             FROM events WHERE dest_status = 'pending' AND dest_next_at <= ?1 \
             ORDER BY dest_next_at LIMIT ?2"
        );
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err("outbox"))?;
        let rows = stmt
            .query_map(params![sql_int(now), limit], |row| {
                Ok(Delivery {
                    event: event_from_row(row)?,
                    request_body: row.get(EVENT_COLUMN_COUNT)?,
                    until: row
                        .get::<_, Option<i64>>(EVENT_COLUMN_COUNT + 1)?
                        .map_or(u64::MAX, |t| u64::try_from(t).unwrap_or(0)),
                    response_body: row.get(EVENT_COLUMN_COUNT + 2)?,
                })
            })
            .map_err(sql_err("outbox"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err("outbox"))
    }

    /// Records a try of event `id`'s delivery. A delivery no longer pending is left alone.
    pub fn record_delivery(&self, id: &str, result: Delivered) -> Result<(), StoreError> {
        let (status, next) = match result {
            Delivered::Yes => ("delivered", None),
            Delivered::RetryAt(at) => ("pending", Some(sql_int(at))),
            Delivered::GiveUp => ("failed", None),
        };
        // Durable: a delivery recorded as done must not be sent again after a power cut
        // more often than at-least-once needs.
        self.write_tx(
            "record delivery",
            Durability::Full,
            |tx| {
                tx.prepare_cached(
                    "UPDATE events SET dest_status = ?2, dest_attempts = dest_attempts + 1, \
                         dest_next_at = ?3 \
                     WHERE request_id = ?1 AND dest_status = 'pending'",
                )?
                .execute(params![id, status, next])
            },
            |_| 0,
        )?;
        self.outbox.bump();
        Ok(())
    }

    /// The earliest time a pending delivery is due (ms), if any is pending.
    pub fn next_delivery_due(&self) -> Result<Option<u64>, StoreError> {
        let due: Option<i64> = lock(&self.reader)
            .prepare_cached("SELECT MIN(dest_next_at) FROM events WHERE dest_status = 'pending'")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(sql_err("outbox"))?;
        Ok(due.map(|d| u64::try_from(d).unwrap_or(0)))
    }

    /// Like [`Store::work_seq`], for the outbox (a delivery recorded, an event expired).
    pub fn outbox_seq(&self) -> u64 {
        self.outbox.current()
    }

    pub fn wait_for_outbox(&self, seen: u64, timeout: Duration) -> bool {
        self.outbox.wait(seen, timeout)
    }

    /// The event and its stored answer, if it has one.
    pub fn get_result(
        &self,
        id: &str,
    ) -> Result<Option<(Event, Option<StoredAnswer>)>, StoreError> {
        let conn = lock(&self.reader);
        let tx = conn.unchecked_transaction().map_err(sql_err("result"))?;
        let Some(event) = select_event(&tx, id).map_err(sql_err("result"))? else {
            return Ok(None);
        };
        let Some(info) = event.result else {
            return Ok(Some((event, None)));
        };
        let row: Option<(Vec<u8>, Vec<u8>)> = tx
            .prepare_cached("SELECT headers, body FROM results WHERE request_id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(sql_err("result"))?;
        let answer = match row {
            Some((headers, body)) => Some(StoredAnswer {
                status: info.status_code,
                headers: decode_headers(&headers).ok_or_else(|| StoreError::Corrupt {
                    op: "result",
                    detail: format!("headers of the answer to {id}"),
                })?,
                body,
                truncated: info.truncated,
            }),
            None => None,
        };
        Ok(Some((event, answer)))
    }

    // ---- operator --------------------------------------------------------------------------

    /// One event, without its request.
    pub fn get(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let conn = lock(&self.reader);
        select_event(&conn, id).map_err(sql_err("get"))
    }

    /// The events matching `q`, and how many match in all (ignoring offset and limit).
    pub fn list(&self, q: &ListQuery) -> Result<(u64, Vec<Event>), StoreError> {
        let mut filter = String::from(" WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        if !q.statuses.is_empty() {
            filter.push_str(" AND status IN (");
            for (i, status) in q.statuses.iter().enumerate() {
                filter.push_str(if i == 0 { "?" } else { ", ?" });
                args.push(Value::Text(status.as_str().to_string()));
            }
            filter.push(')');
        }
        if let Some(id) = &q.request_id {
            filter.push_str(" AND request_id = ?");
            args.push(Value::Text(id.clone()));
        }
        if let Some(since) = q.since {
            filter.push_str(" AND submit_time >= ?");
            args.push(Value::Integer(sql_int(since)));
        }
        if let Some(until) = q.until {
            filter.push_str(" AND submit_time < ?");
            args.push(Value::Integer(sql_int(until)));
        }
        if let Some(prefix) = &q.request_id_prefix {
            // A range on the unique index: every character of an id is below U+007F.
            filter.push_str(" AND request_id >= ? AND request_id < ?");
            args.push(Value::Text(prefix.clone()));
            args.push(Value::Text(format!("{prefix}\u{7f}")));
        }
        for (column, value) in [
            ("function_name", &q.function_name),
            ("qualifier", &q.qualifier),
        ] {
            if let Some(value) = value {
                filter.push_str(&format!(" AND {column} = ?"));
                args.push(Value::Text(value.clone()));
            }
        }
        if let Some(kind) = &q.invocation_type {
            // Stored as `Async` (or, later, `Sync`); matched as the API's values, any case.
            let kind = if kind.eq_ignore_ascii_case("Async") {
                "Async"
            } else {
                "Sync"
            };
            filter.push_str(" AND invocation_type = ?");
            args.push(Value::Text(kind.to_owned()));
        }
        for (column, since, until) in [
            ("start_time", q.started_since, q.started_until),
            ("end_time", q.ended_since, q.ended_until),
        ] {
            if let Some(since) = since {
                filter.push_str(&format!(" AND {column} >= ?"));
                args.push(Value::Integer(sql_int(since)));
            }
            if let Some(until) = until {
                filter.push_str(&format!(" AND {column} < ?"));
                args.push(Value::Integer(sql_int(until)));
            }
        }
        let order = match q.order {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        };
        // Events that never reached the time ordered by come last either way.
        let order_by = match q.order_by {
            OrderBy::SubmitTime => format!("submit_time {order}"),
            OrderBy::StartTime => format!("start_time IS NULL, start_time {order}"),
            OrderBy::EndTime => format!("end_time IS NULL, end_time {order}"),
        };
        let count_sql = format!("SELECT COUNT(*) FROM events{filter}");
        let page_sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events{filter} \
             ORDER BY {order_by}, seq {order} LIMIT ? OFFSET ?"
        );
        let limit = q.limit.min(MAX_LIST_LIMIT);

        let conn = lock(&self.reader);
        // One read transaction: the total and the page come from the same snapshot.
        let tx = conn.unchecked_transaction().map_err(sql_err("list"))?;
        let total: i64 = tx
            .prepare_cached(&count_sql)
            .and_then(|mut stmt| stmt.query_row(params_from_iter(&args), |row| row.get(0)))
            .map_err(sql_err("list"))?;
        let mut events = Vec::new();
        if limit > 0 {
            let mut page_args = args;
            page_args.push(Value::Integer(i64::from(limit)));
            page_args.push(Value::Integer(sql_int(q.offset)));
            let mut stmt = tx.prepare_cached(&page_sql).map_err(sql_err("list"))?;
            let rows = stmt
                .query_map(params_from_iter(&page_args), event_from_row)
                .map_err(sql_err("list"))?;
            for row in rows {
                events.push(row.map_err(sql_err("list"))?);
            }
        }
        Ok((u64::try_from(total).unwrap_or(0), events))
    }

    /// Terminates a QUEUED event: ABORTED at `now`, never started (`startTime` stays null).
    /// A RUNNING one is left alone and returned as [`AbortResult::Running`].
    pub fn abort_queued(&self, id: &str, now: u64) -> Result<AbortResult, StoreError> {
        self.abort(id, now, None, false, "abort")
    }

    /// Ends a RUNNING (or still QUEUED) event as ABORTED at `now`, with `message` as its
    /// `errorMessage`; used once the caller has stopped the attempt.
    pub fn mark_aborted(
        &self,
        id: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<AbortResult, StoreError> {
        self.abort(id, now, message, true, "mark aborted")
    }

    fn abort(
        &self,
        id: &str,
        now: u64,
        message: Option<&str>,
        running_too: bool,
        op: &'static str,
    ) -> Result<AbortResult, StoreError> {
        let sql = format!(
            "UPDATE events SET status = 'ABORTED', end_time = ?2, \
                 duration_ms = MAX(?2 - COALESCE(start_time, ?2), 0), \
                 error_message = COALESCE(?3, error_message) \
             WHERE request_id = ?1 RETURNING {EVENT_COLUMNS}"
        );
        // An operator's decision is committed durably.
        let (result, _) = self.write_tx(
            op,
            Durability::Full,
            |tx| {
                let Some(event) = select_event(tx, id)? else {
                    return Ok((AbortResult::NotFound, false));
                };
                match event.status {
                    s if s.is_ended() => Ok((AbortResult::AlreadyEnded(event), false)),
                    Status::Running if !running_too => Ok((AbortResult::Running(event), false)),
                    before => tx
                        .prepare_cached(&sql)?
                        .query_row(params![id, sql_int(now), message], event_from_row)
                        .map(|e| (AbortResult::Aborted(e), before == Status::Queued)),
                }
            },
            |&(_, was_queued)| -i64::from(was_queued),
        )?;
        if matches!(result, AbortResult::Aborted(_)) {
            self.ended.bump();
        }
        Ok(result)
    }

    /// How many events are in each status, in [`Status::ALL`] order (for metrics).
    pub fn counts_by_status(&self) -> Result<[(Status, u64); STATUS_COUNT], StoreError> {
        let mut counts = Status::ALL.map(|s| (s, 0u64));
        let conn = lock(&self.reader);
        let mut stmt = conn
            .prepare_cached("SELECT status, COUNT(*) FROM events GROUP BY status")
            .map_err(sql_err("count"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, Status>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(sql_err("count"))?;
        for row in rows {
            let (status, n) = row.map_err(sql_err("count"))?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(counts)
    }

    /// Forgets ended events whose end time is more than `retention` before `now`. Returns how
    /// many were deleted.
    pub fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let retention = u64::try_from(self.opts.retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now.saturating_sub(retention);
        let n = self.write_tx(
            "purge",
            Durability::Relaxed,
            |tx| {
                // An event whose delivery is still pending stays until it is done.
                let ids = tx
                    .prepare_cached(
                        "DELETE FROM events WHERE end_time IS NOT NULL AND end_time < ?1 \
                             AND status IN ('FINISHED', 'FAILED', 'ABORTED', 'EXPIRED') \
                             AND (dest_status IS NULL OR dest_status <> 'pending') \
                         RETURNING request_id, result_code IS NOT NULL",
                    )?
                    .query_map([sql_int(cutoff)], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut forget = tx.prepare_cached("DELETE FROM results WHERE request_id = ?1")?;
                for (id, _) in ids.iter().filter(|(_, has_result)| *has_result) {
                    forget.execute([id])?;
                }
                Ok(ids.len())
            },
            |_| 0,
        )?;
        Ok(n as u64)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer connection, with the given
    /// durability; once it has committed, and still under the writer lock, adds `queued_delta`
    /// of its result to the count of QUEUED events.
    fn write_tx<T>(
        &self,
        op: &'static str,
        durability: Durability,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
        queued_delta: impl FnOnce(&T) -> i64,
    ) -> Result<T, StoreError> {
        if durability == Durability::Relaxed {
            self.batch.yield_to_submissions();
        }
        let conn = lock(&self.writer);
        self.set_durability(&conn, durability)
            .map_err(sql_err(op))?;
        let result = run_tx(&conn, op, f);
        if let Ok(value) = &result {
            self.committed();
            let delta = queued_delta(value);
            let _ = self
                .queued
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_add_signed(delta))
                });
        }
        result
    }

    /// Counts a commit; every [`CHECKPOINT_EVERY`] commits, asks the checkpointer to run.
    fn committed(&self) {
        let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpointer.request();
        }
    }

    /// Puts the writer connection (`conn`, locked) in the `synchronous` mode `durability`
    /// needs, unless it is in it already: the workers' relaxed transactions follow each other
    /// without two PRAGMAs each, and every FULL commit (a submission's above all) checks the
    /// mode first, so a failed switch back can never let one commit in NORMAL mode.
    fn set_durability(&self, conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
        let relaxed = durability == Durability::Relaxed;
        if self.writer_relaxed.load(Ordering::Relaxed) != relaxed {
            conn.execute_batch(if relaxed {
                "PRAGMA synchronous = NORMAL"
            } else {
                "PRAGMA synchronous = FULL"
            })?;
            self.writer_relaxed.store(relaxed, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Test hook: caps the database size so a commit fails with `SQLITE_FULL`, as on a full
    /// disk, without needing a small file system.
    #[cfg(test)]
    fn set_max_page_count(&self, pages: u64) {
        let conn = lock(&self.writer);
        let _: i64 = conn
            .pragma_update_and_check(None, "max_page_count", sql_int(pages), |row| row.get(0))
            .expect("max_page_count");
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `WouldBlock` when another open file description holds it.
/// flock locks are independent of SQLite's POSIX record locks on Linux, so they do not clash.
fn flock_exclusive(file: &File) -> io::Result<()> {
    crate::sys::retry(|| {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    })
}

/// fsync(2) of the directory holding `path`, so a newly created file's entry is durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
