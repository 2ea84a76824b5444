//! BEP 10 in both swarms: the extensions a swarm speaks, the extension handshake we send
//! from that list, and the peer's handshake parsed into what we keep per connection.
//!
//! Codec: [`ExtHandshake`] (in [`crate::wire::ext`], re-exported here). Node state: the list of
//! [`Extension`]s a swarm speaks, given to [`our_handshake`]. Per-connection state:
//! [`PeerExtensions`] — the IDs the peer wants each extension sent with, its client name, its
//! request queue depth (`reqq`), its listen port and the metadata size it announced.
//!
//! Owns naming and numbering only. What a swarm does once a peer speaks an extension (fetch
//! metadata, exchange peers, open `pc_live`) belongs to that extension's module or the swarm.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

pub use crate::wire::ext::{ExtHandshake, EXT_HANDSHAKE_ID};

use super::holepunch::{OUR_UT_HOLEPUNCH_ID, UT_HOLEPUNCH};
use super::metadata::Metadata;
use super::peer::PeerRecord;
use super::receipt::{OUR_PC_RECEIPT_ID, PC_RECEIPT};
use super::search::{OUR_PC_SEARCH_ID, PC_SEARCH};
use super::PeerKey;
use crate::disconnect::{DisconnectReason, ProtocolViolation};
use crate::live::{OUR_PC_LIVE_ID, PC_LIVE};
use crate::wire::ext::{OUR_UT_METADATA_ID, OUR_UT_PEX_ID, UT_METADATA, UT_PEX};
use crate::wire::Message;

/// An extension this crate speaks over BEP 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Extension {
    /// BEP 9 metadata exchange.
    UtMetadata,
    /// BEP 11 peer exchange.
    UtPex,
    /// peercdn's live stream announcements (DESIGN §3).
    PcLive,
    /// peercdn's catalogue records: gossip and queries ([`super::search`]).
    PcSearch,
    /// peercdn's node identities and receipts ([`super::receipt`]).
    PcReceipt,
    /// BEP 55 holepunch ([`super::holepunch`]).
    UtHolepunch,
}

impl Extension {
    /// Every extension (the order of the per-peer ID table).
    pub const ALL: [Extension; 6] = [
        Extension::UtMetadata,
        Extension::UtPex,
        Extension::PcLive,
        Extension::PcSearch,
        Extension::PcReceipt,
        Extension::UtHolepunch,
    ];

    /// Its name in the handshake's `m` dictionary.
    pub fn name(self) -> &'static str {
        match self {
            Extension::UtMetadata => UT_METADATA,
            Extension::UtPex => UT_PEX,
            Extension::PcLive => PC_LIVE,
            Extension::PcSearch => PC_SEARCH,
            Extension::PcReceipt => PC_RECEIPT,
            Extension::UtHolepunch => UT_HOLEPUNCH,
        }
    }

    /// The ID we ask peers to send it with.
    pub fn our_id(self) -> u8 {
        match self {
            Extension::UtMetadata => OUR_UT_METADATA_ID,
            Extension::UtPex => OUR_UT_PEX_ID,
            Extension::PcLive => OUR_PC_LIVE_ID,
            Extension::PcSearch => OUR_PC_SEARCH_ID,
            Extension::PcReceipt => OUR_PC_RECEIPT_ID,
            Extension::UtHolepunch => OUR_UT_HOLEPUNCH_ID,
        }
    }

    /// The extension a peer's extended message with `id` is for (our numbering); `None` for
    /// the handshake itself (0) and for IDs we never gave out.
    pub fn from_our_id(id: u8) -> Option<Extension> {
        Extension::ALL.into_iter().find(|e| e.our_id() == id)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Our extension handshake: the extensions we speak under our IDs, the size of the info
/// dictionary once we have it, our listen port, how many requests we queue per peer, and
/// whether peers can dial us (as far as we know).
pub fn our_handshake(
    speaks: &[Extension],
    metadata_size: Option<u32>,
    listen_port: Option<u16>,
    reqq: u32,
    reachable: bool,
) -> Message {
    let mut hs = ExtHandshake::ours(metadata_size, listen_port);
    hs.reachable = reachable;
    hs.m = speaks
        .iter()
        .map(|e| (e.name().to_string(), e.our_id()))
        .collect();
    hs.reqq = Some(reqq);
    Message::Extended {
        id: EXT_HANDSHAKE_ID,
        payload: hs.encode(),
    }
}

/// What a peer told us in its (latest) extension handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerExtensions {
    ids: [Option<u8>; Extension::ALL.len()],
    /// Its client name and version (`v`, ≤ [`crate::wire::ext::MAX_CLIENT_LEN`] bytes).
    pub client: Option<String>,
    /// How many requests it queues (`reqq`), if it said.
    pub reqq: Option<u32>,
    /// Its listen port (`p`), if it said.
    pub listen_port: Option<u16>,
    /// The size of the info dictionary it announced (`metadata_size`, BEP 9), if any.
    pub metadata_size: Option<u32>,
    /// It says peers can dial it (`pc_reachable`).
    pub reachable: bool,
}

