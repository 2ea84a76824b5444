//! `peercdn broadcast`: an engine that also ingests a live MPEG-TS source, cuts it into pieces
//! at keyframes, signs each piece with the node key and lets the swarm relay it.
//!
//! The stream's descriptor (`.peerlive`) is written to `DATA_DIR/live/ID.peerlive` (and to the
//! publish directory when `--publish-dir` is given). The next piece index is saved beside it,
//! so a restarted broadcaster (same data directory, same `--name`) keeps the same content ID and
//! continues the numbering instead of starting over (viewers would refuse old indices).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peercdn_core::live::{Descriptor, LiveParams};
use peercdn_core::ts::CutterConfig;
use peercdn_engine::ingest::{self, IngestStats, Input};
use peercdn_engine::live::{cdn, LiveSource, NewPiece};
use peercdn_engine::nodekey::NodeKey;
use peercdn_engine::session::LiveOptions;
use peercdn_engine::units::{format_bytes, format_rate};

use crate::node::{start_engine, stop_signal, NodeSettings};
use crate::{HttpArgs, NodeArgs};

/// Indices skipped after a restart (pieces made after the last save of the counter).
const RESTART_GAP: u32 = 64;

/// What `peercdn broadcast` was asked to do.
pub struct BroadcastOptions {
    /// `file.ts`, `-`, `udp://HOST:PORT`, `http(s)://…`.
    pub input: String,
    /// Stream name.
    pub name: String,
    /// Restart a file input at its end.
    pub looped: bool,
    /// Write DESIGN §3's CDN layout here.
    pub publish_dir: Option<PathBuf>,
    /// CDN base URLs put in the descriptor's `url-list`.
    pub cdn: Vec<String>,
    /// Base URLs of this engine's API where viewers may hand their receipts over HTTP (the
    /// descriptor's `collector`); `self` stands for the API's own base URL once it listens.
    pub collector: Vec<String>,
    /// How long to keep serving (and collecting receipts) after the input ended.
    pub linger: Duration,
    /// Target piece duration, ms.
    pub piece_ms: u32,
    /// Window, seconds.
    pub window_s: u32,
    /// What the stream's catalogue record says.
    pub record: peercdn_core::catalog::Description,
}

/// `peercdn broadcast`.
pub async fn broadcast(node: NodeArgs, http: HttpArgs, opts: BroadcastOptions) -> Result<ExitCode> {
    let mut input: Input = opts
        .input
        .parse()
        .with_context(|| format!("--input {:?}", opts.input))?;
    if let Input::File { looped, .. } = &mut input {
        *looped = opts.looped;
    }
    let settings = NodeSettings::resolve(&node)?;
    let key = NodeKey::load_or_create(&settings.data_dir)?;
    let cutter = CutterConfig {
        piece_duration_us: opts.piece_ms.saturating_mul(1000),
        ..CutterConfig::default()
    };
    let params = LiveParams {
        name: opts.name.clone(),
        pubkey: key.public(),
        piece_duration_ms: opts.piece_ms,
        max_piece_length: u32::try_from(cutter.max_piece_len).unwrap_or(u32::MAX),
        window_s: opts.window_s,
    };
    let desc = Descriptor::new(params, vec![], opts.cdn.clone());
    let id = desc.content_id();
    let live_dir = settings.data_dir.join("live");
    std::fs::create_dir_all(&live_dir)
        .with_context(|| format!("cannot create {}", live_dir.display()))?;
    let desc_path = live_dir.join(format!("{id}.peerlive"));
    std::fs::write(&desc_path, desc.to_bytes())
        .with_context(|| format!("cannot write {}", desc_path.display()))?;
    let counter = live_dir.join(format!("{id}.next"));
    let first_index = read_counter(&counter).map_or(0, |n| n.saturating_add(RESTART_GAP));

    let running = start_engine(&settings, &http).await?;
    let mut desc = desc;
    if !opts.collector.is_empty() {
        desc.collector = opts
            .collector
            .iter()
            .map(|c| match c.as_str() {
                "self" => running.base_url.trim_end_matches('/').to_string(),
                url => url.trim_end_matches('/').to_string(),
            })
            .collect();
        std::fs::write(&desc_path, desc.to_bytes())
            .with_context(|| format!("cannot write {}", desc_path.display()))?;
    }
    let handle = running.session.add_live(
        desc,
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let buffer = handle.buffer().context("the live stream has no window")?;
    let _publisher = match &opts.publish_dir {
        Some(dir) => Some(
            cdn::spawn_publisher(buffer.clone(), dir.clone())
                .with_context(|| format!("--publish-dir {}", dir.display()))?,
        ),
        None => None,
    };
    let stats = Arc::new(IngestStats::default());
    buffer.set_ingest(stats.clone());
    let mut source = LiveSource::new(key.signing_key(), buffer, first_index)?;
    println!("id: {id}");
    crate::node::publish_record(
        &running.session,
        id,
        peercdn_core::catalog::Kind::Live,
        opts.record.clone(),
    );
    println!("acestream://{id}");
    println!("descriptor: {}", desc_path.display());
    println!(
        "watch: {}/ace/getstream?id={id}  (HLS: {}/ace/manifest.m3u8?id={id})",
        running.base_url, running.base_url
    );

    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let ingest_task = tokio::spawn(ingest::run(input, cutter, tx, stats.clone()));
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut status_tick = tokio::time::interval(Duration::from_millis(500));
    let mut first = true;
    let code = loop {
        tokio::select! {
            piece = rx.recv() => match piece {
                Some(p) => {
                    let header = source.push(NewPiece {
                        payload: p.payload,
                        keyframe: p.keyframe,
                        // The first piece of a run follows whatever viewers had before.
                        discontinuity: p.discontinuity || first,
                        duration_us: p.duration_us,
                    })?;
                    first = false;
                    if header.index % 16 == 0 {
                        save_counter(&counter, source.next_index());
                    }
                }
                None => break None,
            },
            _ = status_tick.tick() => {
                let st = handle.status();
                bar.set_message(format!(
                    "{}: in {}, {} pieces, {} peers, {} players, sent {} ({})",
                    opts.name,
                    format_rate(stats.snapshot().bitrate_bps as f64 / 8.0),
                    source.next_index().saturating_sub(first_index),
                    st.peers,
                    st.readers,
                    format_bytes(st.uploaded),
                    format_rate(st.up_rate as f64),
                ));
            }
            _ = &mut stop => break Some(ExitCode::from(130)),
        }
    };
    save_counter(&counter, source.next_index());
    bar.finish_and_clear();
    let code = match code {
        Some(c) => c,
        None => match ingest_task.await {
            Ok(Ok(())) => {
                eprintln!(
                    "input ended; serving the last pieces and collecting receipts for {} s",
                    opts.linger.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(opts.linger) => ExitCode::SUCCESS,
                    _ = &mut stop => ExitCode::from(130),
                }
            }
            Ok(Err(e)) => {
                eprintln!("error: input: {e}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("error: ingest task: {e}");
                ExitCode::from(1)
            }
        },
    };
    running.stop().await;
    Ok(code)
}

fn read_counter(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn save_counter(path: &Path, next: u32) {
    let tmp = path.with_extension("next.tmp");
    if std::fs::write(&tmp, next.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
