//! `peercdn channel`: the running engine's channels on the DHT (`/api/v1/channels`) — list
//! its own and the publishers it follows, follow one by its key, stop following.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// What `peercdn channel` was asked.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ChannelCmd {
    /// This node's channel and the publishers it follows.
    List,
    /// Follow a publisher's channel: its catalogue records come through the DHT.
    Subscribe {
        /// The publisher key (64 hex, as `peercdn search` shows it in full with --json).
        key: String,
    },
    /// Stop following a publisher (the records already taken stay).
    Unsubscribe {
        /// The publisher key.
        key: String,
    },
}

/// `peercdn channel`.
pub async fn channel(cmd: ChannelCmd, engine: &str, json: bool) -> Result<ExitCode> {
    let engine = engine.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (method, path) = match &cmd {
        ChannelCmd::List => (reqwest::Method::GET, "/api/v1/channels".to_string()),
        ChannelCmd::Subscribe { key } => (reqwest::Method::POST, format!("/api/v1/channels/{key}")),
        ChannelCmd::Unsubscribe { key } => {
            (reqwest::Method::DELETE, format!("/api/v1/channels/{key}"))
        }
    };
    let resp = client
        .request(method, format!("{engine}{path}"))
        .send()
        .await
        .with_context(|| {
            format!(
                "no engine answers on {engine} (start one with `peercdn engine`, or give --engine)"
            )
        })?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .context("the engine's answer is not JSON")?;
    if !status.is_success() {
        bail!("the engine refused: {}", body["error"]);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    match cmd {
        ChannelCmd::List => print!("{}", table(&body)),
        ChannelCmd::Subscribe { key } => {
            println!("following {key}: its records arrive as its channel head is found on the DHT")
        }
        ChannelCmd::Unsubscribe { key } => println!("no longer following {key}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The channels as text: the own one, then one line per subscription.
fn table(body: &Value) -> String {
    let mut out = String::new();
    if body["enabled"] != true {
        out.push_str(
            "the engine runs without the DHT: channels are neither published nor followed\n",
        );
    }
    let key = body["key"].as_str().unwrap_or("?");
    match body["own"].as_object() {
        Some(o) => out.push_str(&format!(
            "own channel {key}: {} records, version {}, torrent {}\n",
            o["records"],
            o["seq"],
            o["info_hash"].as_str().unwrap_or("-")
        )),
        None => out.push_str(&format!("own channel {key}: nothing published yet\n")),
    }
    let subs = body["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if subs.is_empty() {
        out.push_str("following nobody\n");
    }
    for s in subs {
        let state = match s["error"].as_str() {
            Some(e) => format!("not yet: {e}"),
            None if s["info_hash"].is_null() => "not looked up yet".into(),
            None => format!("{} records, version {}", s["records"], s["seq"]),
        };
        out.push_str(&format!(
            "following {}: {state}\n",
            s["publisher"].as_str().unwrap_or("?")
        ));
    }
    out
}
