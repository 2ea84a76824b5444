//! Scenario tests of the swarm state machine: several `Swarm`s joined by in-memory links and a
//! virtual clock (`peercdn_testkit::vod`), with the engine's duties (storing blocks, hashing
//! pieces, reading blocks) played by the harness. Runs in milliseconds and the same every time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use peercdn_core::swarm::{Action, PeerKey, Swarm, SwarmConfig};
use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::{Bitfield, DisconnectReason, PeerId};
use peercdn_testkit::netem::LinkSpec;
use peercdn_testkit::vod::{content, halves, Net, PIECE};

mod common;
use common::MetaMode;

#[test]
fn seed_to_leecher() {
    let c = content(1_000_003);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    let seed = net.add(Some(Bitfield::full(n)));
    let leech = net.add(Some(Bitfield::new(n)));
    net.connect(seed, leech);
    net.run(200_000);
    assert!(net.nodes[leech].completed);
    assert_eq!(net.nodes[leech].store, net.c.data);
    let st = net.nodes[leech].swarm.stats();
    assert_eq!(st.downloaded, net.c.data.len() as u64);
    assert_eq!(st.wasted, 0);
}

/// Two peercdn seeds stay connected once the download is done: both speak `pc_search`, and
/// catalogue records travel on such connections (before, "both seeds" closed it at once and
/// a node that had finished every download had no search neighbours left — found by
/// `scripts/bench-search.sh`, where nodes averaged one peer to ask).
#[test]
fn seeds_that_speak_pc_search_stay_connected() {
    let c = content(300_007);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    let seed = net.add(Some(Bitfield::full(n)));
    let leech = net.add(Some(Bitfield::new(n)));
    net.connect(seed, leech);
    net.run(200_000);
    assert!(net.nodes[leech].completed);
    for node in [seed, leech] {
        let sw = &net.nodes[node].swarm;
        assert_eq!(sw.peer_count(), 1, "node {node}");
        assert_eq!(sw.stats().disconnects.get("both_seeds"), 0, "node {node}");
    }
}

#[test]
fn magnet_fetches_metadata_then_data() {
    let c = content(300_000);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    let seed = net.add(Some(Bitfield::full(n)));
    let leech = net.add(None);
    net.connect(seed, leech);
    net.run(200_000);
    assert!(net.nodes[leech].have_meta);
    assert!(net.nodes[leech].completed);
    assert_eq!(net.nodes[leech].store, net.c.data);
}

#[test]
fn two_halves_and_an_empty_peer_all_finish() {
    let c = content(2_000_000);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    let a = net.add(Some(halves(n, true)));
    let b = net.add(Some(halves(n, false)));
    let e = net.add(Some(Bitfield::new(n)));
    net.connect(a, b);
    net.connect(a, e);
    net.connect(b, e);
    net.run(1_000_000);
    for i in [a, b, e] {
        assert!(net.nodes[i].completed, "node {i}");
        assert_eq!(net.nodes[i].store, net.c.data, "node {i}");
    }
}

#[test]
fn corrupt_peer_is_banned_and_piece_fetched_elsewhere() {
    let c = content(500_000);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    let bad = net.add(Some(Bitfield::full(n)));
    net.nodes[bad].corrupt = true;
    let good = net.add(Some(Bitfield::full(n)));
    let leech = net.add(Some(Bitfield::new(n)));
    net.connect(bad, leech);
    net.connect(good, leech);
    net.run(1_000_000);
    assert!(net.nodes[leech].completed);
    assert_eq!(net.nodes[leech].store, net.c.data);
    assert_eq!(net.nodes[leech].banned, vec![100 + bad as u64]);
    assert!(net.nodes[leech].swarm.stats().hash_failures >= 1);
}

#[test]
fn bad_messages_disconnect_only_that_peer() {
    let c = content(100_000);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    let seed = net.add(Some(Bitfield::full(n)));
    let leech = net.add(Some(Bitfield::new(n)));
    net.connect(seed, leech);
    let now = net.now;
    // HAVE out of range, a bitfield of the wrong size, a request past the piece end.
    for msg in [
        Message::Have(n + 5),
        Message::Bitfield(Bytes::from_static(&[0xff; 9])),
        Message::Request(wire::BlockRef {
            index: 0,
            begin: PIECE - 10,
            len: 100,
        }),
    ] {
        let mut s = Swarm::new(net.c.hash, SwarmConfig::default());
        s.set_metadata(
            net.c.info.clone(),
            PIECE,
            net.c.data.len() as u64,
            n,
            &Bitfield::full(n),
            now,
        );
        let hs = Handshake::ours(net.c.hash, PeerId::ours([9; 12]));
        let addr: SocketAddr = "127.0.0.1:2".parse().unwrap();
        s.add_peer(1, addr, &hs, now);
        s.add_peer(2, addr, &hs, now);
        s.on_message(1, msg, now);
        let mut disconnected = vec![];
        while let Some(a) = s.poll_action() {
            if let Action::Disconnect { peer, .. } = a {
                disconnected.push(peer);
            }
        }
        assert_eq!(disconnected, vec![1]);
        assert_eq!(s.peer_count(), 1);
    }
}

