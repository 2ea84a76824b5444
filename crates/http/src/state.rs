//! The router's shared state: the engine session, the configuration, the HTTP client for `url=`
//! fetches, the Ace playback sessions (a bounded map, oldest evicted first; VoD and live share
//! it and its cap) and the HLS clients' readers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use peercdn_core::InfoHash;
use peercdn_engine::session::Session;

use crate::hls::HlsReaders;
use crate::live::LiveSlot;
use crate::vod_hls::VodPlans;
use crate::HttpConfig;

/// Most playback sessions kept; the oldest is evicted past this.
pub const MAX_PLAYBACKS: usize = 4096;
/// Most torrents remembered as started by `/ace/getstream` (removed on the last `stop`).
pub const MAX_OWNED: usize = 4096;
/// Most IDs started by `/ace/getstream` that are still being looked for (being resolved, or
/// torrents without metadata) at once; a new one beyond is refused. 1,000 requests for random
/// IDs once left 1,001 torrents held for good.
pub const MAX_UNRESOLVED: usize = 32;

/// One Ace playback session: what its playback URL streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playback {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The file asked for (`file_index`), or None for the largest media file.
    pub file_index: Option<usize>,
    /// The player's `pid`, if it gave one.
    pub pid: Option<String>,
    /// For a live stream: the session's player state (position, stop). None for VoD.
    pub live: Option<LiveSlot>,
    /// Started (`format=json`) while its ID was still being looked for: whether it is live or
    /// VoD is not known yet; the playback and stat URLs settle it ([`AppState::settle`]).
    pub pending: bool,
}

/// What [`AppState::stop_playback`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// No such playback session (or not for that torrent).
    Unknown,
    /// The session ended.
    Ended {
        /// It was the last playback session on a torrent that `/ace/getstream` started: the
        /// caller removes the torrent.
        last: bool,
    },
}

/// State shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    config: HttpConfig,
    client: reqwest::Client,
    /// New IDs being resolved now, with how many requests wait on each (see
    /// [`AppState::claim_new_id`]).
    resolving: Mutex<HashMap<InfoHash, usize>>,
    connections: crate::conn::Connections,
    playbacks: Mutex<Playbacks>,
    hls: Arc<HlsReaders>,
    vod_plans: VodPlans,
    media_requests: crate::metrics::MediaRequests,
    receipt_budget: crate::ledger::Budget,
}

#[derive(Default)]
struct Playbacks {
    by_id: HashMap<String, Playback>,
    order: VecDeque<String>,
    /// Torrents `/ace/getstream` started, and when.
    owned: HashMap<InfoHash, Instant>,
}

