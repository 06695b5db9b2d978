//! Every way a request can fail, and what fc-init answers for it (docs/reference.md §6).
//!
//! [`Failure`] is the proxy's error enum: each variant names the step that failed and carries
//! its cause. [`Failure::answer`] maps it to the error answer (type, status, message) or to
//! `None` when no answer can be given any more (the client is gone, or the function's answer
//! has already started and the connection must simply be closed).

use std::fmt;
use std::io;

use crate::http::fc_error::{ErrorType, Invocation};
use crate::http::HttpError;
use crate::supervisor::LifecycleAnswer;

/// Why a request was not (completely) served.
#[derive(Debug)]
pub enum Failure {
    /// The request head was malformed, too large or too slow.
    BadRequest(HttpError),
    /// Content-Length above `server.max_body`, refused before reading the body.
    BodyTooLarge,
    /// The queue was full.
    QueueFull,
    /// fc-init is shutting down.
    Stopping,
    /// No slot within the request's time.
    QueueTimeout,
    /// The initializer failed or timed out (the last attempt's reason).
    Initialization(String),
    /// Connecting to the function failed.
    Connect(ConnectError),
    /// Sending the request head to the function failed.
    SendHead(io::Error),
    /// Copying the request body failed (either side; the variant inside tells which).
    RequestBody(HttpError),
    /// Reading the function's response head failed.
    ResponseHead(HttpError),
    /// Copying the response body failed, after its head was sent.
    ResponseBody(HttpError),
    /// `function.timeout` passed after the answer had started (or during an upgraded
    /// connection): both sides are closed.
    Timeout,
    /// fc-init ran out of file descriptors (its own condition, not the function's).
    Descriptors(io::Error),
}

/// An error answer: type, status, message.
pub struct Answer {
    pub error: ErrorType,
    pub status: u16,
    pub message: String,
}

fn answer(error: ErrorType, invocation: Invocation, message: impl Into<String>) -> Option<Answer> {
    Some(Answer {
        error,
        status: error.status(invocation),
        message: message.into(),
    })
}

fn invalid(status: u16, message: impl Into<String>) -> Option<Answer> {
    Some(Answer {
        error: ErrorType::InvalidArgument,
        status,
        message: message.into(),
    })
}

impl Failure {
    /// What to answer, or `None` when the connection can only be closed.
    pub fn answer(&self, invocation: Invocation) -> Option<Answer> {
        use ErrorType::*;
        match self {
            Failure::BadRequest(e) => match e {
                HttpError::Timeout => invalid(408, "timed out reading the request head"),
                e => invalid(e.status()?, e.to_string()),
            },
            Failure::BodyTooLarge => invalid(413, "request body larger than server.max_body"),
            Failure::QueueFull => answer(TooManyRequests, invocation, "too many requests queued"),
            Failure::Stopping => answer(InstanceStopping, invocation, "the instance is stopping"),
            Failure::QueueTimeout => answer(
                FunctionTimeout,
                invocation,
                "timed out waiting for a free slot (server.max_concurrency)",
            ),
            Failure::Initialization(reason) => answer(InitializationError, invocation, reason),
            Failure::Connect(e) => answer(UnhandledInvocationError, invocation, e.to_string()),
            Failure::SendHead(e) => answer(
                UnhandledInvocationError,
                invocation,
                format!("sending the request to the function: {e}"),
            ),
            Failure::RequestBody(e) => match e {
                HttpError::Write(w) if w.kind() == io::ErrorKind::TimedOut => answer(
                    FunctionTimeout,
                    invocation,
                    "the function did not read the request in time",
                ),
                HttpError::Write(w) => answer(
                    UnhandledInvocationError,
                    invocation,
                    format!("sending the request body to the function: {w}"),
                ),
                HttpError::Timeout => invalid(408, "timed out reading the request body"),
                HttpError::BodyTooLarge => invalid(413, "request body larger than server.max_body"),
                // The client is gone: nobody to answer.
                HttpError::Read(_) => None,
                e => invalid(e.status().unwrap_or(400), e.to_string()),
            },
            Failure::ResponseHead(e) => match e {
                HttpError::Timeout => answer(
                    FunctionTimeout,
                    invocation,
                    "the function did not answer within function.timeout",
                ),
                HttpError::ConnectionClosed | HttpError::UnexpectedEof => answer(
                    UnhandledInvocationError,
                    invocation,
                    "the function closed the connection without a complete answer",
                ),
                e => answer(
                    UnhandledInvocationError,
                    invocation,
                    format!("reading the function's answer: {e}"),
                ),
            },
            Failure::Descriptors(e) => answer(
                TooManyRequests,
                invocation,
                format!("fc-init is out of file descriptors: {e}"),
            ),
            Failure::ResponseBody(_) | Failure::Timeout => None,
        }
    }

    /// Whether the client closed its connection (or reset it) before the exchange was over:
    /// not the function's fault (docs/reference.md §8).
    pub fn client_gone(&self) -> bool {
        matches!(
            self,
            Failure::RequestBody(HttpError::Read(_) | HttpError::UnexpectedEof)
        )
    }

    /// Whether the client connection can carry another request after this failure's answer
    /// (nothing of the request was left half-read by it, nothing half-written).
    pub fn can_continue(&self) -> bool {
        matches!(
            self,
            Failure::QueueFull
                | Failure::QueueTimeout
                | Failure::Initialization(_)
                | Failure::Connect(_)
                | Failure::Stopping
                | Failure::Descriptors(_)
        )
    }
}

