//! The workers' side of the store: claiming the next due event, ending it, retrying or
//! requeueing it, and waiting for work or for an event to end.

use std::time::Duration;

use rusqlite::{params, OptionalExtension};

use super::group_commit::Durability;
use super::rows::{
    decode_headers, encode_headers as encode_answer_headers, event_from_row, raw_request_from_row,
    sql_err, sql_int, EVENT_COLUMNS, EVENT_COLUMN_COUNT, REQUEST_COLUMNS,
};
use super::{Claimed, Event, Outcome, Retry, Store, StoreError, StoredRequest};
use crate::events::signal::lock;

impl Store {
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
    /// terminate: it runs again without using one, docs/reference.md §10).
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
        self.earliest(
            "next due",
            "SELECT MIN(next_attempt_at) FROM events WHERE status = 'QUEUED'",
        )
    }

    /// The time (ms) `sql` — one `MIN(...)` — reads, or `None` when no row has one.
    pub(super) fn earliest(&self, op: &'static str, sql: &str) -> Result<Option<u64>, StoreError> {
        let t: Option<i64> = lock(&self.reader)
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(sql_err(op))?;
        Ok(t.map(|t| u64::try_from(t).unwrap_or(0)))
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
}
