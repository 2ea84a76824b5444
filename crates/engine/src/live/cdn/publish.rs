//! The publisher of the CDN layout: mirrors a [`LiveBuffer`] into `DIR/ID/` (descriptor,
//! pieces, headers, keyframe segments, `live.m3u8`) with the invariants in the
//! [module docs](super). How pieces group into segments and how the playlist says so is core's
//! [`Segmenter`] (the same as the engine's `/ace/manifest.m3u8`, rendered for a static server:
//! segments and parts, no blocking reload, no preload hint); this file owns the files: a
//! segment `seg/FIRST-LAST.ts` is written (its pieces concatenated) once complete, before the
//! playlist lists it; pieces stay as `seg/INDEX.ts` (the playlist's parts, and what the CDN
//! fallback fetches).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peercdn_core::live::hls::Segment;
use peercdn_core::live::llhls::{GopSegment, Segmenter, SEGMENT_MIN_US};
use peercdn_core::live::HEADER_LEN;
use tokio::task::JoinHandle;

use super::{CdnError, DESCRIPTOR_FILE, PLAYLIST_FILE};
use crate::live::buffer::{LiveBuffer, LivePiece};

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
    let max_segments = (params.window_pieces() as usize).max(64);
    let default_duration_us = params.piece_duration_ms.saturating_mul(1000);
    let state = DirState::new(
        stream_dir.clone(),
        seg_dir,
        playlist_us,
        keep_us,
        max_segments,
        default_duration_us,
    );
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
            .filter(|i| seen.insert(*i) && !state.pieces.contains_key(i))
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

/// The publisher's view of its directory. Lives on the blocking pool while it writes.
#[derive(Debug)]
struct DirState {
    stream_dir: PathBuf,
    seg_dir: PathBuf,
    /// Pieces on disk: index → media duration (µs).
    pieces: BTreeMap<u32, u32>,
    segmenter: Segmenter,
    /// Segment files on disk, oldest first: (file name, first piece, last piece).
    seg_files: VecDeque<(String, u32, u32)>,
    /// Media duration of pieces kept on disk.
    keep_us: u64,
    /// Most pieces kept on disk.
    max_segments: usize,
    /// The duration used for a piece whose header has none.
    default_duration_us: u32,
}

/// Segment files kept on disk after they left the playlist (players still fetching them).
const SEGMENTS_KEPT_AFTER: usize = 3;

/// A segment's file name: its first and last piece.
fn segment_file(g: &GopSegment) -> String {
    let last = g.parts.last().map_or(g.first_piece(), |p| p.index);
    format!("{}-{last}.ts", g.first_piece())
}

impl DirState {
    fn new(
        stream_dir: PathBuf,
        seg_dir: PathBuf,
        playlist_us: u64,
        keep_us: u64,
        max_segments: usize,
        default_duration_us: u32,
    ) -> DirState {
        let listed = (playlist_us / SEGMENT_MIN_US).max(3) as usize + 1;
        DirState {
            stream_dir,
            seg_dir,
            pieces: BTreeMap::new(),
            segmenter: Segmenter::new(listed, u64::from(default_duration_us)),
            seg_files: VecDeque::new(),
            keep_us,
            max_segments,
            default_duration_us,
        }
    }

    fn newest(&self) -> Option<u32> {
        self.pieces.last_key_value().map(|(&i, _)| i)
    }

