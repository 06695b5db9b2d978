//! h2c on the event loops (docs/reference.md §14): a client connection whose first bytes are
//! the HTTP/2 preface enters the phase `Phase::H2c`, which owns a relay ([`relay::Relay`]) with
//! a function connection of its own, opened fresh (h2c with prior knowledge: never a pooled HTTP/1.1 one), and drives
//! the sans-IO core [`crate::h2::conn::Conn`] with both sockets' bytes, the loop's clock and
//! the shutdown. Every request stream is an invocation, with what an HTTP/1.1 request gets:
//! a request id, its FC Invoke lines (the Start line on stdout before the stream's headers
//! reach the function: [`crate::proxy::lines`]' rule, asked before every write to the
//! function), the metrics, the in-flight count, a concurrency permit (without queueing: a
//! full limit refuses the stream, `REFUSED_STREAM`), `function.timeout`.
//!
//! The preface is decided by [`sniff`] on the connection's first bytes only: a prefix of it
//! waits for more (a slow client may send it byte by byte, within `header_timeout` from
//! accept), anything else is HTTP/1.1. With `server.http2 = "off"` nothing is sniffed and the
//! preface is a malformed HTTP/1.1 request (400), as before h2c existed.
//!
//! Bounds and deadlines, one per connection (the nearest wins):
//! - Backpressure: nothing is read from a side while the output towards the other holds
//!   [`BUF`] bytes or more; the core holds at most one frame of input per side
//!   ([`READ_LIMIT`]), so a connection's memory is bounded whatever its peers do, and a
//!   buffer emptied keeps at most [`KEEP`] bytes of memory.
//! - `function.timeout` per stream and the drain deadline: the core's own
//!   ([`crate::h2::conn::Conn::next_deadline`]).
//! - `server.idle_timeout` while no invocation runs: GOAWAY, then close.
//! - `server.header_timeout` for an incomplete frame in the client's input (a client that
//!   trickles a frame), and for a header block left open (HEADERS without END_HEADERS, its
//!   CONTINUATIONs trickled or never sent): the connection closes, its streams ended as the
//!   client's doing.
//! - A client that does not read: nothing more is read from it once [`CLIENT_OUT`] bytes wait
//!   for it (the acks of a PING flood, fc-init's own refusals).
//! - After the core closed: both outputs written, the client's write side shut and its input
//!   drained for at most [`LINGER`], so the client reads the GOAWAY rather than a reset.
//!
//! The instance: the function connection is made once the instance is ready (the relay waits
//! for the status change, as an HTTP/1.1 request waits in admission; its streams' own
//! `function.timeout` bounds the wait). An instance that failed to initialize or is stopping
//! answers the streams `InitializationError` or `InstanceStopping`, and the connection closes;
//! under `on_failure = "next-request"` the first stream asks for one attempt (as an HTTP/1.1
//! request does in admission) and the streams wait for its outcome.
//! A function connection that fails or closes answers them `UnhandledInvocationError`: a new
//! instance is reached by the client's next connection.
//!
//! Shutdown: the relay is woken by the status change (a status waiter, like a request waiting
//! for its instance), sends GOAWAY and drains its streams within `shutdown.drain_timeout`;
//! the streams count in `in flight`, so the supervisor's drain waits for them.
//!
//! Counting: the client connection counts once in `max_connections` like any other (its
//! function connection is its own); each stream counts in `max_concurrency`, `in flight` and
//! `fc_init_requests_total`/the latency histogram like one HTTP/1.1 request; a refused stream
//! counts as `TooManyRequests` (or `InstanceStopping` once the shutdown began), with no FC
//! lines, since it never became an invocation.
//!
//! [`step`] and [`on_deadline`] return what happened ([`Step`]), like every phase's step; a
//! [`Step::Close`] comes only after the relay has given back what it held ([`finish`]).
//!
//! Failure modes: a socket error on the client ends the streams as `client_closed`; on the
//! function, as `UnhandledInvocationError`. A panic while driving the connection costs this
//! connection only: [`abandon`] ends its streams as fc-init's internal error and closes its
//! function connection.

