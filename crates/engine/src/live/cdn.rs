//! The CDN side of a live stream (DESIGN §3, "CDN layout"): the [`Publisher`] that mirrors a
//! [`LiveBuffer`] into a directory any HTTP server can serve, and the fallback client
//! ([`fetch_descriptor`], [`CdnClient`], [`spawn_fallback`]) that fetches pieces from such a
//! server when no peer can deliver them in time.
//!
//! Layout under a base URL `BASE` (or the publish directory), `ID` the content ID in lower-case
//! hex and `INDEX` in decimal:
//!
//! ```text
//! BASE/ID/descriptor.peerlive   the .peerlive file
//! BASE/ID/live.m3u8             a plain HLS media playlist of the newest pieces
//! BASE/ID/seg/INDEX.ts          piece payload (whole TS packets)
//! BASE/ID/seg/INDEX.hdr         the 117-byte signed piece header
//! ```
//!
//! Publisher invariants: every file appears by `rename` of a finished temporary file, so a
//! server never serves half a file; a piece's payload is renamed into place before its header,
//! and both before the playlist lists it; files leave the playlist before they are deleted; the
//! directory holds a bounded number of segments.
//!
//! Fallback invariants: nothing a CDN sends is trusted. Headers are verified against the
//! stream's key and content ID exactly like headers from peers, payloads against the header's
//! length and hash, and every body is read into a buffer capped by what we expect, so a server
//! that sends more can never make us hold more. A CDN that serves a forged piece is refused and
//! counted. The fallback fetches only what a registered player needs next and no peer delivered
//! before its deadline; the bytes it fetches are counted per base host and as
//! [`Origin::Cdn`] in the buffer.
//!
//! Architecture invariant: this module knows nothing of the swarm or of HTTP serving; it talks
//! to the rest of the engine only through the [`LiveBuffer`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peercdn_core::live::{Descriptor, LiveError, PieceHeader, HEADER_LEN};
use peercdn_core::InfoHash;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::buffer::{LiveBuffer, LivePiece, Origin};

/// File name of the descriptor inside `ID/`.
pub const DESCRIPTOR_FILE: &str = "descriptor.peerlive";
/// File name of the HLS playlist inside `ID/`.
pub const PLAYLIST_FILE: &str = "live.m3u8";
/// Largest descriptor we download.
pub const MAX_DESCRIPTOR_BYTES: usize = 1 << 20;
/// Largest playlist we download.
pub const MAX_PLAYLIST_BYTES: usize = 256 << 10;
/// Most base URLs one client uses.
pub const MAX_BASES: usize = 16;
/// Default timeout of one HTTP request (connect, headers and body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong publishing to or fetching from a CDN.
#[derive(Debug, thiserror::Error)]
pub enum CdnError {
    /// A file operation in the publish directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A URL that is not an absolute http(s) URL.
    #[error("bad CDN URL {0:?}: need an absolute http or https URL")]
    BadUrl(String),
    /// No usable base URL was given.
    #[error("no CDN base URL")]
    NoBase,
    /// The server answered with a non-success status.
    #[error("{url} answered HTTP {status}")]
    Http {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than we accept for this kind of file.
    #[error("{url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The request took longer than the timeout.
    #[error("{0} timed out")]
    Timeout(String),
    /// Connection or protocol failure.
    #[error("{url}: {msg}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What the HTTP client said.
        msg: String,
    },
    /// The descriptor could not be parsed.
    #[error("descriptor from {url}: {source}")]
    Descriptor {
        /// The URL it came from.
        url: String,
        /// Why it was refused.
        source: LiveError,
    },
    /// A header or payload failed verification (bad signature, length or hash).
    #[error("refused piece from {url}: {source}")]
    Verify {
        /// The URL it came from.
        url: String,
        /// Why it was refused.
        source: LiveError,
    },
    /// A correctly signed header for another index than the one asked for (a replay).
    #[error("{url} served the header of piece {got}, expected {expected}")]
    WrongIndex {
        /// The URL requested.
        url: String,
        /// Index asked for.
        expected: u32,
        /// Index in the signed header.
        got: u32,
    },
    /// The header declares a payload larger than the descriptor allows.
    #[error("piece {0} declares a payload larger than the stream's max piece length")]
    PieceTooLarge(u32),
    /// The playlist has no segments or cannot be read.
    #[error("playlist {0}: no segments")]
    EmptyPlaylist(String),
    /// The background task stopped.
    #[error("background task failed: {0}")]
    Task(String),
}

impl CdnError {
    /// True when the error says the CDN served forged or altered data.
    pub fn is_verification(&self) -> bool {
        matches!(self, CdnError::Verify { .. } | CdnError::WrongIndex { .. })
    }
}

// ------------------------------------------------------------------------------------------
// Publisher
// ------------------------------------------------------------------------------------------

/// How the publisher sizes its playlist and its directory.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Media duration the playlist lists (the newest pieces).
    pub playlist_duration: Duration,
    /// Media duration of segments kept on disk (at least the playlist's). `None`: the stream's
    /// window (`window s` of the descriptor), but at least twice the playlist.
    pub keep_duration: Option<Duration>,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            playlist_duration: Duration::from_secs(15),
            keep_duration: None,
        }
    }
}

/// Counters of a [`Publisher`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Pieces written (payload and header).
    pub pieces_written: u64,
    /// Payload and header bytes written.
    pub bytes_written: u64,
    /// Playlist rewrites.
    pub playlists_written: u64,
    /// Segments deleted because they left the window.
    pub segments_deleted: u64,
    /// Failed file operations.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct PublisherShared {
    pieces_written: AtomicU64,
    bytes_written: AtomicU64,
    playlists_written: AtomicU64,
    segments_deleted: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl PublisherShared {
    fn error(&self, e: CdnError) {
        tracing::warn!("live publisher: {e}");
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    }
}

