//! Frames and header blocks from the function: responses and trailers relayed to the client.

use super::inbound::{continuation_rule, credit, Assembly};
use super::{Conn, Outcome, Side};
use crate::h2::frame::{self, ErrorCode, Frame, H2Error, Kind, Raw, StreamId};

impl Conn {
    pub(super) fn function_frame(&mut self, raw: Raw<'_>) -> Result<(), H2Error> {
        if !self.function.greeted {
            // RFC 9113 §3.4: the server's preface is a SETTINGS frame.
            if raw.head.kind != Kind::Settings || raw.head.has(frame::flag::ACK) {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "the function's first frame is not SETTINGS",
                ));
            }
            self.function.greeted = true;
        }
        let frame = continuation_rule(&self.function, raw)?;
        match frame {
            Frame::Data {
                stream,
                end_stream,
                flow_len,
                ..
            } => match self.streams.get_mut(&stream) {
                Some(s) if s.function_open => {
                    self.to_client.extend_from_slice(raw.bytes);
                    if end_stream {
                        s.function_open = false;
                        self.answered(stream);
                    }
                }
                Some(_) => {
                    credit(&mut self.to_function, flow_len);
                    return Err(H2Error::stream(
                        stream,
                        ErrorCode::StreamClosed,
                        "DATA after the function ended the stream",
                    ));
                }
                None if stream > self.last_stream || stream % 2 == 0 => {
                    return Err(H2Error::conn(ErrorCode::Protocol, "DATA on an idle stream"))
                }
                None => credit(&mut self.to_function, flow_len),
            },
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
            } => {
                if stream > self.last_stream || stream % 2 == 0 {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "HEADERS from the function on an idle stream",
                    ));
                }
                self.function.assembly = Some(Assembly {
                    stream,
                    end_stream,
                    block: Vec::new(),
                    used: 0,
                });
                self.assemble(Side::Function, raw, fragment)?;
                if end_headers {
                    self.function_block()?;
                }
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => {
                self.assemble(Side::Function, raw, fragment)?;
                if end_headers {
                    self.function_block()?;
                }
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {}
            Frame::RstStream { stream, code } => {
                self.reset_from(Side::Function, stream, code, raw.bytes)?
            }
            Frame::Settings { ack, params } => {
                self.settings_from(Side::Function, ack, params, raw.bytes)?
            }
            Frame::PushPromise { .. } => {
                // fc-init announces SETTINGS_ENABLE_PUSH = 0 for every client.
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "PUSH_PROMISE with push disabled",
                ));
            }
            Frame::Ping { .. } => self.to_client.extend_from_slice(raw.bytes),
            Frame::GoAway { last_stream, .. } => {
                // The function's stream ids are the client's: the GOAWAY means the same to
                // the client, which will retry the streams above `last_stream`.
                self.peer_goaway = true;
                self.to_client.extend_from_slice(raw.bytes);
                let unprocessed: Vec<StreamId> = self
                    .streams
                    .range(last_stream + 1..)
                    .map(|(&id, _)| id)
                    .collect();
                for id in unprocessed {
                    if let Some(s) = self.streams.remove(&id) {
                        if !s.ended {
                            self.ended(id, s.request_id, Outcome::NotProcessed);
                        }
                    }
                }
            }
            Frame::WindowUpdate { stream, .. } => {
                if stream == 0 || self.streams.contains_key(&stream) {
                    self.to_client.extend_from_slice(raw.bytes);
                } else if stream > self.last_stream {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
            }
        }
        Ok(())
    }

    /// A complete header block from the function: response headers, or trailers.
    pub(super) fn function_block(&mut self) -> Result<(), H2Error> {
        let Some(Assembly {
            stream,
            end_stream,
            block,
            ..
        }) = self.function.assembly.take()
        else {
            return Ok(());
        };
        let seen = self.function.blocks.decode(&block).map_err(|_| {
            H2Error::conn(
                ErrorCode::Compression,
                "undecodable header block from the function",
            )
        })?;
        if seen.too_large {
            // Over `max_response_headers`: not relayed (fc-init would hold it whole).
            self.function.blocks.drop_block();
            if !self.streams.contains_key(&stream) {
                return Ok(());
            }
            return Err(H2Error::stream(
                stream,
                ErrorCode::EnhanceYourCalm,
                "response headers larger than max_response_headers",
            ));
        }
        let Some(s) = self.streams.get_mut(&stream).filter(|s| s.function_open) else {
            // A stream fc-init or the client has reset: the block was in flight. (A block on
            // a stream the function itself ended is its error, and is dropped all the same.)
            self.function.blocks.drop_block();
            return Ok(());
        };
        if let Some(status) = seen.status {
            if status >= 200 {
                s.response_started = true;
                s.status = Some(status);
            }
        }
        if seen.grpc_status.is_some() {
            s.grpc_status = seen.grpc_status;
        }
        self.out_block.clear();
        self.function
            .blocks
            .forward(&block, &[], &mut self.out_block);
        frame::write_header_block(&mut self.to_client, stream, end_stream, &self.out_block);
        if end_stream {
            s.function_open = false;
            self.answered(stream);
        }
        Ok(())
    }
}
