//! One torrent at run time: an actor task that owns the [`Swarm`] state machine and pumps it.
//!
//! The actor receives peer events (from [`crate::peer`] tasks), commands (from the session),
//! and its own completions (piece checks, web seed fetches), feeds them to the swarm, and
//! executes the swarm's actions: it keeps blocks of pieces in progress in memory, hashes and
//! writes a complete piece on the blocking pool, and saves resume data. Connections, dials,
//! bans, the DHT and trackers are the [`Host`]'s, shared with the live actor. All state lives
//! in the task (`&mut self`), no locks; the outside world sees a [`TorrentStatus`] through a
//! `watch` channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peercdn_core::conn::Source as PeerSource;
use peercdn_core::metainfo::{Info, Metainfo};
use peercdn_core::swarm::webseed::WebSeedPolicy;
use peercdn_core::swarm::{Action, PeerInfo, Swarm, SwarmConfig};
use peercdn_core::time::earliest;
use peercdn_core::wire::Handshake;
use peercdn_core::{Bitfield, DisconnectCounts, InfoHash};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

mod accounting;
mod webseeds;

pub use webseeds::WebSeedStat;

use crate::clock;
use crate::gossip::Gossip;
use crate::host::{Host, PeerParams, Totals};
use crate::peer::Outgoing;
use crate::ratelimit::RateLimiter;
use crate::receipts::Accounting;
use crate::storage::{sha1_piece, Resume, Storage, StorageError};
use crate::stream::{self, FileInfo, FileReader, Shared, StreamError};

/// Piece buffers kept for reuse.
const BUFFER_POOL: usize = 16;
/// Status publications at least this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Resume data saved at most this often while pieces arrive.
const RESUME_EVERY: Duration = Duration::from_secs(15);

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
    /// Peers, identity, limits and DHT.
    pub peers: PeerParams,
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
    /// Stopped by an error (e.g. a full disk): [`TorrentError::is_disk_full`] tells a full
    /// disk apart, `Display` says what happened.
    Error(TorrentError),
}

/// Why a torrent stopped: the storage error that stopped it, kept typed from the blocking pool
/// to the CLI and the API (a full disk is told apart from other I/O errors).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TorrentError {
    /// Opening (creating) the torrent's files failed.
    #[error("cannot open storage: {0}")]
    Open(Arc<StorageError>),
    /// Checking the data already on disk failed.
    #[error("checking existing data failed: {0}")]
    Check(Arc<StorageError>),
    /// Writing a verified piece failed.
    #[error("writing piece {index} failed: {source}")]
    Write {
        /// The piece.
        index: u32,
        /// What the disk said.
        source: Arc<StorageError>,
    },
}

/// Two errors are equal when they say the same thing (`State` compares by value).
impl PartialEq for TorrentError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for TorrentError {}

impl TorrentError {
    /// The storage error underneath.
    pub fn storage(&self) -> &StorageError {
        match self {
            TorrentError::Open(e) | TorrentError::Check(e) => e,
            TorrentError::Write { source, .. } => source,
        }
    }

    /// True when the disk (or the user's quota) is full: free space, then resume.
    pub fn is_disk_full(&self) -> bool {
        matches!(self.storage(), StorageError::DiskFull { .. })
    }

    /// A short machine-readable kind for APIs: `disk_full`, `io`, `missing`, `layout`.
    pub fn kind(&self) -> &'static str {
        match self.storage() {
            StorageError::DiskFull { .. } => "disk_full",
            StorageError::Missing { .. } => "missing",
            StorageError::BadPath(_) | StorageError::BadLayout(_) => "layout",
            StorageError::Io { .. }
            | StorageError::BadPiece { .. }
            | StorageError::BadRange { .. } => "io",
        }
    }
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
    /// Connected peers by how their bytes travel (plain, MSE obfuscated, RC4).
    pub wires: crate::peer::Wires,
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
    /// The connected peers (for the API and the dashboard).
    pub peer_list: Vec<PeerInfo>,
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
    Incoming(crate::peer::PeerStream, SocketAddr, Handshake),
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
    /// This torrent's own rate limits, download then upload (bytes/s; 0: none), changeable
    /// while it runs.
    pub limits: [RateLimiter; 2],
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
    Checked(Result<Bitfield, StorageError>),
    Verified(u32, Result<bool, StorageError>, Vec<u8>),
    WebSeedPiece(usize, u32, Result<Bytes, String>),
    WebSeedVerified(usize, u32, Result<bool, StorageError>, u64),
}

