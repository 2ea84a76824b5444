//! Fuzz target: the BEP 10 extension handshake decoder (and `PeerExtensions`, what both swarms
//! keep of it) must never panic, must keep its documented bounds (`m` entries and names, client
//! length, metadata size), and what it accepts must encode to bytes that decode to the same
//! handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::ext::handshake::PeerExtensions;
use peercdn_core::wire::ext::{
    ExtHandshake, MAX_CLIENT_LEN, MAX_EXT_NAME_LEN, MAX_METADATA_SIZE, MAX_M_ENTRIES,
};

fuzz_target!(|data: &[u8]| {
    // What both swarms keep of a peer's handshake agrees with the codec.
    let kept = PeerExtensions::decode(data);
    let Ok(h) = ExtHandshake::decode(data) else {
        assert!(kept.is_err());
        return;
    };
    assert_eq!(kept.ok(), Some(PeerExtensions::from_handshake(&h)));
    assert!(h.m.len() <= MAX_M_ENTRIES);
    assert!(h.m.iter().all(|(name, _)| name.len() <= MAX_EXT_NAME_LEN));
    assert!(h.client.as_ref().is_none_or(|c| c.len() <= MAX_CLIENT_LEN));
    assert!(h
        .metadata_size
        .is_none_or(|s| (1..=MAX_METADATA_SIZE).contains(&s)));
    // `m` is a map: the decoder keeps a peer's (possibly unsorted) key order, the encoder
    // sorts, so compare it sorted.
    let mut again = ExtHandshake::decode(&h.encode()).expect("our own handshake decodes");
    let mut h = h;
    h.m.sort();
    again.m.sort();
    assert_eq!(again, h);
});
