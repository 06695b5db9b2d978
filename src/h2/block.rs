//! One direction's header blocks: read the fields fc-init needs, and write the block on so
//! that the receiving peer's HPACK decoder stays exactly where the sending peer's encoder
//! believes it is.
//!
//! Two ways to write a block on, chosen per direction:
//! - Pass-through (from the start): the sender's encoded bytes go on as they came, and fields
//!   fc-init adds (`x-fc-request-id`) are appended as literals without indexing. The
//!   receiver's table then evolves exactly as the sender's encoder expects.
//! - Re-encoding: every field is written again with references to the static table and
//!   literals without indexing only, so the receiver's dynamic table is never used again.
//!   A direction switches to it, for good, the first time a block that changed the sender's
//!   table cannot be passed through as it is: it is dropped (a refused stream, a stream fc-init
//!   has already reset) or a field must be taken out of it (an invalid `x-fc-request-id`).
//!   From then on the receiver's table is stale but never referenced, which is consistent;
//!   a block that changed no table can be dropped or rewritten without switching. The
//!   sender's table size updates still go on at the start of each block written again: a
//!   receiver that lowered its `SETTINGS_HEADER_TABLE_SIZE` expects one (RFC 7541 §4.2),
//!   and they only evict entries nobody refers to any more.
//!
//! Every block is decoded in full, in order, whatever happens to it: the mirror of the
//! sender's table must see every block the sender encoded (RFC 9113 §4.3).

use std::time::Duration;

use super::hpack::{self, Decoder, Field, HpackError};
use crate::http::request_id::valid_request_id;

/// The request-id header (docs/reference.md §4).
pub const REQUEST_ID: &[u8] = b"x-fc-request-id";

/// The fields of a block that fc-init looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// `content-type` is `application/grpc` or `application/grpc+…`.
    pub grpc: bool,
    /// The first valid `x-fc-request-id`; others are taken out of the block.
    pub request_id: Option<String>,
    pub grpc_timeout: Option<Duration>,
    /// `:status` (responses).
    pub status: Option<u16>,
    /// `grpc-status` (trailers, or a trailers-only response).
    pub grpc_status: Option<u32>,
    /// The block decodes to more than the direction's limit ([`Blocks::limit`]): it was
    /// decoded in full (the table mirror stays in step) but must be dropped, not forwarded.
    pub too_large: bool,
}

/// One direction: fc-init's mirror of the sender's encoder, and how blocks go on.
#[derive(Debug)]
pub struct Blocks {
    decoder: Decoder,
    reencode: bool,
    /// The last decoded block, re-encoded (without the fields taken out).
    scratch: Vec<u8>,
    /// The last decoded block changed the sender's table.
    changed_table: bool,
    /// Fields were taken out of the last decoded block.
    stripped: bool,
    /// The largest decoded header list (RFC 9113 §6.5.2's measure: name, value and 32 bytes
    /// per field) a block may have.
    max_list: usize,
}

impl Blocks {
    /// `allowed`: the table size the receiving peer announced (as fc-init clamped it).
    pub fn new(allowed: usize) -> Blocks {
        Blocks {
            decoder: Decoder::new(allowed),
            reencode: false,
            scratch: Vec::new(),
            changed_table: false,
            stripped: false,
            max_list: usize::MAX,
        }
    }

    /// Bounds the decoded size of a block (an HPACK bomb: a few bytes of references to a
    /// large table entry decode to megabytes). A larger block is still decoded to its end,
    /// so the mirror of the sender's table stays right, but nothing of it is kept: its
    /// [`Seen::too_large`] says so, and the caller drops it.
    pub fn limit(&mut self, max_list: usize) {
        self.max_list = max_list;
    }

    /// The receiving peer announced another `SETTINGS_HEADER_TABLE_SIZE` (clamped).
    pub fn allow(&mut self, size: usize) {
        self.decoder.allow(size);
    }

    /// Whether this direction re-encodes every block now.
    pub fn reencoding(&self) -> bool {
        self.reencode
    }

