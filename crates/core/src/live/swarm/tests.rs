//! Unit tests of the live swarm (the multi-node scenarios are in `tests/live_swarm.rs`).
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use super::*;
use crate::ext::peer::Route;
use crate::live::{LiveParams, OUR_PC_LIVE_ID, PC_LIVE};
use crate::wire::ext::{self, ExtHandshake};
use crate::wire::BLOCK_LEN;
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

/// The source makes piece `index` of `payload` at `now`, signed by `key`.
fn add_piece(s: &mut LiveSwarm, key: &SigningKey, index: u32, payload: &[u8], now: Instant) {
    let h = PieceHeader::sign(key, &s.content_id(), index, 1, 1, 0, payload);
    s.on_piece_added(h, crate::live::block_hashes(payload), now);
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
        [Action::Disconnect {
            reason: DisconnectReason::Unsupported(Missing::ExtensionProtocol),
            ..
        }]
    ));
    assert_eq!(s.peer_count(), 0);
}

/// A source without peers has no timers (`poll_timeout` is `None`); before the time contract
/// its window was pruned only on the 100 ms tick, so without a tick it would have grown with
/// every piece. Now the window is pruned when the edge moves.
#[test]
fn added_piece_moves_edge_and_prunes_the_window() {
    let (key, mut s) = setup();
    let now = Instant::now();
    let wp = s.params().unwrap().window_pieces();
    for i in 0..wp + 10 {
        add_piece(&mut s, &key, i, b"x", now);
    }
    assert_eq!(s.poll_timeout(), None, "no peers, nothing due");
    assert_eq!(s.edge(), Some(wp + 9));
    assert_eq!(s.first(), 10);
    assert!(!s.has(9));
    assert!(s.has(10));
    assert!(s.have.len() <= wp as usize && s.headers.len() <= wp as usize);
}

fn ready_peer(s: &mut LiveSwarm, key: PeerKey, now: Instant) {
    let hs = Handshake::ours(s.content_id(), PeerId::ours([key as u8; 12]));
    let addr = SocketAddr::from(([127, 0, 0, 1], 2000 + key as u16));
    s.add_peer(key, addr, &hs, now);
    let mut ext = ExtHandshake::ours(None, None);
    ext.m.push((PC_LIVE.to_string(), OUR_PC_LIVE_ID));
    s.on_message(
        key,
        Message::Extended {
            id: ext::EXT_HANDSHAKE_ID,
            payload: ext.encode(),
        },
        now,
    );
}

fn announced_to(actions: &[Action], index: u32) -> Vec<PeerKey> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(k, Message::Extended { id, payload }) if *id == OUR_PC_LIVE_ID => {
                match LiveMsg::decode(payload) {
                    Ok(LiveMsg::Have(hs)) if hs.iter().any(|h| h.index == index) => Some(*k),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

#[test]
fn source_tells_a_few_first_and_the_rest_after_the_delay() {
    let (key, mut s) = setup();
    s.config.source = true;
    let now = Instant::now();
    for k in 1..=6 {
        ready_peer(&mut s, k, now);
    }
    drain(&mut s);
    add_piece(&mut s, &key, 0, b"piece", now);
    let first = announced_to(&drain(&mut s), 0);
    assert_eq!(first.len(), s.config.source_fanout);
    s.handle_timeout(now + Duration::from_millis(50));
    assert!(announced_to(&drain(&mut s), 0).is_empty());
    s.handle_timeout(now + Duration::from_millis(150));
    let rest = announced_to(&drain(&mut s), 0);
    assert_eq!(rest.len(), 6 - first.len());
    assert!(rest.iter().all(|k| !first.contains(k)));
    // The next piece goes first to others (rotation).
    add_piece(&mut s, &key, 1, b"piece", now);
    let second = announced_to(&drain(&mut s), 1);
    assert!(
        second.iter().all(|k| !first.contains(k)),
        "{first:?} {second:?}"
    );
}

/// Drives `s` from deadline to deadline (as the engine does) until `until`, and returns each
/// action with the instant it was emitted at.
fn run_timers(s: &mut LiveSwarm, until: Instant) -> Vec<(Instant, Action)> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
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

/// The time contract: the source's second wave goes out at its due instant (one piece
/// duration after the first), not on the next tick of a fixed 100 ms clock (which lost up to
/// a tick per announcement).
#[test]
fn second_wave_goes_out_exactly_when_due() {
    let (key, mut s) = setup();
    s.config.source = true;
    s.config.source_delay = Some(Duration::from_millis(137));
    let t0 = Instant::now();
    for k in 1..=6 {
        ready_peer(&mut s, k, t0);
    }
    run_timers(&mut s, t0);
    drain(&mut s);
    let now = t0 + Duration::from_millis(3);
    add_piece(&mut s, &key, 0, b"piece", now);
    let first = announced_to(&drain(&mut s), 0);
    assert_eq!(first.len(), s.config.source_fanout);
    let due = now + Duration::from_millis(137);
    assert!(s.poll_timeout().is_some_and(|t| t <= due));
    let acts = run_timers(&mut s, now + Duration::from_secs(1));
    let rest: Vec<(Instant, PeerKey)> = acts
        .iter()
        .filter_map(|(t, a)| {
            announced_to(std::slice::from_ref(a), 0)
                .first()
                .map(|&k| (*t, k))
        })
        .collect();
    assert_eq!(rest.len(), 6 - first.len());
    assert!(rest.iter().all(|&(t, _)| t == due), "{rest:?} due {due:?}");
}

/// A block request in flight makes its timeout a deadline: `poll_timeout` names it, and at
/// that instant the block is asked of another peer.
#[test]
fn late_block_is_a_deadline() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    for k in 1..=2 {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Unchoke, t0);
    }
    run_timers(&mut s, t0);
    drain(&mut s);
    let h = PieceHeader::sign(&key, &s.content_id(), 0, 1, 1, 0, b"piece");
    let have = Message::Extended {
        id: OUR_PC_LIVE_ID,
        payload: LiveMsg::Have(vec![h]).encode(),
    };
    s.on_message(1, have.clone(), t0);
    let asked: Vec<PeerKey> = drain(&mut s)
        .iter()
        .filter_map(|a| match a {
            Action::Send(k, Message::Request(_)) => Some(*k),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![1]);
    s.on_message(2, have, t0);
    let late = t0 + s.config.block_timeout;
    assert!(s.poll_timeout().is_some_and(|t| t <= late));
    let acts = run_timers(&mut s, late);
    let moved: Vec<(Instant, PeerKey)> = acts
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Send(k, Message::Request(_)) => Some((*t, *k)),
            _ => None,
        })
        .collect();
    assert_eq!(moved, vec![(late, 2)]);
}

