//! A small MPEG-TS muxer for H.264 and AAC access units, enough to carry MP4 samples as HLS
//! segments (VoD HLS of MP4 files): PAT and PMT (CRC-32), one PES per access unit with PTS
//! (and DTS when it differs), PCR on the video PID, the random access indicator on keyframes,
//! continuity counters per PID, stuffing through the adaptation field. H.264 samples arrive in
//! MP4's length-prefixed form and leave in Annex B, each led by an access unit delimiter and,
//! on keyframes, the SPS and PPS; AAC frames get an ADTS header.
//!
//! Hand-written: the Rust MPEG-TS crates read streams; none writes them from MP4 samples.
//! Nothing here does I/O.

use super::psi::crc32_mpeg2;
use super::PACKET_LEN;

const PMT_PID: u16 = 0x1000;
/// The video PID.
pub const VIDEO_PID: u16 = 0x100;
/// The audio PID.
pub const AUDIO_PID: u16 = 0x101;

/// What the muxer needs of an H.264 track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// Sequence parameter set (without start code).
    pub sps: Vec<u8>,
    /// Picture parameter set.
    pub pps: Vec<u8>,
    /// Bytes of each NAL unit's length prefix in samples (1, 2 or 4).
    pub length_size: usize,
}

/// What the muxer needs of an AAC track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2: AAC LC).
    pub object_type: u8,
    /// Sampling frequency index (ISO/IEC 14496-3).
    pub freq_index: u8,
    /// Channel configuration.
    pub channels: u8,
}

/// Writes one program with an optional H.264 and an optional AAC elementary stream.
#[derive(Debug)]
pub struct TsMuxer {
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    cc: [u8; 4],
}

impl TsMuxer {
    /// A muxer for these streams.
    pub fn new(video: Option<AvcConfig>, audio: Option<AacConfig>) -> TsMuxer {
        TsMuxer {
            video,
            audio,
            cc: [0; 4],
        }
    }

    /// Appends the PAT and PMT.
    pub fn psi(&mut self, out: &mut Vec<u8>) {
        let mut pat = vec![0x00, 0xB0, 0, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01];
        pat.extend_from_slice(&[0xE0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        self.section(0, pat, out);
        let pcr_pid = if self.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        };
        let mut pmt = vec![0x02, 0xB0, 0, 0x00, 0x01, 0xC1, 0x00, 0x00];
        pmt.extend_from_slice(&[0xE0 | (pcr_pid >> 8) as u8, pcr_pid as u8, 0xF0, 0x00]);
        // Stream type 0x1B: H.264; 0x0F: AAC in ADTS. No descriptors.
        let streams = [
            (self.video.is_some(), 0x1B, VIDEO_PID),
            (self.audio.is_some(), 0x0F, AUDIO_PID),
        ];
        for (_, stream_type, pid) in streams.into_iter().filter(|s| s.0) {
            pmt.extend_from_slice(&[stream_type, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, 0]);
        }
        self.section(PMT_PID, pmt, out);
    }

    /// A PSI section (`s` up to its CRC, section length filled in here) in one packet.
    fn section(&mut self, pid: u16, mut s: Vec<u8>, out: &mut Vec<u8>) {
        let len = s.len() - 3 + 4;
        s[1] = 0xB0 | ((len >> 8) as u8 & 0x0F);
        s[2] = len as u8;
        let crc = crc32_mpeg2(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        let mut payload = vec![0u8];
        payload.extend_from_slice(&s);
        payload.resize(PACKET_LEN - 4, 0xFF);
        let cc = self.next_cc(pid);
        out.extend_from_slice(&[0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | cc]);
        out.extend_from_slice(&payload);
    }

    /// Appends one H.264 access unit: `sample` in MP4 form, times in 90 kHz ticks.
    pub fn video(&mut self, pts: u64, dts: u64, key: bool, sample: &[u8], out: &mut Vec<u8>) {
        let Some(cfg) = &self.video else { return };
        let mut es = Vec::with_capacity(sample.len() + 64);
        es.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xF0]);
        if key {
            for ps in [&cfg.sps, &cfg.pps] {
                es.extend_from_slice(&[0, 0, 0, 1]);
                es.extend_from_slice(ps);
            }
        }
        let n = cfg.length_size.clamp(1, 4);
        let mut rest = sample;
        while rest.len() > n {
            let len = rest[..n]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            let Some(nal) = rest.get(n..n + len) else {
                break;
            };
            // Delimiters and parameter sets of the sample itself are replaced by ours.
            if !matches!(nal.first().map(|b| b & 0x1F), Some(9) | None) {
                es.extend_from_slice(&[0, 0, 0, 1]);
                es.extend_from_slice(nal);
            }
            rest = &rest[n + len..];
        }
        let pes = pes_header(0xE0, pts, (dts != pts).then_some(dts), None);
        self.packetize(VIDEO_PID, &pes, &es, Some(dts), key, out);
    }

    /// Appends one AAC frame (raw, as in MP4), its PTS in 90 kHz ticks.
    pub fn audio(&mut self, pts: u64, frame: &[u8], out: &mut Vec<u8>) {
        let Some(cfg) = self.audio else { return };
        let len = frame.len() + 7;
        let profile = cfg.object_type.saturating_sub(1) & 3;
        let adts = [
            0xFF,
            0xF1,
            (profile << 6) | ((cfg.freq_index & 0x0F) << 2) | ((cfg.channels >> 2) & 1),
            ((cfg.channels & 3) << 6) | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1F,
            0xFC,
        ];
        let mut es = Vec::with_capacity(len);
        es.extend_from_slice(&adts);
        es.extend_from_slice(frame);
        let pes = pes_header(0xC0, pts, None, Some(es.len()));
        let pcr = self.video.is_none().then_some(pts);
        self.packetize(AUDIO_PID, &pes, &es, pcr, false, out);
    }

