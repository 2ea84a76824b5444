//! Random access detection in video elementary streams: a scanner that finds `00 00 01` start
//! codes across packet boundaries and classifies the unit after each (H.264 IDR/SPS, H.265
//! IRAP/VPS, MPEG-2 sequence header). Knows nothing of packets or PES framing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    H264,
    H265,
    Mpeg2,
    Other,
}

impl Codec {
    pub(super) fn from_stream_type(t: u8) -> Codec {
        match t {
            0x1B => Codec::H264,
            0x24 => Codec::H265,
            0x01 | 0x02 => Codec::Mpeg2,
            _ => Codec::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    Key,
    NotKey,
    Unknown,
}

/// Finds `00 00 01` start codes across packet boundaries and classifies the unit that follows.
#[derive(Debug)]
pub(super) struct NalScanner {
    pub(super) codec: Codec,
    pub(super) zeros: u8,
    pub(super) after_start: bool,
}

impl NalScanner {
    pub(super) fn new(codec: Codec) -> Self {
        NalScanner {
            codec,
            zeros: 0,
            after_start: false,
        }
    }

    pub(super) fn scan(&mut self, data: &[u8]) -> Scan {
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

    pub(super) fn classify(&self, b: u8) -> Scan {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::testmux::*;
    use crate::ts::*;

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
    fn start_codes_split_across_packets_are_found() {
        // H.264: 00 00 | 01 65 (IDR slice) in two calls.
        let mut s = NalScanner::new(Codec::H264);
        assert_eq!(s.scan(&[0x88, 0, 0]), Scan::Unknown);
        assert_eq!(s.scan(&[1, 0x65, 0x88]), Scan::Key);
        // An access unit delimiter (9) decides nothing; a non-IDR slice (1) does.
        let mut s = NalScanner::new(Codec::H264);
        assert_eq!(s.scan(&[0, 0, 1, 0x09, 0xF0]), Scan::Unknown);
        assert_eq!(s.scan(&[0, 0, 1, 0x41]), Scan::NotKey);
        // H.265 CRA (21) and MPEG-2 sequence header.
        assert_eq!(
            NalScanner::new(Codec::H265).scan(&[0, 0, 1, 21 << 1, 1]),
            Scan::Key
        );
        assert_eq!(
            NalScanner::new(Codec::Mpeg2).scan(&[0, 0, 1, 0xB3]),
            Scan::Key
        );
        // Unknown codecs never say keyframe from the payload.
        assert_eq!(
            NalScanner::new(Codec::from_stream_type(0x10)).scan(&[0, 0, 1, 0x65]),
            Scan::NotKey
        );
    }
}
