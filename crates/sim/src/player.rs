//! The player model of a simulated viewer: where it starts, when it plays, stalls and skips,
//! and what it measures (join time, delay behind the source, time played and stalled).
//!
//! It follows the engine's live player (`peercdn_engine::live::player`): a player starts at
//! the newest keyframe piece at or before the newest held piece, once it holds
//! [`Stream::start_pieces`] pieces in a row from there (`scripts/bench-live.sh` counts a
//! player's first frame once it has 0.5 s of media); it plays pieces in order; a
//! piece that is missing while a later keyframe piece is held is skipped after
//! `skip_after` (two piece durations, at least 200 ms); a piece that fell out of the window is
//! skipped at once. Unlike the engine (which hands pieces to an external player with its own
//! buffer), the model plays in real time with no buffer beyond where it started: a piece not
//! held when it is due stalls playback, and the stall adds to the delay from then on, as a
//! real player rebuffering does.
//!
//! Delay of a piece = when it starts playing − when the source made it. It knows nothing of
//! swarms or links: the simulator tells it what arrived and wakes it when it asked.

use std::collections::BTreeSet;

use crate::queue::Nanos;

/// Shortest wait before skipping a missing piece (the engine's `MIN_SKIP`).
pub const MIN_SKIP: Nanos = 200_000_000;

/// What a player is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Joined, nothing playable yet.
    Waiting,
    /// Playing: piece `next` is due at `due`.
    Playing {
        /// The next piece to play.
        next: u32,
        /// When it must start playing.
        due: Nanos,
    },
    /// Piece `next` was missing when due.
    Stalled {
        /// The piece waited for.
        next: u32,
        /// Since when.
        since: Nanos,
        /// Since when a later keyframe piece has been held (the skip clock).
        later: Option<Nanos>,
    },
}

/// Stream facts the player needs (shared by all players of a run).
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    /// Piece duration, nanoseconds.
    pub piece: Nanos,
    /// Every this many pieces is a keyframe piece (index multiple of it).
    pub gop: u32,
    /// When the source made piece 0.
    pub start: Nanos,
    /// Pieces in a row, from the start piece, that a player waits for before it plays its
    /// first frame (what it buffers at start).
    pub start_pieces: u32,
}

impl Stream {
    /// When the source made piece `i`.
    pub fn made(&self, i: u32) -> Nanos {
        self.start + u64::from(i) * self.piece
    }

    /// Whether piece `i` starts at a keyframe.
    pub fn keyframe(&self, i: u32) -> bool {
        i.is_multiple_of(self.gop.max(1))
    }

    /// How long a missing piece is waited for while a later keyframe piece is held.
    pub fn skip_after(&self) -> Nanos {
        (2 * self.piece).max(MIN_SKIP)
    }
}

/// What a player asks of the simulator after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wake {
    /// Wake it at this time (with [`Player::on_time`]).
    pub at: Option<Nanos>,
    /// Its playhead moved to this piece (tell the swarm).
    pub playhead: Option<u32>,
}

/// One viewer's player and its measurements.
#[derive(Debug, Clone)]
pub struct Player {
    /// What it is doing.
    pub state: State,
    /// When the viewer joined.
    pub joined: Nanos,
    /// When it started playing.
    pub started: Option<Nanos>,
    /// Nanoseconds stalled (from the first piece played on).
    pub stalled: Nanos,
    /// Of those, the nanoseconds after `measure_from`.
    pub stalled_measured: Nanos,
    /// Start of the measurement window: delays and continuity count from here on.
    pub measure_from: Nanos,
    /// Pieces played in the measurement window.
    pub played: u64,
    /// Pieces skipped.
    pub skipped: u64,
    /// Sum of the delays of the pieces played in the measurement window, nanoseconds.
    pub delay_sum: u128,
}

