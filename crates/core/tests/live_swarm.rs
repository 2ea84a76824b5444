//! Scenario tests of the live swarm: a source and viewers (`LiveSwarm`s) joined by in-memory
//! queues on a virtual clock, every message through the real codec, with the engine's duties
//! (keeping the window, checking payloads, reading blocks) played by the harness.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use peercdn_core::live::swarm::{Action, LiveConfig, LiveSwarm, PeerKey};
use peercdn_core::live::{LiveMsg, LiveParams, PieceHeader, OUR_PC_LIVE_ID};
use peercdn_core::time::WallClock;
use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::{DisconnectReason, InfoHash, PeerId};

mod common;
use common::{alter, MetaMode};

const PIECE_MS: u64 = 100;
const PIECE_LEN: usize = 40_000;

struct Node {
    swarm: LiveSwarm,
    store: BTreeMap<u32, (PieceHeader, Bytes)>,
    corrupt: bool,
    banned: Vec<PeerKey>,
    /// Every disconnect it asked for, with the reason.
    dropped: Vec<(PeerKey, DisconnectReason)>,
    ready: bool,
    /// How its outgoing metadata messages are altered.
    meta: MetaMode,
    /// Stopped (SIGSTOP, a closed laptop lid): receives nothing, does nothing, its clock
    /// stands still; what is sent to it waits in `inbox`.
    paused: bool,
    inbox: VecDeque<(PeerKey, Message)>,
    /// A local player: the next piece it plays, and how many it played.
    player: Option<u32>,
    played: u32,
}

struct Net {
    key: SigningKey,
    params: LiveParams,
    id: InfoHash,
    nodes: Vec<Node>,
    links: BTreeMap<(usize, PeerKey), (usize, PeerKey)>,
    wires: VecDeque<(usize, PeerKey, Message)>,
    now: Instant,
    /// The wall clock every node derives from the virtual `now`.
    wall: WallClock,
    next_index: u32,
    /// Overrides the source's upload slots (default: `LiveConfig`'s).
    source_slots: Option<usize>,
}

fn payload(index: u32) -> Bytes {
    (0..PIECE_LEN)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8)
        .collect::<Vec<u8>>()
        .into()
}

impl Net {
    fn new() -> Net {
        let key = SigningKey::from_bytes(&[9; 32]);
        let params = LiveParams {
            name: "live test".into(),
            pubkey: key.verifying_key().to_bytes(),
            piece_duration_ms: PIECE_MS as u32,
            max_piece_length: 1 << 20,
            window_s: 4,
        };
        let id = params.content_id();
        let now = Instant::now();
        Net {
            key,
            params,
            id,
            nodes: Vec::new(),
            links: BTreeMap::new(),
            wires: VecDeque::new(),
            now,
            wall: WallClock::new(now, 1_700_000_000_000_000),
            next_index: 0,
            source_slots: None,
        }
    }

    fn config(&self, source: bool) -> LiveConfig {
        let d = LiveConfig::default();
        LiveConfig {
            source,
            listen_port: Some(1000 + self.nodes.len() as u16),
            seed: self.nodes.len() as u64,
            source_slots: self.source_slots.unwrap_or(d.source_slots),
            wall_clock: Some(self.wall),
            ..d
        }
    }

    fn add(&mut self, source: bool) -> usize {
        let swarm = LiveSwarm::with_info(self.params.info_bytes().into(), self.config(source))
            .expect("valid info");
        self.push(swarm, true)
    }

    fn add_by_id(&mut self) -> usize {
        let swarm = LiveSwarm::new(self.id, self.config(false));
        self.push(swarm, false)
    }

    fn push(&mut self, swarm: LiveSwarm, ready: bool) -> usize {
        self.nodes.push(Node {
            swarm,
            store: BTreeMap::new(),
            corrupt: false,
            banned: Vec::new(),
            dropped: Vec::new(),
            ready,
            meta: MetaMode::Honest,
            paused: false,
            inbox: VecDeque::new(),
            player: None,
            played: 0,
        });
        self.nodes.len() - 1
    }

