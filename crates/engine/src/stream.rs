//! Reading a torrent's files while they download (the engine side of streaming).
//!
//! A [`FileReader`] reads one file of a torrent at any offset. When the bytes are not there yet
//! it tells the torrent's actor where it is reading (the actor then raises the priority of the
//! pieces at and after that position, cancels requests made stale by a seek, and fetches those
//! pieces first) and waits until the piece is verified. Readers see the torrent through
//! [`Shared`]: verified pieces, storage and metadata, published by the actor.
//!
//! No HTTP here: ranges, status codes and content types belong to the HTTP crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use peercdn_core::metainfo::Metainfo;
use peercdn_core::Bitfield;
use tokio::sync::{mpsc, Notify};

use crate::storage::Storage;
use crate::torrent::Command;

/// Read-ahead, in bytes, that a reader asks to be fetched in front of its position.
pub const READAHEAD_BYTES: u64 = 16 << 20;
/// Longest read returned at once.
pub const MAX_READ: usize = 256 * 1024;

/// What the torrent's actor publishes to readers.
#[derive(Debug, Default)]
pub struct Shared {
    /// The metainfo, once known.
    pub meta: OnceLock<Arc<Metainfo>>,
    /// Storage, once the metainfo is known.
    pub storage: Arc<OnceLock<Arc<Storage>>>,
    /// Verified pieces (None until the metainfo is known and existing data checked).
    pub have: RwLock<Option<Bitfield>>,
    /// Woken on every verified piece, on metadata, and when the torrent stops.
    pub changed: Notify,
    /// Set when the torrent stopped (removed, failed): readers give up.
    pub stopped: RwLock<Option<String>>,
}

impl Shared {
    /// Is piece `index` verified?
    pub fn has_piece(&self, index: u32) -> bool {
        self.have
            .read()
            .ok()
            .and_then(|h| h.as_ref().map(|h| h.get(index)))
            .unwrap_or(false)
    }

    /// Fraction of the content verified, 0..=1, from the same bitfield readers wait on (so it
    /// never lags behind what a reader has just been given, as the actor's once-a-second status
    /// snapshot can); `None` before the metainfo is known and existing data checked.
    pub fn progress(&self) -> Option<f64> {
        let info = &self.meta.get()?.info;
        let have = self.have.read().ok()?;
        let have = have.as_ref()?;
        let total = info.total_length();
        if total == 0 {
            return Some(0.0);
        }
        let last = info.num_pieces().checked_sub(1);
        let full = u64::from(info.piece_length);
        let bytes: u64 = match last {
            Some(last) if have.get(last) => {
                u64::from(have.count() - 1) * full + u64::from(info.piece_len(last))
            }
            _ => u64::from(have.count()) * full,
        };
        Some(bytes as f64 / total as f64)
    }

    /// Whether the existing data has been checked (so `has_piece` is meaningful).
    pub fn checked(&self) -> bool {
        self.have.read().map(|h| h.is_some()).unwrap_or(false)
    }

    fn stop_reason(&self) -> Option<String> {
        self.stopped.read().ok().and_then(|s| s.clone())
    }
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The torrent stopped (removed or failed).
    #[error("the torrent stopped: {0}")]
    Stopped(String),
    /// No such file in the torrent.
    #[error("no file {index} in this torrent ({count} files)")]
    NoSuchFile {
        /// Asked.
        index: usize,
        /// Files in the torrent.
        count: usize,
    },
    /// Reading from storage failed.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// One file of a torrent as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Index in the torrent's file list.
    pub index: usize,
    /// Path under the torrent's directory, `/`-separated (the name for single-file torrents).
    pub path: String,
    /// Bytes.
    pub length: u64,
    /// Offset in the torrent's data.
    pub offset: u64,
}

/// The files of a torrent (pad files left out).
pub fn files(meta: &Metainfo) -> Vec<FileInfo> {
    meta.info
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.pad)
        .map(|(index, f)| FileInfo {
            index,
            path: if f.path.is_empty() {
                meta.info.name.clone()
            } else {
                f.path.join("/")
            },
            length: f.length,
            offset: f.offset,
        })
        .collect()
}

static NEXT_READER: AtomicU64 = AtomicU64::new(1);

/// Reads one file of a torrent, waiting for pieces as needed. Dropping it releases its piece
/// priorities.
#[derive(Debug)]
pub struct FileReader {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    file: FileInfo,
    piece_length: u64,
    last_piece: Option<u32>,
}

impl FileReader {
    /// A reader of `file` (the caller took it from [`files`]).
    pub fn new(
        shared: Arc<Shared>,
        tx: mpsc::Sender<Command>,
        file: FileInfo,
        piece_length: u32,
    ) -> Self {
        FileReader {
            id: NEXT_READER.fetch_add(1, Ordering::Relaxed),
            shared,
            tx,
            file,
            piece_length: piece_length.max(1) as u64,
            last_piece: None,
        }
    }

    /// The file.
    pub fn file(&self) -> &FileInfo {
        &self.file
    }

