//! # MPEG-TS reader and live piece cutter
//!
//! Owns everything the live source needs to know about MPEG transport streams: packet sync
//! (188-byte packets starting with `0x47`, resynchronised after garbage), the PAT → PMT walk
//! (sections spanning packets, CRC-32 checked, bad ones ignored), random access point detection
//! on the video PID (adaptation field `random_access_indicator`, H.264 IDR/SPS, H.265 IRAP/VPS,
//! MPEG-2 sequence headers), PTS/DTS/PCR extraction, and the [`Cutter`] that turns the stream into
//! live pieces of whole packets.
//!
//! It never touches a file, a socket or the clock: bytes go in through [`Cutter::push`], pieces
//! come out through [`Cutter::pop`]. Pacing a file in real time is the engine's job
//! (`peercdn_engine::ingest`), using the timestamps this module puts on each [`CutPiece`].
//!
//! Cutting rules:
//! - a new piece starts at every video random access point (`keyframe`); such a piece begins
//!   with a PAT and a PMT, so it decodes on its own: when PAT and PMT packets immediately precede
//!   the keyframe packet they move into the new piece, otherwise copies of the latest PAT and PMT
//!   packets are inserted, with the adaptation field's `discontinuity_indicator` set (the copy
//!   keeps the original's continuity counter; the flag tells decoders — ffmpeg included — not to
//!   check it, and the next original continues the PID's sequence);
//! - a new piece also starts at the first video PES start once the current piece spans
//!   `piece_duration_us`, at a packet boundary when no video PES start comes within a grace
//!   period (measured on the PCR), and at `max_piece_len`;
//! - a piece is emitted only once complete (the next one has started, or at
//!   [`Cutter::flush`] / [`Cutter::mark_discontinuity`]);
//! - everything before the first PAT, PMT and keyframe is dropped (and counted): a stream, and
//!   every segment after a discontinuity, starts with a keyframe piece.
//!
//! Bounds: the cutter holds at most one piece (`max_piece_len` plus a few packets), the
//! unconsumed input of the last `push`, one PSI section per table and a few stored PSI packets.
//! A stream without a video PID is cut on the PCR only, its first piece starting at a PAT.
//!
//! Calling rule: after every [`Cutter::push`], drain [`Cutter::pop`] until it returns `None`.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of one transport stream packet.
pub const PACKET_LEN: usize = 188;
/// The byte every transport stream packet starts with.
pub const SYNC_BYTE: u8 = 0x47;
/// How much input may show no packet sync before it is refused as not MPEG-TS.
pub const SYNC_SEARCH_LIMIT: usize = 64 * 1024;
/// Default piece duration: half a second.
pub const DEFAULT_PIECE_DURATION_US: u32 = 500_000;
/// Default maximum piece length: the largest multiple of 188 not above 2 MiB.
pub const DEFAULT_MAX_PIECE_LEN: usize = (2 * 1024 * 1024 / PACKET_LEN) * PACKET_LEN;

/// Smallest accepted `max_piece_len` (smaller values are raised to it).
const MIN_MAX_PIECE_LEN: usize = 16 * PACKET_LEN;
/// Longest PSI section (ISO/IEC 13818-1: section_length ≤ 1021 for PAT/PMT).
const MAX_SECTION_LEN: usize = 1024;
/// Most packets kept for one stored PAT or PMT.
const MAX_PSI_PACKETS: usize = 8;
/// Most PES payload bytes scanned for NAL start codes before giving up on a keyframe decision.
const KEYFRAME_SCAN_LIMIT: usize = 8 * PACKET_LEN;
/// Most audio PIDs remembered from a PMT.
const MAX_AUDIO_PIDS: usize = 16;
/// A piece with no video PES start this long past its duration is cut at a packet boundary.
const NO_PES_GRACE_US: u64 = 250_000;
/// Durations above this are treated as timestamp jumps and replaced by the configured one.
const MAX_PLAUSIBLE_DURATION_US: u64 = 60_000_000;
/// Bitrate window and sampling.
const BITRATE_WINDOW_US: u64 = 5_000_000;
const BITRATE_SAMPLE_US: u64 = 250_000;
const BITRATE_MAX_SAMPLES: usize = 32;

