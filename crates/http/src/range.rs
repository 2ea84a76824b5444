//! The `Range` request header (RFC 9110 §14) for one representation of known length.
//!
//! Only a single byte range is honoured: `bytes=a-b`, `bytes=a-` and `bytes=-n`. A multi-range
//! request or one that does not parse is answered in full (the RFC lets a server ignore
//! `Range`); a range that starts past the end is unsatisfiable (416).

/// What to send for a request, given its `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole representation.
    Full,
    /// 206 with bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// Decides what to send for a `Range` header value (None: no header) on `len` bytes.
pub fn resolve(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(h) = header else {
        return RangeAnswer::Full;
    };
    let h = h.trim();
    let Some(spec) = h
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("bytes="))
        .and_then(|_| h.get(6..))
    else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix: the last n bytes.
        let Some(n) = parse_num(last) else {
            return RangeAnswer::Full;
        };
        if n == 0 || len == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Partial {
            start: len - n.min(len),
            end: len - 1,
        };
    }
    let Some(start) = parse_num(first) else {
        return RangeAnswer::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match parse_num(last) {
            Some(e) if e >= start => Some(e),
            _ => return RangeAnswer::Full,
        }
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    let end = end.map_or(len - 1, |e| e.min(len - 1));
    RangeAnswer::Partial { start, end }
}

fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(start: u64, end: u64) -> RangeAnswer {
        RangeAnswer::Partial { start, end }
    }

    #[test]
    fn table() {
        let cases: &[(Option<&str>, u64, RangeAnswer)] = &[
            (None, 100, RangeAnswer::Full),
            (Some("bytes=0-9"), 100, p(0, 9)),
            (Some("bytes=10-"), 100, p(10, 99)),
            (Some("bytes=-10"), 100, p(90, 99)),
            (Some("bytes=-1000"), 100, p(0, 99)),
            (Some("bytes=90-1000"), 100, p(90, 99)),
            (Some("BYTES= 5 - 6 "), 100, p(5, 6)),
            (Some("bytes=99-99"), 100, p(99, 99)),
            (Some("bytes=100-"), 100, RangeAnswer::Unsatisfiable),
            (Some("bytes=100-200"), 100, RangeAnswer::Unsatisfiable),
            (Some("bytes=-0"), 100, RangeAnswer::Unsatisfiable),
            (Some("bytes=0-"), 0, RangeAnswer::Unsatisfiable),
            (Some("bytes=-5"), 0, RangeAnswer::Unsatisfiable),
            (Some("bytes=0-1,5-6"), 100, RangeAnswer::Full),
            (Some("bytes=9-3"), 100, RangeAnswer::Full),
            (Some("bytes=a-b"), 100, RangeAnswer::Full),
            (Some("bytes=-"), 100, RangeAnswer::Full),
            (Some("bytes=+1-2"), 100, RangeAnswer::Full),
            (Some("items=0-1"), 100, RangeAnswer::Full),
            (Some("bytes"), 100, RangeAnswer::Full),
            (Some("bytes=99999999999999999999999-"), 100, RangeAnswer::Full),
            (Some(""), 100, RangeAnswer::Full),
            (Some("é"), 100, RangeAnswer::Full),
        ];
        for (h, len, want) in cases {
            assert_eq!(resolve(*h, *len), *want, "{h:?} on {len}");
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_stays_in_bounds(h in ".{0,40}", len in 0u64..1_000_000) {
            if let RangeAnswer::Partial { start, end } = resolve(Some(&h), len) {
                prop_assert!(start <= end && end < len);
            }
        }

        #[test]
        fn well_formed_ranges(len in 1u64..1_000_000, a in 0u64..1_000_000, n in 0u64..1_000_000) {
            let b = a.saturating_add(n);
            let got = resolve(Some(&format!("bytes={a}-{b}")), len);
            if a >= len {
                prop_assert_eq!(got, RangeAnswer::Unsatisfiable);
            } else {
                prop_assert_eq!(got, RangeAnswer::Partial { start: a, end: b.min(len - 1) });
            }
        }
    }
}
