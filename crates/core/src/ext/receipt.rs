//! `pc_receipt`: node identities proven between peers, and receipts ([`crate::receipt`])
//! carried over BEP 10 in both swarms — the codec, the per-connection state, and the node's
//! book of verified bytes per uploader key.
//!
//! Messages (a bencoded dictionary; `t` says which):
//! - `{t: "h", k: key, n: nonce}` — hello: the sender's 32-byte node key and a 16-byte nonce
//!   it wants signed; sent once, as soon as both sides speak `pc_receipt`;
//! - `{t: "i", s: signature}` — identity proof: ed25519 by the key of the sender's hello over
//!   [`IDENT_CONTEXT`] ‖ the other side's nonce ‖ the sender's key; sent once, in answer to the
//!   other side's hello;
//! - `{t: "r", r: [receipt…]}` — receipts (each its own signed bytes, at most
//!   [`MAX_MSG_RECEIPTS`] per message).
//!
//! A peer's key counts once its proof verifies with the nonce we sent it ([`PeerIdent::proven`]);
//! nonces are derived from a secret salt and the connection, so a proof overheard on another
//! connection cannot be replayed. A proof that does not verify, or a receipt that does not, closes
//! the connection and bans the peer (an honest peer signs its proof itself and verifies every
//! receipt before it passes one on); a message out of order (a second hello with another key, a
//! proof before our hello) only closes it.
//!
//! Verified bytes: the swarm credits each block that passed its hash to the sender
//! ([`credit`]); the [`ReceiptBook`] keeps the total per proven key for the whole content (a
//! reconnection continues the count), and bytes a peer sent before its proof arrived are moved
//! there when it does. The engine reads the book, signs receipts ([`crate::receipt::Receipt`])
//! and hands them back to send ([`ReceiptSwarm`]).
//!
//! Budget: a peer may send [`RECEIPT_BURST`] receipts at once and [`RECEIPTS_PER_S`] per second
//! after; what is over is dropped and counted, not an error (receipts are cumulative: the next
//! one carries what a dropped one said).

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::handshake::Extension;
use super::peer::PeerRecord;
use super::search::Bucket;
use super::PeerKey;
use crate::bencode::{self, OwnedValue};
use crate::disconnect::{DisconnectReason, ProtocolViolation};
use crate::receipt::{Receipt, MAX_RECEIPT_LEN};
use crate::wire::Message;

/// The extension's name in the BEP 10 handshake.
pub const PC_RECEIPT: &str = "pc_receipt";
/// The ID we ask peers to send `pc_receipt` messages with.
pub const OUR_PC_RECEIPT_ID: u8 = 5;
/// Most receipts in one message.
pub const MAX_MSG_RECEIPTS: usize = 8;
/// Receipts a peer may send at once.
pub const RECEIPT_BURST: f64 = 64.0;
/// Receipts per second a peer may send after its burst.
pub const RECEIPTS_PER_S: f64 = 4.0;
/// Most uploader keys the book counts bytes for; bytes from keys beyond are counted as
/// unreceipted (a swarm that large has long dropped most of them).
pub const MAX_BOOK_KEYS: usize = 4096;
/// Prefix of an identity proof's signed message.
pub const IDENT_CONTEXT: &[u8] = b"peercdn-ident-v1";
/// Length of a hello's nonce.
pub const NONCE_LEN: usize = 16;

/// A `pc_receipt` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptMsg {
    /// The sender's key and the nonce it wants signed.
    Hello {
        /// Its node key.
        key: [u8; 32],
        /// The nonce for our proof.
        nonce: [u8; NONCE_LEN],
    },
    /// The sender's proof of its key.
    Proof([u8; 64]),
    /// Receipts (unverified here; [`receive`] verifies them).
    Receipts(Vec<Bytes>),
}

/// Why a `pc_receipt` message does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptMsgError {
    /// Not bencode, or nested too deep or too wide.
    #[error("pc_receipt: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// A field is missing, of the wrong type or out of bounds.
    #[error("pc_receipt: bad field {0}")]
    Field(&'static str),
}