    /// Cuts PES header + data into packets; the first carries PUSI, the random access
    /// indicator when `key`, and `pcr` (90 kHz) when given.
    fn packetize(
        &mut self,
        pid: u16,
        header: &[u8],
        data: &[u8],
        pcr: Option<u64>,
        key: bool,
        out: &mut Vec<u8>,
    ) {
        let total = header.len() + data.len();
        let mut sent = 0;
        let mut first = true;
        while sent < total {
            // The adaptation field: None, or the bytes after its length byte.
            let mut af: Option<Vec<u8>> = None;
            if first && (pcr.is_some() || key) {
                let mut f = vec![if key { 0x40 } else { 0 }];
                if let Some(p) = pcr {
                    f[0] |= 0x10;
                    let base = p & ((1 << 33) - 1);
                    f.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        (((base & 1) as u8) << 7) | 0x7E,
                        0,
                    ]);
                }
                af = Some(f);
            }
            let room =
                |af: &Option<Vec<u8>>| PACKET_LEN - 4 - af.as_ref().map_or(0, |f| 1 + f.len());
            let left = total - sent;
            if left < room(&af) {
                // Stuffing through the adaptation field, so the payload ends the packet.
                let k = room(&af) - left;
                match &mut af {
                    Some(f) => f.resize(f.len() + k, 0xFF),
                    None if k == 1 => af = Some(Vec::new()),
                    None => {
                        let mut f = vec![0u8];
                        f.resize(k - 1, 0xFF);
                        af = Some(f);
                    }
                }
            }
            let cc = self.next_cc(pid);
            let pusi = if first { 0x40 } else { 0 };
            let afc = if af.is_some() { 0x30 } else { 0x10 };
            out.extend_from_slice(&[0x47, pusi | (pid >> 8) as u8, pid as u8, afc | cc]);
            if let Some(f) = &af {
                out.push(f.len() as u8);
                out.extend_from_slice(f);
            }
            let take = room(&af).min(left);
            for i in sent..sent + take {
                out.push(if i < header.len() {
                    header[i]
                } else {
                    data[i - header.len()]
                });
            }
            sent += take;
            first = false;
        }
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let k = match pid {
            0 => 0,
            PMT_PID => 1,
            VIDEO_PID => 2,
            _ => 3,
        };
        let cc = self.cc[k];
        self.cc[k] = (cc + 1) & 0x0F;
        cc
    }
}

/// A PES header for `stream_id` with PTS (and DTS); `len`: the data length when it fits the
/// 16-bit field (audio), else 0 (unbounded, allowed for video).
fn pes_header(stream_id: u8, pts: u64, dts: Option<u64>, len: Option<usize>) -> Vec<u8> {
    let hlen = if dts.is_some() { 10 } else { 5 };
    let packet_len = len
        .map(|l| l + 3 + hlen)
        .filter(|&l| l <= 0xFFFF)
        .unwrap_or(0);
    let mut h = vec![
        0,
        0,
        1,
        stream_id,
        (packet_len >> 8) as u8,
        packet_len as u8,
        0x80,
        if dts.is_some() { 0xC0 } else { 0x80 },
        hlen as u8,
    ];
    let marker = if dts.is_some() { 0x30 } else { 0x20 };
    h.extend_from_slice(&timestamp(marker, pts));
    if let Some(d) = dts {
        h.extend_from_slice(&timestamp(0x10, d));
    }
    h
}

fn timestamp(marker: u8, t: u64) -> [u8; 5] {
    let t = t & ((1 << 33) - 1);
    [
        marker | (((t >> 30) as u8 & 7) << 1) | 1,
        (t >> 22) as u8,
        (((t >> 15) as u8) << 1) | 1,
        (t >> 7) as u8,
        ((t as u8) << 1) | 1,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::{Cutter, CutterConfig};

    /// What the muxer writes reads back through the crate's own reader: whole packets, the
    /// PMT's PIDs, keyframes where the samples said.
    #[test]
    fn muxed_samples_read_back() {
        let mut m = TsMuxer::new(
            Some(AvcConfig {
                sps: vec![0x67, 1, 2, 3],
                pps: vec![0x68, 4],
                length_size: 4,
            }),
            Some(AacConfig {
                object_type: 2,
                freq_index: 3,
                channels: 2,
            }),
        );
        let mut out = Vec::new();
        m.psi(&mut out);
        for i in 0..50u64 {
            let key = i % 25 == 0;
            let nal_type = if key { 0x65 } else { 0x41 };
            let mut sample = vec![0, 0, 3, 0];
            sample.push(nal_type);
            sample.extend(std::iter::repeat_n(0xAB, 3 * 256 + 200 - 1));
            m.video(9000 + i * 3600, 9000 + i * 3600, key, &sample, &mut out);
            m.audio(9000 + i * 3600, &vec![0x21; 300], &mut out);
        }
        assert_eq!(out.len() % PACKET_LEN, 0);
        assert!(out.chunks(PACKET_LEN).all(|p| p[0] == 0x47));
        let mut c = Cutter::new(CutterConfig::default());
        c.push(&out).unwrap();
        let mut pieces = vec![];
        while let Some(p) = c.pop() {
            pieces.push(p);
        }
        pieces.extend(c.flush());
        let info = c.stream_info().expect("the PMT reads back");
        assert_eq!(info.video_pid, Some(VIDEO_PID));
        assert_eq!(info.audio_pids, vec![AUDIO_PID]);
        assert_eq!(pieces.iter().filter(|p| p.keyframe).count(), 2);
    }
}
