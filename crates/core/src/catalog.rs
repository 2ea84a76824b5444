//! Catalogue records (DESIGN §4): what a publisher says about a piece of content — title,
//! description, tags, language, size or bitrate — signed with the publisher's ed25519 key so
//! that any node can index it, pass it on and have it verified by whoever reads it.
//!
//! This module owns the record's wire form and its rules; storing, indexing and querying are
//! the engine's.
//!
//! Wire form: a bencoded dictionary, canonical (keys sorted, as [`bencode::OwnedValue`]
//! writes them), at most [`MAX_RECORD_LEN`] bytes:
//!
//! | key | value |
//! |---|---|
//! | `v` | record format, 1 |
//! | `id` | the content ID (20 bytes: infohash of a torrent or a live stream's descriptor) |
//! | `kind` | `vod` or `live` |
//! | `title`, `desc` | UTF-8 text (≤ [`MAX_TITLE`], ≤ [`MAX_DESCRIPTION`] bytes) |
//! | `tags` | list of ≤ [`MAX_TAGS`] lower-case words (each ≤ [`MAX_TAG`] bytes) |
//! | `cat`, `lang`, `country` | short codes (`sport`, `en`, `gb`), may be empty |
//! | `size` | total bytes (VoD; 0 for live) |
//! | `bitrate` | bits per second (live; 0 when unknown) |
//! | `files` | number of files (VoD) |
//! | `created` | Unix seconds when the publisher made this version |
//! | `pub` | the publisher's 32-byte ed25519 public key |
//! | `seq` | version: a newer record of the same publisher and content has a higher `seq` |
//! | `sig` | ed25519 signature over [`SIGNING_CONTEXT`] followed by the dictionary without `sig` |
//!
//! Trust rules ([`Record::decode`], [`Record::check_time`]): a record whose signature does not
//! verify, whose encoding is not canonical, whose fields are oversized or malformed, or whose
//! `created` lies in the future (beyond [`MAX_CLOCK_SKEW`]) is refused with a reason; nothing
//! in it is used. A record binds a publisher key to a content ID and the words describing it —
//! nothing more: it does not prove the publisher made the content (a publisher can describe
//! anyone's torrent), which is why ranking weighs how many independent peers hold the content.

pub mod channel;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::bencode::{self, OwnedValue};
use crate::id::InfoHash;

/// Largest encoded record (every valid record fits: the field limits below add up to less).
pub const MAX_RECORD_LEN: usize = 2560;
/// Longest title, bytes.
pub const MAX_TITLE: usize = 200;
/// Longest description, bytes.
pub const MAX_DESCRIPTION: usize = 1000;
/// Most tags.
pub const MAX_TAGS: usize = 16;
/// Longest tag, bytes.
pub const MAX_TAG: usize = 32;
/// Longest category, language or country code, bytes.
pub const MAX_CODE: usize = 16;
/// How far in the future a record's `created` may lie (clocks differ).
pub const MAX_CLOCK_SKEW: u64 = 600;
/// Prefix of every signed message: a signature over a record can never be replayed as a live
/// piece header's or anything else the same key signs.
pub const SIGNING_CONTEXT: &[u8] = b"peercdn-record-v1";
/// Record format written and read.
pub const VERSION: i64 = 1;

/// What kind of content a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A torrent (video on demand).
    Vod,
    /// A live stream.
    Live,
}

impl Kind {
    /// The wire and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vod => "vod",
            Kind::Live => "live",
        }
    }

    /// Parses the wire and API name.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "vod" => Some(Kind::Vod),
            "live" => Some(Kind::Live),
            _ => None,
        }
    }
}

/// What a publisher says about one content ID (everything but the signature).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description {
    /// Title (required, non-empty).
    pub title: String,
    /// Free text.
    pub description: String,
    /// Lower-case words.
    pub tags: Vec<String>,
    /// Category (`sport`, `movies`…), may be empty.
    pub category: String,
    /// Language code (`en`), may be empty.
    pub lang: String,
    /// Country code (`gb`), may be empty.
    pub country: String,
    /// Total bytes (VoD).
    pub size: u64,
    /// Bits per second (live), 0 when unknown.
    pub bitrate: u64,
    /// Number of files (VoD).
    pub files: u32,
}