    /// `a` dials `b`.
    fn connect(&mut self, a: usize, b: usize) {
        let (ka, kb) = (100 + b as u64, 100 + a as u64);
        self.links.insert((a, ka), (b, kb));
        self.links.insert((b, kb), (a, ka));
        let listen = |i: usize| SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16));
        let hs = |i: usize| Handshake::ours(self.id, PeerId::ours([i as u8; 12]));
        let (ha, hb) = (hs(a), hs(b));
        self.nodes[a].swarm.add_peer(ka, listen(b), &hb, self.now);
        self.nodes[a].swarm.set_listen_addr(ka, listen(b));
        let ephemeral = SocketAddr::from(([127, 0, 0, 1], 40000 + a as u16));
        self.nodes[b].swarm.add_peer(kb, ephemeral, &ha, self.now);
    }

    fn header(&self, index: u32, ts: u64, data: &[u8]) -> PieceHeader {
        PieceHeader::sign(&self.key, &self.id, index, ts, 100_000, 1, data)
    }

    /// The source (node 0) makes the next piece.
    fn produce(&mut self) {
        let i = self.next_index;
        self.next_index += 1;
        let data = payload(i);
        let h = self.header(i, self.wall_us(), &data);
        self.nodes[0].store.insert(i, (h, data));
        self.nodes[0].swarm.on_piece_added(h, self.now);
    }

    /// Sends `msg` to `to` as if `from` had sent it on their link.
    fn inject(&mut self, from: usize, to: usize, msg: Message) {
        let Some(&(t, tkey)) = self.links.get(&(from, 100 + to as u64)) else {
            panic!("no link {from}->{to}");
        };
        self.wires.push_back((t, tkey, msg));
    }

    fn forged_have(&self, h: PieceHeader) -> Message {
        Message::Extended {
            id: OUR_PC_LIVE_ID,
            payload: LiveMsg::Have(vec![h]).encode(),
        }
    }

    /// Delivers everything queued; returns when quiet.
    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                if self.nodes[i].paused {
                    continue;
                }
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
                if self.nodes[to].paused {
                    self.nodes[to].inbox.push_back((key, msg));
                    continue;
                }
                self.nodes[to].swarm.on_message(key, msg, self.now);
            }
            if !progressed {
                return;
            }
        }
        panic!("network never settled");
    }

    /// The wall clock at the virtual `now`, microseconds since the Unix epoch.
    fn wall_us(&self) -> u64 {
        self.wall.unix_us(self.now)
    }

    /// Runs `ms` of virtual time, producing a piece every `PIECE_MS` when `produce` is set.
    /// The clock jumps from event to event: the next piece, or the earliest node's
    /// `poll_timeout` (which is then woken with `handle_timeout`), as the engine does.
    fn run(&mut self, ms: u64, produce: bool) {
        let end = self.now + Duration::from_millis(ms);
        let mut next_piece = produce.then_some(self.now);
        for _ in 0..1_000_000 {
            self.settle();
            self.play();
            self.settle();
            let timer = self
                .nodes
                .iter()
                .filter(|n| !n.paused)
                .filter_map(|n| n.swarm.poll_timeout())
                .min();
            let next = [Some(end), next_piece, timer]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end)
                .max(self.now);
            if next >= end && timer.is_none_or(|t| t > end) && next_piece.is_none_or(|p| p >= end) {
                self.now = end;
                self.settle();
                return;
            }
            self.now = next;
            if next_piece.is_some_and(|p| p <= self.now) {
                self.produce();
                next_piece = Some(self.now + Duration::from_millis(PIECE_MS));
            }
            let now = self.now;
            for n in self.nodes.iter_mut().filter(|n| !n.paused) {
                if n.swarm.poll_timeout().is_some_and(|t| t <= now) {
                    n.swarm.handle_timeout(now);
                }
            }
        }
        panic!("virtual time never reached the end");
    }

    /// Players play what is held in order; one that fell out of the window jumps to the
    /// oldest held keyframe piece in it (every test piece is one), as the HTTP player does.
    fn play(&mut self) {
        let now = self.now;
        for n in self.nodes.iter_mut().filter(|n| !n.paused) {
            let Some(mut next) = n.player else { continue };
            if next < n.swarm.first() {
                if let Some((&k, _)) = n.store.range(n.swarm.first()..).next() {
                    next = k;
                }
            }
            while n.store.contains_key(&next) {
                next += 1;
                n.played += 1;
            }
            n.player = Some(next);
            n.swarm.set_playhead(Some(next), now);
        }
    }

    /// Resumes a paused node: its clock jumps, then it reads what waited in its sockets.
    /// Messages come first, as they may in the engine (the swarm derives its wall clock from
    /// `now`), then its overdue timers.
    fn resume(&mut self, i: usize) {
        self.nodes[i].paused = false;
        let now = self.now;
        while let Some((key, msg)) = self.nodes[i].inbox.pop_front() {
            self.nodes[i].swarm.on_message(key, msg, now);
        }
        self.nodes[i].swarm.handle_timeout(now);
    }

    fn exec(&mut self, i: usize, a: Action) {
        match a {
            Action::Send(key, msg) => {
                if let Some(&(to, tkey)) = self.links.get(&(i, key)) {
                    let msg = alter(self.nodes[i].meta, msg);
                    self.wires.push_back((to, tkey, msg));
                }
            }
            Action::SendBlock { peer, block } => {
                let data = self.nodes[i].store.get(&block.index).map(|(_, p)| {
                    let s = block.begin as usize;
                    let mut d = p[s..s + block.len as usize].to_vec();
                    if self.nodes[i].corrupt {
                        d[0] ^= 0xff;
                    }
                    Bytes::from(d)
                });
                if let (Some(data), Some(&(to, tkey))) = (&data, self.links.get(&(i, peer))) {
                    let msg = Message::Piece {
                        index: block.index,
                        begin: block.begin,
                        data: data.clone(),
                    };
                    self.wires.push_back((to, tkey, msg));
                }
                self.nodes[i]
                    .swarm
                    .on_block_sent(peer, block, data.is_some());
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
            Action::PieceComplete { header, payload } => {
                let ok = header.check_payload(&payload).is_ok();
                if ok {
                    self.nodes[i].store.insert(header.index, (header, payload));
                }
                self.nodes[i]
                    .swarm
                    .on_piece_checked(header.index, ok, self.now);
            }
            Action::MetadataReceived(info) => {
                assert_eq!(InfoHash::of_info(&info), self.id);
                self.nodes[i].ready = true;
            }
            Action::NotLive(_) => panic!("a live stream's info was taken for a torrent"),
            Action::Edge(_) | Action::Discovered(_) => {}
        }
    }

    /// Asserts node `i` holds every piece from `from` to the last one produced.
    fn assert_all(&self, i: usize, from: u32) {
        let missing: Vec<u32> = (from..self.next_index)
            .filter(|x| !self.nodes[i].store.contains_key(x))
            .collect();
        assert!(
            missing.is_empty(),
            "node {i} lacks pieces {missing:?}; its peers: {:#?}",
            self.nodes[i].swarm.peer_infos()
        );
    }
}

fn banned_key(of: usize) -> PeerKey {
    100 + of as PeerKey
}

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
    net.connect(victim, s);
    // One honest relay besides the evil ones: the source serves each piece to two peers only,
    // the rest comes from relays.
    net.connect(honest, s);
    net.connect(victim, honest);
    for &e in &evil {
        net.connect(e, s);
        net.connect(victim, e);
        net.connect(honest, e);
    }
    net.nodes[evil[3]].corrupt = true;
    // The victim plays (a player from the start): it wants every piece, not just the edge.
    let now = net.now;
    net.nodes[victim].swarm.set_playhead(Some(0), now);
    net.run(100, false);
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
    assert!(net.nodes[victim].swarm.edge() < Some(edge + 1000));
    assert!(!net.nodes[victim].banned.contains(&banned_key(s)));
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
