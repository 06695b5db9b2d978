//! Stream one message body from a [`Buffered`] source to any writer, never holding more than
//! the source's fixed buffer: Content-Length bodies are copied as they arrive, chunked bodies
//! are decoded (and re-encoded when the output is chunked), until-close bodies are copied until
//! end of stream.
//!
//! Rules and failure modes:
//! - `max_body` bounds the decoded size. A Content-Length above it fails before a single byte
//!   is written; a chunked or until-close body fails before the chunk (or read) that would cross
//!   it is written: the destination never receives more than `max_body` bytes (CONTRACT §8).
//!   [`HttpError::BodyTooLarge`].
//! - Chunked framing is checked strictly (RFC 9112 §7.1): the size is 1*HEXDIG and must fit a
//!   u64; extensions are syntax-checked (no CTL) and dropped; every line ends in CRLF (a lone
//!   LF is rejected: body framing is where parsers that disagree get smuggled past); trailer
//!   fields are validated with httparse and dropped (§7.1.2 allows discarding them).
//!   [`HttpError::BadBody`].
//! - The source closing early is [`HttpError::UnexpectedEof`]; read failures are
//!   [`HttpError::Read`] (or [`HttpError::Timeout`] at the deadline); write failures are
//!   [`HttpError::Write`], so the caller knows which side broke.

use std::io::{self, IoSlice, Read, Write};

use super::buffered::{Buffered, Timeouts};
use super::{BodyFraming, HttpError};

/// Longest chunk-size line accepted, extensions included.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted (all lines together).
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// How the copied body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The decoded bytes as they are: for a Content-Length or close-delimited output.
    Raw,
    /// Chunked transfer coding, terminated by the last chunk: for a `Transfer-Encoding:
    /// chunked` output (whatever the input framing; an input of [`BodyFraming::None`] writes
    /// nothing).
    Chunked,
}

/// Copy the body framed by `framing` from `src` to `dst`. Returns the decoded body size.
/// On success `src` is positioned at the first byte after the body (a pipelined request).
pub fn copy_body<S, W>(
    src: &mut Buffered<S>,
    dst: &mut W,
    framing: BodyFraming,
    output: Output,
    max_body: u64,
) -> Result<u64, HttpError>
where
    S: Read + Timeouts,
    W: Write + ?Sized,
{
    let mut sink = Sink {
        dst,
        chunked: output == Output::Chunked,
    };
    let total = match framing {
        BodyFraming::None => return Ok(0),
        BodyFraming::Length(n) => {
            if n > max_body {
                return Err(HttpError::BodyTooLarge);
            }
            copy_exact(src, &mut sink, n)?;
            n
        }
        BodyFraming::UntilClose => copy_until_close(src, &mut sink, max_body)?,
        BodyFraming::Chunked => copy_chunked(src, &mut sink, max_body)?,
    };
    sink.finish()?;
    Ok(total)
}

/// The output side: raw or chunk-encoded, each piece in one vectored write.
struct Sink<'a, W: Write + ?Sized> {
    dst: &'a mut W,
    chunked: bool,
}

impl<W: Write + ?Sized> Sink<'_, W> {
    fn data(&mut self, data: &[u8]) -> Result<(), HttpError> {
        if data.is_empty() {
            // An empty chunk would be the last-chunk marker.
            return Ok(());
        }
        if self.chunked {
            let mut size = [0u8; 18];
            let n = hex_line(data.len() as u64, &mut size);
            write_all_parts(self.dst, [&size[..n], data, b"\r\n"])
        } else {
            write_all_parts(self.dst, [data, b"", b""])
        }
        .map_err(HttpError::Write)
    }

    fn finish(&mut self) -> Result<(), HttpError> {
        if self.chunked {
            write_all_parts(self.dst, [b"0\r\n\r\n", b"", b""]).map_err(HttpError::Write)?;
        }
        self.dst.flush().map_err(HttpError::Write)
    }
}

/// `{n:x}\r\n` into `out` without allocating; returns its length.
fn hex_line(mut n: u64, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u8; 16];
    let mut i = 16;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let len = 16 - i;
    out[..len].copy_from_slice(&digits[i..]);
    out[len..len + 2].copy_from_slice(b"\r\n");
    len + 2
}

