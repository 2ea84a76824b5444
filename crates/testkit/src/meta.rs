//! A peer that misbehaves in BEP 9, played by altering what an honest swarm sends: the
//! harnesses in [`crate::vod`] and [`crate::live`] pass every outgoing message of a node
//! through [`alter`] with the node's [`MetaMode`].

use bytes::Bytes;
use peercdn_core::wire::ext::{ExtHandshake, MetadataMsg, EXT_HANDSHAKE_ID, OUR_UT_METADATA_ID};
use peercdn_core::wire::Message;

/// How a node's BEP 9 traffic is altered on the way out (the harness plays a misbehaving peer).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MetaMode {
    /// Sends what its swarm sends.
    Honest,
    /// Answers every metadata request with a reject (it does not have the dictionary yet).
    Rejects,
    /// Announces a `metadata_size` 1000 bytes too large, and serves the real dictionary.
    LiesAboutSize,
    /// Announces a `metadata_size` 1000 bytes too large and serves garbage of that size.
    LiesConsistently,
}

/// `msg` as a node in `mode` sends it.
pub fn alter(mode: MetaMode, msg: Message) -> Message {
    const LIE: u32 = 1000;
    let Message::Extended { id, payload } = msg else {
        return msg;
    };
    let lying = matches!(mode, MetaMode::LiesAboutSize | MetaMode::LiesConsistently);
    if id == EXT_HANDSHAKE_ID && lying {
        let mut hs = ExtHandshake::decode(&payload).unwrap();
        hs.metadata_size = hs.metadata_size.map(|s| s + LIE);
        let payload = hs.encode();
        return Message::Extended { id, payload };
    }
    if id != OUR_UT_METADATA_ID {
        return Message::Extended { id, payload };
    }
    let payload = match (mode, MetadataMsg::decode(&payload).unwrap()) {
        (MetaMode::Rejects, MetadataMsg::Data { piece, .. }) => {
            MetadataMsg::Reject { piece }.encode()
        }
        (
            MetaMode::LiesConsistently,
            MetadataMsg::Data {
                piece, total_size, ..
            },
        ) => {
            let size = total_size + LIE;
            let start = piece as usize * 16384;
            let len = (size as usize - start).min(16384);
            let data = Bytes::from(vec![0x5a; len]);
            MetadataMsg::Data {
                piece,
                total_size: size,
                data,
            }
            .encode()
        }
        _ => payload,
    };
    Message::Extended { id, payload }
}
