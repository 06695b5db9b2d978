//! The Redis URL grammar, table by table: what each form parses to, what is refused and why,
//! and that no password is ever shown.

use super::*;

fn tcp_target(host: &str, port: u16, db: i64) -> RedisTarget {
    RedisTarget {
        addr: RedisAddr::Tcp {
            host: host.into(),
            port,
        },
        db,
        username: None,
        password: None,
    }
}

#[test]
fn every_documented_form_parses() {
    assert_eq!(
        parse("redis://127.0.0.1:6380/2"),
        Ok(tcp_target("127.0.0.1", 6380, 2))
    );
    assert_eq!(parse("redis://redis"), Ok(tcp_target("redis", 6379, 0)));
    assert_eq!(
        parse("redis://r.example:7000/"),
        Ok(tcp_target("r.example", 7000, 0))
    );
    assert_eq!(
        parse("redis://[::1]:6390/1"),
        Ok(tcp_target("::1", 6390, 1))
    );
    assert_eq!(parse("redis://[::1]"), Ok(tcp_target("::1", 6379, 0)));
    let with_login = parse("redis://app:p%40ss%3Aword@10.0.0.5:6379/3").unwrap();
    assert_eq!(with_login.username.as_deref(), Some("app"));
    assert_eq!(with_login.password.as_deref(), Some("p@ss:word"));
    assert_eq!(with_login.db, 3);
    let password_only = parse("redis://:secret@host").unwrap();
    assert_eq!(
        (password_only.username, password_only.password.as_deref()),
        (None, Some("secret"))
    );
    let unix = parse("unix:///run/redis/redis.sock?db=4&pass=x%20y").unwrap();
    assert_eq!(unix.addr, RedisAddr::Unix("/run/redis/redis.sock".into()));
    assert_eq!((unix.db, unix.password.as_deref()), (4, Some("x y")));
    assert!(parse("redis+unix:///tmp/r.sock").is_ok());
}

#[test]
fn malformed_urls_are_refused_with_the_reason() {
    for (url, says) in [
        ("http://x", "not a Redis URL"),
        ("redis://", "not a host name"),
        ("redis://host:0", "not a port"),
        ("redis://host:99999", "not a port"),
        ("redis://host/x", "not a database number"),
        ("redis://host/-1", "not a database number"),
        ("redis://host/0?protocol=resp3", "query strings"),
        ("redis://host/0?ca=/ca.pem", "?ca= is for rediss://"),
        ("redis://host/0#insecure", "fragments"),
        ("redis://[::1", "must end with ']'"),
        ("redis://[nope]:1", "not an IPv6 address"),
        ("redis://ho st", "whitespace"),
        ("unix://relative.sock", "must be absolute"),
        ("unix:///r.sock?bogus=1", "unknown parameter"),
    ] {
        refused(parse, url, says);
    }
}

#[track_caller]
fn refused(parser: fn(&str) -> Result<RedisTarget, String>, input: &str, says: &str) {
    match parser(input) {
        Err(why) => assert!(why.contains(says), "{input}: {why}"),
        Ok(t) => panic!("{input} parsed as {t:?}"),
    }
}

fn tls_target(host: &str, port: u16, db: i64, ca: Option<&str>) -> RedisTarget {
    RedisTarget {
        addr: RedisAddr::Tls {
            host: host.into(),
            port,
            ca: ca.map(PathBuf::from),
        },
        ..tcp_target(host, port, db)
    }
}

/// The grammar of `rediss://`, which a build without the feature checks too (its
/// refusal comes first, below).
#[test]
fn every_documented_tls_form_parses() {
    assert_eq!(
        tls("r.example:6380/1"),
        Ok(tls_target("r.example", 6380, 1, None))
    );
    assert_eq!(tls("127.0.0.1"), Ok(tls_target("127.0.0.1", 6379, 0, None)));
    assert_eq!(
        tls("[::1]:6380/?ca=/etc/redis/ca.pem"),
        Ok(tls_target("::1", 6380, 0, Some("/etc/redis/ca.pem")))
    );
    assert_eq!(
        tls("r:6380?ca=/my%20certs/ca.pem"),
        Ok(tls_target("r", 6380, 0, Some("/my certs/ca.pem")))
    );
    let with_login = tls("app:p%40ss@r.internal:6380/3?ca=/ca.pem").unwrap();
    assert_eq!(
        (
            with_login.username.as_deref(),
            with_login.password.as_deref()
        ),
        (Some("app"), Some("p@ss"))
    );
    assert_eq!(
        with_login.addr,
        tls_target("r.internal", 6380, 3, Some("/ca.pem")).addr
    );
    for (rest, says) in [
        ("r:6380#insecure", "always verifies"),
        ("r:6380/0#x", "fragments"),
        ("r:6380?ca=ca.pem", "absolute path"),
        ("r:6380?ca=", "absolute path"),
        ("r:6380?cafile=/ca.pem", "unknown parameter"),
        ("r:6380?protocol=resp3", "unknown parameter"),
        ("r:0", "not a port"),
        ("r/x", "not a database number"),
        ("", "not a host name"),
    ] {
        refused(tls, rest, says);
    }
}

