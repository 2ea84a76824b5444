//! Building a torrent's info dictionary from local files (what `peercdn publish` hashes).
//!
//! [`scan`] lists the files of a path in torrent order; [`build_info`] hashes them into an
//! [`Info`] whose layout is exactly the one [`crate::storage::Storage`] reads back. Hashing reads
//! files sequentially into one reusable buffer holding whole pieces and hashes the pieces of each
//! buffer on two threads; nothing is allocated per piece.
//!
//! This module writes nothing to disk and knows nothing of bencode: turning the [`Info`] into a
//! `.torrent` is the metainfo module's job.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use peercdn_core::metainfo::{auto_piece_length, FileEntry, Info};
use sha1::{Digest, Sha1};

/// Smallest piece length accepted (and chosen).
pub const MIN_PIECE_LENGTH: u32 = 16 << 10;
/// Largest piece length accepted.
pub const MAX_PIECE_LENGTH: u32 = 64 << 20;
/// Most files one torrent may hold.
pub const MAX_FILES: usize = 1_000_000;

/// Bytes read per buffer (rounded to whole pieces, at least two pieces).
const READ_CHUNK: usize = 4 << 20;

/// How to build the torrent.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Piece length; `None` picks one aiming at about 1,500 pieces (16 KiB to 16 MiB).
    pub piece_length: Option<u32>,
    /// Set the BEP 27 `private` flag.
    pub private: bool,
}

/// Why a torrent could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// An I/O error on a file or directory.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Nothing to share: no files, or only empty ones.
    #[error("{0} holds no data to share (no non-hidden regular files, or only empty ones)")]
    Empty(PathBuf),
    /// A file name that is not UTF-8 or is not a plain name a torrent can carry.
    #[error("file name {0:?} can't be put in a torrent (not UTF-8, or contains '\\\\')")]
    BadName(PathBuf),
    /// More than [`MAX_FILES`] files.
    #[error("{0} holds more than {MAX_FILES} files")]
    TooManyFiles(PathBuf),
    /// The piece length asked for is not a power of two in the accepted range.
    #[error(
        "piece length {0} must be a power of two from {MIN_PIECE_LENGTH} to {MAX_PIECE_LENGTH}"
    )]
    BadPieceLength(u32),
    /// The total size needs more pieces than a torrent can index.
    #[error("content too large for piece length {0}")]
    TooLarge(u32),
    /// A file changed size while it was being hashed.
    #[error("{0} changed while it was being hashed")]
    Changed(PathBuf),
}

/// Files found by [`scan`]: (path components relative to the scanned directory, length).
pub type ScannedFiles = Vec<(Vec<String>, u64)>;

/// Lists what a torrent of `path` holds: its name and its files as (path components relative
/// to `path`, length). A file gives one entry with no components. A directory is walked
/// recursively, sorted by path components (byte order), skipping hidden entries (`.name`),
/// symbolic links and anything not a regular file; empty directories vanish, empty files stay.
/// `path` itself may be a symbolic link.
pub fn scan(path: &Path) -> Result<(String, ScannedFiles), CreateError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CreateError::Io { path: p, source }
    };
    let full = std::fs::canonicalize(path).map_err(io_err(path))?;
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_plain(n))
        .ok_or_else(|| CreateError::BadName(full.clone()))?
        .to_owned();
    let meta = std::fs::metadata(&full).map_err(io_err(&full))?;
    if meta.is_file() {
        return Ok((name, vec![(Vec::new(), meta.len())]));
    }
    let mut files = Vec::new();
    // Explicit stack of (directory, its components): no recursion depth limit to hit.
    let mut stack = vec![(full.clone(), Vec::<String>::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let os_name = entry.file_name();
            let Some(n) = os_name.to_str() else {
                return Err(CreateError::BadName(entry.path()));
            };
            if n.starts_with('.') {
                continue;
            }
            if !is_plain(n) {
                return Err(CreateError::BadName(entry.path()));
            }
            let kind = entry.file_type().map_err(io_err(&entry.path()))?;
            let mut comps = prefix.clone();
            comps.push(n.to_owned());
            if kind.is_dir() {
                stack.push((entry.path(), comps));
            } else if kind.is_file() {
                let len = entry.metadata().map_err(io_err(&entry.path()))?.len();
                if files.len() >= MAX_FILES {
                    return Err(CreateError::TooManyFiles(full));
                }
                files.push((comps, len));
            }
        }
    }
    if files.is_empty() {
        return Err(CreateError::Empty(full));
    }
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok((name, files))
}

