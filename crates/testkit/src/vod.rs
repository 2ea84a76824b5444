//! The VoD scenario harness: several [`Swarm`]s joined by [`Netem`] links on a virtual clock,
//! every message through the real codec, with the engine's duties (storing blocks, hashing
//! pieces, reading blocks, installing metadata) played here. Runs in milliseconds and the same
//! every time.
//!
//! Nodes are addressed and dialled as [`crate::mesh`] says.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use peercdn_core::swarm::{Action, PeerKey, Swarm, SwarmConfig};
use peercdn_core::wire::Message;
use peercdn_core::{Bitfield, DisconnectReason, InfoHash};
use sha1::{Digest, Sha1};

use crate::mesh;
use crate::meta::MetaMode;
use crate::netem::{LinkSpec, Netem};

/// Piece length of the harness's torrents.
pub const PIECE: u32 = 64 * 1024;

/// A torrent's content and what identifies it.
pub struct Content {
    /// The bytes.
    pub data: Vec<u8>,
    /// SHA-1 of each piece.
    pub hashes: Vec<[u8; 20]>,
    /// The "info dictionary" the swarm serves over BEP 9 and hashes into the info hash.
    pub info: Bytes,
    /// Its info hash.
    pub hash: InfoHash,
}

/// `len` bytes of deterministic content in [`PIECE`]-long pieces.
pub fn content(len: usize) -> Content {
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

/// The first (`first`) or second half of `n` pieces.
pub fn halves(n: u32, first: bool) -> Bitfield {
    let mut b = Bitfield::new(n);
    for i in 0..n {
        b.set(i, (i < n / 2) == first);
    }
    b
}

/// One node: its swarm and what the harness keeps for it as its engine.
pub struct Node {
    /// The swarm under test.
    pub swarm: Swarm,
    /// Its storage: the whole torrent, written block by block.
    pub store: Vec<u8>,
    /// Whether it has the metadata.
    pub have_meta: bool,
    /// Serve corrupted blocks (first byte flipped).
    pub corrupt: bool,
    /// Keys of the connections it banned.
    pub banned: Vec<PeerKey>,
    /// Every disconnect it asked for, with the reason.
    pub dropped: Vec<(PeerKey, DisconnectReason)>,
    /// How its outgoing metadata messages are altered.
    pub meta: MetaMode,
    /// It reported `Completed`.
    pub completed: bool,
    /// Addresses it learned by PEX.
    pub discovered: Vec<SocketAddr>,
    /// It requests and never reads: blocks for it are handed to the "engine" of the sending
    /// node and never reported sent.
    pub never_reads: bool,
}

impl mesh::Node for Node {
    type Swarm = Swarm;
    fn parts(&mut self) -> mesh::Parts<'_, Swarm> {
        (&mut self.swarm, &mut self.banned, &mut self.dropped)
    }
}

/// The network of nodes.
pub struct Net {
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    /// The links (encoded messages in flight).
    pub net: Netem<BytesMut>,
    /// How [`Net::connect`] links nodes.
    pub link: LinkSpec,
    /// The virtual clock.
    pub now: Instant,
    /// The torrent.
    pub c: Content,
}

impl Net {
    /// A network for torrent `c`, with ideal links.
    pub fn new(c: Content) -> Self {
        // The origin of the virtual clock: any instant serves.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Net {
            nodes: vec![],
            net: Netem::default(),
            link: LinkSpec::IDEAL,
            now,
            c,
        }
    }

    /// Adds a node holding `pieces`, or without metadata (`None`: it starts from the hash).
    pub fn add(&mut self, pieces: Option<Bitfield>) -> usize {
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
            meta: MetaMode::Honest,
            never_reads: false,
            completed: false,
            discovered: vec![],
        });
        self.nodes.len() - 1
    }

    /// `a` dials `b` over a link like [`Net::link`] ([`mesh::dial`]).
    pub fn connect(&mut self, a: usize, b: usize) {
        let (spec, id, now) = (self.link, self.c.hash, self.now);
        mesh::dial(&mut self.net, &mut self.nodes, (a, b), spec, id, now);
    }

    /// Runs until every node is complete, the network is quiet with no timer left, or `steps`
    /// steps (an action batch or one delivery) have passed. When nothing is due, the clock
    /// jumps to the next delivery or the earliest node's `poll_timeout` (that node is then
    /// woken with `handle_timeout`), as the engine does.
    pub fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(a) = self.nodes[i].swarm.poll_action() {
                    progressed = true;
                    self.exec(i, a);
                }
            }
            if let Some((to, key, msg)) = mesh::pop_due(&mut self.net, self.now) {
                self.nodes[to].swarm.on_message(key, msg, self.now);
                continue;
            }
            if progressed {
                continue;
            }
            if self.nodes.iter().all(|n| n.swarm.is_complete()) {
                return;
            }
            let timer = self
                .nodes
                .iter()
                .filter_map(|n| n.swarm.poll_timeout())
                .min();
            let Some(t) = [timer, self.net.next_at()].into_iter().flatten().min() else {
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

    /// Sends `msg` from node `i` on its connection `key` (through the codec).
    pub fn send(&mut self, i: usize, key: PeerKey, msg: &Message) {
        self.net.send_message(self.now, (i, key), msg);
    }

    fn exec(&mut self, i: usize, a: Action) {
        match a {
            Action::Send(key, msg) => {
                mesh::send(&mut self.net, self.now, (i, key), self.nodes[i].meta, msg)
            }
            Action::Disconnect { peer, reason } => {
                mesh::disconnect(&mut self.net, &mut self.nodes, i, peer, reason)
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
                let to = self.net.peer_of((i, peer)).map(|(to, _)| to);
                if to.is_some_and(|t| self.nodes[t].never_reads) {
                    // Stuck in the writer forever: never reported sent.
                    return;
                }
                let s = (block.index * PIECE + block.begin) as usize;
                let mut data = self.nodes[i].store[s..s + block.len as usize].to_vec();
                if self.nodes[i].corrupt {
                    data[0] ^= 0xff;
                }
                let msg = Message::Piece {
                    index: block.index,
                    begin: block.begin,
                    data: data.into(),
                };
                self.send(i, peer, &msg);
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
            Action::Discovered(_, peers) => self.nodes[i]
                .discovered
                .extend(peers.iter().map(|h| h.addr)),
            Action::Holepunch(_) => {}
            Action::Completed => self.nodes[i].completed = true,
            // No catalogue or ledger in the testkit swarms (pc_search and pc_receipt are tested
            // in core and the engine).
            Action::Search(..) | Action::Receipts(..) => {}
        }
    }
}