#[test]
fn queued_requests_are_capped() {
    let (key, mut s) = setup();
    s.config.max_reads_in_flight = 0;
    let now = Instant::now();
    add_piece(&mut s, &key, 0, &[0u8; 1 << 20], now);
    ready_peer(&mut s, 1, now);
    s.on_message(1, Message::Interested, now);
    for begin in 0..2000u32 {
        let b = BlockRef {
            index: 0,
            begin: begin * 16,
            len: 16,
        };
        s.on_message(1, Message::Request(b), now);
    }
    let q = s.peers.get(&1).map(|p| p.up.queued.len()).unwrap();
    assert_eq!(q, s.config.max_peer_requests);
}

#[test]
fn a_relay_without_player_fetches_only_near_the_edge() {
    let (key, mut s) = setup();
    s.config.min_outstanding = 32;
    let now = Instant::now();
    ready_peer(&mut s, 1, now);
    s.on_message(1, Message::Unchoke, now);
    drain(&mut s);
    let id = s.content_id();
    let hs: Vec<PieceHeader> = (0..20)
        .map(|i| PieceHeader::sign(&key, &id, i, 1, 1, 0, b"data"))
        .collect();
    s.on_message(
        1,
        Message::Extended {
            id: OUR_PC_LIVE_ID,
            payload: LiveMsg::Have(hs).encode(),
        },
        now,
    );
    let requested: Vec<u32> = drain(&mut s)
        .iter()
        .filter_map(|a| match a {
            Action::Send(1, Message::Request(b)) => Some(b.index),
            _ => None,
        })
        .collect();
    assert_eq!(requested, vec![15, 16, 17, 18, 19]);
    // A player at 3 pulls from there.
    s.set_playhead(Some(3), now);
    let requested: Vec<u32> = drain(&mut s)
        .iter()
        .filter_map(|a| match a {
            Action::Send(1, Message::Request(b)) => Some(b.index),
            _ => None,
        })
        .collect();
    assert_eq!(requested.first(), Some(&3));
}

fn requested(actions: &[Action]) -> Vec<(PeerKey, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(k, Message::Request(b)) => Some((*k, b.index)),
            _ => None,
        })
        .collect()
}

fn announce(s: &mut LiveSwarm, from: PeerKey, headers: Vec<PieceHeader>, now: Instant) {
    let payload = LiveMsg::Have(headers).encode();
    let msg = Message::Extended {
        id: OUR_PC_LIVE_ID,
        payload,
    };
    s.on_message(from, msg, now);
}

/// Peer `from` sends the block hashes of `payload` for piece `index`.
fn send_hashes(s: &mut LiveSwarm, from: PeerKey, index: u32, payload: &[u8], now: Instant) {
    let hashes = crate::live::block_hashes(payload);
    let msg = Message::Extended {
        id: OUR_PC_LIVE_ID,
        payload: LiveMsg::Hashes { index, hashes }.encode(),
    };
    s.on_message(from, msg, now);
}

/// Peer `from` sends block `i` of `payload` (piece `index`).
fn send_block(
    s: &mut LiveSwarm,
    from: PeerKey,
    index: u32,
    payload: &[u8],
    i: usize,
    now: Instant,
) {
    let begin = i * BLOCK_LEN as usize;
    let end = (begin + BLOCK_LEN as usize).min(payload.len());
    let data = Bytes::copy_from_slice(&payload[begin..end]);
    let begin = begin as u32;
    s.on_message(from, Message::Piece { index, begin, data }, now);
}

/// Piece 0 of three blocks for the relay tests, and its header signed by `key`.
fn three_block_piece(key: &SigningKey, s: &LiveSwarm) -> (Vec<u8>, PieceHeader) {
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let h = PieceHeader::sign(key, &s.content_id(), 0, 1, 1, 0, &payload);
    (payload, h)
}

