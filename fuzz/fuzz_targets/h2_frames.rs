//! The h2 relay's readers on any bytes: the frame reader (`h2::frame::split` and `parse`),
//! the header-block rewriter (`h2::block::Blocks`, HPACK decoding and writing on), and the
//! whole connection core (`h2::conn::Conn`) fed by both peers.
//!
//! Besides "no panic" it checks: a block written on decodes, at a receiver that only ever
//! saw what fc-init wrote, to exactly the sender's fields (an invalid `x-fc-request-id` taken
//! out, fc-init's own appended), whichever blocks were dropped before; and every invocation
//! the core starts ends exactly once.
//!
//! Input: the first byte chooses the part; the rest is cut into pieces by length bytes.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fc_init::h2::block::{Blocks, REQUEST_ID};
use fc_init::h2::conn::{Action, Conn, Host, Limits};
use fc_init::h2::frame::{self, StreamId, PREFACE};
use fc_init::h2::hpack::Decoder;
use fc_init::http::request_id::valid_request_id;
use libfuzzer_sys::fuzz_target;

/// Cuts `data` into pieces: a length byte, then that many bytes (the last piece may be short).
fn pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = (len as usize).min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

fn frames(data: &[u8]) {
    let mut at = 0;
    while let Ok(Some(raw)) = frame::split(&data[at..], 1 << 14) {
        at += raw.bytes.len();
        if let Ok(frame::Frame::Settings { params, .. }) = frame::parse(raw.head, raw.payload) {
            for _ in frame::settings(params) {}
        }
    }
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn decode_all(d: &mut Decoder, block: &[u8]) -> Option<Fields> {
    let mut fields = Vec::new();
    d.decode(block, &mut |f| fields.push((f.name.to_vec(), f.value.to_vec())))
        .ok()
        .map(|_| fields)
}

fn blocks(data: &[u8]) {
    // The sender's table bound, as the receiver announced it.
    let allowed = 4096;
    let mut relay = Blocks::new(allowed);
    let mut mirror = Decoder::new(allowed);
    let mut receiver = Decoder::new(allowed);
    for (i, piece) in pieces(data).into_iter().enumerate() {
        let Some((&how, block)) = piece.split_first() else {
            continue;
        };
        let Ok(seen) = relay.decode(block) else {
            // A decoding error closes the connection: the same decoder agrees.
            assert!(decode_all(&mut mirror, block).is_none());
            return;
        };
        let sent = decode_all(&mut mirror, block).expect("the same decoder accepts it");
        if how & 1 == 0 {
            relay.drop_block();
            continue;
        }
        let id = format!("id-{i}");
        let add: Vec<(&[u8], &[u8])> = match seen.request_id {
            Some(_) => vec![],
            None => vec![(REQUEST_ID, id.as_bytes())],
        };
        let mut out = Vec::new();
        relay.forward(block, &add, &mut out);
        let got = decode_all(&mut receiver, &out).expect("the receiver decodes what fc-init wrote");
        let mut kept_id = false;
        let mut expected: Fields = sent
            .into_iter()
            .filter(|(n, v)| {
                if n.as_slice() != REQUEST_ID {
                    return true;
                }
                let keep = !kept_id && valid_request_id(v);
                kept_id |= keep;
                keep
            })
            .collect();
        expected.extend(add.iter().map(|(n, v)| (n.to_vec(), v.to_vec())));
        assert_eq!(got, expected);
    }
}

struct FuzzHost {
    permits: u8,
    next: u32,
}

impl Host for FuzzHost {
    fn admit(&mut self, _stream: StreamId) -> bool {
        self.permits = self.permits.rotate_left(1);
        self.permits & 1 == 1
    }

    fn new_request_id(&mut self) -> String {
        self.next += 1;
        format!("id-{}", self.next)
    }
}

fn conn(data: &[u8]) {
    let Some((&permits, data)) = data.split_first() else {
        return;
    };
    let now0 = Instant::now();
    let mut now = now0;
    let mut c = Conn::new(Limits {
        timeout: Duration::from_secs(10),
        max_header_block: 4096,
        max_streams: 16,
        ..Limits::default()
    });
    let mut host = FuzzHost { permits, next: 0 };
    let mut hello = PREFACE.to_vec();
    frame::write_settings(&mut hello, &[]);
    let (mut from_client, mut from_function) = (Vec::new(), Vec::new());
    c.on_client_bytes(&hello, now, &mut host);
    let mut hello = Vec::new();
    frame::write_settings(&mut hello, &[]);
    c.on_function_bytes(&hello);
    let mut running: HashMap<StreamId, String> = HashMap::new();
    for piece in pieces(data) {
        let Some((&what, bytes)) = piece.split_first() else {
            continue;
        };
        match what % 8 {
            0..=3 => {
                from_client.extend_from_slice(bytes);
                let n = c.on_client_bytes(&from_client, now, &mut host);
                from_client.drain(..n);
            }
            4..=6 => {
                from_function.extend_from_slice(bytes);
                let n = c.on_function_bytes(&from_function);
                from_function.drain(..n);
            }
            _ => match bytes.first().copied().unwrap_or(0) % 4 {
                0 => c.shutdown(now + Duration::from_secs(1)),
                1 => c.on_function_closed(),
                2 => c.on_client_closed(),
                _ => {
                    now += Duration::from_secs(u64::from(what / 8));
                    c.on_tick(now);
                }
            },
        }
        c.to_client().clear();
        c.to_function().clear();
        for action in c.take_actions() {
            match action {
                Action::Started(inv) => {
                    assert!(running.insert(inv.stream, inv.request_id).is_none());
                }
                Action::Ended {
                    stream, request_id, ..
                } => assert_eq!(running.remove(&stream), Some(request_id)),
                _ => {}
            }
        }
        assert_eq!(running.len(), c.in_flight());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&part, rest)) = data.split_first() else {
        return;
    };
    match part % 3 {
        0 => frames(rest),
        1 => blocks(rest),
        _ => conn(rest),
    }
});
