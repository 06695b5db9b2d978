//! Protocol errors from either peer, and garbage: the RFC 9113 answers, never a panic.

use super::*;

/// A connection error from the client's bytes: GOAWAY with the RFC's code to the client,
/// the function connection closed behind it, the streams ended.
fn client_connection_error(bytes: &[u8], code: ErrorCode) {
    let mut sim = Sim::connected();
    sim.client(&http_request(1, false));
    sim.take();
    let (to_f, to_c) = sim.client(bytes);
    assert!(
        matches!(to_c.last(), Some(Ev::GoAway { last: 1, code: c }) if *c == code),
        "{bytes:02x?}: {to_c:?}"
    );
    assert_eq!(
        to_f.last(),
        Some(&Ev::GoAway {
            last: 0,
            code: ErrorCode::NoError
        })
    );
    let a = sim.take();
    assert!(
        matches!(&a[0], Action::Error { side: Side::Client, error: frame::H2Error::Connection { code: c, .. } } if *c == code),
        "{a:?}"
    );
    assert_eq!(
        ended(&a),
        [(
            1,
            Outcome::Reset {
                by: Side::Client,
                code
            }
        )]
    );
    assert_eq!(a.last(), Some(&Action::Close));
    assert!(sim.conn.is_closed());
}

#[test]
fn malformed_client_frames_get_the_connection_errors_of_rfc_9113() {
    let raw = raw_frame;
    use ErrorCode::*;
    // A frame over the maximum frame size.
    client_connection_error(&raw(0, 0, 1, &[0; 16_385]), FrameSize);
    // CONTINUATION with no header block open.
    client_connection_error(&raw(9, flag::END_HEADERS, 1, b"\x82"), Protocol);
    // Another frame inside a header block.
    let mut inside = raw(1, 0, 3, b"\x82");
    inside.extend(raw(6, 0, 0, b"12345678"));
    client_connection_error(&inside, Protocol);
    // A CONTINUATION for another stream.
    let mut other = raw(1, 0, 3, b"\x82");
    other.extend(raw(9, flag::END_HEADERS, 5, b"\x84"));
    client_connection_error(&other, Protocol);
    // HPACK that does not decode.
    client_connection_error(&raw(1, flag::END_HEADERS, 3, b"\xbf\x7f"), Compression);
    // An even stream id.
    client_connection_error(&raw(1, flag::END_HEADERS, 4, b"\x82"), Protocol);
    // DATA on a stream never opened.
    client_connection_error(&raw(0, 0, 9, b"x"), Protocol);
    // A PUSH_PROMISE from a client.
    client_connection_error(&raw(5, flag::END_HEADERS, 1, b"\0\0\0\x02"), Protocol);
    // SETTINGS of a wrong size; a bad SETTINGS value.
    client_connection_error(&raw(4, 0, 0, b"\0\x01\0"), FrameSize);
    client_connection_error(&raw(4, 0, 0, b"\0\x02\0\0\0\x07"), Protocol);
    // WINDOW_UPDATE of 0 on the connection.
    client_connection_error(&raw(8, 0, 0, b"\0\0\0\0"), Protocol);
    // A header block over the limit, in many small CONTINUATION frames (the flood).
    let mut flood = raw(1, 0, 3, b"");
    for _ in 0..8000 {
        flood.extend(raw(9, 0, 3, b""));
    }
    client_connection_error(&flood, EnhanceYourCalm);
}

#[test]
fn stream_errors_reset_that_stream_on_both_sides() {
    let mut sim = Sim::connected();
    sim.client(&http_request(1, false));
    sim.client(&http_request(3, false));
    let mut wu = Vec::new();
    Head {
        len: 4,
        kind: Kind::WindowUpdate,
        flags: 0,
        stream: 1,
    }
    .write(&mut wu);
    wu.extend_from_slice(&[0; 4]);
    let (to_f, to_c) = sim.client(&wu);
    assert_eq!(
        to_c,
        [Ev::Rst {
            stream: 1,
            code: ErrorCode::Protocol
        }]
    );
    assert_eq!(
        to_f,
        [Ev::Rst {
            stream: 1,
            code: ErrorCode::Cancel
        }]
    );
    // DATA after the client ended its side: STREAM_CLOSED.
    let mut end = Vec::new();
    data(&mut end, 3, true, b"a");
    data(&mut end, 3, false, b"b");
    let (to_f, to_c) = sim.client(&end);
    assert!(matches!(
        to_f[0],
        Ev::Data {
            stream: 3,
            end_stream: true,
            ..
        }
    ));
    assert_eq!(
        to_f[1],
        Ev::Rst {
            stream: 3,
            code: ErrorCode::Cancel
        }
    );
    // The refused byte took the client's connection window: given back.
    assert_eq!(
        to_c,
        [
            Ev::WindowUpdate {
                stream: 0,
                increment: 1
            },
            Ev::Rst {
                stream: 3,
                code: ErrorCode::StreamClosed
            }
        ]
    );
    assert!(!sim.conn.is_closed());
    let a = sim.take();
    sim.assert_balanced(&a);
}

