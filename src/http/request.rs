//! Read one request head from a client connection and decide how its body is framed.
//!
//! The tokenizer is httparse with its strict defaults ([`httparse::ParserConfig::default`]):
//! no spaces between a field name and its colon, no obs-fold, no multiple spaces in the request
//! line, no NUL/CR/LF (or other CTL but HTAB) in values, HTTP/1.0 and HTTP/1.1 only. On top of it
//! this module applies the framing rules of RFC 9112 §6 (see the private `head` module) and the Host rule
//! of §3.2.
//!
//! Failure modes: [`HttpError::BadRequest`] (400), [`HttpError::HeadersTooLarge`] (431),
//! [`HttpError::Timeout`] (the buffer's deadline, 408), [`HttpError::ConnectionClosed`] (clean
//! close before the first byte), [`HttpError::UnexpectedEof`] (close mid-head), and
//! [`HttpError::Read`]. After any error the connection must be closed: the position of the next
//! message is unknown.

use std::io::Read;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::buffered::{Buffered, Timeouts};
use super::head::{self, Headers};
use super::{BodyFraming, HttpError, Limits, MAX_HEADERS};

/// A parsed, validated request head. Reusable: [`read_request_head_into`] overwrites it in
/// place without reallocating.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// The fields, in order, original case; their `raw` holds the whole head.
    pub headers: Headers,
    method: Range<usize>,
    target: Range<usize>,
    /// The authority of an absolute-form target (`http://a.example/x`), empty otherwise.
    authority: Range<usize>,
    /// The origin-form of an absolute-form target (`/x`); unused otherwise.
    origin: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// How the body that follows is delimited (never [`BodyFraming::UntilClose`]).
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this one (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// A `Host` field or an absolute-form authority named the target host.
    has_host: bool,
    /// `Expect: 100-continue` was sent (RFC 9110 §10.1.1): the client may wait for a
    /// [`super::CONTINUE_100`] before sending the body.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The method, e.g. `POST` (a token: ASCII).
    pub fn method(&self) -> &str {
        std::str::from_utf8(&self.headers.raw[self.method.clone()]).unwrap_or("")
    }

    /// The request target in origin-form (path and query): as received, or rewritten from an
    /// absolute-form target (RFC 9112 §3.2.2), or `*` (OPTIONS), or the authority of CONNECT.
    pub fn target(&self) -> &str {
        if !self.authority.is_empty() {
            return &self.origin;
        }
        std::str::from_utf8(&self.headers.raw[self.target.clone()]).unwrap_or("")
    }

    /// The authority of an absolute-form target: it, not `Host`, names the target host
    /// (RFC 9112 §3.2.2), so the request is forwarded with it as `Host`.
    pub fn authority(&self) -> Option<&str> {
        if self.authority.is_empty() {
            return None;
        }
        std::str::from_utf8(&self.headers.raw[self.authority.clone()]).ok()
    }

    /// Whether the request named its host, by a `Host` field (at most one, valid: checked
    /// while parsing) or an absolute-form target. False only for an HTTP/1.0 request without
    /// either (or any request when `require_host` is off): whoever forwards it must add a
    /// `Host` of its own, since the function always gets HTTP/1.1 (docs/reference.md §12).
    pub fn has_host(&self) -> bool {
        self.has_host
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// Whether header `name` is hop-by-hop for this message (fixed list or named in
    /// `Connection`).
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        self.headers.is_hop_by_hop(name)
    }

    /// Size of the head on the wire.
    pub fn head_len(&self) -> usize {
        self.headers.raw.len()
    }
}

/// Read and validate the next request head from `src`. See [`read_request_head_into`].
pub fn read_request_head<S: Read + Timeouts>(
    src: &mut Buffered<S>,
    limits: &Limits,
) -> Result<RequestHead, HttpError> {
    let mut head = RequestHead::default();
    read_request_head_into(src, limits, &mut head)?;
    Ok(head)
}

