//! Fuzz target: the BEP 14 Local Service Discovery datagram parser (bytes from anyone on the
//! LAN) must never panic and must keep its bounds; an accepted announce encodes to a datagram
//! that parses to the same announce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_engine::lsd::{self, MAX_HASHES_PER_DATAGRAM};

fuzz_target!(|data: &[u8]| {
    let Ok(a) = lsd::parse(data) else {
        return;
    };
    assert!(a.port != 0);
    assert!((1..=MAX_HASHES_PER_DATAGRAM).contains(&a.info_hashes.len()));
    let Some(cookie) = a.cookie.clone() else {
        return;
    };
    let again = lsd::parse(&lsd::encode(a.port, &a.info_hashes, &cookie));
    assert_eq!(again.as_ref(), Ok(&a));
});
