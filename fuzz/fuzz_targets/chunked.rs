//! The chunked body decoder: no panic on any bytes, the same answer however the bytes are cut
//! into reads (it resumes wherever they stop), and a decoded body re-encoded and decoded again
//! is the same body.
#![no_main]

use fc_init::http::codec::{Decoder, Encoder};
use fc_init::http::{BodyFraming, HttpError};
use libfuzzer_sys::fuzz_target;

const MAX_BODY: u64 = 64 * 1024;

/// Decodes `input` handed over `piece` bytes at a time with at most `max_data` body bytes per
/// step: the body and how many input bytes it took, or the error's status.
fn decode(input: &[u8], piece: usize, max_data: usize) -> Result<(Vec<u8>, usize), Option<u16>> {
    let status = |e: HttpError| e.status();
    let mut d = Decoder::new(BodyFraming::Chunked, MAX_BODY).map_err(status)?;
    let (mut body, mut at, mut have) = (Vec::new(), 0, 0);
    while !d.is_done() {
        let step = d.step(&input[at..have], max_data).map_err(status)?;
        assert!(step.consumed <= have - at);
        assert!(step.data.end <= step.consumed);
        body.extend_from_slice(&input[at..have][step.data.clone()]);
        at += step.consumed;
        if step.is_stalled() {
            if have == input.len() {
                d.at_eof().map_err(status)?;
                break;
            }
            have = (have + piece).min(input.len());
        }
    }
    assert!(body.len() as u64 <= MAX_BODY);
    assert_eq!(d.decoded(), body.len() as u64);
    Ok((body, at))
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, input.len().max(1), usize::MAX);
    let piece = usize::from(cut & 0x0f) + 1;
    let max_data = usize::from(cut >> 4) + 1;
    let pieces = decode(input, piece, max_data);
    assert_eq!(
        whole, pieces,
        "pieces of {piece}, {max_data} data bytes a step"
    );

    if let Ok((body, _)) = whole {
        let mut framed = Vec::new();
        Encoder::Chunked.data(&body, &mut framed);
        Encoder::Chunked.finish(&mut framed);
        let (again, used) = decode(&framed, framed.len(), usize::MAX).expect("own encoding");
        assert_eq!(again, body);
        assert_eq!(used, framed.len());
    }
});
