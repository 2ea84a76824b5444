use ed25519_dalek::SigningKey;
use peercdn_core::receipt::{Claim, Receipt, Uploader};
use peercdn_core::InfoHash;

use super::export::{self, Export};
use super::*;

const NOW: u64 = 1_796_000_000;
const CONTENT: InfoHash = InfoHash([3; 20]);
/// 2 Mbit/s.
const RATE: u64 = 250_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn receipt(viewer: u8, from: Uploader, bytes: u64, watched_ms: u64, seq: u64) -> Receipt {
    let claim = Claim {
        content: CONTENT,
        from,
        bytes,
        watched_ms,
        delay_ms: None,
        seq,
        time: NOW,
    };
    Receipt::sign(&key(viewer), claim).unwrap()
}

fn peer(n: u8) -> Uploader {
    Uploader::Peer(key(n).verifying_key().to_bytes())
}

fn ledger(dir: &tempfile::TempDir) -> Ledger {
    let mut l = Ledger::open(dir.path()).unwrap();
    l.collect(CONTENT, Collecting::live(RATE));
    l
}

#[test]
fn the_latest_receipt_of_each_pair_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = ledger(&dir);
    let cdn = Uploader::Cdn("127.0.0.1:8080".into());
    let got = l
        .append(
            &[
                receipt(1, peer(9), 1_000_000, 10_000, 1),
                receipt(1, peer(9), 3_000_000, 20_000, 2),
                receipt(1, cdn.clone(), 500_000, 20_000, 2),
                receipt(2, peer(9), 2_000_000, 15_000, 5),
                receipt(2, peer(1), 1_000_000, 15_000, 5),
            ],
            NOW,
        )
        .unwrap();
    assert!(got.iter().all(|v| *v == Ok(Taken::New)), "{got:?}");
    let r = l.report().unwrap();
    assert_eq!(r.entries, 5);
    assert_eq!(r.totals.p2p_bytes, 6_000_000);
    assert_eq!(r.totals.cdn_bytes, 500_000);
    assert_eq!(r.totals.watched_ms, 35_000);
    assert_eq!(r.totals.viewers, 2);
    let k9 = hex::encode(key(9).verifying_key().to_bytes());
    let u9 = r.uploaders.iter().find(|u| u.key == k9).unwrap();
    assert_eq!((u9.bytes, u9.viewers), (5_000_000, 2));
    assert!(u9.account.starts_with('G'));
    assert_eq!(r.cdn_hosts[0].host, "127.0.0.1:8080");
    assert_eq!(r.contents[0].viewers, 2);
    // It survives a reopen, chain head and all, and verifies.
    let head = l.head();
    drop(l);
    let l = ledger(&dir);
    assert_eq!(l.head(), head);
    assert_eq!(l.verify().unwrap(), r);
}

#[test]
fn replayed_lowered_future_inflated_and_unknown_receipts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = ledger(&dir);
    let first = receipt(1, peer(9), 1_000_000, 10_000, 7);
    assert_eq!(
        l.append(std::slice::from_ref(&first), NOW).unwrap(),
        vec![Ok(Taken::New)]
    );
    let future = Receipt::sign(
        &key(1),
        Claim {
            content: CONTENT,
            from: peer(8),
            bytes: 1,
            watched_ms: 1,
            delay_ms: None,
            seq: 1,
            time: NOW + 3600,
        },
    )
    .unwrap();
    let other = Receipt::sign(
        &key(1),
        Claim {
            content: InfoHash([4; 20]),
            from: peer(9),
            bytes: 1,
            watched_ms: 1,
            delay_ms: None,
            seq: 1,
            time: NOW,
        },
    )
    .unwrap();
    // 10 s watched + 60 s slack at 250 kB/s × 1.5 allows 26.25 MB over all uploaders.
    let allowed = cap(RATE, 10_000);
    assert_eq!(allowed, 26_250_000);
    let got = l
        .append(
            &[
                first.clone(),
                receipt(1, peer(9), 1_000_000, 10_000, 6),
                receipt(1, peer(9), 900_000, 10_000, 8),
                receipt(1, peer(9), 1_000_000, 9_000, 8),
                future,
                other,
                receipt(1, peer(8), allowed, 10_000, 8),
                receipt(1, peer(8), allowed - 1_000_000, 10_000, 9),
            ],
            NOW,
        )
        .unwrap();
    assert_eq!(
        got,
        vec![
            Ok(Taken::Duplicate),
            Err(Refusal::Replayed),
            Err(Refusal::NonMonotonic),
            Err(Refusal::NonMonotonic),
            Err(Refusal::Future),
            Err(Refusal::UnknownContent),
            Err(Refusal::Inflated),
            Ok(Taken::New),
        ]
    );
    assert_eq!(l.entries(), 2);
}

