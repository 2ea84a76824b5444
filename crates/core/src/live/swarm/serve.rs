//! Our upload side of the live swarm: requests we accept or refuse (the source's copy cap),
//! the serving queue handed to the engine, and who gets our upload slots (rechokes, the
//! between-rounds swaps, the slot a peer that needs nothing gives up).

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Action, LiveSwarm, PeerKey};
use crate::choker::{self, SlotPeer};
use crate::ext::choke;
use crate::ext::handshake::Extension;
use crate::live::LiveMsg;
use crate::wire::{BlockRef, Message, BLOCK_LEN, MAX_REQUEST_LEN};

/// Serving order of a queued request: (class: first wave, allowed copy, rescue; index, when the
/// peer first asked for that piece, offset); lowest first.
type ServeRank = (u8, u32, u64, u32);

/// A peer that wants a slot, as a rechoke sees it.
struct Candidate {
    key: PeerKey,
    /// Our upload rate to it.
    served: u64,
    /// When it was last choked or unchoked.
    since: Instant,
    choked: bool,
    /// It announced pieces (a newcomer has none).
    holds: bool,
    /// Peers can dial it (see [`crate::ext::peer::PeerRecord::reachable`]).
    reachable: bool,
}

/// How often the unchoked set is recomputed (and the optimistic slot rotates).
pub(super) const RECHOKE_EVERY: Duration = Duration::from_secs(3);
/// Piece durations after its first wave during which the source's copies of a piece are
/// taken to be on their way (their holders keep their slots; see
/// [`LiveSwarm::copy_holders`]).
const COPY_IN_FLIGHT: u32 = 4;
/// Blocks a choked peer may still ask for, per choke, of pieces we started sending it (two
/// pieces of 32 blocks: the rest of what was on its way, see [`LiveSwarm::set_choking`]).
pub(super) const FINISH_BUDGET: u32 = 64;
/// An unchoked peer that asked for nothing this long gives its slot to a waiting one.
pub(super) const IDLE_SLOT: Duration = Duration::from_secs(1);

