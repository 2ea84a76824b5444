//! Rates and sizes as people write them: `"500 KiB/s"`, `"8Mbit"`, `"100kbps"`, `"4MiB"`.
//!
//! This module owns the parsing of user-written quantities (CLI flags, config files) and their
//! display. It knows nothing of where the numbers go.
//!
//! # The rule
//!
//! A quantity is a decimal number (`"1.5"`, at most 9 fractional digits), optional spaces, then an
//! optional unit, matched without regard to case except for one letter:
//!
//! - Prefixes: `k`, `M`, `G`, `T` are decimal (10³, 10⁶, …); `Ki`, `Mi`, `Gi`, `Ti` are binary
//!   (2¹⁰, 2²⁰, …). Case of the prefix letter does not matter (`"kb"` = `"Kb"`).
//! - Base: `B`, `byte`, `bytes` mean bytes; `bit`, `bits` mean bits (any case). **A lone `b` is
//!   case-sensitive: upper-case `B` means bytes, lower-case `b` means bits** — so `"MB"` is
//!   megabytes while `"Mb"`, `"mbit"` and `"mbps"` are megabits. A prefix with no base (`"500K"`)
//!   means bytes.
//! - Rates may end in `/s`, `ps` (`"kbps"`, `"MBps"`) or `/sec`; a bare number is bytes per second.
//!   Bits are divided by 8 and rounded up, so a non-zero rate never becomes 0 ("unlimited").
//! - `"0"`, `"unlimited"`, `"none"`, `"off"` and `"inf"` mean a rate of 0, which callers read as
//!   "no limit".
//! - Sizes take the same units, but bits are refused (a size in bits is almost always a typo).
//!
//! Display uses binary units with one decimal: `format_bytes(1_572_864) == "1.5 MiB"`.

/// Why a string is not a rate or a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Nothing to parse.
    #[error("empty quantity")]
    Empty,
    /// The number part is missing or malformed.
    #[error("{0:?} does not start with a number (like \"500KiB\" or \"1.5 MiB/s\")")]
    BadNumber(String),
    /// The unit is not one we know.
    #[error("unknown unit {unit:?} in {input:?} (try B, KiB, MiB, GiB, kB, MB, kbit, Mbit, …)")]
    BadUnit {
        /// The whole input.
        input: String,
        /// The part we did not understand.
        unit: String,
    },
    /// A size was written in bits.
    #[error("{0:?} is in bits; sizes are in bytes (write \"B\", e.g. \"16KiB\")")]
    BitsInSize(String),
    /// The value does not fit in 64 bits.
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses a rate into bytes per second; 0 means "no limit".
///
/// Accepts `"500KiB"`, `"500 KiB/s"`, `"2MB/s"`, `"8mbit"`, `"8Mbit/s"`, `"100kbps"`,
/// `"1.5MiB"`, `"0"`, `"unlimited"`, `"none"` and bare numbers (bytes per second). See the module
/// docs for the rule on `B` versus `b`.
pub fn parse_rate(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(UnitError::Empty);
    }
    if ["unlimited", "none", "off", "inf"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
    {
        return Ok(0);
    }
    let (num, unit) = split_number(t)?;
    let unit = strip_per_second(unit);
    let (mult, bits) = parse_unit(unit).ok_or_else(|| bad_unit(t, unit))?;
    let value = num
        .times(mult)
        .ok_or_else(|| UnitError::Overflow(t.to_string()))?;
    if !bits {
        return Ok(value);
    }
    // Round up so that "1bit" is 1 B/s, not 0 (which would mean unlimited).
    Ok(value.div_ceil(8))
}

/// Parses a size in bytes: `"16KiB"`, `"4MiB"`, `"1GB"`, `"1.5 GiB"` or a bare number of bytes.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(UnitError::Empty);
    }
    let (num, unit) = split_number(t)?;
    let (mult, bits) = parse_unit(unit).ok_or_else(|| bad_unit(t, unit))?;
    if bits {
        return Err(UnitError::BitsInSize(t.to_string()));
    }
    num.times(mult)
        .ok_or_else(|| UnitError::Overflow(t.to_string()))
}

/// Formats a byte count with binary units and one decimal: `"512 B"`, `"1.5 MiB"`, `"2.0 GiB"`.
pub fn format_bytes(n: u64) -> String {
    scaled(n as f64, "")
}

/// Formats a rate in bytes per second: `"12.3 MiB/s"`. Negative or non-finite input shows as
/// `"0 B/s"`.
pub fn format_rate(bps: f64) -> String {
    let v = if bps.is_finite() && bps > 0.0 {
        bps
    } else {
        0.0
    };
    scaled(v, "/s")
}

// ---------------------------------------------------------------------------------------------

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

