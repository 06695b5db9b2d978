//! JSON string literals for the hand-written JSON fc-init emits (event JSON, admin answers, log
//! lines). One escaper serves them all: [`crate::http::fc_error::push_json_str`], which the
//! error answers on the hot path use on bytes directly.

/// Appends `s` as a quoted JSON string literal (RFC 8259 section 7).
///
/// `out` holds JSON built with this function, which has no raw U+2028/U+2029 left, so the
/// rewrite of those two below touches only what `s` added.
pub fn push_string(out: &mut String, s: &str) {
    let mut bytes = std::mem::take(out).into_bytes();
    bytes.push(b'"');
    crate::http::fc_error::push_json_str(&mut bytes, s);
    bytes.push(b'"');
    // Escaping copies UTF-8 through unchanged and adds only ASCII.
    *out = String::from_utf8(bytes).expect("escaped UTF-8 stays UTF-8");
    // U+2028 and U+2029 are valid in JSON but end a line in JavaScript: escaped too, so the
    // text is also a safe JavaScript literal.
    if s.contains(['\u{2028}', '\u{2029}']) {
        *out = out
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
    }
}

/// `s` as a quoted JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(super::string("a\"b\\c\nd\u{1}é"), r#""a\"b\\c\nd\u0001é""#);
        let mut s = String::from("x=");
        super::push_string(&mut s, "");
        assert_eq!(s, r#"x="""#);
    }
}
