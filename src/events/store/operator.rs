//! The operator's writes: terminating (aborting) an event and purging ended events past
//! their retention.

use rusqlite::params;

use super::group_commit::Durability;
use super::rows::{event_from_row, select_event, sql_int, EVENT_COLUMNS};
use super::{AbortResult, Status, Store, StoreError};

impl Store {
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
}
