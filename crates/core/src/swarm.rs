//! The per-torrent state machine: peer events in, actions out.
//!
//! A [`Swarm`] owns everything one torrent knows about its peers: who chokes whom, who has what,
//! which requests are in flight each way, the [`Picker`], the [`Choker`], and the fetching of
//! metadata (BEP 9) when the torrent started from a magnet. It performs no I/O and reads no
//! clock: the engine feeds it events with a `now` and executes the [`Action`]s it emits.
//!
//! Calling rule (the time contract of [`crate::time`]): after every input (`add_peer`,
//! `on_message`, `remove_peer`, `on_piece_verified`, `on_block_sent`, `set_metadata`,
//! `handle_timeout`, …), drain [`Swarm::poll_action`] until it returns `None`; then wake the swarm
//! with [`Swarm::handle_timeout`] at the instant [`Swarm::poll_timeout`] names (rate meters,
//! choking rounds, request timeouts, idle peers, keep-alives, PEX). There is no fixed tick.
//!
//! Anything a peer sends that breaks the protocol yields `Action::Disconnect` for that peer only;
//! nothing a peer sends can panic the swarm or affect other peers' state beyond availability.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bitfield::Bitfield;
use crate::choker::Choker;
use crate::disconnect::{DisconnectReason, ProtocolViolation};
use crate::ext::choke::{self, UploadSlot};
use crate::ext::handshake::{self, our_handshake, Extension, EXT_HANDSHAKE_ID};
use crate::ext::metadata::{Metadata, MetadataEvent};
use crate::ext::peer::PeerRecord;
use crate::ext::pex::{self, Pex};
use crate::ext::receipt::{self, ReceiptBook, ReceiptEvent};
use crate::ext::search::{self, SearchEvent};
use crate::id::InfoHash;
use crate::picker::{Picker, Received};
use crate::wire::{BlockRef, Handshake, Message};

mod pc_search;
mod reach;
pub mod readers;
mod receipts;
mod serve;
mod timers;
mod types;
pub mod webseed;

pub use types::{Action, PeerInfo, SwarmConfig, SwarmStats};

/// The engine's handle for one connection (unique per swarm, never reused).
pub type PeerKey = u64;

/// What a peer said it has before we knew the torrent's size.
#[derive(Debug, Default)]
struct Pending {
    all: bool,
    bitfield: Option<Bytes>,
    haves: Vec<u32>,
}

const MAX_PENDING_HAVES: usize = 100_000;

#[derive(Debug)]
struct Peer {
    rec: PeerRecord,
    fast: bool,
    extensions: bool,
    /// Its BEP 10 handshake arrived.
    ext_seen: bool,
    /// Our upload side to it: choke state, its requests, whether our blocks drain.
    up: UploadSlot,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    has: Option<Bitfield>,
    pending: Pending,
    outstanding: VecDeque<BlockRef>,
    queue_target: u32,
    /// Blocks received since the queue last grew, and when that was (slow start).
    grow_blocks: u32,
    grow_since: Instant,
    reqq: u32,
    last_block: Instant,
    /// Something was sent to it since the last keep-alive check.
    sent_recently: bool,
    /// The next keep-alive check (a keep-alive goes out if nothing was sent since the last).
    keepalive_at: Instant,
    hash_fails: u32,
}

/// Most seed-to-seed connections a complete torrent keeps open for `pc_search` (other seeds
/// are closed as BitTorrent clients do: neither has anything for the other).
pub const MAX_SEARCH_SEEDS: usize = 8;

/// The per-torrent state machine. See the module docs for the calling rule.
#[derive(Debug)]
pub struct Swarm {
    info_hash: InfoHash,
    config: SwarmConfig,
    /// Peers can dial this node, as far as it knows (told in our extension handshake).
    reachable: bool,
    /// BEP 9: the info dictionary (served), or its fetch.
    meta: Metadata,
    picker: Option<Picker>,
    peers: BTreeMap<PeerKey, Peer>,
    choker: Choker,
    /// Who sent each piece in progress, and how many of its bytes (credited to their keys
    /// once the piece verifies).
    contributors: BTreeMap<u32, Vec<(PeerKey, u64)>>,
    actions: VecDeque<Action>,
    stats: SwarmStats,
    completed_sent: bool,
    /// When the rate meters were last updated (`None` until the first peer).
    last_rate: Option<Instant>,
    /// When the next choking round is due (`None` until the first peer).
    next_choke: Option<Instant>,
    scratch: Vec<BlockRef>,
    /// Stream readers and the priority ladder they set.
    readers: readers::Readers,
    /// Verified bytes received per uploader key (what our receipts say).
    book: ReceiptBook,
}

