//! BEP 10 extension payloads: the extension handshake, BEP 9 `ut_metadata`, BEP 11 `ut_pex`.
//!
//! This module owns the bencoded payloads carried inside [`super::Message::Extended`]; it knows
//! nothing of connections or of which ID a peer assigned to which extension (that is per-peer
//! state, kept by the swarm from the peer's [`ExtHandshake`]).
//!
//! Decoders take bytes from a remote peer: unknown keys are ignored, every field is bounded
//! (`m` ≤ [`MAX_M_ENTRIES`] entries with names ≤ [`MAX_EXT_NAME_LEN`] bytes, client ≤
//! [`MAX_CLIENT_LEN`] bytes, PEX lists ≤ [`Pex::MAX_DECODED`] entries each, metadata pieces ≤
//! [`METADATA_PIECE_LEN`] bytes), and nothing a peer sends can panic.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, Bytes, BytesMut};

use crate::bencode::{self, BencodeError, Dict, OwnedValue};

/// Extended message ID of the extension handshake itself.
pub const EXT_HANDSHAKE_ID: u8 = 0;
/// Name of the BEP 9 metadata exchange extension.
pub const UT_METADATA: &str = "ut_metadata";
/// Name of the BEP 11 peer exchange extension.
pub const UT_PEX: &str = "ut_pex";
/// Our local ID for `ut_metadata` (what we put in our `m` dict; peers send it to us with this ID).
pub const OUR_UT_METADATA_ID: u8 = 1;
/// Our local ID for `ut_pex`.
pub const OUR_UT_PEX_ID: u8 = 2;
/// Size of one metadata piece (BEP 9); only the last piece may be shorter.
pub const METADATA_PIECE_LEN: usize = 16384;
/// Largest info dictionary we accept over `ut_metadata` (8 MiB).
pub const MAX_METADATA_SIZE: u32 = 8 << 20;
/// At most this many entries of a peer's `m` dict are kept; the rest are ignored.
pub const MAX_M_ENTRIES: usize = 64;
/// Extension names longer than this are ignored.
pub const MAX_EXT_NAME_LEN: usize = 64;
/// Client strings (`v`) are cut to this many bytes.
pub const MAX_CLIENT_LEN: usize = 128;
/// The request queue depth we advertise (`reqq`).
pub const OUR_REQQ: u32 = 250;

