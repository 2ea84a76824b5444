//! # BEP 5 mainline DHT — a thin wrapper over the `mainline` crate
//!
//! Owns one DHT node (one UDP socket, one actor thread run by `mainline`) and the small policy
//! around it: which nodes to bootstrap from, the routing-table cache on disk (the *state file*),
//! time limits on every query, and counters for [`DhtStats`].
//!
//! What it deliberately does not own: peer connections (the caller dials what
//! [`Dht::get_peers`] returns), announce scheduling (the session decides when to re-announce),
//! and any knowledge of swarms.
//!
//! Rules:
//! - The node always runs in **server mode**, so it answers queries and any node can bootstrap
//!   others (a private network needs that; the crate's adaptive mode would stay a client while it
//!   cannot prove it is publicly reachable, which it never can on 127.0.0.1).
//! - `bootstrap: Some(list)` means *only* `list` (plus the state file's nodes); the public routers
//!   ([`mainline::DEFAULT_BOOTSTRAP_NODES`]) are used only for `bootstrap: None`.
//!   `Some(vec![])` with no state file contacts nobody.
//! - IPv4 only: the crate's socket does not support IPv6.
//! - Port 0 means "any free port". (The crate itself, given no port, first tries 6881; we always
//!   pass the port explicitly so 0 really means ephemeral.)
//! - The state file is a text file, one `ip:port` per line, at most [`MAX_STATE_NODES`] lines
//!   read; it is written atomically (temporary file, then rename) every [`SAVE_INTERVAL`] while a
//!   tokio runtime is present, on [`Dht::save_state`], and when the last handle is dropped.

use std::collections::HashSet;
use std::future::poll_fn;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_core::Stream;
use mainline::async_dht::AsyncDht;
use mainline::errors::PutQueryError;
use mainline::Id;
use peercdn_core::InfoHash;

/// Longest a [`Dht::get_peers`] lookup may run before returning what it has.
/// How long a lookup keeps collecting after its first peers.
pub const LOOKUP_GRACE: Duration = Duration::from_millis(300);
/// Longest a lookup runs.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a [`Dht::announce`] may run before it fails with [`DhtError::Timeout`].
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on the `max` argument of [`Dht::get_peers`].
pub const MAX_PEERS_PER_LOOKUP: usize = 1000;
/// Most node addresses read from (or written to) the state file.
pub const MAX_STATE_NODES: usize = 1000;
/// Largest state file read; anything beyond is ignored.
pub const MAX_STATE_FILE_BYTES: u64 = 64 * 1024;
/// How often the routing table is written to the state file.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// How often the background task refreshes the routing-table size in [`DhtStats::nodes`].
pub const NODES_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// How to start a [`Dht`].
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// UDP port, by convention the same number as the peer TCP port; 0 = any free port.
    pub port: u16,
    /// Local address to bind (IPv4 only).
    pub bind: IpAddr,
    /// `None` = the crate's default public routers; `Some(list)` = only these `host:port`
    /// entries (a private network). The state file's nodes are added in both cases.
    pub bootstrap: Option<Vec<String>>,
    /// Where the routing table is cached between runs (see the module docs).
    pub state_file: Option<PathBuf>,
}

