//! Messages on the modelled links ([`crate::link`]): a node sends on a connection (a block
//! queues on its uplink, a control message goes at once, neither overtakes what went before on
//! that connection), the message reaches the receiver (a block then takes its downlink, behind
//! what it is receiving), and is delivered to the receiver's swarm and connection manager
//! (counting payload bytes and relay depth on the way).

use peercdn_core::conn::{Activity, ConnId};
use peercdn_core::wire::ext::EXT_HANDSHAKE_ID;
use peercdn_core::wire::Message;

use super::{Ev, Node, Sim};
use crate::link::{control, one_way, transfer, Access};
use crate::queue::Nanos;

impl Sim {
    /// One-way latency from a node with `from` access to node `to` (gone: its RTT share).
    pub(super) fn latency(&self, to: usize, from: &Access) -> Nanos {
        match self.nodes.get(to).and_then(|x| x.as_ref()) {
            Some(t) => one_way(from, &t.access),
            None => 2 * from.half_rtt_us * 1000,
        }
    }

    /// A message reached `to`: a block takes its downlink (behind what it is receiving), and
    /// nothing overtakes what came before it on the connection.
    pub(super) fn reach(
        &mut self,
        to: usize,
        key: ConnId,
        link: u64,
        msg: Message,
        size: usize,
        now: Nanos,
    ) {
        let Some(node) = self.nodes[to].as_mut() else {
            return;
        };
        let Some(end) = node.links.get_mut(&key).filter(|l| l.id == link) else {
            return;
        };
        let mut done = end.recv.max(now);
        if matches!(msg, Message::Piece { .. }) {
            done = done.max(node.access.receive(now, size));
        }
        end.recv = done;
        if done == now {
            self.deliver(to, key, link, msg, now);
        } else {
            self.q.push(done, Ev::Deliver { to, key, link, msg });
        }
    }

    pub(super) fn deliver(&mut self, to: usize, key: ConnId, link: u64, msg: Message, now: Nanos) {
        let inst = self.clock.at(now);
        let sender_depth = match &msg {
            Message::Piece { index, .. } => self.nodes[to]
                .as_ref()
                .and_then(|n| n.links.get(&key))
                .and_then(|l| self.nodes.get(l.peer)?.as_ref())
                .and_then(|s| s.depth.get(index).copied()),
            _ => None,
        };
        let Some(node) = self.nodes[to].as_mut() else {
            return;
        };
        if node.links.get(&key).is_none_or(|l| l.id != link) {
            return;
        }
        match &msg {
            Message::Interested | Message::Request(_) => {
                node.mgr.on_activity(key, Activity::Interested, inst)
            }
            Message::Piece { index, data, .. } => {
                if now >= self.warm {
                    self.viewer_bytes += data.len() as u64;
                }
                node.peer_bytes += data.len() as u64;
                if let Some(d) = sender_depth {
                    let e = node.incoming_depth.entry(*index).or_insert(0);
                    *e = (*e).max(d.saturating_add(1));
                }
                node.mgr
                    .on_activity(key, Activity::Received(data.len() as u64), inst);
            }
            _ => {}
        }
        let ext_handshake = matches!(
            msg,
            Message::Extended {
                id: EXT_HANDSHAKE_ID,
                ..
            }
        );
        node.swarm.on_message(key, msg, inst);
        if ext_handshake {
            if let Some(a) = node.swarm.listen_addr(key) {
                node.mgr.set_listen_addr(key, a);
            }
        }
        self.pump(to, now);
    }

    /// Drains node `n`'s actions (swarm and manager) and schedules its next wake.
    /// Sends `msg` on `n`'s connection `key`; returns when it left the uplink and the link ID.
    pub(super) fn send(
        &mut self,
        n: usize,
        key: ConnId,
        msg: Message,
        size: usize,
        now: Nanos,
    ) -> Option<(Nanos, u64)> {
        let link = *self.nodes[n].as_ref()?.links.get(&key)?;
        let (a, b) = two(&mut self.nodes, n, link.peer);
        let from = a?;
        let mut last = link.last;
        let to = b?;
        let (left, reach) = if matches!(msg, Message::Piece { .. }) {
            transfer(&mut from.access, &to.access, &mut last, now, size)
        } else {
            (now, control(&from.access, &to.access, &mut last, now))
        };
        if let Some(l) = from.links.get_mut(&key) {
            l.last = last;
        }
        self.q.push(
            reach,
            Ev::Reach {
                to: link.peer,
                key: link.peer_key,
                link: link.id,
                msg,
                size,
            },
        );
        Some((left, link.id))
    }
}

/// Mutable access to two different nodes.
fn two(nodes: &mut [Option<Node>], a: usize, b: usize) -> (Option<&mut Node>, Option<&mut Node>) {
    debug_assert_ne!(a, b, "a connection joins two nodes");
    if a < b {
        let (l, r) = nodes.split_at_mut(b);
        (l[a].as_mut(), r[0].as_mut())
    } else {
        let (l, r) = nodes.split_at_mut(a);
        (r[0].as_mut(), l[b].as_mut())
    }
}
