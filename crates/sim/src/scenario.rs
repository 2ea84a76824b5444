//! What a simulation run models: the stream, the source, the viewers' capacities, latencies,
//! reachability, arrivals and departures. [`Scenario::goal`] is the goal scenario of the
//! live-at-scale issue; everything else is a variation of it.
//!
//! This module only describes and draws (from the run's seeded RNG); it runs nothing.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How viewers arrive at the start of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Arrival {
    /// Arrivals spread evenly over this many seconds.
    Steady {
        /// Seconds over which the initial audience arrives.
        over_s: f64,
    },
    /// Everyone arrives within this many seconds (a flash crowd).
    Flash {
        /// Seconds in which the whole audience arrives.
        within_s: f64,
    },
}

/// One simulation run's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Concurrent viewers (the audience size; churn replaces those who leave).
    pub viewers: usize,
    /// Simulated seconds.
    pub seconds: f64,
    /// Seconds before the measurement window opens (the audience arrives and settles; see
    /// [`crate::Report::warmup_s`]).
    pub warmup_s: f64,
    /// Seed of every random draw: the same seed gives the same run.
    pub seed: u64,
    /// Stream bit rate, bits per second.
    pub bitrate_bps: u64,
    /// Piece duration, milliseconds (the broadcaster's `--piece-ms`).
    pub piece_ms: u32,
    /// Pieces per GOP: every this many pieces starts at a keyframe (where players may start
    /// or skip to).
    pub gop_pieces: u32,
    /// Media a player buffers before its first frame, milliseconds (whole pieces, at least
    /// one).
    pub start_buffer_ms: u32,
    /// The descriptor's window, seconds.
    pub window_s: u32,
    /// Source uplink, bits per second.
    pub source_up_bps: u64,
    /// Mean viewer uplink as a multiple of the bit rate.
    pub viewer_up_mean_x: f64,
    /// Share of viewers whose uplink is below the bit rate (drawn from 0.5x..1x).
    pub viewer_below_share: f64,
    /// Every viewer's uplink is exactly the mean (no draw): a benchmark's upload cap.
    pub viewer_up_fixed: bool,
    /// Viewer (and source) downlink, bits per second.
    pub down_bps: u64,
    /// Share of viewers that cannot be dialled (behind NAT); they still dial out.
    pub nat_share: f64,
    /// Share of the viewers behind NAT whose NAT lets a BEP 55 introduction through (it keeps
    /// one external port per socket whatever the destination, so two such viewers that a
    /// common peer introduces meet with simultaneous uTP dials); the rest can be reached by
    /// nobody.
    pub punch_share: f64,
    /// Round-trip times are drawn from this range, milliseconds.
    pub rtt_ms: (u32, u32),
    /// Share of the audience leaving per minute (each replaced by a new arrival).
    pub churn_per_min: f64,
    /// How the initial audience arrives.
    pub arrival: Arrival,
    /// A CDN (HTTP mirror) of this capacity, bits per second, that viewers fall back to when
    /// peers are late (core's fallback policy); `None`: no CDN.
    pub cdn_bps: Option<u64>,
    /// RTT between the CDN and every viewer, milliseconds.
    pub cdn_rtt_ms: u32,
    /// Peers a tracker answer lists (random among the present nodes).
    pub tracker_peers: usize,
}

impl Scenario {
    /// The goal scenario: 5 Mbit/s stream, source uplink 100 Mbit/s, viewers' uplinks with
    /// mean 1.5x the bit rate and 30 % below it, half behind NAT, 40–200 ms RTT, 5 % leaving
    /// (and as many arriving) per minute, the audience arriving over 10 s.
    pub fn goal(viewers: usize) -> Scenario {
        Scenario {
            viewers,
            seconds: 60.0,
            warmup_s: 0.0,
            seed: 1,
            bitrate_bps: 5_000_000,
            piece_ms: 250,
            gop_pieces: 4,
            start_buffer_ms: 500,
            window_s: 30,
            source_up_bps: 100_000_000,
            viewer_up_mean_x: 1.5,
            viewer_below_share: 0.3,
            viewer_up_fixed: false,
            down_bps: 50_000_000,
            nat_share: 0.5,
            // UDP hole punching worked through 82 % of the NATs measured by Ford, Srisuresh
            // and Kegel ("Peer-to-Peer Communication Across Network Address Translators",
            // USENIX 2005).
            punch_share: 0.8,
            rtt_ms: (40, 200),
            churn_per_min: 0.05,
            arrival: Arrival::Steady { over_s: 10.0 },
            cdn_bps: None,
            cdn_rtt_ms: 30,
            tracker_peers: 50,
        }
    }