/// What went wrong in the DHT.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// The `mainline` crate only binds IPv4 sockets.
    #[error("the DHT supports IPv4 only; cannot bind {0}")]
    Ipv6Unsupported(IpAddr),
    /// The UDP socket could not be bound (port in use, bad address, …).
    #[error("cannot start the DHT node: {0}")]
    Bind(#[source] std::io::Error),
    /// Announcing with port 0 makes no sense.
    #[error("cannot announce port 0")]
    InvalidPort,
    /// The announce query failed (no nodes to store at, error replies, no replies).
    #[error("DHT announce failed: {0}")]
    Announce(#[from] PutQueryError),
    /// A BEP 44 put was refused as older than (or conflicting with) what nodes hold.
    #[error("DHT put refused: {0}")]
    Conflict(String),
    /// The announce query did not finish in [`ANNOUNCE_TIMEOUT`].
    #[error("DHT announce timed out after {0:?}")]
    Timeout(Duration),
    /// Reading or writing the state file failed.
    #[error("DHT state file {path}: {source}")]
    StateFile {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Counters of one [`Dht`] node. Everything but `nodes` and `bootstrapped` is counted in this
/// wrapper: the `mainline` crate (v8) keeps no counters of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Nodes in the routing table, as of the last refresh (after each query, each save, every
    /// [`NODES_REFRESH_INTERVAL`], and on [`Dht::current_stats`]).
    pub nodes: usize,
    /// True once the routing table has held at least one node (the node found the network).
    pub bootstrapped: bool,
    /// The UDP port the node listens on.
    pub port: u16,
    /// Announces that were stored by at least one node.
    pub announces: u64,
    /// Announces that failed or timed out.
    pub announce_failures: u64,
    /// `get_peers` lookups started.
    pub lookups: u64,
    /// `get_peers` lookups finished (ended, reached their `max`, or timed out).
    pub lookups_done: u64,
    /// Distinct peers returned by all lookups (summed per lookup).
    pub peers_found: u64,
    /// Malformed packets dropped. Always `None`: `mainline` 8 drops undecodable packets
    /// with only a `trace!` log line and exposes no counter for them.
    pub malformed: Option<u64>,
}

/// A running DHT node. Cloning is cheap; the node stops (and saves its state) when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Dht {
    shared: Arc<Shared>,
}

struct Shared {
    sync: mainline::Dht,
    inner: AsyncDht,
    local_addr: SocketAddr,
    state_file: Option<PathBuf>,
    nodes: AtomicUsize,
    announces: AtomicU64,
    announce_failures: AtomicU64,
    lookups: AtomicU64,
    lookups_done: AtomicU64,
    peers_found: AtomicU64,
    bootstrapped: AtomicBool,
}

impl Dht {
    /// Binds the UDP socket and starts the node in server mode. Blocks briefly (socket bind and
    /// a round trip to the crate's actor thread); bootstrapping continues in the background.
    /// When called inside a tokio runtime, also starts the periodic state-file writer.
    pub fn start(config: DhtConfig) -> Result<Dht, DhtError> {
        let IpAddr::V4(bind) = config.bind else {
            return Err(DhtError::Ipv6Unsupported(config.bind));
        };
        let state_nodes = match &config.state_file {
            Some(path) => load_state(path),
            None => Vec::new(),
        };
        // A node named in its own bootstrap list (the first node of a private network, given the
        // same list as the others) would wait for itself forever and never learn anyone.
        let bootstrap: Vec<String> = bootstrap_list(config.bootstrap.as_deref(), &state_nodes)
            .into_iter()
            .filter(|b| !is_own_address(b, bind, config.port))
            .collect();
        let sync = mainline::Dht::builder()
            .server_mode()
            .bind_address(bind)
            .port(config.port)
            .bootstrap(&bootstrap)
            .build()
            .map_err(DhtError::Bind)?;
        #[allow(deprecated)] // the sync getter; `start` is sync by contract
        let local_addr = SocketAddr::V4(sync.info().local_addr());
        let shared = Arc::new(Shared {
            inner: sync.clone().as_async(),
            sync,
            local_addr,
            state_file: config.state_file,
            nodes: AtomicUsize::new(0),
            announces: AtomicU64::new(0),
            announce_failures: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            lookups_done: AtomicU64::new(0),
            peers_found: AtomicU64::new(0),
            bootstrapped: AtomicBool::new(false),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(maintain(Arc::downgrade(&shared)));
        }
        tracing::info!(%local_addr, bootstrap = bootstrap.len(), "DHT node started");
        Ok(Dht { shared })
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.shared.local_addr)
    }

    /// BEP 5 `announce_peer` of `port` (explicit, `implied_port` false) for `info_hash` on the
    /// nodes closest to it. Succeeds if at least one node stored it.
    pub async fn announce(&self, info_hash: InfoHash, port: u16) -> Result<(), DhtError> {
        if port == 0 {
            return Err(DhtError::InvalidPort);
        }
        // Look up first: `mainline` shares one running query per target between callers, and a
        // lookup that joins an announce's query gets no peers back. Running get_peers here
        // makes the shared query a GetPeers one (the announce then reuses its tokens).
        {
            let warm = self.shared.inner.get_peers(Id::from(info_hash.0));
            let mut warm = std::pin::pin!(warm);
            let drain =
                async { while poll_fn(|cx| warm.as_mut().poll_next(cx)).await.is_some() {} };
            let _ = tokio::time::timeout(LOOKUP_TIMEOUT, drain).await;
        }
        let query = self
            .shared
            .inner
            .announce_peer(Id::from(info_hash.0), Some(port));
        let result = match tokio::time::timeout(ANNOUNCE_TIMEOUT, query).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(DhtError::Announce(e)),
            Err(_) => Err(DhtError::Timeout(ANNOUNCE_TIMEOUT)),
        };
        let counter = match result {
            Ok(()) => &self.shared.announces,
            Err(_) => &self.shared.announce_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.shared.refresh_nodes().await;
        result
    }

    /// BEP 5 `get_peers` lookup: distinct peers (port ≠ 0) in arrival order, at most
    /// `max` (itself capped at [`MAX_PEERS_PER_LOOKUP`]). Returns when `max` is reached, the
    /// lookup ends, [`LOOKUP_GRACE`] has passed since the first peers came, or
    /// [`LOOKUP_TIMEOUT`] passes.
    pub async fn get_peers(&self, info_hash: InfoHash, max: usize) -> Vec<SocketAddr> {
        let max = max.min(MAX_PEERS_PER_LOOKUP);
        let mut found = Vec::new();
        if max == 0 {
            return found;
        }
        self.shared.lookups.fetch_add(1, Ordering::Relaxed);
        let stream = self.shared.inner.get_peers(Id::from(info_hash.0));
        let mut stream = std::pin::pin!(stream);
        let mut seen: HashSet<SocketAddrV4> = HashSet::new();
        let mut grace: Option<tokio::time::Instant> = None;
        let collect = async {
            loop {
                let next = poll_fn(|cx| stream.as_mut().poll_next(cx));
                let batch = match grace {
                    Some(g) => match tokio::time::timeout_at(g, next).await {
                        Ok(b) => b,
                        Err(_) => return,
                    },
                    None => next.await,
                };
                let Some(batch) = batch else { return };
                // Answer soon after the first peers arrive instead of when the whole query ends
                // (a dead node in the table costs the crate's 2 s request timeout).
                if grace.is_none() && !batch.is_empty() {
                    grace = Some(crate::clock::tokio_now() + LOOKUP_GRACE);
                }
                for addr in batch {
                    if addr.port() == 0 || !seen.insert(addr) {
                        continue;
                    }
                    found.push(SocketAddr::V4(addr));
                    if found.len() >= max {
                        return;
                    }
                }
            }
        };
        // On timeout we keep what arrived so far.
        let _ = tokio::time::timeout(LOOKUP_TIMEOUT, collect).await;
        self.shared.lookups_done.fetch_add(1, Ordering::Relaxed);
        self.shared
            .peers_found
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        self.shared.refresh_nodes().await;
        found
    }

    /// BEP 44: stores `value` (at most 1000 bytes) as the mutable item of `secret`'s ed25519
    /// key under `salt`, version `seq`, on the nodes closest to its target. Returns how many
    /// nodes stored it. A `seq` lower than one stored already is refused by those nodes.
    pub async fn put_mutable(
        &self,
        secret: &[u8; 32],
        salt: &[u8],
        value: &[u8],
        seq: i64,
    ) -> Result<u32, DhtError> {
        let item = mainline::MutableItem::new(
            mainline::SigningKey::from_bytes(secret),
            value,
            seq,
            Some(salt),
        );
        let put = self.shared.inner.put_mutable(item, None);
        let result = match tokio::time::timeout(ANNOUNCE_TIMEOUT, put).await {
            Ok(Ok(outcome)) => Ok(outcome.stored_at),
            Ok(Err(mainline::errors::PutMutableError::Query(e))) => Err(DhtError::Announce(e)),
            Ok(Err(mainline::errors::PutMutableError::Concurrency(e))) => {
                Err(DhtError::Conflict(e.to_string()))
            }
            Err(_) => Err(DhtError::Timeout(ANNOUNCE_TIMEOUT)),
        };
        self.shared.refresh_nodes().await;
        result
    }

    /// BEP 44: the most recent mutable item of `public_key` under `salt` — its `seq` and value
    /// (the crate checks its signature) — collecting for [`LOOKUP_GRACE`] after the first
    /// answer, at most [`LOOKUP_TIMEOUT`] in all. `None` when no node holds one.
    pub async fn get_mutable(&self, public_key: &[u8; 32], salt: &[u8]) -> Option<(i64, Vec<u8>)> {
        let stream = self.shared.inner.get_mutable(public_key, Some(salt), None);
        let mut stream = std::pin::pin!(stream);
        let mut best: Option<(i64, Vec<u8>)> = None;
        let mut grace: Option<tokio::time::Instant> = None;
        let collect = async {
            loop {
                let next = poll_fn(|cx| stream.as_mut().poll_next(cx));
                let item = match grace {
                    Some(g) => match tokio::time::timeout_at(g, next).await {
                        Ok(i) => i,
                        Err(_) => return,
                    },
                    None => next.await,
                };
                let Some(item) = item else { return };
                grace.get_or_insert(crate::clock::tokio_now() + LOOKUP_GRACE);
                if best.as_ref().is_none_or(|(seq, _)| item.seq() > *seq) {
                    best = Some((item.seq(), item.value().to_vec()));
                }
            }
        };
        let _ = tokio::time::timeout(LOOKUP_TIMEOUT, collect).await;
        self.shared.refresh_nodes().await;
        best
    }

    /// A snapshot of the counters (`nodes` as of the last refresh; never blocks).
    pub fn stats(&self) -> DhtStats {
        let s = &self.shared;
        DhtStats {
            nodes: s.nodes.load(Ordering::Relaxed),
            bootstrapped: s.bootstrapped.load(Ordering::Relaxed),
            port: s.local_addr.port(),
            announces: s.announces.load(Ordering::Relaxed),
            announce_failures: s.announce_failures.load(Ordering::Relaxed),
            lookups: s.lookups.load(Ordering::Relaxed),
            lookups_done: s.lookups_done.load(Ordering::Relaxed),
            peers_found: s.peers_found.load(Ordering::Relaxed),
            malformed: None,
        }
    }

    /// [`Dht::stats`] after asking the crate's actor thread for the routing-table size (one
    /// message round trip, no network traffic).
    pub async fn current_stats(&self) -> DhtStats {
        self.shared.refresh_nodes().await;
        self.stats()
    }

    /// Writes the routing table to the state file now (no-op without one). Blocks briefly for a
    /// round trip to the crate's actor thread and a small file write.
    pub fn save_state(&self) -> Result<(), DhtError> {
        self.shared.save_state_blocking()
    }
}

impl Shared {
    async fn refresh_nodes(&self) -> Vec<String> {
        let nodes = self.inner.to_bootstrap().await;
        self.set_nodes(nodes.len());
        nodes
    }

    fn set_nodes(&self, n: usize) {
        self.nodes.store(n, Ordering::Relaxed);
        if n > 0 {
            self.bootstrapped.store(true, Ordering::Relaxed);
        }
    }

    fn save_state_blocking(&self) -> Result<(), DhtError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        #[allow(deprecated)] // sync on purpose: also used from Drop
        let nodes = self.sync.to_bootstrap();
        self.set_nodes(nodes.len());
        write_state(path, &nodes)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Err(e) = self.save_state_blocking() {
            tracing::warn!(error = %e, "DHT state not saved at shutdown");
        }
    }
}

