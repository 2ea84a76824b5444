//! One live stream at run time: an actor task that owns the [`LiveSwarm`] state machine and
//! pumps it, like [`crate::torrent`] does for a torrent.
//!
//! The actor feeds the swarm peer events (from [`crate::peer`] connections), the session's
//! commands, the playhead of local players and the pieces others put in the [`LiveBuffer`]
//! (the local source, the CDN fallback), and executes the swarm's actions: it queues messages
//! and block data to connections, checks assembled payloads on the blocking pool and inserts
//! verified pieces into the buffer (`Origin::Peer`) and publishes a [`LiveStatus`] about every
//! 250 ms. Connections, dials (static, `LiveOptions.peers`, PEX, DHT, the descriptor's
//! trackers) and bans are the [`Host`]'s, shared with the torrent actor.
//! No fixed tick: the loop sleeps until the swarm's `poll_timeout` or the next status, so a
//! relay announces and requests the moment something is due.
//!
//! Started by ID only, it first fetches the info dictionary (BEP 9): a live one creates the
//! buffer (published on the handle's buffer watch); an ordinary torrent's is reported on the
//! `resolved` watch and the actor ends, so the session can start a VoD torrent with it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peercdn_core::conn::Source as PeerSource;
use peercdn_core::live::swarm::{Action, LiveConfig, LiveSwarm};
use peercdn_core::live::{Descriptor, PieceHeader};
use peercdn_core::time::earliest;
use peercdn_core::wire::Handshake;
use peercdn_core::InfoHash;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{now_us, LiveBuffer, LiveHandle, LivePiece, LiveStatus, Origin};
use crate::clock;
use crate::gossip::Gossip;
use crate::host::{Host, PeerParams, Totals};
use crate::ledger::Collecting;
use crate::peer::Outgoing;
use crate::receipts::Accounting;

/// Status publication interval.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// What the stream turned out to be, for the session's `resolve_id`.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Not known yet (fetching the info dictionary).
    Unknown,
    /// A live stream: the buffer is ready.
    Live,
    /// An ordinary torrent: its info dictionary (the actor has ended).
    Vod(Bytes),
}

/// Commands from the session.
#[derive(Debug)]
pub enum LiveCommand {
    /// A peer connected to us and sent this handshake (ours is not sent yet).
    Incoming(crate::peer::PeerStream, SocketAddr, Handshake),
    /// More addresses to try.
    AddPeers(Vec<SocketAddr>),
    /// End the task; answered when done.
    Shutdown(oneshot::Sender<()>),
}

/// Everything a live actor needs to start.
#[derive(Debug, Clone)]
pub struct ActorParams {
    /// Content ID.
    pub id: InfoHash,
    /// The descriptor, when known (else it is fetched from peers by ID).
    pub descriptor: Option<Descriptor>,
    /// This node is the source.
    pub source: bool,
    /// CDN base URLs besides the descriptor's (kept in the descriptor built by ID).
    pub cdn: Vec<String>,
    /// Peers, identity, limits and DHT.
    pub peers: PeerParams,
}

/// The session's side of a running live actor.
#[derive(Debug, Clone)]
pub struct ActorHandle {
    /// What the API sees.
    pub handle: LiveHandle,
    /// Commands.
    pub tx: mpsc::Sender<LiveCommand>,
    /// What the ID turned out to be.
    pub kind: watch::Receiver<Kind>,
}

/// Starts a live actor.
pub fn spawn(p: ActorParams) -> ActorHandle {
    let id = p.id;
    let buffer = p.descriptor.clone().map(LiveBuffer::new);
    let (buffer_tx, buffer_rx) = watch::channel(buffer.clone());
    let (status_tx, status_rx) = watch::channel(LiveStatus {
        name: p.descriptor.as_ref().map(|d| d.params.name.clone()),
        is_source: p.source,
        ..LiveStatus::default()
    });
    let (kind_tx, kind) = watch::channel(if buffer.is_some() {
        Kind::Live
    } else {
        Kind::Unknown
    });
    let (tx, cmd_rx) = mpsc::channel(64);
    let span = tracing::info_span!("live", %id);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let a = Actor::new(p, buffer, buffer_tx, status_tx, kind_tx);
            a.run(cmd_rx).await;
        },
        span,
    ));
    ActorHandle {
        handle: LiveHandle::new(id, buffer_rx, status_rx),
        tx,
        kind,
    }
}

enum Internal {
    /// A payload was checked against its header.
    Checked(PieceHeader, Bytes, bool),
}

