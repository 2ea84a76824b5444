//! The choker: which interested peers get upload slots.
//!
//! Tit-for-tat as BEP 3 describes it: every round (10 s) the interested peers that gave us the
//! most (while downloading), or took the most from us (while seeding: "seed mode by upload
//! rate", which spreads a seed's bandwidth to the peers that can use it), get the regular slots;
//! one more slot rotates every third round among the rest (optimistic unchoke), so newcomers get
//! a chance to show what they give. Pure logic: the swarm passes in rates and `now`.
//!
//! Upload snubbing, for both swarms: an unchoked peer whose blocks do not drain (blocks handed
//! to the engine for it and not reported sent for [`SNUB_AFTER`]: it requests and never reads)
//! is *snubbed* ([`Drain`]). Between rounds it gives its slot to a waiting peer ([`swaps`]),
//! and at rounds it counts as not interested, until its blocks drain. Without this, peers
//! that request and never read held every slot (40 of them: an honest downloader got nothing
//! from a seeder in 90 s).
//!
//! Owns who gets a slot; what a choke puts on the wire is [`crate::ext::choke`]'s.

use std::time::{Duration, Instant};

/// How often slots are re-assigned.
pub const ROUND: Duration = Duration::from_secs(10);
/// Rounds between optimistic unchoke rotations.
pub const OPTIMISTIC_EVERY: u32 = 3;

/// One peer as the choker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// The swarm's key for the peer.
    pub peer: u64,
    /// The peer is interested in us.
    pub interested: bool,
    /// Bytes/s it sent us (leeching) or we sent it (seeding), recent average.
    pub rate: u64,
}

/// Upload slot assignment.
#[derive(Debug)]
pub struct Choker {
    slots: usize,
    optimistic: Option<u64>,
    rounds: u32,
    next_round: Option<Instant>,
    rng: u64,
}

impl Choker {
    /// A choker with `slots` regular upload slots (plus one optimistic).
    pub fn new(slots: usize, seed: u64) -> Self {
        Choker {
            slots: slots.max(1),
            optimistic: None,
            rounds: 0,
            next_round: None,
            rng: seed | 1,
        }
    }

    /// Regular slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// True when a round is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_round.is_none_or(|t| now >= t)
    }

    /// Runs a round: returns the peers to unchoke (all others are to be choked).
    pub fn round(&mut self, now: Instant, candidates: &[Candidate]) -> Vec<u64> {
        self.next_round = Some(now + ROUND);
        self.rounds = self.rounds.wrapping_add(1);
        let mut interested: Vec<&Candidate> = candidates.iter().filter(|c| c.interested).collect();
        interested.sort_by(|a, b| b.rate.cmp(&a.rate).then(a.peer.cmp(&b.peer)));
        let mut chosen: Vec<u64> = interested.iter().take(self.slots).map(|c| c.peer).collect();
        let rest: Vec<u64> = interested.iter().skip(self.slots).map(|c| c.peer).collect();
        let keep = self.optimistic.filter(|p| rest.contains(p));
        let rotate = self.rounds % OPTIMISTIC_EVERY == 1 || keep.is_none();
        self.optimistic = if rotate && !rest.is_empty() {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            Some(rest[(self.rng % rest.len() as u64) as usize])
        } else {
            keep
        };
        chosen.extend(self.optimistic);
        chosen
    }
}

/// An unchoked peer with blocks handed to the engine and none sent for this long is snubbed.
pub const SNUB_AFTER: Duration = Duration::from_secs(3);

/// Whether a peer's upload drains: blocks handed to the engine for it ([`Drain::handed`]),
/// reported done ([`Drain::done`]), and since when none was while some waited. The swarm
/// calls [`Drain::update`] on its timeouts.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    in_flight: usize,
    done: u64,
    seen: u64,
    stalled_since: Option<Instant>,
    /// `update` saw the stall pass [`SNUB_AFTER`]: no deadline to wake for any more.
    past: bool,
}

impl Drain {
    /// A block was handed to the engine for this peer.
    pub fn handed(&mut self) {
        self.in_flight += 1;
    }

    /// The engine reported a block sent (or given up).
    pub fn done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.done = self.done.wrapping_add(1);
    }

    /// Blocks handed and not reported yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Notes progress at `now`: the stall clock starts when blocks wait and none was done
    /// since the previous call, and stops at any progress.
    pub fn update(&mut self, now: Instant) {
        if self.in_flight == 0 {
            self.stalled_since = None;
        } else if self.done != self.seen || self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        self.seen = self.done;
        self.past = self.snubbed(now);
    }

    /// True when blocks have waited without progress for [`SNUB_AFTER`].
    pub fn snubbed(&self, now: Instant) -> bool {
        self.in_flight > 0
            && self
                .stalled_since
                .is_some_and(|t| now.saturating_duration_since(t) >= SNUB_AFTER)
    }

    /// When the peer will count as snubbed if nothing drains (for `poll_timeout`); `None`
    /// once an `update` saw it snubbed.
    pub fn deadline(&self) -> Option<Instant> {
        self.stalled_since
            .filter(|_| self.in_flight > 0 && !self.past)
            .map(|t| t + SNUB_AFTER)
    }
}