    /// Decodes a complete block, which must then be either [`Blocks::forward`]ed or
    /// [`Blocks::drop_block`]ped.
    pub fn decode(&mut self, block: &[u8]) -> Result<Seen, HpackError> {
        let mut seen = Seen::default();
        let mut stripped = false;
        let mut size = 0usize;
        let max_list = self.max_list;
        let scratch = &mut self.scratch;
        scratch.clear();
        let decoded = self.decoder.decode(block, &mut |field: Field<'_>| {
            size = size.saturating_add(field.name.len() + field.value.len() + 32);
            if size > max_list {
                // Decoding goes on for the table's sake; the fields are not kept (the
                // re-encoded copy would be as large as the bomb).
                if !seen.too_large {
                    seen = Seen {
                        too_large: true,
                        ..Seen::default()
                    };
                    scratch.clear();
                }
                return;
            }
            if field.name == REQUEST_ID {
                if seen.request_id.is_none() && valid_request_id(field.value) {
                    seen.request_id = Some(String::from_utf8_lossy(field.value).into_owned());
                } else {
                    stripped = true;
                    return;
                }
            }
            note(&mut seen, field);
            hpack::encode(scratch, field);
        })?;
        if let Some(updates) = decoded.size_updates {
            let mut prefix = Vec::new();
            hpack::encode_size_updates(&mut prefix, updates);
            scratch.splice(0..0, prefix);
        }
        self.changed_table = decoded.changed_table;
        self.stripped = stripped;
        Ok(seen)
    }

    /// Appends the block just decoded to `out` (the block itself, not frames), then `add` as
    /// literals without indexing.
    pub fn forward(&mut self, block: &[u8], add: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
        if self.stripped && self.changed_table {
            self.reencode = true;
        }
        if self.reencode || self.stripped {
            out.extend_from_slice(&self.scratch);
        } else {
            out.extend_from_slice(block);
        }
        for (name, value) in add {
            hpack::encode_literal(out, name, value);
        }
    }

    /// The block just decoded is not written on.
    pub fn drop_block(&mut self) {
        if self.changed_table {
            self.reencode = true;
        }
    }
}

/// Records the fields fc-init looks at. Names arrive lowercase in HTTP/2 (RFC 9113 §8.2.1;
/// a peer that sends uppercase sends a malformed request, which the function judges).
fn note(seen: &mut Seen, field: Field<'_>) {
    let text = || String::from_utf8_lossy(field.value).into_owned();
    match field.name {
        b":method" => seen.method = text(),
        b":path" => seen.path = text(),
        b"content-type" => {
            let v = field.value;
            seen.grpc = v.starts_with(b"application/grpc")
                && matches!(v.get(16), None | Some(b'+') | Some(b';'));
        }
        b"grpc-timeout" => seen.grpc_timeout = grpc_timeout(field.value),
        b":status" => {
            seen.status = std::str::from_utf8(field.value)
                .ok()
                .and_then(|s| s.parse().ok())
        }
        b"grpc-status" => {
            seen.grpc_status = std::str::from_utf8(field.value)
                .ok()
                .and_then(|s| s.parse().ok())
        }
        _ => {}
    }
}

