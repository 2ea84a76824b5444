//! Settlement export as Stellar transaction envelopes.
//!
//! This module owns the conversion between peercdn's settlement (the
//! broadcaster paying uploaders) and Stellar's on-chain representation of it:
//! unsigned `TransactionEnvelope`s carrying native XLM `Payment` operations,
//! offline signing of those envelopes, and decoding them back for review.
//!
//! A node's identity key is an ed25519 key, and its 32 public bytes are also a
//! Stellar account ID, so no key mapping is needed: [`account_id`] renders the
//! bytes as a `G…` strkey and [`parse_account`] reads one back.
//!
//! Nothing here touches the network. The caller supplies the source account's
//! next sequence number ([`ExportParams::first_sequence`]) and submits the
//! signed envelopes with any Stellar tool (for example `stellar tx send`, or
//! Horizon's `POST /transactions`). Keeping this offline is deliberate: the
//! secret key can stay on an air-gapped machine, and the output can be checked
//! with [`decode_envelope`] before anything is submitted.
//!
//! Transaction hashes are computed exactly as stellar-core does: SHA-256 of
//! the XDR of `TransactionSignaturePayload { networkId = SHA-256(passphrase),
//! taggedTransaction = ENVELOPE_TYPE_TX(tx) }`. The ed25519 signature is made
//! over that 32-byte hash, and the signature hint is the last four bytes of the
//! signer's public key.
//!
//! Things the network checks and this module cannot:
//! - each destination account must already exist (a payment to a missing
//!   account fails with `PAYMENT_NO_DESTINATION`), and a Stellar transaction
//!   is atomic, so one failing payment fails its whole envelope of up to
//!   [`MAX_OPS`] payments;
//! - the source account must hold enough XLM for all payments, fees and its
//!   own minimum reserve;
//! - the envelopes must be submitted in sequence order, since envelope `i`
//!   uses sequence number `first_sequence + i`.
//!
//! The envelopes carry no time bounds, so a signed envelope stays valid until
//! its sequence number is consumed: treat signed envelopes like cheques, and
//! to cancel unsubmitted ones, advance the account's sequence number (e.g.
//! with a `BumpSequence` transaction).
//!
//! All decoding is bounded: base64 input is capped at
//! [`MAX_ENVELOPE_BASE64_LEN`] characters before it is decoded, and XDR is read
//! with stellar-xdr's [`Limits`] (byte length and nesting depth).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use stellar_xdr::{
    Asset, DecoratedSignature, Hash, Limits, Memo, MuxedAccount, Operation, OperationBody,
    PaymentOp, Preconditions, ReadXdr, SequenceNumber, Signature, SignatureHint, Transaction,
    TransactionEnvelope, TransactionExt, TransactionSignaturePayload,
    TransactionSignaturePayloadTaggedTransaction, TransactionV0, TransactionV1Envelope, Uint256,
    WriteXdr,
};

/// Most payment operations put in one transaction (Stellar's
/// `MAX_OPS_PER_TX`).
pub const MAX_OPS: usize = 100;

/// Most signatures a transaction envelope can carry (the XDR bound on
/// `TransactionV1Envelope.signatures`).
pub const MAX_SIGNATURES: usize = 20;

/// Smallest per-operation fee, in stroops, that Stellar accepts (the
/// protocol's minimum base fee). [`build_envelopes`] refuses anything lower,
/// since such a transaction could never be included in a ledger.
pub const MIN_BASE_FEE: u32 = 100;

/// Stroops in one lumen (XLM).
pub const STROOPS_PER_XLM: i64 = 10_000_000;

/// Largest decoded envelope, in bytes, that [`sign_envelope`],
/// [`decode_envelope`] and [`envelope_hash`] accept. An envelope of
/// [`MAX_OPS`] payments with [`MAX_SIGNATURES`] signatures is under 8 KiB, and
/// stellar-core refuses transactions much larger than this anyway.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// Largest base64 text (including any whitespace) accepted for an envelope.
pub const MAX_ENVELOPE_BASE64_LEN: usize = MAX_ENVELOPE_BYTES / 3 * 4 + 4096;

/// Nesting depth limit used when reading XDR, so hostile input cannot recurse
/// deeply through nested XDR unions (e.g. Soroban values).
const XDR_DEPTH_LIMIT: u32 = 500;