/// Cut-through relaying: a relay announces a piece at its first verified block, queues a
/// peer's requests for blocks still on their way, and serves each (with the piece's block
/// hashes first) the moment it is verified — before the piece is whole. Before live version 2
/// a relay forwarded a piece only once it held all of it, so every hop cost a piece's time.
#[test]
fn a_relay_forwards_each_block_as_soon_as_it_is_verified() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let (payload, h) = three_block_piece(&key, &s);
    ready_peer(&mut s, 1, t0); // upstream
    ready_peer(&mut s, 2, t0); // downstream
    s.on_message(2, Message::Interested, t0);
    announce(&mut s, 1, vec![h], t0);
    s.on_message(1, Message::Unchoke, t0);
    let asked = requested(&drain(&mut s));
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked.iter().all(|&(k, i)| k == 1 && i == 0));
    send_hashes(&mut s, 1, 0, &payload, t0);
    send_block(&mut s, 1, 0, &payload, 0, t0);
    let acts = drain(&mut s);
    assert_eq!(
        announced_to(&acts, 0),
        vec![2],
        "announced at its first block"
    );
    // The downstream peer asks for all three blocks; only the first is here.
    for i in 0..3u32 {
        let len = if i == 2 {
            40_000 - 2 * BLOCK_LEN
        } else {
            BLOCK_LEN
        };
        let b = BlockRef {
            index: 0,
            begin: i * BLOCK_LEN,
            len,
        };
        s.on_message(2, Message::Request(b), t0);
    }
    let acts = drain(&mut s);
    let hashes_first = acts.iter().position(|a| {
        matches!(a, Action::Send(2, Message::Extended { payload, .. })
        if matches!(LiveMsg::decode(payload), Ok(LiveMsg::Hashes { index: 0, .. })))
    });
    let sent: Vec<(usize, u32, bool)> = acts
        .iter()
        .enumerate()
        .filter_map(|(n, a)| match a {
            Action::SendBlock {
                peer: 2,
                block,
                data,
            } => Some((n, block.begin, data.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "only the verified block: {acts:?}");
    assert_eq!(
        (sent[0].1, sent[0].2),
        (0, true),
        "from the assembly, not the window"
    );
    assert!(
        hashes_first.is_some_and(|h| h < sent[0].0),
        "hashes go first"
    );
    for (_, begin, _) in &sent {
        let b = BlockRef {
            index: 0,
            begin: *begin,
            len: BLOCK_LEN,
        };
        s.on_block_sent(2, b, true);
    }
    send_block(&mut s, 1, 0, &payload, 1, t0);
    let acts = drain(&mut s);
    let relayed: Vec<u32> = acts
        .iter()
        .filter_map(|a| match a {
            Action::SendBlock {
                peer: 2,
                block,
                data: Some(_),
            } => Some(block.begin),
            _ => None,
        })
        .collect();
    assert_eq!(relayed, vec![BLOCK_LEN], "the second block at once");
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::Send(2, Message::Extended { .. }))),
        "no second announcement nor second hashes: {acts:?}"
    );
    send_block(&mut s, 1, 0, &payload, 2, t0);
    let acts = drain(&mut s);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::PieceComplete { .. })));
    s.on_piece_checked(0, true, t0);
    assert!(
        announced_to(&drain(&mut s), 0).is_empty(),
        "peer 2 knows already"
    );
    assert_eq!(s.stats().blocks_relayed_early, 3);
}

/// A block that fails its hash bans its sender at once (a relay must never pass on what it has
/// not verified), and so do block hashes that do not add up to the signed root.
#[test]
fn a_forged_block_or_forged_hashes_ban_the_sender() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let (payload, h) = three_block_piece(&key, &s);
    for k in [1, 2] {
        ready_peer(&mut s, k, t0);
        announce(&mut s, k, vec![h], t0);
        s.on_message(k, Message::Unchoke, t0);
    }
    drain(&mut s);
    send_hashes(&mut s, 1, 0, &payload, t0);
    let mut forged = payload.clone();
    forged[5] ^= 1;
    send_block(&mut s, 1, 0, &forged, 0, t0);
    let bans = |acts: &[Action]| -> Vec<PeerKey> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Disconnect { peer, reason } if reason.ban() => Some(*peer),
                _ => None,
            })
            .collect()
    };
    assert_eq!(bans(&drain(&mut s)), vec![1], "the forged block's sender");
    send_hashes(&mut s, 2, 0, &forged, t0);
    assert_eq!(bans(&drain(&mut s)), vec![2], "hashes that miss the root");
    assert_eq!(s.stats().banned, 2);
}

/// A block that comes before its piece's block hashes cannot be checked: it is not kept, and
/// its sender (a broken client: an honest one sends the hashes first) is closed, not banned.
#[test]
fn a_block_before_its_hashes_closes_the_connection_without_a_ban() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let (payload, h) = three_block_piece(&key, &s);
    ready_peer(&mut s, 1, t0);
    announce(&mut s, 1, vec![h], t0);
    s.on_message(1, Message::Unchoke, t0);
    drain(&mut s);
    send_block(&mut s, 1, 0, &payload, 0, t0);
    let acts = drain(&mut s);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Disconnect { peer: 1, reason }
            if !reason.ban() && matches!(reason, DisconnectReason::Protocol(_)))),
        "{acts:?}"
    );
    assert_eq!(s.stats().banned, 0);
    assert_eq!(s.stats().downloaded, 0);
}

