//! The live swarm state machine: one live stream's peers, `pc_live` announcements, the window,
//! deadline-driven requests, serving and relaying, and bans.
//!
//! A [`LiveSwarm`] performs no I/O and reads no clock: the engine feeds it events with a
//! monotonic `now` and executes the [`Action`]s it emits. Header timestamps are judged against
//! the wall clock derived from `now` ([`LiveConfig::wall_clock`], see [`crate::time`]).
//!
//! Calling rule (the time contract of [`crate::time`]): after every input (`add_peer`,
//! `on_message`, `remove_peer`, `on_piece_checked`, `on_piece_added`, `on_block_sent`,
//! `set_playhead`, `handle_timeout`), drain [`LiveSwarm::poll_action`] until it returns `None`;
//! then wake the swarm with [`LiveSwarm::handle_timeout`] at the instant
//! [`LiveSwarm::poll_timeout`] names (late blocks, the source's second-wave announcements,
//! rechokes and idle slots, rates, PEX, idle peers, metadata retries). There is no fixed tick:
//! a relay announces and requests the moment something is due.
//!
//! Protocol (DESIGN §3): BEP 3 handshake with the extension bit, a BEP 10 handshake naming
//! `ut_metadata`, `ut_pex` and `pc_live`. Once both sides speak `pc_live`, each sends
//! `Window{first, last}` and a `Have` with the signed headers of its newest held pieces
//! ([`LiveConfig::recent_on_connect`]), and an `Unchoke` while a slot is free. `Interested`
//! means what BEP 3 says: the peer announced a piece we lack from where we fetch on, and
//! `NotInterested` follows once we hold all it announced; a peer that is not interested gives
//! up its upload slot at once. Each newly held piece
//! is announced with a `Have` at once — by a viewer to every peer, by the source first to
//! [`LiveConfig::source_fanout`] peers (rotating among those it unchokes) and to the rest after
//! [`LiveConfig::source_delay`]. Data moves in 16 KiB REQUEST/PIECE blocks.
//!
//! Cut-through relaying (live version 2): a relay announces a piece as soon as it holds one
//! verified block of it, queues requests for blocks still on their way, and serves each block
//! the moment it is verified. Before the first block of a piece on a connection, the uploader
//! sends the piece's block hashes (`Hashes`); the receiver checks them against the signed
//! header's root once and every block against its hash on arrival, so nothing unverified is
//! relayed and a forged block bans its sender at once. A relay that gives up a piece it
//! announced (the player passed it, the window moved) refuses the requests it queued for it.
//!
//! Scaling (what keeps the source near the bitrate and every viewer at the edge):
//! - the source serves a piece to at most [`LiveConfig::source_copies`] peers and refuses
//!   (BEP 6 reject) the others, who fetch it from those peers instead; the holders of its
//!   copies of the newest pieces keep their slots until the copies are through;
//! - a choke ends the new pieces a peer may ask for, not a piece on its way: the uploader
//!   serves the rest of a piece it started sending (BEP 6 lets a choking peer serve), and a
//!   requester asks a peer that choked it for the rest of a piece that peer sent part of;
//! - few upload slots ([`LiveConfig::unchoke_slots`], [`LiveConfig::source_slots`]) kept for
//!   the peers we serve most, plus one optimistic slot rotating every few seconds, and a slot
//!   whose peer asks for nothing goes to a waiting one: each node feeds a few at full speed
//!   rather than many at a trickle;
//! - one serving queue for all peers ([`LiveConfig::max_reads_total`] blocks handed to the
//!   engine), the source's first wave first, then the lowest index: what waits behind the
//!   upload limit stays short;
//! - a requester keeps about a second of a peer's rate in flight to it, so a busy peer gets
//!   fewer requests and the rest go to peers with spare upload;
//! - PEX runs a few seconds after connecting, so viewers find relays quickly.
//!
//! Trust: every header is checked before it is used or relayed — signature (key and content
//! ID), length, no conflict with a header we hold — and every payload against its header (by
//! the engine). A peer failing any of these is disconnected and banned: an honest peer cannot
//! produce them. Headers that are merely out of date (older than the window, timestamped long
//! ago) or beyond what the source's clock allows are ignored, not punished: an honest peer
//! sends exactly those after a pause (a laptop lid, SIGSTOP), from socket buffers or from what
//! it still holds. A validly signed, recent header far beyond our edge moves the edge (the
//! window jumps; see [`crate::live::window`] for the rule and its bounds).
//!
//! Nothing a peer sends can panic the swarm; every collection a peer can grow is capped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::disconnect::{DisconnectReason, HeaderFault, Missing};
use crate::ext::choke::{self, UploadSlot};
use crate::ext::handshake::Extension;
use crate::ext::metadata::Metadata;
use crate::ext::peer::PeerRecord;
use crate::ext::receipt::{self, ReceiptBook};
use crate::id::InfoHash;
use crate::live::window::{Judgement, Window};
use crate::live::{BlockHash, LiveMsg, LiveParams, PieceHeader, MAX_HEADERS_PER_MSG};
use crate::wire::{BlockRef, Handshake, Message};

