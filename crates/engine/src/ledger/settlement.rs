//! Settlement: what the broadcaster owes each uploader for a [`Report`], at a rate it sets, and
//! the memo that binds a set of payments to the ledger state they were computed from.
//!
//! `peercdn ledger export --stellar` builds its envelopes from [`settle`], and `peercdn ledger
//! verify` calls [`settle`] again to check envelopes, so the two cannot disagree on an amount.
//!
//! Arithmetic is exact integers, no floats: a rate is a decimal amount of XLM per GB (10^9
//! bytes) with at most 7 decimals ([`Rate`], kept in stroops per GB), and an uploader is owed
//! `floor(bytes × stroops per GB / 10^9)` stroops, computed in `u128`. Uploaders owed less than
//! one stroop, and the paying account itself (a broadcaster uploads to its viewers too), get no
//! payment.
//!
//! Memo ([`memo_hash`]): `SHA-256("peercdn-settlement-v1" ‖ head (32 bytes) ‖ entries (u64 BE)
//! ‖ stroops per GB (i64 BE))`. Anyone holding the ledger (or an export of it) at that state
//! and knowing the rate can recompute it, so a payment that carries it says which ledger state
//! and which rate it settles.
//!
//! This module holds no key and touches no network: it computes; [`super::stellar`] encodes
//! and signs.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::stellar::{Payment, STROOPS_PER_XLM};
use super::Report;

/// Domain tag at the start of every memo preimage.
pub const MEMO_DOMAIN: &[u8] = b"peercdn-settlement-v1";
/// Bytes in the GB a rate is quoted per (decimal, as CDNs bill).
pub const BYTES_PER_GB: u64 = 1_000_000_000;
/// Decimals of XLM a rate may have (one stroop is 10^-7 XLM).
pub const RATE_DECIMALS: usize = 7;

/// Why a settlement could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// The rate is not a positive decimal amount of XLM with at most 7 decimals.
    #[error("rate {input:?}: {why}")]
    BadRate {
        /// What was given.
        input: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An uploader is owed more stroops than a Stellar amount (`i64`) holds.
    #[error("uploader {account} is owed more than a Stellar payment can carry ({bytes} bytes at {rate} XLM/GB)")]
    Overflow {
        /// Its account ID.
        account: String,
        /// Bytes it delivered.
        bytes: u64,
        /// The rate.
        rate: Rate,
    },
    /// The report holds a key or head hash that is not 32 bytes of hex.
    #[error("the report's {what} {value:?} is not 64 hex digits")]
    BadReport {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: String,
    },
}

/// A price per GB in stroops: positive. Parsed from decimal XLM (`"0.5"`), displayed the same
/// way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(i64);

impl Rate {
    /// A rate of `stroops` per GB; `None` unless positive.
    pub fn from_stroops_per_gb(stroops: i64) -> Option<Rate> {
        (stroops > 0).then_some(Rate(stroops))
    }

    /// Stroops per GB.
    pub fn stroops_per_gb(self) -> i64 {
        self.0
    }

    /// What `bytes` cost at this rate, in whole stroops (rounded down); `None` when more than
    /// an `i64` holds.
    pub fn owed(self, bytes: u64) -> Option<i64> {
        let stroops = u128::from(bytes) * self.0 as u128 / u128::from(BYTES_PER_GB);
        i64::try_from(stroops).ok()
    }
}

impl FromStr for Rate {
    type Err = SettlementError;

