//! Low-latency HLS of a live stream as the engine serves it (`/ace/manifest.m3u8`): pieces
//! grouped into segments that start at keyframes, each piece also a partial segment
//! (`EXT-X-PART`), so that hls.js in low-latency mode plays a second or two behind the source
//! while plain HLS players (ffmpeg, VLC, mpv) get ordinary segments of about two seconds.
//!
//! The [`Segmenter`] is fed the pieces in index order, as they become playable, and decides
//! once, never revising (parts already announced must stay where they are):
//! - the first segment starts at a keyframe piece, and so does the first after a
//!   discontinuity (the source restarted or looped) or a gap (pieces skipped), which is tagged
//!   (pieces before that keyframe piece are not listed: nothing decodes them);
//! - a piece starts a new segment when it is a keyframe piece and the current segment
//!   already lasts [`SEGMENT_MIN_US`], or when adding it would make the segment longer than
//!   [`SEGMENT_MAX_US`] (a GOP that long is split; that segment does not start with a
//!   keyframe);
//! - segment numbers are the media sequence numbers (one more per segment), kept for the life
//!   of the segmenter, and so is the discontinuity sequence (segments leaving the front count
//!   their discontinuity tag), so successive playlists agree (RFC 8216 §6.2.1–2).
//!
//! [`Segmenter::render`] writes the playlist: version 6, a target duration never lowered,
//! `EXT-X-SERVER-CONTROL` (blocking reload, part hold-back of three part targets),
//! `EXT-X-PART-INF`, `EXT-X-PROGRAM-DATE-TIME` from the source's piece timestamps, the parts
//! of the newest [`PARTS_LISTED_FOR`] segments, the open segment's parts and a preload hint
//! for the next piece. Nothing here does I/O or reads a clock.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::hls::Segment;

/// A keyframe piece starts a new segment once the current one lasts this long.
pub const SEGMENT_MIN_US: u64 = 1_500_000;
/// No segment lasts longer than this (unless one piece does).
pub const SEGMENT_MAX_US: u64 = 4_000_000;
/// Most parts (pieces) in one segment.
pub const MAX_PARTS: usize = 64;
/// The newest segments whose parts are listed.
pub const PARTS_LISTED_FOR: usize = 3;

/// One segment: its number, its pieces (the parts), and what precedes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GopSegment {
    /// Media sequence number.
    pub number: u64,
    /// The pieces, in order (consecutive indices).
    pub parts: Vec<Segment>,
    /// A discontinuity (source restart, loop, or skipped pieces) precedes it.
    pub discontinuity: bool,
    /// When the source made its first piece, microseconds since the Unix epoch (0: unknown).
    pub timestamp_us: u64,
    /// No more parts will be added.
    pub complete: bool,
}

impl GopSegment {
    /// Media duration, microseconds.
    pub fn duration_us(&self) -> u64 {
        self.parts.iter().map(|p| u64::from(p.duration_us)).sum()
    }

    /// Index of its first piece.
    pub fn first_piece(&self) -> u32 {
        self.parts.first().map_or(0, |p| p.index)
    }
}

/// The segments of one live stream (see the module docs). Bounded: at most `max_segments`
/// segments of at most [`MAX_PARTS`] parts.
#[derive(Clone, Debug)]
pub struct Segmenter {
    segments: VecDeque<GopSegment>,
    max_segments: usize,
    /// The piece expected next.
    next_piece: Option<u32>,
    next_number: u64,
    discontinuity_seq: u64,
    /// A discontinuity or gap came since the last segment started: the next one is tagged.
    pending_discontinuity: bool,
    /// Seconds, never lowered.
    target_s: u64,
    /// Microseconds, never lowered.
    part_target_us: u64,
}