mod types;

pub use types::{Action, LiveConfig, LivePeerInfo, LiveStats};

/// The engine's handle for one connection (unique per swarm, never reused).
pub type PeerKey = u64;

/// Most headers kept in the pending-announcement queue of the source.
const MAX_PENDING_ANNOUNCES: usize = 4096;

#[derive(Debug)]
struct Peer {
    rec: PeerRecord,
    extensions: bool,
    fast: bool,
    /// Both sides speak `pc_live` and the descriptor is known.
    ready: bool,
    /// Our upload side to it: choke state, its requests, whether our blocks drain.
    up: UploadSlot,
    peer_choking: bool,
    peer_interested: bool,
    /// We told it we are interested: it announced a piece we still want (see
    /// [`LiveSwarm::refresh_interest`]).
    am_interested: bool,
    /// Pieces it announced (verified headers), within the window.
    has: BTreeSet<u32>,
    /// Its window start, from its `Window`.
    their_first: u32,
    outstanding: Vec<(BlockRef, Instant)>,
    /// When it last asked us for a block.
    last_request: Option<Instant>,
    /// For each piece it asks us for, the swarm's request counter at its first request: the
    /// peer that asked first gets the whole piece first (bounded by the window: pruned with
    /// it, and by the queue's cap).
    first_ask: BTreeMap<u32, u64>,
    /// Pieces it refused to serve us (BEP 6 reject): asked of others instead.
    refused: VecDeque<(u32, Instant)>,
    /// Pieces whose block hashes we sent it (they precede the first block; pruned with the
    /// window).
    hashes_sent: BTreeSet<u32>,
    hash_fails: u32,
    /// Blocks of pieces on their way we still serve it while we choke it (see
    /// `LiveSwarm::set_choking`): a choke ends new pieces, not one on its way, but a choked
    /// peer must not keep pulling the pieces it once started for ever.
    finish_left: u32,
}

/// A block of a piece being assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    /// Asked of a peer at an instant; late after the piece's timeout.
    Requested(PeerKey, Instant),
    /// Asked of a peer, late, and nobody else could take it yet: it moves on the next event
    /// that frees a peer (it is no timer's business any more).
    Late(PeerKey),
    Done,
}

/// A piece being assembled.
#[derive(Debug)]
struct Download {
    header: PieceHeader,
    /// Verified blocks (zero-copy from the wire), served to others before the piece is whole.
    blocks: Vec<Option<Bytes>>,
    slots: Vec<Slot>,
    contributors: Vec<PeerKey>,
    /// After a failed check with several senders, the retry comes from one peer only, so the
    /// next failure names the culprit.
    only: Option<PeerKey>,
}

/// The source's announcement of a piece to the peers outside its first fan-out.
#[derive(Debug)]
struct Pending {
    due: Instant,
    index: u32,
    /// The first fan-out, already told.
    told: Vec<PeerKey>,
}

