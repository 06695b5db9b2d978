//! Property tests: the "fuzz target" for the request parser and body framing.
//! 1. Arbitrary bytes, delivered in arbitrary small reads, never panic the request or response
//!    path (head parse, then body copy, repeated for pipelined messages).
//! 2. Valid generated requests (random fields, Content-Length or chunked bodies split into
//!    random chunks with extensions and trailers, pipelined, trickled) parse, and the decoded
//!    body equals the original; a chunked re-encode decodes to the same body again.

use std::io::{self, Read};
use std::time::Duration;

use proptest::prelude::*;

use super::body::{copy_body, Output};
use super::buffered::{Buffered, Timeouts};
use super::request::{read_request_head_into, RequestHead};
use super::response::read_response_head;
use super::{BodyFraming, Limits};

/// A reader that returns the data in pieces of the given (cycled) sizes.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    i: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = size.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Timeouts for Trickle {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

fn buffered(data: Vec<u8>, sizes: Vec<usize>, cap: usize) -> Buffered<Trickle> {
    Buffered::with_capacity(
        Trickle {
            data,
            pos: 0,
            sizes,
            i: 0,
        },
        cap,
    )
}

/// Chunk sizes (cycled), extensions (cycled) and trailer fields of a chunked body.
type ChunkPlan = (Vec<usize>, Vec<String>, Vec<(String, String)>);

#[derive(Debug, Clone)]
struct GenRequest {
    method: &'static str,
    target: String,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: Option<ChunkPlan>,
}

impl GenRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!("{} {} HTTP/1.1\r\nHost: h\r\n", self.method, self.target).as_bytes(),
        );
        for (n, v) in &self.fields {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        match &self.chunked {
            None => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
            Some((cuts, exts, trailers)) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &self.body[..];
                let mut i = 0;
                while !rest.is_empty() {
                    let n = cuts[i % cuts.len()].clamp(1, rest.len());
                    let ext = &exts[i % exts.len()];
                    out.extend_from_slice(format!("{n:X}{ext}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                    i += 1;
                }
                out.extend_from_slice(b"0\r\n");
                for (n, v) in trailers {
                    out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

fn field_value() -> impl Strategy<Value = String> {
    // No leading/trailing whitespace: the parser trims it (RFC 9112 §5.1 OWS).
    prop_oneof![Just(String::new()), "[!-~]([ -~\t]{0,30}[!-~])?"]
}

fn gen_request() -> impl Strategy<Value = GenRequest> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "X-CUSTOM"]);
    let target = "/[a-zA-Z0-9/._~%-]{0,30}(\\?[a-zA-Z0-9=&%._-]{0,20})?";
    let fields = prop::collection::vec(("X-[A-Za-z0-9-]{1,15}", field_value()), 0..12);
    let body = prop::collection::vec(any::<u8>(), 0..3000);
    let ext = prop_oneof![
        Just(String::new()),
        ";[a-z]{1,5}",
        ";[a-z]{1,5}=[a-z0-9]{1,5}",
        " ;[a-z]{1,5}=\"[ a-z]{0,5}\"",
    ];
    let chunked = prop::option::of((
        prop::collection::vec(1usize..700, 1..8),
        prop::collection::vec(ext, 1..4),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", field_value()), 0..3),
    ));
    (method, target, fields, body, chunked).prop_map(|(method, target, fields, body, chunked)| {
        GenRequest {
            method,
            target,
            fields,
            body,
            chunked,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        prefix in prop::sample::select(vec![
            &b""[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n",
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]),
        sizes in prop::collection::vec(1usize..64, 1..8),
        cap in 64usize..20000,
    ) {
        let mut input = prefix.to_vec();
        input.extend_from_slice(&data);
        let limits = Limits { max_header_bytes: 1024, max_headers: 16, require_host: true };

        let mut src = buffered(input.clone(), sizes.clone(), cap);
        let mut head = RequestHead::default();
        for _ in 0..8 {
            if read_request_head_into(&mut src, &limits, &mut head).is_err() {
                break;
            }
            prop_assert!(head.framing != BodyFraming::UntilClose);
            if copy_body(&mut src, &mut io::sink(), head.framing, Output::Chunked, 10_000).is_err() {
                break;
            }
        }

        let mut src = buffered(input, sizes, cap);
        if let Ok(h) = read_response_head(&mut src, &limits, false) {
            let _ = copy_body(&mut src, &mut io::sink(), h.framing, Output::Raw, 10_000);
        }
    }

    #[test]
    fn valid_requests_round_trip(
        reqs in prop::collection::vec(gen_request(), 1..4),
        sizes in prop::collection::vec(1usize..200, 1..8),
        cap in 64usize..9000,
    ) {
        let mut wire = Vec::new();
        for r in &reqs {
            r.encode(&mut wire);
        }
        let mut src = buffered(wire, sizes, cap);
        let limits = Limits::default();
        let mut head = RequestHead::default();
        for r in &reqs {
            read_request_head_into(&mut src, &limits, &mut head).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(head.method(), r.method);
            prop_assert_eq!(head.target(), r.target.as_str());
            prop_assert!(head.keep_alive);
            let got: Vec<(String, String)> = head
                .headers
                .iter()
                .filter(|f| f.name.starts_with("X-"))
                .map(|f| (f.name.to_owned(), String::from_utf8_lossy(f.value).into_owned()))
                .collect();
            prop_assert_eq!(&got, &r.fields);
            match &r.chunked {
                None => prop_assert_eq!(head.framing, BodyFraming::Length(r.body.len() as u64)),
                Some(_) => prop_assert_eq!(head.framing, BodyFraming::Chunked),
            }
            // Re-encode as chunked, then decode that: both must give the original body.
            let mut reencoded = Vec::new();
            let n = copy_body(&mut src, &mut reencoded, head.framing, Output::Chunked, 1 << 20)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(n, r.body.len() as u64);
            let mut again = Buffered::new(&reencoded[..]);
            let mut body = Vec::new();
            copy_body(&mut again, &mut body, BodyFraming::Chunked, Output::Raw, 1 << 20)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&body, &r.body);
            prop_assert!(again.buffer().is_empty());
        }
        prop_assert!(src.buffer().is_empty());
    }

    #[test]
    fn body_limit_is_never_exceeded(
        body in prop::collection::vec(any::<u8>(), 0..2000),
        cut in 1usize..300,
        max in 0u64..2500,
    ) {
        let mut wire = Vec::new();
        for piece in body.chunks(cut) {
            wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut src = Buffered::new(&wire[..]);
        let mut out = Vec::new();
        let r = copy_body(&mut src, &mut out, BodyFraming::Chunked, Output::Raw, max);
        prop_assert!(out.len() as u64 <= max);
        prop_assert_eq!(r.is_ok(), body.len() as u64 <= max);
    }
}
