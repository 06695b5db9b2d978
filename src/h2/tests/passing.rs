//! What passes through as it came: flow control, and resets from either side.

use super::*;

/// DATA and WINDOW_UPDATE pass unchanged, so each side's windows are the other's: a client
/// that filled the function's 65,535-byte window goes on only after the function's update.
#[test]
fn flow_control_passes_across_windows() {
    let mut sim = Sim::connected();
    let mut req = http_request(1, false);
    for _ in 0..3 {
        data(&mut req, 1, false, &[7; 16_384]);
    }
    data(&mut req, 1, false, &[7; 16_383]);
    let (to_f, _) = sim.client(&req);
    let sent: usize = to_f
        .iter()
        .map(|e| match e {
            Ev::Data { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(sent, 65_535);
    let mut update = Vec::new();
    frame::write_window_update(&mut update, 0, 65_535);
    frame::write_window_update(&mut update, 1, 65_535);
    let (_, to_c) = sim.function(&update);
    assert_eq!(
        to_c,
        [
            Ev::WindowUpdate {
                stream: 0,
                increment: 65_535
            },
            Ev::WindowUpdate {
                stream: 1,
                increment: 65_535
            }
        ]
    );
    let mut more = Vec::new();
    data(&mut more, 1, true, &[8; 16_384]);
    let (to_f, _) = sim.client(&more);
    assert!(matches!(&to_f[0], Ev::Data { end_stream: true, data, .. } if data.len() == 16_384));
    // Padding counts against the window: a padded frame passes as it came.
    let mut padded = Vec::new();
    Head {
        len: 11,
        kind: Kind::Data,
        flags: flag::PADDED,
        stream: 1,
    }
    .write(&mut padded);
    padded.extend_from_slice(b"\x05abcde\0\0\0\0\0");
    let mut resp = Vec::new();
    headers(&mut resp, 1, false, &[(":status", "200")], false);
    resp.extend_from_slice(&padded);
    let before = sim.conn.to_client().len();
    sim.conn.on_function_bytes(&resp);
    let out = sim.conn.to_client().clone();
    assert!(out[before..].ends_with(&padded));
}

#[test]
fn the_function_going_away_answers_unhandled_and_a_function_reset_passes() {
    let mut sim = Sim::connected();
    sim.client(&grpc_request(1));
    sim.client(&http_request(3, true));
    sim.client(&http_request(5, true));
    let mut rst = Vec::new();
    frame::write_rst_stream(&mut rst, 5, ErrorCode::Internal);
    let (_, to_c) = sim.function(&rst);
    assert_eq!(
        to_c,
        [Ev::Rst {
            stream: 5,
            code: ErrorCode::Internal
        }]
    );
    sim.conn.on_function_closed();
    let (_, to_c) = sim.outputs();
    assert_eq!(field(&to_c[0], "grpc-status"), Some("14"));
    assert_eq!(
        field(&to_c[0], "x-fc-error-type"),
        Some("UnhandledInvocationError")
    );
    assert_eq!(field(&to_c[1], ":status"), Some("502"));
    assert_eq!(
        to_c.last(),
        Some(&Ev::GoAway {
            last: 5,
            code: ErrorCode::NoError
        })
    );
    let a = sim.take();
    sim.assert_balanced(&a);
    assert_eq!(
        ended(&a),
        [
            (
                5,
                Outcome::Reset {
                    by: Side::Function,
                    code: ErrorCode::Internal
                }
            ),
            (1, Outcome::Failed(ErrorType::UnhandledInvocationError)),
            (3, Outcome::Failed(ErrorType::UnhandledInvocationError)),
        ]
    );
}

#[test]
fn a_client_reset_passes_to_the_function_and_ends_the_invocation() {
    let mut sim = Sim::connected();
    sim.client(&http_request(1, false));
    let mut rst = Vec::new();
    frame::write_rst_stream(&mut rst, 1, ErrorCode::Cancel);
    let (to_f, _) = sim.client(&rst);
    assert_eq!(
        to_f,
        [Ev::Rst {
            stream: 1,
            code: ErrorCode::Cancel
        }]
    );
    let a = sim.take();
    assert_eq!(
        ended(&a),
        [(
            1,
            Outcome::Reset {
                by: Side::Client,
                code: ErrorCode::Cancel
            }
        )]
    );
    // The function's answer, in flight: dropped, its window credited.
    let mut late = Vec::new();
    headers(&mut late, 1, false, &[(":status", "200")], true);
    data(&mut late, 1, true, b"late");
    let (to_f, to_c) = sim.function(&late);
    assert_eq!(to_c, []);
    assert_eq!(
        to_f,
        [Ev::WindowUpdate {
            stream: 0,
            increment: 4
        }]
    );
}
