//! The VoD swarm under the time contract: `poll_timeout` names the instant of the swarm's own
//! next work, and `handle_timeout` at that instant does it (no fixed tick).
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peercdn_core::swarm::{Action, Swarm, SwarmConfig};
use peercdn_core::wire::{Handshake, Message};
use peercdn_core::{Bitfield, InfoHash, PeerId};

const PIECES: u32 = 8;
const PIECE: u32 = 64 * 1024;

fn drain(s: &mut Swarm) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// Drives `s` from deadline to deadline until `until`; each action with its instant.
fn run_timers(s: &mut Swarm, until: Instant) -> Vec<(Instant, Action)> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        match s.poll_timeout() {
            Some(t) if t <= until => {
                s.handle_timeout(t);
                out.extend(drain(s).into_iter().map(|a| (t, a)));
                assert!(
                    s.poll_timeout().is_none_or(|n| n > t),
                    "a deadline stayed in the past"
                );
            }
            _ => return out,
        }
    }
    panic!("timers never quiet");
}

/// A leecher with one peer (a seed that unchoked it when `seed`, else a peer with nothing);
/// returns the swarm and the start instant.
fn leecher(config: SwarmConfig, seed: bool) -> (Swarm, Instant) {
    let hash = InfoHash([7; 20]);
    let mut s = Swarm::new(hash, config);
    let t0 = Instant::now();
    s.set_metadata(
        Bytes::from_static(b"d4:name1:xe"),
        PIECE,
        u64::from(PIECES * PIECE),
        PIECES,
        &Bitfield::new(PIECES),
        t0,
    );
    let hs = Handshake::ours(hash, PeerId::ours([1; 12]));
    let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    s.add_peer(1, addr, &hs, t0);
    if seed {
        s.on_message(1, Message::HaveAll, t0);
        s.on_message(1, Message::Unchoke, t0);
    }
    (s, t0)
}

#[test]
fn nothing_to_do_without_peers() {
    let s = Swarm::new(InfoHash([1; 20]), SwarmConfig::default());
    assert_eq!(s.poll_timeout(), None);
}

/// Requests in flight make their timeout a deadline: `poll_timeout` reports it while the peer
/// is silent, and the requests are cancelled at that very instant (with a 1 s tick they went
/// up to a second late).
#[test]
fn request_timeout_is_reported_and_handled_when_due() {
    let config = SwarmConfig {
        request_timeout: Duration::from_millis(2500),
        ..SwarmConfig::default()
    };
    let (mut s, t0) = leecher(config, true);
    let sent = drain(&mut s);
    assert!(sent
        .iter()
        .any(|a| matches!(a, Action::Send(1, Message::Request(_)))));
    let due = t0 + Duration::from_millis(2500);
    assert!(s.poll_timeout().is_some_and(|t| t <= due));
    let acts = run_timers(&mut s, due + Duration::from_millis(400));
    let cancels: Vec<Instant> = acts
        .iter()
        .filter(|(_, a)| matches!(a, Action::Send(1, Message::Cancel(_))))
        .map(|(t, _)| *t)
        .collect();
    assert!(!cancels.is_empty(), "no cancel: {acts:?}");
    assert!(cancels.iter().all(|&t| t == due), "{cancels:?}");
}

/// A peer we send nothing to gets a keep-alive before two minutes of silence, and a peer that
/// sends nothing is dropped at its idle timeout, both as deadlines.
#[test]
fn keep_alive_and_idle_timeout_are_deadlines() {
    let config = SwarmConfig {
        idle_timeout: Duration::from_secs(300),
        ..SwarmConfig::default()
    };
    let (mut s, t0) = leecher(config, false);
    drain(&mut s);
    let acts = run_timers(&mut s, t0 + Duration::from_secs(299));
    let keepalives: Vec<Instant> = acts
        .iter()
        .filter(|(_, a)| matches!(a, Action::Send(1, Message::KeepAlive)))
        .map(|(t, _)| *t)
        .collect();
    assert!(!keepalives.is_empty());
    let mut last = t0;
    for t in keepalives {
        assert!(t - last < Duration::from_secs(120), "silent too long");
        last = t;
    }
    assert!(!acts
        .iter()
        .any(|(_, a)| matches!(a, Action::Disconnect { .. })));
    let acts = run_timers(&mut s, t0 + Duration::from_secs(301));
    let idle: Vec<Instant> = acts
        .iter()
        .filter(|(_, a)| matches!(a, Action::Disconnect { peer: 1, .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(idle, vec![t0 + Duration::from_secs(300)]);
    assert_eq!(s.poll_timeout(), None, "no peers left, nothing due");
}
