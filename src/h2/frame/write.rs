//! Writing frames: each writer appends one whole frame fc-init makes itself to `out`.

use super::error::ErrorCode;
use super::{flag, Head, Kind, StreamId, DEFAULT_MAX_FRAME_SIZE, MAX_WINDOW};

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
