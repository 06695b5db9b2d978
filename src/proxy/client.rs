//! One client connection's own state and I/O: its phase, its input and output buffers and
//! readiness flags, reading within a limit, writing what is queued, and queueing one of
//! fc-init's own answers. What the connection does with requests is [`super::conn`]'s.

use std::io;
use std::time::Instant;

use mio::Token;

use crate::http::codec::Decoder;
use crate::http::fc_error::{write_error_response, ErrorType};
use crate::http::HttpError;
use crate::metrics::Outcome;

use super::cx::Cx;
use super::exchange::Exchange;
use super::h2c::relay::Relay;
use super::io::Transport;
use super::shared::{OpenSlot, BUF};

/// Where a client connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Idle,
    Head,
    Body,
    /// Waiting for a slot, for the instance, or for a new instance to resend to.
    Admit,
    /// The store commits a submission; its result comes as mail.
    Storing,
    /// The supervisor serves a lifecycle call; its answer comes as mail.
    Lifecycle,
    /// The exchange with the function, both directions at once.
    Forward,
    /// After `101 Switching Protocols`: bytes relayed both ways as they are.
    Upgraded,
    Deliver,
    Linger,
}

/// What the loop does with a connection after driving it.
pub(super) enum Next {
    Keep,
    Close,
}

/// The connection is to be closed now (the client is gone, or nothing more can be said).
pub(super) struct Gone;

/// Whether a step made progress; `Err(Gone)` closes the connection.
pub(super) type Flow = Result<bool, Gone>;

pub(super) struct Client {
    pub stream: Box<dyn Transport>,
    pub(super) _open: OpenSlot,
    pub token: Token,
    /// May read / may write (edge-triggered: cleared only by `EAGAIN`).
    pub rd: bool,
    pub wr: bool,
    /// The peer's end of input was signalled (no further edge will come for it).
    pub hup: bool,
    pub eof: bool,
    /// Read from the client, from `ipos` on not yet used; freed when empty between requests.
    pub inbuf: Vec<u8>,
    pub ipos: usize,
    /// Bytes of the pending head already seen without its end.
    pub(super) scanned: usize,
    /// To be written to the client, from `opos` on.
    pub out: Vec<u8>,
    pub opos: usize,
    pub phase: Phase,
    pub deadline: Instant,
    /// Requests read on this connection.
    pub(super) served: u64,
    /// Close (or linger) once the answer in `out` is written.
    pub close_after: bool,
    pub ex: Option<Box<Exchange>>,
    /// The connection opened with the HTTP/2 preface: it is an h2c relay from then on
    /// ([`super::h2c`]), and the phases above no longer apply.
    pub(super) h2c: Option<Box<Relay>>,
}

impl Client {
    pub(super) fn new(
        stream: Box<dyn Transport>,
        open: OpenSlot,
        token: Token,
        deadline: Instant,
    ) -> Self {
        Client {
            stream,
            _open: open,
            token,
            rd: true,
            wr: true,
            hup: false,
            eof: false,
            inbuf: Vec::new(),
            ipos: 0,
            scanned: 0,
            out: Vec::new(),
            opos: 0,
            phase: Phase::Idle,
            deadline,
            served: 0,
            close_after: false,
            ex: None,
            h2c: None,
        }
    }

    /// Bytes read and not used yet.
    pub(super) fn pending(&self) -> &[u8] {
        &self.inbuf[self.ipos..]
    }

    /// Bytes queued for the client and not written yet.
    pub(super) fn unsent(&self) -> usize {
        self.out.len() - self.opos
    }
}

/// Whether `c` has nothing left to say before fc-init exits: no byte of an answer unwritten,
/// and no request that fc-init has read and not answered. A request still arriving (its head
/// or its buffered body) is not waited for.
pub(super) fn settled(c: &Client) -> bool {
    if let Some(r) = &c.h2c {
        return r.settled();
    }
    c.unsent() == 0
        && match c.phase {
            Phase::Idle => c.pending().is_empty(),
            Phase::Head | Phase::Body => true,
            _ => false,
        }
}

