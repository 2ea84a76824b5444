//! The live swarm's vocabulary: configuration, the actions it asks of the engine, its figures.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::PeerKey;
use crate::disconnect::{DisconnectCounts, DisconnectReason};
use crate::ext::receipt::Identity;
use crate::live::PieceHeader;
use crate::receipt::Receipt;
use crate::time::WallClock;
use crate::wire::{BlockRef, Message};

/// Tunables of a [`super::LiveSwarm`]; the defaults suit loopback and the internet.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// This node is the stream's source (announces new pieces to a few peers first).
    pub source: bool,
    /// Most regular upload slots of a viewer (it has as many as whole copies of the stream
    /// its upload carried lately, at least one), plus one optimistic slot that rotates.
    pub unchoke_slots: usize,
    /// Peers the source unchokes at once (at least `source_fanout`).
    pub source_slots: usize,
    /// Requests in flight to one peer, blocks (at most; the actual room is about half a
    /// second of what the peer delivers, at least `min_outstanding`).
    pub max_outstanding: usize,
    /// Requests a peer may always have in flight, whatever its rate.
    pub min_outstanding: usize,
    /// Pieces being assembled at once (bounds memory with the stream's max piece length).
    pub max_in_progress: usize,
    /// Source only: peers told of a new piece at once; the others hear of it after
    /// `source_delay`, by which time viewers have relayed it to each other.
    pub source_fanout: usize,
    /// Source only: peers a piece is served to in all (first wave included); others are
    /// refused (BEP 6 reject) and fetch it from those peers.
    pub source_copies: usize,
    /// Source only: a piece this old is served to anyone who asks (after every fresh piece).
    /// Off by default: measured with 30 viewers, laggards then pull old pieces from the source
    /// instead of from relays and the whole swarm falls behind; a viewer whose relays fail it
    /// is better served by the CDN fallback and by PEX finding it other relays.
    pub source_rescue_after: Option<Duration>,
    /// Source only: delay before the other peers are told (`None`: one piece duration).
    pub source_delay: Option<Duration>,
    /// A node without a player fetches from `edge - relay_margin` on (pieces), so it can
    /// serve others.
    pub relay_margin: u32,
    /// A block requested this long ago is asked of another peer.
    pub block_timeout: Duration,
    /// The same for the two pieces at the playhead (their deadline is now).
    pub urgent_timeout: Duration,
    /// On connect, headers of held pieces this recent (by piece count × duration) are sent.
    pub recent_on_connect: Duration,
    /// Requests queued from one peer; more are dropped (rejected with BEP 6).
    pub max_peer_requests: usize,
    /// Block reads handed to the engine per peer at a time.
    pub max_reads_in_flight: usize,
    /// Block reads handed to the engine at a time, all peers together (bounds the queue in
    /// front of the upload limit, hence the delay it adds).
    pub max_reads_total: usize,
    /// A peer silent for this long is disconnected.
    pub idle_timeout: Duration,
    /// Peer exchange interval (BEP 11); `None` turns it off.
    pub pex_interval: Option<Duration>,
    /// Delay before the first PEX message to a new peer.
    pub first_pex: Duration,
    /// Our TCP listen port, told to peers in the extension handshake.
    pub listen_port: Option<u16>,
    /// Seed for tie-breaking and rotations.
    pub seed: u64,
    /// The wall clock derived from the monotonic `now` ([`crate::time`]), to refuse headers
    /// with stale timestamps; `None` judges no timestamp.
    pub wall_clock: Option<WallClock>,
    /// The node's identity, proven to peers over `pc_receipt` ([`crate::ext::receipt`]);
    /// `None` proves nothing (peers then sign no receipts for what we send them).
    pub identity: Option<Identity>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            source: false,
            unchoke_slots: 4,
            source_slots: 4,
            max_outstanding: 32,
            min_outstanding: 8,
            max_in_progress: 24,
            source_fanout: 2,
            source_copies: 2,
            source_rescue_after: None,
            source_delay: None,
            relay_margin: 4,
            block_timeout: Duration::from_secs(3),
            urgent_timeout: Duration::from_millis(700),
            recent_on_connect: Duration::from_secs(20),
            max_peer_requests: 512,
            max_reads_in_flight: 32,
            max_reads_total: 16,
            idle_timeout: Duration::from_secs(120),
            pex_interval: Some(Duration::from_secs(30)),
            first_pex: Duration::from_secs(3),
            listen_port: None,
            seed: 0x11fe,
            wall_clock: None,
            identity: None,
        }
    }
}