impl LiveSwarm {
    /// A peer's REQUEST: queued for serving when we unchoke it, hold the piece or are
    /// assembling it (the block is served when it arrives), the block is inside it and its
    /// queue has room (and, at the source, the copy cap allows); otherwise refused (BEP 6
    /// reject when it speaks the fast extension).
    pub(super) fn on_request(&mut self, key: PeerKey, b: BlockRef, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.last_request = Some(now);
        let fast = peer.fast;
        let valid = self.headers.get(&b.index).is_some_and(|h| {
            b.len > 0
                && b.len <= MAX_REQUEST_LEN
                && u64::from(b.begin) + u64::from(b.len) <= u64::from(h.length)
        });
        // A choke ends new pieces, not one we started sending it (see `set_choking`), within
        // a budget.
        let finishing =
            peer.up.am_choking && peer.finish_left > 0 && peer.hashes_sent.contains(&b.index);
        let mut ok = peer.ready
            && (!peer.up.am_choking || finishing)
            && valid
            && (self.have.contains(&b.index)
                || self.checking.contains_key(&b.index)
                || self.downloads.contains_key(&b.index))
            && peer.up.queued.len() < self.config.max_peer_requests;
        if ok && self.config.source {
            ok = self.source_may_serve(key, b.index, now);
        }
        if !ok {
            if let Some(reject) = choke::refuse(fast, b) {
                self.send(key, reject);
            }
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.up.queued.contains(&b) {
            if finishing {
                peer.finish_left -= 1;
            }
            peer.up.queued.push_back(b);
            if !peer.first_ask.contains_key(&b.index) {
                if peer.first_ask.len() >= self.config.max_peer_requests {
                    peer.first_ask.pop_first();
                }
                peer.first_ask.insert(b.index, self.asks);
                self.asks += 1;
            }
        }
        self.pump_reads();
    }

    /// The source serves a piece to its first wave and to at most
    /// [`LiveConfig::source_copies`] peers in all, the first wave included; the rest get it
    /// from those peers. A copy counts when a peer asks for it: a first-wave peer that never
    /// asks (idle, or gone) leaves its copy to a peer that does.
    ///
    /// With [`LiveConfig::source_rescue_after`] set, a piece older than that goes to anyone
    /// (after every fresh piece: see [`Self::pump_reads`]).
    fn source_may_serve(&mut self, key: PeerKey, index: u32, now: Instant) -> bool {
        if let Some((at, _)) = self.first_wave.get(&index) {
            let rescue = self.config.source_rescue_after;
            if rescue.is_some_and(|after| now.saturating_duration_since(*at) >= after) {
                return true;
            }
        }
        let limit = self.config.source_copies.max(self.config.source_fanout);
        let to = self.served_to.entry(index).or_default();
        if to.contains(&key) {
            return true;
        }
        // A hard cap whoever asks (a first-wave peer that asks after the copies went gets
        // the piece from relays). Copies are not held for the first wave: refused viewers
        // wait `REFUSAL_MEMORY` before asking the source again, and holding them for half a
        // second cost a well-provisioned swarm of 10 two points of continuity.
        if to.len() >= limit {
            return false;
        }
        to.push(key);
        true
    }

    /// Hands queued requests to the engine, at most [`LiveConfig::max_reads_total`] blocks at
    /// a time for all peers together, so what waits behind the upload limit stays short (a
    /// deep queue is seconds of delay for every viewer). Order: the source serves a piece's
    /// first wave before anyone else; then the earliest deadline (lowest index) first, and
    /// among equals the peer that asked for the piece first, whole: the first copy is
    /// complete (and relayed on) after one copy's time, where interleaving the blocks of five
    /// requesters made all five wait for all five copies.
    pub(super) fn pump_reads(&mut self) {
        let per_peer = self.config.max_reads_in_flight;
        while self.reads_total < self.config.max_reads_total {
            let mut best: Option<(ServeRank, PeerKey, usize)> = None;
            for (&k, p) in &self.peers {
                if p.up.drain.in_flight() >= per_peer {
                    continue;
                }
                for (pos, b) in p.up.queued.iter().enumerate() {
                    if !self.servable(b) {
                        continue;
                    }
                    // The source: first wave, then the few copies it allows, then rescues.
                    let class = if !self.config.source
                        || self
                            .first_wave
                            .get(&b.index)
                            .is_some_and(|(_, w)| w.contains(&k))
                    {
                        0
                    } else if self.served_to.get(&b.index).is_some_and(|w| w.contains(&k)) {
                        1
                    } else {
                        2
                    };
                    let asked = p.first_ask.get(&b.index).copied().unwrap_or(u64::MAX);
                    let rank = (class, b.index, asked, b.begin);
                    if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                        best = Some((rank, k, pos));
                    }
                }
            }
            let Some((_, key, pos)) = best else { break };
            let Some(peer) = self.peers.get_mut(&key) else {
                break;
            };
            let Some(block) = peer.up.queued.remove(pos) else {
                break;
            };
            peer.up.drain.handed();
            let hashes_due = peer.hashes_sent.insert(block.index);
            self.reads_total += 1;
            if hashes_due {
                self.send_hashes(key, block.index);
            }
            let data = self.early_data(&block);
            if data.is_some() {
                self.stats.blocks_relayed_early += 1;
            }
            self.actions.push_back(Action::SendBlock {
                peer: key,
                block,
                data,
            });
        }
    }

    /// True when we can send this block now: the piece is held (or being checked), or the
    /// block itself is verified in a piece we are assembling.
    fn servable(&self, b: &BlockRef) -> bool {
        self.have.contains(&b.index) || self.early_block(b).is_some()
    }

    /// The bytes of a block we hold outside the engine's window: in a piece being checked, or
    /// a verified block (whole, as requested) of a piece in assembly.
    fn early_data(&self, b: &BlockRef) -> Option<Bytes> {
        self.early_block(b).map(|(bytes, range)| bytes.slice(range))
    }

    /// Where [`Self::early_data`] finds a block: the buffer and the range of it, without
    /// touching its reference count ([`Self::servable`] asks this of every queued request on
    /// every hand-out).
    fn early_block(&self, b: &BlockRef) -> Option<(&Bytes, std::ops::Range<usize>)> {
        if self.have.contains(&b.index) {
            return None;
        }
        let (s, e) = (b.begin as usize, b.begin as usize + b.len as usize);
        if let Some((_, payload)) = self.checking.get(&b.index) {
            return (e <= payload.len()).then_some((payload, s..e));
        }
        let dl = self.downloads.get(&b.index)?;
        let block = dl.blocks.get((b.begin / BLOCK_LEN) as usize)?.as_ref()?;
        (b.begin.is_multiple_of(BLOCK_LEN) && b.len as usize == block.len())
            .then_some((block, 0..block.len()))
    }

