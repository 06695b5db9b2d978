//! One client connection: read requests one after the other (keep-alive, pipelining), decide
//! for each whether it may go to the function, forward it, and write the FC Invoke lines.
//!
//! Timeouts: waiting for the first byte of a request is bounded by `server.idle_timeout`; from
//! that byte, the whole head by `server.header_timeout` (a 408 is sent, then the connection is
//! closed). Admission: a request waits for a slot ([`super::limiter`]) and for an initialized
//! instance, both within `function.timeout` from its arrival; under `next-request` a request
//! that finds initialization failed asks the supervisor for one attempt and waits for its
//! outcome.
//!
//! After a malformed request, an error that left the request body unread, or a failure once
//! the answer had started, the connection is closed: where the next request would begin is
//! unknown. A panic anywhere in here is caught in [`run`] and closes only this connection.

use std::net::TcpStream;
use std::os::fd::AsFd;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::config::OnFailure;
use crate::http::fc_error::{write_error_response, ErrorType, Invocation};
use crate::http::{
    new_request_id, read_request_head_into, valid_request_id, BodyFraming, Buffered, HttpError,
    RequestHead,
};
use crate::metrics::Outcome;
use crate::state::{NotReady, Phase};
use crate::supervisor::Event;

use super::errors::Failure;
use super::forward::{forward, relay as forward_relay, write_client, Client, Scratch};
use super::timed::Timed;
use super::{InFlight, Proxy};

/// Serves a connection the event loop hands over (a request it does not serve itself),
/// starting with the bytes the loop already read from it; never panics.
pub(super) fn run_handed_over(p: &Proxy, stream: TcpStream, pending: &[u8]) {
    guarded(|| {
        if let Err(e) = stream.set_nonblocking(false) {
            log::debug!("closing a handed-over connection: {e}");
            return;
        }
        let client = Buffered::with_pending(Timed::new(stream, p.tick), capacity(p), pending);
        serve(p, None, Some(client));
    });
}

/// An exchange the event loop started and hands over: its request is with the function, the
/// answer (whose start may already be in `conn`'s buffer) is too large or not Content-Length
/// framed for the loop to relay. Everything the request holds travels with it.
pub(super) struct Relay {
    pub head: RequestHead,
    pub request_id: String,
    pub invocation: Invocation,
    pub started: Instant,
    pub stage: Stage,
    pub permit: super::limiter::Permit<'static>,
    pub in_flight: InFlight<'static>,
}

/// Where a handed-over exchange stands.
pub(super) enum Stage {
    /// The request is with the function; its answer comes on this connection.
    Answer(super::pool::FnConn),
    /// Nothing reached the function of `instance` (it refused, or the connection was reset
    /// with the request unread): send it again, to the next instance if this one is gone.
    /// The request body is at the start of the handed-over bytes.
    Resend { instance: u64 },
}

/// Finishes `relay` on this thread (the answer, the metrics, the End line), then serves the
/// connection on; never panics.
pub(super) fn run_relay(p: &Proxy, stream: TcpStream, pending: &[u8], relay: Relay) {
    guarded(|| {
        let Relay {
            head,
            request_id,
            invocation,
            started,
            stage,
            permit,
            in_flight,
        } = relay;
        // Blocking calls from here on (deadlines are on the buffers).
        let blocking = match &stage {
            Stage::Answer(conn) => match conn.io.get_ref().get_ref() {
                crate::http::client::Conn::Unix(s) => s.set_nonblocking(false),
                crate::http::client::Conn::Tcp(s) => s.set_nonblocking(false),
            },
            Stage::Resend { .. } => Ok(()),
        };
        if let Err(e) = blocking.and_then(|()| stream.set_nonblocking(false)) {
            log::debug!("closing a handed-over connection: {e}");
            return;
        }
        let mut client = Buffered::with_pending(Timed::new(stream, p.tick), capacity(p), pending);
        let mut scratch = Scratch::default();
        let result = match stage {
            Stage::Answer(conn) => {
                forward_relay(p, &mut client, &head, &mut scratch, &request_id, conn)
            }
            Stage::Resend { instance } => forward_or_next_instance(
                p,
                &mut client,
                &head,
                &mut scratch,
                &request_id,
                invocation,
                instance,
                started + p.cfg.function.timeout,
            ),
        };
        // As in `invoke`: the request leaves the function's side before it is concluded.
        drop(in_flight);
        drop(permit);
        let keep = conclude(
            p,
            &mut client,
            &head,
            &mut scratch,
            &request_id,
            invocation,
            started,
            result,
        );
        if keep {
            serve(p, None, Some(client));
        }
    });
}