fn scaled(mut v: f64, suffix: &str) -> String {
    if v < 1024.0 {
        return format!("{} B{suffix}", v.round() as u64);
    }
    let mut i = 0;
    // Stop one step early if rounding to one decimal would print "1024.0".
    while v >= 1023.95 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    let unit = UNITS.get(i).copied().unwrap_or("EiB");
    format!("{v:.1} {unit}{suffix}")
}

fn bad_unit(input: &str, unit: &str) -> UnitError {
    UnitError::BadUnit {
        input: input.to_string(),
        unit: unit.to_string(),
    }
}

/// A non-negative decimal kept exact: `int + frac / 10^frac_digits`.
struct Decimal {
    int: u64,
    frac: u64,
    frac_digits: u32,
}

impl Decimal {
    /// `self × mult`, truncated to an integer; None on overflow.
    fn times(&self, mult: u64) -> Option<u64> {
        let whole = (self.int as u128).checked_mul(mult as u128)?;
        let frac = (self.frac as u128) * (mult as u128) / 10u128.pow(self.frac_digits);
        u64::try_from(whole.checked_add(frac)?).ok()
    }
}

const MAX_FRAC_DIGITS: u32 = 9;

/// Splits `"1.5 MiB/s"` into the number 1.5 and the unit `"MiB/s"` (spaces trimmed).
fn split_number(t: &str) -> Result<(Decimal, &str), UnitError> {
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, rest) = t.split_at(end);
    let bad = || UnitError::BadNumber(t.to_string());
    let (int_s, frac_s) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int_s.is_empty() && frac_s.is_empty() {
        return Err(bad());
    }
    if frac_s.contains('.') || frac_s.len() > MAX_FRAC_DIGITS as usize {
        return Err(bad());
    }
    let int = if int_s.is_empty() {
        0
    } else {
        int_s
            .parse::<u64>()
            .map_err(|_| UnitError::Overflow(t.to_string()))?
    };
    let frac = if frac_s.is_empty() {
        0
    } else {
        frac_s.parse::<u64>().map_err(|_| bad())?
    };
    let d = Decimal {
        int,
        frac,
        frac_digits: frac_s.len() as u32,
    };
    Ok((d, rest.trim()))
}

/// Removes a per-second suffix: `/s`, `/sec`, or the `ps` of `kbps` / `MBps`.
fn strip_per_second(unit: &str) -> &str {
    let lower_ends = |suf: &str| {
        unit.len() >= suf.len()
            && unit
                .get(unit.len() - suf.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(suf))
    };
    for suf in ["/sec", "/s"] {
        if lower_ends(suf) {
            return unit
                .get(..unit.len() - suf.len())
                .unwrap_or(unit)
                .trim_end();
        }
    }
    // "ps" only after a base letter ("bps", "Bps"); "kps" alone is not a unit we guess at.
    if lower_ends("ps") && unit.len() >= 3 {
        let base = unit.get(..unit.len() - 2).unwrap_or(unit);
        if base.ends_with(['b', 'B']) {
            return base;
        }
    }
    unit
}

/// Parses a unit (no per-second suffix) into (multiplier, is_bits).
fn parse_unit(unit: &str) -> Option<(u64, bool)> {
    if unit.is_empty() {
        return Some((1, false));
    }
    let (scale, rest) = split_prefix(unit);
    let bits = if rest.is_empty() {
        // "500K": a prefix alone means bytes; "" was handled above.
        false
    } else if rest == "B"
        || ["byte", "bytes"]
            .iter()
            .any(|w| rest.eq_ignore_ascii_case(w))
    {
        false
    } else if rest == "b" || ["bit", "bits"].iter().any(|w| rest.eq_ignore_ascii_case(w)) {
        true
    } else {
        return None;
    };
    Some((scale, bits))
}

