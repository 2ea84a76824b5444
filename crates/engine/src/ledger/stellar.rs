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
mod tests;