/// `write_all` over up to three slices with `write_vectored` (one syscall in the common case;
/// `IoSlice::advance_slices` needs Rust 1.81, above our MSRV, hence by hand).
pub(crate) fn write_all_parts<W: Write + ?Sized>(
    w: &mut W,
    mut parts: [&[u8]; 3],
) -> io::Result<()> {
    loop {
        let first = parts.iter().position(|p| !p.is_empty());
        let Some(first) = first else { return Ok(()) };
        let slices = [
            IoSlice::new(parts[first]),
            IoSlice::new(parts.get(first + 1).copied().unwrap_or(b"")),
            IoSlice::new(parts.get(first + 2).copied().unwrap_or(b"")),
        ];
        let mut n = match w.write_vectored(&slices[..3 - first]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for p in parts.iter_mut() {
            let take = n.min(p.len());
            *p = &p[take..];
            n -= take;
        }
    }
}

/// Make at least one pending byte available; EOF is an error here (the message is unfinished).
fn need_data<S: Read + Timeouts>(src: &mut Buffered<S>) -> Result<(), HttpError> {
    if src.buffer().is_empty() {
        match src.fill_more() {
            Ok(0) => return Err(HttpError::UnexpectedEof),
            Ok(_) => {}
            Err(e) => return Err(HttpError::from_read(e)),
        }
    }
    Ok(())
}

fn copy_exact<S: Read + Timeouts, W: Write + ?Sized>(
    src: &mut Buffered<S>,
    sink: &mut Sink<'_, W>,
    mut left: u64,
) -> Result<(), HttpError> {
    while left > 0 {
        need_data(src)?;
        let avail = src.buffer();
        let n = avail.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        sink.data(&avail[..n])?;
        src.consume_bytes(n);
        left -= n as u64;
    }
    Ok(())
}

fn copy_until_close<S: Read + Timeouts, W: Write + ?Sized>(
    src: &mut Buffered<S>,
    sink: &mut Sink<'_, W>,
    max_body: u64,
) -> Result<u64, HttpError> {
    let mut total: u64 = 0;
    loop {
        if src.buffer().is_empty() {
            match src.fill_more() {
                Ok(0) => return Ok(total),
                Ok(_) => {}
                Err(e) => return Err(HttpError::from_read(e)),
            }
        }
        let avail = src.buffer();
        total += avail.len() as u64;
        if total > max_body {
            return Err(HttpError::BodyTooLarge);
        }
        let n = avail.len();
        sink.data(avail)?;
        src.consume_bytes(n);
    }
}

fn copy_chunked<S: Read + Timeouts, W: Write + ?Sized>(
    src: &mut Buffered<S>,
    sink: &mut Sink<'_, W>,
    max_body: u64,
) -> Result<u64, HttpError> {
    // A size line or trailer line must fit the buffer whole.
    src.ensure_capacity(MAX_CHUNK_LINE);
    let mut total: u64 = 0;
    loop {
        let len = read_line(src, MAX_CHUNK_LINE, "chunk size line too long")?;
        let size = parse_chunk_line(&src.buffer()[..len]).map_err(HttpError::BadBody)?;
        src.consume_bytes(len);
        if size == 0 {
            break;
        }
        total = total.checked_add(size).ok_or(HttpError::BodyTooLarge)?;
        if total > max_body {
            return Err(HttpError::BodyTooLarge);
        }
        copy_exact(src, sink, size)?;
        // chunk-data is followed by CRLF (RFC 9112 §7.1).
        src.make_room(2);
        while src.buffer().len() < 2 {
            match src.fill_more() {
                Ok(0) => return Err(HttpError::UnexpectedEof),
                Ok(_) => {}
                Err(e) => return Err(HttpError::from_read(e)),
            }
        }
        if &src.buffer()[..2] != b"\r\n" {
            return Err(HttpError::BadBody("chunk data not followed by CRLF"));
        }
        src.consume_bytes(2);
    }
    // trailer-section = *( field-line CRLF ), then CRLF (RFC 9112 §7.1.2). Dropped.
    let mut trailer_bytes = 0;
    loop {
        let len = read_line(src, MAX_CHUNK_LINE, "trailer line too long")?;
        let line = &src.buffer()[..len];
        if line == b"\r\n" {
            src.consume_bytes(len);
            return Ok(total);
        }
        trailer_bytes += len;
        if trailer_bytes > MAX_TRAILER_BYTES {
            return Err(HttpError::BadBody("trailer section too large"));
        }
        if !valid_field_line(line) {
            return Err(HttpError::BadBody("malformed trailer field"));
        }
        src.consume_bytes(len);
    }
}

/// Wait until a whole line (ending in LF) is pending; returns its length including CRLF.
/// A line ending in a lone LF is rejected.
fn read_line<S: Read + Timeouts>(
    src: &mut Buffered<S>,
    max: usize,
    too_long: &'static str,
) -> Result<usize, HttpError> {
    let mut scanned = 0;
    loop {
        let pending = src.buffer();
        if let Some(i) = pending[scanned..].iter().position(|&b| b == b'\n') {
            let len = scanned + i + 1;
            if len > max {
                return Err(HttpError::BadBody(too_long));
            }
            if len < 2 || pending[len - 2] != b'\r' {
                return Err(HttpError::BadBody("line not terminated by CRLF"));
            }
            return Ok(len);
        }
        scanned = pending.len();
        if scanned >= max {
            return Err(HttpError::BadBody(too_long));
        }
        src.make_room(max);
        match src.fill_more() {
            Ok(0) => return Err(HttpError::UnexpectedEof),
            Ok(_) => {}
            Err(e) => return Err(HttpError::from_read(e)),
        }
    }
}

/// `chunk-size [ chunk-ext ] CRLF` (RFC 9112 §7.1.1). Hand-written because httparse's
/// `parse_chunk_size` is lenient exactly where strictness matters: it accepts whitespace after
/// the size without an extension and any octet (a lone LF included) inside extensions.
fn parse_chunk_line(line: &[u8]) -> Result<u64, &'static str> {
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or("chunk size line not terminated by CRLF")?;
    let digits = body.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("missing chunk size");
    }
    let mut size: u64 = 0;
    for &b in &body[..digits] {
        let d = (b as char).to_digit(16).ok_or("bad chunk size")?;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or("chunk size overflows")?;
    }
    let ext = &body[digits..];
    if ext.is_empty() {
        return Ok(size);
    }
    // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ): whitespace is
    // allowed only before a ';', and no CTL but HTAB anywhere (the extension is dropped, so
    // its inner grammar does not matter beyond that).
    let after_ws = super::head::trim_ows(ext);
    if after_ws.first() != Some(&b';') {
        return Err("bad chunk size");
    }
    if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("control character in chunk extension");
    }
    Ok(size)
}

