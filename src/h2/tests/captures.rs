//! Recorded real peers (grpcio, python h2) replayed through the core.

use super::*;

#[test]
fn grpc_unary_calls_from_real_peers_pass_with_an_id_each() {
    let chunks = capture(include_bytes!("../../../tests/fixtures/h2/grpc_unary.bin"));
    let (client_sent, function_sent) = sent(&chunks);
    let (to_f, to_c, actions) = replay(&chunks);
    assert_eq!(content(&to_f), with_ids(&client_sent, &actions));
    assert_eq!(content(&to_c), content(&function_sent));
    assert_eq!(
        started(&actions),
        [(1, "id-1".to_owned()), (3, "id-2".to_owned())]
    );
    let answered = Outcome::Answered {
        status: Some(200),
        grpc_status: Some(0),
    };
    assert_eq!(ended(&actions), [(1, answered), (3, answered)]);
    let inv = actions.iter().find_map(|a| match a {
        Action::Started(inv) => Some(inv.clone()),
        _ => None,
    });
    let inv = inv.unwrap();
    assert!(inv.grpc);
    assert_eq!(inv.path, "/test.Echo/Unary");
    assert_eq!(inv.method, "POST");
    assert_eq!(
        inv.grpc_timeout.map(|t| t > Duration::from_secs(5)),
        Some(true)
    );
    // The server's GOAWAY at its stop reached the client, and the connection closed.
    assert!(to_c.iter().any(|e| matches!(e, Ev::GoAway { .. })));
    assert_eq!(actions.last(), Some(&Action::Close));
}

#[test]
fn grpc_server_streaming_from_real_peers_arrives_whole_and_in_order() {
    let chunks = capture(include_bytes!("../../../tests/fixtures/h2/grpc_stream.bin"));
    let (client_sent, function_sent) = sent(&chunks);
    let (to_f, to_c, actions) = replay(&chunks);
    assert_eq!(content(&to_f), with_ids(&client_sent, &actions));
    assert_eq!(content(&to_c), content(&function_sent));
    let body: Vec<u8> = to_c
        .iter()
        .filter_map(|e| match e {
            Ev::Data { data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    // 20 gRPC messages of 100 bytes, each with its 5-byte prefix, in order.
    assert_eq!(body.len(), 20 * 105);
    for (i, msg) in body.chunks(105).enumerate() {
        assert_eq!(msg[5], b'A' + i as u8, "message {i}");
    }
    assert_eq!(
        ended(&actions),
        [(
            1,
            Outcome::Answered {
                status: Some(200),
                grpc_status: Some(0)
            }
        )]
    );
}

#[test]
fn ten_multiplexed_grpc_calls_from_real_peers_each_get_their_own_id() {
    let chunks = capture(include_bytes!(
        "../../../tests/fixtures/h2/grpc_multiplex.bin"
    ));
    let (client_sent, function_sent) = sent(&chunks);
    let (to_f, to_c, actions) = replay(&chunks);
    assert_eq!(content(&to_f), with_ids(&client_sent, &actions));
    assert_eq!(content(&to_c), content(&function_sent));
    let ids = started(&actions);
    assert_eq!(ids.len(), 10);
    let distinct: std::collections::HashSet<_> = ids.iter().map(|(_, id)| id).collect();
    assert_eq!(distinct.len(), 10);
    assert_eq!(ended(&actions).len(), 10);
    // Each function-bound request carries exactly its own id.
    for ev in &to_f {
        if let Ev::Headers { stream, fields, .. } = ev {
            let theirs: Vec<_> = fields
                .iter()
                .filter(|(n, _)| n == "x-fc-request-id")
                .collect();
            if !theirs.is_empty() {
                let own = &ids.iter().find(|(s, _)| s == stream).unwrap().1;
                assert_eq!(theirs, [&("x-fc-request-id".to_owned(), own.clone())]);
            }
        }
    }
}

/// python h2 indexes fields it sends again: the second and third requests refer to the
/// client's dynamic table, and still decode right at the function.
#[test]
fn python_h2_requests_reusing_the_dynamic_table_decode_right_at_the_function() {
    let chunks = capture(include_bytes!("../../../tests/fixtures/h2/h2_post.bin"));
    let (client_sent, function_sent) = sent(&chunks);
    let (to_f, to_c, actions) = replay(&chunks);
    assert_eq!(content(&to_f), with_ids(&client_sent, &actions));
    assert_eq!(content(&to_c), content(&function_sent));
    assert_eq!(started(&actions).len(), 3);
    let third = to_f
        .iter()
        .find(|e| matches!(e, Ev::Headers { stream: 5, .. }))
        .unwrap();
    assert_eq!(field(third, "x-custom"), Some("same-value-every-time"));
    assert_eq!(field(third, ":path"), Some("/post/2"));
}

/// The relay takes whatever bytes arrive: one at a time gives the same result as the
/// recorded chunks.
#[test]
fn a_capture_fed_one_byte_at_a_time_relays_the_same() {
    let chunks = capture(include_bytes!(
        "../../../tests/fixtures/h2/grpc_multiplex.bin"
    ));
    let (to_f, to_c, actions) = replay(&chunks);
    let bytewise: Vec<(bool, Vec<u8>)> = chunks
        .iter()
        .flat_map(|(c, bytes)| bytes.iter().map(move |b| (*c, vec![*b])))
        .collect();
    let (to_f1, to_c1, actions1) = replay(&bytewise);
    assert_eq!(to_f1, to_f);
    assert_eq!(to_c1, to_c);
    assert_eq!(started(&actions1), started(&actions));
}
