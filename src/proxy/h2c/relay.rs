//! One h2c connection's state on an event loop, as data: the [`Conn`] core, the connection's
//! own function connection, what of each output is written, and the guards of every running
//! stream (its in-flight count and concurrency permit, its Start line) — plus the [`Host`]
//! the core asks for permits and request ids, and the one rule that turns a stream's ending
//! into the metrics' outcome ([`outcome`]). What is done with it is [`super`]'s.

use std::collections::HashMap;
use std::time::Instant;

use crate::h2::conn::{self, Conn, Host, Side};
use crate::h2::frame::StreamId;
use crate::http::fc_error::ErrorType;
use crate::metrics::Outcome;

use crate::proxy::limiter::Permit;
use crate::proxy::lines::Started;
use crate::proxy::shared::{InFlight, Proxy};

/// What a stream the host admitted holds until its invocation ends: dropped in this order
/// (the in-flight count first, then the slot, as an HTTP/1.1 exchange gives them back).
pub(in crate::proxy) struct Held {
    _in_flight: InFlight<'static>,
    _permit: Permit<'static>,
}

/// A running invocation (a stream between its `Started` and its `Ended`).
pub(in crate::proxy) struct Running {
    /// `None` only if the core started a stream the host did not admit (it never does).
    pub(super) _held: Option<Held>,
    pub(super) request_id: String,
    pub(super) started: Instant,
    /// Its Start line was queued (`log.invocations`): its End line follows.
    pub(super) start_line: bool,
}

/// One client connection relayed as h2c.
pub(in crate::proxy) struct Relay {
    pub(super) conn: Conn,
    /// The function connection (index in the loop's pool), once made; never pooled.
    pub(super) fnc: Option<usize>,
    /// Read from the function, not yet taken by the core.
    pub(super) fn_in: Vec<u8>,
    pub(super) fn_eof: bool,
    /// Bytes of `conn.to_client()` / `conn.to_function()` already written.
    pub(super) cpos: usize,
    pub(super) fpos: usize,
    pub(super) running: HashMap<StreamId, Running>,
    /// Permits the host granted during one batch of client bytes, until their `Started`.
    pub(super) admitted: HashMap<StreamId, Held>,
    /// The latest Start line queued: the function gets no byte before it is on stdout.
    pub(super) last_start: Option<Started>,
    /// Registered to be driven at the next change of the instance's status (the shutdown's
    /// GOAWAY, an instance becoming ready); the loop clears it when it drives the waiters.
    pub(in crate::proxy) waiting_status: bool,
    /// fc-init's shutdown was passed to the core (GOAWAY sent, the drain runs).
    pub(super) shut: bool,
    /// Since when no invocation runs (for `server.idle_timeout`).
    pub(super) idle_since: Instant,
    /// Since when an incomplete frame waits in the client's input (for
    /// `server.header_timeout`: a client trickling a frame cannot hold the connection).
    pub(super) stalled_since: Option<Instant>,
    /// Since when a header block from the client is open (for `server.header_timeout`:
    /// HEADERS without their END_HEADERS, CONTINUATIONs trickled or never sent).
    pub(super) block_since: Option<Instant>,
    /// `next-request`: the initializer attempt asked for, and the failures counted before it.
    pub(super) init_seen: Option<u64>,
    /// A connect the function's backlog refused (`EAGAIN`) is tried again then.
    pub(super) retry_at: Option<Instant>,
    /// After the core closed: the outputs are written, the client's write side shut, and its
    /// input read and dropped, until then at most.
    pub(super) closing_by: Option<Instant>,
    /// The client's write side was shut (the connection lingers for its end of input).
    pub(super) write_shut: bool,
}

