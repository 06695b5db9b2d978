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

use fc_init::h2::block::{Blocks, REQUEST_ID};
use fc_init::h2::conn::Action;
use fc_init::h2::frame::{self, StreamId};
use fc_init::h2::hpack::Decoder;
use fc_init::http::request_id::valid_request_id;
use libfuzzer_sys::fuzz_target;

#[path = "shared/h2_drive.rs"]
mod h2_drive;
use h2_drive::{pieces, Driver};

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

fn conn(data: &[u8]) {
    let Some((mut d, data)) = Driver::start(data, h2_drive::limits()) else {
        return;
    };
    let mut running: HashMap<StreamId, String> = HashMap::new();
    d.run(data, |c| {
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
    });
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
