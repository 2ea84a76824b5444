//! Program specific information: PAT and PMT sections reassembled from packet payloads (CRC-32
//! checked, bad ones ignored), what they say ([`StreamInfo`]), and the stored PAT/PMT packets
//! marked so their copies can start a keyframe piece. Knows nothing of PES or pieces.

use super::PACKET_LEN;

/// Longest PSI section (ISO/IEC 13818-1: section_length ≤ 1021 for PAT/PMT).
const MAX_SECTION_LEN: usize = 1024;
/// Most packets kept for one stored PAT or PMT.
const MAX_PSI_PACKETS: usize = 8;
/// Most audio PIDs remembered from a PMT.
const MAX_AUDIO_PIDS: usize = 16;

/// What the PAT and PMT said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamInfo {
    /// PID of the PMT of the first program.
    pub pmt_pid: u16,
    /// That program's number.
    pub program_number: u16,
    /// PID carrying the PCR.
    pub pcr_pid: u16,
    /// The video PID, if the program has one.
    pub video_pid: Option<u16>,
    /// The video stream type (0x1B H.264, 0x24 H.265, …).
    pub video_stream_type: u8,
    /// Audio PIDs (at most 16).
    pub audio_pids: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PsiKind {
    Pat,
    Pmt,
    Other,
    None,
}

/// PAT/PMT reassembly and what they said.
#[derive(Debug, Default)]
pub(super) struct Psi {
    pub(super) pat: SectionBuf,
    pub(super) pmt: SectionBuf,
    /// PMT PID and program number from the latest valid PAT.
    pub(super) pmt_pid: Option<u16>,
    pub(super) program_number: u16,
    pub(super) info: Option<StreamInfo>,
    /// The packets of the latest valid PAT and PMT, for copies at keyframe pieces.
    pub(super) pat_pkts: Vec<u8>,
    pub(super) pmt_pkts: Vec<u8>,
}

impl Psi {
    pub(super) fn on_packet(&mut self, kind: PsiKind, pkt: &[u8], payload: &[u8], pusi: bool) {
        let buf = match kind {
            PsiKind::Pat => &mut self.pat,
            PsiKind::Pmt => &mut self.pmt,
            _ => return,
        };
        let (pmt_pid, program_number) = (self.pmt_pid, self.program_number);
        let Some(section) = buf.push(pkt, payload, pusi) else {
            return;
        };
        let parsed = match kind {
            PsiKind::Pat => Parsed::Pat(parse_pat(section)),
            _ => Parsed::Pmt(pmt_pid.and_then(|p| parse_pmt(section, p, program_number))),
        };
        match parsed {
            Parsed::Pat(pat) => {
                if let Some((program, pid)) = pat {
                    std::mem::swap(&mut self.pat_pkts, &mut self.pat.done_pkts);
                    mark_copies(&mut self.pat_pkts);
                    if self.pmt_pid != Some(pid) {
                        self.pmt_pid = Some(pid);
                        self.program_number = program;
                        self.pmt = SectionBuf::default();
                        self.pmt_pkts.clear();
                        self.info = None;
                    }
                }
            }
            Parsed::Pmt(pmt) => {
                if let Some(info) = pmt {
                    std::mem::swap(&mut self.pmt_pkts, &mut self.pmt.done_pkts);
                    mark_copies(&mut self.pmt_pkts);
                    self.info = Some(info);
                }
            }
        }
    }
}

/// A parsed (or rejected) PAT or PMT section.
pub(super) enum Parsed {
    Pat(Option<(u16, u16)>),
    Pmt(Option<StreamInfo>),
}

/// Sets the adaptation field's `discontinuity_indicator` on stored PSI packets, so that their
/// copies at the start of a keyframe piece are accepted with any continuity counter (ffmpeg
/// flags a plain duplicate of a PSI packet as a continuity error). A packet without an
/// adaptation field gets a 2-byte one when its section ends at least 2 bytes before the packet
/// end (the bytes after a section are 0xFF stuffing); other packets stay verbatim.
pub(super) fn mark_copies(pkts: &mut [u8]) {
    for pkt in pkts.chunks_exact_mut(PACKET_LEN) {
        let afc = (pkt[3] >> 4) & 3;
        if afc & 2 != 0 {
            if pkt[4] >= 1 {
                pkt[5] |= 0x80;
            }
            continue;
        }
        if afc != 1 || pkt[1] & 0x40 == 0 {
            continue;
        }
        // Single-section packet: pointer field, then the section.
        let start = 5 + usize::from(pkt[4]);
        let (Some(&a), Some(&b)) = (pkt.get(start + 1), pkt.get(start + 2)) else {
            continue;
        };
        let end = start + 3 + ((usize::from(a & 0x0F) << 8) | usize::from(b));
        if end + 2 > PACKET_LEN {
            continue;
        }
        pkt.copy_within(4..PACKET_LEN - 2, 6);
        pkt[3] |= 0x20;
        pkt[4] = 1;
        pkt[5] = 0x80;
    }
}