/// Splits a leading SI or IEC prefix off a unit; returns (scale, rest).
fn split_prefix(unit: &str) -> (u64, &str) {
    let mut chars = unit.chars();
    let Some(first) = chars.next() else {
        return (1, unit);
    };
    let exp = match first.to_ascii_lowercase() {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        _ => return (1, unit),
    };
    let after = chars.as_str();
    // An "i" right after the prefix makes it binary: "KiB", "Mibit".
    if let Some(rest) = after.strip_prefix(['i', 'I']) {
        return (1024u64.pow(exp), rest);
    }
    (1000u64.pow(exp), after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u64 = 1024;
    const MI: u64 = 1024 * 1024;

    #[test]
    fn rates() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("unlimited", 0),
            ("None", 0),
            ("off", 0),
            ("1000", 1000),
            ("  1000  ", 1000),
            ("500KiB", 500 * KI),
            ("500 KiB/s", 500 * KI),
            ("500kiB/s", 500 * KI),
            ("500kib/s", 64_000), // lower-case b: kibibits
            ("2MB", 2_000_000),
            ("2MB/s", 2_000_000),
            ("2 mB/s", 2_000_000),
            ("2MBps", 2_000_000),
            ("8mbit", 1_000_000),
            ("8Mbit/s", 1_000_000),
            ("8 Mbits/s", 1_000_000),
            ("8Mb", 1_000_000),
            ("8mbps", 1_000_000),
            ("8Mbps", 1_000_000),
            ("100kbps", 12_500),
            ("100kb/s", 12_500),
            ("100kB/s", 100_000),
            ("1.5MiB", 3 * MI / 2),
            ("1.5 MiB/s", 3 * MI / 2),
            (".5KiB", 512),
            ("1GiB/sec", 1024 * MI),
            ("1 byte/s", 1),
            ("3 bytes", 3),
            ("1bit", 1), // rounded up, never 0 (= unlimited)
            ("9bit/s", 2),
            ("500K", 500_000),
            ("1Mibit", MI / 8),
            ("0KiB", 0),
        ];
        for &(input, want) in table {
            assert_eq!(parse_rate(input), Ok(want), "parse_rate({input:?})");
        }
    }

    #[test]
    fn bad_rates() {
        for input in [
            "",
            "  ",
            "fast",
            "-1",
            "1.2.3",
            "5 parsecs",
            "5 kps",
            "KiB",
            ".",
            "1.0000000001",
        ] {
            assert!(
                parse_rate(input).is_err(),
                "parse_rate({input:?}) should fail"
            );
        }
        assert!(matches!(
            parse_rate("99999999999999999999"),
            Err(UnitError::Overflow(_))
        ));
        assert!(matches!(
            parse_rate("20000000TiB"),
            Err(UnitError::Overflow(_))
        ));
    }

    #[test]
    fn sizes() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("16384", 16384),
            ("16KiB", 16 * KI),
            ("16 KIB", 16 * KI),
            ("4MiB", 4 * MI),
            ("1GB", 1_000_000_000),
            ("1.5 GiB", 3 * 512 * MI),
            ("2 TiB", 2 * 1024 * 1024 * MI),
            ("10 bytes", 10),
        ];
        for &(input, want) in table {
            assert_eq!(parse_size(input), Ok(want), "parse_size({input:?})");
        }
        assert!(matches!(parse_size("16Kb"), Err(UnitError::BitsInSize(_))));
        assert!(matches!(
            parse_size("16 kib"),
            Err(UnitError::BitsInSize(_))
        ));
        assert!(matches!(
            parse_size("4MiB/s"),
            Err(UnitError::BadUnit { .. })
        ));
        assert!(matches!(
            parse_size("unlimited"),
            Err(UnitError::BadNumber(_))
        ));
        assert_eq!(parse_size(""), Err(UnitError::Empty));
    }

    #[test]
    fn formatting() {
        let table: &[(u64, &str)] = &[
            (0, "0 B"),
            (512, "512 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (3 * MI / 2, "1.5 MiB"),
            (MI - 1, "1.0 MiB"),
            (5 * 1024 * MI, "5.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for &(n, want) in table {
            assert_eq!(format_bytes(n), want, "format_bytes({n})");
        }
        assert_eq!(format_rate(12.3 * MI as f64), "12.3 MiB/s");
        assert_eq!(format_rate(100.4), "100 B/s");
        assert_eq!(format_rate(-5.0), "0 B/s");
        assert_eq!(format_rate(f64::NAN), "0 B/s");
        assert_eq!(format_rate(f64::INFINITY), "0 B/s");
    }

    #[test]
    fn format_then_parse_is_close() {
        for n in [1u64, 999, 4096, 123_456_789, 9_876_543_210_123] {
            let back = parse_size(&format_bytes(n)).unwrap();
            let err = (back as f64 - n as f64).abs() / n as f64;
            assert!(err < 0.05, "{n} -> {} -> {back}", format_bytes(n));
        }
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(s in "\\PC{0,24}") {
            let _ = parse_rate(&s);
            let _ = parse_size(&s);
        }

        #[test]
        fn bytes_round_trip(n in 0u64..(1 << 40)) {
            proptest::prop_assert_eq!(parse_size(&n.to_string()), Ok(n));
            proptest::prop_assert_eq!(parse_rate(&format!("{n} B/s")), Ok(n));
            proptest::prop_assert_eq!(parse_rate(&format!("{n}KiB")), Ok(n * 1024));
            proptest::prop_assert_eq!(parse_rate(&format!("{n}kbit/s")), Ok((n * 1000).div_ceil(8)));
        }
    }
}
