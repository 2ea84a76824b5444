//! `.torrent` (BitTorrent v1) metainfo: parse, validate, build and write.
//!
//! The info hash is computed over the info dictionary's bytes exactly as received (kept by the
//! bencode decoder), never over a re-encoding. File paths are validated at parse time: a path with
//! `..`, an absolute component, an empty component or a NUL is refused, so later layers can join
//! paths without checking again.

use std::path::PathBuf;

use crate::bencode::{self, BencodeError, Dict, OwnedValue, Value};
use crate::id::InfoHash;

/// A parsed `.torrent` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    /// The info dictionary, parsed.
    pub info: Info,
    /// SHA-1 of `info_bytes`.
    pub info_hash: InfoHash,
    /// The info dictionary's raw bencoded bytes (what ut_metadata serves).
    pub info_bytes: Vec<u8>,
    /// Tiers of tracker URLs (`announce-list`, or `announce` as a single tier).
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 web seed URLs (`url-list`).
    pub url_list: Vec<String>,
    /// `comment`, if any.
    pub comment: Option<String>,
    /// `created by`, if any.
    pub created_by: Option<String>,
    /// `creation date` (Unix seconds), if any.
    pub creation_date: Option<i64>,
}

/// The info dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// `name`: the file name (single-file) or the directory name (multi-file).
    pub name: String,
    /// `piece length`.
    pub piece_length: u32,
    /// SHA-1 of each piece.
    pub pieces: Vec<[u8; 20]>,
    /// Files in order. A single-file torrent has one entry whose `path` is empty.
    pub files: Vec<FileEntry>,
    /// `private` flag (BEP 27).
    pub private: bool,
    /// True for the multi-file form (`files` list), even with one file.
    pub multi_file: bool,
}

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components under the torrent's directory (validated; empty for single-file torrents).
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// Byte offset of the file in the torrent's concatenated data.
    pub offset: u64,
    /// BEP 47 padding file (`attr` contains `p`): never written to disk.
    pub pad: bool,
}

/// Largest accepted `piece length` (64 MiB).
pub const MAX_PIECE_LENGTH: u32 = 64 * 1024 * 1024;
/// Most files accepted in one torrent.
pub const MAX_FILES: usize = 100_000;
/// Most tracker URLs kept from `announce-list` (all tiers together).
pub const MAX_TRACKERS: usize = 256;
/// Most web seeds kept from `url-list`.
pub const MAX_WEB_SEEDS: usize = 64;

