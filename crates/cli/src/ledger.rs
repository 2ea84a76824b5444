//! `peercdn ledger report|verify|export|reconcile`: the broadcaster's ledger of viewer-signed
//! receipts (`DATA_DIR/ledger.db`, kept by its engine; see `peercdn_engine::ledger`), read
//! from a data directory, as tables for people or JSON with `--json`.
//!
//! - `report`: totals, uploaders (with their Stellar accounts), CDN hosts, viewers, contents.
//! - `verify [FILE]`: the ledger itself (every signature, the hash chain, the totals), a JSON
//!   ledger export alone, or a file of Stellar envelopes (their shape, sequence, memo and
//!   signatures; with `--rate`, every payment and the memo against the ledger).
//! - `export --out FILE`: a JSON export that verifies alone; with `--stellar`, the settlement
//!   (`peercdn_engine::ledger::settlement`) as Stellar transaction envelopes, one base64 XDR
//!   envelope a line, signed with `--secret`/`--secret-file` if given.
//! - `reconcile --cdn-log FILE`: the CDN bytes viewers signed for against a CDN access log.
//!
//! Layout: this file (flags, `report`, `export`, tables); `verify.rs`; `reconcile.rs`.
//!
//! What it must never do: create or write the ledger (it is opened read-only, so the engine
//! may be running), create a node key, or touch a network — envelopes are written to a file
//! and submitted by the broadcaster with any Stellar tool. A failed check is exit status 1
//! with a message saying exactly what failed.

mod reconcile;
mod verify;

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use peercdn_engine::ledger::export::Export;
use peercdn_engine::ledger::settlement::{self, format_xlm, Rate};
use peercdn_engine::ledger::stellar::{self, ExportParams, Network, MAX_OPS};
use peercdn_engine::ledger::{Ledger, LedgerError, Report};
use peercdn_engine::nodekey::{self, NodeKey};
use peercdn_engine::units::format_bytes;
use serde_json::{json, Value};

use crate::{config, node};

/// Flags every `peercdn ledger` command takes.
#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// Config file (its `data_dir` is used when --data-dir is not given).
    #[arg(long, global = true, env = "PEERCDN_CONFIG")]
    config: Option<PathBuf>,
    /// The broadcaster's data directory (ledger.db, node.key) [default: $XDG_DATA_HOME/peercdn].
    #[arg(long, global = true, env = "PEERCDN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// What `peercdn ledger` was asked.
#[derive(Subcommand, Debug, Clone)]
pub enum LedgerCmd {
    /// Totals, and who delivered what: uploaders (with their Stellar accounts), CDN hosts,
    /// viewers, contents.
    Report,
    /// Check the ledger (every signature, the hash chain, the totals); or, given FILE, a JSON
    /// ledger export alone, or a file of Stellar envelopes (with --rate: against the ledger).
    Verify(VerifyArgs),
    /// Write a JSON ledger export that verifies alone; with --stellar, the settlement as
    /// Stellar transaction envelopes (nothing is submitted).
    Export(ExportArgs),
    /// Compare the CDN bytes viewers signed for with a CDN access log (nginx combined, or
    /// CloudFront standard logs), per content and per host.
    Reconcile(ReconcileArgs),
}

/// `peercdn ledger verify`.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// A JSON ledger export, or a file of base64 Stellar envelopes (one a line); none: the
    /// data directory's ledger.
    file: Option<PathBuf>,
    /// The Stellar network the envelopes' signatures are for: public or testnet.
    #[arg(long, default_value = "public")]
    network: Network,
    /// Check every payment and the memo against the ledger at this rate (XLM per GB).
    #[arg(long, value_name = "XLM_PER_GB", requires = "file")]
    rate: Option<Rate>,
    /// The ledger to check envelopes against: this export instead of the data directory's.
    #[arg(long, value_name = "EXPORT", requires = "rate")]
    ledger_export: Option<PathBuf>,
}