/// A single `field-line CRLF`, checked by httparse: a valid line leaves the parser waiting for
/// more (Partial), an invalid one is an error.
fn valid_field_line(line: &[u8]) -> bool {
    let mut one = [httparse::EMPTY_HEADER; 1];
    matches!(
        httparse::parse_headers(line, &mut one),
        Ok(httparse::Status::Partial)
    ) && !one[0].name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(
        input: &[u8],
        framing: BodyFraming,
        output: Output,
        max: u64,
    ) -> Result<(Vec<u8>, u64, usize), HttpError> {
        let mut src = Buffered::with_capacity(input, 64);
        let mut out = Vec::new();
        let n = copy_body(&mut src, &mut out, framing, output, max)?;
        Ok((out, n, src.buffer().len()))
    }

    #[test]
    fn length_copy_leaves_the_rest() {
        let (out, n, rest) = copy(
            b"hello worldNEXT",
            BodyFraming::Length(11),
            Output::Raw,
            100,
        )
        .unwrap();
        assert_eq!((&out[..], n), (&b"hello world"[..], 11));
        assert_eq!(rest, 4);
    }

    #[test]
    fn length_over_limit_writes_nothing() {
        let mut src = Buffered::new(&b"0123456789"[..]);
        let mut out = Vec::new();
        let e = copy_body(&mut src, &mut out, BodyFraming::Length(10), Output::Raw, 9).unwrap_err();
        assert!(matches!(e, HttpError::BodyTooLarge));
        assert_eq!(e.status(), Some(413));
        assert!(out.is_empty());
    }

    #[test]
    fn length_truncated_is_eof() {
        let e = copy(b"abc", BodyFraming::Length(5), Output::Raw, 100).unwrap_err();
        assert!(matches!(e, HttpError::UnexpectedEof));
    }

    #[test]
    fn chunked_round_trip_reencodes() {
        let input = b"3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n";
        let (out, n, rest) = copy(input, BodyFraming::Chunked, Output::Chunked, 100).unwrap();
        assert_eq!(n, 19);
        assert_eq!(rest, 0);
        assert_eq!(out, b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
        // And decoding our own output gives the body back.
        let (raw, n2, _) = copy(&out, BodyFraming::Chunked, Output::Raw, 100).unwrap();
        assert_eq!(raw, b"abc0123456789abcdef");
        assert_eq!(n2, 19);
    }

    #[test]
    fn chunked_limit_stops_before_the_excess() {
        let input = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        let mut src = Buffered::new(&input[..]);
        let mut out = Vec::new();
        let e = copy_body(&mut src, &mut out, BodyFraming::Chunked, Output::Raw, 7).unwrap_err();
        assert!(matches!(e, HttpError::BodyTooLarge));
        assert_eq!(out, b"hello");
    }

    #[test]
    fn until_close_and_limit() {
        let (out, n, _) = copy(b"all of it", BodyFraming::UntilClose, Output::Raw, 100).unwrap();
        assert_eq!((&out[..], n), (&b"all of it"[..], 9));
        let (out, _, _) = copy(b"all", BodyFraming::UntilClose, Output::Chunked, 100).unwrap();
        assert_eq!(out, b"3\r\nall\r\n0\r\n\r\n");
        assert!(matches!(
            copy(b"all of it", BodyFraming::UntilClose, Output::Raw, 8),
            Err(HttpError::BodyTooLarge)
        ));
    }

    #[test]
    fn empty_chunked_output_is_terminated() {
        let (out, n, _) = copy(b"0\r\n\r\n", BodyFraming::Chunked, Output::Chunked, 0).unwrap();
        assert_eq!((&out[..], n), (&b"0\r\n\r\n"[..], 0));
        let (out, _, _) = copy(b"", BodyFraming::Length(0), Output::Chunked, 0).unwrap();
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn bad_chunked_shapes() {
        let cases: &[&[u8]] = &[
            b"x\r\n",                        // not hex
            b"\r\n",                         // no size
            b"-1\r\n",                       // sign
            b"0x5\r\nhello\r\n0\r\n\r\n",    // 0x prefix
            b"5 \r\nhello\r\n0\r\n\r\n",     // whitespace without extension
            b"5\nhello\r\n0\r\n\r\n",        // lone LF
            b"5;a\nb\r\nhello\r\n0\r\n\r\n", // LF inside extension
            b"5;a\0\r\nhello\r\n0\r\n\r\n",  // NUL inside extension
            b"5\r\nhelloXX0\r\n\r\n",        // no CRLF after data
            b"5\r\nhello\n0\r\n\r\n",        // lone LF after data
            b"10000000000000000\r\n",        // 17 hex digits: overflow
            b"ffffffffffffffff1\r\n",        // overflow
            b"0\r\nbad trailer\r\n\r\n",     // trailer without colon
            b"0\r\n folded: x\r\n\r\n",      // obs-fold trailer
            b"0\r\nX: a\0b\r\n\r\n",         // NUL in trailer
            b"0\r\nX: a\n\r\n",              // lone LF in trailers
        ];
        for c in cases {
            let r = copy(c, BodyFraming::Chunked, Output::Raw, u64::MAX);
            assert!(
                matches!(r, Err(HttpError::BadBody(_))),
                "{:?} gave {r:?}",
                String::from_utf8_lossy(c)
            );
            assert_eq!(r.unwrap_err().status(), Some(400));
        }
    }

    #[test]
    fn max_size_chunk_header_does_not_overflow_total() {
        let r = copy(
            b"ffffffffffffffff\r\n",
            BodyFraming::Chunked,
            Output::Raw,
            u64::MAX,
        );
        assert!(matches!(r, Err(HttpError::UnexpectedEof)), "{r:?}");
        let r = copy(
            b"ffffffffffffffff\r\n",
            BodyFraming::Chunked,
            Output::Raw,
            1 << 20,
        );
        assert!(matches!(r, Err(HttpError::BodyTooLarge)));
    }

    #[test]
    fn long_but_allowed_extension_fits_a_small_buffer() {
        let mut input = b"5;".to_vec();
        input.extend_from_slice(&[b'a'; MAX_CHUNK_LINE - 10]);
        input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        let mut src = Buffered::with_capacity(&input[..], 64);
        let mut out = Vec::new();
        copy_body(&mut src, &mut out, BodyFraming::Chunked, Output::Raw, 100).unwrap();
        assert_eq!(out, b"hello");
    }

    #[test]
    fn long_chunk_extension_rejected() {
        let mut input = b"5;".to_vec();
        input.extend_from_slice(&[b'a'; MAX_CHUNK_LINE]);
        input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        let mut src = Buffered::new(&input[..]);
        let r = copy_body(
            &mut src,
            &mut Vec::new(),
            BodyFraming::Chunked,
            Output::Raw,
            100,
        );
        assert!(matches!(r, Err(HttpError::BadBody(_))), "{r:?}");
    }

    #[test]
    fn hex_lines() {
        let mut b = [0; 18];
        let n = hex_line(0, &mut b);
        assert_eq!(&b[..n], b"0\r\n");
        let n = hex_line(u64::MAX, &mut b);
        assert_eq!(&b[..n], b"ffffffffffffffff\r\n");
        let n = hex_line(0x1a2, &mut b);
        assert_eq!(&b[..n], b"1a2\r\n");
    }

    #[test]
    fn write_error_is_reported_as_write() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut src = Buffered::new(&b"abc"[..]);
        let r = copy_body(
            &mut src,
            &mut Broken,
            BodyFraming::Length(3),
            Output::Raw,
            10,
        );
        assert!(matches!(r, Err(HttpError::Write(_))));
    }
}