/// Errors of the transport stream reader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// The first 64 KiB never showed three packets in sync.
    #[error("input is not MPEG-TS: no 0x47 sync in the first 64 KiB")]
    NotTs,
}

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
    psi: Psi,
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

// ---- helpers ------------------------------------------------------------------------------

/// 90 kHz ticks to microseconds.
fn ticks_to_us(t: u64) -> u64 {
    t.saturating_mul(100) / 9
}

/// Offset of the first `0x47` confirmed by `0x47` 188 and 376 bytes later.
fn find_sync(buf: &[u8]) -> Option<usize> {
    let last = buf.len().checked_sub(2 * PACKET_LEN + 1)?;
    (0..=last).find(|&i| {
        buf.get(i) == Some(&SYNC_BYTE)
            && buf.get(i + PACKET_LEN) == Some(&SYNC_BYTE)
            && buf.get(i + 2 * PACKET_LEN) == Some(&SYNC_BYTE)
    })
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PsiKind {
    Pat,
    Pmt,
    Other,
    None,
}

/// The fixed header and adaptation field of one packet.
#[derive(Debug)]
struct Header {
    pid: u16,
    pusi: bool,
    has_payload: bool,
    rai: bool,
    /// 33-bit PCR base (90 kHz).
    pcr: Option<u64>,
    payload_start: usize,
}

impl Header {
    /// `None` for packets with the transport error indicator or a broken adaptation field.
    fn parse(pkt: &[u8]) -> Option<Header> {
        let b1 = *pkt.get(1)?;
        let b2 = *pkt.get(2)?;
        let b3 = *pkt.get(3)?;
        if b1 & 0x80 != 0 {
            return None;
        }
        let pid = (u16::from(b1 & 0x1F) << 8) | u16::from(b2);
        let afc = (b3 >> 4) & 3;
        let mut rai = false;
        let mut pcr = None;
        let mut payload_start = 4;
        if afc & 2 != 0 {
            let len = usize::from(*pkt.get(4)?);
            payload_start = 5 + len;
            if payload_start > PACKET_LEN {
                return None;
            }
            if len > 0 {
                let flags = *pkt.get(5)?;
                rai = flags & 0x40 != 0;
                if flags & 0x10 != 0 && len >= 7 {
                    let b = pkt.get(6..11)?;
                    pcr = Some(
                        (u64::from(b[0]) << 25)
                            | (u64::from(b[1]) << 17)
                            | (u64::from(b[2]) << 9)
                            | (u64::from(b[3]) << 1)
                            | (u64::from(b[4]) >> 7),
                    );
                }
            }
        }
        Some(Header {
            pid,
            pusi: b1 & 0x40 != 0,
            has_payload: afc & 1 != 0,
            rai,
            pcr,
            payload_start: if afc & 1 != 0 {
                payload_start
            } else {
                PACKET_LEN
            },
        })
    }
}

/// The bits of a PES header the cutter needs.
#[derive(Debug, Default)]
struct PesHeader {
    pts: Option<u64>,
    dts: Option<u64>,
    /// Bytes before the elementary stream data (0 when this is not a PES start).
    header_len: usize,
}

fn parse_pes_header(p: &[u8]) -> PesHeader {
    let none = PesHeader::default();
    if p.get(..3) != Some(&[0, 0, 1]) {
        return none;
    }
    let Some(&stream_id) = p.get(3) else {
        return none;
    };
    // Streams without the optional PES header (padding, private_stream_2, ECM, …).
    if matches!(
        stream_id,
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
    ) {
        return PesHeader {
            header_len: 6,
            ..none
        };
    }
    let (Some(&flags), Some(&hlen)) = (p.get(7), p.get(8)) else {
        return none;
    };
    let header_len = 9 + usize::from(hlen);
    let pts = if flags & 0x80 != 0 {
        p.get(9..14).and_then(read_ts)
    } else {
        None
    };
    let dts = if flags & 0xC0 == 0xC0 {
        p.get(14..19).and_then(read_ts)
    } else {
        None
    };
    PesHeader {
        pts,
        dts,
        header_len,
    }
}

/// A 33-bit PES timestamp from its 5-byte encoding.
fn read_ts(b: &[u8]) -> Option<u64> {
    let b: &[u8; 5] = b.try_into().ok()?;
    Some(
        ((u64::from(b[0] >> 1) & 0x07) << 30)
            | (u64::from(b[1]) << 22)
            | ((u64::from(b[2]) >> 1) << 15)
            | (u64::from(b[3]) << 7)
            | (u64::from(b[4]) >> 1),
    )
}

/// Turns 33-bit wrapping timestamps into a monotonic-ish 90 kHz clock.
#[derive(Debug, Default, Clone, Copy)]
struct Unwrapper {
    last_raw: Option<u64>,
    value: u64,
}

impl Unwrapper {
    const MOD: u64 = 1 << 33;

    fn unwrap(&mut self, raw: u64) -> u64 {
        let raw = raw & (Self::MOD - 1);
        match self.last_raw {
            None => self.value = raw,
            Some(last) => {
                let fwd = raw.wrapping_sub(last) & (Self::MOD - 1);
                if fwd < Self::MOD / 2 {
                    self.value = self.value.saturating_add(fwd);
                } else {
                    self.value = self.value.saturating_sub(Self::MOD - fwd);
                }
            }
        }
        self.last_raw = Some(raw);
        self.value
    }
}

/// Bytes over media time, on PCR samples when there are any, else video DTS.
#[derive(Debug, Default)]
struct RateMeter {
    samples: VecDeque<(u64, u64)>,
    from_pcr: bool,
}

impl RateMeter {
    fn sample(&mut self, t: u64, pcr: bool, bytes: u64) {
        if pcr && !self.from_pcr {
            self.from_pcr = true;
            self.samples.clear();
        }
        if pcr != self.from_pcr {
            return;
        }
        let t_us = ticks_to_us(t);
        if let Some(&(last, _)) = self.samples.back() {
            if t_us < last {
                self.samples.clear();
            } else if t_us - last < BITRATE_SAMPLE_US {
                return;
            }
        }
        self.samples.push_back((t_us, bytes));
        while self.samples.len() > BITRATE_MAX_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|&(t0, _)| t_us - t0 > BITRATE_WINDOW_US && self.samples.len() > 2)
        {
            self.samples.pop_front();
        }
    }

    fn bps(&self) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                (b1.saturating_sub(b0)).saturating_mul(8_000_000) / (t1 - t0)
            }
            _ => 0,
        }
    }
}

