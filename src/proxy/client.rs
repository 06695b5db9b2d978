//! One client connection's own state and I/O: its [`Phase`] (each owning the data only it
//! needs), its [`Io`] (input and output buffers, readiness flags, deadline), what a step of
//! a phase reports ([`Step`]), reading within a limit, writing what is queued, and queueing
//! one of fc-init's own answers. What the connection does with requests is [`super::conn`]'s.

use std::io;
use std::time::Instant;

use mio::Token;

use crate::http::codec::Decoder;
use crate::http::fc_error::{write_error_response, ErrorType};
use crate::http::HttpError;
use crate::metrics::Outcome;

use super::cx::Cx;
use super::errors::Failure;
use super::exchange::{Admission, Exchange, Forwarding, Upgraded};
use super::h2c::relay::Relay;
use super::io::Transport;
use super::shared::{OpenSlot, BUF};

/// Where a client connection is; a phase that needs data owns it (hyper's
/// `Reading::Body(Decoder)`), so that no request can wait for a slot and hold one, or be
/// forwarded without its slot, its in-flight count or its deadline.
pub(super) enum Phase {
    Idle,
    Head,
    Body(Buffering),
    /// Waiting for a slot, for the instance, or for a new instance to resend to.
    Admit(Admission),
    /// The store commits a submission; its result comes as mail.
    Storing,
    /// The supervisor serves a lifecycle call; its answer comes as mail.
    Lifecycle,
    /// The exchange with the function, both directions at once.
    Forward(Forwarding),
    /// After `101 Switching Protocols`: bytes relayed both ways as they are.
    Upgraded(Upgraded),
    Deliver,
    Linger,
    /// The connection opened with the HTTP/2 preface: an h2c relay from then on, with its
    /// own function connection and streams ([`super::h2c`]).
    H2c(Box<Relay>),
}

/// The body phase's own data.
#[derive(Default)]
pub(super) struct Buffering {
    /// Waiting for bytes of the body budget to come back.
    pub budget_queued: bool,
}

/// What one step of a connection's phase did; the connection alone acts on it
/// ([`super::conn::drive`]): no step changes its caller's phase.
pub(super) enum Step {
    /// Bytes moved: drive again.
    Progress,
    /// Nothing more now: the next readiness event, mail or deadline drives it again.
    Wait,
    /// The phase is over: the connection enters this one (its deadline is set).
    Enter(Phase),
    /// The function's answer is complete (at most a buffer of it still to write): its slot
    /// and its connection are given back, and the connection delivers the rest.
    Delivered,
    /// The function answered `101 Switching Protocols`: the connection is relayed as it is.
    Upgrade,
    /// The forwarded request never reached the function, whose instance is most likely
    /// gone: it waits (slot, in-flight count and deadline kept) for the next instance
    /// (its deadline is set).
    Readmit(Failure),
    /// The exchange failed: fc-init's own answer, or the connection's close.
    Fail(Failure),
    /// The connection is to be closed now (the client is gone, or nothing more can be said).
    Close,
}

/// What the loop does with a connection after driving it.
pub(super) enum Next {
    Keep,
    Close,
}

/// The connection is to be closed now (the client is gone, or nothing more can be said).
pub(super) struct Gone;

/// Whether client I/O made progress; `Err(Gone)` closes the connection.
pub(super) type Flow = Result<bool, Gone>;

/// One client connection: its I/O, its phase, and the request it serves.
pub(super) struct Client {
    pub io: Io,
    pub phase: Phase,
    pub ex: Option<Box<Exchange>>,
    pub(super) _open: OpenSlot,
    /// Requests read on this connection.
    pub(super) served: u64,
}

/// A client connection's side of the I/O: the stream, readiness, buffers and deadline.
pub(super) struct Io {
    pub stream: Box<dyn Transport>,
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
    /// When the connection is looked at next (the nearest deadline of its phase).
    pub deadline: Instant,
    /// Close (or linger) once the answer in `out` is written.
    pub close_after: bool,
}

impl Client {
    pub(super) fn new(
        stream: Box<dyn Transport>,
        open: OpenSlot,
        token: Token,
        deadline: Instant,
    ) -> Self {
        Client {
            io: Io {
                stream,
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
                deadline,
                close_after: false,
            },
            phase: Phase::Idle,
            ex: None,
            _open: open,
            served: 0,
        }
    }

    /// Bytes of the body budget came back: a body waiting for them may read on.
    pub(super) fn budget_back(&mut self) {
        if let Phase::Body(b) = &mut self.phase {
            b.budget_queued = false;
        }
    }

