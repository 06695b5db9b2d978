//! The admin API's `GET /events?…` query (`admin::parse_list_query`: percent-decoding,
//! statuses, RFC 3339 times, numbers): no panic on any query string.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = fc_init::admin::parse_list_query(query);
    }
});
