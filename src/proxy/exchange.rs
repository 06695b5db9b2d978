//! One request, from its head to the end of its answer, as one value: [`Exchange`] carries
//! everything about it (its id, kind, deadlines, slot, in-flight count, body budget share,
//! outcome and FC lines, both directions' buffers and codecs), so that nothing is passed as
//! loose arguments and a recycled one starts clean ([`Exchange::reset`]). Data only: what is
//! done with it is [`super::forward`]'s (the exchange with the function),
//! [`super::admission`]'s and [`super::finish`]'s (how it ends).

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

/// Where a request stands with its concurrency slot: one value, so that a request can
/// never both wait for a slot and hold one.
pub(super) enum Slot {
    /// Not asked for yet (or given back).
    None,
    /// Waiting in the limiter's queue; its ticket says when a slot was handed over.
    Queued(Queued<'static>),
    /// Held: dropping the permit hands the slot on (it is kept for that alone).
    Held(#[allow(dead_code)] Permit<'static>),
}

impl Slot {
    /// The place in the queue, taken out (the slot is `None` then); `None` when not queued.
    pub(super) fn take_queued(&mut self) -> Option<Queued<'static>> {
        match std::mem::replace(self, Slot::None) {
            Slot::Queued(q) => Some(q),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// One request, from its head to the end of its answer.
pub(super) struct Exchange {
    pub head: RequestHead,
    pub request_id: String,
    pub purpose: Purpose,
    /// `Connection: upgrade` with an `Upgrade` other than h2c.
    pub upgrade: bool,
    pub started: Instant,
    /// Admission ends by then.
    pub(super) admit_deadline: Instant,
    /// The exchange proper (from its start to its delivery) ends by then.
    pub(super) deadline: Instant,
    /// Dropped in this order (in-flight first) when the function's part ends.
    pub(super) in_flight: Option<InFlight<'static>>,
    pub(super) slot: Slot,
    /// Registered as waiting for a status change.
    pub waiting_status: bool,
    /// `next-request`: the attempt asked for, and the failures counted before it.
    pub(super) init_seen: Option<u64>,
    /// Waiting for an instance after this one, and why this one failed.
    pub(super) next_instance_of: Option<(u64, Failure)>,
    /// The Start line was written (its epoch, see `Cx::log_epoch`).
    pub(super) start_line: Option<Started>,
    /// How the invocation ended: its metrics label and its End line ([`finish::end_error`]).
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
    /// Waiting for bytes of that budget to come back.
    pub budget_queued: bool,

    /// The function connection (index in `Cx::fns`), its instance.
    pub(super) fnc: Option<usize>,
    pub(super) instance: u64,
    pub(super) resent: bool,
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Duration,
    /// The request's head (and the buffered body after it, at `bpos`).
    pub(super) fn_head: Vec<u8>,
    pub(super) hpos: usize,
    pub(super) bpos: usize,
    /// The streamed rest of the body, framed.
    pub(super) fn_out: Vec<u8>,
    pub(super) fpos: usize,
    pub(super) req_encoder: Encoder,
    /// Where writing the request stands.
    pub(super) writing: Writing,

    /// From the function, not yet used.
    pub(super) fn_in: Vec<u8>,
    pub(super) fn_eof: bool,
    /// Reading from the function failed (after whatever it sent before).
    pub(super) fn_error: Option<io::Error>,
    pub(super) resp: ResponseHead,
    /// Where the function's answer stands: its head awaited, or its body relayed.
    pub(super) reading: Reading,
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
            admit_deadline: now,
            deadline: now,
            in_flight: None,
            slot: Slot::None,
            waiting_status: false,
            init_seen: None,
            next_instance_of: None,
            start_line: None,
            outcome: None,
            handoff: None,
            decoder: Decoder::passthrough(),
            buffer_limit: 0,
            body: Vec::new(),
            body_complete: false,
            host: String::new(),
            reserved: None,
            budget_queued: false,
            fnc: None,
            instance: 0,
            resent: false,
            retry_at: None,
            backoff: RETRY_FIRST,
            fn_head: Vec::new(),
            hpos: 0,
            bpos: 0,
            fn_out: Vec::new(),
            fpos: 0,
            req_encoder: Encoder::Raw,
            writing: Writing::Sending,
            fn_in: Vec::new(),
            fn_eof: false,
            fn_error: None,
            resp: ResponseHead::default(),
            reading: Reading::Head,
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

    /// Everything the function was sent is still here to send again: the whole body was
    /// buffered, and nothing of an answer has arrived.
    pub(super) fn resendable(&self) -> bool {
        self.body_complete && !self.resent && self.fn_in.is_empty() && !self.reading.started()
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
