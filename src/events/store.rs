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

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Value, ValueRef};
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, ToSql,
    Transaction, TransactionBehavior,
};

use super::time::format_rfc3339_ms;

/// `PRAGMA user_version` of the schema this code writes. Older versions are migrated on open;
/// a newer one (written by a newer fc-init) is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 1;

/// The most events one [`Store::list`] returns (CONTRACT section 7: `limit ≤ 100`).
pub const MAX_LIST_LIMIT: u32 = 100;

/// WAL pages between automatic checkpoints (32 MiB at 4 KiB pages, as `journal_size_limit`).
const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// How long a statement waits for a lock held by another connection. Only our own reader and
/// writer share the file (the flock keeps other processes out), so this bounds checkpoints.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The event columns every query reads, in the order [`event_from_row`] expects. The request
/// blobs come last in the table, so scans of these columns never touch their overflow pages.
const EVENT_COLUMNS: &str = "request_id, status, submit_time, start_time, end_time, duration_ms, \
     status_code, attempts, error_type, error_message, next_attempt_at";
const REQUEST_COLUMNS: &str = "method, target, headers, body";

const SCHEMA_V1: &str = "
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    request_id      TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL
                    CHECK (status IN ('QUEUED', 'RUNNING', 'FINISHED', 'FAILED', 'ABORTED')),
    submit_time     INTEGER NOT NULL,
    start_time      INTEGER,
    end_time        INTEGER,
    duration_ms     INTEGER,
    status_code     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    error_type      TEXT,
    error_message   TEXT,
    next_attempt_at INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    headers         BLOB    NOT NULL,
    body            BLOB    NOT NULL
);
-- claim_next: the oldest due QUEUED event; also counts QUEUED for max_queued.
CREATE INDEX events_due ON events (status, next_attempt_at);
-- list: newest/oldest first, with or without a status filter.
CREATE INDEX events_submit ON events (submit_time);
CREATE INDEX events_status_submit ON events (status, submit_time);
-- purge_expired.
CREATE INDEX events_end ON events (end_time) WHERE end_time IS NOT NULL;
";

// ---------------------------------------------------------------------------------------------
// The event model

/// An event's state. Text in the database and the JSON (`QUEUED`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Running,
    /// The function answered with success.
    Finished,
    /// Every attempt failed.
    Failed,
    /// Terminated by an operator.
    Aborted,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Finished,
        Status::Failed,
        Status::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Running => "RUNNING",
            Status::Finished => "FINISHED",
            Status::Failed => "FAILED",
            Status::Aborted => "ABORTED",
        }
    }

    /// Parses a status name, ignoring ASCII case (`?status=queued` is what a person types).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// FINISHED, FAILED and ABORTED are final: nothing changes them again.
    pub fn is_ended(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Aborted)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql for Status {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Status {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        // The CHECK constraint makes anything else impossible short of a hand-edited file.
        Status::parse(text).ok_or_else(|| FromSqlError::Other(format!("status {text:?}").into()))
    }
}

/// The request an event replays to the function: exactly what the client sent
/// (CONTRACT section 8: query string and headers as received, minus hop-by-hop).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredRequest {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    /// Header names and raw values, in order. Stored length-prefixed, so any bytes survive.
    pub headers: Vec<(String, Vec<u8>)>,
    /// At most `async.max_payload` bytes: the caller enforces the limit before submitting.
    pub body: Vec<u8>,
}

/// A submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// `[A-Za-z0-9._:-]{1,128}`; checked again here because it is the primary key.
    pub request_id: String,
    pub submit_time: u64,
    pub request: StoredRequest,
}

/// An event as the operator sees it (everything but the stored request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub request_id: String,
    pub status: Status,
    pub submit_time: u64,
    /// The first attempt's start; `None` while never started (also when aborted while queued).
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    /// `end_time - start_time` once ended; 0 for an event aborted before it ever started.
    pub duration_ms: Option<u64>,
    /// The last attempt's HTTP status, when it got an answer.
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// When a QUEUED event is due (its submit time, or the retry time set by `retry_later`).
    pub next_attempt_at: u64,
}