/// Writes what is queued for the client.
pub(super) fn flush(c: &mut Client) -> Flow {
    let mut progress = false;
    while c.wr && c.opos < c.out.len() {
        match crate::sys::retry(|| c.stream.write(&c.out[c.opos..])) {
            Ok(0) => return Err(lost_answer(c)),
            Ok(n) => {
                // A short write filled the socket's buffer: the next edge says when it drains.
                c.wr = c.opos + n == c.out.len();
                c.opos += n;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.wr = false,
            Err(_) => return Err(lost_answer(c)),
        }
    }
    if c.opos == c.out.len() && c.opos > 0 {
        c.out.clear();
        c.opos = 0;
        // A busy connection keeps its buffer; an upgraded one (often idle for long) does not.
        if c.out.capacity() > 2 * BUF || c.phase == Phase::Upgraded {
            c.out = Vec::new();
        }
    }
    Ok(progress)
}

/// The client did not take the answer: it closed its connection before the answer was
/// complete, which is not the function's fault (docs/reference.md §8).
pub(super) fn lost_answer(c: &mut Client) -> Gone {
    if let Some(ex) = c.ex.as_mut() {
        // An upgraded connection ends when either side closes: that is no failure.
        if let (Some(Outcome::Success | Outcome::FunctionError), false) =
            (ex.outcome, c.phase == Phase::Upgraded)
        {
            ex.outcome = Some(Outcome::ClientClosed);
        }
    }
    Gone
}

/// Reads from the client while it has input and less than `limit` bytes are pending; returns
/// whether bytes (or the end of input) arrived.
pub(super) fn read_client(cx: &mut Cx, c: &mut Client, limit: usize) -> Flow {
    let mut progress = false;
    while c.rd && !c.eof && c.pending().len() < limit {
        if c.ipos > 0 && c.ipos * 2 >= c.inbuf.len() {
            c.inbuf.drain(..c.ipos);
            c.ipos = 0;
        }
        let want = (limit - c.pending().len()).min(cx.bufs.read.len());
        match crate::sys::retry(|| c.stream.read(&mut cx.bufs.read[..want])) {
            Ok(0) => {
                c.eof = true;
                progress = true;
            }
            Ok(n) => {
                c.inbuf.extend_from_slice(&cx.bufs.read[..n]);
                // A short read drained the socket (unless its end is known to be there too):
                // more input is a new edge.
                c.rd = n == want || c.hup;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.rd = false,
            Err(_) => return Err(Gone),
        }
    }
    Ok(progress)
}

/// Queues one of fc-init's own answers; the connection goes on (or closes) once it is out.
pub(super) fn own_answer(
    cx: &mut Cx,
    c: &mut Client,
    status: u16,
    error: ErrorType,
    message: &str,
    close: bool,
) {
    // The request's own id, the one place it lives; a head that never became a request
    // gets a fresh one.
    let fresh;
    let request_id = match c.ex.as_ref() {
        Some(ex) => ex.request_id.as_str(),
        None => {
            fresh = crate::http::new_request_id();
            fresh.as_str()
        }
    };
    write_error_response(
        &mut cx.bufs.answer,
        status,
        error,
        request_id,
        message,
        close,
    );
    c.out.extend_from_slice(&cx.bufs.answer);
    c.close_after |= close;
    enter_deliver(cx, c, cx.now + cx.p.cfg.server.idle_timeout);
}

/// The answer is queued: it is delivered by `deadline`.
pub(super) fn enter_deliver(cx: &mut Cx, c: &mut Client, deadline: Instant) {
    c.phase = Phase::Deliver;
    set_deadline(cx, c, deadline);
}

/// The client closed its side in the middle of the body `d` decodes.
pub(super) fn cut_short(d: &mut Decoder) -> HttpError {
    d.at_eof().err().unwrap_or(HttpError::UnexpectedEof)
}

/// `c`'s deadline is now `deadline` (the nearest that matters in its phase).
pub(super) fn set_deadline(cx: &mut Cx, c: &mut Client, deadline: Instant) {
    c.deadline = deadline;
    cx.note_deadline(deadline);
}
