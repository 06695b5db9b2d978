//! Scripted invocations: SETTINGS passed on, request ids, timeouts, refusals over the limit, the
//! shutdown and its drain.

use super::*;

#[test]
fn preface_and_settings_pass_with_fc_init_limits() {
    let mut sim = Sim::with_timeout();
    let mut hello = PREFACE[..10].to_vec();
    assert_eq!(sim.client(&hello), (vec![], vec![]), "half a preface waits");
    hello = PREFACE[10..].to_vec();
    frame::write_settings(
        &mut hello,
        &[
            (setting::HEADER_TABLE_SIZE, 1 << 20),
            (setting::MAX_FRAME_SIZE, 1 << 20),
            (setting::INITIAL_WINDOW_SIZE, 1 << 20),
        ],
    );
    let (to_f, _) = sim.client(&hello);
    assert_eq!(
        to_f,
        [Ev::Settings {
            ack: false,
            params: vec![
                (setting::HEADER_TABLE_SIZE, 64 * 1024),
                (setting::MAX_FRAME_SIZE, 16_384),
                (setting::INITIAL_WINDOW_SIZE, 1 << 20),
                (setting::ENABLE_PUSH, 0),
            ]
        }]
    );
    let mut hello = Vec::new();
    frame::write_settings(&mut hello, &[(setting::MAX_CONCURRENT_STREAMS, 100)]);
    settings_ack(&mut hello);
    let (_, to_c) = sim.function(&hello);
    assert_eq!(
        to_c,
        [
            Ev::Settings {
                ack: false,
                params: vec![(setting::MAX_CONCURRENT_STREAMS, 100)]
            },
            Ev::Settings {
                ack: true,
                params: vec![]
            }
        ]
    );
    // PINGs and their ACKs pass both ways.
    let mut ping = Vec::new();
    Head {
        len: 8,
        kind: Kind::Ping,
        flags: 0,
        stream: 0,
    }
    .write(&mut ping);
    ping.extend_from_slice(b"12345678");
    assert_eq!(sim.client(&ping).0, [Ev::Ping { ack: false }]);
    ping[4] = flag::ACK;
    assert_eq!(sim.function(&ping).1, [Ev::Ping { ack: true }]);
}

#[test]
fn a_client_id_that_is_valid_is_kept_and_an_invalid_one_replaced() {
    let mut sim = Sim::connected();
    let mut req = Vec::new();
    headers(
        &mut req,
        1,
        true,
        &[(":path", "/a"), ("x-fc-request-id", "client-1")],
        true,
    );
    let (to_f, _) = sim.client(&req);
    assert_eq!(field(&to_f[0], "x-fc-request-id"), Some("client-1"));
    let mut req = Vec::new();
    headers(
        &mut req,
        3,
        true,
        &[(":path", "/b"), ("x-fc-request-id", "bad id!")],
        true,
    );
    let (to_f, _) = sim.client(&req);
    let Ev::Headers { fields, .. } = &to_f[0] else {
        panic!("{to_f:?}")
    };
    let ids: Vec<_> = fields
        .iter()
        .filter(|(n, _)| n == "x-fc-request-id")
        .collect();
    assert_eq!(ids, [&("x-fc-request-id".to_owned(), "id-1".to_owned())]);
    // The block inserted the bad id into the client's table and could not pass as it was:
    // from now on blocks are written again, and still read right.
    let mut req = Vec::new();
    headers(&mut req, 5, true, &[(":path", "/c")], false);
    req.extend_from_slice(&{
        let mut h = Vec::new();
        Head {
            len: 2,
            kind: Kind::Headers,
            flags: flag::END_HEADERS | flag::END_STREAM,
            stream: 7,
        }
        .write(&mut h);
        // Indexes 63 and 62: ":path: /b" and the bad id, from the client's table.
        h.extend_from_slice(&[0xbf, 0xbe]);
        h
    });
    let (to_f, _) = sim.client(&req);
    assert_eq!(field(&to_f[1], ":path"), Some("/b"));
    assert_eq!(field(&to_f[1], "x-fc-request-id"), Some("id-3"));
    let a = sim.take();
    assert_eq!(
        started(&a),
        [
            (1, "client-1".to_owned()),
            (3, "id-1".to_owned()),
            (5, "id-2".to_owned()),
            (7, "id-3".to_owned())
        ]
    );
}