    /// Tells the torrent where this reader will read next (so it can fetch ahead) without
    /// reading.
    pub fn seek_hint(&mut self, offset: u64) {
        let piece = ((self.file.offset + offset.min(self.file.length)) / self.piece_length) as u32;
        self.announce(piece);
    }

    /// Reads up to `max` bytes at `offset` (never past the end of the piece or the file),
    /// waiting until they are downloaded and verified. Returns an empty buffer at or past EOF.
    pub async fn read_at(&mut self, offset: u64, max: usize) -> Result<Bytes, StreamError> {
        if offset >= self.file.length || max == 0 {
            return Ok(Bytes::new());
        }
        let abs = self.file.offset + offset;
        let piece = (abs / self.piece_length) as u32;
        let piece_end = (piece as u64 + 1) * self.piece_length;
        let len = (max.min(MAX_READ) as u64)
            .min(piece_end - abs)
            .min(self.file.length - offset) as usize;
        loop {
            // Again at every wake-up: an announcement a full command queue refused is retried.
            self.announce(piece);
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(reason) = self.shared.stop_reason() {
                return Err(StreamError::Stopped(reason));
            }
            if self.shared.has_piece(piece) {
                break;
            }
            changed.await;
        }
        let Some(storage) = self.shared.storage.get().cloned() else {
            return Err(StreamError::Stopped("no storage".into()));
        };
        let begin = (abs - piece as u64 * self.piece_length) as u32;
        let data = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            storage
                .read(piece, begin, &mut buf)
                .map(|_| Bytes::from(buf))
        })
        .await
        .map_err(|e| StreamError::Stopped(format!("read task failed: {e}")))??;
        Ok(data)
    }

    fn announce(&mut self, piece: u32) {
        if self.last_piece == Some(piece) {
            return;
        }
        let readahead = (READAHEAD_BYTES / self.piece_length).max(4) as u32;
        let last =
            ((self.file.offset + self.file.length).saturating_sub(1) / self.piece_length) as u32;
        // A full command queue means the actor is busy: the position stays unannounced and the
        // next call (the next read, or the next wake-up of one waiting) tries again.
        let sent = self.tx.try_send(Command::ReaderAt {
            id: self.id,
            piece,
            last,
            readahead,
        });
        if sent.is_ok() {
            self.last_piece = Some(piece);
        }
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        let tx = self.tx.clone();
        let id = self.id;
        if tx.try_send(Command::ReaderGone { id }).is_err() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(Command::ReaderGone { id }).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peercdn_core::metainfo::{FileEntry, Info};

    /// A reader once marked its position announced even when the actor's command queue was
    /// full and the announcement was dropped; it never said it again, so the pieces a player
    /// waited for kept their normal priority. A refused announcement is now made again.
    #[test]
    fn an_announcement_a_full_queue_refused_is_made_again() {
        let (tx, mut rx) = mpsc::channel(1);
        let file = FileInfo {
            index: 0,
            path: "f".into(),
            length: 1000,
            offset: 0,
        };
        let mut r = FileReader::new(Arc::new(Shared::default()), tx.clone(), file, 100);
        tx.try_send(Command::ReaderGone { id: 0 }).unwrap();
        r.seek_hint(500);
        assert!(matches!(rx.try_recv(), Ok(Command::ReaderGone { .. })));
        assert!(rx.try_recv().is_err(), "the queue was full: nothing sent");
        r.seek_hint(500);
        match rx.try_recv() {
            Ok(Command::ReaderAt { piece, .. }) => assert_eq!(piece, 5),
            other => panic!("the position was not announced again: {other:?}"),
        }
        r.seek_hint(500);
        assert!(rx.try_recv().is_err(), "said once it is through");
    }

    /// The stat route of the Ace API once said 0 % right after a player had read the whole file:
    /// it used the actor's status snapshot, published up to a second after the last piece was
    /// verified. Progress now comes from the bitfield readers wait on, and counts a short last
    /// piece by its own length.
    #[test]
    fn progress_counts_verified_pieces_and_the_short_last_one() {
        let shared = Shared::default();
        assert_eq!(shared.progress(), None, "nothing known yet");
        let info = Info {
            name: "f".into(),
            piece_length: 100,
            pieces: vec![[0; 20]; 3],
            files: vec![FileEntry {
                path: vec![],
                length: 250,
                offset: 0,
                pad: false,
            }],
            private: false,
            multi_file: false,
        };
        let _ = shared
            .meta
            .set(Arc::new(Metainfo::new(info, vec![], vec![], None, None)));
        assert_eq!(shared.progress(), None, "not checked yet");
        *shared.have.write().unwrap() = Some(Bitfield::new(3));
        assert_eq!(shared.progress(), Some(0.0));
        let set = |i| shared.have.write().unwrap().as_mut().unwrap().set(i, true);
        set(2);
        assert_eq!(shared.progress(), Some(0.2));
        set(0);
        assert_eq!(shared.progress(), Some(0.6));
        set(1);
        assert_eq!(shared.progress(), Some(1.0));
    }
}
