//! `async.redis_url` (`config::redis_url::parse`): no panic on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(url) = std::str::from_utf8(data) {
        let _ = fc_init::config::redis_url::parse(url);
    }
});
