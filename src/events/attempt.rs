//! One attempt of an event: its stored request sent through fc-init's own listener on
//! loopback, exactly as a synchronous request (concurrency limits, the wait for
//! initialization, timeouts, FC Invoke lines and metrics apply), on the worker's kept
//! keep-alive connection when it has one; the answer read back into an [`Attempt`].

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::model::{StoredAnswer, StoredRequest};
use crate::http::{self, Buffered, Limits};

/// Most of a failed answer's body kept as the event's `errorMessage`.
const MAX_ERROR_MESSAGE: usize = 512;

/// A worker's connection to fc-init's own listener.
pub type Listener = Buffered<TcpStream>;

/// How an attempt ended.
pub enum Attempt {
    Succeeded {
        status: u16,
    },
    Failed {
        status: Option<u16>,
        error_type: String,
        message: String,
    },
}

/// Where attempts go: fc-init's own listener, as reachable on loopback (known once it is
/// bound).
pub struct Sender {
    pub target: OnceLock<SocketAddr>,
    pub function_timeout: Duration,
    /// `async.max_result`: the most of an answer's body kept with the event.
    pub max_result: u64,
}

impl Sender {
    /// Sets the target from the listener's bound address (an unspecified address is reached
    /// on loopback).
    pub fn bind(&self, listen: SocketAddr) {
        let target = match listen.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => {
                SocketAddr::from(([127, 0, 0, 1], listen.port()))
            }
            ip if ip.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
            }
            _ => listen,
        };
        let _ = self.target.set(target);
    }

    /// One attempt: the stored request sent through fc-init's own listener, on the worker's
    /// kept connection when it has one; with the answer to keep, when there was one and
    /// `async.max_result` keeps any.
    pub fn send(
        &self,
        id: &str,
        req: &StoredRequest,
        kept: &mut Option<Listener>,
    ) -> (Attempt, Option<StoredAnswer>) {
        let (attempt, answer, _) = self.send_streaming(id, req, kept, &mut |_| None);
        (attempt, answer)
    }

    /// [`Sender::send`], where `on_head` sees the answer's head as soon as it has come
    /// (fc-init's own answers included) and may return where its body goes as well, as it
    /// comes: a handoff's client (docs/reference.md §10). A failed write there stops only that.
    /// Also whether an answer came and its body was read to its end.
    pub fn send_streaming<'w>(
        &self,
        id: &str,
        req: &StoredRequest,
        kept: &mut Option<Listener>,
        on_head: &mut dyn FnMut(&http::ResponseHead) -> Option<Box<dyn Write + 'w>>,
    ) -> (Attempt, Option<StoredAnswer>, bool) {
        // The listener waits up to function.timeout for initialization and again for the
        // answer; the margin covers the queue.
        let deadline = Instant::now() + self.function_timeout * 2 + Duration::from_secs(10);
        let failed = |message: String| Attempt::Failed {
            status: None,
            error_type: "UnhandledInvocationError".into(),
            message,
        };
        let mut head = Vec::with_capacity(512 + req.headers.len() * 64);
        let _ = write!(head, "{} {} HTTP/1.1\r\n", req.method, req.target);
        for (name, value) in &req.headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        let _ = write!(
            head,
            "x-fc-request-id: {id}\r\nContent-Length: {}\r\n\r\n",
            req.body.len()
        );
        let limits = Limits {
            require_host: false,
            ..Limits::default()
        };
        let (mut conn, response) = loop {
            let reused = kept.is_some();
            let mut conn = match kept.take() {
                Some(c) => c,
                None => match self.connect() {
                    Ok(c) => c,
                    Err(message) => return (failed(message), None, false),
                },
            };
            conn.set_deadline(Some(deadline));
            let sent = conn
                .write_all(&head)
                .and_then(|()| conn.write_all(&req.body));
            let answer = sent
                .map_err(|e| {
                    (
                        e.kind() == std::io::ErrorKind::BrokenPipe
                            || e.kind() == std::io::ErrorKind::ConnectionReset,
                        e.to_string(),
                    )
                })
                .and_then(|()| {
                    http::read_response_head(&mut conn, &limits, req.method == "HEAD").map_err(
                        |e| {
                            (
                                matches!(e, http::HttpError::ConnectionClosed),
                                e.to_string(),
                            )
                        },
                    )
                });
            match answer {
                Ok(response) => break (conn, response),
                // A kept connection the listener closed while idle: nothing was read from it,
                // so the event goes again on a new one.
                Err((true, _)) if reused => continue,
                Err((_, e)) => {
                    return (
                        failed(format!("sending the event through the listener: {e}")),
                        None,
                        false,
                    )
                }
            }
        };
        let mut body = Vec::new();
        // Only the start of an answer is kept (for the error message and the stored result);
        // the rest is read and dropped, so the connection is ready for the next event.
        let keep = usize::try_from(self.max_result)
            .unwrap_or(usize::MAX)
            .max(MAX_ERROR_MESSAGE);
        let mut sink = LimitedSink {
            kept: &mut body,
            keep,
            seen: 0,
            also: on_head(&response),
        };
        let copied = http::copy_body(
            &mut conn,
            &mut sink,
            response.framing,
            http::Output::Raw,
            u64::MAX,
        );
        let seen = sink.seen;
        // fc-init's own answers (`x-fc-error-type`: the function crashed, timed out, ...)
        // are not the function's: nothing is kept for them.
        let own = response.header("x-fc-error-type").is_some();
        let answer = (self.max_result > 0 && copied.is_ok() && !own).then(|| {
            let limit = usize::try_from(self.max_result).unwrap_or(usize::MAX);
            StoredAnswer {
                status: response.status,
                headers: end_to_end(&response),
                body: body[..body.len().min(limit)].to_vec(),
                truncated: seen > limit as u64,
            }
        });
        if copied.is_ok() && response.keep_alive {
            *kept = Some(conn);
        }
        let header = |name: &str| {
            response
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let own_error = header("x-fc-error-type");
        let fc_404 = header("x-fc-status").is_some_and(|v| v.trim() == "404");
        let event_invocation =
            req.method == "POST" && req.target.split('?').next() == Some("/invoke");
        let status = response.status;
        let failed = own_error.is_some()
            || (event_invocation && (!(200..300).contains(&status) || fc_404))
            || (!event_invocation && status >= 500);
        if !failed {
            return (Attempt::Succeeded { status }, answer, copied.is_ok());
        }
        let mut message =
            String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_MESSAGE)]).into_owned();
        if message.is_empty() {
            message = format!("status {status}");
        }
        let attempt = Attempt::Failed {
            status: Some(status),
            error_type: own_error.unwrap_or_else(|| "FunctionError".into()),
            message,
        };
        (attempt, answer, copied.is_ok())
    }

    /// A new connection to fc-init's own listener.
    fn connect(&self) -> Result<Listener, String> {
        let Some(target) = self.target.get() else {
            return Err("the listener is not bound".into());
        };
        let stream = TcpStream::connect_timeout(target, Duration::from_secs(5))
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Buffered::with_capacity(stream, 16 * 1024))
    }
}

/// The fields of an answer that belong to it, not to its framing or its connection.
pub fn end_to_end(response: &http::ResponseHead) -> Vec<(String, Vec<u8>)> {
    response
        .headers
        .iter()
        .filter(|f| {
            !f.hop_by_hop
                && !f.name.eq_ignore_ascii_case("content-length")
                && !f.name.eq_ignore_ascii_case("transfer-encoding")
        })
        .map(|f| (f.name.to_owned(), f.value.to_vec()))
        .collect()
}

/// Keeps the first `keep` bytes written, discards the rest, and counts them all; writes them
/// all to `also` too while it takes them.
struct LimitedSink<'a, 'w> {
    kept: &'a mut Vec<u8>,
    keep: usize,
    seen: u64,
    also: Option<Box<dyn Write + 'w>>,
}

impl Write for LimitedSink<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.keep.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&buf[..buf.len().min(room)]);
        self.seen += buf.len() as u64;
        if let Some(also) = self.also.as_mut() {
            if also.write_all(buf).is_err() {
                self.also = None;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
