//! One exchange with the function: send the request (head with the contract's `x-fc-*` fields,
//! hop-by-hop fields removed, then the body streamed), read the answer's head, send it on to
//! the client and stream its body.
//!
//! The whole exchange is bounded by `function.timeout` from the moment it starts: connecting,
//! writing to the function and reading from it all share that deadline (`FunctionTimeout`
//! while nothing has been sent to the client yet). Writes to the client are bounded by
//! `server.idle_timeout` per write instead: a client that stops reading is dropped.
//!
//! Syscalls: a head and a body that is already complete in the buffer go out in one `writev`,
//! in both directions, which makes a small request one read and one write on each side.
//!
//! Framing towards the client: a Content-Length answer keeps it; a chunked or close-delimited
//! answer is sent chunked to an HTTP/1.1 client (so its connection stays open) and
//! close-delimited to an HTTP/1.0 one.
//!
//! Failure modes: every step returns its [`Failure`] variant. Once the response head has been
//! written, failures are [`Failure::ResponseBody`] and the client connection must be closed.
//! The function connection goes back to the pool only after a complete, clean exchange that
//! the function did not mark `close`.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::http::body::write_all_parts;
use crate::http::fc_error::Invocation;
use crate::http::write::{write_request_head, write_response_head};
use crate::http::{
    copy_body, read_response_head_into, BodyFraming, Buffered, HttpError, Limits, Output,
    RequestHead, ResponseHead, CONTINUE_100,
};

use super::errors::Failure;
use super::pool::{FnConn, FUNCTION_BUFFER};
use super::timed::Timed;
use super::Proxy;

/// The client side of a connection.
pub type Client = Buffered<Timed<TcpStream>>;

/// What happened, for the log line and the connection's next step.
pub struct Exchange {
    pub status: u16,
    /// The answer carried `x-fc-status: 404` (an event invocation's failure, CONTRACT §3).
    pub fc_status_404: bool,
    /// The client connection may carry another request.
    pub keep_alive: bool,
}

/// Reused buffers of one client connection.
#[derive(Default)]
pub struct Scratch {
    pub response: ResponseHead,
    pub out: Vec<u8>,
}

/// Writes to the client, each write bounded by `idle_timeout` from its start.
struct ClientOut<'a> {
    io: &'a mut Timed<TcpStream>,
    idle: std::time::Duration,
}

impl Write for ClientOut<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.set_write_deadline(Some(Instant::now() + self.idle));
        self.io.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.io.set_write_deadline(Some(Instant::now() + self.idle));
        self.io.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `parts` to the client.
pub fn write_client(p: &Proxy, client: &mut Client, parts: [&[u8]; 3]) -> io::Result<()> {
    let mut out = ClientOut {
        io: client.get_mut(),
        idle: p.cfg.server.idle_timeout,
    };
    write_all_parts(&mut out, parts)
}

/// Runs the exchange for the request `head` (whose body is pending in `client`).
pub fn forward(
    p: &Proxy,
    client: &mut Client,
    head: &RequestHead,
    scratch: &mut Scratch,
    request_id: &str,
    invocation: Invocation,
    instance: u64,
) -> Result<Exchange, Failure> {
    let deadline = Instant::now() + p.cfg.function.timeout;
    let mut conn = p.pool.get(instance, deadline).map_err(Failure::Connect)?;
    conn.io.set_deadline(Some(deadline));
    let control_path = match invocation {
        Invocation::Event => "/invoke",
        Invocation::Http => "/http-invoke",
    };
    let extra = [
        ("x-fc-request-id", request_id),
        ("x-fc-control-path", control_path),
        ("x-fc-function-name", p.cfg.function.name.as_str()),
        ("x-fc-function-timeout", p.function_timeout.as_str()),
    ];
    let out = &mut scratch.out;
    write_request_head(out, head, &extra, head.framing);

    // The request.
    match head.framing {
        BodyFraming::Length(n) if n as usize <= client.buffer().len() => {
            let n = n as usize;
            write_all_parts(&mut conn.io, [out, &client.buffer()[..n], b""])
                .map_err(Failure::SendHead)?;
            client.consume_bytes(n);
        }
        BodyFraming::None => {
            write_all_parts(&mut conn.io, [out, b"", b""]).map_err(Failure::SendHead)?;
        }
        framing => {
            write_all_parts(&mut conn.io, [out, b"", b""]).map_err(Failure::SendHead)?;
            if head.expect_continue && client.buffer().is_empty() {
                write_client(p, client, [CONTINUE_100, b"", b""])
                    .map_err(|e| Failure::RequestBody(HttpError::Read(e)))?;
            }
            let output = match framing {
                BodyFraming::Chunked => Output::Chunked,
                _ => Output::Raw,
            };
            client.set_deadline(Some(deadline));
            copy_body(client, &mut conn.io, framing, output, p.cfg.server.max_body)
                .map_err(Failure::RequestBody)?;
        }
    }

    relay(p, client, head, scratch, request_id, conn)
}

