//! Stream one message body from a [`Buffered`] source to any writer, never holding more than
//! the source's fixed buffer, with the resumable [`Decoder`](super::codec::Decoder): a blocking
//! loop around it. Content-Length bodies are copied as they arrive, chunked bodies are decoded
//! (and re-encoded when the output is chunked), until-close bodies are copied until end of
//! stream.
//!
//! Rules and failure modes are the decoder's (`max_body`, strict chunked framing); besides, the
//! source closing early is [`HttpError::UnexpectedEof`]; read failures are [`HttpError::Read`]
//! (or [`HttpError::Timeout`] at the deadline); write failures are [`HttpError::Write`], so the
//! caller knows which side broke.

use std::io::{self, IoSlice, Read, Write};

use super::buffered::{Buffered, Timeouts};
use super::codec::{hex_line, Decoder, LAST_CHUNK, MAX_CHUNK_LINE};
use super::{BodyFraming, HttpError};

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
    if framing == BodyFraming::None {
        return Ok(0);
    }
    let mut decoder = Decoder::new(framing, max_body)?;
    let mut sink = Sink {
        dst,
        chunked: output == Output::Chunked,
    };
    if framing == BodyFraming::Chunked {
        // A size line or trailer line must fit the buffer whole.
        src.ensure_capacity(MAX_CHUNK_LINE);
    }
    while !decoder.is_done() {
        let step = decoder.step(src.buffer(), usize::MAX)?;
        if !step.data.is_empty() {
            sink.data(&src.buffer()[step.data.clone()])?;
        }
        src.consume_bytes(step.consumed);
        if step.is_stalled() {
            // Keep a partial line contiguous, with room for the rest of it.
            src.make_room(MAX_CHUNK_LINE);
            match src.fill_more() {
                Ok(0) => decoder.at_eof()?,
                Ok(_) => {}
                Err(e) => return Err(HttpError::from_read(e)),
            }
        }
    }
    sink.finish()?;
    Ok(decoder.decoded())
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
            write_all_parts(self.dst, [LAST_CHUNK, b"", b""]).map_err(HttpError::Write)?;
        }
        self.dst.flush().map_err(HttpError::Write)
    }
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
        let mut n = match crate::sys::retry(|| w.write_vectored(&slices[..3 - first]))? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => n,
        };
        for p in parts.iter_mut() {
            let take = n.min(p.len());
            *p = &p[take..];
            n -= take;
        }
    }
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
