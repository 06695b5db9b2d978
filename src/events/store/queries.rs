//! The store's reads for the admin API and metrics: one event, its result, a filtered and
//! ordered list, and the counts by status.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, OptionalExtension};

use super::rows::{decode_headers, event_from_row, select_event, sql_err, sql_int, EVENT_COLUMNS};
use super::{
    Event, ListQuery, Order, OrderBy, Status, Store, StoreError, StoredAnswer, MAX_LIST_LIMIT,
    STATUS_COUNT,
};
use crate::events::signal::lock;

impl Store {
    /// One event, without its request.
    pub fn get(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let conn = lock(&self.reader);
        select_event(&conn, id).map_err(sql_err("get"))
    }

    /// The events matching `q`, and how many match in all (ignoring offset and limit).
    pub fn list(&self, q: &ListQuery) -> Result<(u64, Vec<Event>), StoreError> {
        let ListSql {
            count_sql,
            page_sql,
            args,
            page_args,
        } = list_sql(q);
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
            let mut page_args = page_args;
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
}

/// The SQL of a list: the count and its arguments (the filter's), the page and its
/// arguments (the filter's, once per part), to which the limit and offset are added.
pub(super) struct ListSql {
    pub count_sql: String,
    pub page_sql: String,
    pub args: Vec<Value>,
    pub page_args: Vec<Value>,
}

/// The SQL of the list `q` asks for (each filter a bound argument, never text of the query).
pub(super) fn list_sql(q: &ListQuery) -> ListSql {
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
    let count_sql = format!("SELECT COUNT(*) FROM events{filter}");
    let time = match q.order_by {
        OrderBy::SubmitTime => None,
        OrderBy::StartTime => Some("start_time"),
        OrderBy::EndTime => Some("end_time"),
    };
    let mut page_args = args.clone();
    let page_sql = match time {
        None => format!(
            "SELECT {EVENT_COLUMNS} FROM events{filter} \
             ORDER BY submit_time {order}, seq {order} LIMIT ? OFFSET ?"
        ),
        // Events that never reached the time ordered by come last either way. In two parts,
        // each in the order of an index (the time's, then the table's), so that a page is
        // read in order and never sorted: `ORDER BY t IS NULL, t` would sort every match.
        Some(t) => {
            page_args.extend_from_slice(&args);
            format!(
                "SELECT {EVENT_COLUMNS} FROM \
                 (SELECT * FROM (SELECT * FROM events{filter} AND {t} IS NOT NULL \
                                 ORDER BY {t} {order}, seq {order}) \
                  UNION ALL \
                  SELECT * FROM (SELECT * FROM events{filter} AND {t} IS NULL \
                                 ORDER BY seq {order})) \
                 LIMIT ? OFFSET ?"
            )
        }
    };
    ListSql {
        count_sql,
        page_sql,
        args,
        page_args,
    }
}