    /// Sends the block hashes of `index` (they go before its first block on a connection).
    fn send_hashes(&mut self, key: PeerKey, index: u32) {
        let (Some(hashes), Some(id)) = (
            self.hashes.get(&index),
            self.peers
                .get(&key)
                .and_then(|p| p.rec.ext.id(Extension::PcLive)),
        ) else {
            return;
        };
        let msg = LiveMsg::Hashes {
            index,
            hashes: hashes.clone(),
        };
        self.send(
            key,
            Message::Extended {
                id,
                payload: msg.encode(),
            },
        );
    }

    /// Chokes or unchokes a peer. A choke ends what new pieces it may ask for, not a piece it
    /// is getting: the requests it queued for pieces we started sending it (their hashes
    /// went out) are still served — BEP 6 lets a choking peer serve and reject only the rest
    /// — and so are its later requests for those pieces ([`Self::on_request`]; our scheduler
    /// asks a choking peer for the rest of a piece it sent us part of). A piece cut off
    /// mid-way strands its holder: with requests in flight capped below a piece's blocks, the
    /// last blocks were never asked for, and the relays behind it could not finish it either
    /// (simulator, 100 viewers at 5 Mbit/s, 1–5 ms RTT: continuity 96.6 → 99.4 %). Later
    /// requests are taken up to [`FINISH_BUDGET`] blocks per choke, so a choked peer cannot
    /// keep pulling the pieces it once started.
    pub(super) fn set_choking(&mut self, key: PeerKey, choke: bool, now: Instant) {
        if let Some(p) = self.peers.get_mut(&key) {
            if choke && !p.up.am_choking {
                p.finish_left = FINISH_BUDGET;
            }
            let finish: VecDeque<BlockRef> = if choke && p.fast && !p.up.am_choking {
                let (finish, rest) =
                    p.up.queued
                        .drain(..)
                        .partition(|b| p.hashes_sent.contains(&b.index));
                p.up.queued = rest;
                finish
            } else {
                VecDeque::new()
            };
            let msgs = p.up.set_choking(p.fast, choke, now);
            p.up.queued.extend(finish);
            self.actions
                .extend(msgs.into_iter().map(|m| Action::Send(key, m)));
        }
    }

    /// Upload slots: the source's [`LiveConfig::source_slots`] (few, so its upload stays near
    /// the bitrate and its peers get whole pieces fast enough to relay them); a viewer's as
    /// many as the whole copies of the stream its upload carried lately, between one and
    /// [`LiveConfig::unchoke_slots`] (see [`Self::size_slots`]).
    pub(super) fn slots(&self) -> usize {
        if self.config.source {
            self.config.source_slots.max(self.config.source_fanout)
        } else {
            self.viewer_slots.clamp(1, self.config.unchoke_slots.max(1))
        }
    }

    /// Sizes a viewer's regular slots to its uplink, at each rechoke: as many as the whole
    /// copies of the stream its upload carried lately (at least one). The optimistic slot on
    /// top probes for more: an uplink that carries one copy more than its slots earns a slot
    /// at the next rechoke, one that does not keeps what it has. A slot beyond the uplink's
    /// capacity is not free: every peer it feeds queues behind the others, and each hop of the
    /// relay tree waits that long — measured in the simulator at 60 viewers whose uplinks
    /// carry two copies, four fixed slots put the median piece 1.8 s behind the source, one
    /// slot 0.8 s; but one fixed slot left half the capacity of faster uplinks unused.
    fn size_slots(&mut self) {
        if self.bitrate == 0 {
            return;
        }
        let up: u64 = self.peers.values().map(|p| p.rec.traffic.up.rate()).sum();
        self.viewer_slots =
            ((up / self.bitrate) as usize).clamp(1, self.config.unchoke_slots.max(1));
    }

    /// The interested peer we have choked longest (the next to get a slot).
    pub(super) fn longest_waiting(&self, now: Instant) -> Option<PeerKey> {
        self.peers
            .iter()
            .filter(|(_, p)| {
                p.ready && p.peer_interested && p.up.am_choking && !p.up.drain.snubbed(now)
            })
            .min_by_key(|(&k, p)| (p.up.since, k))
            .map(|(&k, _)| k)
    }

    pub(super) fn unchoked(&self) -> usize {
        self.peers.values().filter(|p| !p.up.am_choking).count()
    }

