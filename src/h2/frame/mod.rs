//! HTTP/2 frames (RFC 9113 §4 and §6): the 9-byte header, a checked view of every frame type,
//! and the writers for the frames fc-init makes itself.
//!
//! Reading is resumable in the manner of `http::codec`: [`split`] is handed whatever bytes
//! have arrived and takes one whole frame from their start, or nothing while the frame is
//! incomplete; the caller keeps the rest for the next bytes. A frame longer than the limit is
//! refused from its header alone, so no more than `max_frame_size + 9` bytes ever wait for
//! one frame. [`parse`] then checks the frame against the rules of its type and names the
//! error the RFC asks for: a connection error ([`H2Error::Connection`], answered by `GOAWAY`)
//! where the frame could alter the connection's state, a stream error
//! ([`H2Error::Stream`], answered by `RST_STREAM`) where only one stream is concerned.
//! Nothing here panics on any input: every length is checked before it is sliced.

mod error;
mod read;
mod settings;
mod write;

pub use error::{ErrorCode, H2Error};
pub use read::{parse, split, Frame, Priority};
pub use settings::{settings, write_settings};
pub use write::{write_goaway, write_header_block, write_rst_stream, write_window_update};

/// Length of a frame header.
pub const HEADER_LEN: usize = 9;
/// `SETTINGS_MAX_FRAME_SIZE`'s initial value, and the least a peer may announce.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// The largest `SETTINGS_MAX_FRAME_SIZE` a peer may announce (2^24 - 1).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The largest flow-control window (2^31 - 1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The connection preface a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream identifier (31 bits; 0 is the connection).
pub type StreamId = u32;

/// Frame flags (RFC 9113 §6); a flag's meaning depends on the frame type.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Setting identifiers (RFC 9113 §6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Frame types (RFC 9113 §6); anything else is an extension frame, which a receiver ignores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    Unknown(u8),
}

impl Kind {
    pub fn from_byte(b: u8) -> Kind {
        match b {
            0x0 => Kind::Data,
            0x1 => Kind::Headers,
            0x2 => Kind::Priority,
            0x3 => Kind::RstStream,
            0x4 => Kind::Settings,
            0x5 => Kind::PushPromise,
            0x6 => Kind::Ping,
            0x7 => Kind::GoAway,
            0x8 => Kind::WindowUpdate,
            0x9 => Kind::Continuation,
            other => Kind::Unknown(other),
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            Kind::Data => 0x0,
            Kind::Headers => 0x1,
            Kind::Priority => 0x2,
            Kind::RstStream => 0x3,
            Kind::Settings => 0x4,
            Kind::PushPromise => 0x5,
            Kind::Ping => 0x6,
            Kind::GoAway => 0x7,
            Kind::WindowUpdate => 0x8,
            Kind::Continuation => 0x9,
            Kind::Unknown(b) => b,
        }
    }
}

/// A frame header (RFC 9113 §4.1). The reserved bit of the stream identifier is ignored on
/// reading, as the RFC asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Payload length (24 bits).
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub stream: StreamId,
}

