//! Fuzz target: tracker replies (an HTTP tracker's bencoded body, a UDP tracker's announce
//! reply over IPv4 and IPv6) must never panic, and every accepted reply keeps its bounds: at
//! most `MAX_PEERS` distinct, usable peers and an interval within the clamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_engine::tracker::{self, AnnounceResponse, MAX_INTERVAL, MAX_PEERS, MIN_INTERVAL};

fn check(r: &AnnounceResponse) {
    assert!(r.peers.len() <= MAX_PEERS);
    assert!(r
        .peers
        .iter()
        .all(|p| p.port() != 0 && !p.ip().is_unspecified()));
    let mut sorted = r.peers.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), r.peers.len(), "duplicate peers");
    assert!(r.interval >= MIN_INTERVAL && r.interval <= MAX_INTERVAL);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = tracker::parse_http_response(data) {
        check(&r);
    }
    for ipv6 in [false, true] {
        if let Ok(r) = tracker::parse_udp_announce(data, ipv6) {
            check(&r);
        }
    }
});
