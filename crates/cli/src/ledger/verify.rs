//! `peercdn ledger verify [FILE]`: the data directory's ledger, a JSON ledger export alone, or a
//! file of Stellar envelopes — on their own (operations, fees, sequence numbers, memo, source,
//! signatures) and, with `--rate`, against the settlement the ledger gives
//! (`peercdn_engine::ledger::settlement::settle`, the function `export --stellar` used).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use peercdn_engine::ledger::export::{self, Export};
use peercdn_engine::ledger::settlement::{self, format_xlm, Settlement};
use peercdn_engine::ledger::stellar::{self, DecodedTx, Network, MAX_OPS};
use peercdn_engine::ledger::Report;
use serde_json::{json, Value};

use super::{entries_bar, list, num, open, plural, print_json, short, table, VerifyArgs};

/// `peercdn ledger verify`.
pub fn verify(dir: &Path, a: &VerifyArgs, json: bool) -> Result<ExitCode> {
    let Some(file) = &a.file else {
        return verify_ledger(dir, json);
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if text.trim_start().starts_with('{') {
        if a.rate.is_some() {
            bail!(
                "--rate checks a file of Stellar envelopes; {} is a ledger export",
                file.display()
            );
        }
        let r = verify_export_text(file, &text, json)?;
        if json {
            print_json(&json!({"ok": true, "file": file, "entries": r.entries,
                "head": r.head, "totals": r.totals}))?;
        } else {
            println!(
                "ledger export {} verifies: {} entries, head {}; every signature, the hash \
                 chain and the report's figures check out",
                file.display(),
                r.entries,
                short(&r.head)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    verify_envelopes(dir, file, &text, a, json)
}

fn verify_ledger(dir: &Path, json: bool) -> Result<ExitCode> {
    let l = open(dir)?;
    let bar = entries_bar(l.entries(), json);
    let r = l.verify_with(|n| bar.set_position(n));
    bar.finish_and_clear();
    let r = r?;
    if json {
        print_json(
            &json!({"ok": true, "ledger": l.path(), "entries": r.entries,
            "head": r.head, "totals": r.totals}),
        )?;
    } else {
        println!(
            "ledger {} verifies: {} entries, head {}; every signature, the hash chain and the \
             totals check out",
            l.path().display(),
            r.entries,
            short(&r.head)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses and verifies a JSON ledger export: the report rebuilt from its entries.
fn verify_export_text(file: &Path, text: &str, json: bool) -> Result<Report> {
    let e: Export = serde_json::from_str(text)
        .with_context(|| format!("{} is not a ledger export", file.display()))?;
    let bar = entries_bar(e.entries.len() as u64, json);
    let r = export::verify_with(&e, |n| bar.set_position(n));
    bar.finish_and_clear();
    r.map_err(|why| anyhow::anyhow!("ledger export {}: {why}", file.display()))
}

/// One envelope of a file, decoded.
struct Envelope {
    line: usize,
    tx: DecodedTx,
}

fn verify_envelopes(
    dir: &Path,
    file: &Path,
    text: &str,
    a: &VerifyArgs,
    json: bool,
) -> Result<ExitCode> {
    let mut envs = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let tx = stellar::decode_envelope(l, a.network)
            .with_context(|| format!("{} line {}", file.display(), i + 1))?;
        envs.push(Envelope { line: i + 1, tx });
    }
    let Some(first) = envs.first().map(|e| e.tx.clone()) else {
        bail!("{} holds no envelopes", file.display());
    };
    let mut problems = envelope_problems(&envs, a.network);
    // Against the ledger, when asked.
    let mut against = Value::Null;
    if let Some(rate) = a.rate {
        let (report, what) = match &a.ledger_export {
            Some(e) => {
                let text = std::fs::read_to_string(e)
                    .with_context(|| format!("cannot read {}", e.display()))?;
                (
                    verify_export_text(e, &text, json)?,
                    format!("export {}", e.display()),
                )
            }
            None => {
                let l = open(dir).context(
                    "--rate checks the envelopes against a ledger (or give --ledger-export)",
                )?;
                (l.report()?, format!("ledger {}", l.path().display()))
            }
        };
        let s = settlement::settle(&report, rate, &first.source)?;
        problems.extend(settlement_problems(&envs, &s, &report));
        against = json!({"ledger": what, "entries": report.entries, "head": report.head,
            "rate_xlm_per_gb": rate.to_string(), "memo_hash": hex::encode(s.memo_hash),
            "payments": s.payments.len(), "total_stroops": num(s.total_stroops())});
    }
    let signed = envs.iter().filter(|e| e.tx.valid_signatures > 0).count();
    let signing = match signed {
        0 => "unsigned".to_string(),
        n if n == envs.len() => "all signed by the source".to_string(),
        n => format!("{n} of {} signed by the source", envs.len()),
    };
    let payments: usize = envs.iter().map(|e| e.tx.payments.len()).sum();
    let total: i128 = envs.iter().map(|e| stroops_of(&e.tx)).sum();
    if json {
        print_json(&json!({
            "ok": problems.is_empty(),
            "file": file,
            "network": a.network.to_string(),
            "source": stellar::account_id(&first.source),
            "memo_hash": first.memo_hash.map(hex::encode),
            "envelopes": envs.iter().map(|e| json!({
                "line": e.line, "sequence": e.tx.sequence, "ops": e.tx.payments.len(),
                "fee": e.tx.fee, "stroops": num(stroops_of(&e.tx)),
                "signatures": e.tx.signatures, "valid_signatures": e.tx.valid_signatures,
                "hash": hex::encode(e.tx.hash),
            })).collect::<Vec<_>>(),
            "payments": payments,
            "total_stroops": num(total),
            "checked_against": against,
            "problems": problems,
        }))?;
    } else {
        print!(
            "{}",
            table(
                &[
                    ">envelope",
                    ">line",
                    ">sequence",
                    ">ops",
                    ">fee",
                    ">XLM",
                    ">signatures"
                ],
                envs.iter().enumerate().map(|(i, e)| vec![
                    (i + 1).to_string(),
                    e.line.to_string(),
                    e.tx.sequence.to_string(),
                    e.tx.payments.len().to_string(),
                    e.tx.fee.to_string(),
                    format_xlm(stroops_of(&e.tx)),
                    format!("{}/{}", e.tx.valid_signatures, e.tx.signatures),
                ]),
            )
        );
        println!(
            "{}, {}, {} XLM from {} on the {} network; {signing}",
            plural(envs.len(), "envelope"),
            plural(payments, "payment"),
            format_xlm(total),
            stellar::account_id(&first.source),
            a.network
        );
        match (&against, problems.is_empty()) {
            (Value::Null, _) => println!(
                "payments not checked against a ledger (give --rate, with the data \
                 directory's ledger or --ledger-export)"
            ),
            (v, true) => println!(
                "every payment and the memo match the {} ({} entries, head {}) at {} XLM/GB",
                v["ledger"].as_str().unwrap_or(""),
                v["entries"],
                short(v["head"].as_str().unwrap_or("")),
                v["rate_xlm_per_gb"].as_str().unwrap_or("")
            ),
            (_, false) => {}
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} fails verification:\n{}",
            file.display(),
            list(&problems)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What is wrong with a file of envelopes on its own: operations, fees, sequence numbers,
/// memo, source, signatures.
fn envelope_problems(envs: &[Envelope], network: Network) -> Vec<String> {
    let mut out = Vec::new();
    let Some(first) = envs.first() else {
        return out;
    };
    for (k, e) in envs.iter().enumerate() {
        let tx = &e.tx;
        let name = envelope_name(k, e);
        let ops = tx.payments.len();
        if ops == 0 {
            out.push(format!("{name}: no operations"));
        }
        if ops > MAX_OPS {
            out.push(format!(
                "{name}: {ops} operations, more than Stellar's {MAX_OPS}"
            ));
        }
        let min_fee = u64::from(stellar::MIN_BASE_FEE) * ops as u64;
        if u64::from(tx.fee) < min_fee {
            out.push(format!(
                "{name}: fee {} stroops is below {} × {ops} operations = {min_fee}",
                tx.fee,
                stellar::MIN_BASE_FEE
            ));
        }
        let want = i64::try_from(k)
            .ok()
            .and_then(|k| first.tx.sequence.checked_add(k));
        if Some(tx.sequence) != want {
            out.push(format!(
                "{name}: sequence {} does not follow envelope 1's {} (expected {})",
                tx.sequence,
                first.tx.sequence,
                want.map_or("none".into(), |w| w.to_string())
            ));
        }
        match tx.memo_hash {
            None => out.push(format!("{name}: no hash memo")),
            Some(m) if Some(m) != first.tx.memo_hash => out.push(format!(
                "{name}: memo hash {} differs from envelope 1's",
                hex::encode(m)
            )),
            Some(_) => {}
        }
        if tx.source != first.tx.source {
            out.push(format!(
                "{name}: source {} differs from envelope 1's {}",
                stellar::account_id(&tx.source),
                stellar::account_id(&first.tx.source)
            ));
        }
        if tx.signatures > tx.valid_signatures {
            out.push(format!(
                "{name}: {} of its {} signatures are not the source's on the {network} network \
                 (wrong --network?)",
                tx.signatures - tx.valid_signatures,
                tx.signatures
            ));
        }
    }
    out
}

/// Where the envelopes' payments and memo differ from the settlement the ledger gives.
fn settlement_problems(envs: &[Envelope], s: &Settlement, report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if envs[0].tx.memo_hash != Some(s.memo_hash) {
        out.push(format!(
            "{}: memo hash {} is not the settlement memo of the ledger ({} entries, head {}) \
             at {} XLM/GB, {}",
            envelope_name(0, &envs[0]),
            envs[0].tx.memo_hash.map_or("(none)".into(), hex::encode),
            report.entries,
            short(&report.head),
            s.rate,
            hex::encode(s.memo_hash)
        ));
    }
    let owed: BTreeMap<[u8; 32], i64> = s
        .payments
        .iter()
        .map(|p| (p.destination, p.stroops))
        .collect();
    let mut paid: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    for (k, e) in envs.iter().enumerate() {
        for p in &e.tx.payments {
            let to = stellar::account_id(&p.destination);
            let name = envelope_name(k, e);
            if let Some(prev) = paid.insert(p.destination, k) {
                out.push(format!(
                    "{name}: pays {to} again (envelope {} pays it already)",
                    prev + 1
                ));
                continue;
            }
            match owed.get(&p.destination) {
                None => out.push(format!(
                    "{name}: pays {to} {} XLM, which the ledger does not owe",
                    format_xlm(p.stroops.into())
                )),
                Some(&want) if want != p.stroops => out.push(format!(
                    "{name}: pays {to} {} XLM, the ledger owes {} XLM",
                    format_xlm(p.stroops.into()),
                    format_xlm(want.into())
                )),
                Some(_) => {}
            }
        }
    }
    for (d, want) in &owed {
        if !paid.contains_key(d) {
            out.push(format!(
                "no envelope pays {} the {} XLM the ledger owes",
                stellar::account_id(d),
                format_xlm((*want).into())
            ));
        }
    }
    out
}

fn envelope_name(k: usize, e: &Envelope) -> String {
    format!(
        "envelope {} (line {}, sequence {})",
        k + 1,
        e.line,
        e.tx.sequence
    )
}

fn stroops_of(tx: &DecodedTx) -> i128 {
    tx.payments.iter().map(|p| i128::from(p.stroops)).sum()
}
