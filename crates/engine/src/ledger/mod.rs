//! The broadcaster's ledger (DESIGN §4): every receipt it accepted, in order, in an
//! append-only, hash-chained SQLite file (`<data_dir>/ledger.db`), with the latest receipt of
//! each pair (content, uploader, viewer) beside it — the one the reports count.
//!
//! Acceptance ([`Ledger::append`]) — a receipt is refused, with a [`Refusal`] that says why, when
//! - it is for content this ledger does not collect for ([`Ledger::collect`]);
//! - its `seq` is not above the pair's latest (a replay, or a stale copy);
//! - it lowers the pair's bytes or watch time (receipts are cumulative);
//! - it was signed more than [`MAX_CLOCK_SKEW`] seconds in the future;
//! - the viewer's bytes over all its uploaders would exceed what its watch time could have
//!   needed: `(watched + SLACK) × byte rate × MARGIN` ([`cap`]) for live content — two
//!   colluding keys can sign each other anything, but not more than the stream could carry to
//!   a viewer that watched that long — or, for on-demand content, its size × `MARGIN`.
//!
//! Signatures are checked before a receipt reaches the ledger ([`Receipt::decode`]).
//!
//! Chain: entry `n` holds the receipt's bytes, the Unix second it was accepted and
//! `hash_n = SHA-256(hash_{n-1} ‖ n ‖ at ‖ receipt)` (`hash_0` is 32 zero bytes), so altering,
//! removing or reordering any entry breaks every later hash; [`Ledger::verify`] and
//! [`export::verify`] walk it, check every signature again and rebuild the totals.
//!
//! The file is SQLite so that anyone can read it with the `sqlite3` shell; it is opened in WAL
//! mode and every batch is one transaction. One owner writes ([`Ledger::open`]: the engine's
//! ledger thread); others may read at the same time ([`Ledger::open_read_only`]: `peercdn
//! ledger`), and every read that combines tables ([`Ledger::report`], [`Ledger::snapshot`],
//! [`Ledger::verify`]) is one read transaction, so it sees one state of the chain.
//!
//! Settlement ([`settlement`]) turns a report into what the broadcaster owes each uploader;
//! [`stellar`] writes that as transaction envelopes. Nothing in this module touches a network.

pub mod cdnlog;
pub mod export;
pub mod settlement;
pub mod stellar;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use peercdn_core::receipt::{Receipt, Uploader};
use peercdn_core::InfoHash;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// File name of the ledger inside the data directory.
pub const LEDGER_FILE: &str = "ledger.db";
/// How far in the future a receipt's time may lie (clocks differ).
pub const MAX_CLOCK_SKEW: u64 = 600;
/// Seconds of stream a viewer may have fetched beyond what it watched (the window it joins
/// into, pieces ahead of the player, relaying before the player starts).
pub const SLACK_S: u64 = 60;
/// How much more than the stream's bytes per watched second a viewer may have received
/// (retransmissions, piece boundaries, rate measurement).
pub const MARGIN: f64 = 1.5;

/// Why the ledger could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger {path}: {source}")]
    Sql {
        /// The ledger file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// [`Ledger::open_read_only`]: there is no ledger file.
    #[error("no ledger at {path}")]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// The ledger file does not hold what it should.
    #[error("ledger {path}: {why}")]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// What became of a receipt the ledger took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Appended: the pair's latest receipt now.
    New,
    /// The very receipt the pair's latest already is (it came twice: from the viewer and
    /// passed on by the uploader); nothing to append.
    Duplicate,
}

/// Why a receipt was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Content this ledger does not collect for.
    UnknownContent,
    /// `seq` not above the pair's latest receipt (and not that very receipt): an older one
    /// replayed, or a stale copy passed on late.
    Replayed,
    /// Lower bytes or watch time than the pair's latest receipt.
    NonMonotonic,
    /// Signed in the future.
    Future,
    /// More bytes than the viewer's watch time could have needed.
    Inflated,
}