/// A signed catalogue record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The content it describes.
    pub id: InfoHash,
    /// VoD or live.
    pub kind: Kind,
    /// What the publisher says.
    pub desc: Description,
    /// Unix seconds of this version.
    pub created: u64,
    /// The publisher's public key.
    pub publisher: [u8; 32],
    /// Version (higher replaces lower).
    pub seq: u64,
    /// Signature over [`SIGNING_CONTEXT`] and the record without it.
    pub sig: [u8; 64],
}

/// Why bytes are not an acceptable record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Over [`MAX_RECORD_LEN`].
    #[error("record is {0} bytes, more than {MAX_RECORD_LEN}")]
    TooLong(usize),
    /// Not bencode.
    #[error("record: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// Bencode, but not the canonical form the signature covers.
    #[error("record is not canonical bencode")]
    NotCanonical,
    /// A field is missing, of the wrong type or out of its bounds.
    #[error("record field `{0}` is missing or invalid")]
    Field(&'static str),
    /// A format this node does not read.
    #[error("record format {0} is not supported")]
    Version(i64),
    /// The signature does not verify against `pub`.
    #[error("record signature does not verify")]
    BadSignature,
    /// `created` is further in the future than [`MAX_CLOCK_SKEW`].
    #[error("record created {0} s in the future")]
    Future(u64),
}

impl Description {
    /// Checks the bounds every record must meet (and normalises nothing: a publisher's words
    /// are signed as given).
    pub fn validate(&self) -> Result<(), RecordError> {
        let text = |s: &str, max: usize, name: &'static str| {
            if s.len() > max || s.chars().any(|c| c.is_control() && c != '\n') {
                Err(RecordError::Field(name))
            } else {
                Ok(())
            }
        };
        text(&self.title, MAX_TITLE, "title")?;
        if self.title.trim().is_empty() {
            return Err(RecordError::Field("title"));
        }
        text(&self.description, MAX_DESCRIPTION, "desc")?;
        let code = |s: &str, name: &'static str| {
            if s.len() > MAX_CODE
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                Err(RecordError::Field(name))
            } else {
                Ok(())
            }
        };
        code(&self.category, "cat")?;
        code(&self.lang, "lang")?;
        code(&self.country, "country")?;
        if self.tags.len() > MAX_TAGS
            || self.tags.iter().any(|t| {
                t.is_empty()
                    || t.len() > MAX_TAG
                    || t.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c.is_uppercase())
            })
        {
            return Err(RecordError::Field("tags"));
        }
        if i64::try_from(self.size).is_err() {
            return Err(RecordError::Field("size"));
        }
        if i64::try_from(self.bitrate).is_err() {
            return Err(RecordError::Field("bitrate"));
        }
        Ok(())
    }
}

impl Record {
    /// Signs a new record with the publisher's key.
    pub fn sign(
        key: &SigningKey,
        id: InfoHash,
        kind: Kind,
        desc: Description,
        created: u64,
        seq: u64,
    ) -> Result<Record, RecordError> {
        desc.validate()?;
        if i64::try_from(created).is_err() {
            return Err(RecordError::Field("created"));
        }
        if i64::try_from(seq).is_err() {
            return Err(RecordError::Field("seq"));
        }
        let mut r = Record {
            id,
            kind,
            desc,
            created,
            publisher: key.verifying_key().to_bytes(),
            seq,
            sig: [0; 64],
        };
        r.sig = key.sign(&r.signed_message()).to_bytes();
        let len = r.encode().len();
        if len > MAX_RECORD_LEN {
            return Err(RecordError::TooLong(len));
        }
        Ok(r)
    }

