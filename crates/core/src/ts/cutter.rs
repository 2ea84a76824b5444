//! The [`Cutter`]: turns a transport stream into live pieces by the rules in the module docs of
//! [`crate::ts`], using the packet, PES, PSI and keyframe layers beside it. Owns the piece being
//! filled and the queue of finished pieces; never touches a file, a socket or the clock.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::keyframe::{Codec, NalScanner, Scan};
use super::packet::{find_sync, Header};
use super::pes::{parse_pes_header, ticks_to_us, RateMeter, Unwrapper};
use super::psi::{Psi, PsiKind, StreamInfo};
use super::SYNC_SEARCH_LIMIT;
use super::{TsError, DEFAULT_MAX_PIECE_LEN, DEFAULT_PIECE_DURATION_US, PACKET_LEN, SYNC_BYTE};

/// Smallest accepted `max_piece_len` (smaller values are raised to it).
const MIN_MAX_PIECE_LEN: usize = 16 * PACKET_LEN;
/// Most PES payload bytes scanned for NAL start codes before giving up on a keyframe decision.
const KEYFRAME_SCAN_LIMIT: usize = 8 * PACKET_LEN;
/// A piece with no video PES start this long past its duration is cut at a packet boundary.
const NO_PES_GRACE_US: u64 = 250_000;
/// Durations above this are treated as timestamp jumps and replaced by the configured one.
const MAX_PLAUSIBLE_DURATION_US: u64 = 60_000_000;

/// How the [`Cutter`] cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutterConfig {
    /// Target piece duration in microseconds (a keyframe may end a piece earlier).
    pub piece_duration_us: u32,
    /// Hard cap on a piece's length in bytes; rounded down to a multiple of 188 (at least 16
    /// packets).
    pub max_piece_len: usize,
}

impl Default for CutterConfig {
    fn default() -> Self {
        CutterConfig {
            piece_duration_us: DEFAULT_PIECE_DURATION_US,
            max_piece_len: DEFAULT_MAX_PIECE_LEN,
        }
    }
}

/// One live piece: whole 188-byte packets and what the cutter learned about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPiece {
    /// Whole transport stream packets.
    pub payload: Bytes,
    /// Starts at a video random access point, with PAT and PMT first (decodes on its own).
    pub keyframe: bool,
    /// First piece after [`Cutter::mark_discontinuity`] (or after a [`Cutter::flush`]).
    pub discontinuity: bool,
    /// Media duration in microseconds (never 0).
    pub duration_us: u32,
    /// First video PTS in the piece, in microseconds (90 kHz clock, unwrapped).
    pub pts_us: Option<u64>,
    /// First PCR in the piece, in microseconds (unwrapped).
    pub pcr_us: Option<u64>,
}

/// Counters of a [`Cutter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsStats {
    /// Bytes pushed.
    pub bytes_in: u64,
    /// Packets found in sync.
    pub packets: u64,
    /// Bytes dropped: garbage between packets, packets before the first keyframe, partial
    /// packets at the end.
    pub dropped_bytes: u64,
    /// Times the packet sync was lost and searched again.
    pub resyncs: u64,
    /// Pieces emitted.
    pub pieces: u64,
    /// Keyframe pieces emitted.
    pub keyframes: u64,
    /// Bit rate of the packets over the last few seconds of media time (PCR, else video DTS).
    pub bitrate_bps: u64,
}

/// Cuts an MPEG transport stream into live pieces. See the module docs for the rules.
#[derive(Debug)]
pub struct Cutter {
    piece_duration_us: u32,
    max_piece_len: usize,
    /// Unconsumed input (at most one push plus a partial packet).
    inbuf: BytesMut,
    synced: bool,
    ever_synced: bool,
    /// Garbage dropped before the first sync.
    unsynced_dropped: usize,
    failed: bool,
    pub(super) psi: Psi,
    /// The piece being filled.
    cur: BytesMut,
    meta: PieceMeta,
    started: bool,
    next_discontinuity: bool,
    run: Option<PsiRun>,
    pending: Option<PendingPes>,
    pts_clock: Unwrapper,
    pcr_clock: Unwrapper,
    last_pcr: Option<u64>,
    last_vt: Option<u64>,
    vt_step: Option<u64>,
    rate: RateMeter,
    ready: VecDeque<CutPiece>,
    stats: TsStats,
    last_piece_len: usize,
}

