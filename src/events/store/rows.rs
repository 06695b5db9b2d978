//! The SQLite store's rows: the schema and its migrations, transactions, and the mapping
//! between rows and the event model (statuses as text, times as integers, headers as a
//! length-prefixed blob).

use std::path::Path;
use std::sync::Arc;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior,
};

use super::SCHEMA_VERSION;
use crate::events::error::StoreError;
pub(super) use crate::events::model::{decode_headers, encode_headers};
use crate::events::model::{DeliveryStatus, Destination, Event, ResultInfo, Status};

/// The event columns every query reads, in the order [`event_from_row`] expects. The request
/// blobs come last in the table, so scans of these columns never touch their overflow pages.
pub(super) const EVENT_COLUMNS: &str =
    "request_id, status, submit_time, start_time, end_time, duration_ms, \
     status_code, attempts, error_type, error_message, next_attempt_at, \
     function_name, qualifier, not_before, result_code, result_truncated, result_bytes, \
     dest_url, dest_status, dest_attempts";
/// How many columns [`EVENT_COLUMNS`] names: where the columns that follow them begin.
pub(super) const EVENT_COLUMN_COUNT: usize = 20;
pub(super) const REQUEST_COLUMNS: &str = "method, target, headers, body";

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

/// v3 (docs/reference.md §10): status EXPIRED (a CHECK constraint cannot be altered, so the
/// table is rebuilt, as SQLite's "generalized ALTER TABLE procedure" says), the event's
/// function, qualifier, delay, result summary and destination delivery, placed before the
/// request blobs so that lists never read the blobs' overflow pages; the stored answers in
/// their own table; the indexes of the list filters and of the outbox. Events of v2 keep
/// every field; their function name is unknown (empty) and their qualifier `LATEST`.
const SCHEMA_V3: &str = "
CREATE TABLE events_v3 (
    seq             INTEGER PRIMARY KEY,
    request_id      TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL
                    CHECK (status IN ('QUEUED', 'RUNNING', 'FINISHED', 'FAILED', 'ABORTED', 'EXPIRED')),
    submit_time     INTEGER NOT NULL,
    start_time      INTEGER,
    end_time        INTEGER,
    duration_ms     INTEGER,
    status_code     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    error_type      TEXT,
    error_message   TEXT,
    next_attempt_at INTEGER NOT NULL,
    failures        INTEGER NOT NULL DEFAULT 0,
    function_name   TEXT    NOT NULL DEFAULT '',
    qualifier       TEXT    NOT NULL DEFAULT 'LATEST',
    -- 'Async' for every event stored today; the sync-to-async handoff will store 'Sync'.
    invocation_type TEXT    NOT NULL DEFAULT 'Async',
    not_before      INTEGER,
    result_code     INTEGER,
    result_truncated INTEGER,
    result_bytes    INTEGER,
    -- The outbox: a delivery is recorded with the event's end, in the same transaction.
    dest_url        TEXT,
    dest_status     TEXT CHECK (dest_status IN ('pending', 'delivered', 'failed')),
    dest_attempts   INTEGER NOT NULL DEFAULT 0,
    dest_next_at    INTEGER,
    dest_until      INTEGER,
    method          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    headers         BLOB    NOT NULL,
    body            BLOB    NOT NULL
);
INSERT INTO events_v3 (seq, request_id, status, submit_time, start_time, end_time, duration_ms,
        status_code, attempts, error_type, error_message, next_attempt_at, failures,
        method, target, headers, body)
    SELECT seq, request_id, status, submit_time, start_time, end_time, duration_ms,
        status_code, attempts, error_type, error_message, next_attempt_at, failures,
        method, target, headers, body
    FROM events;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE INDEX events_due ON events (status, next_attempt_at);
CREATE INDEX events_submit ON events (submit_time);
CREATE INDEX events_status_submit ON events (status, submit_time);
CREATE INDEX events_end ON events (end_time) WHERE end_time IS NOT NULL;
-- list: startedSince/startedUntil and orderBy=startTime.
CREATE INDEX events_start ON events (start_time) WHERE start_time IS NOT NULL;
-- list: functionName and qualifier, newest first.
CREATE INDEX events_function ON events (function_name, qualifier, submit_time);
-- the outbox: deliveries due.
CREATE INDEX events_outbox ON events (dest_next_at) WHERE dest_status = 'pending';
-- The function's answers (async.max_result), apart so that event rows stay small.
CREATE TABLE results (
    request_id TEXT PRIMARY KEY,
    headers    BLOB NOT NULL,
    body       BLOB NOT NULL
);
";

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