pub(in crate::proxy) mod relay;

use std::io;
use std::time::{Duration, Instant};

use crate::config::OnFailure;
use crate::h2::conn::{Action, Conn, Limits, Side};
use crate::h2::frame::PREFACE;
use crate::http::fc_error::ErrorType;
use crate::metrics::Outcome;
use crate::state::{NotReady, Phase as Lifecycle};
use crate::supervisor::Event;

use super::client::{self, read_client, Client, Flow, Gone, Io, Phase, Step};
use super::cx::Cx;
use super::errors::ConnectError;
use super::shared::BUF;
use relay::{outcome, ProxyHost, Relay, Running};

/// Input held from one peer at most: at least one whole frame (16 KiB, the largest fc-init
/// lets either peer send, plus its header).
const READ_LIMIT: usize = BUF;

/// The client's unread output past which nothing more is read from it (backpressure on a
/// client that sends but does not read: a PING or SETTINGS flood whose acks it never
/// takes). Above what a response the function streams leaves there ([`BUF`] plus one read),
/// so that a client reading its response at its own pace is not stopped from sending.
const CLIENT_OUT: usize = 2 * BUF + READ_LIMIT;

/// How long a closing connection's outputs and lingering take at most.
const LINGER: Duration = Duration::from_secs(2);

/// A buffer emptied keeps its memory up to this much: an idle h2c connection (gRPC channels
/// stay open between calls) holds little, a busy one with small calls allocates seldom.
const KEEP: usize = 16 * 1024;

/// First pause before connecting again to a function whose backlog is full.
const RETRY: Duration = Duration::from_millis(5);

/// What a connection's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sniff {
    /// The whole HTTP/2 preface: the connection is h2c.
    H2c,
    /// A prefix of it, so far: more bytes decide.
    More,
    /// Anything else: HTTP/1.1.
    Http1,
}

/// The one decision on a connection's first bytes (RFC 9113 §3.4: prior knowledge opens with
/// the preface). A prefix waits for more, however slowly it comes.
pub(super) fn sniff(input: &[u8]) -> Sniff {
    let n = input.len().min(PREFACE.len());
    if input[..n] != PREFACE[..n] {
        Sniff::Http1
    } else if n < PREFACE.len() {
        Sniff::More
    } else {
        Sniff::H2c
    }
}

/// The connection opened with the preface (still in its input): it becomes a relay.
pub(super) fn begin(cx: &mut Cx, io: &mut Io) -> Step {
    let limits = Limits {
        timeout: cx.p.cfg.function.timeout,
        max_request_headers: cx.p.cfg.server.max_header_bytes,
        ..Limits::default()
    };
    log::debug!("a client connection speaks h2c");
    io.scanned = 0;
    let relay = Relay::new(Conn::new(limits), cx.now);
    Step::Enter(Phase::H2c(Box::new(relay)))
}

/// One pass over everything that can move; [`Step::Close`] once the connection is over
/// (what it held is given back by then).
pub(super) fn step(cx: &mut Cx, io: &mut Io, r: &mut Relay) -> Step {
    match advance(cx, io, r) {
        Ok(progress) => {
            schedule(cx, io, r);
            match progress {
                true => Step::Progress,
                false => Step::Wait,
            }
        }
        Err(Gone) => {
            finish(cx, r, Outcome::ClientClosed);
            Step::Close
        }
    }
}

