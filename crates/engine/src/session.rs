//! The session: one node. Owns the TCP listener, the node key and peer ID, the node-wide rate
//! limits, a handle per torrent ([`crate::torrent`]) and one per live stream
//! ([`crate::live::actor`]).
//!
//! Incoming connections are accepted in `session/net.rs`: the session reads the handshakes
//! (plain, or MSE/PE then plain, under the node's [`Encryption`] policy), finds the torrent or
//! live stream by info hash and hands the stream over; unknown IDs and bytes that are neither
//! are closed. At most [`MAX_HANDSHAKES_IN_FLIGHT`] handshakes are read at once; a connection
//! beyond that is closed as soon as it is accepted (slow or silent sockets cannot pile up
//! tasks). Whether the swarm keeps the peer is its connection manager's decision
//! ([`crate::host`]).
//!
//! Local Service Discovery ([`crate::lsd`]) is off until [`Session::start_lsd`]; once on, every
//! held torrent and live stream is announced on the LAN, and each peer it finds is handed to
//! the torrent or live stream with that info hash through its `AddPeers` command.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use peercdn_core::live::Descriptor;
use peercdn_core::{InfoHash, PeerId};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::catalog::{Catalog, Refused, SearchQuery};
use crate::dht::{Dht, DhtConfig};
use crate::gossip::{Asked, Hub};
use crate::host::PeerParams;
use crate::live::actor::{self, ActorHandle, ActorParams, Kind, LiveCommand};
use crate::live::LiveHandle;
use crate::lsd::Lsd;
use crate::nodekey::NodeKey;
use crate::peer::Encryption;
use crate::ratelimit::RateLimiter;
use crate::receipts::Accounts;
use crate::torrent::{self, Command, Source, TorrentHandle, TorrentParams};
use crate::utp::UtpSocket;

mod lsd;
mod net;
mod reach;
use net::{accept_loop, ipv4_side, listen, route_peer, utp_accept_loop};
use peercdn_core::catalog::{self, Description, Record};
use peercdn_core::ext::receipt::Identity;
use reach::IncomingCounts;
pub use reach::{Reach, ReachFlag};

/// Node configuration.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Node key, resume data, torrent copies.
    pub data_dir: PathBuf,
    /// Default directory for downloads.
    pub download_dir: PathBuf,
    /// TCP listen address for peers (port 0: any free port).
    pub listen: SocketAddr,
    /// Peers dialled for every torrent.
    pub static_peers: Vec<SocketAddr>,
    /// Node-wide upload limit, bytes/s (0 = none).
    pub upload_limit: u64,
    /// Node-wide download limit, bytes/s (0 = none).
    pub download_limit: u64,
    /// The mainline DHT: `None` = off; otherwise its bootstrap list (`None` inside = the
    /// public routers, `Some(list)` = a private network). It listens on UDP at the peer port.
    pub dht: Option<Option<Vec<String>>>,
    /// Time between two rounds of receipts ([`crate::receipts`]).
    pub receipt_interval: Duration,
    /// Which peer connections are encrypted (MSE/PE).
    pub encryption: Encryption,
    /// uTP beside TCP on the peer port.
    pub utp: UtpMode,
    /// The DHT's UDP port. `None`: the peer port when uTP is off; with uTP (which takes the
    /// peer port's UDP side), the peer port + 1, or any free port when that one is taken or
    /// the peer port is 0.
    pub dht_port: Option<u16>,
}

/// Whether peers are reached over uTP (BEP 29) as well as TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UtpMode {
    /// TCP only.
    Off,
    /// Accept both; dial TCP, then uTP when TCP fails.
    #[default]
    On,
    /// Accept both; dial uTP (LEDBAT: uploads yield to other traffic), then TCP.
    Prefer,
}

impl std::str::FromStr for UtpMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(UtpMode::Off),
            "on" => Ok(UtpMode::On),
            "prefer" => Ok(UtpMode::Prefer),
            _ => Err(format!("unknown uTP mode {s:?} (on, prefer or off)")),
        }
    }
}

/// Per-torrent options.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// Where the files go (default: the session's download dir).
    pub save_dir: Option<PathBuf>,
    /// Extra peers to dial for this torrent.
    pub peers: Vec<SocketAddr>,
    /// Upload limit for this torrent, bytes/s (0 = none).
    pub upload_limit: u64,
    /// Download limit for this torrent, bytes/s (0 = none).
    pub download_limit: u64,
}