/// Writes a stream's pieces and playlist into a publish directory. Stops its task on drop.
#[derive(Debug)]
pub struct Publisher {
    task: JoinHandle<()>,
    shared: Arc<PublisherShared>,
    stream_dir: PathBuf,
}

impl Publisher {
    /// Counters so far.
    pub fn stats(&self) -> PublisherStats {
        let s = &self.shared;
        PublisherStats {
            pieces_written: s.pieces_written.load(Ordering::Relaxed),
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            playlists_written: s.playlists_written.load(Ordering::Relaxed),
            segments_deleted: s.segments_deleted.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
        }
    }

    /// The last file error, if any (the publisher keeps going after errors).
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The stream's directory, `dir/ID`.
    pub fn stream_dir(&self) -> &Path {
        &self.stream_dir
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// [`spawn_publisher_with`] with the default configuration.
pub fn spawn_publisher(buffer: Arc<LiveBuffer>, dir: PathBuf) -> Result<Publisher, CdnError> {
    spawn_publisher_with(buffer, dir, PublisherConfig::default())
}

/// Creates `dir/ID/seg`, removes segment files a previous run left there, writes
/// `dir/ID/descriptor.peerlive` at once, then spawns a task that writes every piece inserted into
/// `buffer` and rewrites the playlist. The setup runs on the calling thread (a few small file
/// operations); the task's file I/O runs on the blocking pool. Must be called inside a tokio
/// runtime.
pub fn spawn_publisher_with(
    buffer: Arc<LiveBuffer>,
    dir: PathBuf,
    cfg: PublisherConfig,
) -> Result<Publisher, CdnError> {
    let stream_dir = dir.join(buffer.content_id().to_hex());
    let seg_dir = stream_dir.join("seg");
    std::fs::create_dir_all(&seg_dir).map_err(|source| CdnError::Io {
        path: seg_dir.clone(),
        source,
    })?;
    remove_stale_segments(&seg_dir)?;
    write_atomic(
        &stream_dir,
        DESCRIPTOR_FILE,
        &buffer.descriptor().to_bytes(),
    )?;

    let params = &buffer.descriptor().params;
    let playlist_us = duration_us(cfg.playlist_duration).max(1);
    let keep_us = cfg
        .keep_duration
        .map(duration_us)
        .unwrap_or(u64::from(params.window_s) * 1_000_000)
        .max(playlist_us.saturating_mul(2));
    let state = DirState {
        stream_dir: stream_dir.clone(),
        seg_dir,
        segments: BTreeMap::new(),
        playlist_us,
        keep_us,
        max_segments: (params.window_pieces() as usize).max(64),
        listed_first: None,
        discontinuity_seq: 0,
        target_s: 1,
    };
    let shared = Arc::new(PublisherShared::default());
    let task = tokio::spawn(publish_loop(buffer, state, shared.clone()));
    Ok(Publisher {
        task,
        shared,
        stream_dir,
    })
}

/// Most pieces written in one blocking batch.
const BATCH: usize = 256;

async fn publish_loop(buffer: Arc<LiveBuffer>, mut state: DirState, shared: Arc<PublisherShared>) {
    let mut rx = buffer.subscribe();
    let mut seq = 0u64;
    loop {
        rx.borrow_and_update();
        let (mut list, new_seq) = buffer.inserted_since(seq);
        let missed = new_seq.saturating_sub(seq) > list.len() as u64;
        seq = new_seq;
        if missed {
            // More inserts than the event log holds: catch up from the window itself.
            let from = state.newest().map_or(0, |n| n.saturating_add(1));
            list.extend(buffer.headers(from, BATCH).iter().map(|h| h.index));
        }
        let mut seen = BTreeSet::new();
        let pieces: Vec<LivePiece> = list
            .into_iter()
            .filter(|i| seen.insert(*i) && !state.segments.contains_key(i))
            .filter_map(|i| buffer.get(i))
            .collect();
        for chunk in pieces.chunks(BATCH) {
            let chunk = chunk.to_vec();
            let sh = shared.clone();
            let st = state;
            match tokio::task::spawn_blocking(move || {
                let mut st = st;
                st.publish(&chunk, &sh);
                st
            })
            .await
            {
                Ok(st) => state = st,
                Err(e) => {
                    shared.error(CdnError::Task(e.to_string()));
                    return;
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A segment on disk.
#[derive(Clone, Copy, Debug)]
struct Segment {
    duration_us: u32,
    keyframe: bool,
    discontinuity: bool,
}

/// The publisher's view of its directory. Lives on the blocking pool while it writes.
#[derive(Debug)]
struct DirState {
    stream_dir: PathBuf,
    seg_dir: PathBuf,
    segments: BTreeMap<u32, Segment>,
    playlist_us: u64,
    keep_us: u64,
    max_segments: usize,
    listed_first: Option<u32>,
    discontinuity_seq: u64,
    /// `EXT-X-TARGETDURATION`, seconds: never lowered (RFC 8216 6.2.1 forbids changing it; we
    /// raise it only when a longer piece comes, as a live source cannot know in advance).
    target_s: u64,
}

impl DirState {
    fn newest(&self) -> Option<u32> {
        self.segments.last_key_value().map(|(&i, _)| i)
    }

    /// Writes the pieces, then the playlist, then deletes what fell out of the window.
    fn publish(&mut self, pieces: &[LivePiece], sh: &PublisherShared) {
        let mut wrote = false;
        for p in pieces {
            let i = p.header.index;
            let ts = format!("{i}.ts");
            let hdr = format!("{i}.hdr");
            let res = write_atomic(&self.seg_dir, &ts, &p.payload)
                .and_then(|()| write_atomic(&self.seg_dir, &hdr, &p.header.encode()));
            match res {
                Ok(()) => {
                    self.segments.insert(
                        i,
                        Segment {
                            duration_us: p.header.duration_us,
                            keyframe: p.header.is_keyframe(),
                            discontinuity: p.header.is_discontinuity(),
                        },
                    );
                    sh.pieces_written.fetch_add(1, Ordering::Relaxed);
                    sh.bytes_written.fetch_add(
                        p.payload.len() as u64 + HEADER_LEN as u64,
                        Ordering::Relaxed,
                    );
                    wrote = true;
                }
                Err(e) => {
                    // Do not leave a payload without its header (or the reverse) behind.
                    let _ = std::fs::remove_file(self.seg_dir.join(&hdr));
                    let _ = std::fs::remove_file(self.seg_dir.join(&ts));
                    sh.error(e);
                }
            }
        }
        if !wrote {
            return;
        }
        let text = self.render_playlist();
        match write_atomic(&self.stream_dir, PLAYLIST_FILE, text.as_bytes()) {
            Ok(()) => {
                sh.playlists_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                sh.error(e);
                // Keep every segment the old playlist may still list.
                return;
            }
        }
        for i in self.expired() {
            self.segments.remove(&i);
            for name in [format!("{i}.hdr"), format!("{i}.ts")] {
                let path = self.seg_dir.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => sh.error(CdnError::Io { path, source }),
                }
            }
            sh.segments_deleted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The newest contiguous run of segments, at most `playlist_us` long (at least one).
    fn listed(&self) -> Vec<(u32, Segment)> {
        let mut out: Vec<(u32, Segment)> = Vec::new();
        let mut total = 0u64;
        for (&i, &s) in self.segments.iter().rev() {
            if let Some(&(prev, _)) = out.last() {
                if i.checked_add(1) != Some(prev)
                    || total >= self.playlist_us
                    || out.len() >= self.max_segments
                {
                    break;
                }
            }
            total += u64::from(s.duration_us);
            out.push((i, s));
        }
        out.reverse();
        out
    }

    fn render_playlist(&mut self) -> String {
        let listed = self.listed();
        let first = listed.first().map_or(0, |&(i, _)| i);
        // RFC 8216 6.2.2: count the discontinuities that left the head of the playlist.
        if let Some(prev) = self.listed_first {
            if first > prev {
                let dropped = self
                    .segments
                    .range(prev..first)
                    .filter(|(_, s)| s.discontinuity)
                    .count();
                self.discontinuity_seq += dropped as u64;
            }
        }
        self.listed_first = Some(first);
        let longest = listed.iter().map(|(_, s)| s.duration_us).max().unwrap_or(0);
        self.target_s = self
            .target_s
            .max(u64::from(longest).div_ceil(1_000_000))
            .max(1);
        render_playlist(&listed, self.target_s, self.discontinuity_seq)
    }

    /// Segments to delete: beyond `keep_us` of media behind the newest, or beyond the count cap,
    /// and never one the playlist lists.
    fn expired(&self) -> Vec<u32> {
        let listed_first = self.listed_first.unwrap_or(0);
        let mut total = 0u64;
        let mut out = Vec::new();
        for (n, (&i, s)) in self.segments.iter().rev().enumerate() {
            if i < listed_first && (total >= self.keep_us || n >= self.max_segments) {
                out.push(i);
            }
            total += u64::from(s.duration_us);
        }
        out
    }
}

/// The playlist text. `target`, seconds, must be at least the ceiling of every listed duration.
fn render_playlist(listed: &[(u32, Segment)], target: u64, discontinuity_seq: u64) -> String {
    let first = listed.first().map_or(0, |&(i, _)| i);
    let mut out = String::with_capacity(128 + listed.len() * 40);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n\
         #EXT-X-MEDIA-SEQUENCE:{first}\n"
    );
    if discontinuity_seq > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}");
    }
    if let Some(back_us) = start_offset_us(listed, target * 3_000_000) {
        // Just inside the keyframe segment; PRECISE=NO plays it from its start.
        let back_us = back_us.saturating_sub(1000);
        let _ = writeln!(
            out,
            "#EXT-X-START:TIME-OFFSET=-{}.{:03},PRECISE=NO",
            back_us / 1_000_000,
            (back_us / 1000) % 1000
        );
    }
    for &(i, s) in listed {
        // Also before the first listed segment: the tag leaves the playlist only when its
        // segment does, which is when EXT-X-DISCONTINUITY-SEQUENCE counts it.
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let d = s.duration_us;
        let _ = write!(
            out,
            "#EXTINF:{}.{:03},\nseg/{i}.ts\n",
            d / 1_000_000,
            (d / 1000) % 1000
        );
    }
    out
}

/// Where a player should join (RFC 8216 `EXT-X-START`), as media time before the end of the
/// playlist: the start of the newest keyframe segment at least `min_back_us` from the end (the
/// RFC's three target durations), else of the oldest listed keyframe segment. `None` without
/// keyframe segments. Players that start anywhere else may begin mid-GOP.
fn start_offset_us(listed: &[(u32, Segment)], min_back_us: u64) -> Option<u64> {
    let mut back = 0u64;
    let mut oldest_key = None;
    for (_, s) in listed.iter().rev() {
        back += u64::from(s.duration_us);
        if s.keyframe {
            if back >= min_back_us {
                return Some(back);
            }
            oldest_key = Some(back);
        }
    }
    oldest_key
}

/// Writes `dir/name` through `dir/.name.tmp` and a rename.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<(), CdnError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    if let Err(source) = std::fs::write(&tmp, data) {
        let _ = std::fs::remove_file(&tmp);
        return Err(CdnError::Io { path: tmp, source });
    }
    std::fs::rename(&tmp, &path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        CdnError::Io { path, source }
    })
}

/// Removes `INDEX.ts`, `INDEX.hdr` and temporary files left by a previous run.
fn remove_stale_segments(seg_dir: &Path) -> Result<(), CdnError> {
    let io_err = |source| CdnError::Io {
        path: seg_dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(seg_dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.ends_with(".tmp")
            || name
                .strip_suffix(".ts")
                .or_else(|| name.strip_suffix(".hdr"))
                .is_some_and(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()));
        if ours {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| CdnError::Io { path, source })?;
        }
    }
    Ok(())
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------------------------------------
// Fallback client
// ------------------------------------------------------------------------------------------

/// Downloads and parses a `.peerlive` file (at most [`MAX_DESCRIPTOR_BYTES`], within
/// [`DEFAULT_TIMEOUT`]). Returns the descriptor and its CDN base URLs: the base derived from
/// `url` when it ends in `/ID/descriptor.peerlive` (first: it evidently works), then the
/// descriptor's `url-list`, without duplicates.
pub async fn fetch_descriptor(
    client: &reqwest::Client,
    url: &str,
) -> Result<(Descriptor, Vec<String>), CdnError> {
    let parsed = parse_http_url(url)?;
    let body = get_limited(client, url, MAX_DESCRIPTOR_BYTES, DEFAULT_TIMEOUT, None).await?;
    let desc = Descriptor::from_bytes(&body).map_err(|source| CdnError::Descriptor {
        url: url.to_string(),
        source,
    })?;
    let suffix = format!("/{}/{DESCRIPTOR_FILE}", desc.content_id().to_hex());
    let mut bases = Vec::new();
    let path = parsed.path();
    if path.to_ascii_lowercase().ends_with(&suffix) {
        let mut base = parsed.clone();
        base.set_query(None);
        base.set_fragment(None);
        if let Some(prefix) = path.get(..path.len() - suffix.len()) {
            base.set_path(prefix);
            bases.push(base.to_string());
        }
    }
    bases.extend(desc.cdn.iter().cloned());
    Ok((desc, normalize_bases(bases)))
}

/// Keeps valid http(s) URLs, without trailing slashes, duplicates or more than [`MAX_BASES`].
fn normalize_bases(bases: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for b in bases {
        if parse_http_url(&b).is_err() {
            continue;
        }
        let b = b.trim_end_matches('/').to_string();
        if !out.contains(&b) && out.len() < MAX_BASES {
            out.push(b);
        }
    }
    out
}

fn parse_http_url(s: &str) -> Result<url::Url, CdnError> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        _ => Err(CdnError::BadUrl(s.to_string())),
    }
}