/// What fc-init answers FC's lifecycle call with (docs/reference.md §4, §6): `None` for 200, else the
/// error type and message, with the status of an HTTP invocation (they are not `/invoke`).
pub fn lifecycle_failure(answer: LifecycleAnswer) -> Option<(ErrorType, String)> {
    Some(match answer {
        LifecycleAnswer::Done => return None,
        LifecycleAnswer::InitializationFailed(reason) => (ErrorType::InitializationError, reason),
        LifecycleAnswer::PreStopFailed { reason, timed_out } => match timed_out {
            true => (ErrorType::FunctionTimeout, reason),
            false => (ErrorType::UnhandledInvocationError, reason),
        },
        LifecycleAnswer::Stopping => (
            ErrorType::InstanceStopping,
            "the instance is stopping".to_owned(),
        ),
    })
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::BadRequest(e) => write!(f, "bad request: {e}"),
            Failure::BodyTooLarge => f.write_str("request body too large"),
            Failure::QueueFull => f.write_str("queue full"),
            Failure::Stopping => f.write_str("stopping"),
            Failure::QueueTimeout => f.write_str("timed out in the queue"),
            Failure::Initialization(r) => write!(f, "initialization failed: {r}"),
            Failure::Connect(e) => e.fmt(f),
            Failure::SendHead(e) => write!(f, "sending the request head: {e}"),
            Failure::RequestBody(e) => write!(f, "copying the request body: {e}"),
            Failure::ResponseHead(e) => write!(f, "reading the response head: {e}"),
            Failure::ResponseBody(e) => write!(f, "copying the response body: {e}"),
            Failure::Timeout => f.write_str("cut at function.timeout"),
            Failure::Descriptors(e) => write!(f, "out of file descriptors: {e}"),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::BadRequest(e)
            | Failure::RequestBody(e)
            | Failure::ResponseHead(e)
            | Failure::ResponseBody(e) => Some(e),
            Failure::Connect(e) => Some(e),
            Failure::SendHead(e) | Failure::Descriptors(e) => Some(e),
            _ => None,
        }
    }
}

/// Why no connection to the function could be had.
#[derive(Debug)]
pub enum ConnectError {
    /// Refused, or no socket: the function is not there (it most likely just died).
    Absent(io::Error),
    /// Its backlog is full: try again shortly.
    Busy,
    /// fc-init ran out of descriptors.
    Exhausted(io::Error),
    Failed(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connecting to the function: ")?;
        match self {
            ConnectError::Absent(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                f.write_str("connection refused")
            }
            ConnectError::Absent(e) | ConnectError::Exhausted(e) | ConnectError::Failed(e) => {
                e.fmt(f)
            }
            ConnectError::Busy => f.write_str("timeout"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Absent(e) | ConnectError::Exhausted(e) | ConnectError::Failed(e) => {
                Some(e)
            }
            ConnectError::Busy => None,
        }
    }
}

impl ConnectError {
    pub(super) fn of(e: io::Error) -> ConnectError {
        if super::fds::is_exhausted(&e) {
            return ConnectError::Exhausted(e);
        }
        match e.kind() {
            io::ErrorKind::WouldBlock => ConnectError::Busy,
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ConnectError::Absent(e),
            _ => ConnectError::Failed(e),
        }
    }
}

/// Why the listener could not be started.
#[derive(Debug)]
pub enum ProxyError {
    /// Binding or listening on `server.listen` failed.
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The accept thread or an event loop could not be started.
    Thread(std::io::Error),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Bind { addr, source } => write!(f, "listening on {addr}: {source}"),
            ProxyError::Thread(e) => write!(f, "starting the traffic threads: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Bind { source, .. } => Some(source),
            ProxyError::Thread(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_answers_follow_the_contract() {
        let status = |a| lifecycle_failure(a).map(|(e, _)| (e, e.status(Invocation::Http)));
        assert_eq!(status(LifecycleAnswer::Done), None);
        assert_eq!(
            status(LifecycleAnswer::InitializationFailed("status 500".into())),
            Some((ErrorType::InitializationError, 503))
        );
        let prestop = |timed_out| LifecycleAnswer::PreStopFailed {
            reason: "timeout".into(),
            timed_out,
        };
        assert_eq!(
            status(prestop(true)),
            Some((ErrorType::FunctionTimeout, 504))
        );
        assert_eq!(
            status(prestop(false)),
            Some((ErrorType::UnhandledInvocationError, 502))
        );
        assert_eq!(
            status(LifecycleAnswer::Stopping),
            Some((ErrorType::InstanceStopping, 503))
        );
        let (_, reason) = lifecycle_failure(LifecycleAnswer::InitializationFailed("x".into()))
            .expect("a failure");
        assert_eq!(reason, "x", "the reason is the message");
    }

    #[test]
    fn failures_that_leave_the_connection_usable() {
        assert!(Failure::QueueFull.can_continue());
        assert!(Failure::Stopping.can_continue());
        assert!(!Failure::BodyTooLarge.can_continue());
        assert!(!Failure::RequestBody(HttpError::Timeout).can_continue());
        assert!(Failure::Timeout.answer(Invocation::Http).is_none());
        let a = Failure::Descriptors(io::Error::from_raw_os_error(libc::EMFILE))
            .answer(Invocation::Event)
            .expect("an answer");
        assert_eq!((a.error, a.status), (ErrorType::TooManyRequests, 429));
    }
}
