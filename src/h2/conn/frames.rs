//! Frames from either peer, by the rules the client and the function share: the first
//! SETTINGS, DATA, header blocks put together, RST_STREAM, SETTINGS, PING, GOAWAY and
//! WINDOW_UPDATE, each passed on to the other peer; where the sides differ, it is said where it
//! happens. A complete header block goes back to its side's own rules ([`super::client`]: a
//! request or trailers; [`super::function`]: a response or trailers).

use super::inbound::{continuation_rule, credit, Assembly};
use super::{Conn, Side};
use crate::h2::block::Seen;
use crate::h2::frame::{self, ErrorCode, Frame, H2Error, Kind, Raw, StreamId};

impl Conn {
    /// `raw` from `side` as a frame, once the rules on a peer's first frame and on open header
    /// blocks allow it.
    pub(super) fn inbound_frame<'a>(
        &mut self,
        side: Side,
        raw: Raw<'a>,
    ) -> Result<Frame<'a>, H2Error> {
        let inbound = self.inbound(side);
        if !inbound.greeted {
            // RFC 9113 §3.4: each side's preface is (or, the client's, ends with) SETTINGS.
            if raw.head.kind != Kind::Settings || raw.head.has(frame::flag::ACK) {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    side.pick(
                        "the client's first frame is not SETTINGS",
                        "the function's first frame is not SETTINGS",
                    ),
                ));
            }
            inbound.greeted = true;
        }
        continuation_rule(inbound, raw)
    }

    /// A frame from `side` (`raw` as it came): passed on to the other peer; returns the header
    /// block that END_HEADERS completed, for the side's own rules.
    pub(super) fn frame_from(
        &mut self,
        side: Side,
        frame: Frame<'_>,
        raw: Raw<'_>,
    ) -> Result<Option<Assembly>, H2Error> {
        match frame {
            Frame::Data {
                stream,
                end_stream,
                flow_len,
                ..
            } => self.data_from(side, stream, end_stream, flow_len, raw.bytes)?,
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
            } => {
                // The client's HEADERS on a stream it never opened opens it; the function
                // answers on the client's streams only.
                if side == Side::Function && self.never_opened(side, stream) {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "HEADERS from the function on an idle stream",
                    ));
                }
                self.inbound(side).assembly = Some(Assembly {
                    stream,
                    end_stream,
                    block: Vec::new(),
                    used: 0,
                });
                return self.assemble(side, raw, fragment, end_headers);
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => return self.assemble(side, raw, fragment, end_headers),
            Frame::Priority { .. } | Frame::Unknown { .. } => {
                // PRIORITY is deprecated (RFC 9113 §5.3.2) and extension frames are ignored
                // (§5.5): neither goes on.
            }
            Frame::RstStream { stream, code } => self.reset_from(side, stream, code, raw.bytes)?,
            Frame::Settings { ack, params } => self.settings_from(side, ack, params, raw.bytes)?,
            Frame::PushPromise { .. } => {
                // fc-init announces SETTINGS_ENABLE_PUSH = 0 for every client, and a client
                // never pushes.
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    side.pick(
                        "PUSH_PROMISE from a client",
                        "PUSH_PROMISE with push disabled",
                    ),
                ));
            }
            Frame::Ping { .. } => self.toward_other(side).extend_from_slice(raw.bytes),
            Frame::GoAway { last_stream, .. } => {
                self.peer_goaway = true;
                self.toward_other(side).extend_from_slice(raw.bytes);
                if side == Side::Function {
                    self.not_processed(last_stream);
                }
            }
            Frame::WindowUpdate { stream, .. } => {
                if stream == 0 || self.streams.contains_key(&stream) {
                    self.toward_other(side).extend_from_slice(raw.bytes);
                } else if stream > self.last_stream {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
            }
        }
        Ok(None)
    }

    /// DATA from `side`: passed on while its half of the stream is open.
    fn data_from(
        &mut self,
        side: Side,
        stream: StreamId,
        end_stream: bool,
        flow_len: u32,
        bytes: &[u8],
    ) -> Result<(), H2Error> {
        match self.streams.get(&stream).map(|s| s.open(side)) {
            Some(true) => {
                self.toward_other(side).extend_from_slice(bytes);
                if end_stream {
                    self.end_half(side, stream);
                }
            }
            Some(false) => {
                // Not passed on, but it took the sender's connection window.
                credit(self.toward(side), flow_len);
                return Err(H2Error::stream(
                    stream,
                    ErrorCode::StreamClosed,
                    side.pick(
                        "DATA after the client ended the stream",
                        "DATA after the function ended the stream",
                    ),
                ));
            }
            None if self.never_opened(side, stream) => {
                return Err(H2Error::conn(ErrorCode::Protocol, "DATA on an idle stream"))
            }
            // A stream fc-init refused or reset: the bytes were in flight. They count against
            // the sender's connection window, which the other peer will never replenish for
            // them: fc-init does (RFC 9113 §6.9).
            None => credit(self.toward(side), flow_len),
        }
        Ok(())
    }

    /// `stream` is idle as `side` sees it: the client has not opened it (and the function,
    /// which pushes nothing, sends only on the client's odd streams).
    fn never_opened(&self, side: Side, stream: StreamId) -> bool {
        stream > self.last_stream || side == Side::Function && stream.is_multiple_of(2)
    }

    /// A complete header block from `side`, decoded (an HPACK error is the connection's).
    pub(super) fn decode_block(&mut self, side: Side, block: &[u8]) -> Result<Seen, H2Error> {
        self.inbound(side).blocks.decode(block).map_err(|_| {
            H2Error::conn(
                ErrorCode::Compression,
                side.pick(
                    "undecodable header block from the client",
                    "undecodable header block from the function",
                ),
            )
        })
    }

    /// Passes a header block from `side` on to the other peer, re-encoded, with `add`.
    pub(super) fn pass_block(
        &mut self,
        side: Side,
        stream: StreamId,
        end_stream: bool,
        block: &[u8],
        add: &[(&[u8], &[u8])],
    ) {
        let (inbound, out) = match side {
            Side::Client => (&mut self.client, &mut self.to_function),
            Side::Function => (&mut self.function, &mut self.to_client),
        };
        self.out_block.clear();
        inbound.blocks.forward(block, add, &mut self.out_block);
        frame::write_header_block(out, stream, end_stream, &self.out_block);
    }

    /// Trailers or a response from `side` decoded to more than its limit
    /// (`max_request_headers`, `max_response_headers`): not passed on (fc-init would hold it
    /// whole); the stream, if fc-init still has it, is reset.
    pub(super) fn block_too_large(&mut self, side: Side, stream: StreamId) -> Result<(), H2Error> {
        self.inbound(side).blocks.drop_block();
        if !self.streams.contains_key(&stream) {
            return Ok(());
        }
        Err(H2Error::stream(
            stream,
            ErrorCode::EnhanceYourCalm,
            side.pick(
                "trailers larger than max_request_headers",
                "response headers larger than max_response_headers",
            ),
        ))
    }
}
