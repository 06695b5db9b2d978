//! The relay's rules, line by line, against the pure core: scripted
//! frames and frames recorded from real peers (tests/fixtures/h2, made by its capture.py:
//! grpcio clients and servers, python h2), a fake host (permits, request ids) and a fake
//! clock. What each side receives is read back with a fresh frame reader and HPACK decoder,
//! as that peer would read it, so a disturbed table shows as wrong fields.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::block::REQUEST_ID;
use super::conn::{Action, Conn, Host, Limits, Outcome, Side};
use super::frame::{self, flag, setting, ErrorCode, Head, Kind, StreamId, PREFACE};
use super::hpack::{self, Decoder};
use crate::http::fc_error::ErrorType;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Permits and ids, as the proxy would give them.
struct FakeHost {
    /// Permits left; `None` is unlimited.
    permits: Option<usize>,
    next_id: usize,
}

impl Host for FakeHost {
    fn admit(&mut self, _stream: StreamId) -> bool {
        match &mut self.permits {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    fn new_request_id(&mut self) -> String {
        self.next_id += 1;
        format!("id-{}", self.next_id)
    }
}

/// A frame as a peer reads it: header blocks put together and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Headers {
        stream: StreamId,
        end_stream: bool,
        fields: Vec<(String, String)>,
    },
    Data {
        stream: StreamId,
        end_stream: bool,
        data: Vec<u8>,
    },
    Rst {
        stream: StreamId,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        params: Vec<(u16, u32)>,
    },
    WindowUpdate {
        stream: StreamId,
        increment: u32,
    },
    GoAway {
        last: StreamId,
        code: ErrorCode,
    },
    Ping {
        ack: bool,
    },
    Other(Kind),
}

/// Reads frames the way one peer would, across calls (its HPACK table carries over).
struct Reader {
    buf: Vec<u8>,
    decoder: Decoder,
    block: Option<(StreamId, bool, Vec<u8>)>,
    /// Skip the client preface first.
    preface: bool,
}

impl Reader {
    fn new(preface: bool) -> Reader {
        Reader {
            buf: Vec::new(),
            decoder: Decoder::new(1 << 20),
            block: None,
            preface,
        }
    }

    fn read(&mut self, bytes: &[u8]) -> Vec<Ev> {
        self.buf.extend_from_slice(bytes);
        if self.preface {
            if self.buf.len() < PREFACE.len() {
                return Vec::new();
            }
            assert_eq!(&self.buf[..PREFACE.len()], PREFACE);
            self.buf.drain(..PREFACE.len());
            self.preface = false;
        }
        let mut evs = Vec::new();
        let mut at = 0;
        while let Some(raw) = frame::split(&self.buf[at..], 1 << 24).expect("frames") {
            at += raw.bytes.len();
            let f = frame::parse(raw.head, raw.payload).expect("a valid frame");
            let ev = match f {
                frame::Frame::Headers {
                    stream,
                    end_stream,
                    end_headers,
                    fragment,
                } => {
                    self.block = Some((stream, end_stream, fragment.to_vec()));
                    if !end_headers {
                        continue;
                    }
                    self.finish_block()
                }
                frame::Frame::Continuation {
                    end_headers,
                    fragment,
                    ..
                } => {
                    self.block
                        .as_mut()
                        .expect("open block")
                        .2
                        .extend_from_slice(fragment);
                    if !end_headers {
                        continue;
                    }
                    self.finish_block()
                }
                frame::Frame::Data {
                    stream,
                    end_stream,
                    data,
                    ..
                } => Ev::Data {
                    stream,
                    end_stream,
                    data: data.to_vec(),
                },
                frame::Frame::RstStream { stream, code } => Ev::Rst { stream, code },
                frame::Frame::Settings { ack, params } => Ev::Settings {
                    ack,
                    params: frame::settings(params).collect(),
                },
                frame::Frame::WindowUpdate { stream, increment } => {
                    Ev::WindowUpdate { stream, increment }
                }
                frame::Frame::GoAway {
                    last_stream, code, ..
                } => Ev::GoAway {
                    last: last_stream,
                    code,
                },
                frame::Frame::Ping { ack, .. } => Ev::Ping { ack },
                _ => Ev::Other(raw.head.kind),
            };
            evs.push(ev);
        }
        self.buf.drain(..at);
        evs
    }

    fn finish_block(&mut self) -> Ev {
        let (stream, end_stream, block) = self.block.take().expect("open block");
        let mut fields = Vec::new();
        self.decoder
            .decode(&block, &mut |f| {
                fields.push((
                    String::from_utf8_lossy(f.name).into_owned(),
                    String::from_utf8_lossy(f.value).into_owned(),
                ))
            })
            .expect("the peer's decoder accepts the block");
        Ev::Headers {
            stream,
            end_stream,
            fields,
        }
    }
}

