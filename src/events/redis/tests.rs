//! Unit tests of the Redis backend's pure parts: messages without credentials, the TLS
//! address, the parsing of a stream read.

use super::claimer::first_entry;
use super::connect::connection_info;
use super::*;
use crate::config::redis_url::{RedisAddr, RedisTarget};
use redis::ConnectionAddr;

#[test]
fn messages_name_the_server_without_credentials() {
    assert_eq!(server_of("redis://user:secret@db:6379/2"), "db:6379/2");
    assert_eq!(server_of("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    assert_eq!(server_of("unix:///run/redis.sock"), "/run/redis.sock");
    assert_eq!(
        server_of("unix:///run/r.sock?db=1&pass=secret"),
        "/run/r.sock"
    );
    assert_eq!(
        server_of("rediss://app:secret@r.internal:6380/0?ca=/etc/ca.pem"),
        "r.internal:6380/0"
    );
}

#[test]
fn a_rediss_target_is_a_verified_tls_address() {
    let target = RedisTarget {
        addr: RedisAddr::Tls {
            host: "r.internal".into(),
            port: 6380,
            ca: None,
        },
        db: 2,
        username: None,
        password: Some("pw".into()),
    };
    let info = connection_info(target);
    assert_eq!(
        info.addr(),
        &ConnectionAddr::TcpTls {
            host: "r.internal".into(),
            port: 6380,
            insecure: false,
            tls_params: None,
        }
    );
    assert_eq!(info.redis_settings().db(), 2);
}

#[test]
fn the_first_entry_of_a_read_is_found() {
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let reply = Value::Array(vec![Value::Array(vec![
        bulk("fc-init:{q}:stream"),
        Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("id"), bulk("ev-1")]),
        ])]),
    ])]);
    assert_eq!(first_entry(&reply), Some(("1-0".into(), "ev-1".into())));
    assert_eq!(first_entry(&Value::Nil), None);
}
