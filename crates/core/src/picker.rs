//! The piece picker: which blocks to request next, from which peer.
//!
//! Owns, for one torrent: the availability of every piece among connected peers, per-piece
//! priorities, and the block-level state of the pieces in progress ("partials"). It knows nothing
//! of peers beyond the bitfield it is shown when picking, and nothing of time.
//!
//! Order of picking, for one peer:
//! 1. blocks of pieces already in progress that the peer has (finish what was started, so pieces
//!    complete and can be verified and shared early), highest priority first;
//! 2. a new piece: highest priority first, then rarest first among connected peers, ties broken
//!    pseudo-randomly (so peers that start together do not all fetch the same piece);
//! 3. endgame: when nothing is free, blocks already requested from someone else (at most
//!    [`MAX_DUPLICATES`] requests per block), so the last pieces do not wait on one slow peer.
//!
//! Priorities are the hook for streaming: a reader raises the pieces it needs next.

use crate::bitfield::Bitfield;
use crate::wire::{BlockRef, BLOCK_LEN};

/// Priority of a piece that must not be downloaded.
pub const SKIP: u8 = 0;
/// Default priority.
pub const NORMAL: u8 = 1;
/// Highest priority (time-critical).
pub const TOP: u8 = 7;
/// Most requests in flight for one block during endgame.
pub const MAX_DUPLICATES: u8 = 2;

/// What [`Picker::on_block_received`] made of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// New data; `piece_complete` is true when it was the piece's last missing block, and the
    /// piece should now be verified.
    Fresh {
        /// All blocks of the piece are now present.
        piece_complete: bool,
    },
    /// We already had this block (endgame duplicate).
    Duplicate,
    /// Nobody asked for this block (wrong geometry, piece not in progress, or already verified).
    Unexpected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceState {
    Missing,
    Partial,
    Verifying,
    Have,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Free,
    Requested(u8),
    Received,
}

#[derive(Debug)]
struct Partial {
    index: u32,
    blocks: Vec<Block>,
    free: u32,
    received: u32,
}

/// Block-level picking state for one torrent. See the module docs.
#[derive(Debug)]
pub struct Picker {
    piece_length: u32,
    total_length: u64,
    have: Bitfield,
    availability: Vec<u32>,
    priority: Vec<u8>,
    state: Vec<PieceState>,
    partials: Vec<Partial>,
    rng: u64,
    wanted_missing: u32,
}

