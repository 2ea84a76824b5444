//! Fuzz target: what VoD HLS reads of a TS file (its head, its last timestamp, its keyframes)
//! must never panic on any bytes in any chunking, and a keyframe found lies inside the bytes
//! fed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::ts::{last_pts, KeyframeFinder, StreamInfo, TsHead};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size.
    let (cfg, body) = data.split_at(data.len().min(1));
    let chunk = 1 + usize::from(cfg.first().copied().unwrap_or(187));
    let head = TsHead::read(body).ok().flatten();
    let info = match &head {
        Some(h) => h.info.clone(),
        None => StreamInfo {
            video_pid: Some(0x100),
            video_stream_type: 0x1B,
            ..Default::default()
        },
    };
    if let (Some(h), Some(last)) = (&head, last_pts(&info, body)) {
        assert!(h.span_to(last) < 1 << 33);
    }
    let mut finder = KeyframeFinder::new(&info);
    for part in body.chunks(chunk) {
        if let Some(at) = finder.push(part) {
            assert!(at < body.len() as u64);
            break;
        }
    }
});
