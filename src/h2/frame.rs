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

use std::fmt;

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

/// Error codes (RFC 9113 §7). Unknown codes received from a peer are kept as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NoError,
    Protocol,
    Internal,
    FlowControl,
    SettingsTimeout,
    StreamClosed,
    FrameSize,
    RefusedStream,
    Cancel,
    Compression,
    Connect,
    EnhanceYourCalm,
    InadequateSecurity,
    Http11Required,
    Other(u32),
}

impl ErrorCode {
    pub fn from_u32(n: u32) -> ErrorCode {
        match n {
            0x0 => ErrorCode::NoError,
            0x1 => ErrorCode::Protocol,
            0x2 => ErrorCode::Internal,
            0x3 => ErrorCode::FlowControl,
            0x4 => ErrorCode::SettingsTimeout,
            0x5 => ErrorCode::StreamClosed,
            0x6 => ErrorCode::FrameSize,
            0x7 => ErrorCode::RefusedStream,
            0x8 => ErrorCode::Cancel,
            0x9 => ErrorCode::Compression,
            0xa => ErrorCode::Connect,
            0xb => ErrorCode::EnhanceYourCalm,
            0xc => ErrorCode::InadequateSecurity,
            0xd => ErrorCode::Http11Required,
            other => ErrorCode::Other(other),
        }
    }

    pub fn as_u32(self) -> u32 {
        match self {
            ErrorCode::NoError => 0x0,
            ErrorCode::Protocol => 0x1,
            ErrorCode::Internal => 0x2,
            ErrorCode::FlowControl => 0x3,
            ErrorCode::SettingsTimeout => 0x4,
            ErrorCode::StreamClosed => 0x5,
            ErrorCode::FrameSize => 0x6,
            ErrorCode::RefusedStream => 0x7,
            ErrorCode::Cancel => 0x8,
            ErrorCode::Compression => 0x9,
            ErrorCode::Connect => 0xa,
            ErrorCode::EnhanceYourCalm => 0xb,
            ErrorCode::InadequateSecurity => 0xc,
            ErrorCode::Http11Required => 0xd,
            ErrorCode::Other(n) => n,
        }
    }
}

/// A violation of the protocol, with the error the RFC asks the receiver to signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Error {
    /// The connection cannot go on: `GOAWAY` with `code`, then close.
    Connection {
        code: ErrorCode,
        reason: &'static str,
    },
    /// Only this stream is broken: `RST_STREAM` with `code`.
    Stream {
        stream: StreamId,
        code: ErrorCode,
        reason: &'static str,
    },
}

impl H2Error {
    pub fn conn(code: ErrorCode, reason: &'static str) -> H2Error {
        H2Error::Connection { code, reason }
    }

    pub fn stream(stream: StreamId, code: ErrorCode, reason: &'static str) -> H2Error {
        H2Error::Stream {
            stream,
            code,
            reason,
        }
    }
}

impl fmt::Display for H2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H2Error::Connection { code, reason } => {
                write!(f, "HTTP/2 connection error {code:?}: {reason}")
            }
            H2Error::Stream {
                stream,
                code,
                reason,
            } => write!(f, "HTTP/2 stream {stream} error {code:?}: {reason}"),
        }
    }
}

impl std::error::Error for H2Error {}

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

/// Takes one frame from the start of `input`: `Ok(None)` while it is incomplete. A frame
/// whose announced length exceeds `max_frame_size` is a connection error at once
/// (`FRAME_SIZE_ERROR`, RFC 9113 §4.2: fc-init does not read over frames it will not take).
pub fn split(input: &[u8], max_frame_size: u32) -> Result<Option<Raw<'_>>, H2Error> {
    let Some(header) = input.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let head = Head::parse(header);
    if head.len > max_frame_size {
        return Err(H2Error::conn(
            ErrorCode::FrameSize,
            "frame larger than the maximum",
        ));
    }
    let total = HEADER_LEN + head.len as usize;
    let Some(bytes) = input.get(..total) else {
        return Ok(None);
    };
    Ok(Some(Raw {
        head,
        payload: &bytes[HEADER_LEN..],
        bytes,
    }))
}

/// A stream's priority as HEADERS and PRIORITY carry it (deprecated by RFC 9113 §5.3.2;
/// checked and otherwise ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub depends_on: StreamId,
    pub exclusive: bool,
    pub weight: u8,
}

/// A frame, checked against the rules of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: StreamId,
        end_stream: bool,
        data: &'a [u8],
        /// The length that counts against flow control: the whole payload, padding included.
        flow_len: u32,
    },
    Headers {
        stream: StreamId,
        end_stream: bool,
        end_headers: bool,
        fragment: &'a [u8],
    },
    Priority {
        stream: StreamId,
    },
    RstStream {
        stream: StreamId,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        /// A whole number of 6-byte parameters; read them with [`settings`].
        params: &'a [u8],
    },
    PushPromise {
        stream: StreamId,
        promised: StreamId,
        end_headers: bool,
        fragment: &'a [u8],
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: StreamId,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: StreamId,
        increment: u32,
    },
    Continuation {
        stream: StreamId,
        end_headers: bool,
        fragment: &'a [u8],
    },
    /// An extension frame: ignored (RFC 9113 §5.5).
    Unknown {
        kind: u8,
        stream: StreamId,
    },
}

