//! Fuzz target: reading the newest piece index from a CDN's `live.m3u8` (bytes from any HTTP
//! server) must never panic; a playlist whose segments are named `N.ts` answers their largest N.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::live::hls::newest_in_playlist;

fuzz_target!(|data: &[u8]| {
    let newest = newest_in_playlist(data);
    let text = String::from_utf8_lossy(data);
    let named = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let name = l.split(['?', '#']).next().unwrap_or(l);
            let name = name.rsplit('/').next().unwrap_or(name);
            name.strip_suffix(".ts")?.parse::<u32>().ok()
        })
        .max();
    if named.is_some() {
        assert_eq!(newest, named);
    }
});
