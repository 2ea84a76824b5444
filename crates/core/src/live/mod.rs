//! Live streams: the descriptor, the signed piece header and the `pc_live` extension messages
//! (DESIGN §3), the live swarm state machine ([`swarm`]), the window rule it shares with the
//! engine's buffer ([`window`]), the CDN fallback policy ([`fallback`]) and HLS playlists
//! ([`hls`]).
//!
//! A live stream is identified like a torrent: its content ID is the SHA-1 of the bencoded info
//! dictionary `{"name": …, "live": {"pubkey": …, "piece duration ms": …, "max piece length": …,
//! "window s": …}}`, so the ID binds the broadcaster's ed25519 key and viewers who know only the
//! ID fetch the info dictionary over BEP 9 and learn the key every piece must be signed with.
//!
//! Every piece carries a fixed-size [`PieceHeader`]: index, timestamp, duration, flags, length,
//! the *block root*, and an ed25519 signature over `"peercdn-live-v1" || content_id || every
//! header field before it` (big-endian). The block root is the SHA-256 of the concatenated
//! SHA-256 hashes of the payload's 16 KiB blocks ([`BLOCK_LEN`], the last one shorter): a relay
//! that is sent those hashes (`pc_live` [`LiveMsg::Hashes`], 32 bytes per block, checked once
//! against the signed root) can verify each block on arrival and forward it at once, so a piece
//! crosses a hop in a block's time instead of a piece's. The signature is still paid once per
//! piece, at the source. A header is verified before it is relayed, each block before it is
//! relayed, the whole payload before it is played.
//!
//! The block root is live version 2 (the info dictionary's `"version": 2`); version 1 (one
//! SHA-256 over the whole payload, relayed only once complete) is refused with an error that
//! says so: an old descriptor must be published again.

use bytes::{BufMut, Bytes, BytesMut};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::bencode::{self, OwnedValue};
use crate::id::InfoHash;
pub use crate::wire::BLOCK_LEN;

pub mod fallback;
pub mod hls;
pub mod llhls;
pub mod swarm;
pub mod window;

/// The BEP 10 extension name of the live protocol.
pub const PC_LIVE: &str = "pc_live";
/// The extended message ID we assign to `pc_live` in our handshakes (1 and 2 are ut_metadata
/// and ut_pex).
pub const OUR_PC_LIVE_ID: u8 = 3;
/// Domain separation prefix of header signatures.
pub const SIGNATURE_CONTEXT: &[u8] = b"peercdn-live-v1";
/// Size of an encoded [`PieceHeader`].
pub const HEADER_LEN: usize = 4 + 8 + 4 + 1 + 4 + 32 + 64;
/// Header flag: the piece starts at a random access point (keyframe) and decodes on its own.
pub const FLAG_KEYFRAME: u8 = 0x01;
/// Header flag: the media timeline is discontinuous before this piece.
pub const FLAG_DISCONTINUITY: u8 = 0x02;
/// Largest piece any descriptor may declare (a bound on what a peer makes us buffer).
pub const MAX_PIECE_LENGTH: u32 = 8 << 20;
/// Longest window any descriptor may declare, seconds.
pub const MAX_WINDOW_S: u32 = 3600;
/// The live protocol version a descriptor declares (`"version"` in its `live` dictionary).
pub const LIVE_VERSION: i64 = 2;
/// Most blocks a piece can have (hence block hashes one `Hashes` message may carry).
pub const MAX_BLOCKS: usize = MAX_PIECE_LENGTH.div_ceil(BLOCK_LEN) as usize;

/// SHA-256 of one 16 KiB block of a piece's payload.
pub type BlockHash = [u8; 32];

/// The hashes of a payload's [`BLOCK_LEN`] blocks (the last one may be shorter).
pub fn block_hashes(payload: &[u8]) -> Vec<BlockHash> {
    payload
        .chunks(BLOCK_LEN as usize)
        .map(|b| Sha256::digest(b).into())
        .collect()
}

/// The block root of a piece: SHA-256 over its block hashes, in order.
pub fn block_root(hashes: &[BlockHash]) -> [u8; 32] {
    let mut h = Sha256::new();
    for b in hashes {
        h.update(b);
    }
    h.finalize().into()
}