/// The live swarm state machine. See the module docs for the calling rule.
#[derive(Debug)]
pub struct LiveSwarm {
    content_id: InfoHash,
    config: LiveConfig,
    /// Peers can dial this node, as far as it knows (told in our extension handshake).
    reachable: bool,
    params: Option<LiveParams>,
    /// BEP 9: the info dictionary (served), or its fetch.
    meta: Metadata,
    peers: BTreeMap<PeerKey, Peer>,
    /// Verified headers in the window (held or announced by someone).
    headers: BTreeMap<u32, PieceHeader>,
    /// Pieces held (verified payload in the engine's window).
    have: BTreeSet<u32>,
    /// Newest index with a verified header.
    edge: Option<u32>,
    downloads: BTreeMap<u32, Download>,
    /// Pieces handed to the engine for checking, with who sent their blocks and the payload
    /// (still served from here until the engine has it in the window).
    checking: BTreeMap<u32, (Vec<PeerKey>, Bytes)>,
    /// Block hashes of the pieces held or in assembly (checked against their headers' roots).
    hashes: BTreeMap<u32, Vec<BlockHash>>,
    /// Pieces announced before we held them whole (at their first verified block), and to
    /// whom: they are not announced to those peers again.
    early: BTreeMap<u32, Vec<PeerKey>>,
    /// Pieces that failed their check with several senders, and who they were.
    suspect: BTreeMap<u32, Vec<PeerKey>>,
    pending: VecDeque<Pending>,
    /// Source only: who heard of each piece of the window first (and when); their requests
    /// for it are served before anyone else's, so the first wave gets every piece at once and
    /// relays it.
    first_wave: BTreeMap<u32, (Instant, Vec<PeerKey>)>,
    /// Source only: which peers each piece of the window was served to (pruned with the
    /// window, like `first_wave`); beyond [`LiveConfig::source_copies`] the source refuses, so
    /// its upload carries new pieces instead of more copies of the same one.
    served_to: BTreeMap<u32, Vec<PeerKey>>,
    /// Block reads handed to the engine and not yet reported sent, all peers together.
    reads_total: usize,
    /// Scratch for a scheduling pass: the peers that could take a request when it began.
    open: Vec<PeerKey>,
    /// The stream's bitrate, bytes/s, from the headers (0 before any).
    bitrate: u64,
    /// A viewer's regular upload slots now (see [`Self::slots`]).
    viewer_slots: usize,
    playhead: Option<u32>,
    /// Requests queued so far (the order of [`Peer::first_ask`]).
    asks: u64,
    /// Where the scheduler fetches from (the playhead, or near the swarm's front); peers that
    /// hold pieces from here on that we lack are the ones we are interested in.
    want_from: u32,
    rotor: usize,
    next_optimistic: Option<Instant>,
    last_rate: Option<Instant>,
    actions: VecDeque<Action>,
    stats: LiveStats,
    /// Verified bytes received per uploader key (what our receipts say).
    book: ReceiptBook,
}

impl LiveSwarm {
    /// A swarm that knows only the content ID: it fetches the info dictionary from the first
    /// peers (BEP 9) and emits [`Action::MetadataReceived`] or [`Action::NotLive`].
    pub fn new(content_id: InfoHash, config: LiveConfig) -> LiveSwarm {
        LiveSwarm {
            content_id,
            config,
            reachable: false,
            params: None,
            meta: Metadata::new(content_id),
            peers: BTreeMap::new(),
            headers: BTreeMap::new(),
            have: BTreeSet::new(),
            edge: None,
            downloads: BTreeMap::new(),
            checking: BTreeMap::new(),
            hashes: BTreeMap::new(),
            early: BTreeMap::new(),
            suspect: BTreeMap::new(),
            pending: VecDeque::new(),
            first_wave: BTreeMap::new(),
            served_to: BTreeMap::new(),
            reads_total: 0,
            open: Vec::new(),
            bitrate: 0,
            viewer_slots: 1,
            playhead: None,
            asks: 0,
            want_from: 0,
            rotor: 0,
            next_optimistic: None,
            last_rate: None,
            actions: VecDeque::new(),
            stats: LiveStats::default(),
            book: ReceiptBook::default(),
        }
    }

    /// A swarm for a stream whose info dictionary is known (it must hash to the content ID).
    pub fn with_info(
        info_bytes: Bytes,
        config: LiveConfig,
    ) -> Result<LiveSwarm, crate::live::LiveError> {
        let params = LiveParams::from_info_bytes(&info_bytes)?.ok_or(
            crate::live::LiveError::BadDescriptor("not a live stream (no `live` key)"),
        )?;
        let mut s = LiveSwarm::new(InfoHash::of_info(&info_bytes), config);
        s.params = Some(params);
        s.meta.set_info(info_bytes);
        Ok(s)
    }

    /// Next action for the engine (see the calling rule in the module docs).
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The content ID.
    pub fn content_id(&self) -> InfoHash {
        self.content_id
    }

    /// The stream's parameters, once the info dictionary is known.
    pub fn params(&self) -> Option<&LiveParams> {
        self.params.as_ref()
    }

    /// The newest index with a verified header.
    pub fn edge(&self) -> Option<u32> {
        self.edge
    }