impl Segmenter {
    /// A segmenter keeping at most `max_segments` segments; `part_target_us` is the piece
    /// duration the stream declares (raised when a longer piece comes).
    pub fn new(max_segments: usize, part_target_us: u64) -> Segmenter {
        Segmenter {
            segments: VecDeque::new(),
            max_segments: max_segments.max(2),
            next_piece: None,
            // From 1: hls.js takes a last segment numbered 0 for none, and then waits a target
            // duration before it reloads instead of asking for the next part at once.
            next_number: 1,
            discontinuity_seq: 0,
            pending_discontinuity: false,
            target_s: SEGMENT_MAX_US.div_ceil(1_000_000),
            part_target_us: part_target_us.max(1000),
        }
    }

    /// The piece the segmenter waits for next (`None` before the first).
    pub fn next_piece(&self) -> Option<u32> {
        self.next_piece
    }

    /// The segments kept, oldest first (the last may be open).
    pub fn segments(&self) -> &VecDeque<GopSegment> {
        &self.segments
    }

    /// Segment `number`, if kept.
    pub fn segment(&self, number: u64) -> Option<&GopSegment> {
        let first = self.segments.front()?.number;
        self.segments
            .get(usize::try_from(number.checked_sub(first)?).ok()?)
    }

    /// Feeds the next playable piece; `timestamp_us` is when the source made it. A piece
    /// below the one expected is ignored; one above it means the pieces between were skipped.
    pub fn push(&mut self, piece: Segment, timestamp_us: u64) {
        if self.next_piece.is_some_and(|n| piece.index < n) {
            return;
        }
        let gap = self.next_piece.is_some_and(|n| piece.index > n);
        self.next_piece = piece.index.checked_add(1);
        self.part_target_us = self.part_target_us.max(u64::from(piece.duration_us));
        if gap || piece.discontinuity {
            self.close_open();
            self.pending_discontinuity = true;
        }
        let Some(cur) = self.segments.back_mut().filter(|s| !s.complete) else {
            // A segment after nothing, a gap or a discontinuity starts at a keyframe piece (a
            // player that begins there or a decoder reset there needs one): pieces before it
            // are not listed.
            if piece.keyframe {
                let discontinuity = std::mem::take(&mut self.pending_discontinuity);
                self.start(piece, timestamp_us, discontinuity);
            }
            return;
        };
        let dur = cur.duration_us();
        let split = (piece.keyframe && dur >= SEGMENT_MIN_US)
            || dur + u64::from(piece.duration_us) > SEGMENT_MAX_US
            || cur.parts.len() >= MAX_PARTS;
        if split {
            self.close_open();
            self.start(piece, timestamp_us, false);
        } else {
            cur.parts.push(piece);
        }
    }

    /// Completes the open segment, if any.
    fn close_open(&mut self) {
        if let Some(cur) = self.segments.back_mut().filter(|s| !s.complete) {
            cur.complete = true;
            self.target_s = self.target_s.max(cur.duration_us().div_ceil(1_000_000));
        }
    }

    fn start(&mut self, piece: Segment, timestamp_us: u64, discontinuity: bool) {
        self.segments.push_back(GopSegment {
            number: self.next_number,
            parts: vec![piece],
            discontinuity,
            timestamp_us,
            complete: false,
        });
        self.next_number += 1;
        while self.segments.len() > self.max_segments {
            self.drop_front();
        }
    }

    /// Forgets the segments with a piece below `oldest` (they left the window): a playlist
    /// must not list what cannot be served.
    pub fn forget_before(&mut self, oldest: u32) {
        while self
            .segments
            .front()
            .is_some_and(|s| s.first_piece() < oldest)
        {
            self.drop_front();
        }
    }

    fn drop_front(&mut self) {
        if let Some(s) = self.segments.pop_front() {
            self.discontinuity_seq += u64::from(s.discontinuity);
        }
    }

    /// Whether a blocking reload for part `part` of segment `msn` (`_HLS_msn`, `_HLS_part`;
    /// `None`: the whole segment) can be answered: that part (segment) exists.
    pub fn has(&self, msn: u64, part: Option<usize>) -> bool {
        match self.segment(msn) {
            Some(s) => match part {
                None => s.complete,
                Some(p) => s.complete || p < s.parts.len(),
            },
            None => self.segments.back().is_some_and(|s| s.number > msn),
        }
    }

