//! The relay of one h2c connection as a pure state machine: bytes from the client, bytes from
//! the function, the passing of time and the shutdown go in; bytes for each side (in
//! [`Conn::to_client`] and [`Conn::to_function`]) and [`Action`]s come out. It makes no system
//! call, reads no clock and draws no random number: request ids and concurrency permits are
//! asked of a [`Host`], the time is an argument.
//!
//! See the module docs of [`super`] for the rules it keeps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::frame::{self, ErrorCode, H2Error, StreamId, DEFAULT_MAX_FRAME_SIZE, PREFACE};
use crate::http::fc_error::ErrorType;

pub mod calm;
mod client;
mod ending;
mod frames;
mod function;
mod inbound;
mod stream;

use inbound::Inbound;
use stream::Stream;

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Function,
}

impl Side {
    /// `client` or `function`, whichever this side is: what differs by side, said in one
    /// place (a reason, a buffer).
    fn pick<T>(self, client: T, function: T) -> T {
        match self {
            Side::Client => client,
            Side::Function => function,
        }
    }
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
    /// The largest decoded request header list (name, value and 32 bytes per field, RFC 9113
    /// §6.5.2): a larger one (an HPACK bomb, or just too much) is answered `:status 431`
    /// and never reaches the function. The proxy gives `server.max_header_bytes`, the
    /// HTTP/1.1 head's bound.
    pub max_request_headers: usize,
    /// The same for the function's response headers and trailers: larger resets the stream
    /// (the client gets `UnhandledInvocationError`). Only fc-init's memory is at stake.
    pub max_response_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(60),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_block: 64 * 1024,
            max_table_size: 64 * 1024,
            max_streams: 1024,
            max_request_headers: 8 * 1024,
            max_response_headers: 64 * 1024,
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
    /// A new stream whose request headers decode to more than `max_request_headers`,
    /// answered `:status 431` by fc-init (never an invocation).
    HeadersTooLarge {
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
    /// The client's flood budgets.
    calm: calm::Calm,
    /// The time of the latest client bytes (for the budgets, where no `now` is passed).
    clock: Option<Instant>,
}

impl Conn {
    pub fn new(mut limits: Limits) -> Conn {
        limits.max_frame_size = limits
            .max_frame_size
            .clamp(DEFAULT_MAX_FRAME_SIZE, frame::MAX_MAX_FRAME_SIZE);
        let mut client = Inbound::new();
        client.blocks.limit(limits.max_request_headers);
        let mut function = Inbound::new();
        function.blocks.limit(limits.max_response_headers);
        Conn {
            limits,
            client,
            function,
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
            calm: calm::Calm::new(),
            clock: None,
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

    /// How many bytes wait in the buffer for `side` (written or not: the shell removes what
    /// it wrote).
    pub fn buffered(&self, side: Side) -> usize {
        match side {
            Side::Client => self.to_client.len(),
            Side::Function => self.to_function.len(),
        }
    }

    /// The actions since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The connection is over (after [`Action::Close`]).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A header block from the client is open (HEADERS without END_HEADERS, its
    /// CONTINUATIONs still to come): the shell bounds it by `header_timeout`, as an HTTP/1.1
    /// head, since no other frame may come on the connection meanwhile.
    pub fn client_block_open(&self) -> bool {
        self.client.assembly.is_some()
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
        self.clock = Some(now);
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
        self.on_function_unavailable(ErrorType::UnhandledInvocationError);
    }

    /// The function cannot be reached (its connection could not be made, or the instance
    /// could not be initialized): every running invocation is answered `error` and the client
    /// connection closes after a GOAWAY.
    pub fn on_function_unavailable(&mut self, error: ErrorType) {
        if self.closed {
            return;
        }
        self.function_gone(error);
        self.close();
    }
}