    /// The oldest index of the window (pieces before it are refused).
    pub fn first(&self) -> u32 {
        match (self.edge, self.window()) {
            (Some(e), Some(w)) => w.first(e),
            _ => 0,
        }
    }

    /// The stream's window rule, once the info dictionary is known.
    pub fn window(&self) -> Option<Window> {
        self.params.as_ref().map(Window::new)
    }

    /// True when the piece is held.
    pub fn has(&self, index: u32) -> bool {
        self.have.contains(&index)
    }

    /// Counters.
    pub fn stats(&self) -> LiveStats {
        let mut s = self.stats.clone();
        s.peers = self.peers.len();
        s.down_rate = self.peers.values().map(|p| p.rec.traffic.down.rate()).sum();
        s.up_rate = self.peers.values().map(|p| p.rec.traffic.up.rate()).sum();
        s
    }

    /// The connected peers, for the API and logs.
    pub fn peer_infos(&self) -> Vec<LivePeerInfo> {
        self.peers
            .values()
            .map(|p| LivePeerInfo {
                addr: p.rec.listen_addr.unwrap_or(p.rec.addr),
                client: p.rec.ext.client.clone(),
                newest: p.has.last().copied(),
                am_choking: p.up.am_choking,
                peer_choking: p.peer_choking,
                outstanding: p.outstanding.len(),
                queued: p.up.queued.len(),
                reading: p.up.drain.in_flight(),
                down_rate: p.rec.traffic.down.rate(),
                up_rate: p.rec.traffic.up.rate(),
                downloaded: p.rec.traffic.down.total(),
                uploaded: p.rec.traffic.up.total(),
                utp: p.rec.route.utp,
                holepunched: p.rec.route.holepunched,
                reachable: p.rec.reachable(),
            })
            .collect()
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// A connection finished its BitTorrent handshake.
    pub fn add_peer(&mut self, key: PeerKey, addr: SocketAddr, hs: &Handshake, now: Instant) {
        if !hs.supports_extensions() {
            let reason = DisconnectReason::Unsupported(Missing::ExtensionProtocol);
            self.stats.disconnects.add(&reason);
            self.actions
                .push_back(Action::Disconnect { peer: key, reason });
            return;
        }
        if self.peers.is_empty() {
            // Rates are measured from now (an idle swarm does not wake to measure nothing).
            self.last_rate = Some(now);
        }
        // The first rechoke is due at once.
        self.next_optimistic.get_or_insert(now);
        self.peers.insert(
            key,
            Peer {
                // The first exchange comes soon: a live viewer must find relays in seconds,
                // not after a minute.
                rec: PeerRecord::new(addr, now, now + self.config.first_pex),
                extensions: true,
                fast: hs.supports_fast(),
                ready: false,
                up: UploadSlot::new(now),
                peer_choking: true,
                peer_interested: false,
                am_interested: false,
                has: BTreeSet::new(),
                their_first: 0,
                outstanding: Vec::new(),
                last_request: None,
                first_ask: BTreeMap::new(),
                refused: VecDeque::new(),
                hashes_sent: BTreeSet::new(),
                hash_fails: 0,
                finish_left: 0,
            },
        );
        self.send_ext_handshake(key);
    }

    /// A connection closed (for any reason). Its requests go to other peers.
    pub fn remove_peer(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        receipt::closed(&peer.rec, &mut self.book);
        self.meta.remove_peer(key);
        self.reads_total = self.reads_total.saturating_sub(peer.up.drain.in_flight());
        for (b, _) in peer.outstanding {
            self.release(b, key);
        }
        self.pump_reads();
    }

    /// The address a peer accepts connections on, when the engine knows it (it dialled it).
    pub fn set_listen_addr(&mut self, key: PeerKey, addr: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.rec.listen_addr = Some(addr);
        }
    }

    /// Where a connected peer listens, if known (we dialled it, or its extension handshake
    /// said).
    pub fn listen_addr(&self, key: PeerKey) -> Option<SocketAddr> {
        self.peers.get(&key).and_then(|p| p.rec.listen_addr)
    }

    /// The lowest piece a local player needs (`None`: no player; the node only relays).
    pub fn set_playhead(&mut self, playhead: Option<u32>, now: Instant) {
        if self.playhead != playhead {
            self.playhead = playhead;
            self.schedule(now);
        }
    }

