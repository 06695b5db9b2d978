//! What goes wrong in HTTP/2: the error codes (RFC 9113 §7) and the protocol violations that carry
//! them.

use std::fmt;

use super::StreamId;

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
