//! The web seed policy (BEP 19): when HTTP servers take part, sans-IO.
//!
//! Peers come first. A web seed fetches a piece only when
//! - a stream reader has waited [`RESCUE_AFTER`] for the piece it is at (deadline rescue: the
//!   peers are too slow for playback; the piece and the next one are rescued), or
//! - no connected peer has it (the swarm is empty, or nobody has that part yet).
//!
//! Each web seed fetches at most [`PARALLEL`] pieces at a time; a failing one backs off
//! exponentially (2, 4, … 64 s), and one that serves data failing the hash check is disabled.
//!
//! [`WebSeedPolicy`] owns the seeds' state and the pieces being fetched over HTTP, and follows
//! the time contract of [`crate::time`]: [`WebSeedPolicy::poll_timeout`] names the next rescue
//! deadline or the end of a backoff, so the engine wakes exactly then (no polling). It must not
//! fetch, verify or count bytes (the engine's job), nor touch the swarm's peers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::Swarm;
use crate::time::earliest;

/// Pieces fetched at once from one web seed.
pub const PARALLEL: usize = 4;
/// A reader waiting this long for its piece gets it from a web seed.
pub const RESCUE_AFTER: Duration = Duration::from_millis(700);
/// Web seeds kept per torrent.
pub const MAX_WEBSEEDS: usize = 8;
/// Backoff after the n-th failure in a row: `2^min(n, MAX_BACKOFF_EXP)` seconds.
pub const MAX_BACKOFF_EXP: u32 = 6;

/// A web seed's index in the policy (the order given to [`WebSeedPolicy::new`]).
pub type SeedId = usize;

/// How a web seed's request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The data arrived (it is checked next: see [`WebSeedPolicy::on_checked`]).
    Received,
    /// The request failed: the seed backs off.
    Failed,
}

#[derive(Debug, Clone, Default)]
struct Seed {
    in_flight: usize,
    failures: u32,
    /// The end of a backoff, until the policy has seen it pass.
    retry_at: Option<Instant>,
    errors: u64,
    disabled: bool,
}

impl Seed {
    fn ready(&self, now: Instant) -> bool {
        !self.disabled && self.in_flight < PARALLEL && self.retry_at.is_none_or(|t| t <= now)
    }
}

/// The web seeds of one torrent. Bounded: [`MAX_WEBSEEDS`] seeds, and at most
/// `MAX_WEBSEEDS * PARALLEL` pieces being fetched.
#[derive(Debug, Default)]
pub struct WebSeedPolicy {
    seeds: Vec<Seed>,
    /// Pieces fetched or being checked (no two seeds fetch the same piece).
    fetching: HashSet<u32>,
    /// The latest `now` a rescue deadline was handled at (readers waiting since before
    /// `handled - RESCUE_AFTER` no longer set a deadline).
    handled: Option<Instant>,
}

impl WebSeedPolicy {
    /// A policy for `n` web seeds (at most [`MAX_WEBSEEDS`]; their IDs are `0..n`).
    pub fn new(n: usize) -> Self {
        WebSeedPolicy {
            seeds: vec![Seed::default(); n.min(MAX_WEBSEEDS)],
            fetching: HashSet::new(),
            handled: None,
        }
    }

    /// True without web seeds.
    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// Failed requests and bad data of seed `k`.
    pub fn errors(&self, k: SeedId) -> u64 {
        self.seeds.get(k).map_or(0, |s| s.errors)
    }

    /// The next fetch due, if any: a ready seed (enabled, under [`PARALLEL`], not backing off)
    /// and a piece (rescue first, then pieces no peer has). The piece counts as being fetched
    /// from then on. Call it until it returns `None`.
    pub fn next_fetch(&mut self, swarm: &Swarm, now: Instant) -> Option<(SeedId, u32)> {
        let k = self.seeds.iter().position(|s| s.ready(now))?;
        let index = self.next_piece(swarm, now)?;
        self.fetching.insert(index);
        if let Some(s) = self.seeds.get_mut(k) {
            s.in_flight += 1;
        }
        Some((k, index))
    }

    fn next_piece(&self, swarm: &Swarm, now: Instant) -> Option<u32> {
        let have = swarm.have()?;
        for (_, r) in swarm.readers().iter() {
            if now.saturating_duration_since(r.since) < RESCUE_AFTER {
                continue;
            }
            for p in [r.piece, r.piece.saturating_add(1)] {
                if p <= r.last && p < have.len() && !have.get(p) && !self.fetching.contains(&p) {
                    return Some(p);
                }
            }
        }
        swarm
            .pieces_nobody_has(1, |i| self.fetching.contains(&i))
            .first()
            .copied()
    }

    /// Seed `k`'s request for `piece` ended. A failure frees the piece and starts a backoff.
    pub fn on_fetched(&mut self, k: SeedId, piece: u32, r: Fetched, now: Instant) {
        let Some(s) = self.seeds.get_mut(k) else {
            return;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        match r {
            Fetched::Received => s.failures = 0,
            Fetched::Failed => {
                self.fetching.remove(&piece);
                s.errors += 1;
                s.failures = s.failures.saturating_add(1);
                s.retry_at = Some(now + Self::backoff(s.failures));
            }
        }
    }

    /// The backoff after `failures` failures in a row.
    pub fn backoff(failures: u32) -> Duration {
        Duration::from_secs(1 << failures.min(MAX_BACKOFF_EXP))
    }

    /// The data seed `k` sent for `piece` was checked (`good`: it matched its hash) or could
    /// not be (`good` false is only for bad data). Bad data disables the seed for good.
    pub fn on_checked(&mut self, k: SeedId, piece: u32, good: bool) {
        self.fetching.remove(&piece);
        if !good {
            if let Some(s) = self.seeds.get_mut(k) {
                s.disabled = true;
                s.errors += 1;
            }
        }
    }

    /// The earliest instant new work may be due: the rescue deadline of a reader still
    /// waiting, or the end of a backoff. `None` without web seeds or when all are disabled.
    pub fn poll_timeout(&self, swarm: &Swarm) -> Option<Instant> {
        if self.seeds.iter().all(|s| s.disabled) {
            return None;
        }
        let mut t = self
            .seeds
            .iter()
            .filter(|s| !s.disabled)
            .filter_map(|s| s.retry_at)
            .min();
        for (_, r) in swarm.readers().iter() {
            let due = r.since + RESCUE_AFTER;
            if self.handled.is_none_or(|h| due > h) {
                t = earliest(t, Some(due));
            }
        }
        t
    }

    /// Moves past the deadlines that have come (then ask [`Self::next_fetch`] for work).
    pub fn handle_timeout(&mut self, now: Instant) {
        for s in &mut self.seeds {
            if s.retry_at.is_some_and(|t| t <= now) {
                s.retry_at = None;
            }
        }
        self.handled = Some(self.handled.map_or(now, |h| h.max(now)));
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests;
