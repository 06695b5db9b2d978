//! Destinations (docs/reference.md §10): the URL of `[async.on_success]` / `[async.on_failure]`,
//! the JSON an ended event is posted as, when a failed delivery is tried again, and one try
//! through the project's blocking HTTP client.
//!
//! The outbox itself is the store's: a delivery is recorded with the event's end in the same
//! transaction, so an event never ends without it, and the service's delivery thread
//! ([`super::service`]) tries what is due until a 2xx or `async.destination_retry_for`.
//! At least once: a try whose 2xx could not be recorded is sent again.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::model::{Delivered, Delivery, Status};
use super::time::format_rfc3339_ms;
use crate::http::client;

/// First delay before a failed delivery is tried again; doubles up to [`BACKOFF_MAX`].
const BACKOFF: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long one try may take, connect to answer.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(10);

/// A destination: `http://HOST[:PORT][/PATH]`, or `https://...` with the `tls` build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, `/` at least.
    pub path: String,
    /// `https://`.
    pub tls: bool,
}

impl Url {
    /// The `Host` field: the host, with its port when it is not the scheme's own.
    pub fn authority(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        match (self.tls, self.port) {
            (false, 80) | (true, 443) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

/// Whether this build speaks `https://` to destinations (the `tls` feature).
const TLS_BUILT: bool = cfg!(feature = "tls");

/// Parses a destination URL; `https://` needs the `tls` build.
pub fn parse_url(s: &str) -> Result<Url, String> {
    let (rest, tls) = match (s.strip_prefix("http://"), s.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) if TLS_BUILT => (rest, true),
        (_, Some(_)) => {
            return Err(format!(
                "{s:?}: https:// destinations need a build with TLS \
                 (cargo build --features tls); use http://"
            ))
        }
        _ => {
            return Err(format!(
                "{s:?} is not a URL such as \"http://HOST:PORT/PATH\""
            ))
        }
    };
    if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{s:?} contains whitespace or a control character"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(format!(
            "{s:?}: credentials in a destination URL are not supported"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{s:?}: {port:?} is not a port"))?;
            (host, port)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok(Url {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
        tls,
    })
}

/// What to do after a failed try at `now` that was the `attempts`-th: try again after the
/// backoff (the last try no later than `until`), or give up once `until` has passed.
pub fn after_failure(attempts: u32, now: u64, until: u64) -> Delivered {
    if now >= until {
        return Delivered::GiveUp;
    }
    let doublings = attempts.saturating_sub(1).min(16);
    let delay = (BACKOFF * 2u32.pow(doublings)).min(BACKOFF_MAX);
    Delivered::RetryAt(now.saturating_add(delay.as_millis() as u64).min(until))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    request_id: &'a str,
    function_name: &'a str,
    qualifier: &'a str,
    condition: &'static str,
    approximate_invoke_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseContext<'a> {
    status_code: Option<u16>,
    error_type: Option<&'a str>,
    error_message: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    version: &'static str,
    timestamp: String,
    request_context: RequestContext<'a>,
    request_payload: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_payload_encoding: Option<&'static str>,
    response_context: ResponseContext<'a>,
    response_payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_payload_encoding: Option<&'static str>,
}

/// The condition an ended event is delivered under.
pub fn condition(status: Status) -> &'static str {
    match status {
        Status::Finished => "Success",
        Status::Expired => "EventAgeExceeded",
        _ => "RetriesExhausted",
    }
}

/// A payload as UTF-8 text, or base64 with its encoding named.
fn payload(bytes: &[u8]) -> (String, Option<&'static str>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (base64(bytes), Some("base64")),
    }
}

/// The JSON posted for `d` (docs/reference.md §10); `timestamp` is the event's end.
pub fn body(d: &Delivery) -> String {
    let e = &d.event;
    let (request_payload, request_payload_encoding) = payload(&d.request_body);
    let (response_payload, response_payload_encoding) = match &d.response_body {
        Some(b) => {
            let (p, enc) = payload(b);
            (Some(p), enc)
        }
        None => (None, None),
    };
    super::model::to_json_text(&Body {
        version: "1.0",
        timestamp: format_rfc3339_ms(e.end_time.unwrap_or(e.submit_time)),
        request_context: RequestContext {
            request_id: &e.request_id,
            function_name: &e.function_name,
            qualifier: &e.qualifier,
            condition: condition(e.status),
            approximate_invoke_count: e.attempts,
        },
        request_payload,
        request_payload_encoding,
        response_context: ResponseContext {
            status_code: e.status_code,
            error_type: e.error_type.as_deref(),
            error_message: e.error_message.as_deref(),
        },
        response_payload,
        response_payload_encoding,
    })
}

