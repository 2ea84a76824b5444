//! The deadline scheduler: which missing blocks to request from whom, and the assembly of
//! received blocks into pieces.
//!
//! Policy: walk the window in index order from the playhead (or, with no player or one that
//! fell out of the window, from `relay_margin` before where the swarm is — the median of our
//! peers' newest pieces, the edge when they announced none — so a relay keeps up with its
//! peers and a newcomer starts with pieces they can serve) to the edge; for each missing piece
//! whose header is known, request its blocks from peers that announced it, each block from the
//! peer with the fewest requests in flight (ties: the faster). A piece may be split over
//! several peers. A block outstanding longer than its timeout (short for the pieces at the
//! playhead, whose deadline is now) is cancelled and asked of another peer. Pieces beyond the
//! edge or before the window are never requested; at most `max_in_progress` pieces are
//! assembled at once: at the cap, a piece that cannot move (nothing received, nothing in
//! flight) gives its slot to one a peer can serve now, and pieces the player passed are
//! forgotten.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Action, Download, LiveSwarm, Peer, PeerKey, Slot};
use crate::disconnect::{DisconnectReason, ProtocolViolation};
use crate::ext::receipt;
use crate::wire::{BlockRef, Message, BLOCK_LEN};

/// How long a peer's refusal of a piece keeps us from asking it again (the source refuses
/// pieces beyond its copies; a relay has it by the time this passes).
pub(super) const REFUSAL_MEMORY: Duration = Duration::from_secs(5);

impl LiveSwarm {
    /// Requests what is missing, in deadline order.
    pub(super) fn schedule(&mut self, now: Instant) {
        if self.params.is_none() {
            return;
        }
        let Some(edge) = self.edge else { return };
        let first = self.first();
        // A player that fell out of the window (a pause, a slow reader) starts again near the
        // edge like a new one: what it waited for left everyone's window.
        let resume = self.window().and_then(|w| w.resume(self.playhead?, edge));
        let start = match resume {
            Some(p) => p,
            None => self
                .swarm_front(edge)
                .saturating_sub(self.config.relay_margin)
                .max(first),
        };
        if start != self.want_from {
            self.want_from = start;
            self.refresh_interest(|_| true);
        }
        if start > edge {
            return;
        }
        self.drop_passed_downloads(start);
        // Nobody can take a request: nothing to walk (the common case under load, and the
        // walk costs peers × pieces).
        // (Requests that are late still walk: they are marked so their deadline leaves.)
        let late = self.next_block_timeout().is_some_and(|t| t <= now);
        let mut open = std::mem::take(&mut self.open);
        open.clear();
        open.extend(
            self.peers
                .iter()
                .filter(|(_, p)| !p.peer_choking && self.has_room(p))
                .map(|(&k, _)| k),
        );
        // A peer that choked us still finishes the pieces it sent us part of (see `usable`):
        // found from the pieces in assembly, not by scanning them for every peer.
        for &k in self.downloads.values().flat_map(|d| &d.contributors) {
            if self
                .peers
                .get(&k)
                .is_some_and(|p| p.peer_choking && self.has_room(p))
                && !open.contains(&k)
            {
                open.push(k);
            }
        }
        self.open = open;
        if !late && self.open.is_empty() {
            return;
        }
        let wanted: Vec<u32> = self
            .headers
            .range(start..=edge)
            .map(|(&i, _)| i)
            .filter(|i| !self.have.contains(i) && !self.checking.contains_key(i))
            .collect();
        for index in wanted {
            if !self.downloads.contains_key(&index) {
                // At the cap, only a slot that cannot move may be given (see `idle_download`).
                let give = if self.downloads.len() >= self.config.max_in_progress {
                    let Some(idle) = self.idle_download() else {
                        break;
                    };
                    Some(idle)
                } else {
                    None
                };
                if self.pick_peer(index, None, now).is_none() {
                    continue;
                }
                if let Some(idle) = give {
                    self.downloads.remove(&idle);
                    self.refuse_queued(idle);
                }
                let Some(header) = self.headers.get(&index).copied() else {
                    continue;
                };
                let blocks = header.length.div_ceil(BLOCK_LEN) as usize;
                let only = self.suspect.remove(&index).and_then(|senders| {
                    senders
                        .into_iter()
                        .filter(|k| self.peers.get(k).is_some_and(|p| p.has.contains(&index)))
                        .max_by_key(|k| self.peers.get(k).map_or(0, |p| p.hash_fails))
                });
                self.downloads.insert(
                    index,
                    Download {
                        header,
                        blocks: vec![None; blocks],
                        slots: vec![Slot::Missing; blocks],
                        contributors: Vec::new(),
                        only,
                    },
                );
            }
            self.request_piece(index, now);
        }
    }