/// One peer as the between-rounds slot rule ([`swaps`]) sees it.
#[derive(Debug, Clone, Copy)]
pub struct SlotPeer {
    /// The swarm's key for the peer.
    pub peer: u64,
    /// We unchoke it.
    pub unchoked: bool,
    /// It is interested (and ready to be served).
    pub interested: bool,
    /// Its blocks do not drain ([`Drain::snubbed`]): it loses its slot and waits for none.
    pub snubbed: bool,
    /// It holds a slot without using it (the live swarm: asked for nothing lately).
    pub idle: bool,
    /// When its choke state last changed (the longest-choked waiting peer goes first).
    pub since: Instant,
}

/// Between rounds: each unchoked peer that is snubbed or idle gives its slot to a waiting
/// peer (interested, choked, not snubbed), longest choked first. Returns `(choke, unchoke)`
/// pairs; a slot is only taken away when someone waits for it.
pub fn swaps(peers: &[SlotPeer]) -> Vec<(u64, u64)> {
    let mut waiting: Vec<&SlotPeer> = peers
        .iter()
        .filter(|p| !p.unchoked && p.interested && !p.snubbed)
        .collect();
    waiting.sort_by_key(|p| (p.since, p.peer));
    let mut losing: Vec<&SlotPeer> = peers
        .iter()
        .filter(|p| p.unchoked && (p.snubbed || p.idle))
        .collect();
    // Snubbed first: they cost the node's upload, idle ones only a slot.
    losing.sort_by_key(|p| (!p.snubbed, p.since, p.peer));
    losing
        .iter()
        .zip(waiting)
        .map(|(l, w)| (l.peer, w.peer))
        .collect()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;

    fn c(peer: u64, interested: bool, rate: u64) -> Candidate {
        Candidate {
            peer,
            interested,
            rate,
        }
    }

    #[test]
    fn fastest_get_slots_plus_one_optimistic() {
        let mut ch = Choker::new(2, 1);
        let now = Instant::now();
        let cands = [
            c(1, true, 10),
            c(2, true, 50),
            c(3, true, 30),
            c(4, false, 99),
            c(5, true, 1),
        ];
        let u = ch.round(now, &cands);
        assert_eq!(u.len(), 3);
        assert!(u.contains(&2) && u.contains(&3));
        assert!(!u.contains(&4), "uninterested peers never get a slot");
        assert!(u[2] == 1 || u[2] == 5);
        assert!(!ch.due(now));
        assert!(ch.due(now + ROUND));
    }

    #[test]
    fn few_peers_all_unchoked() {
        let mut ch = Choker::new(4, 1);
        let u = ch.round(Instant::now(), &[c(1, true, 0), c(2, true, 0)]);
        assert_eq!(u.len(), 2);
    }

    /// The snub rule: a peer whose handed blocks do not drain for SNUB_AFTER loses its slot
    /// to a waiting peer; one that drains keeps it; nobody waiting, nothing changes.
    #[test]
    fn a_peer_that_does_not_read_loses_its_slot() {
        let t0 = Instant::now();
        let mut stuck = Drain::default();
        let mut reading = Drain::default();
        for _ in 0..4 {
            stuck.handed();
            reading.handed();
        }
        let mut t = t0;
        while t < t0 + SNUB_AFTER + Duration::from_secs(1) {
            stuck.update(t);
            reading.done();
            reading.handed();
            reading.update(t);
            t += Duration::from_millis(500);
        }
        assert!(stuck.snubbed(t) && !reading.snubbed(t));
        assert_eq!(stuck.deadline(), None, "passed: nothing to wake for");
        let p = |peer, unchoked, snubbed, idle, ago: u64| SlotPeer {
            peer,
            unchoked,
            interested: true,
            snubbed,
            idle,
            since: t0 - Duration::from_secs(ago),
        };
        let peers = [
            p(1, true, true, false, 0),
            p(2, true, false, false, 0),
            p(3, true, false, true, 9),
            p(4, false, true, false, 50),
            p(5, false, false, false, 5),
            p(6, false, false, false, 7),
        ];
        // The snubbed peer goes first, to the longest-waiting peer that reads; then the idle
        // one; a choked snubbed peer waits for nothing.
        assert_eq!(swaps(&peers), vec![(1, 6), (3, 5)]);
        assert!(swaps(&peers[..4]).is_empty(), "nobody waits");
        // Once its blocks drain it is no longer snubbed.
        for _ in 0..4 {
            stuck.done();
        }
        stuck.update(t);
        assert!(!stuck.snubbed(t) && stuck.deadline().is_none());
    }
}