    /// The low-latency playlist of a server that holds blocking reloads and preload hints:
    /// `segment_url` names a segment, `part_url(index)` a piece.
    pub fn render(
        &self,
        segment_url: impl Fn(&GopSegment) -> String,
        part_url: impl Fn(u32) -> String,
    ) -> String {
        self.render_with(segment_url, part_url, true)
    }

    /// The playlist for a static web server (the publish directory): the same segments and
    /// parts, without blocking reload and without a preload hint (a file that does not exist
    /// yet). Plain players read the segments; low-latency ones poll for parts.
    pub fn render_static(
        &self,
        segment_url: impl Fn(&GopSegment) -> String,
        part_url: impl Fn(u32) -> String,
    ) -> String {
        self.render_with(segment_url, part_url, false)
    }

    fn render_with(
        &self,
        segment_url: impl Fn(&GopSegment) -> String,
        part_url: impl Fn(u32) -> String,
        blocking: bool,
    ) -> String {
        let part_target = self.part_target_us;
        let mut out = String::with_capacity(256 + self.segments.len() * 400);
        let listed = &self.segments;
        let first = listed.front().map_or(0, |s| s.number);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:{}PART-HOLD-BACK={}\n\
             #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{first}\n",
            self.target_s,
            if blocking {
                "CAN-BLOCK-RELOAD=YES,"
            } else {
                ""
            },
            secs(3 * part_target),
            secs(part_target),
        );
        if self.discontinuity_seq > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_seq
            );
        }
        let with_parts = listed.len().saturating_sub(PARTS_LISTED_FOR);
        for (k, s) in listed.iter().enumerate() {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if (k == 0 || s.discontinuity) && s.timestamp_us > 0 {
                let t = SystemTime::UNIX_EPOCH + Duration::from_micros(s.timestamp_us);
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    humantime::format_rfc3339_millis(t)
                );
            }
            if k >= with_parts {
                for p in &s.parts {
                    let _ = writeln!(
                        out,
                        "#EXT-X-PART:DURATION={},URI=\"{}\"{}",
                        secs(u64::from(p.duration_us)),
                        part_url(p.index),
                        if p.keyframe { ",INDEPENDENT=YES" } else { "" }
                    );
                }
            }
            if s.complete {
                let _ = write!(
                    out,
                    "#EXTINF:{},\n{}\n",
                    secs(s.duration_us()),
                    segment_url(s)
                );
            }
        }
        let hint = self
            .next_piece
            .filter(|_| blocking && !self.segments.is_empty());
        if let Some(next) = hint {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                part_url(next)
            );
        }
        out
    }
}

