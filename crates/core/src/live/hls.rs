//! HLS media playlists of the publisher's plain `live.m3u8` in the CDN layout
//! (`peercdn_engine::live::cdn`; RFC 8216), where a segment is one piece, so segment numbers
//! are piece indices and `#EXT-X-MEDIA-SEQUENCE` is the first listed index. (The engine's own
//! `/ace/manifest.m3u8` groups pieces into keyframe segments with low-latency parts: see
//! [`super::llhls`].)
//!
//! [`SlidingPlaylist`]: a file rewritten as pieces come, read by any player at any time; it
//! lists the newest contiguous run of at most a media duration, keeps an honest
//! `#EXT-X-DISCONTINUITY-SEQUENCE` (it remembers what left the head), never lowers
//! `#EXT-X-TARGETDURATION` (RFC 8216 §6.2.1), and tells players where to join with
//! `#EXT-X-START` at a keyframe piece, since its head may start mid-GOP.
//!
//! Both render through [`render`]. Nothing here does I/O or reads a clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::PieceHeader;

/// One piece as a playlist sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The piece index (= the segment's media sequence number).
    pub index: u32,
    /// Media duration, microseconds.
    pub duration_us: u32,
    /// Starts at a keyframe (decodes on its own).
    pub keyframe: bool,
    /// The media timeline is discontinuous before it.
    pub discontinuity: bool,
}

impl Segment {
    /// The segment of a piece; `default_duration_us` stands in for a header without a duration.
    pub fn from_header(h: &PieceHeader, default_duration_us: u32) -> Segment {
        Segment {
            index: h.index,
            duration_us: if h.duration_us == 0 {
                default_duration_us
            } else {
                h.duration_us
            },
            keyframe: h.is_keyframe(),
            discontinuity: h.is_discontinuity(),
        }
    }
}

/// How [`render`] writes a playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// `#EXT-X-TARGETDURATION`, seconds: at least the ceiling of every listed duration.
    pub target_s: u64,
    /// `Some(n)`: the playlist tracks `#EXT-X-DISCONTINUITY-SEQUENCE` (written when `n > 0`), so
    /// the first segment's discontinuity tag is written too (it leaves the playlist with its
    /// segment, when the sequence counts it). `None`: no sequence and no tag before the first
    /// segment.
    pub discontinuity_sequence: Option<u64>,
    /// Write `#EXT-X-START` at a keyframe segment (see [`start_offset_us`]).
    pub start_at_keyframe: bool,
}

/// The smallest target duration for `segments`, seconds (at least 1).
pub fn target_duration_s(segments: &[Segment]) -> u64 {
    let longest = segments.iter().map(|s| s.duration_us).max().unwrap_or(0);
    u64::from(longest).div_ceil(1_000_000).max(1)
}

/// Where a player should join (RFC 8216 `EXT-X-START`), as media time before the end of the
/// playlist: the start of the newest keyframe segment at least `min_back_us` from the end (the
/// RFC's three target durations), else of the oldest listed keyframe segment. `None` without
/// keyframe segments. Players that start anywhere else may begin mid-GOP.
pub fn start_offset_us(listed: &[Segment], min_back_us: u64) -> Option<u64> {
    let mut back = 0u64;
    let mut oldest_key = None;
    for s in listed.iter().rev() {
        back += u64::from(s.duration_us);
        if s.keyframe {
            if back >= min_back_us {
                return Some(back);
            }
            oldest_key = Some(back);
        }
    }
    oldest_key
}

