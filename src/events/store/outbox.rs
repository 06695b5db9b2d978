//! Expiry and the outbox (docs/reference.md §10): ending overdue QUEUED events EXPIRED and
//! recording the destination deliveries that are due.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::group_commit::Durability;
use super::rows::{event_from_row, sql_err, sql_int, EVENT_COLUMNS, EVENT_COLUMN_COUNT};
use super::{Delivered, Delivery, Status, Store, StoreError};
use crate::events::signal::lock;

impl Store {
    /// `async.destination_retry_for` in ms.
    pub(super) fn retry_for_ms(&self) -> u64 {
        u64::try_from(self.opts.destination_retry_for.as_millis()).unwrap_or(u64::MAX)
    }

    /// Ends EXPIRED every QUEUED event submitted more than `async.max_event_age` before
    /// `now`, inside the caller's transaction `tx`, recording their `on_failure` delivery.
    /// A RUNNING event is never touched: an attempt is not cut for age. Returns how many.
    pub(super) fn expire_in(&self, tx: &Connection, now: u64) -> rusqlite::Result<usize> {
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
    pub(super) fn expired_now(&self, n: usize) {
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
        let oldest = self.earliest(
            "next expiry",
            "SELECT MIN(submit_time) FROM events WHERE status = 'QUEUED'",
        )?;
        let age = u64::try_from(self.opts.max_event_age.as_millis()).unwrap_or(u64::MAX);
        Ok(oldest.map(|t| t.saturating_add(age)))
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
        self.earliest(
            "outbox",
            "SELECT MIN(dest_next_at) FROM events WHERE dest_status = 'pending'",
        )
    }

    /// Like [`Store::work_seq`], for the outbox (a delivery recorded, an event expired).
    pub fn outbox_seq(&self) -> u64 {
        self.outbox.current()
    }

    pub fn wait_for_outbox(&self, seen: u64, timeout: Duration) -> bool {
        self.outbox.wait(seen, timeout)
    }
}
