//! What the two h2 targets (`h2_conn`, `h2_frames`) share: the input cut into pieces, and the
//! connection core (`h2::conn::Conn`) driven by two fuzzed peers one piece at a time, so that
//! both targets feed the core the same way and a change to that reaches both.

use std::time::{Duration, Instant};

use fc_init::h2::conn::{Conn, Host, Limits};
use fc_init::h2::frame::{self, StreamId, PREFACE};

/// Cuts `data` into pieces: a length byte, then that many bytes (the last piece may be short).
pub fn pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = (len as usize).min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

/// A host that admits the streams its rotating permits byte says, and numbers request ids.
struct FuzzHost {
    permits: u8,
    next: u32,
}

impl Host for FuzzHost {
    fn admit(&mut self, _stream: StreamId) -> bool {
        self.permits = self.permits.rotate_left(1);
        self.permits & 1 == 1
    }

    fn new_request_id(&mut self) -> String {
        self.next += 1;
        format!("id-{}", self.next)
    }
}

/// The connection core between a fuzzed client and a fuzzed function: what each sent that the
/// core has not taken yet, and the clock.
pub struct Driver {
    conn: Conn,
    host: FuzzHost,
    now: Instant,
    from_client: Vec<u8>,
    from_function: Vec<u8>,
}

/// The limits both targets drive the core with: small, so that fuzzed peers reach them.
pub fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(10),
        max_header_block: 4096,
        max_streams: 16,
        ..Limits::default()
    }
}

impl Driver {
    /// A connection with `limits` on input `data`: its first byte chooses which streams the
    /// host admits; the rest (returned) is for [`Driver::run`]. `None` on empty input.
    pub fn start(data: &[u8], limits: Limits) -> Option<(Driver, &[u8])> {
        let (&permits, rest) = data.split_first()?;
        Some((Driver::new(limits, permits), rest))
    }

    /// A connection past the client's preface and both peers' SETTINGS; `permits` chooses
    /// which streams the host admits.
    fn new(limits: Limits, permits: u8) -> Driver {
        let now = Instant::now();
        let mut conn = Conn::new(limits);
        let mut host = FuzzHost { permits, next: 0 };
        let mut hello = PREFACE.to_vec();
        frame::write_settings(&mut hello, &[]);
        conn.on_client_bytes(&hello, now, &mut host);
        let mut hello = Vec::new();
        frame::write_settings(&mut hello, &[]);
        conn.on_function_bytes(&hello);
        Driver {
            conn,
            host,
            now,
            from_client: Vec::new(),
            from_function: Vec::new(),
        }
    }

    /// Feeds `data` to the core piece by piece ([`pieces`]: a selector byte, then bytes, see
    /// [`Driver::step`]), and hands the core to `after` after each piece.
    pub fn run(&mut self, data: &[u8], mut after: impl FnMut(&mut Conn)) {
        for piece in pieces(data) {
            let Some((&what, bytes)) = piece.split_first() else {
                continue;
            };
            self.step(what, bytes);
            after(&mut self.conn);
        }
    }

    /// Feeds one piece, by its selector byte `what`: `bytes` from the client (0 to 3, modulo
    /// 8) or from the function (4 to 6); otherwise, by the first of `bytes`, the shutdown,
    /// the function or the client closing, or `what / 8` seconds passing.
    fn step(&mut self, what: u8, bytes: &[u8]) {
        let c = &mut self.conn;
        match what % 8 {
            0..=3 => {
                self.from_client.extend_from_slice(bytes);
                let n = c.on_client_bytes(&self.from_client, self.now, &mut self.host);
                self.from_client.drain(..n);
            }
            4..=6 => {
                self.from_function.extend_from_slice(bytes);
                let n = c.on_function_bytes(&self.from_function);
                self.from_function.drain(..n);
            }
            _ => match bytes.first().copied().unwrap_or(0) % 4 {
                0 => c.shutdown(self.now + Duration::from_secs(1)),
                1 => c.on_function_closed(),
                2 => c.on_client_closed(),
                _ => {
                    self.now += Duration::from_secs(u64::from(what / 8));
                    c.on_tick(self.now);
                }
            },
        }
    }
}
