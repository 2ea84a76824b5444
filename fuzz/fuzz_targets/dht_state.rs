//! Fuzz target: the DHT routing-table cache (`DATA_DIR/dht.nodes`, read at start) must never
//! panic however it was damaged; it yields at most `MAX_STATE_NODES` distinct nodes, none on
//! port 0, and writing those nodes back one per line parses to the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_engine::dht::{parse_state, MAX_STATE_NODES};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let nodes = parse_state(&text);
    assert!(nodes.len() <= MAX_STATE_NODES);
    assert!(nodes.iter().all(|n| n.port() != 0));
    let written: String = nodes.iter().map(|n| format!("{n}\n")).collect();
    assert_eq!(parse_state(&written), nodes);
});