/// The core, a fake host, a fake clock, and both peers' readers.
struct Sim {
    conn: Conn,
    host: FakeHost,
    now: Instant,
    /// Unconsumed input per side.
    pending_client: Vec<u8>,
    pending_function: Vec<u8>,
    function_reader: Reader,
    client_reader: Reader,
    actions: Vec<Action>,
}

impl Sim {
    fn new(limits: Limits, permits: Option<usize>) -> Sim {
        Sim {
            conn: Conn::new(limits),
            host: FakeHost {
                permits,
                next_id: 0,
            },
            now: Instant::now(),
            pending_client: Vec::new(),
            pending_function: Vec::new(),
            function_reader: Reader::new(true),
            client_reader: Reader::new(false),
            actions: Vec::new(),
        }
    }

    fn with_timeout() -> Sim {
        Sim::new(
            Limits {
                timeout: TIMEOUT,
                ..Limits::default()
            },
            None,
        )
    }

    /// Preface and SETTINGS exchanged both ways, output read and forgotten.
    fn connected() -> Sim {
        let mut sim = Sim::with_timeout();
        let mut hello = PREFACE.to_vec();
        frame::write_settings(&mut hello, &[]);
        sim.client(&hello);
        let mut hello = Vec::new();
        frame::write_settings(&mut hello, &[]);
        settings_ack(&mut hello);
        sim.function(&hello);
        let mut ack = Vec::new();
        settings_ack(&mut ack);
        sim.client(&ack);
        sim.take();
        sim
    }

    /// Feeds client bytes; returns (what the function got, what the client got).
    fn client(&mut self, bytes: &[u8]) -> (Vec<Ev>, Vec<Ev>) {
        self.pending_client.extend_from_slice(bytes);
        let n = self
            .conn
            .on_client_bytes(&self.pending_client, self.now, &mut self.host);
        self.pending_client.drain(..n);
        self.outputs()
    }

    fn function(&mut self, bytes: &[u8]) -> (Vec<Ev>, Vec<Ev>) {
        self.pending_function.extend_from_slice(bytes);
        let n = self.conn.on_function_bytes(&self.pending_function);
        self.pending_function.drain(..n);
        self.outputs()
    }

    fn after(&mut self, d: Duration) -> (Vec<Ev>, Vec<Ev>) {
        self.now += d;
        self.conn.on_tick(self.now);
        self.outputs()
    }

    fn outputs(&mut self) -> (Vec<Ev>, Vec<Ev>) {
        let to_f = std::mem::take(self.conn.to_function());
        let to_c = std::mem::take(self.conn.to_client());
        self.actions.extend(self.conn.take_actions());
        (
            self.function_reader.read(&to_f),
            self.client_reader.read(&to_c),
        )
    }

    /// The actions so far, forgotten.
    fn take(&mut self) -> Vec<Action> {
        self.outputs();
        std::mem::take(&mut self.actions)
    }

    /// Every `Started` has exactly one `Ended`, and the permits they held are given back.
    fn assert_balanced(&self, all: &[Action]) {
        let mut open: HashMap<StreamId, String> = HashMap::new();
        for a in all {
            match a {
                Action::Started(inv) => {
                    assert!(open.insert(inv.stream, inv.request_id.clone()).is_none());
                }
                Action::Ended {
                    stream, request_id, ..
                } => {
                    assert_eq!(open.remove(stream).as_ref(), Some(request_id), "{stream}");
                }
                _ => {}
            }
        }
        assert!(open.is_empty(), "never ended: {open:?}");
    }
}

fn settings_ack(out: &mut Vec<u8>) {
    Head {
        len: 0,
        kind: Kind::Settings,
        flags: flag::ACK,
        stream: 0,
    }
    .write(out);
}

fn data(out: &mut Vec<u8>, stream: StreamId, end: bool, payload: &[u8]) {
    Head {
        len: payload.len() as u32,
        kind: Kind::Data,
        flags: if end { flag::END_STREAM } else { 0 },
        stream,
    }
    .write(out);
    out.extend_from_slice(payload);
}

/// A header block of literals; `indexed` inserts every field into the sender's table (as
/// real encoders do), so a dropped block would disturb a receiver.
fn headers(out: &mut Vec<u8>, stream: StreamId, end: bool, fields: &[(&str, &str)], indexed: bool) {
    let mut block = Vec::new();
    for (name, value) in fields {
        if indexed {
            block.push(0x40);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        } else {
            hpack::encode_literal(&mut block, name.as_bytes(), value.as_bytes());
        }
    }
    frame::write_header_block(out, stream, end, &block);
}

