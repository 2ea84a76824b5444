//! Web seed policy on a virtual clock: rescue timing, backoff, bad seeds.

use super::*;
use crate::bitfield::Bitfield;
use crate::id::InfoHash;
use crate::swarm::SwarmConfig;
use bytes::Bytes;

const PIECES: u32 = 32;

/// A swarm with metadata, no peers and nothing verified but `have`.
fn swarm(have: &[u32], t0: Instant) -> Swarm {
    let mut s = Swarm::new(InfoHash([7; 20]), SwarmConfig::default());
    let mut bf = Bitfield::new(PIECES);
    for &i in have {
        bf.set(i, true);
    }
    s.set_metadata(
        Bytes::from_static(b"d4:name1:xe"),
        16_384,
        u64::from(PIECES) * 16_384,
        PIECES,
        &bf,
        t0,
    );
    while s.poll_action().is_some() {}
    s
}

#[test]
fn without_peers_pieces_go_to_the_seeds_parallel_at_most() {
    let t0 = Instant::now();
    let s = swarm(&[], t0);
    let mut w = WebSeedPolicy::new(2);
    let mut got = Vec::new();
    while let Some(f) = w.next_fetch(&s, t0) {
        got.push(f);
    }
    assert_eq!(got.len(), 2 * PARALLEL);
    assert!(got[..PARALLEL].iter().all(|&(k, _)| k == 0));
    assert!(got[PARALLEL..].iter().all(|&(k, _)| k == 1));
    let mut pieces: Vec<u32> = got.iter().map(|&(_, p)| p).collect();
    pieces.dedup();
    assert_eq!(pieces.len(), 2 * PARALLEL, "no piece fetched twice");
}

#[test]
fn rescue_fires_at_exactly_700ms() {
    let t0 = Instant::now();
    // Every piece but the reader's two is had.
    let others: Vec<u32> = (0..PIECES).filter(|&i| i != 10 && i != 11).collect();
    let mut s = swarm(&others, t0);
    s.set_reader(1, 10, PIECES - 1, 8, t0);
    let mut w = WebSeedPolicy::new(1);
    assert_eq!(w.poll_timeout(&s), Some(t0 + RESCUE_AFTER));
    let early = t0 + RESCUE_AFTER - Duration::from_millis(1);
    w.handle_timeout(early);
    assert_eq!(w.poll_timeout(&s), Some(t0 + RESCUE_AFTER), "not due yet");
    w.handle_timeout(t0 + RESCUE_AFTER);
    assert_eq!(
        w.poll_timeout(&s),
        None,
        "the deadline passed: no busy wake-ups"
    );
    assert_eq!(w.next_fetch(&s, t0 + RESCUE_AFTER), Some((0, 10)));
    assert_eq!(w.next_fetch(&s, t0 + RESCUE_AFTER), Some((0, 11)));
    assert_eq!(w.next_fetch(&s, t0 + RESCUE_AFTER), None);
    // The reader moves on: a new deadline 700 ms from then.
    let t1 = t0 + Duration::from_secs(1);
    s.set_reader(1, 12, PIECES - 1, 8, t1);
    assert_eq!(w.poll_timeout(&s), Some(t1 + RESCUE_AFTER));
}

#[test]
fn rescue_comes_before_pieces_nobody_has() {
    let t0 = Instant::now();
    let mut s = swarm(&[], t0);
    s.set_reader(1, 20, PIECES - 1, 2, t0);
    let mut w = WebSeedPolicy::new(1);
    let before = w.next_fetch(&s, t0).map(|(_, p)| p);
    assert_eq!(
        before,
        Some(20),
        "the reader's pieces are the top priority anyway"
    );
    let mut w = WebSeedPolicy::new(1);
    // Reader 1 at 5 (its file's end) wants no readahead: piece 5 keeps normal priority, so
    // only the rescue picks it before reader 2's raised pieces.
    s.set_reader(1, 5, 5, 0, t0);
    s.set_reader(2, 30, PIECES - 1, 2, t0); // reader 2 at 30: raised, not waiting long
    let at = t0 + RESCUE_AFTER;
    s.set_reader(2, 30, PIECES - 1, 2, at);
    w.handle_timeout(at);
    assert_eq!(
        w.next_fetch(&s, at),
        Some((0, 5)),
        "the waiting reader first"
    );
}

#[test]
fn failures_back_off_exponentially_and_success_resets() {
    let t0 = Instant::now();
    let s = swarm(&[], t0);
    let mut w = WebSeedPolicy::new(1);
    let (k, p) = w.next_fetch(&s, t0).unwrap();
    w.on_fetched(k, p, Fetched::Failed, t0);
    assert_eq!(w.errors(0), 1);
    assert_eq!(w.poll_timeout(&s), Some(t0 + Duration::from_secs(2)));
    // Still three slots, but the seed backs off: nothing until the backoff ends.
    let almost = t0 + Duration::from_millis(1999);
    assert_eq!(w.next_fetch(&s, almost), None);
    let t1 = t0 + Duration::from_secs(2);
    w.handle_timeout(t1);
    assert_eq!(w.poll_timeout(&s), None);
    let (k, p2) = w.next_fetch(&s, t1).unwrap();
    assert_eq!(p2, p, "the failed piece is free again");
    w.on_fetched(k, p2, Fetched::Failed, t1);
    assert_eq!(w.poll_timeout(&s), Some(t1 + Duration::from_secs(4)));
    assert_eq!(
        WebSeedPolicy::backoff(30),
        Duration::from_secs(64),
        "capped"
    );
    let t2 = t1 + Duration::from_secs(4);
    w.handle_timeout(t2);
    let (k, p3) = w.next_fetch(&s, t2).unwrap();
    w.on_fetched(k, p3, Fetched::Received, t2);
    w.on_checked(k, p3, true);
    let (k, p4) = w.next_fetch(&s, t2).unwrap();
    w.on_fetched(k, p4, Fetched::Failed, t2);
    assert_eq!(
        w.poll_timeout(&s),
        Some(t2 + Duration::from_secs(2)),
        "a success reset the backoff"
    );
}

#[test]
fn a_seed_serving_bad_data_is_disabled() {
    let t0 = Instant::now();
    let s = swarm(&[], t0);
    let mut w = WebSeedPolicy::new(2);
    let (k, p) = w.next_fetch(&s, t0).unwrap();
    assert_eq!(k, 0);
    w.on_fetched(k, p, Fetched::Received, t0);
    w.on_checked(k, p, false);
    assert_eq!(w.errors(0), 1);
    while let Some((k, _)) = w.next_fetch(&s, t0) {
        assert_eq!(k, 1, "seed 0 gets no more work");
    }
}

#[test]
fn seeds_are_bounded() {
    assert_eq!(WebSeedPolicy::new(100).seeds.len(), MAX_WEBSEEDS);
    let t0 = Instant::now();
    let s = swarm(&[], t0);
    let mut w = WebSeedPolicy::new(0);
    assert!(w.is_empty());
    assert_eq!(w.next_fetch(&s, t0), None);
    assert_eq!(w.poll_timeout(&s), None);
}
