//! A tiny blocking HTTP/1.1 client for the lifecycle hooks (initializer, PreStop): one request
//! per connection (`Connection: close`), every syscall bounded by one deadline.
//!
//! Rules: connecting, writing and reading all set the socket timeout from the time left before
//! the deadline (a Unix `connect` blocks only while the listener's backlog is full, and Linux
//! bounds that wait by `SO_SNDTIMEO`, so it is set before connecting). A passed deadline is
//! [`ClientError::Timeout`] whichever step it cut. The response body is kept up to
//! [`MAX_RESPONSE_BODY`]; the rest is not read (the connection is closed anyway). All sockets
//! are close-on-exec (`SOCK_CLOEXEC` here, std elsewhere), so the function never inherits one.
//!
//! Failure modes, in the words the `FC … End` log lines use (docs/reference.md §7): "connection
//! refused", "timeout", "connection reset", "connection closed before the response",
//! "malformed response: …".

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::body::{copy_body, write_all_parts, Output};
use super::buffered::{Buffered, Timeouts};
use super::response::read_response_head;
use super::write::{push_field, push_u64};
use super::{HttpError, Limits};

/// Response bodies are kept up to this size.
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;
/// Limit on a hook response's head.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A connection to the function.
#[derive(Debug)]
pub enum Conn {
    /// `function.socket`.
    Unix(UnixStream),
    /// `127.0.0.1:function.port`.
    Tcp(TcpStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write_vectored(bufs),
            Conn::Tcp(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Timeouts for Conn {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tcp(s) => s.set_read_timeout(t),
        }
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_write_timeout(t),
            Conn::Tcp(s) => s.set_write_timeout(t),
        }
    }
}

/// Why a hook request failed. The messages are the words the `FC … End` lines use.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed (refused, no such socket, …).
    #[error("{}", connect_failure(.0))]
    Connect(#[source] io::Error),
    /// The deadline passed (while connecting, sending or waiting for the answer).
    #[error("timeout")]
    Timeout,
    /// Sending or receiving failed after the connection was made.
    #[error("{}", io_failure(.0))]
    Io(#[source] io::Error),
    /// The answer is not valid HTTP/1.1.
    #[error("malformed response: {0}")]
    Malformed(String),
}

fn connect_failure(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => format!("connect failed: {e}"),
    }
}

fn io_failure(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "connection reset".into(),
        // Our own UnexpectedEof errors carry a readable message.
        io::ErrorKind::UnexpectedEof => e.to_string(),
        _ => format!("i/o error: {e}"),
    }
}

/// A hook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    /// Final status (interim 1xx are skipped).
    pub status: u16,
    /// Fields in order; values converted lossily to UTF-8 (for logs and simple checks).
    pub headers: Vec<(String, String)>,
    /// The body, at most [`MAX_RESPONSE_BODY`] bytes.
    pub body: Vec<u8>,
    /// The body was longer and cut at [`MAX_RESPONSE_BODY`].
    pub body_truncated: bool,
}

impl ClientResponse {
    /// Any 2xx: a hook succeeded (docs/reference.md §4).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn time_left(deadline: Instant) -> Result<Duration, ClientError> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(ClientError::Timeout),
    }
}

/// Connect to the function's Unix socket, giving up at `deadline`.
pub fn connect_unix(path: impl AsRef<Path>, deadline: Instant) -> Result<Conn, ClientError> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

    let path = path.as_ref();
    // UnixAddr refuses a path too long for sun_path; an empty one or one with a NUL byte would
    // name another socket (the abstract namespace, or a shorter path).
    let addr = match UnixAddr::new(path) {
        Ok(addr) if !path.as_os_str().is_empty() && !path.as_os_str().as_bytes().contains(&0) => {
            addr
        }
        _ => {
            return Err(ClientError::Connect(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unusable socket path (empty, too long or containing NUL)",
            )))
        }
    };
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ClientError::Connect(e.into()))?;
    let stream = UnixStream::from(fd);
    let connected = crate::sys::retry(|| {
        let left = time_left(deadline).map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
        // Linux bounds a blocking AF_UNIX connect (full backlog) by SO_SNDTIMEO
        // (unix_stream_connect uses sock_sndtimeo), and then fails with EAGAIN.
        stream.set_write_timeout(Some(left))?;
        connect(stream.as_raw_fd(), &addr).map_err(io::Error::from)
    });
    match connected {
        Ok(()) => {}
        // An interrupted connect completed meanwhile.
        Err(e) if e.raw_os_error() == Some(libc::EISCONN) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut || e.raw_os_error() == Some(libc::EAGAIN) => {
            return Err(ClientError::Timeout)
        }
        Err(e) => return Err(ClientError::Connect(e)),
    }
    stream
        .set_write_timeout(None)
        .map_err(ClientError::Connect)?;
    Ok(Conn::Unix(stream))
}