#[test]
fn a_grpc_call_past_the_timeout_is_reset_both_ways_and_gets_deadline_exceeded() {
    let mut sim = Sim::connected();
    sim.client(&grpc_request(1));
    assert_eq!(sim.conn.next_deadline(), Some(sim.now + TIMEOUT));
    assert_eq!(
        sim.after(TIMEOUT - Duration::from_millis(1)),
        (vec![], vec![])
    );
    let (to_f, to_c) = sim.after(Duration::from_millis(1));
    assert_eq!(
        to_f,
        [Ev::Rst {
            stream: 1,
            code: ErrorCode::Cancel
        }]
    );
    assert_eq!(to_c.len(), 1, "{to_c:?}");
    assert!(matches!(
        to_c[0],
        Ev::Headers {
            stream: 1,
            end_stream: true,
            ..
        }
    ));
    assert_eq!(field(&to_c[0], ":status"), Some("200"));
    assert_eq!(field(&to_c[0], "content-type"), Some("application/grpc"));
    assert_eq!(field(&to_c[0], "grpc-status"), Some("4"));
    assert_eq!(field(&to_c[0], "x-fc-error-type"), Some("FunctionTimeout"));
    assert_eq!(field(&to_c[0], "x-fc-request-id"), Some("id-1"));
    let a = sim.take();
    assert_eq!(
        ended(&a),
        [(1, Outcome::Failed(ErrorType::FunctionTimeout))]
    );
    sim.assert_balanced(&a);
    assert_eq!(sim.conn.next_deadline(), None);

    // What the function had in flight: its DATA is dropped and its connection window given
    // back; its response headers (which inserted into its table) are dropped too, and the
    // next response still reads right at the client.
    let (to_f, to_c) = sim.function(&grpc_response(1));
    assert_eq!(to_c, []);
    assert_eq!(
        to_f,
        [Ev::WindowUpdate {
            stream: 0,
            increment: 15
        }]
    );
    sim.client(&grpc_request(3));
    let mut next = Vec::new();
    Head {
        len: 2,
        kind: Kind::Headers,
        flags: flag::END_HEADERS,
        stream: 3,
    }
    .write(&mut next);
    // From its table: 64 ":status: 200", 63 content-type (62 is the dropped trailers').
    next.extend_from_slice(&[0xc0, 0xbf]);
    let (_, to_c) = sim.function(&next);
    assert_eq!(field(&to_c[0], ":status"), Some("200"));
    assert_eq!(field(&to_c[0], "content-type"), Some("application/grpc"));
}

#[test]
fn an_http_request_past_the_timeout_gets_504_and_the_client_is_told_to_stop_sending() {
    let mut sim = Sim::connected();
    sim.client(&http_request(1, false));
    let (to_f, to_c) = sim.after(TIMEOUT);
    assert_eq!(
        to_f,
        [Ev::Rst {
            stream: 1,
            code: ErrorCode::Cancel
        }]
    );
    assert_eq!(field(&to_c[0], ":status"), Some("504"));
    assert_eq!(field(&to_c[0], "x-fc-error-type"), Some("FunctionTimeout"));
    assert_eq!(field(&to_c[0], "grpc-status"), None);
    assert_eq!(
        to_c[1],
        Ev::Rst {
            stream: 1,
            code: ErrorCode::NoError
        }
    );
    // The client's body, already in flight: dropped, its window given back.
    let mut body = Vec::new();
    data(&mut body, 1, true, &[0; 1000]);
    let (to_f, to_c) = sim.client(&body);
    assert_eq!(to_f, []);
    assert_eq!(
        to_c,
        [Ev::WindowUpdate {
            stream: 0,
            increment: 1000
        }]
    );
}

#[test]
fn a_streaming_call_past_the_timeout_gets_trailers_and_a_plain_response_a_reset() {
    let mut sim = Sim::connected();
    sim.client(&grpc_request(1));
    sim.client(&http_request(3, true));
    let mut started = Vec::new();
    headers(
        &mut started,
        1,
        false,
        &[(":status", "200"), ("content-type", "application/grpc")],
        false,
    );
    data(&mut started, 1, false, b"\0\0\0\0\x01a");
    headers(&mut started, 3, false, &[(":status", "200")], false);
    data(&mut started, 3, false, b"partial");
    sim.function(&started);
    let (_, to_c) = sim.after(TIMEOUT);
    assert_eq!(to_c.len(), 2, "{to_c:?}");
    assert!(matches!(
        to_c[0],
        Ev::Headers {
            stream: 1,
            end_stream: true,
            ..
        }
    ));
    assert_eq!(
        field(&to_c[0], ":status"),
        None,
        "trailers, not a second status"
    );
    assert_eq!(field(&to_c[0], "grpc-status"), Some("4"));
    assert_eq!(
        to_c[1],
        Ev::Rst {
            stream: 3,
            code: ErrorCode::Cancel
        }
    );
}

