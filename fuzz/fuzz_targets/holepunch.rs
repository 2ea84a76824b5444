//! Fuzz target: the BEP 55 `ut_holepunch` decoder must never panic, and what it decodes must
//! encode to the same message (the error code aside, which libtorrent may leave out).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::ext::holepunch::HolepunchMsg;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = HolepunchMsg::decode(data) else {
        return;
    };
    let again = HolepunchMsg::decode(&m.encode()).expect("our own message decodes");
    assert_eq!(again, m);
    assert_eq!(m.encode().len(), if m.addr().is_ipv4() { 12 } else { 24 });
});
