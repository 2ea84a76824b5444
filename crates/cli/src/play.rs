//! `peercdn play`: hand content to an engine and get a URL a player can open.
//!
//! If an engine answers on `--engine` (default `http://127.0.0.1:6878`), the content is added
//! there; otherwise this process starts one (peer port and API as `peercdn engine` would) and
//! keeps it running until the player exits or Ctrl-C. With `--player CMD`, the player is
//! started on the URL; without, the URL is printed.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use peercdn_core::magnet::Magnet;
use peercdn_core::InfoHash;

use crate::node::{self, NodeSettings};
use crate::{HttpArgs, NodeArgs};

/// `peercdn play`.
pub async fn play(
    node: NodeArgs,
    http: HttpArgs,
    source: String,
    engine: String,
    player: Option<String>,
) -> Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let engine = engine.trim_end_matches('/').to_string();
    let running = client
        .get(format!("{engine}/webui/api/service?method=get_version"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    let mut local = None;
    let base = if running {
        engine
    } else {
        let settings = NodeSettings::resolve(&node)?;
        let started = node::start_engine(&settings, &http).await?;
        let base = started.base_url.clone();
        local = Some(started);
        base
    };
    let query = stream_query(&client, &base, &source).await?;
    let url = format!("{base}/ace/getstream?{query}");
    println!("playback: {url}");
    let code = match player {
        Some(cmd) => {
            let mut parts = cmd.split_whitespace();
            let program = parts.next().context("--player is empty")?;
            let status = tokio::process::Command::new(program)
                .args(parts)
                .arg(&url)
                .status()
                .await
                .with_context(|| format!("cannot start player {program:?}"))?;
            if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        None if local.is_some() => {
            eprintln!("serving until Ctrl-C");
            node::stop_signal().await;
            ExitCode::from(130)
        }
        None => ExitCode::SUCCESS,
    };
    if let Some(e) = local {
        e.stop().await;
    }
    Ok(code)
}

/// The getstream query for a source: an ID or magnet as is; a .torrent file is uploaded to the
/// engine's API first.
async fn stream_query(client: &reqwest::Client, base: &str, source: &str) -> Result<String> {
    if source.starts_with("magnet:") {
        Magnet::parse(source).with_context(|| format!("bad magnet URI {source:?}"))?;
        let enc: String = url::form_urlencoded::byte_serialize(source.as_bytes()).collect();
        return Ok(format!("magnet={enc}"));
    }
    if let Ok(id) = InfoHash::parse(source) {
        return Ok(format!("id={id}"));
    }
    let path = std::path::Path::new(source);
    if !path.is_file() {
        bail!("{source:?} is neither a content ID, a magnet URI nor a .torrent file");
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {source}"))?;
    let resp = client
        .post(format!("{base}/api/v1/torrents"))
        .header("content-type", "application/x-bittorrent")
        .body(bytes)
        .send()
        .await
        .context("the engine did not answer")?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .context("the engine's answer is not JSON")?;
    if !status.is_success() {
        bail!("the engine refused the torrent: {}", body["error"]);
    }
    let id = body["response"]["id"]
        .as_str()
        .or(body["id"].as_str())
        .context("no id in the engine's answer")?;
    Ok(format!("id={id}"))
}