    /// The conditions of `scripts/bench-live.sh` at `viewers` viewers: 2.1 Mbit/s, source
    /// capped at 3x, every viewer at 2x, everyone reachable, loopback-like RTT (1 ms), no
    /// churn, arrivals over 5 s, measured after 10 s (the bench opens its window once every
    /// player runs). (The bench tells each viewer the source and the viewer
    /// before it and lets PEX do the rest; here a tracker lists up to 50 random nodes.)
    pub fn bench_live(viewers: usize) -> Scenario {
        Scenario {
            bitrate_bps: 2_100_000,
            source_up_bps: 6_300_000,
            viewer_up_mean_x: 2.0,
            viewer_below_share: 0.0,
            viewer_up_fixed: true,
            down_bps: 1_000_000_000,
            nat_share: 0.0,
            rtt_ms: (1, 1),
            churn_per_min: 0.0,
            arrival: Arrival::Steady { over_s: 5.0 },
            warmup_s: 10.0,
            ..Scenario::goal(viewers)
        }
    }

    /// Piece duration.
    pub fn piece_duration(&self) -> Duration {
        Duration::from_millis(u64::from(self.piece_ms))
    }

    /// Payload bytes of one piece at the bit rate.
    pub fn piece_len(&self) -> usize {
        (self.bitrate_bps * u64::from(self.piece_ms) / 8000).max(1) as usize
    }

    /// Bit rate in bytes per second.
    pub fn bytes_per_s(&self) -> f64 {
        self.bitrate_bps as f64 / 8.0
    }

    /// Draws a viewer's uplink, bits per second (the mean when `viewer_up_fixed`): with probability `viewer_below_share` from
    /// 0.5x..1x the bit rate, otherwise uniformly from 1x up to what makes the mean
    /// `viewer_up_mean_x`.
    pub fn draw_uplink(&self, rng: &mut ChaCha8Rng) -> u64 {
        if self.viewer_up_fixed {
            return (self.viewer_up_mean_x * self.bitrate_bps as f64) as u64;
        }
        let b = self.viewer_below_share.clamp(0.0, 1.0);
        let x = if rng.gen_bool(b) {
            rng.gen_range(0.5..1.0)
        } else {
            // Mean of the upper part m: b * 0.75 + (1 - b) * m = mean; uniform on 1..2m-1.
            let m = ((self.viewer_up_mean_x - b * 0.75) / (1.0 - b).max(1e-9)).max(1.0);
            if m > 1.0 {
                rng.gen_range(1.0..2.0 * m - 1.0)
            } else {
                1.0
            }
        };
        (x * self.bitrate_bps as f64) as u64
    }

    /// Draws a node's half of the RTT (a pair's RTT is the mean of both nodes' draws, so it
    /// stays in `rtt_ms`), microseconds.
    pub fn draw_rtt_us(&self, rng: &mut ChaCha8Rng) -> u64 {
        let (lo, hi) = (
            self.rtt_ms.0.min(self.rtt_ms.1),
            self.rtt_ms.0.max(self.rtt_ms.1),
        );
        rng.gen_range(u64::from(lo) * 1000..=u64::from(hi) * 1000)
    }

    /// When viewer number `i` of the initial audience arrives, seconds after the start.
    pub fn arrival_s(&self, i: usize, rng: &mut ChaCha8Rng) -> f64 {
        let n = self.viewers.max(1) as f64;
        match self.arrival {
            Arrival::Steady { over_s } => over_s.max(0.0) * i as f64 / n,
            Arrival::Flash { within_s } => rng.gen_range(0.0..=within_s.max(0.0)),
        }
    }

    /// Draws how long a viewer stays, seconds (exponential, so `churn_per_min` of the
    /// audience leaves per minute); `None`: stays to the end.
    pub fn draw_stay_s(&self, rng: &mut ChaCha8Rng) -> Option<f64> {
        if self.churn_per_min <= 0.0 {
            return None;
        }
        let rate = self.churn_per_min / 60.0;
        let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        Some(-u.ln() / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn uplinks_have_the_asked_mean_and_share_below() {
        let s = Scenario::goal(10);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 20_000;
        let ups: Vec<u64> = (0..n).map(|_| s.draw_uplink(&mut rng)).collect();
        let mean = ups.iter().sum::<u64>() as f64 / n as f64 / s.bitrate_bps as f64;
        let below = ups.iter().filter(|&&u| u < s.bitrate_bps).count() as f64 / n as f64;
        assert!((mean - 1.5).abs() < 0.03, "mean {mean}");
        assert!((below - 0.3).abs() < 0.02, "below {below}");
    }
}
