//! Unit tests of the live swarm (the multi-node scenarios are in `tests/live_swarm.rs`).

use super::*;
use crate::live::LiveParams;
use crate::PeerId;
use ed25519_dalek::SigningKey;

fn setup() -> (SigningKey, LiveSwarm) {
    let key = SigningKey::from_bytes(&[3; 32]);
    let params = LiveParams {
        name: "t".into(),
        pubkey: key.verifying_key().to_bytes(),
        piece_duration_ms: 100,
        max_piece_length: 1 << 20,
        window_s: 2,
    };
    let s = LiveSwarm::with_info(Bytes::from(params.info_bytes()), LiveConfig::default()).unwrap();
    (key, s)
}

fn drain(s: &mut LiveSwarm) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

#[test]
fn peer_without_extensions_is_refused() {
    let (_, mut s) = setup();
    let mut hs = Handshake::ours(s.content_id(), PeerId::ours([1; 12]));
    hs.reserved = [0; 8];
    s.add_peer(1, "127.0.0.1:1".parse().unwrap(), &hs, Instant::now());
    assert!(matches!(
        drain(&mut s).as_slice(),
        [Action::Disconnect { ban: false, .. }]
    ));
    assert_eq!(s.peer_count(), 0);
}

#[test]
fn added_piece_moves_edge_and_prunes_the_window() {
    let (key, mut s) = setup();
    let now = Instant::now();
    let id = s.content_id();
    let wp = s.params().unwrap().window_pieces();
    for i in 0..wp + 10 {
        let h = PieceHeader::sign(&key, &id, i, 1, 1, 0, b"x");
        s.on_piece_added(h, now);
    }
    s.tick(now, 0);
    assert_eq!(s.edge(), Some(wp + 9));
    assert_eq!(s.first(), 10);
    assert!(!s.has(9));
    assert!(s.has(10));
    assert!(s.have.len() <= wp as usize && s.headers.len() <= wp as usize);
}
