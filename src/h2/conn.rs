//! The relay of one h2c connection as a pure state machine: bytes from the client, bytes from
//! the function, the passing of time and the shutdown go in; bytes for each side (in
//! [`Conn::to_client`] and [`Conn::to_function`]) and [`Action`]s come out. It makes no system
//! call, reads no clock and draws no random number: request ids and concurrency permits are
//! asked of a [`Host`], the time is an argument.
//!
//! See the module docs of [`super`] for the rules it keeps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::block::{Blocks, Seen, REQUEST_ID};
use super::frame::{
    self, setting, ErrorCode, Frame, H2Error, Kind, Raw, StreamId, DEFAULT_MAX_FRAME_SIZE,
    HEADER_LEN, PREFACE,
};
use super::hpack::{self, DEFAULT_TABLE_SIZE};
use crate::http::fc_error::{ErrorType, Invocation as InvocationKind};

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Function,
}

/// The bounds of one connection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `function.timeout`: from a stream's request headers to the end of the function's
    /// response.
    pub timeout: Duration,
    /// The largest frame accepted from either peer; a larger `SETTINGS_MAX_FRAME_SIZE` is
    /// lowered to this on its way (at least 16 KiB, the least a peer may announce).
    pub max_frame_size: u32,
    /// The largest header block (HEADERS and its CONTINUATIONs, frame headers included):
    /// larger is `ENHANCE_YOUR_CALM` for the connection.
    pub max_header_block: usize,
    /// The largest HPACK table a peer may make fc-init mirror: a larger
    /// `SETTINGS_HEADER_TABLE_SIZE` is lowered to this on its way.
    pub max_table_size: u32,
    /// Streams tracked at once; more are refused (`REFUSED_STREAM`) whatever the permits say.
    pub max_streams: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(60),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_block: 64 * 1024,
            max_table_size: 64 * 1024,
            max_streams: 1024,
        }
    }
}

/// What the core asks of its surroundings while it reads the client's bytes.
pub trait Host {
    /// A permit for a new invocation on `stream` (the proxy's concurrency limiter). `false`
    /// refuses the stream with `REFUSED_STREAM`. A permit granted is held until the stream's
    /// [`Action::Ended`].
    fn admit(&mut self, stream: StreamId) -> bool;
    /// A new request id, for a stream whose client sent no valid one.
    fn new_request_id(&mut self) -> String;
}

/// A request stream that became an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub stream: StreamId,
    pub request_id: String,
    pub method: String,
    pub path: String,
    /// `content-type: application/grpc…`.
    pub grpc: bool,
    /// The client's `grpc-timeout`, for the log: the deadline fc-init enforces is
    /// `function.timeout` (the client and the function enforce the gRPC deadline themselves).
    pub grpc_timeout: Option<Duration>,
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The function's response ended (`END_STREAM`).
    Answered {
        status: Option<u16>,
        grpc_status: Option<u32>,
    },
    /// fc-init answered the client itself.
    Failed(ErrorType),
    /// A peer reset the stream (or broke its rules on it, or went away).
    Reset { by: Side, code: ErrorCode },
    /// The function's GOAWAY said it never processed the stream; the client, told the same by
    /// the GOAWAY passed on, may retry it.
    NotProcessed,
}

/// What the shell must do (bytes aside, which wait in the two output buffers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Started(Invocation),
    /// Exactly once per [`Action::Started`]; releases its permit.
    Ended {
        stream: StreamId,
        request_id: String,
        outcome: Outcome,
    },
    /// A new stream refused with `REFUSED_STREAM` (over the limit, or after the shutdown).
    Refused {
        stream: StreamId,
    },
    /// A peer broke the protocol; the connection is closing (for the log).
    Error {
        side: Side,
        error: H2Error,
    },
    /// Write out both buffers, then close both connections. Comes once, last.
    Close,
}