/// Starts a torrent task.
pub fn spawn(params: TorrentParams) -> TorrentHandle {
    let info_hash = params.source.info_hash();
    let limits = params.peers.local.clone();
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
        wires: Default::default(),
        hash_failures: 0,
        p2p_downloaded: 0,
        http_downloaded: 0,
        webseeds: Vec::new(),
        checked: 0,
        disconnects: DisconnectCounts::default(),
        peer_list: Vec::new(),
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
        limits,
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
    webseeds: Vec<crate::webseed::WebSeed>,
    /// When web seeds fetch what (core's policy, with its own deadlines).
    ws_policy: WebSeedPolicy,
    http_downloaded: u64,
    host: Host,
    buffers: HashMap<u32, Vec<u8>>,
    pool: Vec<Vec<u8>>,
    state: State,
    status_tx: watch::Sender<TorrentStatus>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    trackers: Vec<String>,
    last_resume_save: Instant,
    /// The next status publication (about once a second, besides state changes).
    next_status: Instant,
    checked: u32,
    dirty: bool,
    /// `pc_search` on this swarm's connections.
    gossip: Gossip,
    /// Receipts: signed for what we received, passed on, collected (the publisher).
    accounting: Accounting,
    /// Verified bytes each web seed delivered (by index in `webseeds`).
    ws_verified: Vec<u64>,
}

impl Torrent {
    fn new(p: TorrentParams, status_tx: watch::Sender<TorrentStatus>, shared: Arc<Shared>) -> Self {
        let info_hash = p.source.info_hash();
        // BEP 27: no peer exchange for private torrents.
        let private = matches!(&p.source, Source::Metainfo(m) if m.info.private);
        let config = SwarmConfig {
            listen_port: p.peers.port(),
            pex_interval: if private {
                None
            } else {
                SwarmConfig::default().pex_interval
            },
            seed: p.peers.seed([1, 2, 3, 4]),
            identity: Some(p.peers.accounts.identity().clone()),
            ..SwarmConfig::default()
        };
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let trackers = match &p.source {
            Source::Metainfo(m) => m.trackers.iter().flatten().cloned().collect(),
            Source::Hash { trackers, .. } => trackers.clone(),
        };
        let storage = shared.storage.clone();
        let now = clock::now();
        let host = Host::new(info_hash, &p.peers, storage.clone(), now);
        Torrent {
            info_hash,
            swarm: Swarm::new(info_hash, config),
            info: None,
            metainfo: None,
            storage,
            shared,
            webseeds: Vec::new(),
            ws_policy: WebSeedPolicy::default(),
            http_downloaded: 0,
            host,
            buffers: HashMap::new(),
            pool: Vec::new(),
            state: State::FetchingMetadata,
            status_tx,
            internal_tx,
            internal_rx,
            trackers,
            last_resume_save: now,
            next_status: now,
            checked: 0,
            dirty: false,
            gossip: Gossip::new(p.peers.search.clone()),
            accounting: Accounting::new(p.peers.accounts.clone(), info_hash, None, false),
            ws_verified: Vec::new(),
            p,
        }
    }