/// What [`Store::claim_next`] hands a worker: the event (now RUNNING) and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub event: Event,
    pub request: StoredRequest,
}

/// The result of a successful submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Stored durably; it will run.
    Created,
    /// An event with this request id was already stored: nothing new was stored, nothing
    /// runs twice. Carries the stored event as it is now.
    AlreadyExists(Event),
}

/// How an attempt ended, for [`Store::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// FINISHED, FAILED or ABORTED (a graceful terminate ends the event when its request ends).
    pub status: Status,
    pub status_code: Option<u16>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// End time, ms since the epoch.
    pub end: u64,
}

/// The answer to a terminate ([`Store::abort_queued`], [`Store::mark_aborted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortResult {
    NotFound,
    /// Already FINISHED, FAILED or ABORTED (CONTRACT: 409 `EventAlreadyEnded`).
    AlreadyEnded(Event),
    /// RUNNING: `abort_queued` leaves it alone; the caller kills the attempt first, then calls
    /// [`Store::mark_aborted`].
    Running(Event),
    /// Now ABORTED.
    Aborted(Event),
}

/// Ordering of [`Store::list`] by submit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    /// Newest first (the default, CONTRACT section 7).
    #[default]
    Desc,
}

/// Filters of [`Store::list`] (`GET /async-events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Empty: every status.
    pub statuses: Vec<Status>,
    /// Exact match (a prefix match would make `LIKE` escaping part of the API for no gain).
    pub request_id: Option<String>,
    /// Submit time ≥ `since` (ms).
    pub since: Option<u64>,
    /// Submit time < `until` (ms): half-open, so consecutive windows never overlap.
    pub until: Option<u64>,
    pub order: Order,
    pub offset: u64,
    /// Clamped to [`MAX_LIST_LIMIT`]; 0 returns only the total.
    pub limit: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            statuses: Vec::new(),
            request_id: None,
            since: None,
            until: None,
            order: Order::Desc,
            offset: 0,
            limit: 20,
        }
    }
}

/// Limits of a store (`[async]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most QUEUED events at once; further submissions get [`StoreError::Full`].
    /// 0 = unlimited, like the other limits of the config.
    pub max_queued: u64,
    /// How long ended events are kept (by end time) before [`Store::purge_expired`] drops them.
    pub retention: Duration,
}

/// Counters of the group commit, for metrics and the batching test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Transactions committed by [`Store::submit`] leaders (successful or not).
    pub batches: u64,
    /// Submissions that went through those transactions.
    pub submissions: u64,
}

// ---------------------------------------------------------------------------------------------
// JSON (CONTRACT section 7)

impl Event {
    /// The event as the admin API shows it: `{"requestId":...,"status":...,...}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_json(&mut out);
        out
    }

    /// Appends [`Event::to_json`] to `out` (lists build one string for every event).
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("{\"requestId\":");
        push_json_str(out, &self.request_id);
        out.push_str(",\"status\":\"");
        out.push_str(self.status.as_str());
        out.push_str("\",\"invocationType\":\"Async\",\"submitTime\":");
        push_json_time(out, Some(self.submit_time));
        out.push_str(",\"startTime\":");
        push_json_time(out, self.start_time);
        out.push_str(",\"endTime\":");
        push_json_time(out, self.end_time);
        out.push_str(",\"durationMs\":");
        push_json_num(out, self.duration_ms);
        out.push_str(",\"statusCode\":");
        push_json_num(out, self.status_code.map(u64::from));
        // Writing into a String cannot fail.
        let _ = write!(out, ",\"attempts\":{}", self.attempts);
        out.push_str(",\"errorType\":");
        push_json_opt_str(out, self.error_type.as_deref());
        out.push_str(",\"errorMessage\":");
        push_json_opt_str(out, self.error_message.as_deref());
        out.push('}');
    }
}