/// What went wrong while exporting, signing or decoding a Stellar transaction.
#[derive(Debug, thiserror::Error)]
pub enum StellarError {
    /// A `G…` account strkey could not be parsed.
    #[error("invalid Stellar account ID {input:?}: {reason}")]
    InvalidAccount {
        /// The text that was given (public data, safe to show).
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// An `S…` secret seed could not be parsed. The input is deliberately not
    /// repeated, since it may be a (mistyped) secret.
    #[error("invalid Stellar secret seed: {0}")]
    InvalidSecret(String),
    /// A network name other than `public` or `testnet`.
    #[error("unknown Stellar network {0:?}: expected \"public\" or \"testnet\"")]
    UnknownNetwork(String),
    /// A payment of zero or negative stroops.
    #[error("payment {index}: amount must be positive, got {stroops} stroops")]
    NonPositiveAmount {
        /// Index of the payment in the input slice.
        index: usize,
        /// The amount that was given.
        stroops: i64,
    },
    /// A payment whose destination is the paying account itself.
    #[error("payment {index}: destination is the source account itself")]
    PaymentToSelf {
        /// Index of the payment in the input slice.
        index: usize,
    },
    /// `first_sequence` is not a usable transaction sequence number.
    #[error("first sequence number must be positive (the source account's sequence + 1), got {0}")]
    InvalidSequence(i64),
    /// The sequence number of a later envelope would exceed `i64::MAX`.
    #[error("sequence number overflows for envelope {index} (first sequence {first})")]
    SequenceOverflow {
        /// The `first_sequence` given.
        first: i64,
        /// Index of the envelope whose sequence number overflowed.
        index: usize,
    },
    /// The per-operation fee is below the protocol minimum.
    #[error("fee per operation {fee_per_op} stroops is below Stellar's minimum of {min} stroops")]
    FeeTooLow {
        /// The fee that was given.
        fee_per_op: u32,
        /// The minimum ([`MIN_BASE_FEE`]).
        min: u32,
    },
    /// `fee_per_op × ops` does not fit the transaction's 32-bit fee field.
    #[error("fee {fee_per_op} stroops × {ops} operations overflows the 32-bit transaction fee")]
    FeeOverflow {
        /// The fee per operation that was given.
        fee_per_op: u32,
        /// Operations in the transaction.
        ops: usize,
    },
    /// The base64 text is longer than [`MAX_ENVELOPE_BASE64_LEN`].
    #[error("envelope text is {len} bytes, more than the {max} accepted")]
    EnvelopeTooLarge {
        /// Length of the given text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The envelope text is not valid base64.
    #[error("envelope is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The decoded bytes are not a valid XDR `TransactionEnvelope`.
    #[error("envelope is not a valid XDR TransactionEnvelope: {0}")]
    Xdr(#[source] stellar_xdr::Error),
    /// Encoding a transaction to XDR failed (a bound of the XDR schema was
    /// exceeded).
    #[error("could not encode transaction as XDR: {0}")]
    Encode(#[source] stellar_xdr::Error),
    /// The envelope is of a kind this module does not handle.
    #[error("unsupported envelope type {0}: only plain (V0/V1) transactions are handled")]
    UnsupportedEnvelope(&'static str),
    /// The transaction's source is a muxed (`M…`) account.
    #[error("transaction source is a muxed account; only plain ed25519 (G…) accounts are handled")]
    MuxedSource,
    /// An operation is not a plain payment from the transaction source.
    #[error("operation {index}: {reason}")]
    UnsupportedOperation {
        /// Index of the operation in the transaction.
        index: usize,
        /// What about it is not supported.
        reason: String,
    },
    /// The envelope already carries [`MAX_SIGNATURES`] signatures.
    #[error("envelope already has {0} signatures, the most Stellar allows")]
    TooManySignatures(usize),
}

/// Which Stellar network a transaction is for. The network's passphrase is
/// part of every transaction hash, so a signature for one network is not
/// valid on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// The public (main) network.
    Public,
    /// The SDF test network.
    Testnet,
}

impl Network {
    /// The network passphrase, as used by stellar-core and every SDK.
    pub fn passphrase(self) -> &'static str {
        match self {
            Network::Public => "Public Global Stellar Network ; September 2015",
            Network::Testnet => "Test SDF Network ; September 2015",
        }
    }

    /// The network ID: SHA-256 of the passphrase.
    pub fn network_id(self) -> [u8; 32] {
        Sha256::digest(self.passphrase().as_bytes()).into()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::Public => "public",
            Network::Testnet => "testnet",
        })
    }
}

impl FromStr for Network {
    type Err = StellarError;

    /// Parses `public` or `testnet` (ASCII case-insensitive, surrounding
    /// whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("public") {
            Ok(Network::Public)
        } else if t.eq_ignore_ascii_case("testnet") {
            Ok(Network::Testnet)
        } else {
            Err(StellarError::UnknownNetwork(s.to_owned()))
        }
    }
}

/// One native (XLM) payment to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Payment {
    /// The receiving account's ed25519 public key.
    pub destination: [u8; 32],
    /// Amount in stroops (1 XLM = [`STROOPS_PER_XLM`] stroops). Must be
    /// positive.
    pub stroops: i64,
}

/// Everything besides the payments that [`build_envelopes`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportParams {
    /// The paying account's ed25519 public key (the broadcaster).
    pub source: [u8; 32],
    /// Sequence number of the first transaction: the source account's current
    /// sequence number plus one. Envelope `i` uses `first_sequence + i`.
    pub first_sequence: i64,
    /// Fee per operation in stroops; a transaction's fee is this times its
    /// operation count. At least [`MIN_BASE_FEE`].
    pub fee_per_op: u32,
    /// Put in every transaction as a `MEMO_HASH`, e.g. a digest of the
    /// settlement report these payments come from.
    pub memo_hash: [u8; 32],
    /// The network the transactions are meant for. Unsigned envelopes do not
    /// depend on it (the network is bound in only by the signature), so
    /// [`build_envelopes`] does not read it; it travels with the parameters so
    /// the caller passes the same value to [`sign_envelope`] and
    /// [`decode_envelope`].
    pub network: Network,
}

/// A transaction envelope read back by [`decode_envelope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedTx {
    /// The paying account's ed25519 public key.
    pub source: [u8; 32],
    /// The transaction's sequence number.
    pub sequence: i64,
    /// The total fee in stroops.
    pub fee: u32,
    /// The memo, if it is a `MEMO_HASH` (other memo kinds give `None`).
    pub memo_hash: Option<[u8; 32]>,
    /// The payments, in operation order.
    pub payments: Vec<Payment>,
    /// Signatures attached, valid or not.
    pub signatures: usize,
    /// Signatures that are valid ed25519 signatures by the source key over
    /// this transaction's hash on the given network (and carry its hint).
    pub valid_signatures: usize,
    /// The transaction hash on the given network (what explorers show as the
    /// transaction ID).
    pub hash: [u8; 32],
}

/// Renders 32 ed25519 public-key bytes as a Stellar account ID (`G…`
/// strkey).
pub fn account_id(public: &[u8; 32]) -> String {
    format!("{}", stellar_strkey::ed25519::PublicKey(*public))
}