    /// A message from a peer: the BitTorrent wire, `pc_live` and the other extensions.
    pub fn on_message(&mut self, key: PeerKey, msg: Message, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.rec.last_recv = now;
        match msg {
            Message::Choke => {
                if choke::on_choked(&mut peer.peer_choking, peer.fast) {
                    let dropped: Vec<BlockRef> =
                        peer.outstanding.drain(..).map(|(b, _)| b).collect();
                    for b in dropped {
                        self.release(b, key);
                    }
                }
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.schedule(now);
            }
            Message::Interested => {
                peer.peer_interested = true;
                // A free slot, or the optimistic one: a newcomer is served at once.
                if peer.ready && peer.up.am_choking && self.unchoked() <= self.slots() {
                    self.set_choking(key, false, now);
                }
            }
            Message::NotInterested => {
                peer.peer_interested = false;
                // It needs nothing of ours: its slot goes to a peer that does, if one waits
                // (a viewer at the edge is not interested between pieces; it keeps its slot
                // while nobody else wants it).
                if !peer.up.am_choking {
                    if let Some(next) = self.longest_waiting(now) {
                        self.set_choking(key, true, now);
                        self.set_choking(next, false, now);
                    }
                }
            }
            Message::Request(b) => self.on_request(key, b, now),
            Message::Cancel(b) => peer.up.queued.retain(|r| *r != b),
            Message::Reject(b) => {
                // One entry per piece (its blocks are refused one by one): with one per
                // block, refusals of 16 pieces filled the 64 places and the oldest pieces
                // were asked again at once, in a loop.
                if let Some(pos) = peer.refused.iter().position(|&(i, _)| i == b.index) {
                    peer.refused.remove(pos);
                } else if peer.refused.len() >= 64 {
                    peer.refused.pop_front();
                }
                peer.refused.push_back((b.index, now));
                if let Some(pos) = peer.outstanding.iter().position(|(r, _)| *r == b) {
                    peer.outstanding.swap_remove(pos);
                    self.release(b, key);
                    self.schedule(now);
                }
            }
            Message::Piece { index, begin, data } => self.on_block(key, index, begin, data, now),
            Message::Extended { id, payload } => self.on_extended(key, id, payload, now),
            // Availability comes in signed `pc_live` headers, not in HAVE or bitfields; the
            // rest (keep-alive, DHT port, suggestions) needs no answer.
            Message::Have(_)
            | Message::Bitfield(_)
            | Message::HaveAll
            | Message::HaveNone
            | Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::AllowedFast(_) => {}
        }
    }

    /// The engine checked a piece from [`Action::PieceComplete`]: `ok` when its payload
    /// matched the header (it is in the window now). A mismatch bans the peers that sent it.
    pub fn on_piece_checked(&mut self, index: u32, ok: bool, now: Instant) {
        let contributors = self.checking.remove(&index).unwrap_or_default().0;
        if ok {
            self.stats.pieces_received += 1;
            self.mark_have(index, now);
        } else {
            let len = self.headers.get(&index).map_or(0, |h| u64::from(h.length));
            self.stats.wasted += len;
            self.stats.downloaded = self.stats.downloaded.saturating_sub(len);
            // Requests queued for its blocks cannot be served now.
            self.refuse_queued(index);
            // A sole sender is the culprit. With several, nobody is banned yet: the piece is
            // fetched again from one of them (the one with most failures), which settles it.
            if let [key] = contributors.as_slice() {
                self.disconnect(*key, DisconnectReason::BadPiece { index });
            } else {
                for key in &contributors {
                    if let Some(peer) = self.peers.get_mut(key) {
                        peer.hash_fails += 1;
                    }
                }
                if self.suspect.len() < 64 {
                    self.suspect.insert(index, contributors);
                }
            }
        }
        self.schedule(now);
    }

    /// A verified piece got into the window another way (made here by the source, fetched from
    /// the CDN), with its block hashes ([`crate::live::PieceHeader::check_payload`] returns
    /// them): remember it and announce it. No-op for pieces already held, and for hashes that
    /// do not match the header (a caller's bug: the piece could not be relayed).
    pub fn on_piece_added(&mut self, header: PieceHeader, hashes: Vec<BlockHash>, now: Instant) {
        if self.have.contains(&header.index) || self.params.is_none() {
            return;
        }
        if header.index < self.first() {
            return;
        }
        let checked = header.check_hashes(&hashes);
        debug_assert!(checked.is_ok(), "hashes of another piece");
        if checked.is_err() {
            return;
        }
        self.headers.insert(header.index, header);
        self.note_bitrate(&header);
        self.hashes.insert(header.index, hashes);
        self.move_edge(header.index);
        // A download in progress for it is moot now.
        if self.downloads.remove(&header.index).is_some() {
            self.cancel_slots(header.index);
        }
        self.mark_have(header.index, now);
        self.schedule(now);
    }

