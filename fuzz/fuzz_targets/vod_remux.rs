//! Fuzz target: the VoD HLS remuxers read a torrent's file, which anyone can publish. Any
//! bytes as a Matroska file or an MP4 (the first byte chooses) are planned or refused with an
//! error, never a panic or an allocation the file's size does not bound, and every segment of
//! a plan is cut or refused the same way. Seed it with small real files (a byte 0 or 1, then
//! the file).
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use peercdn_http::media_file::Failure;
use peercdn_http::vod_mkv::MkvPlan;
use peercdn_http::vod_mp4::Mp4Plan;

/// Segments tried per plan (a fuzzed duration can promise millions).
const MAX_SEGMENTS: u64 = 8;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let file = body.to_vec();
    if kind & 1 == 0 {
        if let Ok(Some(plan)) = MkvPlan::read(Box::new(Cursor::new(file)), Failure::default()) {
            for n in 0..plan.count().min(MAX_SEGMENTS) {
                let _ = plan.seconds(n);
                if let Ok(seg) = plan.segment(n) {
                    assert_eq!(seg.len() % 188, 0);
                }
            }
        }
    } else {
        let len = file.len() as u64;
        if let Ok(Some(plan)) = Mp4Plan::read(Box::new(Cursor::new(file)), len, Failure::default()) {
            for n in 0..plan.count().min(MAX_SEGMENTS) {
                let _ = plan.seconds(n);
                if let Ok(seg) = plan.segment(n) {
                    assert_eq!(seg.len() % 188, 0);
                }
            }
        }
    }
});