struct Actor {
    p: ActorParams,
    swarm: LiveSwarm,
    buffer: Option<Arc<LiveBuffer>>,
    buffer_tx: watch::Sender<Option<Arc<LiveBuffer>>>,
    status_tx: watch::Sender<LiveStatus>,
    kind_tx: watch::Sender<Kind>,
    /// Read position in the buffer's insert log.
    seq: u64,
    buffer_rx: Option<watch::Receiver<u64>>,
    host: Host,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    last_status: Instant,
    next_peer_log: Instant,
    cdn_mark: (u64, Instant),
    cdn_rate: u64,
    /// Fetches pieces from the CDN that peers do not deliver in time (viewers with CDN URLs).
    fallback: Option<super::cdn::Fallback>,
    done: bool,
    /// `pc_search` on this swarm's connections.
    gossip: Gossip,
    /// Receipts: signed for what we received, passed on, collected (the source).
    accounting: Accounting,
    /// The byte rate the ledger last heard of (the source).
    collect_rate: Option<u64>,
}

impl Actor {
    fn new(
        p: ActorParams,
        buffer: Option<Arc<LiveBuffer>>,
        buffer_tx: watch::Sender<Option<Arc<LiveBuffer>>>,
        status_tx: watch::Sender<LiveStatus>,
        kind_tx: watch::Sender<Kind>,
    ) -> Actor {
        let config = LiveConfig {
            source: p.source,
            listen_port: p.peers.port(),
            seed: p.peers.seed([5, 6, 7, 8]),
            wall_clock: Some(clock::wall()),
            identity: Some(p.peers.accounts.identity().clone()),
            ..LiveConfig::default()
        };
        let swarm = match &p.descriptor {
            Some(d) => LiveSwarm::with_info(d.info_bytes.clone(), config.clone())
                .unwrap_or_else(|_| LiveSwarm::new(p.id, config)),
            None => LiveSwarm::new(p.id, config),
        };
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let now = clock::now();
        let buffer_rx = buffer.as_ref().map(|b| b.subscribe());
        let host = Host::new(p.id, &p.peers, Arc::new(OnceLock::new()), now);
        let gossip = Gossip::new(p.peers.search.clone());
        let mut accounting = Accounting::new(
            p.peers.accounts.clone(),
            p.id,
            p.descriptor.as_ref().map(|d| d.params.pubkey),
            p.source,
        );
        if let Some(d) = &p.descriptor {
            accounting.set_collectors(d.collector.clone());
        }
        Actor {
            p,
            swarm,
            buffer,
            buffer_tx,
            status_tx,
            kind_tx,
            seq: 0,
            buffer_rx,
            host,
            internal_tx,
            internal_rx,
            last_status: now,
            next_peer_log: now,
            cdn_mark: (0, now),
            cdn_rate: 0,
            fallback: None,
            done: false,
            gossip,
            accounting,
            collect_rate: None,
        }
    }

    /// Starts the CDN fallback once the window exists, unless we are the source or no CDN is
    /// known.
    fn start_fallback(&mut self) {
        let Some(b) = &self.buffer else { return };
        if self.p.source || self.fallback.is_some() {
            return;
        }
        let mut bases = b.descriptor().cdn.clone();
        for u in &self.p.cdn {
            if !bases.contains(u) {
                bases.push(u.clone());
            }
        }
        if bases.is_empty() {
            return;
        }
        let client = match reqwest::Client::builder().build() {
            Ok(c) => c,
            Err(e) => {
                warn!("no HTTP client for the CDN fallback: {e}");
                return;
            }
        };
        info!(?bases, "CDN fallback on");
        self.fallback = Some(super::cdn::spawn_fallback(
            b.clone(),
            bases,
            client,
            super::cdn::FallbackConfig::default(),
        ));
    }

    async fn run(mut self, mut cmd_rx: mpsc::Receiver<LiveCommand>) {
        self.start_fallback();
        self.take_inserted();
        self.drain_actions();
        self.host.set_active(true, &mut self.swarm, clock::now());
        self.set_trackers();
        loop {
            // The players' position, before deciding what is due (cheap: a lock and a min).
            self.update_playhead();
            self.drain_actions();
            let deadline = earliest(
                self.swarm.poll_timeout(),
                Some(self.last_status + STATUS_EVERY),
            );
            let changed = async {
                match self.buffer_rx.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                wake = self.host.recv() => self.on_host(wake),
                Some(int) = self.internal_rx.recv() => self.on_internal(int),
                alive = changed => {
                    if alive {
                        self.take_inserted();
                    } else {
                        self.buffer_rx = None;
                    }
                }
                cmd = cmd_rx.recv() => match cmd {
                    Some(LiveCommand::Shutdown(done)) => {
                        self.close_all();
                        let _ = done.send(());
                        return;
                    }
                    Some(LiveCommand::Incoming(stream, addr, hs)) => {
                        self.host.incoming(stream, addr, hs, &mut self.swarm, clock::now());
                    }
                    Some(LiveCommand::AddPeers(peers)) => {
                        let now = clock::now();
                        self.host.add_candidates(peers, PeerSource::User, &mut self.swarm, now);
                    }
                    None => {
                        self.close_all();
                        return;
                    }
                },
                Some(w) = self.gossip.next() => self.gossip.on_wake(&mut self.swarm, w),
                _ = clock::sleep_until(deadline) => self.on_timeout(),
            }
            self.drain_actions();
            if self.done {
                self.close_all();
                return;
            }
        }
    }

