//! Storage shared by request and response heads: the raw head bytes copied once out of the
//! connection buffer (so the buffer is free for the body) and the spans of each field, plus
//! the field-level rules both directions share: Content-Length, Transfer-Encoding, Connection
//! and hop-by-hop fields (RFC 9110 §7.6.1, RFC 9112 §6).
//!
//! Also the reading both directions share: when to run httparse on bytes received so far
//! ([`parse_window`]), the blocking read loop around it ([`read_head`]), and turning httparse's
//! answer and fields into fc-init's ([`complete`], [`Headers::fill`]).
//!
//! All `Vec`s here are reused across messages by `read_*_head_into`, so a keep-alive
//! connection allocates nothing per request once warmed up.

use std::io::Read;
use std::ops::Range;

use super::buffered::{Buffered, Timeouts};
use super::HttpError;

/// Fields that are hop-by-hop by definition (RFC 9110 §7.6.1, plus the non-standard but common
/// Keep-Alive and Proxy-Connection). Any field named in `Connection` is hop-by-hop too.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is hop-by-hop by definition (not counting names listed in `Connection`; use
/// [`Headers::is_hop_by_hop`] for that).
pub fn is_hop_by_hop_name(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[derive(Debug, Clone, Default)]
struct Span {
    name: Range<usize>,
    value: Range<usize>,
    hop_by_hop: bool,
}

/// The header fields of one message, in received order with their original case.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// The whole head as received; spans index into it.
    pub(crate) raw: Vec<u8>,
    fields: Vec<Span>,
}

/// One header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// Name as received (a token, so valid ASCII).
    pub name: &'a str,
    /// Value with surrounding whitespace removed; may hold obs-text (bytes ≥ 0x80).
    pub value: &'a [u8],
    /// Hop-by-hop: by definition or because `Connection` names it. Never forwarded.
    pub hop_by_hop: bool,
}

impl Headers {
    pub(crate) fn clear(&mut self) {
        self.raw.clear();
        self.fields.clear();
    }

