//! Receipts (DESIGN §4): what a viewer signs to say how many verified bytes of a piece of content
//! it received from one uploader (a peer's key, or a CDN host for HTTP bytes) and how long it
//! watched, so that a broadcaster can account for every byte its audience moved.
//!
//! This module owns the receipt's wire form and its rules; carrying receipts between peers is
//! [`crate::ext::receipt`]'s, keeping and judging them (the ledger) the engine's.
//!
//! A receipt is *cumulative*: the latest one of a pair (content, uploader, viewer) replaces every
//! earlier one, so a receipt lost or delivered twice changes nothing, and the broadcaster keeps
//! one per pair. `seq` orders a pair's receipts; a later receipt never lowers `bytes` or
//! `watched` (the collector refuses one that does).
//!
//! Wire form: a bencoded dictionary, canonical (keys sorted), at most [`MAX_RECEIPT_LEN`] bytes:
//!
//! | key | value |
//! |---|---|
//! | `v` | receipt format, 1 |
//! | `c` | the content ID (20 bytes: a torrent's info hash or a live stream's ID) |
//! | `f` | the uploader's 32-byte ed25519 key — or `h`, the CDN host name the bytes came from |
//! | `to` | the viewer's 32-byte ed25519 key (the signer) |
//! | `b` | bytes received from the uploader and verified against their hashes |
//! | `w` | milliseconds the viewer's players were attached to the content |
//! | `d` | optional: how far behind the source its players were when it signed, milliseconds |
//! | `s` | sequence number, higher for a later receipt of the same pair |
//! | `t` | Unix seconds when it was signed |
//! | `sig` | ed25519 by `to` over [`SIGNING_CONTEXT`] followed by the dictionary without `sig` |
//!
//! Trust rules ([`Receipt::decode`]): a receipt whose signature does not verify, whose encoding
//! is not canonical, or whose fields are malformed is refused; nothing in it is used. A valid
//! receipt proves only that the viewer's key said so: two colluding keys can sign each other
//! anything, which is why the collector caps a viewer's credit by its watch time.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::bencode::{self, OwnedValue};
use crate::id::InfoHash;

/// Largest encoded receipt (every valid receipt fits).
pub const MAX_RECEIPT_LEN: usize = 512;
/// Longest CDN host name, bytes (a DNS name's limit, plus room for a port).
pub const MAX_HOST: usize = 260;
/// Prefix of every signed receipt: a signature over a receipt can never be replayed as a live
/// piece header, a catalogue record or an identity proof.
pub const SIGNING_CONTEXT: &[u8] = b"peercdn-receipt-v1";
/// Receipt format written and read.
pub const VERSION: i64 = 1;

/// Who the bytes of a receipt came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Uploader {
    /// A peer, by its node key.
    Peer([u8; 32]),
    /// An HTTP server or CDN, by the host name (and port, if not the default) the viewer asked.
    Cdn(String),
}

impl Uploader {
    /// How reports and the API name it: the key in hex, or `cdn:HOST`.
    pub fn label(&self) -> String {
        match self {
            Uploader::Peer(k) => hex::encode(k),
            Uploader::Cdn(h) => format!("cdn:{h}"),
        }
    }

    /// Reads [`Uploader::label`] back.
    pub fn parse_label(s: &str) -> Option<Uploader> {
        if let Some(host) = s.strip_prefix("cdn:") {
            return valid_host(host).then(|| Uploader::Cdn(host.to_string()));
        }
        let mut k = [0u8; 32];
        hex::decode_to_slice(s, &mut k).ok()?;
        Some(Uploader::Peer(k))
    }
}

/// A signed, cumulative receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The content the bytes belong to.
    pub content: InfoHash,
    /// Where they came from.
    pub from: Uploader,
    /// The viewer: its key signed this.
    pub to: [u8; 32],
    /// Verified bytes received from `from`, since the viewer started on the content.
    pub bytes: u64,
    /// Milliseconds the viewer's players were attached to the content.
    pub watched_ms: u64,
    /// How far behind the source the viewer's players were when it signed (the one nearest the
    /// edge), milliseconds; `None` without a player (the broadcaster's view of its audience's
    /// delay comes from these).
    pub delay_ms: Option<u64>,
    /// Higher for a later receipt of the same pair.
    pub seq: u64,
    /// Unix seconds when signed.
    pub time: u64,
    /// The viewer's signature.
    pub sig: [u8; 64],
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not bencode, or nested too deep.
    #[error("not a bencoded receipt: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// Over [`MAX_RECEIPT_LEN`].
    #[error("receipt of {0} bytes is over the limit of {MAX_RECEIPT_LEN}")]
    TooLong(usize),
    /// A field is missing, of the wrong type or out of range.
    #[error("receipt field `{0}` is missing or malformed")]
    Field(&'static str),
    /// A format this version does not read.
    #[error("receipt format {0} is not supported (this version reads {VERSION})")]
    Version(i64),
    /// Keys unsorted, an unknown field, or a number written in a non-canonical way.
    #[error("receipt is not in canonical form")]
    NotCanonical,
    /// The signature does not verify with the viewer's key.
    #[error("receipt signature does not verify")]
    BadSignature,
}