fn grpc_request(stream: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    headers(
        &mut out,
        stream,
        false,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/test.Echo/Unary"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
        true,
    );
    data(&mut out, stream, true, b"\0\0\0\0\x05hello");
    out
}

fn http_request(stream: StreamId, end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    headers(
        &mut out,
        stream,
        end,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/slow"),
            (":authority", "x"),
        ],
        true,
    );
    out
}

fn grpc_response(stream: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    headers(
        &mut out,
        stream,
        false,
        &[(":status", "200"), ("content-type", "application/grpc")],
        true,
    );
    data(&mut out, stream, false, b"\0\0\0\0\x0aecho:hello");
    headers(&mut out, stream, true, &[("grpc-status", "0")], true);
    out
}

fn field<'a>(ev: &'a Ev, name: &str) -> Option<&'a str> {
    match ev {
        Ev::Headers { fields, .. } => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str()),
        _ => None,
    }
}

fn ended(actions: &[Action]) -> Vec<(StreamId, Outcome)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Ended {
                stream, outcome, ..
            } => Some((*stream, *outcome)),
            _ => None,
        })
        .collect()
}

fn started(actions: &[Action]) -> Vec<(StreamId, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Started(inv) => Some((inv.stream, inv.request_id.clone())),
            _ => None,
        })
        .collect()
}

// The recorded peers.

/// The chunks of a capture, in order: (from the client?, bytes).
fn capture(bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((bytes[at] == b'C', bytes[at + 5..at + 5 + len].to_vec()));
        at += 5 + len;
    }
    assert_eq!(at, bytes.len(), "a whole capture");
    out
}

/// What a capture's peers sent each other, read as each receiver read it.
fn sent(chunks: &[(bool, Vec<u8>)]) -> (Vec<Ev>, Vec<Ev>) {
    let mut by_client = Reader::new(true);
    let mut by_function = Reader::new(false);
    let (mut c, mut f) = (Vec::new(), Vec::new());
    for (from_client, bytes) in chunks {
        if *from_client {
            c.extend(by_client.read(bytes));
        } else {
            f.extend(by_function.read(bytes));
        }
    }
    (c, f)
}

/// Only what a stream carries: its header blocks and its data.
fn content(evs: &[Ev]) -> Vec<Ev> {
    evs.iter()
        .filter(|e| matches!(e, Ev::Headers { .. } | Ev::Data { .. }))
        .cloned()
        .collect()
}

/// Replays a capture through the core; returns what each side got, and the actions.
fn replay(chunks: &[(bool, Vec<u8>)]) -> (Vec<Ev>, Vec<Ev>, Vec<Action>) {
    let mut sim = Sim::with_timeout();
    let (mut to_f, mut to_c) = (Vec::new(), Vec::new());
    for (from_client, bytes) in chunks {
        let (f, c) = if *from_client {
            sim.client(bytes)
        } else {
            sim.function(bytes)
        };
        to_f.extend(f);
        to_c.extend(c);
    }
    let actions = sim.take();
    sim.assert_balanced(&actions);
    (to_f, to_c, actions)
}

/// The capture's request blocks, each with the id fc-init adds, in the order they came.
fn with_ids(client_sent: &[Ev], actions: &[Action]) -> Vec<Ev> {
    let ids: HashMap<StreamId, String> = started(actions).into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    content(client_sent)
        .into_iter()
        .map(|ev| match ev {
            Ev::Headers {
                stream,
                end_stream,
                mut fields,
            } if seen.insert(stream) => {
                fields.push((
                    String::from_utf8_lossy(REQUEST_ID).into_owned(),
                    ids[&stream].clone(),
                ));
                Ev::Headers {
                    stream,
                    end_stream,
                    fields,
                }
            }
            other => other,
        })
        .collect()
}

#[test]
fn grpc_unary_calls_from_real_peers_pass_with_an_id_each() {
    let chunks = capture(include_bytes!("../../tests/fixtures/h2/grpc_unary.bin"));
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
    let chunks = capture(include_bytes!("../../tests/fixtures/h2/grpc_stream.bin"));
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
    let chunks = capture(include_bytes!("../../tests/fixtures/h2/grpc_multiplex.bin"));
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
    let chunks = capture(include_bytes!("../../tests/fixtures/h2/h2_post.bin"));
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
    let chunks = capture(include_bytes!("../../tests/fixtures/h2/grpc_multiplex.bin"));
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
    let raw = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut out = Vec::new();
        Head {
            len: payload.len() as u32,
            kind: Kind::from_byte(kind),
            flags,
            stream,
        }
        .write(&mut out);
        out.extend_from_slice(payload);
        out
    };
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
