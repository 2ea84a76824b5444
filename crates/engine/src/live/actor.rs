//! One live stream at run time: an actor task that owns the [`LiveSwarm`] state machine and
//! pumps it, like [`crate::torrent`] does for a torrent.
//!
//! The actor feeds the swarm peer events (from [`crate::peer`] connections), the session's
//! commands, the playhead of local players and the pieces others put in the [`LiveBuffer`]
//! (the local source, the CDN fallback), and executes the swarm's actions: it queues messages
//! and block data to connections, checks assembled payloads on the blocking pool and inserts
//! verified pieces into the buffer (`Origin::Peer`), dials peers (static, `LiveOptions.peers`,
//! PEX, DHT, the descriptor's trackers) and publishes a [`LiveStatus`] about every 250 ms.
//! Ticks every 100 ms: a live piece is late after a few hundred milliseconds.
//!
//! Started by ID only, it first fetches the info dictionary (BEP 9): a live one creates the
//! buffer (published on the handle's buffer watch); an ordinary torrent's is reported on the
//! `resolved` watch and the actor ends, so the session can start a VoD torrent with it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peercdn_core::live::swarm::{Action, LiveConfig, LiveSwarm};
use peercdn_core::live::{Descriptor, PieceHeader};
use peercdn_core::wire::Handshake;
use peercdn_core::{InfoHash, PeerId};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{now_us, LiveBuffer, LiveHandle, LivePiece, LiveStatus, Origin};
use crate::dht::Dht;
use crate::peer::{self, Connection, Outgoing, PeerEvent};
use crate::ratelimit::RateLimiter;
use crate::tracker;

/// Most connections per live stream.
pub const MAX_PEERS: usize = 80;
/// Most known-but-unconnected addresses kept per stream.
const MAX_CANDIDATES: usize = 1000;
/// Dials in progress at once.
const MAX_DIALS: usize = 16;
/// Swarm tick.
const TICK: Duration = Duration::from_millis(100);
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
    Incoming(TcpStream, SocketAddr, Handshake),
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
    /// Peers to dial at start and re-dial when disconnected.
    pub static_peers: Vec<SocketAddr>,
    /// Our peer ID.
    pub peer_id: PeerId,
    /// Our listen port (0 if not listening).
    pub listen_port: u16,
    /// Node-wide limiters, download then upload.
    pub global: [RateLimiter; 2],
    /// This stream's limiters, download then upload.
    pub local: [RateLimiter; 2],
    /// The node's DHT, when on.
    pub dht: Option<Dht>,
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
    /// A handshake finished: `true` when we dialled (so `addr` is where the peer listens).
    Dialed(SocketAddr, Result<(TcpStream, Handshake), String>, bool),
    /// A payload was checked against its header.
    Checked(PieceHeader, Bytes, bool),
    /// Addresses from the DHT or a tracker.
    Peers(Vec<SocketAddr>),
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
    conns: HashMap<u64, Connection>,
    addrs: HashMap<SocketAddr, u64>,
    /// The connection to each peer (by peer ID) and whether we opened it.
    ids: HashMap<PeerId, (u64, bool)>,
    id_of: HashMap<u64, PeerId>,
    next_key: u64,
    candidates: HashSet<SocketAddr>,
    dialing: HashSet<SocketAddr>,
    banned: HashSet<SocketAddr>,
    no_storage: Arc<OnceLock<Arc<crate::storage::Storage>>>,
    events_tx: mpsc::Sender<PeerEvent>,
    events_rx: mpsc::Receiver<PeerEvent>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    next_dht_lookup: Instant,
    next_dht_announce: Instant,
    next_announce: Instant,
    last_status: Instant,
    next_peer_log: Instant,
    cdn_mark: (u64, Instant),
    cdn_rate: u64,
    /// Fetches pieces from the CDN that peers do not deliver in time (viewers with CDN URLs).
    fallback: Option<super::cdn::Fallback>,
    done: bool,
}

