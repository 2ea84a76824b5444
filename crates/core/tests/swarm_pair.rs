//! Scenario tests of the swarm state machine: several `Swarm`s joined by in-memory queues and a
//! virtual clock, with the engine's duties (storing blocks, hashing pieces, reading blocks)
//! played by the harness. Runs in milliseconds and the same every time.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use peercdn_core::swarm::{Action, PeerKey, Swarm, SwarmConfig};
use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::{Bitfield, DisconnectReason, InfoHash, PeerId};
use sha1::{Digest, Sha1};

mod common;
use common::{alter, MetaMode};

const PIECE: u32 = 64 * 1024;

struct Content {
    data: Vec<u8>,
    hashes: Vec<[u8; 20]>,
    info: Bytes,
    hash: InfoHash,
}

fn content(len: usize) -> Content {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 1000) as u8).collect();
    let hashes: Vec<[u8; 20]> = data
        .chunks(PIECE as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    // Any bytes serve as the "info dict" for the swarm: it only hashes and serves them.
    let info =
        Bytes::from(format!("d6:lengthi{len}e4:name1:x12:piece lengthi{PIECE}ee").into_bytes());
    let hash = InfoHash::of_info(&info);
    Content {
        data,
        hashes,
        info,
        hash,
    }
}

struct Node {
    swarm: Swarm,
    store: Vec<u8>,
    have_meta: bool,
    corrupt: bool,
    banned: Vec<PeerKey>,
    /// Every disconnect it asked for, with the reason.
    dropped: Vec<(PeerKey, DisconnectReason)>,
    completed: bool,
    discovered: Vec<SocketAddr>,
    /// How its outgoing metadata messages are altered.
    meta: MetaMode,
}

/// Links: (node, key) → (other node, other key).
struct Net {
    nodes: Vec<Node>,
    links: BTreeMap<(usize, PeerKey), (usize, PeerKey)>,
    wires: VecDeque<(usize, PeerKey, Message)>,
    now: Instant,
    c: Content,
}

impl Net {
    fn new(c: Content) -> Self {
        Net {
            nodes: vec![],
            links: BTreeMap::new(),
            wires: VecDeque::new(),
            now: Instant::now(),
            c,
        }
    }

    fn add(&mut self, pieces: Option<Bitfield>) -> usize {
        let cfg = SwarmConfig {
            seed: self.nodes.len() as u64 + 1,
            pex_interval: Some(Duration::from_secs(2)),
            listen_port: Some(1000 + self.nodes.len() as u16),
            ..SwarmConfig::default()
        };
        let mut swarm = Swarm::new(self.c.hash, cfg);
        let n = self.c.hashes.len() as u32;
        let mut store = vec![0u8; self.c.data.len()];
        let have_meta = pieces.is_some();
        if let Some(have) = pieces {
            for i in have.ones() {
                let s = (i * PIECE) as usize;
                let e = (s + PIECE as usize).min(store.len());
                store[s..e].copy_from_slice(&self.c.data[s..e]);
            }
            swarm.set_metadata(
                self.c.info.clone(),
                PIECE,
                self.c.data.len() as u64,
                n,
                &have,
                self.now,
            );
        }
        self.nodes.push(Node {
            swarm,
            store,
            have_meta,
            corrupt: false,
            banned: vec![],
            dropped: vec![],
            completed: false,
            discovered: vec![],
            meta: MetaMode::Honest,
        });
        self.nodes.len() - 1
    }