/// A row altered behind the ledger's back (an operator's `UPDATE`) is found by the chain.
#[test]
fn a_tampered_ledger_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = ledger(&dir);
    l.append(
        &[
            receipt(1, peer(9), 1_000_000, 10_000, 1),
            receipt(2, peer(9), 1_000_000, 10_000, 1),
        ],
        NOW,
    )
    .unwrap();
    l.verify().unwrap();
    // Swap in another valid receipt (more bytes for the same pair) at entry 1.
    let bigger = receipt(1, peer(9), 2_000_000, 10_000, 1).encode();
    l.db.execute(
        "UPDATE entries SET receipt = ?1 WHERE n = 1",
        rusqlite::params![bigger],
    )
    .unwrap();
    let err = l.verify().unwrap_err().to_string();
    assert!(err.contains("entry 1: the hash chain breaks"), "{err}");
    // Removing the last entry leaves the table of latest receipts disagreeing.
    let dir = tempfile::tempdir().unwrap();
    let mut l = ledger(&dir);
    l.append(&[receipt(1, peer(9), 1_000_000, 10_000, 1)], NOW)
        .unwrap();
    l.append(&[receipt(1, peer(9), 2_000_000, 10_000, 2)], NOW)
        .unwrap();
    l.db.execute("DELETE FROM entries WHERE n = 2", []).unwrap();
    let err = l.verify().unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn an_export_verifies_alone_and_any_change_to_it_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = ledger(&dir);
    l.append(
        &[
            receipt(1, peer(9), 1_000_000, 10_000, 1),
            receipt(2, peer(9), 1_500_000, 10_000, 1),
            receipt(2, Uploader::Cdn("cdn.example:80".into()), 1_000, 10_000, 1),
        ],
        NOW,
    )
    .unwrap();
    let e = Export::new(l.entries_iter().unwrap(), &l.report().unwrap(), NOW);
    let text = serde_json::to_string(&e).unwrap();
    let back: Export = serde_json::from_str(&text).unwrap();
    assert_eq!(export::verify(&back).unwrap(), l.report().unwrap());
    // An inflated total in the report.
    let mut bad = back.clone();
    bad.report["totals"]["p2p_bytes"] = serde_json::json!(9_999_999);
    let err = export::verify(&bad).unwrap_err();
    assert!(
        err.contains("report.totals.p2p_bytes says 9999999, the entries give 2500000"),
        "{err}"
    );
    // A dropped entry.
    let mut bad = back.clone();
    bad.entries.remove(1);
    assert!(export::verify(&bad).unwrap_err().contains("missing"));
    // A forged receipt with the chain recomputed around it: its signature fails.
    let mut bad = back;
    let mut forged = Receipt::decode(&bad.entries[0].receipt).unwrap();
    forged.bytes = 5_000_000;
    bad.entries[0].receipt = forged.encode();
    let mut head = [0u8; 32];
    for e in &mut bad.entries {
        let h = chain(&head, e.n, e.at, &e.receipt);
        e.hash = h.to_vec();
        head = h;
    }
    assert!(export::verify(&bad).unwrap_err().contains("signature"));
}

/// `peercdn ledger` reads the file while the engine appends: a read-only open creates nothing,
/// cannot write, and every report it makes is of one state of the chain.
#[test]
fn a_read_only_open_creates_nothing_and_sees_the_writers_appends() {
    let dir = tempfile::tempdir().unwrap();
    match Ledger::open_read_only(dir.path()) {
        Err(LedgerError::Missing { path }) => assert_eq!(path, dir.path().join(LEDGER_FILE)),
        other => panic!("{other:?}"),
    }
    assert!(!dir.path().join(LEDGER_FILE).exists());
    let mut w = ledger(&dir);
    w.append(&[receipt(1, peer(9), 1_000_000, 10_000, 1)], NOW)
        .unwrap();
    let mut r = Ledger::open_read_only(dir.path()).unwrap();
    assert_eq!(r.report().unwrap(), w.report().unwrap());
    w.append(&[receipt(1, peer(9), 2_000_000, 20_000, 2)], NOW)
        .unwrap();
    let (entries, report) = r.snapshot().unwrap();
    assert_eq!((entries.len(), report.entries), (2, 2));
    assert_eq!(report.head, hex::encode(w.head()));
    assert_eq!(r.verify().unwrap(), w.report().unwrap());
    r.collect(CONTENT, Collecting::live(RATE));
    assert!(r
        .append(&[receipt(1, peer(9), 3_000_000, 30_000, 3)], NOW)
        .is_err());
    let mut seen = Vec::new();
    r.verify_with(|n| seen.push(n)).unwrap();
    assert_eq!(seen, vec![2]);
}

/// The broadcaster sees how far behind its audience's players are: each viewer's latest
/// receipt that reported a delay, as a distribution per content.
#[test]
fn the_players_delay_comes_from_each_viewers_latest_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = ledger(&dir);
    let with_delay = |viewer: u8, from: Uploader, seq: u64, delay: Option<u64>| {
        let claim = Claim {
            content: CONTENT,
            from,
            bytes: 1000 * seq,
            watched_ms: 1000 * seq,
            delay_ms: delay,
            seq,
            time: NOW,
        };
        Receipt::sign(&key(viewer), claim).unwrap()
    };
    l.append(
        &[
            with_delay(1, peer(9), 1, Some(9_000)),
            // Viewer 1's later receipt (another uploader) says it caught up.
            with_delay(1, peer(8), 2, Some(800)),
            with_delay(2, peer(9), 1, Some(1_500)),
            with_delay(3, peer(9), 1, Some(12_000)),
            // No player: no delay.
            with_delay(4, peer(9), 1, None),
        ],
        NOW,
    )
    .unwrap();
    let r = l.report().unwrap();
    let d = &r.contents[0].delay;
    assert_eq!(d.viewers, 3);
    assert_eq!((d.p50_ms, d.max_ms), (1_500, 12_000));
    assert_eq!(d.buckets, [1, 1, 0, 0, 0, 1]);
    // The export says the same.
    let e = Export::new(l.entries_iter().unwrap(), &r, NOW);
    assert_eq!(export::verify(&e).unwrap().contents[0].delay, *d);
}
