//! The swarm's public vocabulary: its configuration, the actions it asks of the engine, and
//! the figures it reports.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::PeerKey;
use crate::disconnect::{DisconnectCounts, DisconnectReason};
use crate::wire::{BlockRef, Message};

/// Tunables; the defaults suit both loopback and the internet.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Regular upload slots (plus one optimistic).
    pub upload_slots: usize,
    /// Fewest requests kept in flight to an unchoking peer.
    pub min_queue: u32,
    /// Most requests kept in flight to one peer (also bounded by the peer's `reqq`).
    pub max_queue: u32,
    /// Requests in flight at the start, before a rate is known.
    pub initial_queue: u32,
    /// A peer that sends no requested block for this long gets its requests cancelled.
    pub request_timeout: Duration,
    /// Incoming requests queued per peer; more are rejected.
    pub max_peer_requests: usize,
    /// Disk reads handed to the engine per peer at a time.
    pub max_reads_in_flight: usize,
    /// A peer silent for this long is disconnected.
    pub idle_timeout: Duration,
    /// Peer exchange (BEP 11): how often each peer is told of our other peers. `None` turns
    /// PEX off (private torrents, BEP 27).
    pub pex_interval: Option<Duration>,
    /// Our TCP listen port, told to peers in the extension handshake.
    pub listen_port: Option<u16>,
    /// Seed for tie-breaking.
    pub seed: u64,
    /// The node's identity, proven to peers over `pc_receipt` ([`crate::ext::receipt`]);
    /// `None` proves nothing (peers then sign no receipts for what we send them).
    pub identity: Option<crate::ext::receipt::Identity>,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            upload_slots: 8,
            min_queue: 16,
            max_queue: 1000,
            initial_queue: 64,
            request_timeout: Duration::from_secs(20),
            max_peer_requests: 2000,
            max_reads_in_flight: 64,
            idle_timeout: Duration::from_secs(180),
            pex_interval: Some(Duration::from_secs(60)),
            listen_port: None,
            seed: 0x5eed,
            identity: None,
        }
    }
}

/// What the engine must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message to a peer.
    Send(PeerKey, Message),
    /// Close a connection; with [`DisconnectReason::ban`], refuse that peer from now on.
    Disconnect {
        /// Which connection.
        peer: PeerKey,
        /// Why: for the log, the counters, and whether to ban.
        reason: DisconnectReason,
    },
    /// Keep a received block until its piece is complete.
    Store {
        /// Piece.
        index: u32,
        /// Offset.
        begin: u32,
        /// Data.
        data: Bytes,
    },
    /// Every block of the piece is stored: hash it, write it, then call `on_piece_verified`.
    Verify(u32),
    /// Read a block from storage and send it as a PIECE message, then call `on_block_sent`.
    Read {
        /// Requesting peer.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
    },
    /// The info dictionary arrived through ut_metadata and matches the info hash: parse it and
    /// call `set_metadata`.
    MetadataReceived(Bytes),
    /// Addresses learned from peer exchange, to dial, and the peer that told them (the one to
    /// ask for an introduction, BEP 55, when a dial fails).
    Discovered(PeerKey, Vec<crate::ext::pex::Heard>),
    /// A peer introduced us (BEP 55 `connect`): dial this address over uTP now.
    Holepunch(SocketAddr),
    /// Every wanted piece is verified.
    Completed,
    /// `pc_search` on a connection: a peer that speaks it, or its message (within budget).
    Search(PeerKey, crate::ext::search::SearchEvent),
    /// Receipts a peer passed us over `pc_receipt` (within budget), each verified.
    Receipts(PeerKey, Vec<crate::receipt::Receipt>),
}

/// Counters for the engine's stats.
#[derive(Debug, Clone, Default)]
pub struct SwarmStats {
    /// Payload bytes received that we had asked for.
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Bytes received that were duplicates, unrequested or failed their hash.
    pub wasted: u64,
    /// Pieces that failed their hash check.
    pub hash_failures: u64,
    /// Connected peers.
    pub peers: usize,
    /// Peers that are unchoking us.
    pub unchoking_us: usize,
    /// Download rate, bytes/s.
    pub down_rate: u64,
    /// Upload rate, bytes/s.
    pub up_rate: u64,
    /// Connections this swarm closed, by reason.
    pub disconnects: DisconnectCounts,
}

/// One peer as seen by [`super::Swarm::peers`].
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Connection key.
    pub key: PeerKey,
    /// Address.
    pub addr: SocketAddr,
    /// Client name from the extension handshake.
    pub client: Option<String>,
    /// Pieces it has.
    pub pieces: u32,
    /// Bytes/s from it.
    pub down_rate: u64,
    /// Bytes/s to it.
    pub up_rate: u64,
    /// Requests in flight to it.
    pub in_flight: usize,
    /// We choke it.
    pub am_choking: bool,
    /// It chokes us.
    pub peer_choking: bool,
    /// We want pieces it has.
    pub am_interested: bool,
    /// It wants pieces we have.
    pub peer_interested: bool,
    /// Payload bytes from it.
    pub downloaded: u64,
    /// Payload bytes to it.
    pub uploaded: u64,
    /// The connection runs over uTP (else TCP).
    pub utp: bool,
    /// The connection came of a BEP 55 introduction.
    pub holepunched: bool,
    /// Peers can dial it (we did, or it said so).
    pub reachable: bool,
}
