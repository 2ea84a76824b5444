//! A transport stream file as VoD HLS sees it: what the file's head says ([`TsHead`]: the
//! program, the PAT and PMT packets that start every segment, the first timestamp), the last
//! timestamp near its end ([`last_pts`]), and where its keyframes are ([`KeyframeFinder`]).
//!
//! It works on byte slices of the file, in any chunking; reading the file (and waiting for its
//! pieces) and the segment policy belong to the HTTP crate (`vod_hls`). Keyframes are found
//! as the live cutter finds them: the adaptation field's random access indicator, else the
//! first NAL units of the video PES (H.264 IDR/SPS, H.265 IRAP/VPS, MPEG-2 sequence header).
//! A program without video is cut at any PES start of its first audio PID.

use super::keyframe::{Codec, NalScanner, Scan};
use super::packet::{find_sync, Header};
use super::pes::parse_pes_header;
use super::psi::{Psi, PsiKind, StreamInfo};
use super::{TsError, PACKET_LEN, SYNC_BYTE, SYNC_SEARCH_LIMIT};

/// Bytes of a video PES scanned for a random access point before it counts as not one.
const KEYFRAME_SCAN_LIMIT: usize = 8 * PACKET_LEN;

/// 33-bit timestamps wrap here.
const PTS_MOD: u64 = 1 << 33;

/// What the head of a transport stream file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsHead {
    /// The first program's PIDs.
    pub info: StreamInfo,
    /// Copies of its PAT and PMT packets, marked so they may precede any packet (see the
    /// live cutter): every segment but the first starts with them.
    pub psi: Vec<u8>,
    /// Offset of the first packet (bytes before it are not in sync).
    pub sync: u64,
    /// The first PTS (90 kHz) of the main PID.
    pub first_pts: u64,
}

/// The PID whose PES starts may begin a segment and whose timestamps measure the file: the
/// video PID, else the first audio PID.
fn main_pid(info: &StreamInfo) -> Option<u16> {
    info.video_pid.or_else(|| info.audio_pids.first().copied())
}

impl TsHead {
    /// Reads the head of a file from its first bytes. `Ok(None)`: these bytes do not yet hold
    /// a PAT, its PMT and a timestamped PES start of the main PID (read more and call again).
    ///
    /// Fails with [`TsError::NotTs`] when the first 64 KiB show no packet sync.
    pub fn read(data: &[u8]) -> Result<Option<TsHead>, TsError> {
        let Some(sync) = find_sync(data) else {
            return if data.len() >= SYNC_SEARCH_LIMIT {
                Err(TsError::NotTs)
            } else {
                Ok(None)
            };
        };
        let mut psi = Psi::default();
        for pkt in data[sync..].chunks_exact(PACKET_LEN) {
            if pkt[0] != SYNC_BYTE {
                break;
            }
            let Some(h) = Header::parse(pkt) else {
                continue;
            };
            let payload = pkt.get(h.payload_start..).unwrap_or_default();
            let kind = if h.pid == 0 {
                PsiKind::Pat
            } else if psi.pmt_pid == Some(h.pid) {
                PsiKind::Pmt
            } else {
                PsiKind::None
            };
            if kind != PsiKind::None {
                if h.has_payload {
                    psi.on_packet(kind, pkt, payload, h.pusi);
                }
                continue;
            }
            let Some(info) = &psi.info else { continue };
            if main_pid(info) != Some(h.pid) || !h.pusi {
                continue;
            }
            let Some(first_pts) = parse_pes_header(payload).pts else {
                continue;
            };
            if psi.pat_pkts.is_empty() || psi.pmt_pkts.is_empty() {
                continue;
            }
            let mut copies = psi.pat_pkts.clone();
            copies.extend_from_slice(&psi.pmt_pkts);
            return Ok(Some(TsHead {
                info: info.clone(),
                psi: copies,
                sync: sync as u64,
                first_pts,
            }));
        }
        Ok(None)
    }

    /// Media time from the first PTS to `last` (a PTS of [`last_pts`]), in 90 kHz ticks,
    /// across one 33-bit wrap.
    pub fn span_to(&self, last: u64) -> u64 {
        last.wrapping_sub(self.first_pts) & (PTS_MOD - 1)
    }
}