/// Found by the simulator (`crates/sim`, 1,000 viewers): a viewer stopped downloading while
/// peers unchoked it and held newer pieces. Its assembly slots (`max_in_progress`) were all
/// held by pieces nobody could serve it any more — their requests released when the peer
/// choked it or left — and a held slot was only given back when its piece left the window, so
/// nothing newer was started. Now, at the cap, a piece with nothing received and nothing in
/// flight gives its slot to one a peer can serve (it costs nothing to start again later).
#[test]
fn pieces_nobody_can_serve_do_not_hold_the_assembly_slots() {
    let (key, mut s) = setup();
    s.config.max_in_progress = 4;
    let t0 = Instant::now();
    let id = s.content_id();
    let hs: Vec<PieceHeader> = (0..10)
        .map(|i| PieceHeader::sign(&key, &id, i, 1, 1, 0, b"data"))
        .collect();
    s.set_playhead(Some(0), t0);
    ready_peer(&mut s, 1, t0);
    s.on_message(1, Message::Unchoke, t0);
    announce(&mut s, 1, hs[..8].to_vec(), t0);
    let first: Vec<u32> = requested(&drain(&mut s)).iter().map(|r| r.1).collect();
    assert_eq!(first, vec![0, 1, 2, 3], "four slots, in deadline order");
    // The only peer that had them leaves: its requests are released, nothing arrived.
    s.remove_peer(1);
    // Another peer has the newer pieces only.
    ready_peer(&mut s, 2, t0);
    s.on_message(2, Message::Unchoke, t0);
    announce(&mut s, 2, hs[4..].to_vec(), t0);
    let next = requested(&drain(&mut s));
    assert_eq!(
        next,
        vec![(2, 4), (2, 5), (2, 6), (2, 7)],
        "the pieces peer 2 can serve get the slots"
    );
}

/// Found by the simulator (200 viewers, the goal scenario): a third of the audience never
/// started. A newcomer without a player fetched from `edge - relay_margin`; the relays around
/// it were seconds behind the source, so only the few next to the source held those pieces,
/// and what it wanted left the window before any of them served it. It now starts near the
/// median of what its peers hold.
#[test]
fn a_newcomer_starts_where_its_peers_are_not_at_the_edge() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let id = s.content_id();
    let hs: Vec<PieceHeader> = (0..40)
        .map(|i| PieceHeader::sign(&key, &id, i, 1, 1, 0, b"data"))
        .collect();
    for k in 1..=3 {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Unchoke, t0);
    }
    // Peer 1 is next to the source; peers 2 and 3 are where the swarm is.
    announce(&mut s, 1, hs.clone(), t0);
    announce(&mut s, 2, hs[..20].to_vec(), t0);
    announce(&mut s, 3, hs[..21].to_vec(), t0);
    let asked: Vec<u32> = requested(&drain(&mut s)).iter().map(|r| r.1).collect();
    let relay_margin = s.config.relay_margin;
    assert_eq!(asked.iter().min(), Some(&(20 - relay_margin)), "{asked:?}");
}

/// Interest means something in live (it used to be sent to every peer at once): we tell a
/// peer we are interested when it announces a piece we lack from where we fetch, and not
/// interested once we hold all it announced. Measured in the simulator, with everyone
/// interested in everyone an uploader's few slots rotated among peers that were ahead of it
/// and asked for nothing, while the peers behind it waited.
#[test]
fn interest_follows_what_a_peer_can_give() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let id = s.content_id();
    s.set_playhead(Some(0), t0);
    ready_peer(&mut s, 1, t0);
    let said = |acts: &[Action], m: Message| acts.iter().any(|a| *a == Action::Send(1, m.clone()));
    let acts = drain(&mut s);
    assert!(
        !said(&acts, Message::Interested),
        "it announced nothing yet"
    );
    announce(
        &mut s,
        1,
        vec![PieceHeader::sign(&key, &id, 0, 1, 1, 0, b"data")],
        t0,
    );
    assert!(said(&drain(&mut s), Message::Interested));
    s.on_message(1, Message::Unchoke, t0);
    assert_eq!(requested(&drain(&mut s)), vec![(1, 0)]);
    send_hashes(&mut s, 1, 0, b"data", t0);
    let data = Bytes::from_static(b"data");
    s.on_message(
        1,
        Message::Piece {
            index: 0,
            begin: 0,
            data,
        },
        t0,
    );
    assert!(drain(&mut s)
        .iter()
        .any(|a| matches!(a, Action::PieceComplete { .. })));
    s.on_piece_checked(0, true, t0);
    assert!(
        said(&drain(&mut s), Message::NotInterested),
        "nothing more to get from it"
    );
}

/// The uploader's side of meaningful interest: a peer that says it needs nothing more gives
/// its slot, at once, to a peer waiting for one.
#[test]
fn a_peer_that_needs_nothing_gives_its_slot_to_one_that_does() {
    let (_, mut s) = setup();
    let t0 = Instant::now();
    let peers = s.slots() as PeerKey + 2;
    for k in 1..=peers {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Interested, t0);
    }
    let acts = drain(&mut s);
    let unchoked = |acts: &[Action], k| acts.contains(&Action::Send(k, Message::Unchoke));
    assert!(
        !unchoked(&acts, peers),
        "the slots and the optimistic one are taken"
    );
    assert!(unchoked(&acts, 1));
    s.on_message(1, Message::NotInterested, t0);
    let acts = drain(&mut s);
    assert!(acts.contains(&Action::Send(1, Message::Choke)));
    assert!(unchoked(&acts, peers), "{acts:?}");
}

