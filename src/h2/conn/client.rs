//! Frames and header blocks from the client: each new request stream refused or opened as an
//! invocation.

use std::time::{Duration, Instant};

use super::inbound::Assembly;
use super::stream::Stream;
use super::{Action, Conn, Host, Invocation, Side};
use crate::h2::block::{Seen, REQUEST_ID};
use crate::h2::frame::{self, ErrorCode, Frame, H2Error, Raw, StreamId};
use crate::h2::hpack;
use crate::http::fc_error::ErrorType;

impl Conn {
    pub(super) fn client_frame(
        &mut self,
        raw: Raw<'_>,
        now: Instant,
        host: &mut dyn Host,
    ) -> Result<(), H2Error> {
        let frame = self.inbound_frame(Side::Client, raw)?;
        if costs_a_token(&frame) {
            self.calm.frame(now)?;
        }
        match self.frame_from(Side::Client, frame, raw)? {
            Some(block) => self.client_block(block, now, host),
            None => Ok(()),
        }
    }

    /// A complete header block from the client: a new stream's request, or trailers.
    fn client_block(
        &mut self,
        assembly: Assembly,
        now: Instant,
        host: &mut dyn Host,
    ) -> Result<(), H2Error> {
        let Assembly {
            stream,
            end_stream,
            block,
            ..
        } = assembly;
        let seen = self.decode_block(Side::Client, &block)?;
        if stream > self.last_stream {
            if stream % 2 == 0 {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "a client stream with an even id",
                ));
            }
            self.last_stream = stream;
            if seen.too_large {
                self.client.blocks.drop_block();
                self.too_large(stream, end_stream);
                return self.calm.frame(now);
            }
            return self.open(stream, end_stream, &block, seen, now, host);
        }
        if seen.too_large {
            return self.block_too_large(Side::Client, stream);
        }
        match self.streams.get(&stream).map(|s| s.client_open) {
            Some(true) => {
                // Trailers.
                self.pass_block(Side::Client, stream, end_stream, &block, &[]);
                if end_stream {
                    self.end_half(Side::Client, stream);
                }
                Ok(())
            }
            Some(false) => {
                self.client.blocks.drop_block();
                Err(H2Error::stream(
                    stream,
                    ErrorCode::StreamClosed,
                    "HEADERS after the client ended the stream",
                ))
            }
            None => {
                // A stream already refused or reset: in flight before the client knew.
                self.client.blocks.drop_block();
                self.calm.frame(now)
            }
        }
    }

    /// A new stream whose headers are too large: `:status 431` (RFC 9113 §10.5.1), as an
    /// HTTP/1.1 head over `max_header_bytes` gets; the function never sees it.
    fn too_large(&mut self, stream: StreamId, end_stream: bool) {
        let block = &mut self.out_block;
        block.clear();
        hpack::encode_literal(block, b":status", b"431");
        let error = ErrorType::InvalidArgument;
        hpack::encode_literal(block, b"x-fc-error-type", error.as_str().as_bytes());
        frame::write_header_block(&mut self.to_client, stream, true, block);
        if !end_stream {
            frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::NoError);
        }
        self.actions.push(Action::HeadersTooLarge { stream });
    }

    /// A new stream: refused, or an invocation.
    fn open(
        &mut self,
        stream: StreamId,
        end_stream: bool,
        block: &[u8],
        seen: Seen,
        now: Instant,
        host: &mut dyn Host,
    ) -> Result<(), H2Error> {
        let refuse = self.drain.is_some()
            || self.peer_goaway
            || self.streams.len() >= self.limits.max_streams
            || !host.admit(stream);
        if refuse {
            self.client.blocks.drop_block();
            frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::RefusedStream);
            self.actions.push(Action::Refused { stream });
            return self.calm.frame(now);
        }
        let (request_id, added) = match seen.request_id {
            Some(id) => (id, false),
            None => (host.new_request_id(), true),
        };
        let add: &[(&[u8], &[u8])] = if added {
            &[(REQUEST_ID, request_id.as_bytes())]
        } else {
            &[]
        };
        self.pass_block(Side::Client, stream, end_stream, block, add);
        self.streams.insert(
            stream,
            Stream {
                request_id: request_id.clone(),
                grpc: seen.grpc,
                // A timeout too large for the clock is as good as none.
                deadline: now
                    .checked_add(self.limits.timeout)
                    .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400)),
                ended: false,
                client_open: !end_stream,
                function_open: true,
                response_started: false,
                status: None,
                grpc_status: None,
            },
        );
        self.actions.push(Action::Started(Invocation {
            stream,
            request_id,
            method: seen.method,
            path: seen.path,
            grpc: seen.grpc,
            grpc_timeout: seen.grpc_timeout,
        }));
        Ok(())
    }
}

/// Frames that carry no request and cost the flood budget ([`super::calm`]): everything but
/// request headers, request data and flow control. An empty DATA frame that does not end
/// its stream carries nothing (a flood of them is a known attack, CVE-2019-9518).
fn costs_a_token(frame: &Frame<'_>) -> bool {
    match frame {
        Frame::Data {
            flow_len,
            end_stream,
            ..
        } => *flow_len == 0 && !end_stream,
        Frame::Headers { .. } | Frame::Continuation { .. } | Frame::WindowUpdate { .. } => false,
        Frame::Priority { .. }
        | Frame::Unknown { .. }
        | Frame::RstStream { .. }
        | Frame::Settings { .. }
        | Frame::PushPromise { .. }
        | Frame::Ping { .. }
        | Frame::GoAway { .. } => true,
    }
}
