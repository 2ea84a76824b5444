//! The node's catalogue: the signed records ([`peercdn_core::catalog::Record`]) it holds — its
//! own, and others' it was given — kept in `<data_dir>/catalog.bin` and indexed for full-text
//! search with tantivy (an in-memory index rebuilt from the file at start).
//!
//! This module owns the admission rules and the ranking; the wire form and signature are
//! core's, the HTTP shapes the API's.
//!
//! Admission ([`Catalog::insert`]): a record is verified again (signature, bounds, not from the
//! future); per publisher and content ID only the highest `seq` is kept — an older or replayed
//! one is refused, an equal one is a duplicate; a publisher on the deny list (or off the allow
//! list, when one is set) is refused; at most [`MAX_PER_PUBLISHER`] records per publisher
//! key and [`MAX_RECORDS`] in all, and when full a record from a peer gives way to a newer one
//! only if it is the least available; the node's own records are never evicted.
//!
//! Ranking ([`Catalog::search`]): BM25 over title (boost 3), tags (2) and description, filtered
//! by kind, category and language, then scaled by availability `n` — how many distinct
//! networks (IPv4 /24, IPv6 /48) handed the record over ([`Catalog::vouch`]), or how many peers
//! were seen holding the content — as `1 + n` up to [`MAX_VOUCHERS`], logarithmic beyond (a record eight
//! networks hold outranks one that two hold even when the latter's words match twice as
//! well — in the search benchmark, a liar's made-up answer titled with exactly the query's
//! words outranked the honest match under `1 + ln(1 + n)`), and freshness (halving over [`FRESHNESS_HALF_LIFE`]
//! days since `created`, never below a quarter). A publisher's second match counts half, its
//! third a quarter ([`CROWDING`]): one key cannot fill a page while others match. An empty
//! query lists everything by the same scale. At most [`MAX_CANDIDATES`] text matches are
//! ranked.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use peercdn_core::catalog::{Description, Kind, Record, RecordError, MAX_RECORD_LEN};
use peercdn_core::id::InfoHash;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// File name of the catalogue inside the data directory.
pub const CATALOG_FILE: &str = "catalog.bin";
/// Most records kept in all.
pub const MAX_RECORDS: usize = 50_000;
/// Most records kept per publisher key.
pub const MAX_PER_PUBLISHER: usize = 1_000;
/// Most text matches ranked per query.
pub const MAX_CANDIDATES: usize = 1_000;
/// Days over which freshness halves.
pub const FRESHNESS_HALF_LIFE: f64 = 30.0;
/// Most distinct networks counted per record ([`Catalog::vouch`]).
pub const MAX_VOUCHERS: usize = 16;
/// Each further match of one publisher in a result list counts this much less
/// ([`Catalog::search`]).
pub const CROWDING: f32 = 0.5;
/// New records a gossip subscriber may fall behind by.
pub const FRESH_QUEUE: usize = 256;
/// Least time between two writes of the file for the node's own records: records signed
/// faster than this (a publisher listing a library) are written together, by
/// [`Catalog::save_if_dirty`] (the engine calls it at this pace) or when the catalogue is
/// dropped. A crash inside that window loses the newest own records, which publishing again
/// makes anew.
pub const SAVE_DEBOUNCE: std::time::Duration = std::time::Duration::from_secs(1);
/// Least time between two commits of the index while records stream in (gossip hands them
/// over a few at a time; a commit each cost more than the rest of taking them). A search
/// commits what is pending first, so it always sees every record held.
pub const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Memory the index writer may use (tantivy's floor for one thread).
const WRITER_MEMORY: usize = 15_000_000;

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Made and signed by this node (`peercdn publish`, `peercdn broadcast`).
    Own,
    /// Received from a peer (or imported).
    Peer,
}

/// A record as the catalogue keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The signed record.
    pub record: Record,
    /// Where it came from.
    pub origin: Origin,
    /// Peers seen holding the content (0: unknown).
    pub availability: u32,
    /// Unix seconds when `availability` was last set (0: never).
    pub availability_at: u64,
}

