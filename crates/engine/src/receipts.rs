//! Accounting at run time (DESIGN §4): signing receipts for what this node received, passing
//! receipts on, and collecting them into the broadcaster's [`Ledger`].
//!
//! - [`Accounts`] is node-wide: the node's [`Identity`] (its key, proven to peers over
//!   `pc_receipt`), the receipt interval, the ledger thread (opened on first use) and counters.
//! - [`Accounting`] is one stream's or torrent's, owned by its actor like
//!   [`crate::gossip::Gossip`] (for VoD, see the torrent actor's `accounting` module). Every
//!   [`Accounts::interval`] it signs a receipt for each uploader whose verified bytes grew (the
//!   swarm's [`ReceiptBook`] for peers, the CDN client's verified bytes per host), each carrying
//!   the node's watch time of the stream (time with a player attached); it sends each peer the
//!   receipts that name it, and the broadcaster (a connection whose proven key is the stream's
//!   key) all of them plus the receipts others gave us about our uploads, so the broadcaster
//!   learns of pairs it is not part of. When the descriptor names collectors (`collector`: the
//!   broadcaster's API base URLs), the receipts also go there over HTTP
//!   ([`COLLECTOR_PATH`], a batch at a time) — the way receipts of viewers with no peer, fed by
//!   a CDN alone, reach the broadcaster. The source itself collects every receipt for its
//!   stream into the ledger, which judges each ([`crate::ledger`]).
//!
//! Bounded: at most [`MAX_ABOUT_US`] receipts about our uploads are kept per stream (the latest
//! per viewer), one receipt per uploader key the book counts
//! ([`peercdn_core::ext::receipt::MAX_BOOK_KEYS`]) and per CDN
//! host; the ledger thread takes batches from a queue of [`LEDGER_QUEUE`] and drops (and
//! counts) what does not fit — receipts are cumulative, the next one says it again.
//!
//! What it costs: one receipt is about 230 bytes; with the default 30 s interval a viewer with
//! five uploaders sends ten a period (to the uploaders and the broadcaster) — under 0.03 % of a
//! 2 Mbit/s stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peercdn_core::ext::receipt::{
    Identity, ReceiptBook, ReceiptSwarm, RECEIPTS_PER_S, RECEIPT_BURST,
};
use peercdn_core::ext::PeerKey;
use peercdn_core::receipt::{Claim, Receipt, Uploader};
use peercdn_core::InfoHash;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::ledger::{Collecting, Ledger, Refusal, Report, Taken};

/// Default time between two rounds of receipts.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Receipts about our uploads kept per stream (the latest per viewer).
pub const MAX_ABOUT_US: usize = 1024;
/// Batches waiting for the ledger thread.
pub const LEDGER_QUEUE: usize = 64;
/// How long a collector may take to answer a batch.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The collector's path under the base URLs a descriptor names.
pub const COLLECTOR_PATH: &str = "/api/v1/receipts";

/// Counters of the node's accounting (for `/metrics` and the API).
#[derive(Debug, Default)]
pub struct AccountStats {
    /// Receipts this node signed.
    pub signed: AtomicU64,
    /// Bytes of `pc_receipt` receipts sent to peers.
    pub sent_bytes: AtomicU64,
    /// Receipts received from peers (verified).
    pub received: AtomicU64,
    /// Receipts the ledger accepted.
    pub accepted: AtomicU64,
    /// Receipts the ledger already held (the same receipt from the viewer and passed on by
    /// its uploader).
    pub duplicate: AtomicU64,
    /// Receipts the ledger refused, by [`Refusal`] (in [`Refusal::ALL`] order).
    pub refused: [AtomicU64; 5],
    /// Receipts dropped because the ledger's queue was full, or it failed.
    pub dropped: AtomicU64,
}

