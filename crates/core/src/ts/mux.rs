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

impl AvcConfig {
    /// From an `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 5.2.4.1, an MP4's `avcC`
    /// and a Matroska `V_MPEG4/ISO/AVC` track's CodecPrivate): its first SPS and PPS and the
    /// length prefix size. `None` when the record is short or names neither.
    pub fn from_record(rec: &[u8]) -> Option<AvcConfig> {
        if rec.len() < 7 || rec[0] != 1 {
            return None;
        }
        let length_size = usize::from(rec[4] & 3) + 1;
        // Reads `count` length-prefixed sets at `at`; returns the first and the next offset.
        let sets = |mut at: usize, count: usize| -> Option<(Option<Vec<u8>>, usize)> {
            let mut first = None;
            for _ in 0..count {
                let len = usize::from(u16::from_be_bytes([*rec.get(at)?, *rec.get(at + 1)?]));
                let set = rec.get(at + 2..at + 2 + len)?;
                first.get_or_insert_with(|| set.to_vec());
                at += 2 + len;
            }
            Some((first, at))
        };
        let (sps, at) = sets(6, usize::from(rec[5] & 0x1F))?;
        let (pps, _) = sets(at + 1, usize::from(*rec.get(at)?))?;
        Some(AvcConfig {
            sps: sps.filter(|s| !s.is_empty())?,
            pps: pps.filter(|s| !s.is_empty())?,
            length_size,
        })
    }
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

impl AacConfig {
    /// From an `AudioSpecificConfig` (ISO/IEC 14496-3 1.6.2.1, a Matroska `A_AAC` track's
    /// CodecPrivate): object type, sampling frequency index and channels. `None` for an
    /// explicit frequency (index 15) or an object type ADTS cannot carry (above 4).
    pub fn from_asc(asc: &[u8]) -> Option<AacConfig> {
        let (&a, &b) = (asc.first()?, asc.get(1)?);
        let object_type = a >> 3;
        let freq_index = ((a & 7) << 1) | (b >> 7);
        let channels = (b >> 3) & 0x0F;
        (matches!(object_type, 1..=4) && freq_index < 13).then_some(AacConfig {
            object_type,
            freq_index,
            channels,
        })
    }

    /// Samples per second, from the frequency index.
    pub fn sample_rate(&self) -> u32 {
        const RATES: [u32; 13] = [
            96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
        ];
        RATES
            .get(usize::from(self.freq_index))
            .copied()
            .unwrap_or(48000)
    }
}

/// Writes one program with an optional H.264 and an optional AAC elementary stream.
///
/// Segments of one file made by separate muxers join without a continuity-counter jump
/// (which players count as damage: VLC drops the packet, ffmpeg flags it corrupt): segment `n`
/// ([`TsMuxer::segment`]) writes its PAT and PMT with counter `n mod 16`, and every
/// elementary stream starts at 0 and, through [`TsMuxer::finish`], ends at 15 — the last
/// access unit of each stream is held back and spread over as many more packets as that
/// takes.
#[derive(Debug)]
pub struct TsMuxer {
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    cc: [u8; 4],
    /// The latest PES of the video and of the audio stream, not yet written.
    held: [Option<Held>; 2],
}

/// A PES held back by [`TsMuxer`].
#[derive(Debug)]
struct Held {
    pid: u16,
    header: Vec<u8>,
    es: Vec<u8>,
    pcr: Option<u64>,
    key: bool,
}

impl TsMuxer {
    /// A muxer for these streams.
    pub fn new(video: Option<AvcConfig>, audio: Option<AacConfig>) -> TsMuxer {
        TsMuxer {
            video,
            audio,
            cc: [0; 4],
            held: [None, None],
        }
    }

    /// A muxer for segment `n` of a file (see the type's doc).
    pub fn segment(video: Option<AvcConfig>, audio: Option<AacConfig>, n: u64) -> TsMuxer {
        let mut m = TsMuxer::new(video, audio);
        let psi = (n % 16) as u8;
        m.cc[0] = psi;
        m.cc[1] = psi;
        m
    }

