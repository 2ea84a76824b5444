//! Identifiers: the 20-byte SHA-1 info hash (the content ID, written as 40 hex characters) and the
//! 20-byte peer ID. Parse, don't validate: once you hold an `InfoHash` it is well formed.

use std::fmt;
use std::str::FromStr;

/// The SHA-1 hash of a torrent's bencoded info dictionary; peercdn's content ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

/// Why a string is not a content ID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// Not 40 hex characters (nor 32 base32 characters).
    #[error("a content ID is 40 hex characters (or 32 base32 characters), got {0:?}")]
    BadLength(String),
    /// A character outside the alphabet.
    #[error("content ID {0:?} has a character that is not hex/base32")]
    BadChar(String),
}

impl InfoHash {
    /// Hashes a bencoded info dictionary.
    pub fn of_info(info_bytes: &[u8]) -> Self {
        use sha1::{Digest, Sha1};
        InfoHash(Sha1::digest(info_bytes).into())
    }

    /// Lower-case 40-character hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 40 hex characters, 32 base32 characters (as some magnets carry), and accepts an
    /// `acestream://` prefix.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        let s = s.strip_prefix("acestream://").unwrap_or(s);
        match s.len() {
            40 => {
                let mut out = [0u8; 20];
                hex::decode_to_slice(s, &mut out).map_err(|_| IdError::BadChar(s.to_string()))?;
                Ok(InfoHash(out))
            }
            32 => base32_decode(s)
                .map(InfoHash)
                .ok_or_else(|| IdError::BadChar(s.to_string())),
            _ => Err(IdError::BadLength(s.to_string())),
        }
    }
}

/// RFC 4648 base32 without padding, 32 chars → 20 bytes. Small enough that a crate is not worth it.
fn base32_decode(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut pos = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | v as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[pos] = (acc >> bits) as u8;
            pos += 1;
        }
    }
    (pos == 20).then_some(out)
}

impl FromStr for InfoHash {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        InfoHash::parse(s)
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

/// A 20-byte BitTorrent peer ID. Ours start with the Azureus-style prefix `-PC0100-`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// Our client prefix (Azureus style: client "PC", version 0.1.0.0).
    pub const PREFIX: &'static [u8; 8] = b"-PC0100-";

    /// Builds our peer ID from 12 random bytes supplied by the caller (core reads no RNG).
    pub fn ours(random: [u8; 12]) -> Self {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(Self::PREFIX);
        for (dst, r) in id[8..].iter_mut().zip(random) {
            // printable, as many clients expect
            *dst = b"0123456789abcdefghijklmnopqrstuvwxyz"[r as usize % 36];
        }
        PeerId(id)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PeerId({})",
            String::from_utf8_lossy(&self.0).escape_debug()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(InfoHash::parse(&h.to_hex()), Ok(h));
        assert_eq!(InfoHash::parse(&format!("acestream://{h}")), Ok(h));
        assert_eq!(InfoHash::parse(&h.to_hex().to_uppercase()), Ok(h));
    }

    #[test]
    fn base32() {
        // 20 zero bytes are 32 'A's
        assert_eq!(InfoHash::parse(&"A".repeat(32)), Ok(InfoHash([0; 20])));
    }

    #[test]
    fn rejects_garbage() {
        assert!(InfoHash::parse("abc").is_err());
        assert!(InfoHash::parse(&"g".repeat(40)).is_err());
        assert!(InfoHash::parse(&"1".repeat(32)).is_err());
    }

    #[test]
    fn peer_id_prefix() {
        let p = PeerId::ours([200; 12]);
        assert_eq!(&p.0[..8], PeerId::PREFIX);
        assert!(p.0.iter().all(|b| b.is_ascii_graphic()));
    }
}
