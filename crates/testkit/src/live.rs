//! The live scenario harness: a source and viewers ([`LiveSwarm`]s) joined by [`Netem`] links
//! on a virtual clock, every message through the real codec, with the engine's duties (keeping
//! the window, checking payloads, reading blocks) played here.
//!
//! Nodes are addressed and dialled as [`crate::mesh`] says. Node 0 is the source when added
//! first with `add(true)`. The wall clock (header timestamps) moves with the virtual clock.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use peercdn_core::live::swarm::{Action, LiveConfig, LiveSwarm, PeerKey};
use peercdn_core::live::{LiveMsg, LiveParams, PieceHeader, OUR_PC_LIVE_ID};
use peercdn_core::time::WallClock;
use peercdn_core::wire::Message;
use peercdn_core::{DisconnectReason, InfoHash};

use crate::mesh;
use crate::meta::MetaMode;
use crate::netem::{LinkSpec, Netem};

/// Duration of a piece, milliseconds.
pub const PIECE_MS: u64 = 100;
/// Payload bytes of a piece.
pub const PIECE_LEN: usize = 40_000;
/// The wall clock at the start, microseconds since the Unix epoch.
pub const WALL_START_US: u64 = 1_700_000_000_000_000;

/// The deterministic payload of piece `index`.
pub fn payload(index: u32) -> Bytes {
    (0..PIECE_LEN)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The key node `of`'s connection is known by at its peers (what a ban names).
pub fn banned_key(of: usize) -> PeerKey {
    mesh::key(of)
}

/// One node: its swarm and what the harness keeps for it as its engine.
pub struct Node {
    /// The swarm under test.
    pub swarm: LiveSwarm,
    /// Its window: verified pieces with their headers.
    pub store: BTreeMap<u32, (PieceHeader, Bytes)>,
    /// Serve corrupted blocks (first byte flipped).
    pub corrupt: bool,
    /// Keys of the connections it banned.
    pub banned: Vec<PeerKey>,
    /// Every disconnect it asked for, with the reason.
    pub dropped: Vec<(PeerKey, DisconnectReason)>,
    /// How its outgoing metadata messages are altered.
    pub meta: MetaMode,
    /// It has the stream's info dictionary.
    pub ready: bool,
    /// Stopped (SIGSTOP, a closed laptop lid): receives nothing, does nothing, its clock
    /// stands still; what is sent to it waits in `inbox`.
    pub paused: bool,
    /// Messages that arrived while it was paused, in order.
    pub inbox: VecDeque<(PeerKey, Message)>,
    /// A local player: the next piece it plays (`None`: no player).
    pub player: Option<u32>,
    /// How many pieces the player played.
    pub played: u32,
}

impl mesh::Node for Node {
    type Swarm = LiveSwarm;
    fn parts(&mut self) -> mesh::Parts<'_, LiveSwarm> {
        (&mut self.swarm, &mut self.banned, &mut self.dropped)
    }
}

/// The network of nodes.
pub struct Net {
    /// The broadcaster's key.
    pub key: SigningKey,
    /// The stream.
    pub params: LiveParams,
    /// Its content ID.
    pub id: InfoHash,
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    /// The links (encoded messages in flight).
    pub net: Netem<BytesMut>,
    /// How [`Net::connect`] links nodes.
    pub link: LinkSpec,
    /// The virtual clock.
    pub now: Instant,
    /// The wall clock every node derives from the virtual `now`.
    pub wall: WallClock,
    /// The index the source gives its next piece.
    pub next_index: u32,
    /// Overrides the source's upload slots (default: `LiveConfig`'s).
    pub source_slots: Option<usize>,
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Net {
    /// A stream of [`PIECE_MS`] pieces with a 4 s window, no nodes yet, ideal links.
    pub fn new() -> Net {
        let key = SigningKey::from_bytes(&[9; 32]);
        let params = LiveParams {
            name: "live test".into(),
            pubkey: key.verifying_key().to_bytes(),
            piece_duration_ms: PIECE_MS as u32,
            max_piece_length: 1 << 20,
            window_s: 4,
        };
        let id = params.content_id();
        // The origin of the virtual clock: any instant serves.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Net {
            key,
            params,
            id,
            nodes: Vec::new(),
            net: Netem::default(),
            link: LinkSpec::IDEAL,
            now,
            wall: WallClock::new(now, WALL_START_US),
            next_index: 0,
            source_slots: None,
        }
    }

