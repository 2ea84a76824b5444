//! Fuzz target: the HTTP API's query parsing (`/ace/getstream`, `/ace/manifest.m3u8`, the
//! `/api/v1` routes) must never panic on any query string: the bounded parameter parser, the
//! content source (`content_id`/`id`/`infohash`/`url`/`magnet`), numbers, peer lists and the
//! HLS client key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_http::source::{self, Params, MAX_PEERS};

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let p = Params::parse(Some(&query));
    let _ = source::wanted_from_params(&p);
    let _ = p.number::<usize>("file_index");
    let _ = p.number::<u64>("pos");
    let _ = peercdn_http::hls::client_key(&p);
    let peers = source::parse_peers(query.split(['&', ',']));
    assert!(peers.len() <= MAX_PEERS);
    if let Some(v) = p.get("id") {
        let _ = source::parse_id(v);
    }
});
