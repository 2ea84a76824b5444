//! What HLS playlists of a live stream share: a piece as a playlist sees it ([`Segment`]) and
//! the reading of a published playlist's live edge ([`newest_in_playlist`], for the CDN
//! fallback). How pieces group into keyframe segments and how both playlists (the engine's
//! `/ace/manifest.m3u8` and the publisher's `live.m3u8`) are written is [`super::llhls`].
//! Nothing here does I/O or reads a clock.

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

/// The newest piece index a playlist names: the largest piece index in a segment or part URI
/// (`…/INDEX.ts` for a piece, `…/FIRST-LAST.ts` for a segment of pieces), or else
/// `MEDIA-SEQUENCE + segments - 1` (a playlist whose names say nothing, one piece a segment).
/// Reads any bytes (a CDN's answer) without failing.
pub fn newest_in_playlist(body: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(body);
    let mut media_seq: Option<u32> = None;
    let mut count = 0u32;
    let mut newest: Option<u32> = None;
    let mut see = |uri: &str| {
        let name = uri.split(['?', '#']).next().unwrap_or(uri);
        let name = name.rsplit('/').next().unwrap_or(name);
        let stem = name.strip_suffix(".ts").unwrap_or("");
        let last = stem.rsplit_once('-').map_or(stem, |(_, b)| b);
        if let Ok(i) = last.parse::<u32>() {
            newest = Some(newest.map_or(i, |n| n.max(i)));
        }
    };
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_seq = v.trim().parse().ok();
        } else if line.starts_with("#EXT-X-PART:") {
            if let Some(uri) = line
                .split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                see(uri);
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            count = count.saturating_add(1);
            see(line);
        }
    }
    newest.or_else(|| {
        let last = count.checked_sub(1)?;
        media_seq?.checked_add(last)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_newest_piece_of_a_playlist() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.0,\nseg/40-47.ts\n\
            #EXT-X-PART:DURATION=0.250,URI=\"seg/48.ts\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.250,URI=\"seg/49.ts?x=1\"\n";
        assert_eq!(newest_in_playlist(text.as_bytes()), Some(49));
        let text = "#EXTM3U\n#EXTINF:2.0,\nseg/40-47.ts\n#EXTINF:1,\nhttp://h/seg/48-55.ts\n";
        assert_eq!(newest_in_playlist(text.as_bytes()), Some(55));
        let text = "#EXTM3U\n#EXTINF:1,\nseg/7.ts\n#EXTINF:1,\nseg/9.ts\n";
        assert_eq!(
            newest_in_playlist(text.as_bytes()),
            Some(9),
            "one piece a segment"
        );
    }

    #[test]
    fn newest_from_media_sequence_when_names_are_foreign() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:40\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n";
        assert_eq!(newest_in_playlist(text.as_bytes()), Some(41));
        assert_eq!(newest_in_playlist(b"#EXTM3U\n"), None);
        assert_eq!(newest_in_playlist(&[0xff, 0xfe, b'\n']), None);
    }

    proptest::proptest! {
        #[test]
        fn playlist_parser_takes_garbage(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = newest_in_playlist(&body);
        }
    }
}
