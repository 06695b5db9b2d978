//! What a submission's own headers ask of its event (docs/reference.md §10):
//! `X-Fc-Async-Task-Id` (the event's id, like a caller's `x-fc-request-id`),
//! `X-Fc-Async-Delay` (seconds before it may run, 0–3600) and `x-fc-qualifier`.
//!
//! The proxy calls [`caller_request_id`] and [`refused`] where it reads a submission; the
//! service reads the delay and the qualifier back from the stored request's headers, which
//! keep both, so the proxy has nothing more to carry.

use crate::http::RequestHead;

/// The longest delay a submission may ask for, in seconds.
pub const MAX_DELAY_SECS: u64 = 3600;

const TASK_ID: &str = "x-fc-async-task-id";
const DELAY: &str = "x-fc-async-delay";
const QUALIFIER: &str = "x-fc-qualifier";

/// The id the caller gives a request: an asynchronous submission's `X-Fc-Async-Task-Id`
/// when it has one, else its `x-fc-request-id`.
pub fn caller_request_id(head: &RequestHead, is_async: bool) -> Option<&[u8]> {
    is_async
        .then(|| head.header(TASK_ID))
        .flatten()
        .or_else(|| head.header("x-fc-request-id"))
}

/// Why a submission's headers are refused (400 `InvalidArgument`), if they are.
pub fn refused(head: &RequestHead) -> Option<String> {
    if let Some(id) = head.header(TASK_ID) {
        if !crate::http::valid_request_id(id) {
            return Some(format!(
                "X-Fc-Async-Task-Id {:?} is not an id of 1 to 128 characters [A-Za-z0-9._:-]",
                String::from_utf8_lossy(id)
            ));
        }
    }
    head.header(DELAY).and_then(|v| parse_delay(v).err())
}

/// `X-Fc-Async-Delay`'s seconds: an integer from 0 to [`MAX_DELAY_SECS`].
pub fn parse_delay(value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n <= MAX_DELAY_SECS)
        .ok_or_else(|| {
            format!(
                "X-Fc-Async-Delay {:?} is not a whole number of seconds from 0 to {MAX_DELAY_SECS}",
                String::from_utf8_lossy(value)
            )
        })
}

/// The value of header `name` among stored headers.
fn stored<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// The delay a stored submission asked for, in seconds (0 when none; the proxy refused
/// any other value before storing).
pub fn stored_delay(headers: &[(String, Vec<u8>)]) -> u64 {
    stored(headers, DELAY)
        .and_then(|v| parse_delay(v).ok())
        .unwrap_or(0)
}

/// The qualifier a stored submission names, if it names a usable one (printable text of at
/// most 128 bytes).
pub fn stored_qualifier(headers: &[(String, Vec<u8>)]) -> Option<String> {
    let v = std::str::from_utf8(stored(headers, QUALIFIER)?)
        .ok()?
        .trim();
    (!v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control)).then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_is_whole_seconds_up_to_an_hour() {
        assert_eq!(parse_delay(b"0"), Ok(0));
        assert_eq!(parse_delay(b" 3600 "), Ok(3600));
        for bad in [
            &b"3601"[..],
            b"-1",
            b"1.5",
            b"",
            b"ten",
            b"99999999999999999999999",
        ] {
            assert!(parse_delay(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stored_headers_give_the_delay_and_the_qualifier() {
        let h = vec![
            ("X-Fc-Async-Delay".to_owned(), b"5".to_vec()),
            ("X-Fc-Qualifier".to_owned(), b"prod".to_vec()),
        ];
        assert_eq!(stored_delay(&h), 5);
        assert_eq!(stored_qualifier(&h).as_deref(), Some("prod"));
        assert_eq!(stored_delay(&[]), 0);
        assert_eq!(
            stored_qualifier(&[("x-fc-qualifier".into(), b"a\x01".to_vec())]),
            None
        );
    }
}