    /// The dictionary without `sig`.
    fn unsigned(&self) -> bencode::DictBuilder {
        let d = &self.desc;
        OwnedValue::dict()
            .with("v", OwnedValue::int(VERSION))
            .with("id", OwnedValue::bytes(self.id.0.to_vec()))
            .with("kind", OwnedValue::str(self.kind.as_str()))
            .with("title", OwnedValue::str(&d.title))
            .with("desc", OwnedValue::str(&d.description))
            .with(
                "tags",
                OwnedValue::list(d.tags.iter().map(|t| OwnedValue::str(t))),
            )
            .with("cat", OwnedValue::str(&d.category))
            .with("lang", OwnedValue::str(&d.lang))
            .with("country", OwnedValue::str(&d.country))
            .with("size", OwnedValue::int(clamp_i64(d.size)))
            .with("bitrate", OwnedValue::int(clamp_i64(d.bitrate)))
            .with("files", OwnedValue::int(i64::from(d.files)))
            .with("created", OwnedValue::int(clamp_i64(self.created)))
            .with("pub", OwnedValue::bytes(self.publisher.to_vec()))
            .with("seq", OwnedValue::int(clamp_i64(self.seq)))
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        self.unsigned().build().encode_into(&mut m);
        m
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        self.unsigned()
            .with("sig", OwnedValue::bytes(self.sig.to_vec()))
            .build()
            .encode()
    }

    /// Parses and verifies a record: size, canonical form, every field's bounds, the
    /// signature. (The time check needs a clock: [`Record::check_time`].)
    pub fn decode(buf: &[u8]) -> Result<Record, RecordError> {
        if buf.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLong(buf.len()));
        }
        let limits = bencode::Limits {
            max_depth: 3,
            max_items: 128,
        };
        let v = bencode::decode_with(buf, limits)?;
        let d = v.as_dict().ok_or(RecordError::Field("dictionary"))?;
        let version = d.get_int(b"v").ok_or(RecordError::Field("v"))?;
        if version != VERSION {
            return Err(RecordError::Version(version));
        }
        let str_of = |k: &'static str| -> Result<String, RecordError> {
            d.get_str(k.as_bytes())
                .map(str::to_owned)
                .ok_or(RecordError::Field(k))
        };
        let uint = |k: &'static str| -> Result<u64, RecordError> {
            d.get_int(k.as_bytes())
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(RecordError::Field(k))
        };
        let fixed = |k: &'static str| d.get_bytes(k.as_bytes()).ok_or(RecordError::Field(k));
        let id: [u8; 20] = fixed("id")?
            .try_into()
            .map_err(|_| RecordError::Field("id"))?;
        let publisher: [u8; 32] = fixed("pub")?
            .try_into()
            .map_err(|_| RecordError::Field("pub"))?;
        let sig: [u8; 64] = fixed("sig")?
            .try_into()
            .map_err(|_| RecordError::Field("sig"))?;
        let kind = d
            .get_str(b"kind")
            .and_then(Kind::parse)
            .ok_or(RecordError::Field("kind"))?;
        let tags = d
            .get_list(b"tags")
            .ok_or(RecordError::Field("tags"))?
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or(RecordError::Field("tags"))?;
        let desc = Description {
            title: str_of("title")?,
            description: str_of("desc")?,
            tags,
            category: str_of("cat")?,
            lang: str_of("lang")?,
            country: str_of("country")?,
            size: uint("size")?,
            bitrate: uint("bitrate")?,
            files: u32::try_from(uint("files")?).map_err(|_| RecordError::Field("files"))?,
        };
        desc.validate()?;
        let r = Record {
            id: InfoHash(id),
            kind,
            desc,
            created: uint("created")?,
            publisher,
            seq: uint("seq")?,
            sig,
        };
        // Canonical and nothing else: the signature covers exactly these bytes, and a field
        // this version does not know would otherwise travel unsigned.
        if r.encode() != buf {
            return Err(RecordError::NotCanonical);
        }
        r.verify()?;
        Ok(r)
    }

    /// Checks the signature (strict ed25519: no malleable or small-order forms).
    pub fn verify(&self) -> Result<(), RecordError> {
        let key =
            VerifyingKey::from_bytes(&self.publisher).map_err(|_| RecordError::BadSignature)?;
        key.verify_strict(&self.signed_message(), &Signature::from_bytes(&self.sig))
            .map_err(|_| RecordError::BadSignature)
    }

    /// Refuses a record made in the future (beyond [`MAX_CLOCK_SKEW`]) at Unix time `now`: it
    /// would outrank honest records by freshness until the clock caught up.
    pub fn check_time(&self, now: u64) -> Result<(), RecordError> {
        match self.created.checked_sub(now) {
            Some(ahead) if ahead > MAX_CLOCK_SKEW => Err(RecordError::Future(ahead)),
            _ => Ok(()),
        }
    }

    /// The publisher key as hex (how the API and CLI show it).
    pub fn publisher_hex(&self) -> String {
        hex::encode(self.publisher)
    }
}