/// Why bytes are not an acceptable `.torrent` or info dictionary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// Not bencode.
    #[error("invalid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The top level (or the info value) is not a dictionary.
    #[error("{0} is not a bencoded dictionary")]
    NotADict(&'static str),
    /// A required key is missing.
    #[error("missing required key {0:?}")]
    Missing(&'static str),
    /// A key holds a value of the wrong type.
    #[error("key {0:?} has the wrong type")]
    WrongType(&'static str),
    /// A text field that is not UTF-8.
    #[error("key {0:?} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// `piece length` out of range.
    #[error("piece length {0} is out of range (1 ..= 64 MiB)")]
    BadPieceLength(i64),
    /// `pieces` is not a whole number of SHA-1 hashes.
    #[error("pieces is {0} bytes, not a multiple of 20")]
    BadPiecesLength(usize),
    /// The number of piece hashes does not match the total length.
    #[error("{got} piece hashes for a total length needing {expected}")]
    PieceCountMismatch {
        /// ceil(total length / piece length).
        expected: u64,
        /// Hashes present.
        got: usize,
    },
    /// A file length that is negative.
    #[error("file {path:?} has invalid length {length}")]
    BadFileLength {
        /// The file's path (joined with `/`).
        path: String,
        /// The length given.
        length: i64,
    },
    /// The total length is zero or overflows.
    #[error("total length is zero or too large")]
    BadTotalLength,
    /// More than [`MAX_FILES`] files.
    #[error("{0} files, more than the {MAX_FILES} accepted")]
    TooManyFiles(usize),
    /// A name or path that could escape the download directory or is not portable.
    #[error("unsafe path {path:?}: {reason}")]
    BadPath {
        /// The offending path (joined with `/`, lossy).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Metainfo {
    /// Parses a `.torrent` file. The info hash is the SHA-1 of the info dictionary's raw span.
    pub fn from_bytes(buf: &[u8]) -> Result<Metainfo, MetainfoError> {
        let top = bencode::decode(buf)?;
        let top = top.as_dict().ok_or(MetainfoError::NotADict("torrent"))?;
        let info = match top.get(b"info") {
            None => return Err(MetainfoError::Missing("info")),
            Some(v) => v.as_dict().ok_or(MetainfoError::NotADict("info"))?,
        };
        let info_bytes = info.raw().to_vec();
        Ok(Metainfo {
            info: Info::from_dict(info)?,
            info_hash: InfoHash::of_info(&info_bytes),
            info_bytes,
            trackers: parse_trackers(top),
            url_list: parse_url_list(top),
            comment: text(top, "comment"),
            created_by: text(top, "created by"),
            creation_date: top.get_int(b"creation date"),
        })
    }

    /// Builds a metainfo from an info dictionary fetched with ut_metadata (whose hash the caller
    /// has already checked against the wanted info hash) plus trackers and web seeds from the
    /// magnet link.
    pub fn from_info_bytes(
        info_bytes: Vec<u8>,
        trackers: Vec<Vec<String>>,
        url_list: Vec<String>,
    ) -> Result<Metainfo, MetainfoError> {
        let info = Info::from_bytes(&info_bytes)?;
        Ok(Metainfo {
            info,
            info_hash: InfoHash::of_info(&info_bytes),
            info_bytes,
            trackers,
            url_list,
            comment: None,
            created_by: None,
            creation_date: None,
        })
    }

    /// Builds a new torrent: encodes `info` canonically and hashes it.
    pub fn new(
        info: Info,
        trackers: Vec<Vec<String>>,
        url_list: Vec<String>,
        created_by: Option<String>,
        creation_date: Option<i64>,
    ) -> Metainfo {
        let info_bytes = info.encode();
        Metainfo {
            info_hash: InfoHash::of_info(&info_bytes),
            info,
            info_bytes,
            trackers,
            url_list,
            comment: None,
            created_by,
            creation_date,
        }
    }

    /// Writes the `.torrent` file. `info_bytes` are inserted verbatim, so the info hash is kept.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.info_bytes.len() + 256);
        // Keys in canonical (byte) order, written by hand so the info span stays verbatim.
        out.push(b'd');
        let mut put = |key: &str, value: OwnedValue| {
            OwnedValue::str(key).encode_into(&mut out);
            value.encode_into(&mut out);
        };
        if let Some(first) = self.trackers.iter().flatten().next() {
            put("announce", OwnedValue::str(first));
        }
        let tiers: Vec<OwnedValue> = self
            .trackers
            .iter()
            .filter(|tier| !tier.is_empty())
            .map(|tier| OwnedValue::list(tier.iter().map(|t| OwnedValue::str(t))))
            .collect();
        if !tiers.is_empty() {
            put("announce-list", OwnedValue::List(tiers));
        }
        if let Some(c) = &self.comment {
            put("comment", OwnedValue::str(c));
        }
        if let Some(c) = &self.created_by {
            put("created by", OwnedValue::str(c));
        }
        if let Some(d) = self.creation_date {
            put("creation date", OwnedValue::int(d));
        }
        OwnedValue::str("info").encode_into(&mut out);
        out.extend_from_slice(&self.info_bytes);
        if !self.url_list.is_empty() {
            let urls = OwnedValue::list(self.url_list.iter().map(|u| OwnedValue::str(u)));
            OwnedValue::str("url-list").encode_into(&mut out);
            urls.encode_into(&mut out);
        }
        out.push(b'e');
        out
    }
}

impl Info {
    /// Parses and validates a bencoded info dictionary.
    pub fn from_bytes(info_bytes: &[u8]) -> Result<Info, MetainfoError> {
        let v = bencode::decode(info_bytes)?;
        let d = v.as_dict().ok_or(MetainfoError::NotADict("info"))?;
        Info::from_dict(d)
    }

    /// Canonical bencode of this info dictionary (what [`Metainfo::new`] hashes).
    pub fn encode(&self) -> Vec<u8> {
        let pieces: Vec<u8> = self.pieces.iter().flatten().copied().collect();
        let mut d = OwnedValue::dict()
            .with("name", OwnedValue::str(&self.name))
            .with("piece length", i64::from(self.piece_length))
            .with("pieces", pieces);
        if self.multi_file {
            let files = self.files.iter().map(|f| {
                OwnedValue::dict()
                    .with("length", len_i64(f.length))
                    .with(
                        "path",
                        OwnedValue::list(f.path.iter().map(|c| OwnedValue::str(c))),
                    )
                    .with_opt("attr", f.pad.then_some("p"))
                    .build()
            });
            d.insert("files", OwnedValue::list(files));
        } else {
            d.insert("length", len_i64(self.total_length()));
        }
        if self.private {
            d.insert("private", 1i64);
        }
        d.build().encode()
    }

    /// Sum of all file lengths (padding files included).
    pub fn total_length(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |acc, f| acc.saturating_add(f.length))
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        u32::try_from(self.pieces.len()).unwrap_or(u32::MAX)
    }

    /// Length of piece `index`: `piece_length`, except the last piece which may be shorter.
    /// 0 for an index out of range.
    pub fn piece_len(&self, index: u32) -> u32 {
        let n = self.num_pieces();
        if index >= n {
            return 0;
        }
        if index + 1 < n {
            return self.piece_length;
        }
        let before = u64::from(n - 1) * u64::from(self.piece_length);
        let last = self.total_length().saturating_sub(before);
        u32::try_from(last.min(u64::from(self.piece_length))).unwrap_or(self.piece_length)
    }

    /// Relative path of file `i`: `name` for a single-file torrent, `name/path…` for a multi-file
    /// one. Components were validated at parse time. An index out of range gives an empty path.
    pub fn file_path(&self, i: usize) -> PathBuf {
        let Some(f) = self.files.get(i) else {
            return PathBuf::new();
        };
        let mut p = PathBuf::from(&self.name);
        if self.multi_file {
            p.extend(&f.path);
        }
        p
    }

    /// Parses and validates a decoded info dictionary.
    fn from_dict(d: &Dict<'_>) -> Result<Info, MetainfoError> {
        let name = utf8_field(d, "name", "name.utf-8")?;
        check_component(&name, &name)?;

        let piece_length = match d.get(b"piece length") {
            None => return Err(MetainfoError::Missing("piece length")),
            Some(v) => v.as_int().ok_or(MetainfoError::WrongType("piece length"))?,
        };
        let piece_length = u32::try_from(piece_length)
            .ok()
            .filter(|&p| p > 0 && p <= MAX_PIECE_LENGTH)
            .ok_or(MetainfoError::BadPieceLength(piece_length))?;

        let raw_pieces = match d.get(b"pieces") {
            None => return Err(MetainfoError::Missing("pieces")),
            Some(v) => v.as_bytes().ok_or(MetainfoError::WrongType("pieces"))?,
        };
        if raw_pieces.len() % 20 != 0 {
            return Err(MetainfoError::BadPiecesLength(raw_pieces.len()));
        }

        let (files, multi_file) = match d.get(b"files") {
            Some(v) => {
                let list = v.as_list().ok_or(MetainfoError::WrongType("files"))?;
                (parse_files(list)?, true)
            }
            None => {
                let length = match d.get(b"length") {
                    None => return Err(MetainfoError::Missing("length or files")),
                    Some(v) => v.as_int().ok_or(MetainfoError::WrongType("length"))?,
                };
                let length = u64::try_from(length).map_err(|_| MetainfoError::BadFileLength {
                    path: name.clone(),
                    length,
                })?;
                let file = FileEntry {
                    path: Vec::new(),
                    length,
                    offset: 0,
                    pad: false,
                };
                (vec![file], false)
            }
        };

        let mut total: u64 = 0;
        for f in &files {
            total = total
                .checked_add(f.length)
                .ok_or(MetainfoError::BadTotalLength)?;
        }
        if total == 0 {
            return Err(MetainfoError::BadTotalLength);
        }
        let expected = total.div_ceil(u64::from(piece_length));
        let got = raw_pieces.len() / 20;
        if expected != got as u64 || u32::try_from(got).is_err() {
            return Err(MetainfoError::PieceCountMismatch { expected, got });
        }
        let pieces = raw_pieces
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect();

        Ok(Info {
            name,
            piece_length,
            pieces,
            files,
            private: d.get_int(b"private") == Some(1),
            multi_file,
        })
    }
}

/// A piece length for a new torrent of `total` bytes: a power of two between 16 KiB and 16 MiB,
/// giving 1,000 to 2,000 pieces where those bounds allow.
pub fn auto_piece_length(total: u64) -> u32 {
    const MIN: u64 = 16 * 1024;
    const MAX: u64 = 16 * 1024 * 1024;
    let target = total / 1000;
    // Largest power of two not above the target, so the piece count lands in [1000, 2000).
    let pow = if target == 0 {
        MIN
    } else {
        1u64 << (63 - target.leading_zeros())
    };
    u32::try_from(pow.clamp(MIN, MAX)).unwrap_or(16 * 1024 * 1024)
}

/// File lengths are validated to fit in `i64` at parse; a hand-built `Info` saturates.
fn len_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Parses the multi-file `files` list, computing offsets.
fn parse_files(list: &[Value<'_>]) -> Result<Vec<FileEntry>, MetainfoError> {
    if list.len() > MAX_FILES {
        return Err(MetainfoError::TooManyFiles(list.len()));
    }
    if list.is_empty() {
        return Err(MetainfoError::BadTotalLength);
    }
    let mut files = Vec::with_capacity(list.len());
    let mut offset: u64 = 0;
    for v in list {
        let f = v.as_dict().ok_or(MetainfoError::WrongType("files"))?;
        let path = file_path_components(f)?;
        let joined = path.join("/");
        for c in &path {
            check_component(c, &joined)?;
        }
        let length = match f.get(b"length") {
            None => return Err(MetainfoError::Missing("length")),
            Some(v) => v.as_int().ok_or(MetainfoError::WrongType("length"))?,
        };
        let length = u64::try_from(length).map_err(|_| MetainfoError::BadFileLength {
            path: joined.clone(),
            length,
        })?;
        let pad = f.get_bytes(b"attr").is_some_and(|a| a.contains(&b'p'));
        files.push(FileEntry {
            path,
            length,
            offset,
            pad,
        });
        offset = offset
            .checked_add(length)
            .ok_or(MetainfoError::BadTotalLength)?;
    }
    Ok(files)
}

/// A file's path components, preferring a fully valid `path.utf-8`.
fn file_path_components(f: &Dict<'_>) -> Result<Vec<String>, MetainfoError> {
    if let Some(list) = f.get_list(b"path.utf-8") {
        if let Some(path) = str_list(list) {
            return Ok(path);
        }
    }
    let list = match f.get(b"path") {
        None => return Err(MetainfoError::Missing("path")),
        Some(v) => v.as_list().ok_or(MetainfoError::WrongType("path"))?,
    };
    if list.is_empty() {
        return Err(MetainfoError::BadPath {
            path: String::new(),
            reason: "a file path needs at least one component",
        });
    }
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let bytes = c.as_bytes().ok_or(MetainfoError::WrongType("path"))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => out.push(s.to_owned()),
            Err(_) => return Err(MetainfoError::NotUtf8("path")),
        }
    }
    Ok(out)
}

