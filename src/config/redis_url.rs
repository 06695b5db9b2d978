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

/// Where the fleet's Redis is, and how to log in. Its `Debug` prints passwords as `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub addr: RedisAddr,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Clone, PartialEq, Eq)]
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
    /// `redis+cluster://` (`rediss+cluster://`: `tls`): seed nodes of a Redis Cluster.
    Cluster {
        nodes: Vec<(String, u16)>,
        tls: bool,
        ca: Option<PathBuf>,
    },
    /// `redis+sentinel://` (`rediss+sentinel://`: `tls`): the Sentinels that know where
    /// `master` is; the target's user and password are the master's, these the Sentinels'.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        tls: bool,
        ca: Option<PathBuf>,
        username: Option<String>,
        password: Option<String>,
    },
}

/// What stands for a secret in every output.
pub const HIDDEN: &str = "****";

fn hidden(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| HIDDEN)
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("addr", &self.addr)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .finish()
    }
}

impl std::fmt::Debug for RedisAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisAddr::Tcp { host, port } => f
                .debug_struct("Tcp")
                .field("host", host)
                .field("port", port)
                .finish(),
            RedisAddr::Tls { host, port, ca } => f
                .debug_struct("Tls")
                .field("host", host)
                .field("port", port)
                .field("ca", ca)
                .finish(),
            RedisAddr::Unix(path) => f.debug_tuple("Unix").field(path).finish(),
            RedisAddr::Cluster { nodes, tls, ca } => f
                .debug_struct("Cluster")
                .field("nodes", nodes)
                .field("tls", tls)
                .field("ca", ca)
                .finish(),
            RedisAddr::Sentinel {
                sentinels,
                master,
                tls,
                ca,
                username,
                password,
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("master", master)
                .field("tls", tls)
                .field("ca", ca)
                .field("username", username)
                .field("password", &hidden(password))
                .finish(),
        }
    }
}

/// `url` as it may be shown: every password (the user information's, `pass=`,
/// `sentinel_pass=`) replaced by `****` where it stands. Anything else is kept, so the
/// operator recognises the URL: a password that also occurs elsewhere (`redis://u:1@10.0.0.1`)
/// is not hidden there too, which would mangle the host and the printed configuration.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match before_query.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            match userinfo.split_once(':') {
                Some((user, pass)) if !pass.is_empty() => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(HIDDEN);
                }
                _ => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(hosts);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key @ ("pass" | "sentinel_pass" | "password"), value)) => {
                    // A fragment after the value is no part of it ('#' is ASCII: a boundary).
                    let (secret, fragment) = value.split_at(value.find('#').unwrap_or(value.len()));
                    out.push_str(key);
                    out.push('=');
                    out.push_str(if secret.is_empty() { "" } else { HIDDEN });
                    out.push_str(fragment);
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

/// The raw (still percent-encoded) secrets of a URL, longest first (so that a secret that
/// contains another is replaced whole).
fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some((userinfo, _)) = before_query.rsplit_once('@') {
        if let Some((_, pass)) = userinfo.split_once(':') {
            found.push(pass.to_owned());
        }
    }
    for pair in query.split('&') {
        if let Some(("pass" | "sentinel_pass" | "password", value)) = pair.split_once('=') {
            found.push(value.split('#').next().unwrap_or("").to_owned());
        }
    }
    found.retain(|s| !s.is_empty());
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found
}

/// The reason of a refused URL, naming it with its secrets hidden.
fn refused(url: &str, why: impl std::fmt::Display) -> String {
    let mut why = why.to_string();
    for secret in secrets(url) {
        why = why.replace(&secret, HIDDEN);
    }
    format!("{:?}: {why}", redacted(url))
}

/// Whether this build speaks TLS to Redis (the `redis-tls` feature).
pub const TLS: bool = cfg!(feature = "redis-tls");

/// Parses `async.redis_url`; the error is the reason of a configuration problem.
pub fn parse(url: &str) -> Result<RedisTarget, String> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refused(url, "contains whitespace or a control character"));
    }
    let needs_tls = |scheme: &str| {
        refused(
            url,
            format!(
                "this build of fc-init has no TLS, so {scheme} is refused; build it with \
                 `cargo build --features redis-tls`, or use redis:// on a private network, \
                 unix:// to a local socket, or a local TLS tunnel"
            ),
        )
    };
    for (scheme, tls_scheme) in [
        ("rediss+cluster://", true),
        ("redis+cluster://", false),
        ("rediss+sentinel://", true),
        ("redis+sentinel://", false),
    ] {
        let Some(rest) = url.strip_prefix(scheme) else {
            continue;
        };
        if tls_scheme && !TLS {
            return Err(needs_tls(scheme));
        }
        let parsed = match scheme.contains("cluster") {
            true => cluster(rest, tls_scheme),
            false => sentinel(rest, tls_scheme),
        };
        return parsed.map_err(|why| refused(url, why));
    }
    if let Some(rest) = url.strip_prefix("rediss://") {
        if !TLS {
            return Err(needs_tls("rediss://"));
        }
        return tls(rest).map_err(|why| refused(url, why));
    }
    if let Some(rest) = url.strip_prefix("redis://") {
        return plain(rest).map_err(|why| refused(url, why));
    }
    if let Some(rest) = url
        .strip_prefix("unix://")
        .or_else(|| url.strip_prefix("redis+unix://"))
    {
        return unix(rest).map_err(|why| refused(url, why));
    }
    Err(refused(
        url,
        "not a Redis URL such as \"redis://[user:pass@]host:port/db\", \
         \"redis+cluster://host:port,host:port\", \"redis+sentinel://host:port/MASTER\" or \
         \"unix:///path/to/redis.sock\"",
    ))
}