/// Background upkeep: refresh the node count every [`NODES_REFRESH_INTERVAL`] and save the
/// state file every [`SAVE_INTERVAL`]; ends once every [`Dht`] handle is gone.
async fn maintain(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(NODES_REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_save = crate::clock::tokio_now() + SAVE_INTERVAL;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let nodes = shared.refresh_nodes().await;
        if crate::clock::tokio_now() < next_save {
            continue;
        }
        next_save = crate::clock::tokio_now() + SAVE_INTERVAL;
        if let Some(path) = &shared.state_file {
            if let Err(e) = write_state(path, &nodes) {
                tracing::warn!(error = %e, "DHT state not saved");
            }
        }
    }
}

/// True when `node` is this node's own address (port and IP, a loopback IP counting as ours
/// when bound to all addresses).
fn is_own_address(node: &str, bind: std::net::Ipv4Addr, port: u16) -> bool {
    node.parse::<SocketAddrV4>().is_ok_and(|a| {
        port != 0
            && a.port() == port
            && (*a.ip() == bind || (bind.is_unspecified() && a.ip().is_loopback()))
    })
}

/// The nodes to bootstrap from: the configured list (or the public routers for `None`), then
/// the state file's nodes, without duplicates.
fn bootstrap_list(configured: Option<&[String]>, state_nodes: &[SocketAddrV4]) -> Vec<String> {
    let mut list: Vec<String> = match configured {
        Some(list) => list.to_vec(),
        None => mainline::DEFAULT_BOOTSTRAP_NODES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    for node in state_nodes {
        let node = node.to_string();
        if !list.contains(&node) {
            list.push(node);
        }
    }
    list
}

/// Reads the state file; a missing or unreadable file is an empty list (a stale cache must never
/// stop the node from starting).
fn load_state(path: &Path) -> Vec<SocketAddrV4> {
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_STATE_FILE_BYTES).read_to_string(&mut text));
    match read {
        Ok(_) => parse_state(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "DHT state file ignored");
            Vec::new()
        }
    }
}