/// Why an extension payload is not valid. The caller decides whether that closes the connection
/// (a bad handshake should; an unknown `ut_metadata` message type should just be ignored).
#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    /// The payload is not valid bencode.
    #[error("bad bencode in extension payload: {0}")]
    Bencode(#[from] BencodeError),
    /// The payload is bencode but not a dictionary.
    #[error("extension payload is not a dictionary")]
    NotADict,
    /// A required key is absent (or has the wrong type).
    #[error("extension payload lacks {0:?}")]
    Missing(&'static str),
    /// A key holds a value out of range.
    #[error("extension payload has a bad {0:?}")]
    BadField(&'static str),
    /// A `ut_metadata` message type this crate does not know (BEP 9 says: ignore it).
    #[error("unknown ut_metadata msg_type {0}")]
    UnknownMsgType(i64),
    /// A `ut_metadata` data message whose bytes do not match its piece: 16 KiB for every piece
    /// but the last, the remainder of `total_size` for the last.
    #[error("metadata piece has {got} bytes, expected {expected}")]
    BadPieceLen {
        /// Bytes after the dictionary.
        got: usize,
        /// What `piece` and `total_size` call for.
        expected: usize,
    },
    /// A compact peer list whose length is not a multiple of the entry size.
    #[error("compact peer list {key:?} has length {len}, not a multiple of {entry}")]
    BadCompactLen {
        /// The dictionary key.
        key: &'static str,
        /// Its length in bytes.
        len: usize,
        /// 6 for IPv4, 18 for IPv6.
        entry: usize,
    },
}

/// The BEP 10 extension handshake (extended message 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// Extension name → the ID the sender wants to receive it with (0: disabled).
    pub m: Vec<(String, u8)>,
    /// Client name and version (`v`).
    pub client: Option<String>,
    /// The sender's listen port (`p`).
    pub listen_port: Option<u16>,
    /// Size of the info dictionary, if the sender has it (BEP 9). Values above
    /// [`MAX_METADATA_SIZE`] or zero decode as `None`.
    pub metadata_size: Option<u32>,
    /// How many outstanding requests the sender accepts (`reqq`).
    pub reqq: Option<u32>,
    /// Our address as the sender sees it (`yourip`, 4 or 16 bytes).
    pub your_ip: Option<IpAddr>,
    /// The sender says peers can dial it (`pc_reachable: 1`, peercdn's: its port is mapped
    /// on its router, or a peer on the Internet dialled it). Absent means unknown.
    pub reachable: bool,
}

impl ExtHandshake {
    /// The handshake we send: `ut_metadata` and `ut_pex` under our IDs, our client string,
    /// [`OUR_REQQ`], and `metadata_size` once we have the info dictionary.
    pub fn ours(metadata_size: Option<u32>, listen_port: Option<u16>) -> Self {
        ExtHandshake {
            m: vec![
                (UT_METADATA.to_string(), OUR_UT_METADATA_ID),
                (UT_PEX.to_string(), OUR_UT_PEX_ID),
            ],
            client: Some(concat!("peercdn/", env!("CARGO_PKG_VERSION")).to_string()),
            listen_port,
            metadata_size,
            reqq: Some(OUR_REQQ),
            your_ip: None,
            reachable: false,
        }
    }

    /// Bencodes the handshake (keys sorted, absent fields omitted).
    pub fn encode(&self) -> Bytes {
        let m = self
            .m
            .iter()
            .map(|(name, id)| (name.as_bytes().to_vec(), int(*id)))
            .collect();
        let mut d = BTreeMap::new();
        d.insert(b"m".to_vec(), OwnedValue::Dict(m));
        if let Some(v) = &self.client {
            d.insert(b"v".to_vec(), OwnedValue::Bytes(v.as_bytes().to_vec()));
        }
        if let Some(p) = self.listen_port {
            d.insert(b"p".to_vec(), int(p));
        }
        if let Some(size) = self.metadata_size {
            d.insert(b"metadata_size".to_vec(), int(size));
        }
        if let Some(q) = self.reqq {
            d.insert(b"reqq".to_vec(), int(q));
        }
        if let Some(ip) = self.your_ip {
            let raw = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            d.insert(b"yourip".to_vec(), OwnedValue::Bytes(raw));
        }
        if self.reachable {
            d.insert(b"pc_reachable".to_vec(), int(1));
        }
        Bytes::from(OwnedValue::Dict(d).encode())
    }

    /// Parses a peer's handshake. Only a payload that is not a bencoded dictionary is an error;
    /// missing, malformed or out-of-range fields decode as absent, and unknown keys are ignored.
    pub fn decode(payload: &[u8]) -> Result<Self, ExtError> {
        let value = bencode::decode(payload)?;
        let dict = value.as_dict().ok_or(ExtError::NotADict)?;
        let mut m = Vec::new();
        if let Some(md) = dict.get_dict(b"m") {
            for (name, id) in md.iter() {
                if m.len() == MAX_M_ENTRIES {
                    break;
                }
                let Some(id) = id.as_int().and_then(|i| u8::try_from(i).ok()) else {
                    continue;
                };
                if name.len() > MAX_EXT_NAME_LEN {
                    continue;
                }
                let Ok(name) = std::str::from_utf8(name) else {
                    continue;
                };
                m.push((name.to_string(), id));
            }
        }
        let client = dict.get_bytes(b"v").map(|v| {
            let cut = v.get(..MAX_CLIENT_LEN).unwrap_or(v);
            let mut s = String::from_utf8_lossy(cut).into_owned();
            // Each invalid byte became a 3-byte U+FFFD: cut again, at a character boundary.
            let mut end = s.len().min(MAX_CLIENT_LEN);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s
        });
        let listen_port = dict
            .get_int(b"p")
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        let metadata_size = dict
            .get_int(b"metadata_size")
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| (1..=MAX_METADATA_SIZE).contains(s));
        let reqq = dict
            .get_int(b"reqq")
            .and_then(|q| u32::try_from(q).ok())
            .filter(|q| *q != 0);
        let your_ip = dict.get_bytes(b"yourip").and_then(ip_from_bytes);
        let reachable = dict.get_int(b"pc_reachable") == Some(1);
        Ok(ExtHandshake {
            m,
            client,
            listen_port,
            metadata_size,
            reqq,
            your_ip,
            reachable,
        })
    }

    /// The ID the peer wants `name` sent with; `None` if absent or disabled (0).
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.m
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
            .filter(|id| *id != 0)
    }
}

