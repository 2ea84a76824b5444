//! Disk storage of one torrent: the mapping from pieces to byte ranges of files, positioned reads
//! and writes, piece verification, full rechecks and resume data.
//!
//! Files live at `root/name` (single-file torrents) or `root/name/path…` (multi-file). Every path
//! component is re-checked to be a plain name before anything touches the disk. BEP 47 padding
//! files are never created: their ranges are skipped on write and read back as zeros.
//!
//! All I/O is positioned (`pread`/`pwrite` through [`std::os::unix::fs::FileExt`]): no seeks, and
//! the only lock is the bounded file-handle cache ([`MAX_OPEN_FILES`] handles, least recently used
//! evicted), held only to look up or insert a handle, never across I/O. Methods take `&self`, so
//! the engine shares one [`Storage`] in an `Arc` and calls it from `spawn_blocking`.
//!
//! A file is extended (sparsely, with `set_len`) to its torrent length when first opened for
//! writing, so no file is ever longer than the torrent says because of us; existing data is never
//! truncated. Rechecks use `SEEK_DATA` to skip pieces that lie entirely in holes of such sparse
//! files, so rechecking a partly downloaded torrent does not read gigabytes of zeros.
//!
//! This module knows nothing of peers, the network or tokio.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use peercdn_core::metainfo::Info;
use peercdn_core::Bitfield;
use sha1::{Digest, Sha1};

/// Most file handles one [`Storage`] keeps open at once.
pub const MAX_OPEN_FILES: usize = 128;

/// Largest resume file [`Resume::load_and_check`] reads (bigger ones are ignored).
const MAX_RESUME_BYTES: u64 = 64 << 20;

/// What went wrong on disk.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O error on a file or directory.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The disk (or the user's quota) is full.
    #[error("disk full (or quota exceeded) while writing {path}: free some space, then resume")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// A path component that is not a plain file name (`..`, a separator, empty, NUL).
    #[error("refusing unsafe path component {0:?}")]
    BadPath(String),
    /// The info dictionary does not describe a consistent layout.
    #[error("inconsistent torrent layout: {0}")]
    BadLayout(String),
    /// A piece index past the end of the torrent.
    #[error("piece {index} out of range (torrent has {pieces} pieces)")]
    BadPiece {
        /// The index asked for.
        index: u32,
        /// Pieces in the torrent.
        pieces: u32,
    },
    /// A block that does not fit in its piece, or piece data of the wrong size.
    #[error("{len} bytes at offset {begin} do not fit piece {index} of {piece_len} bytes")]
    BadRange {
        /// The piece.
        index: u32,
        /// Offset of the block in the piece.
        begin: u32,
        /// Length of the block (or of the piece data given).
        len: usize,
        /// Length of the piece.
        piece_len: u32,
    },
    /// The data is not on disk: the file is missing or shorter than the torrent says.
    #[error("{path} is missing or shorter than the torrent says")]
    Missing {
        /// The file.
        path: PathBuf,
    },
}

