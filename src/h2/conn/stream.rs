//! The stream table's entries and their ends: a stream answered, forgotten, ended, or answered by
//! fc-init itself.

use std::time::Instant;

use super::{Action, Conn, Outcome, Side};
use crate::h2::block::REQUEST_ID;
use crate::h2::frame::{self, ErrorCode, StreamId};
use crate::h2::hpack;
use crate::http::fc_error::{ErrorType, Invocation as InvocationKind};

/// One stream, as fc-init relays it.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) request_id: String,
    pub(super) grpc: bool,
    /// `function.timeout`, while the invocation runs.
    pub(super) deadline: Instant,
    /// The invocation has ended (its `Ended` was reported); the stream may live on while the
    /// client still sends.
    pub(super) ended: bool,
    /// The client has not ended its side.
    pub(super) client_open: bool,
    /// The function has not ended its side.
    pub(super) function_open: bool,
    /// The function sent its final response headers.
    pub(super) response_started: bool,
    pub(super) status: Option<u16>,
    pub(super) grpc_status: Option<u32>,
}

impl Stream {
    /// `side` has not ended its half.
    pub(super) fn open(&self, side: Side) -> bool {
        side.pick(self.client_open, self.function_open)
    }
}

impl Conn {
    /// The function ended its response on `stream`.
    pub(super) fn answered(&mut self, stream: StreamId) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if !s.ended {
            s.ended = true;
            let outcome = Outcome::Answered {
                status: s.status,
                grpc_status: s.grpc_status,
            };
            let request_id = s.request_id.clone();
            self.ended(stream, request_id, outcome);
        }
        self.forget_if_done(stream);
    }

    pub(super) fn forget_if_done(&mut self, stream: StreamId) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|s| !s.client_open && !s.function_open)
        {
            self.streams.remove(&stream);
        }
    }

    pub(super) fn ended(&mut self, stream: StreamId, request_id: String, outcome: Outcome) {
        self.actions.push(Action::Ended {
            stream,
            request_id,
            outcome,
        });
    }

    /// fc-init answers a running invocation itself: the function's side is reset, the client
    /// gets `error` in the shape its request asked for.
    pub(super) fn answer(&mut self, stream: StreamId, error: ErrorType) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        if s.function_open {
            frame::write_rst_stream(&mut self.to_function, stream, ErrorCode::Cancel);
        }
        if !s.response_started || s.grpc {
            let block = &mut self.out_block;
            block.clear();
            if !s.response_started {
                let status = if s.grpc {
                    200
                } else {
                    error.status(InvocationKind::Http)
                };
                hpack::encode_literal(block, b":status", status.to_string().as_bytes());
                if s.grpc {
                    hpack::encode_literal(block, b"content-type", b"application/grpc");
                }
            }
            hpack::encode_literal(block, b"x-fc-error-type", error.as_str().as_bytes());
            hpack::encode_literal(block, REQUEST_ID, s.request_id.as_bytes());
            if s.grpc {
                let (code, message) = grpc_answer(error);
                hpack::encode_literal(block, b"grpc-status", code.as_bytes());
                hpack::encode_literal(block, b"grpc-message", message.as_bytes());
            }
            frame::write_header_block(&mut self.to_client, stream, true, block);
            if s.client_open {
                // RFC 9113 §8.1: a complete response before the request ended; NO_ERROR
                // tells the client to stop sending.
                frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::NoError);
            }
        } else {
            // An HTTP response under way cannot change its status: the client sees a reset.
            frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::Cancel);
        }
        if !s.ended {
            self.ended(stream, s.request_id, Outcome::Failed(error));
        }
    }

    pub(super) fn answer_all(&mut self, error: ErrorType) {
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            match self.streams.get(&id) {
                Some(s) if !s.ended => self.answer(id, error),
                _ => {
                    self.streams.remove(&id);
                }
            }
        }
    }

    /// The function connection is gone or cut off: the running invocations are answered
    /// `error`, with no reset sent to it, and the client is told by a GOAWAY that the
    /// connection closes.
    pub(super) fn function_gone(&mut self, error: ErrorType) {
        for s in self.streams.values_mut() {
            s.function_open = false;
        }
        self.answer_all(error);
        frame::write_goaway(
            &mut self.to_client,
            self.last_stream,
            ErrorCode::NoError,
            b"",
        );
    }

    /// `side` ended its half of `stream` (END_STREAM); the function's end is the
    /// invocation's answer.
    pub(super) fn end_half(&mut self, side: Side, stream: StreamId) {
        if let Some(s) = self.streams.get_mut(&stream) {
            *side.pick(&mut s.client_open, &mut s.function_open) = false;
        }
        match side {
            Side::Client => self.forget_if_done(stream),
            Side::Function => self.answered(stream),
        }
    }

    pub(super) fn end_all(&mut self, outcome: impl Fn(&Stream) -> Outcome) {
        for (id, s) in std::mem::take(&mut self.streams) {
            if !s.ended {
                let o = outcome(&s);
                self.ended(id, s.request_id, o);
            }
        }
    }
}

/// The gRPC status and message fc-init answers `error` with: DEADLINE_EXCEEDED for a
/// timeout, UNAVAILABLE (which clients may retry) otherwise, as gRPC maps HTTP 502-504.
pub(super) fn grpc_answer(error: ErrorType) -> (&'static str, &'static str) {
    match error {
        ErrorType::FunctionTimeout => ("4", "FunctionTimeout: no answer within function.timeout"),
        ErrorType::InstanceStopping => ("14", "InstanceStopping: fc-init is shutting down"),
        ErrorType::InitializationError => (
            "14",
            "InitializationError: the instance could not be initialized",
        ),
        _ => (
            "14",
            "UnhandledInvocationError: the function connection failed",
        ),
    }
}