/// `{"totalCount":N,"events":[...]}`, the answer to `GET /async-events`.
pub fn list_to_json(total_count: u64, events: &[Event]) -> String {
    let mut out = String::with_capacity(64 + 320 * events.len());
    out.push_str("{\"totalCount\":");
    out.push_str(&total_count.to_string());
    out.push_str(",\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        event.write_json(&mut out);
    }
    out.push_str("]}");
    out
}

fn push_json_time(out: &mut String, ms: Option<u64>) {
    match ms {
        Some(ms) => {
            out.push('"');
            out.push_str(&format_rfc3339_ms(ms));
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

fn push_json_num(out: &mut String, n: Option<u64>) {
    match n {
        Some(n) => out.push_str(&n.to_string()),
        None => out.push_str("null"),
    }
}

fn push_json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    crate::json::push_string(out, s);
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Every way the store fails. Cheap to clone: one failed group commit is every member's error.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// Creating or opening the store file failed (missing directory, permissions, read-only
    /// file system, ...).
    OpenFile {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// Another process (another fc-init) holds the store open.
    Locked { path: PathBuf },
    /// The file system cannot do WAL (it needs shared memory: no network file systems).
    WalUnavailable { path: PathBuf, journal_mode: String },
    /// The file was written by a newer fc-init.
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The disk is full, failing, or became read-only during `op`. Nothing of `op` was
    /// committed; the store works again once the cause is gone.
    Disk {
        op: &'static str,
        source: Arc<rusqlite::Error>,
    },
    /// Any other SQLite failure during `op`.
    Sqlite {
        op: &'static str,
        source: Arc<rusqlite::Error>,
    },
    /// A stored row cannot be decoded (a hand-edited or damaged file).
    Corrupt { op: &'static str, detail: String },
    /// The request id does not match `[A-Za-z0-9._:-]{1,128}`.
    InvalidRequestId { id: String },
    /// `op` was asked to move an event to a status it cannot take (a caller bug).
    InvalidStatus { op: &'static str, status: Status },
    /// `max_queued` events are already QUEUED (CONTRACT: 429 `TooManyRequests`).
    Full { max_queued: u64 },
    /// The thread committing this submission's batch panicked (whether the batch was
    /// committed is unknown; a retry with the same id is answered idempotently), or the store
    /// was dropped with the submission still queued (nothing of it was stored).
    CommitAbandoned,
    /// The committer thread of [`Store::submit_async`] could not be started.
    Committer { source: Arc<io::Error> },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::OpenFile { path, source } => {
                write!(f, "open event store {}: {source}", path.display())
            }
            StoreError::Locked { path } => write!(
                f,
                "event store {} is in use by another process",
                path.display()
            ),
            StoreError::WalUnavailable { path, journal_mode } => write!(
                f,
                "event store {}: WAL mode unavailable on this file system (journal_mode={journal_mode})",
                path.display()
            ),
            StoreError::SchemaTooNew {
                path,
                found,
                supported,
            } => write!(
                f,
                "event store {}: schema version {found} is newer than this fc-init supports ({supported})",
                path.display()
            ),
            StoreError::Disk { op, source } => {
                write!(f, "event store {op}: disk full or failing: {source}")
            }
            StoreError::Sqlite { op, source } => write!(f, "event store {op}: {source}"),
            StoreError::Corrupt { op, detail } => {
                write!(f, "event store {op}: damaged row: {detail}")
            }
            StoreError::InvalidRequestId { id } => {
                write!(f, "invalid request id {id:?}: must match [A-Za-z0-9._:-]{{1,128}}")
            }
            StoreError::InvalidStatus { op, status } => {
                write!(f, "event store {op}: cannot move an event to {status}")
            }
            StoreError::Full { max_queued } => {
                write!(f, "too many queued async events (max_queued = {max_queued})")
            }
            StoreError::CommitAbandoned => f.write_str(
                "event store submit: the batch was abandoned (its committing thread panicked, \
                 or the store closed)",
            ),
            StoreError::Committer { source } => {
                write!(f, "event store submit: starting the committer thread: {source}")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::OpenFile { source, .. } => Some(&**source),
            StoreError::Disk { source, .. } | StoreError::Sqlite { source, .. } => Some(&**source),
            StoreError::Committer { source } => Some(&**source),
            _ => None,
        }
    }
}

/// Maps a SQLite error of `op`, telling disk trouble (the operator must act) from the rest.
fn sql_err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |err| {
        if let rusqlite::Error::FromSqlConversionFailure(_, _, cause) = &err {
            return StoreError::Corrupt {
                op,
                detail: cause.to_string(),
            };
        }
        let disk = matches!(
            err.sqlite_error_code(),
            Some(
                ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::ReadOnly
                    | ErrorCode::CannotOpen
            )
        );
        let source = Arc::new(err);
        if disk {
            StoreError::Disk { op, source }
        } else {
            StoreError::Sqlite { op, source }
        }
    }
}

/// Whether `id` matches `[A-Za-z0-9._:-]{1,128}` (CONTRACT section 3).
pub fn valid_request_id(id: &str) -> bool {
    crate::http::valid_request_id(id.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The store

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
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SQLite integers are i64; our times and counters are u64 far below `i64::MAX`.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

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
            opts,
            recovered_at_open: recovered,
            _lock: file,
        })
    }

    /// How many RUNNING events [`Store::open`] put back to QUEUED.
    pub fn recovered_at_open(&self) -> u64 {
        self.recovered_at_open
    }

    pub fn options(&self) -> StoreOptions {
        self.opts
    }

    /// Group-commit counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            batches: self.batch.batches.load(Ordering::Relaxed),
            submissions: self.batch.submissions.load(Ordering::Relaxed),
        }
    }

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
                     method, target, headers, body) \
                 VALUES (?1, 'QUEUED', ?2, 0, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (request_id) DO NOTHING",
            )?;
                    let mut results = Vec::with_capacity(batch.len());
                    for (ticket, event) in &batch {
                        let full = max_queued != 0 && queued >= max_queued;
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
                            ])? == 1
                        };
                        if inserted {
                            queued += 1;
                            results.push((*ticket, Ok(Submitted::Created)));
                            continue;
                        }
                        // An existing id wins over the limit: a client retrying an accepted event
                        // must get its 202, not a 429.
                        let result = match select_event(tx, &event.request_id)? {
                            Some(existing) => Ok(Submitted::AlreadyExists(existing)),
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

    // ---- workers ---------------------------------------------------------------------------

    /// Moves the oldest due QUEUED event (`next_attempt_at <= now`) to RUNNING, counting the
    /// attempt and setting the start time on the first one, and returns it with its request.
    pub fn claim_next(&self, now: u64) -> Result<Option<Claimed>, StoreError> {
        let sql = format!(
            "UPDATE events SET status = 'RUNNING', attempts = attempts + 1, \
                 start_time = COALESCE(start_time, ?1) \
             WHERE seq = (SELECT seq FROM events WHERE status = 'QUEUED' AND next_attempt_at <= ?1 \
                          ORDER BY next_attempt_at, seq LIMIT 1) \
             RETURNING {EVENT_COLUMNS}, {REQUEST_COLUMNS}"
        );
        let row = self.write_tx(
            "claim",
            Durability::Relaxed,
            |tx| {
                tx.prepare_cached(&sql)?
                    .query_row([sql_int(now)], |row| {
                        Ok((event_from_row(row)?, raw_request_from_row(row, 11)?))
                    })
                    .optional()
            },
            |row| -i64::from(row.is_some()),
        )?;
        let Some((event, (method, target, headers, body))) = row else {
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
                 status_code = ?4, error_type = ?5, error_message = ?6 \
             WHERE request_id = ?1 AND status = 'RUNNING' \
             RETURNING {EVENT_COLUMNS}"
        );
        let ended = self.write_tx(
            "finish",
            Durability::Relaxed,
            |tx| {
                tx.prepare_cached(&sql)?
                    .query_row(
                        params![
                            id,
                            outcome.status,
                            sql_int(outcome.end),
                            outcome.status_code,
                            outcome.error_type,
                            outcome.error_message
                        ],
                        event_from_row,
                    )
                    .optional()
            },
            |_| 0,
        )?;
        if ended.is_some() {
            self.ended.bump();
        }
        Ok(ended)
    }

    /// Puts a RUNNING event back to QUEUED, due at `at`, recording the failed attempt's
    /// status code and error (shown while it waits). `false` when it was not RUNNING.
    pub fn retry_later(
        &self,
        id: &str,
        at: u64,
        status_code: Option<u16>,
        error_type: Option<&str>,
        error_message: Option<&str>,
    ) -> Result<bool, StoreError> {
        let changed = self.write_tx(
            "retry",
            Durability::Relaxed,
            |tx| {
                tx.prepare_cached(
                    "UPDATE events SET status = 'QUEUED', next_attempt_at = ?2, status_code = ?3, \
                         error_type = ?4, error_message = ?5 \
                     WHERE request_id = ?1 AND status = 'RUNNING'",
                )?
                .execute(params![
                    id,
                    sql_int(at),
                    status_code,
                    error_type,
                    error_message
                ])
            },
            |&changed| changed as i64,
        )?;
        if changed > 0 {
            self.work.bump();
        }
        Ok(changed > 0)
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
        let order = match q.order {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        };
        let count_sql = format!("SELECT COUNT(*) FROM events{filter}");
        let page_sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events{filter} \
             ORDER BY submit_time {order}, seq {order} LIMIT ? OFFSET ?"
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
    pub fn counts_by_status(&self) -> Result<[(Status, u64); 5], StoreError> {
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
                tx.prepare_cached(
                    "DELETE FROM events WHERE end_time IS NOT NULL AND end_time < ?1 \
                         AND status IN ('FINISHED', 'FAILED', 'ABORTED')",
                )?
                .execute([sql_int(cutoff)])
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

/// Runs `f` in a `BEGIN IMMEDIATE` transaction (immediate: take the write lock up front, so a
/// read-then-write never fails halfway with `SQLITE_BUSY`), committing when it succeeds. On
/// any error nothing of it stays, and the connection is back in autocommit mode.
fn run_tx<T>(
    conn: &Connection,
    op: &'static str,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let result = (|| {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    })();
    if result.is_err() && !conn.is_autocommit() {
        // The Transaction's drop already tried to roll back; if even that failed (the disk
        // went away), try again so the next operation does not nest inside this one.
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            log::warn!("event store {op}: rollback after a failed transaction: {e}");
        }
    }
    result.map_err(sql_err(op))
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql_err("read schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        // user_version is part of the database header, so it commits with the schema.
        run_tx(conn, "create schema", |tx| {
            tx.execute_batch(SCHEMA_V1)?;
            tx.pragma_update(None, "user_version", 1)
        })?;
    }
    // Future versions: `if version < 2 { ... }`, each in its own transaction.
    Ok(())
}

fn select_event(conn: &Connection, id: &str) -> rusqlite::Result<Option<Event>> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE request_id = ?1"
    ))?
    .query_row([id], event_from_row)
    .optional()
}