/// The optimistic slot goes to a peer that holds nothing yet (a newcomer) before one that
/// waited longer but already has pieces: with slots sized to the uplink, newcomers otherwise
/// queued behind playing peers and some never started (37 of 1,000 simulated viewers).
#[test]
fn the_optimistic_slot_goes_to_a_newcomer_first() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let id = s.content_id();
    for k in 1..=3 {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Interested, t0);
    }
    let h = PieceHeader::sign(&key, &id, 0, 1, 1, 0, b"piece");
    announce(&mut s, 3, vec![h], t0);
    let t1 = t0 + Duration::from_millis(10);
    ready_peer(&mut s, 4, t1);
    s.on_message(4, Message::Interested, t1);
    let acts = drain(&mut s);
    let unchoked = |acts: &[Action], k| acts.contains(&Action::Send(k, Message::Unchoke));
    assert!(!unchoked(&acts, 3) && !unchoked(&acts, 4), "{acts:?}");
    s.handle_timeout(t0 + serve::RECHOKE_EVERY);
    let acts = drain(&mut s);
    assert!(unchoked(&acts, 4), "the newcomer: {acts:?}");
    assert!(!unchoked(&acts, 3));
}

/// A viewer has as many regular slots as whole copies of the stream its upload carried lately
/// (one at least, `unchoke_slots` at most), re-sized at each rechoke: a slot beyond what the
/// uplink carries makes every peer it feeds wait behind the others. With four fixed slots the
/// simulator put the median piece 1.8 s behind the source at 60 viewers whose uplinks carry
/// two copies; sized to the uplink, 0.8 s.
#[test]
fn a_viewers_slots_follow_the_copies_its_uplink_carries() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let id = s.content_id();
    // 250 ms pieces of 64 KiB: 256 KiB/s.
    let payload = vec![7u8; 64 << 10];
    for i in 0..4 {
        let h = PieceHeader::sign(&key, &id, i, 1, 250_000, 0, &payload);
        s.on_piece_added(h, crate::live::block_hashes(&payload), t0);
    }
    assert_eq!(s.slots(), 1, "nothing measured yet");
    // An uplink that carries two and a half copies: 4 blocks per 100 ms whoever asks (the
    // rest are reported not sent), past two rechokes.
    let mut t = t0;
    for k in 1..=3 {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Interested, t0);
    }
    drain(&mut s);
    for _ in 0..70 {
        t += Duration::from_millis(100);
        for k in 1..=3 {
            for begin in [0, BLOCK_LEN] {
                let b = BlockRef {
                    index: 0,
                    begin,
                    len: BLOCK_LEN,
                };
                s.on_message(k, Message::Request(b), t);
            }
        }
        let mut room = 4;
        while let Some(a) = s.poll_action() {
            if let Action::SendBlock { peer, block, .. } = a {
                s.on_block_sent(peer, block, room > 0);
                room -= 1;
            }
        }
        s.handle_timeout(t);
        drain(&mut s);
    }
    assert_eq!(s.slots(), 2);
    // Idle for a while: back to one.
    for n in 3..12 {
        s.handle_timeout(t0 + serve::RECHOKE_EVERY * n);
        drain(&mut s);
    }
    assert_eq!(s.slots(), 1);
}

/// Peer `k` asks for the first 5 bytes of piece `index` at `at`; every block the swarm hands
/// out is reported sent. True when `k`'s was among them.
fn served(s: &mut LiveSwarm, k: PeerKey, index: u32, at: Instant) -> bool {
    let block = BlockRef {
        index,
        begin: 0,
        len: 5,
    };
    s.on_message(k, Message::Request(block), at);
    let acts = drain(s);
    for a in &acts {
        if let Action::SendBlock { peer, block, .. } = a {
            s.on_block_sent(*peer, *block, true);
        }
    }
    acts.iter()
        .any(|a| matches!(a, Action::SendBlock { peer, .. } if *peer == k))
}

/// The source's copy cap holds whoever asks, the first wave included: a copy counts when a
/// peer asks for it, so a first-wave peer that asks after both copies went is refused (relays
/// have the piece by then). Letting the first wave past the cap took the source to 3.5x the
/// bitrate at 1,000 simulated viewers.
#[test]
fn the_source_serves_each_piece_at_most_source_copies_times() {
    let (key, mut s) = setup();
    s.config.source = true;
    let t0 = Instant::now();
    for k in 1..=4 {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Interested, t0);
    }
    drain(&mut s);
    add_piece(&mut s, &key, 0, b"piece", t0);
    let wave = announced_to(&drain(&mut s), 0);
    assert_eq!(wave.len(), 2);
    let others: Vec<PeerKey> = (1..=4).filter(|k| !wave.contains(k)).collect();
    let ask = |s: &mut LiveSwarm, k: PeerKey| served(s, k, 0, t0);
    assert!(ask(&mut s, others[0]), "a copy for whoever asks first");
    assert!(ask(&mut s, wave[0]), "the second copy");
    assert!(
        ask(&mut s, wave[0]),
        "the same peer again (a block asked twice)"
    );
    assert!(
        !ask(&mut s, wave[1]),
        "two copies went: even the first wave is refused"
    );
    assert!(!ask(&mut s, others[1]));
}