/// All entries as UTF-8 strings, or `None` if any is not one (or the list is empty).
fn str_list(list: &[Value<'_>]) -> Option<Vec<String>> {
    if list.is_empty() {
        return None;
    }
    list.iter().map(|v| v.as_str().map(str::to_owned)).collect()
}

/// A required UTF-8 text field, preferring a valid `<key>.utf-8` variant.
fn utf8_field(
    d: &Dict<'_>,
    key: &'static str,
    utf8_key: &'static str,
) -> Result<String, MetainfoError> {
    if let Some(s) = d.get_str(utf8_key.as_bytes()) {
        return Ok(s.to_owned());
    }
    let bytes = match d.get(key.as_bytes()) {
        None => return Err(MetainfoError::Missing(key)),
        Some(v) => v.as_bytes().ok_or(MetainfoError::WrongType(key))?,
    };
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| MetainfoError::NotUtf8(key))
}

/// An optional text field of the outer dictionary (`<key>.utf-8` preferred); junk is ignored.
fn text(d: &Dict<'_>, key: &str) -> Option<String> {
    let utf8_key = format!("{key}.utf-8");
    d.get_str(utf8_key.as_bytes())
        .or_else(|| d.get_str(key.as_bytes()))
        .map(str::to_owned)
}

/// Refuses a path component that could escape the download directory or is not portable.
fn check_component(c: &str, full: &str) -> Result<(), MetainfoError> {
    let bytes = c.as_bytes();
    let reason = if c.is_empty() {
        "empty component"
    } else if c == "." || c == ".." {
        "`.` or `..` component"
    } else if c.contains('/') || c.contains('\\') {
        "separator inside a component"
    } else if c.contains('\0') {
        "NUL byte"
    } else if matches!(bytes, [d, b':', ..] if d.is_ascii_alphabetic()) {
        "Windows drive prefix"
    } else {
        return Ok(());
    };
    Err(MetainfoError::BadPath {
        path: full.to_owned(),
        reason,
    })
}