impl ReceiptMsg {
    /// The wire form (the payload of an extended message).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ReceiptMsg::Hello { key, nonce } => OwnedValue::dict()
                .with("t", "h")
                .with("k", OwnedValue::bytes(key.to_vec()))
                .with("n", OwnedValue::bytes(nonce.to_vec())),
            ReceiptMsg::Proof(sig) => OwnedValue::dict()
                .with("t", "i")
                .with("s", OwnedValue::bytes(sig.to_vec())),
            ReceiptMsg::Receipts(r) => OwnedValue::dict().with("t", "r").with(
                "r",
                OwnedValue::list(r.iter().map(|b| OwnedValue::bytes(b.to_vec()))),
            ),
        }
        .build()
        .encode()
    }

    /// Parses a message (bounds checked: receipt count and length).
    pub fn decode(payload: &[u8]) -> Result<ReceiptMsg, ReceiptMsgError> {
        let limits = bencode::Limits {
            max_depth: 3,
            max_items: 2 * MAX_MSG_RECEIPTS + 8,
        };
        let v = bencode::decode_with(payload, limits)?;
        let d = v.as_dict().ok_or(ReceiptMsgError::Field("dictionary"))?;
        let fixed = |k: &'static str| d.get_bytes(k.as_bytes()).ok_or(ReceiptMsgError::Field(k));
        match d.get_str(b"t").ok_or(ReceiptMsgError::Field("t"))? {
            "h" => Ok(ReceiptMsg::Hello {
                key: fixed("k")?
                    .try_into()
                    .map_err(|_| ReceiptMsgError::Field("k"))?,
                nonce: fixed("n")?
                    .try_into()
                    .map_err(|_| ReceiptMsgError::Field("n"))?,
            }),
            "i" => Ok(ReceiptMsg::Proof(
                fixed("s")?
                    .try_into()
                    .map_err(|_| ReceiptMsgError::Field("s"))?,
            )),
            "r" => {
                let list = d.get_list(b"r").ok_or(ReceiptMsgError::Field("r"))?;
                if list.len() > MAX_MSG_RECEIPTS {
                    return Err(ReceiptMsgError::Field("r"));
                }
                list.iter()
                    .map(|r| match r.as_bytes() {
                        Some(b) if !b.is_empty() && b.len() <= MAX_RECEIPT_LEN => {
                            Ok(Bytes::copy_from_slice(b))
                        }
                        _ => Err(ReceiptMsgError::Field("r")),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(ReceiptMsg::Receipts)
            }
            _ => Err(ReceiptMsgError::Field("t")),
        }
    }
}

/// The node's identity as a swarm uses it: the key it proves and the salt its nonces come
/// from. The engine makes one per node (the key is the node key) and hands it to each swarm.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    salt: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("key", &hex::encode(self.public()))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The node key, and a secret random salt (fresh at every start).
    pub fn new(key: SigningKey, salt: [u8; 32]) -> Identity {
        Identity { key, salt }
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signing key (the engine signs receipts with it).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The nonce we ask the peer on connection `peer` to sign: unpredictable without the salt,
    /// and different on every connection.
    pub fn nonce(&self, peer: PeerKey) -> [u8; NONCE_LEN] {
        let h = Sha256::new()
            .chain_update(self.salt)
            .chain_update(peer.to_be_bytes())
            .finalize();
        let mut n = [0; NONCE_LEN];
        n.copy_from_slice(&h[..NONCE_LEN]);
        n
    }

    fn prove(&self, their_nonce: &[u8; NONCE_LEN]) -> [u8; 64] {
        self.key
            .sign(&ident_message(their_nonce, &self.public()))
            .to_bytes()
    }
}

fn ident_message(nonce: &[u8; NONCE_LEN], key: &[u8; 32]) -> Vec<u8> {
    let mut m = IDENT_CONTEXT.to_vec();
    m.extend_from_slice(nonce);
    m.extend_from_slice(key);
    m
}

/// One connection's `pc_receipt` state.
#[derive(Debug, Clone)]
pub struct PeerIdent {
    hello_sent: bool,
    claimed: Option<[u8; 32]>,
    proven: Option<[u8; 32]>,
    /// Verified bytes it sent before its proof arrived.
    unproven_bytes: u64,
    budget: Bucket,
    /// Receipts dropped over the budget.
    pub dropped: u64,
}

impl PeerIdent {
    /// A connection that opened at `now`.
    pub fn new(now: Instant) -> PeerIdent {
        PeerIdent {
            hello_sent: false,
            claimed: None,
            proven: None,
            unproven_bytes: 0,
            budget: Bucket {
                tokens: RECEIPT_BURST,
                at: now,
            },
            dropped: 0,
        }
    }

    /// The peer's node key, once its proof verified.
    pub fn proven(&self) -> Option<[u8; 32]> {
        self.proven
    }
}

/// Verified bytes received per uploader key, for the whole content.
#[derive(Debug, Clone, Default)]
pub struct ReceiptBook {
    bytes: HashMap<[u8; 32], u64>,
    /// Verified bytes from peers that never proved a key, or beyond [`MAX_BOOK_KEYS`].
    pub unreceipted: u64,
}

impl ReceiptBook {
    /// Counts `n` verified bytes received from `key` (up to [`MAX_BOOK_KEYS`] keys; beyond,
    /// they are unreceipted).
    pub fn add(&mut self, key: [u8; 32], n: u64) {
        if let Some(b) = self.bytes.get_mut(&key) {
            *b = b.saturating_add(n);
        } else if self.bytes.len() < MAX_BOOK_KEYS {
            self.bytes.insert(key, n);
        } else {
            self.unreceipted = self.unreceipted.saturating_add(n);
        }
    }

    /// Each uploader key and the verified bytes received from it.
    pub fn totals(&self) -> Vec<([u8; 32], u64)> {
        let mut v: Vec<_> = self.bytes.iter().map(|(k, b)| (*k, *b)).collect();
        v.sort_unstable();
        v
    }
}

/// A block of `n` bytes from this peer passed its hash.
pub fn credit(rec: &mut PeerRecord, book: &mut ReceiptBook, n: u64) {
    match rec.ident.proven {
        Some(k) => book.add(k, n),
        None => rec.ident.unproven_bytes = rec.ident.unproven_bytes.saturating_add(n),
    }
}

/// A connection closed: what its peer sent unproven is unreceipted.
pub fn closed(rec: &PeerRecord, book: &mut ReceiptBook) {
    if rec.ident.proven.is_none() {
        book.unreceipted = book.unreceipted.saturating_add(rec.ident.unproven_bytes);
    }
}

/// Our hello, once the peer speaks `pc_receipt` and we have an identity (once per connection).
pub fn hello(ident: Option<&Identity>, key: PeerKey, rec: &mut PeerRecord) -> Option<Message> {
    let ident = ident?;
    if rec.ident.hello_sent {
        return None;
    }
    let msg = ReceiptMsg::Hello {
        key: ident.public(),
        nonce: ident.nonce(key),
    };
    let m = message(rec, &msg)?;
    rec.ident.hello_sent = true;
    Some(m)
}

/// What a `pc_receipt` message from a peer asks of the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptEvent {
    /// Send this (our proof, answering its hello).
    Reply(Message),
    /// Its key is proven.
    Identified([u8; 32]),
    /// Receipts it sent, each verified (signature and form).
    Receipts(Vec<Receipt>),
}