impl Cutter {
    /// A cutter with the given configuration.
    pub fn new(cfg: CutterConfig) -> Self {
        let max = (cfg.max_piece_len / PACKET_LEN * PACKET_LEN).max(MIN_MAX_PIECE_LEN);
        Cutter {
            piece_duration_us: cfg.piece_duration_us.max(1),
            max_piece_len: max,
            inbuf: BytesMut::new(),
            synced: false,
            ever_synced: false,
            unsynced_dropped: 0,
            failed: false,
            psi: Psi::default(),
            cur: BytesMut::new(),
            meta: PieceMeta::default(),
            started: false,
            next_discontinuity: false,
            run: None,
            pending: None,
            pts_clock: Unwrapper::default(),
            pcr_clock: Unwrapper::default(),
            last_pcr: None,
            last_vt: None,
            vt_step: None,
            rate: RateMeter::default(),
            ready: VecDeque::new(),
            stats: TsStats::default(),
            last_piece_len: 0,
        }
    }

    /// Feeds input bytes, in any chunking. A partial packet is kept for the next call.
    ///
    /// Fails with [`TsError::NotTs`] once 64 KiB went by without packet sync (and on every
    /// later call).
    pub fn push(&mut self, data: &[u8]) -> Result<(), TsError> {
        if self.failed {
            return Err(TsError::NotTs);
        }
        self.stats.bytes_in += data.len() as u64;
        self.inbuf.extend_from_slice(data);
        let inbuf = std::mem::take(&mut self.inbuf);
        let mut pos = 0;
        loop {
            let rest = inbuf.get(pos..).unwrap_or_default();
            if self.synced {
                let Some(pkt) = rest.get(..PACKET_LEN) else {
                    break;
                };
                if pkt.first() == Some(&SYNC_BYTE) {
                    self.on_packet(pkt);
                    pos += PACKET_LEN;
                } else {
                    self.synced = false;
                    self.stats.resyncs += 1;
                }
            } else {
                match find_sync(rest) {
                    Some(skip) => {
                        self.drop_garbage(skip);
                        pos += skip;
                        self.synced = true;
                        self.ever_synced = true;
                    }
                    None => {
                        let skip = rest.len().saturating_sub(2 * PACKET_LEN + 1);
                        self.drop_garbage(skip);
                        pos += skip;
                        break;
                    }
                }
            }
        }
        self.inbuf = inbuf;
        self.inbuf.advance(pos.min(self.inbuf.len()));
        if !self.ever_synced && self.unsynced_dropped >= SYNC_SEARCH_LIMIT {
            self.failed = true;
            self.inbuf = BytesMut::new();
            return Err(TsError::NotTs);
        }
        Ok(())
    }

    /// The next complete piece, if any.
    pub fn pop(&mut self) -> Option<CutPiece> {
        self.ready.pop_front()
    }

    /// Ends the input: the current piece is completed (its duration is its measured span) and
    /// queued; returns the next queued piece (keep calling [`Cutter::pop`] for the rest).
    /// Later input starts a new segment, which again begins at a keyframe.
    pub fn flush(&mut self) -> Option<CutPiece> {
        self.finish_segment();
        self.pop()
    }

    /// Marks a discontinuity (e.g. a `--loop` rewind): the current piece is completed and
    /// queued like at [`Cutter::flush`], timestamps restart, and the next piece (a keyframe
    /// piece) carries the `discontinuity` flag.
    pub fn mark_discontinuity(&mut self) {
        self.finish_segment();
        self.next_discontinuity = true;
    }

    /// Counters so far.
    pub fn stats(&self) -> TsStats {
        self.stats
    }

    /// What the PAT and PMT said, once a PMT was read.
    pub fn stream_info(&self) -> Option<&StreamInfo> {
        self.psi.info.as_ref()
    }

    // ---- packet layer -------------------------------------------------------------------

    fn drop_garbage(&mut self, n: usize) {
        self.stats.dropped_bytes += n as u64;
        if !self.ever_synced {
            self.unsynced_dropped = self.unsynced_dropped.saturating_add(n);
        }
    }