impl Player {
    /// A player of a viewer that joined at `now`, measured from `measure_from` on.
    pub fn new(now: Nanos, measure_from: Nanos) -> Player {
        Player {
            state: State::Waiting,
            joined: now,
            started: None,
            stalled: 0,
            stalled_measured: 0,
            measure_from,
            played: 0,
            skipped: 0,
            delay_sum: 0,
        }
    }

    /// Whether it is stalled now.
    pub fn is_stalled(&self) -> bool {
        matches!(self.state, State::Stalled { .. })
    }

    /// Mean delay behind the source, seconds, if it played anything.
    pub fn mean_delay_s(&self) -> Option<f64> {
        (self.played > 0).then(|| self.delay_sum as f64 / self.played as f64 / 1e9)
    }

    /// Share of the time from its start (or the measurement window's, if later) to `now`
    /// that it was not stalled; `None` before it started or before the window opened.
    pub fn continuity(&self, now: Nanos) -> Option<f64> {
        let from = self.started?.max(self.measure_from);
        let total = now.checked_sub(from).filter(|&t| t > 0)?;
        let stalled = self.stalled_measured_until(now);
        Some(1.0 - stalled.min(total) as f64 / total as f64)
    }

    /// Stalled nanoseconds in the measurement window, counting a stall going on at `now`.
    pub fn stalled_measured_until(&self, now: Nanos) -> Nanos {
        match self.state {
            State::Stalled { since, .. } => {
                self.stalled_measured + now.saturating_sub(since.max(self.measure_from))
            }
            _ => self.stalled_measured,
        }
    }

    /// Counts a stall from `since` to `until`.
    fn add_stall(&mut self, since: Nanos, until: Nanos) {
        self.stalled += until.saturating_sub(since);
        self.stalled_measured += until.saturating_sub(since.max(self.measure_from));
    }

    /// Stalled nanoseconds, counting a stall still going on at `now`.
    pub fn stalled_until(&self, now: Nanos) -> Nanos {
        match self.state {
            State::Stalled { since, .. } => self.stalled + now.saturating_sub(since),
            _ => self.stalled,
        }
    }

    /// A piece arrived (or the time came): play, start or skip what can be. `held` is the
    /// node's window, `first` its start; `delays` receives each played piece's delay.
    pub fn on_time(
        &mut self,
        now: Nanos,
        s: &Stream,
        held: &BTreeSet<u32>,
        first: u32,
        delays: &mut impl FnMut(Nanos),
    ) -> Wake {
        let mut wake = Wake::default();
        // Bounded: each turn plays, skips or returns.
        for _ in 0..1_000 {
            match self.state {
                State::Waiting => {
                    let Some(&newest) = held.iter().next_back() else {
                        return wake;
                    };
                    let Some(&k) = held.range(..=newest).rev().find(|&&i| s.keyframe(i)) else {
                        return wake;
                    };
                    let run = held
                        .range(k..)
                        .zip(k..)
                        .take_while(|(a, b)| **a == *b)
                        .count();
                    if (run as u64) < u64::from(s.start_pieces.max(1)) {
                        // The engine's pump holds its reader here while the player buffers:
                        // the swarm fetches from the first piece missing after the start.
                        wake.playhead = Some(k + run as u32);
                        return wake;
                    }
                    self.started = Some(now);
                    self.state = State::Playing { next: k, due: now };
                }
                State::Playing { next, due } => {
                    if due > now {
                        wake.at = Some(due);
                        return wake;
                    }
                    if held.contains(&next) {
                        self.play(next, due, s, delays);
                        wake.playhead = Some(next + 1);
                        self.state = State::Playing {
                            next: next + 1,
                            due: due + s.piece,
                        };
                    } else {
                        self.state = State::Stalled {
                            next,
                            since: due,
                            later: None,
                        };
                    }
                }
                State::Stalled { next, since, later } => {
                    if held.contains(&next) {
                        self.add_stall(since, now);
                        self.state = State::Playing { next, due: now };
                        continue;
                    }
                    let later_key = held.range(next + 1..).find(|&&i| s.keyframe(i)).copied();
                    let Some(k) = later_key else {
                        self.state = State::Stalled {
                            next,
                            since,
                            later: None,
                        };
                        return wake;
                    };
                    let l = later.unwrap_or(now);
                    if next < first || now >= l + s.skip_after() {
                        self.add_stall(since, now);
                        self.skipped += u64::from(k - next);
                        self.state = State::Playing { next: k, due: now };
                        wake.playhead = Some(k);
                        continue;
                    }
                    self.state = State::Stalled {
                        next,
                        since,
                        later: Some(l),
                    };
                    wake.at = Some(l + s.skip_after());
                    return wake;
                }
            }
        }
        debug_assert!(false, "player made no progress");
        wake
    }