    async fn run(mut self, mut cmd_rx: mpsc::Receiver<Command>) {
        match self.p.source.clone() {
            Source::Metainfo(m) => self.install_metainfo(*m),
            Source::Hash { .. } => self.update_active(),
        }
        loop {
            // No fixed tick: sleep until the swarm or the actor itself has something due (the
            // host wakes itself for the connection manager's deadlines).
            let deadline = self.next_deadline();
            tokio::select! {
                wake = self.host.recv() => self.on_host(wake),
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
                Some(w) = self.gossip.next() => self.gossip.on_wake(&mut self.swarm, w),
                _ = clock::sleep_until(deadline) => self.on_timeout(),
            }
            self.drain_actions();
            // Any event may give web seeds work (a peer gone, a reader moved, a fetch done, a
            // rescue or backoff deadline come); the policy answers at once when none is ready.
            self.schedule_webseeds();
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
                self.fail(TorrentError::Open(Arc::new(e)));
                return;
            }
        };
        let _ = self.storage.set(storage.clone());
        let meta = Arc::new(m.clone());
        (self.webseeds, self.ws_policy) = webseeds::from_metainfo(&meta);
        let _ = self.shared.meta.set(meta);
        self.info = Some(info.clone());
        self.metainfo = Some(m);
        self.state = State::Checking;
        self.update_active();
        self.publish_status();
        let resume = self.resume_path();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let r = Resume::load_and_check(&resume, &info, &storage, &mut |_, _| {});
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
        let now = clock::now();
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
                self.update_active();
            }
            Internal::Checked(Err(e)) => self.fail(TorrentError::Check(Arc::new(e))),
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
                self.fail(TorrentError::Write {
                    index,
                    source: Arc::new(e),
                });
            }
            Internal::WebSeedPiece(k, index, r) => self.on_webseed_piece(k, index, r),
            Internal::WebSeedVerified(k, index, Ok(ok), len) => {
                self.on_webseed_verified(k, index, ok, len);
            }
            Internal::WebSeedVerified(_, index, Err(e), _) => self.fail(TorrentError::Write {
                index,
                source: Arc::new(e),
            }),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Incoming(stream, addr, hs) => {
                self.host
                    .incoming(stream, addr, hs, &mut self.swarm, clock::now());
            }
            Command::AddPeers(peers) => {
                self.host
                    .add_candidates(peers, PeerSource::User, &mut self.swarm, clock::now());
            }
            Command::Pause => {
                if matches!(self.state, State::Downloading | State::Seeding) {
                    self.state = State::Paused;
                    self.close_all();
                    self.update_active();
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
                    self.update_active();
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
                self.swarm
                    .set_reader(id, piece, last, readahead, clock::now());
            }
            Command::ReaderGone { id } => {
                self.swarm.remove_reader(id, clock::now());
            }
        }
    }

    fn accepting(&self) -> bool {
        matches!(
            self.state,
            State::FetchingMetadata | State::Downloading | State::Seeding
        )
    }

    /// Dialling, accepting and announcing follow the state: on while fetching metadata,
    /// downloading or seeding; off while checking, paused or failed.
    fn update_active(&mut self) {
        let now = clock::now();
        let active = self.accepting();
        self.host.set_active(active, &mut self.swarm, now);
        if active {
            self.host
                .set_trackers(self.trackers.clone(), &mut self.swarm, now);
        }
    }

    fn on_host(&mut self, wake: crate::host::Wake) {
        self.host.handle(wake, &mut self.swarm, clock::now());
    }

    fn drain_actions(&mut self) {
        while let Some(a) = self.swarm.poll_action() {
            match a {
                Action::Send(key, msg) => self.send(key, Outgoing::Msg(msg)),
                Action::Read { peer, block } => self.send(peer, Outgoing::Block(block)),
                Action::Disconnect { peer, reason } => {
                    self.host
                        .disconnect(peer, reason, &mut self.swarm, clock::now());
                }
                Action::Store { index, begin, data } => self.store(index, begin, &data),
                Action::Verify(index) => self.verify(index),
                Action::MetadataReceived(bytes) => self.on_metadata(bytes),
                Action::Discovered(via, peers) => {
                    let now = clock::now();
                    self.host.add_introduced(peers, via, &mut self.swarm, now);
                }
                Action::Holepunch(addr) => {
                    self.host.holepunch(addr, &mut self.swarm, clock::now());
                }
                Action::Search(key, ev) => {
                    let now = clock::unix_secs();
                    self.gossip.on_event(&mut self.swarm, key, ev, now);
                }
                Action::Receipts(_, receipts) => self.accounting.on_receipts(receipts),
                Action::Completed => {
                    info!("download complete");
                    if self.swarm.stats().downloaded > 0 {
                        // Tell the trackers at once (BEP 3 `completed`), not at the next interval.
                        self.host.completed(&mut self.swarm, clock::now());
                    }
                    self.state = State::Seeding;
                    self.save_resume();
                    self.publish_status();
                }
            }
        }
    }

    fn send(&mut self, key: u64, out: Outgoing) {
        self.host.send(key, out, &mut self.swarm);
    }

    /// Addresses a peer told us (PEX).
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

    /// The earliest of the swarm's [`Swarm::poll_timeout`] and the actor's own deadlines
    /// (status, resume data, web seeds). [`Self::on_timeout`] moves each on when it comes, so
    /// none stays in the past.
    fn next_deadline(&self) -> Option<Instant> {
        let mut t = earliest(self.swarm.poll_timeout(), Some(self.next_status));
        if self.dirty && self.storage.get().is_some() && self.swarm.have().is_some() {
            t = earliest(t, Some(self.last_resume_save + RESUME_EVERY));
        }
        if !self.webseeds.is_empty() && self.state == State::Downloading {
            t = earliest(t, self.ws_policy.poll_timeout(&self.swarm));
        }
        t
    }

    /// Does what is due: the swarm's timers, web seeds, resume data, the status.
    fn on_timeout(&mut self) {
        let now = clock::now();
        if self.swarm.poll_timeout().is_some_and(|t| t <= now) {
            self.swarm.handle_timeout(now);
        }
        if self
            .ws_policy
            .poll_timeout(&self.swarm)
            .is_some_and(|t| t <= now)
        {
            self.ws_policy.handle_timeout(now);
        }
        if self.dirty && now.saturating_duration_since(self.last_resume_save) >= RESUME_EVERY {
            self.last_resume_save = now;
            self.save_resume();
        }
        if now >= self.next_status {
            self.publish_status();
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
        self.last_resume_save = clock::now();
    }

    fn close_all(&mut self) {
        self.host.close_all(&mut self.swarm, clock::now());
        self.buffers.clear();
    }

    fn fail(&mut self, e: TorrentError) {
        warn!("{e}");
        self.mark_stopped(&e.to_string());
        self.state = State::Error(e);
        self.close_all();
        self.update_active();
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
        self.next_status = clock::now() + STATUS_EVERY;
        self.account();
        let st = self.swarm.stats();
        let left = self.info.as_ref().map_or(1, |i| {
            i.total_length()
                .saturating_sub(self.swarm.have().map_or(0, |h| have_bytes(i, h)))
        });
        self.host.set_totals(Totals {
            uploaded: st.uploaded,
            downloaded: st.downloaded,
            left,
        });
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
            wires: self.host.wires(),
            hash_failures: st.hash_failures,
            p2p_downloaded: st.downloaded,
            http_downloaded: self.http_downloaded,
            webseeds: self.webseed_stats(),
            checked: self.checked,
            disconnects: st.disconnects,
            peer_list: self.swarm.peers(),
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
) -> Result<bool, StorageError> {
    if expected != Some(sha1_piece(data)) {
        return Ok(false);
    }
    storage.write_piece(index, data).map(|_| true)
}

fn have_bytes(info: &Info, have: &Bitfield) -> u64 {
    have.ones().map(|i| info.piece_len(i) as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk used to reach the CLI and the API as a plain string, so nothing could tell it
    /// from any other I/O error; the typed error keeps the difference.
    #[test]
    fn a_full_disk_is_told_apart_from_other_storage_errors() {
        let full = TorrentError::Write {
            index: 7,
            source: Arc::new(StorageError::DiskFull {
                path: PathBuf::from("x"),
            }),
        };
        assert!(full.is_disk_full());
        assert_eq!(full.kind(), "disk_full");
        assert!(full
            .to_string()
            .contains("writing piece 7 failed: disk full"));
        let io = TorrentError::Check(Arc::new(StorageError::Io {
            path: PathBuf::from("x"),
            source: std::io::Error::other("boom"),
        }));
        assert!(!io.is_disk_full());
        assert_eq!(io.kind(), "io");
    }
}
