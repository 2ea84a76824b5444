//! The per-peer traffic record shared by both swarms: byte totals each way and their smoothed
//! rates, sampled by the swarm on its own cadence.
//!
//! Owns counting and smoothing only. Choosing whom to serve by these rates is the chokers'
//! business; when to sample is the swarm's.

use std::time::Duration;

/// Bytes moved one way on one connection, and a smoothed rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meter {
    total: u64,
    mark: u64,
    rate: u64,
}

impl Meter {
    /// Counts `bytes` moved.
    pub fn add(&mut self, bytes: u64) {
        self.total = self.total.saturating_add(bytes);
    }

    /// Every byte counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The smoothed rate, bytes/s, as of the last [`Meter::sample`].
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Closes a sampling period of `dt` (a zero period is ignored): the rate moves three
    /// quarters of the way to what the period carried, so one quiet second does not zero it.
    pub fn sample(&mut self, dt: Duration) {
        let secs = dt.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let moved = ((self.total - self.mark) as f64 / secs) as u64;
        self.rate = (self.rate + moved.saturating_mul(3)) / 4;
        self.mark = self.total;
    }
}

/// Both directions of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Payload received from the peer.
    pub down: Meter,
    /// Payload sent to the peer.
    pub up: Meter,
}

impl Traffic {
    /// Samples both directions over `dt`.
    pub fn sample(&mut self, dt: Duration) {
        self.down.sample(dt);
        self.up.sample(dt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_smooths_towards_the_period_and_decays() {
        let mut t = Traffic::default();
        t.down.add(4000);
        t.sample(Duration::from_secs(1));
        assert_eq!(t.down.rate(), 3000);
        assert_eq!(t.up.rate(), 0);
        t.down.add(4000);
        t.sample(Duration::from_secs(2));
        assert_eq!(t.down.rate(), (3000 + 2000 * 3) / 4);
        t.sample(Duration::from_secs(1));
        assert_eq!(t.down.rate(), (3000 + 2000 * 3) / 4 / 4);
        assert_eq!(t.down.total(), 8000);
        // A zero period changes nothing (no division by zero).
        t.sample(Duration::ZERO);
        assert_eq!(t.down.total(), 8000);
    }
}
