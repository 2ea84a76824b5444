//! BEP 6 choke plumbing shared by both swarms: what a CHOKE or UNCHOKE puts on the wire, what
//! happens to the requests a choke drops, and how a request we will not serve is refused.
//!
//! Owns the wire consequences and our upload side's per-peer state ([`UploadSlot`]); who gets
//! a slot is the choking policy's (the VoD [`crate::choker`], the live swarm's rechoke), never
//! this module's.

use std::collections::VecDeque;
use std::time::Instant;

use crate::choker::{Drain, SlotPeer};
use crate::wire::{BlockRef, Message};

/// Our upload side to one peer, the same for both swarms: whether we choke it and since when,
/// the requests it queued with us, and whether the blocks we hand the engine for it drain
/// (upload snubbing, [`crate::choker::Drain`]).
#[derive(Debug, Clone)]
pub struct UploadSlot {
    /// We choke it (every peer starts choked).
    pub am_choking: bool,
    /// When we last choked or unchoked it.
    pub since: Instant,
    /// Its requests waiting to be served (emptied by a choke).
    pub queued: VecDeque<BlockRef>,
    /// Blocks handed to the engine for it and whether they drain.
    pub drain: Drain,
}

impl UploadSlot {
    /// A new peer at `now`: choked, nothing queued.
    pub fn new(now: Instant) -> UploadSlot {
        UploadSlot {
            am_choking: true,
            since: now,
            queued: VecDeque::new(),
            drain: Drain::default(),
        }
    }

    /// We choke or unchoke it at `now` ([`set_choking`]); a change restarts [`Self::since`].
    /// Returns the messages to send.
    pub fn set_choking(&mut self, fast: bool, choke: bool, now: Instant) -> Vec<Message> {
        if self.am_choking != choke {
            self.since = now;
        }
        set_choking(&mut self.am_choking, fast, &mut self.queued, choke)
    }

    /// The peer `peer` as the between-rounds slot rule ([`crate::choker::swaps`]) sees it at
    /// `now`: whether it is `interested` and holds its slot `idle` are the swarm's to say.
    pub fn slot_peer(&self, peer: u64, interested: bool, idle: bool, now: Instant) -> SlotPeer {
        SlotPeer {
            peer,
            unchoked: !self.am_choking,
            interested,
            snubbed: self.drain.snubbed(now),
            idle,
            since: self.since,
        }
    }
}

/// We choke (`choke`) or unchoke a peer. `am_choking` is our side's state for it, `queued` its
/// requests waiting to be served. Returns the messages to send, in order: nothing when the
/// state does not change; otherwise CHOKE or UNCHOKE, and after a CHOKE a REJECT for every
/// queued request when the peer speaks BEP 6 (`fast`; without it a choke drops them silently,
/// as BEP 3 says). The queue is emptied by a choke.
pub fn set_choking(
    am_choking: &mut bool,
    fast: bool,
    queued: &mut VecDeque<BlockRef>,
    choke: bool,
) -> Vec<Message> {
    if *am_choking == choke {
        return Vec::new();
    }
    *am_choking = choke;
    if !choke {
        return vec![Message::Unchoke];
    }
    let mut out = Vec::with_capacity(1 + if fast { queued.len() } else { 0 });
    out.push(Message::Choke);
    let dropped = queued.drain(..);
    if fast {
        out.extend(dropped.map(Message::Reject));
    }
    out
}

/// The peer choked us. Returns true when our requests in flight to it are gone (no BEP 6:
/// a choke drops them silently; the caller hands them to other peers). With BEP 6 they stay
/// until it sends a REJECT or the data.
pub fn on_choked(peer_choking: &mut bool, fast: bool) -> bool {
    *peer_choking = true;
    !fast
}

/// A request we will not serve: a BEP 6 peer is told with a REJECT, others get silence.
pub fn refuse(fast: bool, block: BlockRef) -> Option<Message> {
    fast.then_some(Message::Reject(block))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(i: u32) -> BlockRef {
        BlockRef {
            index: i,
            begin: 0,
            len: 16384,
        }
    }

    #[test]
    fn choke_rejects_queued_requests_only_for_fast_peers() {
        for fast in [true, false] {
            let mut choking = false;
            let mut queued: VecDeque<BlockRef> = [block(1), block(2)].into();
            let out = set_choking(&mut choking, fast, &mut queued, true);
            let mut want = vec![Message::Choke];
            if fast {
                want.extend([Message::Reject(block(1)), Message::Reject(block(2))]);
            }
            assert_eq!(out, want);
            assert!(choking && queued.is_empty());
            // No change, no message.
            assert!(set_choking(&mut choking, fast, &mut queued, true).is_empty());
            assert_eq!(
                set_choking(&mut choking, fast, &mut queued, false),
                vec![Message::Unchoke]
            );
        }
    }

    #[test]
    fn their_choke_drops_requests_without_bep6() {
        let mut c = false;
        assert!(on_choked(&mut c, false));
        assert!(c);
        assert!(!on_choked(&mut c, true));
        assert_eq!(refuse(true, block(3)), Some(Message::Reject(block(3))));
        assert_eq!(refuse(false, block(3)), None);
    }
}