    fn on_packet(&mut self, pkt: &[u8]) {
        self.stats.packets += 1;
        let Some(h) = Header::parse(pkt) else {
            self.append_opaque(pkt);
            return;
        };
        let payload = pkt.get(h.payload_start..).unwrap_or_default();
        let pcr = h.pcr.map(|p| self.pcr_clock.unwrap(p));
        let video_pid = self.psi.info.as_ref().and_then(|i| i.video_pid);
        let is_video = video_pid == Some(h.pid);
        let kind = if h.pid == 0 {
            PsiKind::Pat
        } else if self.psi.pmt_pid == Some(h.pid) {
            PsiKind::Pmt
        } else if h.pid <= 0x1F {
            PsiKind::Other
        } else {
            PsiKind::None
        };

        // Decisions that fall before this packet.
        if is_video && h.pusi {
            self.resolve_pending(None);
        }
        self.make_room();
        if self.started && self.pending.is_none() && !(is_video && h.pusi) {
            self.maybe_cut_on_pcr(video_pid.is_some(), kind);
        }
        if !self.started && video_pid.is_none() && kind == PsiKind::Pat {
            self.start_without_video();
        }

        // Append the packet.
        let offset = self.cur.len();
        self.cur.extend_from_slice(pkt);

        // PSI bookkeeping and the run of PSI packets that may precede a keyframe.
        match kind {
            PsiKind::Pat | PsiKind::Pmt | PsiKind::Other => {
                let run = self.run.get_or_insert(PsiRun {
                    pat_at: None,
                    complete: false,
                });
                match kind {
                    PsiKind::Pat => {
                        run.pat_at = Some(offset);
                        run.complete = false;
                    }
                    PsiKind::Pmt if run.pat_at.is_some() => run.complete = true,
                    _ => {}
                }
                if kind != PsiKind::Other && h.has_payload {
                    self.psi.on_packet(kind, pkt, payload, h.pusi);
                }
            }
            PsiKind::None if !(is_video && h.pusi) => self.run = None,
            PsiKind::None => {}
        }

        if let Some(pcr) = pcr {
            self.last_pcr = Some(pcr);
            self.rate
                .sample(pcr, true, self.stats.packets * PACKET_LEN as u64);
            let pending_start = is_video && h.pusi;
            if !pending_start && self.meta.first_pcr.is_none() {
                self.meta.first_pcr = Some(pcr);
            }
        }

        if is_video {
            self.on_video(&h, offset, payload, pcr);
        }

        if !self.started && self.run.is_none() && self.pending.is_none() {
            self.stats.dropped_bytes += self.cur.len() as u64;
            self.cur.clear();
        }
        self.stats.bitrate_bps = self.rate.bps();
    }

    /// Keeps the current piece within `max_piece_len` before a packet is appended.
    fn make_room(&mut self) {
        if self.cur.len() + PACKET_LEN <= self.max_piece_len {
            return;
        }
        self.resolve_pending(None);
        if self.cur.len() + PACKET_LEN <= self.max_piece_len {
            return;
        }
        if self.started {
            self.cut_plain(self.cur.len(), None, None, self.last_pcr);
        } else {
            self.stats.dropped_bytes += self.cur.len() as u64;
            self.cur.clear();
            self.run = None;
        }
    }

    fn append_opaque(&mut self, pkt: &[u8]) {
        self.make_room();
        if self.started || self.pending.is_some() {
            self.cur.extend_from_slice(pkt);
        } else {
            self.stats.dropped_bytes += PACKET_LEN as u64;
        }
    }

    fn on_video(&mut self, h: &Header, offset: usize, payload: &[u8], pcr: Option<u64>) {
        let codec =
            Codec::from_stream_type(self.psi.info.as_ref().map_or(0, |i| i.video_stream_type));
        if h.pusi {
            let pes = parse_pes_header(payload);
            let pts = pes.pts.map(|p| self.pts_clock.unwrap(p));
            let dts = match (pes.dts, pts) {
                (Some(d), _) => Some(self.pts_clock.unwrap(d)),
                (None, p) => p,
            };
            if let Some(t) = dts {
                if let Some(last) = self.last_vt {
                    if t > last {
                        self.vt_step = Some(t - last);
                    }
                }
                self.last_vt = Some(t);
                self.rate
                    .sample(t, false, self.stats.packets * PACKET_LEN as u64);
            }
            let psi_cut = match self.run.take() {
                Some(PsiRun {
                    pat_at: Some(at),
                    complete: true,
                }) => Some(at),
                _ => None,
            };
            let mut p = PendingPes {
                offset,
                psi_cut,
                pts,
                dts,
                pcr,
                scanned: 0,
                scanner: NalScanner::new(codec),
            };
            if h.rai {
                self.resolve(p, true);
                return;
            }
            let es = payload.get(pes.header_len..).unwrap_or_default();
            match p.scan(es) {
                Scan::Key => self.resolve(p, true),
                Scan::NotKey => self.resolve(p, false),
                Scan::Unknown if p.scanned >= KEYFRAME_SCAN_LIMIT => self.resolve(p, false),
                Scan::Unknown => self.pending = Some(p),
            }
        } else if let Some(mut p) = self.pending.take() {
            match p.scan(payload) {
                Scan::Key => self.resolve(p, true),
                Scan::NotKey => self.resolve(p, false),
                Scan::Unknown if p.scanned >= KEYFRAME_SCAN_LIMIT => self.resolve(p, false),
                Scan::Unknown => self.pending = Some(p),
            }
        }
    }