impl Actor {
    fn new(
        p: ActorParams,
        buffer: Option<Arc<LiveBuffer>>,
        buffer_tx: watch::Sender<Option<Arc<LiveBuffer>>>,
        status_tx: watch::Sender<LiveStatus>,
        kind_tx: watch::Sender<Kind>,
    ) -> Actor {
        let id = &p.peer_id.0;
        let config = LiveConfig {
            source: p.source,
            listen_port: (p.listen_port != 0).then_some(p.listen_port),
            seed: u64::from_le_bytes([id[12], id[13], id[14], id[15], 5, 6, 7, 8]),
            ..LiveConfig::default()
        };
        let swarm = match &p.descriptor {
            Some(d) => LiveSwarm::with_info(d.info_bytes.clone(), config.clone())
                .unwrap_or_else(|_| LiveSwarm::new(p.id, config)),
            None => LiveSwarm::new(p.id, config),
        };
        let (events_tx, events_rx) = mpsc::channel(peer::READER_QUEUE * 4);
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let now = Instant::now();
        let buffer_rx = buffer.as_ref().map(|b| b.subscribe());
        Actor {
            candidates: p.static_peers.iter().copied().collect(),
            p,
            swarm,
            buffer,
            buffer_tx,
            status_tx,
            kind_tx,
            seq: 0,
            buffer_rx,
            conns: HashMap::new(),
            addrs: HashMap::new(),
            ids: HashMap::new(),
            id_of: HashMap::new(),
            next_key: 1,
            dialing: HashSet::new(),
            banned: HashSet::new(),
            no_storage: Arc::new(OnceLock::new()),
            events_tx,
            events_rx,
            internal_tx,
            internal_rx,
            next_dht_lookup: now,
            next_dht_announce: now,
            next_announce: now,
            last_status: now,
            next_peer_log: now,
            cdn_mark: (0, now),
            cdn_rate: 0,
            fallback: None,
            done: false,
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
        self.connect_now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = async {
                match self.buffer_rx.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(ev) = self.events_rx.recv() => self.on_peer_event(ev),
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
                    Some(LiveCommand::Incoming(stream, addr, hs)) => self.on_incoming(stream, addr, hs),
                    Some(LiveCommand::AddPeers(peers)) => {
                        self.add_candidates(peers);
                        self.connect_now();
                    }
                    None => {
                        self.close_all();
                        return;
                    }
                },
                _ = tick.tick() => self.on_tick(),
            }
            self.drain_actions();
            if self.done {
                self.close_all();
                return;
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if let Some(b) = &self.buffer {
            self.swarm.set_playhead(b.playhead(), now);
        }
        self.swarm.tick(now, now_us());
        self.connect_now();
        if now.duration_since(self.last_status) >= STATUS_EVERY {
            self.publish_status(now);
        }
    }

    /// Tells the swarm about pieces others put in the buffer (the source, the CDN fallback).
    fn take_inserted(&mut self) {
        let Some(b) = self.buffer.clone() else { return };
        let (list, seq) = b.inserted_since(self.seq);
        self.seq = seq;
        let now = Instant::now();
        for i in list {
            if self.swarm.has(i) {
                continue;
            }
            if let Some(p) = b.get(i) {
                self.swarm.on_piece_added(p.header, now);
            }
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent) {
        let now = Instant::now();
        self.apply_peer_event(ev, now);
        for _ in 0..64 {
            let Ok(ev) = self.events_rx.try_recv() else {
                break;
            };
            self.apply_peer_event(ev, now);
            self.drain_actions();
        }
    }

    fn apply_peer_event(&mut self, ev: PeerEvent, now: Instant) {
        match ev {
            PeerEvent::Message(key, msg) => self.swarm.on_message(key, msg, now),
            PeerEvent::BlockSent(key, block, sent) => self.swarm.on_block_sent(key, block, sent),
            PeerEvent::Closed(key, reason) => {
                debug!(key, %reason, "peer closed");
                self.drop_conn(key);
                self.swarm.remove_peer(key);
            }
        }
    }

    fn on_internal(&mut self, int: Internal) {
        match int {
            Internal::Dialed(addr, res, outgoing) => {
                self.dialing.remove(&addr);
                match res {
                    Ok((stream, hs)) => self.attach(stream, addr, hs, outgoing),
                    Err(e) => debug!(%addr, "dial failed: {e}"),
                }
            }
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
                self.swarm
                    .on_piece_checked(header.index, ok, Instant::now());
            }
            Internal::Peers(peers) => {
                self.add_candidates(peers);
                self.connect_now();
            }
        }
    }

    fn on_incoming(&mut self, mut stream: TcpStream, addr: SocketAddr, hs: Handshake) {
        if self.banned.contains(&addr) || self.conns.len() >= MAX_PEERS {
            return;
        }
        let (id, our) = (self.p.id, self.p.peer_id);
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let r = peer::answer(&mut stream, id, our)
                .await
                .map(|_| (stream, hs))
                .map_err(|e| e.to_string());
            let _ = tx.send(Internal::Dialed(addr, r, false)).await;
        });
    }

    fn attach(&mut self, stream: TcpStream, addr: SocketAddr, hs: Handshake, outgoing: bool) {
        if self.banned.contains(&addr)
            || self.conns.len() >= MAX_PEERS
            || hs.peer_id == self.p.peer_id
            || self.addrs.contains_key(&addr)
        {
            return;
        }
        // One connection per peer: when both sides dialled, keep the one opened by the lower
        // peer ID (both ends decide the same), so upload slots are not spent twice on a peer.
        if let Some(&(old, old_outgoing)) = self.ids.get(&hs.peer_id) {
            let opener = |outgoing: bool| if outgoing { self.p.peer_id } else { hs.peer_id };
            if opener(outgoing).0 >= opener(old_outgoing).0 {
                return;
            }
            self.drop_conn(old);
            self.swarm.remove_peer(old);
        }
        let key = self.next_key;
        self.next_key += 1;
        self.ids.insert(hs.peer_id, (key, outgoing));
        self.id_of.insert(key, hs.peer_id);
        let conn = Connection::spawn(
            key,
            stream,
            addr,
            self.events_tx.clone(),
            self.no_storage.clone(),
            [self.p.global[0].clone(), self.p.local[0].clone()],
            [self.p.global[1].clone(), self.p.local[1].clone()],
        );
        debug!(%addr, key, "live peer connected");
        self.conns.insert(key, conn);
        self.addrs.insert(addr, key);
        self.swarm.add_peer(key, addr, &hs, Instant::now());
        if outgoing {
            self.swarm.set_listen_addr(key, addr);
        }
    }

    fn drain_actions(&mut self) {
        while let Some(a) = self.swarm.poll_action() {
            match a {
                Action::Send(key, msg) => self.send(key, Outgoing::Msg(msg)),
                Action::SendBlock { peer, block } => {
                    let data = self
                        .buffer
                        .as_ref()
                        .and_then(|b| b.get(block.index))
                        .and_then(|p| {
                            let s = block.begin as usize;
                            let e = s.checked_add(block.len as usize)?;
                            (e <= p.payload.len()).then(|| p.payload.slice(s..e))
                        });
                    match data {
                        Some(d) => self.send(peer, Outgoing::Data(block, d)),
                        None => self.swarm.on_block_sent(peer, block, false),
                    }
                }
                Action::Disconnect { peer, reason } => {
                    if let Some(c) = self.conns.get(&peer) {
                        if reason.ban() {
                            warn!(addr = %c.addr, %reason, "banning live peer");
                            self.banned.insert(c.addr);
                            self.candidates.remove(&c.addr);
                        } else {
                            debug!(addr = %c.addr, %reason, "disconnecting live peer");
                        }
                    }
                    self.drop_conn(peer);
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
                Action::Discovered(peers) => {
                    self.add_candidates(peers);
                    self.connect_now();
                }
                Action::MetadataReceived(info) => self.on_metadata(info),
                Action::NotLive(info) => {
                    info!("the ID is an ordinary torrent, not a live stream");
                    let _ = self.kind_tx.send(Kind::Vod(info));
                    self.done = true;
                }
            }
        }
    }

    fn on_metadata(&mut self, info: Bytes) {
        match Descriptor::from_info_bytes(info) {
            Ok(mut d) => {
                info!(name = %d.params.name, "live stream descriptor received");
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
            }
            Err(e) => warn!("live descriptor from peers is invalid: {e}"),
        }
    }

    fn send(&mut self, key: u64, out: Outgoing) {
        let ok = self.conns.get(&key).is_some_and(|c| c.send(out));
        if !ok && self.conns.contains_key(&key) {
            // A peer that does not read what we send is not kept.
            self.drop_conn(key);
            self.swarm.remove_peer(key);
        }
    }

    fn drop_conn(&mut self, key: u64) {
        if let Some(id) = self.id_of.remove(&key) {
            if self.ids.get(&id).is_some_and(|&(k, _)| k == key) {
                self.ids.remove(&id);
            }
        }
        if let Some(c) = self.conns.remove(&key) {
            self.addrs.remove(&c.addr);
            if self.p.static_peers.contains(&c.addr) && !self.banned.contains(&c.addr) {
                self.candidates.insert(c.addr);
            }
        }
    }

    fn close_all(&mut self) {
        let keys: Vec<u64> = self.conns.keys().copied().collect();
        for key in keys {
            self.drop_conn(key);
            self.swarm.remove_peer(key);
        }
    }

    fn add_candidates(&mut self, peers: Vec<SocketAddr>) {
        for a in peers {
            if self.candidates.len() >= MAX_CANDIDATES {
                break;
            }
            let is_self =
                self.p.listen_port != 0 && a.port() == self.p.listen_port && a.ip().is_loopback();
            if a.port() == 0 || is_self || self.banned.contains(&a) || self.addrs.contains_key(&a) {
                continue;
            }
            self.candidates.insert(a);
        }
    }

    fn connect_now(&mut self) {
        self.dial_more();
        self.dht_work();
        self.tracker_work();
    }

    fn dial_more(&mut self) {
        let room = MAX_PEERS
            .saturating_sub(self.conns.len() + self.dialing.len())
            .min(MAX_DIALS.saturating_sub(self.dialing.len()));
        let picks: Vec<SocketAddr> = self
            .candidates
            .iter()
            .filter(|a| !self.addrs.contains_key(a) && !self.dialing.contains(a))
            .take(room)
            .copied()
            .collect();
        for addr in picks {
            if !self.p.static_peers.contains(&addr) {
                self.candidates.remove(&addr);
            }
            self.dialing.insert(addr);
            let (id, our, tx) = (self.p.id, self.p.peer_id, self.internal_tx.clone());
            tokio::spawn(async move {
                let r = peer::dial(addr, id, our).await.map_err(|e| e.to_string());
                let _ = tx.send(Internal::Dialed(addr, r, true)).await;
            });
        }
    }

    /// DHT (BEP 5) as torrents do: look up peers every 5 s while we have none, 30 s while we
    /// have few, 5 min otherwise; announce every 15 min.
    fn dht_work(&mut self) {
        let Some(dht) = self.p.dht.clone() else {
            return;
        };
        let now = Instant::now();
        if now >= self.next_dht_lookup {
            let every = match self.conns.len() {
                0 => 5,
                1..=4 => 30,
                _ => 300,
            };
            self.next_dht_lookup = now + Duration::from_secs(every);
            let (id, tx, d) = (self.p.id, self.internal_tx.clone(), dht.clone());
            tokio::spawn(async move {
                let peers = d.get_peers(id, 200).await;
                if !peers.is_empty() {
                    let _ = tx.send(Internal::Peers(peers)).await;
                }
            });
        }
        if now >= self.next_dht_announce && self.p.listen_port != 0 {
            self.next_dht_announce = now + Duration::from_secs(15 * 60);
            let (id, port) = (self.p.id, self.p.listen_port);
            tokio::spawn(async move {
                if let Err(e) = dht.announce(id, port).await {
                    debug!("DHT announce failed: {e}");
                }
            });
        }
    }

    /// Announces to the descriptor's trackers once a minute.
    fn tracker_work(&mut self) {
        let Some(b) = &self.buffer else { return };
        let now = Instant::now();
        if b.descriptor().trackers.is_empty() || now < self.next_announce {
            return;
        }
        self.next_announce = now + Duration::from_secs(60);
        let st = self.swarm.stats();
        let req = tracker::AnnounceRequest {
            info_hash: self.p.id,
            peer_id: self.p.peer_id,
            port: self.p.listen_port,
            uploaded: st.uploaded,
            downloaded: st.downloaded,
            left: if self.p.source { 0 } else { 1 },
            event: tracker::Event::None,
            num_want: 50,
        };
        for url in b.descriptor().trackers.clone() {
            let (tx, req) = (self.internal_tx.clone(), req.clone());
            tokio::spawn(async move {
                match tracker::announce(&url, &req).await {
                    Ok(r) => {
                        let _ = tx.send(Internal::Peers(r.peers)).await;
                    }
                    Err(e) => debug!(%url, "announce failed: {e}"),
                }
            });
        }
    }

    fn publish_status(&mut self, now: Instant) {
        self.last_status = now;
        let st = self.swarm.stats();
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
            p2p_downloaded: st.downloaded,
            cdn_downloaded: 0,
            uploaded: st.uploaded,
            down_rate: st.down_rate,
            up_rate: st.up_rate,
            banned: st.banned,
            wasted: st.wasted,
            first: None,
            last: None,
            edge: self.swarm.edge(),
            delay_ms: None,
            readers: 0,
            disconnects: st.disconnects,
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
        self.status_tx.send_replace(s);
    }
}