/// The latest PTS of the main PID in `data` (bytes near the end of the file), if any.
pub fn last_pts(info: &StreamInfo, data: &[u8]) -> Option<u64> {
    let main = main_pid(info)?;
    let sync = find_sync(data)?;
    let mut last = None;
    for pkt in data[sync..].chunks_exact(PACKET_LEN) {
        if pkt[0] != SYNC_BYTE {
            break;
        }
        let Some(h) = Header::parse(pkt) else {
            continue;
        };
        if h.pid == main && h.pusi {
            let payload = pkt.get(h.payload_start..).unwrap_or_default();
            if let Some(pts) = parse_pes_header(payload).pts {
                last = Some(pts);
            }
        }
    }
    last
}

/// Finds the first keyframe in bytes fed from a packet boundary: the offset, counted from
/// the first byte fed, of the packet that starts the keyframe's PES.
///
/// Bounded: it keeps at most one partial packet and the scan state of one PES.
#[derive(Debug)]
pub struct KeyframeFinder {
    main: Option<u16>,
    codec: Codec,
    video: bool,
    /// Offset of the next packet (the one `carry` begins).
    pos: u64,
    /// A packet begun in one call and ended in the next.
    carry: Vec<u8>,
    /// The video PES being scanned: its packet's offset, the scanner, bytes scanned.
    pending: Option<(u64, NalScanner, usize)>,
    found: Option<u64>,
}

impl KeyframeFinder {
    /// A finder for the program `info` describes.
    pub fn new(info: &StreamInfo) -> Self {
        KeyframeFinder {
            main: main_pid(info),
            codec: Codec::from_stream_type(info.video_stream_type),
            video: info.video_pid.is_some(),
            pos: 0,
            carry: Vec::with_capacity(PACKET_LEN),
            pending: None,
            found: None,
        }
    }

