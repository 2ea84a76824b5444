//! Fuzz target: the `Range` header resolver must never panic, and a partial answer always lies
//! inside the representation (`start ≤ end < len`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_http::range::{resolve, RangeAnswer};

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the representation's length (small lengths more often).
    let (len_bytes, header) = data.split_at(data.len().min(8));
    let mut raw = [0u8; 8];
    raw[..len_bytes.len()].copy_from_slice(len_bytes);
    let len = u64::from_le_bytes(raw) >> (raw[0] % 64);
    let header = String::from_utf8_lossy(header);
    match resolve(Some(&header), len) {
        RangeAnswer::Partial { start, end } => assert!(start <= end && end < len),
        RangeAnswer::Full | RangeAnswer::Unsatisfiable => {}
    }
});
