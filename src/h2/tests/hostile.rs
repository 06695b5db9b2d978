//! Hostile clients (docs/reference.md §14, "What an attacker gets"): the HTTP/2
//! denial-of-service classes, each bounded by a limit that costs the attacker its connection,
//! never the function or other clients.

use super::*;
use crate::h2::conn::calm::{FRAME_BURST, RESET_BURST, RESET_RATE};
use crate::h2::frame::HEADER_LEN;

fn ping(out: &mut Vec<u8>) {
    Head {
        len: 8,
        kind: Kind::Ping,
        flags: 0,
        stream: 0,
    }
    .write(out);
    out.extend_from_slice(b"12345678");
}

fn goaway_code(to_c: &[Ev]) -> Option<ErrorCode> {
    to_c.iter().find_map(|e| match e {
        Ev::GoAway { code, .. } => Some(*code),
        _ => None,
    })
}

#[test]
fn rapid_reset_gets_goaway_enhance_your_calm_after_its_budget() {
    let mut sim = Sim::connected();
    let mut to_function = 0;
    let mut code = None;
    let mut stream = 1;
    // HEADERS then RST_STREAM, in a loop, all at one instant: CVE-2023-44487.
    while stream < 20_000 && code.is_none() {
        let mut bytes = http_request(stream, false);
        frame::write_rst_stream(&mut bytes, stream, ErrorCode::Cancel);
        let (to_f, to_c) = sim.client(&bytes);
        to_function += to_f
            .iter()
            .filter(|e| matches!(e, Ev::Headers { .. }))
            .count();
        code = goaway_code(&to_c);
        stream += 2;
    }
    assert_eq!(code, Some(ErrorCode::EnhanceYourCalm));
    assert!(sim.conn.is_closed());
    // The function saw the burst, and not one stream more.
    assert!(
        to_function <= RESET_BURST as usize + 1,
        "{to_function} invocations"
    );
    let all = sim.take();
    sim.assert_balanced(&all);
}

#[test]
fn a_client_cancelling_calls_at_a_steady_pace_is_never_cut_off() {
    let mut sim = Sim::connected();
    // Half the rate allowed, for a minute.
    let gap = Duration::from_millis(2000 / u64::from(RESET_RATE));
    for i in 0..(30 * RESET_RATE) {
        let stream = 1 + 2 * i;
        let mut bytes = grpc_request(stream);
        frame::write_rst_stream(&mut bytes, stream, ErrorCode::Cancel);
        let (_, to_c) = sim.client(&bytes);
        assert_eq!(goaway_code(&to_c), None, "at stream {stream}");
        sim.now += gap;
    }
    assert!(!sim.conn.is_closed());
}

#[test]
fn a_ping_flood_gets_enhance_your_calm_and_its_pings_stop_at_the_burst() {
    let mut sim = Sim::connected();
    let mut flood = Vec::new();
    for _ in 0..(3 * FRAME_BURST) {
        ping(&mut flood);
    }
    let (to_f, to_c) = sim.client(&flood);
    let pings = to_f.iter().filter(|e| matches!(e, Ev::Ping { .. })).count();
    assert!(pings <= FRAME_BURST as usize, "{pings} pings relayed");
    assert_eq!(goaway_code(&to_c), Some(ErrorCode::EnhanceYourCalm));
    assert!(sim.conn.is_closed());
}

#[test]
fn a_settings_flood_and_an_empty_data_flood_get_enhance_your_calm() {
    let mut sim = Sim::connected();
    let mut flood = Vec::new();
    for _ in 0..(2 * FRAME_BURST) {
        frame::write_settings(&mut flood, &[]);
    }
    let (_, to_c) = sim.client(&flood);
    assert_eq!(goaway_code(&to_c), Some(ErrorCode::EnhanceYourCalm));

    let mut sim = Sim::connected();
    sim.client(&http_request(1, false));
    let mut flood = Vec::new();
    for _ in 0..(2 * FRAME_BURST) {
        data(&mut flood, 1, false, b"");
    }
    let (_, to_c) = sim.client(&flood);
    assert_eq!(goaway_code(&to_c), Some(ErrorCode::EnhanceYourCalm));
    let all = sim.take();
    sim.assert_balanced(&all);
}