/// Read the next request head from `src` into `head`, reusing its allocations.
///
/// Reads only as much as needed: bytes after the head (body, pipelined requests) stay pending
/// in `src`. Never buffers more than `limits.max_header_bytes` of head: a head that has not
/// ended by then is [`HttpError::HeadersTooLarge`]. Bounded in time by `src`'s deadline.
pub fn read_request_head_into<S: Read + Timeouts>(
    src: &mut Buffered<S>,
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<(), HttpError> {
    let max = limits.max_header_bytes.max(1);
    src.ensure_capacity(max);
    head::read_head(src, max, |window| parse_into(window, limits, head))
}

/// Parses a request head from bytes already received, without reading: the non-blocking
/// counterpart of [`read_request_head_into`] (an event loop reads, this decides), with the
/// same rules and limits.
///
/// `scanned` is how many leading bytes of `buf` were already seen without a complete head (0
/// at first): parsing runs on the first bytes (garbage such as a TLS hello is rejected at
/// once) and then only when an empty line may have arrived after them, so a head trickling in
/// byte by byte costs O(n), not O(n²).
///
/// `Ok(Some(n))`: a complete head of `n` bytes is now in `head`. `Ok(None)`: more bytes are
/// needed. A head that has not ended within `limits.max_header_bytes` is
/// [`HttpError::HeadersTooLarge`].
pub fn parse_request_head(
    buf: &[u8],
    scanned: usize,
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<Option<usize>, HttpError> {
    let max = limits.max_header_bytes.max(1);
    head::parse_window(buf, scanned, max, |window| parse_into(window, limits, head))
}

/// Parse a complete head from `buf`; `Ok(None)` when more bytes are needed.
fn parse_into(
    buf: &[u8],
    limits: &Limits,
    out: &mut RequestHead,
) -> Result<Option<usize>, HttpError> {
    let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let slots = &mut storage[..limits.max_headers.clamp(1, MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    // The default config is the strict one (every `allow_*` off); spelled out so that a
    // future change of httparse defaults is visible here.
    let config = httparse::ParserConfig::default();
    let parsed = config.parse_request_with_uninit_headers(&mut req, buf, slots);
    let Some(n) = head::complete(parsed, HttpError::BadRequest)? else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::BadRequest("incomplete request line"));
    };

    let raw = &buf[..n];
    out.headers.fill(raw, req.headers);
    out.method = head::range_in(raw, method.as_bytes());
    out.target = head::range_in(raw, target.as_bytes());
    out.authority = 0..0;
    target_form(method, target, raw, out)?;
    out.version_minor = version;

    let ff = head::framing_fields(&out.headers, version).map_err(HttpError::BadRequest)?;
    out.framing = if ff.chunked {
        BodyFraming::Chunked
    } else if let Some(n) = ff.content_length {
        BodyFraming::Length(n)
    } else {
        // RFC 9112 §6.3 rule 7: a request without either has no body.
        BodyFraming::None
    };
    // An absolute-form target names the host itself (RFC 9112 §3.2.2).
    out.has_host =
        host_rules(&out.headers, version, limits.require_host)? || !out.authority.is_empty();
    out.keep_alive = head::keep_alive(&out.headers, version);
    out.expect_continue = version == 1
        && out
            .headers
            .get_all("expect")
            .any(|v| head::trim_ows(v).eq_ignore_ascii_case(b"100-continue"));
    Ok(Some(n))
}

/// The Host and Connection rules of docs/reference.md §12, in every HTTP version, and RFC 9112 §3.2 for
/// HTTP/1.1: at most one `Host` field, whose value is empty (RFC 9110 §7.2) or a valid
/// `host[:port]`; exactly one with `require_host` in HTTP/1.1; no `Connection` option naming
/// `Host` or a framing field (a proxy that honours it would strip them and frame the message,
/// or name its host, differently from fc-init). Returns whether a Host field is present.
fn host_rules(h: &Headers, version: u8, require_host: bool) -> Result<bool, HttpError> {
    let mut hosts = h.get_all("host");
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HttpError::BadRequest("several Host fields"));
    }
    match host {
        Some(v) if !v.is_empty() && !head::valid_host_port(v) => {
            return Err(HttpError::BadRequest("Host is not a valid host[:port]"));
        }
        None if version == 1 && require_host => {
            return Err(HttpError::BadRequest("HTTP/1.1 request without Host"));
        }
        _ => {}
    }
    if ["host", "content-length", "transfer-encoding"]
        .into_iter()
        .any(|name| h.connection_has(name))
    {
        return Err(HttpError::BadRequest(
            "Connection names Host, Content-Length or Transfer-Encoding",
        ));
    }
    Ok(host.is_some())
}