impl Refusal {
    /// Its name, for logs and metrics labels.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownContent => "unknown_content",
            Refusal::Replayed => "replayed",
            Refusal::NonMonotonic => "non_monotonic",
            Refusal::Future => "future",
            Refusal::Inflated => "inflated",
        }
    }

    /// Every refusal.
    pub const ALL: [Refusal; 5] = [
        Refusal::UnknownContent,
        Refusal::Replayed,
        Refusal::NonMonotonic,
        Refusal::Future,
        Refusal::Inflated,
    ];
}

/// What the ledger collects for one piece of content, and what caps a viewer's credit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Collecting {
    /// The stream's bytes per second (live: the most it has carried; 0: not known yet). A
    /// viewer's credit is capped by its watch time at this rate ([`cap`]).
    pub byte_rate: u64,
    /// VoD: the most bytes one viewer may be credited for the content (its size and a margin),
    /// whatever its watch time (a download needs no player).
    pub max_bytes: Option<u64>,
}

impl Collecting {
    /// A live stream of `byte_rate` bytes/s.
    pub fn live(byte_rate: u64) -> Collecting {
        Collecting {
            byte_rate,
            max_bytes: None,
        }
    }

    /// On-demand content of `size` bytes: a viewer may be credited its size × [`MARGIN`].
    pub fn vod(size: u64) -> Collecting {
        Collecting {
            byte_rate: 0,
            max_bytes: Some((size as f64 * MARGIN) as u64),
        }
    }

    /// The most a viewer that watched `watched_ms` may be credited.
    pub fn cap(&self, watched_ms: u64) -> u64 {
        match self.max_bytes {
            Some(m) => m,
            None => cap(self.byte_rate, watched_ms),
        }
    }
}

/// The most bytes a viewer that watched `watched_ms` may have received of a stream of
/// `byte_rate` bytes/s (`u64::MAX` when the rate is unknown).
pub fn cap(byte_rate: u64, watched_ms: u64) -> u64 {
    if byte_rate == 0 {
        return u64::MAX;
    }
    let secs = watched_ms as f64 / 1000.0 + SLACK_S as f64;
    (secs * byte_rate as f64 * MARGIN) as u64
}

/// The latest receipt of a pair, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Latest {
    seq: u64,
    bytes: u64,
    watched_ms: u64,
}

/// The ledger. Not `Sync`: one owner (the engine's ledger thread, or a CLI command).
pub struct Ledger {
    path: PathBuf,
    db: Connection,
    head: [u8; 32],
    entries: u64,
    collecting: HashMap<InfoHash, Collecting>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    n INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    receipt BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS latest (
    content BLOB NOT NULL,
    uploader TEXT NOT NULL,
    viewer BLOB NOT NULL,
    seq INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    watched_ms INTEGER NOT NULL,
    delay_ms INTEGER,
    n INTEGER NOT NULL,
    PRIMARY KEY (content, uploader, viewer)
);
";

impl Ledger {
    /// Opens (or creates) `data_dir/ledger.db`.
    pub fn open(data_dir: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_file(&data_dir.join(LEDGER_FILE))
    }

    /// Opens (or creates) a ledger file.
    pub fn open_file(path: &Path) -> Result<Ledger, LedgerError> {
        let sql = |source| LedgerError::Sql {
            path: path.to_path_buf(),
            source,
        };
        let db = Connection::open(path).map_err(sql)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        db.execute_batch(SCHEMA).map_err(sql)?;
        Ledger::with_connection(path, db)
    }

