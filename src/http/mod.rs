//! HTTP/1.1 for fc-init: strict parsing, framing, streaming body copy, a tiny hook client and
//! Function-Compute-style error answers. No async runtime: the parsers and the [`codec`] work on
//! bytes already received (the proxy's event loops), the readers and copiers block on std sockets
//! (hooks, admin API, async workers).
//!
//! Layout (one job per file):
//! - [`buffered`]: [`Buffered`], the one fixed, reusable read buffer per connection that serves the
//!   head and then the body, with an optional deadline applied before every syscall.
//! - [`request`]: read and validate a request head (RFC 9112 §2–§6), decide its body framing.
//! - [`response`]: read a response head from the function, skip interim 1xx, decide its framing.
//! - [`codec`]: body framing as resumable state machines over byte slices (the event loops
//!   feed them whatever bytes arrived), enforcing `max_body`.
//! - [`body`]: stream a body from a [`Buffered`] to any writer with a [`codec::Decoder`].
//! - [`write`](mod@write): serialise a request or response head for forwarding, minus hop-by-hop fields.
//! - [`client`]: a blocking one-shot client for the lifecycle hooks, bounded by one deadline.
//! - [`fc_error`]: the error answers fc-init makes itself (docs/reference.md §6).
//! - [`request_id`]: validate incoming request ids and make new ones.
//!
//! Failure model: every parse failure is an [`HttpError`] whose [`HttpError::status`] is the
//! status fc-init answers the *client* with (400/408/413/431); the caller closes the connection
//! afterwards (docs/reference.md §12: "nothing of it reaches the function"). Errors reading from the
//! function's side are the proxy's to map (502/504): it knows which side it was reading.
//! Parsing is strict rather than liberal on purpose: fc-init sits in front of another parser
//! (the function's), and any disagreement between the two about where a message ends is a
//! request-smuggling hole (RFC 9112 §11.2).

pub mod body;
pub mod buffered;
pub mod client;
pub mod codec;
pub mod fc_error;
mod head;
pub mod request;
pub mod request_id;
pub mod response;
pub mod write;

#[cfg(test)]
mod proptests;

use std::io;

pub use body::{copy_body, Output};
pub use buffered::{Buffered, Timeouts};
pub use head::{is_hop_by_hop_name, Field, Headers};
pub use request::{parse_request_head, read_request_head, read_request_head_into, RequestHead};
pub use request_id::{new_request_id, valid_request_id};
pub use response::{
    parse_response_head, read_response_head, read_response_head_into, ResponseHead,
};

/// How the body of a message is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFraming {
    /// No body at all (no Content-Length or Transfer-Encoding on a request; HEAD, 1xx, 204 and
    /// 304 responses).
    #[default]
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body ends when the peer closes the connection (responses only, RFC 9112 §6.3 rule 8).
    UntilClose,
}

/// Limits applied while reading a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the whole head, request line and final empty line included. A head of exactly
    /// this size is accepted; one byte more is [`HttpError::HeadersTooLarge`].
    pub max_header_bytes: usize,
    /// Number of header fields; more is [`HttpError::HeadersTooLarge`] too. Capped at
    /// [`MAX_HEADERS`].
    pub max_headers: usize,
    /// Reject an HTTP/1.1 request without a Host field (RFC 9112 §3.2: a server MUST answer
    /// 400). Default true; the admin API relaxes it for hand-written clients. Several Host
    /// fields, or one that is not `host[:port]`, are refused whatever this says (docs/reference.md §12).
    pub require_host: bool,
}

/// Upper bound on [`Limits::max_headers`]: the field array lives on the stack while parsing.
pub const MAX_HEADERS: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8 * 1024,
            max_headers: 100,
            require_host: true,
        }
    }
}

/// What went wrong while reading, parsing or copying an HTTP message.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The peer closed the connection cleanly before sending any byte of a new message: the
    /// normal end of a keep-alive connection, not an error to answer.
    #[error("connection closed")]
    ConnectionClosed,
    /// The request head violates RFC 9112 (or fc-init's stricter reading of it).
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The response head from the function violates RFC 9112.
    #[error("malformed response: {0}")]
    BadResponse(&'static str),
    /// The body framing is broken: bad chunk size line, missing CRLF, oversized trailers.
    #[error("malformed body: {0}")]
    BadBody(&'static str),
    /// The head is larger than `max_header_bytes` or has more than `max_headers` fields.
    #[error("header block too large")]
    HeadersTooLarge,
    /// The body is larger than `max_body`; nothing beyond the limit was forwarded.
    #[error("body too large")]
    BodyTooLarge,
    /// The reader's deadline passed (for a request head: `header_timeout`).
    #[error("timeout")]
    Timeout,
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
    /// Reading from the source failed.
    #[error("read failed: {0}")]
    Read(#[source] io::Error),
    /// Writing to the destination failed (while copying a body).
    #[error("write failed: {0}")]
    Write(#[source] io::Error),
}

impl HttpError {
    /// The status fc-init answers with when this error came from reading the client's request,
    /// or `None` when no answer makes sense (the connection is gone).
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::BadRequest(_) | HttpError::BadBody(_) | HttpError::UnexpectedEof => {
                Some(400)
            }
            HttpError::BadResponse(_) => Some(502),
            HttpError::HeadersTooLarge => Some(431),
            HttpError::BodyTooLarge => Some(413),
            HttpError::Timeout => Some(408),
            HttpError::ConnectionClosed | HttpError::Read(_) | HttpError::Write(_) => None,
        }
    }

    /// Classify an error from the reading side: deadline expiry becomes [`HttpError::Timeout`].
    pub(crate) fn from_read(e: io::Error) -> HttpError {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::Timeout,
            io::ErrorKind::UnexpectedEof => HttpError::UnexpectedEof,
            _ => HttpError::Read(e),
        }
    }
}

/// The interim answer a server sends to `Expect: 100-continue` (RFC 9110 §10.1.1).
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The reason phrase fc-init writes for a status it produces itself.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
