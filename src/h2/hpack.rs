//! HPACK (RFC 7541) as fc-init needs it: a decoder that mirrors one peer's encoder (its
//! dynamic table, its size updates), so that fc-init can read the fields of every header
//! block that peer sends, and an encoder that writes fields WITHOUT touching any table
//! (static-table references and literals without indexing), so that whatever fc-init adds
//! or writes never changes the receiving peer's decoder state.
//!
//! Hand-written rather than taken from a crate (the choice the h2 relay asked for): `hpack`
//! 0.3 was last released in 2016 and panics on hostile integers; its fork `loona-hpack`
//! (the previous `fluke-hpack`) belongs to an experimental server, accepts table size
//! updates anywhere in a block (RFC 7541 §4.2 allows them only at its start), asserts
//! (panics) on a size above the allowed one, and brings `tracing` and `thiserror`;
//! `httlib-hpack` has one maintainer and no release since 2021; the `h2` crate keeps its
//! codec private and tied to `bytes`. A decoder is two hundred lines plus the Huffman table,
//! and written here it bounds everything and is fuzzed with the frame reader.
//!
//! Rules, applied strictly (a violation is a `COMPRESSION_ERROR` for the whole connection,
//! RFC 9113 §4.3, since the table can no longer be trusted):
//! - Integers are at most 2^28 (no header field or table is that large); strings must fit
//!   the block; Huffman strings must decode (RFC 7541 §5.2: no EOS, padding < 8 bits of 1s).
//! - Indexes must exist. Size updates come only at the start of a block and never exceed the
//!   bound the receiving peer announced (`SETTINGS_HEADER_TABLE_SIZE`, as fc-init clamped it).
//! - The dynamic table holds at most its current maximum (entry size = name + value + 32),
//!   so memory per table is bounded by that setting.

use std::collections::VecDeque;

use super::huffman;

/// The table size every decoder starts with (RFC 7541 §4.2, the SETTINGS default).
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// The largest integer accepted in a block.
const MAX_INT: usize = 1 << 28;

/// Why a header block cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer above 2^28.
    IntegerTooLarge,
    /// An index that is in neither table (or 0).
    BadIndex,
    /// A Huffman string that does not decode.
    Huffman(huffman::HuffmanError),
    /// A table size update after a field, or above the announced bound.
    BadSizeUpdate,
}

impl std::fmt::Display for HpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            HpackError::Truncated => "truncated representation",
            HpackError::IntegerTooLarge => "integer too large",
            HpackError::BadIndex => "index out of the tables",
            HpackError::Huffman(_) => "bad Huffman string",
            HpackError::BadSizeUpdate => "bad dynamic table size update",
        };
        write!(f, "HPACK: {what}")
    }
}

impl std::error::Error for HpackError {}

/// One decoded field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// Sent as "never indexed" (RFC 7541 §6.2.3): whoever writes it on must keep that.
    pub never_indexed: bool,
}

/// What decoding a block did besides yielding fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decoded {
    /// The block inserted entries or changed the table's size: a peer that does not see
    /// this block would decode later blocks differently.
    pub changed_table: bool,
    /// The smallest and the last table size the block's size updates set, if any: what a
    /// block written again must still signal (RFC 7541 §4.2).
    pub size_updates: Option<(usize, usize)>,
}

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The dynamic table (RFC 7541 §2.3.2): newest entry first.
#[derive(Debug, Default)]
struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

impl Table {
    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some((n, v)) => self.size -= entry_size(&n, &v),
                None => break,
            }
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = entry_size(name, value);
        // RFC 7541 §4.4: an entry larger than the table empties it and is not added.
        if size > self.max {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max - size);
        self.entries.push_front((name.into(), value.into()));
        self.size += size;
    }

    /// Index 1.. across the static table, then the dynamic one.
    fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        match index {
            0 => None,
            i if i <= STATIC_TABLE.len() => Some(STATIC_TABLE[i - 1]),
            i => self
                .entries
                .get(i - STATIC_TABLE.len() - 1)
                .map(|(n, v)| (&n[..], &v[..])),
        }
    }
}