/// What a viewer says in a receipt, before it signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The content.
    pub content: InfoHash,
    /// Where the bytes came from.
    pub from: Uploader,
    /// Verified bytes, cumulative.
    pub bytes: u64,
    /// Watched milliseconds, cumulative.
    pub watched_ms: u64,
    /// Players' delay behind the source now, milliseconds.
    pub delay_ms: Option<u64>,
    /// Sequence number.
    pub seq: u64,
    /// Unix seconds now.
    pub time: u64,
}

impl Receipt {
    /// Signs a claim with the viewer's key.
    pub fn sign(key: &SigningKey, claim: Claim) -> Result<Receipt, ReceiptError> {
        if let Uploader::Cdn(h) = &claim.from {
            if !valid_host(h) {
                return Err(ReceiptError::Field("h"));
            }
        }
        for (name, n) in [
            ("b", claim.bytes),
            ("w", claim.watched_ms),
            ("s", claim.seq),
            ("t", claim.time),
            ("d", claim.delay_ms.unwrap_or(0)),
        ] {
            if i64::try_from(n).is_err() {
                return Err(ReceiptError::Field(name));
            }
        }
        let mut r = Receipt {
            content: claim.content,
            from: claim.from,
            to: key.verifying_key().to_bytes(),
            bytes: claim.bytes,
            watched_ms: claim.watched_ms,
            delay_ms: claim.delay_ms,
            seq: claim.seq,
            time: claim.time,
            sig: [0; 64],
        };
        r.sig = key.sign(&r.signed_message()).to_bytes();
        Ok(r)
    }

    /// The pair this receipt is the latest word on (with the content).
    pub fn pair(&self) -> (InfoHash, Uploader, [u8; 32]) {
        (self.content, self.from.clone(), self.to)
    }

    fn unsigned(&self) -> bencode::DictBuilder {
        let d = OwnedValue::dict()
            .with("v", OwnedValue::int(VERSION))
            .with("c", OwnedValue::bytes(self.content.0.to_vec()))
            .with("to", OwnedValue::bytes(self.to.to_vec()))
            .with("b", OwnedValue::int(clamp_i64(self.bytes)))
            .with("w", OwnedValue::int(clamp_i64(self.watched_ms)))
            .with("s", OwnedValue::int(clamp_i64(self.seq)))
            .with("t", OwnedValue::int(clamp_i64(self.time)))
            .with_opt("d", self.delay_ms.map(|d| OwnedValue::int(clamp_i64(d))));
        match &self.from {
            Uploader::Peer(k) => d.with("f", OwnedValue::bytes(k.to_vec())),
            Uploader::Cdn(h) => d.with("h", OwnedValue::str(h)),
        }
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

    /// Parses and verifies a receipt: size, canonical form, every field, the signature.
    pub fn decode(buf: &[u8]) -> Result<Receipt, ReceiptError> {
        if buf.len() > MAX_RECEIPT_LEN {
            return Err(ReceiptError::TooLong(buf.len()));
        }
        let limits = bencode::Limits {
            max_depth: 2,
            // Ten keys and their values, with room for a stray one (refused as
            // not canonical, with a clearer error than "too many items").
            max_items: 24,
        };
        let v = bencode::decode_with(buf, limits)?;
        let d = v.as_dict().ok_or(ReceiptError::Field("dictionary"))?;
        let version = d.get_int(b"v").ok_or(ReceiptError::Field("v"))?;
        if version != VERSION {
            return Err(ReceiptError::Version(version));
        }
        let uint = |k: &'static str| -> Result<u64, ReceiptError> {
            d.get_int(k.as_bytes())
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(ReceiptError::Field(k))
        };
        let content: [u8; 20] = d
            .get_bytes(b"c")
            .and_then(|b| b.try_into().ok())
            .ok_or(ReceiptError::Field("c"))?;
        let to: [u8; 32] = d
            .get_bytes(b"to")
            .and_then(|b| b.try_into().ok())
            .ok_or(ReceiptError::Field("to"))?;
        let sig: [u8; 64] = d
            .get_bytes(b"sig")
            .and_then(|b| b.try_into().ok())
            .ok_or(ReceiptError::Field("sig"))?;
        let from = match (d.get(b"f"), d.get(b"h")) {
            (Some(f), None) => Uploader::Peer(
                f.as_bytes()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(ReceiptError::Field("f"))?,
            ),
            (None, Some(h)) => Uploader::Cdn(
                h.as_str()
                    .filter(|h| valid_host(h))
                    .ok_or(ReceiptError::Field("h"))?
                    .to_string(),
            ),
            _ => return Err(ReceiptError::Field("f")),
        };
        let r = Receipt {
            content: InfoHash(content),
            from,
            to,
            bytes: uint("b")?,
            watched_ms: uint("w")?,
            delay_ms: match d.get(b"d") {
                None => None,
                Some(_) => Some(uint("d")?),
            },
            seq: uint("s")?,
            time: uint("t")?,
            sig,
        };
        // Canonical and nothing else: the signature covers exactly these bytes.
        if r.encode() != buf {
            return Err(ReceiptError::NotCanonical);
        }
        r.verify()?;
        Ok(r)
    }