#[test]
fn a_keepalive_ping_every_few_milliseconds_is_served() {
    let mut sim = Sim::connected();
    for _ in 0..10_000 {
        let mut one = Vec::new();
        ping(&mut one);
        let (to_f, to_c) = sim.client(&one);
        assert_eq!(to_f, [Ev::Ping { ack: false }]);
        assert_eq!(goaway_code(&to_c), None);
        // 500 a second, half the rate.
        sim.now += Duration::from_millis(2);
    }
}

#[test]
fn refused_streams_in_a_loop_cost_the_frame_budget() {
    // No permits at all: every stream is refused, which costs fc-init an RST_STREAM each.
    let mut sim = Sim::new(Limits::default(), Some(0));
    let mut hello = PREFACE.to_vec();
    frame::write_settings(&mut hello, &[]);
    sim.client(&hello);
    let mut flood = Vec::new();
    for i in 0..(2 * FRAME_BURST) {
        flood.extend(http_request(1 + 2 * i, true));
    }
    let (to_f, to_c) = sim.client(&flood);
    assert!(to_f.iter().all(|e| !matches!(e, Ev::Headers { .. })));
    let refused = to_c.iter().filter(|e| matches!(e, Ev::Rst { .. })).count();
    assert!(refused <= FRAME_BURST as usize, "{refused}");
    assert_eq!(goaway_code(&to_c), Some(ErrorCode::EnhanceYourCalm));
}

/// A block that puts one `size`-byte field in the table, then refers to it `refs` times.
fn bomb(stream: StreamId, size: usize, refs: usize) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "x"),
    ] {
        hpack::encode_literal(&mut block, n.as_bytes(), v.as_bytes());
    }
    // Literal with incremental indexing, new name (RFC 7541 §6.2.1); lengths as 7-bit
    // prefixed integers.
    block.push(0x40);
    block.push(5);
    block.extend_from_slice(b"x-big");
    let mut len = Vec::new();
    let v = size - 127;
    len.push(0x7f);
    let mut rest = v;
    while rest >= 128 {
        len.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    len.push(rest as u8);
    block.extend_from_slice(&len);
    block.extend(std::iter::repeat_n(b'a', size));
    // Indexed field 62: the newest dynamic entry.
    block.extend(std::iter::repeat_n(0xbe, refs));
    let mut out = Vec::new();
    frame::write_header_block(&mut out, stream, true, &block);
    out
}

#[test]
fn an_hpack_bomb_is_answered_431_and_never_reaches_the_function() {
    let mut sim = Sim::connected();
    // 4 KiB in the table, referred to 10,000 times: 10 KiB on the wire, 40 MB decoded.
    let (to_f, to_c) = sim.client(&bomb(1, 4000, 10_000));
    assert!(to_f.is_empty(), "{to_f:?}");
    let Some(Ev::Headers { fields, .. }) = to_c.first() else {
        panic!("{to_c:?}");
    };
    assert_eq!(fields[0], (":status".into(), "431".into()));
    assert!(matches!(
        sim.take().as_slice(),
        [Action::HeadersTooLarge { stream: 1 }]
    ));
    // The connection goes on, and the table the bomb filled stays in step: a request
    // referring to it reaches the function whole.
    let mut next = Vec::new();
    frame::write_header_block(&mut next, 3, true, &{
        let mut b = Vec::new();
        for (n, v) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/after"),
            (":authority", "x"),
        ] {
            hpack::encode_literal(&mut b, n.as_bytes(), v.as_bytes());
        }
        b.push(0xbe);
        b
    });
    let (to_f, _) = sim.client(&next);
    let Some(Ev::Headers { fields, .. }) = to_f.first() else {
        panic!("{to_f:?}");
    };
    assert!(fields.iter().any(|(n, v)| n == "x-big" && v.len() == 4000));
    assert!(fields.iter().any(|(n, v)| n == ":path" && v == "/after"));
}

