//! The relay's rules, line by line, against the pure core: scripted
//! frames and frames recorded from real peers (tests/fixtures/h2, made by its capture.py:
//! grpcio clients and servers, python h2), a fake host (permits, request ids) and a fake
//! clock. What each side receives is read back with a fresh frame reader and HPACK decoder,
//! as that peer would read it, so a disturbed table shows as wrong fields.
//!
//! This file is the harness; the tests are in [`captures`], [`streams`], [`passing`] and
//! [`errors`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::block::REQUEST_ID;
use super::conn::{Action, Conn, Host, Limits, Outcome, Side};
use super::frame::{self, flag, setting, ErrorCode, Head, Kind, StreamId, PREFACE};
use super::hpack::{self, Decoder};
use crate::http::fc_error::ErrorType;

mod captures;
mod errors;
mod hostile;
mod passing;
mod streams;

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

/// Bytes written as hex, as the RFCs print them (spaces ignored).
pub(super) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// One frame of any type byte, flags and stream, as raw bytes (unknown and malformed frames
/// included).
pub(super) fn raw_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
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