    fn connect(&mut self, a: usize, b: usize) {
        let ka = 100 + b as u64;
        let kb = 100 + a as u64;
        self.links.insert((a, ka), (b, kb));
        self.links.insert((b, kb), (a, ka));
        // Node i listens on 127.0.0.1:(1000 + i); `a` dials `b`, so `b` sees an ephemeral port
        // and learns `a`'s listen port from its extension handshake.
        let listen = |i: usize| SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16));
        let hs = |i: usize| Handshake::ours(self.c.hash, PeerId::ours([i as u8; 12]));
        let (ha, hb) = (hs(a), hs(b));
        self.nodes[a].swarm.add_peer(ka, listen(b), &hb, self.now);
        self.nodes[a].swarm.set_listen_addr(ka, listen(b));
        let ephemeral = SocketAddr::from(([127, 0, 0, 1], 40000 + a as u16));
        self.nodes[b].swarm.add_peer(kb, ephemeral, &ha, self.now);
    }

    /// Runs until complete, quiet with no timer left, or `steps` actions; every message goes through the real codec.
    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(a) = self.nodes[i].swarm.poll_action() {
                    progressed = true;
                    self.exec(i, a);
                }
            }
            if let Some((to, key, msg)) = self.wires.pop_front() {
                progressed = true;
                let mut buf = BytesMut::new();
                wire::encode(&msg, &mut buf);
                let msg = wire::decode(&mut buf, 1 << 20).unwrap().unwrap();
                self.nodes[to].swarm.on_message(key, msg, self.now);
            }
            if !progressed {
                if self.nodes.iter().all(|n| n.swarm.is_complete()) {
                    return;
                }
                // Quiet: jump the virtual clock to the earliest node's next timeout.
                let Some(t) = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.swarm.poll_timeout())
                    .min()
                else {
                    return;
                };
                self.now = self.now.max(t);
                let now = self.now;
                for n in &mut self.nodes {
                    if n.swarm.poll_timeout().is_some_and(|t| t <= now) {
                        n.swarm.handle_timeout(now);
                    }
                }
            }
        }
    }

    fn exec(&mut self, i: usize, a: Action) {
        match a {
            Action::Send(key, msg) => {
                if let Some(&(to, tkey)) = self.links.get(&(i, key)) {
                    let msg = alter(self.nodes[i].meta, msg);
                    self.wires.push_back((to, tkey, msg));
                }
            }
            Action::Disconnect { peer, reason } => {
                self.nodes[i].dropped.push((peer, reason));
                if reason.ban() {
                    self.nodes[i].banned.push(peer);
                }
                if let Some((to, tkey)) = self.links.remove(&(i, peer)) {
                    self.links.remove(&(to, tkey));
                    self.nodes[to].swarm.remove_peer(tkey);
                }
            }
            Action::Store { index, begin, data } => {
                let s = (index * PIECE + begin) as usize;
                self.nodes[i].store[s..s + data.len()].copy_from_slice(&data);
            }
            Action::Verify(index) => {
                let s = (index * PIECE) as usize;
                let e = (s + PIECE as usize).min(self.c.data.len());
                let ok = <[u8; 20]>::from(Sha1::digest(&self.nodes[i].store[s..e]))
                    == self.c.hashes[index as usize];
                self.nodes[i].swarm.on_piece_verified(index, ok, self.now);
            }
            Action::Read { peer, block } => {
                let s = (block.index * PIECE + block.begin) as usize;
                let mut data = self.nodes[i].store[s..s + block.len as usize].to_vec();
                if self.nodes[i].corrupt {
                    data[0] ^= 0xff;
                }
                if let Some(&(to, tkey)) = self.links.get(&(i, peer)) {
                    let msg = Message::Piece {
                        index: block.index,
                        begin: block.begin,
                        data: data.into(),
                    };
                    self.wires.push_back((to, tkey, msg));
                }
                self.nodes[i].swarm.on_block_sent(peer, block, true);
            }
            Action::MetadataReceived(bytes) => {
                assert_eq!(bytes, self.c.info);
                let n = self.c.hashes.len() as u32;
                self.nodes[i].have_meta = true;
                self.nodes[i].swarm.set_metadata(
                    bytes,
                    PIECE,
                    self.c.data.len() as u64,
                    n,
                    &Bitfield::new(n),
                    self.now,
                );
            }
            Action::Discovered(peers) => self.nodes[i].discovered.extend(peers),
            Action::Completed => self.nodes[i].completed = true,
        }
    }
}

fn halves(n: u32, first: bool) -> Bitfield {
    let mut b = Bitfield::new(n);
    for i in 0..n {
        b.set(i, (i < n / 2) == first);
    }
    b
}

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
