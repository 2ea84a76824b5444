//! One torrent at run time: an actor task that owns the [`Swarm`] state machine and pumps it.
//!
//! The actor receives peer events (from [`crate::peer`] tasks), commands (from the session),
//! and its own completions (piece checks, dials, tracker answers), feeds them to the swarm, and
//! executes the swarm's actions: it queues messages to connections, keeps blocks of pieces in
//! progress in memory, hashes and writes a complete piece on the blocking pool, dials peers, and
//! announces to trackers. All state lives in the task (`&mut self`), no locks; the outside world
//! sees a [`TorrentStatus`] through a `watch` channel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peercdn_core::metainfo::{Info, Metainfo};
use peercdn_core::picker;
use peercdn_core::swarm::{Action, Swarm, SwarmConfig};
use peercdn_core::wire::Handshake;
use peercdn_core::{Bitfield, DisconnectCounts, InfoHash, PeerId};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

mod webseeds;

pub use webseeds::WebSeedStat;

use crate::peer::{self, Connection, Outgoing, PeerEvent};
use crate::ratelimit::RateLimiter;
use crate::storage::{sha1_piece, Resume, Storage};
use crate::stream::{self, FileInfo, FileReader, Shared, StreamError};
use crate::tracker;

/// Most connections per torrent.
pub const MAX_PEERS: usize = 80;
/// Most known-but-unconnected addresses kept per torrent.
pub const MAX_CANDIDATES: usize = 1000;
/// Stream readers tracked per torrent.
const MAX_READERS: usize = 256;
/// Piece buffers kept for reuse.
const BUFFER_POOL: usize = 16;
/// Dials in progress at once.
const MAX_DIALS: usize = 16;

/// Where a torrent comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A `.torrent` (or metadata already known).
    Metainfo(Box<Metainfo>),
    /// Only the info hash (magnet or bare ID), with the trackers it named.
    Hash {
        /// Content ID.
        info_hash: InfoHash,
        /// Display name, if the magnet had one.
        name: Option<String>,
        /// Tracker URLs.
        trackers: Vec<String>,
        /// Web seed URLs (a magnet's `ws=`), used once the metadata is known.
        web_seeds: Vec<String>,
    },
}

impl Source {
    /// The content ID.
    pub fn info_hash(&self) -> InfoHash {
        match self {
            Source::Metainfo(m) => m.info_hash,
            Source::Hash { info_hash, .. } => *info_hash,
        }
    }
}

/// Everything a torrent task needs to start.
#[derive(Debug, Clone)]
pub struct TorrentParams {
    /// What to download or seed.
    pub source: Source,
    /// Directory the torrent's files go under.
    pub save_dir: PathBuf,
    /// Where resume data and the `.torrent` copy are kept.
    pub state_dir: PathBuf,
    /// Peers to dial at start and re-dial when disconnected.
    pub static_peers: Vec<SocketAddr>,
    /// Our peer ID.
    pub peer_id: PeerId,
    /// Our listen port (0 if not listening).
    pub listen_port: u16,
    /// Node-wide limiters, download then upload.
    pub global: [RateLimiter; 2],
    /// This torrent's limiters, download then upload.
    pub local: [RateLimiter; 2],
    /// The node's DHT, when on: the torrent announces itself and looks up peers there.
    pub dht: Option<crate::dht::Dht>,
}

/// Life-cycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Waiting for the info dictionary from peers.
    FetchingMetadata,
    /// Hash-checking existing data.
    Checking,
    /// Downloading.
    Downloading,
    /// Complete; uploading to others.
    Seeding,
    /// Stopped by the user.
    Paused,
    /// Stopped by an error (e.g. a full disk); the message says what.
    Error(String),
}