/// Reassembles one PSI section at a time from packet payloads.
#[derive(Debug, Default)]
pub(super) struct SectionBuf {
    pub(super) data: Vec<u8>,
    pub(super) active: bool,
    /// Raw packets of the section being assembled.
    pub(super) pkts: Vec<u8>,
    /// Raw packets of the section just completed (swapped out by the owner when valid).
    pub(super) done_pkts: Vec<u8>,
}

impl SectionBuf {
    /// Returns a complete section (not yet CRC-checked) when this packet completes one.
    pub(super) fn push(&mut self, pkt: &[u8], payload: &[u8], pusi: bool) -> Option<&[u8]> {
        if pusi {
            let (&ptr, rest) = payload.split_first()?;
            let ptr = usize::from(ptr);
            let (tail, head) = (rest.get(..ptr), rest.get(ptr..));
            let (Some(tail), Some(head)) = (tail, head) else {
                self.active = false;
                return None;
            };
            if self.active && !tail.is_empty() {
                self.add_pkt(pkt);
                self.data.extend_from_slice(
                    tail.get(..tail.len().min(MAX_SECTION_LEN))
                        .unwrap_or_default(),
                );
                if self.complete_len().is_some() {
                    // The previous section completed in this packet; report it and drop the
                    // new one that starts here (PAT/PMT sections rarely share a packet).
                    self.active = false;
                    return self.take_complete();
                }
            }
            if head.first().is_none_or(|&t| t == 0xFF) {
                self.active = false;
                return None;
            }
            self.active = true;
            self.data.clear();
            self.pkts.clear();
            self.add_pkt(pkt);
            self.data.extend_from_slice(head);
        } else if self.active {
            self.add_pkt(pkt);
            let room = MAX_SECTION_LEN.saturating_sub(self.data.len());
            self.data
                .extend_from_slice(payload.get(..room.min(payload.len())).unwrap_or_default());
        } else {
            return None;
        }
        match self.complete_len() {
            Some(_) => {
                self.active = false;
                self.take_complete()
            }
            None => {
                if self.data.len() >= 3 && self.section_len() > MAX_SECTION_LEN {
                    self.active = false;
                }
                None
            }
        }
    }

    pub(super) fn add_pkt(&mut self, pkt: &[u8]) {
        if self.pkts.len() < MAX_PSI_PACKETS * PACKET_LEN {
            self.pkts.extend_from_slice(pkt);
        }
    }

    pub(super) fn section_len(&self) -> usize {
        match (self.data.get(1), self.data.get(2)) {
            (Some(&a), Some(&b)) => 3 + ((usize::from(a & 0x0F) << 8) | usize::from(b)),
            _ => usize::MAX,
        }
    }

    pub(super) fn complete_len(&self) -> Option<usize> {
        let len = self.section_len();
        (len <= MAX_SECTION_LEN && self.data.len() >= len).then_some(len)
    }

    pub(super) fn take_complete(&mut self) -> Option<&[u8]> {
        let len = self.complete_len()?;
        self.done_pkts.clear();
        std::mem::swap(&mut self.done_pkts, &mut self.pkts);
        self.data.get(..len)
    }
}

/// First program (number ≠ 0) of a valid PAT: (program number, PMT PID).
pub(super) fn parse_pat(s: &[u8]) -> Option<(u16, u16)> {
    if *s.first()? != 0x00 || !crc_ok(s) {
        return None;
    }
    let body = s.get(8..s.len().checked_sub(4)?)?;
    body.chunks_exact(4).find_map(|e| {
        let program = u16::from_be_bytes([e[0], e[1]]);
        let pid = u16::from_be_bytes([e[2] & 0x1F, e[3]]);
        (program != 0).then_some((program, pid))
    })
}

/// The streams of a valid PMT for `program`.
pub(super) fn parse_pmt(s: &[u8], pmt_pid: u16, program: u16) -> Option<StreamInfo> {
    if *s.first()? != 0x02 || !crc_ok(s) {
        return None;
    }
    if u16::from_be_bytes([*s.get(3)?, *s.get(4)?]) != program {
        return None;
    }
    let pcr_pid = u16::from_be_bytes([*s.get(8)? & 0x1F, *s.get(9)?]);
    let pil = usize::from(u16::from_be_bytes([*s.get(10)? & 0x0F, *s.get(11)?]));
    let end = s.len().checked_sub(4)?;
    let mut info = StreamInfo {
        pmt_pid,
        program_number: program,
        pcr_pid,
        ..StreamInfo::default()
    };
    let mut preferred = false;
    let mut pos = 12 + pil;
    while pos + 5 <= end {
        let st = *s.get(pos)?;
        let pid = u16::from_be_bytes([*s.get(pos + 1)? & 0x1F, *s.get(pos + 2)?]);
        let esil = usize::from(u16::from_be_bytes([
            *s.get(pos + 3)? & 0x0F,
            *s.get(pos + 4)?,
        ]));
        pos += 5 + esil;
        let h26x = matches!(st, 0x1B | 0x24);
        if is_video(st) && (info.video_pid.is_none() || (h26x && !preferred)) {
            info.video_pid = Some(pid);
            info.video_stream_type = st;
            preferred = h26x;
        } else if is_audio(st) && info.audio_pids.len() < MAX_AUDIO_PIDS {
            info.audio_pids.push(pid);
        }
    }
    Some(info)
}

