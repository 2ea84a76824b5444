//! Magnet URIs (BEP 9): parse and format.
//!
//! Owns the `magnet:?` query syntax only: `xt=urn:btih:` (40 hex or 32 base32 characters),
//! `dn` (display name), `tr` / `tr.N` (trackers), `ws` (web seeds, BEP 19) and `x.pe` (peer
//! addresses `host:port`). `xt=urn:btmh:` (v2) entries are ignored when a v1 hash is present.
//! Values are percent-decoded; every list is capped so a hostile link cannot grow memory.
//! Bare content IDs (`acestream://…`, 40 hex) are the CLI's business, not this module's.

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::id::{IdError, InfoHash};
use crate::metainfo::Metainfo;

/// Most trackers, web seeds and peers each kept from one magnet.
pub const MAX_ENTRIES: usize = 64;
/// Longest magnet URI accepted, in bytes.
pub const MAX_URI_LEN: usize = 64 * 1024;

/// Characters percent-encoded when formatting: everything but RFC 3986 unreserved characters.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed magnet link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info hash (`xt=urn:btih:`).
    pub info_hash: InfoHash,
    /// Display name (`dn`).
    pub name: Option<String>,
    /// Tracker URLs (`tr`, `tr.1`, …), in order, without duplicates.
    pub trackers: Vec<String>,
    /// Web seed URLs (`ws`).
    pub web_seeds: Vec<String>,
    /// Peer addresses (`x.pe`), `host:port` as given.
    pub peers: Vec<String>,
}

/// Why a string is not a usable magnet link.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MagnetError {
    /// Does not start with `magnet:?`.
    #[error("not a magnet link (expected `magnet:?…`)")]
    NotMagnet,
    /// Longer than [`MAX_URI_LEN`].
    #[error("magnet link longer than {MAX_URI_LEN} bytes")]
    TooLong,
    /// No `xt=urn:btih:` parameter (a v2-only `urn:btmh:` link is not supported).
    #[error("magnet link has no `xt=urn:btih:` info hash")]
    MissingInfoHash,
    /// The `urn:btih:` value is not a valid info hash.
    #[error("magnet link info hash: {0}")]
    BadInfoHash(#[from] IdError),
}

impl Magnet {
    /// Parses a magnet URI. Unknown parameters are ignored; values that are not UTF-8 after
    /// percent-decoding are skipped (`dn` is decoded lossily, with `+` as a space).
    pub fn parse(s: &str) -> Result<Magnet, MagnetError> {
        if s.len() > MAX_URI_LEN {
            return Err(MagnetError::TooLong);
        }
        let s = s.trim();
        let query = match s.get(..8) {
            Some(p) if p.eq_ignore_ascii_case("magnet:?") => s.get(8..).unwrap_or_default(),
            _ => return Err(MagnetError::NotMagnet),
        };
        let mut info_hash = None;
        let mut name = None;
        let mut trackers = Vec::new();
        let mut web_seeds = Vec::new();
        let mut peers = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // `tr.1`, `xt.2`…: the numbered forms mean the same as the plain key.
            let base = match key.split_once('.') {
                Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
                _ => key,
            };
            match base {
                "xt" => {
                    let Some(v) = decode(value) else { continue };
                    let Some(hash) = strip_prefix_ci(&v, "urn:btih:") else {
                        continue; // urn:btmh: and others
                    };
                    if info_hash.is_none() {
                        info_hash = Some(InfoHash::parse(hash)?);
                    }
                }
                "dn" if name.is_none() => {
                    let v = value.replace('+', " ");
                    name = Some(percent_decode_str(&v).decode_utf8_lossy().into_owned());
                }
                "tr" => push_capped(&mut trackers, decode(value)),
                "ws" => push_capped(&mut web_seeds, decode(value)),
                "x.pe" => push_capped(&mut peers, decode(value)),
                _ => {}
            }
        }
        Ok(Magnet {
            info_hash: info_hash.ok_or(MagnetError::MissingInfoHash)?,
            name,
            trackers,
            web_seeds,
            peers,
        })
    }

    /// Formats the magnet URI (`xt` in lower-case hex, values percent-encoded).
    pub fn to_uri(&self) -> String {
        let mut out = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        let mut param = |key: &str, value: &str| {
            out.push('&');
            out.push_str(key);
            out.push('=');
            out.extend(utf8_percent_encode(value, ENCODE));
        };
        if let Some(n) = &self.name {
            param("dn", n);
        }
        for t in &self.trackers {
            param("tr", t);
        }
        for w in &self.web_seeds {
            param("ws", w);
        }
        for p in &self.peers {
            param("x.pe", p);
        }
        out
    }

    /// The magnet link of a torrent: its hash, name, trackers (all tiers, in order) and web seeds.
    pub fn from_metainfo(m: &Metainfo) -> Magnet {
        let mut trackers = Vec::new();
        for t in m.trackers.iter().flatten() {
            push_capped(&mut trackers, Some(t.clone()));
        }
        let mut web_seeds = Vec::new();
        for w in &m.url_list {
            push_capped(&mut web_seeds, Some(w.clone()));
        }
        Magnet {
            info_hash: m.info_hash,
            name: Some(m.info.name.clone()),
            trackers,
            web_seeds,
            peers: Vec::new(),
        }
    }
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl std::str::FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Self, MagnetError> {
        Magnet::parse(s)
    }
}

