//! The h2c connection core (`h2::conn::Conn`) between two fuzzed peers, as the proxy drives
//! it (src/proxy/h2c/): random bytes from the client and from the function, cut anywhere,
//! interleaved with the passing of time, the shutdown and either side closing — the
//! header-block rewriter included, since every block goes through it.
//!
//! Besides "no panic" it checks what fc-init sends, which no peer can check for it:
//! - both outputs are well-formed: the function's starts with the preface, then each is whole
//!   frames no larger than the 16 KiB fc-init lets peers send, so the bytes a peer gets
//!   never break its framing;
//! - every header block fc-init writes to the function decodes, at a receiver that has seen
//!   only what fc-init wrote (its HPACK state is never disturbed), and the block that opens a
//!   stream carries exactly one `x-fc-request-id`: the one its `Started` action names;
//! - every started invocation ends exactly once, `Close` comes once and last, and nothing is
//!   written after it.
//!
//! Input: a permits byte (which streams the host admits), then pieces: a length byte, a
//! selector byte, and bytes (the `conn` part of `h2_frames`' format).
#![no_main]

use std::collections::HashMap;

use fc_init::h2::block::REQUEST_ID;
use fc_init::h2::conn::{Action, Limits};
use fc_init::h2::frame::{self, flag, Kind, StreamId, PREFACE};
use fc_init::h2::hpack::Decoder;
use libfuzzer_sys::fuzz_target;

#[path = "shared/h2_drive.rs"]
mod h2_drive;
use h2_drive::Driver;

/// A peer reading what fc-init writes to it.
struct Reader {
    buf: Vec<u8>,
    /// The function's side starts with the preface.
    preface_left: bool,
    hpack: Decoder,
    /// A header block being put together: its stream and fragments.
    block: Option<(StreamId, Vec<u8>)>,
    /// Streams whose first block was seen.
    opened: HashMap<StreamId, ()>,
}

impl Reader {
    fn new(preface: bool) -> Reader {
        Reader {
            buf: Vec::new(),
            preface_left: preface,
            // fc-init lets no peer make it mirror a larger table (`Limits::max_table_size`),
            // and a receiver that allows more decodes the same bytes the same way.
            hpack: Decoder::new(64 * 1024),
            block: None,
            opened: HashMap::new(),
        }
    }

    /// Takes `bytes` written by fc-init; returns the request-id fields of each block that
    /// opened a stream (only the function's reader is asked).
    fn take(&mut self, bytes: &[u8], opened: &mut Vec<(StreamId, Vec<Vec<u8>>)>) {
        self.buf.extend_from_slice(bytes);
        if self.preface_left {
            if self.buf.len() < PREFACE.len() {
                assert!(PREFACE.starts_with(&self.buf));
                return;
            }
            assert_eq!(&self.buf[..PREFACE.len()], PREFACE, "the preface first");
            self.buf.drain(..PREFACE.len());
            self.preface_left = false;
        }
        let mut at = 0;
        loop {
            let raw = match frame::split(&self.buf[at..], 1 << 14) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => panic!("fc-init wrote a frame its peer must refuse: {e:?}"),
            };
            at += raw.bytes.len();
            let head = raw.head;
            match head.kind {
                Kind::Headers => {
                    assert!(self.block.is_none(), "HEADERS inside a header block");
                    // fc-init writes header blocks without padding or priority.
                    assert_eq!(head.flags & (flag::PADDED | flag::PRIORITY), 0);
                    self.block = Some((head.stream, raw.payload.to_vec()));
                }
                Kind::Continuation => {
                    let (s, b) = self.block.as_mut().expect("CONTINUATION after HEADERS");
                    assert_eq!(*s, head.stream);
                    b.extend_from_slice(raw.payload);
                }
                _ => assert!(self.block.is_none(), "a frame inside a header block"),
            }
            if matches!(head.kind, Kind::Headers | Kind::Continuation)
                && head.flags & flag::END_HEADERS != 0
            {
                let (stream, block) = self.block.take().expect("a block");
                let mut ids = Vec::new();
                self.hpack
                    .decode(&block, &mut |f| {
                        if f.name == REQUEST_ID {
                            ids.push(f.value.to_vec());
                        }
                    })
                    .expect("the peer decodes every block fc-init writes");
                if self.opened.insert(stream, ()).is_none() {
                    opened.push((stream, ids));
                }
            }
        }
        self.buf.drain(..at);
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        // Small enough that a block within `max_header_block` can decode past them (an
        // HPACK bomb), so the 431 and reset paths are reached.
        max_request_headers: 1024,
        max_response_headers: 2048,
        ..h2_drive::limits()
    };
    let Some((mut d, data)) = Driver::start(data, limits) else {
        return;
    };
    let mut client = Reader::new(false);
    let mut function = Reader::new(true);
    let mut running: HashMap<StreamId, String> = HashMap::new();
    let mut started: HashMap<StreamId, String> = HashMap::new();
    let mut closed = false;
    d.run(data, |c| {
        let (to_client, to_function) = (c.to_client().clone(), c.to_function().clone());
        c.to_client().clear();
        c.to_function().clear();
        if closed {
            assert!(to_client.is_empty() && to_function.is_empty(), "bytes after Close");
        }
        let actions = c.take_actions();
        for action in &actions {
            assert!(!closed, "an action after Close: {action:?}");
            match action {
                Action::Started(inv) => {
                    assert!(running
                        .insert(inv.stream, inv.request_id.clone())
                        .is_none());
                    started.insert(inv.stream, inv.request_id.clone());
                }
                Action::Ended {
                    stream, request_id, ..
                } => assert_eq!(running.remove(stream).as_ref(), Some(request_id)),
                Action::Close => closed = true,
                _ => {}
            }
        }
        assert_eq!(running.len(), c.in_flight());
        client.take(&to_client, &mut Vec::new());
        let mut opened = Vec::new();
        function.take(&to_function, &mut opened);
        for (stream, ids) in opened {
            let id = started
                .get(&stream)
                .unwrap_or_else(|| panic!("a block opened stream {stream} with no Started"));
            assert_eq!(ids, vec![id.as_bytes().to_vec()], "stream {stream}");
        }
    });
    if closed {
        assert!(running.is_empty(), "Close with invocations running");
    }
});
