//! Channels: a publisher's records as one file, shared as a torrent, and the head that points
//! at it — a BEP 44 mutable item signed by the publisher's key (the key that signs its
//! records), so that subscribing to a publisher key needs no server.
//!
//! The head (at most [`MAX_HEAD_LEN`] bytes, BEP 44's limit for a value) is a bencoded
//! dictionary: `ih` (20 bytes: the info hash of the channel torrent), `n` (records in it) and
//! `t` (Unix seconds when this version was made). It is stored under the publisher's key with
//! the salt [`SALT`]; its BEP 44 `seq` orders versions.
//!
//! The channel file is the records back to back, each as a 2-byte big-endian length and the
//! record's signed bytes. [`decode_file`] takes a file only whole: every record must verify
//! and be the channel publisher's, at most [`MAX_CHANNEL_RECORDS`] of them — a file with one
//! bad record is refused, since its publisher signed a head pointing at it (or it is not the
//! publisher's file at all).

use crate::bencode::{self, OwnedValue};
use crate::catalog::{Record, RecordError, MAX_RECORD_LEN};
use crate::id::InfoHash;

/// The BEP 44 salt of a channel head.
pub const SALT: &[u8] = b"peercdn-channel-v1";
/// Largest head (BEP 44: a value is at most 1000 bytes).
pub const MAX_HEAD_LEN: usize = 1000;
/// Most records in a channel file (the engine keeps as many per publisher).
pub const MAX_CHANNEL_RECORDS: usize = 1000;
/// Largest channel file.
pub const MAX_FILE_LEN: usize = MAX_CHANNEL_RECORDS * (2 + MAX_RECORD_LEN);

/// What a channel head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The channel torrent.
    pub info_hash: InfoHash,
    /// Records in its file.
    pub records: u32,
    /// When this version was made (Unix seconds).
    pub updated: u64,
}

/// Why a head or a channel file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Not bencode, or not the head's shape.
    #[error("channel head: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// A head field is missing or malformed, or the head is too long.
    #[error("channel head: bad field {0}")]
    Field(&'static str),
    /// The file is longer than [`MAX_FILE_LEN`] or holds more than [`MAX_CHANNEL_RECORDS`].
    #[error("channel file too large")]
    TooLarge,
    /// The file ends inside a record.
    #[error("channel file is truncated")]
    Truncated,
    /// A record does not verify.
    #[error("channel record {index}: {source}")]
    Record {
        /// Its place in the file.
        index: usize,
        /// Why.
        source: RecordError,
    },
    /// A record signed by another key than the channel's.
    #[error("channel record {0} is not the channel publisher's")]
    Foreign(usize),
}

impl Head {
    /// The wire form (BEP 44 value).
    pub fn encode(&self) -> Vec<u8> {
        OwnedValue::dict()
            .with("ih", OwnedValue::bytes(self.info_hash.0.to_vec()))
            .with("n", i64::from(self.records))
            .with("t", i64::try_from(self.updated).unwrap_or(i64::MAX))
            .build()
            .encode()
    }

    /// Parses a head (unknown keys are ignored: later versions may add some).
    pub fn decode(buf: &[u8]) -> Result<Head, ChannelError> {
        if buf.len() > MAX_HEAD_LEN {
            return Err(ChannelError::Field("length"));
        }
        let limits = bencode::Limits {
            max_depth: 2,
            max_items: 32,
        };
        let v = bencode::decode_with(buf, limits)?;
        let d = v.as_dict().ok_or(ChannelError::Field("dictionary"))?;
        let ih: [u8; 20] = d
            .get_bytes(b"ih")
            .and_then(|b| b.try_into().ok())
            .ok_or(ChannelError::Field("ih"))?;
        let records = d
            .get_int(b"n")
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n as usize <= MAX_CHANNEL_RECORDS)
            .ok_or(ChannelError::Field("n"))?;
        let updated = d
            .get_int(b"t")
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(ChannelError::Field("t"))?;
        Ok(Head {
            info_hash: InfoHash(ih),
            records,
            updated,
        })
    }
}

/// The channel file of `records` (at most [`MAX_CHANNEL_RECORDS`] are written).
pub fn encode_file(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records.iter().take(MAX_CHANNEL_RECORDS) {
        let bytes = r.encode();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Parses and verifies a channel file of `publisher` (see the module docs: all or nothing).
/// The caller checks each record's time ([`Record::check_time`]) as it admits it.
pub fn decode_file(mut buf: &[u8], publisher: &[u8; 32]) -> Result<Vec<Record>, ChannelError> {
    if buf.len() > MAX_FILE_LEN {
        return Err(ChannelError::TooLarge);
    }
    let mut records = Vec::new();
    while !buf.is_empty() {
        let index = records.len();
        if index >= MAX_CHANNEL_RECORDS {
            return Err(ChannelError::TooLarge);
        }
        let [a, b, ..] = *buf else {
            return Err(ChannelError::Truncated);
        };
        let len = usize::from(u16::from_be_bytes([a, b]));
        let bytes = buf.get(2..2 + len).ok_or(ChannelError::Truncated)?;
        let r = Record::decode(bytes).map_err(|source| ChannelError::Record { index, source })?;
        if &r.publisher != publisher {
            return Err(ChannelError::Foreign(index));
        }
        records.push(r);
        buf = &buf[2 + len..];
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Description, Kind};
    use ed25519_dalek::SigningKey;

    fn rec(key: u8, id: u8) -> Record {
        let d = Description {
            title: format!("record {id}"),
            ..Description::default()
        };
        Record::sign(
            &SigningKey::from_bytes(&[key; 32]),
            InfoHash([id; 20]),
            Kind::Vod,
            d,
            1_765_000_000,
            1,
        )
        .unwrap()
    }

    #[test]
    fn a_head_round_trips_and_fits_bep44() {
        let h = Head {
            info_hash: InfoHash([7; 20]),
            records: 1000,
            updated: 1_765_000_000,
        };
        let bytes = h.encode();
        assert!(bytes.len() <= MAX_HEAD_LEN);
        assert_eq!(Head::decode(&bytes), Ok(h));
        assert!(Head::decode(b"d2:ih3:abce").is_err());
        assert!(Head::decode(b"le").is_err());
    }

    /// A file is taken whole or not at all: a record altered after signing, another
    /// publisher's record, or a torn tail refuses it.
    #[test]
    fn a_channel_file_is_all_the_publishers_or_nothing() {
        let me = SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes();
        let mine = [rec(1, 1), rec(1, 2)];
        let file = encode_file(&mine);
        assert_eq!(decode_file(&file, &me).unwrap(), mine.to_vec());
        assert_eq!(decode_file(&[], &me).unwrap(), Vec::new());

        let foreign = encode_file(&[rec(1, 1), rec(2, 3)]);
        assert_eq!(decode_file(&foreign, &me), Err(ChannelError::Foreign(1)));

        let mut altered = file.clone();
        let at = altered.len() - 5;
        altered[at] ^= 1;
        assert!(matches!(
            decode_file(&altered, &me),
            Err(ChannelError::Record { index: 1, .. })
        ));
        assert_eq!(
            decode_file(&file[..file.len() - 1], &me),
            Err(ChannelError::Truncated)
        );
        assert_eq!(decode_file(&file[..1], &me), Err(ChannelError::Truncated));
    }
}