impl PeerExtensions {
    /// Parses a peer's extension handshake. A payload that is not a bencoded dictionary is a
    /// protocol violation; fields that are absent or out of range are simply absent.
    pub fn decode(payload: &[u8]) -> Result<PeerExtensions, DisconnectReason> {
        ExtHandshake::decode(payload)
            .map(|hs| PeerExtensions::from_handshake(&hs))
            .map_err(|_| DisconnectReason::Protocol(ProtocolViolation::BadExtHandshake))
    }

    /// What we keep of a decoded handshake.
    pub fn from_handshake(hs: &ExtHandshake) -> PeerExtensions {
        let mut ids = [None; Extension::ALL.len()];
        for e in Extension::ALL {
            ids[e.index()] = hs.id_of(e.name());
        }
        PeerExtensions {
            ids,
            client: hs.client.clone(),
            reqq: hs.reqq,
            listen_port: hs.listen_port,
            metadata_size: hs.metadata_size,
            reachable: hs.reachable,
        }
    }

    /// The ID the peer wants `ext` sent with; `None` when it does not speak it.
    pub fn id(&self, ext: Extension) -> Option<u8> {
        self.ids[ext.index()]
    }

    /// Where the peer accepts connections: its connection's IP and the port it announced.
    pub fn listen_addr(&self, ip: IpAddr) -> Option<SocketAddr> {
        self.listen_port.map(|p| SocketAddr::new(ip, p))
    }
}

/// A peer's extension handshake (extended message 0) arrived: its record keeps what it said
/// and BEP 9 learns the size it announces. A payload that does not decode is a protocol
/// violation (the caller closes the connection). `Ok(true)`: the peer has just started to
/// speak `pc_search` (the engine sends it a sample of the catalogue).
pub fn receive(
    payload: &[u8],
    key: PeerKey,
    rec: &mut PeerRecord,
    meta: &mut Metadata,
    now: Instant,
) -> Result<bool, DisconnectReason> {
    let theirs = PeerExtensions::decode(payload)?;
    meta.on_handshake(key, &theirs, now);
    let joined =
        rec.ext.id(Extension::PcSearch).is_none() && theirs.id(Extension::PcSearch).is_some();
    rec.on_ext_handshake(theirs);
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_handshake_lists_what_the_swarm_speaks() {
        let msg = our_handshake(
            &[Extension::UtMetadata, Extension::PcLive],
            Some(1234),
            Some(6881),
            512,
            true,
        );
        let Message::Extended { id, payload } = msg else {
            panic!("not extended");
        };
        assert_eq!(id, EXT_HANDSHAKE_ID);
        let theirs = PeerExtensions::decode(&payload).unwrap();
        assert_eq!(theirs.id(Extension::UtMetadata), Some(OUR_UT_METADATA_ID));
        assert_eq!(theirs.id(Extension::PcLive), Some(OUR_PC_LIVE_ID));
        assert_eq!(theirs.id(Extension::UtPex), None);
        assert_eq!(theirs.metadata_size, Some(1234));
        assert_eq!(theirs.reqq, Some(512));
        assert!(theirs.reachable);
        assert!(theirs
            .client
            .as_deref()
            .is_some_and(|c| c.starts_with("peercdn/")));
        assert_eq!(
            theirs.listen_addr("10.0.0.1".parse().unwrap()),
            Some("10.0.0.1:6881".parse().unwrap())
        );
    }

    #[test]
    fn ids_map_back_and_garbage_is_a_protocol_violation() {
        for e in Extension::ALL {
            assert_eq!(Extension::from_our_id(e.our_id()), Some(e));
        }
        assert_eq!(Extension::from_our_id(EXT_HANDSHAKE_ID), None);
        assert_eq!(Extension::from_our_id(200), None);
        assert_eq!(
            PeerExtensions::decode(b"li1ee"),
            Err(DisconnectReason::Protocol(
                ProtocolViolation::BadExtHandshake
            ))
        );
    }
}