/// The source remembered whom it served only for the newest 64 pieces it was asked for, so a
/// laggard more than 64 pieces behind could take any number of copies of an old piece: nine
/// of one piece, the source at 3.3x the bitrate, at 1,000 simulated viewers whose delays had
/// grown past 16 s. Now the memory spans the window.
#[test]
fn the_copy_cap_holds_for_pieces_far_behind_the_edge() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let params = LiveParams {
        name: "t".into(),
        pubkey: key.verifying_key().to_bytes(),
        piece_duration_ms: 100,
        max_piece_length: 1 << 20,
        window_s: 30,
    };
    let config = LiveConfig {
        source: true,
        ..LiveConfig::default()
    };
    let mut s = LiveSwarm::with_info(Bytes::from(params.info_bytes()), config).unwrap();
    let t0 = Instant::now();
    for k in 1..=4 {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Interested, t0);
    }
    for i in 0..100 {
        add_piece(&mut s, &key, i, b"piece", t0);
    }
    drain(&mut s);
    let later = t0 + Duration::from_secs(10);
    // One peer catching up asks for a hundred newer pieces first.
    for i in 1..100 {
        assert!(served(&mut s, 4, i, later));
    }
    let copies = (1..=3).filter(|&k| served(&mut s, k, 0, later)).count();
    assert_eq!(copies, s.config.source_copies);
}

/// Blocks `0..n` of piece `index`, whole.
fn blocks(index: u32, n: u32) -> impl Iterator<Item = BlockRef> {
    (0..n).map(move |i| BlockRef {
        index,
        begin: i * BLOCK_LEN,
        len: BLOCK_LEN,
    })
}

/// A choke ends what a peer may ask, not a piece it is getting: requests queued for a piece
/// we started sending it are still served, the rest rejected (BEP 6 lets a choking peer
/// serve). Found in the simulator at 5 Mbit/s (ten blocks a piece): a piece cut off mid-way
/// was one its holder could not finish from us, and at the source, whose copies are capped,
/// one nobody could finish at all.
#[test]
fn a_choke_finishes_the_piece_on_its_way_and_refuses_the_rest() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let payload = vec![5u8; 20 * BLOCK_LEN as usize];
    for i in 0..2 {
        add_piece(&mut s, &key, i, &payload, t0);
    }
    ready_peer(&mut s, 1, t0);
    s.on_message(1, Message::Interested, t0);
    drain(&mut s);
    assert!(!s.peers[&1].up.am_choking);
    for b in blocks(0, 20).chain(blocks(1, 4)) {
        s.on_message(1, Message::Request(b), t0);
    }
    let handed: Vec<BlockRef> = drain(&mut s)
        .into_iter()
        .filter_map(|a| match a {
            Action::SendBlock { block, .. } => Some(block),
            _ => None,
        })
        .collect();
    assert_eq!(handed.len(), s.config.max_reads_total);
    assert!(handed.iter().all(|b| b.index == 0));
    s.set_choking(1, true, t0);
    let acts = drain(&mut s);
    let rejected: Vec<BlockRef> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Send(1, Message::Reject(b)) => Some(*b),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, blocks(1, 4).collect::<Vec<_>>(), "{acts:?}");
    for b in handed {
        s.on_block_sent(1, b, true);
    }
    let rest: Vec<BlockRef> = drain(&mut s)
        .into_iter()
        .filter_map(|a| match a {
            Action::SendBlock { peer: 1, block, .. } => Some(block),
            _ => None,
        })
        .collect();
    assert_eq!(rest, blocks(0, 20).skip(16).collect::<Vec<_>>());
}

/// The source's rechoke keeps the holders of its copies of the newest pieces unchoked: a
/// copy holder choked mid-piece asks the source no more, and the copy cap refuses everyone
/// else, so the blocks it had not asked for reached nobody. In the simulator (5 Mbit/s, ten
/// blocks a piece, rechokes every 3 s) the piece in flight at each rechoke — one in twelve —
/// was missing at every viewer: continuity 74 % with uplinks to spare, 99 % since.
#[test]
fn the_source_keeps_the_holders_of_copies_on_their_way_unchoked() {
    let (key, mut s) = setup();
    s.config.source = true;
    let t0 = Instant::now();
    for k in 1..=6 {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Interested, t0);
    }
    s.handle_timeout(t0);
    drain(&mut s);
    // Pieces go out just before the next rechoke; each first wave asks for the first eight of
    // ten blocks (as many as a requester puts in flight at first).
    let payload = vec![9u8; 10 * BLOCK_LEN as usize];
    let t1 = t0 + serve::RECHOKE_EVERY - Duration::from_millis(150);
    for i in 0..3 {
        add_piece(&mut s, &key, i, &payload, t1);
        for k in announced_to(&drain(&mut s), i) {
            for b in blocks(i, 8) {
                s.on_message(k, Message::Request(b), t1);
            }
        }
        for a in drain(&mut s) {
            if let Action::SendBlock { peer, block, .. } = a {
                s.on_block_sent(peer, block, true);
            }
        }
    }
    let holders: BTreeSet<PeerKey> = s.served_to.values().flatten().copied().collect();
    assert!(holders.len() > s.slots(), "{holders:?}");
    s.handle_timeout(t0 + serve::RECHOKE_EVERY);
    drain(&mut s);
    for k in &holders {
        assert!(!s.peers[k].up.am_choking, "copy holder {k} was choked");
    }
    // Once the copies are old, the usual slots again.
    s.handle_timeout(t0 + serve::RECHOKE_EVERY * 2);
    drain(&mut s);
    assert!(s.unchoked() <= s.slots() + 1);
}