/// fc-init's mirror of one peer's HPACK encoder.
#[derive(Debug)]
pub struct Decoder {
    table: Table,
    /// The largest size update accepted: what the receiving peer announced, clamped.
    allowed: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Decoder {
    /// A decoder whose peer may grow the table to `allowed` bytes.
    pub fn new(allowed: usize) -> Decoder {
        Decoder {
            table: Table {
                max: DEFAULT_TABLE_SIZE,
                ..Table::default()
            },
            allowed,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// The receiving peer announced a `SETTINGS_HEADER_TABLE_SIZE`. The bound only grows:
    /// blocks sent before the peer saw a smaller value may still use the larger one, and the
    /// receiving peer checks its own bound anyway; fc-init's only concern is memory, which
    /// the clamp on the announced value takes care of.
    pub fn allow(&mut self, size: usize) {
        self.allowed = self.allowed.max(size);
    }

    /// Decodes a complete header block, handing each field to `sink` in order.
    pub fn decode(
        &mut self,
        block: &[u8],
        sink: &mut dyn FnMut(Field<'_>),
    ) -> Result<Decoded, HpackError> {
        let mut at = 0;
        let mut decoded = Decoded::default();
        let mut fields_seen = false;
        while at < block.len() {
            let first = block[at];
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let (index, n) = integer(&block[at..], 7)?;
                at += n;
                let (name, value) = self.table.get(index).ok_or(HpackError::BadIndex)?;
                sink(Field {
                    name,
                    value,
                    never_indexed: false,
                });
                fields_seen = true;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3): only before the first field.
                let (size, n) = integer(&block[at..], 5)?;
                at += n;
                if fields_seen || size > self.allowed {
                    return Err(HpackError::BadSizeUpdate);
                }
                self.table.max = size;
                self.table.evict_to(size);
                decoded.changed_table = true;
                decoded.size_updates = Some(match decoded.size_updates {
                    Some((smallest, _)) => (smallest.min(size), size),
                    None => (size, size),
                });
            } else {
                // Literals (§6.2): with incremental indexing (01), without (0000), never
                // indexed (0001).
                let (indexing, prefix) = if first & 0x40 != 0 {
                    (true, 6)
                } else {
                    (false, 4)
                };
                let never_indexed = !indexing && first & 0x10 != 0;
                let (index, n) = integer(&block[at..], prefix)?;
                at += n;
                self.name.clear();
                if index == 0 {
                    at += string(&block[at..], &mut self.name)?;
                } else {
                    let (name, _) = self.table.get(index).ok_or(HpackError::BadIndex)?;
                    self.name.extend_from_slice(name);
                }
                self.value.clear();
                at += string(&block[at..], &mut self.value)?;
                sink(Field {
                    name: &self.name,
                    value: &self.value,
                    never_indexed,
                });
                if indexing {
                    self.table.insert(&self.name, &self.value);
                    decoded.changed_table = true;
                }
                fields_seen = true;
            }
        }
        Ok(decoded)
    }
}

/// An integer with an `prefix`-bit prefix (§5.1): its value and the bytes it took.
fn integer(input: &[u8], prefix: u8) -> Result<(usize, usize), HpackError> {
    // u64 whatever the word size: 0x7f << 28 must not overflow before it is checked.
    let mask = (1u64 << prefix) - 1;
    let first = *input.first().ok_or(HpackError::Truncated)?;
    let mut value = u64::from(first) & mask;
    if value < mask {
        return Ok((value as usize, 1));
    }
    let mut shift = 0;
    for (i, &b) in input.iter().enumerate().skip(1) {
        value += u64::from(b & 0x7f) << shift;
        if value > MAX_INT as u64 {
            return Err(HpackError::IntegerTooLarge);
        }
        if b & 0x80 == 0 {
            return Ok((value as usize, i + 1));
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerTooLarge);
        }
    }
    Err(HpackError::Truncated)
}

/// A string literal (§5.2) appended to `out`; returns the bytes it took.
fn string(input: &[u8], out: &mut Vec<u8>) -> Result<usize, HpackError> {
    let huffman = input.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let (len, n) = integer(input, 7)?;
    let raw = input.get(n..n + len).ok_or(HpackError::Truncated)?;
    if huffman {
        huffman::decode(raw, out).map_err(HpackError::Huffman)?;
    } else {
        out.extend_from_slice(raw);
    }
    Ok(n + len)
}

/// Appends an integer with a `prefix`-bit prefix; `flags` are the first byte's high bits.
fn put_integer(out: &mut Vec<u8>, mut value: usize, prefix: u8, flags: u8) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// Appends `field` so that no decoder's table changes: a static-table reference when the
/// static table has the whole field, else a literal without indexing (or never indexed, as
/// the field came), its name by static index where there is one.
pub fn encode(out: &mut Vec<u8>, field: Field<'_>) {
    let mut name_index = 0;
    for (i, &(name, value)) in STATIC_TABLE.iter().enumerate() {
        if name == field.name {
            if value == field.value && !field.never_indexed {
                put_integer(out, i + 1, 7, 0x80);
                return;
            }
            if name_index == 0 {
                name_index = i + 1;
            }
        }
    }
    let flags = if field.never_indexed { 0x10 } else { 0x00 };
    put_integer(out, name_index, 4, flags);
    if name_index == 0 {
        put_string(out, field.name);
    }
    put_string(out, field.value);
}

/// Appends the size updates a block written again must carry: the smallest size, then the
/// last if it differs.
pub fn encode_size_updates(out: &mut Vec<u8>, (smallest, last): (usize, usize)) {
    put_integer(out, smallest, 5, 0x20);
    if last != smallest {
        put_integer(out, last, 5, 0x20);
    }
}

/// Appends a literal field without indexing (the representation fc-init adds fields with).
pub fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    encode(
        out,
        Field {
            name,
            value,
            never_indexed: false,
        },
    );
}