    /// Every [`RECHOKE_EVERY`]: keep unchoked the peers we upload to most (they fetch from us
    /// and relay on: a stable tree forms, each node feeding a few at full speed instead of many
    /// at a trickle), up to [`Self::slots`], plus one optimistic slot that rotates to the
    /// interested peer choked longest, so a newcomer always gets a way in.
    pub(super) fn rechoke(&mut self, now: Instant) {
        if self.next_optimistic.is_some_and(|t| now < t) {
            return self.swap_slots(now);
        }
        self.next_optimistic = Some(now + RECHOKE_EVERY);
        self.size_slots();
        let slots = self.slots();
        let mut interested: Vec<Candidate> = self
            .peers
            .iter()
            // A peer whose blocks do not drain waits until they do.
            .filter(|(_, p)| p.ready && p.peer_interested && !p.up.drain.snubbed(now))
            .map(|(&k, p)| Candidate {
                key: k,
                served: p.rec.traffic.up.rate(),
                since: p.up.since,
                choked: p.up.am_choking,
                holds: !p.has.is_empty(),
                reachable: p.rec.reachable(),
            })
            .collect();
        // Most served first; among equals those unchoked longest (stable). The source serves
        // peers that others can dial first: its copies are the roots of the relay tree, and a
        // root every viewer can connect to feeds more of them than one behind a NAT, which
        // only the peers it dialled itself (or an introduction) reach.
        let source = self.config.source;
        interested.sort_by_key(|c| {
            (
                source && !c.reachable,
                Reverse(c.served),
                c.choked,
                c.since,
                c.key,
            )
        });
        let mut keep: Vec<PeerKey> = interested.iter().take(slots).map(|c| c.key).collect();
        // The optimistic slot: a peer that holds nothing yet (a newcomer) first, then the one
        // choked longest. With slots sized to the uplink a viewer has few, and at 1,000
        // simulated viewers 37 newcomers waited in line behind peers that were already
        // playing and never started; first in line, none.
        let optimistic = interested
            .iter()
            .skip(slots)
            .filter(|c| c.choked)
            .min_by_key(|c| (c.holds, c.since))
            .or_else(|| interested.get(slots))
            .map(|c| c.key);
        keep.extend(optimistic);
        if self.config.source {
            let holders: Vec<PeerKey> = self.copy_holders(now).collect();
            for k in holders {
                if !keep.contains(&k) {
                    keep.push(k);
                }
            }
        }
        let all: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in all {
            let choke = !keep.contains(&k);
            self.set_choking(k, choke, now);
        }
    }

    /// Source only: the peers holding one of its copies of a piece whose first wave went out
    /// within [`COPY_IN_FLIGHT`] piece durations (a copy still on its way). They keep their
    /// slot: choked mid-piece, a copy holder asks no more of us, and the copy cap refuses
    /// everyone else, so the blocks it had not asked for yet reach nobody — in the simulator
    /// (5 Mbit/s, ten blocks a piece) every piece in flight at a rechoke, one in twelve, went
    /// missing at every viewer.
    fn copy_holders(&self, now: Instant) -> impl Iterator<Item = PeerKey> + '_ {
        let piece = self.source_delay();
        self.first_wave
            .iter()
            .rev()
            .take_while(move |(_, (at, _))| {
                now.saturating_duration_since(*at) < piece * COPY_IN_FLIGHT
            })
            .filter_map(|(i, _)| self.served_to.get(i))
            .flatten()
            .copied()
    }

    /// Between rechokes ([`choker::swaps`]): a slot held by a peer whose blocks do not drain
    /// (snubbed: it requests and never reads), or that has not asked for anything for
    /// [`IDLE_SLOT`] (it is ahead of us), goes to an interested peer we choke, longest choked
    /// first — in live, everyone is interested in everyone, so slots follow actual requests.
    pub(super) fn swap_slots(&mut self, now: Instant) {
        let peers: Vec<SlotPeer> = self
            .peers
            .iter()
            .map(|(&peer, p)| {
                let asked_lately = p
                    .last_request
                    .is_some_and(|t| now.saturating_duration_since(t) < IDLE_SLOT);
                let idle = now.saturating_duration_since(p.up.since) >= IDLE_SLOT && !asked_lately;
                p.up.slot_peer(peer, p.ready && p.peer_interested, idle, now)
            })
            .collect();
        for (lose, take) in choker::swaps(&peers) {
            self.set_choking(lose, true, now);
            self.set_choking(take, false, now);
        }
    }
}