    /// The engine sent a block that [`Action::SendBlock`] asked for (or could not: `false`).
    pub fn on_block_sent(&mut self, key: PeerKey, block: BlockRef, sent: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.up.drain.done();
        self.reads_total = self.reads_total.saturating_sub(1);
        if sent {
            peer.rec.traffic.up.add(u64::from(block.len));
            self.stats.uploaded += u64::from(block.len);
            self.stats.requests_served += 1;
        }
        self.pump_reads();
    }

    /// Both sides know the stream: exchange windows and recent headers, open the data flow.
    fn make_ready(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.ready {
            return;
        }
        let Some(live_id) = peer.rec.ext.id(Extension::PcLive) else {
            return self.disconnect(key, DisconnectReason::Unsupported(Missing::PcLive));
        };
        peer.ready = true;
        let window = LiveMsg::Window {
            first: self.have.first().copied().unwrap_or_else(|| self.first()),
            last: self.edge,
        };
        self.send(
            key,
            Message::Extended {
                id: live_id,
                payload: window.encode(),
            },
        );
        let recent = self.recent_headers();
        if !recent.is_empty() {
            self.stats.pieces_announced += recent.len() as u64;
            self.send(
                key,
                Message::Extended {
                    id: live_id,
                    payload: LiveMsg::Have(recent).encode(),
                },
            );
        }
        // Interest follows what it announces (`refresh_interest`); a slot is free for it.
        if self.unchoked() < self.slots() {
            self.set_choking(key, false, now);
        }
    }

    /// Headers of held pieces from near the edge, newest [`LiveConfig::recent_on_connect`].
    fn recent_headers(&self) -> Vec<PieceHeader> {
        let Some(p) = &self.params else {
            return Vec::new();
        };
        let n = (self.config.recent_on_connect.as_millis() as u64
            / u64::from(p.piece_duration_ms.max(1)))
        .clamp(1, MAX_HEADERS_PER_MSG as u64) as usize;
        let mut out: Vec<PieceHeader> = self
            .have
            .iter()
            .rev()
            .take(n)
            .filter_map(|i| self.headers.get(i).copied())
            .collect();
        out.reverse();
        out
    }

