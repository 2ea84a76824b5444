//! `peercdn sim`: runs the simulator (`peercdn_sim`) on the goal scenario or a variation, with
//! a progress bar in simulated seconds, then prints the table and writes the JSON report and
//! the SVG pictures. The simulation itself is the library's; this is flags and files.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peercdn_sim::{svg, Scenario, Sim};

/// What `peercdn sim` was asked (its flags).
#[derive(Debug, Clone, clap::Args)]
pub struct SimOptions {
    /// Concurrent viewers (1,000 take about two minutes here; 10,000 far longer).
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Simulated seconds.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Seed: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The scenario: `goal` (above) or `bench-live` (scripts/bench-live.sh's conditions).
    #[arg(long, value_enum, default_value_t = Preset::Goal)]
    pub preset: Preset,
    /// A CDN of this capacity (Mbit/s) that viewers fall back to when peers are late
    /// (core's fallback policy); default: no CDN.
    #[arg(long)]
    pub cdn_mbps: Option<f64>,
    /// Stream bit rate, kbit/s (varies the preset).
    #[arg(long)]
    pub bitrate_kbps: Option<u64>,
    /// Source uplink, Mbit/s (varies the preset).
    #[arg(long)]
    pub source_mbps: Option<f64>,
    /// Mean viewer uplink as a multiple of the bit rate (varies the preset).
    #[arg(long)]
    pub up_x: Option<f64>,
    /// Share of viewers whose uplink is below the bit rate, 0..1 (varies the preset).
    #[arg(long)]
    pub below_share: Option<f64>,
    /// Share of viewers behind NAT (cannot be dialled), 0..1 (varies the preset).
    #[arg(long)]
    pub nat_share: Option<f64>,
    /// Share of the viewers behind NAT that BEP 55 introductions reach (their NAT keeps one
    /// external port per socket), 0..1 (varies the preset; the goal's 0.8 after Ford et al.,
    /// USENIX 2005).
    #[arg(long)]
    pub punch_share: Option<f64>,
    /// Share of the audience leaving (and as many arriving) per minute, 0..1 (varies the
    /// preset).
    #[arg(long)]
    pub churn: Option<f64>,
    /// Round-trip times drawn from LO..HI milliseconds, written `LO-HI` (varies the preset).
    #[arg(long, value_parser = parse_range)]
    pub rtt_ms: Option<(u32, u32)>,
    /// Seconds before the measurement window opens (delays, continuity, bytes count from
    /// then on) [default: goal 0, bench-live 10].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the pictures (delay CDF, audience over time, relay depth) into this directory.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// Which scenario `peercdn sim` varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The live-at-scale goal: 5 Mbit/s, source 100 Mbit/s, viewers mean 1.5x, NAT, churn.
    Goal,
    /// `scripts/bench-live.sh`'s conditions (2.1 Mbit/s, caps 3x and 2x, loopback RTT), to
    /// compare with real processes.
    BenchLive,
}

/// Clamps a share to 0..=1.
fn unit(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}

/// Parses `LO-HI` (or one number for both).
fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let num = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|e| format!("`{x}` is not a number of milliseconds: {e}"))
    };
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(format!("{lo} is above {hi}"));
            }
            Ok((lo, hi))
        }
        None => num(s).map(|x| (x, x)),
    }
}

/// Runs the simulation (blocking: call it off the async runtime).
pub fn run(o: SimOptions) -> Result<()> {
    let base = match o.preset {
        Preset::Goal => Scenario::goal(o.viewers),
        Preset::BenchLive => Scenario::bench_live(o.viewers),
    };
    let sc = Scenario {
        seconds: o.seconds,
        seed: o.seed,
        cdn_bps: o.cdn_mbps.map(|m| (m.max(0.0) * 1e6) as u64),
        warmup_s: o.warmup.unwrap_or(base.warmup_s),
        bitrate_bps: o.bitrate_kbps.map_or(base.bitrate_bps, |k| k.max(1) * 1000),
        source_up_bps: o
            .source_mbps
            .map_or(base.source_up_bps, |m| (m.max(0.001) * 1e6) as u64),
        viewer_up_mean_x: o.up_x.map_or(base.viewer_up_mean_x, |x| x.max(0.0)),
        viewer_below_share: o.below_share.map_or(base.viewer_below_share, unit),
        nat_share: o.nat_share.map_or(base.nat_share, unit),
        punch_share: o.punch_share.map_or(base.punch_share, unit),
        churn_per_min: o.churn.map_or(base.churn_per_min, unit),
        rtt_ms: o.rtt_ms.unwrap_or(base.rtt_ms),
        ..base
    };
    eprintln!(
        "simulating {} viewers for {} s (seed {}): {} kbit/s stream, source uplink {} Mbit/s, \
         viewer uplinks mean {}x ({} % below the bitrate), {} % behind NAT ({} % of them \
         holepunchable), RTT {}-{} ms, \
         {} % churn per minute, {}",
        sc.viewers,
        sc.seconds,
        sc.seed,
        sc.bitrate_bps / 1000,
        sc.source_up_bps / 1_000_000,
        sc.viewer_up_mean_x,
        (sc.viewer_below_share * 100.0).round(),
        (sc.nat_share * 100.0).round(),
        (sc.punch_share * 100.0).round(),
        sc.rtt_ms.0,
        sc.rtt_ms.1,
        (sc.churn_per_min * 100.0).round(),
        match sc.cdn_bps {
            Some(b) => format!("CDN {} Mbit/s", b / 1_000_000),
            None => "no CDN".into(),
        },
    );
    let mut sim = Sim::new(sc);
    let bar = ProgressBar::new(o.seconds.ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} simulated s  {elapsed_precise} elapsed, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Without a terminal the bar is hidden: a long run in a script or a log still says how
    // far it is, a line every tenth of the run.
    let lines = !std::io::stderr().is_terminal();
    let every = (o.seconds / 10.0).ceil().max(1.0);
    let started = peercdn_engine::clock::now();
    let mut t = 0.0;
    while t < o.seconds {
        t = (t + 1.0).min(o.seconds);
        sim.run_until(t);
        bar.set_position(t.ceil() as u64);
        if lines && (t % every == 0.0 || t >= o.seconds) {
            eprintln!(
                "simulated {t:.0} of {:.0} s, {:.0} s of wall time",
                o.seconds,
                started.elapsed().as_secs_f64()
            );
        }
    }
    bar.finish_and_clear();
    let report = sim.report();
    print!("{}", report.table());
    if let Some(path) = &o.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report: {}", path.display());
    }
    if let Some(dir) = &o.svg {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, body) in [
            ("delay-cdf.svg", svg::delay_cdf(sim.delays())),
            ("audience.svg", svg::audience(&report.timeline)),
            ("relay-depth.svg", svg::relay_depth(sim.depths())),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("picture: {}", p.display());
        }
    }
    Ok(())
}