/// Parses a Stellar account ID (`G…` strkey, surrounding whitespace ignored)
/// into its 32 ed25519 public-key bytes. Muxed (`M…`) accounts are refused.
pub fn parse_account(s: &str) -> Result<[u8; 32], StellarError> {
    let t = s.trim();
    let invalid = |reason: String| StellarError::InvalidAccount {
        input: t.chars().take(80).collect(),
        reason,
    };
    if t.starts_with('M') {
        return Err(invalid(
            "muxed (M…) accounts are not supported; give the underlying G… account".into(),
        ));
    }
    if t.starts_with('S') {
        // Do not echo what may be a secret seed.
        return Err(StellarError::InvalidAccount {
            input: "S…".into(),
            reason: "this looks like a secret seed, not an account ID (G…)".into(),
        });
    }
    if !t.starts_with('G') {
        return Err(invalid("an account ID starts with 'G'".into()));
    }
    stellar_strkey::ed25519::PublicKey::from_string(t)
        .map(|k| k.0)
        .map_err(|e| invalid(e.to_string()))
}

/// Parses a Stellar secret seed (`S…` strkey) into a signing key. Surrounding
/// whitespace is ignored so the seed can be read straight from a file. Error
/// messages never include the input.
pub fn parse_secret(s: &str) -> Result<SigningKey, StellarError> {
    let t = s.trim();
    if !t.starts_with('S') {
        return Err(StellarError::InvalidSecret(
            "a secret seed starts with 'S'".into(),
        ));
    }
    let key = stellar_strkey::ed25519::PrivateKey::from_string(t)
        .map_err(|e| StellarError::InvalidSecret(e.to_string()))?;
    Ok(SigningKey::from_bytes(&key.0))
}

/// Builds one unsigned V1 transaction envelope (base64 XDR) per chunk of at
/// most [`MAX_OPS`] payments, in input order.
///
/// Each transaction has source `p.source`, fee `p.fee_per_op × ops`, sequence
/// number `p.first_sequence + i` for the `i`-th envelope, memo
/// `MEMO_HASH(p.memo_hash)`, no time bounds, and one native `Payment`
/// operation per payment (no operation-level source). Refuses non-positive
/// amounts, payments to the source itself, a `first_sequence` below 1, and a
/// fee below [`MIN_BASE_FEE`] or overflowing 32 bits. No payments give no
/// envelopes.
pub fn build_envelopes(
    p: &ExportParams,
    payments: &[Payment],
) -> Result<Vec<String>, StellarError> {
    if payments.is_empty() {
        return Ok(Vec::new());
    }
    if p.first_sequence <= 0 {
        return Err(StellarError::InvalidSequence(p.first_sequence));
    }
    if p.fee_per_op < MIN_BASE_FEE {
        return Err(StellarError::FeeTooLow {
            fee_per_op: p.fee_per_op,
            min: MIN_BASE_FEE,
        });
    }
    for (index, pay) in payments.iter().enumerate() {
        if pay.stroops <= 0 {
            return Err(StellarError::NonPositiveAmount {
                index,
                stroops: pay.stroops,
            });
        }
        if pay.destination == p.source {
            return Err(StellarError::PaymentToSelf { index });
        }
    }

    let mut out = Vec::with_capacity(payments.len().div_ceil(MAX_OPS));
    for (index, chunk) in payments.chunks(MAX_OPS).enumerate() {
        let seq = i64::try_from(index)
            .ok()
            .and_then(|i| p.first_sequence.checked_add(i))
            .ok_or(StellarError::SequenceOverflow {
                first: p.first_sequence,
                index,
            })?;
        let fee = u32::try_from(chunk.len())
            .ok()
            .and_then(|n| p.fee_per_op.checked_mul(n))
            .ok_or(StellarError::FeeOverflow {
                fee_per_op: p.fee_per_op,
                ops: chunk.len(),
            })?;
        let operations: Vec<Operation> = chunk
            .iter()
            .map(|pay| Operation {
                source_account: None,
                body: OperationBody::Payment(PaymentOp {
                    destination: MuxedAccount::Ed25519(Uint256(pay.destination)),
                    asset: Asset::Native,
                    amount: pay.stroops,
                }),
            })
            .collect();
        let tx = Transaction {
            source_account: MuxedAccount::Ed25519(Uint256(p.source)),
            fee,
            seq_num: SequenceNumber(seq),
            cond: Preconditions::None,
            memo: Memo::Hash(Hash(p.memo_hash)),
            operations: operations.try_into().map_err(StellarError::Encode)?,
            ext: TransactionExt::V0,
        };
        let env = TransactionEnvelope::Tx(TransactionV1Envelope {
            tx,
            signatures: Vec::new().try_into().map_err(StellarError::Encode)?,
        });
        out.push(encode_envelope(&env)?);
    }
    Ok(out)
}

/// Signs a transaction envelope (base64 XDR) for `network` with `key` and
/// returns it re-encoded with the signature appended. The signature is
/// ed25519 over the transaction hash (see the module doc), with the last four
/// bytes of the key's public key as hint. Works on V1 and legacy V0
/// envelopes; refuses fee-bump envelopes and envelopes that already carry
/// [`MAX_SIGNATURES`] signatures.
///
/// Any key may sign (for example an extra signer of a multisig source
/// account); [`decode_envelope`] counts only signatures by the source key.
pub fn sign_envelope(
    b64: &str,
    key: &SigningKey,
    network: Network,
) -> Result<String, StellarError> {
    let mut env = decode_xdr(b64)?;
    let hash = transaction_hash(&plain_transaction(&env)?, network)?;
    let public = key.verifying_key().to_bytes();
    let mut hint = [0u8; 4];
    hint.copy_from_slice(&public[28..]);
    let sig = DecoratedSignature {
        hint: SignatureHint(hint),
        signature: Signature(
            key.sign(&hash)
                .to_bytes()
                .try_into()
                .map_err(StellarError::Encode)?,
        ),
    };
    let sigs = match &mut env {
        TransactionEnvelope::Tx(e) => &mut e.signatures,
        TransactionEnvelope::TxV0(e) => &mut e.signatures,
        TransactionEnvelope::TxFeeBump(_) => {
            return Err(StellarError::UnsupportedEnvelope("fee-bump"))
        }
    };
    if sigs.len() >= MAX_SIGNATURES {
        return Err(StellarError::TooManySignatures(sigs.len()));
    }
    let mut v = sigs.to_vec();
    v.push(sig);
    *sigs = v.try_into().map_err(StellarError::Encode)?;
    encode_envelope(&env)
}

