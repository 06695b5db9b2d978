//! Read one response head from the function and decide how its body is framed
//! (RFC 9112 §6.3, in order: HEAD/1xx/204/304 have no body; Transfer-Encoding; Content-Length;
//! otherwise the body runs until the connection closes).
//!
//! Interim 1xx responses (100 Continue, 102, 103) are read and skipped: fc-init answers
//! `Expect: 100-continue` to its client itself. `101 Switching Protocols` is the final answer
//! to a request fc-init forwarded with `Upgrade` (the parser is told so), and an error to any
//! other: the function cannot have agreed to an upgrade nobody asked for. At most
//! [`MAX_INTERIM`] interim responses are skipped.
//!
//! Failure modes: [`HttpError::BadResponse`] (malformed head, conflicting or unsupported
//! framing), [`HttpError::HeadersTooLarge`], [`HttpError::Timeout`] (the buffer's deadline:
//! `function.timeout`), [`HttpError::ConnectionClosed`] / [`HttpError::UnexpectedEof`] (the
//! function closed the connection before or while answering), [`HttpError::Read`]. The proxy
//! answers all of them with 502 or 504; none is the client's fault.

use std::io::Read;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::buffered::{Buffered, Timeouts};
use super::head::{self, Headers};
use super::{BodyFraming, HttpError, Limits, MAX_HEADERS};

/// Interim (1xx) responses skipped before giving up.
pub const MAX_INTERIM: usize = 16;

/// A parsed, validated response head.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    /// The fields, in order, original case.
    pub headers: Headers,
    /// Status code, 200..=999 (interim 1xx are never returned).
    pub status: u16,
    reason: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// How the body that follows is delimited.
    pub framing: BodyFraming,
    /// Whether the function's connection may be reused after this body (RFC 9112 §9.3); false
    /// whenever the body is close-delimited.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// The reason phrase as sent (may be empty).
    pub fn reason(&self) -> &str {
        std::str::from_utf8(&self.headers.raw[self.reason.clone()]).unwrap_or("")
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// Whether header `name` is hop-by-hop for this message.
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        self.headers.is_hop_by_hop(name)
    }
}

/// Read the final response head to a request. `head_request` must be true when the request
/// was `HEAD` (its response has no body whatever its headers say, RFC 9112 §6.3 rule 1).
pub fn read_response_head<S: Read + Timeouts>(
    src: &mut Buffered<S>,
    limits: &Limits,
    head_request: bool,
) -> Result<ResponseHead, HttpError> {
    let mut head = ResponseHead::default();
    read_response_head_into(src, limits, head_request, &mut head)?;
    Ok(head)
}

/// [`read_response_head`] into an existing value, reusing its allocations.
pub fn read_response_head_into<S: Read + Timeouts>(
    src: &mut Buffered<S>,
    limits: &Limits,
    head_request: bool,
    head: &mut ResponseHead,
) -> Result<(), HttpError> {
    let max = limits.max_header_bytes.max(1);
    src.ensure_capacity(max);
    let mut interim = 0;
    loop {
        head::read_head(src, max, |window| parse_into(window, limits, head))?;
        if !is_interim(head.status, &mut interim, false)? {
            return decide_framing(head, head_request);
        }
    }
}