/// `grpc-timeout`: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), per gRPC's
/// PROTOCOL-HTTP2.md; anything else is ignored.
pub fn grpc_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fields: &[(&[u8], &[u8])], indexed: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            if indexed {
                // Literal with incremental indexing, new name.
                out.push(0x40);
                out.push(name.len() as u8);
                out.extend_from_slice(name);
                out.push(value.len() as u8);
                out.extend_from_slice(value);
            } else {
                hpack::encode_literal(&mut out, name, value);
            }
        }
        out
    }

    fn list(bytes: &[u8], d: &mut Decoder) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut got = Vec::new();
        d.decode(bytes, &mut |f| {
            got.push((f.name.to_vec(), f.value.to_vec()))
        })
        .expect("decodes");
        got
    }

    #[test]
    fn pass_through_appends_the_id_and_keeps_the_bytes() {
        let mut b = Blocks::new(4096);
        let req = block(
            &[(b":path", b"/a"), (b"content-type", b"application/grpc")],
            true,
        );
        let seen = b.decode(&req).unwrap();
        assert_eq!(seen.path, "/a");
        assert!(seen.grpc);
        let mut out = Vec::new();
        b.forward(&req, &[(REQUEST_ID, b"id-1")], &mut out);
        assert_eq!(&out[..req.len()], &req[..]);
        // The receiver's decoder sees both fields and then the id, and its table holds what
        // the sender inserted.
        let mut receiver = Decoder::new(4096);
        let got = list(&out, &mut receiver);
        assert_eq!(got[2], (REQUEST_ID.to_vec(), b"id-1".to_vec()));
        // The sender's next block refers to its dynamic entries: still right at the receiver.
        let next = [0xbf, 0xbe]; // indexes 63 (":path: /a") and 62 (content-type)
        b.decode(&next).unwrap();
        let mut out = Vec::new();
        b.forward(&next, &[], &mut out);
        assert_eq!(out, next);
        assert_eq!(
            list(&out, &mut receiver)[0],
            (b":path".to_vec(), b"/a".to_vec())
        );
    }

    #[test]
    fn a_dropped_block_that_changed_the_table_switches_to_reencoding() {
        let mut b = Blocks::new(4096);
        let mut receiver = Decoder::new(4096);
        // Dropped without changing the table: still pass-through.
        b.decode(&block(&[(b":path", b"/x")], false)).unwrap();
        b.drop_block();
        assert!(!b.reencoding());
        // Dropped after inserting an entry the receiver never sees.
        b.decode(&block(&[(b":path", b"/refused")], true)).unwrap();
        b.drop_block();
        assert!(b.reencoding());
        // The sender refers to its entry; fc-init writes the field out in full.
        let next = [0xbe];
        let seen = b.decode(&next).unwrap();
        assert_eq!(seen.path, "/refused");
        let mut out = Vec::new();
        b.forward(&next, &[], &mut out);
        assert_eq!(
            list(&out, &mut receiver),
            [(b":path".to_vec(), b"/refused".to_vec())]
        );
    }

    #[test]
    fn size_updates_go_on_in_blocks_written_again() {
        let mut b = Blocks::new(4096);
        b.decode(&block(&[(b":path", b"/x")], true)).unwrap();
        b.drop_block();
        assert!(b.reencoding());
        // Down to 0 and back to 100, then a field: the receiver must see both sizes.
        let mut next = vec![0x20, 0x3f, 0x45];
        hpack::encode_literal(&mut next, b":path", b"/y");
        b.decode(&next).unwrap();
        let mut out = Vec::new();
        b.forward(&next, &[], &mut out);
        assert_eq!(&out[..3], &[0x20, 0x3f, 0x45]);
        let got = list(&out, &mut Decoder::new(4096));
        assert_eq!(got, [(b":path".to_vec(), b"/y".to_vec())]);
    }

    #[test]
    fn an_invalid_client_id_is_taken_out() {
        let mut b = Blocks::new(4096);
        let req = block(
            &[
                (b":path", b"/"),
                (REQUEST_ID, b"bad id"),
                (REQUEST_ID, b"ok"),
            ],
            false,
        );
        let seen = b.decode(&req).unwrap();
        assert_eq!(seen.request_id.as_deref(), Some("ok"));
        let mut out = Vec::new();
        b.forward(&req, &[], &mut out);
        let got = list(&out, &mut Decoder::new(4096));
        assert_eq!(
            got,
            [
                (b":path".to_vec(), b"/".to_vec()),
                (REQUEST_ID.to_vec(), b"ok".to_vec())
            ]
        );
        // Nothing was inserted, so later blocks pass through again.
        assert!(!b.reencoding());
        // Inserted and taken out: the switch.
        let req = block(&[(REQUEST_ID, b"bad id")], true);
        assert_eq!(b.decode(&req).unwrap().request_id, None);
        b.forward(&req, &[], &mut Vec::new());
        assert!(b.reencoding());
    }

    #[test]
    fn grpc_timeouts() {
        assert_eq!(grpc_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            grpc_timeout(b"99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in [&b""[..], b"m", b"123456789m", b"1x", b"-1S", b"1 S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn grpc_content_types() {
        for (ct, grpc) in [
            (&b"application/grpc"[..], true),
            (b"application/grpc+proto", true),
            (b"application/grpc;charset=x", true),
            (b"application/grpcx", false),
            (b"application/json", false),
        ] {
            let mut b = Blocks::new(4096);
            let seen = b.decode(&block(&[(b"content-type", ct)], false)).unwrap();
            assert_eq!(seen.grpc, grpc, "{ct:?}");
        }
    }
}