    fn on_live_msg(&mut self, key: PeerKey, msg: LiveMsg, now: Instant) {
        if !self.peers.get(&key).is_some_and(|p| p.ready) {
            return;
        }
        match msg {
            LiveMsg::Window { first, .. } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.their_first = first;
                    p.has = p.has.split_off(&first);
                }
            }
            LiveMsg::Have(headers) => {
                for h in headers {
                    if let Err(reason) = self.accept_header(key, &h, now) {
                        return self.disconnect(key, reason);
                    }
                }
                self.schedule(now);
            }
            LiveMsg::Hashes { index, hashes } => self.on_hashes(key, index, hashes),
        }
    }

    /// Block hashes of a piece: kept when they match its signed header's root (the peer's
    /// blocks of it follow); a list that does not match bans the peer. Hashes of a piece whose
    /// header we do not hold (it left the window, or was ignored) are dropped: its blocks will
    /// be too.
    fn on_hashes(&mut self, key: PeerKey, index: u32, hashes: Vec<BlockHash>) {
        let Some(header) = self.headers.get(&index) else {
            return;
        };
        if header.check_hashes(&hashes).is_err() {
            let fault = HeaderFault::BadBlockHashes;
            return self.disconnect(key, DisconnectReason::BadHeader { index, fault });
        }
        self.hashes.entry(index).or_insert(hashes);
    }

    /// Refuses every queued request for blocks of `index` once we gave up assembling it (its
    /// download is gone: the player passed it, the window moved, its check failed) and do not
    /// hold it: the requesters ask others.
    pub(super) fn refuse_queued(&mut self, index: u32) {
        if self.have.contains(&index) || self.checking.contains_key(&index) {
            return;
        }
        debug_assert!(
            !self.downloads.contains_key(&index),
            "called with its download"
        );
        let mut refusals = Vec::new();
        for (&k, p) in self.peers.iter_mut() {
            let fast = p.fast;
            p.up.queued.retain(|b| {
                let gone = b.index == index;
                if gone {
                    refusals.extend(choke::refuse(fast, *b).map(|m| (k, m)));
                }
                !gone
            });
        }
        for (k, m) in refusals {
            self.send(k, m);
        }
    }

    /// Checks an announced header; on success records it and that the peer has the piece.
    /// `Err` (the peer is banned) only for what no honest peer sends: a malformed header, a
    /// bad signature, a signed header conflicting with one we hold. Out-of-date and
    /// implausible headers are ignored (counted in [`LiveStats::ignored_headers`]).
    fn accept_header(
        &mut self,
        key: PeerKey,
        h: &PieceHeader,
        now: Instant,
    ) -> Result<(), DisconnectReason> {
        let Some(params) = &self.params else {
            return Ok(());
        };
        let index = h.index;
        let fault = |fault| DisconnectReason::BadHeader { index, fault };
        if h.length == 0 || h.length > params.max_piece_length {
            return Err(fault(HeaderFault::BadLength));
        }
        match self.headers.get(&index) {
            Some(known) if known == h => {}
            Some(_) => {
                return Err(fault(match h.verify(&params.pubkey, &self.content_id) {
                    Ok(()) => HeaderFault::Conflicting,
                    Err(_) => HeaderFault::Forged,
                }))
            }
            None => {
                let window = Window::new(params);
                let wall = self.wall_us(now);
                let edge = self
                    .edge
                    .map(|e| (e, self.headers.get(&e).map_or(wall, |h| h.timestamp_us)));
                // Verified whatever its age: a forgery is a forgery (and an honest peer's old
                // headers are few: a window's worth).
                h.verify(&params.pubkey, &self.content_id)
                    .map_err(|_| fault(HeaderFault::Forged))?;
                let judgement = window.judge(index, h.timestamp_us, edge, wall);
                if matches!(judgement, Judgement::Old | Judgement::Implausible) {
                    self.stats.ignored_headers += 1;
                    return Ok(());
                }
                self.headers.insert(index, *h);
                self.note_bitrate(h);
                self.move_edge(index);
                if judgement == Judgement::Jump {
                    // Keep only the new window (what we waited for left everyone's).
                    self.prune();
                }
            }
        }
        if let Some(p) = self.peers.get_mut(&key) {
            p.has.insert(index);
            // `refresh_interest`'s rule for one new piece: it can only make us interested.
            if !p.am_interested && index >= self.want_from && !self.have.contains(&index) {
                p.am_interested = true;
                self.send(key, Message::Interested);
            }
        }
        Ok(())
    }

    /// The stream's rate, bytes/s, as its headers tell (a moving average; 0 before any).
    pub fn byte_rate(&self) -> u64 {
        self.bitrate
    }

    /// Folds a new header into the stream's bitrate estimate (bytes/s, a moving average).
    fn note_bitrate(&mut self, h: &PieceHeader) {
        if h.duration_us == 0 {
            return;
        }
        let r = u64::from(h.length) * 1_000_000 / u64::from(h.duration_us);
        self.bitrate = if self.bitrate == 0 {
            r
        } else {
            (self.bitrate * 15 + r) / 16
        };
    }

    fn move_edge(&mut self, index: u32) {
        if self.edge.is_none_or(|e| index > e) {
            self.edge = Some(index);
            self.actions.push_back(Action::Edge(index));
            // What fell out of the window goes at once (not on a timer: a source without
            // peers has no timers, and its window must stay bounded all the same).
            self.prune();
        }
    }

    // ---- announcing ------------------------------------------------------------------

    /// A piece is held now: announce it (a viewer to everyone, the source to a few first).
    fn mark_have(&mut self, index: u32, now: Instant) {
        if !self.have.insert(index) {
            return;
        }
        // Peers we wanted only this piece of may have nothing more for us.
        self.refresh_interest(|p| p.am_interested && p.has.contains(&index));
        let Some(header) = self.headers.get(&index).copied() else {
            return;
        };
        // Peers told at its first block know already.
        let told = self.early.remove(&index).unwrap_or_default();
        let mut targets: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| p.ready && !p.has.contains(&index) && !told.contains(k))
            .map(|(&k, _)| k)
            .collect();
        if self.config.source && targets.len() > self.config.source_fanout {
            // The first wave: peers we unchoke (they can fetch it at once).
            targets.sort_by_key(|k| self.peers.get(k).is_none_or(|p| p.up.am_choking));
            // Rotate who hears first, so every viewer relays its share.
            let unchoked = targets
                .iter()
                .filter(|k| self.peers.get(k).is_some_and(|p| !p.up.am_choking))
                .count();
            let n = if unchoked == 0 {
                targets.len()
            } else {
                unchoked
            };
            let start = self.rotor % n;
            targets[..n].rotate_left(start);
            targets.truncate(self.config.source_fanout);
            self.rotor = self.rotor.wrapping_add(self.config.source_fanout);
            let delay = self.source_delay();
            if self.pending.len() >= MAX_PENDING_ANNOUNCES {
                self.pending.pop_front();
            }
            self.pending.push_back(Pending {
                due: now + delay,
                index,
                told: targets.clone(),
            });
            self.first_wave.insert(index, (now, targets.clone()));
        }
        for key in targets {
            self.announce(key, header);
        }
    }

    /// The source's delay before the peers outside the first wave hear of a piece.
    fn source_delay(&self) -> Duration {
        self.config.source_delay.unwrap_or_else(|| {
            Duration::from_millis(
                self.params
                    .as_ref()
                    .map_or(500, |p| u64::from(p.piece_duration_ms)),
            )
        })
    }

    fn announce(&mut self, key: PeerKey, header: PieceHeader) {
        let Some(id) = self
            .peers
            .get(&key)
            .and_then(|p| p.rec.ext.id(Extension::PcLive))
        else {
            return;
        };
        self.stats.pieces_announced += 1;
        self.send(
            key,
            Message::Extended {
                id,
                payload: LiveMsg::Have(vec![header]).encode(),
            },
        );
    }

    /// The source's second wave: peers not told yet that still lack a piece hear of it now.
    fn flush_pending(&mut self, now: Instant) {
        while self.pending.front().is_some_and(|p| p.due <= now) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let Some(header) = self.headers.get(&p.index).copied() else {
                continue;
            };
            let targets: Vec<PeerKey> = self
                .peers
                .iter()
                .filter(|(k, peer)| {
                    peer.ready && !peer.has.contains(&p.index) && !p.told.contains(k)
                })
                .map(|(&k, _)| k)
                .collect();
            for key in targets {
                self.announce(key, header);
            }
        }
    }

    // ---- helpers ---------------------------------------------------------------------

    fn send(&mut self, key: PeerKey, msg: Message) {
        self.actions.push_back(Action::Send(key, msg));
    }

    fn disconnect(&mut self, key: PeerKey, reason: DisconnectReason) {
        if self.peers.contains_key(&key) {
            self.remove_peer(key);
            self.stats.disconnects.add(&reason);
            if reason.ban() {
                self.stats.banned += 1;
            }
            self.actions
                .push_back(Action::Disconnect { peer: key, reason });
        }
    }

    fn update_rates(&mut self, now: Instant) {
        let Some(last) = self.last_rate else {
            self.last_rate = Some(now);
            return;
        };
        let dt = now.saturating_duration_since(last);
        if dt < timers::RATE_EVERY {
            return;
        }
        self.last_rate = Some(now);
        for p in self.peers.values_mut() {
            p.rec.traffic.sample(dt);
        }
    }

    /// Forgets what fell out of the window.
    fn prune(&mut self) {
        let first = self.first();
        if first == 0 {
            return;
        }
        self.headers = self.headers.split_off(&first);
        self.have = self.have.split_off(&first);
        self.hashes = self.hashes.split_off(&first);
        self.early = self.early.split_off(&first);
        self.suspect = self.suspect.split_off(&first);
        // Kept for the whole window, not the newest 64 pieces: forgetting whom an old piece
        // went to let laggards more than 64 pieces behind take any number of copies of it
        // (nine of one piece, the source at 3.3x the bitrate, at 1,000 simulated viewers).
        self.first_wave = self.first_wave.split_off(&first);
        self.served_to = self.served_to.split_off(&first);
        let stale: Vec<u32> = self.downloads.range(..first).map(|(&i, _)| i).collect();
        for i in stale {
            if self.downloads.remove(&i).is_some() {
                self.cancel_slots(i);
                self.refuse_queued(i);
            }
        }
        for p in self.peers.values_mut() {
            p.has = p.has.split_off(&first);
            p.first_ask = p.first_ask.split_off(&first);
            p.hashes_sent = p.hashes_sent.split_off(&first);
        }
    }
}

mod ext;
mod reach;
mod sched;
mod serve;
mod timers;

#[cfg(test)]
mod tests;