/// A choke ends new pieces, not one on its way, on both sides of a connection: our scheduler
/// asks a peer that choked us for the rest of a piece it sent us part of (and nothing else),
/// and an uploader serves a peer it choked the rest of a piece it started sending it (and
/// refuses other pieces). Requests in flight are capped below a 5 Mbit/s piece's ten blocks,
/// so before this the last blocks of a piece cut off by a choke were never asked for; the
/// relay held a piece it could neither finish nor pass on (simulator, 100 viewers, 1–5 ms
/// RTT: continuity 96.6 → 99.4 %).
#[test]
fn a_piece_on_its_way_is_finished_across_a_choke() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let id = s.content_id();
    let payload: Vec<u8> = (0..10 * BLOCK_LEN).map(|i| (i % 251) as u8).collect();
    let h0 = PieceHeader::sign(&key, &id, 0, 1, 1, 0, &payload);
    let h1 = PieceHeader::sign(&key, &id, 1, 1, 1, 0, &payload);
    ready_peer(&mut s, 1, t0);
    announce(&mut s, 1, vec![h0, h1], t0);
    s.on_message(1, Message::Unchoke, t0);
    let asked = requested(&drain(&mut s));
    assert_eq!(asked.len(), s.config.min_outstanding, "{asked:?}");
    assert!(asked.iter().all(|&(_, i)| i == 0), "{asked:?}");
    send_hashes(&mut s, 1, 0, &payload, t0);
    send_block(&mut s, 1, 0, &payload, 0, t0);
    assert_eq!(requested(&drain(&mut s)), vec![(1, 0)], "block 8");
    s.on_message(1, Message::Choke, t0);
    drain(&mut s);
    // The requests in flight stay (BEP 6); as they come in, the rest of piece 0 is asked
    // of the peer that choked us, and nothing of piece 1.
    let mut later = Vec::new();
    for i in 1..8 {
        send_block(&mut s, 1, 0, &payload, i, t0);
        later.extend(requested(&drain(&mut s)));
    }
    assert_eq!(later, vec![(1, 0)], "block 9, after the choke");
    for i in 8..10 {
        send_block(&mut s, 1, 0, &payload, i, t0);
    }
    let acts = drain(&mut s);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::PieceComplete { header, .. } if header.index == 0)),
        "{acts:?}"
    );
    assert!(requested(&acts).is_empty(), "piece 1 waits for an unchoke");

    // The uploader's side: peer 2 got the first block of piece 0, then was choked.
    ready_peer(&mut s, 2, t0);
    s.on_message(2, Message::Interested, t0);
    drain(&mut s);
    s.on_piece_checked(0, true, t0);
    s.on_piece_added(h1, crate::live::block_hashes(&payload), t0);
    let ask = |s: &mut LiveSwarm, b: BlockRef| {
        s.on_message(2, Message::Request(b), t0);
        let acts = drain(s);
        for a in &acts {
            if let Action::SendBlock { peer, block, .. } = a {
                s.on_block_sent(*peer, *block, true);
            }
        }
        acts
    };
    let mut first = blocks(0, 1);
    let acts = ask(&mut s, first.next().unwrap());
    assert!(acts.iter().any(|a| matches!(a, Action::SendBlock { .. })));
    s.set_choking(2, true, t0);
    drain(&mut s);
    let acts = ask(&mut s, blocks(0, 2).nth(1).unwrap());
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::SendBlock { peer: 2, .. })),
        "the rest of piece 0: {acts:?}"
    );
    let acts = ask(&mut s, blocks(1, 1).next().unwrap());
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Send(2, Message::Reject(_)))),
        "a new piece is refused: {acts:?}"
    );
    // Within a budget: a choked peer cannot keep pulling a piece it once started.
    let again = (0..100)
        .filter(|_| {
            ask(&mut s, blocks(0, 2).nth(1).unwrap())
                .iter()
                .any(|a| matches!(a, Action::SendBlock { peer: 2, .. }))
        })
        .count();
    assert_eq!(again as u32, serve::FINISH_BUDGET - 1);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn live_messages_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = LiveMsg::decode(&data);
            let _ = PieceHeader::decode(&data);
        }

        #[test]
        fn have_round_trips(fields in proptest::collection::vec(
            (any::<u32>(), any::<u64>(), any::<u32>(), any::<u8>(), any::<u32>()), 0..20)) {
            let hs: Vec<PieceHeader> = fields.iter().map(|&(index, ts, d, flags, length)| {
                PieceHeader { index, timestamp_us: ts, duration_us: d, flags, length,
                    root: [index as u8; 32], signature: [flags; 64] }
            }).collect();
            let m = LiveMsg::Have(hs);
            prop_assert_eq!(LiveMsg::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn hashes_round_trip(index in any::<u32>(), seeds in proptest::collection::vec(
            any::<u8>(), 1..=crate::live::MAX_BLOCKS)) {
            let hashes: Vec<_> = seeds.iter().map(|&b| [b; 32]).collect();
            let m = LiveMsg::Hashes { index, hashes };
            prop_assert_eq!(LiveMsg::decode(&m.encode()).unwrap(), m);
        }

        /// Whatever a peer sends, the swarm neither panics nor grows past its caps.
        #[test]
        fn garbage_from_a_peer_is_survived(msgs in proptest::collection::vec(
            (0u8..7, any::<u32>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)),
            0..60)) {
            let (key, mut s) = setup();
            let now = Instant::now();
            ready_peer(&mut s, 1, now);
            let id = s.content_id();
            for (kind, a, b, bytes) in msgs {
                let msg = match kind {
                    0 => Message::Extended { id: OUR_PC_LIVE_ID, payload: bytes.into() },
                    1 => Message::Request(BlockRef { index: a % 8, begin: b % 100_000, len: b % 70_000 }),
                    2 => Message::Piece { index: a % 8, begin: b % 100_000, data: bytes.into() },
                    3 => {
                        let h = PieceHeader::sign(&key, &id, a % 64, 1, 1, 0, &bytes);
                        Message::Extended { id: OUR_PC_LIVE_ID, payload: LiveMsg::Have(vec![h]).encode() }
                    }
                    4 => Message::Extended { id: ext::OUR_UT_METADATA_ID, payload: bytes.into() },
                    5 => {
                        let hashes = bytes.chunks(32).map(|c| [c[0]; 32]).collect();
                        let m = LiveMsg::Hashes { index: a % 64, hashes };
                        Message::Extended { id: OUR_PC_LIVE_ID, payload: m.encode() }
                    }
                    _ => Message::Unchoke,
                };
                s.on_message(1, msg, now);
                s.handle_timeout(now);
                while s.poll_action().is_some() {}
                // Whatever was due has been done: no deadline is left in the past.
                prop_assert!(s.poll_timeout().is_none_or(|t| t > now));
            }
            prop_assert!(s.headers.len() <= 2 * s.params().unwrap().window_pieces() as usize + 1);
            prop_assert!(s.downloads.len() <= s.config.max_in_progress);
        }
    }
}