/// Maps a SQLite error of `op`, telling disk trouble (the operator must act) from the rest.
pub(super) fn sql_err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
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

/// SQLite integers are i64; our times and counters are u64 far below `i64::MAX`.
pub(super) fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction (immediate: take the write lock up front, so a
/// read-then-write never fails halfway with `SQLITE_BUSY`), committing when it succeeds. On
/// any error nothing of it stays, and the connection is back in autocommit mode.
/// Runs `f` in a `BEGIN IMMEDIATE` transaction (immediate: take the write lock up front, so a
/// read-then-write never fails halfway with `SQLITE_BUSY`), committing when it succeeds. On
/// any error nothing of it stays, and the connection is back in autocommit mode.
pub(super) fn run_tx<T>(
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

pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
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
    if version < 2 {
        // v2: the failures that used a retry, apart from the attempts (docs/reference.md §10: an
        // attempt cut short by something else runs again without using one). Events stored
        // by v1 are counted as before: every attempt of a waiting event was a failure, and a
        // running one's current attempt is not one yet.
        run_tx(conn, "migrate schema to v2", |tx| {
            tx.execute_batch(
                "ALTER TABLE events ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
                 UPDATE events SET failures = MAX(attempts - (status = 'RUNNING'), 0)
                     WHERE status IN ('QUEUED', 'RUNNING');",
            )?;
            tx.pragma_update(None, "user_version", 2)
        })?;
    }
    if version < 3 {
        run_tx(conn, "migrate schema to v3", |tx| {
            tx.execute_batch(SCHEMA_V3)?;
            tx.pragma_update(None, "user_version", 3)
        })?;
    }
    // Future versions: `if version < 4 { ... }`, each in its own transaction.
    run_tx(conn, "create the list indexes", |tx| {
        tx.execute_batch(LIST_INDEXES)
    })
}

/// Indexes that only make lists faster, created when missing on every open (so also in a v3
/// store made before them): a status ordered by start or end time reads its page in order
/// (docs/reference.md §10, `orderBy`), instead of sorting every event of the status; a
/// qualifier or an invocation type alone is found, and its matches counted, in an index of
/// its own instead of by reading every event (bench/async.sh: 46 and 89 ms for a list of 100
/// out of 1,000,000 events without them).
const LIST_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS events_status_start ON events (status, start_time)
    WHERE start_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_status_end ON events (status, end_time)
    WHERE end_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_qualifier ON events (qualifier, submit_time);
CREATE INDEX IF NOT EXISTS events_kind ON events (invocation_type, submit_time);
";

pub(super) fn select_event(conn: &Connection, id: &str) -> rusqlite::Result<Option<Event>> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE request_id = ?1"
    ))?
    .query_row([id], event_from_row)
    .optional()
}

/// Reads [`EVENT_COLUMNS`] (columns 0..=10).
pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
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
        function_name: row.get(11)?,
        qualifier: row.get(12)?,
        not_before: get_opt_u64(row, 13)?,
        result: match get_opt_u64(row, 14)? {
            Some(code) => Some(ResultInfo {
                status_code: u16::try_from(code).unwrap_or(0),
                truncated: row.get::<_, Option<bool>>(15)?.unwrap_or(false),
                bytes: get_opt_u64(row, 16)?.unwrap_or(0),
            }),
            None => None,
        },
        destination: match row.get::<_, Option<String>>(17)? {
            Some(url) => Some(Destination {
                url,
                status: row
                    .get::<_, Option<String>>(18)?
                    .as_deref()
                    .and_then(DeliveryStatus::parse)
                    .unwrap_or(DeliveryStatus::Pending),
                attempts: row.get(19)?,
            }),
            None => None,
        },
    })
}

pub(super) type RawRequest = (String, String, Vec<u8>, Vec<u8>);

pub(super) fn raw_request_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<RawRequest> {
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
