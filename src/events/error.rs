//! Every way an event store fails, for both backends: one error type, cheap to clone (one
//! failed group commit is every member's error), with the operation and its cause.
//!
//! [`StoreError::is_unavailable`] tells the failures that mean "the store cannot take this
//! now" (a full or failing disk, Redis unreachable): a submission then gets 503
//! `AsyncStoreUnavailable` (docs/reference.md §6), never a 202 for an event that was not stored.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::model::Status;

/// Every way the store fails. Cheap to clone: one failed group commit is every member's error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Creating or opening the store file failed (missing directory, permissions, read-only
    /// file system, ...).
    #[error("open event store {}: {source}", path.display())]
    OpenFile {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// Another process (another fc-init) holds the store open.
    #[error("event store {} is in use by another process", path.display())]
    Locked { path: PathBuf },
    /// The file system cannot do WAL (it needs shared memory: no network file systems).
    #[error(
        "event store {}: WAL mode unavailable on this file system (journal_mode={journal_mode})",
        path.display()
    )]
    WalUnavailable { path: PathBuf, journal_mode: String },
    /// The file was written by a newer fc-init.
    #[error(
        "event store {}: schema version {found} is newer than this fc-init supports ({supported})",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The disk is full, failing, or became read-only during `op`. Nothing of `op` was
    /// committed; the store works again once the cause is gone.
    #[error("event store {op}: disk full or failing: {source}")]
    Disk {
        op: &'static str,
        source: Arc<rusqlite::Error>,
    },
    /// Any other SQLite failure during `op`.
    #[error("event store {op}: {source}")]
    Sqlite {
        op: &'static str,
        source: Arc<rusqlite::Error>,
    },
    /// A stored row cannot be decoded (a hand-edited or damaged file).
    #[error("event store {op}: damaged row: {detail}")]
    Corrupt { op: &'static str, detail: String },
    /// The request id does not match `[A-Za-z0-9._:-]{1,128}`.
    #[error("invalid request id {id:?}: must match [A-Za-z0-9._:-]{{1,128}}")]
    InvalidRequestId { id: String },
    /// `op` was asked to move an event to a status it cannot take (a caller bug).
    #[error("event store {op}: cannot move an event to {status}")]
    InvalidStatus { op: &'static str, status: Status },
    /// `max_queued` events are already QUEUED (docs/reference.md §6: 429 `TooManyRequests`).
    #[error("too many queued async events (max_queued = {max_queued})")]
    Full { max_queued: u64 },
    /// The thread committing this submission's batch panicked (whether the batch was
    /// committed is unknown; a retry with the same id is answered idempotently), or the store
    /// was dropped with the submission still queued (nothing of it was stored).
    #[error(
        "event store submit: the batch was abandoned (its committing thread panicked, \
         or the store closed)"
    )]
    CommitAbandoned,
    /// Redis failed during `op` (unreachable, or it refused the command): nothing of `op`
    /// is known to have happened, and the link reconnects with backoff.
    #[error("event store {op}: Redis at {server}: {source}")]
    Redis {
        op: &'static str,
        server: Arc<str>,
        source: Arc<redis::RedisError>,
    },
    /// `async.redis_url` cannot be used by this build.
    #[error("async.redis_url {url:?}: {reason}")]
    RedisUrl { url: String, reason: String },
    /// Redis refused fc-init's login or the rights it needs (`WRONGPASS`, `NOAUTH`,
    /// `NOPERM`) at start: a configuration error. `url` has its passwords as `****`.
    #[error(
        "async.redis_url {url:?}: Redis refused the login or a right fc-init needs \
         (see the reference's ACL): {source}"
    )]
    RedisAccess {
        url: String,
        source: Arc<redis::RedisError>,
    },
    /// A Redis node's TLS certificate did not verify at start (signed by a CA that is not
    /// trusted, or not valid for the node's address): a configuration error. `url` has its
    /// passwords as `****`.
    #[error(
        "async.redis_url {url:?}: a Redis node's TLS certificate does not verify (it must \
         chain to a CA of ?ca=, or of the system's roots without it, and be valid for the \
         node's host name or IP address): {source}"
    )]
    RedisCertificate {
        url: String,
        source: Arc<redis::RedisError>,
    },
    /// Too few replicas confirmed a submission in time (`async.redis_min_replicas`): the
    /// event was withdrawn, it will not run; resubmitting the same id is safe.
    #[error(
        "{confirmed} of {wanted} replica(s) confirmed the event in time \
         (async.redis_min_replicas); it was withdrawn and will not run"
    )]
    NotReplicated { wanted: u32, confirmed: u64 },
    /// A Redis reply did not have the shape the backend's scripts give (a server that is
    /// not Redis, or a bug).
    #[error("event store {op}: unexpected Redis reply: {detail}")]
    RedisReply { op: &'static str, detail: String },
    /// The committer thread of `Store::submit_async` could not be started.
    #[error("event store submit: starting the committer thread: {source}")]
    Committer { source: Arc<io::Error> },
}

impl StoreError {
    /// The exit status when opening the store fails with this error: Redis refusing the
    /// login or a right, or a certificate that does not verify, is a configuration error (2,
    /// docs/reference.md §10); the rest (a CA file that cannot be read, a store file) is
    /// fc-init's own failure (1).
    pub fn exit_code(&self) -> i32 {
        match self {
            StoreError::RedisAccess { .. } | StoreError::RedisCertificate { .. } => {
                crate::exit::USAGE
            }
            _ => crate::exit::FAILURE,
        }
    }

    /// Whether this failure means the store cannot take a submission now (disk, database,
    /// Redis): answered 503 `AsyncStoreUnavailable`. The others are the request's own problem
    /// (`Full`: 429; an invalid id: 400) or a caller's bug.
    pub fn is_unavailable(&self) -> bool {
        !matches!(
            self,
            StoreError::Full { .. }
                | StoreError::InvalidRequestId { .. }
                | StoreError::InvalidStatus { .. }
        )
    }
}