/// A BEP 9 `ut_metadata` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMsg {
    /// `msg_type` 0: please send metadata piece `piece`.
    Request {
        /// Piece index (16 KiB pieces of the info dictionary).
        piece: u32,
    },
    /// `msg_type` 1: metadata piece `piece`; the bencoded dict is followed by the raw bytes.
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole info dictionary (≤ [`MAX_METADATA_SIZE`]).
        total_size: u32,
        /// The piece bytes (≤ [`METADATA_PIECE_LEN`]), a slice of the payload, not a copy.
        data: Bytes,
    },
    /// `msg_type` 2: the sender will not send piece `piece`.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

impl MetadataMsg {
    /// Bencodes the message; for `Data` the piece bytes follow the dictionary (the caller keeps
    /// them ≤ [`METADATA_PIECE_LEN`], as [`MetadataMsg::decode`] demands of peers).
    pub fn encode(&self) -> Bytes {
        let (msg_type, piece) = match self {
            MetadataMsg::Request { piece } => (0, *piece),
            MetadataMsg::Data { piece, .. } => (1, *piece),
            MetadataMsg::Reject { piece } => (2, *piece),
        };
        let mut d = BTreeMap::new();
        d.insert(b"msg_type".to_vec(), int(msg_type));
        d.insert(b"piece".to_vec(), int(piece));
        let MetadataMsg::Data {
            total_size, data, ..
        } = self
        else {
            return Bytes::from(OwnedValue::Dict(d).encode());
        };
        d.insert(b"total_size".to_vec(), int(*total_size));
        let head = OwnedValue::Dict(d).encode();
        let mut out = BytesMut::with_capacity(head.len() + data.len());
        out.put_slice(&head);
        out.put_slice(data);
        out.freeze()
    }

    /// Parses a message. For `Data`, the bytes after the dictionary are returned as a slice of
    /// `payload` (no copy); `total_size` must be within [`MAX_METADATA_SIZE`], `piece` within
    /// `total_size`, and the byte count exactly what that piece calls for. Bytes after the
    /// dictionary of a `Request` or `Reject` are ignored.
    pub fn decode(payload: &Bytes) -> Result<Self, ExtError> {
        let (value, used) = bencode::decode_prefix(payload)?;
        let dict = value.as_dict().ok_or(ExtError::NotADict)?;
        let msg_type = dict
            .get_int(b"msg_type")
            .ok_or(ExtError::Missing("msg_type"))?;
        let piece = u32_field(dict, "piece")?;
        match msg_type {
            0 => Ok(MetadataMsg::Request { piece }),
            2 => Ok(MetadataMsg::Reject { piece }),
            1 => {
                let total_size = u32_field(dict, "total_size")?;
                if total_size == 0 || total_size > MAX_METADATA_SIZE {
                    return Err(ExtError::BadField("total_size"));
                }
                let pieces = (total_size as usize).div_ceil(METADATA_PIECE_LEN);
                if piece as usize >= pieces {
                    return Err(ExtError::BadField("piece"));
                }
                let got = payload.len().saturating_sub(used);
                let expected = (total_size as usize)
                    .saturating_sub(piece as usize * METADATA_PIECE_LEN)
                    .min(METADATA_PIECE_LEN);
                if got != expected {
                    return Err(ExtError::BadPieceLen { got, expected });
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data: payload.slice(payload.len() - got..),
                })
            }
            other => Err(ExtError::UnknownMsgType(other)),
        }
    }
}

/// A BEP 11 `ut_pex` message: peers the sender connected to and dropped since its last one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pex {
    /// Peers added (IPv4 and IPv6 together).
    pub added: Vec<SocketAddr>,
    /// One flags byte per entry of `added` (see the `FLAG_*` constants); after decoding it has
    /// exactly `added.len()` entries (0 where the sender gave none).
    pub added_flags: Vec<u8>,
    /// Peers dropped.
    pub dropped: Vec<SocketAddr>,
}