/// The CA file of `?ca=`.
fn ca_path(path: &str) -> Result<PathBuf, String> {
    let path = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "the CA file's path is not UTF-8")?;
    if !path.starts_with('/') {
        return Err(format!(
            "the CA file must be an absolute path (?ca=/path/ca.pem), not {path:?}"
        ));
    }
    Ok(PathBuf::from(path.into_owned()))
}

/// `[user[:pass]@]host:port[,host:port...]` with `default_port`: the login and the nodes.
type Login = (Option<String>, Option<String>);
fn login_and_nodes(
    authority: &str,
    default_port: u16,
) -> Result<(Login, Vec<(String, u16)>), String> {
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let login = credentials_of(credentials)?;
    let mut nodes = Vec::new();
    for hostport in hosts.split(',') {
        let (host, port) = host_and_port(hostport)?;
        let port = match hostport.ends_with(&format!(":{port}")) {
            true => port,
            false => default_port,
        };
        nodes.push((host, port));
    }
    Ok((login, nodes))
}

fn credentials_of(credentials: Option<&str>) -> Result<Login, String> {
    Ok(match credentials {
        None => (None, None),
        Some(c) => {
            let (user, pass) = match c.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (c, None),
            };
            (decoded(user)?, pass.map(decoded).transpose()?.flatten())
        }
    })
}

/// `redis+cluster://` after the scheme: seed nodes, no database (a cluster has only 0).
fn cluster(rest: &str, tls: bool) -> Result<RedisTarget, String> {
    let (rest, query) = split_query(rest)?;
    let mut ca = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("ca", path) if tls => ca = Some(ca_path(path)?),
            (other, _) => {
                return Err(format!(
                    "unknown parameter {other:?} ({})",
                    if tls { "ca" } else { "none are known" }
                ))
            }
        }
    }
    let authority = match rest.split_once('/') {
        None | Some((_, "")) => rest.trim_end_matches('/'),
        Some(_) => return Err("a Redis Cluster has no database number (only 0)".to_owned()),
    };
    let ((username, password), nodes) = login_and_nodes(authority, DEFAULT_PORT)?;
    Ok(RedisTarget {
        addr: RedisAddr::Cluster { nodes, tls, ca },
        db: 0,
        username,
        password,
    })
}

/// The default port of a Sentinel.
pub const SENTINEL_PORT: u16 = 26379;

/// `redis+sentinel://` after the scheme: `[login@]sentinels/MASTER[/db][?sentinel_user=&sentinel_pass=]`.
fn sentinel(rest: &str, tls: bool) -> Result<RedisTarget, String> {
    let (rest, query) = split_query(rest)?;
    let (mut s_user, mut s_pass, mut ca) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("sentinel_user", v) => s_user = decoded(v)?,
            ("sentinel_pass", v) => s_pass = decoded(v)?,
            ("ca", path) if tls => ca = Some(ca_path(path)?),
            (other, _) => {
                return Err(format!(
                    "unknown parameter {other:?} (sentinel_user, sentinel_pass{})",
                    if tls { ", ca" } else { "" }
                ))
            }
        }
    }
    let (authority, path) = rest
        .split_once('/')
        .ok_or("the master's name is missing (redis+sentinel://host:port/MASTER)")?;
    let (master, db) = match path.split_once('/') {
        Some((m, db)) => (m, db.trim_end_matches('/')),
        None => (path, ""),
    };
    let master = percent_decode_str(master)
        .decode_utf8()
        .map_err(|_| "the master's name is not UTF-8")?
        .into_owned();
    if master.is_empty() {
        return Err("the master's name is missing (redis+sentinel://host:port/MASTER)".to_owned());
    }
    let db = database(db)?;
    let ((username, password), sentinels) = login_and_nodes(authority, SENTINEL_PORT)?;
    Ok(RedisTarget {
        addr: RedisAddr::Sentinel {
            sentinels,
            master,
            tls,
            ca,
            username: s_user,
            password: s_pass,
        },
        db,
        username,
        password,
    })
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
            ("ca", path) => ca = Some(ca_path(path)?),
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
    let (username, password) = credentials_of(credentials)?;
    let (host, port) = host_and_port(hostport)?;
    let db = database(path.trim_start_matches('/'))?;
    Ok(RedisTarget {
        addr: addr(host, port),
        db,
        username,
        password,
    })
}

/// A URL's database number: none is database 0.
fn database(db: &str) -> Result<i64, String> {
    match db {
        "" => Ok(0),
        db => db
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{db:?} is not a database number")),
    }
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
mod tests;
