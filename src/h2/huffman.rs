//! The Huffman code of HPACK (RFC 7541 §5.2, Appendix B), decoding only: fc-init reads
//! Huffman-coded strings from peers but writes its own strings as they are.
//!
//! The code is canonical (codes of one length are consecutive, and the first code of each
//! length follows from the last of the shorter one), so a decoder needs, per length, only the
//! first code, where its symbols start and how many there are: the tables below, derived from
//! Appendix B. Decoding walks the bits one at a time; header strings are short, and this keeps
//! the tables at a few hundred bytes.

/// Why a Huffman string is refused (RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// A code longer than any of the table's.
    BadCode,
    /// The EOS symbol inside the string.
    Eos,
    /// Padding longer than 7 bits, or not the most significant bits of EOS (all ones).
    BadPadding,
}

/// Decodes `input`, appending the octets to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let mut code: u32 = 0;
    let mut len: usize = 0;
    for &byte in input {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if len >= FIRST_CODE.len() {
                return Err(HuffmanError::BadCode);
            }
            let count = u32::from(COUNT[len]);
            let index = code.wrapping_sub(FIRST_CODE[len]);
            if count != 0 && code >= FIRST_CODE[len] && index < count {
                match SYMBOLS[usize::from(START[len]) + index as usize] {
                    256 => return Err(HuffmanError::Eos),
                    symbol => out.push(symbol as u8),
                }
                code = 0;
                len = 0;
            }
        }
    }
    // What is left must be padding: fewer than 8 bits, all ones (a prefix of EOS).
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError::BadPadding);
    }
    Ok(())
}

/// Symbols in code order (by length, then code); 256 is EOS.
const SYMBOLS: [u16; 257] = [
    48, 49, 50, 97, 99, 101, 105, 111, 115, 116, 32, 37, 45, 46, 47, 51, 52, 53, 54, 55, 56, 57,
    61, 65, 95, 98, 100, 102, 103, 104, 108, 109, 110, 112, 114, 117, 58, 66, 67, 68, 69, 70, 71,
    72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 89, 106, 107, 113, 118, 119,
    120, 121, 122, 38, 42, 44, 59, 88, 90, 33, 34, 40, 41, 63, 39, 43, 124, 35, 62, 0, 36, 64, 91,
    93, 126, 94, 125, 60, 96, 123, 92, 195, 208, 128, 130, 131, 162, 184, 194, 224, 226, 153, 161,
    167, 172, 176, 177, 179, 209, 216, 217, 227, 229, 230, 129, 132, 133, 134, 136, 146, 154, 156,
    160, 163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190, 196, 198, 228, 232, 233, 1,
    135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157, 158, 165, 166, 168, 174,
    175, 180, 182, 183, 188, 191, 197, 231, 239, 9, 142, 144, 145, 148, 159, 171, 206, 215, 225,
    236, 237, 199, 207, 234, 235, 192, 193, 200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242,
    243, 255, 203, 204, 211, 212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252,
    253, 254, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28,
    29, 30, 31, 127, 220, 249, 10, 13, 22, 256,
];
/// Per code length (index = bits): the first code of that length, where its symbols start in
/// [`SYMBOLS`], and how many there are.
const FIRST_CODE: [u32; 31] = [
    0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x14, 0x5c, 0xf8, 0x0, 0x3f8, 0x7fa, 0xffa, 0x1ff8, 0x3ffc,
    0x7ffc, 0x0, 0x0, 0x0, 0x7fff0, 0xfffe6, 0x1fffdc, 0x3fffd2, 0x7fffd8, 0xffffea, 0x1ffffec,
    0x3ffffe0, 0x7ffffde, 0xfffffe2, 0x0, 0x3ffffffc,
];
const START: [u16; 31] = [
    0, 0, 0, 0, 0, 0, 10, 36, 68, 0, 74, 79, 82, 84, 90, 92, 0, 0, 0, 95, 98, 106, 119, 145, 174,
    186, 190, 205, 224, 0, 253,
];
const COUNT: [u16; 31] = [
    0, 0, 0, 0, 0, 10, 26, 32, 6, 0, 5, 3, 2, 6, 2, 3, 0, 0, 0, 3, 8, 13, 26, 29, 12, 4, 15, 19,
    29, 0, 4,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::tests::hex;

    fn decoded(s: &str) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(&hex(s), &mut out).map(|()| out)
    }

    /// RFC 7541 Appendix C.4 and C.6.
    #[test]
    fn rfc_examples() {
        assert_eq!(
            decoded("f1e3 c2e5 f23a 6ba0 ab90 f4ff").unwrap(),
            b"www.example.com"
        );
        assert_eq!(decoded("a8eb 1064 9cbf").unwrap(), b"no-cache");
        assert_eq!(decoded("25a8 49e9 5ba9 7d7f").unwrap(), b"custom-key");
        assert_eq!(decoded("25a8 49e9 5bb8 e8b4 bf").unwrap(), b"custom-value");
        assert_eq!(decoded("6402").unwrap(), b"302");
        assert_eq!(decoded("aec3 771a 4b").unwrap(), b"private");
        assert_eq!(
            decoded("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff").unwrap(),
            b"Mon, 21 Oct 2013 20:13:21 GMT"
        );
        assert_eq!(
            decoded("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3").unwrap(),
            b"https://www.example.com"
        );
        assert_eq!(decoded("").unwrap(), b"");
    }

    #[test]
    fn the_tables_describe_a_complete_canonical_code() {
        // Kraft's equality: the lengths of all 257 codes fill the code space exactly.
        let mut sum = 0u64;
        let mut symbols = 0;
        for (len, &count) in COUNT.iter().enumerate() {
            sum += u64::from(count) << (30 - len);
            symbols += usize::from(count);
        }
        assert_eq!(symbols, 257);
        assert_eq!(sum, 1 << 30);
        let mut seen = [false; 257];
        for &s in &SYMBOLS {
            assert!(!seen[usize::from(s)], "symbol {s} twice");
            seen[usize::from(s)] = true;
        }
    }

    #[test]
    fn bad_strings_are_refused() {
        // EOS itself (30 ones) inside a string.
        assert_eq!(decoded("ffff fffc"), Err(HuffmanError::Eos));
        // 8 bits of padding.
        assert_eq!(decoded("ff"), Err(HuffmanError::BadPadding));
        // Padding of zeros: '0' is 00000, then 3 zero bits.
        assert_eq!(decoded("00"), Err(HuffmanError::BadPadding));
        // Every one-byte input decodes or fails, never panics.
        for b in 0..=255u8 {
            let _ = decode(&[b], &mut Vec::new());
        }
    }
}