#[test]
fn streams_over_the_limit_are_refused_and_their_data_credited() {
    let mut sim = Sim::new(
        Limits {
            timeout: TIMEOUT,
            ..Limits::default()
        },
        Some(2),
    );
    let mut hello = PREFACE.to_vec();
    frame::write_settings(&mut hello, &[]);
    sim.client(&hello);
    let mut hello = Vec::new();
    frame::write_settings(&mut hello, &[]);
    sim.function(&hello);
    sim.take();
    sim.client(&grpc_request(1));
    sim.client(&grpc_request(3));
    let (to_f, to_c) = sim.client(&grpc_request(5));
    assert_eq!(to_f, [], "the function never sees the refused stream");
    assert_eq!(
        to_c,
        [
            Ev::Rst {
                stream: 5,
                code: ErrorCode::RefusedStream
            },
            Ev::WindowUpdate {
                stream: 0,
                increment: 10
            }
        ]
    );
    let a = sim.take();
    assert!(a.contains(&Action::Refused { stream: 5 }));
    // The refused block inserted into the client's table; the next request refers to it
    // and is still read right by the function.
    sim.host.permits = Some(1);
    let mut again = Vec::new();
    Head {
        len: 1,
        kind: Kind::Headers,
        flags: flag::END_HEADERS | flag::END_STREAM,
        stream: 7,
    }
    .write(&mut again);
    again.push(0xbe); // the newest entry: "te: trailers" of stream 5's block
    let (to_f, _) = sim.client(&again);
    let Ev::Headers { fields, .. } = &to_f[0] else {
        panic!("{to_f:?}")
    };
    assert_eq!(fields[0], ("te".to_owned(), "trailers".to_owned()));
}

#[test]
fn shutdown_sends_goaway_refuses_new_streams_and_drains() {
    let mut sim = Sim::connected();
    sim.client(&grpc_request(1));
    sim.client(&grpc_request(3));
    let deadline = sim.now + Duration::from_secs(30);
    sim.conn.shutdown(deadline);
    let (_, to_c) = sim.outputs();
    assert_eq!(
        to_c,
        [Ev::GoAway {
            last: 3,
            code: ErrorCode::NoError
        }]
    );
    let (to_f, to_c) = sim.client(&grpc_request(5));
    assert_eq!(to_f, []);
    assert_eq!(
        to_c[0],
        Ev::Rst {
            stream: 5,
            code: ErrorCode::RefusedStream
        }
    );
    let (_, to_c) = sim.function(&grpc_response(1));
    assert_eq!(content(&to_c).len(), 3);
    assert!(!sim.conn.is_closed(), "stream 3 still runs");
    let (to_f, _) = sim.function(&grpc_response(3));
    assert_eq!(
        to_f,
        [Ev::GoAway {
            last: 0,
            code: ErrorCode::NoError
        }]
    );
    let a = sim.take();
    assert_eq!(a.last(), Some(&Action::Close));
    sim.assert_balanced(&a);
}

#[test]
fn the_drain_deadline_answers_what_is_left_instance_stopping() {
    let mut sim = Sim::connected();
    sim.client(&http_request(1, true));
    sim.conn.shutdown(sim.now + Duration::from_secs(1));
    sim.outputs();
    assert_eq!(
        sim.conn.next_deadline(),
        Some(sim.now + Duration::from_secs(1))
    );
    let (to_f, to_c) = sim.after(Duration::from_secs(1));
    assert_eq!(field(&to_c[0], ":status"), Some("503"));
    assert_eq!(field(&to_c[0], "x-fc-error-type"), Some("InstanceStopping"));
    assert_eq!(
        to_f,
        [
            Ev::Rst {
                stream: 1,
                code: ErrorCode::Cancel
            },
            Ev::GoAway {
                last: 0,
                code: ErrorCode::NoError
            }
        ]
    );
    let a = sim.take();
    assert_eq!(
        ended(&a),
        [(1, Outcome::Failed(ErrorType::InstanceStopping))]
    );
    assert_eq!(a.last(), Some(&Action::Close));
}
