//! Fuzz target: the bencode decoder must never panic, and whatever it accepts must re-encode to
//! bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::bencode;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = bencode::decode(data) {
        let owned = v.to_owned();
        let again = bencode::decode(&owned.encode()).map(|v| v.to_owned());
        assert_eq!(again, Ok(owned));
    }
    let _ = bencode::decode_prefix(data);
});
