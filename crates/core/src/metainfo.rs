//! `.torrent` (BitTorrent v1) metainfo: parse, validate, build and write.
//!
//! The info hash is computed over the info dictionary's bytes exactly as received (kept by the
//! bencode decoder), never over a re-encoding. File paths are validated at parse time: a path with
//! `..`, an absolute component, an empty component or a NUL is refused, so later layers can join
//! paths without checking again.

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
