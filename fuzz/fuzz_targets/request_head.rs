//! A client's request head, as an event loop parses it: no panic on any bytes, and what is
//! accepted is forwarded as a head that parses again to the same request (fc-init and the
//! function must never disagree about where a message ends).
#![no_main]

use fc_init::http::write::write_request_head;
use fc_init::http::{parse_request_head, BodyFraming, Limits, RequestHead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut head = RequestHead::default();
    // Whole, then as if the bytes had trickled in (`scanned` from the first byte's value):
    // both must agree.
    let whole = parse_request_head(data, 0, &limits, &mut head);
    let scanned = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut again = RequestHead::default();
    let trickled = parse_request_head(data, scanned, &limits, &mut again);
    let Ok(Some(n)) = whole else {
        return;
    };
    assert!(n <= data.len());
    if let Ok(Some(m)) = trickled {
        assert_eq!(m, n, "same head, another length when parsed after a scan");
    }

    // Every accessor on the accepted head.
    let _ = (head.method(), head.target(), head.path(), head.query());
    let _ = (head.authority(), head.has_host(), head.keep_alive);
    for f in head.headers.iter() {
        let _ = (f.name, f.value, head.is_hop_by_hop(f.name));
    }

    // What the function would get: HTTP/1.1, the same method, target and framing. A
    // re-serialised head may be longer (LF line endings become CRLF; an absolute-form target's
    // authority becomes Host), so it is read with roomier limits.
    let mut out = Vec::new();
    let mut extra = Vec::new();
    if let Some(authority) = head.authority() {
        extra.push(("Host", authority));
    }
    write_request_head(&mut out, &head, &extra, head.framing);
    let roomy = Limits {
        max_header_bytes: 64 * 1024,
        max_headers: fc_init::http::MAX_HEADERS,
        require_host: false,
    };
    let mut fwd = RequestHead::default();
    match parse_request_head(&out, 0, &roomy, &mut fwd) {
        Ok(Some(len)) => assert_eq!(len, out.len(), "forwarded head ends early"),
        other => panic!(
            "forwarded head does not parse: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
    assert_eq!(fwd.method(), head.method());
    assert_eq!(fwd.target(), head.target());
    assert_eq!(fwd.version_minor, 1);
    let framing = |f: BodyFraming| match f {
        BodyFraming::None | BodyFraming::Length(0) => BodyFraming::None,
        f => f,
    };
    assert_eq!(framing(fwd.framing), framing(head.framing));
});