/// `peercdn ledger export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
    /// Write Stellar transaction envelopes paying the uploaders (one base64 XDR a line, at most
    /// 100 payments each) instead of the JSON ledger export.
    #[arg(long)]
    stellar: bool,
    /// What the broadcaster pays per GB (10^9 bytes) an uploader delivered, in XLM (up to 7
    /// decimals).
    #[arg(
        long,
        value_name = "XLM_PER_GB",
        requires = "stellar",
        required_if_eq("stellar", "true")
    )]
    rate: Option<Rate>,
    /// Sequence number of the first transaction: the paying account's current sequence + 1.
    #[arg(
        long,
        value_name = "N",
        requires = "stellar",
        required_if_eq("stellar", "true")
    )]
    sequence: Option<i64>,
    /// The paying account (G…) [default: the data directory's node key, the broadcaster's].
    #[arg(long, value_name = "ACCOUNT", requires = "stellar")]
    source: Option<String>,
    /// Fee per operation, in stroops.
    #[arg(long, value_name = "STROOPS", default_value_t = stellar::MIN_BASE_FEE)]
    fee: u32,
    /// The network the envelopes are signed for: public or testnet.
    #[arg(long, default_value = "public")]
    network: Network,
    /// Sign with this secret seed (S…). It shows in the process list: prefer --secret-file.
    #[arg(
        long,
        visible_alias = "sign",
        value_name = "SEED",
        requires = "stellar",
        conflicts_with = "secret_file"
    )]
    secret: Option<String>,
    /// Sign with the secret seed (S…) held in this file.
    #[arg(long, value_name = "PATH", requires = "stellar")]
    secret_file: Option<PathBuf>,
}

/// `peercdn ledger reconcile`.
#[derive(Args, Debug, Clone)]
pub struct ReconcileArgs {
    /// The CDN's access log (nginx combined, or CloudFront standard; not gzip-compressed).
    #[arg(long, value_name = "FILE")]
    cdn_log: PathBuf,
    /// Largest difference accepted per content, in percent of the signed bytes.
    #[arg(long, value_name = "PCT", default_value_t = 1.0)]
    tolerance: f64,
}

/// `peercdn ledger`.
pub fn run(cmd: LedgerCmd, args: LedgerArgs) -> Result<ExitCode> {
    let file = config::load(args.config.as_deref())?;
    let dir = node::data_dir(args.data_dir.as_ref(), &file);
    match cmd {
        LedgerCmd::Report => report(&dir, args.json),
        LedgerCmd::Verify(a) => verify::verify(&dir, &a, args.json),
        LedgerCmd::Export(a) if a.stellar => export_stellar(&dir, &a, args.json),
        LedgerCmd::Export(a) => export_json(&dir, &a, args.json),
        LedgerCmd::Reconcile(a) => reconcile::reconcile(&dir, &a, args.json),
    }
}