/// Maps an I/O error on `path` to a [`StorageError`]: `ENOSPC` and `EDQUOT` become
/// [`StorageError::DiskFull`].
pub fn io_error(path: &Path, source: io::Error) -> StorageError {
    match source.raw_os_error() {
        Some(code) if code == libc::ENOSPC || code == libc::EDQUOT => StorageError::DiskFull {
            path: path.to_path_buf(),
        },
        _ => StorageError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// SHA-1 of a piece (uses the SHA extensions of the CPU when present).
pub fn sha1_piece(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// One file of the torrent, resolved to a path on disk.
#[derive(Debug)]
struct Slot {
    path: PathBuf,
    offset: u64,
    length: u64,
    pad: bool,
}

/// A cached open file.
struct Handle {
    file: Arc<File>,
    writable: bool,
    used: u64,
}

/// The bounded file-handle cache.
#[derive(Default)]
struct Handles {
    map: HashMap<usize, Handle>,
    tick: u64,
}

/// Reusable state of a recheck.
struct Recheck {
    /// Size of every file when the recheck began (`None`: missing or pad).
    sizes: Vec<Option<u64>>,
    /// Piece buffer.
    buf: Vec<u8>,
    /// SHA-1 of a full piece of zeros, once computed.
    zero_full: Option<[u8; 20]>,
}

/// The part of a file that a byte range of the torrent covers.
#[derive(Clone, Copy, Debug)]
struct Segment {
    /// Index into `Storage::files`.
    file: usize,
    /// Offset in that file.
    file_off: u64,
    /// Offset in the caller's buffer.
    buf_off: usize,
    /// Bytes.
    len: usize,
}

/// Disk storage for one torrent. `Send + Sync`; share it in an `Arc`.
pub struct Storage {
    files: Vec<Slot>,
    piece_length: u32,
    total: u64,
    hashes: Vec<[u8; 20]>,
    fingerprint: [u8; 20],
    handles: Mutex<Handles>,
    /// Per file: written since the last [`Storage::flush`].
    dirty: Vec<AtomicBool>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("files", &self.files.len())
            .field("pieces", &self.hashes.len())
            .field("piece_length", &self.piece_length)
            .finish()
    }
}

impl Storage {
    /// Prepares storage of `info` under `root`: checks the layout and every path component,
    /// then creates the directories and the zero-length files. Other files are created on first
    /// write; pad files never. Nothing is created when a check fails, and existing data is never
    /// truncated.
    pub fn open(root: &Path, info: &Info) -> Result<Storage, StorageError> {
        let files = layout(root, info)?;
        let total = files.last().map_or(0, |s| s.offset + s.length);
        let base = root.join(&info.name);
        if info.multi_file {
            std::fs::create_dir_all(&base).map_err(|e| io_error(&base, e))?;
        } else {
            std::fs::create_dir_all(root).map_err(|e| io_error(root, e))?;
        }
        for slot in files.iter().filter(|s| !s.pad) {
            if let Some(parent) = slot.path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
            }
            if slot.length == 0 {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&slot.path)
                    .map_err(|e| io_error(&slot.path, e))?;
            }
        }
        let dirty = files.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Storage {
            files,
            piece_length: info.piece_length,
            total,
            hashes: info.pieces.clone(),
            fingerprint: fingerprint(info),
            handles: Mutex::new(Handles::default()),
            dirty,
        })
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        // `layout` checked that the count fits in a u32.
        self.hashes.len() as u32
    }

    /// Length of piece `index` (0 when out of range).
    pub fn piece_len(&self, index: u32) -> u32 {
        let start = u64::from(index) * u64::from(self.piece_length);
        if index >= self.num_pieces() {
            return 0;
        }
        // At most piece_length, so it fits in a u32.
        (self.total - start).min(u64::from(self.piece_length)) as u32
    }

    /// Writes piece `index`; `data` is the whole, verified piece. Spans file boundaries with
    /// positioned writes; pad-file ranges are skipped.
    pub fn write_piece(&self, index: u32, data: &[u8]) -> Result<(), StorageError> {
        let piece_len = self.check_index(index)?;
        if data.len() != piece_len as usize {
            return Err(StorageError::BadRange {
                index,
                begin: 0,
                len: data.len(),
                piece_len,
            });
        }
        let start = u64::from(index) * u64::from(self.piece_length);
        for seg in self.segments(start, data.len()) {
            let slot = &self.files[seg.file];
            if slot.pad {
                continue;
            }
            let file = self.handle(seg.file, true)?;
            let chunk = data
                .get(seg.buf_off..seg.buf_off + seg.len)
                .unwrap_or_default();
            file.write_all_at(chunk, seg.file_off)
                .map_err(|e| io_error(&slot.path, e))?;
            start_writeback(&file, seg.file_off, seg.len);
            self.dirty[seg.file].store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `begin` in piece `index`. Pad ranges read as zeros; a missing
    /// file or a read past its end is [`StorageError::Missing`].
    pub fn read(&self, index: u32, begin: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let piece_len = self.check_index(index)?;
        if u64::from(begin) + buf.len() as u64 > u64::from(piece_len) {
            return Err(StorageError::BadRange {
                index,
                begin,
                len: buf.len(),
                piece_len,
            });
        }
        let start = u64::from(index) * u64::from(self.piece_length) + u64::from(begin);
        self.read_range(start, buf)
    }

    /// Reads piece `index` back and compares its SHA-1. A missing or short file is `Ok(false)`.
    pub fn verify_piece(&self, index: u32) -> Result<bool, StorageError> {
        let mut buf = Vec::new();
        self.verify_into(index, &mut buf)
    }

    /// Rechecks every piece. Pieces whose files are missing or too short, or that lie entirely
    /// in holes of sparse files, are settled without reading. Calls `progress(done, total)`
    /// after each piece.
    pub fn check_all(&self, progress: &mut dyn FnMut(u32, u32)) -> Result<Bitfield, StorageError> {
        let n = self.num_pieces();
        let mut have = Bitfield::new(n);
        let mut rc = self.recheck();
        for index in 0..n {
            if self.check_one(index, &mut rc)? {
                have.set(index, true);
            }
            progress(index + 1, n);
        }
        Ok(have)
    }

    /// `fsync`s every file written since the last flush.
    pub fn flush(&self) -> Result<(), StorageError> {
        for (i, flag) in self.dirty.iter().enumerate() {
            if !flag.swap(false, Ordering::AcqRel) {
                continue;
            }
            let res = self
                .handle(i, false)
                .and_then(|f| f.sync_data().map_err(|e| io_error(&self.files[i].path, e)));
            if let Err(e) = res {
                flag.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }

    // ---- helpers ----

    fn check_index(&self, index: u32) -> Result<u32, StorageError> {
        if index >= self.num_pieces() {
            return Err(StorageError::BadPiece {
                index,
                pieces: self.num_pieces(),
            });
        }
        Ok(self.piece_len(index))
    }

    /// The file segments covering `len` bytes of the torrent from `start` (zero-length files
    /// skipped). The caller keeps `start + len <= total`.
    fn segments(&self, start: u64, len: usize) -> impl Iterator<Item = Segment> + '_ {
        let mut idx = self.files.partition_point(|s| s.offset + s.length <= start);
        let mut pos = start;
        let end = start + len as u64;
        std::iter::from_fn(move || {
            while pos < end {
                let slot = self.files.get(idx)?;
                let this = idx;
                idx += 1;
                if slot.length == 0 || slot.offset + slot.length <= pos {
                    continue;
                }
                let file_off = pos - slot.offset;
                let n = (slot.length - file_off).min(end - pos);
                let seg = Segment {
                    file: this,
                    file_off,
                    buf_off: (pos - start) as usize,
                    len: n as usize,
                };
                pos += n;
                return Some(seg);
            }
            None
        })
    }

    fn read_range(&self, start: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        for seg in self.segments(start, buf.len()) {
            let slot = &self.files[seg.file];
            let Some(chunk) = buf.get_mut(seg.buf_off..seg.buf_off + seg.len) else {
                continue;
            };
            if slot.pad {
                chunk.fill(0);
                continue;
            }
            let file = self.handle(seg.file, false)?;
            file.read_exact_at(chunk, seg.file_off).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    StorageError::Missing {
                        path: slot.path.clone(),
                    }
                } else {
                    io_error(&slot.path, e)
                }
            })?;
        }
        Ok(())
    }

    fn verify_into(&self, index: u32, buf: &mut Vec<u8>) -> Result<bool, StorageError> {
        let piece_len = self.check_index(index)?;
        buf.resize(piece_len as usize, 0);
        let start = u64::from(index) * u64::from(self.piece_length);
        match self.read_range(start, buf) {
            Ok(()) => Ok(sha1_piece(buf) == self.hashes[index as usize]),
            Err(StorageError::Missing { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// State for a recheck: the current size of every non-pad file (`None`: missing).
    fn recheck(&self) -> Recheck {
        let sizes = self
            .files
            .iter()
            .map(|s| {
                if s.pad {
                    None
                } else {
                    std::fs::metadata(&s.path).ok().map(|m| m.len())
                }
            })
            .collect();
        Recheck {
            sizes,
            buf: Vec::new(),
            zero_full: None,
        }
    }

    /// Verifies one piece during a recheck, settling missing, short and all-hole pieces
    /// without reading.
    fn check_one(&self, index: u32, rc: &mut Recheck) -> Result<bool, StorageError> {
        let piece_len = self.piece_len(index);
        let start = u64::from(index) * u64::from(self.piece_length);
        let mut all_holes = true;
        for seg in self.segments(start, piece_len as usize) {
            if self.files[seg.file].pad {
                continue;
            }
            let end = seg.file_off + seg.len as u64;
            match rc.sizes.get(seg.file).copied().flatten() {
                Some(size) if size >= end => {}
                _ => return Ok(false),
            }
            if all_holes {
                let file = self.handle(seg.file, false)?;
                all_holes = is_hole(&file, seg.file_off, seg.len as u64);
            }
        }
        if all_holes {
            // Every byte of the piece reads as zero.
            let zeros = if piece_len == self.piece_length {
                *rc.zero_full.get_or_insert_with(|| zero_hash(piece_len))
            } else {
                zero_hash(piece_len)
            };
            return Ok(zeros == self.hashes[index as usize]);
        }
        self.verify_into(index, &mut rc.buf)
    }

    /// An open handle to file `i`, writable (created and extended to its length) if asked.
    fn handle(&self, i: usize, write: bool) -> Result<Arc<File>, StorageError> {
        {
            let mut h = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            h.tick += 1;
            let tick = h.tick;
            if let Some(entry) = h.map.get_mut(&i) {
                if entry.writable || !write {
                    entry.used = tick;
                    return Ok(entry.file.clone());
                }
            }
        }
        let slot = &self.files[i];
        let file = Arc::new(if write {
            open_for_write(slot)?
        } else {
            open_for_read(slot)?
        });
        let evicted = {
            let mut h = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            h.tick += 1;
            let used = h.tick;
            h.map.insert(
                i,
                Handle {
                    file: file.clone(),
                    writable: write,
                    used,
                },
            );
            let mut evicted = None;
            if h.map.len() > MAX_OPEN_FILES {
                if let Some(&old) = h.map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k) {
                    evicted = h.map.remove(&old);
                }
            }
            evicted
        };
        // Closing happens outside the lock.
        drop(evicted);
        Ok(file)
    }
}

/// Resume data: which pieces were verified, and the size and mtime of every file at that time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Verified pieces.
    pub have: Bitfield,
    /// Per torrent file, in order: (length, mtime in Unix seconds). Pad and missing files are
    /// `(0, i64::MIN)`.
    pub files: Vec<(u64, i64)>,
}

const RESUME_MAGIC: &str = "peercdn-resume 1";

impl Resume {
    /// Flushes `storage`, then atomically writes resume data (a small text file: info hash,
    /// layout fingerprint, piece count, bitfield, file stamps) to `path` via a temporary file
    /// and a rename.
    pub fn save(
        path: &Path,
        info_hash_hex: &str,
        have: &Bitfield,
        storage: &Storage,
    ) -> Result<(), StorageError> {
        storage.flush()?;
        let mut text = format!(
            "{RESUME_MAGIC}\ninfo_hash {}\nfingerprint {}\npieces {}\nhave {}\n",
            info_hash_hex.trim(),
            hex::encode(storage.fingerprint),
            storage.num_pieces(),
            hex::encode(have.as_bytes()),
        );
        for (len, mtime) in storage.stamps() {
            text.push_str(&format!("file {len} {mtime}\n"));
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename durable; not fatal if the directory can't be opened.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Reads resume data from `path`: (info hash, layout fingerprint, data). `None` when the
    /// file is missing, unreadable or malformed.
    fn load(path: &Path, num_pieces: u32) -> Option<(String, [u8; 20], Resume)> {
        let meta = std::fs::metadata(path).ok()?;
        if meta.len() > MAX_RESUME_BYTES {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        parse_resume(&text, num_pieces)
    }

    /// The pieces of `storage` that are verified. When the resume file at `path` matches
    /// (same layout, same piece count, every file's size and mtime unchanged) its bitfield is
    /// trusted and only the pieces not in it whose bytes exist on disk are hash-checked (they
    /// may have been written after the last save). Otherwise every piece is rechecked.
    pub fn load_and_check(
        path: &Path,
        info: &Info,
        storage: &Storage,
        progress: &mut dyn FnMut(u32, u32),
    ) -> Result<Bitfield, StorageError> {
        let n = storage.num_pieces();
        let fp = fingerprint(info);
        let trusted = match Resume::load(path, n) {
            Some((_, saved_fp, resume))
                if saved_fp == fp
                    && storage.fingerprint == fp
                    && resume.files == storage.stamps() =>
            {
                Some(resume.have)
            }
            Some(_) => {
                tracing::info!(path = %path.display(), "resume data stale; rechecking all pieces");
                None
            }
            None => None,
        };
        let Some(mut have) = trusted else {
            return storage.check_all(progress);
        };
        let mut rc = storage.recheck();
        for index in 0..n {
            if !have.get(index) && storage.check_one(index, &mut rc)? {
                have.set(index, true);
            }
            progress(index + 1, n);
        }
        Ok(have)
    }
}

impl Storage {
    /// (length, mtime) of every torrent file now; pad and missing files are `(0, i64::MIN)`.
    fn stamps(&self) -> Vec<(u64, i64)> {
        self.files
            .iter()
            .map(|s| match std::fs::metadata(&s.path) {
                Ok(m) if !s.pad => (m.len(), m.mtime()),
                _ => (0, i64::MIN),
            })
            .collect()
    }
}

fn parse_resume(text: &str, num_pieces: u32) -> Option<(String, [u8; 20], Resume)> {
    let mut lines = text.lines();
    if lines.next()? != RESUME_MAGIC {
        return None;
    }
    let mut field = |key: &str| -> Option<String> {
        let line = lines.next()?;
        line.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned)
    };
    let info_hash = field("info_hash")?;
    let fp: [u8; 20] = hex::decode(field("fingerprint")?).ok()?.try_into().ok()?;
    let pieces: u32 = field("pieces")?.parse().ok()?;
    if pieces != num_pieces {
        return None;
    }
    let have = Bitfield::from_wire(&hex::decode(field("have")?).ok()?, pieces).ok()?;
    let mut files = Vec::new();
    for line in lines {
        let mut parts = line.strip_prefix("file ")?.split(' ');
        let len = parts.next()?.parse().ok()?;
        let mtime = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        files.push((len, mtime));
    }
    Some((info_hash, fp, Resume { have, files }))
}

/// Checks the layout of `info` and resolves every file to a path under `root`.
fn layout(root: &Path, info: &Info) -> Result<Vec<Slot>, StorageError> {
    check_component(&info.name)?;
    if info.piece_length == 0 {
        return Err(StorageError::BadLayout("piece length is zero".into()));
    }
    if !info.multi_file && (info.files.len() != 1 || info.files.iter().any(|f| !f.path.is_empty()))
    {
        return Err(StorageError::BadLayout(
            "single-file torrent must have one unnamed file".into(),
        ));
    }
    let base = root.join(&info.name);
    let mut seen = HashSet::new();
    let mut slots = Vec::with_capacity(info.files.len());
    let mut offset = 0u64;
    for f in &info.files {
        if info.multi_file && f.path.is_empty() {
            return Err(StorageError::BadLayout("file with an empty path".into()));
        }
        let mut path = base.clone();
        for c in &f.path {
            check_component(c)?;
            path.push(c);
        }
        if !f.pad && !seen.insert(path.clone()) {
            return Err(StorageError::BadLayout(format!(
                "duplicate file {}",
                path.display()
            )));
        }
        slots.push(Slot {
            path,
            offset,
            length: f.length,
            pad: f.pad,
        });
        offset = offset
            .checked_add(f.length)
            .ok_or_else(|| StorageError::BadLayout("total length overflows".into()))?;
    }
    let want = offset.div_ceil(u64::from(info.piece_length));
    if want != info.pieces.len() as u64 || want > u64::from(u32::MAX) {
        return Err(StorageError::BadLayout(format!(
            "{} piece hashes for {offset} bytes in pieces of {}",
            info.pieces.len(),
            info.piece_length
        )));
    }
    Ok(slots)
}

/// Refuses anything but a plain file name.
fn check_component(c: &str) -> Result<(), StorageError> {
    if c.is_empty() || c == "." || c == ".." || c.contains(['/', '\\', '\0']) {
        return Err(StorageError::BadPath(c.to_owned()));
    }
    Ok(())
}

/// A digest of everything that fixes where bytes go and what they hash to.
fn fingerprint(info: &Info) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(info.piece_length.to_be_bytes());
    h.update((info.pieces.len() as u64).to_be_bytes());
    for p in &info.pieces {
        h.update(p);
    }
    h.update(info.name.as_bytes());
    for f in &info.files {
        h.update([0xff, u8::from(f.pad)]);
        h.update(f.length.to_be_bytes());
        for c in &f.path {
            h.update((c.len() as u64).to_be_bytes());
            h.update(c.as_bytes());
        }
    }
    h.finalize().into()
}

fn open_for_read(slot: &Slot) -> Result<File, StorageError> {
    File::open(&slot.path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            StorageError::Missing {
                path: slot.path.clone(),
            }
        } else {
            io_error(&slot.path, e)
        }
    })
}