impl AccountStats {
    fn refuse(&self, r: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|x| *x == r) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the ledger made of each receipt of a batch.
pub type Verdicts = Vec<Result<Taken, Refusal>>;

enum LedgerCmd {
    Collect(InfoHash, Collecting),
    Append(Vec<Receipt>, Option<oneshot::Sender<Verdicts>>),
    Report(oneshot::Sender<Result<Report, String>>),
}

/// The node's accounting.
pub struct Accounts {
    identity: Identity,
    interval: Duration,
    data_dir: Option<std::path::PathBuf>,
    ledger: OnceLock<mpsc::Sender<LedgerCmd>>,
    /// Counters.
    pub stats: Arc<AccountStats>,
    /// Serialises opening the ledger.
    opening: Mutex<()>,
    /// For handing receipts to collectors over HTTP.
    http: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("identity", &self.identity)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// The node's accounting: its identity, the receipt interval, and where its ledger lives
    /// (`None`: no ledger, nothing is collected).
    pub fn new(
        identity: Identity,
        interval: Duration,
        data_dir: Option<std::path::PathBuf>,
    ) -> Accounts {
        Accounts {
            identity,
            interval: interval.max(Duration::from_millis(100)),
            data_dir,
            ledger: OnceLock::new(),
            stats: Arc::new(AccountStats::default()),
            opening: Mutex::new(()),
            http: OnceLock::new(),
        }
    }

