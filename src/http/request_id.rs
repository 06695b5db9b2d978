//! Request ids: keep a client's `x-fc-request-id` when it is sane (docs/reference.md §4:
//! `[A-Za-z0-9._:-]{1,128}`, which also keeps it safe inside a log line, a header and JSON),
//! otherwise make a new one.
//!
//! New ids look like UUIDv4 (8-4-4-4-12 lowercase hex). They are unique within the process by
//! construction (a counter pushed through a bijective mixer) and across processes and restarts
//! by a 128-bit seed from `getrandom(2)` (falling back to `/dev/urandom`, then to time and pid
//! if neither is available: ids must never fail to be made).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Whether `id` matches `[A-Za-z0-9._:-]{1,128}`.
pub fn valid_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

static SEED: OnceLock<[u64; 2]> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn seed() -> [u64; 2] {
    *SEED.get_or_init(|| {
        let mut bytes = [0u8; 16];
        if !fill_random(&mut bytes) {
            // Last resort: still distinct per process start (pid) and time.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = (nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
        }
        let (a, b) = bytes.split_at(8);
        [
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(b.try_into().unwrap_or_default()),
        ]
    })
}

fn fill_random(buf: &mut [u8; 16]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        let n = crate::sys::retry(|| {
            let tail = &mut buf[filled..];
            // SAFETY: the pointer and length describe the unfilled tail of `buf`, which is
            // valid for writes for that many bytes; getrandom writes at most that many.
            match unsafe { libc::getrandom(tail.as_mut_ptr().cast(), tail.len(), 0) } {
                n if n < 0 => Err(std::io::Error::last_os_error()),
                n => Ok(n as usize),
            }
        });
        if let Ok(n @ 1..) = n {
            filled += n;
        } else {
            // ENOSYS on very old kernels or a seccomp filter: try the device instead.
            use std::io::Read;
            return std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(buf))
                .is_ok();
        }
    }
    true
}

/// The SplitMix64 finaliser: a bijection on u64, so distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A new unique request id, e.g. `0f8fad5b-d9cb-469f-a165-70867728950e`.
pub fn new_request_id() -> String {
    let [s0, s1] = seed();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `lo` is a bijection of the counter and `hi` another function of it, both keyed by the
    // seed: two ids of one process would have to collide in 122 mixed bits at once.
    let lo = mix(n ^ s0);
    let hi = mix(n.wrapping_add(s1) ^ 0x9e37_79b9_7f4a_7c15);
    // UUIDv4 markers: version 4 in the 13th hex digit (bits 15..12 of `hi`), variant 10xx in
    // the 17th (the top two bits of `lo`).
    let hi = (hi & !0xf000) | 0x4000;
    let v = (u128::from(hi) << 64) | u128::from(lo);
    let v = (v & !(0xc000u128 << 48)) | (0x8000u128 << 48);
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn validity() {
        assert!(valid_request_id(b"abc-DEF_012.3:4"));
        assert!(valid_request_id(&[b'a'; 128]));
        assert!(!valid_request_id(&[b'a'; 129]));
        assert!(!valid_request_id(b""));
        for bad in [&b"a b"[..], b"a/b", b"a\r\n", b"\"", b"\xc3\xa9"] {
            assert!(!valid_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn new_ids_are_unique_uuid_shaped_and_valid() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = new_request_id();
            assert!(valid_request_id(id.as_bytes()));
            let parts: Vec<_> = id.split('-').map(str::len).collect();
            assert_eq!(parts, [8, 4, 4, 4, 12], "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
            assert!(id
                .bytes()
                .all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(seen.insert(id));
        }
    }
}
