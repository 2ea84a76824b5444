//! Fuzz target: `.torrent` parsing must never panic; an accepted torrent's hash is over its
//! raw info span, and writing it back keeps that hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::metainfo::Metainfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes(data) {
        let again = Metainfo::from_bytes(&m.to_bytes()).map(|m| m.info_hash);
        assert_eq!(again, Ok(m.info_hash));
    }
});