/// A `pc_receipt` message arrived from connection `key`.
pub fn receive(
    payload: &[u8],
    key: PeerKey,
    rec: &mut PeerRecord,
    ident: Option<&Identity>,
    book: &mut ReceiptBook,
    now: Instant,
) -> Result<Option<ReceiptEvent>, DisconnectReason> {
    let bad = DisconnectReason::Protocol(ProtocolViolation::BadReceiptMsg);
    let forged = DisconnectReason::Protocol(ProtocolViolation::ForgedReceipt);
    match ReceiptMsg::decode(payload).map_err(|_| bad)? {
        ReceiptMsg::Hello { key: theirs, nonce } => {
            if rec.ident.claimed.is_some_and(|k| k != theirs) {
                return Err(bad);
            }
            rec.ident.claimed = Some(theirs);
            let Some(ident) = ident else {
                return Ok(None);
            };
            Ok(message(rec, &ReceiptMsg::Proof(ident.prove(&nonce))).map(ReceiptEvent::Reply))
        }
        ReceiptMsg::Proof(sig) => {
            let (Some(ident), Some(claimed), true) =
                (ident, rec.ident.claimed, rec.ident.hello_sent)
            else {
                return Err(bad);
            };
            if rec.ident.proven.is_some() {
                return Err(bad);
            }
            let vk = VerifyingKey::from_bytes(&claimed).map_err(|_| forged)?;
            vk.verify_strict(
                &ident_message(&ident.nonce(key), &claimed),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| forged)?;
            rec.ident.proven = Some(claimed);
            let n = std::mem::take(&mut rec.ident.unproven_bytes);
            if n > 0 {
                book.add(claimed, n);
            }
            Ok(Some(ReceiptEvent::Identified(claimed)))
        }
        ReceiptMsg::Receipts(list) => {
            let got = rec
                .ident
                .budget
                .take(list.len() as f64, RECEIPT_BURST, RECEIPTS_PER_S, now)
                as usize;
            rec.ident.dropped += (list.len() - got) as u64;
            let receipts = list[..got]
                .iter()
                .map(|b| Receipt::decode(b).map_err(|_| forged))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((!receipts.is_empty()).then_some(ReceiptEvent::Receipts(receipts)))
        }
    }
}