/// The media playlist of `listed`; `url(index)` is a segment's URI.
pub fn render(listed: &[Segment], opts: &RenderOptions, url: impl Fn(u32) -> String) -> String {
    let first = listed.first().map_or(0, |s| s.index);
    let target = opts.target_s.max(1);
    let mut out = String::with_capacity(128 + listed.len() * 48);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n\
         #EXT-X-MEDIA-SEQUENCE:{first}\n"
    );
    if let Some(seq) = opts.discontinuity_sequence.filter(|&s| s > 0) {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{seq}");
    }
    if opts.start_at_keyframe {
        if let Some(back_us) = start_offset_us(listed, target * 3_000_000) {
            // Just inside the keyframe segment; PRECISE=NO plays it from its start.
            let back_us = back_us.saturating_sub(1000);
            let _ = writeln!(
                out,
                "#EXT-X-START:TIME-OFFSET=-{}.{:03},PRECISE=NO",
                back_us / 1_000_000,
                (back_us / 1000) % 1000
            );
        }
    }
    let tag_first = opts.discontinuity_sequence.is_some();
    for (k, s) in listed.iter().enumerate() {
        if s.discontinuity && (k > 0 || tag_first) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let d = s.duration_us;
        let _ = write!(
            out,
            "#EXTINF:{}.{:03},\n{}\n",
            d / 1_000_000,
            (d / 1000) % 1000,
            url(s.index)
        );
    }
    out
}

/// The newest index a playlist lists: the largest `…/INDEX.ts` segment name, or else
/// `MEDIA-SEQUENCE + segments - 1`. Reads any bytes (a CDN's answer) without failing.
pub fn newest_in_playlist(body: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(body);
    let mut media_seq: Option<u32> = None;
    let mut count = 0u32;
    let mut newest: Option<u32> = None;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_seq = v.trim().parse().ok();
        } else if !line.is_empty() && !line.starts_with('#') {
            count = count.saturating_add(1);
            let name = line.split(['?', '#']).next().unwrap_or(line);
            let name = name.rsplit('/').next().unwrap_or(name);
            if let Some(i) = name.strip_suffix(".ts").and_then(|s| s.parse::<u32>().ok()) {
                newest = Some(newest.map_or(i, |n| n.max(i)));
            }
        }
    }
    newest.or_else(|| {
        let last = count.checked_sub(1)?;
        media_seq?.checked_add(last)
    })
}

/// The publisher's playlist: the segments on disk and what earlier renderings said (see the
/// module docs). Holds at most what its owner inserts; the owner removes what
/// [`SlidingPlaylist::expired`] names.
#[derive(Clone, Debug)]
pub struct SlidingPlaylist {
    segments: BTreeMap<u32, Segment>,
    /// Media duration listed (the newest segments).
    max_us: u64,
    /// Most segments listed.
    max_segments: usize,
    listed_first: Option<u32>,
    discontinuity_seq: u64,
    /// `EXT-X-TARGETDURATION`, seconds: never lowered (RFC 8216 §6.2.1 forbids changing it; it
    /// is raised only when a longer piece comes, as a live source cannot know in advance).
    target_s: u64,
}

impl SlidingPlaylist {
    /// An empty playlist listing about `max_us` of media, at most `max_segments` segments.
    pub fn new(max_us: u64, max_segments: usize) -> SlidingPlaylist {
        SlidingPlaylist {
            segments: BTreeMap::new(),
            max_us: max_us.max(1),
            max_segments: max_segments.max(1),
            listed_first: None,
            discontinuity_seq: 0,
            target_s: 1,
        }
    }

    /// Adds a segment (replacing one with the same index).
    pub fn insert(&mut self, s: Segment) {
        self.segments.insert(s.index, s);
    }

    /// Forgets a segment.
    pub fn remove(&mut self, index: u32) {
        self.segments.remove(&index);
    }

    /// True when segment `index` is held.
    pub fn contains(&self, index: u32) -> bool {
        self.segments.contains_key(&index)
    }

    /// The newest held index.
    pub fn newest(&self) -> Option<u32> {
        self.segments.last_key_value().map(|(&i, _)| i)
    }

