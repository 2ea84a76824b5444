//! The router's shared state: the engine session, the configuration, the HTTP client for `url=`
//! fetches, and the Ace playback sessions (a bounded map, oldest evicted first).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use peercdn_core::InfoHash;
use peercdn_engine::session::Session;

use crate::HttpConfig;

/// Most playback sessions kept; the oldest is evicted past this.
pub const MAX_PLAYBACKS: usize = 4096;
/// Most torrents remembered as started by `/ace/getstream` (removed on the last `stop`).
pub const MAX_OWNED: usize = 4096;

/// One Ace playback session: what its playback URL streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playback {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The file asked for (`file_index`), or None for the largest media file.
    pub file_index: Option<usize>,
    /// The player's `pid`, if it gave one.
    pub pid: Option<String>,
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
    playbacks: Mutex<Playbacks>,
}

#[derive(Default)]
struct Playbacks {
    by_id: HashMap<String, Playback>,
    order: VecDeque<String>,
    owned: HashSet<InfoHash>,
}

impl AppState {
    /// State for `session` served with `config`.
    pub fn new(session: Session, config: HttpConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.url_fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .unwrap_or_default();
        AppState {
            inner: Arc::new(Inner {
                session,
                config,
                client,
                playbacks: Mutex::new(Playbacks::default()),
            }),
        }
    }

    /// The engine session.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// The client for `url=` fetches.
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
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

    /// Ends playback session `id`. Returns the torrent to remove from the session when this was
    /// the last playback session on a torrent that `/ace/getstream` started, or None.
    /// Err(()) when there is no such session.
    pub fn stop_playback(&self, info_hash: &InfoHash, id: &str) -> Result<Option<InfoHash>, ()> {
        let mut p = self.lock();
        match p.by_id.get(id) {
            Some(pb) if pb.info_hash == *info_hash => {}
            _ => return Err(()),
        }
        p.by_id.remove(id);
        p.order.retain(|x| x != id);
        let in_use = p.by_id.values().any(|pb| pb.info_hash == *info_hash);
        if !in_use && p.owned.remove(info_hash) {
            return Ok(Some(*info_hash));
        }
        Ok(None)
    }

    /// Remembers that `/ace/getstream` started this torrent (so the last `stop` removes it).
    pub fn mark_owned(&self, info_hash: InfoHash) {
        let mut p = self.lock();
        if p.owned.len() < MAX_OWNED {
            p.owned.insert(info_hash);
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