/// Builds the info dictionary of `path` (see [`scan`]), hashing every piece. `progress` gets
/// (bytes hashed, total bytes) after each buffer. A file gives a single-file torrent, a
/// directory a multi-file one.
pub fn build_info(
    path: &Path,
    opts: &CreateOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Info, CreateError> {
    let full = std::fs::canonicalize(path).map_err(|source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let is_dir = full.is_dir();
    let (name, list) = scan(&full)?;
    let total: u64 = list.iter().map(|(_, len)| *len).sum();
    if total == 0 {
        return Err(CreateError::Empty(full));
    }
    let piece_length = match opts.piece_length {
        Some(pl)
            if !pl.is_power_of_two() || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&pl) =>
        {
            return Err(CreateError::BadPieceLength(pl))
        }
        Some(pl) => pl,
        None => auto_piece_length(total),
    };
    let num_pieces = total.div_ceil(u64::from(piece_length));
    if num_pieces > u64::from(u32::MAX) {
        return Err(CreateError::TooLarge(piece_length));
    }

    let mut files = Vec::with_capacity(list.len());
    let mut offset = 0;
    for (comps, length) in &list {
        files.push(FileEntry {
            path: comps.clone(),
            length: *length,
            offset,
            pad: false,
        });
        offset += length;
    }
    let paths: Vec<PathBuf> = list
        .iter()
        .map(|(comps, _)| comps.iter().fold(full.clone(), |p, c| p.join(c)))
        .collect();
    let pieces = hash_files(&paths, &files, piece_length, total, progress)?;
    Ok(Info {
        name,
        piece_length,
        pieces,
        files,
        private: opts.private,
        multi_file: is_dir,
    })
}

/// Hashes the concatenation of `paths` (lengths from `files`) into piece hashes.
fn hash_files(
    paths: &[PathBuf],
    files: &[FileEntry],
    piece_length: u32,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<[u8; 20]>, CreateError> {
    let pl = piece_length as usize;
    let per_chunk = (READ_CHUNK / pl).max(2);
    let mut buf = vec![0u8; per_chunk * pl];
    let mut pieces = Vec::with_capacity(total.div_ceil(u64::from(piece_length)) as usize);

    // Reader state: which file, how much of it is read, its open handle.
    let mut file_idx = 0;
    let mut file_done = 0u64;
    let mut current: Option<File> = None;
    let mut hashed = 0u64;
    while hashed < total {
        // Fill the buffer (or what is left of the content).
        let want = (total - hashed).min(buf.len() as u64) as usize;
        let mut filled = 0;
        while filled < want {
            let (Some(path), Some(entry)) = (paths.get(file_idx), files.get(file_idx)) else {
                break;
            };
            if file_done == entry.length {
                file_idx += 1;
                file_done = 0;
                current = None;
                continue;
            }
            let file = match current.as_mut() {
                Some(f) => f,
                None => current.insert(File::open(path).map_err(|source| CreateError::Io {
                    path: path.clone(),
                    source,
                })?),
            };
            let n = ((entry.length - file_done) as usize).min(want - filled);
            let dst = buf.get_mut(filled..filled + n).unwrap_or_default();
            read_full(file, dst, path)?;
            filled += n;
            file_done += n as u64;
        }
        if filled < want {
            // Lengths come from `scan`; running out means a file vanished from the list.
            return Err(CreateError::Changed(
                paths.last().cloned().unwrap_or_default(),
            ));
        }
        hash_chunk(buf.get(..filled).unwrap_or_default(), pl, &mut pieces);
        hashed += filled as u64;
        progress(hashed, total);
    }
    // A file that grew since `scan` is hashed only up to its scanned length; say so.
    if let Some(path) = paths.iter().zip(files).find_map(|(p, f)| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.len() != f.length)
            .map(|_| p.clone())
    }) {
        return Err(CreateError::Changed(path));
    }
    Ok(pieces)
}

