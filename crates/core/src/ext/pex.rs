//! BEP 11 peer exchange in both swarms: each peer that speaks `ut_pex` is told, at most once
//! per interval, which listen addresses appeared and went since our last message to it.
//!
//! Codec: [`Pex`] (in [`crate::wire::ext`], re-exported here). Per-connection state:
//! [`PexPeer`] (what it was last told, when the next message is due). Node state: the interval
//! and the list of known addresses the swarm passes to [`round`].
//!
//! Owns the exchange only: which addresses to dial, and how many, is the connection manager's.
//! Bounds: a message carries at most [`Pex::MAX_PEERS`] added and dropped addresses; a
//! peer's sent set is at most [`Pex::MAX_PEERS`] addresses; what a peer sends us is cut to
//! [`Pex::MAX_PEERS`] addresses.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use crate::wire::ext::Pex;

use super::handshake::Extension;
use super::peer::PeerRecord;
use super::PeerKey;
use crate::wire::Message;

/// One connection's exchange state.
#[derive(Debug, Clone)]
pub struct PexPeer {
    sent: Vec<SocketAddr>,
    next: Instant,
}

impl PexPeer {
    /// A new connection whose first message is due at `first`.
    pub fn new(first: Instant) -> PexPeer {
        PexPeer {
            sent: Vec::new(),
            next: first,
        }
    }

    /// When the next message to this peer is due.
    pub fn due(&self) -> Instant {
        self.next
    }
}

/// The listen addresses PEX can tell, each with its flags and the connection it belongs to:
/// the swarm's (`flags`: a seed) and what the record knows — the connection runs over uTP
/// ([`Pex::FLAG_UTP`]), the peer speaks BEP 55 ([`Pex::FLAG_HOLEPUNCH`]: a peer that cannot
/// dial it may ask us to introduce them), it can be dialled ([`Pex::FLAG_REACHABLE`]: we did,
/// or it said so).
pub fn known<'a>(
    peers: impl IntoIterator<Item = (PeerKey, &'a PeerRecord, u8)>,
) -> Vec<(PeerKey, SocketAddr, u8)> {
    peers
        .into_iter()
        .filter_map(|(k, r, mut flags)| {
            if r.route.utp {
                flags |= Pex::FLAG_UTP;
            }
            if r.reachable() {
                flags |= Pex::FLAG_REACHABLE;
            }
            if r.ext.id(Extension::UtHolepunch).is_some() {
                flags |= Pex::FLAG_HOLEPUNCH;
            }
            Some((k, r.listen_addr?, flags))
        })
        .collect()
}

/// The PEX messages due at `now`: for every peer that speaks `ut_pex` and whose message is
/// due, the difference between what it was last told and `known` (see [`known`]; a peer is
/// never told its own address). The next message to each of them is due `interval` later.
pub fn round<'a>(
    now: Instant,
    interval: Duration,
    known: &[(PeerKey, SocketAddr, u8)],
    peers: impl IntoIterator<Item = (PeerKey, &'a mut PeerRecord)>,
) -> Vec<(PeerKey, Message)> {
    let mut out = Vec::new();
    for (key, rec) in peers {
        let Some(id) = rec.ext.id(Extension::UtPex) else {
            continue;
        };
        if now < rec.pex.next {
            continue;
        }
        rec.pex.next = now + interval;
        let current: Vec<(SocketAddr, u8)> = known
            .iter()
            .filter(|(k, a, _)| *k != key && Some(*a) != rec.listen_addr)
            .take(Pex::MAX_PEERS)
            .map(|&(_, a, flags)| (a, flags))
            .collect();
        let Some(pex) = Pex::update(&mut rec.pex.sent, &current) else {
            continue;
        };
        out.push((
            key,
            Message::Extended {
                id,
                payload: pex.encode(),
            },
        ));
    }
    out
}

/// An address a peer's PEX message adds, with what its flags tell the connection manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// The address.
    pub addr: SocketAddr,
    /// Flagged reachable ([`Pex::FLAG_REACHABLE`], BEP 11's "outgoing connection": the sender
    /// dialled it, or it told the sender it can be dialled).
    pub reachable: bool,
}

/// The addresses a peer's PEX message adds (at most [`Pex::MAX_PEERS`]); `None` when it adds
/// none or does not decode (a bad PEX message is ignored, not punished: BEP 11 is advisory).
pub fn received(payload: &[u8]) -> Option<Vec<Heard>> {
    let pex = Pex::decode(payload).ok()?;
    let heard: Vec<Heard> = pex
        .added
        .iter()
        .zip(pex.added_flags.iter().chain(std::iter::repeat(&0)))
        .take(Pex::MAX_PEERS)
        .map(|(&addr, &flags)| Heard {
            addr,
            reachable: flags & Pex::FLAG_REACHABLE != 0,
        })
        .collect();
    (!heard.is_empty()).then_some(heard)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;
    use crate::ext::handshake::PeerExtensions;
    use crate::wire::ext::ExtHandshake;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn peer(port: u16, first: Instant) -> PeerRecord {
        let mut r = PeerRecord::new(addr(port), first, first);
        let hs = ExtHandshake {
            m: vec![(crate::wire::ext::UT_PEX.to_string(), 9)],
            ..ExtHandshake::default()
        };
        r.on_ext_handshake(PeerExtensions::from_handshake(&hs));
        r.listen_addr = Some(addr(port));
        r
    }

    #[test]
    fn round_tells_each_peer_the_others_once_per_interval() {
        let now = Instant::now();
        let interval = Duration::from_secs(60);
        let mut a = peer(1, now);
        let mut b = peer(2, now + Duration::from_secs(5));
        let known = known([(1, &a, 0), (2, &b, Pex::FLAG_SEED)]);
        let out = round(now, interval, &known, [(1, &mut a), (2, &mut b)]);
        // Only peer 1 is due; it hears of peer 2 (a seed), never of itself.
        assert_eq!(out.len(), 1);
        let (key, Message::Extended { id, payload }) = &out[0] else {
            panic!("not extended");
        };
        assert_eq!((*key, *id), (1, 9));
        let pex = Pex::decode(payload).unwrap();
        assert_eq!(pex.added, vec![addr(2)]);
        assert_eq!(pex.added_flags, vec![Pex::FLAG_SEED]);
        assert_eq!(a.pex.due(), now + interval);
        // Due again, nothing changed: no message. A peer without ut_pex is never told.
        let mut c = PeerRecord::new(addr(3), now, now);
        let later = now + interval;
        assert!(round(later, interval, &known, [(1, &mut a), (3, &mut c)]).is_empty());
    }

    #[test]
    fn received_is_capped_and_garbage_ignored() {
        let many = Pex {
            added: (0..60).map(addr).collect(),
            ..Pex::default()
        };
        assert_eq!(
            received(&many.encode()).map(|v| v.len()),
            Some(Pex::MAX_PEERS)
        );
        assert_eq!(received(b"garbage"), None);
        assert_eq!(received(&Pex::default().encode()), None);
    }
}