#[test]
fn rediss_parses_only_in_a_build_with_tls() {
    let url = "rediss://r.example:6380/1?ca=/ca.pem";
    if TLS {
        assert_eq!(
            parse(url),
            Ok(tls_target("r.example", 6380, 1, Some("/ca.pem")))
        );
        assert!(parse("rediss://r:6380#insecure").is_err());
    } else {
        // Refused even when malformed: the build is what is missing.
        for url in [url, "rediss://r:6380#insecure", "rediss://"] {
            let why = parse(url).expect_err(url);
            assert!(
                why.contains("no TLS") && why.contains("cargo build --features redis-tls"),
                "{why}"
            );
        }
    }
}

#[test]
fn cluster_and_sentinel_forms_parse() {
    let c = parse("redis+cluster://app:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002").unwrap();
    assert_eq!(
        c.addr,
        RedisAddr::Cluster {
            nodes: vec![
                ("10.0.0.1".into(), 7000),
                ("10.0.0.2".into(), DEFAULT_PORT),
                ("::1".into(), 7002)
            ],
            tls: false,
            ca: None,
        }
    );
    assert_eq!(
        (c.username.as_deref(), c.password.as_deref()),
        (Some("app"), Some("pw"))
    );
    let s = parse(
        "redis+sentinel://:m%40ster@s1:26380,s2/mymaster/3?sentinel_user=su&sentinel_pass=sp",
    )
    .unwrap();
    assert_eq!(
        s.addr,
        RedisAddr::Sentinel {
            sentinels: vec![("s1".into(), 26380), ("s2".into(), SENTINEL_PORT)],
            master: "mymaster".into(),
            tls: false,
            ca: None,
            username: Some("su".into()),
            password: Some("sp".into()),
        }
    );
    assert_eq!((s.db, s.password.as_deref()), (3, Some("m@ster")));
    assert_eq!(parse("redis+sentinel://s1/m").unwrap().db, 0);
    for (url, says) in [
        ("redis+cluster://h:7000/1", "no database"),
        ("redis+cluster://h:7000?ca=/x", "unknown parameter"),
        ("redis+cluster://h:0", "not a port"),
        ("redis+cluster://", "not a host name"),
        ("redis+sentinel://s1:26379", "master's name is missing"),
        ("redis+sentinel://s1:26379/", "master's name is missing"),
        ("redis+sentinel://s1/m/x", "not a database number"),
        ("redis+sentinel://s1/m?bogus=1", "unknown parameter"),
    ] {
        refused(parse, url, says);
    }
    if !TLS {
        for url in ["rediss+cluster://h:7000", "rediss+sentinel://s/m"] {
            assert!(parse(url).unwrap_err().contains("no TLS"), "{url}");
        }
    } else {
        let c = parse("rediss+cluster://h:7000?ca=/ca.pem").unwrap();
        assert!(matches!(
            c.addr,
            RedisAddr::Cluster {
                tls: true,
                ca: Some(_),
                ..
            }
        ));
        let s = parse("rediss+sentinel://s/m?ca=/ca.pem").unwrap();
        assert!(matches!(
            s.addr,
            RedisAddr::Sentinel {
                tls: true,
                ca: Some(_),
                ..
            }
        ));
    }
}

/// The bug: configuration errors printed `redis://u:TopSecret@...`.
/// Found by the config fuzz target: the printed configuration of
/// `redis://'user:1@1ssa27.0.0.1:6379/2` did not load, because every `1` was hidden,
/// the host's included.
#[test]
fn a_password_that_also_occurs_in_the_host_was_hidden_in_the_host_too() {
    for (url, shown) in [
        (
            "redis://'user:1@1ssa27.0.0.1:6379/2",
            "redis://'user:****@1ssa27.0.0.1:6379/2",
        ),
        ("redis://u:6379@h:6379", "redis://u:****@h:6379"),
        (
            "redis+sentinel://:s@a:26379,b:26379/m?sentinel_user=u&sentinel_pass=s",
            "redis+sentinel://:****@a:26379,b:26379/m?sentinel_user=u&sentinel_pass=****",
        ),
        (
            "unix:///run/r.sock?db=1&pass=1",
            "unix:///run/r.sock?db=1&pass=****",
        ),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://u@h", "redis://u@h"),
    ] {
        assert_eq!(redacted(url), shown, "{url}");
        // Shown again, it stays the same: `--check-config` prints it, and its output loads.
        assert_eq!(redacted(shown), shown, "{shown}");
    }
}

#[test]
fn no_password_in_errors_or_debug() {
    for url in [
        "redis://u:TopSecret@host:99999",
        "redis://u:TopSecret@host/x",
        "redis://u:TopSecret@ho st",
        "redis+cluster://u:TopSecret@h:7000/1",
        "redis+sentinel://u:TopSecret@s1/m/x?sentinel_pass=TopSecret2",
        "redis+sentinel://s1/m?sentinel_pass=TopSecret&bogus=1",
        "unix:///r.sock?pass=TopSecret&bogus=1",
        "http://u:TopSecret@x",
    ] {
        let why = parse(url).unwrap_err();
        assert!(!why.contains("TopSecret"), "{why}");
        assert!(why.contains("****"), "{why}");
    }
    let t = parse("redis+sentinel://u:TopSecret@s1/m?sentinel_pass=TopSecret2").unwrap();
    let shown = format!("{t:?}");
    assert!(
        !shown.contains("TopSecret") && shown.contains("****"),
        "{shown}"
    );
    assert_eq!(
        redacted("redis://app:p%40ss@h:1/0"),
        "redis://app:****@h:1/0"
    );
    assert_eq!(redacted("redis://h:1/0"), "redis://h:1/0");
}
