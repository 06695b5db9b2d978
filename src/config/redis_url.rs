//! `async.redis_url`: the Redis server of a fleet, read once at configuration time so that a
//! malformed URL is a configuration error (exit 2) rather than a failure at start-up.
//!
//! The forms are redis-rs's own: `redis://[user][:password@]host[:port][/db]` and
//! `unix:///path/to/redis.sock[?db=N&user=U&pass=P]` (`redis+unix://` is the same), and, in a
//! build with the `redis-tls` feature, `rediss://[user][:password@]host[:port][/db][?ca=PATH]`:
//! TLS, the server's certificate verified for `host` against the system's roots or, with
//! `ca`, against the CA certificates of that PEM file only (redis-rs has no such parameter: it
//! takes the CA as bytes; fc-init's own URL forms already carry settings as a query, as in
//! `unix://`). There is no insecure mode: redis-rs's `#insecure` is refused. User, password
//! and paths are percent-decoded. Written here rather than through the `url` crate, which the
//! redis crate would otherwise use: `url` brings the IDNA and Unicode normalisation tables (about
//! 230 KB of a 3.7 MB static binary, for fc-init's tini-sized budget) for host names a Redis
//! URL never needs in Unicode, and this grammar is small enough to check completely in tests.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// The default Redis port.
pub const DEFAULT_PORT: u16 = 6379;

/// Where the fleet's Redis is, and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub addr: RedisAddr,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddr {
    /// A host name or IP address (IPv6 without its brackets) and a port.
    Tcp {
        host: String,
        port: u16,
    },
    /// `rediss://`: TLS to `host` (the name the certificate must be valid for) and `port`;
    /// `ca` is the PEM file of the only CAs trusted, `None` the system's roots.
    Tls {
        host: String,
        port: u16,
        ca: Option<PathBuf>,
    },
    Unix(PathBuf),
}

/// Whether this build speaks TLS to Redis (the `redis-tls` feature).
pub const TLS: bool = cfg!(feature = "redis-tls");

/// Parses `async.redis_url`; the error is the reason of a configuration problem.
pub fn parse(url: &str) -> Result<RedisTarget, String> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{url:?} contains whitespace or a control character"
        ));
    }
    if let Some(rest) = url.strip_prefix("rediss://") {
        if !TLS {
            return Err(format!(
                "{url:?}: this build of fc-init has no TLS, so rediss:// is refused; build it \
                 with `cargo build --features redis-tls`, or use redis:// on a private network, \
                 unix:// to a local socket, or a local TLS tunnel"
            ));
        }
        return tls(rest).map_err(|why| format!("{url:?}: {why}"));
    }
    if let Some(rest) = url.strip_prefix("redis://") {
        return plain(rest).map_err(|why| format!("{url:?}: {why}"));
    }
    if let Some(rest) = url
        .strip_prefix("unix://")
        .or_else(|| url.strip_prefix("redis+unix://"))
    {
        return unix(rest).map_err(|why| format!("{url:?}: {why}"));
    }
    Err(format!(
        "{url:?} is not a Redis URL such as \"redis://[user:pass@]host:port/db\" or \
         \"unix:///path/to/redis.sock\""
    ))
}

/// `redis://` after the scheme.
fn plain(rest: &str) -> Result<RedisTarget, String> {
    match split_query(rest)? {
        (rest, "") => tcp(rest, |host, port| RedisAddr::Tcp { host, port }),
        _ => Err("query strings are not supported (?ca= is for rediss://)".to_owned()),
    }
}

/// `rediss://` after the scheme: [`tcp`]'s form, whose query may name the CA file (`ca`).
fn tls(rest: &str) -> Result<RedisTarget, String> {
    if rest.ends_with("#insecure") {
        return Err(
            "fc-init always verifies the server's certificate and host name \
                    (#insecure is not supported); for a private CA give ?ca=/path/ca.pem"
                .to_owned(),
        );
    }
    let (rest, query) = split_query(rest)?;
    let mut ca = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("ca", path) => {
                let path = percent_decode_str(path)
                    .decode_utf8()
                    .map_err(|_| "the CA file's path is not UTF-8")?;
                if !path.starts_with('/') {
                    return Err(format!(
                        "the CA file must be an absolute path (?ca=/path/ca.pem), not {path:?}"
                    ));
                }
                ca = Some(PathBuf::from(path.into_owned()));
            }
            (other, _) => return Err(format!("unknown parameter {other:?} (ca)")),
        }
    }
    tcp(rest, |host, port| RedisAddr::Tls { host, port, ca })
}

/// The part before `?`, and the query (empty when none); no fragment.
fn split_query(rest: &str) -> Result<(&str, &str), String> {
    if rest.contains('#') {
        return Err("fragments are not supported (a '#' in a password is written %23)".to_owned());
    }
    Ok(rest.split_once('?').unwrap_or((rest, "")))
}

/// `[user[:pass]@]host[:port][/db]`, at the address `addr` makes of host and port.
fn tcp(rest: &str, addr: impl FnOnce(String, u16) -> RedisAddr) -> Result<RedisTarget, String> {
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (credentials, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let (username, password) = match credentials {
        None => (None, None),
        Some(c) => {
            let (user, pass) = match c.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (c, None),
            };
            (decoded(user)?, pass.map(decoded).transpose()?.flatten())
        }
    };
    let (host, port) = host_and_port(hostport)?;
    let db = match path.trim_start_matches('/') {
        "" => 0,
        db => db
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{db:?} is not a database number"))?,
    };
    Ok(RedisTarget {
        addr: addr(host, port),
        db,
        username,
        password,
    })
}

fn host_and_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address must end with ']'")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            port => (
                host,
                Some(port.strip_prefix(':').ok_or("expected ':' and a port")?),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if host.is_empty() || !host.chars().all(valid) {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{p:?} is not a port between 1 and 65535"))?,
    };
    Ok((host.to_owned(), port))
}

fn unix(rest: &str) -> Result<RedisTarget, String> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, q),
        None => (rest, ""),
    };
    if !path.starts_with('/') {
        return Err("the socket path must be absolute (unix:///path)".to_owned());
    }
    let mut target = RedisTarget {
        addr: RedisAddr::Unix(PathBuf::from(
            percent_decode_str(path)
                .decode_utf8()
                .map_err(|_| "the socket path is not UTF-8")?
                .into_owned(),
        )),
        db: 0,
        username: None,
        password: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "db" => {
                target.db = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("{value:?} is not a database number"))?
            }
            "user" => target.username = decoded(value)?,
            "pass" => target.password = decoded(value)?,
            other => return Err(format!("unknown parameter {other:?} (db, user, pass)")),
        }
    }
    Ok(target)
}

/// A percent-decoded, non-empty credential; empty means none.
fn decoded(s: &str) -> Result<Option<String>, String> {
    let text = percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| "a user or password is not UTF-8 once decoded".to_owned())?;
    Ok((!text.is_empty()).then(|| text.into_owned()))
}

#[cfg(test)]
mod tests {
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
}
