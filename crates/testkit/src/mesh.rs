//! What both scenario harnesses ([`crate::vod`], [`crate::live`]) share: how nodes are
//! addressed and dialled, how an encoded message reaches a swarm, and what a disconnect does
//! to both ends. The harnesses keep only what differs: the engine duties each swarm asks for
//! and how their clocks run.
//!
//! Node `i` listens on `127.0.0.1:(1000 + i)`; the connection from `a` to `b` is key
//! [`key`]`(b)` at `a` and [`key`]`(a)` at `b`, and `b` sees `a` at an ephemeral port until
//! `a`'s extension handshake names its listen port.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use peercdn_core::ext::PeerKey;
use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::{live, swarm, DisconnectReason, InfoHash, PeerId};

use crate::meta::{alter, MetaMode};
use crate::netem::{End, LinkSpec, Netem};

/// The key node `to`'s connection is known by at its peers (what a ban names).
pub fn key(to: usize) -> PeerKey {
    100 + to as PeerKey
}

/// The address node `i` listens on.
pub fn listen_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16))
}

/// A swarm as the harness wires it: the calls a connection's life makes on either swarm.
pub trait Wired {
    /// A connection completed its handshake.
    fn add_peer(&mut self, key: PeerKey, addr: SocketAddr, hs: &Handshake, now: Instant);
    /// The listen address of a peer we dialled.
    fn set_listen_addr(&mut self, key: PeerKey, addr: SocketAddr);
    /// The connection closed.
    fn remove_peer(&mut self, key: PeerKey);
    /// A message arrived on it.
    fn on_message(&mut self, key: PeerKey, msg: Message, now: Instant);
}

macro_rules! wired {
    ($t:ty) => {
        impl Wired for $t {
            fn add_peer(&mut self, key: PeerKey, addr: SocketAddr, hs: &Handshake, now: Instant) {
                <$t>::add_peer(self, key, addr, hs, now)
            }
            fn set_listen_addr(&mut self, key: PeerKey, addr: SocketAddr) {
                <$t>::set_listen_addr(self, key, addr)
            }
            fn remove_peer(&mut self, key: PeerKey) {
                <$t>::remove_peer(self, key)
            }
            fn on_message(&mut self, key: PeerKey, msg: Message, now: Instant) {
                <$t>::on_message(self, key, msg, now)
            }
        }
    };
}
wired!(swarm::Swarm);
wired!(live::swarm::LiveSwarm);

/// A node's swarm, the keys of the connections it banned, and every disconnect it asked for
/// with the reason.
pub type Parts<'a, S> = (
    &'a mut S,
    &'a mut Vec<PeerKey>,
    &'a mut Vec<(PeerKey, DisconnectReason)>,
);

/// A harness node: its swarm, and the log of the disconnects it asked for.
pub trait Node {
    /// Its swarm.
    type Swarm: Wired;
    /// Its [`Parts`].
    fn parts(&mut self) -> Parts<'_, Self::Swarm>;
    /// The swarm under test.
    fn swarm(&mut self) -> &mut Self::Swarm {
        self.parts().0
    }
}

/// Node `from` sends `msg` on its connection (`from.1`), altered as its `meta` mode says,
/// through the real codec.
pub fn send(net: &mut Netem<BytesMut>, now: Instant, from: End, meta: MetaMode, msg: Message) {
    net.send_message(now, from, &alter(meta, msg));
}

/// `a` dials `b` over a link that behaves as `spec`, for content `id`: both swarms see the
/// connection, `a` knows `b`'s listen address.
pub fn dial<N: Node>(
    net: &mut Netem<BytesMut>,
    nodes: &mut [N],
    (a, b): (usize, usize),
    spec: LinkSpec,
    id: InfoHash,
    now: Instant,
) {
    let (ka, kb) = (key(b), key(a));
    net.connect((a, ka), (b, kb), spec);
    let hs = |i: usize| Handshake::ours(id, PeerId::ours([i as u8; 12]));
    let ephemeral = SocketAddr::from(([127, 0, 0, 1], 40000 + a as u16));
    let theirs = nodes[a].swarm();
    theirs.add_peer(ka, listen_addr(b), &hs(b), now);
    theirs.set_listen_addr(ka, listen_addr(b));
    nodes[b].swarm().add_peer(kb, ephemeral, &hs(a), now);
}

/// Node `i` drops its connection `peer` for `reason`: logged at `i`, the link cut, and the
/// other end told the connection closed.
pub fn disconnect<N: Node>(
    net: &mut Netem<BytesMut>,
    nodes: &mut [N],
    i: usize,
    peer: PeerKey,
    reason: DisconnectReason,
) {
    let (_, banned, dropped) = nodes[i].parts();
    dropped.push((peer, reason));
    if reason.ban() {
        banned.push(peer);
    }
    if let Some((to, tkey)) = net.cut((i, peer)) {
        nodes[to].swarm().remove_peer(tkey);
    }
}

/// The next message due by `now`, decoded with the real codec: `(to, key, message)`.
pub fn pop_due(net: &mut Netem<BytesMut>, now: Instant) -> Option<(usize, PeerKey, Message)> {
    let ((to, key), mut buf) = net.pop_due(now)?;
    let msg = wire::decode(&mut buf, 1 << 20)
        .expect("the harness's links carry only encoded messages")
        .expect("a whole message");
    Some((to, key, msg))
}