    /// Writes the access units held back, each stream's spread so that its counter ends at
    /// 15. Call once, after the last access unit.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        for slot in 0..2 {
            if let Some(h) = self.held[slot].take() {
                let k = if h.pid == VIDEO_PID { 2 } else { 3 };
                let len = h.header.len() + h.es.len();
                let normal = packets_for(len, h.pcr.is_some() || h.key, h.pcr.is_some());
                let last = (usize::from(self.cc[k]) + normal - 1) % 16;
                let target = (normal + 15 - last).min(len);
                self.packetize(h.pid, &h.header, &h.es, h.pcr, h.key, target, out);
            }
        }
    }

    /// Holds `h` back, writing the one it replaces.
    fn hold(&mut self, slot: usize, h: Held, out: &mut Vec<u8>) {
        if let Some(old) = self.held[slot].replace(h) {
            self.packetize(old.pid, &old.header, &old.es, old.pcr, old.key, 0, out);
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
        let header = pes_header(0xE0, pts, (dts != pts).then_some(dts), None);
        let h = Held {
            pid: VIDEO_PID,
            header,
            es,
            pcr: Some(dts),
            key,
        };
        self.hold(0, h, out);
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
        let header = pes_header(0xC0, pts, None, Some(es.len()));
        let pcr = self.video.is_none().then_some(pts);
        let h = Held {
            pid: AUDIO_PID,
            header,
            es,
            pcr,
            key: false,
        };
        self.hold(1, h, out);
    }

    /// Cuts PES header + data into packets; the first carries PUSI, the random access
    /// indicator when `key`, and `pcr` (90 kHz) when given. `packets`: how many to use
    /// (0: as few as fit; more: the payload is spread, each packet carrying at least a byte).
    #[allow(clippy::too_many_arguments)]
    fn packetize(
        &mut self,
        pid: u16,
        header: &[u8],
        data: &[u8],
        pcr: Option<u64>,
        key: bool,
        packets: usize,
        out: &mut Vec<u8>,
    ) {
        let total = header.len() + data.len();
        let mut sent = 0;
        let mut first = true;
        let mut written = 0usize;
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
            // Bytes this packet carries: all that fit, less one for each packet still to come
            // when spreading.
            let after = packets.saturating_sub(written + 1);
            let take = room(&af).min(left).min(left.saturating_sub(after).max(1));
            if take < room(&af) {
                // Stuffing through the adaptation field, so the payload ends the packet.
                let k = room(&af) - take;
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
            let end = sent + take;
            let h = header.len();
            if sent < h {
                out.extend_from_slice(&header[sent..end.min(h)]);
            }
            if end > h {
                out.extend_from_slice(&data[sent.max(h) - h..end - h]);
            }
            sent += take;
            first = false;
            written += 1;
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

/// Packets [`TsMuxer::packetize`] needs for `len` bytes at the fewest: the first packet loses
/// an adaptation field (2 bytes, 8 with a PCR) when `af`.
fn packets_for(len: usize, af: bool, pcr: bool) -> usize {
    let first = PACKET_LEN - 4 - if af { 2 + if pcr { 6 } else { 0 } } else { 0 };
    if len <= first {
        1
    } else {
        1 + (len - first).div_ceil(PACKET_LEN - 4)
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

    /// An `avcC` record and an AudioSpecificConfig as x264 and ffmpeg write them; a record
    /// cut short or naming no PPS is refused, and so is an AAC config ADTS cannot carry.
    #[test]
    fn codec_configs_parse() {
        let sps = [0x67, 0x64, 0x00, 0x1E, 0xAC];
        let pps = [0x68, 0xEB, 0xE3];
        let mut rec = vec![1, 0x64, 0x00, 0x1E, 0xFF, 0xE1, 0, 5];
        rec.extend_from_slice(&sps);
        rec.extend_from_slice(&[1, 0, 3]);
        rec.extend_from_slice(&pps);
        let c = AvcConfig::from_record(&rec).expect("record");
        assert_eq!(
            (c.sps.as_slice(), c.pps.as_slice(), c.length_size),
            (&sps[..], &pps[..], 4)
        );
        assert_eq!(
            AvcConfig::from_record(&rec[..rec.len() - 1]),
            None,
            "cut short"
        );
        let mut no_pps = rec[..13].to_vec();
        no_pps.push(0);
        assert_eq!(AvcConfig::from_record(&no_pps), None);

        // AAC LC, 48 kHz, stereo: 0x11 0x90.
        let a = AacConfig::from_asc(&[0x11, 0x90]).expect("asc");
        assert_eq!((a.object_type, a.freq_index, a.channels), (2, 3, 2));
        assert_eq!(a.sample_rate(), 48000);
        assert_eq!(
            AacConfig::from_asc(&[0x2B, 0x90]),
            None,
            "object type 5 (SBR)"
        );
        assert_eq!(
            AacConfig::from_asc(&[0x17, 0x80]),
            None,
            "explicit frequency"
        );
        assert_eq!(AacConfig::from_asc(&[0x11]), None);
    }

    /// Segments muxed apart join without a continuity-counter jump on any PID (VLC dropped
    /// the first keyframe of every remuxed segment after the first, ffmpeg flagged it
    /// corrupt, when each segment's counters started at 0 and ended anywhere).
    #[test]
    fn segments_muxed_apart_join_with_continuous_counters() {
        let avc = AvcConfig {
            sps: vec![0x67, 1, 2, 3],
            pps: vec![0x68, 4],
            length_size: 4,
        };
        let aac = AacConfig {
            object_type: 2,
            freq_index: 3,
            channels: 2,
        };
        let mut joined = Vec::new();
        for n in 0..5u64 {
            let mut m = TsMuxer::segment(Some(avc.clone()), Some(aac), n);
            m.psi(&mut joined);
            // Segments of different lengths and frame sizes, some audio frames tiny.
            for i in 0..(7 + n * 3) {
                let mut sample = vec![0, 0, 0, 0, if i == 0 { 0x65 } else { 0x41 }];
                sample.extend(std::iter::repeat_n(
                    0xAB,
                    (i * 397 + n * 61) as usize % 3000,
                ));
                let len = (sample.len() - 4) as u32;
                sample[..4].copy_from_slice(&len.to_be_bytes());
                let t = 9000 + (n * 100 + i) * 3600;
                m.video(t, t, i == 0, &sample, &mut joined);
                m.audio(t, &vec![0x21; (i as usize * 37) % 400 + 1], &mut joined);
            }
            m.finish(&mut joined);
        }
        assert_eq!(joined.len() % PACKET_LEN, 0);
        let mut last: std::collections::HashMap<u16, u8> = Default::default();
        for (i, p) in joined.chunks(PACKET_LEN).enumerate() {
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            let cc = p[3] & 0x0F;
            assert!(p[3] & 0x10 != 0, "packet {i}: every packet carries payload");
            if let Some(prev) = last.insert(pid, cc) {
                assert_eq!(cc, (prev + 1) & 0x0F, "packet {i} of PID {pid:#x}");
            }
        }
        assert_eq!(last.len(), 4, "PAT, PMT, video, audio");
    }

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
        m.finish(&mut out);
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
