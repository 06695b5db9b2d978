//! Serialise heads for forwarding into a caller-owned, reused `Vec<u8>` (one allocation per
//! connection, not per request).
//!
//! What is dropped: every hop-by-hop field (RFC 9110 §7.6.1: the fixed list plus the names in
//! `Connection`), every field whose name is among `extra` (so a client cannot pre-set, say,
//! `x-fc-request-id` next to ours), and the framing fields Content-Length and Transfer-Encoding
//! whenever the output framing is decided here. What is added: `extra` in the given order,
//! then the framing field for `framing`. Values in `extra` are written as given: they must not
//! contain CR or LF (they are fc-init's own; [`push_field`] skips a field that does rather
//! than emit a broken head).

use super::request::RequestHead;
use super::response::ResponseHead;
use super::BodyFraming;
use crate::http::head::Headers;

/// Write `head` as an HTTP/1.1 request (fc-init always speaks 1.1 to the function), replacing
/// the content of `out`.
///
/// `framing` is the framing of the body fc-init will send: `Length(n)` adds `Content-Length`,
/// `Chunked` adds `Transfer-Encoding: chunked`, `None`/`UntilClose` add neither.
pub fn write_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    extra: &[(&str, &str)],
    framing: BodyFraming,
) {
    let method = head.method().as_bytes();
    let target = head.target().as_bytes();
    let line: [&[u8]; 4] = [method, b" ", target, b" HTTP/1.1\r\n"];
    write_head(out, &line, &head.headers, extra, framing, true);
}

/// Write `head` as an HTTP/1.1 response with its own status and reason, replacing the content
/// of `out`.
///
/// `framing` as for [`write_request_head`]; with `BodyFraming::None` the function's own
/// Content-Length is kept, which is right for the bodiless answers that produce it (a HEAD
/// response or a 304 announces the size of the representation, RFC 9110 §8.6). With
/// `UntilClose` the caller must also pass `("Connection", "close")` in `extra`.
pub fn write_response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    extra: &[(&str, &str)],
    framing: BodyFraming,
) {
    let status = status_digits(head.status);
    let reason = head.reason().as_bytes();
    let line: [&[u8]; 5] = [b"HTTP/1.1 ", &status, b" ", reason, b"\r\n"];
    let drop_length = framing != BodyFraming::None;
    write_head(out, &line, &head.headers, extra, framing, drop_length);
}

/// Replaces the content of `out` with a head: the start line (the concatenation of `line`),
/// then `headers` minus hop-by-hop fields, fields named in `extra` and (with `drop_length`)
/// Content-Length, then `extra`, then the framing field for `framing`, then the empty line.
fn write_head(
    out: &mut Vec<u8>,
    line: &[&[u8]],
    headers: &Headers,
    extra: &[(&str, &str)],
    framing: BodyFraming,
    drop_length: bool,
) {
    out.clear();
    for part in line {
        out.extend_from_slice(part);
    }
    for f in headers.iter() {
        let replaced = extra.iter().any(|(n, _)| n.eq_ignore_ascii_case(f.name));
        let framing_field = drop_length && f.name.eq_ignore_ascii_case("content-length");
        if f.hop_by_hop || replaced || framing_field {
            continue;
        }
        push_field(out, f.name, f.value);
    }
    for (n, v) in extra {
        push_field(out, n, v.as_bytes());
    }
    match framing {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Append the start of an answer rebuilt from a function's answer kept as fields (handed off
/// or stored): `HTTP/1.1 <status> <reason>`, then `fields` but those named in `skip` (the ones
/// fc-init writes itself after them).
pub fn push_answer_start(
    out: &mut Vec<u8>,
    status: u16,
    fields: &[(String, Vec<u8>)],
    skip: &[&str],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(super::reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields {
        if !skip.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            push_field(out, name, value);
        }
    }
}

/// Append `name: value\r\n`; a value holding CR, LF or NUL is skipped (never produced from
/// parsed input, which httparse has already rejected).
pub fn push_field(out: &mut Vec<u8>, name: &str, value: impl AsRef<[u8]>) {
    let value = value.as_ref();
    if value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
        || name
            .bytes()
            .any(|b| matches!(b, b'\r' | b'\n' | b':' | b' ' | 0))
    {
        log::warn!("not writing header {name:?}: its name or value would break the head");
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The three digits of `status` (at most 999, as httparse reads them).
fn status_digits(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

/// Append the decimal form of `n` without allocating.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::buffered::Buffered;
    use crate::http::request::tests::parse;
    use crate::http::response::read_response_head;
    use crate::http::Limits;

    #[test]
    fn request_drops_hop_by_hop_and_replaced_fields() {
        let h = parse(
            b"POST /invoke?a=1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive, X-Drop\r\n\
              X-Drop: 1\r\nKeep-Alive: timeout=5\r\nX-Keep: 2\r\nx-fc-request-id: spoofed\r\n\
              Content-Length: 3\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: x\r\n\r\n",
        )
        .unwrap();
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            &h,
            &[("x-fc-request-id", "abc"), ("x-fc-control-path", "/invoke")],
            h.framing,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /invoke?a=1 HTTP/1.1\r\nHost: a\r\nX-Keep: 2\r\nx-fc-request-id: abc\r\n\
             x-fc-control-path: /invoke\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn chunked_request_keeps_chunked() {
        let h = parse(b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let mut out = b"stale".to_vec();
        write_request_head(&mut out, &h, &[], h.framing);
        assert_eq!(
            out,
            b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn response_reframed_and_head_length_kept() {
        let raw = b"HTTP/1.1 200 Fine\r\nContent-Length: 5\r\nConnection: close\r\nSet-Cookie: a=b\r\n\r\n";
        let mut b = Buffered::new(&raw[..]);
        let h = read_response_head(&mut b, &Limits::default(), false).unwrap();
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            &h,
            &[("x-fc-request-id", "r1")],
            BodyFraming::Chunked,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 Fine\r\nSet-Cookie: a=b\r\nx-fc-request-id: r1\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let mut b = Buffered::new(&raw[..]);
        let h = read_response_head(&mut b, &Limits::default(), true).unwrap();
        write_response_head(&mut out, &h, &[], h.framing);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 Fine\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\n\r\n"
        );
    }

    #[test]
    fn numbers() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, u64::MAX);
        assert_eq!(v, b"0 18446744073709551615");
    }

    #[test]
    fn answer_start_keeps_the_fields_fc_init_does_not_write_itself() {
        let fields = vec![
            ("Content-Type".to_owned(), b"text/plain".to_vec()),
            ("X-Fc-Request-Id".to_owned(), b"forged".to_vec()),
            ("Connection".to_owned(), b"close".to_vec()),
            ("X-Broken".to_owned(), b"a\r\nInjected: 1".to_vec()),
        ];
        let mut v = Vec::new();
        push_answer_start(&mut v, 404, &fields, &["x-fc-request-id", "connection"]);
        assert_eq!(v, b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n");
    }
}