/// A deadline of the connection passed; the connection is driven on after it.
pub(super) fn on_deadline(cx: &mut Cx, r: &mut Relay) -> Step {
    let (now, p) = (cx.now, cx.p);
    if r.closing_by.is_some_and(|t| t <= now) {
        finish(cx, r, Outcome::ClientClosed);
        return Step::Close;
    }
    r.conn.on_tick(now);
    if r.stalled_since
        .is_some_and(|t| t + p.cfg.server.header_timeout <= now)
    {
        log::debug!("closing an h2c connection: a frame took longer than header_timeout");
        r.conn.on_client_closed();
    }
    if r.block_since
        .is_some_and(|t| t + p.cfg.server.header_timeout <= now)
    {
        log::debug!("closing an h2c connection: a header block took longer than header_timeout");
        r.conn.on_client_closed();
    }
    if r.conn.in_flight() == 0 && r.idle_since + p.cfg.server.idle_timeout <= now {
        // GOAWAY, and the close: no stream is left to drain.
        r.conn.shutdown(now);
        r.conn.on_tick(now);
    }
    actions(cx, r);
    // Its deadline is set again by the step that follows.
    Step::Progress
}

/// A panic while the connection was driven (the loop closes it): its running streams end as
/// fc-init's own fault, and its function connection is closed.
pub(super) fn abandon(cx: &mut Cx, c: &mut Client) {
    if let Phase::H2c(r) = &mut c.phase {
        // The core's state is unknown after a panic: it is not asked again.
        finish_streams(cx, r, Outcome::InternalError);
        if let Some(f) = r.fnc.take() {
            cx.release_fn(f, false);
        }
    }
}

fn advance(cx: &mut Cx, io: &mut Io, r: &mut Relay) -> Flow {
    let p = cx.p;
    let mut progress = false;
    if !r.shut {
        if stopping(cx) {
            r.shut = true;
            r.conn.shutdown(cx.now + p.cfg.shutdown.drain_timeout);
            actions(cx, r);
            progress = true;
        } else if !r.waiting_status {
            r.waiting_status = true;
            cx.status_waiters.push(io.token);
        }
    }
    if r.fnc.is_none() && !r.conn.is_closed() {
        progress |= connect(cx, io, r);
    }
    progress |= from_client(cx, io, r)?;
    progress |= to_function(cx, io, r);
    progress |= from_function(cx, r);
    progress |= to_client(cx, io, r)?;
    if r.conn.in_flight() > 0 {
        r.idle_since = cx.now;
    }
    if r.conn.is_closed() {
        progress |= closing(cx, io, r)?;
    }
    Ok(progress)
}

/// fc-init is stopping (the flag, or the status already saying so: the loop may be woken by
/// the status change before the stop hook has set the flag).
fn stopping(cx: &Cx) -> bool {
    cx.p.stopping() || cx.p.shared.phase_and_instance().0 == Lifecycle::Stopping
}

/// Opens the function connection once the instance is ready.
fn connect(cx: &mut Cx, io: &Io, r: &mut Relay) -> bool {
    if r.retry_at.is_some_and(|at| cx.now < at) {
        return false;
    }
    r.retry_at = None;
    let p = cx.p;
    let (phase, instance) = p.shared.phase_and_instance();
    match phase {
        Lifecycle::Ready => {}
        // Woken by the status change (registered in `advance`).
        Lifecycle::Starting | Lifecycle::Initializing => return false,
        Lifecycle::Failed if next_request(cx) => {
            // `next-request`: as an HTTP/1.1 request, the first stream asks for one attempt
            // and waits for its outcome (woken by the status change, bounded by its
            // `function.timeout`); only a failed attempt answers it.
            let failures = p.shared.snapshot().initializer_failures;
            match r.init_seen {
                Some(seen) if failures > seen => {
                    r.conn
                        .on_function_unavailable(ErrorType::InitializationError);
                    actions(cx, r);
                    return true;
                }
                Some(_) => return false,
                // No stream yet: a connection alone asks for nothing.
                None if r.conn.in_flight() == 0 => return false,
                None => {
                    r.init_seen = Some(failures);
                    p.events.send(Event::InitRequested);
                    return false;
                }
            }
        }
        Lifecycle::Failed | Lifecycle::Stopping => {
            let error = match p.shared.snapshot().not_ready() {
                Some(NotReady::Initialization(_)) => ErrorType::InitializationError,
                _ => ErrorType::InstanceStopping,
            };
            r.conn.on_function_unavailable(error);
            actions(cx, r);
            return true;
        }
    }
    match cx.connect_fn(instance, io.token) {
        Ok(f) => {
            r.fnc = Some(f);
            true
        }
        Err(ConnectError::Busy) => {
            r.retry_at = Some(cx.now + RETRY);
            false
        }
        Err(e) => {
            log::debug!("h2c: connecting to the function: {e}");
            r.conn
                .on_function_unavailable(ErrorType::UnhandledInvocationError);
            actions(cx, r);
            true
        }
    }
}

