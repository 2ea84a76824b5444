//! Time in the core: the one time input and the wall clock derived from it.
//!
//! Every state machine in this crate takes a monotonic [`Instant`] with each input and never
//! reads a clock. The time contract (quinn's) is the same for all of them:
//! - feed inputs with `now`; after every input, drain `poll_action()` until it returns `None`;
//! - ask `poll_timeout()` for the earliest instant at which the machine has work of its own
//!   (rates, rechokes, request timeouts, delayed announcements, PEX, idle peers…), and call
//!   `handle_timeout(now)` once that instant has come (calling it early is harmless: work that
//!   is not due waits);
//! - no machine caches "the current time": whatever it remembers is the instant of an event
//!   (a request sent, a block received) or a deadline.
//!
//! The wall clock (microseconds since the Unix epoch, which live piece headers carry) is not a
//! second input: a [`WallClock`] is anchored once (by the engine, from the system clock, or by
//! a simulator, from anything) and maps each monotonic `now` to wall time, so a virtual clock
//! drives both.
//!
//! This module owns no state machine and must not read a clock; reading one is the engine's
//! `clock` module's job.

use std::time::Instant;

/// Wall time derived from the monotonic clock: the pair (`at`, `unix_us`) says that the
/// instant `at` was `unix_us` microseconds after the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    at: Instant,
    unix_us: u64,
}

impl WallClock {
    /// Anchors the wall clock: `at` was `unix_us` microseconds after the Unix epoch.
    pub fn new(at: Instant, unix_us: u64) -> WallClock {
        WallClock { at, unix_us }
    }

    /// Microseconds since the Unix epoch at `now` (saturating before the epoch).
    pub fn unix_us(&self, now: Instant) -> u64 {
        if now >= self.at {
            let d = now.duration_since(self.at).as_micros();
            self.unix_us
                .saturating_add(u64::try_from(d).unwrap_or(u64::MAX))
        } else {
            let d = self.at.duration_since(now).as_micros();
            self.unix_us
                .saturating_sub(u64::try_from(d).unwrap_or(u64::MAX))
        }
    }
}

/// The earlier of two optional deadlines (`None` means "nothing to do").
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wall_clock_follows_the_monotonic_input() {
        let t0 = Instant::now();
        let w = WallClock::new(t0 + Duration::from_secs(1), 5_000_000);
        assert_eq!(w.unix_us(t0 + Duration::from_secs(1)), 5_000_000);
        assert_eq!(w.unix_us(t0 + Duration::from_millis(1500)), 5_500_000);
        assert_eq!(w.unix_us(t0), 4_000_000);
        let early = WallClock::new(t0 + Duration::from_secs(10), 1);
        assert_eq!(early.unix_us(t0), 0, "saturates before the epoch");
    }

    #[test]
    fn earliest_ignores_none() {
        let t = Instant::now();
        let u = t + Duration::from_secs(1);
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(u), None), Some(u));
        assert_eq!(earliest(None, Some(t)), Some(t));
        assert_eq!(earliest(Some(u), Some(t)), Some(t));
    }
}
