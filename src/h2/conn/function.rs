//! Frames and header blocks from the function: responses and trailers relayed to the client.

use super::inbound::Assembly;
use super::{Conn, Outcome, Side};
use crate::h2::frame::{H2Error, Raw, StreamId};

impl Conn {
    pub(super) fn function_frame(&mut self, raw: Raw<'_>) -> Result<(), H2Error> {
        let frame = self.inbound_frame(Side::Function, raw)?;
        match self.frame_from(Side::Function, frame, raw)? {
            Some(block) => self.function_block(block),
            None => Ok(()),
        }
    }

    /// The function's GOAWAY: its stream ids are the client's, so the GOAWAY (passed on)
    /// means the same to the client, which will retry the streams above `last_stream`.
    pub(super) fn not_processed(&mut self, last_stream: StreamId) {
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

    /// A complete header block from the function: response headers, or trailers.
    fn function_block(&mut self, a: Assembly) -> Result<(), H2Error> {
        let seen = self.decode_block(Side::Function, &a.block)?;
        let stream = a.stream;
        if seen.too_large {
            return self.block_too_large(Side::Function, stream);
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
        self.pass_block(Side::Function, stream, a.end_stream, &a.block, &[]);
        if a.end_stream {
            self.end_half(Side::Function, stream);
        }
        Ok(())
    }
}