/// One stream, as fc-init relays it.
#[derive(Debug)]
struct Stream {
    request_id: String,
    grpc: bool,
    /// `function.timeout`, while the invocation runs.
    deadline: Instant,
    /// The invocation has ended (its `Ended` was reported); the stream may live on while the
    /// client still sends.
    ended: bool,
    /// The client has not ended its side.
    client_open: bool,
    /// The function has not ended its side.
    function_open: bool,
    /// The function sent its final response headers.
    response_started: bool,
    status: Option<u16>,
    grpc_status: Option<u32>,
}

/// A header block being put together from HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct Assembly {
    stream: StreamId,
    end_stream: bool,
    block: Vec<u8>,
    /// Bytes counted against `max_header_block` (frame headers too: a flood of empty
    /// CONTINUATION frames counts).
    used: usize,
}

/// What fc-init reads from one peer.
#[derive(Debug)]
struct Inbound {
    /// The peer's first SETTINGS has arrived (RFC 9113 §3.4: it must be its first frame;
    /// the client's comes after the preface).
    greeted: bool,
    /// Frames accepted from this peer: the most the other peer has announced (clamped).
    max_frame: u32,
    blocks: Blocks,
    assembly: Option<Assembly>,
}

impl Inbound {
    fn new() -> Inbound {
        Inbound {
            greeted: false,
            max_frame: DEFAULT_MAX_FRAME_SIZE,
            blocks: Blocks::new(DEFAULT_TABLE_SIZE),
            assembly: None,
        }
    }
}

/// One h2c connection relayed to its own function connection.
#[derive(Debug)]
pub struct Conn {
    limits: Limits,
    client: Inbound,
    function: Inbound,
    streams: BTreeMap<StreamId, Stream>,
    /// The highest stream the client has opened.
    last_stream: StreamId,
    /// fc-init's shutdown: the drain deadline. No new stream is taken.
    drain: Option<Instant>,
    /// A peer sent GOAWAY: no new streams; close once none is left.
    peer_goaway: bool,
    /// The client's preface has arrived.
    preface_read: bool,
    closed: bool,
    to_client: Vec<u8>,
    to_function: Vec<u8>,
    actions: Vec<Action>,
    /// A header block being written (reused).
    out_block: Vec<u8>,
}

impl Conn {
    pub fn new(mut limits: Limits) -> Conn {
        limits.max_frame_size = limits
            .max_frame_size
            .clamp(DEFAULT_MAX_FRAME_SIZE, frame::MAX_MAX_FRAME_SIZE);
        Conn {
            limits,
            client: Inbound::new(),
            function: Inbound::new(),
            streams: BTreeMap::new(),
            last_stream: 0,
            drain: None,
            peer_goaway: false,
            preface_read: false,
            closed: false,
            to_client: Vec::new(),
            to_function: Vec::new(),
            actions: Vec::new(),
            out_block: Vec::new(),
        }
    }

    /// Bytes for the client: the shell writes from the front and removes what it wrote.
    pub fn to_client(&mut self) -> &mut Vec<u8> {
        &mut self.to_client
    }

    /// Bytes for the function, likewise.
    pub fn to_function(&mut self) -> &mut Vec<u8> {
        &mut self.to_function
    }

    /// The actions since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The connection is over (after [`Action::Close`]).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Invocations running now (streams whose `Ended` has not come).
    pub fn in_flight(&self) -> usize {
        self.streams.values().filter(|s| !s.ended).count()
    }