    /// Settles a pending PES whose scan did not decide (`key` = `None` means "not a keyframe").
    fn resolve_pending(&mut self, key: Option<bool>) {
        if let Some(p) = self.pending.take() {
            self.resolve(p, key.unwrap_or(false));
        }
    }

    fn resolve(&mut self, p: PendingPes, key: bool) {
        let start_vt = p.dts;
        if key && !self.psi.pat_pkts.is_empty() && !self.psi.pmt_pkts.is_empty() {
            let (at, insert) = match p.psi_cut {
                Some(at) => (at, false),
                None => (p.offset, true),
            };
            self.cut(at, insert, true, start_vt, p.pts, p.pcr);
            return;
        }
        if !self.started {
            return;
        }
        let due = match (start_vt, self.meta.start_vt) {
            (Some(now), Some(s)) => {
                ticks_to_us(now.saturating_sub(s)) >= u64::from(self.piece_duration_us)
            }
            _ => false,
        };
        if due {
            self.cut_plain(p.offset, start_vt, p.pts, p.pcr);
            return;
        }
        if self.meta.start_vt.is_none() {
            self.meta.start_vt = start_vt;
        }
        if self.meta.first_pts.is_none() {
            self.meta.first_pts = p.pts;
        }
        if self.meta.first_pcr.is_none() {
            self.meta.first_pcr = p.pcr;
        }
    }

    fn maybe_cut_on_pcr(&mut self, has_video: bool, kind: PsiKind) {
        let (Some(first), Some(now)) = (self.meta.first_pcr, self.last_pcr) else {
            return;
        };
        let span = ticks_to_us(now.saturating_sub(first));
        let due = u64::from(self.piece_duration_us);
        if has_video {
            if span >= due + NO_PES_GRACE_US {
                self.cut_plain(self.cur.len(), None, None, None);
            }
        } else if span >= due && kind == PsiKind::Pat {
            // Without video, pieces start at a PAT when one is due: they decode on their own.
            self.cut(self.cur.len(), false, true, None, None, None);
        } else if span >= due + 1_000_000 {
            self.cut_plain(self.cur.len(), None, None, None);
        }
    }

    fn start_without_video(&mut self) {
        if self.psi.info.is_some() && !self.psi.pmt_pkts.is_empty() {
            self.stats.dropped_bytes += self.cur.len() as u64;
            self.cur.clear();
            self.started = true;
            self.meta = PieceMeta {
                keyframe: true,
                discontinuity: std::mem::take(&mut self.next_discontinuity),
                ..PieceMeta::default()
            };
            // The PAT itself comes next; the PMT copy follows after it via the normal path.
        }
    }

    // ---- cutting ------------------------------------------------------------------------

    fn cut_plain(&mut self, at: usize, start_vt: Option<u64>, pts: Option<u64>, pcr: Option<u64>) {
        if !self.started {
            return;
        }
        self.cut(at, false, false, start_vt, pts, pcr);
    }