    /// Checks the signature (strict ed25519: no malleable or small-order forms).
    pub fn verify(&self) -> Result<(), ReceiptError> {
        let key = VerifyingKey::from_bytes(&self.to).map_err(|_| ReceiptError::BadSignature)?;
        key.verify_strict(&self.signed_message(), &Signature::from_bytes(&self.sig))
            .map_err(|_| ReceiptError::BadSignature)
    }
}

/// Most receipts in one batch handed to a collector over HTTP.
pub const MAX_BATCH: usize = 64;

/// Why a batch of receipts was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Not a bencoded list of at most [`MAX_BATCH`] strings.
    #[error("not a list of at most {MAX_BATCH} receipts")]
    Malformed,
    /// One receipt was refused (its position from 0, and why).
    #[error("receipt {0}: {1}")]
    Receipt(usize, ReceiptError),
}

/// A batch for a collector: a bencoded list of receipts, each as its signed bytes (a string).
pub fn encode_batch(receipts: &[impl AsRef<[u8]>]) -> Vec<u8> {
    OwnedValue::list(
        receipts
            .iter()
            .map(|r| OwnedValue::bytes(r.as_ref().to_vec())),
    )
    .encode()
}

/// Parses and verifies a batch; one bad receipt refuses the whole batch (an honest viewer
/// signs every receipt it sends).
pub fn decode_batch(buf: &[u8]) -> Result<Vec<Receipt>, BatchError> {
    if buf.len() > MAX_BATCH * (MAX_RECEIPT_LEN + 8) + 2 {
        return Err(BatchError::Malformed);
    }
    let limits = bencode::Limits {
        max_depth: 2,
        max_items: MAX_BATCH,
    };
    let v = bencode::decode_with(buf, limits).map_err(|_| BatchError::Malformed)?;
    let list = v.as_list().ok_or(BatchError::Malformed)?;
    if list.len() > MAX_BATCH {
        return Err(BatchError::Malformed);
    }
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let b = item.as_bytes().ok_or(BatchError::Malformed)?;
            Receipt::decode(b).map_err(|e| BatchError::Receipt(i, e))
        })
        .collect()
}

/// A CDN host as a receipt names it: 1 to [`MAX_HOST`] bytes of letters, digits, `.-:[]`
/// (a name or an address, with a port when not the default).
pub fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= MAX_HOST
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-:[]_".contains(&c))
}

