//! A worker's claims on the Redis backend: the blocking `XREADGROUP` on its own link, then
//! the START script that makes the delivered entry the event's running attempt.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::link::Link;
use super::scripts::{array, bytes, event, num, scripts, text, EVENT_ITEMS};
use super::topology::Conn;
use super::{Inner, CLAIM_BLOCK, GROUP};
use crate::events::backend::Claimer;
use crate::events::error::StoreError;
use crate::events::model::{decode_headers, Claimed, Status, StoredRequest};
use crate::events::time::now_ms;

/// A worker's claims: `XREADGROUP` on its own link, then the START script.
pub(super) struct RedisClaimer {
    pub(super) inner: Arc<Inner>,
    pub(super) link: Link,
}

impl Claimer for RedisClaimer {
    /// `startTime` is taken after the blocking read, when the event is started (the bug:
    /// it was the time the worker began waiting, up to [`CLAIM_BLOCK`] before `submitTime`).
    fn claim(
        &mut self,
        _waiting_since: u64,
        wait: Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        let block = wait.min(CLAIM_BLOCK);
        let inner = &self.inner;
        let read = |c: &mut Conn| -> redis::RedisResult<Value> {
            let read = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&inner.me)
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&inner.stream)
                .arg(">")
                .query(c);
            match read {
                Err(e) if e.code() == Some("NOGROUP") => {
                    inner.ensure_group(c)?;
                    Ok(Value::Nil)
                }
                other => other,
            }
        };
        let reply = self.link.call_blocking("claim", block, read)?;
        let Some((entry, id)) = first_entry(&reply) else {
            return Ok(None);
        };
        let mut inv = inner.invocation(&scripts().start, now_ms());
        let opts = &inner.opts;
        let cutoff = opts.expiry_cutoff(now_ms());
        inv.arg(&entry)
            .arg(&id)
            .arg(cutoff.map(|t| t.to_string()).unwrap_or_default())
            .arg(opts.expiry_message())
            .arg(opts.destination_for(Status::Expired).unwrap_or(""))
            .arg(inner.delivery_until(now_ms()));
        let reply = self.link.call("start", |c| inv.invoke::<Value>(c))?;
        if reply == Value::Nil {
            return Ok(None);
        }
        let items = array("start", &reply)?;
        if items.len() < EVENT_ITEMS + 5 {
            return Err(StoreError::RedisReply {
                op: "start",
                detail: format!("{reply:?}"),
            });
        }
        let event = event("start", &reply)?;
        let headers =
            decode_headers(&bytes(&items[EVENT_ITEMS + 2])).ok_or_else(|| StoreError::Corrupt {
                op: "start",
                detail: format!("headers of event {id}"),
            })?;
        Ok(Some(Claimed {
            event,
            request: StoredRequest {
                method: text(&items[EVENT_ITEMS]).unwrap_or_default(),
                target: text(&items[EVENT_ITEMS + 1]).unwrap_or_default(),
                headers,
                body: bytes(&items[EVENT_ITEMS + 3]),
            },
            failures: num(&items[EVENT_ITEMS + 4])
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            lease: entry,
        }))
    }
}

/// The first entry of an `XREADGROUP` reply: `[[stream, [[entry id, [field, value, ...]]]]]`.
pub(super) fn first_entry(reply: &Value) -> Option<(String, String)> {
    let Value::Array(streams) = reply else {
        return None;
    };
    let Value::Array(stream) = streams.first()? else {
        return None;
    };
    let Value::Array(entries) = stream.get(1)? else {
        return None;
    };
    let Value::Array(entry) = entries.first()? else {
        return None;
    };
    let eid = text(entry.first()?)?;
    let Value::Array(fields) = entry.get(1)? else {
        return None;
    };
    let id = fields
        .chunks(2)
        .find(|kv| text(&kv[0]).as_deref() == Some("id"))
        .and_then(|kv| kv.get(1))
        .and_then(text)?;
    Some((eid, id))
}
