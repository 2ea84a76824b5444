//! Hand-written SVG charts of a run: the delay CDF and the audience over time (playing and
//! stalled viewers). One small line-chart function, no plotting crate; the output is a plain
//! SVG file any browser shows.

use std::fmt::Write as _;

use crate::metrics::{Depths, Histogram, Sample};

const W: f64 = 640.0;
const H: f64 = 400.0;
const PAD: f64 = 50.0;

/// One line of a chart: its label, colour and points (x, y) in data units.
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// SVG colour.
    pub color: &'a str,
    /// Points in data units, x increasing.
    pub points: Vec<(f64, f64)>,
}

/// A line chart with axes from 0 to the data's maxima (or `y_max`), ticks and a legend.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    y_max: Option<f64>,
    series: &[Series<'_>],
) -> String {
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let y_max = y_max
        .unwrap_or_else(|| all.map(|p| p.1).fold(0.0, f64::max))
        .max(1e-9);
    let sx = |x: f64| PAD + x / x_max * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD - y / y_max * (H - 2.0 * PAD);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    let (x0, y0, x1, y1) = (PAD, H - PAD, W - PAD, PAD);
    let _ = writeln!(
        s,
        r#"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" stroke="black" fill="none"/>"#
    );
    for i in 0..=5 {
        let f = f64::from(i) / 5.0;
        let (tx, ty) = (sx(f * x_max), sy(f * y_max));
        let _ = writeln!(
            s,
            r##"<line x1="{tx}" y1="{y0}" x2="{tx}" y2="{}" stroke="#ccc"/><text x="{tx}" y="{}" text-anchor="middle">{}</text>"##,
            y0 + 4.0,
            y0 + 18.0,
            num(f * x_max)
        );
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{ty}" x2="{x1}" y2="{ty}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            ty + 4.0,
            num(f * y_max)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        W / 2.0,
        H - 10.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
        H / 2.0,
        H / 2.0,
        esc(y_label)
    );
    for (k, se) in series.iter().enumerate() {
        let d: String = se
            .points
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                format!(
                    "{}{:.1},{:.1} ",
                    if i == 0 { 'M' } else { 'L' },
                    sx(x),
                    sy(y.min(y_max))
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<path d="{}" stroke="{}" stroke-width="2" fill="none"/>"#,
            d.trim_end(),
            se.color
        );
        let ly = PAD + 16.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="3" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            W - PAD - 150.0,
            ly - 4.0,
            se.color,
            W - PAD - 132.0,
            ly,
            esc(se.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The CDF of delays behind the source.
pub fn delay_cdf(h: &Histogram) -> String {
    let mut pts = vec![(0.0, 0.0)];
    pts.extend(h.cdf());
    line_chart(
        "Delay behind the source (all pieces played)",
        "delay, s",
        "share of pieces played",
        Some(1.0),
        &[Series {
            label: "CDF",
            color: "#1f77b4",
            points: pts,
        }],
    )
}

/// Viewers present, playing and stalled over time.
pub fn audience(timeline: &[Sample]) -> String {
    let pick = |f: fn(&Sample) -> usize| timeline.iter().map(|s| (s.t_s, f(s) as f64)).collect();
    line_chart(
        "Audience over time",
        "simulated time, s",
        "viewers",
        None,
        &[
            Series {
                label: "present",
                color: "#999",
                points: pick(|s| s.viewers),
            },
            Series {
                label: "playing",
                color: "#2ca02c",
                points: pick(|s| s.playing),
            },
            Series {
                label: "stalled",
                color: "#d62728",
                points: pick(|s| s.stalled),
            },
        ],
    )
}

/// The share of pieces received at each relay depth (a step line: the relay tree's shape).
pub fn relay_depth(d: &Depths) -> String {
    let mut pts = vec![(0.0, 0.0)];
    for (depth, share) in d.shares() {
        let x = f64::from(depth);
        pts.push((x - 1.0, share));
        pts.push((x, share));
    }
    line_chart(
        "Relay depth of the pieces viewers received",
        "hops from the source",
        "share of pieces",
        None,
        &[Series {
            label: "pieces",
            color: "#9467bd",
            points: pts,
        }],
    )
}

fn num(x: f64) -> String {
    if x >= 100.0 || x == 0.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdf_is_an_svg_with_a_path() {
        let mut h = Histogram::default();
        for d in [100_000_000, 200_000_000, 900_000_000] {
            h.add(d);
        }
        let s = delay_cdf(&h);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("<path d=\"M"));
    }
}
