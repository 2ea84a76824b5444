//! What a run measures and reports: the delay histogram, per-viewer figures, byte counts, the
//! [`Report`] (serialised to JSON with stable keys scripts can read) and the simulator's own
//! cost (events per second, simulated seconds per wall second, peak memory per viewer).
//!
//! The wall clock is read only by [`Stopwatch`], and only for the cost fields: everything
//! else in a report depends on the scenario and its seed alone.

use serde::{Deserialize, Serialize};

use crate::queue::Nanos;

/// Width of a delay histogram bucket, nanoseconds (10 ms).
const BUCKET: Nanos = 10_000_000;
/// Buckets (up to 120 s; longer delays land in the last).
const BUCKETS: usize = 12_000;

/// A histogram of delays, 10 ms buckets: bounded memory whatever the run's length.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    /// Counts one delay.
    pub fn add(&mut self, d: Nanos) {
        let b = ((d / BUCKET) as usize).min(BUCKETS - 1);
        self.counts[b] += 1;
        self.total += 1;
    }

    /// Samples counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1), seconds (the upper edge of its bucket); 0 when empty.
    pub fn quantile_s(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let want = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return (i as u64 + 1) as f64 * BUCKET as f64 / 1e9;
            }
        }
        BUCKETS as f64 * BUCKET as f64 / 1e9
    }

    /// The cumulative distribution as (seconds, share ≤ it) points, one per non-empty bucket.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        let mut seen = 0;
        let mut out = Vec::new();
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            seen += c;
            out.push((
                (i as u64 + 1) as f64 * BUCKET as f64 / 1e9,
                seen as f64 / self.total as f64,
            ));
        }
        out
    }
}

/// Pieces received by relay depth (hops from the source: 1 = straight from it), up to 63
/// (deeper counts as 63).
#[derive(Debug, Clone)]
pub struct Depths {
    counts: [u64; 64],
    total: u64,
}

impl Default for Depths {
    fn default() -> Self {
        Depths {
            counts: [0; 64],
            total: 0,
        }
    }
}

impl Depths {
    /// Counts one piece received at depth `d`.
    pub fn add(&mut self, d: u8) {
        self.counts[usize::from(d.min(63))] += 1;
        self.total += 1;
    }

    /// The `q` quantile of the depths (0 when empty).
    pub fn quantile(&self, q: f64) -> u32 {
        let want = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (d, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return d as u32;
            }
        }
        0
    }

    /// The deepest depth seen.
    pub fn max(&self) -> u32 {
        self.counts.iter().rposition(|&c| c > 0).unwrap_or(0) as u32
    }

    /// Share of pieces received at each depth, from 1 to [`Depths::max`].
    pub fn shares(&self) -> Vec<(u32, f64)> {
        (1..=self.max())
            .map(|d| (d, self.counts[d as usize] as f64 / self.total.max(1) as f64))
            .collect()
    }
}

/// The `q` quantile of `v` (sorted in place), 0 when empty.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Mean of the worst `share` of `v` (lowest values first; at least one value), 1 when empty.
pub fn worst_mean(v: &mut [f64], share: f64) -> f64 {
    if v.is_empty() {
        return 1.0;
    }
    v.sort_by(f64::total_cmp);
    let n = ((v.len() as f64 * share).ceil() as usize).clamp(1, v.len());
    v[..n].iter().sum::<f64>() / n as f64
}

/// One sample of the audience over time (one per simulated second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Simulated seconds since the start.
    pub t_s: f64,
    /// Viewers present.
    pub viewers: usize,
    /// Viewers playing (started, not stalled).
    pub playing: usize,
    /// Viewers stalled.
    pub stalled: usize,
}

/// The result of a run. The cost fields (`events_per_s`, `sim_per_wall`, `wall_s`,
/// `bytes_per_viewer`, `peak_rss_bytes`) depend on the machine; everything else on the
/// scenario and the seed only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Concurrent viewers asked for.
    pub viewers: usize,
    /// Viewer sessions in all (churn adds arrivals).
    pub sessions: usize,
    /// Most viewers present at once.
    pub peak_viewers: usize,
    /// Simulated seconds.
    pub seconds: f64,
    /// Seconds before the measurement window (delays, arrivals, continuity, bytes and the
    /// source's upload count from then on; join times count from the start).
    pub warmup_s: f64,
    /// The seed.
    pub seed: u64,
    /// Delay behind the source over all pieces played by all viewers: median, seconds.
    pub delay_p50_s: f64,
    /// 95th percentile, seconds.
    pub delay_p95_s: f64,
    /// 99th percentile, seconds.
    pub delay_p99_s: f64,
    /// When pieces arrive at viewers (verified, in the window) behind the source: median,
    /// seconds (what the engine's stat reports as the delay of a player that reads at once).
    pub arrival_p50_s: f64,
    /// 95th percentile, seconds.
    pub arrival_p95_s: f64,
    /// Relay depth of the pieces viewers received (hops from the source), median.
    pub depth_p50: u32,
    /// 95th percentile.
    pub depth_p95: u32,
    /// Deepest.
    pub depth_max: u32,
    /// Mean delay of the worst 1 % of viewers (by their mean delay), seconds.
    pub delay_worst1pct_s: f64,
    /// Join time (joined → first piece played), 50th percentile over viewers who started.
    pub join_p50_s: f64,
    /// 95th percentile, seconds.
    pub join_p95_s: f64,
    /// Viewers who never started playing.
    pub never_started: usize,
    /// Continuity (share of time since start not stalled), mean over viewers who started.
    pub continuity_mean: f64,
    /// Mean continuity of the worst 1 % of viewers.
    pub continuity_worst1pct: f64,
    /// The worst viewer's continuity.
    pub continuity_worst: f64,
    /// Pieces skipped by players (missing past their skip time), all viewers.
    pub pieces_skipped: u64,
    /// Source upload ÷ bit rate (payload bytes over the run).
    pub source_upload_x: f64,
    /// Share of the viewers' payload bytes that came from peers (the source counts as a peer).
    pub p2p_share: f64,
    /// Share that came from a CDN (0: no CDN in this scenario).
    pub cdn_share: f64,
    /// Payload bytes viewers received.
    pub viewer_bytes: u64,
    /// Payload bytes viewers uploaded ÷ what their uplinks could have carried while they were
    /// present (measurement window): how much of the audience's capacity the protocol uses.
    pub viewer_upload_used: f64,
    /// Connections made between nodes over the run.
    pub connections: u64,
    /// Of them, made through a BEP 55 introduction.
    pub holepunched_connections: u64,
    /// Events handled.
    pub events: u64,
    /// Events per wall-clock second.
    pub events_per_s: f64,
    /// Simulated seconds per wall-clock second.
    pub sim_per_wall: f64,
    /// Wall-clock seconds of the run.
    pub wall_s: f64,
    /// Peak resident memory of the process, bytes (VmHWM; 0 where unknown).
    pub peak_rss_bytes: u64,
    /// Peak resident memory ÷ most viewers present at once, bytes.
    pub bytes_per_viewer: u64,
    /// The audience over time.
    pub timeline: Vec<Sample>,
}