    /// Tells each peer that `which` selects whether we are interested: whether it announced a
    /// piece from where we fetch ([`Self::want_from`]) on that we do not hold. Meaningful
    /// interest is what lets an uploader give its few slots to the peers that need its pieces
    /// (those behind it) instead of rotating them among peers that are ahead and ask for
    /// nothing — with everyone interested in everyone, measured in the simulator, viewers'
    /// uplinks sat at a fifth of their capacity while a third of the audience stalled.
    pub(super) fn refresh_interest(&mut self, which: impl Fn(&Peer) -> bool) {
        let from = self.want_from;
        let Self {
            peers,
            have,
            actions,
            ..
        } = self;
        for (&k, p) in peers.iter_mut() {
            if !p.ready || !which(p) {
                continue;
            }
            let wants = p.has.range(from..).any(|i| !have.contains(i));
            if wants != p.am_interested {
                p.am_interested = wants;
                let msg = if wants {
                    Message::Interested
                } else {
                    Message::NotInterested
                };
                actions.push_back(Action::Send(k, msg));
            }
        }
    }

    /// Where the swarm around us is: the median of our ready peers' newest announced pieces
    /// (`edge` when none announced anything). A node without a player starts there, not at
    /// the edge: when the relays are seconds behind the source, only those next to it hold
    /// the edge, and a newcomer aiming at it got nothing from anyone else until the pieces it
    /// wanted left the window (seen in the simulator: a third of 200 viewers never started).
    fn swarm_front(&self, edge: u32) -> u32 {
        let mut newest: Vec<u32> = self
            .peers
            .values()
            .filter(|p| p.ready)
            .filter_map(|p| p.has.last().copied())
            .collect();
        if newest.is_empty() {
            return edge;
        }
        let mid = newest.len() / 2;
        *newest.select_nth_unstable(mid).1
    }

    /// Forgets the pieces the player has passed (below `start`) that nothing is in flight
    /// for: they are never asked for again, so they would hold an assembly slot until they
    /// left the window. Late requests still out for them are cancelled.
    fn drop_passed_downloads(&mut self, start: u32) {
        let passed: Vec<u32> = self
            .downloads
            .range(..start)
            .filter(|(_, dl)| !dl.slots.iter().any(|s| matches!(s, Slot::Requested(..))))
            .map(|(&i, _)| i)
            .collect();
        for i in passed {
            if self.downloads.remove(&i).is_some() {
                self.cancel_slots(i);
                self.refuse_queued(i);
            }
        }
    }

    /// A piece in assembly that cannot move — nothing received, nothing in flight (its peers
    /// choked us or left) — whose slot may go to a piece a peer can serve now; the newest
    /// such. A piece retried from one suspect sender still connected is not one: that is how
    /// its culprit is found. Without this a viewer whose slots all waited on pieces only
    /// choking or departed peers held asked for nothing newer until they left the window (seen
    /// in the simulator at 1,000 viewers).
    fn idle_download(&self) -> Option<u32> {
        self.downloads
            .iter()
            .filter(|(_, dl)| {
                dl.slots.iter().all(|s| *s == Slot::Missing)
                    && !dl.only.is_some_and(|k| self.peers.contains_key(&k))
            })
            .map(|(&i, _)| i)
            .max()
    }

    /// Requests the missing (and late) blocks of one piece.
    fn request_piece(&mut self, index: u32, now: Instant) {
        let timeout = self.timeout_for(index);
        let Some(dl) = self.downloads.get(&index) else {
            return;
        };
        let length = dl.header.length;
        let only = dl.only.filter(|k| self.peers.contains_key(k));
        let slots: Vec<(usize, Slot)> = dl.slots.iter().copied().enumerate().collect();
        for (i, slot) in slots {
            let exclude = match slot {
                Slot::Done => continue,
                Slot::Requested(_, at) if now.saturating_duration_since(at) < timeout => continue,
                Slot::Requested(p, _) | Slot::Late(p) => Some(p),
                Slot::Missing => None,
            };
            let pick = match only {
                Some(k) if exclude.is_none() && self.usable(k, index, now) => Some(k),
                Some(_) => None,
                // The late peer again when nobody else has it (it may be slow, or may have
                // dropped the request: the source does so beyond its copies).
                None => self
                    .pick_peer(index, exclude, now)
                    .or_else(|| exclude.filter(|&p| self.usable(p, index, now))),
            };
            let Some(peer) = pick else {
                let Some(late) = exclude else {
                    // Nobody can take more requests for this piece now.
                    return;
                };
                // Still out to the late peer; no timer for it any more.
                if let Some(s) = self
                    .downloads
                    .get_mut(&index)
                    .and_then(|d| d.slots.get_mut(i))
                {
                    *s = Slot::Late(late);
                }
                continue;
            };
            let begin = i as u32 * BLOCK_LEN;
            let b = BlockRef {
                index,
                begin,
                len: BLOCK_LEN.min(length - begin),
            };
            if let Some(late) = exclude {
                self.drop_request(late, b);
            }
            if let Some(p) = self.peers.get_mut(&peer) {
                p.outstanding.push((b, now));
            }
            if let Some(s) = self
                .downloads
                .get_mut(&index)
                .and_then(|d| d.slots.get_mut(i))
            {
                *s = Slot::Requested(peer, now);
            }
            self.stats.requests_sent += 1;
            self.send(peer, Message::Request(b));
        }
    }