/// The second half of an exchange whose request has been sent: reads the function's answer
/// from `conn` (bytes of it may already be in its buffer, e.g. from the event loop) and relays
/// it to the client. Bounded by `conn`'s deadline for the reading side.
pub fn relay(
    p: &Proxy,
    client: &mut Client,
    head: &RequestHead,
    scratch: &mut Scratch,
    request_id: &str,
    mut conn: FnConn,
) -> Result<Exchange, Failure> {
    let out = &mut scratch.out;
    let resp = &mut scratch.response;
    let limits = Limits {
        max_header_bytes: FUNCTION_BUFFER,
        max_headers: crate::http::MAX_HEADERS,
        require_host: false,
    };
    read_response_head_into(&mut conn.io, &limits, head.method() == "HEAD", resp)
        .map_err(Failure::ResponseHead)?;
    let (exchange, output) = answer_head(p, head, resp, request_id, out);

    // The answer's body.
    match resp.framing {
        BodyFraming::Length(n) if n as usize <= conn.io.buffer().len() => {
            let n = n as usize;
            write_client(p, client, [out, &conn.io.buffer()[..n], b""])
                .map_err(Failure::WriteResponse)?;
            conn.io.consume_bytes(n);
        }
        BodyFraming::None => {
            write_client(p, client, [out, b"", b""]).map_err(Failure::WriteResponse)?;
        }
        src_framing => {
            write_client(p, client, [out, b"", b""]).map_err(Failure::WriteResponse)?;
            let mut dst = ClientOut {
                io: client.get_mut(),
                idle: p.cfg.server.idle_timeout,
            };
            copy_body(&mut conn.io, &mut dst, src_framing, output, u64::MAX)
                .map_err(Failure::ResponseBody)?;
        }
    }
    if resp.keep_alive && conn.io.buffer().is_empty() {
        p.pool.put(conn);
    }
    Ok(exchange)
}

/// Decides the framing towards the client and writes the answer's head into `out`: the
/// function's fields minus hop-by-hop ones, `x-fc-request-id`, and `Connection` as needed. A
/// Content-Length answer keeps it; a chunked or close-delimited one goes out chunked to an
/// HTTP/1.1 client and close-delimited to an HTTP/1.0 one. Returns what the exchange is, for
/// the log line, and how the body must be written.
pub fn answer_head(
    p: &Proxy,
    head: &RequestHead,
    resp: &ResponseHead,
    request_id: &str,
    out: &mut Vec<u8>,
) -> (Exchange, Output) {
    let client_11 = head.version_minor >= 1;
    let mut keep_alive = head.keep_alive && !p.stopping();
    let (framing, output) = match resp.framing {
        BodyFraming::Length(n) => (BodyFraming::Length(n), Output::Raw),
        BodyFraming::None => (BodyFraming::None, Output::Raw),
        BodyFraming::Chunked | BodyFraming::UntilClose if client_11 => {
            (BodyFraming::Chunked, Output::Chunked)
        }
        BodyFraming::Chunked | BodyFraming::UntilClose => {
            keep_alive = false;
            (BodyFraming::UntilClose, Output::Raw)
        }
    };
    let connection = if !keep_alive {
        Some("close")
    } else if !client_11 {
        Some("keep-alive")
    } else {
        None
    };
    let extra_id = [("x-fc-request-id", request_id), ("Connection", "")];
    let extra: &[(&str, &str)] = match connection {
        Some(c) => &[extra_id[0], ("Connection", c)],
        None => &extra_id[..1],
    };
    write_response_head(out, resp, extra, framing);
    let exchange = Exchange {
        status: resp.status,
        fc_status_404: resp
            .header("x-fc-status")
            .is_some_and(|v| v.trim_ascii() == b"404"),
        keep_alive,
    };
    (exchange, output)
}