/// GETs `url` into memory, refusing bodies over `limit`; adds the body bytes to `counter`.
async fn get_limited(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
    timeout: Duration,
    counter: Option<&AtomicU64>,
) -> Result<Bytes, CdnError> {
    let fut = async {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(CdnError::Http {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let too_large = || CdnError::TooLarge {
            url: url.to_string(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let cap = resp
            .content_length()
            .map_or(limit.min(64 << 10), |n| n as usize);
        let mut body = BytesMut::with_capacity(cap);
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(url, e))? {
            if let Some(c) = counter {
                c.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| CdnError::Timeout(url.to_string()))?
}

fn transport(url: &str, e: reqwest::Error) -> CdnError {
    if e.is_timeout() {
        return CdnError::Timeout(url.to_string());
    }
    CdnError::Transport {
        url: url.to_string(),
        msg: e.to_string(),
    }
}

/// Counters of a [`CdnClient`] (and of the [`Fallback`] that drives it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdnStats {
    /// Body bytes received, by base host (`host` or `host:port`), in base order.
    pub bytes_by_host: Vec<(String, u64)>,
    /// Pieces fetched and verified.
    pub pieces: u64,
    /// Requests that failed (any reason, including verification).
    pub failures: u64,
    /// Headers or payloads refused because they failed verification (forged, altered,
    /// replayed).
    pub verify_failures: u64,
    /// Playlist polls.
    pub playlist_polls: u64,
}

#[derive(Debug)]
struct Base {
    url: String,
    host: String,
    bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct Counters {
    pieces: AtomicU64,
    failures: AtomicU64,
    verify_failures: AtomicU64,
    playlist_polls: AtomicU64,
}

/// Fetches one stream's pieces from a list of CDN base URLs, verifying everything. Cheap to
/// share behind an `Arc`; methods take `&self`.
#[derive(Debug)]
pub struct CdnClient {
    client: reqwest::Client,
    bases: Vec<Base>,
    /// The base that answered last; requests start there.
    preferred: AtomicUsize,
    id_hex: String,
    content_id: InfoHash,
    pubkey: [u8; 32],
    max_piece_length: u32,
    timeout: Duration,
    counters: Counters,
}

impl CdnClient {
    /// A client for `descriptor`'s stream over `bases` (invalid URLs are skipped; at most
    /// [`MAX_BASES`]). Fails when no base is usable.
    pub fn new(
        client: reqwest::Client,
        descriptor: &Descriptor,
        bases: Vec<String>,
    ) -> Result<CdnClient, CdnError> {
        let bases: Vec<Base> = normalize_bases(bases)
            .into_iter()
            .filter_map(|url| {
                let u = parse_http_url(&url).ok()?;
                let host = match u.port() {
                    Some(p) => format!("{}:{p}", u.host_str()?),
                    None => u.host_str()?.to_string(),
                };
                Some(Base {
                    url,
                    host,
                    bytes: AtomicU64::new(0),
                })
            })
            .collect();
        if bases.is_empty() {
            return Err(CdnError::NoBase);
        }
        let content_id = descriptor.content_id();
        Ok(CdnClient {
            client,
            bases,
            preferred: AtomicUsize::new(0),
            id_hex: content_id.to_hex(),
            content_id,
            pubkey: descriptor.params.pubkey,
            max_piece_length: descriptor.params.max_piece_length,
            timeout: DEFAULT_TIMEOUT,
            counters: Counters::default(),
        })
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> CdnClient {
        self.timeout = timeout;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> CdnStats {
        let mut bytes_by_host: Vec<(String, u64)> = Vec::new();
        for b in &self.bases {
            let n = b.bytes.load(Ordering::Relaxed);
            match bytes_by_host.iter_mut().find(|(h, _)| *h == b.host) {
                Some((_, total)) => *total += n,
                None => bytes_by_host.push((b.host.clone(), n)),
            }
        }
        let c = &self.counters;
        CdnStats {
            bytes_by_host,
            pieces: c.pieces.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            verify_failures: c.verify_failures.load(Ordering::Relaxed),
            playlist_polls: c.playlist_polls.load(Ordering::Relaxed),
        }
    }

    /// The newest piece index `live.m3u8` lists (`None`: no segment listed). Tries each base
    /// until one answers.
    pub async fn latest(&self) -> Result<Option<u32>, CdnError> {
        self.counters.playlist_polls.fetch_add(1, Ordering::Relaxed);
        self.each_base(|base| async move {
            let url = format!("{}/{}/{PLAYLIST_FILE}", base.url, self.id_hex);
            let body = get_limited(
                &self.client,
                &url,
                MAX_PLAYLIST_BYTES,
                self.timeout,
                Some(&base.bytes),
            )
            .await?;
            Ok(newest_in_playlist(&body))
        })
        .await
    }

    /// Fetches and verifies the signed header of piece `index`.
    pub async fn fetch_header(&self, index: u32) -> Result<PieceHeader, CdnError> {
        self.each_base(|base| async move { self.header_from(base, index).await })
            .await
    }

    /// Fetches piece `index` (header and payload), verifies the header's signature against the
    /// stream's key and content ID, its index, and the payload's length and hash. Tries the next
    /// base on any failure. The piece has [`Origin::Cdn`].
    pub async fn fetch_piece(&self, index: u32) -> Result<LivePiece, CdnError> {
        let piece = self
            .each_base(|base| async move {
                let header = self.header_from(base, index).await?;
                let url = format!("{}/{}/seg/{index}.ts", base.url, self.id_hex);
                let payload = get_limited(
                    &self.client,
                    &url,
                    header.length as usize,
                    self.timeout,
                    Some(&base.bytes),
                )
                .await
                .map_err(|e| match e {
                    // Longer than the signed length: altered.
                    CdnError::TooLarge { url, .. } => CdnError::Verify {
                        url,
                        source: LiveError::BadPayload(index),
                    },
                    e => e,
                })?;
                header
                    .check_payload(&payload)
                    .map_err(|source| CdnError::Verify { url, source })?;
                Ok(LivePiece {
                    header,
                    payload,
                    origin: Origin::Cdn,
                })
            })
            .await?;
        self.counters.pieces.fetch_add(1, Ordering::Relaxed);
        Ok(piece)
    }

    async fn header_from(&self, base: &Base, index: u32) -> Result<PieceHeader, CdnError> {
        let url = format!("{}/{}/seg/{index}.hdr", base.url, self.id_hex);
        let raw = get_limited(
            &self.client,
            &url,
            HEADER_LEN,
            self.timeout,
            Some(&base.bytes),
        )
        .await
        .map_err(|e| match e {
            CdnError::TooLarge { url, .. } => CdnError::Verify {
                url,
                source: LiveError::HeaderLength(HEADER_LEN + 1),
            },
            e => e,
        })?;
        let verify_err = |source| CdnError::Verify {
            url: url.clone(),
            source,
        };
        let header = PieceHeader::decode(&raw).map_err(verify_err)?;
        header
            .verify(&self.pubkey, &self.content_id)
            .map_err(verify_err)?;
        if header.index != index {
            return Err(CdnError::WrongIndex {
                url,
                expected: index,
                got: header.index,
            });
        }
        if header.length > self.max_piece_length {
            return Err(CdnError::PieceTooLarge(index));
        }
        Ok(header)
    }

    /// Runs `f` on each base from the preferred one on, until one succeeds; counts failures.
    async fn each_base<'a, T, F, Fut>(&'a self, f: F) -> Result<T, CdnError>
    where
        F: Fn(&'a Base) -> Fut,
        Fut: std::future::Future<Output = Result<T, CdnError>>,
    {
        let n = self.bases.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut last = CdnError::NoBase;
        for k in 0..n {
            let i = (start + k) % n;
            let Some(base) = self.bases.get(i) else {
                continue;
            };
            match f(base).await {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    if e.is_verification() {
                        self.counters
                            .verify_failures
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!("live CDN: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// The newest index a playlist lists: the largest `…/INDEX.ts` segment name, or else
/// `MEDIA-SEQUENCE + segments - 1`.
fn newest_in_playlist(body: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(body);
    let mut media_seq: Option<u32> = None;
    let mut count = 0u32;
    let mut newest: Option<u32> = None;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_seq = v.trim().parse().ok();
        } else if !line.is_empty() && !line.starts_with('#') {
            count = count.saturating_add(1);
            let name = line.split(['?', '#']).next().unwrap_or(line);
            let name = name.rsplit('/').next().unwrap_or(name);
            if let Some(i) = name.strip_suffix(".ts").and_then(|s| s.parse::<u32>().ok()) {
                newest = Some(newest.map_or(i, |n| n.max(i)));
            }
        }
    }
    newest.or_else(|| {
        let last = count.checked_sub(1)?;
        media_seq?.checked_add(last)
    })
}

/// How the fallback decides when to use the CDN.
#[derive(Clone, Debug)]
pub struct FallbackConfig {
    /// How long after a piece became known peers get to deliver it before the CDN is asked.
    /// `None`: 0.6 × the stream's piece duration.
    pub deadline: Option<Duration>,
    /// Pieces from the playhead on that the fallback watches (the one the player needs next and
    /// the following ones).
    pub lookahead: u32,
    /// Most piece fetches in flight.
    pub max_in_flight: usize,
    /// Playlist poll interval when no peer moves the live edge. `None`: the piece duration.
    pub poll_interval: Option<Duration>,
    /// Headers fetched back from the newest listed piece to find a keyframe to join at.
    pub join_headers: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First delay after a failure; doubles on each further failure.
    pub backoff_min: Duration,
    /// Longest delay after failures.
    pub backoff_max: Duration,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            deadline: None,
            lookahead: 3,
            max_in_flight: 3,
            poll_interval: None,
            join_headers: 8,
            timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// The CDN fallback of one stream. Stops its task on drop.
#[derive(Debug)]
pub struct Fallback {
    task: JoinHandle<()>,
    client: Option<Arc<CdnClient>>,
    error: Option<String>,
}

impl Fallback {
    /// Counters so far (all zero when no base URL was usable).
    pub fn stats(&self) -> CdnStats {
        self.client.as_ref().map(|c| c.stats()).unwrap_or_default()
    }

    /// Why the fallback is not running (no usable base URL), if so.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawns the CDN fallback for `buffer` over `bases`. It works only while a player is
/// registered with the buffer, and fetches from the CDN only the pieces from the playhead on
/// (`cfg.lookahead` of them) that are known to exist and that no peer delivered within
/// `cfg.deadline` of becoming known. When no peer moves the live edge for a piece duration, it
/// learns the edge from `live.m3u8` (polled once per piece duration), and such pieces are due
/// at once: a viewer without peers plays from the CDN alone. When the buffer is empty and a
/// player waits, it joins at the newest keyframe piece the CDN lists. Must be called inside a
/// tokio runtime.
pub fn spawn_fallback(
    buffer: Arc<LiveBuffer>,
    bases: Vec<String>,
    client: reqwest::Client,
    cfg: FallbackConfig,
) -> Fallback {
    match CdnClient::new(client, buffer.descriptor(), bases) {
        Ok(c) => {
            let c = Arc::new(c.with_timeout(cfg.timeout));
            let task = tokio::spawn(fallback_loop(buffer, c.clone(), cfg));
            Fallback {
                task,
                client: Some(c),
                error: None,
            }
        }
        Err(e) => Fallback {
            task: tokio::spawn(async {}),
            client: None,
            error: Some(e.to_string()),
        },
    }
}

/// What a fallback job reports.
enum Job {
    Piece(u32, Result<LivePiece, CdnError>),
    Latest(Result<Option<u32>, CdnError>),
    Join(Result<Option<(LivePiece, u32)>, CdnError>),
}

/// Most "became known at" instants remembered.
const KNOWN_CAP: usize = 256;

struct FallbackState {
    buffer: Arc<LiveBuffer>,
    client: Arc<CdnClient>,
    cfg: FallbackConfig,
    piece: Duration,
    deadline: Duration,
    poll_interval: Duration,
    /// When each index near the edge became known.
    known_at: BTreeMap<u32, Instant>,
    last_edge: Option<u32>,
    /// The newest index we ourselves put in the buffer or noted: edge moves beyond it are
    /// peers' doing.
    own_edge: Option<u32>,
    last_peer_bytes: u64,
    /// Last sign of life from peers.
    peers_seen: Option<Instant>,
    last_poll: Option<Instant>,
    in_flight: BTreeSet<u32>,
    polling: bool,
    joining: bool,
    backoff: Duration,
    backoff_until: Option<Instant>,
}

async fn fallback_loop(buffer: Arc<LiveBuffer>, client: Arc<CdnClient>, cfg: FallbackConfig) {
    let piece = Duration::from_millis(buffer.descriptor().params.piece_duration_ms.into());
    let mut f = FallbackState {
        deadline: cfg.deadline.unwrap_or(piece.mul_f64(0.6)),
        poll_interval: cfg.poll_interval.unwrap_or(piece),
        piece,
        buffer,
        client,
        cfg,
        known_at: BTreeMap::new(),
        last_edge: None,
        own_edge: None,
        last_peer_bytes: 0,
        peers_seen: None,
        last_poll: None,
        in_flight: BTreeSet::new(),
        polling: false,
        joining: false,
        backoff: Duration::ZERO,
        backoff_until: None,
    };
    let tick = (piece / 5).clamp(Duration::from_millis(20), Duration::from_millis(200));
    let mut rx = f.buffer.subscribe();
    let mut jobs: JoinSet<Job> = JoinSet::new();
    loop {
        f.step(crate::clock::tokio_now(), &mut jobs);
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                if let Ok(job) = done {
                    f.finish(crate::clock::tokio_now(), job);
                }
            }
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

impl FallbackState {
    fn note_own(&mut self, index: u32) {
        self.own_edge = Some(self.own_edge.map_or(index, |e| e.max(index)));
    }

    /// Looks at the buffer and starts the fetches and polls that are due.
    fn step(&mut self, now: Instant, jobs: &mut JoinSet<Job>) {
        // Signs of peers: payload from peers, or the edge moved beyond what we put there.
        let peer_bytes = self.buffer.bytes_in.peer.load(Ordering::Relaxed);
        let edge = self.buffer.edge();
        if peer_bytes != self.last_peer_bytes
            || edge.is_some_and(|e| self.own_edge.is_none_or(|o| e > o))
        {
            self.last_peer_bytes = peer_bytes;
            self.peers_seen = Some(now);
            self.own_edge = edge.max(self.own_edge);
        }
        if let Some(e) = edge {
            let from = match self.last_edge {
                Some(l) if l >= e => e.saturating_add(1),
                Some(l) => l.saturating_add(1).max(e.saturating_sub(KNOWN_CAP as u32)),
                None => e,
            };
            for i in from..=e {
                self.known_at.entry(i).or_insert(now);
            }
            while self.known_at.len() > KNOWN_CAP {
                self.known_at.pop_first();
            }
            self.last_edge = Some(e);
        }
        if self.buffer.readers() == 0 {
            self.known_at.clear();
            return;
        }
        // Peers move the edge once per piece duration, so "nothing moved it for a piece
        // duration" is judged with half a piece of slack, not to flap before every piece.
        let stale = self
            .peers_seen
            .is_none_or(|t| now.saturating_duration_since(t) >= self.piece.mul_f64(1.5));
        let backing_off = self.backoff_until.is_some_and(|t| now < t);

        // Learn the edge from the playlist when peers do not tell it.
        if (stale || edge.is_none())
            && !self.polling
            && !backing_off
            && self
                .last_poll
                .is_none_or(|t| now.saturating_duration_since(t) >= self.poll_interval)
        {
            self.polling = true;
            self.last_poll = Some(now);
            let c = self.client.clone();
            jobs.spawn(async move { Job::Latest(c.latest().await) });
        }

        // Join: a player waits and the buffer is empty.
        if self.buffer.range().is_none() {
            if !self.joining && !backing_off && self.in_flight.is_empty() {
                self.joining = true;
                let c = self.client.clone();
                let back = self.cfg.join_headers.max(1);
                jobs.spawn(async move { Job::Join(join_point(&c, back).await) });
            }
            return;
        }

        let Some(p) = self.buffer.playhead() else {
            return;
        };
        // Forget what is behind the player, and keep the map bounded.
        self.known_at = self.known_at.split_off(&p);
        while self.known_at.len() > KNOWN_CAP / 2 {
            self.known_at.pop_last();
        }
        let Some(edge) = edge else { return };
        if backing_off {
            return;
        }
        for i in p..p.saturating_add(self.cfg.lookahead.max(1)) {
            if i > edge || self.in_flight.len() >= self.cfg.max_in_flight.max(1) {
                break;
            }
            if self.in_flight.contains(&i) || self.buffer.has(i) {
                continue;
            }
            // Unknown "known at": it became known before we looked, long ago.
            let due = stale
                || self
                    .known_at
                    .get(&i)
                    .is_none_or(|&t| now.saturating_duration_since(t) >= self.deadline);
            if !due {
                continue;
            }
            self.in_flight.insert(i);
            let c = self.client.clone();
            jobs.spawn(async move { Job::Piece(i, c.fetch_piece(i).await) });
        }
    }

    /// Applies a finished job.
    fn finish(&mut self, now: Instant, job: Job) {
        let ok = match job {
            Job::Piece(i, res) => {
                self.in_flight.remove(&i);
                match res {
                    Ok(piece) => {
                        self.note_own(i);
                        // False: a peer delivered it meanwhile (fine) or it is out of the window.
                        self.buffer.insert(piece) || self.buffer.has(i)
                    }
                    Err(_) => false,
                }
            }
            Job::Latest(res) => {
                self.polling = false;
                match res {
                    Ok(Some(latest)) => {
                        self.note_own(latest);
                        self.buffer.note_exists(latest);
                        true
                    }
                    Ok(None) => true,
                    Err(_) => false,
                }
            }
            Job::Join(res) => {
                self.joining = false;
                match res {
                    Ok(Some((piece, latest))) => {
                        self.note_own(latest);
                        self.buffer.insert(piece);
                        self.buffer.note_exists(latest);
                        true
                    }
                    Ok(None) => true,
                    Err(_) => false,
                }
            }
        };
        if ok {
            self.backoff = Duration::ZERO;
            self.backoff_until = None;
        } else {
            self.backoff = (self.backoff * 2)
                .max(self.cfg.backoff_min)
                .min(self.cfg.backoff_max);
            self.backoff_until = Some(now + self.backoff);
        }
    }
}

/// The piece to join at: the newest keyframe piece among the last `back` the CDN lists (else
/// the newest), and the newest index listed. `None` when the playlist is empty.
async fn join_point(c: &CdnClient, back: u32) -> Result<Option<(LivePiece, u32)>, CdnError> {
    let Some(latest) = c.latest().await? else {
        return Ok(None);
    };
    let mut start = latest;
    for k in 0..back {
        let Some(i) = latest.checked_sub(k) else {
            break;
        };
        match c.fetch_header(i).await {
            Ok(h) if h.is_keyframe() => {
                start = i;
                break;
            }
            Ok(_) => {}
            // Deleted already, or refused: stop looking further back.
            Err(_) => break,
        }
    }
    Ok(Some((c.fetch_piece(start).await?, latest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(ms: u32, disc: bool) -> Segment {
        Segment {
            duration_us: ms * 1000,
            keyframe: false,
            discontinuity: disc,
        }
    }

    fn key(ms: u32) -> Segment {
        Segment {
            keyframe: true,
            ..seg(ms, false)
        }
    }

    #[test]
    fn players_are_told_to_start_at_a_keyframe() {
        // 500 ms pieces, a keyframe every other one; target 1 s, so at least 3 s back.
        let listed: Vec<(u32, Segment)> = (0..12)
            .map(|i| {
                (
                    i,
                    if i % 2 == 0 {
                        key(500)
                    } else {
                        seg(500, false)
                    },
                )
            })
            .collect();
        // From the end: piece 6 starts 3.0 s back.
        assert_eq!(start_offset_us(&listed, 3_000_000), Some(3_000_000));
        assert!(
            render_playlist(&listed, 1, 0).contains("#EXT-X-START:TIME-OFFSET=-2.999,PRECISE=NO\n")
        );
        // Too short a playlist: the oldest keyframe.
        assert_eq!(start_offset_us(&listed[8..], 3_000_000), Some(2_000_000));
        assert_eq!(start_offset_us(&[(1, seg(500, false))], 3_000_000), None);
    }

    #[test]
    fn playlist_is_well_formed() {
        let text = render_playlist(
            &[
                (7, seg(500, false)),
                (8, seg(1234, true)),
                (9, seg(480, false)),
            ],
            2,
            2,
        );
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:2\n\
             #EXTINF:0.500,\nseg/7.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.234,\nseg/8.ts\n\
             #EXTINF:0.480,\nseg/9.ts\n"
        );
        assert_eq!(newest_in_playlist(text.as_bytes()), Some(9));
    }

    #[test]
    fn newest_from_media_sequence_when_names_are_foreign() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:40\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n";
        assert_eq!(newest_in_playlist(text.as_bytes()), Some(41));
        assert_eq!(newest_in_playlist(b"#EXTM3U\n"), None);
        assert_eq!(newest_in_playlist(&[0xff, 0xfe, b'\n']), None);
    }

    fn state(playlist_ms: u64, keep_ms: u64) -> DirState {
        DirState {
            stream_dir: PathBuf::new(),
            seg_dir: PathBuf::new(),
            segments: BTreeMap::new(),
            playlist_us: playlist_ms * 1000,
            keep_us: keep_ms * 1000,
            max_segments: 1000,
            listed_first: None,
            discontinuity_seq: 0,
            target_s: 1,
        }
    }

    #[test]
    fn lists_the_newest_contiguous_run_and_expires_behind_it() {
        let mut st = state(1500, 3000);
        for i in (0..10).chain(12..20) {
            st.segments.insert(i, seg(500, i == 16));
        }
        let listed: Vec<u32> = st.listed().iter().map(|&(i, _)| i).collect();
        assert_eq!(listed, vec![17, 18, 19]);
        st.listed_first = Some(14);
        let _ = st.render_playlist();
        assert_eq!(st.discontinuity_seq, 1, "16 left the head");
        // Keep 3 s = 6 pieces from the newest: 19..=14 stay, the rest goes.
        let mut exp = st.expired();
        exp.sort_unstable();
        assert_eq!(exp, (0..10).chain(12..14).collect::<Vec<_>>());
    }

    #[test]
    fn bases_are_normalized() {
        let b = normalize_bases(vec![
            "http://a/x/".into(),
            "http://a/x".into(),
            "ftp://b/".into(),
            "nonsense".into(),
            "https://c".into(),
        ]);
        assert_eq!(b, vec!["http://a/x".to_string(), "https://c".to_string()]);
    }

    #[test]
    fn a_failed_write_is_reported_and_publishing_goes_on() {
        use ed25519_dalek::SigningKey;
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(1000, 2000);
        st.stream_dir = dir.path().to_path_buf();
        st.seg_dir = dir.path().join("seg"); // missing: every write fails, like a full disk
        let key = SigningKey::from_bytes(&[1; 32]);
        let piece = |i: u32| {
            let payload = Bytes::from(vec![0x47; 188]);
            let header = PieceHeader::sign(&key, &InfoHash([0; 20]), i, 0, 100_000, 0, &payload);
            LivePiece {
                header,
                payload,
                origin: Origin::Own,
            }
        };
        let sh = PublisherShared::default();
        st.publish(&[piece(0)], &sh);
        assert_eq!(sh.errors.load(Ordering::Relaxed), 1);
        assert!(sh.last_error.lock().unwrap().is_some());
        assert!(st.segments.is_empty(), "not listed");
        assert!(!dir.path().join(PLAYLIST_FILE).exists());
        std::fs::create_dir(dir.path().join("seg")).unwrap();
        st.publish(&[piece(1)], &sh);
        assert_eq!(sh.pieces_written.load(Ordering::Relaxed), 1);
        let text = std::fs::read_to_string(dir.path().join(PLAYLIST_FILE)).unwrap();
        assert!(text.contains("seg/1.ts"), "{text}");
        assert!(dir.path().join("seg/1.hdr").exists());
    }

    proptest::proptest! {
        #[test]
        fn playlist_parser_takes_garbage(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = newest_in_playlist(&body);
        }

        #[test]
        fn rendered_playlists_give_their_newest(first in 0u32..u32::MAX - 64, n in 1usize..40,
                                                 ms in proptest::collection::vec(1u32..3000, 40)) {
            let listed: Vec<(u32, Segment)> = (0..n)
                .map(|k| (first + k as u32, seg(ms[k], k % 7 == 3)))
                .collect();
            let text = render_playlist(&listed, 3, 0);
            proptest::prop_assert_eq!(newest_in_playlist(text.as_bytes()), Some(first + n as u32 - 1));
        }
    }
}