#[test]
fn a_function_breaking_the_protocol_is_cut_off_and_the_client_answered() {
    // Its first frame must be SETTINGS.
    let mut sim = Sim::with_timeout();
    let mut hello = PREFACE.to_vec();
    frame::write_settings(&mut hello, &[]);
    hello.extend(http_request(1, true));
    sim.client(&hello);
    let mut ping = Vec::new();
    Head {
        len: 8,
        kind: Kind::Ping,
        flags: 0,
        stream: 0,
    }
    .write(&mut ping);
    ping.extend_from_slice(&[0; 8]);
    let (to_f, to_c) = sim.function(&ping);
    assert!(matches!(
        to_f.last(),
        Some(Ev::GoAway {
            code: ErrorCode::Protocol,
            ..
        })
    ));
    assert_eq!(field(&to_c[0], ":status"), Some("502"));
    // A push, which fc-init turned off.
    let mut sim = Sim::connected();
    sim.client(&http_request(1, true));
    let mut push = Vec::new();
    Head {
        len: 5,
        kind: Kind::PushPromise,
        flags: flag::END_HEADERS,
        stream: 1,
    }
    .write(&mut push);
    push.extend_from_slice(&[0, 0, 0, 2, 0x82]);
    let (to_f, _) = sim.function(&push);
    assert!(matches!(
        to_f.last(),
        Some(Ev::GoAway {
            code: ErrorCode::Protocol,
            ..
        })
    ));
    assert!(sim.conn.is_closed());
}

#[test]
fn a_client_whose_first_frame_is_not_settings_is_refused() {
    let mut sim = Sim::with_timeout();
    let mut hello = PREFACE.to_vec();
    hello.extend(http_request(1, true));
    let (to_f, to_c) = sim.client(&hello);
    assert!(matches!(
        to_c.last(),
        Some(Ev::GoAway {
            code: ErrorCode::Protocol,
            ..
        })
    ));
    assert_eq!(
        to_f,
        [Ev::GoAway {
            last: 0,
            code: ErrorCode::NoError
        }]
    );
    assert_eq!(sim.take().last(), Some(&Action::Close));
}

#[test]
fn not_the_preface_is_refused() {
    let mut sim = Sim::with_timeout();
    let n = sim
        .conn
        .on_client_bytes(b"GET / HTTP/1.1\r\n\r\n", sim.now, &mut sim.host);
    assert_eq!(n, 18);
    assert!(sim.conn.is_closed());
}

#[test]
fn the_functions_goaway_ends_unprocessed_streams_for_the_client_to_retry() {
    let mut sim = Sim::connected();
    sim.client(&http_request(1, true));
    sim.client(&http_request(3, true));
    let mut goaway = Vec::new();
    frame::write_goaway(&mut goaway, 1, ErrorCode::NoError, b"");
    let (_, to_c) = sim.function(&goaway);
    assert_eq!(
        to_c,
        [Ev::GoAway {
            last: 1,
            code: ErrorCode::NoError
        }]
    );
    let a = sim.take();
    assert_eq!(ended(&a), [(3, Outcome::NotProcessed)]);
    let mut resp = Vec::new();
    headers(&mut resp, 1, true, &[(":status", "204")], false);
    sim.function(&resp);
    let a = sim.take();
    assert_eq!(
        ended(&a),
        [(
            1,
            Outcome::Answered {
                status: Some(204),
                grpc_status: None
            }
        )]
    );
    assert_eq!(a.last(), Some(&Action::Close));
}

#[test]
fn garbage_never_panics() {
    // A cheap stand-in for the fuzz target inside the unit tests: pseudo-random bytes after
    // a valid start, on both sides.
    let mut seed = 0x1234_5678_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut sim = Sim::connected();
        sim.client(&grpc_request(1));
        let len = (next() % 200) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 3 == 0 {
            // A plausible frame header in front.
            junk.splice(
                0..0,
                [0, 0, (len % 40) as u8, (round % 10) as u8, 0x4, 0, 0, 0, 1],
            );
        }
        if round % 2 == 0 {
            sim.conn.on_client_bytes(&junk, sim.now, &mut sim.host);
        } else {
            sim.conn.on_function_bytes(&junk);
        }
        sim.conn.on_tick(sim.now + TIMEOUT);
        let actions = sim.take();
        // Whatever happened, the invocation that started has ended or is still running.
        assert!(ended(&actions).len() <= 1);
    }
}
