//! Why a swarm closes a connection: [`DisconnectReason`], one closed enum for the VoD and the
//! live swarm, so the engine can log it, count it by kind ([`DisconnectReason::label`]) and
//! ban by it ([`DisconnectReason::ban`]) without parsing strings.
//!
//! This module owns the vocabulary only; it decides nothing. Which event leads to which reason
//! is the swarms' and the extensions' business; what a ban means (by address, by IP, for how
//! long) is the connection manager's.

use std::fmt;

/// Why a swarm asks the engine to close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer sent nothing for the swarm's idle timeout.
    Idle,
    /// Both sides have every piece: neither can give the other anything.
    BothSeeds,
    /// The peer broke the wire protocol (see the kind).
    Protocol(ProtocolViolation),
    /// The peer lacks an extension this swarm cannot work without.
    Unsupported(Missing),
    /// Data from the peer failed its check: a VoD piece's SHA-1 or a live payload's hash.
    BadPiece {
        /// The piece.
        index: u32,
    },
    /// A live piece header the peer announced was refused (see the fault).
    BadHeader {
        /// The piece the header names.
        index: u32,
        /// What is wrong with it.
        fault: HeaderFault,
    },
    /// The info dictionary fetched from the peer (BEP 9) does not hash to the content ID.
    MetadataMismatch,
    /// A BEP 9 data message of another size than the peer announced (or we fetch).
    MetadataWrongSize,
    /// The info dictionary matches the content ID but is not a valid live descriptor.
    BadLiveInfo,
}

/// Ways a peer breaks the wire protocol. None bans (a buggy client is not an attacker) but a
/// forged catalogue record or receipt: an honest peer verifies every record and receipt before
/// it passes one on, and signs its identity proof itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolViolation {
    /// A BEP 10 extension handshake that is not a bencoded dictionary.
    BadExtHandshake,
    /// A `ut_metadata` message that does not decode.
    BadMetadataMsg,
    /// A `pc_live` message that does not decode.
    BadLiveMsg,
    /// HAVE ALL / HAVE NONE from a peer that did not announce BEP 6.
    FastWithoutFast,
    /// HAVE for a piece past the end of the torrent.
    HaveOutOfRange,
    /// A bitfield of the wrong length or with spare bits set.
    BadBitfield,
    /// A REQUEST outside a piece, empty, or longer than allowed.
    BadRequest,
    /// A live block sent before the block hashes of its piece (`pc_live` `Hashes`).
    BlockBeforeHashes,
    /// A `pc_search` message that does not decode.
    BadSearchMsg,
    /// A catalogue record (`pc_search`) whose signature or fields do not verify.
    ForgedRecord,
    /// A `pc_receipt` message that does not decode, or one out of order.
    BadReceiptMsg,
    /// A receipt (`pc_receipt`) whose signature or fields do not verify, or an identity proof
    /// that does not verify with the key the peer claimed.
    ForgedReceipt,
}

/// Extensions a swarm requires of its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The BEP 10 extension protocol (reserved bit) itself.
    ExtensionProtocol,
    /// `pc_live` in the peer's extension handshake.
    PcLive,
}

/// Why a live piece header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    /// The signature does not verify with the stream's key and content ID.
    Forged,
    /// Validly signed, but differs from the header we hold for the same index.
    Conflicting,
    /// The length is zero or above the stream's maximum.
    BadLength,
    /// Block hashes (`pc_live` `Hashes`) that do not add up to the header's signed root.
    BadBlockHashes,
}

impl DisconnectReason {
    /// True when the peer must not be accepted again: it sent data that fails its hash or a
    /// header that breaks the stream's rules. Protocol slips and idleness only close.
    pub fn ban(&self) -> bool {
        match self {
            DisconnectReason::BadPiece { .. }
            | DisconnectReason::BadHeader { .. }
            | DisconnectReason::MetadataMismatch
            | DisconnectReason::BadLiveInfo
            | DisconnectReason::Protocol(ProtocolViolation::ForgedRecord)
            | DisconnectReason::Protocol(ProtocolViolation::ForgedReceipt) => true,
            DisconnectReason::Idle
            | DisconnectReason::BothSeeds
            | DisconnectReason::Protocol(_)
            | DisconnectReason::Unsupported(_)
            | DisconnectReason::MetadataWrongSize => false,
        }
    }

    /// A short, stable name of the kind (no piece index), for counters and metrics labels:
    /// `idle`, `both_seeds`, `protocol`, `unsupported`, `bad_piece`, `bad_header`,
    /// `metadata_mismatch`, `metadata_wrong_size`, `bad_live_info`.
    pub fn label(&self) -> &'static str {
        match self {
            DisconnectReason::Idle => "idle",
            DisconnectReason::BothSeeds => "both_seeds",
            DisconnectReason::Protocol(_) => "protocol",
            DisconnectReason::Unsupported(_) => "unsupported",
            DisconnectReason::BadPiece { .. } => "bad_piece",
            DisconnectReason::BadHeader { .. } => "bad_header",
            DisconnectReason::MetadataMismatch => "metadata_mismatch",
            DisconnectReason::MetadataWrongSize => "metadata_wrong_size",
            DisconnectReason::BadLiveInfo => "bad_live_info",
        }
    }

    /// Every label [`Self::label`] can return (for metrics that list zero counts too).
    pub const LABELS: [&'static str; 9] = [
        "idle",
        "both_seeds",
        "protocol",
        "unsupported",
        "bad_piece",
        "bad_header",
        "metadata_mismatch",
        "metadata_wrong_size",
        "bad_live_info",
    ];
}

