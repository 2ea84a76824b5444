//! The live swarm's side of how peers reach each other: the route of each connection as
//! the engine knows it (uTP, holepunched, dialled), whether this node can be dialled (told in
//! our extension handshake), and BEP 55 holepunching ([`crate::ext::holepunch`]): asking a
//! peer for an introduction, relaying one, and handing a relay's `connect` to the engine.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Action, LiveSwarm, PeerKey};
use crate::ext::handshake::Extension;
use crate::ext::holepunch::{self, HolepunchEvent};
use crate::ext::peer::Route;

impl LiveSwarm {
    /// How a connection travels and came to be, as the engine knows it (see [`Route`]).
    pub fn set_route(&mut self, key: PeerKey, route: Route) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.rec.route = route;
        }
    }

    /// Whether peers can dial this node, as it knows (its port mapped, or a peer on the
    /// Internet dialled it): told to every peer in our extension handshake (again when it
    /// changes, as BEP 10 allows).
    pub fn set_reachable(&mut self, reachable: bool) {
        if self.reachable == reachable {
            return;
        }
        self.reachable = reachable;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.send_ext_handshake(k);
        }
    }

    /// Whether the peer `key` speaks `ext` (its extension handshake said so).
    pub fn speaks(&self, key: PeerKey, ext: Extension) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|p| p.rec.ext.id(ext).is_some())
    }

    /// BEP 55: asks the peer `via` to introduce us to `target` (a dial to it failed); false
    /// when `via` is gone or does not speak `ut_holepunch`.
    pub fn rendezvous(&mut self, via: PeerKey, target: SocketAddr) -> bool {
        let Some(m) = self
            .peers
            .get(&via)
            .and_then(|p| holepunch::rendezvous(&p.rec, target))
        else {
            return false;
        };
        self.send(via, m);
        true
    }

    /// A `ut_holepunch` message: relayed introductions go out, an introduction of us becomes
    /// [`Action::Holepunch`] (see [`crate::ext::holepunch`]).
    pub(super) fn on_holepunch(&mut self, key: PeerKey, payload: &[u8], now: Instant) {
        let Some(msg) = self
            .peers
            .get_mut(&key)
            .and_then(|p| holepunch::admit(payload, &mut p.rec, now))
        else {
            return;
        };
        let Some(asker) = self.peers.get(&key) else {
            return;
        };
        let peers = self.peers.iter().map(|(&k, p)| (k, &p.rec));
        match holepunch::receive(msg, key, &asker.rec, peers) {
            Some(HolepunchEvent::Send(out)) => {
                for (k, m) in out {
                    self.send(k, m);
                }
            }
            Some(HolepunchEvent::Connect(addr)) => {
                self.actions.push_back(Action::Holepunch(addr));
            }
            Some(HolepunchEvent::Failed(..)) | None => {}
        }
    }
}
