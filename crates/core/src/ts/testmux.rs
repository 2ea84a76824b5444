//! Test support for the `ts` modules: a tiny MPEG-TS muxer (PAT, PMT, video and audio PES with
//! PCR), whole test streams, and helpers that cut them and check the pieces. Test-only.

use super::*;

pub(super) const PMT_PID: u16 = 0x1000;
pub(super) const VIDEO_PID: u16 = 0x100;
pub(super) const AUDIO_PID: u16 = 0x101;

/// A tiny MPEG-TS muxer for tests: PAT, PMT, video and audio PES with PCR.
pub(super) struct Mux {
    pub(super) out: Vec<u8>,
    cc: [u8; 0x2000],
    stream_type: u8,
}

pub(super) fn with_crc(mut s: Vec<u8>) -> Vec<u8> {
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

pub(super) fn pat_section() -> Vec<u8> {
    let mut s = vec![0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0];
    s.extend_from_slice(&[0, 1, 0xE0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
    with_crc(s)
}

pub(super) fn pmt_section(video_type: u8) -> Vec<u8> {
    let mut s = vec![0x02, 0xB0, 0, 0, 1, 0xC1, 0, 0];
    s.extend_from_slice(&[0xE0 | (VIDEO_PID >> 8) as u8, VIDEO_PID as u8, 0xF0, 0]);
    for (st, pid) in [(video_type, VIDEO_PID), (0x0F, AUDIO_PID)] {
        s.extend_from_slice(&[st, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, 0]);
    }
    s[2] = (s.len() - 3 + 4) as u8;
    with_crc(s)
}

pub(super) fn pes_ts(marker: u8, t: u64) -> [u8; 5] {
    [
        marker | (((t >> 30) as u8 & 7) << 1) | 1,
        (t >> 22) as u8,
        (((t >> 15) as u8) << 1) | 1,
        (t >> 7) as u8,
        ((t as u8) << 1) | 1,
    ]
}

impl Mux {
    pub(super) fn new(stream_type: u8) -> Self {
        Mux {
            out: Vec::new(),
            cc: [0; 0x2000],
            stream_type,
        }
    }

    /// Writes `data` as packets of `pid`; the first gets pusi, the given AF flags and PCR.
    pub(super) fn packets(&mut self, pid: u16, data: &[u8], rai: bool, pcr: Option<u64>) {
        let mut rest = data;
        let mut first = true;
        loop {
            let mut af: Vec<u8> = Vec::new();
            if first && (rai || pcr.is_some()) {
                af.push((u8::from(rai) << 6) | if pcr.is_some() { 0x10 } else { 0 });
                if let Some(p) = pcr {
                    af.extend_from_slice(&[
                        (p >> 25) as u8,
                        (p >> 17) as u8,
                        (p >> 9) as u8,
                        (p >> 1) as u8,
                        ((p as u8) << 7) | 0x7E,
                        0,
                    ]);
                }
            }
            let room = 184 - if af.is_empty() { 0 } else { 1 + af.len() };
            let n = rest.len().min(room);
            if n < room {
                // Stuff with the adaptation field.
                let need = room - n;
                if af.is_empty() {
                    if need == 1 {
                        af = Vec::new();
                    } else {
                        af.push(0);
                        af.resize(need - 1, 0xFF);
                    }
                } else {
                    af.resize(af.len() + need, 0xFF);
                }
            }
            let cc = &mut self.cc[usize::from(pid)];
            let has_af = !af.is_empty() || (n < room && room - n == 1);
            let mut p = vec![
                0x47,
                (u8::from(first) << 6) | (pid >> 8) as u8,
                pid as u8,
                (if has_af { 0x30 } else { 0x10 }) | *cc,
            ];
            *cc = (*cc + 1) & 15;
            if has_af {
                p.push(af.len() as u8);
                p.extend_from_slice(&af);
            }
            p.extend_from_slice(&rest[..n]);
            assert_eq!(p.len(), 188);
            self.out.extend_from_slice(&p);
            rest = &rest[n..];
            first = false;
            if rest.is_empty() {
                break;
            }
        }
    }

    pub(super) fn psi(&mut self) {
        let mut pat = vec![0];
        pat.extend(pat_section());
        self.packets(0, &pat, false, None);
        let mut pmt = vec![0];
        pmt.extend(pmt_section(self.stream_type));
        self.packets(PMT_PID, &pmt, false, None);
    }

    pub(super) fn video(&mut self, pts: u64, key: bool, rai: bool, len: usize) {
        let mut pes = vec![0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10];
        pes.extend_from_slice(&pes_ts(0x30, pts));
        pes.extend_from_slice(&pes_ts(0x10, pts));
        if self.stream_type == 0x24 {
            pes.extend_from_slice(&[0, 0, 0, 1, 0x46, 0x01, 0x50]);
        } else {
            pes.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xF0]);
        }
        let nals: &[u8] = match (self.stream_type, key) {
            (0x24, true) => &[0x40, 0x01, 0x26, 0x01], // VPS, then IDR_W_RADL
            (0x24, false) => &[0x02, 0x01],            // TRAIL_R
            (_, true) => &[0x67, 0x65],
            (_, false) => &[0x41],
        };
        for &n in nals {
            pes.extend_from_slice(&[0, 0, 1, n, 0x88]);
        }
        pes.resize(len, 0xAB);
        self.packets(VIDEO_PID, &pes, rai, Some(pts.saturating_sub(9000)));
    }

    pub(super) fn audio(&mut self, pts: u64) {
        let mut pes = vec![0, 0, 1, 0xC0, 0, 0, 0x80, 0x80, 5];
        pes.extend_from_slice(&pes_ts(0x20, pts));
        pes.resize(400, 0x55);
        self.packets(AUDIO_PID, &pes, false, None);
    }
}

/// `frames` frames at 25 fps, a keyframe every `gop`, PAT+PMT every `psi_every` frames.
pub(super) fn stream(st: u8, frames: u64, gop: u64, psi_every: u64, rai: bool) -> Vec<u8> {
    let mut m = Mux::new(st);
    for i in 0..frames {
        if i % psi_every == 0 {
            m.psi();
        }
        let pts = 126_000 + i * 3600;
        let key = i % gop == 0;
        m.video(pts, key, rai && key, if key { 6000 } else { 2500 });
        m.audio(pts);
    }
    m.out
}

pub(super) fn cut_all(cfg: CutterConfig, chunks: &[&[u8]]) -> (Vec<CutPiece>, TsStats) {
    let mut c = Cutter::new(cfg);
    let mut out = Vec::new();
    for ch in chunks {
        c.push(ch).unwrap();
        while let Some(p) = c.pop() {
            out.push(p);
        }
    }
    let mut next = c.flush();
    while let Some(p) = next {
        out.push(p);
        next = c.pop();
    }
    (out, c.stats())
}

pub(super) fn pid_at(payload: &[u8], i: usize) -> u16 {
    let p = &payload[i * 188..];
    (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])
}

pub(super) fn check_pieces(pieces: &[CutPiece]) {
    for p in pieces {
        assert_eq!(p.payload.len() % 188, 0);
        assert!(p.payload.chunks(188).all(|c| c[0] == 0x47));
        assert!(p.duration_us > 0);
        if p.keyframe {
            assert_eq!(pid_at(&p.payload, 0), 0, "keyframe piece starts with PAT");
            assert_eq!(pid_at(&p.payload, 1), PMT_PID, "then PMT");
        }
    }
}

pub(super) fn chunked(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(data[last..p].to_vec());
        last = p;
    }
    out.push(data[last..].to_vec());
    out
}