    /// Parses `DIGITS[.DIGITS]` (at most [`RATE_DECIMALS`] decimals, surrounding whitespace
    /// ignored), exactly.
    fn from_str(s: &str) -> Result<Rate, SettlementError> {
        let bad = |why| SettlementError::BadRate {
            input: s.chars().take(40).collect(),
            why,
        };
        let t = s.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (t.contains('.') && frac.is_empty()) {
            return Err(bad("expected a decimal amount of XLM per GB, such as 0.5"));
        }
        if frac.len() > RATE_DECIMALS {
            return Err(bad("more than 7 decimals (one stroop is 0.0000001 XLM)"));
        }
        let scale = 10i64.pow((RATE_DECIMALS - frac.len()) as u32);
        let whole: i64 = int.parse().map_err(|_| bad("too large"))?;
        let part: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad("too large"))?
        };
        let stroops = whole
            .checked_mul(STROOPS_PER_XLM)
            .and_then(|w| w.checked_add(part * scale))
            .ok_or_else(|| bad("too large"))?;
        Rate::from_stroops_per_gb(stroops).ok_or_else(|| bad("must be more than zero"))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_xlm(i128::from(self.0)))
    }
}

/// An amount of stroops as exact decimal XLM without trailing zeros: `"12.5"`, `"0.0000001"`,
/// `"3"`.
pub fn format_xlm(stroops: i128) -> String {
    let per = i128::from(STROOPS_PER_XLM);
    let sign = if stroops < 0 { "-" } else { "" };
    let abs = stroops.unsigned_abs();
    let (whole, frac) = (abs / per as u128, abs % per as u128);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let frac = format!("{frac:07}");
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

/// The memo of a settlement of the ledger state (`head`, `entries`) at `rate` (see the
/// module doc).
pub fn memo_hash(head: &[u8; 32], entries: u64, rate: Rate) -> [u8; 32] {
    Sha256::new()
        .chain_update(MEMO_DOMAIN)
        .chain_update(head)
        .chain_update(entries.to_be_bytes())
        .chain_update(rate.0.to_be_bytes())
        .finalize()
        .into()
}

/// What a report settles to at a rate, paid from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The rate.
    pub rate: Rate,
    /// The memo every transaction of the settlement carries.
    pub memo_hash: [u8; 32],
    /// One payment per uploader owed at least one stroop, in the report's order (by key).
    pub payments: Vec<Payment>,
    /// Uploaders owed less than one stroop (no payment).
    pub below_one_stroop: usize,
    /// Bytes the paying account itself delivered (no payment).
    pub own_bytes: u64,
}

impl Settlement {
    /// All payments together, in stroops.
    pub fn total_stroops(&self) -> i128 {
        self.payments.iter().map(|p| i128::from(p.stroops)).sum()
    }
}

/// Settles `report` at `rate`, paid from `source` (see the module doc).
pub fn settle(
    report: &Report,
    rate: Rate,
    source: &[u8; 32],
) -> Result<Settlement, SettlementError> {
    let head = hex32(&report.head, "head hash")?;
    let mut out = Settlement {
        rate,
        memo_hash: memo_hash(&head, report.entries, rate),
        payments: Vec::with_capacity(report.uploaders.len()),
        below_one_stroop: 0,
        own_bytes: 0,
    };
    for u in &report.uploaders {
        let destination = hex32(&u.key, "uploader key")?;
        if &destination == source {
            out.own_bytes = out.own_bytes.saturating_add(u.bytes);
            continue;
        }
        let stroops = rate
            .owed(u.bytes)
            .ok_or_else(|| SettlementError::Overflow {
                account: u.account.clone(),
                bytes: u.bytes,
                rate,
            })?;
        if stroops == 0 {
            out.below_one_stroop += 1;
            continue;
        }
        out.payments.push(Payment {
            destination,
            stroops,
        });
    }
    Ok(out)
}

