//! Channels on the DHT ([`peercdn_core::catalog::channel`]): the node publishes its own
//! catalogue records as a channel — a torrent of them, seeded here, and a BEP 44 head under
//! the node key pointing at it — and follows the channels it subscribed to, so that a
//! publisher's records reach a subscriber that shares no swarm with it and no server.
//!
//! One task per session (`run`, with the DHT on) does both, every [`TICK`] and when woken
//! (a subscription, a new own record):
//!
//! - **Publish**: when the node holds own records and their channel file differs from the one
//!   published (or [`REPUBLISH`] has passed: BEP 44 nodes forget items after about two hours),
//!   it writes `<data_dir>/channels/<key>/peercdn-channel-<key8>.bin`, seeds it (replacing the
//!   previous version's torrent) and puts the head, `seq` = the version's Unix time.
//! - **Follow**: for each subscription due ([`REFRESH`], or [`RETRY`] until a head was found)
//!   it reads the head; a newer one is fetched like any torrent (peers from the DHT), the file
//!   verified whole ([`decode_file`]: every record the publisher's own, signatures good) and
//!   its records put into the catalogue under the catalogue's usual rules (deny list, caps,
//!   no future dates); the torrent stays, seeding, so followers help each other.
//!
//! Subscriptions and what was last published or taken are kept in `<data_dir>/channels.txt`
//! (a line per channel: `own|sub`, key, seq, info hash).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use peercdn_core::catalog::channel::{decode_file, encode_file, Head, SALT};
use peercdn_core::metainfo::Metainfo;
use peercdn_core::InfoHash;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::catalog::Origin;
use crate::create::{build_info, CreateOptions};
use crate::session::{AddOptions, Session, WeakSession};
use crate::torrent::{Source, State};

/// How often the task looks at the own channel and the subscriptions.
pub const TICK: Duration = Duration::from_secs(30);
/// How soon the task tries again after a failed put or a subscription with no head yet.
pub const RETRY: Duration = Duration::from_secs(5);
/// How often an unchanged head is put again.
pub const REPUBLISH: Duration = Duration::from_secs(30 * 60);
/// How often a subscription's head is read again.
pub const REFRESH: Duration = Duration::from_secs(10 * 60);
/// Longest wait for a channel torrent to download.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Most subscriptions.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// File of the subscriptions and versions, in the data directory.
pub const STATE_FILE: &str = "channels.txt";

/// A channel version: the one this node published or last took from a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version {
    /// The head's BEP 44 `seq` (the version's Unix time).
    pub seq: i64,
    /// The channel torrent.
    pub info_hash: Option<InfoHash>,
    /// Records in it.
    pub records: u32,
}

/// A subscription's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// The publisher key.
    pub publisher: [u8; 32],
    /// The last version taken.
    pub version: Version,
    /// Unix seconds of the last head read (0: never).
    pub checked: u64,
    /// What went wrong last, if anything.
    pub error: Option<String>,
}

/// What the node's channels look like (for the API).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The own channel's last published version (`None`: nothing published yet).
    pub own: Option<Version>,
    /// Unix seconds of the last successful put of the own head.
    pub own_published: u64,
    /// Subscriptions, by publisher key.
    pub subscriptions: Vec<Subscription>,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// [`MAX_SUBSCRIPTIONS`] reached.
    #[error("at most {MAX_SUBSCRIPTIONS} subscriptions")]
    TooMany,
    /// The node's own key.
    #[error("that is this node's own key")]
    Own,
}

/// The session's channel state (see the module docs).
#[derive(Debug)]
pub struct Channels {
    state: Mutex<StateData>,
    wake: Notify,
    path: PathBuf,
    own_key: [u8; 32],
}

#[derive(Debug, Default)]
struct StateData {
    own: Option<Version>,
    own_published: u64,
    subs: BTreeMap<[u8; 32], Subscription>,
}