/// The hash of one block, to compare with its entry in the piece's block hashes.
pub fn hash_block(block: &[u8]) -> BlockHash {
    Sha256::digest(block).into()
}

/// Why live data was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveError {
    /// The descriptor or info dictionary is not valid bencode.
    #[error("live descriptor: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// The info dictionary lacks a field or has one out of range.
    #[error("live descriptor: {0}")]
    BadDescriptor(&'static str),
    /// A header of the wrong size.
    #[error("live piece header must be {HEADER_LEN} bytes, got {0}")]
    HeaderLength(usize),
    /// The signature does not verify with the stream's key and content ID.
    #[error("live piece {0}: bad signature")]
    BadSignature(u32),
    /// The payload does not match the header's length or hash.
    #[error("live piece {0}: payload does not match its header")]
    BadPayload(u32),
    /// Block hashes that do not match the header's length or block root.
    #[error("live piece {0}: block hashes do not match its header")]
    BadBlockHashes(u32),
    /// A `pc_live` message that cannot be decoded.
    #[error("pc_live message: {0}")]
    BadMessage(&'static str),
}

/// The parameters of a live stream, from the `live` dictionary of its info dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveParams {
    /// Display name.
    pub name: String,
    /// The broadcaster's ed25519 public key.
    pub pubkey: [u8; 32],
    /// Target duration of a piece, milliseconds.
    pub piece_duration_ms: u32,
    /// Longest piece payload, bytes.
    pub max_piece_length: u32,
    /// How long pieces stay available, seconds.
    pub window_s: u32,
}

impl LiveParams {
    /// How many pieces the window holds (with room for short pieces cut at keyframes).
    pub fn window_pieces(&self) -> u32 {
        let per_s = 1000 / self.piece_duration_ms.max(1) + 1;
        (self.window_s.max(1) * per_s * 2).clamp(16, 65_536)
    }

    /// The bencoded info dictionary; its SHA-1 is the content ID.
    pub fn info_bytes(&self) -> Vec<u8> {
        OwnedValue::dict()
            .with(
                "live",
                OwnedValue::dict()
                    .with(
                        "max piece length",
                        OwnedValue::int(self.max_piece_length.into()),
                    )
                    .with(
                        "piece duration ms",
                        OwnedValue::int(self.piece_duration_ms.into()),
                    )
                    .with("pubkey", OwnedValue::bytes(self.pubkey.to_vec()))
                    .with("version", OwnedValue::int(LIVE_VERSION))
                    .with("window s", OwnedValue::int(self.window_s.into()))
                    .build(),
            )
            .with("name", OwnedValue::str(&self.name))
            .build()
            .encode()
    }

    /// The content ID.
    pub fn content_id(&self) -> InfoHash {
        InfoHash::of_info(&self.info_bytes())
    }

    /// Parses an info dictionary. `Ok(None)` when it is a valid dictionary without a `live`
    /// key (an ordinary torrent).
    pub fn from_info_bytes(info: &[u8]) -> Result<Option<LiveParams>, LiveError> {
        let v = bencode::decode(info)?;
        let d = v
            .as_dict()
            .ok_or(LiveError::BadDescriptor("info is not a dictionary"))?;
        let Some(live) = d.get(b"live") else {
            return Ok(None);
        };
        let live = live
            .as_dict()
            .ok_or(LiveError::BadDescriptor("`live` is not a dictionary"))?;
        if live.get_int(b"version").unwrap_or(1) != LIVE_VERSION {
            return Err(LiveError::BadDescriptor(
                "live version 1 (whole-piece hashes) is not supported: publish the stream again",
            ));
        }
        let name = d
            .get_str(b"name")
            .ok_or(LiveError::BadDescriptor("missing name"))?
            .to_string();
        let pubkey: [u8; 32] = live
            .get_bytes(b"pubkey")
            .and_then(|b| b.try_into().ok())
            .ok_or(LiveError::BadDescriptor("pubkey must be 32 bytes"))?;
        VerifyingKey::from_bytes(&pubkey)
            .map_err(|_| LiveError::BadDescriptor("pubkey is not an ed25519 key"))?;
        let int = |k: &[u8], lo: i64, hi: i64, what: &'static str| {
            live.get_int(k)
                .filter(|n| (lo..=hi).contains(n))
                .map(|n| n as u32)
                .ok_or(LiveError::BadDescriptor(what))
        };
        Ok(Some(LiveParams {
            name,
            pubkey,
            piece_duration_ms: int(
                b"piece duration ms",
                10,
                60_000,
                "piece duration ms must be 10..=60000",
            )?,
            max_piece_length: int(
                b"max piece length",
                188,
                MAX_PIECE_LENGTH.into(),
                "max piece length out of range",
            )?,
            window_s: int(b"window s", 1, MAX_WINDOW_S.into(), "window s out of range")?,
        }))
    }
}