fn open_for_write(slot: &Slot) -> Result<File, StorageError> {
    if let Some(parent) = slot.path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&slot.path)
        .map_err(|e| io_error(&slot.path, e))?;
    let len = file.metadata().map_err(|e| io_error(&slot.path, e))?.len();
    if len < slot.length {
        file.set_len(slot.length)
            .map_err(|e| io_error(&slot.path, e))?;
    }
    Ok(file)
}

/// True when `len` bytes at `start` of `file` are entirely a hole (read as zeros without being
/// stored). Conservative: false whenever the file system can't tell.
fn is_hole(file: &File, start: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(off) = libc::off_t::try_from(start) else {
        return false;
    };
    // SAFETY: lseek on a file descriptor we own, no memory is touched. Moving the file
    // position is harmless: all I/O here is positioned (pread/pwrite).
    let next = unsafe { libc::lseek(file.as_raw_fd(), off, libc::SEEK_DATA) };
    if next < 0 {
        // ENXIO: no data at or after `start`. Anything else: unsupported, assume data.
        return io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO);
    }
    u64::try_from(next).is_ok_and(|n| n >= start + len)
}

/// SHA-1 of `len` zero bytes.
fn zero_hash(len: u32) -> [u8; 20] {
    static ZEROS: [u8; 16384] = [0; 16384];
    let mut h = Sha1::new();
    let mut left = len as usize;
    while left > 0 {
        let n = left.min(ZEROS.len());
        h.update(&ZEROS[..n]);
        left -= n;
    }
    h.finalize().into()
}

/// Asks the kernel to start writing a just-written range back to disk, without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Writeback then runs during the download instead
/// of all at once in the fsync that precedes every resume save, which keeps that fsync short.
/// Best effort: an error here changes nothing (the fsync still decides).
fn start_writeback(file: &File, offset: u64, len: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range on a descriptor we own; no memory is passed.
        let _ =
            unsafe { libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

#[cfg(test)]
mod tests;