/// Runs `f`, catching a panic: it closes only this connection (the counters are restored by
/// guards while unwinding).
fn guarded(f: impl FnOnce()) {
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    if result.is_err() {
        log::error!("a connection thread panicked; the connection was closed");
    }
}

/// The client buffer's size: the longest head accepted.
fn capacity(p: &Proxy) -> usize {
    p.cfg.server.max_header_bytes.max(1024)
}

/// How long a keep-alive connection may sit idle before its buffers are given back: a busy
/// connection keeps them (no allocation per request), an idle one costs only its thread.
const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Waits until `io` is readable or `deadline` passes; true when there is something to read
/// (data or end of stream).
fn wait_readable(io: &Timed<TcpStream>, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(io.get_ref().as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if Instant::now() >= deadline => return false,
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => return true,
            Err(_) => return false,
        }
    }
}

/// The connection loop: exactly one of `idle_io` (waiting without buffers) and `client` (with
/// its buffer, maybe holding the start of the next request) is set.
fn serve(p: &Proxy, mut idle_io: Option<Timed<TcpStream>>, mut client: Option<Client>) {
    let capacity = capacity(p);
    let mut head = RequestHead::default();
    let mut scratch = Scratch::default();
    let mut request_id = String::new();
    loop {
        // Wait for the next request, up to the idle timeout; without buffers after a while.
        let idle_until = Instant::now() + p.cfg.server.idle_timeout;
        if let Some(c) = client.as_mut().filter(|c| c.buffer().is_empty()) {
            c.set_deadline(Some(idle_until.min(Instant::now() + RELEASE_AFTER)));
            match c.fill_more() {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if let Some(c) = client.take() {
                        idle_io = Some(c.into_inner());
                    }
                    head = RequestHead::default();
                    scratch = Scratch::default();
                    request_id = String::new();
                    super::give_back_memory();
                }
                Err(_) => return,
            }
        }
        if let Some(io) = idle_io.take() {
            if !wait_readable(&io, idle_until) {
                return;
            }
            client = Some(Buffered::with_capacity(io, capacity));
        }
        let Some(client) = client.as_mut() else {
            return;
        };
        client.set_deadline(Some(Instant::now() + p.cfg.server.header_timeout));
        match read_request_head_into(client, &p.limits, &mut head) {
            Ok(()) => {}
            Err(HttpError::ConnectionClosed) => return,
            Err(e) => {
                let failure = Failure::BadRequest(e);
                log::debug!("closing a client connection: {failure}");
                let id = new_request_id();
                answer_error(
                    p,
                    client,
                    &mut scratch.out,
                    &failure,
                    Invocation::Http,
                    &id,
                    false,
                );
                return;
            }
        }
        client.set_deadline(None);
        if !handle(p, client, &head, &mut scratch, &mut request_id) {
            return;
        }
    }
}

