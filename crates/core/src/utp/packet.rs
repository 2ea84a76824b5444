//! The uTP packet (BEP 29): a 20-byte big-endian header, a chain of extensions (only the
//! selective ACK, type 1, is understood; others are skipped) and the payload.

use thiserror::Error;

/// Bytes in a header without extensions.
pub const HEADER_LEN: usize = 20;
/// The protocol version every packet carries.
pub const VERSION: u8 = 1;
/// Extension type of the selective ACK.
const EXT_SACK: u8 = 1;
/// The longest selective ACK bitmask we write, in bytes (256 packets past the ACK). We read
/// any length the extension's one-byte length allows.
pub const MAX_SACK: usize = 32;

/// A packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Payload.
    Data,
    /// The last packet of a direction (its sequence number ends the stream).
    Fin,
    /// An acknowledgement without payload (no sequence number of its own).
    State,
    /// Ends the connection at once.
    Reset,
    /// Opens a connection.
    Syn,
}

impl Type {
    fn code(self) -> u8 {
        match self {
            Type::Data => 0,
            Type::Fin => 1,
            Type::State => 2,
            Type::Reset => 3,
            Type::Syn => 4,
        }
    }

    fn from_code(c: u8) -> Option<Type> {
        Some(match c {
            0 => Type::Data,
            1 => Type::Fin,
            2 => Type::State,
            3 => Type::Reset,
            4 => Type::Syn,
            _ => return None,
        })
    }
}

/// Why a datagram is not a uTP packet.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than its header or its extensions say.
    #[error("truncated uTP packet")]
    Truncated,
    /// Not version 1.
    #[error("uTP version {0} (only 1 is spoken)")]
    Version(u8),
    /// A type above 4.
    #[error("unknown uTP packet type {0}")]
    Type(u8),
    /// A selective ACK extension without a bitmask.
    #[error("malformed selective ACK")]
    Sack,
}

/// A decoded packet, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The type.
    pub ty: Type,
    /// The receiver's connection ID (the sender's `send` ID).
    pub conn_id: u16,
    /// The sender's clock when sent, in microseconds (wrapping).
    pub ts_us: u32,
    /// The sender's clock minus our timestamp on the last packet it received from us: the
    /// one-way delay plus the clocks' offset, which LEDBAT reads relative to its minimum.
    pub ts_diff_us: u32,
    /// Bytes the sender can still take in.
    pub wnd: u32,
    /// Sequence number (for `State`: the next one the sender will use).
    pub seq: u16,
    /// The last sequence number the sender received in order.
    pub ack: u16,
    /// Selective ACK bitmask: bit `i` (byte `i / 8`, least significant bit first) says that
    /// `ack + 2 + i` arrived. Empty when absent.
    pub sack: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Decodes a datagram. Unknown extensions are skipped.
    pub fn decode(b: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if b.len() < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        if b[0] & 0x0f != VERSION {
            return Err(PacketError::Version(b[0] & 0x0f));
        }
        let ty = Type::from_code(b[0] >> 4).ok_or(PacketError::Type(b[0] >> 4))?;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut next = b[1];
        let mut at = HEADER_LEN;
        let mut sack: &[u8] = &[];
        while next != 0 {
            let (kind, len) = match b.get(at..at + 2) {
                Some(h) => (next, usize::from(h[1])),
                None => return Err(PacketError::Truncated),
            };
            next = b[at];
            let body = b.get(at + 2..at + 2 + len).ok_or(PacketError::Truncated)?;
            if kind == EXT_SACK {
                // BEP 29 says a multiple of 4 bytes; libtorrent sends (span + 7) / 8 bytes, up
                // to most of a packet. Any non-empty length is taken.
                if len == 0 {
                    return Err(PacketError::Sack);
                }
                sack = body;
            }
            at += 2 + len;
        }
        Ok(Packet {
            ty,
            conn_id: u16_at(2),
            ts_us: u32_at(4),
            ts_diff_us: u32_at(8),
            wnd: u32_at(12),
            seq: u16_at(16),
            ack: u16_at(18),
            sack,
            payload: &b[at..],
        })
    }

    /// Bytes [`Packet::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + sack_len(self.sack) + self.payload.len()
    }

    /// Writes the packet at the start of `out` (at least [`Packet::encoded_len`] bytes) and
    /// returns its length. A selective ACK longer than [`MAX_SACK`] is cut there; one whose
    /// length is not a multiple of 4 is padded with zero bits.
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let sack = sack_len(self.sack);
        out[0] = (self.ty.code() << 4) | VERSION;
        out[1] = if sack > 0 { EXT_SACK } else { 0 };
        out[2..4].copy_from_slice(&self.conn_id.to_be_bytes());
        out[4..8].copy_from_slice(&self.ts_us.to_be_bytes());
        out[8..12].copy_from_slice(&self.ts_diff_us.to_be_bytes());
        out[12..16].copy_from_slice(&self.wnd.to_be_bytes());
        out[16..18].copy_from_slice(&self.seq.to_be_bytes());
        out[18..20].copy_from_slice(&self.ack.to_be_bytes());
        let mut at = HEADER_LEN;
        if sack > 0 {
            out[at] = 0;
            out[at + 1] = (sack - 2) as u8;
            let bits = self.sack.len().min(MAX_SACK);
            out[at + 2..at + 2 + bits].copy_from_slice(&self.sack[..bits]);
            out[at + 2 + bits..at + sack].fill(0);
            at += sack;
        }
        out[at..at + self.payload.len()].copy_from_slice(self.payload);
        at + self.payload.len()
    }
}

/// Bytes the selective ACK extension takes (its two header bytes included), 0 without one.
fn sack_len(bits: &[u8]) -> usize {
    match bits.len().min(MAX_SACK) {
        0 => 0,
        n => 2 + n.div_ceil(4) * 4,
    }
}

/// `a` comes before `b` in the wrapping 16-bit sequence space.
pub fn seq_lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}