pub(super) fn is_video(st: u8) -> bool {
    matches!(
        st,
        0x01 | 0x02 | 0x10 | 0x1B | 0x20 | 0x24 | 0x42 | 0xD1 | 0xEA
    )
}

pub(super) fn is_audio(st: u8) -> bool {
    matches!(
        st,
        0x03 | 0x04 | 0x0F | 0x11 | 0x1C | 0x81 | 0x82 | 0x83 | 0x84 | 0x87
    )
}

/// CRC-32/MPEG-2 table (polynomial 0x04C11DB7, MSB first).
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32/MPEG-2 of `data` (a section including its CRC gives 0).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from(((crc >> 24) as u8) ^ b)]
    })
}

pub(super) fn crc_ok(section: &[u8]) -> bool {
    section.len() >= 12 && crc32_mpeg2(section) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::testmux::*;
    use crate::ts::*;

    #[test]
    fn copies_without_adaptation_field_get_one() {
        let mut pkt = vec![0x47, 0x40, 0x00, 0x13, 0x00];
        pkt.extend(pat_section());
        pkt.resize(188, 0xFF);
        let mut copy = pkt.clone();
        mark_copies(&mut copy);
        assert_eq!(&copy[..6], &[0x47, 0x40, 0x00, 0x33, 1, 0x80]);
        assert_eq!(&copy[6..], &pkt[4..186]);
        let mut c = Cutter::new(CutterConfig::default());
        c.push(&[copy.clone(), copy.clone(), copy].concat())
            .unwrap();
        assert_eq!(c.psi.pmt_pid, Some(PMT_PID), "the marked copy still parses");
        // A section that reaches the packet end is left alone.
        let mut full = vec![0x47, 0x40, 0x00, 0x13, 0x00, 0x00, 0xB0, 179];
        full.resize(188, 0);
        let mut same = full.clone();
        mark_copies(&mut same);
        assert_eq!(same, full);
    }

    #[test]
    fn bad_crc_psi_is_ignored() {
        let mut ts = stream(0x1B, 30, 25, 5, false);
        // Corrupt the first PAT's CRC: the stream starts at the next keyframe… there is none
        // without a valid PAT before it, so the first PAT+PMT at frame 5 make it known, and
        // the first keyframe is frame 25.
        // (The test muxer stuffs with the adaptation field: the CRC ends the packet.)
        ts[185] ^= 0xFF;
        let (pieces, stats) = cut_all(CutterConfig::default(), &[&ts]);
        check_pieces(&pieces);
        assert!(pieces[0].keyframe);
        assert_eq!(pieces[0].pts_us, Some((126_000 + 25 * 3600) * 100 / 9));
        assert!(stats.dropped_bytes > 0);
    }

    #[test]
    fn pmt_spanning_two_packets() {
        let mut m = Mux::new(0x1B);
        let mut s = vec![0x02, 0xB0, 0, 0, 1, 0xC1, 0, 0];
        s.extend_from_slice(&[0xE1, 0x00, 0xF0, 200]);
        s.extend(std::iter::repeat_n(0xAA, 200));
        s.extend_from_slice(&[0x1B, 0xE1, 0x00, 0xF0, 0, 0x0F, 0xE1, 0x01, 0xF0, 0]);
        let len = s.len() - 3 + 4;
        s[1] = 0xB0 | (len >> 8) as u8;
        s[2] = len as u8;
        let mut pmt = vec![0];
        pmt.extend(with_crc(s));
        let mut pat = vec![0];
        pat.extend(pat_section());
        m.packets(0, &pat, false, None);
        m.packets(PMT_PID, &pmt, false, None);
        m.video(126_000, true, false, 3000);
        let (pieces, _) = cut_all(CutterConfig::default(), &[&m.out]);
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].keyframe);
        assert_eq!(pieces[0].payload.len(), m.out.len());
    }

    #[test]
    fn crc_matches_a_known_value() {
        // CRC-32/MPEG-2 check value.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }
}