/// Serves one parsed request; returns whether the connection stays open.
fn handle(
    p: &Proxy,
    client: &mut Client,
    head: &RequestHead,
    scratch: &mut Scratch,
    request_id: &mut String,
) -> bool {
    let invocation = if head.method() == "POST" && head.path() == "/invoke" {
        Invocation::Event
    } else {
        Invocation::Http
    };
    request_id.clear();
    match head.header("x-fc-request-id") {
        Some(id) if valid_request_id(id) => {
            // Valid ids are ASCII.
            request_id.push_str(std::str::from_utf8(id).unwrap_or_default());
        }
        _ => request_id.push_str(&new_request_id()),
    }
    if super::submit::is_async(head) {
        return super::submit::submit(p, client, head, &mut scratch.out, request_id);
    }
    let started = Instant::now();
    if p.cfg.log.invocations {
        crate::logging::line(format_args!("{}{request_id}", super::INVOKE_START));
    }
    let result = invoke(p, client, head, scratch, request_id, invocation);
    conclude(
        p, client, head, scratch, request_id, invocation, started, result,
    )
}

/// How an exchange the function answered counts: an event invocation fails on a non-2xx
/// answer or `x-fc-status: 404` (CONTRACT §3); an HTTP invocation never does. Returns the
/// metrics outcome and whether the End line marks a failure.
pub(super) fn answered(invocation: Invocation, x: &super::forward::Exchange) -> (Outcome, bool) {
    let failed =
        invocation == Invocation::Event && (!(200..300).contains(&x.status) || x.fc_status_404);
    let outcome = match failed {
        true => Outcome::FunctionError,
        false => Outcome::Success,
    };
    (outcome, failed)
}

/// The End line of an invocation (CONTRACT §5), when `log.invocations` is on.
pub(super) fn end_line(p: &Proxy, request_id: &str, failed: bool) {
    if !p.cfg.log.invocations {
        return;
    }
    let error = match failed {
        true => super::END_ERROR,
        false => "",
    };
    crate::logging::line(format_args!("{}{request_id}{error}", super::INVOKE_END));
}

/// After the exchange (or its failure): the metrics, fc-init's own answer for a failure, the
/// End line. Returns whether the connection stays open.
#[allow(clippy::too_many_arguments)]
fn conclude(
    p: &Proxy,
    client: &mut Client,
    head: &RequestHead,
    scratch: &mut Scratch,
    request_id: &str,
    invocation: Invocation,
    started: Instant,
    result: Result<super::forward::Exchange, Failure>,
) -> bool {
    let (keep_alive, failed) = match result {
        Ok(x) => {
            let (outcome, failed) = answered(invocation, &x);
            p.metrics.record(outcome, started.elapsed());
            (x.keep_alive, failed)
        }
        Err(failure) => {
            let error = failure
                .answer(invocation)
                .map_or(ErrorType::UnhandledInvocationError, |a| a.error);
            p.metrics.record(Outcome::Error(error), started.elapsed());
            log::debug!("request {request_id}: {failure}");
            let keep = can_continue(&failure) && body_consumed(client, head);
            let keep = keep && head.keep_alive && !p.stopping();
            let answered = answer_error(
                p,
                client,
                &mut scratch.out,
                &failure,
                invocation,
                request_id,
                keep,
            );
            (keep && answered, true)
        }
    };
    end_line(p, request_id, failed);
    keep_alive
}

/// Whether a failure leaves the client connection in a state where the next request can be
/// read (the request body not half-read, nothing half-written).
pub(super) fn can_continue(f: &Failure) -> bool {
    matches!(
        f,
        Failure::QueueFull
            | Failure::QueueTimeout
            | Failure::Initialization(_)
            | Failure::Connect(_)
    )
}

/// Consumes the request body when it is already complete in the buffer (then the connection
/// can go on after an error answer); false when it is not.
fn body_consumed(client: &mut Client, head: &RequestHead) -> bool {
    match head.framing {
        BodyFraming::None => true,
        BodyFraming::Length(n) if n as usize <= client.buffer().len() => {
            client.consume_bytes(n as usize);
            true
        }
        _ => false,
    }
}

/// Writes fc-init's own answer for `failure`; returns whether it was written.
fn answer_error(
    p: &Proxy,
    client: &mut Client,
    out: &mut Vec<u8>,
    failure: &Failure,
    invocation: Invocation,
    request_id: &str,
    keep_alive: bool,
) -> bool {
    let Some(a) = failure.answer(invocation) else {
        return false;
    };
    write_error_response(out, a.status, a.error, request_id, &a.message, !keep_alive);
    write_client(p, client, [out, b"", b""]).is_ok()
}