    /// The next instant [`Conn::on_tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let streams = self
            .streams
            .values()
            .filter(|s| !s.ended)
            .map(|s| s.deadline);
        streams.chain(self.drain).min()
    }

    /// Bytes from the client. Takes whole frames (and the preface) from the start of `input`
    /// and returns how many bytes it took; the shell keeps the rest and offers it again with
    /// more (at most `max_frame_size + 9` bytes ever wait).
    pub fn on_client_bytes(&mut self, input: &[u8], now: Instant, host: &mut dyn Host) -> usize {
        if self.closed {
            return input.len();
        }
        let mut at = 0;
        if !self.preface_read {
            let n = input.len().min(PREFACE.len());
            if input[..n] != PREFACE[..n] {
                self.fail(
                    Side::Client,
                    H2Error::conn(ErrorCode::Protocol, "not the HTTP/2 preface"),
                );
                return input.len();
            }
            if n < PREFACE.len() {
                return 0;
            }
            self.to_function.extend_from_slice(PREFACE);
            self.preface_read = true;
            at = PREFACE.len();
        }
        while !self.closed {
            let raw = match frame::split(&input[at..], self.client.max_frame) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => {
                    self.fail(Side::Client, e);
                    return input.len();
                }
            };
            at += raw.bytes.len();
            if let Err(e) = self.client_frame(raw, now, host) {
                self.error(Side::Client, e);
            }
        }
        self.settle();
        if self.closed {
            input.len()
        } else {
            at
        }
    }

    /// Bytes from the function, likewise.
    pub fn on_function_bytes(&mut self, input: &[u8]) -> usize {
        if self.closed {
            return input.len();
        }
        let mut at = 0;
        while !self.closed {
            let raw = match frame::split(&input[at..], self.function.max_frame) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => {
                    self.fail(Side::Function, e);
                    return input.len();
                }
            };
            at += raw.bytes.len();
            if let Err(e) = self.function_frame(raw) {
                self.error(Side::Function, e);
            }
        }
        self.settle();
        if self.closed {
            input.len()
        } else {
            at
        }
    }

    /// The client's connection ended (end of file, a reset, a write error): the streams are
    /// cancelled and the function connection closes.
    pub fn on_client_closed(&mut self) {
        if self.closed {
            return;
        }
        self.end_all(|_| Outcome::Reset {
            by: Side::Client,
            code: ErrorCode::Cancel,
        });
        frame::write_goaway(&mut self.to_function, 0, ErrorCode::NoError, b"");
        self.close();
    }

    /// The function's connection ended: every running invocation is answered
    /// `UnhandledInvocationError` and the client connection closes after a GOAWAY.
    pub fn on_function_closed(&mut self) {
        if self.closed {
            return;
        }
        self.function_gone();
        frame::write_goaway(
            &mut self.to_client,
            self.last_stream,
            ErrorCode::NoError,
            b"",
        );
        self.close();
    }

    /// fc-init is stopping: GOAWAY to the client (streams it opened so far are served, later
    /// ones refused); at `deadline` the streams still running are answered
    /// `InstanceStopping`. The connection closes when no stream is left.
    pub fn shutdown(&mut self, deadline: Instant) {
        if self.closed || self.drain.is_some() {
            return;
        }
        self.drain = Some(deadline);
        frame::write_goaway(
            &mut self.to_client,
            self.last_stream,
            ErrorCode::NoError,
            b"",
        );
        self.settle();
    }

    /// Time passed: timeouts, and the end of the drain.
    pub fn on_tick(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let expired: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.ended && s.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.answer(id, ErrorType::FunctionTimeout);
        }
        if self.drain.is_some_and(|d| d <= now) {
            self.answer_all(ErrorType::InstanceStopping);
            frame::write_goaway(&mut self.to_function, 0, ErrorCode::NoError, b"");
            self.close();
        }
        self.settle();
    }

    fn client_frame(
        &mut self,
        raw: Raw<'_>,
        now: Instant,
        host: &mut dyn Host,
    ) -> Result<(), H2Error> {
        if !self.client.greeted {
            if raw.head.kind != Kind::Settings || raw.head.has(frame::flag::ACK) {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "the client's first frame is not SETTINGS",
                ));
            }
            self.client.greeted = true;
        }
        let frame = continuation_rule(&self.client, raw)?;
        match frame {
            Frame::Data {
                stream,
                end_stream,
                flow_len,
                ..
            } => {
                match self.streams.get_mut(&stream) {
                    Some(s) if s.client_open => {
                        self.to_function.extend_from_slice(raw.bytes);
                        if end_stream {
                            s.client_open = false;
                            self.forget_if_done(stream);
                        }
                    }
                    Some(_) => {
                        // Not passed on, but it took the client's connection window.
                        credit(&mut self.to_client, flow_len);
                        return Err(H2Error::stream(
                            stream,
                            ErrorCode::StreamClosed,
                            "DATA after the client ended the stream",
                        ));
                    }
                    None if stream > self.last_stream => {
                        return Err(H2Error::conn(ErrorCode::Protocol, "DATA on an idle stream"))
                    }
                    // A stream fc-init refused or reset: the bytes were in flight. They count
                    // against the client's connection window, which the function will never
                    // replenish for them: fc-init does (RFC 9113 §6.9).
                    None => credit(&mut self.to_client, flow_len),
                }
            }
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
            } => {
                self.client.assembly = Some(Assembly {
                    stream,
                    end_stream,
                    block: Vec::new(),
                    used: 0,
                });
                self.assemble(Side::Client, raw, fragment)?;
                if end_headers {
                    self.client_block(now, host)?;
                }
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => {
                self.assemble(Side::Client, raw, fragment)?;
                if end_headers {
                    self.client_block(now, host)?;
                }
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {
                // PRIORITY is deprecated (RFC 9113 §5.3.2) and extension frames are ignored
                // (§5.5): neither goes on.
            }
            Frame::RstStream { stream, code } => match self.streams.remove(&stream) {
                Some(s) => {
                    self.to_function.extend_from_slice(raw.bytes);
                    if !s.ended {
                        self.ended(
                            stream,
                            s.request_id,
                            Outcome::Reset {
                                by: Side::Client,
                                code,
                            },
                        );
                    }
                }
                None if stream > self.last_stream => {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "RST_STREAM on an idle stream",
                    ))
                }
                None => {}
            },
            Frame::Settings { ack, params } => {
                if ack {
                    self.to_function.extend_from_slice(raw.bytes);
                } else {
                    let params = self.clamp_settings(Side::Client, params)?;
                    frame::write_settings(&mut self.to_function, &params);
                }
            }
            Frame::PushPromise { .. } => {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "PUSH_PROMISE from a client",
                ))
            }
            Frame::Ping { .. } => self.to_function.extend_from_slice(raw.bytes),
            Frame::GoAway { .. } => {
                self.peer_goaway = true;
                self.to_function.extend_from_slice(raw.bytes);
            }
            Frame::WindowUpdate { stream, .. } => {
                if stream == 0 || self.streams.contains_key(&stream) {
                    self.to_function.extend_from_slice(raw.bytes);
                } else if stream > self.last_stream {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
            }
        }
        Ok(())
    }

    fn function_frame(&mut self, raw: Raw<'_>) -> Result<(), H2Error> {
        if !self.function.greeted {
            // RFC 9113 §3.4: the server's preface is a SETTINGS frame.
            if raw.head.kind != Kind::Settings || raw.head.has(frame::flag::ACK) {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "the function's first frame is not SETTINGS",
                ));
            }
            self.function.greeted = true;
        }
        let frame = continuation_rule(&self.function, raw)?;
        match frame {
            Frame::Data {
                stream,
                end_stream,
                flow_len,
                ..
            } => match self.streams.get_mut(&stream) {
                Some(s) if s.function_open => {
                    self.to_client.extend_from_slice(raw.bytes);
                    if end_stream {
                        s.function_open = false;
                        self.answered(stream);
                    }
                }
                Some(_) => {
                    credit(&mut self.to_function, flow_len);
                    return Err(H2Error::stream(
                        stream,
                        ErrorCode::StreamClosed,
                        "DATA after the function ended the stream",
                    ));
                }
                None if stream > self.last_stream || stream % 2 == 0 => {
                    return Err(H2Error::conn(ErrorCode::Protocol, "DATA on an idle stream"))
                }
                None => credit(&mut self.to_function, flow_len),
            },
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
            } => {
                if stream > self.last_stream || stream % 2 == 0 {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "HEADERS from the function on an idle stream",
                    ));
                }
                self.function.assembly = Some(Assembly {
                    stream,
                    end_stream,
                    block: Vec::new(),
                    used: 0,
                });
                self.assemble(Side::Function, raw, fragment)?;
                if end_headers {
                    self.function_block()?;
                }
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => {
                self.assemble(Side::Function, raw, fragment)?;
                if end_headers {
                    self.function_block()?;
                }
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {}
            Frame::RstStream { stream, code } => match self.streams.remove(&stream) {
                Some(s) => {
                    self.to_client.extend_from_slice(raw.bytes);
                    if !s.ended {
                        self.ended(
                            stream,
                            s.request_id,
                            Outcome::Reset {
                                by: Side::Function,
                                code,
                            },
                        );
                    }
                }
                None if stream > self.last_stream => {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "RST_STREAM on an idle stream",
                    ))
                }
                None => {}
            },
            Frame::Settings { ack, params } => {
                if ack {
                    self.to_client.extend_from_slice(raw.bytes);
                } else {
                    let params = self.clamp_settings(Side::Function, params)?;
                    frame::write_settings(&mut self.to_client, &params);
                }
            }
            Frame::PushPromise { .. } => {
                // fc-init announces SETTINGS_ENABLE_PUSH = 0 for every client.
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "PUSH_PROMISE with push disabled",
                ));
            }
            Frame::Ping { .. } => self.to_client.extend_from_slice(raw.bytes),
            Frame::GoAway { last_stream, .. } => {
                // The function's stream ids are the client's: the GOAWAY means the same to
                // the client, which will retry the streams above `last_stream`.
                self.peer_goaway = true;
                self.to_client.extend_from_slice(raw.bytes);
                let unprocessed: Vec<StreamId> = self
                    .streams
                    .range(last_stream + 1..)
                    .map(|(&id, _)| id)
                    .collect();
                for id in unprocessed {
                    if let Some(s) = self.streams.remove(&id) {
                        if !s.ended {
                            self.ended(id, s.request_id, Outcome::NotProcessed);
                        }
                    }
                }
            }
            Frame::WindowUpdate { stream, .. } => {
                if stream == 0 || self.streams.contains_key(&stream) {
                    self.to_client.extend_from_slice(raw.bytes);
                } else if stream > self.last_stream {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Adds a HEADERS or CONTINUATION fragment to the block being assembled.
    fn assemble(&mut self, side: Side, raw: Raw<'_>, fragment: &[u8]) -> Result<(), H2Error> {
        let max = self.limits.max_header_block;
        let inbound = match side {
            Side::Client => &mut self.client,
            Side::Function => &mut self.function,
        };
        let a = inbound.assembly.as_mut().ok_or(H2Error::conn(
            ErrorCode::Protocol,
            "CONTINUATION without HEADERS",
        ))?;
        a.used += HEADER_LEN + raw.payload.len();
        if a.used > max {
            return Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                "header block too large",
            ));
        }
        a.block.extend_from_slice(fragment);
        Ok(())
    }

    /// A complete header block from the client: a new stream's request, or trailers.
    fn client_block(&mut self, now: Instant, host: &mut dyn Host) -> Result<(), H2Error> {
        let Some(Assembly {
            stream,
            end_stream,
            block,
            ..
        }) = self.client.assembly.take()
        else {
            return Ok(());
        };
        let seen = self.client.blocks.decode(&block).map_err(|_| {
            H2Error::conn(
                ErrorCode::Compression,
                "undecodable header block from the client",
            )
        })?;
        if stream > self.last_stream {
            if stream % 2 == 0 {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "a client stream with an even id",
                ));
            }
            self.last_stream = stream;
            return self.open(stream, end_stream, &block, seen, now, host);
        }
        match self.streams.get_mut(&stream) {
            Some(s) if s.client_open => {
                // Trailers.
                if end_stream {
                    s.client_open = false;
                }
                self.out_block.clear();
                self.client.blocks.forward(&block, &[], &mut self.out_block);
                frame::write_header_block(
                    &mut self.to_function,
                    stream,
                    end_stream,
                    &self.out_block,
                );
                self.forget_if_done(stream);
                Ok(())
            }
            Some(_) => {
                self.client.blocks.drop_block();
                Err(H2Error::stream(
                    stream,
                    ErrorCode::StreamClosed,
                    "HEADERS after the client ended the stream",
                ))
            }
            None => {
                // A stream already refused or reset: in flight before the client knew.
                self.client.blocks.drop_block();
                Ok(())
            }
        }
    }

    /// A new stream: refused, or an invocation.
    fn open(
        &mut self,
        stream: StreamId,
        end_stream: bool,
        block: &[u8],
        seen: Seen,
        now: Instant,
        host: &mut dyn Host,
    ) -> Result<(), H2Error> {
        let refuse = self.drain.is_some()
            || self.peer_goaway
            || self.streams.len() >= self.limits.max_streams
            || !host.admit(stream);
        if refuse {
            self.client.blocks.drop_block();
            frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::RefusedStream);
            self.actions.push(Action::Refused { stream });
            return Ok(());
        }
        let (request_id, added) = match seen.request_id {
            Some(id) => (id, false),
            None => (host.new_request_id(), true),
        };
        self.out_block.clear();
        let add: &[(&[u8], &[u8])] = if added {
            &[(REQUEST_ID, request_id.as_bytes())]
        } else {
            &[]
        };
        self.client.blocks.forward(block, add, &mut self.out_block);
        frame::write_header_block(&mut self.to_function, stream, end_stream, &self.out_block);
        self.streams.insert(
            stream,
            Stream {
                request_id: request_id.clone(),
                grpc: seen.grpc,
                // A timeout too large for the clock is as good as none.
                deadline: now
                    .checked_add(self.limits.timeout)
                    .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400)),
                ended: false,
                client_open: !end_stream,
                function_open: true,
                response_started: false,
                status: None,
                grpc_status: None,
            },
        );
        self.actions.push(Action::Started(Invocation {
            stream,
            request_id,
            method: seen.method,
            path: seen.path,
            grpc: seen.grpc,
            grpc_timeout: seen.grpc_timeout,
        }));
        Ok(())
    }

    /// A complete header block from the function: response headers, or trailers.
    fn function_block(&mut self) -> Result<(), H2Error> {
        let Some(Assembly {
            stream,
            end_stream,
            block,
            ..
        }) = self.function.assembly.take()
        else {
            return Ok(());
        };
        let seen = self.function.blocks.decode(&block).map_err(|_| {
            H2Error::conn(
                ErrorCode::Compression,
                "undecodable header block from the function",
            )
        })?;
        let Some(s) = self.streams.get_mut(&stream).filter(|s| s.function_open) else {
            // A stream fc-init or the client has reset: the block was in flight. (A block on
            // a stream the function itself ended is its error, and is dropped all the same.)
            self.function.blocks.drop_block();
            return Ok(());
        };
        if let Some(status) = seen.status {
            if status >= 200 {
                s.response_started = true;
                s.status = Some(status);
            }
        }
        if seen.grpc_status.is_some() {
            s.grpc_status = seen.grpc_status;
        }
        self.out_block.clear();
        self.function
            .blocks
            .forward(&block, &[], &mut self.out_block);
        frame::write_header_block(&mut self.to_client, stream, end_stream, &self.out_block);
        if end_stream {
            s.function_open = false;
            self.answered(stream);
        }
        Ok(())
    }

    /// SETTINGS on their way from `from`: the frame size and table size fc-init must follow
    /// are lowered to its limits, and push is turned off (fc-init relays no pushed streams).
    fn clamp_settings(&mut self, from: Side, params: &[u8]) -> Result<Vec<(u16, u32)>, H2Error> {
        let mut out = Vec::new();
        let mut push_seen = false;
        for (id, value) in frame::settings(params) {
            let value = match id {
                setting::HEADER_TABLE_SIZE => {
                    let v = value.min(self.limits.max_table_size);
                    // The announcing peer decodes what the other one encodes.
                    match from {
                        Side::Client => self.function.blocks.allow(v as usize),
                        Side::Function => self.client.blocks.allow(v as usize),
                    }
                    v
                }
                setting::MAX_FRAME_SIZE => {
                    let v = value.min(self.limits.max_frame_size);
                    let other = match from {
                        Side::Client => &mut self.function,
                        Side::Function => &mut self.client,
                    };
                    other.max_frame = other.max_frame.max(v);
                    v
                }
                setting::ENABLE_PUSH => {
                    if from == Side::Function && value != 0 {
                        // RFC 9113 §6.5.2: a server must not announce push.
                        return Err(H2Error::conn(
                            ErrorCode::Protocol,
                            "SETTINGS_ENABLE_PUSH from the function",
                        ));
                    }
                    push_seen = true;
                    0
                }
                _ => value,
            };
            out.push((id, value));
        }
        if from == Side::Client && !push_seen {
            out.push((setting::ENABLE_PUSH, 0));
        }
        Ok(out)
    }

    /// The function ended its response on `stream`.
    fn answered(&mut self, stream: StreamId) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if !s.ended {
            s.ended = true;
            let outcome = Outcome::Answered {
                status: s.status,
                grpc_status: s.grpc_status,
            };
            let request_id = s.request_id.clone();
            self.ended(stream, request_id, outcome);
        }
        self.forget_if_done(stream);
    }

    fn forget_if_done(&mut self, stream: StreamId) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|s| !s.client_open && !s.function_open)
        {
            self.streams.remove(&stream);
        }
    }

    fn ended(&mut self, stream: StreamId, request_id: String, outcome: Outcome) {
        self.actions.push(Action::Ended {
            stream,
            request_id,
            outcome,
        });
    }

    /// fc-init answers a running invocation itself: the function's side is reset, the client
    /// gets `error` in the shape its request asked for.
    fn answer(&mut self, stream: StreamId, error: ErrorType) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        if s.function_open {
            frame::write_rst_stream(&mut self.to_function, stream, ErrorCode::Cancel);
        }
        if !s.response_started || s.grpc {
            let block = &mut self.out_block;
            block.clear();
            if !s.response_started {
                let status = if s.grpc {
                    200
                } else {
                    error.status(InvocationKind::Http)
                };
                hpack::encode_literal(block, b":status", status.to_string().as_bytes());
                if s.grpc {
                    hpack::encode_literal(block, b"content-type", b"application/grpc");
                }
            }
            hpack::encode_literal(block, b"x-fc-error-type", error.as_str().as_bytes());
            hpack::encode_literal(block, REQUEST_ID, s.request_id.as_bytes());
            if s.grpc {
                let (code, message) = grpc_answer(error);
                hpack::encode_literal(block, b"grpc-status", code.as_bytes());
                hpack::encode_literal(block, b"grpc-message", message.as_bytes());
            }
            frame::write_header_block(&mut self.to_client, stream, true, block);
            if s.client_open {
                // RFC 9113 §8.1: a complete response before the request ended; NO_ERROR
                // tells the client to stop sending.
                frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::NoError);
            }
        } else {
            // An HTTP response under way cannot change its status: the client sees a reset.
            frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::Cancel);
        }
        if !s.ended {
            self.ended(stream, s.request_id, Outcome::Failed(error));
        }
    }

    fn answer_all(&mut self, error: ErrorType) {
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            match self.streams.get(&id) {
                Some(s) if !s.ended => self.answer(id, error),
                _ => {
                    self.streams.remove(&id);
                }
            }
        }
    }

    /// The function connection is gone or cut off: the running invocations are answered
    /// `UnhandledInvocationError`, with no reset sent to it.
    fn function_gone(&mut self) {
        for s in self.streams.values_mut() {
            s.function_open = false;
        }
        self.answer_all(ErrorType::UnhandledInvocationError);
    }

    fn end_all(&mut self, outcome: impl Fn(&Stream) -> Outcome) {
        for (id, s) in std::mem::take(&mut self.streams) {
            if !s.ended {
                let o = outcome(&s);
                self.ended(id, s.request_id, o);
            }
        }
    }

    /// A protocol error by `side`.
    fn error(&mut self, side: Side, e: H2Error) {
        match e {
            H2Error::Connection { .. } => self.fail(side, e),
            H2Error::Stream { stream, code, .. } => {
                let (to_side, to_other) = match side {
                    Side::Client => (&mut self.to_client, &mut self.to_function),
                    Side::Function => (&mut self.to_function, &mut self.to_client),
                };
                frame::write_rst_stream(to_side, stream, code);
                let Some(s) = self.streams.remove(&stream) else {
                    return;
                };
                match side {
                    Side::Client => {
                        if s.function_open {
                            frame::write_rst_stream(to_other, stream, ErrorCode::Cancel);
                        }
                        if !s.ended {
                            self.ended(stream, s.request_id, Outcome::Reset { by: side, code });
                        }
                    }
                    Side::Function => {
                        // Put back for `answer`, which needs it; the function's side is
                        // already reset.
                        let ended = s.ended;
                        self.streams.insert(
                            stream,
                            Stream {
                                function_open: false,
                                ..s
                            },
                        );
                        if ended {
                            frame::write_rst_stream(&mut self.to_client, stream, ErrorCode::Cancel);
                            self.streams.remove(&stream);
                        } else {
                            self.answer(stream, ErrorType::UnhandledInvocationError);
                        }
                    }
                }
            }
        }
    }

    /// A connection error by `side`: GOAWAY to it; the streams end; both connections close.
    fn fail(&mut self, side: Side, e: H2Error) {
        let H2Error::Connection { code, reason } = e else {
            return self.error(side, e);
        };
        self.actions.push(Action::Error { side, error: e });
        match side {
            Side::Client => {
                frame::write_goaway(
                    &mut self.to_client,
                    self.last_stream,
                    code,
                    reason.as_bytes(),
                );
                self.end_all(|_| Outcome::Reset {
                    by: Side::Client,
                    code,
                });
                frame::write_goaway(&mut self.to_function, 0, ErrorCode::NoError, b"");
            }
            Side::Function => {
                frame::write_goaway(&mut self.to_function, 0, code, reason.as_bytes());
                self.function_gone();
                frame::write_goaway(
                    &mut self.to_client,
                    self.last_stream,
                    ErrorCode::NoError,
                    b"",
                );
            }
        }
        self.close();
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.actions.push(Action::Close);
        }
    }

    /// After a shutdown or a peer's GOAWAY, the connection closes once no stream is left.
    fn settle(&mut self) {
        if self.closed || self.drain.is_none() && !self.peer_goaway {
            return;
        }
        if self.streams.is_empty() && self.client.assembly.is_none() {
            frame::write_goaway(&mut self.to_function, 0, ErrorCode::NoError, b"");
            self.close();
        }
    }
}