// ---- keyframe detection -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    H264,
    H265,
    Mpeg2,
    Other,
}

impl Codec {
    fn from_stream_type(t: u8) -> Codec {
        match t {
            0x1B => Codec::H264,
            0x24 => Codec::H265,
            0x01 | 0x02 => Codec::Mpeg2,
            _ => Codec::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Key,
    NotKey,
    Unknown,
}

/// Finds `00 00 01` start codes across packet boundaries and classifies the unit that follows.
#[derive(Debug)]
struct NalScanner {
    codec: Codec,
    zeros: u8,
    after_start: bool,
}

impl NalScanner {
    fn new(codec: Codec) -> Self {
        NalScanner {
            codec,
            zeros: 0,
            after_start: false,
        }
    }

    fn scan(&mut self, data: &[u8]) -> Scan {
        if self.codec == Codec::Other {
            return Scan::NotKey;
        }
        for &b in data {
            if self.after_start {
                self.after_start = false;
                match self.classify(b) {
                    Scan::Unknown => {}
                    decided => return decided,
                }
            }
            if b == 0 {
                self.zeros = self.zeros.saturating_add(1);
            } else {
                self.after_start = b == 1 && self.zeros >= 2;
                self.zeros = 0;
            }
        }
        Scan::Unknown
    }

    fn classify(&self, b: u8) -> Scan {
        match self.codec {
            Codec::H264 => match b & 0x1F {
                5 | 7 => Scan::Key,
                1..=4 => Scan::NotKey,
                _ => Scan::Unknown,
            },
            Codec::H265 => match (b >> 1) & 0x3F {
                16..=21 | 32 => Scan::Key,
                0..=9 => Scan::NotKey,
                _ => Scan::Unknown,
            },
            Codec::Mpeg2 => match b {
                0xB3 => Scan::Key,
                0x00 => Scan::NotKey,
                _ => Scan::Unknown,
            },
            Codec::Other => Scan::NotKey,
        }
    }
}

// ---- PSI ----------------------------------------------------------------------------------

/// PAT/PMT reassembly and what they said.
#[derive(Debug, Default)]
struct Psi {
    pat: SectionBuf,
    pmt: SectionBuf,
    /// PMT PID and program number from the latest valid PAT.
    pmt_pid: Option<u16>,
    program_number: u16,
    info: Option<StreamInfo>,
    /// The packets of the latest valid PAT and PMT, for copies at keyframe pieces.
    pat_pkts: Vec<u8>,
    pmt_pkts: Vec<u8>,
}

impl Psi {
    fn on_packet(&mut self, kind: PsiKind, pkt: &[u8], payload: &[u8], pusi: bool) {
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
enum Parsed {
    Pat(Option<(u16, u16)>),
    Pmt(Option<StreamInfo>),
}

/// Sets the adaptation field's `discontinuity_indicator` on stored PSI packets, so that their
/// copies at the start of a keyframe piece are accepted with any continuity counter (ffmpeg
/// flags a plain duplicate of a PSI packet as a continuity error). A packet without an
/// adaptation field gets a 2-byte one when its section ends at least 2 bytes before the packet
/// end (the bytes after a section are 0xFF stuffing); other packets stay verbatim.
fn mark_copies(pkts: &mut [u8]) {
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
struct SectionBuf {
    data: Vec<u8>,
    active: bool,
    /// Raw packets of the section being assembled.
    pkts: Vec<u8>,
    /// Raw packets of the section just completed (swapped out by the owner when valid).
    done_pkts: Vec<u8>,
}

impl SectionBuf {
    /// Returns a complete section (not yet CRC-checked) when this packet completes one.
    fn push(&mut self, pkt: &[u8], payload: &[u8], pusi: bool) -> Option<&[u8]> {
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

    fn add_pkt(&mut self, pkt: &[u8]) {
        if self.pkts.len() < MAX_PSI_PACKETS * PACKET_LEN {
            self.pkts.extend_from_slice(pkt);
        }
    }

    fn section_len(&self) -> usize {
        match (self.data.get(1), self.data.get(2)) {
            (Some(&a), Some(&b)) => 3 + ((usize::from(a & 0x0F) << 8) | usize::from(b)),
            _ => usize::MAX,
        }
    }

    fn complete_len(&self) -> Option<usize> {
        let len = self.section_len();
        (len <= MAX_SECTION_LEN && self.data.len() >= len).then_some(len)
    }

    fn take_complete(&mut self) -> Option<&[u8]> {
        let len = self.complete_len()?;
        self.done_pkts.clear();
        std::mem::swap(&mut self.done_pkts, &mut self.pkts);
        self.data.get(..len)
    }
}

/// First program (number ≠ 0) of a valid PAT: (program number, PMT PID).
fn parse_pat(s: &[u8]) -> Option<(u16, u16)> {
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
fn parse_pmt(s: &[u8], pmt_pid: u16, program: u16) -> Option<StreamInfo> {
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

fn is_video(st: u8) -> bool {
    matches!(
        st,
        0x01 | 0x02 | 0x10 | 0x1B | 0x20 | 0x24 | 0x42 | 0xD1 | 0xEA
    )
}

fn is_audio(st: u8) -> bool {
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

fn crc_ok(section: &[u8]) -> bool {
    section.len() >= 12 && crc32_mpeg2(section) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PMT_PID: u16 = 0x1000;
    const VIDEO_PID: u16 = 0x100;
    const AUDIO_PID: u16 = 0x101;

    /// A tiny MPEG-TS muxer for tests: PAT, PMT, video and audio PES with PCR.
    struct Mux {
        out: Vec<u8>,
        cc: [u8; 0x2000],
        stream_type: u8,
    }

    fn with_crc(mut s: Vec<u8>) -> Vec<u8> {
        let crc = crc32_mpeg2(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        s
    }

    fn pat_section() -> Vec<u8> {
        let mut s = vec![0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0];
        s.extend_from_slice(&[0, 1, 0xE0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        with_crc(s)
    }

    fn pmt_section(video_type: u8) -> Vec<u8> {
        let mut s = vec![0x02, 0xB0, 0, 0, 1, 0xC1, 0, 0];
        s.extend_from_slice(&[0xE0 | (VIDEO_PID >> 8) as u8, VIDEO_PID as u8, 0xF0, 0]);
        for (st, pid) in [(video_type, VIDEO_PID), (0x0F, AUDIO_PID)] {
            s.extend_from_slice(&[st, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, 0]);
        }
        s[2] = (s.len() - 3 + 4) as u8;
        with_crc(s)
    }

    fn pes_ts(marker: u8, t: u64) -> [u8; 5] {
        [
            marker | (((t >> 30) as u8 & 7) << 1) | 1,
            (t >> 22) as u8,
            (((t >> 15) as u8) << 1) | 1,
            (t >> 7) as u8,
            ((t as u8) << 1) | 1,
        ]
    }

    impl Mux {
        fn new(stream_type: u8) -> Self {
            Mux {
                out: Vec::new(),
                cc: [0; 0x2000],
                stream_type,
            }
        }

        /// Writes `data` as packets of `pid`; the first gets pusi, the given AF flags and PCR.
        fn packets(&mut self, pid: u16, data: &[u8], rai: bool, pcr: Option<u64>) {
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

        fn psi(&mut self) {
            let mut pat = vec![0];
            pat.extend(pat_section());
            self.packets(0, &pat, false, None);
            let mut pmt = vec![0];
            pmt.extend(pmt_section(self.stream_type));
            self.packets(PMT_PID, &pmt, false, None);
        }

        fn video(&mut self, pts: u64, key: bool, rai: bool, len: usize) {
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

        fn audio(&mut self, pts: u64) {
            let mut pes = vec![0, 0, 1, 0xC0, 0, 0, 0x80, 0x80, 5];
            pes.extend_from_slice(&pes_ts(0x20, pts));
            pes.resize(400, 0x55);
            self.packets(AUDIO_PID, &pes, false, None);
        }
    }

    /// `frames` frames at 25 fps, a keyframe every `gop`, PAT+PMT every `psi_every` frames.
    fn stream(st: u8, frames: u64, gop: u64, psi_every: u64, rai: bool) -> Vec<u8> {
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

    fn cut_all(cfg: CutterConfig, chunks: &[&[u8]]) -> (Vec<CutPiece>, TsStats) {
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

    fn pid_at(payload: &[u8], i: usize) -> u16 {
        let p = &payload[i * 188..];
        (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])
    }

    fn check_pieces(pieces: &[CutPiece]) {
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
    fn random_access_indicator_alone_marks_keyframes() {
        // Stream type 0x10 (MPEG-4 part 2): no NAL scanning, only the RAI flag.
        let ts = stream(0x10, 50, 25, 5, true);
        let (pieces, _) = cut_all(CutterConfig::default(), &[&ts]);
        check_pieces(&pieces);
        assert_eq!(pieces.iter().filter(|p| p.keyframe).count(), 2);
    }

    #[test]
    fn h265_irap_detected() {
        let ts = stream(0x24, 50, 25, 5, false);
        let (pieces, _) = cut_all(CutterConfig::default(), &[&ts]);
        check_pieces(&pieces);
        assert_eq!(pieces.iter().filter(|p| p.keyframe).count(), 2);
        assert_eq!(pieces.len(), 4);
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

    #[test]
    fn unwrapper_crosses_the_33_bit_wrap() {
        let mut u = Unwrapper::default();
        let a = u.unwrap((1 << 33) - 1800);
        let b = u.unwrap(1800);
        assert_eq!(b - a, 3600);
    }

    fn chunked(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
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
