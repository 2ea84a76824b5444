//! Fuzz target: the `pc_live` message and live piece header decoders must never panic, and
//! what decodes must encode back to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::live::{LiveMsg, PieceHeader, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = LiveMsg::decode(data) {
        assert_eq!(LiveMsg::decode(&m.encode()).ok(), Some(m));
    }
    if let Some(h) = data.get(..HEADER_LEN) {
        if let Ok(h) = PieceHeader::decode(h) {
            assert_eq!(PieceHeader::decode(&h.encode()).ok(), Some(h));
        }
    }
    let _ = PieceHeader::decode(data);
});
