//! Fuzz target: what VoD HLS reads of a TS file (its head, its last timestamp, its keyframes)
//! must never panic on any bytes in any chunking, and a keyframe found lies inside the bytes
//! fed; the muxer that remuxes MP4 samples takes any bytes as a sample and writes whole
//! packets; the codec configurations (an `avcC` record, an AudioSpecificConfig) parse or are
//! refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::ts::{
    last_pts, AacConfig, AvcConfig, KeyframeFinder, StreamInfo, TsHead, TsMuxer, PACKET_LEN,
};

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
    let mut mux = TsMuxer::new(
        Some(AvcConfig {
            sps: vec![0x67],
            pps: vec![0x68],
            length_size: 1 + usize::from(cfg.first().copied().unwrap_or(3) & 3),
        }),
        Some(AacConfig {
            object_type: 2,
            freq_index: 3,
            channels: 2,
        }),
    );
    let mut out = Vec::new();
    mux.video(1, 0, true, body, &mut out);
    mux.audio(2, body, &mut out);
    mux.finish(&mut out);
    assert_eq!(out.len() % PACKET_LEN, 0);
    // The codec configurations a Matroska file's CodecPrivate gives.
    let _ = AvcConfig::from_record(body);
    let _ = AacConfig::from_asc(body);
    let mut finder = KeyframeFinder::new(&info);
    for part in body.chunks(chunk) {
        if let Some(at) = finder.push(part) {
            assert!(at < body.len() as u64);
            break;
        }
    }
});