/// Most tracker URLs, and most CDN base URLs, kept from a `.peerlive` file.
pub const MAX_DESCRIPTOR_URLS: usize = 64;

/// A `.peerlive` file: the info dictionary plus optional trackers and CDN base URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The stream's parameters.
    pub params: LiveParams,
    /// The info dictionary exactly as hashed.
    pub info_bytes: Bytes,
    /// Tracker tiers (`announce-list`).
    pub trackers: Vec<String>,
    /// CDN base URLs (`url-list`): each serves `BASE/ID/seg/INDEX.ts` and `.hdr`.
    pub cdn: Vec<String>,
    /// Where viewers may also hand their receipts over HTTP (`collector`): base URLs of the
    /// broadcaster's engine API (`BASE/api/v1/receipts`). Outside the info dictionary, like
    /// `url-list`: receipts are signed, so a changed address can lose them but not forge one.
    pub collector: Vec<String>,
}

impl Descriptor {
    /// A descriptor for new parameters.
    pub fn new(params: LiveParams, trackers: Vec<String>, cdn: Vec<String>) -> Descriptor {
        let info_bytes = Bytes::from(params.info_bytes());
        Descriptor {
            params,
            info_bytes,
            trackers,
            cdn,
            collector: Vec::new(),
        }
    }

    /// The content ID.
    pub fn content_id(&self) -> InfoHash {
        InfoHash::of_info(&self.info_bytes)
    }

    /// Builds the descriptor of an info dictionary fetched by ID (no trackers or CDN known).
    pub fn from_info_bytes(info: Bytes) -> Result<Descriptor, LiveError> {
        let params = LiveParams::from_info_bytes(&info)?.ok_or(LiveError::BadDescriptor(
            "not a live stream (no `live` key)",
        ))?;
        Ok(Descriptor {
            params,
            info_bytes: info,
            trackers: Vec::new(),
            cdn: Vec::new(),
            collector: Vec::new(),
        })
    }

    /// Parses a `.peerlive` file.
    pub fn from_bytes(buf: &[u8]) -> Result<Descriptor, LiveError> {
        let v = bencode::decode(buf)?;
        let d = v
            .as_dict()
            .ok_or(LiveError::BadDescriptor("not a dictionary"))?;
        let info = d
            .get_dict(b"info")
            .ok_or(LiveError::BadDescriptor("missing info"))?;
        let strings = |key: &[u8]| -> Vec<String> {
            let mut out = Vec::new();
            for v in d.get_list(key).unwrap_or(&[]) {
                if let Some(s) = v.as_str() {
                    out.push(s.to_string());
                } else if let Some(l) = v.as_list() {
                    let room = MAX_DESCRIPTOR_URLS - out.len();
                    let urls = l.iter().filter_map(|x| x.as_str()).take(room);
                    out.extend(urls.map(str::to_string));
                }
                if out.len() >= MAX_DESCRIPTOR_URLS {
                    break;
                }
            }
            out
        };
        let mut desc = Descriptor::from_info_bytes(Bytes::copy_from_slice(info.raw()))?;
        desc.trackers = strings(b"announce-list");
        desc.cdn = strings(b"url-list");
        desc.collector = strings(b"collector");
        Ok(desc)
    }