impl Head {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: Kind::from_byte(b[3]),
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    /// Appends the header to `out`. `len` must fit 24 bits (every writer here keeps it so).
    pub fn write(&self, out: &mut Vec<u8>) {
        let len = self.len.to_be_bytes();
        out.extend_from_slice(&len[1..]);
        out.push(self.kind.byte());
        out.push(self.flags);
        out.extend_from_slice(&(self.stream & MAX_WINDOW).to_be_bytes());
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// One whole frame at the start of some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a> {
    pub head: Head,
    pub payload: &'a [u8],
    /// The frame's bytes as they arrived (header and payload), for passing it on unchanged.
    pub bytes: &'a [u8],
}

fn be32(b: &[u8]) -> u32 {
    match b.first_chunk::<4>() {
        Some(four) => u32::from_be_bytes(*four),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::h2::tests::raw_frame as frame;

    fn check(bytes: &[u8]) -> Result<Frame<'_>, H2Error> {
        let raw = split(bytes, DEFAULT_MAX_FRAME_SIZE)?.expect("a whole frame");
        parse(raw.head, raw.payload)
    }

    #[test]
    fn split_resumes_wherever_the_bytes_stop() {
        let bytes = frame(0, 1, 1, b"hello");
        for cut in 0..bytes.len() {
            assert_eq!(split(&bytes[..cut], 16_384), Ok(None), "cut at {cut}");
        }
        let raw = split(&bytes, 16_384).unwrap().unwrap();
        assert_eq!(raw.bytes.len(), bytes.len());
        assert_eq!(raw.payload, b"hello");
        assert_eq!(raw.head.stream, 1);
    }

    #[test]
    fn a_frame_over_the_maximum_is_refused_from_its_header() {
        let mut header = Vec::new();
        Head {
            len: 16_385,
            kind: Kind::Data,
            flags: 0,
            stream: 1,
        }
        .write(&mut header);
        assert_eq!(
            split(&header, 16_384),
            Err(H2Error::conn(
                ErrorCode::FrameSize,
                "frame larger than the maximum"
            ))
        );
    }

    #[test]
    fn the_reserved_bit_is_ignored() {
        let mut bytes = frame(0, 0, 3, b"x");
        bytes[5] |= 0x80;
        assert!(matches!(check(&bytes), Ok(Frame::Data { stream: 3, .. })));
    }

    #[test]
    fn padding_is_stripped_and_counts_for_flow_control() {
        let bytes = frame(0, flag::PADDED | flag::END_STREAM, 1, b"\x02abcPP");
        assert_eq!(
            check(&bytes),
            Ok(Frame::Data {
                stream: 1,
                end_stream: true,
                data: b"abc",
                flow_len: 6
            })
        );
        // Pad length equal to the payload length: PROTOCOL_ERROR.
        let bad = frame(0, flag::PADDED, 1, b"\x04abc");
        assert!(matches!(
            check(&bad),
            Err(H2Error::Connection {
                code: ErrorCode::Protocol,
                ..
            })
        ));
        let empty = frame(1, flag::PADDED, 1, b"");
        assert!(matches!(
            check(&empty),
            Err(H2Error::Connection {
                code: ErrorCode::FrameSize,
                ..
            })
        ));
    }

    #[test]
    fn headers_with_priority_and_padding() {
        let mut payload = vec![1u8]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 1, 15]); // exclusive on stream 1, weight 15
        payload.extend_from_slice(b"\x82P");
        let bytes = frame(
            1,
            flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
            3,
            &payload,
        );
        assert_eq!(
            check(&bytes),
            Ok(Frame::Headers {
                stream: 3,
                end_stream: false,
                end_headers: true,
                fragment: b"\x82"
            })
        );
        let selfdep = frame(1, flag::PRIORITY, 3, &[0, 0, 0, 3, 0]);
        assert_eq!(
            check(&selfdep),
            Err(H2Error::stream(
                3,
                ErrorCode::Protocol,
                "stream depends on itself"
            ))
        );
    }

    /// Each malformed frame and the error RFC 9113 asks for.
    #[test]
    fn malformed_frames_get_the_rfc_errors() {
        use ErrorCode::*;
        let conn =
            |code| move |e: H2Error| matches!(e, H2Error::Connection { code: c, .. } if c == code);
        type Expect = Box<dyn Fn(H2Error) -> bool>;
        let cases: Vec<(Vec<u8>, Expect)> = vec![
            (frame(0, 0, 0, b"x"), Box::new(conn(Protocol))),
            (frame(1, 0, 0, b""), Box::new(conn(Protocol))),
            (
                frame(2, 0, 1, b"1234"),
                Box::new(|e| e == H2Error::stream(1, FrameSize, "PRIORITY not 5 bytes")),
            ),
            (frame(3, 0, 1, b"123"), Box::new(conn(FrameSize))),
            (frame(3, 0, 0, b"1234"), Box::new(conn(Protocol))),
            (frame(4, 0, 1, b""), Box::new(conn(Protocol))),
            (frame(4, 1, 0, b"\0\x01\0\0\0\0"), Box::new(conn(FrameSize))),
            (frame(4, 0, 0, b"\0\x01\0\0\0"), Box::new(conn(FrameSize))),
            (
                frame(4, 0, 0, b"\0\x02\0\0\0\x02"),
                Box::new(conn(Protocol)),
            ),
            (
                frame(4, 0, 0, b"\0\x04\x80\0\0\0"),
                Box::new(conn(FlowControl)),
            ),
            (
                frame(4, 0, 0, b"\0\x05\0\0\x3f\xff"),
                Box::new(conn(Protocol)),
            ),
            (
                frame(4, 0, 0, b"\0\x05\x01\0\0\0"),
                Box::new(conn(Protocol)),
            ),
            (frame(6, 0, 0, b"1234567"), Box::new(conn(FrameSize))),
            (frame(6, 0, 1, b"12345678"), Box::new(conn(Protocol))),
            (frame(7, 0, 0, b"1234567"), Box::new(conn(FrameSize))),
            (frame(7, 0, 1, b"12345678"), Box::new(conn(Protocol))),
            (frame(8, 0, 0, b"\0\0\0\0"), Box::new(conn(Protocol))),
            (
                frame(8, 0, 5, b"\0\0\0\0"),
                Box::new(|e| e == H2Error::stream(5, Protocol, "WINDOW_UPDATE of 0")),
            ),
            (frame(8, 0, 5, b"\0\0\0"), Box::new(conn(FrameSize))),
            (frame(9, 0, 0, b""), Box::new(conn(Protocol))),
            (frame(5, 0, 1, b"\0\0\0"), Box::new(conn(FrameSize))),
        ];
        for (bytes, expected) in cases {
            let got = check(&bytes).expect_err("malformed");
            assert!(expected(got), "{bytes:02x?}: {got}");
        }
    }

    #[test]
    fn good_control_frames() {
        assert_eq!(
            check(&frame(6, flag::ACK, 0, b"12345678")),
            Ok(Frame::Ping {
                ack: true,
                data: *b"12345678"
            })
        );
        assert_eq!(
            check(&frame(7, 0, 0, b"\0\0\0\x05\0\0\0\x0bbye")),
            Ok(Frame::GoAway {
                last_stream: 5,
                code: ErrorCode::EnhanceYourCalm,
                debug: b"bye"
            })
        );
        assert_eq!(
            check(&frame(0x42, 0, 7, b"anything")),
            Ok(Frame::Unknown {
                kind: 0x42,
                stream: 7
            })
        );
        let bytes = frame(4, 0, 0, b"\0\x05\0\0\x40\0\0\x99\0\0\0\x01");
        let Ok(Frame::Settings { ack: false, params }) = check(&bytes) else {
            panic!("settings");
        };
        let got: Vec<_> = settings(params).collect();
        assert_eq!(got, [(5, 16_384), (0x99, 1)]);
    }

    #[test]
    fn header_blocks_are_split_into_continuations() {
        let block = vec![7u8; 40_000];
        let mut out = Vec::new();
        write_header_block(&mut out, 5, true, &block);
        let mut at = 0;
        let mut kinds = Vec::new();
        let mut joined = Vec::new();
        while let Some(raw) = split(&out[at..], 16_384).unwrap() {
            at += raw.bytes.len();
            kinds.push((raw.head.kind, raw.head.flags));
            joined.extend_from_slice(raw.payload);
        }
        assert_eq!(at, out.len());
        assert_eq!(joined, block);
        assert_eq!(
            kinds,
            [
                (Kind::Headers, flag::END_STREAM),
                (Kind::Continuation, 0),
                (Kind::Continuation, flag::END_HEADERS)
            ]
        );
    }
}