    /// The instance's status changed: a request waiting for it looks again (and registers
    /// again if it still must wait).
    pub(super) fn status_changed(&mut self) {
        match &mut self.phase {
            Phase::Admit(a) => a.waiting_status = false,
            Phase::H2c(r) => r.waiting_status = false,
            _ => {}
        }
    }
}

impl Io {
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
    c.io.unsent() == 0
        && match &c.phase {
            Phase::Idle => c.io.pending().is_empty(),
            Phase::Head | Phase::Body(_) => true,
            Phase::H2c(r) => r.settled(),
            _ => false,
        }
}

/// Writes what is queued for the client; `Err(Gone)` when the client did not take it (it
/// closed its connection before the answer was complete).
pub(super) fn flush(io: &mut Io, keep_buffer: bool) -> Flow {
    let mut progress = false;
    while io.wr && io.opos < io.out.len() {
        match crate::sys::retry(|| io.stream.write(&io.out[io.opos..])) {
            Ok(0) => return Err(Gone),
            Ok(n) => {
                // A short write filled the socket's buffer: the next edge says when it drains.
                io.wr = io.opos + n == io.out.len();
                io.opos += n;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.wr = false,
            Err(_) => return Err(Gone),
        }
    }
    if io.opos == io.out.len() && io.opos > 0 {
        io.out.clear();
        io.opos = 0;
        if io.out.capacity() > 2 * BUF || !keep_buffer {
            io.out = Vec::new();
        }
    }
    Ok(progress)
}

/// The client did not take the answer: it closed its connection before the answer was
/// complete, which is not the function's fault (docs/reference.md §8). An upgraded
/// connection ends when either side closes: that is no failure.
pub(super) fn lost_answer(ex: Option<&mut Exchange>) {
    if let Some(ex) = ex {
        if let Some(Outcome::Success | Outcome::FunctionError) = ex.outcome {
            ex.outcome = Some(Outcome::ClientClosed);
        }
    }
}

/// Reads from the client while it has input and less than `limit` bytes are pending; returns
/// whether bytes (or the end of input) arrived.
pub(super) fn read_client(read: &mut [u8], io: &mut Io, limit: usize) -> Flow {
    let mut progress = false;
    while io.rd && !io.eof && io.pending().len() < limit {
        if io.ipos > 0 && io.ipos * 2 >= io.inbuf.len() {
            io.inbuf.drain(..io.ipos);
            io.ipos = 0;
        }
        let want = (limit - io.pending().len()).min(read.len());
        match crate::sys::retry(|| io.stream.read(&mut read[..want])) {
            Ok(0) => {
                io.eof = true;
                progress = true;
            }
            Ok(n) => {
                io.inbuf.extend_from_slice(&read[..n]);
                // A short read drained the socket (unless its end is known to be there too):
                // more input is a new edge.
                io.rd = n == want || io.hup;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.rd = false,
            Err(_) => return Err(Gone),
        }
    }
    Ok(progress)
}

/// Reads and drops the client's input until it would block; `Err(Gone)` once the client has
/// closed (or its connection failed). A closing connection, HTTP/1.1 or h2c, lingers on this
/// so that the client, still sending, reads the answer before its connection is reset.
pub(super) fn drop_input(read: &mut [u8], io: &mut Io) -> Flow {
    let mut progress = false;
    while io.rd && !io.eof {
        match crate::sys::retry(|| io.stream.read(read)) {
            Ok(0) => io.eof = true,
            Ok(_) => progress = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.rd = false,
            Err(_) => return Err(Gone),
        }
    }
    if io.eof {
        return Err(Gone);
    }
    Ok(progress)
}

/// Queues one of fc-init's own answers for the request `request_id` (`None`: a head that
/// never became a request, which gets a fresh id); the connection delivers it and goes on
/// (or closes) once it is out.
pub(super) fn own_answer(
    cx: &mut Cx,
    io: &mut Io,
    request_id: Option<&str>,
    answer: (u16, ErrorType, &str),
    close: bool,
) -> Step {
    let (status, error, message) = answer;
    let fresh;
    let request_id = match request_id {
        Some(id) => id,
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
    io.out.extend_from_slice(&cx.bufs.answer);
    io.close_after |= close;
    set_deadline(cx, io, cx.now + cx.p.cfg.server.idle_timeout);
    Step::Enter(Phase::Deliver)
}

/// The client closed its side in the middle of the body `d` decodes.
pub(super) fn cut_short(d: &mut Decoder) -> HttpError {
    d.at_eof().err().unwrap_or(HttpError::UnexpectedEof)
}

/// The connection's deadline is now `deadline` (the nearest that matters in its phase).
pub(super) fn set_deadline(cx: &mut Cx, io: &mut Io, deadline: Instant) {
    io.deadline = deadline;
    cx.note_deadline(deadline);
}