    fn play(&mut self, i: u32, at: Nanos, s: &Stream, delays: &mut impl FnMut(Nanos)) {
        if at < self.measure_from {
            return;
        }
        let d = at.saturating_sub(s.made(i));
        self.played += 1;
        self.delay_sum += u128::from(d);
        delays(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Nanos = 250_000_000;

    fn stream() -> Stream {
        Stream {
            piece: P,
            gop: 4,
            start: 0,
            start_pieces: 1,
        }
    }

    #[test]
    fn starts_at_newest_keyframe_then_plays_stalls_and_resumes() {
        let s = stream();
        let mut p = Player::new(0, 0);
        let mut held: BTreeSet<u32> = [3, 4, 5].into_iter().collect();
        let mut d = Vec::new();
        let now = 6 * P;
        let w = p.on_time(now, &s, &held, 0, &mut |x| d.push(x));
        assert_eq!(p.started, Some(now));
        assert_eq!(d, vec![2 * P], "piece 4 made at 4P, played at 6P");
        assert_eq!(w.at, Some(now + P));
        p.on_time(now + P, &s, &held, 0, &mut |x| d.push(x)); // 5
        p.on_time(now + 2 * P, &s, &held, 0, &mut |x| d.push(x)); // 6 missing
        assert!(p.is_stalled());
        held.insert(6);
        p.on_time(now + 3 * P, &s, &held, 0, &mut |x| d.push(x));
        assert_eq!(p.stalled, P);
        assert_eq!(*d.last().unwrap(), 3 * P, "the stall adds to the delay");
        let c = p.continuity(now + 4 * P).unwrap();
        assert!((c - 0.75).abs() < 1e-9, "{c}");
    }

    #[test]
    fn only_the_measurement_window_counts() {
        let s = stream();
        let mut p = Player::new(0, 4 * P);
        let held: BTreeSet<u32> = [0, 1].into_iter().collect();
        let mut d = Vec::new();
        for t in 0..3 {
            p.on_time(t * P, &s, &held, 0, &mut |x| d.push(x));
        }
        // Played 0 and 1 before the window, stalled on 2 from 2P on.
        assert!(d.is_empty(), "nothing played before the window counts");
        assert_eq!(p.continuity(3 * P), None, "the window has not opened");
        let c = p.continuity(8 * P).unwrap();
        assert!(c.abs() < 1e-9, "stalled through the whole window: {c}");
    }

    #[test]
    fn skips_to_a_later_keyframe_after_waiting() {
        let s = stream();
        let mut p = Player::new(0, 0);
        let mut held: BTreeSet<u32> = [0].into_iter().collect();
        let mut sink = |_| {};
        p.on_time(0, &s, &held, 0, &mut sink);
        p.on_time(P, &s, &held, 0, &mut sink); // 1 missing
        held.insert(4);
        let w = p.on_time(2 * P, &s, &held, 0, &mut sink);
        assert_eq!(w.at, Some(2 * P + s.skip_after()));
        let w = p.on_time(2 * P + s.skip_after(), &s, &held, 0, &mut sink);
        assert_eq!(w.playhead, Some(5));
        assert_eq!(p.skipped, 3);
    }
}
