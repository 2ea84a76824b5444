//! Fuzz target: the MPEG-TS cutter must never panic on any bytes in any chunking, and every
//! piece it emits must be whole 188-byte packets within the length cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::ts::{Cutter, CutterConfig, PACKET_LEN};

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the configuration and the chunk size.
    let (cfg_bytes, body) = data.split_at(data.len().min(2));
    let max_packets = 16 + usize::from(cfg_bytes.first().copied().unwrap_or(0));
    let chunk = 1 + usize::from(cfg_bytes.get(1).copied().unwrap_or(187));
    let cfg = CutterConfig {
        piece_duration_us: 200_000,
        max_piece_len: max_packets * PACKET_LEN,
    };
    let mut cutter = Cutter::new(cfg);
    let check = |p: peercdn_core::ts::CutPiece| {
        assert_eq!(p.payload.len() % PACKET_LEN, 0);
        assert!(p.payload.len() <= cfg.max_piece_len + 16 * PACKET_LEN);
        assert!(p.duration_us > 0);
    };
    for part in body.chunks(chunk) {
        if cutter.push(part).is_err() {
            return;
        }
        while let Some(p) = cutter.pop() {
            check(p);
        }
    }
    while let Some(p) = cutter.flush() {
        check(p);
    }
});