    /// Replace the content with the head `raw` and the `fields` httparse found in it (slices
    /// of `raw`), hop-by-hop fields marked.
    pub(crate) fn fill(&mut self, raw: &[u8], fields: &[httparse::Header<'_>]) {
        self.clear();
        self.raw.extend_from_slice(raw);
        for h in fields {
            self.push(range_in(raw, h.name.as_bytes()), range_in(raw, h.value));
        }
        self.mark_hop_by_hop();
    }

    /// Record a field whose name and value are sub-slices of `self.raw` (given as ranges).
    pub(crate) fn push(&mut self, name: Range<usize>, value: Range<usize>) {
        self.fields.push(Span {
            name,
            value,
            hop_by_hop: false,
        });
    }

    /// Mark hop-by-hop fields: the fixed list plus every name listed in `Connection`.
    pub(crate) fn mark_hop_by_hop(&mut self) {
        for i in 0..self.fields.len() {
            let name = self.name_of(i);
            let hop = is_hop_by_hop_name(name) || self.listed_in_connection(name);
            self.fields[i].hop_by_hop = hop;
        }
    }

    fn name_of(&self, i: usize) -> &str {
        let bytes = &self.raw[self.fields[i].name.clone()];
        // Names were validated as tokens by httparse, which are ASCII.
        std::str::from_utf8(bytes).unwrap_or("")
    }

    fn listed_in_connection(&self, name: &str) -> bool {
        self.get_all("connection")
            .flat_map(list_elements)
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// All fields in received order.
    pub fn iter(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        (0..self.fields.len()).map(move |i| Field {
            name: self.name_of(i),
            value: &self.raw[self.fields[i].value.clone()],
            hop_by_hop: self.fields[i].hop_by_hop,
        })
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|s| self.raw[s.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|s| &self.raw[s.value.clone()])
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields.iter().filter_map(move |s| {
            if self.raw[s.name.clone()].eq_ignore_ascii_case(name.as_bytes()) {
                Some(&self.raw[s.value.clone()])
            } else {
                None
            }
        })
    }

    /// Whether a field called `name` must not be forwarded: hop-by-hop by definition, or named
    /// in this message's `Connection` field (RFC 9110 §7.6.1).
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        is_hop_by_hop_name(name) || self.listed_in_connection(name)
    }

    /// Whether any `Connection` field lists `token` (case-insensitive).
    pub fn connection_has(&self, token: &str) -> bool {
        self.get_all("connection")
            .flat_map(list_elements)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// Elements of a comma-separated list value (RFC 9110 §5.6.1), optional whitespace trimmed,
/// empty elements skipped (recipients MUST ignore a reasonable number of them).
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The framing-relevant facts of a head, validated strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FramingFields {
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` field was present (and, having passed, is exactly `chunked`).
    pub chunked: bool,
}

/// Apply the framing rules of RFC 9112 §6.1–§6.3 strictly:
/// - Content-Length is 1*DIGIT without sign or whitespace and fits u64; repeated fields or
///   list forms ("5, 5") are accepted only when every value is identical (§6.3 rule 5).
/// - Transfer-Encoding must be exactly one `chunked` coding over all fields: other codings
///   (gzip, identity, xchunked) and repeated `chunked` are rejected because fc-init would have
///   to undo them to re-frame the body, and a disagreement with the function about them is a
///   smuggling vector (§6.1, §11.2).
/// - Both Content-Length and Transfer-Encoding: rejected (§6.1 allows it, but the message is a
///   likely smuggling attempt; docs/reference.md §12 requires 400).
/// - Transfer-Encoding in an HTTP/1.0 message: faulty framing (§6.1).
pub(crate) fn framing_fields(
    h: &Headers,
    version_minor: u8,
) -> Result<FramingFields, &'static str> {
    let mut content_length: Option<u64> = None;
    let mut te_codings = 0usize;
    let mut te_chunked = false;
    let mut te_present = false;
    for f in h.iter() {
        if f.name.eq_ignore_ascii_case("content-length") {
            if f.value.is_empty() {
                return Err("empty Content-Length");
            }
            for elem in f.value.split(|&b| b == b',') {
                let n = parse_content_length(trim_ows(elem))?;
                match content_length {
                    Some(prev) if prev != n => return Err("conflicting Content-Length values"),
                    _ => content_length = Some(n),
                }
            }
        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
            te_present = true;
            for coding in list_elements(f.value) {
                te_codings += 1;
                te_chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        }
    }
    if te_present {
        if version_minor == 0 {
            return Err("Transfer-Encoding in an HTTP/1.0 message");
        }
        if te_codings != 1 || !te_chunked {
            return Err("unsupported Transfer-Encoding (only a single chunked is accepted)");
        }
        if content_length.is_some() {
            return Err("both Content-Length and Transfer-Encoding");
        }
    }
    Ok(FramingFields {
        content_length,
        chunked: te_present,
    })
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), overflow rejected.
fn parse_content_length(s: &[u8]) -> Result<u64, &'static str> {
    if s.is_empty() {
        return Err("empty Content-Length");
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err("Content-Length is not plain digits");
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or("Content-Length overflows")?;
    }
    Ok(n)
}

/// Whether `v` is `host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2), read strictly: the
/// host is a reg-name of letters, digits, `-._~` and percent-escapes, or an IPv6 literal in
/// brackets; the port is 1 to 5 digits up to 65535. RFC 3986 also allows sub-delims (`,`, `;`,
/// `=`...) in a reg-name and an empty port; no real host name has them, and a proxy in front
/// may split or route on them differently (`Host: a, b`), so they are refused.
pub(crate) fn valid_host_port(v: &[u8]) -> bool {
    let (host_ok, port) = match v.strip_prefix(b"[") {
        Some(literal) => {
            let Some(close) = literal.iter().position(|&b| b == b']') else {
                return false;
            };
            let (addr, after) = literal.split_at(close);
            let ok = !addr.is_empty()
                && addr
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (ok, &after[1..])
        }
        None => {
            let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
            let (name, after) = v.split_at(end);
            (!name.is_empty() && valid_reg_name(name), after)
        }
    };
    host_ok
        && match port {
            [] => true,
            [b':', digits @ ..] => valid_port(digits),
            _ => false,
        }
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "%" HEXDIG HEXDIG )`.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut rest = name;
    while let [b, tail @ ..] = rest {
        rest = match (b, tail) {
            (b'%', [h, l, tail @ ..]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => tail,
            (b'%', _) => return false,
            (b, _) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => tail,
            _ => return false,
        };
    }
    true
}

/// 1 to 5 digits, at most 65535.
fn valid_port(digits: &[u8]) -> bool {
    (1..=5).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && digits
            .iter()
            .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
            <= 65535
}

/// Persistence per RFC 9112 §9.3: HTTP/1.1 stays open unless `close`; HTTP/1.0 closes unless
/// `keep-alive`.
pub(crate) fn keep_alive(h: &Headers, version_minor: u8) -> bool {
    if h.connection_has("close") {
        return false;
    }
    version_minor >= 1 || h.connection_has("keep-alive")
}

/// Convert a sub-slice of `base` to its index range (httparse hands out slices of the buffer).
pub(crate) fn range_in(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// A static description of an httparse error, for the 400/502 reason.
pub(crate) fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

/// httparse's answer on a head as fc-init's: `Ok(Some(n))` complete after `n` bytes,
/// `Ok(None)` more bytes needed; too many fields is [`HttpError::HeadersTooLarge`], anything
/// else malformed, made into an error by `bad` (`BadRequest` or `BadResponse`).
pub(crate) fn complete(
    parsed: httparse::Result<usize>,
    bad: fn(&'static str) -> HttpError,
) -> Result<Option<usize>, HttpError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::HeadersTooLarge),
        Err(e) => Err(bad(httparse_reason(e))),
    }
}

/// Runs `parse` on the first `max` bytes of `buf` when a head may be complete in them, and
/// says whether one was: `Ok(Some(n))` a head of `n` bytes, `Ok(None)` more bytes needed, and
/// [`HttpError::HeadersTooLarge`] when `max` bytes hold no complete head.
///
/// `scanned` is how many leading bytes of `buf` were already seen without a complete head (0
/// at first): parsing runs on the first bytes (garbage such as a TLS hello is rejected at
/// once) and then only when an empty line may have arrived after them, so a head trickling in
/// byte by byte costs O(n), not O(n²).
pub(crate) fn parse_window(
    buf: &[u8],
    scanned: usize,
    max: usize,
    parse: impl FnOnce(&[u8]) -> Result<Option<usize>, HttpError>,
) -> Result<Option<usize>, HttpError> {
    let window = &buf[..buf.len().min(max)];
    if !window.is_empty() && (scanned == 0 || may_end_head(window, scanned.min(window.len()))) {
        if let Some(n) = parse(window)? {
            return Ok(Some(n));
        }
    }
    if buf.len() >= max {
        return Err(HttpError::HeadersTooLarge);
    }
    Ok(None)
}

/// Reads from `src` until `parse` (as in [`parse_window`]) finds a complete head of at most
/// `max` bytes, and consumes it. Reads only as much as needed: bytes after the head stay
/// pending in `src`. A close before the first byte is [`HttpError::ConnectionClosed`], one
/// within the head [`HttpError::UnexpectedEof`]; bounded in time by `src`'s deadline.
pub(crate) fn read_head<S: Read + Timeouts>(
    src: &mut Buffered<S>,
    max: usize,
    mut parse: impl FnMut(&[u8]) -> Result<Option<usize>, HttpError>,
) -> Result<(), HttpError> {
    let mut scanned = 0;
    loop {
        if let Some(n) = parse_window(src.buffer(), scanned, max, &mut parse)? {
            src.consume_bytes(n);
            return Ok(());
        }
        scanned = src.buffer().len();
        // Keep the head contiguous with room to grow to `max` bytes.
        src.make_room(max);
        match src.fill_more() {
            Ok(0) if src.buffer().is_empty() => return Err(HttpError::ConnectionClosed),
            Ok(0) => return Err(HttpError::UnexpectedEof),
            Ok(_) => {}
            Err(e) => return Err(HttpError::from_read(e)),
        }
    }
}

/// Whether `buf[from..]` may contain the end of a head (an empty line). Used to avoid
/// re-running the full parser on every byte of a trickled head: O(n) total instead of O(n²).
pub(crate) fn may_end_head(buf: &[u8], from: usize) -> bool {
    let from = from.saturating_sub(3);
    buf[from..].windows(2).any(|w| w == b"\n\n" || w == b"\n\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in fields {
            let ns = h.raw.len();
            h.raw.extend_from_slice(n.as_bytes());
            let vs = h.raw.len();
            h.raw.extend_from_slice(v.as_bytes());
            h.push(ns..vs, vs..h.raw.len());
        }
        h.mark_hop_by_hop();
        h
    }

    #[test]
    fn content_length_rules() {
        let ok = |v: &str| framing_fields(&headers(&[("Content-Length", v)]), 1);
        assert_eq!(ok("5").unwrap().content_length, Some(5));
        assert_eq!(ok("5, 5").unwrap().content_length, Some(5));
        assert_eq!(
            ok("18446744073709551615").unwrap().content_length,
            Some(u64::MAX)
        );
        for bad in [
            "+5",
            "-1",
            "5 5",
            "0x5",
            "5, 6",
            "18446744073709551616",
            "5,",
            "",
        ] {
            assert!(ok(bad).is_err(), "{bad:?} accepted");
        }
        let two = headers(&[("Content-Length", "5"), ("content-length", "6")]);
        assert!(framing_fields(&two, 1).is_err());
        let same = headers(&[("Content-Length", "5"), ("content-length", "5")]);
        assert_eq!(framing_fields(&same, 1).unwrap().content_length, Some(5));
    }

    #[test]
    fn transfer_encoding_rules() {
        let te = |v: &str| framing_fields(&headers(&[("Transfer-Encoding", v)]), 1);
        assert!(te("chunked").unwrap().chunked);
        assert!(te("Chunked").unwrap().chunked);
        for bad in [
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "xchunked",
            "",
            "chunked;q=1",
        ] {
            assert!(te(bad).is_err(), "{bad:?} accepted");
        }
        let two = headers(&[
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "chunked"),
        ]);
        assert!(framing_fields(&two, 1).is_err());
        let h10 = headers(&[("Transfer-Encoding", "chunked")]);
        assert!(framing_fields(&h10, 0).is_err());
    }

    #[test]
    fn connection_lists_hop_by_hop() {
        let h = headers(&[
            ("Connection", "X-Secret, keep-alive"),
            ("x-secret", "1"),
            ("X-Other", "2"),
            ("TE", "trailers"),
        ]);
        let hops: Vec<_> = h.iter().map(|f| (f.name, f.hop_by_hop)).collect();
        assert_eq!(
            hops,
            [
                ("Connection", true),
                ("x-secret", true),
                ("X-Other", false),
                ("TE", true)
            ]
        );
        assert!(h.is_hop_by_hop("X-SECRET"));
        assert!(!h.is_hop_by_hop("x-other"));
        assert!(keep_alive(&h, 0));
    }

    #[test]
    fn host_values() {
        for good in [
            &b"a"[..],
            b"a.example",
            b"a.example:8080",
            b"127.0.0.1:9000",
            b"[::1]",
            b"[::1]:443",
            b"[fe80::1.2.3.4]",
            b"xn--bcher-kva.example",
            b"a%2Db",
            b"a_b~c:65535",
            b"a:0",
        ] {
            assert!(valid_host_port(good), "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"a, b",
            b"a,b",
            b"a b",
            b"a\tb",
            b" a",
            b"a/b@c",
            b"u@a",
            b"a/b",
            b"a:",
            b":80",
            b"a:65536",
            b"a:123456",
            b"a:8o",
            b"a:80:80",
            b"a:-1",
            b"a:+1",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"[::1]:",
            b"[g::1]",
            b"a%2",
            b"a%zz",
            b"a;b",
            b"a=b",
            b"\xc3\xa9.example",
            b"a?b",
            b"a#b",
        ] {
            assert!(!valid_host_port(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn head_end_scan() {
        assert!(may_end_head(b"GET / HTTP/1.1\r\n\r\n", 17));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHost: a\r", 20));
        assert!(may_end_head(b"a\n\n", 3));
    }
}
