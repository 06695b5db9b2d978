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
use crate::events::model::{Event, Status};

/// The event columns every query reads, in the order [`event_from_row`] expects. The request
/// blobs come last in the table, so scans of these columns never touch their overflow pages.
pub(super) const EVENT_COLUMNS: &str =
    "request_id, status, submit_time, start_time, end_time, duration_ms, \
     status_code, attempts, error_type, error_message, next_attempt_at";
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
        // v2: the failures that used a retry, apart from the attempts (CONTRACT section 8: an
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
    // Future versions: `if version < 3 { ... }`, each in its own transaction.
    Ok(())
}

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