/// `msg` as the extended message the peer asked `pc_receipt` to come in; `None` when it does
/// not speak it.
pub fn message(rec: &PeerRecord, msg: &ReceiptMsg) -> Option<Message> {
    let id = rec.ext.id(Extension::PcReceipt)?;
    Some(Message::Extended {
        id,
        payload: msg.encode().into(),
    })
}

/// The connections among `peers` whose peer proved its key, with the key.
pub fn identified<'a>(
    peers: impl Iterator<Item = (PeerKey, &'a PeerRecord)>,
) -> Vec<(PeerKey, [u8; 32])> {
    peers
        .filter_map(|(k, rec)| Some((k, rec.ident.proven?)))
        .collect()
}

/// The extended messages carrying `receipts` to the peer of `rec`; `None` when it does not
/// speak `pc_receipt`.
pub fn receipts_to(rec: &PeerRecord, receipts: &[Bytes]) -> Option<Vec<Message>> {
    receipt_messages(receipts)
        .iter()
        .map(|m| message(rec, m))
        .collect()
}

/// Receipts as messages of at most [`MAX_MSG_RECEIPTS`] each.
pub fn receipt_messages(receipts: &[Bytes]) -> Vec<ReceiptMsg> {
    receipts
        .chunks(MAX_MSG_RECEIPTS)
        .map(|c| ReceiptMsg::Receipts(c.to_vec()))
        .collect()
}

/// What the engine needs of a swarm to account for what it received and pass receipts on
/// (both swarms implement it).
pub trait ReceiptSwarm {
    /// Verified bytes received per proven uploader key, for the whole content.
    fn receipt_book(&self) -> &ReceiptBook;
    /// Each connection whose peer proved its key, with the key.
    fn identified_peers(&self) -> Vec<(PeerKey, [u8; 32])>;
    /// Sends receipts (their signed bytes) to a peer; false when it does not speak
    /// `pc_receipt` or is gone.
    fn send_receipts(&mut self, key: PeerKey, receipts: &[Bytes]) -> bool;
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;
    use crate::ext::handshake::{our_handshake, PeerExtensions};
    use crate::id::InfoHash;
    use crate::receipt::{Claim, Uploader};
    use proptest::prelude::*;

    fn ident(n: u8) -> Identity {
        Identity::new(SigningKey::from_bytes(&[n; 32]), [n ^ 0x55; 32])
    }

    /// A connection record whose peer speaks every extension.
    fn rec(now: Instant) -> PeerRecord {
        let mut r = PeerRecord::new("127.0.0.1:1".parse().unwrap(), now, now);
        let Message::Extended { payload, .. } =
            our_handshake(&Extension::ALL, None, None, 1, false)
        else {
            unreachable!()
        };
        r.on_ext_handshake(PeerExtensions::decode(&payload).unwrap());
        r
    }

