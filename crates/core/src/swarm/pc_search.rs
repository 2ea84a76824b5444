//! The VoD swarm's side of `pc_search` ([`crate::ext::search`]): which seed-to-seed
//! connections stay open for catalogue records, and what the engine needs to speak it.

use std::net::SocketAddr;

use super::{PeerKey, Swarm, MAX_SEARCH_SEEDS};
use crate::disconnect::ProtocolViolation;
use crate::ext::handshake::Extension;
use crate::ext::search::{self, SearchMsg, SearchSwarm};

impl Swarm {
    /// Whether a connection between two seeds stays open: it does for a peer that speaks
    /// `pc_search` (the connections catalogue records travel on; at most
    /// [`MAX_SEARCH_SEEDS`] such per torrent) or may still say so (its BEP 10 handshake has not
    /// come yet: decided when it does).
    pub(super) fn keeps_seed(&self, key: PeerKey) -> bool {
        let Some(peer) = self.peers.get(&key) else {
            return false;
        };
        if peer.extensions && !peer.ext_seen {
            return true;
        }
        if peer.rec.ext.id(Extension::PcSearch).is_none() {
            return false;
        }
        let kept = self
            .peers
            .iter()
            .filter(|(&k, p)| {
                k != key
                    && p.rec.ext.id(Extension::PcSearch).is_some()
                    && p.has.as_ref().is_some_and(|h| h.is_full())
            })
            .count();
        kept < MAX_SEARCH_SEEDS
    }
}

impl SearchSwarm for Swarm {
    fn send_search(&mut self, key: PeerKey, msg: &SearchMsg) -> Option<usize> {
        let (m, len) = search::message(&self.peers.get(&key)?.rec, msg)?;
        self.send(key, m);
        Some(len)
    }

    /// The peers that speak `pc_search`.
    fn search_peers(&self) -> Vec<PeerKey> {
        self.peers
            .iter()
            .filter(|(_, p)| p.rec.ext.id(Extension::PcSearch).is_some())
            .map(|(&k, _)| k)
            .collect()
    }

    /// A peer sent a catalogue record that does not verify: closed and banned.
    fn forged_record(&mut self, key: PeerKey) {
        self.disconnect(key, ProtocolViolation::ForgedRecord.into());
    }

    fn search_peer_addr(&self, key: PeerKey) -> Option<SocketAddr> {
        self.peers.get(&key).map(|p| p.rec.addr)
    }
}