    /// When the next block request in flight becomes late (see [`Self::timeout_for`]).
    pub(super) fn next_block_timeout(&self) -> Option<Instant> {
        self.downloads
            .iter()
            .flat_map(|(&index, dl)| {
                let timeout = self.timeout_for(index);
                dl.slots.iter().filter_map(move |s| match s {
                    Slot::Requested(_, at) => Some(*at + timeout),
                    _ => None,
                })
            })
            .min()
    }

    /// Marks the requests that are late at `now` and still out (nobody else could take them):
    /// from now on they move on events, so no deadline stays in the past.
    pub(super) fn mark_late(&mut self, now: Instant) {
        let timeouts: Vec<(u32, Duration)> = self
            .downloads
            .keys()
            .map(|&i| (i, self.timeout_for(i)))
            .collect();
        for (index, timeout) in timeouts {
            let Some(dl) = self.downloads.get_mut(&index) else {
                continue;
            };
            for s in &mut dl.slots {
                if let Slot::Requested(p, at) = *s {
                    if now.saturating_duration_since(at) >= timeout {
                        *s = Slot::Late(p);
                    }
                }
            }
        }
    }

    fn timeout_for(&self, index: u32) -> Duration {
        match self.playhead {
            Some(p) if index <= p.saturating_add(1) => self.config.urgent_timeout,
            _ => self.config.block_timeout,
        }
    }

    /// True when `key` announced the piece, has room for a request and unchokes us — or,
    /// choking us, sent us a block of this piece already: a choke ends new pieces, not one on
    /// its way (its uploader still serves those, see `LiveSwarm::set_choking`).
    ///
    /// Room: about a second of what the peer delivered lately (at least `min_outstanding`
    /// blocks, at most `max_outstanding`). More would only queue behind its upload limit, where a request
    /// waits instead of going to a peer with spare upload.
    fn usable(&self, key: PeerKey, index: u32, now: Instant) -> bool {
        // Cheapest tests first: this runs for every peer for every block scheduled.
        self.peers.get(&key).is_some_and(|p| {
            self.has_room(p)
                && (!p.peer_choking || self.sent_us_part_of(key, index))
                && p.has.contains(&index)
                && !p.refused.iter().any(|&(i, at)| {
                    i == index && now.saturating_duration_since(at) < REFUSAL_MEMORY
                })
        })
    }

    /// True when the peer is ready and has room for another request (see [`Self::usable`];
    /// whether it unchokes us is the caller's to check).
    fn has_room(&self, p: &Peer) -> bool {
        if !p.ready {
            return false;
        }
        let room = (p.rec.traffic.down.rate() / u64::from(BLOCK_LEN)).clamp(
            self.config.min_outstanding as u64,
            self.config.max_outstanding.max(self.config.min_outstanding) as u64,
        ) as usize;
        p.outstanding.len() < room
    }

    /// True when `key` sent us a block of piece `index`, which we are still assembling: it
    /// finishes that piece for us even after choking us.
    fn sent_us_part_of(&self, key: PeerKey, index: u32) -> bool {
        self.downloads
            .get(&index)
            .is_some_and(|d| d.contributors.contains(&key))
    }

    /// The peer to ask for a block of `index`: a usable one with the fewest requests in
    /// flight, then the fastest.
    /// Only the peers that had room when this scheduling pass began ([`LiveSwarm::open`]) are
    /// candidates: room only shrinks during a pass.
    fn pick_peer(&self, index: u32, exclude: Option<PeerKey>, now: Instant) -> Option<PeerKey> {
        self.open
            .iter()
            .filter(|&&k| Some(k) != exclude && self.usable(k, index, now))
            .filter_map(|&k| self.peers.get(&k).map(|p| (k, p)))
            .min_by_key(|&(k, p)| (p.outstanding.len(), Reverse(p.rec.traffic.down.rate()), k))
            .map(|(k, _)| k)
    }