fn hex32(s: &str, what: &'static str) -> Result<[u8; 32], SettlementError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| SettlementError::BadReport {
        what,
        value: s.chars().take(80).collect(),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Row;
    use peercdn_core::receipt::Uploader;
    use peercdn_core::InfoHash;

    #[test]
    fn rates_parse_exactly() {
        let ok = |s: &str, stroops: i64| {
            let r: Rate = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(r.stroops_per_gb(), stroops, "{s}");
        };
        ok("0.5", 5_000_000);
        ok(" 1 ", 10_000_000);
        ok("0.0000001", 1);
        ok("12.3456789", 123_456_789);
        ok("0.1", 1_000_000);
        ok("920000000000", 9_200_000_000_000_000_000);
        for bad in [
            "",
            "0",
            "0.0",
            ".5",
            "1.",
            "-1",
            "+1",
            "1e3",
            "0.00000001",
            "1,5",
            "abc",
            "1.2.3",
            "922337203686",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} parsed");
        }
        let r: Rate = "0.25".parse().unwrap();
        assert_eq!(r.to_string(), "0.25");
        assert_eq!(format_xlm(30_000_000), "3");
        assert_eq!(format_xlm(1), "0.0000001");
        assert_eq!(format_xlm(-15_000_000), "-1.5");
    }

    #[test]
    fn amounts_round_down_in_integers() {
        let half: Rate = "0.5".parse().unwrap();
        // 1 GB at 0.5 XLM/GB.
        assert_eq!(half.owed(BYTES_PER_GB), Some(5_000_000));
        // 199 bytes at 5,000,000 stroops/GB is 0.995 stroop: nothing.
        assert_eq!(half.owed(199), Some(0));
        assert_eq!(half.owed(200), Some(1));
        // u64::MAX bytes at 0.5 XLM/GB fit an i64 ...
        assert_eq!(half.owed(u64::MAX), Some(92_233_720_368_547_758));
        // ... but not at a huge rate (u128 inside, no overflow, just None).
        let huge = Rate::from_stroops_per_gb(i64::MAX).unwrap();
        assert_eq!(huge.owed(u64::MAX), None);
        assert!(Rate::from_stroops_per_gb(0).is_none());
    }

    #[test]
    fn memo_is_the_documented_hash() {
        let rate: Rate = "0.5".parse().unwrap();
        let mut pre = b"peercdn-settlement-v1".to_vec();
        pre.extend_from_slice(&[7; 32]);
        pre.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]);
        pre.extend_from_slice(&5_000_000i64.to_be_bytes());
        let want: [u8; 32] = Sha256::digest(&pre).into();
        assert_eq!(memo_hash(&[7; 32], 42, rate), want);
        // Every input is bound in.
        assert_ne!(memo_hash(&[7; 32], 43, rate), want);
        assert_ne!(memo_hash(&[8; 32], 42, rate), want);
        let other = Rate::from_stroops_per_gb(5_000_001).unwrap();
        assert_ne!(memo_hash(&[7; 32], 42, other), want);
    }

    #[test]
    fn the_source_and_dust_are_not_paid() {
        let row = |from: u8, bytes: u64| Row {
            content: InfoHash([1; 20]),
            from: Uploader::Peer([from; 32]),
            to: [9; 32],
            bytes,
            watched_ms: 1_000,
            seq: 1,
            delay_ms: None,
        };
        let cdn = Row {
            from: Uploader::Cdn("cdn.example".into()),
            ..row(0, 5 * BYTES_PER_GB)
        };
        let rows = [
            row(1, 3 * BYTES_PER_GB),
            row(2, 100),
            row(3, 2 * BYTES_PER_GB + 1),
            cdn,
        ];
        let report = Report::from_rows(&rows, 4, [5; 32]);
        let rate: Rate = "0.5".parse().unwrap();
        let s = settle(&report, rate, &[1; 32]).unwrap();
        assert_eq!(
            s.payments,
            vec![Payment {
                destination: [3; 32],
                stroops: 10_000_000,
            }]
        );
        assert_eq!((s.below_one_stroop, s.own_bytes), (1, 3 * BYTES_PER_GB));
        assert_eq!(s.total_stroops(), 10_000_000);
        assert_eq!(s.memo_hash, memo_hash(&[5; 32], 4, rate));
        let mut broken = report;
        broken.head = "zz".into();
        assert!(matches!(
            settle(&broken, rate, &[1; 32]),
            Err(SettlementError::BadReport { .. })
        ));
    }
}
