//! `peercdn ledger reconcile --cdn-log FILE`: the CDN bytes viewers signed for, per content
//! (and per host when the log names hosts), against what a CDN access log says it served
//! (`peercdn_engine::ledger::cdnlog`). A content whose figures differ by more than the
//! tolerance fails the command, as does one the log shows and no viewer signed for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peercdn_engine::ledger::cdnlog::{self, LogFormat, LogSummary};
use peercdn_engine::units::format_bytes;
use serde_json::json;

use super::{list, open, plural, print_json, table, ReconcileArgs};

/// One line of the comparison.
#[derive(serde::Serialize)]
struct Compared {
    /// Content ID (hex) or host.
    name: String,
    signed_bytes: u64,
    logged_bytes: u64,
    /// Logged minus signed.
    difference: i128,
    /// The difference in percent of the signed bytes (`None` when nothing was signed).
    percent: Option<f64>,
    within_tolerance: bool,
}

impl Compared {
    fn new(name: String, signed: u64, logged: u64, tolerance: f64) -> Compared {
        let difference = i128::from(logged) - i128::from(signed);
        let percent = (signed > 0).then(|| difference as f64 * 100.0 / signed as f64);
        Compared {
            name,
            signed_bytes: signed,
            logged_bytes: logged,
            difference,
            percent,
            within_tolerance: percent.map_or(logged == 0, |p| p.abs() <= tolerance),
        }
    }

    fn row(&self) -> Vec<String> {
        let sign = if self.difference < 0 { "-" } else { "+" };
        vec![
            self.name.clone(),
            format_bytes(self.signed_bytes),
            format_bytes(self.logged_bytes),
            format!(
                "{sign}{}",
                format_bytes(self.difference.unsigned_abs() as u64)
            ),
            self.percent.map_or("-".into(), |p| format!("{p:+.2} %")),
            match (self.within_tolerance, self.signed_bytes) {
                (true, _) => "agrees",
                (false, 0) => "DIFFERS: no receipts",
                (false, _) => "DIFFERS",
            }
            .into(),
        ]
    }
}