/// What [`Catalog::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A record not held before.
    New,
    /// A newer version replaced the one held.
    Replaced,
    /// The same record again.
    Duplicate,
}

/// Why a record was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// It does not verify, is malformed or comes from the future.
    #[error(transparent)]
    Invalid(#[from] RecordError),
    /// A version no newer than the one held (a replay, or a rollback).
    #[error("record seq {got} is not newer than the {held} held")]
    Stale {
        /// The record's `seq`.
        got: u64,
        /// The held record's.
        held: u64,
    },
    /// Its publisher is denied (or not allowed).
    #[error("publisher not accepted")]
    Publisher,
    /// The publisher already has [`MAX_PER_PUBLISHER`] records here.
    #[error("publisher has too many records")]
    PublisherFull,
    /// [`MAX_RECORDS`] held and none may give way.
    #[error("catalogue full")]
    Full,
}

/// Why the catalogue could not be opened or saved.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Reading or writing the file failed.
    #[error("catalogue {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The index failed.
    #[error("catalogue index: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// A search.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Words (empty: everything).
    pub text: String,
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this language.
    pub lang: Option<String>,
    /// Results to skip.
    pub offset: usize,
    /// Results to return (at most [`MAX_CANDIDATES`]).
    pub limit: usize,
}

/// One result.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The record and what the node knows of it.
    pub entry: Entry,
    /// Its rank score (higher first).
    pub score: f32,
}

/// A page of results.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Matches in all (at most [`MAX_CANDIDATES`] are ranked).
    pub total: usize,
    /// This page.
    pub hits: Vec<Hit>,
}

type Key = ([u8; 32], [u8; 20]);

struct Fields {
    key: Field,
    title: Field,
    desc: Field,
    tags: Field,
    kind: Field,
    category: Field,
    lang: Field,
}

struct Inner {
    entries: HashMap<Key, Entry>,
    per_publisher: HashMap<[u8; 32], usize>,
    writer: IndexWriter,
    reader: IndexReader,
    index: Index,
    fields: Fields,
    allow: Option<Vec<[u8; 32]>>,
    deny: Vec<[u8; 32]>,
    /// Per record, the distinct networks of the peers that handed it over ([`Catalog::vouch`]).
    vouchers: HashMap<Key, Vec<[u8; 8]>>,
    /// SHA-1 of each held record's signed bytes ([`Catalog::held`]).
    digests: HashMap<[u8; 20], Key>,
    /// Index changes not yet committed ([`COMMIT_INTERVAL`]).
    pending: bool,
    /// When the index was last committed.
    committed_at: Option<std::time::Instant>,
}

/// The catalogue (shared by the engine's tasks; every call is short).
pub struct Catalog {
    inner: Mutex<Inner>,
    path: Option<PathBuf>,
    /// Records new to this node (or newer versions), as signed bytes, for gossip.
    fresh: tokio::sync::broadcast::Sender<Bytes>,
    /// Own records not yet written ([`SAVE_DEBOUNCE`]).
    dirty: AtomicBool,
    /// When the file was last written.
    saved_at: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("path", &self.path)
            .field("records", &self.len())
            .finish()
    }
}

fn key_of(r: &Record) -> Key {
    (r.publisher, r.id.0)
}

fn key_text(k: &Key) -> String {
    format!("{}{}", hex::encode(k.0), hex::encode(k.1))
}

