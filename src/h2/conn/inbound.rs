//! What fc-init reads from one peer: header blocks put together from HEADERS and CONTINUATION, the
//! CONTINUATION rule, SETTINGS clamped, dropped DATA credited back.

use super::{Conn, Outcome, Side};
use crate::h2::block::Blocks;
use crate::h2::frame::{
    self, setting, ErrorCode, Frame, H2Error, Kind, Raw, StreamId, DEFAULT_MAX_FRAME_SIZE,
    HEADER_LEN,
};
use crate::h2::hpack::DEFAULT_TABLE_SIZE;

/// A header block being put together from HEADERS and CONTINUATION frames.
#[derive(Debug)]
pub(super) struct Assembly {
    pub(super) stream: StreamId,
    pub(super) end_stream: bool,
    pub(super) block: Vec<u8>,
    /// Bytes counted against `max_header_block` (frame headers too: a flood of empty
    /// CONTINUATION frames counts).
    pub(super) used: usize,
}

/// What fc-init reads from one peer.
#[derive(Debug)]
pub(super) struct Inbound {
    /// The peer's first SETTINGS has arrived (RFC 9113 §3.4: it must be its first frame;
    /// the client's comes after the preface).
    pub(super) greeted: bool,
    /// Frames accepted from this peer: the most the other peer has announced (clamped).
    pub(super) max_frame: u32,
    pub(super) blocks: Blocks,
    pub(super) assembly: Option<Assembly>,
}

impl Inbound {
    pub(super) fn new() -> Inbound {
        Inbound {
            greeted: false,
            max_frame: DEFAULT_MAX_FRAME_SIZE,
            blocks: Blocks::new(DEFAULT_TABLE_SIZE),
            assembly: None,
        }
    }
}

impl Conn {
    /// What fc-init reads from `side`.
    pub(super) fn inbound(&mut self, side: Side) -> &mut Inbound {
        side.pick(&mut self.client, &mut self.function)
    }

    /// Adds a HEADERS or CONTINUATION fragment to the block being assembled; returns the
    /// block once `end_headers` completes it.
    pub(super) fn assemble(
        &mut self,
        side: Side,
        raw: Raw<'_>,
        fragment: &[u8],
        end_headers: bool,
    ) -> Result<Option<Assembly>, H2Error> {
        let max = self.limits.max_header_block;
        let inbound = self.inbound(side);
        let a = inbound.assembly.as_mut().ok_or(H2Error::conn(
            ErrorCode::Protocol,
            "CONTINUATION without HEADERS",
        ))?;
        a.used += HEADER_LEN + raw.payload.len();
        if a.used > max {
            return Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                "header block too large",
            ));
        }
        a.block.extend_from_slice(fragment);
        Ok(if end_headers {
            inbound.assembly.take()
        } else {
            None
        })
    }

    /// The buffer of what goes to `side`.
    pub(super) fn toward(&mut self, side: Side) -> &mut Vec<u8> {
        side.pick(&mut self.to_client, &mut self.to_function)
    }

    /// The buffer of what goes to the peer other than `from`.
    pub(super) fn toward_other(&mut self, from: Side) -> &mut Vec<u8> {
        from.pick(&mut self.to_function, &mut self.to_client)
    }

    /// RST_STREAM from `from`: passed on, and the stream's invocation ends as reset by that
    /// side; one on a stream never opened is a connection error (RFC 9113 §6.4).
    pub(super) fn reset_from(
        &mut self,
        from: Side,
        stream: StreamId,
        code: ErrorCode,
        bytes: &[u8],
    ) -> Result<(), H2Error> {
        match self.streams.remove(&stream) {
            Some(s) => {
                self.toward_other(from).extend_from_slice(bytes);
                if !s.ended {
                    self.ended(stream, s.request_id, Outcome::Reset { by: from, code });
                    if from == Side::Client {
                        // Rapid Reset: the function started work the client throws away.
                        if let Some(now) = self.clock {
                            self.calm.reset(now)?;
                        }
                    }
                }
                Ok(())
            }
            None if stream > self.last_stream => Err(H2Error::conn(
                ErrorCode::Protocol,
                "RST_STREAM on an idle stream",
            )),
            None => Ok(()),
        }
    }

    /// SETTINGS from `from`: an acknowledgement passes as it came; parameters go on clamped.
    pub(super) fn settings_from(
        &mut self,
        from: Side,
        ack: bool,
        params: &[u8],
        bytes: &[u8],
    ) -> Result<(), H2Error> {
        if ack {
            self.toward_other(from).extend_from_slice(bytes);
        } else {
            let params = self.clamp_settings(from, params)?;
            frame::write_settings(self.toward_other(from), &params);
        }
        Ok(())
    }

    /// SETTINGS on their way from `from`: the frame size and table size fc-init must follow
    /// are lowered to its limits, and push is turned off (fc-init relays no pushed streams).
    pub(super) fn clamp_settings(
        &mut self,
        from: Side,
        params: &[u8],
    ) -> Result<Vec<(u16, u32)>, H2Error> {
        let mut out = Vec::new();
        let mut push_seen = false;
        for (id, value) in frame::settings(params) {
            let value = match id {
                setting::HEADER_TABLE_SIZE => {
                    let v = value.min(self.limits.max_table_size);
                    // The announcing peer decodes what the other one encodes.
                    match from {
                        Side::Client => self.function.blocks.allow(v as usize),
                        Side::Function => self.client.blocks.allow(v as usize),
                    }
                    v
                }
                setting::MAX_FRAME_SIZE => {
                    let v = value.min(self.limits.max_frame_size);
                    let other = match from {
                        Side::Client => &mut self.function,
                        Side::Function => &mut self.client,
                    };
                    other.max_frame = other.max_frame.max(v);
                    v
                }
                setting::ENABLE_PUSH => {
                    if from == Side::Function && value != 0 {
                        // RFC 9113 §6.5.2: a server must not announce push.
                        return Err(H2Error::conn(
                            ErrorCode::Protocol,
                            "SETTINGS_ENABLE_PUSH from the function",
                        ));
                    }
                    push_seen = true;
                    0
                }
                _ => value,
            };
            out.push((id, value));
        }
        if from == Side::Client && !push_seen {
            out.push((setting::ENABLE_PUSH, 0));
        }
        Ok(out)
    }
}

/// RFC 9113 §6.2, §6.10: while a header block is open, the only frame allowed is its
/// CONTINUATION; a CONTINUATION is allowed only then.
pub(super) fn continuation_rule<'a>(inbound: &Inbound, raw: Raw<'a>) -> Result<Frame<'a>, H2Error> {
    let open = inbound.assembly.as_ref().map(|a| a.stream);
    match (open, raw.head.kind) {
        (Some(s), Kind::Continuation) if s == raw.head.stream => {}
        (Some(_), _) => {
            return Err(H2Error::conn(
                ErrorCode::Protocol,
                "frame inside a header block",
            ));
        }
        (None, Kind::Continuation) => {
            return Err(H2Error::conn(
                ErrorCode::Protocol,
                "CONTINUATION without HEADERS",
            ));
        }
        (None, _) => {}
    }
    frame::parse(raw.head, raw.payload)
}

/// Gives back to a sender the connection window its dropped DATA took.
pub(super) fn credit(out: &mut Vec<u8>, flow_len: u32) {
    if flow_len > 0 {
        frame::write_window_update(out, 0, flow_len);
    }
}