/// A snapshot for UIs and the API.
#[derive(Debug, Clone)]
pub struct TorrentStatus {
    /// Content ID.
    pub info_hash: InfoHash,
    /// Name, once known.
    pub name: Option<String>,
    /// State.
    pub state: State,
    /// Total bytes, once known.
    pub total_length: u64,
    /// Verified bytes.
    pub have_bytes: u64,
    /// Verified pieces.
    pub pieces_have: u32,
    /// Pieces in all.
    pub pieces_total: u32,
    /// Payload bytes downloaded this session.
    pub downloaded: u64,
    /// Payload bytes uploaded this session.
    pub uploaded: u64,
    /// Bytes/s.
    pub down_rate: u64,
    /// Bytes/s.
    pub up_rate: u64,
    /// Connected peers.
    pub peers: usize,
    /// Hash failures.
    pub hash_failures: u64,
    /// Payload bytes from peers (BitTorrent).
    pub p2p_downloaded: u64,
    /// Payload bytes from web seeds (HTTP).
    pub http_downloaded: u64,
    /// Per web seed figures.
    pub webseeds: Vec<WebSeedStat>,
    /// Pieces checked so far while `Checking`.
    pub checked: u32,
    /// Connections the swarm closed, by reason.
    pub disconnects: DisconnectCounts,
}

impl TorrentStatus {
    /// Fraction complete, 0..=1.
    pub fn progress(&self) -> f64 {
        if self.total_length == 0 {
            0.0
        } else {
            self.have_bytes as f64 / self.total_length as f64
        }
    }
}

/// Commands from the session.
#[derive(Debug)]
pub enum Command {
    /// A peer connected to us and sent this handshake (ours is not sent yet).
    Incoming(TcpStream, SocketAddr, Handshake),
    /// More addresses to try.
    AddPeers(Vec<SocketAddr>),
    /// Stop all transfers (keep connections closed) until `Resume`.
    Pause,
    /// Undo `Pause`.
    Resume,
    /// Save resume data and end the task; with `delete_data`, also delete the torrent's files
    /// and its resume data.
    Shutdown {
        /// Answered when done.
        done: oneshot::Sender<()>,
        /// Delete the downloaded files too.
        delete_data: bool,
    },
    /// A stream reader is at `piece` and wants `readahead` pieces after it (up to `last`).
    ReaderAt {
        /// Reader.
        id: u64,
        /// Piece being read.
        piece: u32,
        /// Last piece of the reader's file.
        last: u32,
        /// Pieces wanted ahead.
        readahead: u32,
    },
    /// A stream reader closed.
    ReaderGone {
        /// Reader.
        id: u64,
    },
}

/// The session's handle on a running torrent.
#[derive(Debug, Clone)]
pub struct TorrentHandle {
    /// Content ID.
    pub info_hash: InfoHash,
    /// Commands.
    pub tx: mpsc::Sender<Command>,
    /// Status updates (about once a second, and on every state change).
    pub status: watch::Receiver<TorrentStatus>,
    /// What stream readers see.
    pub shared: Arc<Shared>,
}

impl TorrentHandle {
    /// The metainfo, if known yet.
    pub fn metainfo(&self) -> Option<Arc<Metainfo>> {
        self.shared.meta.get().cloned()
    }

    /// Waits until the metainfo is known and existing data checked (or the torrent stops).
    pub async fn wait_ready(&self) -> Result<Arc<Metainfo>, StreamError> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(r) = self.shared.stopped.read().ok().and_then(|s| s.clone()) {
                return Err(StreamError::Stopped(r));
            }
            if let (Some(m), true) = (self.shared.meta.get(), self.shared.checked()) {
                return Ok(m.clone());
            }
            changed.await;
        }
    }

    /// The files (pad files left out), once the metainfo is known.
    pub fn files(&self) -> Option<Vec<FileInfo>> {
        self.shared.meta.get().map(|m| stream::files(m))
    }

    /// A reader for file `index` (waits for the metainfo first).
    pub async fn open_file(&self, index: usize) -> Result<FileReader, StreamError> {
        let m = self.wait_ready().await?;
        let files = stream::files(&m);
        let count = files.len();
        let file = files
            .into_iter()
            .find(|f| f.index == index)
            .ok_or(StreamError::NoSuchFile { index, count })?;
        Ok(FileReader::new(
            self.shared.clone(),
            self.tx.clone(),
            file,
            m.info.piece_length,
        ))
    }
}

enum Internal {
    Checked(Result<Bitfield, String>),
    Verified(u32, Result<bool, String>, Vec<u8>),
    /// A handshake finished: `true` when we dialled (so `addr` is where the peer listens).
    Dialed(SocketAddr, Result<(TcpStream, Handshake), String>, bool),
    TrackerPeers(Vec<SocketAddr>, Duration),
    WebSeedPiece(usize, u32, Result<Bytes, String>),
    DhtPeers(Vec<SocketAddr>),
    WebSeedVerified(usize, u32, Result<bool, String>, u64),
}