/// The static table (RFC 7541 Appendix A).
pub const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::tests::hex;

    fn fields(
        d: &mut Decoder,
        block: &[u8],
    ) -> Result<(Vec<(String, String)>, Decoded), HpackError> {
        let mut out = Vec::new();
        let decoded = d.decode(block, &mut |f| {
            out.push((
                String::from_utf8_lossy(f.name).into_owned(),
                String::from_utf8_lossy(f.value).into_owned(),
            ))
        })?;
        Ok((out, decoded))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// RFC 7541 Appendix C.3 and C.4: three requests on one connection, without and with
    /// Huffman coding, the table carried from one to the next.
    #[test]
    fn rfc_request_examples() {
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut d = Decoder::new(DEFAULT_TABLE_SIZE);
            let (f, dec) = fields(&mut d, &hex(blocks[0])).unwrap();
            assert!(dec.changed_table);
            assert_eq!(
                f,
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com")
                ])
            );
            let (f, _) = fields(&mut d, &hex(blocks[1])).unwrap();
            assert_eq!(f[3], (":authority".into(), "www.example.com".into()));
            assert_eq!(f[4], ("cache-control".into(), "no-cache".into()));
            let (f, _) = fields(&mut d, &hex(blocks[2])).unwrap();
            assert_eq!(
                f,
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value")
                ])
            );
            assert_eq!(d.table.size, 164);
        }
    }

    /// RFC 7541 Appendix C.5: responses with a 256-byte table, evictions included.
    #[test]
    fn rfc_response_examples_with_eviction() {
        let mut d = Decoder::new(256);
        assert!(fields(&mut d, &hex("3fe1 01")).is_ok()); // size update to 256
        fields(
            &mut d,
            &hex(
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230
                 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65
                 7861 6d70 6c65 2e63 6f6d",
            ),
        )
        .unwrap();
        assert_eq!(d.table.size, 222);
        let (f, _) = fields(&mut d, &hex("4803 3330 37c1 c0bf")).unwrap();
        assert_eq!(f[0], (":status".into(), "307".into()));
        assert_eq!(f[3], ("location".into(), "https://www.example.com".into()));
        assert_eq!(d.table.size, 222);
        assert_eq!(d.table.entries.len(), 4);
    }

    #[test]
    fn size_updates_only_at_the_start_and_within_the_bound() {
        let mut d = Decoder::new(4096);
        assert_eq!(
            fields(&mut d, &hex("82 20")).unwrap_err(),
            HpackError::BadSizeUpdate
        );
        let mut d = Decoder::new(100);
        // 3f e1 1f = 31 + 0x61 + (0x1f << 7) = 4096: above 100.
        assert_eq!(
            fields(&mut d, &hex("3fe1 1f")).unwrap_err(),
            HpackError::BadSizeUpdate
        );
        d.allow(4096);
        assert!(fields(&mut d, &hex("3fe1 1f 20 82")).is_ok());
    }

    #[test]
    fn bad_blocks_are_refused() {
        let mut d = Decoder::new(4096);
        for (bad, err) in [
            ("80", HpackError::BadIndex),
            ("be", HpackError::BadIndex),
            ("ff ff ff ff ff 0f", HpackError::IntegerTooLarge),
            ("ff 80", HpackError::Truncated),
            ("40 05 61", HpackError::Truncated),
            ("00 01 61", HpackError::Truncated),
            ("4f", HpackError::Truncated),
            (
                "00 81 ff 00",
                HpackError::Huffman(huffman::HuffmanError::BadPadding),
            ),
        ] {
            assert_eq!(fields(&mut d, &hex(bad)).unwrap_err(), err, "{bad}");
        }
    }

    #[test]
    fn an_entry_naming_an_evicted_entry_keeps_its_name() {
        // Table of 60 bytes: one entry "aaaa: b" (4 + 1 + 32 = 37) fits; a second one that
        // takes its name by index evicts it while being inserted.
        let mut d = Decoder::new(60);
        let mut block = hex("3f1d"); // size update to 60
        block.extend(hex("40 04 61616161 01 62"));
        fields(&mut d, &block).unwrap();
        let (f, _) = fields(&mut d, &hex("7e 01 63")).unwrap(); // name = index 62
        assert_eq!(f, pairs(&[("aaaa", "c")]));
        let (f, _) = fields(&mut d, &hex("be")).unwrap();
        assert_eq!(f, pairs(&[("aaaa", "c")]));
    }

    #[test]
    fn encoding_touches_no_table() {
        let mut out = Vec::new();
        encode_literal(&mut out, b":status", b"200");
        encode_literal(&mut out, b":status", b"504");
        encode_literal(&mut out, b"x-fc-request-id", b"abc");
        encode(
            &mut out,
            Field {
                name: b"authorization",
                value: b"secret",
                never_indexed: true,
            },
        );
        let long = vec![b'v'; 300];
        encode_literal(&mut out, b"x-long", &long);
        assert_eq!(out[0], 0x88, "whole static entry is indexed");
        let mut d = Decoder::new(4096);
        let mut never = Vec::new();
        let (f, dec) = {
            let mut got = Vec::new();
            let dec = d
                .decode(&out, &mut |f| {
                    never.push(f.never_indexed);
                    got.push((f.name.to_vec(), f.value.to_vec()));
                })
                .unwrap();
            (got, dec)
        };
        assert!(!dec.changed_table);
        assert_eq!(d.table.entries.len(), 0);
        assert_eq!(f[1], (b":status".to_vec(), b"504".to_vec()));
        assert_eq!(f[2], (b"x-fc-request-id".to_vec(), b"abc".to_vec()));
        assert_eq!(f[4].1, long);
        assert_eq!(never, [false, false, false, true, false]);
    }

    #[test]
    fn integers_round_trip() {
        for v in [0, 1, 14, 15, 16, 126, 127, 128, 255, 1337, 1 << 20, MAX_INT] {
            for prefix in [4, 5, 6, 7] {
                let mut out = Vec::new();
                put_integer(&mut out, v, prefix, 0);
                assert_eq!(
                    integer(&out, prefix),
                    Ok((v, out.len())),
                    "{v} prefix {prefix}"
                );
            }
        }
    }
}