/// Connect to the function's TCP port, giving up at `deadline`.
pub fn connect_tcp(addr: SocketAddr, deadline: Instant) -> Result<Conn, ClientError> {
    let left = time_left(deadline)?;
    match TcpStream::connect_timeout(&addr, left) {
        Ok(s) => {
            // Hooks are small request/response exchanges: do not wait for Nagle.
            let _ = s.set_nodelay(true);
            Ok(Conn::Tcp(s))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Err(ClientError::Timeout)
        }
        Err(e) => Err(ClientError::Connect(e)),
    }
}

/// Keeps the first [`MAX_RESPONSE_BODY`] bytes, then refuses more (which ends the copy).
struct Capped<'a> {
    body: &'a mut Vec<u8>,
    truncated: bool,
}

impl Write for Capped<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = MAX_RESPONSE_BODY - self.body.len();
        if data.len() > room {
            self.body.extend_from_slice(&data[..room]);
            self.truncated = true;
            return Err(io::Error::other("response body limit reached"));
        }
        self.body.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Send one request on `conn` and read the answer, all before `deadline`.
///
/// Adds `Host: localhost`, `Connection: close` and, when there is a body or the method
/// normally carries one, `Content-Length`. `headers` must not contain CR or LF.
pub fn request<S: Read + Write + Timeouts>(
    conn: &mut S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    deadline: Instant,
) -> Result<ClientResponse, ClientError> {
    request_to(conn, "localhost", method, path, headers, body, deadline)
}

/// [`request`] to a server reached by name: `Host: host` (a destination's authority).
pub fn request_to<S: Read + Write + Timeouts>(
    conn: &mut S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    deadline: Instant,
) -> Result<ClientResponse, ClientError> {
    let unfit = |s: &str| s.is_empty() || s.bytes().any(|b| b <= b' ' || b == 0x7f);
    if !is_token(method) || unfit(path) || unfit(host) {
        return Err(ClientError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid method, path or host",
        )));
    }
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(&mut head, "Host", host);
    for (n, v) in headers {
        push_field(&mut head, n, v);
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        head.extend_from_slice(b"Content-Length: ");
        push_u64(&mut head, body.len() as u64);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");

    let mut b = Buffered::with_capacity(conn, 16 * 1024);
    b.set_deadline(Some(deadline));
    if let Err(e) = write_all_parts(&mut b, [&head, body, b""]) {
        if e.kind() == io::ErrorKind::TimedOut {
            return Err(ClientError::Timeout);
        }
        // The function may have answered (and closed) before reading everything, e.g. an
        // early error status: prefer its answer to our write error.
        return read_answer(&mut b, method == "HEAD").map_err(|_| ClientError::Io(e));
    }
    read_answer(&mut b, method == "HEAD")
}