/// The initializer runs again for a request after a failure (`on_failure = "next-request"`).
fn next_request(cx: &Cx) -> bool {
    cx.p.cfg
        .initializer
        .as_ref()
        .is_some_and(|i| i.on_failure == OnFailure::NextRequest)
}

/// Reads the client's bytes and hands them to the core, while the function's output has room.
fn from_client(cx: &mut Cx, c: &mut Io, r: &mut Relay) -> Flow {
    let p = cx.p;
    let mut progress = false;
    // Nothing more is read from a client that does not read what it is sent: what fc-init
    // answers by itself (PING acks relayed, refused streams, window credits) cannot pile up.
    while !r.conn.is_closed() && r.unsent_function() < BUF && r.unsent_client() < CLIENT_OUT {
        if c.pending().len() < READ_LIMIT {
            progress |= read_client(&mut cx.bufs.read, c, READ_LIMIT)?;
        }
        let mut host = ProxyHost {
            p,
            admitted: &mut r.admitted,
        };
        let took = r.conn.on_client_bytes(c.pending(), cx.now, &mut host);
        c.ipos += took;
        actions(cx, r);
        if took > 0 || c.pending().is_empty() {
            r.stalled_since = None;
        } else if r.stalled_since.is_none() {
            r.stalled_since = Some(cx.now);
        }
        // A header block left open holds the whole connection (no other frame may come
        // before its end): bounded like a trickled frame, from its first frame on.
        if !r.conn.client_block_open() {
            r.block_since = None;
        } else if r.block_since.is_none() {
            r.block_since = Some(cx.now);
        }
        if took > 0 {
            progress = true;
            continue;
        }
        if c.eof {
            // The client is gone (a partial frame left over is cut short).
            r.conn.on_client_closed();
            actions(cx, r);
            progress = true;
        }
        break;
    }
    if r.conn.is_closed() {
        // Nothing more is read: what came is dropped.
        c.ipos = c.inbuf.len();
    }
    if c.pending().is_empty() && c.inbuf.capacity() > KEEP {
        c.inbuf = Vec::new();
        c.ipos = 0;
    }
    Ok(progress)
}