    /// Feeds the next bytes; returns the keyframe's offset once found (and from then on).
    pub fn push(&mut self, mut data: &[u8]) -> Option<u64> {
        if !self.carry.is_empty() && self.found.is_none() {
            let take = (PACKET_LEN - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < PACKET_LEN {
                return None;
            }
            let pkt = std::mem::take(&mut self.carry);
            self.packet(&pkt);
            self.carry = pkt;
            self.carry.clear();
        }
        let mut chunks = data.chunks_exact(PACKET_LEN);
        for pkt in &mut chunks {
            if self.found.is_some() {
                return self.found;
            }
            self.packet(pkt);
        }
        if self.found.is_none() {
            self.carry.extend_from_slice(chunks.remainder());
        }
        self.found
    }

    /// One packet, starting at offset `pos`.
    fn packet(&mut self, pkt: &[u8]) {
        let at = self.pos;
        self.pos += PACKET_LEN as u64;
        let h = match Header::parse(pkt) {
            Some(h) if pkt[0] == SYNC_BYTE && Some(h.pid) == self.main => h,
            _ => return,
        };
        let payload = pkt.get(h.payload_start..).unwrap_or_default();
        if h.pusi {
            self.pending = None;
            if !self.video || h.rai {
                self.found = Some(at);
                return;
            }
            let es = payload
                .get(parse_pes_header(payload).header_len..)
                .unwrap_or_default();
            self.pending = Some((at, NalScanner::new(self.codec), 0));
            self.scan(es);
        } else if self.pending.is_some() {
            self.scan(payload);
        }
    }

    fn scan(&mut self, data: &[u8]) {
        let Some((at, scanner, scanned)) = self.pending.as_mut() else {
            return;
        };
        let room = KEYFRAME_SCAN_LIMIT.saturating_sub(*scanned);
        let data = data.get(..room.min(data.len())).unwrap_or_default();
        *scanned += data.len();
        match scanner.scan(data) {
            Scan::Key => self.found = Some(*at),
            Scan::NotKey => self.pending = None,
            Scan::Unknown if *scanned >= KEYFRAME_SCAN_LIMIT => self.pending = None,
            Scan::Unknown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::testmux::*;
    use proptest::prelude::*;

    /// Offsets of the packets that start a keyframe's video PES in a test stream.
    fn key_offsets(ts: &[u8]) -> Vec<u64> {
        ts.chunks(PACKET_LEN)
            .enumerate()
            .filter(|(_, p)| {
                pid_at(p, 0) == VIDEO_PID
                    && p[1] & 0x40 != 0
                    && p.windows(4).any(|w| w == [0, 0, 1, 0x65])
            })
            .map(|(i, _)| (i * PACKET_LEN) as u64)
            .collect()
    }

    #[test]
    fn the_head_gives_the_program_the_psi_copies_and_the_first_pts() {
        let ts = stream(0x1B, 50, 25, 5, false);
        let mut junk = vec![0x11; 100];
        junk.extend_from_slice(&ts);
        let head = TsHead::read(&junk).unwrap().expect("a head");
        assert_eq!(head.sync, 100);
        assert_eq!(head.info.video_pid, Some(VIDEO_PID));
        assert_eq!(head.first_pts, 126_000);
        assert_eq!(head.psi.len(), 2 * PACKET_LEN);
        assert_eq!(pid_at(&head.psi, 0), 0);
        assert_eq!(pid_at(&head.psi, 1), PMT_PID);
        assert!(
            head.psi.chunks(PACKET_LEN).all(|p| p[5] & 0x80 != 0),
            "marked copies"
        );
        assert_eq!(
            TsHead::read(&ts[..PACKET_LEN]).unwrap(),
            None,
            "too short: read more"
        );
        assert_eq!(TsHead::read(&[0u8; 70_000]), Err(TsError::NotTs));
        let last = last_pts(&head.info, &ts[ts.len() - 20_000..]).unwrap();
        assert_eq!(head.span_to(last), 49 * 3600, "49 frames after the first");
        assert_eq!(head.span_to(5), (1 << 33) - 126_000 + 5, "across the wrap");
    }

    #[test]
    fn keyframes_are_found_from_any_packet_in_any_chunking() {
        for rai in [false, true] {
            let ts = stream(0x1B, 100, 25, 5, rai);
            let info = TsHead::read(&ts).unwrap().unwrap().info;
            let keys = key_offsets(&ts);
            assert_eq!(keys.len(), 4);
            for from in (0..ts.len()).step_by(PACKET_LEN * 7) {
                let want = keys
                    .iter()
                    .find(|&&k| k >= from as u64)
                    .map(|k| k - from as u64);
                for chunk in [1, 100, 188, 5000, usize::MAX] {
                    let mut f = KeyframeFinder::new(&info);
                    let mut got = None;
                    for c in ts[from..].chunks(chunk.min(ts.len())) {
                        got = f.push(c);
                        if got.is_some() {
                            break;
                        }
                    }
                    assert_eq!(got, want, "from {from}, chunks of {chunk}, rai {rai}");
                }
            }
        }
    }

    #[test]
    fn without_video_any_audio_pes_start_will_do() {
        let ts = stream(0x1B, 10, 25, 5, false);
        let mut info = TsHead::read(&ts).unwrap().unwrap().info;
        info.video_pid = None;
        let mut f = KeyframeFinder::new(&info);
        let first_audio = ts
            .chunks(PACKET_LEN)
            .position(|p| pid_at(p, 0) == AUDIO_PID && p[1] & 0x40 != 0)
            .unwrap();
        assert_eq!(f.push(&ts), Some((first_audio * PACKET_LEN) as u64));
    }

    proptest! {
        /// Any bytes: no panic, and an offset found is inside what was fed.
        #[test]
        fn garbage_is_harmless(data in proptest::collection::vec(any::<u8>(), 0..3000), cut in 0usize..3000) {
            let _ = TsHead::read(&data);
            let info = StreamInfo { video_pid: Some(VIDEO_PID), video_stream_type: 0x1B, ..Default::default() };
            let _ = last_pts(&info, &data);
            let mut f = KeyframeFinder::new(&info);
            let cut = cut.min(data.len());
            let a = f.push(&data[..cut]);
            let b = f.push(&data[cut..]);
            if let Some(at) = a.or(b) {
                prop_assert!(at < data.len() as u64);
            }
        }
    }
}