impl Pex {
    /// The message that brings a peer from the addresses it was last told (`sent`) to
    /// `current` (address and flags): what is new, and what is gone (at most [`Pex::MAX_PEERS`]).
    /// `sent` becomes `current`. `None` when nothing changed.
    pub fn update(sent: &mut Vec<SocketAddr>, current: &[(SocketAddr, u8)]) -> Option<Pex> {
        let (added, added_flags): (Vec<SocketAddr>, Vec<u8>) = current
            .iter()
            .filter(|(a, _)| !sent.contains(a))
            .copied()
            .unzip();
        let dropped: Vec<SocketAddr> = sent
            .iter()
            .filter(|a| !current.iter().any(|(c, _)| c == *a))
            .take(Pex::MAX_PEERS)
            .copied()
            .collect();
        *sent = current.iter().map(|(a, _)| *a).collect();
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        Some(Pex {
            added,
            added_flags,
            dropped,
        })
    }

    /// At most this many peers in `added` and in `dropped` are sent per message (BEP 11).
    pub const MAX_PEERS: usize = 50;
    /// At most this many entries of each compact list (`added`, `added6`, `dropped`,
    /// `dropped6`) are kept when decoding; the rest are silently dropped.
    pub const MAX_DECODED: usize = 200;
    /// Flag: the peer prefers encryption.
    pub const FLAG_ENCRYPTION: u8 = 0x01;
    /// Flag: the peer is a seed (or upload only).
    pub const FLAG_SEED: u8 = 0x02;
    /// Flag: the peer supports uTP.
    pub const FLAG_UTP: u8 = 0x04;
    /// Flag: the peer supports hole punching (BEP 55).
    pub const FLAG_HOLEPUNCH: u8 = 0x08;
    /// Flag: the sender reached the peer by an outgoing connection (it is reachable).
    pub const FLAG_REACHABLE: u8 = 0x10;

    /// Bencodes the message with the compact keys `added`, `added.f`, `added6`, `added6.f`,
    /// `dropped`, `dropped6` (all present, possibly empty). Only the first
    /// [`Pex::MAX_PEERS`] of `added` and of `dropped` are sent; a missing flag is sent as 0.
    pub fn encode(&self) -> Bytes {
        let (mut a4, mut f4, mut a6, mut f6) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, addr) in self.added.iter().take(Self::MAX_PEERS).enumerate() {
            let flag = self.added_flags.get(i).copied().unwrap_or(0);
            match addr {
                SocketAddr::V4(_) => {
                    put_compact(&mut a4, addr);
                    f4.push(flag);
                }
                SocketAddr::V6(_) => {
                    put_compact(&mut a6, addr);
                    f6.push(flag);
                }
            }
        }
        let (mut d4, mut d6) = (Vec::new(), Vec::new());
        for addr in self.dropped.iter().take(Self::MAX_PEERS) {
            match addr {
                SocketAddr::V4(_) => put_compact(&mut d4, addr),
                SocketAddr::V6(_) => put_compact(&mut d6, addr),
            }
        }
        let d: BTreeMap<Vec<u8>, OwnedValue> = [
            (&b"added"[..], a4),
            (b"added.f", f4),
            (b"added6", a6),
            (b"added6.f", f6),
            (b"dropped", d4),
            (b"dropped6", d6),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_vec(), OwnedValue::Bytes(v)))
        .collect();
        Bytes::from(OwnedValue::Dict(d).encode())
    }

    /// Parses a message. IPv4 entries come before IPv6 ones in `added` and `dropped`. Each
    /// compact list is cut to [`Pex::MAX_DECODED`] entries; a list whose length is not a
    /// multiple of 6 (IPv4) or 18 (IPv6) is refused. Unknown keys are ignored.
    pub fn decode(payload: &[u8]) -> Result<Self, ExtError> {
        let value = bencode::decode(payload)?;
        let dict = value.as_dict().ok_or(ExtError::NotADict)?;
        let mut pex = Pex::default();
        for (key, fkey, entry) in [("added", "added.f", 6), ("added6", "added6.f", 18)] {
            let flags = dict.get_bytes(fkey.as_bytes()).unwrap_or_default();
            for (i, addr) in compact_list(dict, key, entry)?.enumerate() {
                pex.added.push(addr);
                pex.added_flags.push(flags.get(i).copied().unwrap_or(0));
            }
        }
        for (key, entry) in [("dropped", 6), ("dropped6", 18)] {
            pex.dropped.extend(compact_list(dict, key, entry)?);
        }
        Ok(pex)
    }
}

