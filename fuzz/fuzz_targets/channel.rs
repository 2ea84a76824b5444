//! Fuzz target: a channel head (a BEP 44 value any DHT node may return) and a channel file
//! (a torrent's content, whoever made it) must never panic the parsers; a head they accept
//! encodes to bytes that decode to the same head, and a file they accept re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::catalog::channel::{decode_file, encode_file, Head, MAX_CHANNEL_RECORDS};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Head::decode(data) {
        assert_eq!(Head::decode(&h.encode()), Ok(h));
    }
    let publisher: [u8; 32] = data
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; 32]);
    let file = data.get(32..).unwrap_or_default();
    if let Ok(records) = decode_file(file, &publisher) {
        assert!(records.len() <= MAX_CHANNEL_RECORDS);
        assert_eq!(encode_file(&records), file);
    }
});