    /// Cancels one outstanding request of `peer`.
    fn drop_request(&mut self, peer: PeerKey, b: BlockRef) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(pos) = p.outstanding.iter().position(|(r, _)| *r == b) {
            p.outstanding.swap_remove(pos);
            self.send(peer, Message::Cancel(b));
        }
    }

    /// A block from a peer: checked against its hash from the piece's block hashes (which
    /// its sender sent before it), kept, and offered at once to the peers that asked us for it;
    /// the piece's first verified block announces the piece. A block that fails its hash bans
    /// its sender; one whose hashes we lack (the sender broke the order) closes the connection
    /// and is asked of others.
    pub(super) fn on_block(
        &mut self,
        key: PeerKey,
        index: u32,
        begin: u32,
        data: Bytes,
        now: Instant,
    ) {
        let len = data.len() as u64;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let b = BlockRef {
            index,
            begin,
            len: data.len() as u32,
        };
        // Only blocks we asked this peer for are taken.
        let Some(pos) = peer.outstanding.iter().position(|(r, _)| *r == b) else {
            self.stats.wasted += len;
            return;
        };
        peer.outstanding.swap_remove(pos);
        peer.rec.traffic.down.add(len);
        let Some(dl) = self.downloads.get_mut(&index) else {
            self.stats.wasted += len;
            return self.schedule(now);
        };
        let i = (begin / BLOCK_LEN) as usize;
        let expected = self.hashes.get(&index).and_then(|h| h.get(i));
        match (dl.slots.get_mut(i), expected) {
            (Some(slot), _) if *slot == Slot::Done => self.stats.wasted += len,
            (Some(slot), None) => {
                // No hashes to check it with: an honest uploader sends them first. Not kept,
                // asked of someone else; the sender is closed (not banned: a broken client).
                *slot = Slot::Missing;
                self.stats.wasted += len;
                let reason = DisconnectReason::Protocol(ProtocolViolation::BlockBeforeHashes);
                return self.disconnect(key, reason);
            }
            (Some(slot), Some(expected)) => {
                if !begin.is_multiple_of(BLOCK_LEN) || crate::live::hash_block(&data) != *expected {
                    *slot = Slot::Missing;
                    self.stats.wasted += len;
                    return self.disconnect(key, DisconnectReason::BadPiece { index });
                }
                *slot = Slot::Done;
                let first_block = dl.blocks.iter().all(Option::is_none);
                dl.blocks[i] = Some(data);
                self.stats.downloaded += len;
                if let Some(peer) = self.peers.get_mut(&key) {
                    receipt::credit(&mut peer.rec, &mut self.book, len);
                }
                if !dl.contributors.contains(&key) && dl.contributors.len() < 32 {
                    dl.contributors.push(key);
                }
                if first_block {
                    self.announce_early(index);
                }
            }
            (None, _) => self.stats.wasted += len,
        }
        if let Some(dl) = self
            .downloads
            .get(&index)
            .filter(|dl| dl.slots.iter().all(|s| *s == Slot::Done))
        {
            let mut payload = BytesMut::with_capacity(dl.header.length as usize);
            for b in dl.blocks.iter().flatten() {
                payload.extend_from_slice(b);
            }
            if let Some(dl) = self.downloads.remove(&index) {
                self.cancel_slots(index);
                let payload = payload.freeze();
                self.checking
                    .insert(index, (dl.contributors, payload.clone()));
                self.actions.push_back(Action::PieceComplete {
                    header: dl.header,
                    payload,
                });
            }
        }
        self.pump_reads();
        self.schedule(now);
    }

    /// The first verified block of a piece is in: tell the peers that lack it that we have it
    /// (a viewer only; the source holds whole pieces). They ask us for its blocks and we
    /// serve each as it is verified, so the piece moves on a block behind us instead of a
    /// piece.
    fn announce_early(&mut self, index: u32) {
        let Some(header) = self.headers.get(&index).copied() else {
            return;
        };
        if self.config.source {
            return;
        }
        let targets: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.ready && !p.has.contains(&index))
            .map(|(&k, _)| k)
            .collect();
        for &k in &targets {
            self.announce(k, header);
        }
        self.early.insert(index, targets);
    }

    /// A request of `key` is gone (peer left, choked or rejected): the block is missing again.
    pub(super) fn release(&mut self, b: BlockRef, key: PeerKey) {
        let Some(dl) = self.downloads.get_mut(&b.index) else {
            return;
        };
        if let Some(slot) = dl.slots.get_mut((b.begin / BLOCK_LEN) as usize) {
            if matches!(slot, Slot::Requested(p, _) | Slot::Late(p) if *p == key) {
                *slot = Slot::Missing;
            }
        }
    }

    /// Cancels every request still out for a piece that is complete or no longer wanted.
    pub(super) fn cancel_slots(&mut self, index: u32) {
        let holders: Vec<(PeerKey, BlockRef)> = self
            .peers
            .iter()
            .flat_map(|(&k, p)| {
                p.outstanding
                    .iter()
                    .filter(|(b, _)| b.index == index)
                    .map(move |(b, _)| (k, *b))
            })
            .collect();
        for (k, b) in holders {
            self.drop_request(k, b);
        }
    }
}