/// What the engine must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message to a peer.
    Send(PeerKey, Message),
    /// Send this block as PIECE, then call [`super::LiveSwarm::on_block_sent`]: `data` when the
    /// swarm holds it (a verified block of a piece still in assembly, relayed before the piece
    /// is complete), else read from the piece in the window.
    SendBlock {
        /// Requesting peer.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
        /// The block's bytes, when they are not in the window yet.
        data: Option<Bytes>,
    },
    /// Close a connection; with [`DisconnectReason::ban`], refuse that peer from now on.
    Disconnect {
        /// Which connection.
        peer: PeerKey,
        /// Why: for the log, the counters, and whether to ban.
        reason: DisconnectReason,
    },
    /// Every block of a piece arrived: check the payload against the (verified) header, put
    /// it in the window, then call [`super::LiveSwarm::on_piece_checked`].
    PieceComplete {
        /// The piece's verified header.
        header: PieceHeader,
        /// The assembled payload (not checked yet).
        payload: Bytes,
    },
    /// A verified header moved the live edge to this index (`LiveBuffer::note_exists`).
    Edge(u32),
    /// Addresses learned from peer exchange, to dial, and the peer that told them (the one to
    /// ask for an introduction, BEP 55, when a dial fails).
    Discovered(PeerKey, Vec<crate::ext::pex::Heard>),
    /// A peer introduced us (BEP 55 `connect`): dial this address over uTP now.
    Holepunch(SocketAddr),
    /// `pc_search` on a connection: a peer that speaks it, or its message (within budget).
    Search(PeerKey, crate::ext::search::SearchEvent),
    /// Receipts a peer passed us over `pc_receipt` (within budget), each verified.
    Receipts(PeerKey, Vec<Receipt>),
    /// The info dictionary arrived over ut_metadata, matches the ID and is a live stream: the
    /// swarm runs with it now; build the window from it.
    MetadataReceived(Bytes),
    /// The info dictionary arrived and matches the ID but is an ordinary torrent (no `live`
    /// key): hand it to a VoD torrent.
    NotLive(Bytes),
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Connected peers.
    pub peers: usize,
    /// Payload bytes received that we had asked for.
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Bytes received that were not useful (late duplicates, failed pieces).
    pub wasted: u64,
    /// Peers disconnected and banned.
    pub banned: u64,
    /// Validly shaped headers ignored: older than the window, timestamped long ago, or beyond
    /// what the source's clock allows (what honest peers send after a pause; not banned).
    pub ignored_headers: u64,
    /// Block requests sent.
    pub requests_sent: u64,
    /// Block requests served.
    pub requests_served: u64,
    /// Of those, blocks relayed from a piece we did not hold whole yet (cut-through).
    pub blocks_relayed_early: u64,
    /// Piece announcements (headers) sent.
    pub pieces_announced: u64,
    /// Pieces received from peers that passed their check.
    pub pieces_received: u64,
    /// Bytes/s from peers.
    pub down_rate: u64,
    /// Bytes/s to peers.
    pub up_rate: u64,
    /// Connections this swarm closed, by reason.
    pub disconnects: DisconnectCounts,
}

/// One connected peer, for the API and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePeerInfo {
    /// Its address.
    pub addr: SocketAddr,
    /// Its client name, if it said.
    pub client: Option<String>,
    /// Newest piece it announced.
    pub newest: Option<u32>,
    /// We choke it.
    pub am_choking: bool,
    /// It chokes us.
    pub peer_choking: bool,
    /// Our requests in flight to it.
    pub outstanding: usize,
    /// Its requests queued here, and handed to the engine.
    pub queued: usize,
    /// Its requests handed to the engine.
    pub reading: usize,
    /// Bytes/s from it.
    pub down_rate: u64,
    /// Bytes/s to it.
    pub up_rate: u64,
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
