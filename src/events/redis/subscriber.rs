//! The subscriber: hears the terminates meant for this instance (channel `ctl:<consumer>`)
//! and the ends of events that terminates wait for (channel `ended`), and reconnects with
//! backoff.
//!
//! **Sharded pub/sub where the server has it** (Redis 7: the scripts `SPUBLISH`, see
//! `scripts/prelude.lua`, and the subscriber `SSUBSCRIBE`s). On a cluster a shard channel
//! lives on the master of its slot (the queue's hash tag puts both channels on the queue's
//! slot), so a message stays on that shard instead of being broadcast over the cluster bus
//! to every node as a `PUBLISH` is. The subscriber follows `MOVED` to that master; when the
//! slot moves away or the master is demoted the server ends the subscription (a
//! `sunsubscribe` push), and when the master dies the connection breaks: either way the
//! subscriber subscribes again wherever the slot is now. A word published meanwhile is not
//! lost: the owner's renewal returns a held event's terminate every second (see the backend's
//! docs), and a waiting terminate looks again each time the subscriber is back.
//!
//! The redis crate's synchronous `PubSub` knows neither `SSUBSCRIBE` nor `smessage`, so the
//! subscription is read by hand over RESP3 (`HELLO 3`: messages arrive as push frames, which
//! the crate never mistakes for late replies). A server without `HELLO` (before Redis 6)
//! gets the crate's classic `SUBSCRIBE`, and the scripts `PUBLISH` there.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::{Connection, ErrorKind, PushKind, RedisError, RedisResult, Value};

use super::link::BACKOFF_MAX;
use super::Inner;
use crate::events::backend::Control;

/// How long the subscriber waits for a message before it looks at its state (stopping, a
/// new master) again.
const POLL: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most `MOVED` hops to the slot's master before the subscriber starts over.
const MAX_HOPS: usize = 3;
const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// What one subscription ended with, when it did not fail.
enum End {
    /// The service is gone: the subscriber stops.
    Stopped,
    /// The subscription was ended or must move (the slot moved, the master changed): made
    /// again at once.
    Moved,
}

