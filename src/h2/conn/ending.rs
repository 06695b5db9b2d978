//! How streams and the connection are cut short and closed: timeouts, the shutdown and its drain,
//! protocol errors.

use std::time::Instant;

use super::stream::Stream;
use super::{Action, Conn, Outcome, Side};
use crate::h2::frame::{self, ErrorCode, H2Error, StreamId};
use crate::http::fc_error::ErrorType;

impl Conn {
    /// fc-init is stopping: GOAWAY to the client (streams it opened so far are served, later
    /// ones refused); at `deadline` the streams still running are answered
    /// `InstanceStopping`. The connection closes when no stream is left.
    pub fn shutdown(&mut self, deadline: Instant) {
        if self.closed || self.drain.is_some() {
            return;
        }
        self.drain = Some(deadline);
        frame::write_goaway(
            &mut self.to_client,
            self.last_stream,
            ErrorCode::NoError,
            b"",
        );
        self.settle();
    }

    /// Time passed: timeouts, and the end of the drain.
    pub fn on_tick(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let expired: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.ended && s.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.answer(id, ErrorType::FunctionTimeout);
        }
        if self.drain.is_some_and(|d| d <= now) {
            self.answer_all(ErrorType::InstanceStopping);
            frame::write_goaway(&mut self.to_function, 0, ErrorCode::NoError, b"");
            self.close();
        }
        self.settle();
    }

    /// A protocol error by `side`.
    pub(super) fn error(&mut self, side: Side, e: H2Error) {
        match e {
            H2Error::Connection { .. } => self.fail(side, e),
            H2Error::Stream { stream, code, .. } => {
                let (to_side, to_other) = match side {
                    Side::Client => (&mut self.to_client, &mut self.to_function),
                    Side::Function => (&mut self.to_function, &mut self.to_client),
                };
                frame::write_rst_stream(to_side, stream, code);
                let Some(s) = self.streams.remove(&stream) else {
                    return;
                };
                match side {
                    Side::Client => {
                        if s.function_open {
                            frame::write_rst_stream(to_other, stream, ErrorCode::Cancel);
                        }
                        if !s.ended {
                            self.ended(stream, s.request_id, Outcome::Reset { by: side, code });
                            // A stream the client broke on purpose is a reset it did not
                            // send ("MadeYouReset"): it costs the same budget.
                            let calm = self.clock.map(|now| self.calm.reset(now));
                            if let Some(Err(e)) = calm {
                                self.fail(Side::Client, e);
                            }
                        }
                    }
                    Side::Function => {
                        // Put back for `answer`, which needs it; the function's side is
                        // already reset.
                        let ended = s.ended;
                        self.streams.insert(
                            stream,
                            Stream {
                                function_open: false,
                                ..s
                            },
                        );
                        if ended {
                            frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::Cancel);
                            self.streams.remove(&stream);
                        } else {
                            self.answer(stream, ErrorType::UnhandledInvocationError);
                        }
                    }
                }
            }
        }
    }

    /// A connection error by `side`: GOAWAY to it; the streams end; both connections close.
    pub(super) fn fail(&mut self, side: Side, e: H2Error) {
        let H2Error::Connection { code, reason } = e else {
            return self.error(side, e);
        };
        self.actions.push(Action::Error { side, error: e });
        match side {
            Side::Client => {
                frame::write_goaway(
                    &mut self.to_client,
                    self.last_stream,
                    code,
                    reason.as_bytes(),
                );
                self.end_all(|_| Outcome::Reset {
                    by: Side::Client,
                    code,
                });
                frame::write_goaway(&mut self.to_function, 0, ErrorCode::NoError, b"");
            }
            Side::Function => {
                frame::write_goaway(&mut self.to_function, 0, code, reason.as_bytes());
                self.function_gone(ErrorType::UnhandledInvocationError);
            }
        }
        self.close();
    }

    pub(super) fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.actions.push(Action::Close);
        }
    }

    /// After a shutdown or a peer's GOAWAY, the connection closes once no stream is left.
    pub(super) fn settle(&mut self) {
        if self.closed || self.drain.is_none() && !self.peer_goaway {
            return;
        }
        if self.streams.is_empty() && self.client.assembly.is_none() {
            frame::write_goaway(&mut self.to_function, 0, ErrorCode::NoError, b"");
            self.close();
        }
    }
}