/// Records hold no integer above `i64::MAX` (checked when signed and when decoded).
fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn desc() -> Description {
        Description {
            title: "Big Buck Bunny".into(),
            description: "An open movie".into(),
            tags: vec!["animation".into(), "blender".into()],
            category: "movies".into(),
            lang: "en".into(),
            country: String::new(),
            size: 276_134_947,
            bitrate: 0,
            files: 1,
        }
    }

    fn record() -> Record {
        Record::sign(
            &key(1),
            InfoHash([9; 20]),
            Kind::Vod,
            desc(),
            1_765_000_000,
            3,
        )
        .unwrap()
    }

    #[test]
    fn a_signed_record_round_trips_and_verifies() {
        let r = record();
        let bytes = r.encode();
        assert!(bytes.len() <= MAX_RECORD_LEN);
        assert_eq!(Record::decode(&bytes).unwrap(), r);
        assert_eq!(r.publisher, key(1).verifying_key().to_bytes());
    }

    /// Every byte of the record is covered: changing the title, or lending the record another
    /// publisher's key, breaks the signature.
    #[test]
    fn an_altered_or_reattributed_record_is_refused() {
        let mut r = record();
        r.desc.title = "Something else".into();
        assert_eq!(Record::decode(&r.encode()), Err(RecordError::BadSignature));
        let mut r = record();
        r.publisher = key(2).verifying_key().to_bytes();
        assert_eq!(Record::decode(&r.encode()), Err(RecordError::BadSignature));
        let mut r = record();
        r.seq += 1;
        assert_eq!(Record::decode(&r.encode()), Err(RecordError::BadSignature));
    }

    /// A signature made over the same fields without the context prefix (what another protocol
    /// signing with the same key might produce) does not verify as a record.
    #[test]
    fn a_signature_without_the_context_is_refused() {
        let mut r = record();
        let mut plain = Vec::new();
        r.unsigned().build().encode_into(&mut plain);
        r.sig = key(1).sign(&plain).to_bytes();
        assert_eq!(r.verify(), Err(RecordError::BadSignature));
    }

    #[test]
    fn oversized_and_malformed_fields_are_refused() {
        let mut d = desc();
        d.title = "x".repeat(MAX_TITLE + 1);
        assert_eq!(d.validate(), Err(RecordError::Field("title")));
        let mut d = desc();
        d.title = "  ".into();
        assert_eq!(d.validate(), Err(RecordError::Field("title")));
        let mut d = desc();
        d.tags = vec!["Upper".into()];
        assert_eq!(d.validate(), Err(RecordError::Field("tags")));
        let mut d = desc();
        d.tags = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(d.validate(), Err(RecordError::Field("tags")));
        let mut d = desc();
        d.lang = "e n".into();
        assert_eq!(d.validate(), Err(RecordError::Field("lang")));
        let mut d = desc();
        d.title = "bell\u{7}".into();
        assert_eq!(d.validate(), Err(RecordError::Field("title")));
        assert_eq!(
            Record::decode(&vec![b'x'; MAX_RECORD_LEN + 1]),
            Err(RecordError::TooLong(MAX_RECORD_LEN + 1))
        );
    }

    /// The same fields in another key order, or with a field this version does not know, are
    /// not the bytes the signature covers.
    #[test]
    fn a_non_canonical_or_extended_record_is_refused() {
        let r = record();
        let bytes = r.encode();
        // An extra key `zz` (sorted last) inside the dictionary.
        let mut extra = bytes[..bytes.len() - 1].to_vec();
        extra.extend_from_slice(b"2:zzi1ee");
        assert_eq!(Record::decode(&extra), Err(RecordError::NotCanonical));
        // Keys swapped: `bitrate` after `cat`.
        let v = bencode::decode(&bytes).unwrap();
        let d = v.as_dict().unwrap();
        let mut out = b"d".to_vec();
        let mut keys: Vec<&[u8]> = d.iter().map(|(k, _)| k).collect();
        keys.swap(0, 1);
        for k in keys {
            out.extend_from_slice(format!("{}:", k.len()).as_bytes());
            out.extend_from_slice(k);
            d.get(k).unwrap().to_owned().encode_into(&mut out);
        }
        out.push(b'e');
        assert_eq!(Record::decode(&out), Err(RecordError::NotCanonical));
    }

    #[test]
    fn a_record_from_the_future_is_refused() {
        let r = record();
        assert!(r.check_time(r.created).is_ok());
        assert!(r.check_time(r.created - MAX_CLOCK_SKEW).is_ok());
        assert_eq!(
            r.check_time(r.created - MAX_CLOCK_SKEW - 1),
            Err(RecordError::Future(MAX_CLOCK_SKEW + 1))
        );
        assert!(r.check_time(r.created + 1_000_000).is_ok());
    }

    /// The field limits and [`MAX_RECORD_LEN`] agree: a record with every field at its limit
    /// (multi-byte text included) fits, so a publisher's valid words are never refused for
    /// their total.
    #[test]
    fn a_record_with_every_field_at_its_limit_fits() {
        let d = Description {
            title: "t".repeat(MAX_TITLE),
            description: "é".repeat(MAX_DESCRIPTION / 2),
            tags: (0..MAX_TAGS).map(|i| format!("{i:0>32}")).collect(),
            category: "c".repeat(MAX_CODE),
            lang: "l".repeat(MAX_CODE),
            country: "k".repeat(MAX_CODE),
            size: i64::MAX as u64,
            bitrate: i64::MAX as u64,
            files: u32::MAX,
        };
        let max = i64::MAX as u64;
        let r = Record::sign(&key(1), InfoHash([1; 20]), Kind::Live, d, max, max).unwrap();
        assert!(r.encode().len() <= MAX_RECORD_LEN, "{}", r.encode().len());
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
    }

    proptest! {
        /// Valid descriptions round-trip; any single-byte change of the wire form is refused
        /// (never accepted as a different record).
        #[test]
        fn round_trip_and_tamper(
            title in "[a-zA-Z0-9 ]{1,60}",
            tags in proptest::collection::vec("[a-z0-9]{1,12}", 0..6),
            size in 0u64..1 << 50,
            seq in 0u64..1 << 40,
            flip in 0usize..4096,
            bit in 0u8..8,
        ) {
            prop_assume!(!title.trim().is_empty());
            let d = Description { title, tags, size, ..Description::default() };
            let r = Record::sign(&key(5), InfoHash([3; 20]), Kind::Vod, d, 1_700_000_000, seq).unwrap();
            let mut bytes = r.encode();
            prop_assert_eq!(Record::decode(&bytes).unwrap(), r.clone());
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(Record::decode(&bytes).is_err());
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Record::decode(&bytes);
        }
    }
}
