//! The VoD swarm's upload side: requests we queue or refuse, the block reads handed to the
//! engine (at most `max_reads_in_flight` per peer) and reported sent, and who gets our upload
//! slots (choking rounds and the between-rounds swaps of peers whose blocks do not drain).

use std::time::Instant;

use super::{Action, PeerKey, Swarm};
use crate::choker::{self, Candidate, SlotPeer};
use crate::disconnect::{DisconnectReason, ProtocolViolation};
use crate::ext::choke;
use crate::wire::{BlockRef, MAX_REQUEST_LEN};

impl Swarm {
    /// The engine sent a block that [`Action::Read`] asked for (or gave up on it: `sent` false).
    pub fn on_block_sent(&mut self, key: PeerKey, block: BlockRef, sent: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.up.drain.done();
        if sent {
            peer.rec.traffic.up.add(u64::from(block.len));
            self.stats.uploaded += block.len as u64;
        }
        self.pump_reads(key);
    }

    pub(super) fn on_request(&mut self, key: PeerKey, b: BlockRef) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let valid = self.picker.as_ref().is_some_and(|p| {
            b.index < p.num_pieces()
                && b.len > 0
                && b.len <= MAX_REQUEST_LEN
                && b.begin as u64 + b.len as u64 <= p.piece_len(b.index) as u64
        });
        if !valid {
            self.disconnect(
                key,
                DisconnectReason::Protocol(ProtocolViolation::BadRequest),
            );
            return;
        }
        let have = self.picker.as_ref().is_some_and(|p| p.have().get(b.index));
        let refuse =
            peer.up.am_choking || !have || peer.up.queued.len() >= self.config.max_peer_requests;
        if refuse {
            if let Some(reject) = choke::refuse(peer.fast, b) {
                self.send(key, reject);
            }
            return;
        }
        peer.up.queued.push_back(b);
        self.pump_reads(key);
    }

    pub(super) fn set_choking(&mut self, key: PeerKey, choke: bool, now: Instant) {
        if let Some(p) = self.peers.get_mut(&key) {
            let msgs = p.up.set_choking(p.fast, choke, now);
            p.sent_recently |= !msgs.is_empty();
            let sends = msgs.into_iter().map(|m| Action::Send(key, m));
            self.actions.extend(sends);
        }
    }

    pub(super) fn unchoked_count(&self) -> usize {
        self.peers.values().filter(|p| !p.up.am_choking).count()
    }

    pub(super) fn choke_round(&mut self, now: Instant) {
        let seeding = self.is_complete();
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .map(|(&peer, p)| Candidate {
                peer,
                // A peer whose blocks do not drain waits until they do.
                interested: p.peer_interested && !p.up.drain.snubbed(now),
                rate: if seeding {
                    p.rec.traffic.up.rate()
                } else {
                    p.rec.traffic.down.rate()
                },
            })
            .collect();
        let unchoke = self.choker.round(now, &candidates);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.set_choking(key, !unchoke.contains(&key), now);
        }
    }

    /// Between rounds: a peer whose blocks do not drain gives its slot to a waiting one
    /// ([`choker::swaps`]).
    pub(super) fn swap_snubbed(&mut self, now: Instant) {
        let peers: Vec<SlotPeer> = self
            .peers
            .iter()
            .map(|(&peer, p)| p.up.slot_peer(peer, p.peer_interested, false, now))
            .collect();
        for (lose, take) in choker::swaps(&peers) {
            self.set_choking(lose, true, now);
            self.set_choking(take, false, now);
        }
    }

    pub(super) fn pump_reads(&mut self, key: PeerKey) {
        let max = self.config.max_reads_in_flight;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        while peer.up.drain.in_flight() < max {
            let Some(block) = peer.up.queued.pop_front() else {
                break;
            };
            peer.up.drain.handed();
            self.actions.push_back(Action::Read { peer: key, block });
        }
    }
}