/// Computes the hash (transaction ID) of a V1 or V0 envelope (base64 XDR) on
/// `network`.
pub fn envelope_hash(b64: &str, network: Network) -> Result<[u8; 32], StellarError> {
    let env = decode_xdr(b64)?;
    transaction_hash(&plain_transaction(&env)?, network)
}

/// Decodes a transaction envelope (base64 XDR, V1 or legacy V0) made of
/// native payments from a plain ed25519 account, and checks its signatures
/// against the source key on `network`.
///
/// Errors name the offending operation if any operation is not a native
/// payment, has its own source account, or pays a muxed account.
pub fn decode_envelope(b64: &str, network: Network) -> Result<DecodedTx, StellarError> {
    let env = decode_xdr(b64)?;
    let tx = plain_transaction(&env)?;
    let source = match &tx.source_account {
        MuxedAccount::Ed25519(k) => k.0,
        MuxedAccount::MuxedEd25519(_) => return Err(StellarError::MuxedSource),
    };
    let mut payments = Vec::with_capacity(tx.operations.len());
    for (index, op) in tx.operations.iter().enumerate() {
        let unsupported = |reason: String| StellarError::UnsupportedOperation { index, reason };
        if op.source_account.is_some() {
            return Err(unsupported(
                "has its own source account; only payments from the transaction source are handled"
                    .into(),
            ));
        }
        let pay = match &op.body {
            OperationBody::Payment(pay) => pay,
            other => {
                return Err(unsupported(format!(
                    "is a {} operation, not a Payment",
                    other.name()
                )))
            }
        };
        if pay.asset != Asset::Native {
            return Err(unsupported("pays a non-native asset, not XLM".into()));
        }
        let destination = match &pay.destination {
            MuxedAccount::Ed25519(k) => k.0,
            MuxedAccount::MuxedEd25519(_) => {
                return Err(unsupported("pays a muxed (M…) account".into()))
            }
        };
        payments.push(Payment {
            destination,
            stroops: pay.amount,
        });
    }
    let hash = transaction_hash(&tx, network)?;
    let sigs: &[DecoratedSignature] = match &env {
        TransactionEnvelope::Tx(e) => &e.signatures,
        TransactionEnvelope::TxV0(e) => &e.signatures,
        TransactionEnvelope::TxFeeBump(_) => &[],
    };
    let valid_signatures = match VerifyingKey::from_bytes(&source) {
        Ok(vk) => sigs
            .iter()
            .filter(|s| s.hint.0 == source[28..])
            .filter(|s| {
                ed25519_dalek::Signature::from_slice(&s.signature.0)
                    .is_ok_and(|sig| vk.verify_strict(&hash, &sig).is_ok())
            })
            .count(),
        // Not a valid curve point: nothing can be signed by it.
        Err(_) => 0,
    };
    Ok(DecodedTx {
        source,
        sequence: tx.seq_num.0,
        fee: tx.fee,
        memo_hash: match &tx.memo {
            Memo::Hash(h) => Some(h.0),
            _ => None,
        },
        payments,
        signatures: sigs.len(),
        valid_signatures,
        hash,
    })
}

/// Decodes base64 text into a `TransactionEnvelope`, within the size and
/// depth limits. ASCII whitespace anywhere in the text is ignored, so
/// line-wrapped base64 is accepted.
fn decode_xdr(b64: &str) -> Result<TransactionEnvelope, StellarError> {
    if b64.len() > MAX_ENVELOPE_BASE64_LEN {
        return Err(StellarError::EnvelopeTooLarge {
            len: b64.len(),
            max: MAX_ENVELOPE_BASE64_LEN,
        });
    }
    let compact: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact)?;
    let limits = Limits {
        depth: XDR_DEPTH_LIMIT,
        len: MAX_ENVELOPE_BYTES,
    };
    TransactionEnvelope::from_xdr(bytes, limits).map_err(StellarError::Xdr)
}