impl Channels {
    /// The channel state kept in `data_dir` (a missing or unreadable file is an empty state)
    /// of the node whose key is `own_key`.
    pub fn open(data_dir: &Path, own_key: [u8; 32]) -> Channels {
        let path = data_dir.join(STATE_FILE);
        let mut state = StateData::default();
        for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [kind, key, seq, ih, n] = f[..] else {
                continue;
            };
            let (Some(key), Ok(seq), Ok(records)) = (parse_key(key), seq.parse(), n.parse()) else {
                continue;
            };
            let version = Version {
                seq,
                info_hash: InfoHash::parse(ih).ok(),
                records,
            };
            match kind {
                "own" if key == own_key => state.own = Some(version),
                "sub" if state.subs.len() < MAX_SUBSCRIPTIONS => {
                    state.subs.insert(
                        key,
                        Subscription {
                            publisher: key,
                            version,
                            ..Default::default()
                        },
                    );
                }
                _ => {}
            }
        }
        Channels {
            state: Mutex::new(state),
            wake: Notify::new(),
            path,
            own_key,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateData> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the task (a subscription, or own records changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The own channel and the subscriptions.
    pub fn report(&self) -> Report {
        let s = self.lock();
        Report {
            own: s.own,
            own_published: s.own_published,
            subscriptions: s.subs.values().cloned().collect(),
        }
    }

    /// Follows `publisher`'s channel (again: a no-op).
    pub fn subscribe(&self, publisher: [u8; 32]) -> Result<(), SubscribeError> {
        if publisher == self.own_key {
            return Err(SubscribeError::Own);
        }
        {
            let mut s = self.lock();
            if !s.subs.contains_key(&publisher) && s.subs.len() >= MAX_SUBSCRIPTIONS {
                return Err(SubscribeError::TooMany);
            }
            s.subs.entry(publisher).or_insert_with(|| Subscription {
                publisher,
                ..Default::default()
            });
        }
        self.save();
        self.wake();
        Ok(())
    }

    /// Stops following `publisher`; returns the channel torrent to remove (records already
    /// taken stay in the catalogue). `None` when not subscribed.
    pub fn unsubscribe(&self, publisher: &[u8; 32]) -> Option<Option<InfoHash>> {
        let gone = self.lock().subs.remove(publisher)?;
        self.save();
        Some(gone.version.info_hash)
    }

    fn save(&self) {
        let mut text = String::new();
        {
            let s = self.lock();
            let line = |kind: &str, key: &[u8; 32], v: &Version| {
                format!(
                    "{kind} {} {} {} {}\n",
                    hex::encode(key),
                    v.seq,
                    v.info_hash.map_or("-".into(), |h| h.to_hex()),
                    v.records
                )
            };
            if let Some(v) = &s.own {
                text.push_str(&line("own", &self.own_key, v));
            }
            for sub in s.subs.values() {
                text.push_str(&line("sub", &sub.publisher, &sub.version));
            }
        }
        let tmp = self.path.with_extension("txt.tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            warn!(path = %self.path.display(), error = %e, "channel state not saved");
        }
    }
}

fn parse_key(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// The task (see the module docs); ends with the session.
pub(crate) async fn run(session: WeakSession) {
    // Let the DHT find its nodes first.
    tokio::time::sleep(RETRY).await;
    let mut failures: u32 = 0;
    loop {
        let Some(s) = session.upgrade() else { return };
        let mut soon = !publish(&s).await;
        for publisher in due(&s) {
            soon |= !follow(&s, publisher).await;
        }
        let channels = s.channels_state().clone();
        drop(s);
        // Failing again and again (no DHT nodes: offline), back off: 5, 10, 20, then 30 s.
        failures = if soon { failures.saturating_add(1) } else { 0 };
        let pause = if soon {
            (RETRY * 2u32.pow(failures.min(4) - 1)).min(TICK)
        } else {
            TICK
        };
        let _ = tokio::time::timeout(pause, channels.wake.notified()).await;
        // A burst of changes (a library being published) becomes one version.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn dir_of(s: &Session, key: &[u8; 32]) -> PathBuf {
    s.data_dir().join("channels").join(hex::encode(key))
}

fn file_name(key: &[u8; 32]) -> String {
    format!("peercdn-channel-{}.bin", &hex::encode(key)[..16])
}

/// Publishes the own channel when it changed or is due; false when a put failed.
async fn publish(s: &Session) -> bool {
    let Some(dht) = s.dht() else { return true };
    let key = s.node_key();
    let me = key.verifying_key().to_bytes();
    let records = s.catalog().own_records(&me);
    if records.is_empty() {
        return true;
    }
    let bytes = encode_file(&records);
    let dir = dir_of(s, &me);
    let path = dir.join(file_name(&me));
    let state = s.channels_state();
    let now = crate::clock::unix_secs();
    let held = std::fs::read(&path).ok();
    let (own, published) = {
        let st = state.lock();
        (st.own, st.own_published)
    };
    let unchanged =
        held.as_deref() == Some(&bytes[..]) && own.is_some_and(|v| v.info_hash.is_some());
    if unchanged && now.saturating_sub(published) < REPUBLISH.as_secs() {
        if let Some(ih) = own.and_then(|v| v.info_hash) {
            // Seeding again after a restart is the session's (it re-adds its torrents).
            if s.get(&ih).is_some() {
                return true;
            }
        }
    }
    let opts = CreateOptions {
        piece_length: None,
        private: false,
    };
    let version = match own.filter(|_| unchanged) {
        Some(v) => v,
        None => {
            if let Some(old) = own.and_then(|v| v.info_hash) {
                s.remove(&old).await;
            }
            let made = std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, &bytes))
                .map_err(|e| e.to_string())
                .and_then(|()| build_info(&path, &opts, &mut |_, _| {}).map_err(|e| e.to_string()));
            let info = match made {
                Ok(info) => info,
                Err(e) => {
                    warn!(error = %e, "own channel not written");
                    return false;
                }
            };
            let m = Metainfo::new(info, Vec::new(), Vec::new(), None, None);
            let v = Version {
                seq: i64::try_from(now)
                    .unwrap_or(i64::MAX)
                    .max(own.map_or(0, |v| v.seq + 1)),
                info_hash: Some(m.info_hash),
                records: records.len() as u32,
            };
            seed(s, m, &dir);
            state.lock().own = Some(v);
            state.save();
            v
        }
    };
    if let Some(ih) = version.info_hash {
        if s.get(&ih).is_none() {
            // Published before, not running now (removed by hand): seed it again.
            match build_info(&path, &opts, &mut |_, _| {}) {
                Ok(info) => seed(
                    s,
                    Metainfo::new(info, Vec::new(), Vec::new(), None, None),
                    &dir,
                ),
                Err(e) => warn!(error = %e, "own channel not seeded"),
            }
        }
        let head = Head {
            info_hash: ih,
            records: version.records,
            updated: u64::try_from(version.seq).unwrap_or(0),
        };
        match dht
            .put_mutable(&key.to_bytes(), SALT, &head.encode(), version.seq)
            .await
        {
            Ok(nodes) => {
                state.lock().own_published = now;
                info!(
                    records = version.records,
                    seq = version.seq,
                    info_hash = %ih,
                    nodes,
                    "channel head published"
                );
            }
            Err(e) => {
                warn!(error = %e, "channel head not published");
                return false;
            }
        }
    }
    true
}

fn seed(s: &Session, m: Metainfo, dir: &Path) {
    s.add(
        Source::Metainfo(Box::new(m)),
        AddOptions {
            save_dir: Some(dir.to_path_buf()),
            ..Default::default()
        },
    );
}

/// Subscriptions whose head is due to be read.
fn due(s: &Session) -> Vec<[u8; 32]> {
    let now = crate::clock::unix_secs();
    s.channels_state()
        .lock()
        .subs
        .values()
        .filter(|sub| {
            let every = if sub.version.info_hash.is_some() && sub.error.is_none() {
                REFRESH
            } else {
                RETRY
            };
            now.saturating_sub(sub.checked) >= every.as_secs()
        })
        .map(|sub| sub.publisher)
        .collect()
}

/// Reads `publisher`'s head and takes a newer version; false when it should be tried again
/// soon (no head, a failed fetch).
async fn follow(s: &Session, publisher: [u8; 32]) -> bool {
    let Some(dht) = s.dht() else { return true };
    let state = s.channels_state();
    let result = fetch(s, dht, publisher).await;
    let mut st = state.lock();
    let Some(sub) = st.subs.get_mut(&publisher) else {
        return true;
    };
    sub.checked = crate::clock::unix_secs();
    let ok = match result {
        Ok(Some(v)) => {
            sub.version = v;
            sub.error = None;
            true
        }
        Ok(None) => {
            sub.error = None;
            true
        }
        Err(e) => {
            warn!(publisher = %hex::encode(publisher), error = %e, "channel not followed");
            sub.error = Some(e);
            false
        }
    };
    drop(st);
    state.save();
    ok
}

/// Reads the head, fetches and takes a newer version: `Ok(None)` when the held one is current.
async fn fetch(
    s: &Session,
    dht: &crate::dht::Dht,
    publisher: [u8; 32],
) -> Result<Option<Version>, String> {
    let (seq, value) = dht
        .get_mutable(&publisher, SALT)
        .await
        .ok_or("no channel head found on the DHT")?;
    let head = Head::decode(&value).map_err(|e| e.to_string())?;
    let held = s
        .channels_state()
        .lock()
        .subs
        .get(&publisher)
        .map(|sub| sub.version)
        .unwrap_or_default();
    if seq <= held.seq && held.info_hash == Some(head.info_hash) && s.get(&head.info_hash).is_some()
    {
        return Ok(None);
    }
    if let Some(old) = held.info_hash.filter(|ih| *ih != head.info_hash) {
        s.remove_with(&old, true).await;
    }
    let dir = dir_of(s, &publisher);
    let h = s.add(
        Source::Hash {
            info_hash: head.info_hash,
            name: Some(file_name(&publisher)),
            trackers: Vec::new(),
            web_seeds: Vec::new(),
        },
        AddOptions {
            save_dir: Some(dir.clone()),
            ..Default::default()
        },
    );
    let mut status = h.status.clone();
    let done = tokio::time::timeout(
        FETCH_TIMEOUT,
        status.wait_for(|st| matches!(st.state, State::Seeding | State::Error(_))),
    )
    .await;
    match done {
        Ok(Ok(st)) if st.state == State::Seeding => {}
        Ok(Ok(st)) => return Err(format!("channel torrent: {:?}", st.state)),
        _ => return Err("channel torrent not downloaded in time".into()),
    }
    let m = h.metainfo().ok_or("channel torrent has no metainfo")?;
    // The name is the publisher's word: only the one channel name is read (never a path).
    let name = file_name(&publisher);
    if m.info.name != name || m.info.files.len() != 1 {
        return Err(format!("not a channel torrent: {:?}", m.info.name));
    }
    let bytes = std::fs::read(dir.join(&name)).map_err(|e| format!("channel file: {e}"))?;
    let records = decode_file(&bytes, &publisher).map_err(|e| e.to_string())?;
    let n = records.len() as u32;
    let now = crate::clock::unix_secs();
    let taken = s
        .catalog()
        .insert_all(records, Origin::Peer, now)
        .iter()
        .filter(|r| r.is_ok())
        .count();
    info!(publisher = %hex::encode(publisher), records = n, taken, seq, "channel followed");
    Ok(Some(Version {
        seq,
        info_hash: Some(head.info_hash),
        records: n,
    }))
}