impl Catalog {
    /// A catalogue kept in `<data_dir>/catalog.bin` (loaded now; records that no longer verify
    /// are dropped), or only in memory with `None`.
    pub fn open(data_dir: Option<&Path>, now_unix: u64) -> Result<Catalog, CatalogError> {
        let mut sb = Schema::builder();
        let fields = Fields {
            key: sb.add_text_field("key", STRING | STORED),
            title: sb.add_text_field("title", TEXT),
            desc: sb.add_text_field("desc", TEXT),
            tags: sb.add_text_field("tags", TEXT),
            kind: sb.add_text_field("kind", STRING),
            category: sb.add_text_field("cat", STRING),
            lang: sb.add_text_field("lang", STRING),
        };
        let index = Index::create_in_ram(sb.build());
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let catalog = Catalog {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                per_publisher: HashMap::new(),
                writer,
                reader,
                index,
                fields,
                allow: None,
                deny: Vec::new(),
                vouchers: HashMap::new(),
                digests: HashMap::new(),
                pending: false,
                committed_at: None,
            }),
            path: data_dir.map(|d| d.join(CATALOG_FILE)),
            fresh: tokio::sync::broadcast::channel(FRESH_QUEUE).0,
            dirty: AtomicBool::new(false),
            saved_at: Mutex::new(None),
        };
        if let Some(path) = &catalog.path {
            let bytes = match fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(source) => {
                    return Err(CatalogError::Io {
                        path: path.clone(),
                        source,
                    })
                }
            };
            let mut loaded = Vec::new();
            let mut rest = &bytes[..];
            // Each entry: origin byte, availability (u32 BE), its time (u64 BE), record length
            // (u16 BE), record. A torn tail is ignored.
            while rest.len() >= 15 {
                let origin = if rest[0] == 1 {
                    Origin::Own
                } else {
                    Origin::Peer
                };
                let avail = u32::from_be_bytes(rest[1..5].try_into().unwrap_or_default());
                let at = u64::from_be_bytes(rest[5..13].try_into().unwrap_or_default());
                let len = usize::from(u16::from_be_bytes([rest[13], rest[14]]));
                if len > MAX_RECORD_LEN || rest.len() < 15 + len {
                    break;
                }
                let raw = &rest[15..15 + len];
                // `decode` refuses all but the canonical form: `raw` is the record's encoding.
                if let Ok(r) = Record::decode(raw) {
                    loaded.push((r, raw, origin, avail, at));
                }
                rest = &rest[15 + len..];
            }
            let mut inner = catalog.lock();
            for (r, raw, origin, avail, at) in loaded {
                let k = key_of(&r);
                if inner.admit(r, raw, origin, now_unix).is_ok() {
                    if let Some(e) = inner.entries.get_mut(&k) {
                        e.availability = avail;
                        e.availability_at = at;
                    }
                }
            }
            inner.commit()?;
        }
        Ok(catalog)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Only these publishers' records are taken (the node's own always are); `None`: anyone's.
    pub fn set_allow(&self, allow: Option<Vec<[u8; 32]>>) {
        self.lock().allow = allow;
    }

    /// These publishers' records are refused (and those held are dropped).
    pub fn set_deny(&self, deny: Vec<[u8; 32]>) -> Result<(), CatalogError> {
        let mut inner = self.lock();
        let gone: Vec<Key> = inner
            .entries
            .keys()
            .filter(|k| deny.contains(&k.0))
            .copied()
            .collect();
        for k in gone {
            inner.remove(&k);
        }
        inner.deny = deny;
        inner.commit()?;
        Ok(())
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a record (see the module docs for the rules), indexes it and, for the node's own,
    /// saves the file.
    pub fn insert(&self, r: Record, origin: Origin, now_unix: u64) -> Result<Inserted, Refused> {
        self.insert_all(vec![r], origin, now_unix)
            .pop()
            .unwrap_or(Err(Refused::Full))
    }

    /// [`Catalog::insert`] for many records, indexed in one commit. Each new record (or newer
    /// version) goes to the subscribers ([`Catalog::subscribe`]).
    pub fn insert_all(
        &self,
        records: Vec<Record>,
        origin: Origin,
        now_unix: u64,
    ) -> Vec<Result<Inserted, Refused>> {
        self.insert_many(records, origin, now_unix, true)
    }

    /// [`Catalog::insert_all`] for the answers to this node's own query: kept, but not handed
    /// to the subscribers (gossip does not pass answers on — a liar's made-up answers would
    /// otherwise ride the honest nodes' gossip, echo back and gather their vouches).
    pub fn insert_answers(
        &self,
        records: Vec<Record>,
        now_unix: u64,
    ) -> Vec<Result<Inserted, Refused>> {
        self.insert_many(records, Origin::Peer, now_unix, false)
    }

    fn insert_many(
        &self,
        records: Vec<Record>,
        origin: Origin,
        now_unix: u64,
        spread: bool,
    ) -> Vec<Result<Inserted, Refused>> {
        let mut fresh = Vec::new();
        let results = {
            let mut inner = self.lock();
            let mut results: Vec<Result<Inserted, Refused>> = records
                .into_iter()
                .map(|r| {
                    let bytes = Bytes::from(r.encode());
                    let done = inner.admit(r, &bytes, origin, now_unix)?;
                    if done != Inserted::Duplicate {
                        fresh.push(bytes);
                    }
                    Ok(done)
                })
                .collect();
            if !fresh.is_empty() && inner.commit_soon().is_err() {
                fresh.clear();
                for r in &mut results {
                    *r = Err(Refused::Full);
                }
            }
            results
        };
        if origin == Origin::Own && !fresh.is_empty() {
            self.save_soon();
        }
        for b in fresh.into_iter().filter(|_| spread) {
            // No subscriber (no swarm running) is not an error.
            let _ = self.fresh.send(b);
        }
        results
    }

    /// Records new to this node from now on, as signed bytes (a subscriber that falls more
    /// than [`FRESH_QUEUE`] behind misses the oldest: gossip is best effort).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Bytes> {
        self.fresh.subscribe()
    }

    /// Up to `n` records to give a peer that has just connected, as signed bytes: the node's
    /// own first, then the most available, then the newest.
    pub fn sample(&self, n: usize) -> Vec<Bytes> {
        let inner = self.lock();
        let mut all: Vec<&Entry> = inner.entries.values().collect();
        all.sort_by(|a, b| {
            (b.origin == Origin::Own)
                .cmp(&(a.origin == Origin::Own))
                .then(b.availability.cmp(&a.availability))
                .then(b.record.created.cmp(&a.record.created))
        });
        all.into_iter()
            .take(n)
            .map(|e| Bytes::from(e.record.encode()))
            .collect()
    }

    /// Signs a record for `id` with `key` and keeps it as the node's own (a newer version of the
    /// node's own record for the same ID: `seq` is the Unix time, or one more than the held
    /// record's when that is later).
    pub fn publish(
        &self,
        key: &ed25519_dalek::SigningKey,
        id: InfoHash,
        kind: Kind,
        desc: Description,
        now_unix: u64,
    ) -> Result<Record, Refused> {
        let me = key.verifying_key().to_bytes();
        let held = self
            .records_for(&id)
            .into_iter()
            .find(|e| e.record.publisher == me)
            .map_or(0, |e| e.record.seq);
        let seq = now_unix.max(held.saturating_add(1));
        let record = Record::sign(key, id, kind, desc, now_unix, seq)?;
        self.insert(record.clone(), Origin::Own, now_unix)?;
        Ok(record)
    }

    /// The node's own records signed by `publisher` (its key), by content ID.
    pub fn own_records(&self, publisher: &[u8; 32]) -> Vec<Record> {
        let inner = self.lock();
        let mut v: Vec<Record> = inner
            .entries
            .iter()
            .filter(|(k, e)| &k.0 == publisher && e.origin == Origin::Own)
            .map(|(_, e)| e.record.clone())
            .collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// Every record held for a content ID (one per publisher), best known first.
    pub fn records_for(&self, id: &InfoHash) -> Vec<Entry> {
        let inner = self.lock();
        let mut v: Vec<Entry> = inner
            .entries
            .iter()
            .filter(|(k, _)| k.1 == id.0)
            .map(|(_, e)| e.clone())
            .collect();
        v.sort_by_key(|e| (e.origin != Origin::Own, std::cmp::Reverse(e.record.created)));
        v
    }

    /// The record whose signed bytes are exactly `bytes`, when held: bytes already verified
    /// once need no second signature check (gossip hands most records over many times).
    pub fn held(&self, bytes: &[u8]) -> Option<HeldKey> {
        let d = digest(bytes);
        self.lock().digests.get(&d).map(|k| HeldKey(*k))
    }

    /// A peer in network `net` (its IPv4 /24 or IPv6 /48, see [`network_of`]) handed over
    /// these records (pushed, or as results): each held record counts each distinct network
    /// once, up to [`MAX_VOUCHERS`], as its availability. Many addresses in one network count
    /// once, so a Sybil publisher on one host cannot make its records look widely held.
    pub fn vouch(&self, records: &[Record], net: [u8; 8], now_unix: u64) {
        let keys: Vec<HeldKey> = records.iter().map(|r| HeldKey(key_of(r))).collect();
        self.vouch_held(&keys, net, now_unix);
    }

    /// [`Catalog::vouch`] for records found by [`Catalog::held`].
    pub fn vouch_held(&self, records: &[HeldKey], net: [u8; 8], now_unix: u64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for HeldKey(k) in records {
            let k = *k;
            let Some(e) = inner.entries.get_mut(&k) else {
                continue;
            };
            let v = inner.vouchers.entry(k).or_default();
            if v.len() < MAX_VOUCHERS && !v.contains(&net) {
                v.push(net);
                e.availability = e.availability.max(v.len() as u32);
                e.availability_at = now_unix;
            }
        }
    }

    /// Sets how many peers were seen holding `id` (the engine's swarms report it).
    pub fn set_availability(&self, id: &InfoHash, peers: u32, now_unix: u64) {
        let mut inner = self.lock();
        for (_, e) in inner.entries.iter_mut().filter(|(k, _)| k.1 == id.0) {
            e.availability = peers;
            e.availability_at = now_unix;
        }
    }

    /// Searches the catalogue (see the module docs for the ranking).
    pub fn search(&self, q: &SearchQuery, now_unix: u64) -> Results {
        let mut inner = self.lock();
        if inner.pending {
            if let Err(e) = inner.commit() {
                tracing::warn!(error = %e, "catalogue index not committed");
            }
        }
        inner.search(q, now_unix).unwrap_or_default()
    }

    /// Writes the file now when the last write is [`SAVE_DEBOUNCE`] old, else marks it for
    /// [`Catalog::save_if_dirty`].
    fn save_soon(&self) {
        let saved_at = *self.saved_at.lock().unwrap_or_else(|e| e.into_inner());
        let due = saved_at.is_none_or(|t| crate::clock::now().duration_since(t) >= SAVE_DEBOUNCE);
        if !due {
            self.dirty.store(true, Ordering::Relaxed);
        } else if let Err(e) = self.save() {
            tracing::warn!(error = %e, "catalogue not saved");
        }
    }

    /// Writes the file if own records came in since the last write.
    pub fn save_if_dirty(&self) -> Result<(), CatalogError> {
        if self.dirty.load(Ordering::Relaxed) {
            self.save()
        } else {
            Ok(())
        }
    }

    /// Writes the file (atomically: a temporary file, synced, renamed into place).
    pub fn save(&self) -> Result<(), CatalogError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        self.dirty.store(false, Ordering::Relaxed);
        *self.saved_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(crate::clock::now());
        let mut out = Vec::new();
        {
            let inner = self.lock();
            let mut all: Vec<&Entry> = inner.entries.values().collect();
            all.sort_by_key(|e| key_of(&e.record));
            for e in all {
                let bytes = e.record.encode();
                out.push(u8::from(e.origin == Origin::Own));
                out.extend_from_slice(&e.availability.to_be_bytes());
                out.extend_from_slice(&e.availability_at.to_be_bytes());
                out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        let io_err = |source| CatalogError::Io {
            path: path.clone(),
            source,
        };
        let tmp = path.with_extension("bin.tmp");
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(&out).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        fs::rename(&tmp, path).map_err(io_err)
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        if let Err(e) = self.save_if_dirty() {
            tracing::warn!(error = %e, "catalogue not saved");
        }
    }
}

impl Inner {
    /// Takes `r`, whose signed bytes are `bytes` (the caller has them already: encoding a
    /// record again here would be work done twice per record gossip hands over).
    fn admit(
        &mut self,
        r: Record,
        bytes: &[u8],
        origin: Origin,
        now_unix: u64,
    ) -> Result<Inserted, Refused> {
        r.verify()?;
        r.check_time(now_unix)?;
        if origin == Origin::Peer
            && (self.deny.contains(&r.publisher)
                || self
                    .allow
                    .as_ref()
                    .is_some_and(|a| !a.contains(&r.publisher)))
        {
            return Err(Refused::Publisher);
        }
        let k = key_of(&r);
        let replaced = match self.entries.get(&k) {
            Some(held) if held.record == r => return Ok(Inserted::Duplicate),
            Some(held) if held.record.seq >= r.seq => {
                return Err(Refused::Stale {
                    got: r.seq,
                    held: held.record.seq,
                })
            }
            Some(_) => true,
            None => false,
        };
        if !replaced {
            let mine = self.per_publisher.get(&r.publisher).copied().unwrap_or(0);
            if origin == Origin::Peer && mine >= MAX_PER_PUBLISHER {
                return Err(Refused::PublisherFull);
            }
            if self.entries.len() >= MAX_RECORDS {
                let victim = self
                    .entries
                    .iter()
                    .filter(|(_, e)| e.origin == Origin::Peer)
                    .min_by_key(|(k, e)| (e.availability, e.record.created, **k))
                    .map(|(k, e)| (*k, e.availability));
                match victim {
                    Some((v, avail)) if origin == Origin::Own || avail == 0 => self.remove(&v),
                    _ => return Err(Refused::Full),
                }
            }
        }
        let (availability, availability_at) = self
            .entries
            .get(&k)
            .map_or((0, 0), |e| (e.availability, e.availability_at));
        let origin = match self.entries.get(&k) {
            Some(e) if e.origin == Origin::Own => Origin::Own,
            _ => origin,
        };
        if replaced {
            self.writer
                .delete_term(Term::from_field_text(self.fields.key, &key_text(&k)));
        } else {
            *self.per_publisher.entry(r.publisher).or_default() += 1;
        }
        let f = &self.fields;
        let d = &r.desc;
        let document = doc!(
            f.key => key_text(&k),
            f.title => d.title.clone(),
            f.desc => d.description.clone(),
            f.tags => d.tags.join(" "),
            f.kind => r.kind.as_str(),
            f.category => d.category.to_lowercase(),
            f.lang => d.lang.to_lowercase(),
        );
        self.writer
            .add_document(document)
            .map_err(|_| Refused::Full)?;
        self.digests.insert(digest(bytes), k);
        self.entries.insert(
            k,
            Entry {
                record: r,
                origin,
                availability,
                availability_at,
            },
        );
        Ok(if replaced {
            Inserted::Replaced
        } else {
            Inserted::New
        })
    }

    fn remove(&mut self, k: &Key) {
        self.vouchers.remove(k);
        if let Some(e) = self.entries.remove(k) {
            self.digests.remove(&digest(&e.record.encode()));
            self.writer
                .delete_term(Term::from_field_text(self.fields.key, &key_text(k)));
            if let Some(n) = self.per_publisher.get_mut(&k.0) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_publisher.remove(&k.0);
                }
            }
        }
    }

    fn commit(&mut self) -> Result<(), CatalogError> {
        self.writer.commit()?;
        self.reader.reload()?;
        self.pending = false;
        self.committed_at = Some(crate::clock::now());
        Ok(())
    }

    /// Commits when the last commit is [`COMMIT_INTERVAL`] old, else leaves the changes for
    /// the next (a search commits what is pending first).
    fn commit_soon(&mut self) -> Result<(), CatalogError> {
        self.pending = true;
        let due = self
            .committed_at
            .is_none_or(|t| crate::clock::now().duration_since(t) >= COMMIT_INTERVAL);
        if due {
            self.commit()
        } else {
            Ok(())
        }
    }

    fn search(&self, q: &SearchQuery, now_unix: u64) -> tantivy::Result<Results> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if q.text.trim().is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        } else {
            let mut parser = QueryParser::for_index(&self.index, vec![f.title, f.tags, f.desc]);
            parser.set_field_boost(f.title, 3.0);
            parser.set_field_boost(f.tags, 2.0);
            parser.set_conjunction_by_default();
            // Lenient: a query's stray quotes or colons are words, never an error.
            let (text, _) = parser.parse_query_lenient(&q.text);
            clauses.push((Occur::Must, text));
        }
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, &value.to_lowercase()),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(k) = q.kind {
            clauses.push((Occur::Must, term(f.kind, k.as_str())));
        }
        if let Some(c) = q.category.as_deref().filter(|c| !c.is_empty()) {
            clauses.push((Occur::Must, term(f.category, c)));
        }
        if let Some(l) = q.lang.as_deref().filter(|l| !l.is_empty()) {
            clauses.push((Occur::Must, term(f.lang, l)));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let (total, top) =
            searcher.search(&query, &(Count, TopDocs::with_limit(MAX_CANDIDATES)))?;
        let mut scored: Vec<(f32, Key, &Entry)> = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let Some(text) = doc.get_first(f.key).and_then(|v| v.as_str()) else {
                continue;
            };
            let Some(k) = parse_key(text) else { continue };
            let Some(e) = self.entries.get(&k) else {
                continue;
            };
            let age_days = now_unix.saturating_sub(e.record.created) as f64 / 86_400.0;
            let fresh = 0.5f64.powf(age_days / FRESHNESS_HALF_LIFE).max(0.25);
            let n = f64::from(e.availability);
            let first = n.min(MAX_VOUCHERS as f64);
            let avail = 1.0 + first + (1.0 + n - first).ln();
            scored.push(((f64::from(score) * fresh * avail) as f32, k, e));
        }
        // Crowding: a publisher's n-th best match counts CROWDING^n of its score, so that one
        // key (a flooder's, or a prolific publisher's) cannot fill a page while others match.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut seen: HashMap<[u8; 32], i32> = HashMap::new();
        let mut hits: BTreeMap<(std::cmp::Reverse<u32>, Key), Hit> = BTreeMap::new();
        for (score, k, e) in scored {
            let n = seen.entry(k.0).or_insert(0);
            let s = score * CROWDING.powi(*n);
            *n += 1;
            // Sorted by score (as bits: scores are non-negative), ties by key.
            hits.insert(
                (std::cmp::Reverse(s.to_bits()), k),
                Hit {
                    entry: e.clone(),
                    score: s,
                },
            );
        }
        let limit = q.limit.clamp(1, MAX_CANDIDATES);
        Ok(Results {
            total,
            hits: hits.into_values().skip(q.offset).take(limit).collect(),
        })
    }
}

/// A held record's place in the catalogue ([`Catalog::held`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldKey(Key);

fn digest(bytes: &[u8]) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    Sha1::digest(bytes).into()
}

fn parse_key(s: &str) -> Option<Key> {
    let b = hex::decode(s).ok()?;
    let publisher: [u8; 32] = b.get(..32)?.try_into().ok()?;
    let id: [u8; 20] = b.get(32..)?.try_into().ok()?;
    Some((publisher, id))
}

/// The network a peer's address belongs to, for [`Catalog::vouch`]: the first three bytes of
/// an IPv4 address (a /24; IPv4-mapped IPv6 counts as IPv4), the first six of an IPv6 one (a
/// /48), tagged so the two never collide.
pub fn network_of(ip: std::net::IpAddr) -> [u8; 8] {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            [4, o[0], o[1], o[2], 0, 0, 0, 0]
        }
        std::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            [6, o[0], o[1], o[2], o[3], o[4], o[5], 0]
        }
    }
}

#[cfg(test)]
mod tests;
