//! The fleet's scripts where their answer decides between a 202 and a 503, run on a real
//! `redis-server`: WITHDRAW (a batch too few replicas confirmed) and UNHAND (a handoff's)
//! tell an event withdrawn, one that stays and runs, and one stored nowhere apart. The last
//! is what a stale cluster master leaves: it answered a submission as stored, and its resync
//! dropped the write; answering 202 for it would acknowledge an event that never runs.

use redis::Value;

use crate::redis::RedisServer;

const PREFIX: &str = "fc-init:{scripts}:";
const STREAM: &str = "fc-init:{scripts}:stream";

/// A script as fc-init loads it: the prelude, then its own body.
fn script(name: &str) -> redis::Script {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/events/redis/scripts");
    let read = |file: &str| {
        std::fs::read_to_string(format!("{dir}/{file}"))
            .unwrap_or_else(|e| panic!("{dir}/{file}: {e}"))
    };
    redis::Script::new(&format!(
        "\n{}\n\n{}",
        read("prelude.lua"),
        read(&format!("{name}.lua"))
    ))
}

/// Runs `name` with the arguments every script takes (prefix, now, retention, consumer),
/// then `args`.
fn run(conn: &mut redis::Connection, name: &str, args: &[&str]) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let script = script(name);
    let mut inv = script.key(STREAM);
    inv.arg(PREFIX)
        .arg(&now)
        .arg(86_400_000)
        .arg("test-consumer");
    for a in args {
        inv.arg(*a);
    }
    inv.invoke(conn).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// SUBMIT of one event, held for the replicas (`hold` ms) or delivered at once (0).
fn submit(conn: &mut redis::Connection, id: &str, hold: &str) {
    let reply = run(
        conn,
        "submit",
        &[
            "0", hold, id, "1", "POST", "/invoke", "[]", "{}", "fn", "LATEST", "",
        ],
    );
    assert_eq!(
        reply,
        Value::Array(vec![Value::Array(vec![Value::Int(0)])]),
        "{id}"
    );
}

#[test]
fn a_withdrawal_tells_withdrawn_staying_and_stored_nowhere_apart() {
    let server = RedisServer::start("scripts-withdraw");
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    submit(&mut conn, "held", "3000");
    submit(&mut conn, "delivered", "0");
    let reply = run(&mut conn, "withdraw", &["held", "delivered", "nowhere"]);
    assert_eq!(
        reply,
        Value::Array(vec![Value::Int(1), Value::Int(0), Value::Int(2)]),
        "held: withdrawn; delivered: stays and runs; nowhere: stored nowhere"
    );
    assert_eq!(
        server
            .query(&["EXISTS", &format!("{PREFIX}ev:held")])
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        server
            .query(&["EXISTS", &format!("{PREFIX}ev:delivered")])
            .as_deref(),
        Some("1")
    );
}

#[test]
fn a_handoff_stored_nowhere_is_not_answered_as_one_that_exists() {
    let server = RedisServer::start("scripts-unhand");
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(run(&mut conn, "unhand", &["nowhere", "1-0"]), Value::Int(2));
    // One that exists but is not this call's RUNNING handoff stays (and is answered as an
    // event that exists).
    submit(&mut conn, "queued", "0");
    assert_eq!(run(&mut conn, "unhand", &["queued", "1-0"]), Value::Int(0));
}