/// Disconnects counted by kind ([`DisconnectReason::label`]): a fixed array, not a map, so a
/// peer cannot grow it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DisconnectCounts([u64; DisconnectReason::LABELS.len()]);

impl DisconnectCounts {
    /// Counts one disconnect.
    pub fn add(&mut self, reason: &DisconnectReason) {
        if let Some(i) = DisconnectReason::LABELS
            .iter()
            .position(|l| *l == reason.label())
        {
            self.0[i] += 1;
        }
    }

    /// Every kind with its count (zeros included), in [`DisconnectReason::LABELS`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DisconnectReason::LABELS.iter().copied().zip(self.0)
    }

    /// The count of one kind (0 for a label that is not one).
    pub fn get(&self, label: &str) -> u64 {
        self.iter().find(|(l, _)| *l == label).map_or(0, |(_, n)| n)
    }

    /// Adds another set of counts to this one (e.g. every torrent's, for a node total).
    pub fn merge(&mut self, other: &DisconnectCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

impl From<ProtocolViolation> for DisconnectReason {
    fn from(v: ProtocolViolation) -> DisconnectReason {
        DisconnectReason::Protocol(v)
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Idle => f.write_str("idle"),
            DisconnectReason::BothSeeds => f.write_str("both seeds"),
            DisconnectReason::Protocol(v) => write!(f, "protocol violation: {v}"),
            DisconnectReason::Unsupported(Missing::ExtensionProtocol) => {
                f.write_str("no extension protocol: cannot speak pc_live")
            }
            DisconnectReason::Unsupported(Missing::PcLive) => {
                f.write_str("peer does not speak pc_live")
            }
            DisconnectReason::BadPiece { index } => {
                write!(f, "sent data for piece {index} that failed its hash")
            }
            DisconnectReason::BadHeader { index, fault } => {
                write!(f, "header for piece {index}: {fault}")
            }
            DisconnectReason::MetadataMismatch => {
                f.write_str("metadata does not match the content ID")
            }
            DisconnectReason::MetadataWrongSize => {
                f.write_str("ut_metadata data of the wrong size")
            }
            DisconnectReason::BadLiveInfo => f.write_str("bad live info dictionary"),
        }
    }
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolViolation::BadExtHandshake => "bad extension handshake",
            ProtocolViolation::BadMetadataMsg => "bad ut_metadata message",
            ProtocolViolation::BadLiveMsg => "bad pc_live message",
            ProtocolViolation::FastWithoutFast => "BEP 6 message without BEP 6",
            ProtocolViolation::HaveOutOfRange => "HAVE out of range",
            ProtocolViolation::BadBitfield => "bad bitfield",
            ProtocolViolation::BadRequest => "invalid request",
            ProtocolViolation::BlockBeforeHashes => "live block before its block hashes",
            ProtocolViolation::BadSearchMsg => "bad pc_search message",
            ProtocolViolation::ForgedRecord => "forged catalogue record",
            ProtocolViolation::BadReceiptMsg => "bad pc_receipt message",
            ProtocolViolation::ForgedReceipt => "forged receipt or identity proof",
        })
    }
}

impl fmt::Display for HeaderFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderFault::Forged => "bad signature",
            HeaderFault::Conflicting => "conflicts with the signed header we hold",
            HeaderFault::BadLength => "bad length",
            HeaderFault::BadBlockHashes => "block hashes do not match its signed root",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_follow_the_kind_and_labels_are_listed() {
        let all = [
            DisconnectReason::Idle,
            DisconnectReason::BothSeeds,
            DisconnectReason::Protocol(ProtocolViolation::BadRequest),
            DisconnectReason::Unsupported(Missing::PcLive),
            DisconnectReason::BadPiece { index: 3 },
            DisconnectReason::BadHeader {
                index: 4,
                fault: HeaderFault::Forged,
            },
            DisconnectReason::MetadataMismatch,
            DisconnectReason::MetadataWrongSize,
            DisconnectReason::BadLiveInfo,
        ];
        let banned: Vec<&str> = all.iter().filter(|r| r.ban()).map(|r| r.label()).collect();
        assert_eq!(
            banned,
            [
                "bad_piece",
                "bad_header",
                "metadata_mismatch",
                "bad_live_info"
            ]
        );
        let labels: Vec<&str> = all.iter().map(|r| r.label()).collect();
        assert_eq!(labels, DisconnectReason::LABELS);
        let mut counts = DisconnectCounts::default();
        for r in &all {
            counts.add(r);
        }
        counts.add(&DisconnectReason::Idle);
        assert_eq!(counts.get("idle"), 2);
        assert_eq!(counts.get("bad_header"), 1);
        assert_eq!(counts.get("nonsense"), 0);
        let mut total = counts;
        total.merge(&counts);
        assert_eq!(total.iter().map(|(_, n)| n).sum::<u64>(), 20);
        assert_eq!(
            DisconnectReason::BadHeader {
                index: 7,
                fault: HeaderFault::Conflicting
            }
            .to_string(),
            "header for piece 7: conflicts with the signed header we hold"
        );
    }
}