/// `peercdn ledger reconcile`.
pub fn reconcile(dir: &Path, a: &ReconcileArgs, json: bool) -> Result<ExitCode> {
    if !(a.tolerance.is_finite() && a.tolerance >= 0.0) {
        bail!("--tolerance must be a percentage of 0 or more");
    }
    let l = open(dir)?;
    let report = l.report()?;
    let log = &a.cdn_log;
    let f = File::open(log).with_context(|| format!("cannot open {}", log.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(
        ProgressStyle::with_template("reading {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = cdnlog::read_log(BufReader::new(bar.wrap_read(f)));
    bar.finish_and_clear();
    let summary = summary.with_context(|| format!("{}", log.display()))?;

    let mut signed: BTreeMap<[u8; 20], u64> = BTreeMap::new();
    for c in report.contents.iter().filter(|c| c.cdn_bytes > 0) {
        let mut id = [0u8; 20];
        hex::decode_to_slice(&c.id, &mut id)
            .with_context(|| format!("the ledger's content ID {:?}", c.id))?;
        signed.insert(id, c.cdn_bytes);
    }
    let ids: BTreeSet<[u8; 20]> = signed
        .keys()
        .chain(summary.per_content.keys())
        .copied()
        .collect();
    let contents: Vec<Compared> = ids
        .iter()
        .map(|id| {
            let logged = summary.per_content.get(id).map_or(0, |c| c.bytes);
            let s = signed.get(id).copied().unwrap_or(0);
            Compared::new(hex::encode(id), s, logged, a.tolerance)
        })
        .collect();
    let mut logged_hosts: BTreeMap<&str, u64> = BTreeMap::new();
    for c in summary.per_content.values() {
        for (h, b) in &c.hosts {
            let e = logged_hosts.entry(h).or_default();
            *e = e.saturating_add(*b);
        }
    }
    let hosts: Vec<Compared> = report
        .cdn_hosts
        .iter()
        .filter_map(|h| {
            let logged = logged_hosts.get(h.host.as_str())?;
            Some(Compared::new(h.host.clone(), h.bytes, *logged, a.tolerance))
        })
        .collect();
    let first_bad = summary.first_bad.as_ref().map(|(n, why)| {
        let text = nth_line(log, *n).unwrap_or_default();
        (*n, why.clone(), text)
    });
    let differing: Vec<&Compared> = contents.iter().filter(|c| !c.within_tolerance).collect();

    if json {
        print_json(&json!({
            "ok": differing.is_empty(),
            "log": log,
            "format": format_name(summary.format),
            "tolerance_pct": a.tolerance,
            "contents": contents,
            "hosts": hosts,
            "lines": summary.lines,
            "bad_lines": summary.bad_lines,
            "first_bad": first_bad.as_ref().map(|(n, why, text)|
                json!({"line": n, "why": why, "text": text})),
            "other_bytes": summary.other_bytes,
            "other_requests": summary.other_requests,
            "uncounted_status": summary.uncounted_status,
        }))?;
    } else {
        print!(
            "{}",
            reconcile_text(log, &summary, &contents, &hosts, first_bad.as_ref())
        );
    }
    if contents.is_empty() {
        if !json {
            println!("nothing to compare: no CDN bytes in the ledger, no content in the log");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !differing.is_empty() {
        let lines: Vec<String> = differing
            .iter()
            .map(|c| {
                format!(
                    "content {}: viewers signed for {} bytes, the log says {} ({})",
                    c.name,
                    c.signed_bytes,
                    c.logged_bytes,
                    c.percent
                        .map_or("no viewer signed for any of it".into(), |p| {
                            format!("{p:+.2} %")
                        })
                )
            })
            .collect();
        bail!(
            "the CDN log and the receipts differ by more than {} % for {} of {} contents:\n{}",
            a.tolerance,
            differing.len(),
            contents.len(),
            list(&lines)
        );
    }
    if !json {
        println!(
            "the CDN log agrees with the receipts within {} % for all {} contents",
            a.tolerance,
            contents.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn reconcile_text(
    log: &Path,
    summary: &LogSummary,
    contents: &[Compared],
    hosts: &[Compared],
    first_bad: Option<&(u64, String, String)>,
) -> String {
    let mut out = String::new();
    let mut about = vec![plural(summary.lines as usize, "line")];
    if summary.uncounted_status > 0 {
        about.push(format!(
            "{} not 2xx (not counted)",
            plural(summary.uncounted_status as usize, "response")
        ));
    }
    if summary.other_requests > 0 {
        about.push(format!(
            "{} ({}) for no content ID",
            plural(summary.other_requests as usize, "request"),
            format_bytes(summary.other_bytes)
        ));
    }
    let _ = writeln!(
        out,
        "log {} ({}): {}",
        log.display(),
        format_name(summary.format),
        about.join(", ")
    );
    if let Some((n, why, text)) = first_bad {
        let _ = writeln!(
            out,
            "{} could not be read; the first, line {n}: {why}\n  {text}",
            plural(summary.bad_lines as usize, "line")
        );
    }
    let head = [
        "content",
        ">signed",
        ">logged",
        ">difference",
        ">%",
        "verdict",
    ];
    out.push_str(&table(&head, contents.iter().map(Compared::row)));
    if !hosts.is_empty() {
        out.push('\n');
        let mut head = head;
        head[0] = "host";
        out.push_str(&table(&head, hosts.iter().map(Compared::row)));
    }
    out
}

fn format_name(f: LogFormat) -> &'static str {
    match f {
        LogFormat::NginxCombined => "nginx combined",
        LogFormat::CloudFront => "CloudFront",
    }
}

/// Line `n` (from 1) of a file, cut to 200 bytes, without holding a longer line in memory.
fn nth_line(path: &Path, n: u64) -> Option<String> {
    const MAX: usize = 200;
    let mut r = BufReader::new(File::open(path).ok()?);
    let mut line = 1;
    let mut out = Vec::new();
    loop {
        let buf = r.fill_buf().ok()?;
        if buf.is_empty() {
            break;
        }
        let nl = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..nl.unwrap_or(buf.len())];
        if line == n {
            out.extend_from_slice(&chunk[..chunk.len().min(MAX - out.len().min(MAX))]);
        }
        let used = nl.map_or(buf.len(), |i| i + 1);
        r.consume(used);
        if nl.is_some() {
            if line == n {
                break;
            }
            line += 1;
        }
    }
    let s = String::from_utf8_lossy(&out);
    Some(s.trim_end_matches('\r').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_shown_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let long = "x".repeat(1000);
        std::fs::write(&p, format!("one\r\ntwo\n{long}\nfour")).unwrap();
        assert_eq!(nth_line(&p, 1).as_deref(), Some("one"));
        assert_eq!(nth_line(&p, 2).as_deref(), Some("two"));
        assert_eq!(nth_line(&p, 3).map(|s| s.len()), Some(200));
        assert_eq!(nth_line(&p, 4).as_deref(), Some("four"));
        assert_eq!(nth_line(&p, 9).as_deref(), Some(""));
    }

    #[test]
    fn differences_are_judged_against_the_signed_bytes() {
        let c = Compared::new("c".into(), 1000, 990, 1.0);
        assert!(c.within_tolerance);
        assert_eq!(c.percent, Some(-1.0));
        let c = Compared::new("c".into(), 1000, 900, 1.0);
        assert!(!c.within_tolerance);
        assert_eq!(c.row()[3], "-100 B");
        // Bytes the CDN says it served for content nobody signed for.
        assert!(!Compared::new("c".into(), 0, 1, 1.0).within_tolerance);
        assert!(Compared::new("c".into(), 0, 0, 1.0).within_tolerance);
    }
}