/// Strips padding (RFC 9113 §6.1): the pad length octet, if `PADDED`, and the padding.
fn unpad(head: &Head, payload: &[u8]) -> Result<(usize, usize), H2Error> {
    if !head.has(flag::PADDED) {
        return Ok((0, payload.len()));
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(H2Error::conn(
            ErrorCode::FrameSize,
            "padded frame without a pad length",
        ));
    };
    // "If the length of the padding is the length of the frame payload or greater, the
    // recipient MUST treat this as a connection error of type PROTOCOL_ERROR."
    if pad as usize >= payload.len() {
        return Err(H2Error::conn(
            ErrorCode::Protocol,
            "padding longer than the payload",
        ));
    }
    Ok((1, rest.len() - pad as usize))
}

fn be32(b: &[u8]) -> u32 {
    match b.first_chunk::<4>() {
        Some(four) => u32::from_be_bytes(*four),
        None => 0,
    }
}

fn priority(stream: StreamId, b: &[u8]) -> Result<Priority, H2Error> {
    let word = be32(b);
    let p = Priority {
        depends_on: word & MAX_WINDOW,
        exclusive: word & !MAX_WINDOW != 0,
        weight: b.get(4).copied().unwrap_or(0),
    };
    if p.depends_on == stream {
        // RFC 9113 §5.3.1: a stream cannot depend on itself.
        return Err(H2Error::stream(
            stream,
            ErrorCode::Protocol,
            "stream depends on itself",
        ));
    }
    Ok(p)
}

/// Checks a frame against the rules of its type (RFC 9113 §6).
pub fn parse<'a>(head: Head, payload: &'a [u8]) -> Result<Frame<'a>, H2Error> {
    use ErrorCode::{FrameSize, Protocol};
    let stream = head.stream;
    let on_stream = |what: &'static str| {
        if stream == 0 {
            Err(H2Error::conn(Protocol, what))
        } else {
            Ok(())
        }
    };
    let on_connection = |what: &'static str| {
        if stream != 0 {
            Err(H2Error::conn(Protocol, what))
        } else {
            Ok(())
        }
    };
    Ok(match head.kind {
        Kind::Data => {
            on_stream("DATA on stream 0")?;
            let (start, len) = unpad(&head, payload)?;
            Frame::Data {
                stream,
                end_stream: head.has(flag::END_STREAM),
                data: &payload[start..start + len],
                flow_len: head.len,
            }
        }
        Kind::Headers => {
            on_stream("HEADERS on stream 0")?;
            let (mut start, mut len) = unpad(&head, payload)?;
            if head.has(flag::PRIORITY) {
                if len < 5 {
                    return Err(H2Error::conn(
                        FrameSize,
                        "HEADERS too short for its priority",
                    ));
                }
                priority(stream, &payload[start..])?;
                start += 5;
                len -= 5;
            }
            Frame::Headers {
                stream,
                end_stream: head.has(flag::END_STREAM),
                end_headers: head.has(flag::END_HEADERS),
                fragment: &payload[start..start + len],
            }
        }
        Kind::Priority => {
            on_stream("PRIORITY on stream 0")?;
            if payload.len() != 5 {
                return Err(H2Error::stream(stream, FrameSize, "PRIORITY not 5 bytes"));
            }
            priority(stream, payload)?;
            Frame::Priority { stream }
        }
        Kind::RstStream => {
            on_stream("RST_STREAM on stream 0")?;
            if payload.len() != 4 {
                return Err(H2Error::conn(FrameSize, "RST_STREAM not 4 bytes"));
            }
            Frame::RstStream {
                stream,
                code: ErrorCode::from_u32(be32(payload)),
            }
        }
        Kind::Settings => {
            on_connection("SETTINGS on a stream")?;
            let ack = head.has(flag::ACK);
            if ack && !payload.is_empty() {
                return Err(H2Error::conn(FrameSize, "SETTINGS ACK with a payload"));
            }
            if !payload.len().is_multiple_of(6) {
                return Err(H2Error::conn(
                    FrameSize,
                    "SETTINGS not a multiple of 6 bytes",
                ));
            }
            for (id, value) in settings(payload) {
                check_setting(id, value)?;
            }
            Frame::Settings {
                ack,
                params: payload,
            }
        }
        Kind::PushPromise => {
            on_stream("PUSH_PROMISE on stream 0")?;
            let (start, len) = unpad(&head, payload)?;
            if len < 4 {
                return Err(H2Error::conn(FrameSize, "PUSH_PROMISE too short"));
            }
            Frame::PushPromise {
                stream,
                promised: be32(&payload[start..]) & MAX_WINDOW,
                end_headers: head.has(flag::END_HEADERS),
                fragment: &payload[start + 4..start + len],
            }
        }
        Kind::Ping => {
            on_connection("PING on a stream")?;
            let Some(data) = payload.first_chunk::<8>().filter(|_| payload.len() == 8) else {
                return Err(H2Error::conn(FrameSize, "PING not 8 bytes"));
            };
            Frame::Ping {
                ack: head.has(flag::ACK),
                data: *data,
            }
        }
        Kind::GoAway => {
            on_connection("GOAWAY on a stream")?;
            if payload.len() < 8 {
                return Err(H2Error::conn(FrameSize, "GOAWAY shorter than 8 bytes"));
            }
            Frame::GoAway {
                last_stream: be32(payload) & MAX_WINDOW,
                code: ErrorCode::from_u32(be32(&payload[4..])),
                debug: &payload[8..],
            }
        }
        Kind::WindowUpdate => {
            if payload.len() != 4 {
                return Err(H2Error::conn(FrameSize, "WINDOW_UPDATE not 4 bytes"));
            }
            let increment = be32(payload) & MAX_WINDOW;
            if increment == 0 {
                // RFC 9113 §6.9: a stream error on a stream, a connection error on the
                // connection.
                return Err(match stream {
                    0 => H2Error::conn(Protocol, "WINDOW_UPDATE of 0"),
                    s => H2Error::stream(s, Protocol, "WINDOW_UPDATE of 0"),
                });
            }
            Frame::WindowUpdate { stream, increment }
        }
        Kind::Continuation => {
            on_stream("CONTINUATION on stream 0")?;
            Frame::Continuation {
                stream,
                end_headers: head.has(flag::END_HEADERS),
                fragment: payload,
            }
        }
        Kind::Unknown(kind) => Frame::Unknown { kind, stream },
    })
}