/// Checks the request target's form (RFC 9112 §3.2): origin-form (`/path?query`), absolute-form
/// (`http://authority/path`, rewritten to origin-form with its authority kept), asterisk-form
/// for OPTIONS, authority-form for CONNECT (which the proxy refuses). Anything else is 400.
///
/// Works on the target's bytes: the target may hold any UTF-8 (httparse accepts bytes ≥ 0x80),
/// so a byte offset taken from a pattern's length is not a character boundary of the target
/// (`GET evl.exa\xc7\x98ple:80` once panicked here slicing the `&str`).
fn target_form(
    method: &str,
    target: &str,
    raw: &[u8],
    out: &mut RequestHead,
) -> Result<(), HttpError> {
    let t = target.as_bytes();
    // RFC 3986 §2: a URI is ASCII, other characters are percent-encoded. httparse lets bytes
    // ≥ 0x80 through; a strict function (h11, for one) refuses them, and such a disagreement
    // is what fc-init must not create, so they are 400 here.
    if !t.is_ascii() {
        return Err(HttpError::BadRequest(
            "request target is not ASCII (RFC 3986: percent-encode other characters)",
        ));
    }
    if t.first() == Some(&b'/') || (t == b"*" && method == "OPTIONS") || method == "CONNECT" {
        return Ok(());
    }
    let Some(rest) = strip_scheme(t) else {
        return Err(HttpError::BadRequest(
            "request target is neither origin-form nor absolute-form",
        ));
    };
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if !head::valid_host_port(authority) {
        return Err(HttpError::BadRequest(
            "bad authority in an absolute-form target",
        ));
    }
    // `path` starts at an ASCII delimiter (or is empty) of a `&str`, so it is UTF-8 itself.
    let Ok(path) = std::str::from_utf8(path) else {
        return Err(HttpError::BadRequest("request target is not UTF-8"));
    };
    out.authority = head::range_in(raw, authority);
    out.origin.clear();
    if !path.starts_with('/') {
        out.origin.push('/');
    }
    out.origin.push_str(path);
    Ok(())
}