    fn update_playhead(&mut self) {
        if let Some(b) = &self.buffer {
            self.swarm.set_playhead(b.playhead(), clock::now());
        }
    }

    /// Does what is due: the swarm's timers, the status.
    fn on_timeout(&mut self) {
        let now = clock::now();
        if self.swarm.poll_timeout().is_some_and(|t| t <= now) {
            self.swarm.handle_timeout(now);
        }
        if now.saturating_duration_since(self.last_status) >= STATUS_EVERY {
            self.publish_status(now);
        }
    }

    /// Tells the swarm about pieces others put in the buffer (the source, the CDN fallback).
    fn take_inserted(&mut self) {
        let Some(b) = self.buffer.clone() else { return };
        let (list, seq) = b.inserted_since(self.seq);
        self.seq = seq;
        let now = clock::now();
        for i in list {
            if self.swarm.has(i) {
                continue;
            }
            if let Some(p) = b.get(i) {
                // Verified already (signed here, or checked by the CDN client); the block
                // hashes go to the peers we relay it to.
                let hashes = peercdn_core::live::block_hashes(&p.payload);
                self.swarm.on_piece_added(p.header, hashes, now);
            }
        }
    }

    fn on_host(&mut self, wake: crate::host::Wake) {
        self.host.handle(wake, &mut self.swarm, clock::now());
    }

    /// Announces to the descriptor's trackers, once it is known.
    fn set_trackers(&mut self) {
        if let Some(b) = &self.buffer {
            let urls = b.descriptor().trackers.clone();
            self.host.set_trackers(urls, &mut self.swarm, clock::now());
        }
    }

    fn on_internal(&mut self, int: Internal) {
        match int {
            Internal::Checked(header, payload, ok) => {
                if ok {
                    if let Some(b) = &self.buffer {
                        b.insert(LivePiece {
                            header,
                            payload,
                            origin: Origin::Peer,
                        });
                    }
                } else {
                    warn!(
                        index = header.index,
                        "live piece payload does not match its header"
                    );
                }
                self.swarm.on_piece_checked(header.index, ok, clock::now());
            }
        }
    }

