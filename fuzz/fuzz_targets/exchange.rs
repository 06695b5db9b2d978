//! Whole exchanges through the proxy's I/O seam: random client bytes, function answers, closes,
//! resets, full buffers and a moving clock drive one client connection
//! (`fc_init::proxy::fuzz_exchange`, built with the `exchange-seam` feature). A finding is a
//! panic anywhere in the proxy, or a slot, an in-flight count or body budget bytes still held
//! once the connection is gone.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fc_init::proxy::fuzz_exchange(data);
});