    fn payload(m: Message) -> Bytes {
        match m {
            Message::Extended { id, payload } => {
                assert_eq!(id, OUR_PC_RECEIPT_ID);
                payload
            }
            other => panic!("not pc_receipt: {other:?}"),
        }
    }

    /// Two nodes A and B on connection keys 1 (A's for B) and 2 (B's for A) exchange hellos
    /// and proofs; each ends up knowing the other's key, and bytes B sent A before its proof
    /// are credited to B's key.
    #[test]
    fn hellos_and_proofs_prove_both_keys_and_move_early_bytes() {
        let now = Instant::now();
        let (a, b) = (ident(1), ident(2));
        let (mut ra, mut rb) = (rec(now), rec(now)); // A's record of B, B's record of A
        let (mut book_a, mut book_b) = (ReceiptBook::default(), ReceiptBook::default());
        credit(&mut ra, &mut book_a, 16384);
        let ha = payload(hello(Some(&a), 1, &mut ra).unwrap());
        assert!(hello(Some(&a), 1, &mut ra).is_none(), "one hello");
        let hb = payload(hello(Some(&b), 2, &mut rb).unwrap());
        let Some(ReceiptEvent::Reply(pb)) =
            receive(&ha, 2, &mut rb, Some(&b), &mut book_b, now).unwrap()
        else {
            panic!("no proof")
        };
        let Some(ReceiptEvent::Reply(pa)) =
            receive(&hb, 1, &mut ra, Some(&a), &mut book_a, now).unwrap()
        else {
            panic!("no proof")
        };
        assert_eq!(
            receive(&payload(pb), 1, &mut ra, Some(&a), &mut book_a, now).unwrap(),
            Some(ReceiptEvent::Identified(b.public()))
        );
        assert_eq!(
            receive(&payload(pa), 2, &mut rb, Some(&b), &mut book_b, now).unwrap(),
            Some(ReceiptEvent::Identified(a.public()))
        );
        assert_eq!(ra.ident.proven(), Some(b.public()));
        credit(&mut ra, &mut book_a, 100);
        assert_eq!(book_a.totals(), vec![(b.public(), 16484)]);
        assert_eq!(book_a.unreceipted, 0);
    }

    /// A proof made for another connection's nonce (replayed from elsewhere), or by another
    /// key than the hello claimed, bans; a proof before our hello, or a second hello naming
    /// another key, closes.
    #[test]
    fn replayed_or_foreign_proofs_are_refused() {
        let now = Instant::now();
        let (a, b, c) = (ident(1), ident(2), ident(3));
        let forged = Err(DisconnectReason::Protocol(ProtocolViolation::ForgedReceipt));
        let bad = Err(DisconnectReason::Protocol(ProtocolViolation::BadReceiptMsg));
        let mut book = ReceiptBook::default();
        // B proves on connection 7 of A's: replayed on A's connection 8, it fails.
        let mut r8 = rec(now);
        hello(Some(&a), 8, &mut r8).unwrap();
        let hb = ReceiptMsg::Hello {
            key: b.public(),
            nonce: [0; NONCE_LEN],
        };
        receive(&hb.encode(), 8, &mut r8, Some(&a), &mut book, now).unwrap();
        let replayed = ReceiptMsg::Proof(b.prove(&a.nonce(7)));
        assert_eq!(
            receive(&replayed.encode(), 8, &mut r8, Some(&a), &mut book, now),
            forged
        );
        // C signs A's nonce but claimed B's key.
        let mut r9 = rec(now);
        hello(Some(&a), 9, &mut r9).unwrap();
        receive(&hb.encode(), 9, &mut r9, Some(&a), &mut book, now).unwrap();
        let foreign = ReceiptMsg::Proof(c.prove(&a.nonce(9)));
        assert_eq!(
            receive(&foreign.encode(), 9, &mut r9, Some(&a), &mut book, now),
            forged
        );
        assert_eq!(r9.ident.proven(), None);
        // Out of order: a proof before we said hello; a second hello with another key.
        let mut r10 = rec(now);
        let early = ReceiptMsg::Proof(b.prove(&a.nonce(10)));
        assert_eq!(
            receive(&early.encode(), 10, &mut r10, Some(&a), &mut book, now),
            bad
        );
        receive(&hb.encode(), 10, &mut r10, Some(&a), &mut book, now).unwrap();
        let hc = ReceiptMsg::Hello {
            key: c.public(),
            nonce: [0; NONCE_LEN],
        };
        assert_eq!(
            receive(&hc.encode(), 10, &mut r10, Some(&a), &mut book, now),
            bad
        );
    }