/// Whether `status` is an interim (1xx) answer to skip, counting it in `interim`; 101 is final
/// when an `upgrade` was asked for and an error otherwise; more than [`MAX_INTERIM`] interim
/// answers are an error.
fn is_interim(status: u16, interim: &mut usize, upgrade: bool) -> Result<bool, HttpError> {
    match status {
        101 if upgrade => Ok(false),
        101 => Err(HttpError::BadResponse("unexpected 101 Switching Protocols")),
        100..=199 => {
            *interim += 1;
            if *interim > MAX_INTERIM {
                return Err(HttpError::BadResponse("too many interim responses"));
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The framing of a final response head, in RFC 9112 §6.3 order.
fn decide_framing(head: &mut ResponseHead, head_request: bool) -> Result<(), HttpError> {
    let ff =
        head::framing_fields(&head.headers, head.version_minor).map_err(HttpError::BadResponse)?;
    let bodyless = head_request || matches!(head.status, 101 | 204 | 304);
    head.framing = if bodyless {
        BodyFraming::None
    } else if ff.chunked {
        BodyFraming::Chunked
    } else if let Some(n) = ff.content_length {
        BodyFraming::Length(n)
    } else {
        BodyFraming::UntilClose
    };
    head.keep_alive = head.framing != BodyFraming::UntilClose
        && head::keep_alive(&head.headers, head.version_minor);
    Ok(())
}

/// Parses the final response head from bytes already received, without reading: the
/// non-blocking counterpart of [`read_response_head_into`], with the same rules (interim 1xx
/// skipped, at most [`MAX_INTERIM`] of them, `limits.max_header_bytes` per head). `upgrade`:
/// the request asked for a protocol upgrade, so `101 Switching Protocols` is its final answer
/// (with no body, and a connection not to be reused for HTTP); otherwise 101 is refused.
///
/// `Ok(Some(n))`: the final head ends after `n` bytes of `buf` (interim heads included) and is
/// in `head`. `Ok(None)`: more bytes are needed.
pub fn parse_response_head(
    buf: &[u8],
    limits: &Limits,
    head_request: bool,
    upgrade: bool,
    head: &mut ResponseHead,
) -> Result<Option<usize>, HttpError> {
    let max = limits.max_header_bytes.max(1);
    let mut at = 0;
    let mut interim = 0;
    loop {
        // Each head is parsed from its first byte: there is no earlier scan to resume.
        let parse = |window: &[u8]| parse_into(window, limits, head);
        let Some(n) = head::parse_window(&buf[at..], 0, max, parse)? else {
            return Ok(None);
        };
        at += n;
        if !is_interim(head.status, &mut interim, upgrade)? {
            decide_framing(head, head_request)?;
            if head.status == 101 {
                head.keep_alive = false;
            }
            return Ok(Some(at));
        }
    }
}

fn parse_into(
    buf: &[u8],
    limits: &Limits,
    out: &mut ResponseHead,
) -> Result<Option<usize>, HttpError> {
    let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let slots = &mut storage[..limits.max_headers.clamp(1, MAX_HEADERS)];
    let mut resp = httparse::Response::new(&mut []);
    // Strict defaults: no spaces before colons, no obs-fold, no multiple spaces.
    let config = httparse::ParserConfig::default();
    let parsed = config.parse_response_with_uninit_headers(&mut resp, buf, slots);
    let Some(n) = head::complete(parsed, HttpError::BadResponse)? else {
        return Ok(None);
    };
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Err(HttpError::BadResponse("incomplete status line"));
    };
    if code < 100 {
        return Err(HttpError::BadResponse("status code below 100"));
    }
    let raw = &buf[..n];
    out.headers.fill(raw, resp.headers);
    out.status = code;
    out.version_minor = version;
    out.reason = match resp.reason {
        Some(r) if !r.is_empty() => head::range_in(raw, r.as_bytes()),
        _ => 0..0,
    };
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::{copy_body, Output};

    fn read(raw: &[u8], head_request: bool) -> Result<(ResponseHead, Vec<u8>), HttpError> {
        let mut b = Buffered::new(raw);
        let h = read_response_head(&mut b, &Limits::default(), head_request)?;
        let mut body = Vec::new();
        copy_body(&mut b, &mut body, h.framing, Output::Raw, 1 << 20)?;
        Ok((h, body))
    }

    #[test]
    fn framing_cases() {
        let (h, body) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", false).unwrap();
        assert_eq!(
            (h.status, h.reason(), h.framing, &body[..]),
            (200, "OK", BodyFraming::Length(2), &b"hi"[..])
        );
        assert!(h.keep_alive);

        let (h, body) = read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((h.framing, &body[..]), (BodyFraming::Chunked, &b"hi"[..]));

        let (h, body) = read(b"HTTP/1.1 200 OK\r\n\r\nuntil close", false).unwrap();
        assert_eq!(
            (h.framing, &body[..]),
            (BodyFraming::UntilClose, &b"until close"[..])
        );
        assert!(!h.keep_alive);

        let (h, _) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true).unwrap();
        assert_eq!(h.framing, BodyFraming::None);
        assert_eq!(h.header("content-length"), Some(&b"10"[..]));

        for status in [204, 304] {
            let raw = format!("HTTP/1.1 {status} X\r\nContent-Length: 3\r\n\r\n");
            let (h, _) = read(raw.as_bytes(), false).unwrap();
            assert_eq!(h.framing, BodyFraming::None, "{status}");
        }

        let (h, _) = read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive);
        let (h, _) = read(
            b"HTTP/1.1 200\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(!h.keep_alive);
        assert_eq!(h.reason(), "");
    }

    #[test]
    fn interim_responses_are_skipped() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                    HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx";
        let (h, body) = read(raw, false).unwrap();
        assert_eq!((h.status, &body[..]), (201, &b"x"[..]));
        assert_eq!(h.header("link"), None);
    }

    #[test]
    fn too_many_interim_responses() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert!(matches!(read(&raw, false), Err(HttpError::BadResponse(_))));
    }

    #[test]
    fn bad_responses() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"garbage\r\n\r\n",
        ];
        for c in cases {
            let r = read(c, false);
            assert!(
                matches!(r, Err(HttpError::BadResponse(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(c)
            );
        }
    }

    /// [`parse_response_head`] over `raw` whole; the body is what follows the head.
    fn parse(raw: &[u8], head_request: bool) -> Result<Option<(ResponseHead, Vec<u8>)>, HttpError> {
        let mut h = ResponseHead::default();
        Ok(
            parse_response_head(raw, &Limits::default(), head_request, false, &mut h)?
                .map(|n| (h, raw[n..].to_vec())),
        )
    }

    #[test]
    fn parse_from_a_slice_matches_reading() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nuntil close",
        ];
        for raw in cases {
            let (want, body) = read(raw, false).unwrap();
            let (got, rest) = parse(raw, false).unwrap().unwrap();
            assert_eq!(
                (got.status, got.framing, got.keep_alive),
                (want.status, want.framing, want.keep_alive)
            );
            if let BodyFraming::Length(n) = got.framing {
                assert_eq!(&rest[..n as usize], &body[..]);
            }
            // Every strict prefix that cuts the final head needs more bytes.
            let end = raw.len() - rest.len();
            for cut in 0..end {
                assert!(parse(&raw[..cut], false).unwrap().is_none(), "cut {cut}");
            }
        }
        let (h, _) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, BodyFraming::None);
    }

    #[test]
    fn parse_from_a_slice_rejects_like_reading() {
        assert!(matches!(
            parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
            Err(HttpError::BadResponse(_))
        ));
        let raw = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert!(matches!(parse(&raw, false), Err(HttpError::BadResponse(_))));
        assert!(matches!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(HttpError::BadResponse(_))
        ));
        let limits = Limits {
            max_header_bytes: 64,
            ..Limits::default()
        };
        let mut h = ResponseHead::default();
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(64));
        assert!(matches!(
            parse_response_head(long.as_bytes(), &limits, false, false, &mut h),
            Err(HttpError::HeadersTooLarge)
        ));
    }

    #[test]
    fn switching_protocols_is_final_only_for_an_upgrade() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes";
        let mut h = ResponseHead::default();
        let n = parse_response_head(raw, &Limits::default(), false, true, &mut h)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (101, BodyFraming::None, false)
        );
        assert_eq!(&raw[n..], b"frames");
        assert!(parse_response_head(raw, &Limits::default(), false, false, &mut h).is_err());
    }

    #[test]
    fn closed_before_answer() {
        assert!(matches!(read(b"", false), Err(HttpError::ConnectionClosed)));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\n", false),
            Err(HttpError::UnexpectedEof)
        ));
    }
}