/// Parses the state file's text (`ip:port` lines); skips blanks, garbage, IPv6 and port 0; at
/// most [`MAX_STATE_NODES`], without duplicates. Public for the fuzz target of this file format.
pub fn parse_state(text: &str) -> Vec<SocketAddrV4> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        if nodes.len() >= MAX_STATE_NODES {
            break;
        }
        if let Ok(addr) = line.trim().parse::<SocketAddrV4>() {
            if addr.port() != 0 && !nodes.contains(&addr) {
                nodes.push(addr);
            }
        }
    }
    nodes
}

/// Writes at most [`MAX_STATE_NODES`] nodes atomically (temporary file, then rename).
fn write_state(path: &Path, nodes: &[String]) -> Result<(), DhtError> {
    let err = |source| DhtError::StateFile {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    for node in nodes.iter().take(MAX_STATE_NODES) {
        text.push_str(node);
        text.push('\n');
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl std::fmt::Debug for Dht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dht")
            .field("local_addr", &self.local_addr())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests measure real elapsed time
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A seeded private network of `n` server nodes on 127.0.0.1 (never the public DHT).
    /// `Testnet::new` would bind 0.0.0.0, so the builder is used.
    fn testnet(n: usize) -> mainline::Testnet {
        mainline::Testnet::builder(n)
            .bind_address(Ipv4Addr::LOCALHOST)
            .build()
            .expect("testnet on 127.0.0.1")
    }

    fn config(bootstrap: Vec<String>, state_file: Option<PathBuf>) -> DhtConfig {
        DhtConfig {
            port: 0,
            bind: LOCALHOST,
            bootstrap: Some(bootstrap),
            state_file,
        }
    }

    fn hash(b: u8) -> InfoHash {
        InfoHash([b; 20])
    }

    /// BEP 44 on a private network: a mutable item put by one node is read by another under
    /// the same key and salt (not under another salt); a newer `seq` replaces it; an older one
    /// is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mutable_item_put_by_one_node_is_read_by_another() {
        let net = testnet(20);
        let a = Dht::start(config(net.bootstrap.clone(), None)).expect("start a");
        let secret = [9u8; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&secret)
            .verifying_key()
            .to_bytes();
        let stored = a.put_mutable(&secret, b"s", b"first", 10).await;
        assert!(stored.expect("put") > 0);
        let b = Dht::start(config(net.bootstrap.clone(), None)).expect("start b");
        assert_eq!(
            b.get_mutable(&public, b"s").await,
            Some((10, b"first".to_vec()))
        );
        assert_eq!(b.get_mutable(&public, b"other salt").await, None);
        a.put_mutable(&secret, b"s", b"second", 11)
            .await
            .expect("newer");
        assert_eq!(
            b.get_mutable(&public, b"s").await,
            Some((11, b"second".to_vec()))
        );
        assert!(a.put_mutable(&secret, b"s", b"stale", 5).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fresh_node_finds_peer_announced_on_private_network() {
        let net = testnet(20);
        let a = Dht::start(config(net.bootstrap.clone(), None)).expect("start a");
        assert_eq!(a.local_addr().map(|s| s.ip()), Some(LOCALHOST));
        a.announce(hash(7), 1234).await.expect("announce");
        assert_eq!(a.stats().announces, 1);

        let b = Dht::start(config(net.bootstrap.clone(), None)).expect("start b");
        let peers = b.get_peers(hash(7), 50).await;
        assert!(
            peers.contains(&SocketAddr::from(([127, 0, 0, 1], 1234))),
            "{peers:?}"
        );
        let stats = b.stats();
        assert_eq!(stats.lookups, 1);
        assert_eq!(stats.lookups_done, 1);
        assert!(stats.peers_found >= 1);
        assert!(stats.nodes > 0);
        assert!(stats.bootstrapped);
        assert_eq!(Some(stats.port), b.local_addr().map(|a| a.port()));
        assert_eq!(stats.malformed, None, "mainline exposes no such counter");

        // An info hash nobody announced: the lookup ends (well before the timeout) empty.
        assert!(b.get_peers(hash(8), 50).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_from_state_file_only() {
        let net = testnet(20);
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("dht.nodes");

        let a = Dht::start(config(net.bootstrap.clone(), Some(state.clone()))).expect("start");
        a.announce(hash(9), 1234).await.expect("announce");
        a.save_state().expect("save");
        drop(a);
        let saved = parse_state(&std::fs::read_to_string(&state).expect("state file"));
        assert!(!saved.is_empty());
        assert!(saved.iter().all(|n| n.ip().is_loopback()));

        // Restart: no configured bootstrap at all, only the state file's nodes.
        let a = Dht::start(config(vec![], Some(state.clone()))).expect("restart");
        let peers = a.get_peers(hash(9), 10).await;
        assert!(
            peers.contains(&SocketAddr::from(([127, 0, 0, 1], 1234))),
            "{peers:?}"
        );
    }

    #[tokio::test]
    async fn empty_bootstrap_contacts_nobody() {
        // Some(vec![]) and no state file: nothing to contact, not even the public routers.
        assert!(bootstrap_list(Some(&[]), &[]).is_empty());
        let dht = Dht::start(config(vec![], None)).expect("start");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = dht.current_stats().await;
        assert_eq!(stats.nodes, 0);
        assert!(!stats.bootstrapped);
        // A lookup with an empty routing table ends at once instead of hanging.
        let started = std::time::Instant::now();
        assert!(dht.get_peers(hash(1), 10).await.is_empty());
        assert!(started.elapsed() < LOOKUP_TIMEOUT);
        assert!(matches!(
            dht.announce(hash(1), 1234).await,
            Err(DhtError::Announce(_))
        ));
        let stats = dht.stats();
        assert_eq!(stats.announce_failures, 1);
        assert_eq!(
            (stats.lookups, stats.lookups_done, stats.announces),
            (1, 1, 0)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn current_stats_sees_a_bootstrap_node_without_queries() {
        // Node b bootstraps from node a only; without any lookup, the routing-table size and
        // the bootstrapped flag must show up in `current_stats`.
        let a = Dht::start(config(vec![], None)).expect("start a");
        let a_addr = a.local_addr().map(|s| s.to_string()).unwrap_or_default();
        let b = Dht::start(config(vec![a_addr], None)).expect("start b");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let stats = loop {
            let stats = b.current_stats().await;
            if stats.bootstrapped || std::time::Instant::now() > deadline {
                break stats;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(stats.bootstrapped && stats.nodes >= 1, "{stats:?}");
        assert_eq!(stats.lookups, 0);
    }

    #[test]
    fn public_routers_only_for_none() {
        let state = [SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000)];
        let private = bootstrap_list(Some(&["127.0.0.1:6000".to_string()]), &state);
        assert_eq!(private, ["127.0.0.1:6000", "127.0.0.1:7000"]);
        let public = bootstrap_list(None, &state);
        assert_eq!(public.len(), mainline::DEFAULT_BOOTSTRAP_NODES.len() + 1);
        assert_eq!(public.last().map(String::as_str), Some("127.0.0.1:7000"));
    }

    #[test]
    fn ipv6_bind_is_refused() {
        let mut c = config(vec![], None);
        c.bind = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        assert!(matches!(Dht::start(c), Err(DhtError::Ipv6Unsupported(_))));
        assert!(matches!(
            Dht::start(DhtConfig {
                port: 0,
                ..config(vec![], None)
            })
            .map(|d| d.local_addr()),
            Ok(Some(_))
        ));
    }

    #[test]
    fn state_file_round_trip_and_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nodes");
        assert!(load_state(&path).is_empty(), "missing file = no nodes");
        let nodes = vec!["127.0.0.1:1".to_string(), "10.0.0.2:65535".to_string()];
        write_state(&path, &nodes).expect("write");
        let back: Vec<String> = load_state(&path).iter().map(|n| n.to_string()).collect();
        assert_eq!(back, nodes);

        let text = "garbage\n\n[::1]:80\n1.2.3.4:0\n1.2.3.4:5\n1.2.3.4:5\n 5.6.7.8:9 \n";
        let parsed = parse_state(text);
        assert_eq!(parsed.len(), 2);
        let many: String = (0..3000u32)
            .map(|i| format!("10.0.{}.{}:{}\n", i / 256, i % 256, 1000 + i))
            .collect();
        assert_eq!(parse_state(&many).len(), MAX_STATE_NODES);
    }

    proptest::proptest! {
        #[test]
        fn parse_state_never_panics(text in ".{0,2000}") {
            let nodes = parse_state(&text);
            proptest::prop_assert!(nodes.len() <= MAX_STATE_NODES);
        }
    }

    #[test]
    fn own_address_is_left_out_of_the_bootstrap_list() {
        let lo = std::net::Ipv4Addr::LOCALHOST;
        assert!(is_own_address("127.0.0.1:6881", lo, 6881));
        assert!(is_own_address(
            "127.0.0.1:6881",
            std::net::Ipv4Addr::UNSPECIFIED,
            6881
        ));
        assert!(!is_own_address("127.0.0.1:6882", lo, 6881));
        assert!(!is_own_address("127.0.0.1:6881", lo, 0));
        assert!(!is_own_address("router.example:6881", lo, 6881));
    }
}