impl Swarm {
    /// A swarm that does not yet know its metadata (started from a magnet or an ID).
    pub fn new(info_hash: InfoHash, config: SwarmConfig) -> Self {
        let choker = Choker::new(config.upload_slots, config.seed);
        Swarm {
            info_hash,
            config,
            reachable: false,
            meta: Metadata::new(info_hash),
            picker: None,
            peers: BTreeMap::new(),
            choker,
            contributors: BTreeMap::new(),
            actions: VecDeque::new(),
            stats: SwarmStats::default(),
            completed_sent: false,
            last_rate: None,
            next_choke: None,
            scratch: Vec::new(),
            readers: readers::Readers::default(),
            book: ReceiptBook::default(),
        }
    }

    /// The info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Installs the metadata: the raw info dictionary (served to peers over ut_metadata), the
    /// geometry, and the pieces already verified on disk. Peers' earlier announcements are
    /// applied now.
    pub fn set_metadata(
        &mut self,
        info_bytes: Bytes,
        piece_length: u32,
        total_length: u64,
        num_pieces: u32,
        have: &Bitfield,
        now: Instant,
    ) {
        let mut picker = Picker::new(num_pieces, piece_length, total_length, self.config.seed);
        for i in have.ones() {
            picker.set_have(i);
        }
        self.picker = Some(picker);
        self.meta.set_info(info_bytes);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.send_ext_handshake_if_needed(key);
            self.send_have_summary(key);
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            let pending = std::mem::take(&mut peer.pending);
            let bits = if pending.all {
                Ok(Bitfield::full(num_pieces))
            } else if let Some(b) = pending.bitfield {
                Bitfield::from_wire(&b, num_pieces)
            } else {
                Ok(Bitfield::new(num_pieces))
            };
            match bits {
                Ok(mut bits) => {
                    for i in pending.haves {
                        bits.set(i, true);
                    }
                    self.set_peer_has(key, bits);
                }
                Err(_) => self.disconnect(
                    key,
                    DisconnectReason::Protocol(ProtocolViolation::BadBitfield),
                ),
            }
        }
        self.check_complete();
        self.refill_all(now);
    }

    /// Marks a piece as verified outside the normal flow (e.g. a recheck).
    pub fn has_metadata(&self) -> bool {
        self.picker.is_some()
    }

    /// Verified pieces, if the metadata is known.
    pub fn have(&self) -> Option<&Bitfield> {
        self.picker.as_ref().map(|p| p.have())
    }

    /// Mutable access to piece priorities (streaming deadlines use this).
    pub fn picker_mut(&mut self) -> Option<&mut Picker> {
        self.picker.as_mut()
    }

    /// Stream reader `id` is at `piece` (of a file ending at `last`) and wants `readahead`
    /// pieces: the priority ladder ([`readers::ladder`]) is applied at once, and a seek cancels
    /// requests in flight below [`readers::SEEK_CANCEL_BELOW`]. Bounded by
    /// [`readers::MAX_READERS`].
    pub fn set_reader(&mut self, id: u64, piece: u32, last: u32, readahead: u32, now: Instant) {
        let seek = self.readers.set(id, piece, last, readahead, now);
        self.apply_readers(seek, now);
    }

    /// Stream reader `id` closed: the pieces only it needed return to normal priority.
    pub fn remove_reader(&mut self, id: u64, now: Instant) {
        if self.readers.remove(id) {
            self.apply_readers(false, now);
        }
    }

    /// The stream readers (web seed rescue looks at how long they have waited).
    pub fn readers(&self) -> &readers::Readers {
        &self.readers
    }

    fn apply_readers(&mut self, seek: bool, now: Instant) {
        let Some(pk) = self.picker.as_mut() else {
            return;
        };
        self.readers.apply(pk);
        self.reprioritized(now, seek.then_some(readers::SEEK_CANCEL_BELOW));
    }

    /// True when every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.picker.as_ref().is_some_and(|p| p.is_complete())
    }

    /// Counters.
    pub fn stats(&self) -> SwarmStats {
        let mut s = self.stats.clone();
        s.peers = self.peers.len();
        s.unchoking_us = self.peers.values().filter(|p| !p.peer_choking).count();
        s.down_rate = self.peers.values().map(|p| p.rec.traffic.down.rate()).sum();
        s.up_rate = self.peers.values().map(|p| p.rec.traffic.up.rate()).sum();
        s
    }

    /// Connected peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.peers
            .iter()
            .map(|(&key, p)| PeerInfo {
                key,
                addr: p.rec.addr,
                client: p.rec.ext.client.clone(),
                pieces: p.has.as_ref().map_or(0, |h| h.count()),
                down_rate: p.rec.traffic.down.rate(),
                up_rate: p.rec.traffic.up.rate(),
                downloaded: p.rec.traffic.down.total(),
                uploaded: p.rec.traffic.up.total(),
                utp: p.rec.route.utp,
                holepunched: p.rec.route.holepunched,
                reachable: p.rec.reachable(),
                in_flight: p.outstanding.len(),
                am_choking: p.up.am_choking,
                peer_choking: p.peer_choking,
                am_interested: p.am_interested,
                peer_interested: p.peer_interested,
            })
            .collect()
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Next action for the engine.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A connection finished its handshake. Sends our extension handshake and what we have.
    pub fn add_peer(&mut self, key: PeerKey, addr: SocketAddr, hs: &Handshake, now: Instant) {
        let first_pex = now + self.config.pex_interval.unwrap_or(Duration::ZERO);
        let peer = Peer {
            rec: PeerRecord::new(addr, now, first_pex),
            fast: hs.supports_fast(),
            extensions: hs.supports_extensions(),
            ext_seen: false,
            up: UploadSlot::new(now),
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            has: self.picker.as_ref().map(|p| Bitfield::new(p.num_pieces())),
            pending: Pending::default(),
            outstanding: VecDeque::new(),
            queue_target: self.config.initial_queue,
            grow_blocks: 0,
            grow_since: now,
            reqq: 250,
            last_block: now,
            sent_recently: false,
            keepalive_at: now + timers::KEEPALIVE_CHECK,
            hash_fails: 0,
        };
        if self.peers.is_empty() {
            // Rates are measured from now (an idle swarm does not wake to measure nothing).
            self.last_rate = Some(now);
        }
        // The first choking round is due at once.
        self.next_choke.get_or_insert(now);
        self.peers.insert(key, peer);
        self.send_ext_handshake_if_needed(key);
        if self.picker.is_some() {
            self.send_have_summary(key);
        }
    }

    /// The address a peer accepts connections on, when the engine knows it (it dialled it).
    /// Peers that dialled us tell theirs in the extension handshake.
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

    /// A connection closed (for any reason). Its requests go back to the picker.
    pub fn remove_peer(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        receipt::closed(&peer.rec, &mut self.book);
        self.meta.remove_peer(key);
        if let Some(picker) = self.picker.as_mut() {
            for b in &peer.outstanding {
                picker.on_request_failed(b);
            }
            if let Some(has) = &peer.has {
                picker.remove_peer_pieces(has);
            }
        }
    }

    /// A message from a peer.
    pub fn on_message(&mut self, key: PeerKey, msg: Message, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.rec.last_recv = now;
        match msg {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::AllowedFast(_) => {}
            Message::Choke => {
                if choke::on_choked(&mut peer.peer_choking, peer.fast) {
                    let dropped: Vec<BlockRef> = peer.outstanding.drain(..).collect();
                    if let Some(picker) = self.picker.as_mut() {
                        for b in &dropped {
                            picker.on_request_failed(b);
                        }
                    }
                }
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                peer.last_block = now;
                self.fill_requests(key);
            }
            Message::Interested => {
                peer.peer_interested = true;
                if peer.up.am_choking && self.unchoked_count() <= self.choker.slots() {
                    self.set_choking(key, false, now);
                }
            }
            Message::NotInterested => peer.peer_interested = false,
            Message::Have(i) => self.on_have(key, i, now),
            Message::Bitfield(bytes) => self.on_bitfield(key, bytes, now),
            Message::HaveAll | Message::HaveNone if !peer.fast => self.disconnect(
                key,
                DisconnectReason::Protocol(ProtocolViolation::FastWithoutFast),
            ),
            Message::HaveAll => {
                if let Some(picker) = &self.picker {
                    let full = Bitfield::full(picker.num_pieces());
                    self.set_peer_has(key, full);
                    self.fill_requests(key);
                } else {
                    peer.pending.all = true;
                }
            }
            Message::HaveNone => {}
            Message::Request(b) => self.on_request(key, b),
            Message::Cancel(b) => {
                peer.up.queued.retain(|r| *r != b);
            }
            Message::Piece { index, begin, data } => self.on_piece(key, index, begin, data, now),
            Message::Reject(b) => {
                if let Some(pos) = peer.outstanding.iter().position(|r| *r == b) {
                    peer.outstanding.remove(pos);
                    if let Some(picker) = self.picker.as_mut() {
                        picker.on_request_failed(&b);
                    }
                    self.fill_requests(key);
                }
            }
            Message::Extended { id, payload } => self.on_extended(key, id, payload, now),
        }
    }

    /// The engine finished checking (and writing) a piece that [`Action::Verify`] asked for.
    pub fn on_piece_verified(&mut self, index: u32, ok: bool, now: Instant) {
        let Some(picker) = self.picker.as_mut() else {
            return;
        };
        picker.on_piece_verified(index, ok);
        let contributors = self.contributors.remove(&index).unwrap_or_default();
        if ok {
            for &(key, n) in &contributors {
                match self.peers.get_mut(&key) {
                    Some(p) => receipt::credit(&mut p.rec, &mut self.book, n),
                    None => self.book.unreceipted = self.book.unreceipted.saturating_add(n),
                }
            }
            self.announce_have(index);
            self.check_complete();
        } else {
            self.stats.hash_failures += 1;
            let len = picker.piece_len(index) as u64;
            self.stats.wasted += len;
            self.stats.downloaded = self.stats.downloaded.saturating_sub(len);
            let sole = contributors.len() == 1;
            for (key, _) in contributors {
                let Some(peer) = self.peers.get_mut(&key) else {
                    continue;
                };
                peer.hash_fails += 1;
                if sole || peer.hash_fails >= 2 {
                    self.disconnect(key, DisconnectReason::BadPiece { index });
                }
            }
            self.refill_all(now);
        }
    }

    /// Piece priorities changed (e.g. a stream reader moved). Requests go out for the new
    /// priorities at once; with `cancel_below`, requests in flight for pieces below that priority
    /// are cancelled first, so a seek is not queued behind stale requests.
    pub fn reprioritized(&mut self, now: Instant, cancel_below: Option<u8>) {
        if let (Some(min), Some(picker)) = (cancel_below, self.picker.as_mut()) {
            let mut cancels = Vec::new();
            for (&key, peer) in self.peers.iter_mut() {
                peer.outstanding.retain(|b| {
                    let stale = picker.priority(b.index) < min;
                    if stale {
                        picker.on_request_failed(b);
                        cancels.push((key, *b));
                    }
                    !stale
                });
            }
            for (key, b) in cancels {
                self.send(key, Message::Cancel(b));
            }
        }
        self.update_interest_all();
        self.refill_all(now);
    }

    /// A piece was obtained and verified outside the swarm (e.g. from a web seed): mark it,
    /// cancel what peers were still sending for it, and announce it.
    pub fn piece_completed_elsewhere(&mut self, index: u32, now: Instant) {
        let Some(picker) = self.picker.as_mut() else {
            return;
        };
        if index >= picker.num_pieces() || picker.have().get(index) {
            return;
        }
        picker.set_have(index);
        self.contributors.remove(&index);
        let mut cancels = Vec::new();
        for (&key, peer) in self.peers.iter_mut() {
            peer.outstanding.retain(|b| {
                let stale = b.index == index;
                if stale {
                    cancels.push((key, *b));
                }
                !stale
            });
        }
        for (key, b) in cancels {
            self.send(key, Message::Cancel(b));
        }
        self.announce_have(index);
        self.check_complete();
        self.update_interest_all();
        self.refill_all(now);
    }

    /// Pieces no connected peer has, that are wanted and not being fetched, highest priority
    /// first (for web seeds: the bytes only an HTTP server can give).
    pub fn pieces_nobody_has(&self, max: usize, skip: impl Fn(u32) -> bool) -> Vec<u32> {
        let Some(picker) = &self.picker else {
            return Vec::new();
        };
        let mut v: Vec<(u8, u32)> = (0..picker.num_pieces())
            .filter(|&i| picker.wants(i) && picker.availability(i) == 0 && !skip(i))
            .map(|i| (picker.priority(i), i))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().take(max).map(|(_, i)| i).collect()
    }

    // ---- handlers -------------------------------------------------------------------------

    fn on_have(&mut self, key: PeerKey, index: u32, now: Instant) {
        let _ = now;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(picker) = self.picker.as_mut() else {
            if peer.pending.haves.len() < MAX_PENDING_HAVES {
                peer.pending.haves.push(index);
            }
            return;
        };
        if index >= picker.num_pieces() {
            self.disconnect(
                key,
                DisconnectReason::Protocol(ProtocolViolation::HaveOutOfRange),
            );
            return;
        }
        let has = peer
            .has
            .get_or_insert_with(|| Bitfield::new(picker.num_pieces()));
        if has.set(index, true) {
            picker.add_peer_piece(index);
            if !peer.am_interested && picker.wants(index) {
                self.set_interested(key, true);
            }
            self.fill_requests(key);
        }
    }

    fn on_bitfield(&mut self, key: PeerKey, bytes: Bytes, now: Instant) {
        let _ = now;
        let Some(num) = self.picker.as_ref().map(|p| p.num_pieces()) else {
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.pending.bitfield = Some(bytes);
            }
            return;
        };
        match Bitfield::from_wire(&bytes, num) {
            Ok(bits) => {
                self.set_peer_has(key, bits);
                self.fill_requests(key);
            }
            Err(_) => self.disconnect(
                key,
                DisconnectReason::Protocol(ProtocolViolation::BadBitfield),
            ),
        }
    }

    fn on_piece(&mut self, key: PeerKey, index: u32, begin: u32, data: Bytes, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let len = data.len() as u32;
        let b = BlockRef { index, begin, len };
        let pos = if peer.outstanding.front() == Some(&b) {
            Some(0)
        } else {
            peer.outstanding.iter().position(|r| *r == b)
        };
        let Some(pos) = pos else {
            // Not asked of this peer (or cancelled already): count and drop.
            self.stats.wasted += len as u64;
            return;
        };
        peer.outstanding.remove(pos);
        peer.last_block = now;
        peer.rec.traffic.down.add(u64::from(len));
        // Slow start: a peer that delivers a whole queue within half a second gets twice the
        // queue, so a fast link fills in milliseconds while a slow peer (whose sent-but-queued
        // blocks a seek cannot take back) never holds much more than a second of requests.
        peer.grow_blocks += 1;
        if peer.grow_blocks >= peer.queue_target {
            if now.saturating_duration_since(peer.grow_since) < Duration::from_millis(500) {
                let cap = self.config.max_queue.min(peer.reqq.max(1));
                peer.queue_target = (peer.queue_target * 2).min(cap);
            }
            peer.grow_blocks = 0;
            peer.grow_since = now;
        }
        let Some(picker) = self.picker.as_mut() else {
            return;
        };
        match picker.on_block_received(index, begin, len) {
            Received::Fresh { piece_complete } => {
                self.stats.downloaded += len as u64;
                let c = self.contributors.entry(index).or_default();
                if let Some(i) = c.iter().position(|(k, _)| *k == key) {
                    c[i].1 += len as u64;
                } else if c.len() < 32 {
                    c.push((key, len as u64));
                }
                self.actions.push_back(Action::Store { index, begin, data });
                if piece_complete {
                    self.actions.push_back(Action::Verify(index));
                }
                if picker.in_endgame() {
                    self.cancel_elsewhere(key, b);
                }
            }
            Received::Duplicate | Received::Unexpected => self.stats.wasted += len as u64,
        }
        self.fill_requests(key);
    }

    fn on_extended(&mut self, key: PeerKey, id: u8, payload: Bytes, now: Instant) {
        if id == EXT_HANDSHAKE_ID {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            match handshake::receive(&payload, key, &mut peer.rec, &mut self.meta, now) {
                Err(reason) => return self.disconnect(key, reason),
                Ok(joined) => {
                    peer.ext_seen = true;
                    if let Some(r) = peer.rec.ext.reqq {
                        peer.reqq = r.clamp(1, 10_000);
                    }
                    if joined {
                        self.actions
                            .push_back(Action::Search(key, SearchEvent::Joined));
                    }
                    let ident = self.config.identity.as_ref();
                    if let Some(m) = receipt::hello(ident, key, &mut peer.rec) {
                        self.send(key, m);
                    }
                }
            }
            // A seed whose handshake says it does not speak pc_search is not kept after all.
            let seed = self
                .peers
                .get(&key)
                .and_then(|p| p.has.as_ref())
                .is_some_and(|h| h.is_full());
            if seed && self.is_complete() && !self.keeps_seed(key) {
                self.disconnect(key, DisconnectReason::BothSeeds);
            }
            return self.drain_meta();
        }
        match Extension::from_our_id(id) {
            Some(Extension::UtMetadata) => {
                self.meta.on_message(key, &payload, now);
                self.drain_meta();
            }
            Some(Extension::UtPex) => {
                if let Some(added) = pex::received(&payload) {
                    self.actions.push_back(Action::Discovered(key, added));
                }
            }
            Some(Extension::UtHolepunch) => self.on_holepunch(key, &payload, now),
            Some(Extension::PcSearch) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                match search::receive(&payload, &mut peer.rec, now) {
                    Ok(Some(ev)) => self.actions.push_back(Action::Search(key, ev)),
                    Ok(None) => {}
                    Err(reason) => self.disconnect(key, reason),
                }
            }
            Some(Extension::PcReceipt) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                let ident = self.config.identity.as_ref();
                match receipt::receive(&payload, key, &mut peer.rec, ident, &mut self.book, now) {
                    Ok(Some(ReceiptEvent::Reply(m))) => self.send(key, m),
                    Ok(Some(ReceiptEvent::Receipts(r))) => {
                        self.actions.push_back(Action::Receipts(key, r));
                    }
                    Ok(Some(ReceiptEvent::Identified(_)) | None) => {}
                    Err(reason) => self.disconnect(key, reason),
                }
            }
            Some(Extension::PcLive) | None => {}
        }
    }

    /// Carries out what BEP 9 asks: messages, drops, and the dictionary once it arrived.
    fn drain_meta(&mut self) {
        while let Some(ev) = self.meta.poll() {
            match ev {
                MetadataEvent::Send(key, msg) => self.send(key, msg),
                MetadataEvent::Disconnect(key, reason) => self.disconnect(key, reason),
                MetadataEvent::Received { info, .. } => {
                    self.actions.push_back(Action::MetadataReceived(info))
                }
            }
        }
    }

    // ---- helpers --------------------------------------------------------------------------

    fn send(&mut self, key: PeerKey, msg: Message) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.sent_recently = true;
        }
        self.actions.push_back(Action::Send(key, msg));
    }

    /// BEP 11: tells each peer that speaks ut_pex, at most once per interval, which of our
    /// peers appeared and disappeared since our last message to it (at most
    /// [`Pex::MAX_PEERS`] each way). Seeds are flagged.
    fn send_pex(&mut self, now: Instant) {
        let Some(interval) = self.config.pex_interval else {
            return;
        };
        let known = pex::known(self.peers.iter().map(|(&k, p)| {
            let seed = p.has.as_ref().is_some_and(|h| h.is_full());
            (k, &p.rec, if seed { Pex::FLAG_SEED } else { 0 })
        }));
        let peers = self.peers.iter_mut().map(|(&k, p)| (k, &mut p.rec));
        for (key, msg) in pex::round(now, interval, &known, peers) {
            self.send(key, msg);
        }
    }

    /// Sends HAVE for a new piece to every peer that lacks it.
    fn announce_have(&mut self, index: u32) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let has_it = self
                .peers
                .get(&key)
                .and_then(|p| p.has.as_ref())
                .is_some_and(|h| h.get(index));
            if !has_it {
                self.send(key, Message::Have(index));
            }
        }
    }

    fn disconnect(&mut self, key: PeerKey, reason: DisconnectReason) {
        if self.peers.contains_key(&key) {
            self.remove_peer(key);
            self.stats.disconnects.add(&reason);
            self.actions
                .push_back(Action::Disconnect { peer: key, reason });
        }
    }

    fn send_ext_handshake_if_needed(&mut self, key: PeerKey) {
        if !self.peers.get(&key).is_some_and(|p| p.extensions) {
            return;
        }
        let msg = our_handshake(
            &[
                Extension::UtMetadata,
                Extension::UtPex,
                Extension::PcSearch,
                Extension::PcReceipt,
                Extension::UtHolepunch,
            ],
            self.meta.size(),
            self.config.listen_port,
            self.config.max_peer_requests as u32,
            self.reachable,
        );
        self.send(key, msg);
    }

    fn send_have_summary(&mut self, key: PeerKey) {
        let Some(picker) = &self.picker else { return };
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let have = picker.have();
        let msg = if peer.fast && have.is_full() {
            Message::HaveAll
        } else if peer.fast && have.count() == 0 {
            Message::HaveNone
        } else if have.count() == 0 {
            return;
        } else {
            Message::Bitfield(Bytes::copy_from_slice(have.as_bytes()))
        };
        self.send(key, msg);
    }

    fn set_peer_has(&mut self, key: PeerKey, bits: Bitfield) {
        let Some(picker) = self.picker.as_mut() else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if let Some(old) = peer.has.take() {
            picker.remove_peer_pieces(&old);
        }
        picker.add_peer_pieces(&bits);
        let seed = bits.is_full();
        peer.has = Some(bits);
        if seed && picker.is_complete() && !self.keeps_seed(key) {
            self.disconnect(key, DisconnectReason::BothSeeds);
            return;
        }
        self.update_interest(key);
    }

    fn update_interest(&mut self, key: PeerKey) {
        let Some(picker) = &self.picker else { return };
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let wants = match &peer.has {
            Some(h) if !picker.is_complete() => {
                if h.is_full() {
                    true
                } else {
                    h.ones().any(|i| picker.wants(i))
                }
            }
            _ => false,
        };
        if wants != peer.am_interested {
            self.set_interested(key, wants);
        }
    }

    fn update_interest_all(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.update_interest(key);
        }
    }

    fn set_interested(&mut self, key: PeerKey, on: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.am_interested = on;
        self.send(
            key,
            if on {
                Message::Interested
            } else {
                Message::NotInterested
            },
        );
    }

    fn fill_requests(&mut self, key: PeerKey) {
        let Some(picker) = self.picker.as_mut() else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.peer_choking || !peer.am_interested {
            return;
        }
        let Some(has) = &peer.has else { return };
        let target = peer.queue_target.min(peer.reqq) as usize;
        if peer.outstanding.len() >= target {
            return;
        }
        let want = target - peer.outstanding.len();
        // Refill in batches (an eighth of the queue) rather than one block per block received:
        // picking is cheaper per block and requests leave in fewer writes.
        if want < (target / 8).max(1) && !peer.outstanding.is_empty() {
            return;
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let outstanding = &peer.outstanding;
        if outstanding.is_empty() {
            picker.pick_urgent_duplicates(has, want, &mut out, |b| outstanding.contains(b));
        }
        let left = want - out.len();
        picker.pick(has, left, &mut out, |b| outstanding.contains(b));
        peer.outstanding.extend(out.iter().copied());
        peer.sent_recently |= !out.is_empty();
        for b in out.drain(..) {
            self.actions
                .push_back(Action::Send(key, Message::Request(b)));
        }
        self.scratch = out;
    }

    fn refill_all(&mut self, now: Instant) {
        let _ = now;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(key);
        }
    }

    fn cancel_elsewhere(&mut self, from: PeerKey, b: BlockRef) {
        let others: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| **k != from && p.outstanding.contains(&b))
            .map(|(k, _)| *k)
            .collect();
        for key in others {
            if let Some(p) = self.peers.get_mut(&key) {
                p.outstanding.retain(|r| *r != b);
            }
            self.send(key, Message::Cancel(b));
        }
    }

    fn check_complete(&mut self) {
        if self.completed_sent || !self.is_complete() {
            return;
        }
        self.completed_sent = true;
        self.actions.push_back(Action::Completed);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let seed = self
                .peers
                .get(&key)
                .and_then(|p| p.has.as_ref())
                .is_some_and(|h| h.is_full());
            if seed && !self.keeps_seed(key) {
                self.disconnect(key, DisconnectReason::BothSeeds);
            } else if !seed {
                self.update_interest(key);
            }
        }
    }
}
