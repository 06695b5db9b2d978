//! What fc-init's own error answer costs to build (docs/reference.md §6): `http::fc_error`'s builder
//! (fields checked, body through serde_json) against a bare one (no checks) in one run. An
//! overloaded or stopping fc-init answers every request this way (429, 503), so this is the
//! hot path of overload. The builder's JSON body was hand-written before; this benchmark
//! measured that at about 280 ns per answer against 100 ns for the serde_json body, which is
//! why the body now goes through serde_json. Benchmark tooling, not part of the library:
//!
//!     cargo run --release --example error_answer

use std::hint::black_box;
use std::time::Instant;

use fc_init::http::fc_error::{error_body, write_error_response, ErrorType};

/// The same answer, its head written without checks.
fn with_serde(out: &mut Vec<u8>, body: &mut Vec<u8>, id: &str, message: &str) {
    *body = error_body(ErrorType::TooManyRequests, message, id);
    out.clear();
    out.extend_from_slice(
        b"HTTP/1.1 429 Too Many Requests\r\nX-Fc-Error-Type: TooManyRequests\r\n",
    );
    out.extend_from_slice(b"x-fc-request-id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn main() {
    const N: u32 = 2_000_000;
    let id = "5b2c1d9e-8f3a-4b6c-9d7e-1a2b3c4d5e6f";
    let message = "too many requests queued";
    let (mut a, mut b, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    write_error_response(&mut a, 429, ErrorType::TooManyRequests, id, message, false);
    with_serde(&mut b, &mut scratch, id, message);
    assert_eq!(a, b, "both build the same answer");
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..N {
            write_error_response(
                &mut a,
                429,
                ErrorType::TooManyRequests,
                black_box(id),
                black_box(message),
                false,
            );
            black_box(&a);
        }
        let hand = t.elapsed().as_nanos() as f64 / f64::from(N);
        let t = Instant::now();
        for _ in 0..N {
            with_serde(&mut b, &mut scratch, black_box(id), black_box(message));
            black_box(&b);
        }
        let serde = t.elapsed().as_nanos() as f64 / f64::from(N);
        println!(
            "round {round}: hand-written {hand:.0} ns, serde_json {serde:.0} ns ({:.2}x)",
            serde / hand
        );
    }
}
