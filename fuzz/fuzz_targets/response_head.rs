//! The function's response head, as an event loop parses it (interim 1xx skipped): no panic
//! on any bytes, and an accepted head is forwarded as one that parses again with the same
//! status and framing.
#![no_main]

use fc_init::http::write::write_response_head;
use fc_init::http::{parse_response_head, BodyFraming, Limits, ResponseHead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the request's kind: HEAD or not, upgrade asked for or not.
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let (head_request, upgrade) = (mode & 1 == 1, mode & 2 == 2);
    // Room for the fields forwarding adds (`Connection: close`): the re-parse below cannot
    // allow more than MAX_HEADERS fields either.
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        max_headers: fc_init::http::MAX_HEADERS - 8,
        require_host: false,
    };
    let mut head = ResponseHead::default();
    let Ok(Some(n)) = parse_response_head(data, &limits, head_request, upgrade, &mut head) else {
        return;
    };
    assert!(n <= data.len());
    assert!((100..=999).contains(&head.status));
    let _ = (head.reason(), head.keep_alive);
    for f in head.headers.iter() {
        let _ = (f.name, f.value, head.is_hop_by_hop(f.name));
    }

    // Forwarded to the client as the proxy does: a close-delimited body gets
    // `Connection: close` and no length; the others keep their framing.
    let mut out = Vec::new();
    let extra: &[(&str, &str)] = match head.framing {
        BodyFraming::UntilClose => &[("Connection", "close")],
        _ => &[],
    };
    write_response_head(&mut out, &head, extra, head.framing);
    let roomy = Limits {
        max_header_bytes: 64 * 1024,
        max_headers: fc_init::http::MAX_HEADERS,
        require_host: false,
    };
    let mut fwd = ResponseHead::default();
    match parse_response_head(&out, &roomy, head_request, true, &mut fwd) {
        Ok(Some(len)) => assert_eq!(len, out.len(), "forwarded head ends early"),
        other => panic!(
            "forwarded head does not parse: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
    assert_eq!(fwd.status, head.status);
    assert_eq!(fwd.framing, head.framing);
});
