//! Building a new torrent from local files (for `peercdn publish`): walk the path, hash the
//! pieces, return the `Info` dictionary.
//!
//! Files are read sequentially with one reusable 4 MiB buffer and pieces hashed as they fill,
//! across file boundaries, so hashing runs at the speed of SHA-1 (hardware-accelerated by the
//! `sha1` crate where the CPU has SHA-NI) with no allocation per piece.

use std::io::Read;
use std::path::{Path, PathBuf};

use peercdn_core::metainfo::{auto_piece_length, FileEntry, Info};
use sha1::{Digest, Sha1};

/// Options for [`build_info`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Piece length; default chosen from the total size ([`auto_piece_length`]).
    pub piece_length: Option<u32>,
    /// Set the BEP 27 private flag.
    pub private: bool,
}

/// Why a torrent could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Reading a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Nothing to publish.
    #[error("{0} holds no files to publish")]
    Empty(PathBuf),
    /// A name that cannot go into a torrent (not UTF-8).
    #[error("{0}: file names must be valid UTF-8")]
    BadName(PathBuf),
    /// A piece length of zero or above 64 MiB.
    #[error("piece length {0} is out of range (16 KiB .. 64 MiB)")]
    BadPieceLength(u32),
    /// The files changed while they were being hashed.
    #[error("{0} changed while it was being hashed")]
    Changed(PathBuf),
}

/// A file found by [`scan`]: path components under the torrent's directory, and length.
pub type ScannedFile = (Vec<String>, u64);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lists the files to publish: the torrent name, and each file's path components (relative to
/// `path` for a directory, empty for a single file) with its length. Directories are walked
/// recursively in byte order of their paths; hidden entries (`.name`) are skipped and symlinks
/// are not followed.
pub fn scan(path: &Path) -> Result<(String, Vec<ScannedFile>), CreateError> {
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CreateError::BadName(path.to_path_buf()))?
        .to_string();
    if meta.is_file() {
        return Ok((name, vec![(vec![], meta.len())]));
    }
    let mut files = Vec::new();
    walk(path, &mut Vec::new(), &mut files)?;
    if files.is_empty() {
        return Err(CreateError::Empty(path.to_path_buf()));
    }
    Ok((name, files))
}

fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<ScannedFile>,
) -> Result<(), CreateError> {
    let mut entries: Vec<(String, std::fs::FileType, u64)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e
            .file_name()
            .into_string()
            .map_err(|_| CreateError::BadName(e.path()))?;
        if name.starts_with('.') {
            continue;
        }
        let meta = e.metadata().map_err(io(&e.path()))?;
        entries.push((name, meta.file_type(), meta.len()));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, ft, len) in entries {
        let sub = dir.join(&name);
        prefix.push(name);
        if ft.is_dir() {
            walk(&sub, prefix, out)?;
        } else if ft.is_file() {
            out.push((prefix.clone(), len));
        }
        prefix.pop();
    }
    Ok(())
}

/// Hashes the file or directory at `path` into an info dictionary. `progress(done, total)` is
/// called as bytes are hashed.
pub fn build_info(
    path: &Path,
    opts: &CreateOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Info, CreateError> {
    let (name, list) = scan(path)?;
    let multi_file = std::fs::metadata(path).map_err(io(path))?.is_dir();
    let total: u64 = list.iter().map(|(_, l)| l).sum();
    let piece_length = opts
        .piece_length
        .unwrap_or_else(|| auto_piece_length(total));
    if !(16 * 1024..=64 << 20).contains(&piece_length) {
        return Err(CreateError::BadPieceLength(piece_length));
    }
    let mut files = Vec::with_capacity(list.len());
    let mut offset = 0;
    for (p, length) in &list {
        files.push(FileEntry {
            path: p.clone(),
            length: *length,
            offset,
            pad: false,
        });
        offset += length;
    }
    let mut pieces = Vec::with_capacity(total.div_ceil(piece_length as u64) as usize);
    let mut hasher = Sha1::new();
    let mut in_piece: u64 = 0;
    let mut done: u64 = 0;
    let mut buf = vec![0u8; 4 << 20];
    progress(0, total);
    for (p, length) in &list {
        let file_path = p.iter().fold(path.to_path_buf(), |acc, c| acc.join(c));
        let mut f = std::fs::File::open(&file_path).map_err(io(&file_path))?;
        let mut left = *length;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = f.read(&mut buf[..want]).map_err(io(&file_path))?;
            if n == 0 {
                return Err(CreateError::Changed(file_path));
            }
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                let take = chunk.len().min((piece_length as u64 - in_piece) as usize);
                hasher.update(&chunk[..take]);
                in_piece += take as u64;
                chunk = &chunk[take..];
                if in_piece == piece_length as u64 {
                    pieces.push(hasher.finalize_reset().into());
                    in_piece = 0;
                }
            }
            left -= n as u64;
            done += n as u64;
            progress(done, total);
        }
    }
    if in_piece > 0 {
        pieces.push(hasher.finalize_reset().into());
    }
    Ok(Info {
        name,
        piece_length,
        pieces,
        files,
        private: opts.private,
        multi_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_concatenated_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pub");
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        let a: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let c: Vec<u8> = (0..40_000u32).map(|i| (i * 3) as u8).collect();
        std::fs::write(root.join("a.bin"), &a).unwrap();
        std::fs::write(root.join("b/c/d.bin"), &c).unwrap();
        std::fs::write(root.join(".hidden"), b"x").unwrap();
        let info = build_info(
            &root,
            &CreateOptions {
                piece_length: Some(16384),
                private: false,
            },
            &mut |_, _| {},
        )
        .unwrap();
        assert!(info.multi_file);
        assert_eq!(info.files.len(), 2, "hidden file skipped");
        assert_eq!(info.files[1].path, vec!["b", "c", "d.bin"]);
        let all: Vec<u8> = a.iter().chain(&c).copied().collect();
        let expect: Vec<[u8; 20]> = all
            .chunks(16384)
            .map(|ch| Sha1::digest(ch).into())
            .collect();
        assert_eq!(info.pieces, expect);
    }

    #[test]
    fn single_file_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("one.ts");
        std::fs::write(&f, vec![7u8; 1000]).unwrap();
        let info = build_info(&f, &CreateOptions::default(), &mut |_, _| {}).unwrap();
        assert!(!info.multi_file);
        assert_eq!(info.name, "one.ts");
        assert_eq!(info.files[0].path, Vec::<String>::new());
        assert_eq!(info.pieces.len(), 1);
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(
            build_info(&empty, &CreateOptions::default(), &mut |_, _| {}),
            Err(CreateError::Empty(_))
        ));
        assert!(build_info(
            &dir.path().join("missing"),
            &CreateOptions::default(),
            &mut |_, _| {}
        )
        .is_err());
    }
}