    /// Opens an existing `data_dir/ledger.db` for reading: nothing is created, and nothing
    /// can be written through it ([`Ledger::append`] fails). [`LedgerError::Missing`] when
    /// there is no such file. The engine may be appending meanwhile; see the module doc.
    pub fn open_read_only(data_dir: &Path) -> Result<Ledger, LedgerError> {
        let path = data_dir.join(LEDGER_FILE);
        if !path.is_file() {
            return Err(LedgerError::Missing { path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = Connection::open_with_flags(&path, flags).map_err(|source| LedgerError::Sql {
            path: path.clone(),
            source,
        })?;
        Ledger::with_connection(&path, db)
    }

    fn with_connection(path: &Path, db: Connection) -> Result<Ledger, LedgerError> {
        let (entries, head) = chain_state(&db).map_err(|e| match e {
            StateError::Sql(source) => LedgerError::Sql {
                path: path.to_path_buf(),
                source,
            },
            StateError::Head => LedgerError::Corrupt {
                path: path.to_path_buf(),
                why: "the last entry's hash is not 32 bytes".into(),
            },
        })?;
        Ok(Ledger {
            path: path.to_path_buf(),
            db,
            head,
            entries,
            collecting: HashMap::new(),
        })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Collects receipts for `content` from now on (or updates its byte rate).
    pub fn collect(&mut self, content: InfoHash, c: Collecting) {
        let e = self.collecting.entry(content).or_insert(c);
        e.byte_rate = e.byte_rate.max(c.byte_rate);
        e.max_bytes = c.max_bytes.or(e.max_bytes);
    }

    /// Entries so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The chain's head hash (32 zero bytes when empty).
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    fn sql(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Judges and appends receipts (already signature-checked), at Unix second `now`, in one
    /// transaction: for each, what became of it or why it was refused.
    pub fn append(
        &mut self,
        receipts: &[Receipt],
        now: u64,
    ) -> Result<Vec<Result<Taken, Refusal>>, LedgerError> {
        let tx = self.db.transaction().map_err(|source| LedgerError::Sql {
            path: self.path.clone(),
            source,
        })?;
        let mut out = Vec::with_capacity(receipts.len());
        let mut head = self.head;
        let mut entries = self.entries;
        for r in receipts {
            let verdict = judge(&tx, &self.collecting, r, now);
            let verdict = match verdict {
                Ok(v) => v,
                Err(source) => {
                    return Err(LedgerError::Sql {
                        path: self.path.clone(),
                        source,
                    })
                }
            };
            if verdict == Ok(Taken::New) {
                let n = entries + 1;
                let bytes = r.encode();
                let hash = chain(&head, n, now, &bytes);
                let res = tx
                    .execute(
                        "INSERT INTO entries (n, at, receipt, hash) VALUES (?1, ?2, ?3, ?4)",
                        params![n as i64, now as i64, bytes, hash.to_vec()],
                    )
                    .and_then(|_| {
                        tx.execute(
                            "INSERT OR REPLACE INTO latest \
                             (content, uploader, viewer, seq, bytes, watched_ms, delay_ms, n) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            params![
                                r.content.0.to_vec(),
                                r.from.label(),
                                r.to.to_vec(),
                                r.seq as i64,
                                r.bytes as i64,
                                r.watched_ms as i64,
                                r.delay_ms.map(|d| d.min(i64::MAX as u64) as i64),
                                n as i64
                            ],
                        )
                    });
                if let Err(source) = res {
                    return Err(LedgerError::Sql {
                        path: self.path.clone(),
                        source,
                    });
                }
                head = hash;
                entries = n;
            }
            out.push(verdict);
        }
        tx.commit().map_err(|source| LedgerError::Sql {
            path: self.path.clone(),
            source,
        })?;
        self.head = head;
        self.entries = entries;
        Ok(out)
    }

    /// Runs `f` in one read transaction, so that everything it reads is one state of the
    /// chain even while another connection appends (WAL keeps the snapshot).
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        // Dropped at the end: a read-only transaction has nothing to commit.
        let tx = self.db.unchecked_transaction().map_err(|e| self.sql(e))?;
        f(&tx)
    }

    /// The chain's length and head as the file holds them now.
    fn state_in(&self, db: &Connection) -> Result<(u64, [u8; 32]), LedgerError> {
        chain_state(db).map_err(|e| match e {
            StateError::Sql(source) => self.sql(source),
            StateError::Head => LedgerError::Corrupt {
                path: self.path.clone(),
                why: "the last entry's hash is not 32 bytes".into(),
            },
        })
    }

    /// The latest receipt of every pair, as the `latest` table holds them.
    fn latest_rows(&self, db: &Connection) -> Result<Vec<Row>, LedgerError> {
        let mut st = db
            .prepare(
                "SELECT content, uploader, viewer, bytes, watched_ms, seq, delay_ms FROM latest \
                 ORDER BY content, uploader, viewer",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (c, u, v, b, w, seq, d) = row.map_err(|e| self.sql(e))?;
            let corrupt = |why: &str| LedgerError::Corrupt {
                path: self.path.clone(),
                why: why.to_string(),
            };
            out.push(Row {
                content: InfoHash(c.try_into().map_err(|_| corrupt("content ID"))?),
                from: Uploader::parse_label(&u).ok_or_else(|| corrupt("uploader"))?,
                to: v.try_into().map_err(|_| corrupt("viewer key"))?,
                bytes: b.max(0) as u64,
                watched_ms: w.max(0) as u64,
                seq: seq.max(0) as u64,
                delay_ms: d.map(|d| d.max(0) as u64),
            });
        }
        Ok(out)
    }

    /// Every entry in order.
    fn entries_in(&self, db: &Connection) -> Result<Vec<Entry>, LedgerError> {
        let mut st = db
            .prepare("SELECT n, at, receipt, hash FROM entries ORDER BY n")
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(Entry {
                    n: r.get::<_, i64>(0)? as u64,
                    at: r.get::<_, i64>(1)? as u64,
                    receipt: r.get(2)?,
                    hash: r.get(3)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// The report: traffic per uploader, per CDN host and per viewer, viewing time per viewer
    /// and per content, from the latest receipt of each pair.
    pub fn report(&self) -> Result<Report, LedgerError> {
        self.read(|db| {
            let (entries, head) = self.state_in(db)?;
            Ok(Report::from_rows(&self.latest_rows(db)?, entries, head))
        })
    }

    /// Every entry in order: `(n, at, receipt bytes, hash)`.
    pub fn entries_iter(&self) -> Result<Vec<Entry>, LedgerError> {
        self.read(|db| self.entries_in(db))
    }

    /// Every entry and the report, of the same moment (for [`export::Export::new`]).
    pub fn snapshot(&self) -> Result<(Vec<Entry>, Report), LedgerError> {
        self.read(|db| {
            let (entries, head) = self.state_in(db)?;
            let report = Report::from_rows(&self.latest_rows(db)?, entries, head);
            Ok((self.entries_in(db)?, report))
        })
    }

    /// Walks the whole chain: every hash, every signature, and the latest receipt of every
    /// pair against the `latest` table. `Err` says where it breaks.
    pub fn verify(&self) -> Result<Report, LedgerError> {
        self.verify_with(|_| {})
    }

    /// [`Ledger::verify`], calling `progress` with the number of entries checked so far
    /// (every [`export::PROGRESS_EVERY`] entries and at the end).
    pub fn verify_with(&self, progress: impl FnMut(u64)) -> Result<Report, LedgerError> {
        let (entries, table) = self.snapshot()?;
        let corrupt = |why: String| LedgerError::Corrupt {
            path: self.path.clone(),
            why,
        };
        let rebuilt = export::replay_with(&entries, progress).map_err(corrupt)?;
        if rebuilt != table {
            return Err(corrupt(
                "the latest-receipt table does not match the chain of entries".into(),
            ));
        }
        Ok(rebuilt)
    }
}

/// Why [`chain_state`] failed.
enum StateError {
    Sql(rusqlite::Error),
    Head,
}

/// The number of entries and the head hash (32 zero bytes when empty).
fn chain_state(db: &Connection) -> Result<(u64, [u8; 32]), StateError> {
    let (entries, head): (u64, Option<Vec<u8>>) = db
        .query_row(
            "SELECT COUNT(*), (SELECT hash FROM entries ORDER BY n DESC LIMIT 1) FROM entries",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
        .map_err(StateError::Sql)?;
    let head = match head {
        None => [0; 32],
        Some(h) => h.try_into().map_err(|_| StateError::Head)?,
    };
    Ok((entries, head))
}

/// One ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Entry {
    /// Position, from 1.
    pub n: u64,
    /// Unix second it was accepted.
    pub at: u64,
    /// The receipt's signed bytes.
    #[serde(with = "b64")]
    pub receipt: Vec<u8>,
    /// The chain hash after it.
    #[serde(with = "hex32")]
    pub hash: Vec<u8>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// The chain hash of entry `n`.
pub fn chain(prev: &[u8; 32], n: u64, at: u64, receipt: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(prev)
        .chain_update(n.to_be_bytes())
        .chain_update(at.to_be_bytes())
        .chain_update(receipt)
        .finalize()
        .into()
}

fn judge(
    tx: &rusqlite::Transaction<'_>,
    collecting: &HashMap<InfoHash, Collecting>,
    r: &Receipt,
    now: u64,
) -> Result<Result<Taken, Refusal>, rusqlite::Error> {
    let Some(c) = collecting.get(&r.content) else {
        return Ok(Err(Refusal::UnknownContent));
    };
    if r.time > now.saturating_add(MAX_CLOCK_SKEW) {
        return Ok(Err(Refusal::Future));
    }
    let latest = tx
        .query_row(
            "SELECT seq, bytes, watched_ms FROM latest WHERE content = ?1 AND uploader = ?2 \
             AND viewer = ?3",
            params![r.content.0.to_vec(), r.from.label(), r.to.to_vec()],
            |row| {
                Ok(Latest {
                    seq: row.get::<_, i64>(0)? as u64,
                    bytes: row.get::<_, i64>(1)? as u64,
                    watched_ms: row.get::<_, i64>(2)? as u64,
                })
            },
        )
        .optional()?;
    if let Some(l) = &latest {
        let same = Latest {
            seq: r.seq,
            bytes: r.bytes,
            watched_ms: r.watched_ms,
        };
        if *l == same {
            return Ok(Ok(Taken::Duplicate));
        }
        if r.seq <= l.seq {
            return Ok(Err(Refusal::Replayed));
        }
        if r.bytes < l.bytes || r.watched_ms < l.watched_ms {
            return Ok(Err(Refusal::NonMonotonic));
        }
    }
    // The viewer's bytes over all its uploaders with this receipt in place of the pair's
    // latest, against what its watch time allows.
    let (others, watched): (i64, i64) = tx.query_row(
        "SELECT COALESCE(SUM(bytes), 0), COALESCE(MAX(watched_ms), 0) FROM latest \
         WHERE content = ?1 AND viewer = ?2 AND uploader != ?3",
        params![r.content.0.to_vec(), r.to.to_vec(), r.from.label()],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let total = (others.max(0) as u64).saturating_add(r.bytes);
    let watched = (watched.max(0) as u64).max(r.watched_ms);
    if total > c.cap(watched) {
        return Ok(Err(Refusal::Inflated));
    }
    Ok(Ok(Taken::New))
}

/// A pair's latest receipt, as reports count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The content.
    pub content: InfoHash,
    /// The uploader.
    pub from: Uploader,
    /// The viewer.
    pub to: [u8; 32],
    /// Verified bytes.
    pub bytes: u64,
    /// Watched milliseconds.
    pub watched_ms: u64,
    /// The receipt's sequence number.
    pub seq: u64,
    /// The players' delay behind the source it reported, milliseconds.
    pub delay_ms: Option<u64>,
}

/// How far behind the source a content's viewers' players were, by the latest receipt of each
/// viewer that reported a delay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DelayLine {
    /// Viewers whose latest receipt reported a delay.
    pub viewers: u64,
    /// Median, milliseconds.
    pub p50_ms: u64,
    /// 95th percentile, milliseconds.
    pub p95_ms: u64,
    /// The largest, milliseconds.
    pub max_ms: u64,
    /// Viewers per bucket: under 1 s, 1–2 s, 2–3 s, 3–5 s, 5–10 s, 10 s and more.
    pub buckets: [u64; 6],
}

/// Upper bounds of [`DelayLine::buckets`], milliseconds (the last is open).
pub const DELAY_BUCKETS_MS: [u64; 5] = [1000, 2000, 3000, 5000, 10_000];

impl DelayLine {
    fn of(mut delays: Vec<u64>) -> DelayLine {
        if delays.is_empty() {
            return DelayLine::default();
        }
        delays.sort_unstable();
        let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
        let mut buckets = [0u64; 6];
        for d in &delays {
            let i = DELAY_BUCKETS_MS
                .iter()
                .position(|b| d < b)
                .unwrap_or(DELAY_BUCKETS_MS.len());
            buckets[i] += 1;
        }
        DelayLine {
            viewers: delays.len() as u64,
            p50_ms: at(0.5),
            p95_ms: at(0.95),
            max_ms: delays[delays.len() - 1],
            buckets,
        }
    }
}

/// The ledger's totals and breakdowns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Entries in the chain.
    pub entries: u64,
    /// The chain's head hash, hex.
    pub head: String,
    /// Everything together.
    pub totals: Totals,
    /// Bytes each uploader key delivered (peers only).
    pub uploaders: Vec<UploaderLine>,
    /// Bytes each CDN host delivered.
    pub cdn_hosts: Vec<CdnLine>,
    /// What each viewer received and watched.
    pub viewers: Vec<ViewerLine>,
    /// Viewing time and bytes per content.
    pub contents: Vec<ContentLine>,
}

/// Totals of a [`Report`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Bytes from peers.
    pub p2p_bytes: u64,
    /// Bytes from CDN hosts.
    pub cdn_bytes: u64,
    /// Watched milliseconds, all viewers and contents.
    pub watched_ms: u64,
    /// Pairs (content, uploader, viewer) with a receipt.
    pub pairs: u64,
    /// Viewers with a receipt.
    pub viewers: u64,
}

/// One uploader key's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploaderLine {
    /// Its key, hex.
    pub key: String,
    /// Its Stellar account ID (`G…`).
    pub account: String,
    /// Verified bytes it delivered.
    pub bytes: u64,
    /// Viewers it delivered to.
    pub viewers: u64,
}

/// One CDN host's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CdnLine {
    /// The host (and port).
    pub host: String,
    /// Verified bytes it delivered.
    pub bytes: u64,
    /// Viewers it delivered to.
    pub viewers: u64,
}

/// One viewer's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewerLine {
    /// Its key, hex.
    pub key: String,
    /// Bytes from peers.
    pub p2p_bytes: u64,
    /// Bytes from CDN hosts.
    pub cdn_bytes: u64,
    /// Watched milliseconds, all contents.
    pub watched_ms: u64,
}

/// One content's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentLine {
    /// The content ID, hex.
    pub id: String,
    /// Bytes from peers.
    pub p2p_bytes: u64,
    /// Bytes from CDN hosts.
    pub cdn_bytes: u64,
    /// Watched milliseconds, all viewers.
    pub watched_ms: u64,
    /// Viewers.
    pub viewers: u64,
    /// How far behind the source the viewers' players were, as their latest receipts say.
    pub delay: DelayLine,
}

impl Report {
    /// Counts the latest receipt of each pair. A viewer's watch time for a content is the
    /// largest any of its receipts for it says (each carries the same cumulative figure).
    pub fn from_rows(rows: &[Row], entries: u64, head: [u8; 32]) -> Report {
        let mut up: BTreeMap<[u8; 32], (u64, u64)> = BTreeMap::new();
        let mut cdn: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut viewer: BTreeMap<[u8; 32], (u64, u64)> = BTreeMap::new();
        let mut watched: BTreeMap<(InfoHash, [u8; 32]), u64> = BTreeMap::new();
        let mut content: BTreeMap<InfoHash, (u64, u64)> = BTreeMap::new();
        // Each viewer's latest delay report per content: (seq, delay).
        let mut delay: BTreeMap<(InfoHash, [u8; 32]), (u64, u64)> = BTreeMap::new();
        let mut totals = Totals::default();
        for r in rows {
            if let Some(d) = r.delay_ms {
                let e = delay.entry((r.content, r.to)).or_insert((r.seq, d));
                if r.seq > e.0 {
                    *e = (r.seq, d);
                }
            }
            let w = watched.entry((r.content, r.to)).or_default();
            *w = (*w).max(r.watched_ms);
            let v = viewer.entry(r.to).or_default();
            let c = content.entry(r.content).or_default();
            match &r.from {
                Uploader::Peer(k) => {
                    let e = up.entry(*k).or_default();
                    e.0 = e.0.saturating_add(r.bytes);
                    e.1 += 1;
                    v.0 = v.0.saturating_add(r.bytes);
                    c.0 = c.0.saturating_add(r.bytes);
                    totals.p2p_bytes = totals.p2p_bytes.saturating_add(r.bytes);
                }
                Uploader::Cdn(h) => {
                    let e = cdn.entry(h.clone()).or_default();
                    e.0 = e.0.saturating_add(r.bytes);
                    e.1 += 1;
                    v.1 = v.1.saturating_add(r.bytes);
                    c.1 = c.1.saturating_add(r.bytes);
                    totals.cdn_bytes = totals.cdn_bytes.saturating_add(r.bytes);
                }
            }
        }
        let mut viewer_watch: BTreeMap<[u8; 32], u64> = BTreeMap::new();
        let mut content_watch: BTreeMap<InfoHash, (u64, u64)> = BTreeMap::new();
        for ((c, v), w) in &watched {
            *viewer_watch.entry(*v).or_default() += w;
            let e = content_watch.entry(*c).or_default();
            e.0 += w;
            e.1 += 1;
            totals.watched_ms += w;
        }
        totals.pairs = rows.len() as u64;
        totals.viewers = viewer.len() as u64;
        Report {
            entries,
            head: hex::encode(head),
            totals,
            uploaders: up
                .into_iter()
                .map(|(k, (bytes, viewers))| UploaderLine {
                    key: hex::encode(k),
                    account: stellar::account_id(&k),
                    bytes,
                    viewers,
                })
                .collect(),
            cdn_hosts: cdn
                .into_iter()
                .map(|(host, (bytes, viewers))| CdnLine {
                    host,
                    bytes,
                    viewers,
                })
                .collect(),
            viewers: viewer
                .into_iter()
                .map(|(k, (p2p_bytes, cdn_bytes))| ViewerLine {
                    key: hex::encode(k),
                    p2p_bytes,
                    cdn_bytes,
                    watched_ms: viewer_watch.get(&k).copied().unwrap_or(0),
                })
                .collect(),
            contents: content
                .into_iter()
                .map(|(id, (p2p_bytes, cdn_bytes))| {
                    let (watched_ms, viewers) = content_watch.get(&id).copied().unwrap_or((0, 0));
                    let delays = delay
                        .range((id, [0; 32])..=(id, [0xff; 32]))
                        .map(|(_, (_, d))| *d)
                        .collect();
                    ContentLine {
                        id: id.to_hex(),
                        p2p_bytes,
                        cdn_bytes,
                        watched_ms,
                        viewers,
                        delay: DelayLine::of(delays),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
