//! Reading frames: one whole frame taken from the bytes that arrived, then checked against the
//! rules of its type.

use super::error::{ErrorCode, H2Error};
use super::settings::{check_setting, settings};
use super::{be32, flag, Head, Kind, Raw, StreamId, HEADER_LEN, MAX_WINDOW};

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