    /// Encodes the `.peerlive` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        // The info dictionary is spliced in raw so its hash cannot change.
        let mut outer = Vec::with_capacity(self.info_bytes.len() + 256);
        outer.push(b'd');
        if !self.trackers.is_empty() {
            let tiers = OwnedValue::list(
                self.trackers
                    .iter()
                    .map(|t| OwnedValue::list([OwnedValue::str(t)])),
            );
            bencode_key(&mut outer, b"announce-list");
            tiers.encode_into(&mut outer);
        }
        if !self.collector.is_empty() {
            bencode_key(&mut outer, b"collector");
            OwnedValue::list(self.collector.iter().map(|u| OwnedValue::str(u)))
                .encode_into(&mut outer);
        }
        bencode_key(&mut outer, b"info");
        outer.extend_from_slice(&self.info_bytes);
        if !self.cdn.is_empty() {
            bencode_key(&mut outer, b"url-list");
            OwnedValue::list(self.cdn.iter().map(|u| OwnedValue::str(u))).encode_into(&mut outer);
        }
        outer.push(b'e');
        outer
    }
}

fn bencode_key(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(key.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(key);
}

/// The signed header of one live piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceHeader {
    /// Piece index, increasing by one per piece from the stream's start.
    pub index: u32,
    /// When the source made the piece, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Media duration of the piece, microseconds.
    pub duration_us: u32,
    /// [`FLAG_KEYFRAME`], [`FLAG_DISCONTINUITY`].
    pub flags: u8,
    /// Payload length, bytes.
    pub length: u32,
    /// SHA-256 over the SHA-256 of each [`BLOCK_LEN`] block of the payload ([`block_root`]).
    pub root: [u8; 32],
    /// ed25519 signature (see the module doc).
    pub signature: [u8; 64],
}

impl PieceHeader {
    /// Makes and signs the header of `payload`.
    pub fn sign(
        key: &SigningKey,
        content_id: &InfoHash,
        index: u32,
        timestamp_us: u64,
        duration_us: u32,
        flags: u8,
        payload: &[u8],
    ) -> PieceHeader {
        let mut h = PieceHeader {
            index,
            timestamp_us,
            duration_us,
            flags,
            length: payload.len() as u32,
            root: block_root(&block_hashes(payload)),
            signature: [0; 64],
        };
        h.signature = key.sign(&h.signed_message(content_id)).to_bytes();
        h
    }

    /// True when the piece starts at a keyframe.
    pub fn is_keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    /// True when the timeline is discontinuous before this piece.
    pub fn is_discontinuity(&self) -> bool {
        self.flags & FLAG_DISCONTINUITY != 0
    }

    fn signed_message(&self, content_id: &InfoHash) -> [u8; 15 + 20 + HEADER_LEN - 64] {
        let mut m = [0u8; 15 + 20 + HEADER_LEN - 64];
        m[..15].copy_from_slice(SIGNATURE_CONTEXT);
        m[15..35].copy_from_slice(&content_id.0);
        let mut fields = [0u8; HEADER_LEN];
        self.write_to(&mut fields);
        m[35..].copy_from_slice(&fields[..HEADER_LEN - 64]);
        m
    }

    /// Checks the signature against the stream's key and content ID.
    pub fn verify(&self, pubkey: &[u8; 32], content_id: &InfoHash) -> Result<(), LiveError> {
        let key =
            VerifyingKey::from_bytes(pubkey).map_err(|_| LiveError::BadSignature(self.index))?;
        key.verify(
            &self.signed_message(content_id),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| LiveError::BadSignature(self.index))
    }

    /// Checks a payload against the header's length and block root; returns its block hashes
    /// (what a relay sends before the piece's first block).
    pub fn check_payload(&self, payload: &[u8]) -> Result<Vec<BlockHash>, LiveError> {
        let hashes = block_hashes(payload);
        if payload.len() as u64 != u64::from(self.length) || block_root(&hashes) != self.root {
            return Err(LiveError::BadPayload(self.index));
        }
        Ok(hashes)
    }

