//! Fuzz target: the `.peerlive` descriptor parser (and the info-dictionary parser a viewer uses
//! on metadata fetched by ID) must never panic; an accepted descriptor keeps its content ID
//! through encode → decode, with its tracker and CDN lists intact.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use peercdn_core::live::{Descriptor, LiveParams, MAX_DESCRIPTOR_URLS};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(p)) = LiveParams::from_info_bytes(data) {
        // The canonical re-encoding parses back to the same parameters.
        assert_eq!(
            LiveParams::from_info_bytes(&p.info_bytes()).ok(),
            Some(Some(p))
        );
    }
    let _ = Descriptor::from_info_bytes(Bytes::copy_from_slice(data));
    let Ok(d) = Descriptor::from_bytes(data) else {
        return;
    };
    assert!(d.trackers.len() <= MAX_DESCRIPTOR_URLS && d.cdn.len() <= MAX_DESCRIPTOR_URLS);
    let again = Descriptor::from_bytes(&d.to_bytes()).expect("our own descriptor parses");
    assert_eq!(again.content_id(), d.content_id());
    assert_eq!(again, d);
});