/// BEP 11: B is connected to A and C; after a PEX interval, A learns C's listen address from B
/// (C dialled B, so B knows it only from C's extension handshake) and C learns A's.
#[test]
fn peer_exchange_introduces_peers() {
    let c = content(300_000);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    // B has half, so nobody completes (a complete pair would part as "both seeds").
    let a = net.add(Some(Bitfield::new(n)));
    let b = net.add(Some(halves(n, true)));
    let c = net.add(Some(Bitfield::new(n)));
    net.connect(a, b);
    net.connect(c, b);
    net.run(20_000);
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16));
    assert!(
        net.nodes[a].discovered.contains(&addr(c)),
        "A learned C: {:?}",
        net.nodes[a].discovered
    );
    assert!(
        net.nodes[c].discovered.contains(&addr(a)),
        "C learned A: {:?}",
        net.nodes[c].discovered
    );
    assert!(
        !net.nodes[a].discovered.contains(&addr(a)),
        "never told about itself"
    );
}

/// Before the shared BEP 9 layer, the VoD swarm answered a metadata REJECT with "try someone
/// else on the next tick" and nothing ever retried: a magnet download whose only peer did not
/// have the dictionary yet waited for another peer for ever. Now the peer is asked again after
/// a backoff, and the download completes once it can serve.
#[test]
fn magnet_completes_once_its_only_peer_stops_rejecting_metadata() {
    let c = content(300_000);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    let seed = net.add(Some(Bitfield::full(n)));
    let leech = net.add(None);
    net.nodes[seed].meta = MetaMode::Rejects;
    net.connect(seed, leech);
    net.run(200);
    assert!(!net.nodes[leech].have_meta, "rejected so far");
    net.nodes[seed].meta = MetaMode::Honest;
    net.run(200_000);
    assert!(net.nodes[leech].have_meta);
    assert!(net.nodes[leech].completed);
    assert_eq!(net.nodes[leech].store, net.c.data);
    assert!(net.nodes[leech]
        .dropped
        .iter()
        .all(|(_, r)| *r == DisconnectReason::BothSeeds));
}

/// A download by ID whose first peer announces a wrong `metadata_size` used to stall for good,
/// even after an honest seeder turned up (tried in the engine: not complete after 60 s): the
/// fetch buffer was sized by the first announcement and peers announcing another size were
/// ignored. Now sizes are candidates settled by the info hash: the liar is dropped (banned when
/// its bytes fail the hash) and the honest size is fetched.
#[test]
fn download_by_id_survives_a_peer_lying_about_the_metadata_size() {
    for (mode, reason) in [
        (MetaMode::LiesAboutSize, DisconnectReason::MetadataWrongSize),
        (
            MetaMode::LiesConsistently,
            DisconnectReason::MetadataMismatch,
        ),
    ] {
        let c = content(300_000);
        let n = c.hashes.len() as u32;
        let mut net = Net::new(c);
        let liar = net.add(Some(Bitfield::full(n)));
        net.nodes[liar].meta = mode;
        let seed = net.add(Some(Bitfield::full(n)));
        let leech = net.add(None);
        net.connect(liar, leech);
        net.run(50);
        // The honest seeder is learned later (PEX, DHT): connected only now.
        net.connect(seed, leech);
        net.run(200_000);
        assert!(net.nodes[leech].completed, "{reason}");
        assert_eq!(net.nodes[leech].store, net.c.data);
        let liar_key = 100 + liar as PeerKey;
        let dropped: Vec<_> = net.nodes[leech]
            .dropped
            .iter()
            .filter(|(_, r)| *r != DisconnectReason::BothSeeds)
            .copied()
            .collect();
        assert_eq!(dropped, vec![(liar_key, reason)]);
        assert_eq!(net.nodes[leech].banned.contains(&liar_key), reason.ban());
    }
}

/// Over a long, narrow link (50 ms each way, 2 MB/s) a leecher still fills the pipe: the
/// requests it keeps in flight cover the bandwidth-delay product, so 1 MB arrives in about the
/// time the rate allows (0.5 s) plus a few round trips, not one round trip per block.
#[test]
fn leecher_fills_a_long_narrow_link() {
    let c = content(1_000_003);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    net.link = LinkSpec::delay(Duration::from_millis(50)).rate(2_000_000);
    let seed = net.add(Some(Bitfield::full(n)));
    let leech = net.add(Some(Bitfield::new(n)));
    let start = net.now;
    net.connect(seed, leech);
    net.run(1_000_000);
    assert!(net.nodes[leech].completed);
    assert_eq!(net.nodes[leech].store, net.c.data);
    let took = net.now - start;
    assert!(took <= Duration::from_secs(2), "took {took:?}");
}

/// Peers that request and never read held a seeder's upload slots: their blocks sat in the
/// engine's writer, and the choker kept them unchoked (rate 0, ties by key) while an honest
/// leecher waited for the optimistic slot (tried: with 40 of them it got nothing in 90 s).
/// Now a peer whose blocks do not drain for `SNUB_AFTER` loses its slot to a waiting peer.
#[test]
fn peers_that_never_read_lose_their_slots_to_a_downloader() {
    let c = content(1_000_003);
    let n = c.hashes.len() as u32;
    let mut net = Net::new(c);
    let seed = net.add(Some(Bitfield::full(n)));
    let fakes: Vec<usize> = (0..20).map(|_| net.add(Some(Bitfield::new(n)))).collect();
    for &f in &fakes {
        net.nodes[f].never_reads = true;
        net.connect(f, seed);
    }
    net.run(2_000);
    let honest = net.add(Some(Bitfield::new(n)));
    net.connect(honest, seed);
    let start = net.now;
    while !net.nodes[honest].swarm.is_complete() && net.now < start + Duration::from_secs(120) {
        net.run(50);
    }
    let took = net.now.saturating_duration_since(start);
    assert!(
        net.nodes[honest].swarm.is_complete(),
        "the downloader is not done after {took:?}"
    );
    eprintln!("the downloader finished after {took:?}");
    assert!(took <= Duration::from_secs(25), "took {took:?}");
}
