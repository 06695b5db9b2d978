//! Body framing as resumable state machines over byte slices, in the manner of hyper's
//! `proto/h1/decode.rs` and `encode.rs`: a [`Decoder`] is handed whatever bytes have arrived,
//! takes what it can (framing, or a run of body bytes), and keeps its place for the next bytes,
//! so the same code serves a blocking copy ([`super::body::copy_body`]) and the proxy's event
//! loops, whichever way readiness arrives. An [`Encoder`] writes decoded bytes out again
//! (as they are, or chunked).
//!
//! Rules (RFC 9112 §6, §7.1), applied strictly:
//! - `max_body` bounds the decoded size: a Content-Length above it fails at once, a chunk whose
//!   size would cross it fails at its size line, a close-delimited run that would cross it fails
//!   before it is returned. The destination never receives more than `max_body` bytes.
//! - A chunk size is 1*HEXDIG fitting a u64; extensions are syntax-checked (no CTL) and dropped;
//!   every line ends in CRLF (a lone LF is refused: body framing is where parsers that disagree
//!   get smuggled past); trailer fields are checked with httparse and dropped (§7.1.2).
//!
//! Failure modes: [`HttpError::BadBody`] (400), [`HttpError::BodyTooLarge`] (413),
//! [`HttpError::UnexpectedEof`] from [`Decoder::at_eof`] when the source ends mid-body.

use std::ops::Range;

use super::{BodyFraming, HttpError};

/// Longest chunk-size line accepted, extensions included.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted (all lines together).
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Content-Length: this many bytes left.
    Length(u64),
    /// Until the source closes.
    UntilClose,
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to the empty line.
    Trailers,
    Done,
}

/// Where a body stands; feed it bytes with [`Decoder::step`].
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// Decoded so far.
    total: u64,
    max: u64,
    trailer_bytes: usize,
}

/// What one [`Decoder::step`] took from its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Leading input bytes used up (framing and data).
    pub consumed: usize,
    /// Body bytes among them (a range of the input); may be empty.
    pub data: Range<usize>,
}

impl Decoded {
    /// Nothing could be taken: more input is needed (or the body is done).
    pub fn is_stalled(&self) -> bool {
        self.consumed == 0
    }
}

impl Decoder {
    /// A decoder for a body framed by `framing`, at most `max_body` decoded bytes.
    pub fn new(framing: BodyFraming, max_body: u64) -> Result<Decoder, HttpError> {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) if n > max_body => return Err(HttpError::BodyTooLarge),
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::Size,
            BodyFraming::UntilClose => State::UntilClose,
        };
        Ok(Decoder {
            state,
            total: 0,
            max: max_body,
            trailer_bytes: 0,
        })
    }

    /// A decoder that passes everything through until the source closes (an upgraded
    /// connection's bytes).
    pub fn passthrough() -> Decoder {
        Decoder {
            state: State::UntilClose,
            total: 0,
            max: u64::MAX,
            trailer_bytes: 0,
        }
    }

    /// The whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How many of the next input bytes are all body, with no framing among them: the rest of
    /// a Content-Length body, or any number for a close-delimited one; `None` for chunked.
    /// A caller may then move bytes without looking at them (and tell the decoder with
    /// [`Decoder::step`] all the same).
    pub fn raw_left(&self) -> Option<u64> {
        match self.state {
            State::Length(left) => Some(left),
            State::UntilClose => Some(self.max - self.total),
            _ => None,
        }
    }

    /// Body bytes decoded so far.
    pub fn decoded(&self) -> u64 {
        self.total
    }

    /// Takes what it can from the start of `input`, returning at most `max_data` body bytes.
    /// Call again with the rest while it makes progress.
    pub fn step(&mut self, input: &[u8], max_data: usize) -> Result<Decoded, HttpError> {
        let taken = |n: usize| Decoded {
            consumed: n,
            data: 0..n,
        };
        let framing = |n: usize| Decoded {
            consumed: n,
            data: 0..0,
        };
        let stalled = framing(0);
        match self.state {
            State::Done => Ok(stalled),
            State::Length(left) | State::Data(left) => {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len())
                    .min(max_data);
                let left = left - n as u64;
                self.total += n as u64;
                self.state = match (self.state, left) {
                    (State::Length(_), 0) => State::Done,
                    (State::Length(_), l) => State::Length(l),
                    (_, 0) => State::DataEnd,
                    (_, l) => State::Data(l),
                };
                Ok(taken(n))
            }
            State::UntilClose => {
                let n = input.len().min(max_data);
                if self.total + n as u64 > self.max {
                    return Err(HttpError::BodyTooLarge);
                }
                self.total += n as u64;
                Ok(taken(n))
            }
            State::Size => {
                let Some(len) = line(input, "chunk size line too long")? else {
                    return Ok(stalled);
                };
                let size = parse_chunk_line(&input[..len]).map_err(HttpError::BadBody)?;
                if size == 0 {
                    self.state = State::Trailers;
                } else {
                    let total = self.total.checked_add(size);
                    if total.is_none_or(|t| t > self.max) {
                        return Err(HttpError::BodyTooLarge);
                    }
                    self.state = State::Data(size);
                }
                Ok(framing(len))
            }
            State::DataEnd => {
                if input.len() < 2 {
                    // A first byte that is not CR is wrong already.
                    if input.first().is_some_and(|&b| b != b'\r') {
                        return Err(HttpError::BadBody("chunk data not followed by CRLF"));
                    }
                    return Ok(stalled);
                }
                if &input[..2] != b"\r\n" {
                    return Err(HttpError::BadBody("chunk data not followed by CRLF"));
                }
                self.state = State::Size;
                Ok(framing(2))
            }
            State::Trailers => {
                let Some(len) = line(input, "trailer line too long")? else {
                    return Ok(stalled);
                };
                let text = &input[..len];
                if text == b"\r\n" {
                    self.state = State::Done;
                    return Ok(framing(len));
                }
                self.trailer_bytes += len;
                if self.trailer_bytes > MAX_TRAILER_BYTES {
                    return Err(HttpError::BadBody("trailer section too large"));
                }
                if !valid_field_line(text) {
                    return Err(HttpError::BadBody("malformed trailer field"));
                }
                Ok(framing(len))
            }
        }
    }

    /// The source ended: fine for a close-delimited body (it is done now) or a finished one;
    /// anything else is [`HttpError::UnexpectedEof`].
    pub fn at_eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(HttpError::UnexpectedEof),
        }
    }
}