impl Report {
    /// The report without its machine-dependent cost fields (for determinism checks).
    pub fn without_cost(&self) -> Report {
        Report {
            events_per_s: 0.0,
            sim_per_wall: 0.0,
            wall_s: 0.0,
            peak_rss_bytes: 0,
            bytes_per_viewer: 0,
            ..self.clone()
        }
    }

    /// The human-readable table `peercdn sim` prints.
    pub fn table(&self) -> String {
        let pct = |x: f64| format!("{:.2} %", x * 100.0);
        let rows = [
            (
                "viewers (sessions, peak)",
                format!(
                    "{} ({}, {})",
                    self.viewers, self.sessions, self.peak_viewers
                ),
            ),
            (
                "simulated",
                format!(
                    "{:.0} s (measured after {:.0} s), seed {}",
                    self.seconds, self.warmup_s, self.seed
                ),
            ),
            (
                "delay p50 / p95 / p99",
                format!(
                    "{:.2} / {:.2} / {:.2} s",
                    self.delay_p50_s, self.delay_p95_s, self.delay_p99_s
                ),
            ),
            (
                "piece arrival p50 / p95",
                format!("{:.2} / {:.2} s", self.arrival_p50_s, self.arrival_p95_s),
            ),
            (
                "relay depth p50 / p95 / max",
                format!(
                    "{} / {} / {} hops",
                    self.depth_p50, self.depth_p95, self.depth_max
                ),
            ),
            (
                "delay, worst 1 % of viewers",
                format!("{:.2} s", self.delay_worst1pct_s),
            ),
            (
                "join p50 / p95",
                format!(
                    "{:.2} / {:.2} s (never started: {})",
                    self.join_p50_s, self.join_p95_s, self.never_started
                ),
            ),
            (
                "continuity mean / worst 1 % / worst",
                format!(
                    "{} / {} / {}",
                    pct(self.continuity_mean),
                    pct(self.continuity_worst1pct),
                    pct(self.continuity_worst)
                ),
            ),
            ("pieces skipped", self.pieces_skipped.to_string()),
            (
                "source upload",
                format!("{:.2}x bitrate", self.source_upload_x),
            ),
            ("viewer uplinks used", pct(self.viewer_upload_used)),
            (
                "connections (holepunched)",
                format!("{} ({})", self.connections, self.holepunched_connections),
            ),
            (
                "P2P / CDN share",
                format!("{} / {}", pct(self.p2p_share), pct(self.cdn_share)),
            ),
            (
                "events (per wall s)",
                format!("{} ({:.0})", self.events, self.events_per_s),
            ),
            (
                "simulated s per wall s",
                format!("{:.2} (wall {:.1} s)", self.sim_per_wall, self.wall_s),
            ),
            (
                "peak memory per viewer",
                format!("{} KiB", self.bytes_per_viewer / 1024),
            ),
        ];
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<w$}  {v}\n"))
            .collect()
    }
}

/// Measures the simulator's own cost in wall-clock time (the only clock read of this crate).
#[derive(Debug)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// Starts measuring.
    #[allow(clippy::disallowed_methods)] // the cost measurement, never an input of the run
    pub fn start() -> Stopwatch {
        Stopwatch(std::time::Instant::now())
    }

    /// Wall-clock seconds since [`Stopwatch::start`].
    pub fn elapsed_s(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// Peak resident memory of this process, bytes (`VmHWM` in `/proc/self/status`; 0 where
/// unknown).
pub fn peak_rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.add(ms * 10_000_000 - 1);
        }
        assert!((h.quantile_s(0.5) - 0.5).abs() < 1e-9);
        assert!((h.quantile_s(0.95) - 0.95).abs() < 1e-9);
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.95), 95.0);
        assert_eq!(worst_mean(&mut v, 0.01), 1.0);
        assert_eq!(worst_mean(&mut v, 0.02), 1.5);
    }

    #[test]
    fn depths() {
        let mut d = Depths::default();
        for x in [1, 1, 2, 3, 200] {
            d.add(x);
        }
        assert_eq!(d.quantile(0.5), 2);
        assert_eq!(d.max(), 63, "deeper than 63 counts as 63");
        assert_eq!(d.shares()[0], (1, 0.4));
    }
}