    /// Receipts pass verified, a forged one bans, and over the budget they are dropped.
    #[test]
    fn receipts_are_verified_and_budgeted() {
        let now = Instant::now();
        let viewer = SigningKey::from_bytes(&[4; 32]);
        let sign = |bytes| {
            let c = Claim {
                content: InfoHash([1; 20]),
                from: Uploader::Peer([2; 32]),
                bytes,
                watched_ms: 1000,
                delay_ms: None,
                seq: 1,
                time: 1_796_000_000,
            };
            Bytes::from(Receipt::sign(&viewer, c).unwrap().encode())
        };
        let mut r = rec(now);
        let mut book = ReceiptBook::default();
        let ok: Vec<Bytes> = (0..MAX_MSG_RECEIPTS as u64).map(sign).collect();
        let msg = ReceiptMsg::Receipts(ok.clone()).encode();
        let Some(ReceiptEvent::Receipts(got)) =
            receive(&msg, 1, &mut r, None, &mut book, now).unwrap()
        else {
            panic!("no receipts")
        };
        assert_eq!(got.len(), MAX_MSG_RECEIPTS);
        assert_eq!(got[3].bytes, 3);
        // The burst is 64: eight messages of eight pass, the ninth is dropped whole.
        for _ in 1..8 {
            assert!(receive(&msg, 1, &mut r, None, &mut book, now)
                .unwrap()
                .is_some());
        }
        assert_eq!(
            receive(&msg, 1, &mut r, None, &mut book, now).unwrap(),
            None
        );
        assert_eq!(r.ident.dropped, MAX_MSG_RECEIPTS as u64);
        // A second later four more pass.
        let later = now + std::time::Duration::from_secs(1);
        let Some(ReceiptEvent::Receipts(got)) =
            receive(&msg, 1, &mut r, None, &mut book, later).unwrap()
        else {
            panic!("none after a second")
        };
        assert_eq!(got.len(), 4);
        // A tampered receipt bans.
        let mut r = rec(now);
        let mut t = ok[2].to_vec();
        let at = t.len() - 70;
        t[at] ^= 1;
        let msg = ReceiptMsg::Receipts(vec![ok[0].clone(), t.into()]).encode();
        assert_eq!(
            receive(&msg, 1, &mut r, None, &mut book, now),
            Err(DisconnectReason::Protocol(ProtocolViolation::ForgedReceipt))
        );
    }

    #[test]
    fn the_book_is_bounded() {
        let mut book = ReceiptBook::default();
        for i in 0..MAX_BOOK_KEYS as u32 + 10 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            book.add(k, 1);
        }
        assert_eq!(book.totals().len(), MAX_BOOK_KEYS);
        assert_eq!(book.unreceipted, 10);
    }

    proptest! {
        #[test]
        fn messages_round_trip(key in any::<[u8; 32]>(), nonce in any::<[u8; 16]>(),
                               n in 0usize..=MAX_MSG_RECEIPTS, len in 1usize..MAX_RECEIPT_LEN) {
            let sig = [key[0]; 64];
            let receipts: Vec<Bytes> = (0..n).map(|i| Bytes::from(vec![i as u8; len])).collect();
            for m in [ReceiptMsg::Hello { key, nonce }, ReceiptMsg::Proof(sig),
                      ReceiptMsg::Receipts(receipts.clone())] {
                prop_assert_eq!(ReceiptMsg::decode(&m.encode()).unwrap(), m);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = ReceiptMsg::decode(&bytes);
        }
    }
}