/// Writes what the core has for the function, once the Start lines of the streams it
/// carries are on stdout.
fn to_function(cx: &mut Cx, c: &Io, r: &mut Relay) -> bool {
    let Some(f) = r.fnc else {
        return false;
    };
    if r.unsent_function() == 0 || r.fn_eof && r.conn.is_closed() {
        return false;
    }
    if !cx.lines.may_send(r.last_start, c.token) {
        return false;
    }
    let Some(slot) = cx.pool.slots.get(f) else {
        return false;
    };
    let mut progress = false;
    let mut failed = None;
    let out = r.conn.to_function();
    while slot.wr && r.fpos < out.len() {
        match crate::sys::retry(|| slot.stream.write(&out[r.fpos..])) {
            Ok(0) => {
                failed = Some(io::Error::from(io::ErrorKind::WriteZero));
                break;
            }
            Ok(n) => {
                slot.wr = r.fpos + n == out.len();
                r.fpos += n;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.wr = false,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if r.fpos == out.len() {
        out.clear();
        r.fpos = 0;
        if out.capacity() > KEEP {
            *out = Vec::new();
        }
    }
    if let Some(e) = failed {
        function_failed(cx, r, &e);
        progress = true;
    }
    progress
}

/// Reads the function's bytes and hands them to the core, while the client's output has room.
fn from_function(cx: &mut Cx, r: &mut Relay) -> bool {
    let Some(f) = r.fnc else {
        return false;
    };
    let mut progress = false;
    while !r.conn.is_closed() && r.unsent_client() < BUF {
        let Some(slot) = cx.pool.slots.get(f) else {
            return progress;
        };
        let mut failed = None;
        if slot.rd && !r.fn_eof && r.fn_in.len() < READ_LIMIT {
            let want = (READ_LIMIT - r.fn_in.len()).min(cx.bufs.read.len());
            match crate::sys::retry(|| slot.stream.read(&mut cx.bufs.read[..want])) {
                Ok(0) => r.fn_eof = true,
                Ok(n) => {
                    r.fn_in.extend_from_slice(&cx.bufs.read[..n]);
                    slot.rd = n == want || slot.hup;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.rd = false,
                Err(e) => failed = Some(e),
            }
        }
        let took = r.conn.on_function_bytes(&r.fn_in);
        r.fn_in.drain(..took);
        if r.fn_in.is_empty() && r.fn_in.capacity() > KEEP {
            r.fn_in = Vec::new();
        }
        actions(cx, r);
        if let Some(e) = failed {
            function_failed(cx, r, &e);
            return true;
        }
        if took > 0 {
            progress = true;
            continue;
        }
        if r.fn_eof && !r.conn.is_closed() {
            log::debug!("h2c: the function closed its connection");
            r.conn.on_function_closed();
            actions(cx, r);
            progress = true;
        }
        let more = slot_may_read(cx, f) && !r.fn_eof && r.fn_in.len() < READ_LIMIT;
        if !more {
            break;
        }
    }
    progress
}

fn slot_may_read(cx: &mut Cx, f: usize) -> bool {
    cx.pool.slots.get(f).is_some_and(|s| s.rd)
}

/// The function connection failed: its streams are answered `UnhandledInvocationError`.
fn function_failed(cx: &mut Cx, r: &mut Relay, e: &io::Error) {
    log::debug!("h2c: the function connection failed: {e}");
    r.fn_eof = true;
    r.conn.on_function_closed();
    actions(cx, r);
}

/// Writes what the core has for the client.
fn to_client(cx: &mut Cx, c: &mut Io, r: &mut Relay) -> Flow {
    let mut progress = false;
    let out = r.conn.to_client();
    while c.wr && r.cpos < out.len() {
        match crate::sys::retry(|| c.stream.write(&out[r.cpos..])) {
            Ok(0) => return client_lost(cx, r),
            Ok(n) => {
                c.wr = r.cpos + n == out.len();
                r.cpos += n;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.wr = false,
            Err(_) => return client_lost(cx, r),
        }
    }
    if r.cpos == out.len() && r.cpos > 0 {
        out.clear();
        r.cpos = 0;
        if out.capacity() > KEEP {
            *out = Vec::new();
        }
    }
    Ok(progress)
}

/// The client's connection failed: its streams end as the client's doing.
fn client_lost(cx: &mut Cx, r: &mut Relay) -> Flow {
    r.conn.on_client_closed();
    actions(cx, r);
    Err(Gone)
}

/// The core has closed: once both outputs are out, the client's write side is shut and its
/// input drained until it closes too (or [`LINGER`]).
fn closing(cx: &mut Cx, c: &mut Io, r: &mut Relay) -> Flow {
    if r.closing_by.is_none() {
        r.closing_by = Some(cx.now + LINGER);
    }
    let function_done = r.fnc.is_none() || r.fn_eof || r.unsent_function() == 0;
    if r.unsent_client() > 0 || !function_done {
        return Ok(false);
    }
    if !r.write_shut {
        r.write_shut = true;
        let _ = c.stream.shutdown_write();
    }
    client::drop_input(&mut cx.bufs.read, c)
}

/// Turns the core's actions into FC lines, metrics and the guards' release.
fn actions(cx: &mut Cx, r: &mut Relay) {
    let p = cx.p;
    for action in r.conn.take_actions() {
        match action {
            Action::Started(inv) => {
                log::debug!(
                    "h2c stream {} is request {}: {} {}",
                    inv.stream,
                    inv.request_id,
                    inv.method,
                    inv.path
                );
                let start_line = p.cfg.log.invocations;
                if start_line {
                    r.last_start = Some(cx.lines.start(&inv.request_id));
                }
                let held = r.admitted.remove(&inv.stream);
                r.running.insert(
                    inv.stream,
                    Running {
                        _held: held,
                        request_id: inv.request_id,
                        started: Instant::now(),
                        start_line,
                    },
                );
            }
            Action::Ended {
                stream, outcome: o, ..
            } => {
                if let Some(run) = r.running.remove(&stream) {
                    end(cx, run, outcome(o));
                }
            }
            Action::Refused { stream } => {
                log::debug!("h2c stream {stream} refused (REFUSED_STREAM)");
                let error = match r.shut || p.stopping() {
                    true => ErrorType::InstanceStopping,
                    false => ErrorType::TooManyRequests,
                };
                p.metrics.record(Outcome::Error(error), Duration::ZERO);
            }
            Action::HeadersTooLarge { stream } => {
                log::debug!("h2c stream {stream}: request headers over max_header_bytes (431)");
                p.metrics
                    .record(Outcome::Error(ErrorType::InvalidArgument), Duration::ZERO);
            }
            Action::Error { side, error } => {
                let who = match side {
                    Side::Client => "the client",
                    Side::Function => "the function",
                };
                log::debug!("h2c: {who} broke the protocol: {error:?}");
            }
            Action::Close => {}
        }
    }
    // A permit granted for a stream the core did not start goes back at once.
    r.admitted.clear();
}

/// An invocation ended: its metrics and End line; its guards go back as `run` drops.
fn end(cx: &mut Cx, run: Running, outcome: Outcome) {
    cx.p.metrics.record(outcome, run.started.elapsed());
    if run.start_line {
        cx.lines.end(&run.request_id, outcome);
    }
}

/// The connection is over: the core is told (if it was not closed already), every stream
/// still running ends as `left`, and the function connection is closed.
fn finish(cx: &mut Cx, r: &mut Relay, left: Outcome) {
    if !r.conn.is_closed() {
        r.conn.on_client_closed();
        actions(cx, r);
    }
    finish_streams(cx, r, left);
    if let Some(f) = r.fnc.take() {
        cx.release_fn(f, false);
    }
}

fn finish_streams(cx: &mut Cx, r: &mut Relay, outcome: Outcome) {
    for (_, run) in std::mem::take(&mut r.running) {
        end(cx, run, outcome);
    }
    r.admitted.clear();
}

/// The connection's next deadline: the nearest of its streams', the drain's, the idle and
/// slow-client limits, a connect retry, the close.
fn schedule(cx: &mut Cx, io: &mut Io, r: &mut Relay) {
    let s = &cx.p.cfg.server;
    let idle = (r.conn.in_flight() == 0).then(|| r.idle_since + s.idle_timeout);
    let stalled = r.stalled_since.map(|t| t + s.header_timeout);
    let block = r.block_since.map(|t| t + s.header_timeout);
    let deadline = [
        r.conn.next_deadline(),
        idle,
        stalled,
        block,
        r.retry_at,
        r.closing_by,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(cx.now + Duration::from_secs(3600));
    client::set_deadline(cx, io, deadline);
}

#[cfg(test)]
mod tests;