/// One try: POSTs `body` to `url`; `Ok(true)` for a 2xx, `Ok(false)` for another status,
/// `Err` with the reason when no answer came.
pub fn post(url: &str, body: &str) -> Result<bool, String> {
    let parsed = parse_url(url)?;
    let deadline = Instant::now() + TRY_TIMEOUT;
    let addr: SocketAddr = (parsed.host.as_str(), parsed.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", parsed.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", parsed.host))?;
    let host = parsed.authority();
    let headers = [("Content-Type", "application/json")];
    let (path, body) = (parsed.path.as_str(), body.as_bytes());
    let answer = match parsed.tls {
        #[cfg(feature = "tls")]
        true => {
            let mut conn = super::tls::connect(&parsed.host, addr, deadline)?;
            client::request_to(&mut conn, &host, "POST", path, &headers, body, deadline)
        }
        _ => {
            let mut conn = client::connect_tcp(addr, deadline).map_err(|e| e.to_string())?;
            client::request_to(&mut conn, &host, "POST", path, &headers, body, deadline)
        }
    };
    Ok(answer.map_err(|e| e.to_string())?.is_success())
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::Event;

    #[test]
    fn destination_urls_parse_and_https_is_refused_with_a_reason() {
        let u = parse_url("http://127.0.0.1:8080/done?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/done?x=1")
        );
        let u = parse_url("http://example.com").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = parse_url("http://[::1]:81/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert_eq!(u.authority(), "[::1]:81");
        assert_eq!(parse_url("http://h:80/").unwrap().authority(), "h");
        match TLS_BUILT {
            true => {
                let u = parse_url("https://h/x").unwrap();
                assert_eq!((u.port, u.tls, u.authority().as_str()), (443, true, "h"));
                assert_eq!(parse_url("https://h:8443/").unwrap().authority(), "h:8443");
            }
            false => {
                let e = parse_url("https://x/").unwrap_err();
                assert!(
                    e.contains("https://") && e.contains("--features tls"),
                    "{e}"
                );
            }
        }
        for bad in [
            "ftp://x",
            "http://",
            "http://x:0/",
            "http://x:y/",
            "http://a b/",
            "http://u@x/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failed_delivery_backs_off_from_half_a_second_to_a_minute_then_gives_up() {
        assert_eq!(after_failure(1, 1000, 100_000), Delivered::RetryAt(1500));
        assert_eq!(after_failure(2, 1000, 100_000), Delivered::RetryAt(2000));
        assert_eq!(after_failure(20, 0, u64::MAX), Delivered::RetryAt(60_000));
        // The last try is at the end of the window, not past it.
        assert_eq!(after_failure(3, 1000, 2500), Delivered::RetryAt(2500));
        assert_eq!(after_failure(4, 2500, 2500), Delivered::GiveUp);
    }

    #[test]
    fn the_body_names_the_condition_and_encodes_binary_payloads_in_base64() {
        let d = Delivery {
            event: Event {
                request_id: "r1".into(),
                status: Status::Expired,
                attempts: 0,
                function_name: "f".into(),
                qualifier: "LATEST".into(),
                error_type: Some("EventAgeExceeded".into()),
                end_time: Some(0),
                ..Event::default()
            },
            request_body: vec![0xff, 0x00, 0x61],
            response_body: Some(b"ok".to_vec()),
            until: 0,
        };
        let v: serde_json::Value = serde_json::from_str(&body(&d)).unwrap();
        assert_eq!(v["version"], "1.0");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["requestContext"]["condition"], "EventAgeExceeded");
        assert_eq!(v["requestContext"]["requestId"], "r1");
        assert_eq!(v["requestPayload"], "/wBh");
        assert_eq!(v["requestPayloadEncoding"], "base64");
        assert_eq!(v["responsePayload"], "ok");
        assert!(v.get("responsePayloadEncoding").is_none());
        assert_eq!(v["responseContext"]["errorType"], "EventAgeExceeded");
        assert_eq!(condition(Status::Finished), "Success");
        assert_eq!(condition(Status::Failed), "RetriesExhausted");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"a"), "YQ==");
    }
}