/// Microseconds as seconds with three decimals.
fn secs(us: u64) -> String {
    format!("{}.{:03}", us / 1_000_000, (us / 1000) % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(index: u32, ms: u32, key: bool, disc: bool) -> Segment {
        Segment {
            index,
            duration_us: ms * 1000,
            keyframe: key,
            discontinuity: disc,
        }
    }

    /// A stream of 0.5 s pieces with a keyframe every other piece, from `from`.
    fn feed(s: &mut Segmenter, from: u32, n: u32) {
        for i in from..from + n {
            s.push(
                piece(i, 500, i % 2 == 0, false),
                1_700_000_000_000_000 + u64::from(i) * 500_000,
            );
        }
    }

    #[test]
    fn segments_start_at_keyframes_and_last_about_two_seconds() {
        let mut s = Segmenter::new(16, 500_000);
        // Starts at the first keyframe piece: 3 is not one.
        s.push(piece(3, 500, false, false), 0);
        assert!(s.segments().is_empty());
        feed(&mut s, 4, 12);
        let firsts: Vec<u32> = s.segments().iter().map(|g| g.first_piece()).collect();
        assert_eq!(firsts, [4, 8, 12]);
        assert!(s.segments().iter().all(|g| g.parts[0].keyframe));
        assert_eq!(s.segments()[0].duration_us(), 2_000_000);
        assert!(s.segments()[1].complete && !s.segments()[2].complete);
        let numbers: Vec<u64> = s.segments().iter().map(|g| g.number).collect();
        assert_eq!(numbers, [1, 2, 3]);
    }

    /// hls.js once reported "Found no media in msn 2" on a viewer that had just joined: pieces
    /// came out of order, a missing one was skipped, and the segment after the gap began with
    /// a piece that is not a keyframe piece (no PAT, PMT or IDR for a reset demuxer). After a
    /// gap, as after a discontinuity, a segment now waits for a keyframe piece.
    #[test]
    fn long_gops_are_split_and_discontinuities_and_gaps_start_segments() {
        let mut s = Segmenter::new(16, 500_000);
        s.push(piece(0, 500, true, false), 0);
        for i in 1..10 {
            s.push(piece(i, 500, false, false), 0);
        }
        assert_eq!(s.segments()[0].parts.len(), 8, "split at 4 s");
        assert!(!s.segments()[1].parts[0].keyframe);
        s.push(piece(10, 500, true, true), 0);
        assert!(s.segments().back().unwrap().discontinuity);
        s.push(piece(11, 500, false, false), 0);
        // A gap (12, 13 skipped): the open segment completes, and the next one waits for a
        // keyframe piece (14 and 15 are not listed) and is tagged.
        s.push(piece(14, 500, false, false), 0);
        let last = s.segments().back().unwrap();
        assert!(
            last.complete && last.first_piece() == 10,
            "a gap closes the segment"
        );
        s.push(piece(15, 500, false, false), 0);
        s.push(piece(16, 500, true, false), 0);
        let last = s.segments().back().unwrap();
        assert!(
            last.discontinuity && last.first_piece() == 16,
            "after a gap, a keyframe"
        );
        s.push(piece(12, 500, true, false), 0);
        assert_eq!(s.next_piece(), Some(17), "older pieces are ignored");
    }

    #[test]
    fn the_playlist_is_low_latency_and_consistent_across_reloads() {
        let mut s = Segmenter::new(4, 500_000);
        feed(&mut s, 0, 15);
        let text = s.render(|g| format!("s{}.ts", g.number), |i| format!("{i}.ts"));
        let want_head = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:4\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n\
            #EXT-X-PART-INF:PART-TARGET=0.500\n#EXT-X-MEDIA-SEQUENCE:1\n\
            #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n#EXTINF:2.000,\ns1.ts\n";
        assert!(text.starts_with(want_head), "{text}");
        assert!(
            text.contains(
                "#EXT-X-PART:DURATION=0.500,URI=\"4.ts\",INDEPENDENT=YES\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"5.ts\"\n"
            ),
            "parts of the newest segments: {text}"
        );
        assert!(
            !text.contains("URI=\"3.ts\""),
            "no parts for older segments: {text}"
        );
        assert!(
            text.ends_with(
                "#EXT-X-PART:DURATION=0.500,URI=\"14.ts\",INDEPENDENT=YES\n\
                 #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"15.ts\"\n"
            ),
            "{text}"
        );
        assert!(s.has(3, None) && s.has(4, Some(2)) && s.has(2, Some(0)));
        assert!(!s.has(4, Some(3)) && !s.has(4, None) && !s.has(5, Some(0)));
        s.push(piece(15, 500, true, true), 0);
        let text = s.render(|g| format!("s{}.ts", g.number), |i| format!("{i}.ts"));
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        // Enough segments that the discontinuity leaves: the sequence counts it.
        feed(&mut s, 16, 20);
        let text = s.render(|g| format!("s{}.ts", g.number), |i| format!("{i}.ts"));
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        assert_eq!(s.segments().len(), 4);
        let stat = s.render_static(|g| format!("s{}.ts", g.number), |i| format!("{i}.ts"));
        assert!(
            stat.contains("#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=1.500\n")
                && stat.contains("#EXT-X-PART:")
                && !stat.contains("PRELOAD-HINT"),
            "{stat}"
        );
        s.forget_before(30);
        assert!(s.segments().iter().all(|g| g.first_piece() >= 30));
    }
}
