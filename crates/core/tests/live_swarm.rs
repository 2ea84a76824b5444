//! Scenario tests of the live swarm: a source and viewers (`LiveSwarm`s) joined by in-memory
//! links on a virtual clock (`peercdn_testkit::live`), every message through the real codec,
//! with the engine's duties (keeping the window, checking payloads, reading blocks) played by
//! the harness.

use std::time::Duration;

use peercdn_core::live::PieceHeader;
use peercdn_core::{DisconnectReason, InfoHash};
use peercdn_testkit::live::{banned_key, payload, Net, PIECE_LEN};
use peercdn_testkit::netem::LinkSpec;

mod common;
use common::MetaMode;

/// A chain and a tree of viewers below one source: every viewer gets every piece.
#[test]
fn chain_and_tree_receive_every_piece() {
    let mut net = Net::new();
    let s = net.add(true);
    let v: Vec<usize> = (0..6).map(|_| net.add(false)).collect();
    // Chain s <- v0 <- v1 <- v2, and a tree below v0: v3, v4; v5 below v3.
    net.connect(v[0], s);
    net.connect(v[1], v[0]);
    net.connect(v[2], v[1]);
    net.connect(v[3], v[0]);
    net.connect(v[4], v[0]);
    net.connect(v[5], v[3]);
    net.run(100, false);
    net.run(5_000, true);
    net.run(1_000, false);
    assert_eq!(net.next_index, 50);
    for &i in &v {
        net.assert_all(i, 0);
        assert!(net.nodes[i].banned.is_empty());
    }
}

/// With viewers that can relay, the source uploads about one or two copies of each piece, not
/// one per viewer.
#[test]
fn source_upload_stays_near_the_bitrate() {
    let mut net = Net::new();
    let s = net.add(true);
    let v: Vec<usize> = (0..10).map(|_| net.add(false)).collect();
    for (n, &a) in v.iter().enumerate() {
        net.connect(a, s);
        for &b in &v[..n] {
            net.connect(a, b);
        }
    }
    net.run(100, false);
    net.run(4_000, true);
    net.run(1_000, false);
    for &i in &v {
        // A relay without a player starts near the edge: the first half second may pass
        // while slots settle.
        net.assert_all(i, 5);
    }
    let produced = u64::from(net.next_index) * PIECE_LEN as u64;
    let up = net.nodes[s].swarm.stats().uploaded;
    let ratio = up as f64 / produced as f64;
    assert!(
        ratio <= 2.05,
        "source uploaded {ratio:.2} copies of each piece to 10 viewers"
    );
    eprintln!("source upload: {ratio:.2} copies per piece");
    let viewers_up: u64 = v.iter().map(|&i| net.nodes[i].swarm.stats().uploaded).sum();
    assert!(viewers_up >= 7 * produced, "viewers relayed {viewers_up}");
}

/// Forged, replayed (conflicting with a held header), foreign headers and an altered payload
/// each get their sender banned while the honest pieces still flow. A validly signed header
/// far beyond what the source's clock allows is ignored, not banned (an honest relay forwards
/// whatever the key signed), and does not move the victim's window.
#[test]
fn bad_senders_are_banned_and_honest_pieces_flow() {
    let mut net = Net::new();
    // Every evil node must get pieces from the source to send them on.
    net.source_slots = Some(8);
    let s = net.add(true);
    let victim = net.add(false);
    let honest = net.add(false);
    let evil: Vec<usize> = (0..4).map(|_| net.add(false)).collect();
    // The victim meets the altered payload first, from the only relay it has (with interest
    // meaning "you announced a piece I lack", a victim that also had the source or a faster
    // relay never needed the corrupting one); then the source, the honest relay and the
    // other evil ones.
    net.connect(honest, s);
    for &e in &evil {
        net.connect(e, s);
        net.connect(honest, e);
    }
    net.nodes[evil[3]].corrupt = true;
    net.connect(victim, evil[3]);
    // The victim plays (a player from the start): it wants every piece, not just the edge.
    let now = net.now;
    net.nodes[victim].swarm.set_playhead(Some(0), now);
    net.run(100, false);
    net.run(1_000, true);
    assert!(
        net.nodes[victim].banned.contains(&banned_key(evil[3])),
        "the corrupting relay was not banned"
    );
    net.connect(victim, s);
    net.connect(victim, honest);
    for &e in &evil[..3] {
        net.connect(victim, e);
    }
    net.run(3_000, true);
    let edge = net.next_index - 1;

    // Forged signature.
    let mut forged = net.header(edge + 1, net.wall_us(), b"evil");
    forged.signature[0] ^= 1;
    let m = net.forged_have(forged);
    net.inject(evil[0], victim, m);
    // Replayed piece: a valid header from long ago, for an index the victim holds.
    let old = net.header(0, net.wall_us() - 3_600_000_000, &payload(0));
    let m = net.forged_have(old);
    net.inject(evil[1], victim, m);
    // Another content ID, same key.
    let other = InfoHash([7; 20]);
    let foreign = PieceHeader::sign(&net.key, &other, edge + 1, net.wall_us(), 1, 0, b"x");
    let m = net.forged_have(foreign);
    net.inject(evil[2], victim, m);
    // Far beyond the edge, validly signed (only the key holder could), relayed by the honest
    // node: ignored, the relay not punished.
    let far = net.header(edge + 100_000, net.wall_us(), b"future");
    let m = net.forged_have(far);
    net.inject(honest, victim, m);

    net.run(3_000, true);
    net.run(1_000, false);
    for (n, &e) in evil.iter().enumerate() {
        assert!(
            net.nodes[victim].banned.contains(&banned_key(e)),
            "evil node {n} was not banned"
        );
    }
    assert_eq!(net.nodes[victim].swarm.stats().banned, 4);
    assert!(!net.nodes[victim].banned.contains(&banned_key(honest)));
    assert!(!net.nodes[victim].banned.contains(&banned_key(s)));
    assert!(net.nodes[victim].swarm.edge() < Some(edge + 1000));
    net.assert_all(victim, 0);
}