fn read_answer<S: Read + Timeouts>(
    b: &mut Buffered<S>,
    head_request: bool,
) -> Result<ClientResponse, ClientError> {
    let limits = Limits {
        max_header_bytes: MAX_RESPONSE_HEAD,
        max_headers: crate::http::MAX_HEADERS,
        require_host: false,
    };
    let h = read_response_head(b, &limits, head_request).map_err(client_error)?;
    let mut body = Vec::new();
    let mut sink = Capped {
        body: &mut body,
        truncated: false,
    };
    match copy_body(b, &mut sink, h.framing, Output::Raw, u64::MAX) {
        Ok(_) => {}
        Err(HttpError::Write(_)) if sink.truncated => {}
        Err(e) => return Err(client_error(e)),
    }
    let body_truncated = sink.truncated;
    let headers = h
        .headers
        .iter()
        .map(|f| {
            (
                f.name.to_owned(),
                String::from_utf8_lossy(f.value).into_owned(),
            )
        })
        .collect();
    Ok(ClientResponse {
        status: h.status,
        headers,
        body,
        body_truncated,
    })
}

fn client_error(e: HttpError) -> ClientError {
    match e {
        HttpError::Timeout => ClientError::Timeout,
        HttpError::Read(e) | HttpError::Write(e) => ClientError::Io(e),
        HttpError::ConnectionClosed => ClientError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before the response",
        )),
        HttpError::UnexpectedEof => ClientError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed in the middle of the response",
        )),
        HttpError::BadResponse(why) | HttpError::BadBody(why) | HttpError::BadRequest(why) => {
            ClientError::Malformed(why.to_owned())
        }
        HttpError::HeadersTooLarge => ClientError::Malformed("header block too large".into()),
        HttpError::BodyTooLarge => ClientError::Malformed("body too large".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::thread::JoinHandle;

    fn sock_path() -> PathBuf {
        crate::test_support::scratch_path("http-client.sock")
    }

    /// A one-connection server: reads the request head (and body by Content-Length), hands
    /// it to `answer`, writes what that returns. Bounded by socket timeouts so a failing test
    /// cannot hang.
    fn serve(
        listener: UnixListener,
        answer: impl FnOnce(&[u8], &mut UnixStream) + Send + 'static,
    ) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&got).to_lowercase();
            if let Some(cl) = text.split("content-length: ").nth(1) {
                let cl: usize = cl.split("\r\n").next().unwrap().parse().unwrap();
                let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                while got.len() < head_end + cl {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
            }
            answer(&got, &mut s);
            got
        })
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn initializer_round_trip() {
        let path = sock_path();
        let server = serve(UnixListener::bind(&path).unwrap(), |_, s| {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        let mut conn = connect_unix(&path, soon(5000)).unwrap();
        let resp = request(
            &mut conn,
            "POST",
            "/initialize",
            &[
                ("x-fc-request-id", "r1"),
                ("x-fc-control-path", "/initialize"),
            ],
            b"",
            soon(5000),
        )
        .unwrap();
        assert!(resp.is_success());
        assert_eq!(resp.header("x-a"), Some("b"));
        assert_eq!(resp.body, b"ok");
        let sent = String::from_utf8(server.join().unwrap()).unwrap();
        assert_eq!(
            sent,
            "POST /initialize HTTP/1.1\r\nHost: localhost\r\nx-fc-request-id: r1\r\n\
             x-fc-control-path: /initialize\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn server_that_never_answers_times_out() {
        let path = sock_path();
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (_s, _) = listener.accept().unwrap();
            // Hold the connection open until the client is done.
            let _ = rx.recv_timeout(Duration::from_secs(10));
        });
        let start = Instant::now();
        let mut conn = connect_unix(&path, soon(5000)).unwrap();
        let e = request(&mut conn, "GET", "/pre-stop", &[], b"", soon(200)).unwrap_err();
        assert!(matches!(e, ClientError::Timeout), "{e}");
        assert_eq!(e.to_string(), "timeout");
        assert!(start.elapsed() < Duration::from_secs(3));
        drop(tx);
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn garbage_answer_is_malformed() {
        let path = sock_path();
        let server = serve(UnixListener::bind(&path).unwrap(), |_, s| {
            s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap();
        });
        let mut conn = connect_unix(&path, soon(5000)).unwrap();
        let e = request(&mut conn, "GET", "/pre-stop", &[], b"", soon(5000)).unwrap_err();
        assert!(matches!(e, ClientError::Malformed(_)), "{e}");
        assert!(e.to_string().starts_with("malformed response: "), "{e}");
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn close_without_answer() {
        let path = sock_path();
        let server = serve(UnixListener::bind(&path).unwrap(), |_, _| {});
        let mut conn = connect_unix(&path, soon(5000)).unwrap();
        let e = request(&mut conn, "GET", "/pre-stop", &[], b"", soon(5000)).unwrap_err();
        assert_eq!(e.to_string(), "connection closed before the response");
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn refused_and_missing_sockets() {
        let path = sock_path();
        drop(UnixListener::bind(&path).unwrap()); // the file stays, nobody listens
        let e = connect_unix(&path, soon(1000)).unwrap_err();
        assert_eq!(e.to_string(), "connection refused");
        let _ = std::fs::remove_file(&path);
        let e = connect_unix(&path, soon(1000)).unwrap_err();
        assert!(
            matches!(&e, ClientError::Connect(io) if io.kind() == io::ErrorKind::NotFound),
            "{e}"
        );
        let e = connect_unix(&path, Instant::now()).unwrap_err();
        assert!(matches!(e, ClientError::Timeout));
    }

    #[test]
    fn unusable_socket_paths_are_refused_before_connecting() {
        for path in ["".to_string(), "x".repeat(200)] {
            let e = connect_unix(&path, soon(1000)).unwrap_err();
            assert!(
                matches!(&e, ClientError::Connect(io) if io.kind() == io::ErrorKind::InvalidInput),
                "{path:?}: {e}"
            );
        }
    }

    /// A listener whose backlog is full and that never accepts: the connect blocks in the
    /// kernel, and only SO_SNDTIMEO (set from the deadline) ends it.
    #[test]
    fn connect_to_a_full_backlog_ends_at_the_deadline() {
        use nix::sys::socket::{
            bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
        };
        let path = sock_path();
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(fd.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&fd, Backlog::new(0).unwrap()).unwrap();
        let mut held = Vec::new();
        let started = Instant::now();
        let timed_out = (0..16).any(|_| match connect_unix(&path, soon(300)) {
            Ok(c) => {
                held.push(c);
                false
            }
            Err(ClientError::Timeout) => true,
            Err(e) => panic!("{e}"),
        });
        assert!(timed_out, "{} connections, none blocked", held.len());
        assert!(started.elapsed() < Duration::from_secs(5));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn chunked_and_oversized_bodies() {
        let path = sock_path();
        let server = serve(UnixListener::bind(&path).unwrap(), |_, s| {
            let mut out = b"HTTP/1.1 503 No\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            let piece = vec![b'x'; 64 * 1024];
            for _ in 0..17 {
                out.extend_from_slice(b"10000\r\n");
                out.extend_from_slice(&piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            let _ = s.write_all(&out);
        });
        let mut conn = connect_unix(&path, soon(5000)).unwrap();
        let resp = request(
            &mut conn,
            "POST",
            "/initialize",
            &[],
            b"payload",
            soon(5000),
        )
        .unwrap();
        assert_eq!(resp.status, 503);
        assert!(!resp.is_success());
        assert_eq!(resp.body.len(), MAX_RESPONSE_BODY);
        assert!(resp.body_truncated);
        drop(conn);
        let got = server.join().unwrap();
        assert!(got.ends_with(b"\r\n\r\npayload"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn tcp_round_trip() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.0 204 No Content\r\n\r\n").unwrap();
        });
        let mut conn = connect_tcp(addr, soon(5000)).unwrap();
        let resp = request(&mut conn, "GET", "/pre-stop", &[], b"", soon(5000)).unwrap();
        assert_eq!(resp.status, 204);
        assert!(resp.body.is_empty());
        server.join().unwrap();
    }

    #[test]
    fn bad_method_rejected_locally() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut conn = Conn::Unix(a);
        assert!(request(&mut conn, "GE T", "/", &[], b"", soon(1000)).is_err());
        assert!(request(&mut conn, "GET", "/a b", &[], b"", soon(1000)).is_err());
    }
}