/// Reads [`EVENT_COLUMNS`] (columns 0..=10).
fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        request_id: row.get(0)?,
        status: row.get(1)?,
        submit_time: get_u64(row, 2)?,
        start_time: get_opt_u64(row, 3)?,
        end_time: get_opt_u64(row, 4)?,
        duration_ms: get_opt_u64(row, 5)?,
        status_code: row.get(6)?,
        attempts: row.get(7)?,
        error_type: row.get(8)?,
        error_message: row.get(9)?,
        next_attempt_at: get_u64(row, 10)?,
    })
}

type RawRequest = (String, String, Vec<u8>, Vec<u8>);

fn raw_request_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<RawRequest> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
    ))
}

fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    // Negative values are never written; read a damaged one as 0 rather than failing the list.
    Ok(u64::try_from(v).unwrap_or(0))
}

fn get_opt_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(idx)?;
    Ok(v.map(|v| u64::try_from(v).unwrap_or(0)))
}

/// Headers as `(u32 LE length, name, u32 LE length, value)*`: length-prefixed rather than
/// NUL-separated so a value may hold any byte.
fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (name, value) in headers {
        for part in [name.as_bytes(), value.as_slice()] {
            // Header blocks are bounded by server.max_header_bytes, far below u32::MAX.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&part[..len as usize]);
        }
    }
    out
}

