//! Every way a request can fail, and what fc-init answers for it (docs/reference.md §6).
//!
//! [`Failure`] is the proxy's error enum: each variant names the step that failed and carries
//! its cause. [`Failure::answer`] maps it to the error answer (type, status, message) or to
//! `None` when no answer can be given any more (the client is gone, or the function's answer
//! has already started and the connection must simply be closed).

use std::io;

use crate::http::fc_error::{ErrorType, Invocation};
use crate::http::HttpError;
use crate::supervisor::LifecycleAnswer;

/// Why a request was not (completely) served.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The request head was malformed, too large or too slow.
    #[error("bad request: {0}")]
    BadRequest(#[source] HttpError),
    /// Content-Length above `server.max_body`, refused before reading the body.
    #[error("request body too large")]
    BodyTooLarge,
    /// The queue was full.
    #[error("queue full")]
    QueueFull,
    /// fc-init is shutting down.
    #[error("stopping")]
    Stopping,
    /// No slot within the request's time.
    #[error("timed out in the queue")]
    QueueTimeout,
    /// The initializer failed or timed out (the last attempt's reason).
    #[error("initialization failed: {0}")]
    Initialization(String),
    /// Connecting to the function failed.
    #[error("{0}")]
    Connect(#[source] ConnectError),
    /// Sending the request head to the function failed.
    #[error("sending the request head: {0}")]
    SendHead(#[source] io::Error),
    /// Copying the request body failed (either side; the variant inside tells which).
    #[error("copying the request body: {0}")]
    RequestBody(#[source] HttpError),
    /// Reading the function's response head failed.
    #[error("reading the response head: {0}")]
    ResponseHead(#[source] HttpError),
    /// Copying the response body failed, after its head was sent.
    #[error("copying the response body: {0}")]
    ResponseBody(#[source] HttpError),
    /// `function.timeout` passed after the answer had started (or during an upgraded
    /// connection): both sides are closed.
    #[error("cut at function.timeout")]
    Timeout,
    /// fc-init ran out of file descriptors (its own condition, not the function's).
    #[error("out of file descriptors: {0}")]
    Descriptors(#[source] io::Error),
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

/// Why no connection to the function could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Refused, or no socket: the function is not there (it most likely just died).
    #[error("connecting to the function: {}", absent(.0))]
    Absent(#[source] io::Error),
    /// Its backlog is full: try again shortly.
    #[error("connecting to the function: timeout")]
    Busy,
    /// fc-init ran out of descriptors.
    #[error("connecting to the function: {0}")]
    Exhausted(#[source] io::Error),
    #[error("connecting to the function: {0}")]
    Failed(#[source] io::Error),
}

/// A refused connect says so in words (its OS text varies by platform).
fn absent(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        _ => e.to_string(),
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
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Binding or listening on `server.listen` failed.
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The accept thread or an event loop could not be started.
    #[error("starting the traffic threads: {0}")]
    Thread(#[source] std::io::Error),
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

    #[test]
    fn failures_say_what_failed_and_keep_their_cause() {
        use std::error::Error as _;
        let refused = Failure::Connect(ConnectError::Absent(io::Error::from(
            io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(
            refused.to_string(),
            "connecting to the function: connection refused"
        );
        assert!(refused.source().is_some(), "the connect error is its cause");
        assert_eq!(
            Failure::Connect(ConnectError::Busy).to_string(),
            "connecting to the function: timeout"
        );
        let body = Failure::RequestBody(HttpError::Timeout);
        assert!(body.to_string().starts_with("copying the request body: "));
        assert!(body.source().is_some());
        assert_eq!(Failure::Timeout.to_string(), "cut at function.timeout");
        assert!(Failure::Timeout.source().is_none());
        let e = ProxyError::Thread(io::Error::other("no threads"));
        assert_eq!(e.to_string(), "starting the traffic threads: no threads");
    }
}