impl Relay {
    pub(super) fn new(conn: Conn, now: Instant) -> Relay {
        Relay {
            conn,
            fnc: None,
            fn_in: Vec::new(),
            fn_eof: false,
            cpos: 0,
            fpos: 0,
            running: HashMap::new(),
            admitted: HashMap::new(),
            last_start: None,
            waiting_status: false,
            shut: false,
            idle_since: now,
            stalled_since: None,
            block_since: None,
            init_seen: None,
            retry_at: None,
            closing_by: None,
            write_shut: false,
        }
    }

    /// Bytes for the client not written yet.
    pub(super) fn unsent_client(&mut self) -> usize {
        self.conn.to_client().len() - self.cpos
    }

    /// Bytes for the function not written yet.
    pub(super) fn unsent_function(&mut self) -> usize {
        self.conn.to_function().len() - self.fpos
    }

    /// Nothing left to say before fc-init exits: no invocation runs and the client has
    /// every byte meant for it.
    pub(in crate::proxy) fn settled(&self) -> bool {
        self.running.is_empty() && self.cpos == self.conn.buffered(Side::Client)
    }
}

/// The proxy as the core's [`Host`]: a permit from the concurrency limiter without queueing
/// (a full limit refuses the stream with `REFUSED_STREAM`, which clients retry), counted in
/// flight at once, and request ids from the same source as HTTP/1.1 requests.
pub(super) struct ProxyHost<'a> {
    pub(super) p: &'static Proxy,
    pub(super) admitted: &'a mut HashMap<StreamId, Held>,
}

impl Host for ProxyHost<'_> {
    fn admit(&mut self, stream: StreamId) -> bool {
        if self.p.stopping() {
            return false;
        }
        let Some(permit) = self.p.limiter.try_now() else {
            return false;
        };
        // Counted in before the flag is read (see `InFlight::enter`): the supervisor's drain
        // never misses a stream on its way to the function.
        let Some(in_flight) = InFlight::enter(self.p) else {
            return false;
        };
        self.admitted.insert(
            stream,
            Held {
                _in_flight: in_flight,
                _permit: permit,
            },
        );
        true
    }

    fn new_request_id(&mut self) -> String {
        crate::http::new_request_id()
    }
}

/// How a stream's ending counts in the metrics and on its End line, as an HTTP/1.1 request
/// would: the function's answer (whatever its status or `grpc-status`) is a success; fc-init's
/// own answers are their error; a client that reset its stream (a gRPC deadline, a cancel)
/// closed it; a stream the function reset or never processed (its GOAWAY) is the function's
/// failure.
pub(super) fn outcome(o: conn::Outcome) -> Outcome {
    match o {
        conn::Outcome::Answered { .. } => Outcome::Success,
        conn::Outcome::Failed(e) => Outcome::Error(e),
        conn::Outcome::Reset {
            by: Side::Client, ..
        } => Outcome::ClientClosed,
        conn::Outcome::Reset {
            by: Side::Function, ..
        }
        | conn::Outcome::NotProcessed => Outcome::Error(ErrorType::UnhandledInvocationError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::frame::ErrorCode;

    #[test]
    fn a_stream_ending_counts_as_an_http_request_would() {
        let answered = conn::Outcome::Answered {
            status: Some(200),
            grpc_status: Some(13),
        };
        assert_eq!(
            outcome(answered),
            Outcome::Success,
            "a gRPC error is an answer"
        );
        let timeout = conn::Outcome::Failed(ErrorType::FunctionTimeout);
        assert_eq!(outcome(timeout), Outcome::Error(ErrorType::FunctionTimeout));
        let cancel = conn::Outcome::Reset {
            by: Side::Client,
            code: ErrorCode::Cancel,
        };
        assert_eq!(outcome(cancel), Outcome::ClientClosed);
        let reset = conn::Outcome::Reset {
            by: Side::Function,
            code: ErrorCode::Internal,
        };
        assert_eq!(
            outcome(reset),
            Outcome::Error(ErrorType::UnhandledInvocationError)
        );
        assert_eq!(
            outcome(conn::Outcome::NotProcessed),
            Outcome::Error(ErrorType::UnhandledInvocationError)
        );
    }
}
