//! Connections between simulated nodes: what the engine's host does for a `ConnManager`
//! (dials, handshake answers, closes) and a tracker, played on the virtual clock.
//!
//! A dial reaches its target after 1.5 RTT (TCP and both BitTorrent handshakes), when both
//! managers decide at once and both swarms attach; a dial to a node behind NAT fails after
//! the engine's 10 s handshake timeout, one to a node that left after one RTT. A connection
//! a manager would hold as a possible simultaneous open is closed instead. A close reaches
//! the far end one latency later. The tracker answers after one RTT with up to
//! `tracker_peers` random present nodes and asks for a re-announce every 60 s. Node `i`
//! listens at `10.0.0.0/8` address `i + 1`, port 6881; its dials come from port 50000.
//!
//! BEP 55 as the engine plays it: a PEX address remembers the connection that told it; when
//! a dial to it fails, the manager asks that peer for an introduction (`Rendezvous`), the
//! swarms exchange the real `ut_holepunch` messages, and each side told to `connect` dials
//! the other. Such a dial gets through when both ends are reachable or behind a NAT that
//! lets introductions through ([`crate::scenario::Scenario::punch_share`]), after the same
//! 1.5 RTT as a dial; otherwise it fails after the handshake timeout.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use peercdn_core::conn::{self, Admission, ConnId, Source};
use peercdn_core::ext::peer::Route;
use peercdn_core::wire::Handshake;
use peercdn_core::{InfoHash, PeerId};
use rand::seq::index::sample;

use super::{Ev, LinkEnd, Sim, EPHEMERAL, PORT, TRACKER_INTERVAL, UNREACHABLE_FAIL};
use crate::link::one_way;
use crate::queue::Nanos;

/// The route of a connection that came of an introduction. (Not marked uTP, although the
/// engine's are: a simulated node's listen address is where a relay introduces it either way.)
const PUNCHED: Route = Route {
    utp: false,
    holepunched: true,
    dialled: false,
};

impl Sim {
    pub(super) fn register(&mut self, n: usize) {
        let Some(node) = self.nodes[n].as_mut() else {
            return;
        };
        if !node.registered {
            node.registered = true;
            self.tracker_pos.insert(n, self.tracker.len());
            self.tracker.push(n);
        }
    }

    pub(super) fn unregister(&mut self, n: usize) {
        let Some(pos) = self.tracker_pos.remove(&n) else {
            return;
        };
        self.tracker.swap_remove(pos);
        if let Some(&moved) = self.tracker.get(pos) {
            self.tracker_pos.insert(moved, pos);
        }
    }

    /// A dial reached its target: both managers decide, both swarms attach. `punched`: the
    /// dial came of an introduction (both ends mark the connection holepunched; the dialler
    /// does not take the target for reachable).
    pub(super) fn connect(&mut self, from: usize, to: usize, punched: bool, now: Nanos) {
        let inst = self.clock.at(now);
        let addr = addr_of(to);
        if self.nodes[from].is_none() {
            return;
        }
        let Some(t) = self.nodes[to].as_mut() else {
            self.q.push(now, Ev::DialFailed { node: from, addr });
            return;
        };
        let kt = match t.mgr.on_incoming(ephemeral_of(from), peer_id(from), inst) {
            Admission::Attach(k) => k,
            Admission::Hold(k) => {
                t.mgr.on_closed(k, inst);
                self.q.push(now, Ev::DialFailed { node: from, addr });
                self.pump(to, now);
                return;
            }
            Admission::Refuse(_) => {
                self.q.push(now, Ev::DialFailed { node: from, addr });
                self.pump(to, now);
                return;
            }
        };
        let Some(f) = self.nodes[from].as_mut() else {
            return;
        };
        let ka = match f.mgr.on_dialed(addr, peer_id(to), inst) {
            Admission::Attach(k) => k,
            other => {
                if let Admission::Hold(k) = other {
                    f.mgr.on_closed(k, inst);
                }
                if let Some(t) = self.nodes[to].as_mut() {
                    t.mgr.on_closed(kt, inst);
                }
                self.pump(from, now);
                self.pump(to, now);
                return;
            }
        };
        self.next_link += 1;
        let id = self.next_link;
        self.connections += 1;
        self.punched += u64::from(punched);
        let hs = |i: usize, info: InfoHash| Handshake::ours(info, peer_id(i));
        let (hs_from, hs_to) = (hs(from, self.id), hs(to, self.id));
        if let Some(t) = self.nodes[to].as_mut() {
            t.links.insert(
                kt,
                LinkEnd {
                    peer: from,
                    peer_key: ka,
                    id,
                    last: 0,
                    recv: 0,
                },
            );
            t.swarm.add_peer(kt, ephemeral_of(from), &hs_from, inst);
            if punched {
                t.swarm.set_route(kt, PUNCHED);
            }
        }
        if let Some(f) = self.nodes[from].as_mut() {
            f.links.insert(
                ka,
                LinkEnd {
                    peer: to,
                    peer_key: kt,
                    id,
                    last: 0,
                    recv: 0,
                },
            );
            f.swarm.add_peer(ka, addr, &hs_to, inst);
            f.swarm.set_listen_addr(ka, addr);
            let route = if punched {
                PUNCHED
            } else {
                Route {
                    dialled: true,
                    ..Default::default()
                }
            };
            f.swarm.set_route(ka, route);
        }
        self.pump(to, now);
        self.pump(from, now);
    }