/// Incoming connections whose handshake is being read at once; more are closed at accept.
pub const MAX_HANDSHAKES_IN_FLIGHT: usize = 64;

/// How long [`Session::resolve_id`] waits for the info dictionary of an unknown ID before it
/// starts it as a torrent that keeps looking.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a lookup nobody answered in [`RESOLVE_TIMEOUT`] goes on in the background.
pub const LATE_RESOLVE_TIMEOUT: Duration = Duration::from_secs(600);
/// Most lookups going on in the background at once (more give up at once).
pub const MAX_LATE_RESOLVES: usize = 64;

/// Options of a live stream.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Extra peers to dial for this stream.
    pub peers: Vec<SocketAddr>,
    /// CDN base URLs besides the descriptor's `url-list`.
    pub cdn: Vec<String>,
    /// Upload limit for this stream, bytes/s (0 = none).
    pub upload_limit: u64,
    /// Download limit for this stream, bytes/s (0 = none).
    pub download_limit: u64,
    /// Set when this node is the stream's source (it signs the pieces; see
    /// [`crate::live::LiveSource`]).
    pub source: bool,
}

/// What a bare content ID turned out to be.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A torrent (video on demand).
    Vod(TorrentHandle),
    /// A live stream.
    Live(LiveHandle),
    /// No peer answered within [`RESOLVE_TIMEOUT`]: the lookup goes on in the background (a
    /// later `resolve_id` joins it) for up to [`LATE_RESOLVE_TIMEOUT`], and the ID becomes a
    /// live stream or a torrent once found — never a torrent only because its peers were late.
    Pending,
}

