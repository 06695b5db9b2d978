//! The configuration loader from TOML text (`config::from_str`: parse, every key's value,
//! cross-key validation), with no environment and no command line: no panic on any text, and
//! an accepted configuration printed by `fc-init config` loads again to the same one.
#![no_main]

use fc_init::config::{from_str, Sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = Sources::default();
    let Ok(config) = from_str(text, &sources) else {
        return;
    };
    let printed = config.to_toml();
    match from_str(&printed, &sources) {
        Ok(again) => assert_eq!(again.to_toml(), printed, "printing is not stable"),
        Err(e) => panic!("the printed configuration does not load: {e}\n{printed}"),
    }
});
