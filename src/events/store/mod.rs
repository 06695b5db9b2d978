//! The durable store of asynchronous events (docs/reference.md §10): one SQLite file that holds
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
mod open;
mod operator;
mod outbox;
mod queries;
mod rows;
mod workers;

use std::fmt;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

pub use super::error::StoreError;
pub use super::model::{
    valid_request_id, AbortResult, Claimed, Delivered, Delivery, Event, ListQuery, NewEvent, Order,
    OrderBy, Outcome, Retry, Status, StoreOptions, StoreStats, StoredAnswer, StoredRequest,
    Submitted, MAX_LIST_LIMIT, STATUS_COUNT,
};
// The JSON of the model, for the tests of this module.
#[cfg(test)]
use super::model::list_to_json;
// `lock` takes over a poisoned mutex: a panic elsewhere leaves the connection usable
// (its open transaction, if any, was rolled back when the `Transaction` unwound) and the
// batch state consistent (every change to it is complete before any call that can panic).
use super::signal::{lock, Signal};
use checkpoint::{Checkpointer, CHECKPOINT_EVERY};
pub use group_commit::Completion;
#[cfg(test)]
use group_commit::SubmitResult;
use group_commit::{Batcher, Durability};
#[cfg(test)]
use rows::{decode_headers, encode_headers, sql_int};
use rows::{run_tx, sql_err};
// What the tests of this module use besides the store's own names.
#[cfg(test)]
use std::{
    path::{Path, PathBuf},
    time::Instant,
};

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

impl Store {
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

#[cfg(test)]
mod tests;