    /// The configuration of the next node.
    pub fn config(&self, source: bool) -> LiveConfig {
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

    /// Adds the source (`true`) or a viewer that knows the info dictionary.
    pub fn add(&mut self, source: bool) -> usize {
        let swarm = LiveSwarm::with_info(self.params.info_bytes().into(), self.config(source))
            .expect("valid info");
        self.push(swarm, true)
    }

    /// Adds a viewer that knows only the content ID.
    pub fn add_by_id(&mut self) -> usize {
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
            meta: MetaMode::Honest,
            ready,
            paused: false,
            inbox: VecDeque::new(),
            player: None,
            played: 0,
        });
        self.nodes.len() - 1
    }

    /// `a` dials `b` over a link like [`Net::link`] ([`mesh::dial`]).
    pub fn connect(&mut self, a: usize, b: usize) {
        let (spec, id, now) = (self.link, self.id, self.now);
        mesh::dial(&mut self.net, &mut self.nodes, (a, b), spec, id, now);
    }

    /// A header for piece `index` signed by the broadcaster's key.
    pub fn header(&self, index: u32, ts: u64, data: &[u8]) -> PieceHeader {
        PieceHeader::sign(&self.key, &self.id, index, ts, 100_000, 1, data)
    }

    /// The source (node 0) makes the next piece.
    pub fn produce(&mut self) {
        let i = self.next_index;
        self.next_index += 1;
        let data = payload(i);
        let h = self.header(i, self.wall_us(), &data);
        let hashes = peercdn_core::live::block_hashes(&data);
        self.nodes[0].store.insert(i, (h, data));
        self.nodes[0].swarm.on_piece_added(h, hashes, self.now);
    }

    /// Sends `msg` to `to` as if `from` had sent it on their link.
    pub fn inject(&mut self, from: usize, to: usize, msg: Message) {
        assert!(
            self.net.peer_of((from, 100 + to as u64)).is_some(),
            "no link {from}->{to}"
        );
        self.send(from, 100 + to as u64, &msg);
    }

    /// A `pc_live` announcement of one header, as any peer could send it.
    pub fn forged_have(&self, h: PieceHeader) -> Message {
        Message::Extended {
            id: OUR_PC_LIVE_ID,
            payload: LiveMsg::Have(vec![h]).encode(),
        }
    }

    /// Executes every action and delivers every message due by now; returns when quiet.
    pub fn settle(&mut self) {
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
            if let Some((to, key, msg)) = mesh::pop_due(&mut self.net, self.now) {
                progressed = true;
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
    pub fn wall_us(&self) -> u64 {
        self.wall.unix_us(self.now)
    }

    /// Runs `ms` of virtual time, producing a piece every [`PIECE_MS`] when `produce` is set.
    /// The clock jumps from event to event — the next piece, the next delivery, or the
    /// earliest running node's `poll_timeout` (which is then woken with `handle_timeout`), as
    /// the engine does — and the players play after each.
    pub fn run(&mut self, ms: u64, produce: bool) {
        let end = self.now + Duration::from_millis(ms);
        let mut next_piece = produce.then_some(self.now);
        for _ in 0..10_000_000 {
            self.settle();
            self.play();
            self.settle();
            let timer = self
                .nodes
                .iter()
                .filter(|n| !n.paused)
                .filter_map(|n| n.swarm.poll_timeout())
                .min();
            let next = [next_piece, timer, self.net.next_at()]
                .into_iter()
                .flatten()
                .min()
                .map_or(end, |t| t.max(self.now));
            let due_by_end = |t: Option<Instant>| t.is_some_and(|t| t <= end);
            let quiet_until_end = !due_by_end(timer)
                && !due_by_end(self.net.next_at())
                && next_piece.is_none_or(|p| p >= end);
            if next > end || (next == end && quiet_until_end) {
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
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].paused = false;
        let now = self.now;
        while let Some((key, msg)) = self.nodes[i].inbox.pop_front() {
            self.nodes[i].swarm.on_message(key, msg, now);
        }
        self.nodes[i].swarm.handle_timeout(now);
    }

    fn send(&mut self, i: usize, key: PeerKey, msg: &Message) {
        self.net.send_message(self.now, (i, key), msg);
    }

    fn exec(&mut self, i: usize, a: Action) {
        match a {
            Action::Send(key, msg) => {
                mesh::send(&mut self.net, self.now, (i, key), self.nodes[i].meta, msg)
            }
            Action::SendBlock { peer, block, data } => {
                let stored = self.nodes[i].store.get(&block.index).map(|(_, p)| {
                    let s = block.begin as usize;
                    p.slice(s..s + block.len as usize)
                });
                let data = data.or(stored).map(|d| {
                    let mut d = d.to_vec();
                    if self.nodes[i].corrupt {
                        d[0] ^= 0xff;
                    }
                    Bytes::from(d)
                });
                if let Some(data) = &data {
                    let msg = Message::Piece {
                        index: block.index,
                        begin: block.begin,
                        data: data.clone(),
                    };
                    self.send(i, peer, &msg);
                }
                self.nodes[i]
                    .swarm
                    .on_block_sent(peer, block, data.is_some());
            }
            Action::Disconnect { peer, reason } => {
                mesh::disconnect(&mut self.net, &mut self.nodes, i, peer, reason)
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
            // No catalogue or ledger in the testkit swarms (pc_search and pc_receipt are tested
            // in core and the engine).
            Action::Edge(_)
            | Action::Discovered(..)
            | Action::Holepunch(_)
            | Action::Search(..)
            | Action::Receipts(..) => {}
        }
    }

    /// Asserts node `i` holds every piece from `from` to the last one produced.
    pub fn assert_all(&self, i: usize, from: u32) {
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