/// Listens until the service stops.
pub(super) fn subscriber(inner: &Arc<Inner>, control: &Weak<dyn Control>) {
    let channels = [
        format!("{}ctl:{}", inner.prefix, inner.me),
        format!("{}ended", inner.prefix),
    ];
    let mut backoff = BACKOFF_MIN;
    loop {
        if control.strong_count() == 0 {
            return;
        }
        match session(inner, control, &channels, &mut backoff) {
            Ok(End::Stopped) => return,
            Ok(End::Moved) => {
                log::debug!("Redis subscriber: the channels moved; subscribing again")
            }
            Err(e) => {
                log::debug!("Redis subscriber: {e}; reconnecting");
                // A schedule of retries, not a wait for an event: the backoff is the pause.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One subscription: connected, subscribed (following `MOVED`), then messages until it ends.
fn session(
    inner: &Inner,
    control: &Weak<dyn Control>,
    channels: &[String; 2],
    backoff: &mut Duration,
) -> RedisResult<End> {
    let generation = inner.topology.generation();
    let mut at: Option<String> = None;
    for _ in 0..MAX_HOPS {
        let mut conn = inner
            .topology
            .pubsub_connection(CONNECT_TIMEOUT, at.as_deref())?;
        let version = match hello3(&mut conn) {
            Ok(version) => version,
            // No RESP3 (before Redis 6): the crate's classic subscription.
            Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
                return classic(inner, control, channels, conn, generation, backoff);
            }
            Err(e) => return Err(e),
        };
        let command = match version >= 7 {
            true => "SSUBSCRIBE",
            false => "SUBSCRIBE",
        };
        let cmd = redis::cmd(command).arg(channels.as_slice()).clone();
        conn.send_packed_command(&cmd.get_packed_command())?;
        match confirmed(&mut conn, channels.len()) {
            Ok(()) => {}
            Err(e) => match e.redirect_node() {
                // The slot is served elsewhere: there.
                Some((node, _)) => {
                    at = Some(node.to_owned());
                    continue;
                }
                None => return Err(e),
            },
        }
        // Whatever ended while this instance did not listen: waiters look again.
        inner.ended.bump();
        *backoff = BACKOFF_MIN;
        conn.set_read_timeout(Some(POLL))?;
        return listen(inner, control, channels, &mut conn, generation);
    }
    Err(RedisError::from((
        ErrorKind::Io,
        "the queue's slot kept moving while subscribing",
    )))
}

/// `HELLO 3`: RESP3 from now on; the server's major version.
fn hello3(conn: &mut Connection) -> RedisResult<u64> {
    let hello: Value = redis::cmd("HELLO").arg(3).query(conn)?;
    Ok(major_version(&hello))
}

/// The major version in a `HELLO` reply (a map with `version`), 0 when it has none.
fn major_version(hello: &Value) -> u64 {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let fields: Vec<(&Value, &Value)> = match hello {
        Value::Map(fields) => fields.iter().map(|(k, v)| (k, v)).collect(),
        // RESP2's form: a flat array of names and values.
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| Some((&kv[0], kv.get(1)?)))
            .collect(),
        _ => Vec::new(),
    };
    fields
        .into_iter()
        .find(|(k, _)| text(k).as_deref() == Some("version"))
        .and_then(|(_, v)| text(v)?.split('.').next()?.parse().ok())
        .unwrap_or(0)
}

/// Reads the confirmations of a (S)SUBSCRIBE of `n` channels; an error reply (`MOVED`, a
/// missing right) is returned as such.
fn confirmed(conn: &mut Connection, n: usize) -> RedisResult<()> {
    let mut left = n;
    while left > 0 {
        let frame = conn.recv_response()?.extract_error()?;
        // A message before the last confirmation is dropped: the ends are bumped once
        // listening anyway, and a terminate comes again with the renewal.
        if matches!(
            frame,
            Value::Push {
                kind: PushKind::Subscribe | PushKind::SSubscribe,
                ..
            }
        ) {
            left -= 1;
        }
    }
    Ok(())
}

/// Messages until the subscription ends or must move.
fn listen(
    inner: &Inner,
    control: &Weak<dyn Control>,
    channels: &[String; 2],
    conn: &mut Connection,
    generation: u64,
) -> RedisResult<End> {
    loop {
        let frame = match conn.recv_response() {
            Ok(frame) => frame.extract_error()?,
            Err(e) if e.is_timeout() => match quiet(inner, control, generation) {
                Some(end) => return Ok(end),
                None => continue,
            },
            Err(e) => return Err(e),
        };
        let Value::Push { kind, data } = frame else {
            continue;
        };
        match kind {
            PushKind::Message | PushKind::SMessage => {
                let text = |v: Option<&Value>| match v {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                heard(
                    inner,
                    control,
                    channels,
                    &text(data.first()),
                    &text(data.get(1)),
                );
            }
            // The server ended the subscription: the slot moved away, or this node is no
            // longer its master.
            PushKind::SUnsubscribe | PushKind::Unsubscribe => return Ok(End::Moved),
            _ => {}
        }
    }
}

/// After a [`POLL`] without a message: whether the subscription ends (the service is gone,
/// or the master moved: listen on the new one), or goes on.
fn quiet(inner: &Inner, control: &Weak<dyn Control>, generation: u64) -> Option<End> {
    if control.strong_count() == 0 {
        return Some(End::Stopped);
    }
    (inner.topology.generation() != generation).then_some(End::Moved)
}

/// One message on `channel`.
fn heard(
    inner: &Inner,
    control: &Weak<dyn Control>,
    channels: &[String; 2],
    channel: &str,
    payload: &str,
) {
    if channel == channels[1] {
        inner.ended.bump();
    } else if let Some((term, id)) = payload.split_once(' ') {
        if let Some(control) = control.upgrade() {
            inner.act(&*control, id, term == "graceful");
        }
    }
}

/// The crate's classic subscription, for a server without RESP3.
fn classic(
    inner: &Inner,
    control: &Weak<dyn Control>,
    channels: &[String; 2],
    mut conn: Connection,
    generation: u64,
    backoff: &mut Duration,
) -> RedisResult<End> {
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(channels.as_slice())?;
    pubsub.set_read_timeout(Some(POLL))?;
    inner.ended.bump();
    *backoff = BACKOFF_MIN;
    loop {
        let msg = match pubsub.get_message() {
            Ok(msg) => msg,
            Err(e) if e.is_timeout() => match quiet(inner, control, generation) {
                Some(end) => return Ok(end),
                None => continue,
            },
            Err(e) => return Err(e),
        };
        let payload: String = msg.get_payload().unwrap_or_default();
        heard(inner, control, channels, msg.get_channel_name(), &payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_is_read_from_hello() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let map = Value::Map(vec![
            (bulk("server"), bulk("redis")),
            (bulk("version"), bulk("7.0.15")),
        ]);
        assert_eq!(major_version(&map), 7);
        let flat = Value::Array(vec![
            bulk("server"),
            bulk("redis"),
            bulk("version"),
            bulk("6.2.1"),
        ]);
        assert_eq!(major_version(&flat), 6);
        assert_eq!(major_version(&Value::Nil), 0);
    }
}
