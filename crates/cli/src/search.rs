//! `peercdn search`: ask the running engine (`GET /api/v1/search?stream=1`: it asks its
//! peers, then searches its catalogue, telling how many answered as they do — a spinner on a
//! terminal) and print what it found, best first: a table for people, or the engine's JSON
//! with `--json`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// What `peercdn search` was asked.
pub struct SearchOptions {
    /// The words (all must match; empty lists everything).
    pub words: Vec<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only `vod` or `live`.
    pub kind: Option<String>,
    /// Only this language code.
    pub lang: Option<String>,
    /// At most this many results.
    pub limit: usize,
    /// Print the engine's JSON instead of a table.
    pub json: bool,
    /// Search this engine's catalogue only (ask no peer).
    pub local: bool,
    /// The engine's API base URL.
    pub engine: String,
}

/// `peercdn search`.
pub async fn search(o: SearchOptions) -> Result<ExitCode> {
    let engine = o.engine.trim_end_matches('/');
    let mut url = url::Url::parse(&format!("{engine}/api/v1/search"))
        .with_context(|| format!("bad --engine URL {engine:?}"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("query", &o.words.join(" "));
        q.append_pair("limit", &o.limit.to_string());
        q.append_pair("stream", "1");
        if o.local {
            q.append_pair("local", "1");
        }
        for (k, v) in [
            ("category", &o.category),
            ("kind", &o.kind),
            ("lang", &o.lang),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = client.get(url).send().await.with_context(|| {
        format!("no engine answers on {engine} (start one with `peercdn engine`, or give --engine)")
    })?;
    let status = resp.status();
    if !status.is_success() {
        let body: Value = resp
            .json()
            .await
            .context("the engine's answer is not JSON")?;
        bail!("the engine refused the search: {}", body["error"]);
    }
    // One JSON object a line as peers answer (`stream=1`); the last is the final answer.
    let spinner = (!o.json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(100));
        s.set_message("searching");
        s
    });
    let mut resp = resp;
    let mut buf: Vec<u8> = Vec::new();
    let mut body = Value::Null;
    while let Some(chunk) = resp
        .chunk()
        .await
        .context("the engine's answer broke off")?
    {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            body = serde_json::from_slice(&line).context("the engine's answer is not JSON")?;
            if let Some(s) = &spinner {
                s.set_message(format!(
                    "{} found; {} of {} peers answered",
                    body["total"], body["peers_answered"], body["peers_asked"]
                ));
            }
        }
    }
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    if body.is_null() {
        bail!("the engine sent no answer");
    }
    if let Some(o) = body.as_object_mut() {
        o.remove("phase");
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", table(&body));
    }
    Ok(ExitCode::SUCCESS)
}

/// The results as a table: kind, availability (as Ace gives it: 1 for content held here, a
/// share of the pieces seen otherwise), title (with category and language), content ID
/// and the publisher key's first bytes; then the count.
fn table(body: &Value) -> String {
    let empty = vec![];
    let results = body["results"].as_array().unwrap_or(&empty);
    let total = body["total"].as_u64().unwrap_or(0);
    let mut out = String::new();
    if results.is_empty() {
        out.push_str("nothing found\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<4}  {:>5}  {:<40}  {:<40}  publisher",
        "kind", "avail", "title", "id"
    );
    for r in results {
        let rec = &r["record"];
        let kind = rec["kind"].as_str().unwrap_or("-");
        let title = rec["title"].as_str().or(r["name"].as_str()).unwrap_or("");
        let mut title = clip(title, 40);
        let extra: Vec<&str> = [&rec["category"], &rec["lang"]]
            .iter()
            .filter_map(|v| v.as_str().filter(|s| !s.is_empty()))
            .collect();
        if !extra.is_empty() && title.chars().count() + 3 < 40 {
            title = clip(&format!("{title} [{}]", extra.join(", ")), 40);
        }
        let publisher = rec["publisher"]
            .as_str()
            .map_or("-", |p| &p[..p.len().min(16)]);
        let _ = writeln!(
            out,
            "{:<4}  {:>5.2}  {:<40}  {:<40}  {}",
            kind,
            r["availability"].as_f64().unwrap_or(0.0),
            title,
            r["id"].as_str().unwrap_or(""),
            publisher
        );
    }
    let _ = writeln!(out, "{} of {total} shown", results.len());
    if let Some(n) = body["peers_asked"].as_u64().filter(|n| *n > 0) {
        let answered = body["peers_answered"].as_u64().unwrap_or(0);
        let _ = writeln!(out, "asked {n} peers, {answered} answered");
    }
    out
}

/// `s` cut to `n` characters (an ellipsis marks the cut).
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut c: String = s.chars().take(n - 1).collect();
    c.push('…');
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_shows_records_and_unrecorded_content() {
        let body = json!({"total": 3, "results": [
            {"id": "ab".repeat(20), "name": "x", "availability": 1.0, "record": {
                "kind": "live", "title": "Match of the day", "category": "sport",
                "lang": "en", "publisher": "cd".repeat(32)}},
            {"id": "ef".repeat(20), "name": "holiday.mkv", "availability": 0.5, "record": null},
        ]});
        let t = table(&body);
        assert!(t.contains("Match of the day [sport, en]"), "{t}");
        assert!(
            t.contains(&"cd".repeat(8)) && !t.contains(&"cd".repeat(9)),
            "{t}"
        );
        assert!(t.contains("holiday.mkv"), "{t}");
        assert!(t.ends_with("2 of 3 shown\n"), "{t}");
        assert_eq!(
            table(&json!({"total": 0, "results": []})),
            "nothing found\n"
        );
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