/// Admission, then the exchange with the function.
fn invoke(
    p: &Proxy,
    client: &mut Client,
    head: &RequestHead,
    scratch: &mut Scratch,
    request_id: &str,
    invocation: Invocation,
) -> Result<super::forward::Exchange, Failure> {
    if let BodyFraming::Length(n) = head.framing {
        if n > p.cfg.server.max_body {
            return Err(Failure::BodyTooLarge);
        }
    }
    if p.stopping() {
        return Err(Failure::Stopping);
    }
    let arrival_deadline = Instant::now() + p.cfg.function.timeout;
    let _permit = p.limiter.acquire(arrival_deadline).map_err(|d| match d {
        super::limiter::Denied::Full => Failure::QueueFull,
        super::limiter::Denied::Timeout => Failure::QueueTimeout,
        super::limiter::Denied::Closed => Failure::Stopping,
    })?;
    let instance = wait_ready(p, arrival_deadline)?;
    let Some(_in_flight) = InFlight::enter(p) else {
        return Err(Failure::Stopping);
    };
    forward_or_next_instance(
        p,
        client,
        head,
        scratch,
        request_id,
        invocation,
        instance,
        arrival_deadline,
    )
}

/// The exchange with `instance`; when its function is not there (refused, no socket),
/// waits for the next instance (until `deadline`) and has the exchange with that one.
#[allow(clippy::too_many_arguments)]
fn forward_or_next_instance(
    p: &Proxy,
    client: &mut Client,
    head: &RequestHead,
    scratch: &mut Scratch,
    request_id: &str,
    invocation: Invocation,
    instance: u64,
    deadline: Instant,
) -> Result<super::forward::Exchange, Failure> {
    match forward(p, client, head, scratch, request_id, invocation, instance) {
        Err(Failure::Connect(e)) if e.is_absent() => {
            // Refused or no socket: the instance has most likely just died and the supervisor
            // is about to start another. Nothing reached the function, so the request can go
            // to the next instance once it is ready.
            log::debug!("request {request_id}: {e}; waiting for a new instance");
            let status = p.shared.wait_until(deadline, |s| {
                s.phase == Phase::Stopping
                    || (s.instance != instance
                        && !matches!(s.phase, Phase::Starting | Phase::Initializing))
            });
            if status.phase != Phase::Ready || status.instance == instance {
                return Err(Failure::Connect(e));
            }
            forward(
                p,
                client,
                head,
                scratch,
                request_id,
                invocation,
                status.instance,
            )
        }
        other => other,
    }
}

/// Waits until the instance is ready (at most until `deadline`); returns its number.
fn wait_ready(p: &Proxy, deadline: Instant) -> Result<u64, Failure> {
    let (phase, instance) = p.shared.phase_and_instance();
    if phase == Phase::Ready {
        return Ok(instance);
    }
    let waiting =
        |s: &crate::state::Status| matches!(s.phase, Phase::Starting | Phase::Initializing);
    let mut status = p.shared.wait_until(deadline, |s| !waiting(s));
    if status.phase == Phase::Failed
        && p.cfg
            .initializer
            .as_ref()
            .is_some_and(|i| i.on_failure == OnFailure::NextRequest)
    {
        // `next-request`: this request triggers one attempt and waits for its outcome.
        let seen = status.initializer_failures;
        p.events.send(Event::InitRequested);
        status = p.shared.wait_until(deadline, |s| {
            matches!(s.phase, Phase::Ready | Phase::Stopping) || s.initializer_failures > seen
        });
    }
    match status.not_ready() {
        None => Ok(status.instance),
        Some(NotReady::Stopping) => Err(Failure::Stopping),
        Some(NotReady::Initialization(reason)) => Err(Failure::Initialization(reason)),
    }
}