    /// The node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Time between two rounds of receipts.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The ledger thread's queue, started on first use.
    fn ledger(&self) -> Option<&mpsc::Sender<LedgerCmd>> {
        if let Some(tx) = self.ledger.get() {
            return Some(tx);
        }
        let dir = self.data_dir.as_ref()?;
        let _guard = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = self.ledger.get() {
            return Some(tx);
        }
        let ledger = match Ledger::open(dir) {
            Ok(l) => l,
            Err(e) => {
                warn!("accounting: {e}; receipts are not collected");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(LEDGER_QUEUE);
        let stats = self.stats.clone();
        let spawned = std::thread::Builder::new()
            .name("peercdn-ledger".into())
            .spawn(move || ledger_thread(ledger, rx, stats));
        if let Err(e) = spawned {
            warn!("accounting: no ledger thread: {e}");
            return None;
        }
        let _ = self.ledger.set(tx);
        self.ledger.get()
    }

    fn http(&self) -> reqwest::Client {
        self.http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(HTTP_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }

    /// Collects receipts for `content` into the ledger from now on (the source of a stream).
    pub fn collect(&self, content: InfoHash, c: Collecting) {
        if let Some(tx) = self.ledger() {
            let _ = tx.try_send(LedgerCmd::Collect(content, c));
        }
    }

    /// Hands receipts to the ledger (judged there); dropped and counted when its queue is full.
    pub fn append(&self, receipts: Vec<Receipt>) {
        let n = receipts.len() as u64;
        match self.ledger() {
            Some(tx) if tx.try_send(LedgerCmd::Append(receipts, None)).is_ok() => {}
            _ => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Hands receipts to the ledger and waits for its verdicts (the HTTP collector answers
    /// with them). `Err` when there is no ledger or its queue is full.
    pub async fn append_wait(&self, receipts: Vec<Receipt>) -> Result<Verdicts, String> {
        let n = receipts.len() as u64;
        let tx = self.ledger().ok_or("this node keeps no ledger")?;
        let (reply, rx) = oneshot::channel();
        if tx
            .try_send(LedgerCmd::Append(receipts, Some(reply)))
            .is_err()
        {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            return Err("the ledger is busy; send the receipts again later".into());
        }
        rx.await.map_err(|_| "the ledger failed".to_string())
    }

    /// The ledger's report (`Err` when there is no ledger, or it failed).
    pub async fn report(&self) -> Result<Report, String> {
        let tx = self.ledger().ok_or("this node keeps no ledger")?;
        let (reply, rx) = oneshot::channel();
        tx.send(LedgerCmd::Report(reply))
            .await
            .map_err(|_| "the ledger thread ended".to_string())?;
        rx.await
            .map_err(|_| "the ledger thread ended".to_string())?
    }
}

fn ledger_thread(mut ledger: Ledger, mut rx: mpsc::Receiver<LedgerCmd>, stats: Arc<AccountStats>) {
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            LedgerCmd::Collect(id, c) => ledger.collect(id, c),
            LedgerCmd::Append(receipts, reply) => {
                let n = receipts.len() as u64;
                match ledger.append(&receipts, crate::clock::unix_secs()) {
                    Ok(verdicts) => {
                        for (v, r) in verdicts.iter().zip(&receipts) {
                            match v {
                                Ok(Taken::New) => {
                                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(Taken::Duplicate) => {
                                    stats.duplicate.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(why) => {
                                    stats.refuse(*why);
                                    tracing::debug!(
                                        viewer = %hex::encode(r.to), from = %r.from.label(),
                                        "receipt refused: {}", why.label()
                                    );
                                }
                            }
                        }
                        if let Some(reply) = reply {
                            let _ = reply.send(verdicts);
                        }
                    }
                    Err(e) => {
                        warn!("accounting: {e}");
                        stats.dropped.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
            LedgerCmd::Report(reply) => {
                let _ = reply.send(ledger.report().map_err(|e| e.to_string()));
            }
        }
    }
}

/// What we signed last for one uploader.
#[derive(Debug, Clone)]
struct Signed {
    bytes: u64,
    receipt: Bytes,
}

/// One stream's accounting (see the module docs).
#[derive(Debug)]
pub struct Accounting {
    accounts: Arc<Accounts>,
    content: InfoHash,
    /// The stream's key (live): the broadcaster, who collects.
    broadcaster: Option<[u8; 32]>,
    source: bool,
    signed: HashMap<Uploader, Signed>,
    seq: u64,
    watched: Duration,
    last_watch: Option<Instant>,
    /// The watch time our last round of receipts carried.
    watched_signed: Duration,
    about_us: HashMap<[u8; 32], Bytes>,
    /// Viewers whose receipt about us changed since we last passed them on.
    about_us_new: Vec<[u8; 32]>,
    /// Our latest receipt per uploader not yet given to the broadcaster.
    unsent: HashMap<Uploader, Bytes>,
    /// The broadcaster's collector over HTTP, when the descriptor names one.
    http: Option<Arc<HttpCollector>>,
    next: Option<Instant>,
}

/// Receipts on their way to a collector over HTTP: the latest per uploader not yet taken, one
/// batch in flight at a time.
#[derive(Debug)]
struct HttpCollector {
    urls: Vec<String>,
    client: reqwest::Client,
    unsent: Mutex<HashMap<Uploader, Bytes>>,
    busy: std::sync::atomic::AtomicBool,
    stats: Arc<AccountStats>,
}

impl HttpCollector {
    /// Sends up to a batch of what is unsent, unless a batch is on its way; what the collector
    /// did not take goes back (unless a newer receipt of the pair came meanwhile).
    fn post(self: &Arc<Self>) {
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let batch: Vec<(Uploader, Bytes)> = {
            let mut u = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<Uploader> = u
                .keys()
                .take(peercdn_core::receipt::MAX_BATCH)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| u.remove(&k).map(|b| (k, b)))
                .collect()
        };
        if batch.is_empty() {
            self.busy.store(false, Ordering::Release);
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let body = peercdn_core::receipt::encode_batch(
                &batch.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            );
            let mut taken = false;
            for base in &me.urls {
                let url = format!("{}{COLLECTOR_PATH}", base.trim_end_matches('/'));
                let res = me
                    .client
                    .post(&url)
                    .header("content-type", "application/x-bittorrent")
                    .body(body.clone())
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        taken = true;
                        break;
                    }
                    Ok(r) => tracing::debug!("receipts to {url}: HTTP {}", r.status()),
                    Err(e) => tracing::debug!("receipts to {url}: {e}"),
                }
            }
            if taken {
                me.stats
                    .sent_bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
            } else {
                let mut u = me.unsent.lock().unwrap_or_else(|e| e.into_inner());
                for (k, b) in batch {
                    u.entry(k).or_insert(b);
                }
            }
            me.busy.store(false, Ordering::Release);
        });
    }
}

impl Accounting {
    /// A stream's accounting: `broadcaster` is the stream's key when known (live), `source`
    /// when this node is that broadcaster.
    pub fn new(
        accounts: Arc<Accounts>,
        content: InfoHash,
        broadcaster: Option<[u8; 32]>,
        source: bool,
    ) -> Accounting {
        Accounting {
            accounts,
            content,
            broadcaster,
            source,
            signed: HashMap::new(),
            seq: 0,
            watched: Duration::ZERO,
            last_watch: None,
            watched_signed: Duration::ZERO,
            about_us: HashMap::new(),
            about_us_new: Vec::new(),
            unsent: HashMap::new(),
            http: None,
            next: None,
        }
    }

    /// The stream's key became known (the descriptor arrived), or the publisher's (VoD).
    pub fn set_broadcaster(&mut self, key: [u8; 32]) {
        self.broadcaster = Some(key);
    }

    /// This node collects the content's receipts (it published it); it signs none.
    pub fn set_source(&mut self) {
        self.source = true;
    }

    /// Whether this node collects the content's receipts.
    pub fn is_source(&self) -> bool {
        self.source
    }

    /// Whether a round of receipts is due at `now` (the first call arms the timer).
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|n| now >= n)
    }

    /// The broadcaster's collectors over HTTP (the descriptor's `collector` base URLs); none
    /// (the default) hands receipts over the swarm only.
    pub fn set_collectors(&mut self, urls: Vec<String>) {
        let urls: Vec<String> = urls
            .into_iter()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .take(4)
            .collect();
        if urls.is_empty() || self.source {
            return;
        }
        self.http = Some(Arc::new(HttpCollector {
            urls,
            client: self.accounts.http(),
            unsent: Mutex::new(HashMap::new()),
            busy: std::sync::atomic::AtomicBool::new(false),
            stats: self.accounts.stats.clone(),
        }));
    }

    /// Milliseconds a player was attached so far.
    pub fn watched_ms(&self) -> u64 {
        self.watched.as_millis() as u64
    }

    /// Receipts a peer passed us (verified by the swarm). The source hands those for its
    /// stream to the ledger; a viewer keeps those about its own uploads, to pass on to the
    /// broadcaster.
    pub fn on_receipts(&mut self, receipts: Vec<Receipt>) {
        let stats = &self.accounts.stats;
        stats
            .received
            .fetch_add(receipts.len() as u64, Ordering::Relaxed);
        let ours = Uploader::Peer(self.accounts.identity.public());
        let mine: Vec<Receipt> = receipts
            .into_iter()
            .filter(|r| r.content == self.content)
            .collect();
        if self.source {
            if !mine.is_empty() {
                self.accounts.append(mine);
            }
            return;
        }
        for r in mine.into_iter().filter(|r| r.from == ours) {
            let newer = self
                .about_us
                .get(&r.to)
                .and_then(|b| Receipt::decode(b).ok())
                .is_none_or(|old| old.seq < r.seq);
            if newer && (self.about_us.contains_key(&r.to) || self.about_us.len() < MAX_ABOUT_US) {
                self.about_us.insert(r.to, Bytes::from(r.encode()));
                if !self.about_us_new.contains(&r.to) {
                    self.about_us_new.push(r.to);
                }
            }
        }
    }

    /// Notes whether a player is attached now (call often: every status round).
    pub fn watch(&mut self, players: usize, now: Instant) {
        if let Some(t) = self.last_watch.take() {
            self.watched += now.saturating_duration_since(t);
        }
        if players > 0 {
            self.last_watch = Some(now);
        }
    }

    /// Signs and sends a round of receipts when one is due: `book` is the swarm's, `cdn` the
    /// verified bytes per CDN host, `unix` the wall clock's seconds.
    pub fn tick<S: ReceiptSwarm>(
        &mut self,
        swarm: &mut S,
        cdn: &[(String, u64)],
        now: Instant,
        unix: u64,
    ) {
        self.tick_with_delay(swarm, cdn, None, now, unix);
    }

    /// [`Accounting::tick`], with how far behind the source the node's players are now
    /// (milliseconds; carried in the receipts this round signs).
    pub fn tick_with_delay<S: ReceiptSwarm>(
        &mut self,
        swarm: &mut S,
        cdn: &[(String, u64)],
        delay_ms: Option<u64>,
        now: Instant,
        unix: u64,
    ) {
        let interval = self.accounts.interval;
        let next = *self.next.get_or_insert(now + interval);
        if now < next {
            return;
        }
        self.next = Some(now + interval);
        if self.source {
            return;
        }
        let fresh = self.sign_round(swarm.receipt_book(), cdn, delay_ms, unix);
        self.send_round(swarm, &fresh);
    }

    fn sign_round(
        &mut self,
        book: &ReceiptBook,
        cdn: &[(String, u64)],
        delay_ms: Option<u64>,
        unix: u64,
    ) -> Vec<(Uploader, Bytes)> {
        let mut totals: Vec<(Uploader, u64)> = book
            .totals()
            .into_iter()
            .map(|(k, b)| (Uploader::Peer(k), b))
            .collect();
        totals.extend(
            cdn.iter()
                .filter(|(h, n)| *n > 0 && peercdn_core::receipt::valid_host(h))
                .map(|(h, n)| (Uploader::Cdn(h.clone()), *n)),
        );
        let mut changed: Vec<(Uploader, u64)> = totals
            .iter()
            .filter(|(u, b)| self.signed.get(u).is_none_or(|s| s.bytes < *b))
            .cloned()
            .collect();
        // Watch time alone moved: one fresh receipt (the largest pair) carries it.
        if changed.is_empty() && self.watched > self.watched_signed {
            if let Some(top) = totals.iter().max_by_key(|(_, b)| *b) {
                changed.push(top.clone());
            }
        }
        if changed.is_empty() {
            return Vec::new();
        }
        // Higher than any earlier round's, even across restarts (milliseconds of the clock).
        self.seq = (self.seq + 1).max(unix.saturating_mul(1000));
        let key = self.accounts.identity.signing_key();
        let mut out = Vec::with_capacity(changed.len());
        for (from, bytes) in changed {
            let claim = Claim {
                content: self.content,
                from: from.clone(),
                bytes,
                watched_ms: self.watched_ms(),
                delay_ms,
                seq: self.seq,
                time: unix,
            };
            let Ok(r) = Receipt::sign(key, claim) else {
                continue;
            };
            let b = Bytes::from(r.encode());
            self.signed.insert(
                from.clone(),
                Signed {
                    bytes,
                    receipt: b.clone(),
                },
            );
            out.push((from, b));
        }
        self.watched_signed = self.watched;
        self.accounts
            .stats
            .signed
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    fn send_round<S: ReceiptSwarm>(&mut self, swarm: &mut S, fresh: &[(Uploader, Bytes)]) {
        let peers = swarm.identified_peers();
        let stats = self.accounts.stats.clone();
        let send = |swarm: &mut S, key: PeerKey, list: &[Bytes]| {
            if !list.is_empty() && swarm.send_receipts(key, list) {
                let n: usize = list.iter().map(Bytes::len).sum();
                stats.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        };
        // Each uploader gets the receipts that name it.
        for (from, b) in fresh {
            if let Uploader::Peer(k) = from {
                if Some(*k) == self.broadcaster {
                    continue; // it gets everything below
                }
                for (conn, _) in peers.iter().filter(|(_, pk)| pk == k) {
                    send(swarm, *conn, std::slice::from_ref(b));
                }
            }
        }
        // The collector over HTTP, when there is one, gets all of ours.
        if let Some(h) = &self.http {
            {
                let mut u = h.unsent.lock().unwrap_or_else(|e| e.into_inner());
                for (from, b) in fresh {
                    u.insert(from.clone(), b.clone());
                }
            }
            h.post();
        }
        // The broadcaster gets all of ours and those about our uploads; what it could not be
        // given waits for the next round (the latest per pair: receipts are cumulative).
        for (from, b) in fresh {
            self.unsent.insert(from.clone(), b.clone());
        }
        let Some(bk) = self.broadcaster else { return };
        let Some((conn, _)) = peers.iter().find(|(_, pk)| *pk == bk) else {
            return;
        };
        // At most what the broadcaster's budget for us refills in a round (it drops more,
        // and we would take them for delivered); the rest next round.
        let burst = (RECEIPTS_PER_S * self.accounts.interval.as_secs_f64())
            .clamp(1.0, RECEIPT_BURST) as usize;
        let ours: Vec<Uploader> = self.unsent.keys().take(burst).cloned().collect();
        let theirs: Vec<[u8; 32]> = self
            .about_us_new
            .iter()
            .take(burst - ours.len())
            .copied()
            .collect();
        let list: Vec<Bytes> = ours
            .iter()
            .filter_map(|u| self.unsent.get(u).cloned())
            .chain(theirs.iter().filter_map(|v| self.about_us.get(v).cloned()))
            .collect();
        if list.is_empty() {
            return;
        }
        if swarm.send_receipts(*conn, &list) {
            let n: usize = list.iter().map(Bytes::len).sum();
            stats.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
            for u in &ours {
                self.unsent.remove(u);
            }
            self.about_us_new.retain(|v| !theirs.contains(v));
        }
    }

    /// The latest receipt we signed for each uploader (for the API).
    pub fn latest_signed(&self) -> Vec<Bytes> {
        self.signed.values().map(|s| s.receipt.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