impl Picker {
    /// A picker for a torrent of `num_pieces` pieces of `piece_length` bytes (the last one
    /// shorter), `total_length` bytes in all. `seed` drives tie-breaking.
    pub fn new(num_pieces: u32, piece_length: u32, total_length: u64, seed: u64) -> Self {
        Picker {
            piece_length,
            total_length,
            have: Bitfield::new(num_pieces),
            availability: vec![0; num_pieces as usize],
            priority: vec![NORMAL; num_pieces as usize],
            state: vec![PieceState::Missing; num_pieces as usize],
            partials: Vec::new(),
            rng: seed | 1,
            wanted_missing: num_pieces,
        }
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.have.len()
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when every piece whose priority is not [`SKIP`] is verified.
    pub fn is_complete(&self) -> bool {
        self.wanted_missing == 0
    }

    /// Length of piece `index` in bytes.
    pub fn piece_len(&self, index: u32) -> u32 {
        let start = index as u64 * self.piece_length as u64;
        (self.total_length.saturating_sub(start)).min(self.piece_length as u64) as u32
    }

    /// Number of 16 KiB blocks in piece `index`.
    pub fn blocks_in(&self, index: u32) -> u32 {
        self.piece_len(index).div_ceil(BLOCK_LEN)
    }

    /// Marks a piece verified (from resume data or after a hash check).
    pub fn set_have(&mut self, index: u32) {
        if index >= self.num_pieces() || self.state[index as usize] == PieceState::Have {
            return;
        }
        self.partials.retain(|p| p.index != index);
        self.state[index as usize] = PieceState::Have;
        self.have.set(index, true);
        if self.priority[index as usize] != SKIP {
            self.wanted_missing -= 1;
        }
    }

    /// Sets a piece's priority ([`SKIP`] ..= [`TOP`]).
    pub fn set_priority(&mut self, index: u32, priority: u8) {
        let Some(p) = self.priority.get_mut(index as usize) else {
            return;
        };
        let priority = priority.min(TOP);
        if self.state[index as usize] != PieceState::Have {
            match (*p == SKIP, priority == SKIP) {
                (true, false) => self.wanted_missing += 1,
                (false, true) => self.wanted_missing -= 1,
                _ => {}
            }
        }
        *p = priority;
    }

    /// A piece's priority.
    pub fn priority(&self, index: u32) -> u8 {
        self.priority.get(index as usize).copied().unwrap_or(SKIP)
    }

    /// A peer with these pieces connected (or sent its bitfield).
    pub fn add_peer_pieces(&mut self, pieces: &Bitfield) {
        for i in pieces.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a += 1;
            }
        }
    }

    /// A peer with these pieces left.
    pub fn remove_peer_pieces(&mut self, pieces: &Bitfield) {
        for i in pieces.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
    }

    /// A peer announced one more piece.
    pub fn add_peer_piece(&mut self, index: u32) {
        if let Some(a) = self.availability.get_mut(index as usize) {
            *a += 1;
        }
    }

    /// How many connected peers have piece `index`.
    pub fn availability(&self, index: u32) -> u32 {
        self.availability.get(index as usize).copied().unwrap_or(0)
    }

    /// Picks up to `max` blocks to request from a peer that has `peer_has`, appending them to
    /// `out` and marking them requested. `already` tells whether this peer already has a request
    /// out for a block (only consulted in endgame).
    pub fn pick(
        &mut self,
        peer_has: &Bitfield,
        max: usize,
        out: &mut Vec<BlockRef>,
        already: impl Fn(&BlockRef) -> bool,
    ) {
        let start = out.len();
        let target = start + max;
        // 1. highest priority first; within a priority, finish pieces in progress before
        // starting new ones. A piece in progress never beats a new piece of higher priority:
        // a stream reader's next piece must not wait behind pieces of lower priority whose
        // requests a seek cancelled.
        let mut new = self.best_new_piece(peer_has);
        while out.len() < target {
            let new_prio = new.map(|i| self.priority[i as usize]);
            match self.best_partial(peer_has) {
                Some((k, prio)) if new_prio.is_none_or(|np| prio >= np) => {
                    self.take_free(k, target, out);
                }
                _ => {
                    let Some(index) = new else { break };
                    self.state[index as usize] = PieceState::Partial;
                    let n = self.blocks_in(index);
                    self.partials.push(Partial {
                        index,
                        blocks: vec![Block::Free; n as usize],
                        free: n,
                        received: 0,
                    });
                    let k = self.partials.len() - 1;
                    self.take_free(k, target, out);
                    new = self.best_new_piece(peer_has);
                }
            }
        }
        // 3. endgame: duplicate requests for blocks still in flight elsewhere.
        if out.len() < target {
            self.duplicate_in_flight(peer_has, start, target, out, &already, |_| true);
        }
    }

    /// Deadline help from an idle peer: duplicate requests (at most [`MAX_DUPLICATES`] per block)
    /// for blocks of [`TOP`]-priority pieces that are in flight elsewhere, so a slow peer does not
    /// hold up the piece a player waits for. Call before [`Picker::pick`] for a peer with nothing
    /// in flight.
    pub fn pick_urgent_duplicates(
        &mut self,
        peer_has: &Bitfield,
        max: usize,
        out: &mut Vec<BlockRef>,
        already: impl Fn(&BlockRef) -> bool,
    ) {
        let start = out.len();
        self.duplicate_in_flight(peer_has, start, start + max, out, &already, |prio| {
            prio == TOP
        });
    }

    /// Adds, up to `target` entries in `out`, a further request for blocks that are requested
    /// but not received (at most [`MAX_DUPLICATES`] each), in pieces the peer has whose priority
    /// passes `which`, skipping blocks this peer already asked for or that are in `out[start..]`
    /// (picked in this same call).
    fn duplicate_in_flight(
        &mut self,
        peer_has: &Bitfield,
        start: usize,
        target: usize,
        out: &mut Vec<BlockRef>,
        already: &impl Fn(&BlockRef) -> bool,
        which: impl Fn(u8) -> bool,
    ) {
        for k in 0..self.partials.len() {
            let index = self.partials[k].index;
            let prio = self.priority[index as usize];
            if prio == SKIP || !which(prio) || !peer_has.get(index) {
                continue;
            }
            for b in 0..self.partials[k].blocks.len() {
                if out.len() >= target {
                    return;
                }
                if let Block::Requested(n) = self.partials[k].blocks[b] {
                    let r = self.block_ref(index, b as u32);
                    if n < MAX_DUPLICATES && !already(&r) && !out[start..].contains(&r) {
                        self.partials[k].blocks[b] = Block::Requested(n + 1);
                        out.push(r);
                    }
                }
            }
        }
    }

    /// True when no block is free to pick from a peer that has everything: every wanted piece is
    /// verified, being verified, or has all its blocks requested or received.
    pub fn in_endgame(&self) -> bool {
        self.partials.iter().all(|p| p.free == 0)
            && self
                .state
                .iter()
                .zip(&self.priority)
                .all(|(s, &p)| *s != PieceState::Missing || p == SKIP)
    }

    /// A block arrived. Validates its geometry against the piece in progress.
    pub fn on_block_received(&mut self, index: u32, begin: u32, len: u32) -> Received {
        let Some(k) = self.partials.iter().position(|p| p.index == index) else {
            return Received::Unexpected;
        };
        if !begin.is_multiple_of(BLOCK_LEN) {
            return Received::Unexpected;
        }
        let b = begin / BLOCK_LEN;
        let expected = self.block_ref(index, b);
        if b >= self.partials[k].blocks.len() as u32 || expected.len != len {
            return Received::Unexpected;
        }
        let p = &mut self.partials[k];
        match p.blocks[b as usize] {
            Block::Received => Received::Duplicate,
            Block::Free => Received::Unexpected,
            Block::Requested(_) => {
                p.blocks[b as usize] = Block::Received;
                p.received += 1;
                let complete = p.received as usize == p.blocks.len();
                if complete {
                    self.partials.swap_remove(k);
                    self.state[index as usize] = PieceState::Verifying;
                }
                Received::Fresh {
                    piece_complete: complete,
                }
            }
        }
    }

    /// A request for `block` will not be answered (rejected, choked, timed out, peer gone).
    pub fn on_request_failed(&mut self, block: &BlockRef) {
        let Some(p) = self.partials.iter_mut().find(|p| p.index == block.index) else {
            return;
        };
        let b = (block.begin / BLOCK_LEN) as usize;
        if let Some(Block::Requested(n)) = p.blocks.get(b).copied() {
            p.blocks[b] = if n > 1 {
                Block::Requested(n - 1)
            } else {
                p.free += 1;
                Block::Free
            };
        }
    }

    /// The hash check of a complete piece finished. On failure the piece starts over.
    pub fn on_piece_verified(&mut self, index: u32, ok: bool) {
        if index >= self.num_pieces() || self.state[index as usize] != PieceState::Verifying {
            return;
        }
        if ok {
            self.set_have(index);
        } else {
            self.state[index as usize] = PieceState::Missing;
        }
    }

    /// The block geometry of block `b` of piece `index`.
    pub fn block_ref(&self, index: u32, b: u32) -> BlockRef {
        let begin = b * BLOCK_LEN;
        let len = self.piece_len(index).saturating_sub(begin).min(BLOCK_LEN);
        BlockRef { index, begin, len }
    }

    /// Whether the piece is wanted and not yet verified.
    pub fn wants(&self, index: u32) -> bool {
        (index as usize) < self.state.len()
            && self.state[index as usize] != PieceState::Have
            && self.priority[index as usize] != SKIP
    }

    fn take_free(&mut self, k: usize, target: usize, out: &mut Vec<BlockRef>) {
        let index = self.partials[k].index;
        let nblocks = self.partials[k].blocks.len();
        for b in 0..nblocks {
            if out.len() >= target || self.partials[k].free == 0 {
                return;
            }
            if self.partials[k].blocks[b] == Block::Free {
                self.partials[k].blocks[b] = Block::Requested(1);
                self.partials[k].free -= 1;
                out.push(self.block_ref(index, b as u32));
            }
        }
    }

    /// The piece in progress with free blocks this peer has, of the highest priority (the
    /// lowest index among equals): its position in `partials` and its priority.
    fn best_partial(&self, peer_has: &Bitfield) -> Option<(usize, u8)> {
        let mut best: Option<(usize, u8, u32)> = None;
        for (k, p) in self.partials.iter().enumerate() {
            let prio = self.priority[p.index as usize];
            if p.free == 0 || prio == SKIP || !peer_has.get(p.index) {
                continue;
            }
            if best.is_none_or(|(_, bp, bi)| prio > bp || (prio == bp && p.index < bi)) {
                best = Some((k, prio, p.index));
            }
        }
        best.map(|(k, prio, _)| (k, prio))
    }

    fn best_new_piece(&mut self, peer_has: &Bitfield) -> Option<u32> {
        // (priority desc, then) among raised pieces the lowest index (a stream reader needs
        // the nearer one first), among normal ones (availability asc, random).
        let mut best: Option<(u8, u32, u64, u32)> = None;
        for i in 0..self.num_pieces() {
            if self.state[i as usize] != PieceState::Missing {
                continue;
            }
            let prio = self.priority[i as usize];
            if prio == SKIP || !peer_has.get(i) {
                continue;
            }
            let avail = self.availability[i as usize];
            if let Some((bp, ba, _, _)) = best {
                // Raised pieces are scanned in index order: the first of a priority wins.
                if prio < bp || (prio == bp && (prio > NORMAL || avail > ba)) {
                    continue;
                }
            }
            let r = self.next_rand();
            match best {
                Some((bp, ba, br, _)) if prio == bp && avail == ba && r >= br => {}
                _ => best = Some((prio, avail, r, i)),
            }
        }
        best.map(|b| b.3)
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: tie-breaking only, not security.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn picker(pieces: u32) -> Picker {
        Picker::new(
            pieces,
            4 * BLOCK_LEN,
            pieces as u64 * 4 * BLOCK_LEN as u64 - 100,
            7,
        )
    }

    #[test]
    fn finishes_started_pieces_first() {
        let mut p = picker(10);
        let all = Bitfield::full(10);
        let mut out = vec![];
        p.pick(&all, 2, &mut out, |_| false);
        assert_eq!(out.len(), 2);
        let first = out[0].index;
        assert!(out.iter().all(|b| b.index == first));
        out.clear();
        p.pick(&all, 2, &mut out, |_| false);
        assert!(out.iter().all(|b| b.index == first));
    }

    #[test]
    fn rarest_first() {
        let mut p = picker(4);
        let mut a = Bitfield::full(4);
        p.add_peer_pieces(&a);
        a.set(2, false);
        p.add_peer_pieces(&a);
        let mut out = vec![];
        p.pick(&Bitfield::full(4), 1, &mut out, |_| false);
        assert_eq!(out[0].index, 2);
    }

    #[test]
    fn priority_beats_rarity() {
        let mut p = picker(4);
        p.add_peer_pieces(&Bitfield::full(4));
        p.set_priority(3, TOP);
        let mut out = vec![];
        p.pick(&Bitfield::full(4), 1, &mut out, |_| false);
        assert_eq!(out[0].index, 3);
    }

    /// A CI run failed because ffmpeg, reopening a stream after probing its end, waited seconds
    /// for the piece at its position while the only seeder (rate-limited) sent pieces of other
    /// files: the seek had cancelled their requests, which left them in progress with free
    /// blocks, and pieces in progress were always finished before any new piece, whatever its
    /// priority. A piece in progress now goes first only among pieces of its own priority.
    #[test]
    fn a_new_piece_of_higher_priority_beats_a_started_one() {
        let mut p = picker(10);
        let all = Bitfield::full(10);
        let mut out = vec![];
        p.pick(&all, 4, &mut out, |_| false);
        let started = out[0].index;
        assert!(out.iter().all(|b| b.index == started));
        for b in &out[2..] {
            p.on_request_failed(b);
        }
        let reader = (started + 5) % 10;
        p.set_priority(reader, TOP);
        out.clear();
        p.pick(&all, 4, &mut out, |_| false);
        assert!(
            out.iter().all(|b| b.index == reader),
            "the raised piece first, the cancelled blocks of piece {started} after it: {out:?}"
        );
        out.clear();
        p.pick(&all, 2, &mut out, |_| false);
        assert!(out.iter().all(|b| b.index == started), "{out:?}");
    }

    /// Among raised pieces of one priority (the far steps of a reader's ladder) the nearest
    /// comes first: a player needs them in order, and rarity means nothing to its deadline.
    #[test]
    fn raised_pieces_of_one_priority_go_in_order() {
        let mut p = picker(20);
        let mut some = Bitfield::full(20);
        p.add_peer_pieces(&some);
        some.set(15, false);
        p.add_peer_pieces(&some);
        for i in [12, 15, 17] {
            p.set_priority(i, 4);
        }
        let mut got = vec![];
        for _ in 0..3 {
            let mut out = vec![];
            p.pick(&Bitfield::full(20), 4, &mut out, |_| false);
            got.push(out[0].index);
        }
        assert_eq!(got, [12, 15, 17], "15 is rarer, 12 is nearer");
    }
    #[test]
    fn last_block_is_short() {
        let p = picker(2);
        let last = p.block_ref(1, 3);
        assert_eq!(last.len, BLOCK_LEN - 100);
    }

    #[test]
    fn failed_hash_restarts_piece() {
        let mut p = picker(1);
        let all = Bitfield::full(1);
        let mut out = vec![];
        p.pick(&all, 10, &mut out, |_| false);
        assert_eq!(out.len(), 4);
        for (i, b) in out.iter().enumerate() {
            let r = p.on_block_received(b.index, b.begin, b.len);
            assert_eq!(
                r,
                Received::Fresh {
                    piece_complete: i == 3
                }
            );
        }
        p.on_piece_verified(0, false);
        assert!(!p.is_complete());
        out.clear();
        p.pick(&all, 10, &mut out, |_| false);
        assert_eq!(out.len(), 4);
        for b in &out {
            p.on_block_received(b.index, b.begin, b.len);
        }
        p.on_piece_verified(0, true);
        assert!(p.is_complete());
    }

    #[test]
    fn endgame_duplicates_bounded() {
        let mut p = picker(1);
        let all = Bitfield::full(1);
        let mut out = vec![];
        p.pick(&all, 10, &mut out, |_| false);
        assert!(p.in_endgame());
        let mut dup = vec![];
        p.pick(&all, 10, &mut dup, |_| false);
        assert_eq!(dup.len(), 4, "one duplicate of each block");
        let mut more = vec![];
        p.pick(&all, 10, &mut more, |_| false);
        assert!(more.is_empty(), "never more than MAX_DUPLICATES");
        let b = out[0];
        assert_eq!(
            p.on_block_received(b.index, b.begin, b.len),
            Received::Fresh {
                piece_complete: false
            }
        );
        assert_eq!(
            p.on_block_received(b.index, b.begin, b.len),
            Received::Duplicate
        );
    }

    #[test]
    fn urgent_duplicates_only_for_top_pieces() {
        let mut p = picker(3);
        let all = Bitfield::full(3);
        let mut first = vec![];
        p.pick(&all, 8, &mut first, |_| false); // pieces 0 and 1 in flight (4 blocks each)
        let mut dup = vec![];
        p.pick_urgent_duplicates(&all, 10, &mut dup, |_| false);
        assert!(dup.is_empty(), "nothing is urgent yet");
        let urgent = first[0].index;
        p.set_priority(urgent, TOP);
        p.pick_urgent_duplicates(&all, 10, &mut dup, |_| false);
        assert_eq!(dup.len(), 4);
        assert!(dup.iter().all(|b| b.index == urgent));
    }

    #[test]
    fn bad_geometry_is_unexpected() {
        let mut p = picker(2);
        let mut out = vec![];
        p.pick(&Bitfield::full(2), 1, &mut out, |_| false);
        let b = out[0];
        assert_eq!(
            p.on_block_received(b.index, b.begin + 1, b.len),
            Received::Unexpected
        );
        assert_eq!(
            p.on_block_received(b.index, b.begin, b.len - 1),
            Received::Unexpected
        );
        assert_eq!(p.on_block_received(99, 0, BLOCK_LEN), Received::Unexpected);
    }

    proptest! {
        /// Whatever the order of picks, failures and arrivals, every wanted piece completes and
        /// no block is handed out more than MAX_DUPLICATES times at once.
        #[test]
        fn always_completes(pieces in 1u32..20, skip in proptest::collection::vec(any::<bool>(), 20), ops in proptest::collection::vec((0u8..3, 1usize..9), 1..60)) {
            let mut p = picker(pieces);
            for i in 0..pieces { if skip[i as usize] { p.set_priority(i, SKIP); } }
            let all = Bitfield::full(pieces);
            let mut inflight: Vec<BlockRef> = vec![];
            let deliver = |p: &mut Picker, b: BlockRef| {
                if let Received::Fresh { piece_complete: true } = p.on_block_received(b.index, b.begin, b.len) {
                    p.on_piece_verified(b.index, true);
                }
            };
            for (op, n) in ops {
                match op {
                    0 => { let mut out = vec![]; p.pick(&all, n, &mut out, |_| false); inflight.extend(out); }
                    1 if !inflight.is_empty() => { let b = inflight.remove(n % inflight.len()); p.on_request_failed(&b); }
                    _ if !inflight.is_empty() => { let b = inflight.remove(n % inflight.len()); deliver(&mut p, b); }
                    _ => {}
                }
            }
            let mut rounds = 0;
            while !p.is_complete() {
                rounds += 1;
                prop_assert!(rounds < 1000, "no progress");
                let mut out = vec![];
                p.pick(&all, 8, &mut out, |_| false);
                inflight.extend(out);
                for b in std::mem::take(&mut inflight) { deliver(&mut p, b); }
            }
            for i in 0..pieces { prop_assert_eq!(p.have().get(i), !skip[i as usize]); }
        }
    }
}