/// `announce-list` tiers (junk entries skipped, capped), else `announce` as one tier.
fn parse_trackers(top: &Dict<'_>) -> Vec<Vec<String>> {
    let mut tiers = Vec::new();
    let mut count = 0;
    if let Some(list) = top.get_list(b"announce-list") {
        for tier in list {
            let Some(urls) = tier.as_list() else { continue };
            let mut out = Vec::new();
            for url in urls {
                if count >= MAX_TRACKERS {
                    break;
                }
                if let Some(u) = url.as_str().filter(|u| !u.is_empty()) {
                    out.push(u.to_owned());
                    count += 1;
                }
            }
            if !out.is_empty() {
                tiers.push(out);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(u) = top.get_str(b"announce").filter(|u| !u.is_empty()) {
            tiers.push(vec![u.to_owned()]);
        }
    }
    tiers
}

/// `url-list`: a single string or a list of strings (capped).
fn parse_url_list(top: &Dict<'_>) -> Vec<String> {
    match top.get(b"url-list") {
        Some(Value::Bytes(_)) => top
            .get_str(b"url-list")
            .filter(|u| !u.is_empty())
            .map(|u| vec![u.to_owned()])
            .unwrap_or_default(),
        Some(Value::List(l)) => l
            .iter()
            .filter_map(Value::as_str)
            .filter(|u| !u.is_empty())
            .take(MAX_WEB_SEEDS)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KIB16: u32 = 16 * 1024;

    fn single() -> Info {
        Info {
            name: "movie.ts".into(),
            piece_length: KIB16,
            pieces: vec![[1; 20], [2; 20], [3; 20]],
            files: vec![FileEntry {
                path: vec![],
                length: 40_000,
                offset: 0,
                pad: false,
            }],
            private: false,
            multi_file: false,
        }
    }

    fn multi() -> Info {
        let file = |path: &[&str], length, offset, pad| FileEntry {
            path: path.iter().map(|s| s.to_string()).collect(),
            length,
            offset,
            pad,
        };
        Info {
            name: "show".into(),
            piece_length: KIB16,
            pieces: vec![[7; 20], [8; 20], [9; 20]],
            files: vec![
                file(&["season 1", "ep1.ts"], 10_000, 0, false),
                file(&[".pad", "6384"], 6_384, 10_000, true),
                file(&["ep2.ts"], 20_000, 16_384, false),
            ],
            private: true,
            multi_file: true,
        }
    }

    fn trackers() -> Vec<Vec<String>> {
        vec![
            vec!["http://t1.example/announce".into()],
            vec![
                "udp://t2.example:6969".into(),
                "udp://t3.example:6969".into(),
            ],
        ]
    }

    #[test]
    fn single_file_round_trip() {
        let m = Metainfo::new(
            single(),
            trackers(),
            vec!["http://seed.example/movie.ts".into()],
            Some("peercdn 0.1".into()),
            Some(1_700_000_000),
        );
        let bytes = m.to_bytes();
        let back = Metainfo::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(Info::from_bytes(&m.info_bytes).unwrap(), single());
        assert_eq!(
            m.info_hash,
            Metainfo::new(single(), vec![], vec![], None, None).info_hash
        );
    }

    #[test]
    fn multi_file_round_trip() {
        let m = Metainfo::new(multi(), vec![], vec![], None, None);
        let back = Metainfo::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
        assert!(back.info.private);
        assert!(back.info.files[1].pad);
        assert_eq!(back.info.files[2].offset, 16_384);
        assert_eq!(
            back.info.file_path(0),
            PathBuf::from("show").join("season 1").join("ep1.ts")
        );
        let via_metadata =
            Metainfo::from_info_bytes(m.info_bytes.clone(), trackers(), vec![]).unwrap();
        assert_eq!(via_metadata.info_hash, m.info_hash);
        assert_eq!(via_metadata.trackers, trackers());
    }

    #[test]
    fn canonical_info_encoding_is_pinned() {
        let info = Info {
            name: "a".into(),
            piece_length: KIB16,
            pieces: vec![[0x41; 20]],
            files: vec![FileEntry {
                path: vec![],
                length: 5,
                offset: 0,
                pad: false,
            }],
            private: false,
            multi_file: false,
        };
        let expected =
            b"d6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
        assert_eq!(info.encode(), expected);
        assert_eq!(
            Metainfo::new(info, vec![], vec![], None, None).info_hash,
            InfoHash::of_info(expected)
        );
    }

    #[test]
    fn unsorted_extra_keys_keep_original_hash() {
        // Unsorted keys and an unknown key: the hash must be of these exact bytes.
        let info: &[u8] =
            b"d4:name1:a6:pieces20:AAAAAAAAAAAAAAAAAAAA6:lengthi5e12:piece lengthi16384e5:x-fooi1ee";
        let torrent = [&b"d8:announce12:http://t/ann4:info"[..], info, b"e"].concat();
        let m = Metainfo::from_bytes(&torrent).unwrap();
        assert_eq!(m.info_bytes, info);
        assert_eq!(m.info_hash, InfoHash::of_info(info));
        assert_ne!(m.info_hash, InfoHash::of_info(&m.info.encode()));
        assert_eq!(m.trackers, vec![vec!["http://t/ann".to_string()]]);
        // Writing it back keeps the info span verbatim.
        assert_eq!(
            Metainfo::from_bytes(&m.to_bytes()).unwrap().info_hash,
            m.info_hash
        );
    }

    /// A multi-file info dict with one file at `path`, or a single-file one named `name`.
    fn info_with(name: &[u8], path: Option<Vec<&[u8]>>) -> Vec<u8> {
        let d = OwnedValue::dict()
            .with("name", name)
            .with("piece length", 16_384i64)
            .with("pieces", vec![0u8; 20]);
        let d = match path {
            Some(p) => d.with(
                "files",
                OwnedValue::list([OwnedValue::dict()
                    .with("length", 5i64)
                    .with(
                        "path",
                        OwnedValue::list(p.into_iter().map(OwnedValue::from)),
                    )
                    .build()]),
            ),
            None => d.with("length", 5i64),
        };
        d.build().encode()
    }

    #[test]
    fn bad_paths_refused() {
        let bad_names: [&[u8]; 8] = [b"", b".", b"..", b"a/b", b"a\\b", b"a\0b", b"C:", b"/abs"];
        for name in bad_names {
            let err = Info::from_bytes(&info_with(name, None)).unwrap_err();
            assert!(
                matches!(&err, MetainfoError::BadPath { path, .. } if path.as_bytes() == name),
                "name {name:?}: {err:?}"
            );
        }
        let bad_paths: [Vec<&[u8]>; 9] = [
            vec![b"ok", b".."],
            vec![b".."],
            vec![b"."],
            vec![b"a", b""],
            vec![b"/etc", b"passwd"],
            vec![b"a\\..\\b"],
            vec![b"x\0"],
            vec![b"c:\\windows"],
            vec![],
        ];
        for path in bad_paths {
            let err = Info::from_bytes(&info_with(b"dir", Some(path.clone()))).unwrap_err();
            assert!(
                matches!(err, MetainfoError::BadPath { .. }),
                "{path:?}: {err:?}"
            );
        }
        assert!(Info::from_bytes(&info_with(b"dir", Some(vec![b"a", b"b.txt"]))).is_ok());
        assert!(matches!(
            Info::from_bytes(&info_with(b"\xff", None)),
            Err(MetainfoError::NotUtf8("name"))
        ));
        let err = Info::from_bytes(&info_with(b"dir", Some(vec![b"ok", b".."]))).unwrap_err();
        assert!(err.to_string().contains("ok/.."), "{err}");
    }

    #[test]
    fn utf8_variants_preferred() {
        let bytes = OwnedValue::dict()
            .with("name", &b"\xffbad"[..])
            .with("name.utf-8", "gut")
            .with("piece length", 16_384i64)
            .with("pieces", vec![0u8; 20])
            .with(
                "files",
                OwnedValue::list([OwnedValue::dict()
                    .with("length", 5i64)
                    .with("path", OwnedValue::list([OwnedValue::bytes(&b"\xfe"[..])]))
                    .with("path.utf-8", OwnedValue::list([OwnedValue::str("ä.txt")]))
                    .build()]),
            )
            .build()
            .encode();
        let info = Info::from_bytes(&bytes).unwrap();
        assert_eq!(info.name, "gut");
        assert_eq!(info.files[0].path, vec!["ä.txt".to_string()]);
    }

    fn info_fields(piece_length: i64, pieces: usize, length: i64) -> Vec<u8> {
        OwnedValue::dict()
            .with("name", "n")
            .with("piece length", piece_length)
            .with("pieces", vec![0u8; pieces])
            .with("length", length)
            .build()
            .encode()
    }

    #[test]
    fn bad_numbers_refused() {
        use MetainfoError as E;
        let check = |bytes: Vec<u8>, want: fn(&E) -> bool| {
            let err = Info::from_bytes(&bytes).unwrap_err();
            assert!(want(&err), "{err:?}");
        };
        check(info_fields(0, 20, 5), |e| matches!(e, E::BadPieceLength(0)));
        check(info_fields(-1, 20, 5), |e| {
            matches!(e, E::BadPieceLength(-1))
        });
        check(info_fields(128 << 20, 20, 5), |e| {
            matches!(e, E::BadPieceLength(_))
        });
        check(info_fields(16384, 19, 5), |e| {
            matches!(e, E::BadPiecesLength(19))
        });
        check(info_fields(16384, 40, 5), |e| {
            matches!(
                e,
                E::PieceCountMismatch {
                    expected: 1,
                    got: 2
                }
            )
        });
        check(info_fields(16384, 0, 0), |e| matches!(e, E::BadTotalLength));
        check(info_fields(16384, 20, -5), |e| {
            matches!(e, E::BadFileLength { .. })
        });
        check(b"le".to_vec(), |e| matches!(e, E::NotADict(_)));
        check(b"de".to_vec(), |e| matches!(e, E::Missing("name")));
        check(b"d4:name1:ae".to_vec(), |e| {
            matches!(e, E::Missing("piece length"))
        });
        // Odd piece lengths are accepted (not only powers of two).
        assert!(Info::from_bytes(&info_fields(3 * 16384, 20, 5)).is_ok());
        assert!(matches!(
            Metainfo::from_bytes(b"d8:announce1:xe"),
            Err(E::Missing("info"))
        ));
    }

    #[test]
    fn too_many_files_refused() {
        let file = OwnedValue::dict()
            .with("length", 1i64)
            .with("path", OwnedValue::list([OwnedValue::str("a")]))
            .build();
        let bytes = OwnedValue::dict()
            .with("name", "n")
            .with("piece length", 16_384i64)
            .with("pieces", vec![0u8; 20])
            .with("files", OwnedValue::List(vec![file; MAX_FILES + 1]))
            .build()
            .encode();
        assert_eq!(
            Info::from_bytes(&bytes),
            Err(MetainfoError::TooManyFiles(MAX_FILES + 1))
        );
    }

    #[test]
    fn outer_fields() {
        let info = single().encode();
        let torrent = [
            &b"d8:announce5:http1"[..],
            b"13:announce-listll0:el5:http25:http3ee",
            b"7:comment2:hi",
            b"4:info",
            &info,
            b"8:url-list4:ws:1e",
        ]
        .concat();
        let m = Metainfo::from_bytes(&torrent).unwrap();
        assert_eq!(
            m.trackers,
            vec![vec!["http2".to_string(), "http3".to_string()]]
        );
        assert_eq!(m.url_list, vec!["ws:1".to_string()]);
        assert_eq!(m.comment.as_deref(), Some("hi"));
        assert_eq!(m.creation_date, None);
    }

    #[test]
    fn piece_geometry() {
        let i = single();
        assert_eq!(i.total_length(), 40_000);
        assert_eq!(i.num_pieces(), 3);
        assert_eq!(i.piece_len(0), KIB16);
        assert_eq!(i.piece_len(1), KIB16);
        assert_eq!(i.piece_len(2), 40_000 - 2 * KIB16);
        assert_eq!(i.piece_len(3), 0);
        assert_eq!(i.file_path(0), PathBuf::from("movie.ts"));
        assert_eq!(i.file_path(1), PathBuf::new());
        // Exact multiple: the last piece is whole.
        let mut j = single();
        j.files[0].length = 3 * u64::from(KIB16);
        assert_eq!(j.piece_len(2), KIB16);
    }

    #[test]
    fn auto_piece_length_bounds() {
        assert_eq!(auto_piece_length(0), KIB16);
        assert_eq!(auto_piece_length(1), KIB16);
        assert_eq!(auto_piece_length(u64::MAX), 16 << 20);
        for total in [100u64 << 20, 1 << 30, 3 << 30, 7_777_777_777] {
            let pl = auto_piece_length(total);
            assert!(pl.is_power_of_two());
            let n = total.div_ceil(u64::from(pl));
            assert!((1000..=2000).contains(&n), "{total}: {pl} → {n}");
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Metainfo::from_bytes(&bytes);
            let _ = Info::from_bytes(&bytes);
        }

        #[test]
        fn mutated_torrents_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut bytes = Metainfo::new(multi(), trackers(), vec![], None, None).to_bytes();
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            if let Ok(m) = Metainfo::from_bytes(&bytes) {
                prop_assert_eq!(m.info_hash, InfoHash::of_info(&m.info_bytes));
            }
        }
    }
}