    /// How many [`BLOCK_LEN`] blocks the payload has.
    pub fn blocks(&self) -> usize {
        self.length.div_ceil(BLOCK_LEN) as usize
    }

    /// Checks a piece's block hashes against the header's length and block root.
    pub fn check_hashes(&self, hashes: &[BlockHash]) -> Result<(), LiveError> {
        if hashes.len() != self.blocks() || block_root(hashes) != self.root {
            return Err(LiveError::BadBlockHashes(self.index));
        }
        Ok(())
    }

    fn write_to(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..4].copy_from_slice(&self.index.to_be_bytes());
        out[4..12].copy_from_slice(&self.timestamp_us.to_be_bytes());
        out[12..16].copy_from_slice(&self.duration_us.to_be_bytes());
        out[16] = self.flags;
        out[17..21].copy_from_slice(&self.length.to_be_bytes());
        out[21..53].copy_from_slice(&self.root);
        out[53..117].copy_from_slice(&self.signature);
    }

    /// The 117-byte wire form.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.write_to(&mut out);
        out
    }

    /// Parses the wire form (does not verify).
    pub fn decode(buf: &[u8]) -> Result<PieceHeader, LiveError> {
        let b: &[u8; HEADER_LEN] = buf
            .try_into()
            .map_err(|_| LiveError::HeaderLength(buf.len()))?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[4..12]);
        let mut root = [0u8; 32];
        root.copy_from_slice(&b[21..53]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[53..117]);
        Ok(PieceHeader {
            index: u32_at(0),
            timestamp_us: u64::from_be_bytes(ts),
            duration_us: u32_at(12),
            flags: b[16],
            length: u32_at(17),
            root,
            signature,
        })
    }
}

/// Most headers one `pc_live` message may carry.
pub const MAX_HEADERS_PER_MSG: usize = 512;

/// A `pc_live` extension message. Wire form: a bencoded dictionary `{"msg_type": n, …}`
/// followed, for `Have`, by the concatenated 117-byte headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveMsg {
    /// `msg_type 0`: the sender's window: it drops pieces before `first`; `last` is the newest
    /// piece it knows of (`None` before any). Sent on connect and when the window moves by a lot.
    Window {
        /// Oldest index the sender still keeps.
        first: u32,
        /// Newest index the sender knows (not necessarily has).
        last: Option<u32>,
    },
    /// `msg_type 1`: the sender has these pieces, or verified blocks of them and is fetching
    /// the rest (a relay announces a piece at its first verified block and serves each block
    /// as it arrives); each header is signed.
    Have(Vec<PieceHeader>),
    /// `msg_type 2`: the block hashes of piece `index`, sent by an uploader before the first
    /// block of that piece it sends on this connection. The receiver checks them against the
    /// header's signed root once, then each block against its hash.
    Hashes {
        /// The piece.
        index: u32,
        /// SHA-256 of each of its [`BLOCK_LEN`] blocks, in order (1..=[`MAX_BLOCKS`]).
        hashes: Vec<BlockHash>,
    },
}