    fn drain_actions(&mut self) {
        while let Some(a) = self.swarm.poll_action() {
            match a {
                Action::Send(key, msg) => {
                    self.host.send(key, Outgoing::Msg(msg), &mut self.swarm);
                }
                Action::SendBlock { peer, block, data } => {
                    let data = data.or_else(|| {
                        let p = self.buffer.as_ref()?.get(block.index)?;
                        let s = block.begin as usize;
                        let e = s.checked_add(block.len as usize)?;
                        (e <= p.payload.len()).then(|| p.payload.slice(s..e))
                    });
                    match data {
                        Some(d) => {
                            self.host
                                .send(peer, Outgoing::Data(block, d), &mut self.swarm);
                        }
                        None => self.swarm.on_block_sent(peer, block, false),
                    }
                }
                Action::Disconnect { peer, reason } => {
                    self.host
                        .disconnect(peer, reason, &mut self.swarm, clock::now());
                }
                Action::PieceComplete { header, payload } => {
                    let tx = self.internal_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let ok = header.check_payload(&payload).is_ok();
                        let _ = tx.blocking_send(Internal::Checked(header, payload, ok));
                    });
                }
                Action::Edge(i) => {
                    if let Some(b) = &self.buffer {
                        b.note_exists(i);
                    }
                }
                Action::Discovered(via, peers) => {
                    self.host
                        .add_introduced(peers, via, &mut self.swarm, clock::now());
                }
                Action::Holepunch(addr) => {
                    self.host.holepunch(addr, &mut self.swarm, clock::now());
                }
                Action::MetadataReceived(info) => self.on_metadata(info),
                Action::Search(key, ev) => {
                    let now = clock::unix_secs();
                    self.gossip.on_event(&mut self.swarm, key, ev, now);
                }
                Action::Receipts(_, receipts) => self.accounting.on_receipts(receipts),
                Action::NotLive(info) => {
                    info!("the ID is an ordinary torrent, not a live stream");
                    let _ = self.kind_tx.send(Kind::Vod(info));
                    self.done = true;
                }
            }
        }
    }

    /// Watch time, a round of receipts when due, and (the source) the stream's byte rate for
    /// the ledger's cap, whenever it moved by a tenth.
    fn account(&mut self, players: usize, cdn: &[(String, u64)], now: Instant) {
        self.accounting.watch(players, now);
        let delay = self
            .buffer
            .as_ref()
            .and_then(|b| b.players_delay_ms(super::now_us()));
        self.accounting
            .tick_with_delay(&mut self.swarm, cdn, delay, now, clock::unix_secs());
        if self.p.source {
            let rate = self.swarm.byte_rate();
            let moved = self
                .collect_rate
                .is_none_or(|r| rate.abs_diff(r) * 10 > r.max(1));
            if moved {
                self.collect_rate = Some(rate);
                self.p
                    .peers
                    .accounts
                    .collect(self.p.id, Collecting::live(rate));
            }
        }
    }

    fn on_metadata(&mut self, info: Bytes) {
        match Descriptor::from_info_bytes(info) {
            Ok(mut d) => {
                info!(name = %d.params.name, "live stream descriptor received");
                self.accounting.set_broadcaster(d.params.pubkey);
                d.cdn = self.p.cdn.clone();
                let b = LiveBuffer::new(d);
                self.buffer_rx = Some(b.subscribe());
                self.buffer = Some(b.clone());
                self.status_tx.send_modify(|s| {
                    s.name = Some(b.descriptor().params.name.clone());
                });
                let _ = self.buffer_tx.send(Some(b));
                let _ = self.kind_tx.send(Kind::Live);
                self.start_fallback();
                self.set_trackers();
            }
            Err(e) => warn!("live descriptor from peers is invalid: {e}"),
        }
    }

    fn close_all(&mut self) {
        self.host.close_all(&mut self.swarm, clock::now());
    }

    fn publish_status(&mut self, now: Instant) {
        self.last_status = now;
        let st = self.swarm.stats();
        self.host.set_totals(Totals {
            uploaded: st.uploaded,
            downloaded: st.downloaded,
            left: if self.p.source { 0 } else { 1 },
        });
        if tracing::enabled!(tracing::Level::DEBUG) && now >= self.next_peer_log {
            self.next_peer_log = now + Duration::from_secs(2);
            for p in self.swarm.peer_infos() {
                debug!(
                    addr = %p.addr, newest = ?p.newest, choking = p.am_choking,
                    choked = p.peer_choking, out = p.outstanding, queued = p.queued,
                    reading = p.reading, down = p.down_rate, up = p.up_rate,
                    playhead = ?self.buffer.as_ref().and_then(|b| b.playhead()),
                    "live peer"
                );
            }
        }
        let mut s = LiveStatus {
            name: None,
            is_source: self.p.source,
            peers: st.peers,
            wires: self.host.wires(),
            p2p_downloaded: st.downloaded,
            cdn_downloaded: 0,
            uploaded: st.uploaded,
            down_rate: st.down_rate,
            up_rate: st.up_rate,
            banned: st.banned,
            wasted: st.wasted,
            relayed_early: st.blocks_relayed_early,
            first: None,
            last: None,
            edge: self.swarm.edge(),
            delay_ms: None,
            readers: 0,
            disconnects: st.disconnects,
            peer_list: self.swarm.peer_infos(),
            cdn_pieces: 0,
            cdn_failures: 0,
            watched_ms: 0,
            cdn_verified: Vec::new(),
        };
        if let Some(b) = &self.buffer {
            let cdn = b.bytes_in.cdn.load(std::sync::atomic::Ordering::Relaxed);
            let dt = now.duration_since(self.cdn_mark.1).as_secs_f64();
            if dt >= 1.0 {
                let r = (cdn.saturating_sub(self.cdn_mark.0) as f64 / dt) as u64;
                self.cdn_rate = (self.cdn_rate + 3 * r) / 4;
                self.cdn_mark = (cdn, now);
            }
            s.name = Some(b.descriptor().params.name.clone());
            s.cdn_downloaded = cdn;
            s.down_rate += self.cdn_rate;
            let range = b.range();
            s.first = range.map(|r| r.0);
            s.last = range.map(|r| r.1);
            s.edge = b.edge().max(s.edge);
            s.delay_ms = range
                .and_then(|(_, last)| b.get(last))
                .map(|p| now_us().saturating_sub(p.header.timestamp_us) / 1000);
            s.readers = b.readers();
        }
        let mut cdn_verified = Vec::new();
        if let Some(fb) = &self.fallback {
            let c = fb.stats();
            s.cdn_pieces = c.pieces;
            s.cdn_failures = c.failures;
            cdn_verified = c.verified_by_host;
        }
        self.account(s.readers, &cdn_verified, now);
        s.watched_ms = self.accounting.watched_ms();
        s.cdn_verified = cdn_verified;
        self.status_tx.send_replace(s);
    }
}
