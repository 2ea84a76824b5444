//! Fuzz target: the BEP 11 `ut_pex` decoder must never panic, must cut each compact list to
//! `Pex::MAX_DECODED` entries and give one flag per added peer; a message within the per-message
//! send cap encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::wire::ext::Pex;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Pex::decode(data) else {
        return;
    };
    // Two compact lists (IPv4 and IPv6) feed each of `added` and `dropped`.
    assert!(p.added.len() <= 2 * Pex::MAX_DECODED);
    assert!(p.dropped.len() <= 2 * Pex::MAX_DECODED);
    assert_eq!(p.added_flags.len(), p.added.len());
    if p.added.len() <= Pex::MAX_PEERS && p.dropped.len() <= Pex::MAX_PEERS {
        let again = Pex::decode(&p.encode()).expect("our own message decodes");
        assert_eq!(again, p);
    }
});
