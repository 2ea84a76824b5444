//! Fuzz target: the catalogue record parser (what peers send in search results and gossip)
//! must never panic; a record it accepts is exactly its own canonical encoding and verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::catalog::{Record, MAX_RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = Record::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_RECORD_LEN);
    assert_eq!(r.encode(), data);
    assert!(r.verify().is_ok());
});
