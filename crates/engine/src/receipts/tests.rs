#![allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock

use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use peercdn_core::ext::receipt::{Identity, ReceiptBook, ReceiptSwarm};
use peercdn_core::ext::PeerKey;
use peercdn_core::receipt::{Claim, Receipt, Uploader};
use peercdn_core::InfoHash;

use super::*;

const CONTENT: InfoHash = InfoHash([6; 20]);
const BROADCASTER: [u8; 32] = [0xbb; 32];

/// The swarm as accounting sees it: a book, who is connected with which key, what was sent.
#[derive(Default)]
struct Swarm {
    book: ReceiptBook,
    peers: Vec<(PeerKey, [u8; 32])>,
    sent: Vec<(PeerKey, Vec<Receipt>)>,
}

impl ReceiptSwarm for Swarm {
    fn receipt_book(&self) -> &ReceiptBook {
        &self.book
    }
    fn identified_peers(&self) -> Vec<(PeerKey, [u8; 32])> {
        self.peers.clone()
    }
    fn send_receipts(&mut self, key: PeerKey, receipts: &[Bytes]) -> bool {
        let r = receipts
            .iter()
            .map(|b| Receipt::decode(b).unwrap())
            .collect();
        self.sent.push((key, r));
        true
    }
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn accounting(interval: Duration) -> Accounting {
    let accounts = Arc::new(Accounts::new(
        Identity::new(key(1), [9; 32]),
        interval,
        None,
    ));
    Accounting::new(accounts, CONTENT, Some(BROADCASTER), false)
}

/// Found writing the end-to-end test with a 2 s receipt interval: a viewer handed the
/// broadcaster up to 64 receipts a round (its own and those about its uploads), but the
/// broadcaster's budget for one peer refills 4 a second, so most of a round was dropped there
/// while the viewer counted them delivered — final figures of some pairs never reached the
/// ledger. Now a round carries at most what the budget refills in an interval, and the rest
/// waits for the next rounds.
#[test]
fn a_round_never_exceeds_what_the_broadcaster_takes_and_the_rest_follows() {
    let mut a = accounting(Duration::from_secs(2));
    let mut swarm = Swarm::default();
    // Eleven uploaders; the broadcaster on connection 1, uploader 3 also connected (2).
    for u in 2..13u8 {
        swarm
            .book
            .add(key(u).verifying_key().to_bytes(), 1000 * u64::from(u));
    }
    swarm.peers = vec![(1, BROADCASTER), (2, key(3).verifying_key().to_bytes())];
    // Twenty viewers' receipts about our uploads, to pass on.
    let ours = Uploader::Peer(key(1).verifying_key().to_bytes());
    let about: Vec<Receipt> = (20..40u8)
        .map(|v| {
            let c = Claim {
                content: CONTENT,
                from: ours.clone(),
                bytes: 5000,
                watched_ms: 1000,
                delay_ms: None,
                seq: 7,
                time: 1_796_000_000,
            };
            Receipt::sign(&key(v), c).unwrap()
        })
        .collect();
    a.on_receipts(about);
    let t0 = Instant::now();
    a.tick(&mut swarm, &[], t0, 1_796_000_000); // arms the timer
    assert!(swarm.sent.is_empty());
    let mut to_broadcaster = Vec::new();
    for round in 1..=5u32 {
        let now = t0 + Duration::from_secs(2 * u64::from(round));
        a.tick(&mut swarm, &[], now, 1_796_000_000 + u64::from(round));
        for (conn, list) in swarm.sent.drain(..) {
            match conn {
                1 => {
                    assert!(list.len() <= 8, "round {round}: {} at once", list.len());
                    to_broadcaster.extend(list);
                }
                2 => {
                    // Uploader 3 gets the receipt naming it, once (its bytes moved once).
                    assert_eq!(round, 1);
                    assert_eq!(list.len(), 1);
                    assert_eq!(
                        list[0].from,
                        Uploader::Peer(key(3).verifying_key().to_bytes())
                    );
                }
                other => panic!("sent to {other}"),
            }
        }
    }
    // Everything arrived, once: eleven of ours, twenty passed on.
    assert_eq!(to_broadcaster.len(), 31);
    let mine = to_broadcaster
        .iter()
        .filter(|r| r.to == key(1).verifying_key().to_bytes())
        .count();
    assert_eq!(mine, 11);
    // A round with nothing new sends nothing.
    a.tick(&mut swarm, &[], t0 + Duration::from_secs(20), 1_796_000_020);
    assert!(swarm.sent.is_empty());
}

/// Watch time alone moving signs one fresh receipt (for the largest pair), so the collector
/// learns it; the receipts' sequence numbers rise round after round.
#[test]
fn watch_time_is_carried_and_sequence_numbers_rise() {
    let mut a = accounting(Duration::from_secs(1));
    let mut swarm = Swarm::default();
    swarm.book.add([5; 32], 100);
    swarm.book.add([6; 32], 900);
    swarm.peers = vec![(1, BROADCASTER)];
    let t0 = Instant::now();
    a.watch(1, t0);
    a.tick(
        &mut swarm,
        &[("cdn.example:80".into(), 50)],
        t0,
        1_796_000_000,
    );
    let t1 = t0 + Duration::from_secs(1);
    a.watch(1, t1);
    a.tick(
        &mut swarm,
        &[("cdn.example:80".into(), 50)],
        t1,
        1_796_000_001,
    );
    let first: Vec<Receipt> = swarm.sent.drain(..).flat_map(|(_, l)| l).collect();
    assert_eq!(first.len(), 3, "two peers and a CDN host");
    assert!(first.iter().all(|r| r.watched_ms == 1000));
    let t2 = t0 + Duration::from_secs(2);
    a.watch(0, t2);
    a.tick(
        &mut swarm,
        &[("cdn.example:80".into(), 50)],
        t2,
        1_796_000_002,
    );
    let second: Vec<Receipt> = swarm.sent.drain(..).flat_map(|(_, l)| l).collect();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].from, Uploader::Peer([6; 32]));
    assert_eq!(second[0].watched_ms, 2000);
    assert!(second[0].seq > first[0].seq);
}
