//! Fuzz target: the peer wire framer must never panic, and must terminate on any input.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use peercdn_core::wire;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Each successful decode consumes at least the 4-byte length prefix, so this terminates.
    while let Ok(Some(_msg)) = wire::decode(&mut buf, 1 << 20) {}
});