/// The parameters of a SETTINGS payload (whole 6-byte entries; a trailing part is ignored,
/// [`parse`] refuses it before).
pub fn settings(params: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    params
        .chunks_exact(6)
        .map(|p| (u16::from_be_bytes([p[0], p[1]]), be32(&p[2..])))
}

/// RFC 9113 §6.5.2: the values a peer may announce. Unknown settings are ignored.
fn check_setting(id: u16, value: u32) -> Result<(), H2Error> {
    match id {
        setting::ENABLE_PUSH if value > 1 => Err(H2Error::conn(
            ErrorCode::Protocol,
            "SETTINGS_ENABLE_PUSH not 0 or 1",
        )),
        setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => Err(H2Error::conn(
            ErrorCode::FlowControl,
            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
        )),
        setting::MAX_FRAME_SIZE
            if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) =>
        {
            Err(H2Error::conn(
                ErrorCode::Protocol,
                "SETTINGS_MAX_FRAME_SIZE out of range",
            ))
        }
        _ => Ok(()),
    }
}

// Writers: each appends one whole frame to `out`.

pub fn write_rst_stream(out: &mut Vec<u8>, stream: StreamId, code: ErrorCode) {
    Head {
        len: 4,
        kind: Kind::RstStream,
        flags: 0,
        stream,
    }
    .write(out);
    out.extend_from_slice(&code.as_u32().to_be_bytes());
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: StreamId, code: ErrorCode, debug: &[u8]) {
    // Debug data is fc-init's own short reason; bounded so the frame stays far below any
    // maximum frame size.
    let debug = &debug[..debug.len().min(256)];
    Head {
        len: 8 + debug.len() as u32,
        kind: Kind::GoAway,
        flags: 0,
        stream: 0,
    }
    .write(out);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&code.as_u32().to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn write_window_update(out: &mut Vec<u8>, stream: StreamId, increment: u32) {
    Head {
        len: 4,
        kind: Kind::WindowUpdate,
        flags: 0,
        stream,
    }
    .write(out);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

/// A SETTINGS frame with these parameters.
pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    Head {
        len: 6 * params.len() as u32,
        kind: Kind::Settings,
        flags: 0,
        stream: 0,
    }
    .write(out);
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// A header block as HEADERS and as many CONTINUATION frames as it needs, none longer than
/// [`DEFAULT_MAX_FRAME_SIZE`] (which every peer accepts, whatever it announced), without
/// padding or priority.
pub fn write_header_block(out: &mut Vec<u8>, stream: StreamId, end_stream: bool, block: &[u8]) {
    let max = DEFAULT_MAX_FRAME_SIZE as usize;
    let mut pieces = block.chunks(max).peekable();
    let mut first = true;
    // An empty block is still one HEADERS frame.
    if block.is_empty() {
        Head {
            len: 0,
            kind: Kind::Headers,
            flags: flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 },
            stream,
        }
        .write(out);
        return;
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let mut flags = if last { flag::END_HEADERS } else { 0 };
        if first && end_stream {
            flags |= flag::END_STREAM;
        }
        Head {
            len: piece.len() as u32,
            kind: if first {
                Kind::Headers
            } else {
                Kind::Continuation
            },
            flags,
            stream,
        }
        .write(out);
        out.extend_from_slice(piece);
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Head {
            len: payload.len() as u32,
            kind: Kind::from_byte(kind),
            flags,
            stream,
        }
        .write(&mut out);
        out.extend_from_slice(payload);
        out
    }

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
