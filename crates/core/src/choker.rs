//! The choker: which interested peers get upload slots.
//!
//! Tit-for-tat as BEP 3 describes it: every round (10 s) the interested peers that gave us the
//! most (while downloading), or took the most from us (while seeding: "seed mode by upload
//! rate", which spreads a seed's bandwidth to the peers that can use it), get the regular slots;
//! one more slot rotates every third round among the rest (optimistic unchoke), so newcomers get
//! a chance to show what they give. Pure logic: the swarm passes in rates and `now`.

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
}