/// A viewer that knows only the content ID fetches the info dictionary, then the pieces.
#[test]
fn viewer_joins_by_id_alone() {
    let mut net = Net::new();
    let s = net.add(true);
    let v = net.add(false);
    net.connect(v, s);
    net.run(1_000, true);
    let j = net.add_by_id();
    net.connect(j, v);
    net.run(2_000, true);
    net.run(500, false);
    assert!(net.nodes[j].ready);
    assert!(net.nodes[j].swarm.params().is_some());
    // It starts near the edge and keeps up from there.
    let first = *net.nodes[j].store.keys().next().expect("some pieces");
    assert!(first >= 5, "started at {first}");
    net.assert_all(j, first);
    net.assert_all(v, 0);
}

/// Two viewers that both know only the ID, the second connected only to the first before the
/// first has the metadata: when the first gets it, it tells the second, which then fetches it
/// too (a repeated extension handshake).
#[test]
fn id_only_viewers_chained_before_anyone_has_metadata() {
    let mut net = Net::new();
    let s = net.add(true);
    let a = net.add_by_id();
    let b = net.add_by_id();
    // b dials a while a knows nothing yet; only then does a reach the source.
    net.connect(b, a);
    net.run(300, false);
    net.connect(a, s);
    net.run(2_000, true);
    net.run(500, false);
    assert!(net.nodes[a].ready && net.nodes[b].ready);
    let first = *net.nodes[b].store.keys().next().expect("b got pieces");
    net.assert_all(b, first);
}

/// The live twin of the VoD test: a viewer joining by ID whose first peer announced a wrong
/// `metadata_size` sized its fetch buffer by that claim and ignored every peer announcing the
/// true size, so it never learned the stream even once an honest peer was connected. Now the
/// sizes are settled by the content ID: the liar is dropped and the viewer plays.
#[test]
fn viewer_by_id_survives_a_peer_lying_about_the_metadata_size() {
    for (mode, reason) in [
        (MetaMode::LiesAboutSize, DisconnectReason::MetadataWrongSize),
        (
            MetaMode::LiesConsistently,
            DisconnectReason::MetadataMismatch,
        ),
    ] {
        let mut net = Net::new();
        let s = net.add(true);
        let liar = net.add(false);
        net.nodes[liar].meta = mode;
        let honest = net.add(false);
        net.connect(liar, s);
        net.connect(honest, s);
        net.run(1_000, true);
        let j = net.add_by_id();
        net.connect(j, liar);
        net.run(500, true);
        // The honest peer is learned later (PEX, DHT): connected only now.
        net.connect(j, honest);
        net.run(2_000, true);
        net.run(500, false);
        assert!(net.nodes[j].ready, "{reason}");
        let first = *net.nodes[j].store.keys().next().expect("some pieces");
        net.assert_all(j, first);
        let liar_key = banned_key(liar);
        assert!(
            net.nodes[j].dropped.contains(&(liar_key, reason)),
            "{:?}",
            net.nodes[j].dropped
        );
        assert_eq!(net.nodes[j].banned.contains(&liar_key), reason.ban());
        assert_eq!(
            net.nodes[j].swarm.stats().disconnects.get(reason.label()),
            1
        );
    }
}