    /// Ends the current piece at `at` (emitting it, or dropping it before the stream started)
    /// and starts a new one with the rest, prefixed by PAT and PMT copies when `insert_psi`.
    fn cut(
        &mut self,
        at: usize,
        insert_psi: bool,
        keyframe: bool,
        start_vt: Option<u64>,
        pts: Option<u64>,
        pcr: Option<u64>,
    ) {
        let at = at.min(self.cur.len());
        let psi_len = if insert_psi {
            self.psi.pat_pkts.len() + self.psi.pmt_pkts.len()
        } else {
            0
        };
        let tail_len = self.cur.len() - at;
        let hint = (self.last_piece_len + self.last_piece_len / 4)
            .max(16 * PACKET_LEN)
            .min(self.max_piece_len + 4 * PACKET_LEN)
            .max(psi_len + tail_len);
        let mut next = BytesMut::with_capacity(hint);
        if insert_psi {
            next.put_slice(&self.psi.pat_pkts);
            next.put_slice(&self.psi.pmt_pkts);
        }
        next.put_slice(self.cur.get(at..).unwrap_or_default());
        self.cur.truncate(at);
        let done = std::mem::replace(&mut self.cur, next);
        let new_meta = PieceMeta {
            keyframe,
            discontinuity: false,
            start_vt,
            first_pts: pts,
            first_pcr: pcr,
        };
        let old_meta = std::mem::replace(&mut self.meta, new_meta);
        if self.started {
            let duration = match (start_vt, old_meta.start_vt) {
                (Some(end), Some(s)) => ticks_to_us(end.saturating_sub(s)),
                _ => match (self.last_pcr, old_meta.first_pcr) {
                    (Some(end), Some(s)) => ticks_to_us(end.saturating_sub(s)),
                    _ => 0,
                },
            };
            self.emit(done, old_meta, duration);
        } else {
            self.stats.dropped_bytes += done.len() as u64;
            self.started = true;
            self.meta.discontinuity = std::mem::take(&mut self.next_discontinuity);
        }
        let shift = |o: usize| (o + psi_len).checked_sub(at);
        if let Some(run) = &mut self.run {
            run.pat_at = run.pat_at.and_then(shift);
        }
        if let Some(p) = &mut self.pending {
            match shift(p.offset) {
                Some(o) => p.offset = o,
                None => self.pending = None,
            }
        }
    }

    fn emit(&mut self, payload: BytesMut, meta: PieceMeta, duration_us: u64) {
        if payload.is_empty() {
            return;
        }
        let duration_us = if duration_us == 0 || duration_us > MAX_PLAUSIBLE_DURATION_US {
            u64::from(self.piece_duration_us)
        } else {
            duration_us
        };
        self.last_piece_len = payload.len();
        self.stats.pieces += 1;
        if meta.keyframe {
            self.stats.keyframes += 1;
        }
        self.ready.push_back(CutPiece {
            payload: payload.freeze(),
            keyframe: meta.keyframe,
            discontinuity: meta.discontinuity,
            duration_us: u32::try_from(duration_us).unwrap_or(u32::MAX),
            pts_us: meta.first_pts.map(ticks_to_us),
            pcr_us: meta.first_pcr.map(ticks_to_us),
        });
    }

    /// Completes the current piece with its measured span and resets per-segment state.
    fn finish_segment(&mut self) {
        self.resolve_pending(None);
        let partial = self.inbuf.len();
        self.stats.dropped_bytes += partial as u64;
        self.inbuf.clear();
        if self.started {
            let span = match (self.last_vt, self.meta.start_vt) {
                (Some(last), Some(s)) => {
                    ticks_to_us(last.saturating_sub(s) + self.vt_step.unwrap_or(0))
                }
                _ => match (self.last_pcr, self.meta.first_pcr) {
                    (Some(end), Some(s)) => ticks_to_us(end.saturating_sub(s)),
                    _ => 0,
                },
            };
            let done = std::mem::take(&mut self.cur);
            let meta = std::mem::take(&mut self.meta);
            self.emit(done, meta, span);
        } else {
            self.stats.dropped_bytes += self.cur.len() as u64;
            self.cur.clear();
        }
        self.started = false;
        self.meta = PieceMeta::default();
        self.run = None;
        self.pending = None;
        self.pts_clock = Unwrapper::default();
        self.pcr_clock = Unwrapper::default();
        self.last_pcr = None;
        self.last_vt = None;
        self.vt_step = None;
        self.rate = RateMeter::default();
    }
}

#[derive(Debug, Default, Clone)]
struct PieceMeta {
    keyframe: bool,
    discontinuity: bool,
    /// Video DTS (or PTS) at the piece start, 90 kHz unwrapped.
    start_vt: Option<u64>,
    first_pts: Option<u64>,
    /// In 90 kHz ticks, unwrapped.
    first_pcr: Option<u64>,
}