fn decode_headers(mut blob: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    fn take<'a>(blob: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = blob.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (part, rest) = rest.split_at(len);
        *blob = rest;
        Some(part)
    }
    let mut headers = Vec::new();
    while !blob.is_empty() {
        let name = String::from_utf8(take(&mut blob)?.to_vec()).ok()?;
        let value = take(&mut blob)?.to_vec();
        headers.push((name, value));
    }
    Some(headers)
}

// ---------------------------------------------------------------------------------------------
// Group commit

/// How durable a transaction's commit must be (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// `synchronous=FULL`: fsynced before `COMMIT` returns.
    Full,
    /// `synchronous=NORMAL`: durable with the next FULL commit or checkpoint.
    Relaxed,
}

/// What [`Store::submit_async`] calls with a submission's result.
pub type Completion = Box<dyn FnOnce(Result<Submitted, StoreError>) + Send>;

type SubmitResult = Result<Submitted, StoreError>;

/// Runs the completions of a committed batch, outside every lock.
fn run_completions(completions: Vec<(Completion, SubmitResult)>) {
    for (c, result) in completions {
        c(result);
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
struct Batcher {
    state: Mutex<BatchState>,
    /// Wakes the committer thread: an asynchronous submission is queued and no leader is at
    /// work, or the store was dropped.
    committer: Condvar,
    /// Wakes relaxed writers waiting in [`Batcher::yield_to_submissions`]: no submission is
    /// queued or being committed any more.
    idle: Condvar,
    /// Whether the committer thread was started (once, by the first `submit_async`).
    started: OnceLock<Result<(), Arc<io::Error>>>,
    batches: AtomicU64,
    submissions: AtomicU64,
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
    fn yield_to_submissions(&self) {
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

/// Commits between two background checkpoints.
const CHECKPOINT_EVERY: u64 = 64;

/// Copies committed WAL pages into the database file on a thread of its own, with its own
/// connection (`PRAGMA wal_checkpoint(PASSIVE)`: never blocks the writer), so that the
/// copying and the database file's fsync stay off the submissions' commit path. The writer's
/// own automatic checkpoint ([`WAL_CHECKPOINT_PAGES`]) remains the backstop, and is what
/// rewinds the WAL under sustained load; it finds most pages copied already.
///
/// Failure modes: a failed checkpoint is logged and retried at the next request; nothing
/// depends on it but the WAL's size.
struct Checkpointer {
    shared: Arc<CheckpointShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct CheckpointShared {
    /// (a checkpoint is due, the store is closing)
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Checkpointer {
    fn start(path: &Path, flags: OpenFlags) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open_with_flags(path, flags).map_err(sql_err("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err("open"))?;
        let shared = Arc::new(CheckpointShared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fc-init-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn, &s))
            .map_err(|e| StoreError::OpenFile {
                path: path.to_path_buf(),
                source: Arc::new(e),
            })?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    fn request(&self) {
        lock(&self.shared.state).0 = true;
        self.shared.cv.notify_one();
    }
}

impl Drop for Checkpointer {
    /// Waits for the thread: its connection must be closed before the file's lock is.
    fn drop(&mut self) {
        lock(&self.shared.state).1 = true;
        self.shared.cv.notify_one();
        if let Some(t) = self.thread.take() {
            // A panic in it was logged by the panic hook; the store closes regardless.
            let _ = t.join();
        }
    }
}

fn checkpoint_loop(conn: &Connection, shared: &CheckpointShared) {
    loop {
        let mut state = lock(&shared.state);
        while !state.0 && !state.1 {
            state = shared
                .cv
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.1 {
            return;
        }
        state.0 = false;
        drop(state);
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = result {
            log::warn!("event store: background checkpoint: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Notifications

/// A counter with a condition variable: waiters compare against the value they saw, so a
/// signal between "nothing to do" and "wait" is never lost.
#[derive(Default)]
struct Signal {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl Signal {
    fn bump(&self) {
        let mut seq = lock(&self.seq);
        *seq = seq.wrapping_add(1);
        drop(seq);
        self.cv.notify_all();
    }

    fn current(&self) -> u64 {
        *lock(&self.seq)
    }

    fn wait(&self, seen: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut seq = lock(&self.seq);
        while *seq == seen {
            // A timeout too large for an Instant means "forever": wait in long slices.
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return false,
                },
                None => Duration::from_secs(3600),
            };
            seq = self
                .cv
                .wait_timeout(seq, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// File helpers

/// `flock(LOCK_EX | LOCK_NB)`: `WouldBlock` when another open file description holds it.
/// flock locks are independent of SQLite's POSIX record locks on Linux, so they do not clash.
fn flock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// fsync(2) of the directory holding `path`, so a newly created file's entry is durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

// ---------------------------------------------------------------------------------------------
// Benchmarks (called by a bench script; not part of the API)

#[doc(hidden)]
pub mod bench {
    //! Throughput of [`Store::submit`] against the plain one-row-per-commit baseline on the
    //! same disk, so the group commit's gain is a ratio measured in one run.

    use super::*;

    /// Commits per second of one-row transactions (WAL, `synchronous=FULL`) in a loop on a
    /// fresh database at `path`: what every submission would cost without group commit.
    pub fn bench_fsync_baseline(path: &Path, n: u64) -> Result<f64, StoreError> {
        let conn = Connection::open(path).map_err(sql_err("bench open"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| {
                conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, request_id TEXT UNIQUE, \
                         body BLOB)",
                )
            })
            .map_err(sql_err("bench setup"))?;
        let body = vec![b'x'; 1024];
        let start = Instant::now();
        for i in 0..n {
            conn.prepare_cached("INSERT INTO t (request_id, body) VALUES (?1, ?2)")
                .and_then(|mut stmt| stmt.execute(params![format!("base-{i}"), body]))
                .map_err(sql_err("bench insert"))?;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    }

    /// Submissions per second through [`Store::submit`] from `threads` threads, each
    /// submitting `per_thread` distinct events with a 1 KiB body, on a fresh store at `path`.
    pub fn bench_group_commit(
        path: &Path,
        threads: usize,
        per_thread: usize,
    ) -> Result<f64, StoreError> {
        let store = Store::open(
            path,
            StoreOptions {
                max_queued: 0,
                retention: Duration::from_secs(3600),
            },
        )?;
        let barrier = std::sync::Barrier::new(threads + 1);
        let mut elapsed = Duration::ZERO;
        std::thread::scope(|scope| -> Result<(), StoreError> {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let store = &store;
                    let barrier = &barrier;
                    scope.spawn(move || -> Result<(), StoreError> {
                        barrier.wait();
                        for i in 0..per_thread {
                            store.submit(NewEvent {
                                request_id: format!("bench-{t}-{i}"),
                                submit_time: super::super::time::now_ms(),
                                request: StoredRequest {
                                    method: "POST".into(),
                                    target: "/invoke".into(),
                                    headers: vec![("content-type".into(), b"text/plain".to_vec())],
                                    body: vec![b'x'; 1024],
                                },
                            })?;
                        }
                        Ok(())
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let mut result = Ok(());
            for handle in handles {
                match handle.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(_) => result = Err(StoreError::CommitAbandoned),
                }
            }
            elapsed = start.elapsed();
            result
        })?;
        Ok((threads * per_thread) as f64 / elapsed.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
