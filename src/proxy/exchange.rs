//! One request, from its head to the end of its answer, as values: [`Exchange`] carries what
//! the request is and keeps through every phase (its id, kind, body and budget share,
//! outcome and FC line, the buffers of both directions), so that nothing is passed as loose
//! arguments and a recycled one starts clean ([`Exchange::reset`]); what only one phase has
//! is that phase's own value (hyper's `Reading::Body(Decoder)`): [`Admission`] (the wait,
//! the slot or the place in the queue), [`Forwarding`] (what admission gave: [`Admitted`];
//! the function connection or the wait for one: [`Wire`] with its [`Writing`] and
//! [`Reading`]), [`Upgraded`]. A phase that needs a slot, a connection or a codec cannot
//! exist without it. Data only: what is done with it is [`super::forward`]'s (the exchange
//! with the function), [`super::admission`]'s and [`super::finish`]'s (how it ends).

use std::io;
use std::time::{Duration, Instant};

use crate::http::codec::{Decoder, Encoder};
use crate::http::fc_error::Invocation;
use crate::http::{RequestHead, ResponseHead};
use crate::metrics::Outcome;
use crate::supervisor::LifecycleCall;

use super::budget::Reservation;
use super::errors::Failure;
use super::limiter::{Permit, Queued};
use super::lines::Started;
use super::shared::{InFlight, BUF};

/// First pause before connecting again to a function whose backlog is full; doubles.
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(1);

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Invoke(Invocation),
    /// An asynchronous submission: stored, never forwarded here.
    Submit,
    Lifecycle(LifecycleCall),
}

/// Where writing the request to the function stands (hyper's `Writing`).
#[derive(Debug)]
pub(super) enum Writing {
    /// The head, the buffered body, then the streamed rest go out as the function takes them.
    Sending,
    /// All of it is written.
    Done,
    /// Writing failed (the function may have answered and closed its side).
    Failed(io::Error),
}

/// Where the function's answer stands (hyper's `Reading`): the head is awaited, or the body
/// is relayed, decoded as it came and encoded for the client; a body phase cannot exist
/// without its codecs.
pub(super) enum Reading {
    Head,
    Body { decoder: Decoder, encoder: Encoder },
}

impl Reading {
    /// The answer has started: its head was taken (and maybe sent on).
    pub(super) fn started(&self) -> bool {
        matches!(self, Reading::Body { .. })
    }

    /// The whole body has been decoded.
    pub(super) fn done(&self) -> bool {
        matches!(self, Reading::Body { decoder, .. } if decoder.is_done())
    }
}

/// What an admitted request holds until its part with the function ends. Its fields drop
/// in their order: the in-flight count goes before the slot is handed on, so the drain never
/// sees a request that holds a slot uncounted.
pub(super) struct Admitted {
    _in_flight: InFlight<'static>,
    _permit: Permit<'static>,
    /// The exchange proper (from its admission to its delivery) ends by then.
    pub deadline: Instant,
    /// Sent once again already (a request is sent again at most once).
    pub resent: bool,
}

impl Admitted {
    pub(super) fn new(
        in_flight: InFlight<'static>,
        permit: Permit<'static>,
        deadline: Instant,
    ) -> Admitted {
        Admitted {
            _in_flight: in_flight,
            _permit: permit,
            deadline,
            resent: false,
        }
    }
}