/// Percent-decodes a value; `None` when the result is not UTF-8.
fn decode(value: &str) -> Option<String> {
    percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

/// Appends a non-empty, new value while under [`MAX_ENTRIES`].
fn push_capped(list: &mut Vec<String>, value: Option<String>) {
    let Some(v) = value else { return };
    if v.is_empty() || list.len() >= MAX_ENTRIES || list.contains(&v) {
        return;
    }
    list.push(v);
}

/// `s` without `prefix`, compared ASCII case-insensitively.
fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    fn hash() -> InfoHash {
        InfoHash::parse(HEX).unwrap()
    }

    #[test]
    fn parses_the_usual_fields() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Big+Buck%20Bunny&tr=udp%3A%2F%2Ft1%3A80\
             &tr.1=http://t2/announce&ws=http%3A%2F%2Fseed%2Ff&x.pe=10.0.0.1:6881&foo=bar"
        ))
        .unwrap();
        assert_eq!(m.info_hash, hash());
        assert_eq!(m.name.as_deref(), Some("Big Buck Bunny"));
        assert_eq!(m.trackers, vec!["udp://t1:80", "http://t2/announce"]);
        assert_eq!(m.web_seeds, vec!["http://seed/f"]);
        assert_eq!(m.peers, vec!["10.0.0.1:6881"]);
    }

    #[test]
    fn base32_upper_hex_and_scheme_case() {
        let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}"))
                .unwrap()
                .info_hash,
            hash()
        );
        let upper = format!("MAGNET:?xt=URN:BTIH:{}", HEX.to_uppercase());
        assert_eq!(Magnet::parse(&upper).unwrap().info_hash, hash());
    }

    #[test]
    fn btmh_ignored_when_btih_present() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btmh:1220{}&xt=urn:btih:{HEX}",
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(m.info_hash, hash());
        let v2_only = format!("magnet:?xt=urn:btmh:1220{}", "ab".repeat(32));
        assert_eq!(Magnet::parse(&v2_only), Err(MagnetError::MissingInfoHash));
    }

    #[test]
    fn errors() {
        assert_eq!(Magnet::parse(HEX), Err(MagnetError::NotMagnet));
        assert_eq!(
            Magnet::parse(&format!("acestream://{HEX}")),
            Err(MagnetError::NotMagnet)
        );
        assert_eq!(
            Magnet::parse("magnet:?dn=x"),
            Err(MagnetError::MissingInfoHash)
        );
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:abc"),
            Err(MagnetError::BadInfoHash(_))
        ));
        let long = format!("magnet:?xt=urn:btih:{HEX}&dn={}", "a".repeat(MAX_URI_LEN));
        assert_eq!(Magnet::parse(&long), Err(MagnetError::TooLong));
        assert_eq!(Magnet::parse("magnet"), Err(MagnetError::NotMagnet));
        assert_eq!(Magnet::parse("magnét:?x"), Err(MagnetError::NotMagnet));
    }

    #[test]
    fn lists_are_capped_and_deduplicated() {
        let mut s = format!("magnet:?xt=urn:btih:{HEX}&tr=http://dup&tr=http://dup");
        for i in 0..200 {
            s.push_str(&format!("&tr=http://t{i}&x.pe=1.2.3.4:{i}&ws=http://w{i}"));
        }
        let m = Magnet::parse(&s).unwrap();
        assert_eq!(m.trackers.len(), MAX_ENTRIES);
        assert_eq!(m.trackers.iter().filter(|t| *t == "http://dup").count(), 1);
        assert_eq!(m.peers.len(), MAX_ENTRIES);
        assert_eq!(m.web_seeds.len(), MAX_ENTRIES);
    }

    #[test]
    fn format_and_round_trip() {
        let m = Magnet {
            info_hash: hash(),
            name: Some("a b&c=d/é".into()),
            trackers: vec!["udp://t:80/announce?x=1&y=2".into()],
            web_seeds: vec!["http://w/".into()],
            peers: vec!["[::1]:6881".into()],
        };
        let uri = m.to_uri();
        assert!(uri.starts_with(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c%3Dd%2F%C3%A9"
        )));
        assert_eq!(m.to_string(), uri);
        assert_eq!(Magnet::parse(&uri), Ok(m));
    }

    #[test]
    fn from_metainfo_flattens_tiers() {
        use crate::metainfo::{FileEntry, Info};
        let info = Info {
            name: "x".into(),
            piece_length: 16384,
            pieces: vec![[0; 20]],
            files: vec![FileEntry {
                path: vec![],
                length: 1,
                offset: 0,
                pad: false,
            }],
            private: false,
            multi_file: false,
        };
        let meta = Metainfo::new(
            info,
            vec![vec!["a".into()], vec!["b".into(), "c".into()]],
            vec!["w".into()],
            None,
            None,
        );
        let m = Magnet::from_metainfo(&meta);
        assert_eq!(m.info_hash, meta.info_hash);
        assert_eq!(m.name.as_deref(), Some("x"));
        assert_eq!(m.trackers, vec!["a", "b", "c"]);
        assert_eq!(m.web_seeds, vec!["w"]);
    }

    proptest! {
        #[test]
        fn round_trip(
            bytes in any::<[u8; 20]>(),
            name in proptest::option::of(".{0,20}"),
            trackers in proptest::collection::vec(".{1,20}", 0..4),
            peers in proptest::collection::vec("[0-9.:]{1,20}", 0..4),
        ) {
            let mut dedup: Vec<String> = Vec::new();
            for t in trackers {
                if !dedup.contains(&t) {
                    dedup.push(t);
                }
            }
            let mut peer_dedup: Vec<String> = Vec::new();
            for p in peers {
                if !peer_dedup.contains(&p) {
                    peer_dedup.push(p);
                }
            }
            let m = Magnet {
                info_hash: InfoHash(bytes),
                name,
                trackers: dedup,
                web_seeds: vec![],
                peers: peer_dedup,
            };
            prop_assert_eq!(Magnet::parse(&m.to_uri()), Ok(m));
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,200}") {
            let _ = Magnet::parse(&s);
            let _ = Magnet::parse(&format!("magnet:?{s}"));
        }
    }
}