/// Receipts hold no integer above `i64::MAX` (checked when signed and when decoded).
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

    fn claim() -> Claim {
        Claim {
            content: InfoHash([7; 20]),
            from: Uploader::Peer(key(2).verifying_key().to_bytes()),
            bytes: 123_456_789,
            watched_ms: 61_000,
            delay_ms: None,
            seq: 4,
            time: 1_796_000_000,
        }
    }

    #[test]
    fn a_signed_receipt_round_trips_and_verifies() {
        let r = Receipt::sign(&key(1), claim()).unwrap();
        let wire = r.encode();
        assert!(wire.len() <= MAX_RECEIPT_LEN);
        assert_eq!(Receipt::decode(&wire).unwrap(), r);
        assert_eq!(r.to, key(1).verifying_key().to_bytes());
        let cdn = Claim {
            from: Uploader::Cdn("cdn.example.net:8080".into()),
            ..claim()
        };
        let r = Receipt::sign(&key(1), cdn).unwrap();
        assert_eq!(Receipt::decode(&r.encode()).unwrap(), r);
        // With the players' delay; a changed delay breaks the signature.
        let late = Claim {
            delay_ms: Some(1_500),
            ..claim()
        };
        let r = Receipt::sign(&key(1), late).unwrap();
        let back = Receipt::decode(&r.encode()).unwrap();
        assert_eq!(back.delay_ms, Some(1_500));
        let mut other = back;
        other.delay_ms = Some(100);
        assert_eq!(
            Receipt::decode(&other.encode()),
            Err(ReceiptError::BadSignature)
        );
    }

    #[test]
    fn an_inflated_or_reattributed_receipt_is_refused() {
        let r = Receipt::sign(&key(1), claim()).unwrap();
        let mut more = r.clone();
        more.bytes *= 2;
        assert_eq!(
            Receipt::decode(&more.encode()),
            Err(ReceiptError::BadSignature)
        );
        let mut other = r.clone();
        other.to = key(3).verifying_key().to_bytes();
        assert_eq!(
            Receipt::decode(&other.encode()),
            Err(ReceiptError::BadSignature)
        );
        let mut moved = r;
        moved.from = Uploader::Peer([9; 32]);
        assert_eq!(moved.verify(), Err(ReceiptError::BadSignature));
    }

    #[test]
    fn a_signature_of_another_kind_of_message_is_refused() {
        // The same fields signed without the context (as another protocol might) fail.
        let mut r = Receipt::sign(&key(1), claim()).unwrap();
        let bare = r.unsigned().build().encode();
        r.sig = key(1).sign(&bare).to_bytes();
        assert_eq!(r.verify(), Err(ReceiptError::BadSignature));
    }

    #[test]
    fn malformed_and_non_canonical_receipts_are_refused() {
        let r = Receipt::sign(&key(1), claim()).unwrap();
        let wire = r.encode();
        // An extra field, signed or not, is not canonical.
        let mut v = bencode::decode(&wire).unwrap().to_owned();
        if let OwnedValue::Dict(m) = &mut v {
            m.insert(b"x".to_vec(), OwnedValue::int(1));
        }
        assert_eq!(
            Receipt::decode(&v.encode()),
            Err(ReceiptError::NotCanonical)
        );
        // Both an uploader key and a host.
        let both = r
            .unsigned()
            .with("h", OwnedValue::str("a.b"))
            .with("sig", OwnedValue::bytes(r.sig.to_vec()))
            .build()
            .encode();
        assert_eq!(Receipt::decode(&both), Err(ReceiptError::Field("f")));
        assert!(matches!(
            Receipt::decode(b"de"),
            Err(ReceiptError::Field(_))
        ));
        assert!(matches!(
            Receipt::decode(&[b'l'; 600]),
            Err(ReceiptError::TooLong(600))
        ));
        let bad_host = Claim {
            from: Uploader::Cdn("evil host/..".into()),
            ..claim()
        };
        assert_eq!(
            Receipt::sign(&key(1), bad_host),
            Err(ReceiptError::Field("h"))
        );
        let huge = Claim {
            bytes: u64::MAX,
            ..claim()
        };
        assert_eq!(Receipt::sign(&key(1), huge), Err(ReceiptError::Field("b")));
    }

    #[test]
    fn a_batch_round_trips_and_one_forgery_refuses_it() {
        let rs: Vec<Receipt> = (0..3)
            .map(|i| Receipt::sign(&key(1), Claim { seq: i, ..claim() }).unwrap())
            .collect();
        let wire: Vec<Vec<u8>> = rs.iter().map(Receipt::encode).collect();
        assert_eq!(decode_batch(&encode_batch(&wire)).unwrap(), rs);
        let mut bad = wire.clone();
        let mut forged = rs[1].clone();
        forged.bytes += 1;
        bad[1] = forged.encode();
        assert_eq!(
            decode_batch(&encode_batch(&bad)),
            Err(BatchError::Receipt(1, ReceiptError::BadSignature))
        );
        let too_many = vec![wire[0].clone(); MAX_BATCH + 1];
        assert_eq!(
            decode_batch(&encode_batch(&too_many)),
            Err(BatchError::Malformed)
        );
        assert_eq!(decode_batch(b"i1e"), Err(BatchError::Malformed));
    }

    #[test]
    fn labels_read_back() {
        for u in [Uploader::Peer([0xab; 32]), Uploader::Cdn("h:81".into())] {
            assert_eq!(Uploader::parse_label(&u.label()), Some(u));
        }
        assert_eq!(Uploader::parse_label("cdn:"), None);
        assert_eq!(Uploader::parse_label("abcd"), None);
    }

    proptest! {
        #[test]
        fn round_trip_and_tamper(
            bytes in 0u64..i64::MAX as u64,
            watched in 0u64..i64::MAX as u64,
            seq in 0u64..1 << 40,
            flip in 0usize..400,
        ) {
            let c = Claim { bytes, watched_ms: watched, seq, ..claim() };
            let r = Receipt::sign(&key(5), c).unwrap();
            let wire = r.encode();
            prop_assert_eq!(Receipt::decode(&wire).unwrap(), r);
            let mut bad = wire.clone();
            let i = flip % bad.len();
            bad[i] ^= 0x01;
            prop_assert!(Receipt::decode(&bad).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = Receipt::decode(&bytes);
        }
    }
}
