//! A ledger export: every entry of the chain and the report made from it, in one JSON file that
//! anyone can check without the broadcaster's database ([`verify`]): the chain hashes, every
//! receipt's signature, the order of each pair's receipts, and the report's figures, rebuilt.
//!
//! Format (`"format": "peercdn-ledger-1"`): `entries` — `{n, at, receipt (base64), hash (hex)}`
//! in order; `report` — what [`super::Ledger::report`] said when it was exported.

use std::collections::BTreeMap;

use peercdn_core::receipt::{Receipt, Uploader};
use peercdn_core::InfoHash;
use serde::{Deserialize, Serialize};

use super::{chain, Entry, Report, Row};

/// The export's format tag.
pub const FORMAT: &str = "peercdn-ledger-1";
/// How often [`replay_with`] reports progress, in entries.
pub const PROGRESS_EVERY: u64 = 1024;

/// A ledger export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Export {
    /// [`FORMAT`].
    pub format: String,
    /// Unix second it was made.
    pub exported_at: u64,
    /// The chain.
    pub entries: Vec<Entry>,
    /// The report as the ledger made it.
    pub report: serde_json::Value,
}

impl Export {
    /// An export of `entries` with the report made from them.
    pub fn new(entries: Vec<Entry>, report: &Report, now: u64) -> Export {
        Export {
            format: FORMAT.to_string(),
            exported_at: now,
            entries,
            report: serde_json::to_value(report).unwrap_or_default(),
        }
    }
}

/// Walks a chain of entries: positions from 1 without gaps, each hash, each receipt's
/// signature and form, and each pair's receipts in increasing `seq` with bytes and watch time
/// never lower. The report rebuilt from the latest receipt of each pair, or where it breaks.
pub fn replay(entries: &[Entry]) -> Result<Report, String> {
    replay_with(entries, |_| {})
}

/// [`replay`], calling `progress` with the number of entries checked so far (every
/// [`PROGRESS_EVERY`] entries and once at the end).
pub fn replay_with(entries: &[Entry], mut progress: impl FnMut(u64)) -> Result<Report, String> {
    let mut head = [0u8; 32];
    let mut latest: BTreeMap<(InfoHash, Uploader, [u8; 32]), Receipt> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let want = i as u64 + 1;
        if e.n != want {
            return Err(format!(
                "entry {want} is missing (found entry {} there)",
                e.n
            ));
        }
        let h = chain(&head, e.n, e.at, &e.receipt);
        if e.hash != h {
            return Err(format!(
                "entry {}: the hash chain breaks here (the entry or one before it was altered)",
                e.n
            ));
        }
        head = h;
        let r = Receipt::decode(&e.receipt)
            .map_err(|err| format!("entry {}: receipt refused: {err}", e.n))?;
        let pair = r.pair();
        if let Some(prev) = latest.get(&pair) {
            if r.seq <= prev.seq || r.bytes < prev.bytes || r.watched_ms < prev.watched_ms {
                return Err(format!(
                    "entry {}: a receipt that does not follow the pair's previous one",
                    e.n
                ));
            }
        }
        latest.insert(pair, r);
        if want.is_multiple_of(PROGRESS_EVERY) {
            progress(want);
        }
    }
    progress(entries.len() as u64);
    let rows: Vec<Row> = latest
        .into_values()
        .map(|r| Row {
            content: r.content,
            from: r.from,
            to: r.to,
            bytes: r.bytes,
            watched_ms: r.watched_ms,
            seq: r.seq,
            delay_ms: r.delay_ms,
        })
        .collect();
    Ok(Report::from_rows(&rows, entries.len() as u64, head))
}

/// Checks an export: the chain (see [`replay`]) and that its report says what the chain does.
pub fn verify(export: &Export) -> Result<Report, String> {
    verify_with(export, |_| {})
}

/// [`verify`], calling `progress` as [`replay_with`] does.
pub fn verify_with(export: &Export, progress: impl FnMut(u64)) -> Result<Report, String> {
    if export.format != FORMAT {
        return Err(format!(
            "not a ledger export (format {:?}, expected {FORMAT:?})",
            export.format
        ));
    }
    let rebuilt = replay_with(&export.entries, progress)?;
    let value = serde_json::to_value(&rebuilt).map_err(|e| e.to_string())?;
    if let Some(diff) = first_difference(&export.report, &value, "report") {
        return Err(format!(
            "the export's report does not match its entries: {diff}"
        ));
    }
    Ok(rebuilt)
}

/// Where `said` first differs from `rebuilt`, as `path: says X, the entries give Y`.
fn first_difference(
    said: &serde_json::Value,
    rebuilt: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    match (said, rebuilt) {
        (Value::Object(a), Value::Object(b)) => {
            // Keys in the rebuilt report's order, then any extra the export has.
            b.iter()
                .find_map(|(k, v)| match a.get(k) {
                    Some(av) => first_difference(av, v, &format!("{path}.{k}")),
                    None => Some(format!("{path}.{k} is missing")),
                })
                .or_else(|| {
                    a.keys()
                        .find(|k| !b.contains_key(*k))
                        .map(|k| format!("{path}.{k} is not part of a report"))
                })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (av, bv))| first_difference(av, bv, &format!("{path}[{i}]"))),
        (Value::Array(a), Value::Array(b)) => Some(format!(
            "{path} has {} lines, the entries give {}",
            a.len(),
            b.len()
        )),
        _ if said == rebuilt => None,
        _ => Some(format!("{path} says {said}, the entries give {rebuilt}")),
    }
}
