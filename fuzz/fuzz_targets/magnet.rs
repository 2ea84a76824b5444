//! Fuzz target: magnet URI parsing must never panic; a link it accepts formats to a URI that
//! parses to the same link.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::magnet::Magnet;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = Magnet::parse(s) else {
        return;
    };
    // Formatting may make the URI longer than the parser's cap (percent-encoding triples a
    // byte), so only a formatted link within the cap must come back the same.
    let uri = m.to_uri();
    if uri.len() <= peercdn_core::magnet::MAX_URI_LEN {
        assert_eq!(Magnet::parse(&uri).as_ref(), Ok(&m), "{uri}");
    }
});