/// A stream reader as the actor tracks it.
#[derive(Debug, Clone, Copy)]
struct Reader {
    piece: u32,
    last: u32,
    readahead: u32,
    /// When the reader reached `piece` (for web seed rescue).
    since: Instant,
}

/// Starts a torrent task.
pub fn spawn(params: TorrentParams) -> TorrentHandle {
    let info_hash = params.source.info_hash();
    let (tx, cmd_rx) = mpsc::channel(64);
    let (status_tx, status) = watch::channel(TorrentStatus {
        info_hash,
        name: None,
        state: State::FetchingMetadata,
        total_length: 0,
        have_bytes: 0,
        pieces_have: 0,
        pieces_total: 0,
        downloaded: 0,
        uploaded: 0,
        down_rate: 0,
        up_rate: 0,
        peers: 0,
        hash_failures: 0,
        p2p_downloaded: 0,
        http_downloaded: 0,
        webseeds: Vec::new(),
        checked: 0,
        disconnects: DisconnectCounts::default(),
    });
    let shared = Arc::new(Shared::default());
    let span = tracing::info_span!("torrent", id = %info_hash);
    let shared2 = shared.clone();
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let t = Torrent::new(params, status_tx, shared2);
            t.run(cmd_rx).await;
        },
        span,
    ));
    TorrentHandle {
        info_hash,
        tx,
        status,
        shared,
    }
}

struct Torrent {
    p: TorrentParams,
    info_hash: InfoHash,
    swarm: Swarm,
    info: Option<Info>,
    metainfo: Option<Metainfo>,
    storage: Arc<OnceLock<Arc<Storage>>>,
    shared: Arc<Shared>,
    readers: BTreeMap<u64, Reader>,
    webseeds: Vec<webseeds::Seeder>,
    ws_pieces: HashSet<u32>,
    http_downloaded: u64,
    boosted: HashSet<u32>,
    conns: HashMap<u64, Connection>,
    addrs: HashMap<SocketAddr, u64>,
    next_key: u64,
    candidates: HashSet<SocketAddr>,
    dialing: HashSet<SocketAddr>,
    banned: HashSet<SocketAddr>,
    buffers: HashMap<u32, Vec<u8>>,
    pool: Vec<Vec<u8>>,
    state: State,
    status_tx: watch::Sender<TorrentStatus>,
    events_tx: mpsc::Sender<PeerEvent>,
    events_rx: mpsc::Receiver<PeerEvent>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    trackers: Vec<String>,
    next_announce: Instant,
    next_dht_lookup: Instant,
    next_dht_announce: Instant,
    pending_event: tracker::Event,
    last_resume_save: Instant,
    checked: u32,
    dirty: bool,
}

impl Torrent {
    fn new(p: TorrentParams, status_tx: watch::Sender<TorrentStatus>, shared: Arc<Shared>) -> Self {
        let info_hash = p.source.info_hash();
        // BEP 27: no peer exchange for private torrents.
        let private = matches!(&p.source, Source::Metainfo(m) if m.info.private);
        let config = SwarmConfig {
            listen_port: (p.listen_port != 0).then_some(p.listen_port),
            pex_interval: if private {
                None
            } else {
                SwarmConfig::default().pex_interval
            },
            seed: u64::from_le_bytes([
                p.peer_id.0[12],
                p.peer_id.0[13],
                p.peer_id.0[14],
                p.peer_id.0[15],
                1,
                2,
                3,
                4,
            ]),
            ..SwarmConfig::default()
        };
        let (events_tx, events_rx) = mpsc::channel(peer::READER_QUEUE * 4);
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let trackers = match &p.source {
            Source::Metainfo(m) => m.trackers.iter().flatten().cloned().collect(),
            Source::Hash { trackers, .. } => trackers.clone(),
        };
        let candidates = p.static_peers.iter().copied().collect();
        Torrent {
            info_hash,
            swarm: Swarm::new(info_hash, config),
            info: None,
            metainfo: None,
            storage: shared.storage.clone(),
            shared,
            readers: BTreeMap::new(),
            webseeds: Vec::new(),
            ws_pieces: HashSet::new(),
            http_downloaded: 0,
            boosted: HashSet::new(),
            conns: HashMap::new(),
            addrs: HashMap::new(),
            next_key: 1,
            candidates,
            dialing: HashSet::new(),
            banned: HashSet::new(),
            buffers: HashMap::new(),
            pool: Vec::new(),
            state: State::FetchingMetadata,
            status_tx,
            events_tx,
            events_rx,
            internal_tx,
            internal_rx,
            trackers,
            next_announce: Instant::now(),
            next_dht_lookup: Instant::now(),
            next_dht_announce: Instant::now(),
            pending_event: tracker::Event::Started,
            last_resume_save: Instant::now(),
            checked: 0,
            dirty: false,
            p,
        }
    }