/// Asserts nobody banned anybody.
fn assert_no_bans(net: &Net) {
    for (i, n) in net.nodes.iter().enumerate() {
        assert!(n.banned.is_empty(), "node {i} banned {:?}", n.banned);
        assert_eq!(n.swarm.stats().banned, 0, "node {i}");
    }
}

/// A viewer paused for 2.5 windows (a laptop lid, SIGSTOP) used to ban its honest peers on
/// resume and never play again: the headers buffered in its sockets had "stale timestamps"
/// and indices "far beyond" its stale edge, which were taken for proof of malice (tried: 0
/// bytes after resume, 2 honest peers banned). Now they are ignored, a fresh header far ahead
/// moves its window, and its player jumps to a recent piece and plays on.
#[test]
fn a_paused_viewer_plays_again_and_bans_nobody() {
    let mut net = Net::new();
    let s = net.add(true);
    let r = net.add(false);
    let v = net.add(false);
    net.connect(r, s);
    net.connect(v, r);
    net.connect(v, s);
    net.nodes[v].player = Some(0);
    net.run(100, false);
    net.run(3_000, true);
    let before = net.nodes[v].played;
    assert!(before >= 25, "played {before} before the pause");
    net.nodes[v].paused = true;
    // 2.5 × the 4 s window.
    net.run(10_000, true);
    let edge = net.next_index - 1;
    net.resume(v);
    net.run(3_000, true);
    assert_no_bans(&net);
    assert!(net.nodes[v].swarm.stats().ignored_headers > 0);
    let played = net.nodes[v].played - before;
    assert!(
        played >= 25,
        "played {played} pieces in the 3 s after the pause"
    );
    net.assert_all(v, edge + 1);
    let at = net.nodes[v].player.unwrap_or(0);
    assert!(
        at + 5 >= net.next_index,
        "player at {at}, edge {}",
        net.next_index
    );
}

/// After 130 s paused, a viewer's peers had dropped it as idle; when it came back it told its
/// relay the headers of what it still held, all older than the relay's window, and its own
/// relay banned it (tried: after a 150 s pause). Now the relay ignores them and serves it.
#[test]
fn a_viewer_back_from_a_long_pause_is_not_banned_by_its_relay() {
    let mut net = Net::new();
    let s = net.add(true);
    let r = net.add(false);
    let v = net.add(false);
    net.connect(r, s);
    net.connect(v, r);
    net.nodes[v].player = Some(0);
    net.run(100, false);
    net.run(2_000, true);
    let before = net.nodes[v].played;
    net.nodes[v].paused = true;
    net.run(130_000, true);
    assert_eq!(
        net.nodes[r].swarm.peer_count(),
        1,
        "the relay dropped the idle viewer"
    );
    net.resume(v);
    net.connect(v, r);
    net.run(3_000, true);
    assert_no_bans(&net);
    assert!(
        net.nodes[r].swarm.stats().ignored_headers > 0,
        "the viewer sent its old headers"
    );
    let played = net.nodes[v].played - before;
    assert!(played >= 20, "played {played} pieces after the pause");
}

/// A relay chain of four viewers below the source over links of 50 ms each way, each capped at
/// 1 MB/s (2.5 times the stream's rate): every viewer still gets every piece from the one it
/// started at, and the last one starts near the edge and keeps up.
#[test]
fn relay_chain_over_slow_links_delivers_every_piece() {
    let mut net = Net::new();
    net.link = LinkSpec::delay(Duration::from_millis(50)).rate(1_000_000);
    let s = net.add(true);
    let v: Vec<usize> = (0..4).map(|_| net.add(false)).collect();
    net.connect(v[0], s);
    for w in v.windows(2) {
        net.connect(w[1], w[0]);
    }
    net.run(100, false);
    net.run(6_000, true);
    net.run(2_000, false);
    assert_eq!(net.next_index, 60);
    for &i in &v {
        let first = *net.nodes[i].store.keys().next().expect("some pieces");
        assert!(first <= 10, "node {i} started at piece {first}");
        net.assert_all(i, first);
        assert!(net.nodes[i].banned.is_empty());
    }
}