impl AppState {
    /// State for `session` served with `config`.
    pub fn new(session: Session, config: HttpConfig) -> Self {
        let connections = crate::conn::Connections::new(config.max_connections);
        // Every fetch (redirects included) carries the mark that stops a fetch from starting
        // another one in a peercdn engine.
        let mut mark = reqwest::header::HeaderMap::new();
        mark.insert(
            crate::source::FETCH_MARK,
            reqwest::header::HeaderValue::from_static("1"),
        );
        let client = reqwest::Client::builder()
            .timeout(config.url_fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .default_headers(mark)
            .build()
            .unwrap_or_default();
        AppState {
            inner: Arc::new(Inner {
                session,
                config,
                client,
                resolving: Mutex::default(),
                connections,
                playbacks: Mutex::new(Playbacks::default()),
                hls: HlsReaders::new(),
                vod_plans: VodPlans::default(),
                media_requests: crate::metrics::MediaRequests::default(),
                receipt_budget: crate::ledger::Budget::default(),
            }),
        }
    }

    /// The receipt collector's node-wide budget.
    pub fn receipt_budget(&self) -> &crate::ledger::Budget {
        &self.inner.receipt_budget
    }

    /// Media requests answered so far (for `/metrics`).
    pub fn media_requests(&self) -> &crate::metrics::MediaRequests {
        &self.inner.media_requests
    }

    /// The engine session.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// The HTTP connections (their bound and how many are open).
    pub fn connections(&self) -> &crate::conn::Connections {
        &self.inner.connections
    }

    /// The client for `url=` fetches.
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// The HLS clients' readers.
    pub fn hls(&self) -> &HlsReaders {
        &self.inner.hls
    }

    /// How the TS files played through VoD HLS are cut into segments.
    pub fn vod_plans(&self) -> &VodPlans {
        &self.inner.vod_plans
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Playbacks> {
        self.inner
            .playbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a playback session and returns its ID (32 hex characters).
    pub fn start_playback(&self, playback: Playback) -> String {
        let id = new_session_id();
        let mut p = self.lock();
        while p.by_id.len() >= MAX_PLAYBACKS {
            let Some(old) = p.order.pop_front() else {
                break;
            };
            p.by_id.remove(&old);
        }
        p.order.push_back(id.clone());
        p.by_id.insert(id.clone(), playback);
        id
    }

    /// The playback session `id`, if it is still there and is for `info_hash`.
    pub fn playback(&self, info_hash: &InfoHash, id: &str) -> Option<Playback> {
        self.lock()
            .by_id
            .get(id)
            .filter(|p| p.info_hash == *info_hash)
            .cloned()
    }

    /// The largest delay behind the source among the players of live stream `id` being
    /// streamed to now (seconds, at `now_us`): each such session's last piece sent, against
    /// the clock. (HLS players fetch segments on their own; they are not counted.)
    pub fn max_player_delay(&self, id: &InfoHash, now_us: u64) -> Option<f64> {
        self.lock()
            .by_id
            .values()
            .filter(|p| p.info_hash == *id)
            .filter_map(|p| p.live.as_ref())
            .filter(|l| l.0.is_streaming())
            .filter_map(|l| l.0.played_timestamp_us())
            .map(|t| now_us.saturating_sub(t) as f64 / 1e6)
            .reduce(f64::max)
    }

    /// A pending playback session's ID resolved: it is live (`live`: its player) or VoD.
    pub fn settle(&self, info_hash: &InfoHash, id: &str, live: Option<LiveSlot>) {
        let mut p = self.lock();
        if let Some(pb) = p
            .by_id
            .get_mut(id)
            .filter(|pb| pb.info_hash == *info_hash && pb.pending)
        {
            pb.pending = false;
            pb.live = live;
        }
    }

    /// Whether a playback session for `info_hash` waits for its ID to be found
    /// ([`Playback::pending`]).
    pub fn is_pending(&self, info_hash: &InfoHash) -> bool {
        self.lock()
            .by_id
            .values()
            .any(|pb| pb.pending && pb.info_hash == *info_hash)
    }

    /// Whether any playback session plays `info_hash`.
    pub fn has_playback(&self, info_hash: &InfoHash) -> bool {
        self.lock()
            .by_id
            .values()
            .any(|pb| pb.info_hash == *info_hash)
    }

    /// Ends playback session `id`.
    pub fn stop_playback(&self, info_hash: &InfoHash, id: &str) -> Stopped {
        let mut p = self.lock();
        match p.by_id.get(id) {
            Some(pb) if pb.info_hash == *info_hash => {}
            _ => return Stopped::Unknown,
        }
        p.by_id.remove(id);
        p.order.retain(|x| x != id);
        let in_use = p.by_id.values().any(|pb| pb.info_hash == *info_hash);
        Stopped::Ended {
            last: !in_use && p.owned.remove(info_hash).is_some(),
        }
    }

    /// Remembers that `/ace/getstream` started this torrent (so the last `stop` removes it, and
    /// it expires if its metadata never comes).
    pub fn mark_owned(&self, info_hash: InfoHash) {
        let mut p = self.lock();
        if p.owned.len() < MAX_OWNED {
            p.owned
                .entry(info_hash)
                .or_insert_with(peercdn_engine::clock::now);
        }
    }

    /// Before resolving `id`, which nobody here holds: removes what `/ace/getstream` started
    /// that never found its metadata within [`HttpConfig::unresolved_ttl`], then claims a place
    /// for `id` among the [`MAX_UNRESOLVED`] IDs looked for at once — `None` when there is none.
    /// Requests for an ID already being looked for share its place. The claim is held until
    /// the guard drops.
    pub async fn claim_new_id(&self, id: InfoHash) -> Option<ResolveClaim> {
        self.expire_unresolved().await;
        let held: Vec<InfoHash> = {
            let p = self.lock();
            p.owned
                .keys()
                .filter(|ih| self.unresolved(ih))
                .copied()
                .collect()
        };
        let mut resolving = self
            .inner
            .resolving
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !resolving.contains_key(&id) {
            let others = held.iter().filter(|ih| !resolving.contains_key(ih)).count();
            if resolving.len() + others >= MAX_UNRESOLVED {
                return None;
            }
        }
        *resolving.entry(id).or_insert(0) += 1;
        Some(ResolveClaim {
            inner: self.inner.clone(),
            id,
        })
    }

    /// A torrent held here whose metadata has not come yet.
    fn unresolved(&self, ih: &InfoHash) -> bool {
        self.session()
            .get(ih)
            .is_some_and(|h| h.metainfo().is_none())
    }

    /// Removes the torrents `/ace/getstream` started whose metadata did not come within the TTL,
    /// with their playback sessions (a client that asked and went away never stops them, and
    /// they would hold their places for good).
    async fn expire_unresolved(&self) {
        let ttl = self.config().unresolved_ttl;
        let now = peercdn_engine::clock::now();
        let expired: Vec<InfoHash> = {
            let p = self.lock();
            p.owned
                .iter()
                .filter(|(ih, at)| {
                    now.saturating_duration_since(**at) >= ttl && self.unresolved(ih)
                })
                .map(|(ih, _)| *ih)
                .collect()
        };
        for ih in expired {
            self.forget(&ih);
            self.session().remove_with(&ih, false).await;
            tracing::info!(id = %ih.to_hex(), "removed: its metadata never came");
        }
    }

    /// Forgets the torrent (removed through the API).
    pub fn forget(&self, info_hash: &InfoHash) {
        let mut p = self.lock();
        p.owned.remove(info_hash);
        p.by_id.retain(|_, pb| pb.info_hash != *info_hash);
        let ids = &p.by_id;
        let order: VecDeque<String> = p
            .order
            .iter()
            .filter(|id| ids.contains_key(*id))
            .cloned()
            .collect();
        p.order = order;
    }

    /// Number of playback sessions.
    pub fn playback_count(&self) -> usize {
        self.lock().by_id.len()
    }
}

/// A place among the IDs being resolved at once ([`AppState::claim_new_id`]); given back on
/// drop.
pub struct ResolveClaim {
    inner: Arc<Inner>,
    id: InfoHash,
}

impl Drop for ResolveClaim {
    fn drop(&mut self) {
        let mut resolving = self
            .inner
            .resolving
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = resolving.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                resolving.remove(&self.id);
            }
        }
    }
}

fn new_session_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static FALLBACK: AtomicU64 = AtomicU64::new(1);
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS randomness: still unique within this process.
        b[..8].copy_from_slice(&FALLBACK.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peercdn_engine::session::SessionConfig;

    #[tokio::test]
    async fn playbacks_are_bounded_and_stop_tells_the_last() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let session = Session::start(SessionConfig {
            data_dir: dir.path().join("data"),
            download_dir: dir.path().join("dl"),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            static_peers: vec![],
            upload_limit: 0,
            download_limit: 0,
            dht: None,
            receipt_interval: peercdn_engine::receipts::DEFAULT_INTERVAL,
            encryption: Default::default(),
            utp: Default::default(),
            dht_port: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let state = AppState::new(session.clone(), HttpConfig::default());
        let a = InfoHash([1; 20]);
        let b = InfoHash([2; 20]);
        let pb = |info_hash| Playback {
            info_hash,
            file_index: None,
            pid: None,
            live: None,
            pending: false,
        };
        let first = state.start_playback(pb(a));
        for _ in 0..MAX_PLAYBACKS {
            state.start_playback(pb(b));
        }
        assert_eq!(state.playback_count(), MAX_PLAYBACKS);
        assert_eq!(state.playback(&a, &first), None, "the oldest was evicted");

        state.mark_owned(a);
        let x = state.start_playback(pb(a));
        let y = state.start_playback(pb(a));
        assert_eq!(state.playback(&b, &x), None, "wrong torrent");
        assert_eq!(state.stop_playback(&b, &x), Stopped::Unknown);
        assert_eq!(state.stop_playback(&a, &x), Stopped::Ended { last: false });
        assert_eq!(state.stop_playback(&a, &x), Stopped::Unknown);
        assert_eq!(state.stop_playback(&a, &y), Stopped::Ended { last: true });
        // Not started by getstream: never removed.
        let z = state.start_playback(pb(a));
        assert_eq!(state.stop_playback(&a, &z), Stopped::Ended { last: false });
        session.shutdown().await;
    }
}