/// RFC 9113 §6.2, §6.10: while a header block is open, the only frame allowed is its
/// CONTINUATION; a CONTINUATION is allowed only then.
fn continuation_rule<'a>(inbound: &Inbound, raw: Raw<'a>) -> Result<Frame<'a>, H2Error> {
    let open = inbound.assembly.as_ref().map(|a| a.stream);
    match (open, raw.head.kind) {
        (Some(s), Kind::Continuation) if s == raw.head.stream => {}
        (Some(_), _) => {
            return Err(H2Error::conn(
                ErrorCode::Protocol,
                "frame inside a header block",
            ));
        }
        (None, Kind::Continuation) => {
            return Err(H2Error::conn(
                ErrorCode::Protocol,
                "CONTINUATION without HEADERS",
            ));
        }
        (None, _) => {}
    }
    frame::parse(raw.head, raw.payload)
}

/// Gives back to a sender the connection window its dropped DATA took.
fn credit(out: &mut Vec<u8>, flow_len: u32) {
    if flow_len > 0 {
        frame::write_window_update(out, 0, flow_len);
    }
}

/// The gRPC status and message fc-init answers `error` with: DEADLINE_EXCEEDED for a
/// timeout, UNAVAILABLE (which clients may retry) otherwise, as gRPC maps HTTP 502-504.
fn grpc_answer(error: ErrorType) -> (&'static str, &'static str) {
    match error {
        ErrorType::FunctionTimeout => ("4", "FunctionTimeout: no answer within function.timeout"),
        ErrorType::InstanceStopping => ("14", "InstanceStopping: fc-init is shutting down"),
        _ => (
            "14",
            "UnhandledInvocationError: the function connection failed",
        ),
    }
}