/// The rest of an absolute-form target after `http://` or `https://` (any case), if it has
/// one and something follows it.
fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    [&b"http://"[..], b"https://"]
        .into_iter()
        .find_map(|scheme| {
            let (head, rest) = target.split_at_checked(scheme.len())?;
            (head.eq_ignore_ascii_case(scheme) && !rest.is_empty()).then_some(rest)
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::http::body::{copy_body, Output};

    pub(crate) fn parse(raw: &[u8]) -> Result<RequestHead, HttpError> {
        let mut b = Buffered::new(raw);
        read_request_head(&mut b, &Limits::default())
    }

    fn status(raw: &[u8]) -> Option<u16> {
        match parse(raw) {
            Ok(h) => panic!(
                "accepted {:?}: {} {}",
                String::from_utf8_lossy(raw),
                h.method(),
                h.target()
            ),
            Err(e) => e.status(),
        }
    }

    #[test]
    fn simple_get() {
        let h =
            parse(b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example\r\nX-Case: Value \r\n\r\n").unwrap();
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/a/b?x=1&y");
        assert_eq!(h.path(), "/a/b");
        assert_eq!(h.query(), Some("x=1&y"));
        assert_eq!(h.version_minor, 1);
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        let fields: Vec<_> = h.headers.iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(fields, [("Host", &b"example"[..]), ("X-Case", b"Value")]);
    }

    #[test]
    fn http10_keep_alive_rules() {
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        let h = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn post_with_length_and_expect() {
        let h = parse(
            b"POST /invoke HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.framing, BodyFraming::Length(5));
        assert!(h.expect_continue);
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;name=val;x\r\nhello\r\n6 ; y=\"q\"\r\n world\r\n0\r\nTrailer-A: 1\r\nB: 2\r\n\r\n";
        let mut b = Buffered::new(&raw[..]);
        let h = read_request_head(&mut b, &Limits::default()).unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
        let mut out = Vec::new();
        let n = copy_body(&mut b, &mut out, h.framing, Output::Raw, 1 << 20).unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(n, 11);
        assert!(b.buffer().is_empty());
    }

    #[test]
    fn pipelined_requests_on_one_buffer() {
        let raw = b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
                    GET /2 HTTP/1.1\r\nHost: a\r\n\r\n\
                    POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
        let mut b = Buffered::new(&raw[..]);
        let mut head = RequestHead::default();
        let mut bodies = Vec::new();
        for _ in 0..3 {
            read_request_head_into(&mut b, &Limits::default(), &mut head).unwrap();
            let mut body = Vec::new();
            copy_body(&mut b, &mut body, head.framing, Output::Raw, 100).unwrap();
            bodies.push((head.target().to_owned(), body));
        }
        assert_eq!(
            bodies,
            [
                ("/1".to_owned(), b"abc".to_vec()),
                ("/2".to_owned(), vec![]),
                ("/3".to_owned(), b"z".to_vec())
            ]
        );
        assert!(matches!(
            read_request_head_into(&mut b, &Limits::default(), &mut head),
            Err(HttpError::ConnectionClosed)
        ));
    }

    #[test]
    fn smuggling_shapes_are_400() {
        let cases: &[&[u8]] = &[
            // both framings
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            // differing lengths
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
            // not plain digits / overflow
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            // transfer codings other than a lone chunked
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            // obs-fold
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
            // whitespace before the colon
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n",
            // NUL / bare CR / other CTL inside a value
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n",
            // bad names and request lines
            b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET /\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rX-B: c\r\n\r\n",
            // Host rules
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ];
        for raw in cases {
            assert_eq!(status(raw), Some(400), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn host_and_connection_rules_in_every_version() {
        for version in ["1.0", "1.1"] {
            let bad = [
                "Host: a\r\nHost: a\r\n",
                "Host: a\r\nhost: b\r\n",
                "Host: a, b\r\n",
                "Host: a b\r\n",
                "Host: a/b@c\r\n",
                "Host: u@a\r\n",
                "Host: a/b\r\n",
                "Host: a:80x\r\n",
                "Host: a:99999\r\n",
                "Host: a:\r\n",
                "Host: \u{e9}\r\n",
                "Host: a\r\nConnection: Host\r\n",
                "Host: a\r\nConnection: keep-alive, content-length\r\n",
                "Host: a\r\nConnection: close\r\nConnection: Transfer-Encoding\r\n",
            ];
            for fields in bad {
                let raw = format!("GET / HTTP/{version}\r\n{fields}\r\n");
                assert_eq!(status(raw.as_bytes()), Some(400), "{raw:?}");
            }
            for fields in [
                "Host: a.example:8080\r\n",
                "Host: [::1]:9000\r\n",
                "Host:\r\n",
                "Host: a\r\nConnection: keep-alive, X-Drop\r\n",
            ] {
                let raw = format!("GET / HTTP/{version}\r\n{fields}\r\n");
                let h = parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
                assert!(h.has_host(), "{raw:?}");
            }
        }
        // HTTP/1.0 may omit Host; the head says so, for the proxy to add one.
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.has_host());
        let h = parse(b"GET http://a.example/x HTTP/1.0\r\n\r\n").unwrap();
        assert!(h.has_host());
        assert_eq!(h.authority(), Some("a.example"));
        // The absolute-form authority obeys the same grammar.
        for bad in [
            &b"GET http://a,b/ HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://a\xc3\xa9/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(status(bad), Some(400), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn identical_content_length_list_is_one_length() {
        // RFC 9110 §8.6: `5, 5` (or the field twice) is the length 5; differing values are 400.
        for fields in [
            "Content-Length: 5, 5\r\n",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: 5,5 , 5\r\n",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
            assert_eq!(
                parse(raw.as_bytes()).unwrap().framing,
                BodyFraming::Length(5)
            );
        }
        for fields in [
            "Content-Length: 5, 6\r\n",
            "Content-Length: 5\r\nContent-Length: 05, 6\r\n",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
            assert_eq!(status(raw.as_bytes()), Some(400), "{raw:?}");
        }
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_its_authority() {
        let h = parse(b"GET http://a.example/x?y=1 HTTP/1.1\r\nHost: b.example\r\n\r\n").unwrap();
        assert_eq!(
            (h.target(), h.path(), h.query()),
            ("/x?y=1", "/x", Some("y=1"))
        );
        assert_eq!(h.authority(), Some("a.example"));
        let h = parse(b"GET HTTPS://a.example:8443 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((h.target(), h.authority()), ("/", Some("a.example:8443")));
        let h = parse(b"GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(h.target(), "/?q");
        let h = parse(b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((h.target(), h.authority()), ("/plain", None));
        assert!(parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        assert!(parse(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        for bad in [
            &b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET x/y HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(status(bad), Some(400), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn multibyte_target_does_not_panic_in_target_form() {
        // Found by the network and libFuzzer: a scheme's length used as an offset into a
        // target whose character there is two bytes long.
        for raw in [
            &b"GET evl.exa\xc7\x98ple:80 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET http:/\xd1\x8a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET https:/\xd1\x8ax HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET \xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http\xc3\xa9://a/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(400), "{:?}", String::from_utf8_lossy(raw));
        }
        // Any non-ASCII target is refused (RFC 3986 §2); percent-encoded, it is kept as sent.
        for raw in [
            "GET /\u{e9}t\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a/?q=\u{20ac} HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(status(raw.as_bytes()), Some(400), "{raw:?}");
        }
        let h =
            parse(b"GET http://a/%C3%A9t%C3%A9?q=%E2%82%AC HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(h.target(), "/%C3%A9t%C3%A9?q=%E2%82%AC");
    }

    #[test]
    fn lf_only_line_endings_accepted() {
        // RFC 9112 §2.2: a recipient MAY accept a lone LF; the function only ever sees the head
        // re-serialised by fc-init, so no parser disagreement can arise.
        let h = parse(b"GET / HTTP/1.1\nHost: a\n\n").unwrap();
        assert_eq!(h.target(), "/");
    }

    #[test]
    fn leading_empty_line_ignored() {
        // RFC 9112 §2.2: SHOULD ignore at least one empty line before the request line.
        assert!(parse(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
    }

    #[test]
    fn host_optional_when_configured() {
        let mut b = Buffered::new(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        let limits = Limits {
            require_host: false,
            ..Limits::default()
        };
        assert!(read_request_head(&mut b, &limits).is_ok());
    }

    fn head_of_len(len: usize) -> Vec<u8> {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
        raw.resize(len - 4, b'p');
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(raw.len(), len);
        raw
    }

    #[test]
    fn header_limit_is_exact() {
        let limits = Limits {
            max_header_bytes: 1000,
            ..Limits::default()
        };
        let mut at = head_of_len(1000);
        at.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut b = Buffered::with_capacity(&at[..], 64);
        let h = read_request_head(&mut b, &limits).unwrap();
        assert_eq!(h.head_len(), 1000);
        assert!(
            read_request_head(&mut b, &limits).is_ok(),
            "next request intact"
        );

        let over = head_of_len(1001);
        let mut b = Buffered::with_capacity(&over[..], 64);
        let e = read_request_head(&mut b, &limits).unwrap_err();
        assert!(matches!(e, HttpError::HeadersTooLarge), "{e}");
        assert_eq!(e.status(), Some(431));
    }

    #[test]
    fn endless_head_stops_at_limit() {
        // A peer that never ends its head: we read at most the limit, then 431.
        struct Endless(usize);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(7);
                buf[..n].fill(b'a');
                self.0 += n;
                Ok(n)
            }
        }
        impl Timeouts for Endless {
            fn set_read_timeout(&self, _: Option<std::time::Duration>) -> std::io::Result<()> {
                Ok(())
            }
            fn set_write_timeout(&self, _: Option<std::time::Duration>) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut b = Buffered::with_capacity(Endless(0), 4096);
        let e = read_request_head(&mut b, &Limits::default()).unwrap_err();
        assert!(matches!(e, HttpError::HeadersTooLarge));
        assert!(b.get_ref().0 <= Limits::default().max_header_bytes + 7);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..101 {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(status(&raw), Some(431));
    }

    #[test]
    fn truncated_and_empty() {
        assert!(matches!(parse(b""), Err(HttpError::ConnectionClosed)));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost"),
            Err(HttpError::UnexpectedEof)
        ));
    }

    #[test]
    fn parse_from_a_slice_matches_reading() {
        let raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\n";
        let mut head = RequestHead::default();
        let limits = Limits::default();
        // Every prefix shorter than the head needs more bytes, with or without `scanned`.
        let head_len = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        for cut in 0..head_len {
            assert!(parse_request_head(&raw[..cut], 0, &limits, &mut head)
                .unwrap()
                .is_none());
            assert!(
                parse_request_head(&raw[..cut], cut.saturating_sub(1), &limits, &mut head)
                    .unwrap()
                    .is_none()
            );
        }
        let n = parse_request_head(raw, 10, &limits, &mut head)
            .unwrap()
            .unwrap();
        assert_eq!(n, head_len);
        assert_eq!(head.target(), "/a");
        assert_eq!(head.framing, BodyFraming::Length(2));
        // The rest (body, then a partial pipelined head) is not touched.
        assert!(parse_request_head(&raw[n + 2..], 0, &limits, &mut head)
            .unwrap()
            .is_none());
    }

    #[test]
    fn parse_from_a_slice_rejects_like_reading() {
        let mut head = RequestHead::default();
        let limits = Limits {
            max_header_bytes: 1000,
            ..Limits::default()
        };
        let e = parse_request_head(
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 1\r\n\r\n",
            0,
            &limits,
            &mut head,
        )
        .unwrap_err();
        assert_eq!(e.status(), Some(400));
        // Garbage is refused on its first bytes.
        let e = parse_request_head(b"\x16\x03\x01", 0, &limits, &mut head).unwrap_err();
        assert_eq!(e.status(), Some(400));
        // Exactly the limit is fine; a longer unfinished head is 431.
        assert!(
            parse_request_head(&head_of_len(1000), 0, &limits, &mut head)
                .unwrap()
                .is_some()
        );
        let e = parse_request_head(&head_of_len(1001), 0, &limits, &mut head).unwrap_err();
        assert!(matches!(e, HttpError::HeadersTooLarge), "{e}");
        let e = parse_request_head(&[b'a'; 1000], 500, &limits, &mut head).unwrap_err();
        assert!(matches!(e, HttpError::HeadersTooLarge), "{e}");
    }

    #[test]
    fn header_timeout_bounds_a_trickle() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        use std::time::{Duration, Instant};
        let (a, mut peer) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            // One byte every 20 ms: each read succeeds well within any per-read timeout.
            for &byte in b"GET / HTTP/1.1\r\nHost: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if peer.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut b = Buffered::new(a);
        let start = Instant::now();
        b.set_deadline(Some(start + Duration::from_millis(200)));
        let e = read_request_head(&mut b, &Limits::default()).unwrap_err();
        assert!(matches!(e, HttpError::Timeout), "{e}");
        assert_eq!(e.status(), Some(408));
        assert!(start.elapsed() < Duration::from_millis(1000));
        drop(b);
        writer.join().unwrap();
    }
}