    /// Writes the pieces, the segments they complete, then the playlist, then deletes what
    /// fell out of the window.
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
                    let seg = Segment::from_header(&p.header, self.default_duration_us);
                    self.pieces.insert(i, seg.duration_us);
                    self.segmenter.push(seg, p.header.timestamp_us);
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
        if let Err(e) = self.write_segments() {
            // Not listed without its file: the playlist waits for the next rewrite.
            sh.error(e);
            return;
        }
        let text = self.segmenter.render_static(
            |g| format!("seg/{}", segment_file(g)),
            |i| format!("seg/{i}.ts"),
        );
        match write_atomic(&self.stream_dir, PLAYLIST_FILE, text.as_bytes()) {
            Ok(()) => {
                sh.playlists_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                sh.error(e);
                // Keep every file the old playlist may still list.
                return;
            }
        }
        self.expire(sh);
    }

    /// Writes the file of every complete segment that has none yet (its pieces, read back).
    fn write_segments(&mut self) -> Result<(), CdnError> {
        let newest_file = self.seg_files.back().map(|f| f.2);
        let todo: Vec<(String, Vec<u32>)> = self
            .segmenter
            .segments()
            .iter()
            .filter(|g| g.complete && newest_file.is_none_or(|n| g.first_piece() > n))
            .map(|g| (segment_file(g), g.parts.iter().map(|p| p.index).collect()))
            .collect();
        for (name, parts) in todo {
            let mut data = Vec::new();
            for i in &parts {
                let path = self.seg_dir.join(format!("{i}.ts"));
                let bytes = std::fs::read(&path).map_err(|source| CdnError::Io { path, source })?;
                data.extend_from_slice(&bytes);
            }
            write_atomic(&self.seg_dir, &name, &data)?;
            let (first, last) = (parts[0], parts[parts.len() - 1]);
            self.seg_files.push_back((name, first, last));
        }
        Ok(())
    }

    /// Deletes segment files [`SEGMENTS_KEPT_AFTER`] behind the playlist, and pieces beyond
    /// `keep_us` of media or `max_segments` pieces behind the newest that no listed or kept
    /// segment holds.
    fn expire(&mut self, sh: &PublisherShared) {
        let listed_first = self
            .segmenter
            .segments()
            .front()
            .map_or(u32::MAX, |g| g.first_piece());
        let gone = self
            .seg_files
            .iter()
            .filter(|f| f.2 < listed_first)
            .count()
            .saturating_sub(SEGMENTS_KEPT_AFTER);
        for (name, _, _) in self.seg_files.drain(..gone).collect::<Vec<_>>() {
            self.remove(&name, sh);
        }
        let keep_from = self
            .seg_files
            .front()
            .map_or(listed_first, |f| f.1.min(listed_first));
        let mut total = 0u64;
        let mut expired = Vec::new();
        for (n, (&i, &d)) in self.pieces.iter().rev().enumerate() {
            if i < keep_from && (total >= self.keep_us || n >= self.max_segments) {
                expired.push(i);
            }
            total += u64::from(d);
        }
        for i in expired {
            self.pieces.remove(&i);
            for name in [format!("{i}.hdr"), format!("{i}.ts")] {
                self.remove(&name, sh);
            }
            sh.segments_deleted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn remove(&self, name: &str, sh: &PublisherShared) {
        let path = self.seg_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => sh.error(CdnError::Io { path, source }),
        }
    }
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

/// Removes `INDEX.ts`, `INDEX.hdr`, `FIRST-LAST.ts` and temporary files left by a previous run.
fn remove_stale_segments(seg_dir: &Path) -> Result<(), CdnError> {
    let io_err = |source| CdnError::Io {
        path: seg_dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(seg_dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let ours = name.ends_with(".tmp")
            || name
                .strip_suffix(".ts")
                .or_else(|| name.strip_suffix(".hdr"))
                .is_some_and(|stem| {
                    digits(stem)
                        || stem
                            .split_once('-')
                            .is_some_and(|(a, b)| digits(a) && digits(b))
                });
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use peercdn_core::live::PieceHeader;
    use peercdn_core::InfoHash;

    use crate::live::buffer::Origin;

    /// A piece whose write fails (a full disk, here a missing directory) is reported and not
    /// listed; publishing goes on, and complete segments are written as their pieces joined,
    /// listed with the pieces as parts.
    #[test]
    fn a_failed_write_is_reported_and_publishing_goes_on() {
        use ed25519_dalek::SigningKey;
        use peercdn_core::live::FLAG_KEYFRAME;
        let dir = tempfile::tempdir().unwrap();
        let mut st = DirState::new(
            dir.path().to_path_buf(),
            dir.path().join("seg"), // missing: every write fails, like a full disk
            6_000_000,
            20_000_000,
            1000,
            500_000,
        );
        let key = SigningKey::from_bytes(&[1; 32]);
        let piece = |i: u32| {
            let payload = Bytes::from(vec![i as u8; 188]);
            let header = PieceHeader::sign(
                &key,
                &InfoHash([0; 20]),
                i,
                0,
                500_000,
                FLAG_KEYFRAME,
                &payload,
            );
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
        assert!(st.pieces.is_empty(), "not listed");
        assert!(!dir.path().join(PLAYLIST_FILE).exists());
        std::fs::create_dir(dir.path().join("seg")).unwrap();
        let more: Vec<LivePiece> = (1..=8).map(piece).collect();
        st.publish(&more, &sh);
        assert_eq!(sh.pieces_written.load(Ordering::Relaxed), 8);
        let text = std::fs::read_to_string(dir.path().join(PLAYLIST_FILE)).unwrap();
        assert!(text.contains("URI=\"seg/8.ts\""), "{text}");
        let segment = text
            .lines()
            .find(|l| l.starts_with("seg/") && l.contains('-'))
            .unwrap_or_else(|| panic!("no segment listed: {text}"));
        let (a, b) = segment[4..segment.len() - 3].split_once('-').unwrap();
        let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
        let joined: Vec<u8> = (a..=b).flat_map(|i| vec![i as u8; 188]).collect();
        assert_eq!(std::fs::read(dir.path().join(segment)).unwrap(), joined);
        assert!(dir.path().join("seg/1.hdr").exists());
    }
}