    async fn run(mut self, mut cmd_rx: mpsc::Receiver<Command>) {
        match self.p.source.clone() {
            Source::Metainfo(m) => self.install_metainfo(*m),
            Source::Hash { .. } => self.connect_now(),
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Web seed scheduling (deadline rescue) looks more often than the swarm's tick.
        let mut fast = tokio::time::interval(Duration::from_millis(200));
        fast.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(ev) = self.events_rx.recv() => self.on_peer_event(ev),
                Some(int) = self.internal_rx.recv() => self.on_internal(int),
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown { done, delete_data }) => {
                        self.shutdown();
                        if delete_data {
                            self.delete_data();
                        }
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.shutdown();
                        return;
                    }
                },
                _ = tick.tick() => self.on_tick(),
                _ = fast.tick(), if !self.webseeds.is_empty() => self.schedule_webseeds(),
            }
            self.drain_actions();
        }
    }

    fn install_metainfo(&mut self, m: Metainfo) {
        let info = m.info.clone();
        if let Err(e) = std::fs::create_dir_all(&self.p.state_dir) {
            warn!("cannot create state dir: {e}");
        }
        let _ = std::fs::write(self.torrent_file_path(), m.to_bytes());
        // Where the files live, so a restarted engine finds them (see Session::restore).
        let _ = std::fs::write(
            self.save_dir_path(),
            self.p.save_dir.as_os_str().as_encoded_bytes(),
        );
        let storage = match Storage::open(&self.p.save_dir, &info) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.fail(format!("cannot open storage: {e}"));
                return;
            }
        };
        let _ = self.storage.set(storage.clone());
        let meta = Arc::new(m.clone());
        self.webseeds = webseeds::from_metainfo(&meta);
        let _ = self.shared.meta.set(meta);
        self.info = Some(info.clone());
        self.metainfo = Some(m);
        self.state = State::Checking;
        self.publish_status();
        let resume = self.resume_path();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let r = Resume::load_and_check(&resume, &info, &storage, &mut |_, _| {})
                .map_err(|e| e.to_string());
            let _ = tx.blocking_send(Internal::Checked(r));
        });
    }

    fn resume_path(&self) -> PathBuf {
        self.p.state_dir.join(format!("{}.resume", self.info_hash))
    }

    fn save_dir_path(&self) -> PathBuf {
        self.p.state_dir.join(format!("{}.savedir", self.info_hash))
    }

    fn torrent_file_path(&self) -> PathBuf {
        self.p.state_dir.join(format!("{}.torrent", self.info_hash))
    }

    fn on_internal(&mut self, int: Internal) {
        let now = Instant::now();
        match int {
            Internal::Checked(Ok(have)) => {
                let Some(info) = &self.info else { return };
                let Some(m) = &self.metainfo else { return };
                self.checked = have.count();
                if let Ok(mut h) = self.shared.have.write() {
                    *h = Some(have.clone());
                }
                self.shared.changed.notify_waiters();
                let bytes = Bytes::from(m.info_bytes.clone());
                self.swarm.set_metadata(
                    bytes,
                    info.piece_length,
                    info.total_length(),
                    info.num_pieces(),
                    &have,
                    now,
                );
                self.state = if self.swarm.is_complete() {
                    State::Seeding
                } else {
                    State::Downloading
                };
                info!(
                    have = have.count(),
                    of = have.len(),
                    "checked existing data"
                );
                self.publish_status();
                // Start at once rather than on the next tick.
                self.connect_now();
            }
            Internal::Checked(Err(e)) => self.fail(format!("checking existing data failed: {e}")),
            Internal::Verified(index, Ok(ok), buf) => {
                self.recycle(buf);
                if ok {
                    self.mark_have(index);
                }
                if !ok {
                    warn!(index, "piece failed its hash check");
                }
                self.dirty = true;
                self.swarm.on_piece_verified(index, ok, now);
            }
            Internal::Verified(index, Err(e), _) => {
                self.fail(format!("writing piece {index} failed: {e}"));
            }
            Internal::Dialed(addr, res, outgoing) => {
                self.dialing.remove(&addr);
                match res {
                    Ok((stream, hs)) => self.attach(stream, addr, hs, outgoing),
                    Err(e) => debug!(%addr, "dial failed: {e}"),
                }
            }
            Internal::WebSeedPiece(k, index, r) => self.on_webseed_piece(k, index, r),
            Internal::DhtPeers(peers) => {
                self.add_candidates(peers);
                self.connect_now();
            }
            Internal::WebSeedVerified(k, index, Ok(ok), len) => {
                self.on_webseed_verified(k, index, ok, len);
                self.schedule_webseeds();
            }
            Internal::WebSeedVerified(_, index, Err(e), _) => {
                self.fail(format!("writing piece {index} failed: {e}"))
            }
            Internal::TrackerPeers(peers, interval) => {
                self.next_announce =
                    now + interval.clamp(Duration::from_secs(10), Duration::from_secs(3600));
                self.add_candidates(peers);
                self.connect_now();
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Incoming(mut stream, addr, hs) => {
                if !self.accepting() || self.banned.contains(&addr) || self.conns.len() >= MAX_PEERS
                {
                    return;
                }
                let (ih, id) = (self.info_hash, self.p.peer_id);
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let r = peer::answer(&mut stream, ih, id)
                        .await
                        .map(|_| (stream, hs))
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Internal::Dialed(addr, r, false)).await;
                });
            }
            Command::AddPeers(peers) => {
                self.add_candidates(peers);
                self.connect_now();
            }
            Command::Pause => {
                if matches!(self.state, State::Downloading | State::Seeding) {
                    self.state = State::Paused;
                    self.close_all();
                    self.publish_status();
                }
            }
            Command::Resume => {
                if self.state == State::Paused {
                    self.state = if self.swarm.is_complete() {
                        State::Seeding
                    } else {
                        State::Downloading
                    };
                    self.publish_status();
                }
            }
            Command::Shutdown { .. } => {}
            Command::ReaderAt {
                id,
                piece,
                last,
                readahead,
            } => {
                let seek = match self.readers.get(&id) {
                    Some(r) => piece < r.piece || piece > r.piece + r.readahead,
                    None => true,
                };
                if self.readers.len() < MAX_READERS || self.readers.contains_key(&id) {
                    let since = Instant::now();
                    self.readers.insert(
                        id,
                        Reader {
                            piece,
                            last,
                            readahead,
                            since,
                        },
                    );
                }
                self.apply_reader_priorities(seek);
                self.schedule_webseeds();
            }
            Command::ReaderGone { id } => {
                if self.readers.remove(&id).is_some() {
                    self.apply_reader_priorities(false);
                }
            }
        }
    }

    fn accepting(&self) -> bool {
        matches!(
            self.state,
            State::FetchingMetadata | State::Downloading | State::Seeding
        )
    }

    fn attach(&mut self, stream: TcpStream, addr: SocketAddr, hs: Handshake, outgoing: bool) {
        if !self.accepting() || self.banned.contains(&addr) || self.conns.len() >= MAX_PEERS {
            return;
        }
        if hs.peer_id == self.p.peer_id {
            return;
        }
        if self.addrs.contains_key(&addr) {
            return;
        }
        let key = self.next_key;
        self.next_key += 1;
        let conn = Connection::spawn(
            key,
            stream,
            addr,
            self.events_tx.clone(),
            self.storage.clone(),
            [self.p.global[0].clone(), self.p.local[0].clone()],
            [self.p.global[1].clone(), self.p.local[1].clone()],
        );
        debug!(%addr, key, "peer connected");
        self.conns.insert(key, conn);
        self.addrs.insert(addr, key);
        self.swarm.add_peer(key, addr, &hs, Instant::now());
        if outgoing {
            self.swarm.set_listen_addr(key, addr);
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent) {
        let now = Instant::now();
        self.apply_peer_event(ev, now);
        // Drain what is already queued before going back to select (fewer wake-ups).
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
                self.forget_peer(key);
            }
        }
    }

    /// Closes a connection and removes the peer from the swarm (its requests go back to the
    /// picker).
    fn forget_peer(&mut self, key: u64) {
        self.drop_conn(key);
        self.swarm.remove_peer(key);
    }

    fn drop_conn(&mut self, key: u64) {
        if let Some(c) = self.conns.remove(&key) {
            self.addrs.remove(&c.addr);
            if self.p.static_peers.contains(&c.addr) {
                self.candidates.insert(c.addr);
            }
        }
    }

    fn drain_actions(&mut self) {
        while let Some(a) = self.swarm.poll_action() {
            match a {
                Action::Send(key, msg) => self.send(key, Outgoing::Msg(msg)),
                Action::Read { peer, block } => self.send(peer, Outgoing::Block(block)),
                Action::Disconnect { peer, reason } => {
                    let ban = reason.ban();
                    debug!(peer, %reason, ban, "disconnecting");
                    if let Some(c) = self.conns.get(&peer) {
                        if ban {
                            warn!(addr = %c.addr, %reason, "banning peer");
                            self.banned.insert(c.addr);
                        }
                    }
                    self.drop_conn(peer);
                }
                Action::Store { index, begin, data } => self.store(index, begin, &data),
                Action::Verify(index) => self.verify(index),
                Action::MetadataReceived(bytes) => self.on_metadata(bytes),
                Action::Discovered(peers) => {
                    self.add_candidates(peers);
                    self.connect_now();
                }
                Action::Completed => {
                    info!("download complete");
                    if self.pending_event == tracker::Event::None
                        && self.swarm.stats().downloaded > 0
                    {
                        // Tell the trackers at once (BEP 3 `completed`), not at the next interval.
                        self.pending_event = tracker::Event::Completed;
                        self.next_announce = Instant::now();
                    }
                    self.state = State::Seeding;
                    self.save_resume();
                    self.publish_status();
                }
            }
        }
    }

    fn send(&mut self, key: u64, out: Outgoing) {
        let ok = self.conns.get(&key).is_some_and(|c| c.send(out));
        if !ok && self.conns.contains_key(&key) {
            // A peer that does not read what we send is not kept.
            self.forget_peer(key);
        }
    }

    fn store(&mut self, index: u32, begin: u32, data: &[u8]) {
        let Some(info) = &self.info else { return };
        let len = info.piece_len(index) as usize;
        let pool = &mut self.pool;
        let buf = self.buffers.entry(index).or_insert_with(|| {
            // A recycled buffer only needs resizing: every byte is overwritten by blocks
            // before the piece is hashed.
            let mut b = pool.pop().unwrap_or_default();
            b.resize(len, 0);
            b
        });
        let start = begin as usize;
        if let Some(dst) = buf.get_mut(start..start + data.len()) {
            dst.copy_from_slice(data);
        }
    }

    /// Raises the pieces just ahead of every stream reader (the nearest highest), returns the
    /// others to normal, and on a seek cancels requests that are no longer urgent so the new
    /// position is served first.
    fn apply_reader_priorities(&mut self, seek: bool) {
        let mut want: HashMap<u32, u8> = HashMap::new();
        for &Reader {
            piece,
            last,
            readahead,
            ..
        } in self.readers.values()
        {
            for k in 0..readahead {
                let p = piece + k;
                if p > last {
                    break;
                }
                let prio = match k {
                    0 | 1 => picker::TOP,
                    2..=3 => 6,
                    4..=7 => 5,
                    8..=15 => 4,
                    _ => 3,
                };
                let e = want.entry(p).or_insert(prio);
                *e = (*e).max(prio);
            }
        }
        let Some(pk) = self.swarm.picker_mut() else {
            return;
        };
        for p in self.boosted.drain() {
            if !want.contains_key(&p) && pk.priority(p) != picker::SKIP {
                pk.set_priority(p, picker::NORMAL);
            }
        }
        for (&p, &prio) in &want {
            pk.set_priority(p, prio);
            self.boosted.insert(p);
        }
        self.swarm.reprioritized(Instant::now(), seek.then_some(3));
    }

    /// Keeps a few piece buffers for reuse (no allocation and zeroing per piece).
    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < BUFFER_POOL {
            self.pool.push(buf);
        }
    }

    fn verify(&mut self, index: u32) {
        let Some(info) = &self.info else { return };
        let Some(buf) = self.buffers.remove(&index) else {
            return;
        };
        let Some(storage) = self.storage.get().cloned() else {
            return;
        };
        let expected = info.pieces.get(index as usize).copied();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let r = check_and_write(&storage, index, &buf, expected);
            let _ = tx.blocking_send(Internal::Verified(index, r, buf));
        });
    }

    fn on_metadata(&mut self, bytes: Bytes) {
        let trackers = if self.trackers.is_empty() {
            vec![]
        } else {
            vec![self.trackers.clone()]
        };
        let web_seeds = match &self.p.source {
            Source::Hash { web_seeds, .. } => web_seeds.clone(),
            Source::Metainfo(m) => m.url_list.clone(),
        };
        match Metainfo::from_info_bytes(bytes.to_vec(), trackers, web_seeds) {
            Ok(m) => {
                info!(name = %m.info.name, "metadata received");
                self.install_metainfo(m);
            }
            Err(e) => warn!("metadata from peers is invalid: {e}"),
        }
    }

    fn add_candidates(&mut self, peers: Vec<SocketAddr>) {
        for a in peers {
            if self.candidates.len() >= MAX_CANDIDATES {
                break;
            }
            if a.port() == 0
                || self.banned.contains(&a)
                || self.addrs.contains_key(&a)
                || self.is_self(a)
            {
                continue;
            }
            self.candidates.insert(a);
        }
    }

    fn is_self(&self, a: SocketAddr) -> bool {
        self.p.listen_port != 0 && a.port() == self.p.listen_port && a.ip().is_loopback()
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.swarm.tick(now);
        self.connect_now();
        if self.dirty && now.duration_since(self.last_resume_save) > Duration::from_secs(15) {
            self.save_resume();
        }
        self.publish_status();
    }

    /// Dials known peers and announces to trackers and the DHT now, if the torrent is
    /// running and they are due.
    fn connect_now(&mut self) {
        if self.accepting() {
            self.dial_more();
            if !self.trackers.is_empty() && Instant::now() >= self.next_announce {
                self.announce();
            }
            self.dht_work();
        }
    }

    /// DHT (BEP 5): look up peers (every 5 s while we have none, 30 s while we have few,
    /// 5 min otherwise) and
    /// announce ourselves every 15 min. Lookups and announces run as tasks.
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
            let (ih, tx, d) = (self.info_hash, self.internal_tx.clone(), dht.clone());
            tokio::spawn(async move {
                let peers = d.get_peers(ih, 200).await;
                if !peers.is_empty() {
                    let _ = tx.send(Internal::DhtPeers(peers)).await;
                }
            });
        }
        if now >= self.next_dht_announce && self.p.listen_port != 0 {
            self.next_dht_announce = now + Duration::from_secs(15 * 60);
            let (ih, port) = (self.info_hash, self.p.listen_port);
            tokio::spawn(async move {
                if let Err(e) = dht.announce(ih, port).await {
                    debug!("DHT announce failed: {e}");
                }
            });
        }
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
            // Static peers stay candidates (re-dialled after a drop); others are tried once.
            if !self.p.static_peers.contains(&addr) {
                self.candidates.remove(&addr);
            }
            self.dialing.insert(addr);
            let (ih, id, tx) = (self.info_hash, self.p.peer_id, self.internal_tx.clone());
            tokio::spawn(async move {
                let r = peer::dial(addr, ih, id).await.map_err(|e| e.to_string());
                let _ = tx.send(Internal::Dialed(addr, r, true)).await;
            });
        }
    }

    fn announce(&mut self) {
        self.next_announce = Instant::now() + Duration::from_secs(60);
        let st = self.swarm.stats();
        let left = self.info.as_ref().map_or(1, |i| {
            i.total_length()
                .saturating_sub(self.swarm.have().map_or(0, |h| have_bytes(i, h)))
        });
        let req = tracker::AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.p.peer_id,
            port: self.p.listen_port,
            uploaded: st.uploaded,
            downloaded: st.downloaded,
            left,
            event: self.pending_event,
            num_want: 50,
        };
        self.pending_event = tracker::Event::None;
        for url in self.trackers.clone() {
            let tx = self.internal_tx.clone();
            let req = req.clone();
            tokio::spawn(async move {
                match tracker::announce(&url, &req).await {
                    Ok(r) => {
                        let _ = tx.send(Internal::TrackerPeers(r.peers, r.interval)).await;
                    }
                    Err(e) => debug!(%url, "announce failed: {e}"),
                }
            });
        }
    }

    fn save_resume(&mut self) {
        let (Some(storage), Some(have)) = (self.storage.get(), self.swarm.have()) else {
            return;
        };
        if let Err(e) = storage.flush() {
            warn!("flush failed: {e}");
        }
        if let Err(e) = Resume::save(&self.resume_path(), &self.info_hash.to_hex(), have, storage) {
            warn!("saving resume data failed: {e}");
        }
        self.dirty = false;
        self.last_resume_save = Instant::now();
    }

    fn close_all(&mut self) {
        let keys: Vec<u64> = self.conns.keys().copied().collect();
        for key in keys {
            self.forget_peer(key);
        }
        self.buffers.clear();
    }

    fn fail(&mut self, msg: String) {
        warn!("{msg}");
        self.mark_stopped(&msg);
        self.state = State::Error(msg);
        self.close_all();
        self.publish_status();
    }

    /// Deletes the torrent's files (only those the torrent names: its single file, or its
    /// directory) and its resume data and torrent copy.
    fn delete_data(&mut self) {
        if let Some(info) = &self.info {
            let top = self.p.save_dir.join(&info.name);
            let r = if info.multi_file {
                std::fs::remove_dir_all(&top)
            } else {
                std::fs::remove_file(&top)
            };
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %top.display(), "deleting data failed: {e}");
                }
            }
        }
        let _ = std::fs::remove_file(self.resume_path());
        let _ = std::fs::remove_file(self.torrent_file_path());
        let _ = std::fs::remove_file(self.save_dir_path());
    }

    /// Publishes a verified piece to stream readers.
    fn mark_have(&self, index: u32) {
        if let Ok(mut h) = self.shared.have.write() {
            if let Some(h) = h.as_mut() {
                h.set(index, true);
            }
        }
        self.shared.changed.notify_waiters();
    }

    fn mark_stopped(&self, reason: &str) {
        if let Ok(mut s) = self.shared.stopped.write() {
            *s = Some(reason.to_string());
        }
        self.shared.changed.notify_waiters();
    }

    fn shutdown(&mut self) {
        self.mark_stopped("removed");
        self.close_all();
        self.save_resume();
    }

    fn publish_status(&mut self) {
        let st = self.swarm.stats();
        let (total, have_b, have_n, n) = match (&self.info, self.swarm.have()) {
            (Some(i), Some(h)) => (i.total_length(), have_bytes(i, h), h.count(), h.len()),
            (Some(i), None) => (i.total_length(), 0, 0, i.num_pieces()),
            _ => (0, 0, 0, 0),
        };
        let name = self
            .info
            .as_ref()
            .map(|i| i.name.clone())
            .or_else(|| match &self.p.source {
                Source::Hash { name, .. } => name.clone(),
                Source::Metainfo(m) => Some(m.info.name.clone()),
            });
        let _ = self.status_tx.send(TorrentStatus {
            info_hash: self.info_hash,
            name,
            state: self.state.clone(),
            total_length: total,
            have_bytes: have_b,
            pieces_have: have_n,
            pieces_total: n,
            downloaded: st.downloaded + self.http_downloaded,
            uploaded: st.uploaded,
            down_rate: st.down_rate,
            up_rate: st.up_rate,
            peers: st.peers,
            hash_failures: st.hash_failures,
            p2p_downloaded: st.downloaded,
            http_downloaded: self.http_downloaded,
            webseeds: self.webseed_stats(),
            checked: self.checked,
            disconnects: st.disconnects,
        });
    }
}

/// Hashes a complete piece and, when it matches `expected`, writes it (blocking: call on the
/// blocking pool). `Ok(false)`: the hash does not match, nothing written.
fn check_and_write(
    storage: &Storage,
    index: u32,
    data: &[u8],
    expected: Option<[u8; 20]>,
) -> Result<bool, String> {
    if expected != Some(sha1_piece(data)) {
        return Ok(false);
    }
    storage
        .write_piece(index, data)
        .map(|_| true)
        .map_err(|e| e.to_string())
}

fn have_bytes(info: &Info, have: &Bitfield) -> u64 {
    have.ones().map(|i| info.piece_len(i) as u64).sum()
}