/// The length (CRLF included) of the whole line at the start of `input`, or `None` while it
/// has not ended; a line ending in a lone LF, or longer than [`MAX_CHUNK_LINE`], is refused.
fn line(input: &[u8], too_long: &'static str) -> Result<Option<usize>, HttpError> {
    let window = &input[..input.len().min(MAX_CHUNK_LINE + 1)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let len = i + 1;
            if len > MAX_CHUNK_LINE {
                return Err(HttpError::BadBody(too_long));
            }
            if len < 2 || input[len - 2] != b'\r' {
                return Err(HttpError::BadBody("line not terminated by CRLF"));
            }
            Ok(Some(len))
        }
        None if window.len() >= MAX_CHUNK_LINE => Err(HttpError::BadBody(too_long)),
        None => Ok(None),
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

/// How decoded body bytes are written out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// As they are: a Content-Length or close-delimited output.
    Raw,
    /// `Transfer-Encoding: chunked`, ended by the last chunk.
    Chunked,
}

impl Encoder {
    /// Appends `data` to `out`, framed.
    pub fn data(self, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            // An empty chunk would be the last-chunk marker.
            return;
        }
        if self == Encoder::Chunked {
            let mut size = [0u8; 18];
            let n = hex_line(data.len() as u64, &mut size);
            out.extend_from_slice(&size[..n]);
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
    }

    /// Appends the end of the body (the last chunk) to `out`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self == Encoder::Chunked {
            out.extend_from_slice(LAST_CHUNK);
        }
    }
}

/// The last chunk and the empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// `{n:x}\r\n` into `out` without allocating; returns its length.
pub(crate) fn hex_line(mut n: u64, out: &mut [u8; 18]) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes; returns the body.
    fn feed(input: &[u8], framing: BodyFraming, piece: usize) -> Result<Vec<u8>, HttpError> {
        let mut d = Decoder::new(framing, 1 << 20)?;
        let mut body = Vec::new();
        let mut have = 0;
        let mut at = 0;
        while !d.is_done() {
            let step = d.step(&input[at..have], 7)?;
            body.extend_from_slice(&input[at..have][step.data.clone()]);
            at += step.consumed;
            if step.is_stalled() {
                if have == input.len() {
                    d.at_eof()?;
                    break;
                }
                have = (have + piece).min(input.len());
            }
        }
        Ok(body)
    }

    #[test]
    fn resumes_wherever_the_bytes_stop() {
        let chunked = b"3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n";
        for piece in [1, 2, 3, 5, 64] {
            let body = feed(chunked, BodyFraming::Chunked, piece).unwrap();
            assert_eq!(body, b"abc0123456789abcdef", "pieces of {piece}");
            let body = feed(b"hello world", BodyFraming::Length(11), piece).unwrap();
            assert_eq!(body, b"hello world");
            let body = feed(b"until close", BodyFraming::UntilClose, piece).unwrap();
            assert_eq!(body, b"until close");
        }
        assert!(matches!(
            feed(b"abc", BodyFraming::Length(5), 2),
            Err(HttpError::UnexpectedEof)
        ));
    }

    #[test]
    fn a_bad_crlf_after_data_is_refused_at_its_first_byte() {
        let mut d = Decoder::new(BodyFraming::Chunked, 100).unwrap();
        assert_eq!(d.step(b"1\r\n", 10).unwrap().consumed, 3);
        assert_eq!(d.step(b"x", 10).unwrap().data, 0..1);
        assert!(matches!(d.step(b"X", 10), Err(HttpError::BadBody(_))));
    }

    #[test]
    fn encoder_frames() {
        let mut out = Vec::new();
        Encoder::Chunked.data(b"abc", &mut out);
        Encoder::Chunked.data(b"", &mut out);
        Encoder::Chunked.finish(&mut out);
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
        let mut out = Vec::new();
        Encoder::Raw.data(b"abc", &mut out);
        Encoder::Raw.finish(&mut out);
        assert_eq!(out, b"abc");
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
}