/// Where a request waiting for admission stands with its concurrency slot: one value, so
/// that a request can never both wait for a slot and hold one.
pub(super) enum Slot {
    /// Not asked for yet.
    None,
    /// Waiting in the limiter's queue; its ticket says when a slot was handed over.
    Queued(Queued<'static>),
    /// Held: dropping the permit hands the slot on.
    Held(Permit<'static>),
    /// Admitted before and sent back to wait for the next instance: slot, in-flight count and
    /// deadline kept.
    Admitted(Admitted),
}

/// The admission phase's own data: what the request waits for, and by when.
pub(super) struct Admission {
    /// Admission ends by then (`function.timeout` from the end of the body).
    pub by: Instant,
    pub slot: Slot,
    /// Registered as waiting for a status change.
    pub waiting_status: bool,
    /// `next-request`: the attempt asked for, and the failures counted before it.
    pub init_seen: Option<u64>,
    /// Waiting for an instance after this one, and why this one failed.
    pub next_instance_of: Option<(u64, Failure)>,
}

impl Admission {
    /// A request whose body is buffered, admitted by `by`.
    pub(super) fn new(by: Instant) -> Admission {
        Admission {
            by,
            slot: Slot::None,
            waiting_status: false,
            init_seen: None,
            next_instance_of: None,
        }
    }

    /// An admitted request sent back to wait for the instance after `instance`, which
    /// failed it with `failure`.
    pub(super) fn again(fw: Forwarding, failure: Failure) -> Admission {
        Admission {
            by: fw.admit_by,
            slot: Slot::Admitted(fw.held),
            waiting_status: false,
            init_seen: None,
            next_instance_of: Some((fw.instance, failure)),
        }
    }
}

/// The forwarding phase's own data: what admission gave the request (its slot, in-flight
/// count and deadline, its instance) and its function connection, or the wait for one.
pub(super) struct Forwarding {
    pub held: Admitted,
    /// The admission's own end, for a request sent back to wait for the next instance.
    pub admit_by: Instant,
    pub instance: u64,
    /// The exchange over its function connection; `None` until one is made.
    pub wire: Option<Wire>,
    /// No connection before then (the function's backlog was full); the pause doubles from
    /// `backoff`.
    pub retry_at: Option<Instant>,
    pub backoff: Duration,
}

impl Forwarding {
    pub(super) fn new(held: Admitted, admit_by: Instant, instance: u64) -> Forwarding {
        Forwarding {
            held,
            admit_by,
            instance,
            wire: None,
            retry_at: None,
            backoff: RETRY_FIRST,
        }
    }

    /// The function's answer has started: its head was taken (and maybe sent on).
    pub(super) fn answer_started(&self) -> bool {
        self.wire.as_ref().is_some_and(|w| w.reading.started())
    }
}

/// The exchange over one function connection: how far the request is written, where the
/// answer stands.
pub(super) struct Wire {
    /// The function connection (index in `Cx::pool`), owned until it is released.
    pub f: usize,
    /// Written of the head, of the buffered body after it, of the streamed rest.
    pub hpos: usize,
    pub bpos: usize,
    pub fpos: usize,
    pub req_encoder: Encoder,
    pub writing: Writing,
    /// The function closed its side (after what is in `Exchange::fn_in`).
    pub fn_eof: bool,
    /// Reading from the function failed (after whatever it sent before).
    pub fn_error: Option<io::Error>,
    pub reading: Reading,
}

impl Wire {
    pub(super) fn new(f: usize, req_encoder: Encoder) -> Wire {
        Wire {
            f,
            hpos: 0,
            bpos: 0,
            fpos: 0,
            req_encoder,
            writing: Writing::Sending,
            fn_eof: false,
            fn_error: None,
            reading: Reading::Head,
        }
    }
}

/// After `101 Switching Protocols`: the two connections relayed byte for byte, the request
/// in flight until either side closes.
pub(super) struct Upgraded {
    pub held: Admitted,
    /// The function connection (index in `Cx::pool`).
    pub f: usize,
    pub fn_eof: bool,
}

/// One request, from its head to the end of its answer: what it is and what it carries
/// through every phase (what one phase alone needs is that phase's own, see
/// [`super::client::Phase`]).
pub(super) struct Exchange {
    pub head: RequestHead,
    /// The request's id: the one place it lives.
    pub request_id: String,
    pub purpose: Purpose,
    /// `Connection: upgrade` with an `Upgrade` other than h2c.
    pub upgrade: bool,
    pub started: Instant,
    /// Its Start line was queued (when, for [`super::lines::Lines::may_send`]).
    pub(super) start_line: Option<Started>,
    /// How the invocation ended: its metrics label and its End line
    /// ([`super::lines::end_error`]).
    pub outcome: Option<Outcome>,
    /// `Prefer: respond-async, wait=N` (docs/reference.md §10): stored, then run by the
    /// async service while the client waits ([`super::handoff`]).
    pub(super) handoff: Option<crate::events::handoff::Waiter>,

    /// The client's body, and what of it was read before admission.
    pub decoder: Decoder,
    pub buffer_limit: usize,
    pub body: Vec<u8>,
    /// The whole body was buffered before admission.
    pub body_complete: bool,
    /// The `Host` a request without one (HTTP/1.0) reaches the function with: the listener's
    /// address as the client reached it (docs/reference.md §12). Empty when the request has its own.
    pub host: String,
    /// The share of `server.body_buffer_total` the buffered body holds.
    pub(super) reserved: Option<Reservation>,

    /// The buffers of the exchange with the function, kept when a recycled exchange starts
    /// again: the request's head (the buffered body goes after it), the streamed rest of the
    /// body framed, what came from the function and is not used yet, the answer's head.
    pub(super) fn_head: Vec<u8>,
    pub(super) fn_out: Vec<u8>,
    pub(super) fn_in: Vec<u8>,
    pub(super) resp: ResponseHead,
}

impl Exchange {
    pub(super) fn new() -> Box<Exchange> {
        Box::new(Exchange::blank(Instant::now()))
    }

    pub(super) fn blank(now: Instant) -> Exchange {
        Exchange {
            head: RequestHead::default(),
            request_id: String::new(),
            purpose: Purpose::Invoke(Invocation::Http),
            upgrade: false,
            started: now,
            start_line: None,
            outcome: None,
            handoff: None,
            decoder: Decoder::passthrough(),
            buffer_limit: 0,
            body: Vec::new(),
            body_complete: false,
            host: String::new(),
            reserved: None,
            fn_head: Vec::new(),
            fn_out: Vec::new(),
            fn_in: Vec::new(),
            resp: ResponseHead::default(),
        }
    }

    /// Ready for a new request (buffers kept, when small).
    pub(super) fn reset(&mut self, now: Instant) {
        let mut fresh = Exchange::blank(now);
        std::mem::swap(&mut fresh.head, &mut self.head);
        for (mine, theirs) in [
            (&mut fresh.body, &mut self.body),
            (&mut fresh.fn_head, &mut self.fn_head),
            (&mut fresh.fn_out, &mut self.fn_out),
            (&mut fresh.fn_in, &mut self.fn_in),
        ] {
            if theirs.capacity() <= BUF {
                theirs.clear();
                std::mem::swap(mine, theirs);
            }
        }
        std::mem::swap(&mut fresh.request_id, &mut self.request_id);
        fresh.request_id.clear();
        std::mem::swap(&mut fresh.resp, &mut self.resp);
        *self = fresh;
    }

    /// Frees the buffers a large request or answer left behind, so that a recycled exchange
    /// keeps only small ones (a buffered body is up to `server.body_buffer`, outside the
    /// budget once its request has ended).
    pub(super) fn shed(&mut self) {
        for buf in [
            &mut self.body,
            &mut self.fn_head,
            &mut self.fn_out,
            &mut self.fn_in,
        ] {
            if buf.capacity() > BUF {
                *buf = Vec::new();
            }
        }
    }

    pub(super) fn invocation(&self) -> Invocation {
        match self.purpose {
            Purpose::Invoke(i) => i,
            _ => Invocation::Http,
        }
    }
}

/// Whether `head` asks for a protocol upgrade fc-init passes through (docs/reference.md §4): both
/// `Connection: upgrade` and an `Upgrade` field, and not `h2c` (dropped: served as HTTP/1.1).
pub(super) fn asks_upgrade(head: &RequestHead) -> bool {
    head.headers.connection_has("upgrade")
        && head
            .header("upgrade")
            .is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"h2c"))
}