/// A run of PSI packets (PAT, PMT, SDT…) directly before the current packet.
#[derive(Debug, Clone, Copy)]
struct PsiRun {
    /// Offset in the current piece of the run's last PAT.
    pat_at: Option<usize>,
    /// A PMT followed that PAT.
    complete: bool,
}

/// A video PES start whose keyframe status is still being scanned.
#[derive(Debug)]
struct PendingPes {
    offset: usize,
    psi_cut: Option<usize>,
    pts: Option<u64>,
    dts: Option<u64>,
    pcr: Option<u64>,
    scanned: usize,
    scanner: NalScanner,
}

impl PendingPes {
    fn scan(&mut self, data: &[u8]) -> Scan {
        let room = KEYFRAME_SCAN_LIMIT.saturating_sub(self.scanned);
        let data = data.get(..room.min(data.len())).unwrap_or_default();
        self.scanned += data.len();
        self.scanner.scan(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::testmux::*;
    use crate::ts::*;
    use proptest::prelude::*;

    #[test]
    fn keyframe_every_second_and_half_second_pieces() {
        let ts = stream(0x1B, 100, 25, 5, false);
        let (pieces, stats) = cut_all(CutterConfig::default(), &[&ts]);
        check_pieces(&pieces);
        let kinds: Vec<bool> = pieces.iter().map(|p| p.keyframe).collect();
        assert_eq!(kinds, [true, false].repeat(4));
        for p in &pieces {
            assert!(
                (480_000..=520_000).contains(&p.duration_us),
                "{}",
                p.duration_us
            );
        }
        assert_eq!(pieces[0].pts_us, Some(126_000 * 100 / 9));
        assert_eq!(pieces[0].pcr_us, Some(117_000 * 100 / 9));
        assert_eq!(pieces[2].pts_us, Some((126_000 + 25 * 3600) * 100 / 9));
        assert_eq!(stats.pieces, 8);
        assert_eq!(stats.keyframes, 4);
        assert_eq!(stats.resyncs, 0);
        assert!(stats.bitrate_bps > 0);
        // PSI right before the keyframe moved into the new piece: nothing was duplicated.
        let total: usize = pieces.iter().map(|p| p.payload.len()).sum();
        assert_eq!(total, ts.len());
        assert_eq!(stats.dropped_bytes, 0);
    }

    #[test]
    fn psi_copies_are_inserted_when_not_adjacent() {
        // PSI every 7 frames: only frame 0's keyframe is preceded by PAT/PMT.
        let ts = stream(0x1B, 75, 25, 7, false);
        let (pieces, _) = cut_all(CutterConfig::default(), &[&ts]);
        check_pieces(&pieces);
        let keys: Vec<&CutPiece> = pieces.iter().filter(|p| p.keyframe).collect();
        assert_eq!(keys.len(), 3);
        let total: usize = pieces.iter().map(|p| p.payload.len()).sum();
        assert_eq!(total, ts.len() + 2 * 2 * 188, "two inserted PAT+PMT pairs");
        // The copies are the latest PAT and PMT with the discontinuity indicator set (here in
        // the existing stuffing adaptation field).
        let copy = &keys[1].payload[..188];
        assert_eq!(Header::parse(copy).unwrap().pid, 0);
        assert_eq!(copy[5] & 0x80, 0x80);
        let mut expected = copy.to_vec();
        expected[5] &= !0x80;
        assert!(ts.chunks(188).any(|c| c == expected.as_slice()));
    }

    #[test]
    fn data_before_the_first_keyframe_is_dropped() {
        let ts = stream(0x1B, 60, 25, 5, false);
        // Start mid-GOP (frame 10).
        let start = ts
            .chunks(188)
            .position(|c| {
                let pid = (u16::from(c[1] & 0x1F) << 8) | u16::from(c[2]);
                pid == VIDEO_PID && c[1] & 0x40 != 0 && c[4 + 9 + 14 + 3] == 0x41
            })
            .unwrap();
        let skip = (start + 200) * 188;
        let (pieces, stats) = cut_all(CutterConfig::default(), &[&ts[skip..]]);
        check_pieces(&pieces);
        assert!(pieces[0].keyframe);
        assert!(stats.dropped_bytes > 0);
        let total: u64 = pieces.iter().map(|p| p.payload.len() as u64).sum();
        assert_eq!(total + stats.dropped_bytes, (ts.len() - skip) as u64);
    }

    #[test]
    fn garbage_is_skipped_and_counted() {
        let ts = stream(0x1B, 50, 25, 5, false);
        let mut input = vec![0xAAu8; 1000];
        input.extend_from_slice(&[1, 2, 3]);
        input.extend_from_slice(&ts[..188 * 300]);
        input.extend_from_slice(&[0x47, 9, 9, 9, 9]);
        input.extend_from_slice(&ts[188 * 300..]);
        let (pieces, stats) = cut_all(CutterConfig::default(), &[&input]);
        check_pieces(&pieces);
        assert_eq!(stats.resyncs, 1);
        assert!(stats.dropped_bytes >= 1008);
        assert_eq!(pieces.iter().filter(|p| p.keyframe).count(), 2);
    }

    #[test]
    fn not_ts_after_64_kib_without_sync() {
        let mut c = Cutter::new(CutterConfig::default());
        c.push(&vec![0u8; 60 * 1024]).unwrap();
        let err = c.push(&[0x11u8; 8 * 1024]).unwrap_err();
        assert_eq!(err, TsError::NotTs);
        assert_eq!(
            err.to_string(),
            "input is not MPEG-TS: no 0x47 sync in the first 64 KiB"
        );
        assert_eq!(c.push(&stream(0x1B, 5, 25, 5, false)), Err(TsError::NotTs));
    }

    #[test]
    fn max_piece_len_is_honoured() {
        let ts = stream(0x1B, 50, 25, 5, false);
        let cfg = CutterConfig {
            piece_duration_us: 10_000_000,
            max_piece_len: 20 * 188 + 5,
        };
        let (pieces, _) = cut_all(cfg, &[&ts]);
        check_pieces(&pieces);
        assert!(pieces.iter().all(|p| p.payload.len() <= 20 * 188));
        let total: usize = pieces.iter().map(|p| p.payload.len()).sum();
        assert_eq!(total, ts.len());
    }

    #[test]
    fn discontinuity_flags_the_next_segment() {
        let ts = stream(0x1B, 30, 25, 5, false);
        let mut c = Cutter::new(CutterConfig::default());
        let mut out = Vec::new();
        c.push(&ts).unwrap();
        c.mark_discontinuity();
        c.push(&ts).unwrap();
        let mut next = c.flush();
        while let Some(p) = next {
            out.push(p);
            next = c.pop();
        }
        check_pieces(&out);
        let flags: Vec<(bool, bool)> = out.iter().map(|p| (p.keyframe, p.discontinuity)).collect();
        assert_eq!(
            flags,
            [
                (true, false),
                (false, false),
                (true, false),
                (true, true),
                (false, false),
                (true, false)
            ]
        );
        // The piece cut by the rewind has its measured span (5 frames).
        assert_eq!(out[2].duration_us, 200_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_chunking_gives_the_same_pieces(cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
            let ts = stream(0x1B, 40, 25, 5, false);
            let (whole, _) = cut_all(CutterConfig::default(), &[&ts]);
            let parts = chunked(&ts, &cuts);
            let refs: Vec<&[u8]> = parts.iter().map(|v| v.as_slice()).collect();
            let (pieces, _) = cut_all(CutterConfig::default(), &refs);
            prop_assert_eq!(whole, pieces);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..20_000),
                                cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
            let mut c = Cutter::new(CutterConfig::default());
            for part in chunked(&data, &cuts) {
                let _ = c.push(&part);
                while c.pop().is_some() {}
            }
            while c.flush().is_some() {}
        }

        #[test]
        fn corrupted_streams_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..200),
                                         max_packets in 16usize..200) {
            let mut ts = stream(0x1B, 30, 10, 3, false);
            let len = ts.len();
            for (at, v) in flips {
                ts[at % len] = v;
            }
            let cfg = CutterConfig { piece_duration_us: 300_000, max_piece_len: max_packets * 188 };
            let mut c = Cutter::new(cfg);
            c.push(&ts).ok();
            while let Some(p) = c.pop() {
                prop_assert!(p.payload.len() <= cfg.max_piece_len + 16 * 188);
                prop_assert_eq!(p.payload.len() % 188, 0);
            }
        }
    }
}