/// An integer as an owned bencode value.
fn int(i: impl Into<i64>) -> OwnedValue {
    OwnedValue::Int(i.into())
}

/// A required integer field that must fit in a `u32`.
fn u32_field(dict: &Dict<'_>, key: &'static str) -> Result<u32, ExtError> {
    let i = dict.get_int(key.as_bytes()).ok_or(ExtError::Missing(key))?;
    u32::try_from(i).map_err(|_| ExtError::BadField(key))
}

/// `yourip`: 4 or 16 raw bytes.
fn ip_from_bytes(raw: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(raw) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    let v6 = <[u8; 16]>::try_from(raw).ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(v6)))
}

/// Appends the compact form (address then big-endian port) of `addr`.
fn put_compact(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(a) => out.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.extend_from_slice(&a.ip().octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The first [`Pex::MAX_DECODED`] addresses of compact list `key` (`entry` = 6 or 18 bytes);
/// an absent key is an empty list.
fn compact_list<'a>(
    dict: &Dict<'a>,
    key: &'static str,
    entry: usize,
) -> Result<impl Iterator<Item = SocketAddr> + 'a, ExtError> {
    let raw = dict.get_bytes(key.as_bytes()).unwrap_or_default();
    if !raw.len().is_multiple_of(entry) {
        return Err(ExtError::BadCompactLen {
            key,
            len: raw.len(),
            entry,
        });
    }
    Ok(raw
        .chunks_exact(entry)
        .take(Pex::MAX_DECODED)
        .filter_map(addr_from_compact))
}