impl LiveMsg {
    /// Encodes the payload of the extended message.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            LiveMsg::Window { first, last } => {
                let d = OwnedValue::dict()
                    .with("first", OwnedValue::int((*first).into()))
                    .with_opt("last", last.map(|l| OwnedValue::int(l.into())))
                    .with("msg_type", OwnedValue::int(0))
                    .build();
                out.put_slice(&d.encode());
            }
            LiveMsg::Have(headers) => {
                let d = OwnedValue::dict()
                    .with("msg_type", OwnedValue::int(1))
                    .build();
                out.reserve(16 + headers.len() * HEADER_LEN);
                out.put_slice(&d.encode());
                for h in headers {
                    out.put_slice(&h.encode());
                }
            }
            LiveMsg::Hashes { index, hashes } => {
                let d = OwnedValue::dict()
                    .with("index", OwnedValue::int((*index).into()))
                    .with("msg_type", OwnedValue::int(2))
                    .build();
                out.reserve(32 + hashes.len() * 32);
                out.put_slice(&d.encode());
                for h in hashes {
                    out.put_slice(h);
                }
            }
        }
        out.freeze()
    }

    /// Decodes the payload of an extended message.
    pub fn decode(payload: &[u8]) -> Result<LiveMsg, LiveError> {
        let (v, used) = bencode::decode_prefix(payload)?;
        let d = v
            .as_dict()
            .ok_or(LiveError::BadMessage("not a dictionary"))?;
        let idx = |k: &[u8]| {
            d.get_int(k)
                .filter(|n| (0..=i64::from(u32::MAX)).contains(n))
                .map(|n| n as u32)
        };
        let rest = payload.get(used..).unwrap_or(&[]);
        match d.get_int(b"msg_type") {
            Some(0) => Ok(LiveMsg::Window {
                first: idx(b"first").ok_or(LiveError::BadMessage("window without first"))?,
                last: idx(b"last"),
            }),
            Some(1) => {
                if rest.len() % HEADER_LEN != 0 {
                    return Err(LiveError::BadMessage("have: trailing bytes"));
                }
                if rest.len() / HEADER_LEN > MAX_HEADERS_PER_MSG {
                    return Err(LiveError::BadMessage("have: too many headers"));
                }
                rest.chunks_exact(HEADER_LEN)
                    .map(PieceHeader::decode)
                    .collect::<Result<Vec<_>, _>>()
                    .map(LiveMsg::Have)
            }
            Some(2) => {
                let index = idx(b"index").ok_or(LiveError::BadMessage("hashes without index"))?;
                if rest.is_empty() || rest.len() % 32 != 0 {
                    return Err(LiveError::BadMessage(
                        "hashes: not a list of 32-byte hashes",
                    ));
                }
                if rest.len() / 32 > MAX_BLOCKS {
                    return Err(LiveError::BadMessage("hashes: too many blocks"));
                }
                let hashes = rest
                    .chunks_exact(32)
                    .map(|c| c.try_into().unwrap_or([0; 32]))
                    .collect();
                Ok(LiveMsg::Hashes { index, hashes })
            }
            _ => Err(LiveError::BadMessage("unknown msg_type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn params() -> LiveParams {
        LiveParams {
            name: "Channel".into(),
            pubkey: key().verifying_key().to_bytes(),
            piece_duration_ms: 500,
            max_piece_length: 2 << 20,
            window_s: 120,
        }
    }

    #[test]
    fn descriptor_round_trip_keeps_the_id() {
        let mut d = Descriptor::new(
            params(),
            vec!["http://127.0.0.1:1/a".into()],
            vec!["http://127.0.0.1:2/cdn".into()],
        );
        d.collector = vec!["http://127.0.0.1:3".into()];
        let back = Descriptor::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.content_id(), params().content_id());
        assert_eq!(
            LiveParams::from_info_bytes(&d.info_bytes).unwrap(),
            Some(params())
        );
    }

    /// Found writing the `descriptor` fuzz target: the cap of 64 tracker URLs was checked only
    /// between tiers, so one `announce-list` tier of any length was kept whole (a file of a few
    /// MB could name a hundred thousand trackers), and such a descriptor did not survive a
    /// re-encode (written back one tier per URL, it parsed to 64). Now every list stops at
    /// [`MAX_DESCRIPTOR_URLS`].
    #[test]
    fn one_long_tier_is_cut_to_the_url_cap() {
        let tier: Vec<String> = (0..1000).map(|i| format!("http://t{i}/a")).collect();
        let mut raw = b"d13:announce-listl".to_vec();
        OwnedValue::list(tier.iter().map(|t| OwnedValue::str(t))).encode_into(&mut raw);
        raw.extend_from_slice(b"e4:info");
        raw.extend_from_slice(&params().info_bytes());
        raw.push(b'e');
        let d = Descriptor::from_bytes(&raw).unwrap();
        assert_eq!(d.trackers, tier[..MAX_DESCRIPTOR_URLS]);
        assert_eq!(Descriptor::from_bytes(&d.to_bytes()).unwrap(), d);
    }

    #[test]
    fn header_signs_verifies_and_rejects_tampering() {
        let id = params().content_id();
        let h = PieceHeader::sign(
            &key(),
            &id,
            9,
            1_700_000_000_000_000,
            500_000,
            FLAG_KEYFRAME,
            b"payload",
        );
        assert_eq!(PieceHeader::decode(&h.encode()).unwrap(), h);
        h.verify(&params().pubkey, &id).unwrap();
        assert_eq!(
            h.check_payload(b"payload").unwrap(),
            block_hashes(b"payload")
        );
        assert_eq!(h.check_payload(b"paylaod"), Err(LiveError::BadPayload(9)));
        let mut forged = h;
        forged.index = 10;
        assert_eq!(
            forged.verify(&params().pubkey, &id),
            Err(LiveError::BadSignature(10))
        );
        let other = InfoHash([1; 20]);
        assert!(h.verify(&params().pubkey, &other).is_err());
        let stranger = SigningKey::from_bytes(&[8u8; 32]);
        let h2 = PieceHeader::sign(&stranger, &id, 9, 0, 0, 0, b"x");
        assert!(h2.verify(&params().pubkey, &id).is_err());
    }

    /// A payload of several blocks: the block hashes add up to the signed root, and a hash list
    /// that is short, long or altered does not.
    #[test]
    fn block_hashes_add_up_to_the_signed_root() {
        let id = params().content_id();
        let payload: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let h = PieceHeader::sign(&key(), &id, 3, 1, 1, 0, &payload);
        assert_eq!(h.blocks(), 3);
        let hashes = h.check_payload(&payload).unwrap();
        assert_eq!(hashes.len(), 3);
        assert_eq!(hashes[2], hash_block(&payload[2 * BLOCK_LEN as usize..]));
        h.check_hashes(&hashes).unwrap();
        assert_eq!(
            h.check_hashes(&hashes[..2]),
            Err(LiveError::BadBlockHashes(3))
        );
        let mut altered = hashes.clone();
        altered[1][0] ^= 1;
        assert!(h.check_hashes(&altered).is_err());
        let mut longer = hashes;
        longer.push([0; 32]);
        assert!(h.check_hashes(&longer).is_err());
    }

    /// Version 1 descriptors (no `version` key: one hash over the whole payload) are refused
    /// with an error that says what to do.
    #[test]
    fn a_version_1_descriptor_is_refused() {
        let p = params();
        let v1 = OwnedValue::dict()
            .with(
                "live",
                OwnedValue::dict()
                    .with(
                        "max piece length",
                        OwnedValue::int(p.max_piece_length.into()),
                    )
                    .with("piece duration ms", OwnedValue::int(500))
                    .with("pubkey", OwnedValue::bytes(p.pubkey.to_vec()))
                    .with("window s", OwnedValue::int(120))
                    .build(),
            )
            .with("name", OwnedValue::str("old"))
            .build()
            .encode();
        let err = LiveParams::from_info_bytes(&v1).unwrap_err();
        assert!(err.to_string().contains("version 1"), "{err}");
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let id = params().content_id();
        let h = PieceHeader::sign(&key(), &id, 1, 2, 3, 0, b"abc");
        for m in [
            LiveMsg::Window {
                first: 5,
                last: Some(9),
            },
            LiveMsg::Window {
                first: 0,
                last: None,
            },
            LiveMsg::Have(vec![h, h]),
        ] {
            assert_eq!(LiveMsg::decode(&m.encode()).unwrap(), m);
        }
        let hashes = LiveMsg::Hashes {
            index: 4,
            hashes: vec![[1; 32], [2; 32]],
        };
        assert_eq!(LiveMsg::decode(&hashes.encode()).unwrap(), hashes);
        assert!(
            LiveMsg::decode(b"d5:indexi1e8:msg_typei2ee").is_err(),
            "no hashes"
        );
        assert!(LiveMsg::decode(b"d5:indexi1e8:msg_typei2ee\x01").is_err());
        assert!(LiveMsg::decode(b"").is_err());
        assert!(LiveMsg::decode(b"d8:msg_typei1ee\x01").is_err());
        assert!(LiveMsg::decode(b"d8:msg_typei7ee").is_err());
        assert!(PieceHeader::decode(&[0; 116]).is_err());
    }
}