/// The data directory's ledger, read-only.
fn open(dir: &Path) -> Result<Ledger> {
    match Ledger::open_read_only(dir) {
        Err(LedgerError::Missing { .. }) => bail!(
            "no ledger in {}: this node has collected no receipts (a broadcaster's engine \
             collects them for its live streams)",
            dir.display()
        ),
        r => Ok(r?),
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

// --- report ---------------------------------------------------------------------------------

fn report(dir: &Path, json: bool) -> Result<ExitCode> {
    let l = open(dir)?;
    let r = l.report()?;
    if json {
        print_json(&r)?;
    } else {
        // The broadcaster's own line (its uploads are not paid), when its key is here.
        let own = dir
            .join(nodekey::KEY_FILE)
            .is_file()
            .then(|| NodeKey::load_or_create(dir).map(|k| k.public_hex()))
            .transpose()?;
        print!("{}", report_table(&r, l.path(), own.as_deref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as tables: totals, uploaders, CDN hosts, viewers, contents. The uploader whose
/// key is `own` (the broadcaster) is marked.
fn report_table(r: &Report, path: &Path, own: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ledger {}: {} entries, head {}",
        path.display(),
        r.entries,
        short(&r.head)
    );
    let t = &r.totals;
    let _ = writeln!(
        out,
        "totals: {} from peers, {} from CDN hosts, watched {}, {} pairs, {} viewers",
        format_bytes(t.p2p_bytes),
        format_bytes(t.cdn_bytes),
        hms(t.watched_ms),
        t.pairs,
        t.viewers
    );
    let _ = writeln!(out, "\nuploaders ({})", r.uploaders.len());
    out.push_str(&table(
        &["key", "<account", ">bytes", ">viewers"],
        r.uploaders.iter().map(|u| {
            let mark = if Some(u.key.as_str()) == own { "*" } else { "" };
            vec![
                format!("{}{mark}", short(&u.key)),
                u.account.clone(),
                format_bytes(u.bytes),
                u.viewers.to_string(),
            ]
        }),
    ));
    if own.is_some_and(|k| r.uploaders.iter().any(|u| u.key == k)) {
        out.push_str("* this node, the broadcaster (a settlement does not pay it)\n");
    }
    let _ = writeln!(out, "\nCDN hosts ({})", r.cdn_hosts.len());
    out.push_str(&table(
        &["host", ">bytes", ">viewers"],
        r.cdn_hosts
            .iter()
            .map(|h| vec![h.host.clone(), format_bytes(h.bytes), h.viewers.to_string()]),
    ));
    let _ = writeln!(out, "\nviewers ({})", r.viewers.len());
    out.push_str(&table(
        &["key", ">P2P", ">CDN", ">watched"],
        r.viewers.iter().map(|v| {
            vec![
                short(&v.key),
                format_bytes(v.p2p_bytes),
                format_bytes(v.cdn_bytes),
                hms(v.watched_ms),
            ]
        }),
    ));
    let _ = writeln!(out, "\ncontents ({})", r.contents.len());
    out.push_str(&table(
        &["id", ">P2P", ">CDN", ">watched", ">viewers"],
        r.contents.iter().map(|c| {
            vec![
                c.id.clone(),
                format_bytes(c.p2p_bytes),
                format_bytes(c.cdn_bytes),
                hms(c.watched_ms),
                c.viewers.to_string(),
            ]
        }),
    ));
    out
}

// --- export ---------------------------------------------------------------------------------

// --- export ---------------------------------------------------------------------------------

fn export_json(dir: &Path, a: &ExportArgs, json: bool) -> Result<ExitCode> {
    let l = open(dir)?;
    let (entries, report) = l.snapshot()?;
    let e = Export::new(entries, &report, peercdn_engine::clock::unix_secs());
    let mut text = serde_json::to_string_pretty(&e)?;
    text.push('\n');
    write_file(&a.out, text.as_bytes())?;
    if json {
        print_json(
            &json!({"out": a.out, "entries": report.entries, "head": report.head,
            "totals": report.totals}),
        )?;
    } else {
        println!(
            "wrote {}: {} entries, head {}; anyone can check it with `peercdn ledger verify {}`",
            a.out.display(),
            report.entries,
            short(&report.head),
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn export_stellar(dir: &Path, a: &ExportArgs, json: bool) -> Result<ExitCode> {
    let (Some(rate), Some(sequence)) = (a.rate, a.sequence) else {
        bail!("--stellar needs --rate and --sequence");
    };
    let l = open(dir)?;
    let report = l.report()?;
    let source = match &a.source {
        Some(s) => stellar::parse_account(s).context("--source")?,
        None => node_key(dir)?.public(),
    };
    let key = secret(a)?
        .map(|text| stellar::parse_secret(&text))
        .transpose()?;
    if let Some(k) = &key {
        let public = k.verifying_key().to_bytes();
        if public != source {
            bail!(
                "the secret key is for {}, not the paying account {}: give that account's \
                 secret (or --source {})",
                stellar::account_id(&public),
                stellar::account_id(&source),
                stellar::account_id(&public)
            );
        }
    }
    let s = settlement::settle(&report, rate, &source)?;
    if s.payments.is_empty() {
        bail!(
            "nothing to pay at {rate} XLM/GB: no uploader but {} is owed a stroop \
             ({} entries); {} not written",
            stellar::account_id(&source),
            report.entries,
            a.out.display()
        );
    }
    let params = ExportParams {
        source,
        first_sequence: sequence,
        fee_per_op: a.fee,
        memo_hash: s.memo_hash,
        network: a.network,
    };
    let mut envs = stellar::build_envelopes(&params, &s.payments)?;
    if let Some(k) = &key {
        for e in &mut envs {
            *e = stellar::sign_envelope(e, k, a.network)?;
        }
    }
    let text: String = envs.iter().map(|e| format!("{e}\n")).collect();
    write_file(&a.out, text.as_bytes())?;
    let chunks: Vec<_> = s.payments.chunks(MAX_OPS).collect();
    if json {
        print_json(&json!({
            "out": a.out,
            "source": stellar::account_id(&source),
            "network": a.network.to_string(),
            "rate_xlm_per_gb": rate.to_string(),
            "memo_hash": hex::encode(s.memo_hash),
            "entries": report.entries,
            "head": report.head,
            "signed": key.is_some(),
            "envelopes": chunks.iter().enumerate().map(|(i, c)| json!({
                "sequence": sequence + i as i64, "ops": c.len(),
                "stroops": c.iter().map(|p| p.stroops).sum::<i64>(),
            })).collect::<Vec<_>>(),
            "payments": s.payments.len(),
            "total_stroops": num(s.total_stroops()),
            "below_one_stroop": s.below_one_stroop,
            "own_bytes": s.own_bytes,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let signed = if key.is_some() { "yes" } else { "no" };
    print!(
        "{}",
        table(
            &[">envelope", ">sequence", ">ops", ">XLM", "signed"],
            chunks.iter().enumerate().map(|(i, c)| vec![
                (i + 1).to_string(),
                (sequence + i as i64).to_string(),
                c.len().to_string(),
                format_xlm(c.iter().map(|p| i128::from(p.stroops)).sum()),
                signed.to_string(),
            ]),
        )
    );
    println!(
        "wrote {}: {}, {}, {} XLM at {rate} XLM/GB from {} ({} network)",
        a.out.display(),
        plural(envs.len(), "envelope"),
        plural(s.payments.len(), "payment"),
        format_xlm(s.total_stroops()),
        stellar::account_id(&source),
        a.network
    );
    println!(
        "memo hash {} (ledger: {} entries, head {})",
        hex::encode(s.memo_hash),
        report.entries,
        short(&report.head)
    );
    if s.own_bytes > 0 {
        println!(
            "not paid: the paying account's own uploads ({})",
            format_bytes(s.own_bytes)
        );
    }
    if s.below_one_stroop > 0 {
        println!(
            "not paid: {} owed less than one stroop",
            plural(s.below_one_stroop, "uploader")
        );
    }
    println!(
        "nothing was submitted: check the file with `peercdn ledger verify {} --rate {rate}`, \
         then submit it{} with any Stellar tool, in sequence order",
        a.out.display(),
        if key.is_some() { "" } else { " signed" }
    );
    Ok(ExitCode::SUCCESS)
}

/// The data directory's node key, which must exist (it is not created here).
fn node_key(dir: &Path) -> Result<NodeKey> {
    if !dir.join(nodekey::KEY_FILE).is_file() {
        bail!(
            "no node key in {}: give the paying account with --source",
            dir.display()
        );
    }
    Ok(NodeKey::load_or_create(dir)?)
}

/// The secret seed's text from `--secret` or `--secret-file`, if given.
fn secret(a: &ExportArgs) -> Result<Option<String>> {
    match (&a.secret, &a.secret_file) {
        (Some(s), _) => Ok(Some(s.clone())),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map(Some)
            .with_context(|| format!("cannot read --secret-file {}", p.display())),
        (None, None) => Ok(None),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

// --- helpers --------------------------------------------------------------------------------

/// A table: `head` names the columns (a leading `>` aligns one right); columns are as wide as
/// their widest cell. An empty table is one line saying so.
fn table(head: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.is_empty() {
        return "  (none)\n".into();
    }
    let names: Vec<&str> = head
        .iter()
        .map(|h| h.trim_start_matches(['>', '<']))
        .collect();
    let right: Vec<bool> = head.iter().map(|h| h.starts_with('>')).collect();
    let mut width: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i > 0 {
                l.push_str("  ");
            }
            if right[i] {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &names);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&mut out, &cells);
    }
    out
}

/// The first 16 hex digits of a key or hash, which is how tables name them.
fn short(hex: &str) -> String {
    hex.chars().take(16).collect()
}

/// Milliseconds as `h:mm:ss`.
fn hms(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `n thing` or `n things`.
fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A JSON number, or a string when it does not fit an `i64`.
fn num(v: i128) -> Value {
    i64::try_from(v).map_or_else(|_| Value::String(v.to_string()), Value::from)
}

/// Problems one a line, indented; the first 20, then how many more.
fn list(items: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<String> = items.iter().take(SHOWN).map(|p| format!("  {p}")).collect();
    if items.len() > SHOWN {
        out.push(format!("  … and {} more", items.len() - SHOWN));
    }
    out.join("\n")
}

/// A bar over ledger entries (hidden with `--json`, and by indicatif off a terminal).
fn entries_bar(len: u64, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("verifying {bar:40} {pos}/{len} entries, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_say_when_empty() {
        let t = table(
            &["key", ">bytes"],
            [
                vec!["a".to_string(), "1 B".to_string()],
                vec!["bbbb".into(), "10.0 KiB".into()],
            ]
            .into_iter(),
        );
        assert_eq!(t, "key      bytes\na          1 B\nbbbb  10.0 KiB\n");
        assert_eq!(table(&["x"], std::iter::empty()), "  (none)\n");
    }

    #[test]
    fn watch_time_is_h_mm_ss() {
        assert_eq!(hms(0), "0:00:00");
        assert_eq!(hms(3_723_999), "1:02:03");
        assert_eq!(hms(100 * 3_600_000), "100:00:00");
    }
}