/// A peer refusing (BEP 6 reject) the blocks of many pieces is not asked for them again while
/// its refusals last. The refusal memory held one entry per refused *block* in 64 places, so
/// the refusals of 20 four-block pieces pushed out the oldest at once and those pieces were
/// asked again, and refused again, in a loop (seen in the simulator: 700,000 REJECTs from a
/// source in 40 s). It now keeps one entry per piece.
#[test]
fn a_peer_refusing_many_pieces_is_not_asked_again_in_a_loop() {
    let (key, mut s) = setup();
    let t0 = Instant::now();
    let id = s.content_id();
    let payload = vec![7u8; 4 * BLOCK_LEN as usize];
    let hs: Vec<PieceHeader> = (0..20)
        .map(|i| PieceHeader::sign(&key, &id, i, 1, 1, 0, &payload))
        .collect();
    s.set_playhead(Some(0), t0);
    ready_peer(&mut s, 1, t0);
    s.on_message(1, Message::Unchoke, t0);
    announce(&mut s, 1, hs, t0);
    let mut asked = 0;
    for _ in 0..1000 {
        let requests: Vec<BlockRef> = drain(&mut s)
            .into_iter()
            .filter_map(|a| match a {
                Action::Send(1, Message::Request(b)) => Some(b),
                _ => None,
            })
            .collect();
        if requests.is_empty() {
            break;
        }
        asked += requests.len();
        for b in requests {
            s.on_message(1, Message::Reject(b), t0);
        }
    }
    assert!(
        asked >= 64,
        "the test needs more refusals than places: {asked}"
    );
    assert!(
        asked <= 20 * 4,
        "{asked} requests for 80 blocks, all refused"
    );
}

/// The source gives its slots to peers others can dial (they said so in their extension
/// handshake, or we dialled them) before peers behind NAT, whoever asked first: its copies are
/// the roots of the relay tree, and a root every viewer can connect to feeds more of them.
/// A viewer's own handshake tells whether it is reachable, again when that changes.
#[test]
fn the_source_serves_reachable_peers_first() {
    let (_, mut s) = setup();
    s.config.source = true;
    let t0 = Instant::now();
    let slots = s.slots() as PeerKey;
    // Behind NAT: the first `slots + 1` to ask (the slots and the optimistic one).
    let natted = slots + 1;
    for k in 1..=natted {
        ready_peer(&mut s, k, t0);
        s.on_message(k, Message::Interested, t0);
    }
    drain(&mut s);
    let reachable = [natted + 1, natted + 2];
    for (i, &k) in reachable.iter().enumerate() {
        ready_peer(&mut s, k, t0);
        if i == 0 {
            // It says so.
            let mut ext = ExtHandshake::ours(None, None);
            ext.m.push((PC_LIVE.to_string(), OUR_PC_LIVE_ID));
            ext.reachable = true;
            s.on_message(
                k,
                Message::Extended {
                    id: ext::EXT_HANDSHAKE_ID,
                    payload: ext.encode(),
                },
                t0,
            );
        } else {
            // We dialled it.
            let route = Route {
                dialled: true,
                ..Route::default()
            };
            s.set_route(k, route);
        }
        s.on_message(k, Message::Interested, t0);
    }
    drain(&mut s);
    s.handle_timeout(t0 + serve::RECHOKE_EVERY);
    let acts = drain(&mut s);
    for k in reachable {
        assert!(
            acts.contains(&Action::Send(k, Message::Unchoke)),
            "reachable peer {k} not served: {acts:?}"
        );
    }
    let infos = s.peer_infos();
    assert_eq!(infos.iter().filter(|p| p.reachable).count(), 2);
    // A peer we reached through an introduction is not known to be reachable.
    let punched = Route {
        dialled: true,
        holepunched: true,
        utp: true,
    };
    s.set_route(reachable[1], punched);
    assert_eq!(s.peer_infos().iter().filter(|p| p.reachable).count(), 1);

    // Our own reachability goes out in a new extension handshake to every peer.
    s.set_reachable(true);
    let sent: Vec<PeerKey> = drain(&mut s)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send(k, Message::Extended { id: 0, payload }) => {
                let hs = ExtHandshake::decode(&payload).unwrap();
                hs.reachable.then_some(k)
            }
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), natted as usize + 2);
    s.set_reachable(true);
    assert!(drain(&mut s).is_empty(), "no change, no message");
}