/// One compact entry: 4 + 2 or 16 + 2 bytes.
fn addr_from_compact(chunk: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = chunk.split_last_chunk::<2>()?;
    let port = u16::from_be_bytes(*port);
    if let Ok(v4) = <[u8; 4]>::try_from(ip) {
        return Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(v4), port)));
    }
    let v6 = <[u8; 16]>::try_from(ip).ok()?;
    Some(SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(v6),
        port,
        0,
        0,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pex_update_sends_the_difference_once() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut sent = vec![a];
        let pex = Pex::update(&mut sent, &[(b, Pex::FLAG_SEED)]).unwrap();
        assert_eq!(pex.added, vec![b]);
        assert_eq!(pex.added_flags, vec![Pex::FLAG_SEED]);
        assert_eq!(pex.dropped, vec![a]);
        assert_eq!(sent, vec![b]);
        assert!(Pex::update(&mut sent, &[(b, 0)]).is_none());
    }
    use proptest::prelude::*;

    /// A libtorrent 2.0.8 handshake written by hand. (The task brief had `1:v17:` here; the
    /// client string is 18 bytes long, so that version is not valid bencode.)
    const LIBTORRENT_HS: &[u8] = b"d1:md11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei12345e1:pi6881e4:reqqi500e1:v18:libtorrent/2.0.8.0e";

    #[test]
    fn libtorrent_handshake_decodes() {
        let hs = ExtHandshake::decode(LIBTORRENT_HS).unwrap();
        assert_eq!(hs.id_of(UT_METADATA), Some(2));
        assert_eq!(hs.id_of(UT_PEX), Some(1));
        assert_eq!(hs.id_of("lt_donthave"), None);
        assert_eq!(hs.metadata_size, Some(12345));
        assert_eq!(hs.listen_port, Some(6881));
        assert_eq!(hs.reqq, Some(500));
        assert_eq!(hs.client.as_deref(), Some("libtorrent/2.0.8.0"));
        assert_eq!(hs.your_ip, None);
    }

    /// Found writing the `ext_handshake` fuzz target: a client string of invalid UTF-8 was cut to
    /// [`MAX_CLIENT_LEN`] bytes *before* the lossy conversion, which turns each bad byte into a
    /// 3-byte U+FFFD, so a peer could make us keep (and show in `/api/v1` peer lists) a 384-byte
    /// client name against the documented 128-byte bound, and the handshake did not survive a
    /// re-encode. Now the converted string is cut again at a character boundary.
    #[test]
    fn invalid_utf8_client_stays_within_the_bound() {
        let mut raw = b"d1:md11:ut_metadatai1ee1:v128:".to_vec();
        raw.extend_from_slice(&[0xff; 128]);
        raw.push(b'e');
        let hs = ExtHandshake::decode(&raw).unwrap();
        let client = hs.client.clone().unwrap();
        assert!(client.len() <= MAX_CLIENT_LEN, "{} bytes", client.len());
        assert!(client.chars().all(|c| c == char::REPLACEMENT_CHARACTER));
        assert_eq!(ExtHandshake::decode(&hs.encode()).unwrap(), hs);
    }

    #[test]
    fn handshake_with_yourip_and_disabled_extension() {
        let raw = b"d1:md6:ut_pexi0e11:ut_metadatai3ee6:yourip4:\x0a\x00\x00\x01e";
        let hs = ExtHandshake::decode(raw).unwrap();
        assert_eq!(hs.id_of(UT_PEX), None, "0 means disabled");
        assert_eq!(hs.id_of(UT_METADATA), Some(3));
        assert_eq!(hs.your_ip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(hs.client, None);
    }

    #[test]
    fn handshake_out_of_range_fields_are_absent() {
        let raw =
            b"d1:md1:xi300e1:yi-1ee13:metadata_sizei999999999e1:pi70000e4:reqqi-5e6:yourip3:abce";
        let hs = ExtHandshake::decode(raw).unwrap();
        assert!(hs.m.is_empty());
        assert_eq!(hs.metadata_size, None);
        assert_eq!(hs.listen_port, None);
        assert_eq!(hs.reqq, None);
        assert_eq!(hs.your_ip, None);
    }

    #[test]
    fn handshake_bounds() {
        let mut raw = b"d1:md".to_vec();
        for i in 0..100 {
            let name = format!("ext{i:03}");
            raw.extend_from_slice(format!("{}:{}i1e", name.len(), name).as_bytes());
        }
        let long = "x".repeat(65);
        raw.extend_from_slice(format!("65:{long}i1e").as_bytes());
        let client = "c".repeat(300);
        raw.extend_from_slice(format!("e1:v300:{client}e").as_bytes());
        let hs = ExtHandshake::decode(&raw).unwrap();
        assert_eq!(hs.m.len(), MAX_M_ENTRIES);
        assert!(hs.m.iter().all(|(n, _)| n.len() <= MAX_EXT_NAME_LEN));
        assert_eq!(hs.client.map(|c| c.len()), Some(MAX_CLIENT_LEN));
    }

    #[test]
    fn handshake_not_a_dict() {
        assert!(matches!(
            ExtHandshake::decode(b"li1ee"),
            Err(ExtError::NotADict)
        ));
        assert!(matches!(
            ExtHandshake::decode(b"d1:m"),
            Err(ExtError::Bencode(_))
        ));
    }

    #[test]
    fn our_handshake_round_trips() {
        let ours = ExtHandshake::ours(Some(4321), Some(51413));
        let back = ExtHandshake::decode(&ours.encode()).unwrap();
        assert_eq!(back, ours);
        assert_eq!(back.id_of(UT_METADATA), Some(OUR_UT_METADATA_ID));
        assert_eq!(back.id_of(UT_PEX), Some(OUR_UT_PEX_ID));
        let full = ExtHandshake {
            your_ip: Some("2001:db8::1".parse().unwrap()),
            reachable: true,
            ..ExtHandshake::ours(None, None)
        };
        assert_eq!(ExtHandshake::decode(&full.encode()).unwrap(), full);
    }

    #[test]
    fn metadata_known_encodings() {
        assert_eq!(
            &MetadataMsg::Request { piece: 0 }.encode()[..],
            b"d8:msg_typei0e5:piecei0ee"
        );
        assert_eq!(
            &MetadataMsg::Reject { piece: 3 }.encode()[..],
            b"d8:msg_typei2e5:piecei3ee"
        );
        let data = MetadataMsg::Data {
            piece: 0,
            total_size: 3,
            data: Bytes::from_static(b"abc"),
        };
        assert_eq!(
            &data.encode()[..],
            b"d8:msg_typei1e5:piecei0e10:total_sizei3eeabc"
        );
    }

    #[test]
    fn metadata_round_trips_and_data_is_not_copied() {
        for msg in [
            MetadataMsg::Request { piece: 7 },
            MetadataMsg::Reject { piece: 1 },
            MetadataMsg::Data {
                piece: 1,
                total_size: 20000,
                data: Bytes::from(vec![5u8; 20000 - METADATA_PIECE_LEN]),
            },
            MetadataMsg::Data {
                piece: 0,
                total_size: MAX_METADATA_SIZE,
                data: Bytes::from(vec![6u8; METADATA_PIECE_LEN]),
            },
        ] {
            let wire = msg.encode();
            let back = MetadataMsg::decode(&wire).unwrap();
            if let MetadataMsg::Data { data, .. } = &back {
                let end = wire.as_ptr() as usize + wire.len();
                assert_eq!(data.as_ptr() as usize + data.len(), end);
            }
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn metadata_refusals() {
        let check = |raw: &'static [u8]| MetadataMsg::decode(&Bytes::from_static(raw));
        assert!(matches!(
            check(b"d8:msg_typei9e5:piecei0ee"),
            Err(ExtError::UnknownMsgType(9))
        ));
        assert!(matches!(
            check(b"d5:piecei0ee"),
            Err(ExtError::Missing("msg_type"))
        ));
        assert!(matches!(
            check(b"d8:msg_typei0ee"),
            Err(ExtError::Missing("piece"))
        ));
        assert!(matches!(
            check(b"d8:msg_typei0e5:piecei-1ee"),
            Err(ExtError::BadField("piece"))
        ));
        assert!(matches!(
            check(b"d8:msg_typei1e5:piecei0ee"),
            Err(ExtError::Missing("total_size"))
        ));
        assert!(matches!(
            check(b"d8:msg_typei1e5:piecei0e10:total_sizei99999999eeabc"),
            Err(ExtError::BadField("total_size"))
        ));
        assert!(matches!(
            check(b"d8:msg_typei1e5:piecei1e10:total_sizei3eeabc"),
            Err(ExtError::BadField("piece"))
        ));
        let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        long.extend_from_slice(&[0u8; METADATA_PIECE_LEN + 1]);
        assert!(matches!(
            MetadataMsg::decode(&Bytes::from(long)),
            Err(ExtError::BadPieceLen {
                got: 16385,
                expected: 16384
            })
        ));
        assert!(matches!(
            check(b"d8:msg_typei1e5:piecei0e10:total_sizei4eeabc"),
            Err(ExtError::BadPieceLen {
                got: 3,
                expected: 4
            })
        ));
    }

    #[test]
    fn pex_known_bytes() {
        let raw = b"d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x507:added.f1:\x027:dropped6:\x7f\x00\x00\x01\x00\x01e";
        let pex = Pex::decode(raw).unwrap();
        assert_eq!(
            pex.added,
            vec![
                "10.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
        assert_eq!(pex.added_flags, vec![Pex::FLAG_SEED, 0]);
        assert_eq!(pex.dropped, vec!["127.0.0.1:1".parse().unwrap()]);
    }

    #[test]
    fn pex_round_trip_mixed_families() {
        let pex = Pex {
            added: vec![
                "1.2.3.4:5".parse().unwrap(),
                "[2001:db8::2]:6881".parse().unwrap(),
                "5.6.7.8:65535".parse().unwrap(),
            ],
            added_flags: vec![1, 2, 0x10],
            dropped: vec!["[::1]:1".parse().unwrap(), "9.9.9.9:9".parse().unwrap()],
        };
        let back = Pex::decode(&pex.encode()).unwrap();
        // v4 first, then v6, flags following their address.
        assert_eq!(back.added, vec![pex.added[0], pex.added[2], pex.added[1]]);
        assert_eq!(back.added_flags, vec![1, 0x10, 2]);
        assert_eq!(back.dropped, vec![pex.dropped[1], pex.dropped[0]]);
    }

    #[test]
    fn pex_caps() {
        let many: Vec<SocketAddr> = (0..300u32)
            .map(|i| SocketAddr::from((Ipv4Addr::from(i), 1000)))
            .collect();
        let sent = Pex {
            added: many.clone(),
            added_flags: vec![],
            dropped: many.clone(),
        };
        let back = Pex::decode(&sent.encode()).unwrap();
        assert_eq!(back.added.len(), Pex::MAX_PEERS);
        assert_eq!(back.added_flags, vec![0; Pex::MAX_PEERS]);
        assert_eq!(back.dropped.len(), Pex::MAX_PEERS);

        let mut compact = Vec::new();
        for a in &many {
            put_compact(&mut compact, a);
        }
        let mut raw = format!("d5:added{}:", compact.len()).into_bytes();
        raw.extend_from_slice(&compact);
        raw.push(b'e');
        let back = Pex::decode(&raw).unwrap();
        assert_eq!(back.added.len(), Pex::MAX_DECODED);
        assert_eq!(back.added_flags.len(), Pex::MAX_DECODED);
        assert_eq!(back.added[..], many[..Pex::MAX_DECODED]);
    }

    #[test]
    fn pex_bad_compact_len() {
        assert!(matches!(
            Pex::decode(b"d5:added5:abcdee"),
            Err(ExtError::BadCompactLen {
                key: "added",
                len: 5,
                entry: 6
            })
        ));
        assert!(matches!(
            Pex::decode(b"d8:dropped66:abcdefe"),
            Err(ExtError::BadCompactLen {
                key: "dropped6",
                len: 6,
                entry: 18
            })
        ));
        assert_eq!(Pex::decode(b"de").unwrap(), Pex::default());
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        ]
    }

    proptest! {
        #[test]
        fn prop_handshake_round_trip(
            m in proptest::collection::btree_map("[a-z_]{1,20}", 0u8..=255, 0..10),
            client in proptest::option::of("[ -~]{0,40}"),
            listen_port in proptest::option::of(1u16..),
            metadata_size in proptest::option::of(1..=MAX_METADATA_SIZE),
            reqq in proptest::option::of(1u32..),
            v6 in any::<bool>(),
            ip in any::<[u8; 16]>(),
            reachable in any::<bool>(),
        ) {
            let your_ip = match v6 {
                true => Some(IpAddr::from(ip)),
                false => None,
            };
            let hs = ExtHandshake {
                m: m.into_iter().collect(),
                client,
                listen_port,
                metadata_size,
                reqq,
                your_ip,
                reachable,
            };
            prop_assert_eq!(ExtHandshake::decode(&hs.encode()).unwrap(), hs);
        }

        #[test]
        fn prop_metadata_round_trip(piece in 0u32..512, kind in 0u8..3,
                                    data in proptest::collection::vec(any::<u8>(), 1..=METADATA_PIECE_LEN)) {
            let msg = match kind {
                0 => MetadataMsg::Request { piece },
                1 => MetadataMsg::Reject { piece },
                // `piece` is the last one, `data` its remainder (or a whole 16 KiB).
                _ => {
                    let total_size = (piece as usize * METADATA_PIECE_LEN + data.len()) as u32;
                    MetadataMsg::Data { piece, total_size, data: Bytes::from(data) }
                }
            };
            prop_assert_eq!(MetadataMsg::decode(&msg.encode()).unwrap(), msg);
        }

        #[test]
        fn prop_pex_round_trip(v4 in proptest::collection::vec((any::<[u8; 4]>(), any::<u16>(), any::<u8>()), 0..20),
                               v6 in proptest::collection::vec((any::<[u8; 16]>(), any::<u16>(), any::<u8>()), 0..20),
                               dropped in proptest::collection::vec(addr(), 0..20)) {
            let mut pex = Pex::default();
            for (ip, port, f) in &v4 {
                pex.added.push(SocketAddr::from((*ip, *port)));
                pex.added_flags.push(*f);
            }
            for (ip, port, f) in &v6 {
                pex.added.push(SocketAddr::from((*ip, *port)));
                pex.added_flags.push(*f);
            }
            pex.dropped = dropped.iter().filter(|a| a.is_ipv4()).chain(dropped.iter().filter(|a| a.is_ipv6())).copied().collect();
            prop_assert_eq!(Pex::decode(&pex.encode()).unwrap(), pex);
        }

        #[test]
        fn prop_garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ExtHandshake::decode(&raw);
            let _ = Pex::decode(&raw);
            let _ = MetadataMsg::decode(&Bytes::from(raw));
        }

        #[test]
        fn prop_mutated_payloads_never_panic(which in 0u8..3, flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
            let mut raw = match which {
                0 => LIBTORRENT_HS.to_vec(),
                1 => b"d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x507:added.f1:\x02e".to_vec(),
                _ => b"d8:msg_typei1e5:piecei0e10:total_sizei3eeabc".to_vec(),
            };
            for (at, byte) in flips {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
            let _ = ExtHandshake::decode(&raw);
            let _ = Pex::decode(&raw);
            let _ = MetadataMsg::decode(&Bytes::from(raw));
        }
    }
}