#[test]
fn an_hpack_bomb_from_the_function_resets_its_stream_and_answers_the_client() {
    let mut sim = Sim::connected();
    sim.client(&grpc_request(1));
    sim.take();
    let mut block = bomb(1, 4000, 100);
    // The bomb as a response: replace the request's pseudo-fields by a status.
    block.truncate(0);
    let mut b = Vec::new();
    hpack::encode_literal(&mut b, b":status", b"200");
    b.push(0x40);
    b.push(5);
    b.extend_from_slice(b"x-big");
    b.extend_from_slice(&[0x7f, 0x81, 0x1d]); // 127 + 1 + 29*128 = 3840
    b.extend(std::iter::repeat_n(b'a', 3840));
    b.extend(std::iter::repeat_n(0xbe, 100));
    frame::write_header_block(&mut block, 1, false, &b);
    let (to_f, to_c) = sim.function(&block);
    assert!(
        matches!(
            to_f.as_slice(),
            [Ev::Rst {
                stream: 1,
                code: ErrorCode::EnhanceYourCalm
            }]
        ),
        "{to_f:?}"
    );
    let Some(Ev::Headers { fields, .. }) = to_c.first() else {
        panic!("{to_c:?}");
    };
    assert!(fields
        .iter()
        .any(|(n, v)| n == "x-fc-error-type" && v == "UnhandledInvocationError"));
}

#[test]
fn a_header_block_left_open_is_reported_until_its_end() {
    let mut sim = Sim::connected();
    let full = http_request(1, true);
    // HEADERS without END_HEADERS: the block's first byte only.
    let head = frame::Head {
        len: 1,
        kind: Kind::Headers,
        flags: flag::END_STREAM,
        stream: 1,
    };
    let mut bytes = Vec::new();
    head.write(&mut bytes);
    bytes.push(full[HEADER_LEN]);
    sim.client(&bytes);
    assert!(sim.conn.client_block_open());
    let mut rest = Vec::new();
    frame::Head {
        len: (full.len() - HEADER_LEN - 1) as u32,
        kind: Kind::Continuation,
        flags: flag::END_HEADERS,
        stream: 1,
    }
    .write(&mut rest);
    rest.extend_from_slice(&full[HEADER_LEN + 1..]);
    let (to_f, _) = sim.client(&rest);
    assert!(!sim.conn.client_block_open());
    assert!(matches!(to_f.as_slice(), [Ev::Headers { stream: 1, .. }]));
}

#[test]
fn stream_id_abuse_is_refused_and_bounded() {
    // An even id: a connection error.
    let mut sim = Sim::connected();
    let (_, to_c) = sim.client(&http_request(2, true));
    assert_eq!(goaway_code(&to_c), Some(ErrorCode::Protocol));
    // Decreasing ids after a high one: dropped (as frames in flight on a closed stream),
    // never an invocation, and a flood of them costs the budget.
    let mut sim = Sim::connected();
    sim.client(&http_request(99_999, true));
    sim.take();
    let mut flood = Vec::new();
    for i in 0..(2 * FRAME_BURST) {
        flood.extend(http_request(1 + 2 * (i % 1000), true));
    }
    let (to_f, to_c) = sim.client(&flood);
    assert!(to_f.iter().all(|e| !matches!(e, Ev::Headers { .. })));
    assert_eq!(goaway_code(&to_c), Some(ErrorCode::EnhanceYourCalm));
    assert!(started(&sim.take()).is_empty());
    // Beyond max_streams: refused, whatever the permits.
    let mut sim = Sim::new(
        Limits {
            max_streams: 3,
            ..Limits::default()
        },
        None,
    );
    let mut hello = PREFACE.to_vec();
    frame::write_settings(&mut hello, &[]);
    sim.client(&hello);
    let mut four = Vec::new();
    for s in [1, 3, 5, 7] {
        four.extend(http_request(s, false));
    }
    let (_, to_c) = sim.client(&four);
    assert_eq!(
        to_c,
        [Ev::Rst {
            stream: 7,
            code: ErrorCode::RefusedStream
        }]
    );
    assert_eq!(started(&sim.take()).len(), 3);
}
