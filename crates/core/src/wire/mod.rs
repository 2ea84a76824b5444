//! The peer wire codec: BEP 3 messages, BEP 6 fast extension, BEP 10 extension protocol framing.
//! Extension payloads (handshake, ut_metadata, ut_pex) live in [`ext`].
//!
//! Framing follows check → parse → advance: [`decode`] looks at a buffer, returns `Ok(None)` when
//! a whole message is not there yet, and only consumes bytes for a whole, valid message.
//! Block payloads are split off the receive buffer without copying ([`bytes::Bytes`]).

pub mod ext;

use bytes::{Bytes, BytesMut};

use crate::id::{InfoHash, PeerId};

/// Length of the BitTorrent handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Largest block we request and serve (16 KiB); requests above [`MAX_REQUEST_LEN`] are refused.
pub const BLOCK_LEN: u32 = 16 * 1024;
/// Largest request length accepted from a peer (128 KiB, as libtorrent).
pub const MAX_REQUEST_LEN: u32 = 128 * 1024;

/// The 68-byte handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Reserved bits; see the `RESERVED_*` helpers.
    pub reserved: [u8; 8],
    /// The swarm.
    pub info_hash: InfoHash,
    /// The sender.
    pub peer_id: PeerId,
}

/// One block: piece index, byte offset in the piece, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// Piece index.
    pub index: u32,
    /// Offset in the piece.
    pub begin: u32,
    /// Length in bytes.
    pub len: u32,
}

/// A peer wire message after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Zero-length keep-alive.
    KeepAlive,
    /// id 0.
    Choke,
    /// id 1.
    Unchoke,
    /// id 2.
    Interested,
    /// id 3.
    NotInterested,
    /// id 4.
    Have(u32),
    /// id 5, the raw wire bitfield (its length is checked against the torrent by the swarm).
    Bitfield(Bytes),
    /// id 6.
    Request(BlockRef),
    /// id 7.
    Piece {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// Block data (split off the receive buffer, no copy).
        data: Bytes,
    },
    /// id 8.
    Cancel(BlockRef),
    /// id 9, DHT port (BEP 5).
    Port(u16),
    /// id 0x0D, BEP 6.
    Suggest(u32),
    /// id 0x0E, BEP 6.
    HaveAll,
    /// id 0x0F, BEP 6.
    HaveNone,
    /// id 0x10, BEP 6.
    Reject(BlockRef),
    /// id 0x11, BEP 6.
    AllowedFast(u32),
    /// id 20, BEP 10: extended message id (0 = handshake) and payload.
    Extended {
        /// Extended message ID as the receiver assigned it (0 is the extension handshake).
        id: u8,
        /// The payload, undecoded.
        payload: Bytes,
    },
}

/// Why bytes from a peer are not a valid message. Any of these closes that one connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The handshake's protocol string is not `\x13BitTorrent protocol` (e.g. an MSE-encrypted dial).
    #[error("not a BitTorrent handshake")]
    NotBitTorrent,
    /// The length prefix is above the limit given to [`decode`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: u32,
        /// Limit.
        max: u32,
    },
    /// A message ID we do not know.
    #[error("unknown message id {0}")]
    UnknownId(u8),
    /// A known message with the wrong length for its kind.
    #[error("message id {id} with bad length {len}")]
    BadLength {
        /// Message ID.
        id: u8,
        /// Payload length including the id byte.
        len: u32,
    },
}

impl Handshake {
    /// Reserved bits we send: BEP 10 extension protocol (byte 5, 0x10) and BEP 6 fast (byte 7, 0x04).
    pub fn ours(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10;
        reserved[7] |= 0x04;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// The peer speaks BEP 10.
    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    /// The peer speaks BEP 6.
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }

    /// Serialises the 68 bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        todo!("wire helper")
    }

    /// Parses exactly 68 bytes.
    pub fn decode(buf: &[u8; HANDSHAKE_LEN]) -> Result<Self, WireError> {
        let _ = buf;
        todo!("wire helper")
    }
}

/// Decodes one message from the front of `buf`: `Ok(None)` if incomplete (nothing consumed),
/// `Ok(Some(msg))` consuming exactly that message, or an error for bad input. `max_len` bounds
/// the length prefix (it must at least allow a 16 KiB piece message plus header).
pub fn decode(buf: &mut BytesMut, max_len: u32) -> Result<Option<Message>, WireError> {
    let _ = (buf, max_len);
    todo!("wire helper")
}

/// Appends `msg` to `out`, length prefix included.
pub fn encode(msg: &Message, out: &mut BytesMut) {
    let _ = (msg, out);
    todo!("wire helper")
}
