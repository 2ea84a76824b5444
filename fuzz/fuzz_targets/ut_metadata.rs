//! Fuzz target: the BEP 9 `ut_metadata` decoder must never panic; a `Data` message it accepts
//! has a piece inside `total_size` with exactly the bytes that piece calls for, and every message
//! it accepts encodes to bytes that decode to the same message.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use peercdn_core::wire::ext::{MetadataMsg, MAX_METADATA_SIZE, METADATA_PIECE_LEN};

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let Ok(m) = MetadataMsg::decode(&payload) else {
        return;
    };
    if let MetadataMsg::Data {
        piece,
        total_size,
        data,
    } = &m
    {
        assert!((1..=MAX_METADATA_SIZE).contains(total_size));
        let start = *piece as usize * METADATA_PIECE_LEN;
        assert!(start < *total_size as usize);
        assert_eq!(
            data.len(),
            (*total_size as usize - start).min(METADATA_PIECE_LEN)
        );
    }
    let again = MetadataMsg::decode(&m.encode()).expect("our own message decodes");
    assert_eq!(again, m);
});