/// Reads exactly `dst.len()` bytes; a short file means it shrank since the scan.
fn read_full(file: &mut File, dst: &mut [u8], path: &Path) -> Result<(), CreateError> {
    file.read_exact(dst).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            CreateError::Changed(path.to_path_buf())
        } else {
            CreateError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Appends the hashes of the pieces in `data` (whole pieces, the last one possibly short),
/// hashing the two halves on two threads when there are several pieces.
fn hash_chunk(data: &[u8], pl: usize, out: &mut Vec<[u8; 20]>) {
    let n = data.len().div_ceil(pl);
    if n < 2 {
        out.extend(
            data.chunks(pl)
                .map(|p| -> [u8; 20] { Sha1::digest(p).into() }),
        );
        return;
    }
    let split = n / 2 * pl;
    let (a, b) = data.split_at(split);
    let start = out.len();
    out.resize(start + n, [0; 20]);
    let (out_a, out_b) = out.get_mut(start..).unwrap_or_default().split_at_mut(n / 2);
    std::thread::scope(|s| {
        s.spawn(|| hash_into(b, pl, out_b));
        hash_into(a, pl, out_a);
    });
}

fn hash_into(data: &[u8], pl: usize, out: &mut [[u8; 20]]) {
    for (piece, slot) in data.chunks(pl).zip(out.iter_mut()) {
        *slot = Sha1::digest(piece).into();
    }
}

/// A name a torrent can carry and every client can write: not `.`/`..`, no separators.
fn is_plain(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\', '\0'])
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests measure real elapsed time
mod tests {
    use super::*;
    use crate::storage::{sha1_piece, Storage};

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(13) ^ seed ^ (i >> 9) as u8)
            .collect()
    }

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("b/deep")).unwrap();
        std::fs::create_dir_all(dir.join("emptydir")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(dir.join("a.txt"), bytes(40_000, 1)).unwrap();
        std::fs::write(dir.join("b/deep/z.bin"), bytes(100_001, 2)).unwrap();
        std::fs::write(dir.join("b/empty"), b"").unwrap();
        std::fs::write(dir.join("b/c.bin"), bytes(16_385, 3)).unwrap();
        std::fs::write(dir.join(".hidden"), b"secret").unwrap();
        std::fs::write(dir.join(".git/config"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.join("a.txt"), dir.join("link")).unwrap();
    }

    #[test]
    fn scan_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("content");
        tree(&root);
        let (name, files) = scan(&root).unwrap();
        assert_eq!(name, "content");
        let got: Vec<(String, u64)> = files.iter().map(|(p, l)| (p.join("/"), *l)).collect();
        let want = [
            ("a.txt", 40_000),
            ("b/c.bin", 16_385),
            ("b/deep/z.bin", 100_001),
            ("b/empty", 0),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|(p, l)| (p.to_string(), *l)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn scan_single_file_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("movie.mkv");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(
            scan(&f).unwrap(),
            ("movie.mkv".to_string(), vec![(vec![], 5)])
        );
        let empty = tmp.path().join("nothing");
        std::fs::create_dir_all(empty.join("sub")).unwrap();
        std::fs::write(empty.join(".dot"), b"x").unwrap();
        assert!(matches!(scan(&empty), Err(CreateError::Empty(_))));
        assert!(matches!(
            scan(&tmp.path().join("absent")),
            Err(CreateError::Io { .. })
        ));
        std::fs::write(empty.join("back\\slash"), b"x").unwrap();
        assert!(matches!(scan(&empty), Err(CreateError::BadName(_))));
    }

    #[test]
    fn build_info_directory_verifies_with_storage() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("content");
        tree(&root);
        // A small piece length gives many pieces per buffer (the two-thread path) and pieces
        // that straddle files.
        let opts = CreateOptions {
            piece_length: Some(16384),
            private: true,
        };
        let mut last = (0, 0);
        let info = build_info(&root, &opts, &mut |d, t| last = (d, t)).unwrap();
        assert_eq!(last, (156_386, 156_386));
        assert!(info.multi_file && info.private);
        assert_eq!(info.name, "content");
        assert_eq!(info.pieces.len(), 156_386usize.div_ceil(16384));
        assert_eq!(info.files[1].offset, 40_000);
        // The hashes match the concatenation.
        let mut all = bytes(40_000, 1);
        all.extend(bytes(16_385, 3));
        all.extend(bytes(100_001, 2));
        for (i, p) in all.chunks(16384).enumerate() {
            assert_eq!(info.pieces[i], sha1_piece(p), "piece {i}");
        }
        // And storage rooted at the parent reads the very same files.
        let st = Storage::open(tmp.path(), &info).unwrap();
        assert!(st.check_all(&mut |_, _| {}).unwrap().is_full());
    }

    #[test]
    fn build_info_single_file_and_big_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("data.bin");
        let data = bytes(5 << 20 | 123, 4);
        std::fs::write(&f, &data).unwrap();
        for pl in [None, Some(4 << 20), Some(8 << 20)] {
            let info = build_info(
                &f,
                &CreateOptions {
                    piece_length: pl,
                    private: false,
                },
                &mut |_, _| {},
            )
            .unwrap();
            assert!(!info.multi_file);
            assert_eq!(info.files.len(), 1);
            assert!(info.files[0].path.is_empty());
            let pl = info.piece_length as usize;
            assert_eq!(pl, pl.next_power_of_two());
            let want: Vec<[u8; 20]> = data.chunks(pl).map(sha1_piece).collect();
            assert_eq!(info.pieces, want);
            let st = Storage::open(tmp.path(), &info).unwrap();
            assert!(st.check_all(&mut |_, _| {}).unwrap().is_full());
        }
    }

    #[test]
    fn build_info_refuses_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("x");
        std::fs::write(&f, b"abc").unwrap();
        for pl in [0, 1000, 8192, 128 << 20] {
            let opts = CreateOptions {
                piece_length: Some(pl),
                private: false,
            };
            assert!(matches!(
                build_info(&f, &opts, &mut |_, _| {}),
                Err(CreateError::BadPieceLength(_))
            ));
        }
        let e = tmp.path().join("e");
        std::fs::write(&e, b"").unwrap();
        let opts = CreateOptions::default();
        assert!(matches!(
            build_info(&e, &opts, &mut |_, _| {}),
            Err(CreateError::Empty(_))
        ));
    }

    /// Hashing throughput; run by hand: `cargo test -p peercdn-engine --lib hash_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn hash_speed() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("big");
        std::fs::write(&f, bytes(512 << 20, 5)).unwrap();
        let t = std::time::Instant::now();
        let opts = CreateOptions {
            piece_length: Some(256 << 10),
            private: false,
        };
        build_info(&f, &opts, &mut |_, _| {}).unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "hashed 512 MiB in {secs:.3} s: {:.0} MB/s",
            512.0 * 1.048576 / secs
        );
    }
}