    /// Segments held.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// True when no segment is held.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The newest contiguous run of segments, at most `max_us` long (at least one).
    pub fn listed(&self) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        let mut total = 0u64;
        for s in self.segments.values().rev() {
            if let Some(prev) = out.last() {
                if s.index.checked_add(1) != Some(prev.index)
                    || total >= self.max_us
                    || out.len() >= self.max_segments
                {
                    break;
                }
            }
            total += u64::from(s.duration_us);
            out.push(*s);
        }
        out.reverse();
        out
    }

    /// The playlist text now; `url(index)` is a segment's URI. Counts the discontinuities that
    /// left the head since the last rendering (RFC 8216 §6.2.2) and raises the target duration
    /// when a longer segment is listed.
    pub fn render(&mut self, url: impl Fn(u32) -> String) -> String {
        let listed = self.listed();
        let first = listed.first().map_or(0, |s| s.index);
        if let Some(prev) = self.listed_first {
            if first > prev {
                let dropped = self
                    .segments
                    .range(prev..first)
                    .filter(|(_, s)| s.discontinuity)
                    .count();
                self.discontinuity_seq += dropped as u64;
            }
        }
        self.listed_first = Some(first);
        self.target_s = self.target_s.max(target_duration_s(&listed));
        let opts = RenderOptions {
            target_s: self.target_s,
            discontinuity_sequence: Some(self.discontinuity_seq),
            start_at_keyframe: true,
        };
        render(&listed, &opts, url)
    }

    /// Segments to delete: beyond `keep_us` of media behind the newest, or beyond `max_kept`
    /// segments, and never one the last rendering listed.
    pub fn expired(&self, keep_us: u64, max_kept: usize) -> Vec<u32> {
        let listed_first = self.listed_first.unwrap_or(0);
        let mut total = 0u64;
        let mut out = Vec::new();
        for (n, (&i, s)) in self.segments.iter().rev().enumerate() {
            if i < listed_first && (total >= keep_us || n >= max_kept) {
                out.push(i);
            }
            total += u64::from(s.duration_us);
        }
        out
    }

    /// The discontinuity sequence of the last rendering.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(index: u32, ms: u32, disc: bool) -> Segment {
        Segment {
            index,
            duration_us: ms * 1000,
            keyframe: false,
            discontinuity: disc,
        }
    }

    fn key(index: u32, ms: u32) -> Segment {
        Segment {
            keyframe: true,
            ..seg(index, ms, false)
        }
    }

    fn sliding() -> RenderOptions {
        RenderOptions {
            target_s: 1,
            discontinuity_sequence: Some(0),
            start_at_keyframe: true,
        }
    }

    fn indices(s: &[Segment]) -> Vec<u32> {
        s.iter().map(|s| s.index).collect()
    }

    #[test]
    fn players_are_told_to_start_at_a_keyframe() {
        // 500 ms pieces, a keyframe every other one; target 1 s, so at least 3 s back.
        let listed: Vec<Segment> = (0..12)
            .map(|i| {
                if i % 2 == 0 {
                    key(i, 500)
                } else {
                    seg(i, 500, false)
                }
            })
            .collect();
        // From the end: piece 6 starts 3.0 s back.
        assert_eq!(start_offset_us(&listed, 3_000_000), Some(3_000_000));
        let text = render(&listed, &sliding(), |i| format!("seg/{i}.ts"));
        assert!(text.contains("#EXT-X-START:TIME-OFFSET=-2.999,PRECISE=NO\n"));
        // Too short a playlist: the oldest keyframe.
        assert_eq!(start_offset_us(&listed[8..], 3_000_000), Some(2_000_000));
        assert_eq!(start_offset_us(&[seg(1, 500, false)], 3_000_000), None);
    }

    #[test]
    fn a_sliding_playlist_is_well_formed() {
        let opts = RenderOptions {
            target_s: 2,
            discontinuity_sequence: Some(2),
            start_at_keyframe: true,
        };
        let listed = [seg(7, 500, false), seg(8, 1234, true), seg(9, 480, false)];
        let text = render(&listed, &opts, |i| format!("seg/{i}.ts"));
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:2\n\
             #EXTINF:0.500,\nseg/7.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.234,\nseg/8.ts\n\
             #EXTINF:0.480,\nseg/9.ts\n"
        );
        assert_eq!(newest_in_playlist(text.as_bytes()), Some(9));
        // A discontinuity on the first segment is tagged too: the sequence counts it only
        // once it leaves.
        let text = render(&[seg(8, 500, true)], &opts, |i| i.to_string());
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXTINF"));
    }

    #[test]
    fn a_keyframe_playlist_skips_the_first_discontinuity_and_has_no_sequence() {
        let segs = [
            Segment {
                keyframe: true,
                ..seg(7, 500, true)
            },
            seg(8, 1200, false),
            Segment {
                keyframe: true,
                ..seg(9, 400, true)
            },
        ];
        let opts = RenderOptions {
            target_s: target_duration_s(&segs),
            discontinuity_sequence: None,
            start_at_keyframe: false,
        };
        let text = render(&segs, &opts, |i| format!("/s/{i}.ts"));
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXTINF:0.500,\n/s/7.ts\n#EXTINF:1.200,\n/s/8.ts\n\
             #EXT-X-DISCONTINUITY\n#EXTINF:0.400,\n/s/9.ts\n"
        );
        assert_eq!(target_duration_s(&[]), 1);
    }

    #[test]
    fn a_header_without_duration_gets_the_default() {
        let h = PieceHeader {
            index: 9,
            timestamp_us: 0,
            duration_us: 0,
            flags: super::super::FLAG_KEYFRAME,
            length: 0,
            root: [0; 32],
            signature: [0; 64],
        };
        assert_eq!(
            Segment::from_header(&h, 400_000),
            Segment {
                index: 9,
                duration_us: 400_000,
                keyframe: true,
                discontinuity: false
            }
        );
    }

    #[test]
    fn newest_from_media_sequence_when_names_are_foreign() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:40\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n";
        assert_eq!(newest_in_playlist(text.as_bytes()), Some(41));
        assert_eq!(newest_in_playlist(b"#EXTM3U\n"), None);
        assert_eq!(newest_in_playlist(&[0xff, 0xfe, b'\n']), None);
    }

    #[test]
    fn lists_the_newest_contiguous_run_and_expires_behind_it() {
        let mut pl = SlidingPlaylist::new(1_500_000, 1000);
        for i in (0..10).chain(12..20) {
            pl.insert(seg(i, 500, i == 16));
        }
        assert_eq!(indices(&pl.listed()), vec![17, 18, 19]);
        pl.listed_first = Some(14);
        let text = pl.render(|i| format!("seg/{i}.ts"));
        assert_eq!(pl.discontinuity_sequence(), 1, "16 left the head");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
        // Keep 3 s = 6 pieces from the newest: 19..=14 stay, the rest goes.
        let mut exp = pl.expired(3_000_000, 1000);
        exp.sort_unstable();
        assert_eq!(exp, (0..10).chain(12..14).collect::<Vec<_>>());
    }

    #[test]
    fn the_target_duration_is_never_lowered() {
        let mut pl = SlidingPlaylist::new(10_000_000, 1000);
        pl.insert(seg(0, 2500, false));
        assert!(pl.render(|i| i.to_string()).contains("TARGETDURATION:3\n"));
        for i in 1..40 {
            pl.insert(seg(i, 500, false));
        }
        let text = pl.render(|i| i.to_string());
        assert!(!text.contains("\n0\n"), "segment 0 left the playlist");
        assert!(text.contains("TARGETDURATION:3\n"));
    }

    proptest::proptest! {
        #[test]
        fn playlist_parser_takes_garbage(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = newest_in_playlist(&body);
        }

        #[test]
        fn rendered_playlists_give_their_newest(first in 0u32..u32::MAX - 64, n in 1usize..40,
                                                 ms in proptest::collection::vec(1u32..3000, 40)) {
            let listed: Vec<Segment> = (0..n)
                .map(|k| seg(first + k as u32, ms[k], k % 7 == 3))
                .collect();
            let opts = RenderOptions { target_s: 3, discontinuity_sequence: Some(0), start_at_keyframe: true };
            let text = render(&listed, &opts, |i| format!("seg/{i}.ts"));
            proptest::prop_assert_eq!(newest_in_playlist(text.as_bytes()), Some(first + n as u32 - 1));
        }
    }
}