    pub(super) fn tracker_answer(&mut self, n: usize, now: Nanos) {
        let inst = self.clock.at(now);
        if self.nodes[n].is_none() {
            return;
        }
        self.register(n);
        let others = self.tracker.len().saturating_sub(1);
        let k = self.sc.tracker_peers.min(others);
        let picked: Vec<SocketAddr> = sample(&mut self.rng, self.tracker.len(), k + 1)
            .into_iter()
            .map(|i| self.tracker[i])
            .filter(|&i| i != n)
            .take(k)
            .map(addr_of)
            .collect();
        if let Some(node) = self.nodes[n].as_mut() {
            node.mgr.on_tracker_answer(TRACKER_INTERVAL, inst);
            node.mgr.add_candidates(picked, Source::Tracker, inst);
            self.pump(n, now);
        }
    }

    pub(super) fn exec_conn(&mut self, n: usize, a: conn::Action, now: Nanos) {
        match a {
            conn::Action::Dial(addr) => self.dial(n, addr, false, now),
            conn::Action::Close { conn, .. } => {
                self.close(n, conn, now);
                if let Some(node) = self.nodes[n].as_mut() {
                    node.swarm.remove_peer(conn);
                }
            }
            conn::Action::TrackerAnnounce { .. } => {
                let Some(node) = self.nodes[n].as_ref() else {
                    return;
                };
                let rtt = 2 * node.access.half_rtt_us * 1000;
                self.q.push(now + rtt, Ev::TrackerAnswer(n));
            }
            conn::Action::Rendezvous { via, target } => {
                if let Some(node) = self.nodes[n].as_mut() {
                    node.swarm.rendezvous(via, target);
                }
            }
            // Held connections are closed at once (see the module doc); no DHT.
            conn::Action::Attach(_) | conn::Action::DhtLookup | conn::Action::DhtAnnounce => {}
        }
    }

    /// A peer introduced `n` to `addr` (BEP 55 `connect`): `n` dials it at once, as the engine
    /// does over uTP, unless its manager says no.
    pub(super) fn holepunch(&mut self, n: usize, addr: SocketAddr, now: Nanos) {
        let Some(from) = self.nodes[n].as_mut() else {
            return;
        };
        if from.mgr.on_holepunch(addr) {
            self.dial(n, addr, true, now);
        }
    }

    /// `n` dials `addr` (`punched`: on an introduction). The handshakes reach the target after
    /// 1.5 RTT when it can be dialled, or, on an introduction, when both ends' NATs let it
    /// through; otherwise the dial fails after the handshake timeout, or after one RTT when
    /// nobody is there.
    fn dial(&mut self, n: usize, addr: SocketAddr, punched: bool, now: Nanos) {
        let Some(from) = self.nodes[n].as_ref() else {
            return;
        };
        let target = node_of(addr).and_then(|t| self.nodes.get(t)?.as_ref().map(|x| (t, x)));
        match target {
            Some((t, tn))
                if t != n && (tn.reachable || punched && from.punchable && tn.punchable) =>
            {
                let rtt = 2 * one_way(&from.access, &tn.access);
                let to = t;
                self.q.push(
                    now + rtt + rtt / 2,
                    Ev::Connect {
                        from: n,
                        to,
                        punched,
                    },
                );
            }
            Some(_) => self
                .q
                .push(now + UNREACHABLE_FAIL, Ev::DialFailed { node: n, addr }),
            None => {
                let rtt = 2 * from.access.half_rtt_us * 1000;
                self.q.push(now + rtt, Ev::DialFailed { node: n, addr });
            }
        }
    }

    /// Closes `n`'s end of connection `key`; the far end hears of it one latency later.
    pub(super) fn close(&mut self, n: usize, key: ConnId, now: Nanos) {
        let Some(node) = self.nodes[n].as_mut() else {
            return;
        };
        let Some(l) = node.links.remove(&key) else {
            return;
        };
        let access = node.access.clone();
        let at = now + self.latency(l.peer, &access);
        self.q.push(
            at,
            Ev::Closed {
                node: l.peer,
                key: l.peer_key,
                link: l.id,
            },
        );
    }
}

/// Node `i`'s listen address: 10.0.0.0/8 numbered from 10.0.0.1.
pub(super) fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip_of(i), PORT))
}

/// The address node `i`'s dials come from.
pub(super) fn ephemeral_of(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip_of(i), EPHEMERAL))
}

pub(super) fn ip_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000u32 + 1 + i as u32)
}

/// The node listening at `addr`, if it is a simulated node's address.
pub(super) fn node_of(addr: SocketAddr) -> Option<usize> {
    let SocketAddr::V4(a) = addr else { return None };
    if a.port() != PORT {
        return None;
    }
    let v = u32::from(*a.ip()).checked_sub(0x0a00_0001)?;
    (v < 1 << 24).then_some(v as usize)
}

pub(super) fn peer_id(i: usize) -> PeerId {
    let mut id = *b"-PS0001-000000000000";
    id[8..16].copy_from_slice(&(i as u64).to_be_bytes());
    PeerId(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_back_to_nodes() {
        for i in [0, 1, 255, 70_000] {
            assert_eq!(node_of(addr_of(i)), Some(i));
            assert_eq!(node_of(ephemeral_of(i)), None);
        }
    }
}