/// Encodes an envelope as base64 XDR.
fn encode_envelope(env: &TransactionEnvelope) -> Result<String, StellarError> {
    let bytes = env
        .to_xdr(Limits {
            depth: XDR_DEPTH_LIMIT,
            len: MAX_ENVELOPE_BYTES,
        })
        .map_err(StellarError::Encode)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The transaction inside a V1 or V0 envelope, as a V1 `Transaction`.
///
/// A V0 transaction is hashed and signed as the equivalent V1 transaction
/// (stellar-core does the same): its XDR encoding is byte-identical, since a
/// V0 source key encodes like `MuxedAccount::Ed25519` and optional time bounds
/// like `Preconditions::{None, Time}`.
fn plain_transaction(env: &TransactionEnvelope) -> Result<Transaction, StellarError> {
    match env {
        TransactionEnvelope::Tx(e) => Ok(e.tx.clone()),
        TransactionEnvelope::TxV0(e) => Ok(v0_to_v1(&e.tx)),
        TransactionEnvelope::TxFeeBump(_) => Err(StellarError::UnsupportedEnvelope("fee-bump")),
    }
}

fn v0_to_v1(tx: &TransactionV0) -> Transaction {
    Transaction {
        source_account: MuxedAccount::Ed25519(tx.source_account_ed25519.clone()),
        fee: tx.fee,
        seq_num: tx.seq_num.clone(),
        cond: match &tx.time_bounds {
            None => Preconditions::None,
            Some(tb) => Preconditions::Time(tb.clone()),
        },
        memo: tx.memo.clone(),
        operations: tx.operations.clone(),
        ext: TransactionExt::V0,
    }
}

/// The Stellar transaction hash: SHA-256 of the XDR of
/// `TransactionSignaturePayload { network_id, Tx(tx) }`.
fn transaction_hash(tx: &Transaction, network: Network) -> Result<[u8; 32], StellarError> {
    let payload = TransactionSignaturePayload {
        network_id: Hash(network.network_id()),
        tagged_transaction: TransactionSignaturePayloadTaggedTransaction::Tx(tx.clone()),
    };
    let bytes = payload
        .to_xdr(Limits {
            depth: XDR_DEPTH_LIMIT,
            len: MAX_ENVELOPE_BYTES,
        })
        .map_err(StellarError::Encode)?;
    Ok(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn params(source: [u8; 32]) -> ExportParams {
        ExportParams {
            source,
            first_sequence: 4_000_000_000_001,
            fee_per_op: 100,
            memo_hash: [0xab; 32],
            network: Network::Testnet,
        }
    }

    fn dest(i: usize) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        d[31] = 0x77;
        d
    }

    #[test]
    fn account_id_round_trip_and_known_value() {
        // The all-zero key is the well-known "null" account.
        assert_eq!(
            account_id(&[0; 32]),
            "GAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAWHF"
        );
        let pk = key(9).verifying_key().to_bytes();
        let g = account_id(&pk);
        assert!(g.starts_with('G') && g.len() == 56);
        assert_eq!(parse_account(&format!("  {g}\n")).unwrap(), pk);
    }

    #[test]
    fn parse_account_refuses_bad_input() {
        let g = account_id(&[7; 32]);
        // Flip one character: the checksum must catch it.
        let mut bad: Vec<char> = g.chars().collect();
        bad[10] = if bad[10] == 'A' { 'B' } else { 'A' };
        let bad: String = bad.into_iter().collect();
        assert!(matches!(
            parse_account(&bad),
            Err(StellarError::InvalidAccount { .. })
        ));
        assert!(parse_account("").is_err());
        assert!(parse_account("hello").is_err());
        assert!(parse_account(&g[..55]).is_err());
        // A secret seed is refused and not echoed back.
        let secret = "SCH27VUZZ6UAKB67BDNF6FA42YMBMQCBKXWGMFD5TZ6S5ZZCZFLRXKHS";
        let err = parse_account(secret).unwrap_err().to_string();
        assert!(!err.contains("SCH27"), "{err}");
    }

    /// Seed and address from the Java Stellar SDK's TransactionTest.
    const SDK_SEED: &str = "SCH27VUZZ6UAKB67BDNF6FA42YMBMQCBKXWGMFD5TZ6S5ZZCZFLRXKHS";
    const SDK_ADDRESS: &str = "GBPMKIRA2OQW2XZZQUCQILI5TMVZ6JNRKM423BSAISDM7ZFWQ6KWEBC4";
    /// The signed (V0) envelope that SDK test expects for a CreateAccount of
    /// 2000 XLM to GDW6…B5NR at sequence 2908908335136769 on testnet.
    const SDK_SIGNED_ENVELOPE: &str = "AAAAAF7FIiDToW1fOYUFBC0dmyufJbFTOa2GQESGz+S2h5ViAAAAZAAKVaMAAAABAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAA7eBSYbzcL5UKo7oXO24y1ckX+XuCtkDsyNHOp1n1bxAAAAAEqBfIAAAAAAAAAAABtoeVYgAAAEDLki9Oi700N60Lo8gUmEFHbKvYG4QSqXiLIt9T0ru2O5BphVl/jR9tYtHAD+UeDYhgXNgwUxqTEu1WukvEyYcD";

    #[test]
    fn parse_secret_matches_sdk_vector() {
        let k = parse_secret(&format!("{SDK_SEED}\n")).unwrap();
        assert_eq!(account_id(&k.verifying_key().to_bytes()), SDK_ADDRESS);
        assert!(parse_secret(SDK_ADDRESS).is_err());
        let mut bad = SDK_SEED.to_owned();
        bad.replace_range(5..6, "A");
        let err = parse_secret(&bad).unwrap_err().to_string();
        assert!(!err.contains(&bad[..10]), "{err}");
    }

    #[test]
    fn network_parsing_and_ids() {
        assert_eq!("public".parse::<Network>().unwrap(), Network::Public);
        assert_eq!(" Testnet ".parse::<Network>().unwrap(), Network::Testnet);
        assert!("mainnet".parse::<Network>().is_err());
        // SHA-256("Test SDF Network ; September 2015"), as published.
        assert_eq!(
            hex::encode(Network::Testnet.network_id()),
            "cee0302d59844d32bdca915c8203dd44b33fbb7edc19051ea37abedf28ecd472"
        );
        assert_eq!(Network::Public.to_string(), "public");
    }

    /// Re-signing the SDK's transaction with the SDK's seed must reproduce
    /// the SDK's envelope byte for byte (ed25519 is deterministic): this pins
    /// the network ID, the hash payload, the hint and the signature.
    #[test]
    fn signature_matches_java_sdk_vector() {
        let mut env = decode_xdr(SDK_SIGNED_ENVELOPE).unwrap();
        match &mut env {
            TransactionEnvelope::TxV0(e) => e.signatures = Vec::new().try_into().unwrap(),
            _ => panic!("vector is a V0 envelope"),
        }
        let unsigned = encode_envelope(&env).unwrap();
        let k = parse_secret(SDK_SEED).unwrap();
        assert_eq!(
            sign_envelope(&unsigned, &k, Network::Testnet).unwrap(),
            SDK_SIGNED_ENVELOPE
        );
        // The wrong network gives a different signature.
        assert_ne!(
            sign_envelope(&unsigned, &k, Network::Public).unwrap(),
            SDK_SIGNED_ENVELOPE
        );
        // Not a payment: decoding names the operation.
        let err = decode_envelope(SDK_SIGNED_ENVELOPE, Network::Testnet).unwrap_err();
        assert!(
            matches!(&err, StellarError::UnsupportedOperation { index: 0, reason } if reason.contains("CreateAccount")),
            "{err}"
        );
    }

    /// Hash vector from js-stellar-base's TransactionEnvelope test (public
    /// network, V0 envelope with a non-UTF-8 text memo).
    #[test]
    fn hash_matches_js_sdk_vector() {
        let xdr = "AAAAAAtjwtJadppTmm0NtAU99BFxXXfzPO1N/SqR43Z8aXqXAAAAZAAIj6YAAAACAAAAAAAAAAEAAAAB0QAAAAAAAAEAAAAAAAAAAQAAAADLa6390PDAqg3qDLpshQxS+uVw3ytSgKRirQcInPWt1QAAAAAAAAAAA1Z+AAAAAAAAAAABfGl6lwAAAEBC655+8Izq54MIZrXTVF/E1ycHgQWpVcBD+LFkuOjjJd995u/7wM8sFqQqambL0/ME2FTOtxMO65B9i3eAIu4P";
        assert_eq!(
            hex::encode(envelope_hash(xdr, Network::Public).unwrap()),
            "a84d534b3742ad89413bdbf259e02fa4c5d039123769e9bcc63616f723a2bcd5"
        );
        // It is a native payment, signed by its source on the public network.
        let d = decode_envelope(xdr, Network::Public).unwrap();
        assert_eq!(d.payments.len(), 1);
        assert_eq!(d.payments[0].stroops, 56_000_000);
        assert_eq!(d.memo_hash, None);
        assert_eq!((d.signatures, d.valid_signatures), (1, 1));
        assert_eq!(
            decode_envelope(xdr, Network::Testnet)
                .unwrap()
                .valid_signatures,
            0
        );
    }

    /// Independent hash computation: build the signature payload bytes by
    /// hand from the XDR schema and compare.
    #[test]
    fn hash_matches_hand_built_payload() {
        let src = key(1).verifying_key().to_bytes();
        let env = build_envelopes(
            &params(src),
            &[Payment {
                destination: dest(0),
                stroops: 12_345,
            }],
        )
        .unwrap()
        .remove(0);
        let mut b = Vec::new();
        b.extend_from_slice(&Network::Testnet.network_id());
        b.extend_from_slice(&2u32.to_be_bytes()); // ENVELOPE_TYPE_TX
        b.extend_from_slice(&0u32.to_be_bytes()); // KEY_TYPE_ED25519
        b.extend_from_slice(&src);
        b.extend_from_slice(&100u32.to_be_bytes()); // fee
        b.extend_from_slice(&4_000_000_000_001i64.to_be_bytes()); // seq
        b.extend_from_slice(&0u32.to_be_bytes()); // PRECOND_NONE
        b.extend_from_slice(&3u32.to_be_bytes()); // MEMO_HASH
        b.extend_from_slice(&[0xab; 32]);
        b.extend_from_slice(&1u32.to_be_bytes()); // 1 operation
        b.extend_from_slice(&0u32.to_be_bytes()); // no op source
        b.extend_from_slice(&1u32.to_be_bytes()); // PAYMENT
        b.extend_from_slice(&0u32.to_be_bytes()); // KEY_TYPE_ED25519
        b.extend_from_slice(&dest(0));
        b.extend_from_slice(&0u32.to_be_bytes()); // ASSET_TYPE_NATIVE
        b.extend_from_slice(&12_345i64.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes()); // ext v0
        let expected: [u8; 32] = Sha256::digest(&b).into();
        assert_eq!(envelope_hash(&env, Network::Testnet).unwrap(), expected);
        assert_eq!(
            decode_envelope(&env, Network::Testnet).unwrap().hash,
            expected
        );
        // The envelope itself is ENVELOPE_TYPE_TX followed by the same
        // transaction bytes and an empty signature list.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&env)
            .unwrap();
        assert_eq!(&raw[..4], &2u32.to_be_bytes());
        assert_eq!(&raw[4..raw.len() - 4], &b[36..]);
        assert_eq!(&raw[raw.len() - 4..], &0u32.to_be_bytes());
    }

    #[test]
    fn chunks_of_250_payments() {
        let src = key(1).verifying_key().to_bytes();
        let p = params(src);
        let pays: Vec<Payment> = (0..250)
            .map(|i| Payment {
                destination: dest(i),
                stroops: (i as i64 + 1) * STROOPS_PER_XLM,
            })
            .collect();
        let envs = build_envelopes(&p, &pays).unwrap();
        assert_eq!(envs.len(), 3);
        let mut all = Vec::new();
        for (i, e) in envs.iter().enumerate() {
            let d = decode_envelope(e, Network::Testnet).unwrap();
            let n = [100, 100, 50][i];
            assert_eq!(d.payments.len(), n);
            assert_eq!(d.fee, 100 * n as u32);
            assert_eq!(d.sequence, p.first_sequence + i as i64);
            assert_eq!(d.source, src);
            assert_eq!(d.memo_hash, Some([0xab; 32]));
            assert_eq!((d.signatures, d.valid_signatures), (0, 0));
            all.extend(d.payments);
        }
        assert_eq!(all, pays);
    }

    #[test]
    fn sign_then_decode() {
        let k = key(1);
        let src = k.verifying_key().to_bytes();
        let pays = [Payment {
            destination: dest(3),
            stroops: 5,
        }];
        let env = build_envelopes(&params(src), &pays).unwrap().remove(0);
        let signed = sign_envelope(&env, &k, Network::Testnet).unwrap();
        let d = decode_envelope(&signed, Network::Testnet).unwrap();
        assert_eq!((d.signatures, d.valid_signatures), (1, 1));
        assert_eq!(d.payments, pays);
        // Signing does not change the hash.
        assert_eq!(d.hash, envelope_hash(&env, Network::Testnet).unwrap());
        // Valid only on the network it was signed for.
        let other_net = decode_envelope(&signed, Network::Public).unwrap();
        assert_eq!((other_net.signatures, other_net.valid_signatures), (1, 0));

        // Signed by a different key: present but not valid for the source.
        let by_other = sign_envelope(&env, &key(2), Network::Testnet).unwrap();
        let d = decode_envelope(&by_other, Network::Testnet).unwrap();
        assert_eq!((d.signatures, d.valid_signatures), (1, 0));

        // A forged signature carrying the right hint is not counted either.
        let mut forged = decode_xdr(&signed).unwrap();
        if let TransactionEnvelope::Tx(e) = &mut forged {
            let mut sigs = e.signatures.to_vec();
            let mut bytes = sigs[0].signature.0.to_vec();
            bytes[5] ^= 1;
            sigs[0].signature = Signature(bytes.try_into().unwrap());
            e.signatures = sigs.try_into().unwrap();
        }
        let d = decode_envelope(&encode_envelope(&forged).unwrap(), Network::Testnet).unwrap();
        assert_eq!((d.signatures, d.valid_signatures), (1, 0));

        // Both signatures count once each key signed.
        let twice = sign_envelope(&by_other, &k, Network::Testnet).unwrap();
        let d = decode_envelope(&twice, Network::Testnet).unwrap();
        assert_eq!((d.signatures, d.valid_signatures), (2, 1));
    }

    #[test]
    fn signature_limit() {
        let k = key(1);
        let src = k.verifying_key().to_bytes();
        let mut env = build_envelopes(
            &params(src),
            &[Payment {
                destination: dest(0),
                stroops: 1,
            }],
        )
        .unwrap()
        .remove(0);
        for _ in 0..MAX_SIGNATURES {
            env = sign_envelope(&env, &k, Network::Testnet).unwrap();
        }
        assert!(matches!(
            sign_envelope(&env, &k, Network::Testnet),
            Err(StellarError::TooManySignatures(20))
        ));
        let d = decode_envelope(&env, Network::Testnet).unwrap();
        assert_eq!((d.signatures, d.valid_signatures), (20, 20));
    }

    #[test]
    fn build_refuses_bad_input() {
        let src = key(1).verifying_key().to_bytes();
        let p = params(src);
        let ok = Payment {
            destination: dest(0),
            stroops: 1,
        };
        assert!(build_envelopes(&p, &[]).unwrap().is_empty());
        assert!(matches!(
            build_envelopes(&p, &[ok, Payment { stroops: 0, ..ok }]),
            Err(StellarError::NonPositiveAmount {
                index: 1,
                stroops: 0
            })
        ));
        assert!(matches!(
            build_envelopes(&p, &[Payment { stroops: -5, ..ok }]),
            Err(StellarError::NonPositiveAmount { index: 0, .. })
        ));
        assert!(matches!(
            build_envelopes(
                &p,
                &[
                    ok,
                    ok,
                    Payment {
                        destination: src,
                        stroops: 1
                    }
                ]
            ),
            Err(StellarError::PaymentToSelf { index: 2 })
        ));
        let high_fee = ExportParams {
            fee_per_op: u32::MAX / 50,
            ..p.clone()
        };
        assert!(matches!(
            build_envelopes(&high_fee, &[ok; 51]),
            Err(StellarError::FeeOverflow { ops: 51, .. })
        ));
        assert_eq!(build_envelopes(&high_fee, &[ok; 50]).unwrap().len(), 1);
        let low_fee = ExportParams {
            fee_per_op: 99,
            ..p.clone()
        };
        assert!(matches!(
            build_envelopes(&low_fee, &[ok]),
            Err(StellarError::FeeTooLow { .. })
        ));
        let zero_seq = ExportParams {
            first_sequence: 0,
            ..p.clone()
        };
        assert!(matches!(
            build_envelopes(&zero_seq, &[ok]),
            Err(StellarError::InvalidSequence(0))
        ));
        let max_seq = ExportParams {
            first_sequence: i64::MAX,
            ..p.clone()
        };
        assert_eq!(build_envelopes(&max_seq, &[ok; 100]).unwrap().len(), 1);
        assert!(matches!(
            build_envelopes(&max_seq, &[ok; 101]),
            Err(StellarError::SequenceOverflow { index: 1, .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let src = key(1).verifying_key().to_bytes();
        let env = build_envelopes(
            &params(src),
            &[Payment {
                destination: dest(0),
                stroops: 1,
            }],
        )
        .unwrap()
        .remove(0);
        let k = key(1);
        assert!(matches!(
            decode_envelope("not base64 at all!", Network::Testnet),
            Err(StellarError::Base64(_))
        ));
        assert!(matches!(
            decode_envelope("", Network::Testnet),
            Err(StellarError::Xdr(_))
        ));
        // Every truncation of the raw XDR is refused.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&env)
            .unwrap();
        for cut in 0..raw.len() {
            let b = base64::engine::general_purpose::STANDARD.encode(&raw[..cut]);
            assert!(
                matches!(
                    decode_envelope(&b, Network::Testnet),
                    Err(StellarError::Xdr(_))
                ),
                "cut at {cut}"
            );
            assert!(sign_envelope(&b, &k, Network::Testnet).is_err());
        }
        // Trailing bytes are refused too.
        let mut long = raw.clone();
        long.extend_from_slice(&[0; 4]);
        let b = base64::engine::general_purpose::STANDARD.encode(&long);
        assert!(decode_envelope(&b, Network::Testnet).is_err());
        // Oversized text is refused before decoding.
        let huge = "A".repeat(MAX_ENVELOPE_BASE64_LEN + 4);
        assert!(matches!(
            decode_envelope(&huge, Network::Testnet),
            Err(StellarError::EnvelopeTooLarge { .. })
        ));
        // A huge declared operation count is refused, not allocated.
        let mut lying = raw[..raw.len() - 4].to_vec();
        let ops_at = 4 + 4 + 32 + 4 + 8 + 4 + 4 + 32;
        lying[ops_at..ops_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let b = base64::engine::general_purpose::STANDARD.encode(&lying);
        assert!(matches!(
            decode_envelope(&b, Network::Testnet),
            Err(StellarError::Xdr(_))
        ));
        // Line-wrapped base64 is fine.
        let wrapped: String = env
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        assert!(decode_envelope(&wrapped, Network::Testnet).is_ok());
    }

    #[test]
    fn decode_refuses_non_payment_shapes() {
        let src = key(1).verifying_key().to_bytes();
        let env = build_envelopes(
            &params(src),
            &[
                Payment {
                    destination: dest(0),
                    stroops: 1,
                },
                Payment {
                    destination: dest(1),
                    stroops: 2,
                },
            ],
        )
        .unwrap()
        .remove(0);
        let base = decode_xdr(&env).unwrap();
        let edit = |f: &dyn Fn(&mut Transaction)| {
            let mut e = base.clone();
            if let TransactionEnvelope::Tx(v1) = &mut e {
                f(&mut v1.tx);
            }
            decode_envelope(&encode_envelope(&e).unwrap(), Network::Testnet)
        };
        let err = edit(&|tx| {
            let mut ops = tx.operations.to_vec();
            if let OperationBody::Payment(p) = &mut ops[1].body {
                p.asset = Asset::CreditAlphanum4(stellar_xdr::AlphaNum4 {
                    asset_code: stellar_xdr::AssetCode4(*b"USDC"),
                    issuer: stellar_xdr::AccountId(stellar_xdr::PublicKey::PublicKeyTypeEd25519(
                        Uint256([3; 32]),
                    )),
                });
            }
            tx.operations = ops.try_into().unwrap();
        })
        .unwrap_err();
        assert!(matches!(
            err,
            StellarError::UnsupportedOperation { index: 1, .. }
        ));
        let err = edit(&|tx| {
            let mut ops = tx.operations.to_vec();
            ops[1].source_account = Some(MuxedAccount::Ed25519(Uint256([3; 32])));
            tx.operations = ops.try_into().unwrap();
        })
        .unwrap_err();
        assert!(matches!(
            err,
            StellarError::UnsupportedOperation { index: 1, .. }
        ));
        let err = edit(&|tx| {
            let mut ops = tx.operations.to_vec();
            if let OperationBody::Payment(p) = &mut ops[0].body {
                p.destination = MuxedAccount::MuxedEd25519(stellar_xdr::MuxedAccountMed25519 {
                    id: 7,
                    ed25519: Uint256([3; 32]),
                });
            }
            tx.operations = ops.try_into().unwrap();
        })
        .unwrap_err();
        assert!(matches!(
            err,
            StellarError::UnsupportedOperation { index: 0, .. }
        ));
        let err = edit(&|tx| {
            tx.source_account = MuxedAccount::MuxedEd25519(stellar_xdr::MuxedAccountMed25519 {
                id: 7,
                ed25519: Uint256(src),
            });
        })
        .unwrap_err();
        assert!(matches!(err, StellarError::MuxedSource));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn build_decode_round_trip(
            amounts in proptest::collection::vec((any::<u8>(), 1i64..=i64::MAX), 0..230),
            first in 1i64..=i64::MAX - 3,
            fee in MIN_BASE_FEE..=1_000_000u32,
            memo in any::<[u8; 32]>(),
        ) {
            let src = [0x42; 32];
            let pays: Vec<Payment> = amounts
                .iter()
                .map(|&(d, stroops)| Payment { destination: [d ^ 0x01; 32], stroops })
                .filter(|p| p.destination != src)
                .collect();
            let p = ExportParams {
                source: src,
                first_sequence: first,
                fee_per_op: fee,
                memo_hash: memo,
                network: Network::Public,
            };
            let envs = build_envelopes(&p, &pays).unwrap();
            prop_assert_eq!(envs.len(), pays.len().div_ceil(MAX_OPS));
            let mut back = Vec::new();
            for (i, e) in envs.iter().enumerate() {
                let d = decode_envelope(e, Network::Public).unwrap();
                prop_assert_eq!(d.sequence, first + i as i64);
                prop_assert_eq!(d.fee, fee * d.payments.len() as u32);
                prop_assert_eq!(d.memo_hash, Some(memo));
                back.extend(d.payments);
            }
            prop_assert_eq!(back, pays);
        }

        #[test]
        fn decode_never_panics(s in ".{0,400}") {
            let _ = decode_envelope(&s, Network::Testnet);
            let _ = sign_envelope(&s, &key(1), Network::Testnet);
            let _ = parse_account(&s);
            let _ = parse_secret(&s);
        }

        #[test]
        fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let b = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let _ = decode_envelope(&b, Network::Testnet);
        }
    }
}