/// Why the session could not do something.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Binding the listen socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The node key could not be loaded or created.
    #[error("node key: {0}")]
    NodeKey(#[from] crate::nodekey::NodeKeyError),
    /// The DHT could not start.
    #[error("DHT: {0}")]
    Dht(#[from] crate::dht::DhtError),
    /// The catalogue could not be opened.
    #[error("{0}")]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    config: SessionConfig,
    peer_id: PeerId,
    key: NodeKey,
    port: u16,
    torrents: Mutex<HashMap<InfoHash, TorrentHandle>>,
    lives: Mutex<HashMap<InfoHash, ActorHandle>>,
    /// IDs `resolve_id` is finding out about (their actor is in `lives` to fetch the info
    /// dictionary, but they are not known to be live streams yet).
    resolving: Mutex<std::collections::HashSet<InfoHash>>,
    /// IDs whose lookup goes on in the background ([`Resolved::Pending`]); they stay in
    /// `resolving` meanwhile.
    late: Mutex<std::collections::HashSet<InfoHash>>,
    limits: [RateLimiter; 2],
    accept: tokio::task::JoinHandle<()>,
    /// uTP on the peer port's UDP side, when on.
    utp: Option<UtpSocket>,
    utp_accept: Option<tokio::task::JoinHandle<()>>,
    dht: Option<Dht>,
    lsd: OnceLock<Lsd>,
    search: Arc<Hub>,
    channels: Arc<crate::channel::Channels>,
    accounts: Arc<Accounts>,
    /// The router port mapping, once started ([`Session::start_port_mapping`]).
    nat: Mutex<Option<crate::nat::PortMapper>>,
    /// Incoming connections whose handshake passed.
    incoming: IncomingCounts,
}

/// A session that may have ended (for background tasks that must not keep it alive).
#[derive(Clone)]
pub(crate) struct WeakSession(std::sync::Weak<Inner>);

impl WeakSession {
    /// The session, while it runs.
    pub(crate) fn upgrade(&self) -> Option<Session> {
        self.0.upgrade().map(|inner| Session { inner })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.accept.abort();
        if let Some(a) = &self.utp_accept {
            a.abort();
        }
    }
}

impl Session {
    /// Opens the data directory, loads (or creates) the node key, binds the listener.
    pub async fn start(config: SessionConfig) -> Result<Session, SessionError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| SessionError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let key = NodeKey::load_or_create(&config.data_dir)?;
        let catalog = Arc::new(Catalog::open(
            Some(&config.data_dir),
            crate::clock::unix_secs(),
        )?);
        let channels = Arc::new(crate::channel::Channels::open(
            &config.data_dir,
            key.public(),
        ));
        let mut random = [0u8; 12];
        getrandom::getrandom(&mut random).map_err(|e| SessionError::DataDir {
            path: config.data_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let peer_id = PeerId::ours(random);
        let mut salt = [0u8; 32];
        getrandom::getrandom(&mut salt).map_err(|e| SessionError::DataDir {
            path: config.data_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let accounts = Arc::new(Accounts::new(
            Identity::new(key.signing_key(), salt),
            config.receipt_interval,
            Some(config.data_dir.clone()),
        ));
        let listener = listen(config.listen).map_err(|source| SessionError::Listen {
            addr: config.listen,
            source,
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let limits = [
            RateLimiter::new(config.download_limit),
            RateLimiter::new(config.upload_limit),
        ];
        let utp = match config.utp {
            UtpMode::Off => None,
            mode => match UtpSocket::bind(
                SocketAddr::new(
                    listener.local_addr().map_or(config.listen.ip(), |a| a.ip()),
                    port,
                ),
                mode == UtpMode::Prefer,
            ) {
                Ok(u) => Some(u),
                Err(e) => {
                    warn!("uTP is off: cannot bind UDP port {port}: {e}");
                    None
                }
            },
        };
        let dht = match &config.dht {
            Some(bootstrap) => {
                let start = |port| {
                    Dht::start(DhtConfig {
                        port,
                        bind: ipv4_side(config.listen.ip()),
                        bootstrap: bootstrap.clone(),
                        state_file: Some(config.data_dir.join("dht.nodes")),
                    })
                };
                Some(match (config.dht_port, &utp) {
                    (Some(p), _) => start(p)?,
                    (None, None) => start(port)?,
                    (None, Some(_)) if port == 0 || port == u16::MAX => start(0)?,
                    (None, Some(_)) => start(port + 1).or_else(|e| {
                        debug!("DHT port {} taken ({e}): any free port", port + 1);
                        start(0)
                    })?,
                })
            }
            None => None,
        };
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let accept = tokio::spawn(accept_loop(listener, weak.clone()));
            let utp_accept = utp
                .as_ref()
                .and_then(|u| u.incoming())
                .map(|rx| tokio::spawn(utp_accept_loop(rx, weak)));
            Inner {
                config,
                peer_id,
                key,
                port,
                torrents: Mutex::new(HashMap::new()),
                lives: Mutex::new(HashMap::new()),
                resolving: Mutex::new(std::collections::HashSet::new()),
                late: Mutex::new(std::collections::HashSet::new()),
                limits,
                accept,
                utp,
                utp_accept,
                dht,
                lsd: OnceLock::new(),
                search: Arc::new(Hub::new(catalog)),
                channels,
                accounts,
                nat: Mutex::new(None),
                incoming: IncomingCounts::default(),
            }
        });
        if inner.dht.is_some() {
            tokio::spawn(crate::channel::run(WeakSession(Arc::downgrade(&inner))));
        }
        tokio::spawn(keep_catalog_saved(Arc::downgrade(inner.search.catalog())));
        info!(port, peer_id = ?peer_id, key = %inner.key.public_hex(), "session started");
        Ok(Session { inner })
    }

    /// The TCP port peers reach us on.
    pub fn listen_port(&self) -> u16 {
        self.inner.port
    }

    /// The uTP socket, when uTP is on.
    pub fn utp(&self) -> Option<&UtpSocket> {
        self.inner.utp.as_ref()
    }

    /// The DHT node, when on.
    pub fn dht(&self) -> Option<&Dht> {
        self.inner.dht.as_ref()
    }

    /// Our peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The node's public key (hex).
    pub fn node_key_hex(&self) -> String {
        self.inner.key.public_hex()
    }

    /// The node's accounting: receipts signed and passed on, the ledger of a broadcaster.
    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.inner.accounts
    }

    /// The catalogue of signed records this node holds and searches.
    pub fn catalog(&self) -> &Catalog {
        self.inner.search.catalog()
    }

    /// Asks up to [`crate::gossip::FANOUT`] peers for `q` (see [`Hub::ask`]); their records
    /// are in the catalogue when this returns.
    pub async fn ask_peers(&self, q: &SearchQuery, budget: std::time::Duration) -> Asked {
        self.inner.search.ask(q, budget).await
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.config.data_dir
    }

    /// The node's signing key (it signs catalogue records and the channel head).
    pub(crate) fn node_key(&self) -> ed25519_dalek::SigningKey {
        self.inner.key.signing_key()
    }

    pub(crate) fn channels_state(&self) -> &Arc<crate::channel::Channels> {
        &self.inner.channels
    }

    /// The own channel and the subscriptions ([`crate::channel`]).
    pub fn channels(&self) -> crate::channel::Report {
        self.inner.channels.report()
    }

    /// Follows `publisher`'s channel: its records come through the DHT (with the DHT off,
    /// the subscription is kept for when it is on).
    pub fn subscribe(&self, publisher: [u8; 32]) -> Result<(), crate::channel::SubscribeError> {
        self.inner.channels.subscribe(publisher)
    }

    /// Stops following `publisher` and removes its channel torrent (the records taken stay).
    /// False when not subscribed.
    pub async fn unsubscribe(&self, publisher: &[u8; 32]) -> bool {
        match self.inner.channels.unsubscribe(publisher) {
            None => false,
            Some(ih) => {
                if let Some(ih) = ih {
                    self.remove_with(&ih, true).await;
                }
                true
            }
        }
    }

    /// [`Session::ask_peers`], telling `progress` as answers arrive (see
    /// [`Hub::ask_watching`]).
    pub async fn ask_peers_watching(
        &self,
        q: &SearchQuery,
        budget: std::time::Duration,
        progress: &tokio::sync::watch::Sender<Asked>,
    ) -> Asked {
        self.inner.search.ask_watching(q, budget, progress).await
    }

    /// What `pc_search` did so far.
    pub fn search_stats(&self) -> crate::gossip::SearchStats {
        self.inner.search.stats()
    }

    /// Signs a catalogue record for `id` with the node key and keeps it (see
    /// [`Catalog::publish`]).
    pub fn publish_record(
        &self,
        id: InfoHash,
        kind: catalog::Kind,
        desc: Description,
    ) -> Result<Record, Refused> {
        let key = self.inner.key.signing_key();
        let now = crate::clock::unix_secs();
        let r = self.catalog().publish(&key, id, kind, desc, now);
        self.inner.channels.wake();
        r
    }

    /// Adds a torrent (or returns the running one with the same ID, after giving it the extra
    /// peers).
    pub fn add(&self, source: Source, opts: AddOptions) -> TorrentHandle {
        let info_hash = source.info_hash();
        let mut map = self
            .inner
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(h) = map.get(&info_hash) {
            let _ = h.tx.try_send(Command::AddPeers(opts.peers));
            return h.clone();
        }
        let c = &self.inner.config;
        let params = TorrentParams {
            source,
            save_dir: opts.save_dir.unwrap_or_else(|| c.download_dir.clone()),
            state_dir: c.data_dir.join("torrents"),
            peers: self.peer_params(opts.peers, opts.download_limit, opts.upload_limit),
        };
        let h = torrent::spawn(params);
        map.insert(info_hash, h.clone());
        if let Some(lsd) = self.inner.lsd.get() {
            lsd.add(info_hash);
        }
        h
    }

    /// What a new torrent or live stream is given about its peers: the node's static peers
    /// plus `extra`, our identity, the node-wide limits and its own, the DHT.
    fn peer_params(
        &self,
        extra: Vec<SocketAddr>,
        download_limit: u64,
        upload_limit: u64,
    ) -> PeerParams {
        let mut static_peers = self.inner.config.static_peers.clone();
        static_peers.extend(extra);
        static_peers.sort();
        static_peers.dedup();
        PeerParams {
            static_peers,
            peer_id: self.inner.peer_id,
            listen_port: self.inner.port,
            local_ip: Some(self.inner.config.listen.ip()).filter(|ip| !ip.is_unspecified()),
            global: self.inner.limits.clone(),
            local: [
                RateLimiter::new(download_limit),
                RateLimiter::new(upload_limit),
            ],
            dht: self.inner.dht.clone(),
            search: self.inner.search.clone(),
            accounts: self.inner.accounts.clone(),
            encryption: self.inner.config.encryption,
            utp: self.inner.utp.clone(),
            reachable: self.inner.incoming.flag(),
        }
    }

    /// Re-adds every torrent this data directory held when the node last ran (its `.torrent`
    /// copy and save directory are kept beside the resume data), so a restarted engine carries
    /// on where it stopped. Returns how many were restored; unreadable entries are skipped with
    /// a warning.
    pub fn restore(&self) -> usize {
        let dir = self.inner.config.data_dir.join("torrents");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let mut n = 0;
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("torrent") {
                continue;
            }
            let m = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    peercdn_core::metainfo::Metainfo::from_bytes(&b).map_err(|e| e.to_string())
                }) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "skipping saved torrent: {e}");
                    continue;
                }
            };
            let save_dir = std::fs::read(path.with_extension("savedir")).ok().map(|b| {
                PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(b))
            });
            self.add(
                Source::Metainfo(Box::new(m)),
                AddOptions {
                    save_dir,
                    ..Default::default()
                },
            );
            n += 1;
        }
        n
    }

    /// A running torrent.
    pub fn get(&self, info_hash: &InfoHash) -> Option<TorrentHandle> {
        self.inner
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(info_hash)
            .cloned()
    }

    /// All running torrents.
    pub fn list(&self) -> Vec<TorrentHandle> {
        self.inner
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Stops a torrent (resume data saved). Its files stay.
    pub async fn remove(&self, info_hash: &InfoHash) -> bool {
        self.remove_with(info_hash, false).await
    }

    /// Stops a torrent and, with `delete_data`, deletes its files. False if it was not running.
    pub async fn remove_with(&self, info_hash: &InfoHash, delete_data: bool) -> bool {
        let h = self
            .inner
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(info_hash);
        let Some(h) = h else { return false };
        self.lsd_forget(info_hash);
        let (tx, rx) = oneshot::channel();
        if h.tx
            .send(Command::Shutdown {
                done: tx,
                delete_data,
            })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
        true
    }

    /// Adds a live stream whose descriptor is known (or returns the running one, after giving
    /// it the extra peers). Its window is ready at once; its swarm dials `opts.peers`, the
    /// session's static peers, the DHT and the descriptor's trackers.
    pub fn add_live(&self, descriptor: Descriptor, opts: LiveOptions) -> LiveHandle {
        let id = descriptor.content_id();
        self.start_live(id, Some(descriptor), opts).handle
    }

    /// Joins a live stream knowing only its ID (`peercdn play ID`): the info dictionary is
    /// fetched from peers first ([`LiveHandle::wait_ready`] waits for it). If the ID turns out
    /// to be an ordinary torrent, the stream ends (`wait_ready` gives `None`); use
    /// [`Session::resolve_id`] when the kind is not known.
    pub fn add_live_by_id(&self, id: InfoHash, opts: LiveOptions) -> LiveHandle {
        self.start_live(id, None, opts).handle
    }

    fn start_live(
        &self,
        id: InfoHash,
        descriptor: Option<Descriptor>,
        opts: LiveOptions,
    ) -> ActorHandle {
        let mut map = self.inner.lives.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = map.get(&id) {
            if !opts.peers.is_empty() {
                let _ = h.tx.try_send(LiveCommand::AddPeers(opts.peers));
            }
            return h.clone();
        }
        let peers = self.peer_params(opts.peers, opts.download_limit, opts.upload_limit);
        // Extra CDN URLs join the descriptor's (the ID does not cover them).
        let mut cdn = descriptor
            .as_ref()
            .map(|d| d.cdn.clone())
            .unwrap_or_default();
        for u in opts.cdn {
            if !cdn.contains(&u) {
                cdn.push(u);
            }
        }
        let descriptor = descriptor.map(|mut d| {
            d.cdn = cdn.clone();
            d
        });
        let h = actor::spawn(ActorParams {
            id,
            descriptor,
            source: opts.source,
            cdn,
            peers,
        });
        map.insert(id, h.clone());
        if let Some(lsd) = self.inner.lsd.get() {
            lsd.add(id);
        }
        h
    }

    /// A running live stream.
    pub fn get_live(&self, id: &InfoHash) -> Option<LiveHandle> {
        if self.is_resolving(id) {
            return None;
        }
        self.inner
            .lives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|h| h.handle.clone())
    }

    /// All running live streams.
    pub fn lives(&self) -> Vec<LiveHandle> {
        self.inner
            .lives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(id, _)| !self.is_resolving(id))
            .map(|(_, h)| h.handle.clone())
            .collect()
    }

    fn is_resolving(&self, id: &InfoHash) -> bool {
        lock(&self.inner.resolving).contains(id)
    }

    /// Stops a live stream. False if it was not running.
    pub async fn remove_live(&self, id: &InfoHash) -> bool {
        let h = self
            .inner
            .lives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let Some(h) = h else { return false };
        self.lsd_forget(id);
        let (tx, rx) = oneshot::channel();
        if h.tx.send(LiveCommand::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
        true
    }

    /// Finds out what a bare content ID is — a running torrent or live stream, or else by
    /// fetching its info dictionary from peers (`opts.peers`, static peers, the DHT) — and
    /// starts it: a live stream as with [`Session::add_live`], a torrent with its metadata
    /// already known. When no peer answers within [`RESOLVE_TIMEOUT`], the answer is
    /// [`Resolved::Pending`] and the lookup goes on in the background (a later call joins it):
    /// the ID is never fixed as a torrent because a live stream's peers were late.
    pub async fn resolve_id(&self, id: InfoHash, opts: AddOptions) -> Resolved {
        // Another request may be finding out already: wait for its answer rather than taking
        // its half-started stream for a live one. Claiming the ID is one step (check and
        // insert under one lock): with a check, then an insert, concurrent first requests for
        // one ID could all go on to resolve it side by side.
        // A lookup going on in the background: join it at once, with our peers.
        if lock(&self.inner.late).contains(&id) {
            return self.resolve_new(id, opts).await;
        }
        let deadline = crate::clock::tokio_now() + RESOLVE_TIMEOUT + Duration::from_secs(5);
        loop {
            let claimed = lock(&self.inner.resolving).insert(id);
            // `get_live` hides IDs being resolved, ours too once claimed: then look at the map
            // itself (a stream there now was resolved by another request).
            let live = if claimed {
                lock(&self.inner.lives).get(&id).map(|h| h.handle.clone())
            } else {
                self.get_live(&id)
            };
            let running = match live {
                Some(l) => Some(Resolved::Live(l)),
                None => self.get(&id).map(|t| {
                    let _ = t.tx.try_send(Command::AddPeers(opts.peers.clone()));
                    Resolved::Vod(t)
                }),
            };
            if let Some(r) = running {
                if claimed {
                    lock(&self.inner.resolving).remove(&id);
                }
                return r;
            }
            if claimed || crate::clock::tokio_now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let resolved = self.resolve_new(id, opts).await;
        // A pending lookup keeps the ID (its background task lets it go).
        if !lock(&self.inner.late).contains(&id) {
            lock(&self.inner.resolving).remove(&id);
        }
        resolved
    }

    async fn resolve_new(&self, id: InfoHash, opts: AddOptions) -> Resolved {
        let h = self.start_live(
            id,
            None,
            LiveOptions {
                peers: opts.peers.clone(),
                upload_limit: opts.upload_limit,
                download_limit: opts.download_limit,
                ..LiveOptions::default()
            },
        );
        let mut kind = h.kind.clone();
        let found = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            kind.wait_for(|k| !matches!(k, Kind::Unknown)),
        )
        .await
        .ok()
        .and_then(|r| r.ok().map(|k| k.clone()));
        match found {
            Some(Kind::Live) => {
                lock(&self.inner.resolving).remove(&id);
                Resolved::Live(h.handle)
            }
            Some(Kind::Vod(info)) => {
                self.remove_live(&id).await;
                Resolved::Vod(self.add_from_info(id, &info, opts))
            }
            _ => {
                // Joined (a background lookup exists), started one, or too many: give up.
                let started = {
                    let mut late = lock(&self.inner.late);
                    if late.contains(&id) {
                        Some(false)
                    } else if late.len() < MAX_LATE_RESOLVES {
                        late.insert(id);
                        Some(true)
                    } else {
                        None
                    }
                };
                match started {
                    Some(true) => self.spawn_late_resolve(id, kind, opts),
                    Some(false) => {}
                    None => {
                        self.remove_live(&id).await;
                    }
                }
                Resolved::Pending
            }
        }
    }

    /// Starts the torrent whose info dictionary peers gave (by hash if it does not parse).
    fn add_from_info(&self, id: InfoHash, info: &[u8], opts: AddOptions) -> TorrentHandle {
        match peercdn_core::metainfo::Metainfo::from_info_bytes(info.to_vec(), vec![], vec![]) {
            Ok(m) => self.add(Source::Metainfo(Box::new(m)), opts),
            Err(e) => {
                debug!(%id, "info dictionary from peers is invalid: {e}");
                self.add_by_hash(id, opts)
            }
        }
    }

    /// Goes on looking for `id` (its lookup, whose kind `kind` reports, found nothing in
    /// [`RESOLVE_TIMEOUT`]) for up to [`LATE_RESOLVE_TIMEOUT`]: a live stream stays and shows,
    /// a torrent starts, nothing found ends the lookup. The ID stays hidden (`resolving`)
    /// until then.
    fn spawn_late_resolve(
        &self,
        id: InfoHash,
        mut kind: tokio::sync::watch::Receiver<Kind>,
        opts: AddOptions,
    ) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let found = tokio::time::timeout(
                LATE_RESOLVE_TIMEOUT,
                kind.wait_for(|k| !matches!(k, Kind::Unknown)),
            )
            .await
            .ok()
            .and_then(|r| r.ok().map(|k| k.clone()));
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let s = Session { inner };
            match found {
                Some(Kind::Live) => info!(%id, "found late: a live stream"),
                Some(Kind::Vod(info)) => {
                    info!(%id, "found late: a torrent");
                    s.remove_live(&id).await;
                    s.add_from_info(id, &info, opts);
                }
                _ => {
                    debug!(%id, "nobody has this ID: the lookup ends");
                    s.remove_live(&id).await;
                }
            }
            lock(&s.inner.late).remove(&id);
            lock(&s.inner.resolving).remove(&id);
        });
    }

    fn add_by_hash(&self, id: InfoHash, opts: AddOptions) -> TorrentHandle {
        self.add(
            Source::Hash {
                info_hash: id,
                name: None,
                trackers: vec![],
                web_seeds: vec![],
            },
            opts,
        )
    }

    /// The listen address (as configured; the port as bound).
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.inner.config.listen.ip(), self.inner.port)
    }

    /// Which peer connections are encrypted.
    pub fn encryption(&self) -> Encryption {
        self.inner.config.encryption
    }

    /// Waits until the port mapping settled (`None`: not started).
    pub async fn port_mapping_settled(&self) -> Option<crate::nat::Reachability> {
        let rx = lock(&self.inner.nat).as_ref().map(|m| m.watch())?;
        Some(crate::nat::settled(rx).await)
    }

    /// Stops every torrent (saving resume data) and every live stream.
    pub async fn shutdown(&self) {
        let nat = lock(&self.inner.nat).take();
        if let Some(m) = nat {
            m.stop().await;
        }
        let lives: Vec<InfoHash> = self.lives().iter().map(|h| h.content_id()).collect();
        for id in lives {
            self.remove_live(&id).await;
        }
        let ids: Vec<InfoHash> = self.list().iter().map(|h| h.info_hash).collect();
        for id in ids {
            self.remove(&id).await;
        }
        // Records from peers are kept only in memory while running (the node's own are saved
        // as they are made): keep them for the next start.
        if let Err(e) = self.catalog().save() {
            tracing::warn!(error = %e, "catalogue not saved");
        }
    }
}

/// Writes the node's own new records every [`crate::catalog::SAVE_DEBOUNCE`] (signing many in a row
/// writes the file once); ends with the session.
async fn keep_catalog_saved(catalog: std::sync::Weak<Catalog>) {
    let mut tick = tokio::time::interval(crate::catalog::SAVE_DEBOUNCE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(catalog) = catalog.upgrade() else {
            return;
        };
        if let Err(e) = catalog.save_if_dirty() {
            tracing::warn!(error = %e, "catalogue not saved");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
