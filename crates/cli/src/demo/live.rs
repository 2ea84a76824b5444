//! The live half of `peercdn demo`: one node broadcasts a generated stream, signing every
//! piece; viewer nodes that know only the stream's ID and the broadcaster's address play it
//! through the engine's own player logic while relaying it to each other. Uplinks are capped
//! (the broadcaster at 3× the bitrate, each viewer at 2×), so most viewers must get the stream
//! from other viewers; the demo prints, once a second, how many play and how far behind the
//! source they are, and at the end what the broadcaster sent compared with its audience.
//!
//! The payload is synthetic (188-byte packets that start with the TS sync byte, a keyframe
//! every fourth piece): the demo needs no encoder, and the swarm neither knows nor cares what
//! the bytes are — only the broadcaster's signature and the block hashes count.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use peercdn_core::live::{Descriptor, LiveParams};
use peercdn_engine::live::player::{self, LivePlayer, Pump};
use peercdn_engine::live::{now_us, LiveHandle, LiveSource, NewPiece};
use peercdn_engine::nodekey::NodeKey;
use peercdn_engine::session::{LiveOptions, Session, SessionConfig};
use peercdn_engine::units::format_bytes;
use tokio::sync::mpsc;

/// The stream's bitrate, bytes/s (2 Mbit/s).
const BYTES_PER_S: u64 = 250_000;
/// Piece duration.
const PIECE_MS: u64 = 250;
/// Viewer nodes.
const VIEWERS: usize = 12;
/// How long the demo watches the stream once every viewer has joined.
const WATCH: Duration = Duration::from_secs(12);

/// One viewer: its node and what its player saw.
struct Viewer {
    session: Session,
    handle: LiveHandle,
    player: Arc<LivePlayer>,
    /// Pieces its player received, shared with the task that plays them.
    played: Arc<std::sync::atomic::AtomicU64>,
}

/// Runs the live demo; `node(name, peers)` configures each node as the VoD demo does.
pub async fn run(
    root: &Path,
    step: u32,
    node: &dyn Fn(&str, Vec<SocketAddr>) -> SessionConfig,
) -> Result<()> {
    let piece_len = (BYTES_PER_S * PIECE_MS / 1000) as usize / 188 * 188;
    println!(
        "{step}. live: node S broadcasts a generated 2 Mbit/s stream in {PIECE_MS} ms pieces, \
         signing each;\n   its upload is capped at 3x the bitrate"
    );
    let key = NodeKey::load_or_create(&root.join("broadcaster")).context("broadcaster key")?;
    let params = LiveParams {
        name: "peercdn demo live".into(),
        pubkey: key.public(),
        piece_duration_ms: PIECE_MS as u32,
        max_piece_length: 1 << 20,
        window_s: 30,
    };
    let desc = Descriptor::new(params, vec![], vec![]);
    let id = desc.content_id();
    let src = Session::start(node("broadcaster", vec![])).await?;
    let src_h = src.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            upload_limit: 3 * BYTES_PER_S,
            ..LiveOptions::default()
        },
    );
    let buffer = src_h.buffer().context("the stream has no window")?;
    let mut source = LiveSource::new(key.signing_key(), buffer, 0)?;
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(PIECE_MS));
        for i in 0u32.. {
            tick.tick().await;
            let piece = NewPiece {
                payload: payload(i, piece_len),
                keyframe: i % 4 == 0,
                discontinuity: i == 0,
                duration_us: (PIECE_MS * 1000) as u32,
            };
            if source.push(piece).is_err() {
                return;
            }
        }
    });
    let src_addr: SocketAddr = ([127, 0, 0, 1], src.listen_port()).into();
    println!("   content ID {id}");
    println!(
        "{}. {VIEWERS} viewer nodes join knowing only the ID and S's address (and the previous \
         viewer's;\n   peer exchange does the rest) and play it; their uploads are capped at 2x",
        step + 1
    );
    let mut viewers: Vec<Viewer> = Vec::with_capacity(VIEWERS);
    let mut prev = src_addr;
    for n in 0..VIEWERS {
        let session = Session::start(node(&format!("live-viewer-{n}"), vec![])).await?;
        let handle = session.add_live_by_id(
            id,
            LiveOptions {
                peers: vec![src_addr, prev],
                upload_limit: 2 * BYTES_PER_S,
                ..LiveOptions::default()
            },
        );
        prev = ([127, 0, 0, 1], session.listen_port()).into();
        let b = tokio::time::timeout(Duration::from_secs(20), handle.wait_ready())
            .await
            .ok()
            .flatten()
            .with_context(|| format!("viewer {n} did not get the stream's descriptor"))?;
        let start = player::wait_start(
            &b,
            peercdn_engine::clock::tokio_now() + Duration::from_secs(20),
        )
        .await
        .with_context(|| format!("viewer {n} got no piece to start at"))?;
        let reader = b.reader().context("no player slot")?;
        let live_player = LivePlayer::new();
        let played = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(Pump::new(b, reader, live_player.clone(), start).run(tx));
        let count = played.clone();
        tokio::spawn(async move {
            while let Some(Ok(_)) = rx.recv().await {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        viewers.push(Viewer {
            session,
            handle,
            player: live_player,
            played,
        });
    }

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("   {spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    // Every player streams before the watch starts.
    let deadline = peercdn_engine::clock::tokio_now() + Duration::from_secs(10);
    while viewers.iter().any(|v| v.player.position().is_none()) {
        if peercdn_engine::clock::tokio_now() > deadline {
            bail!("a viewer's player did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent_before = src_h.status().uploaded;
    let before: Vec<(u64, Option<u32>)> = viewers
        .iter()
        .map(|v| (v.played(), v.player.position()))
        .collect();
    let started = peercdn_engine::clock::tokio_now();
    let mut delays: Vec<f64> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while started.elapsed() < WATCH {
        tick.tick().await;
        let now = now_us();
        let mut at: Vec<f64> = viewers
            .iter()
            .filter_map(|v| v.player.played_timestamp_us())
            .map(|ts| now.saturating_sub(ts) as f64 / 1e6)
            .collect();
        at.sort_by(f64::total_cmp);
        delays.extend(&at);
        bar.set_message(format!(
            "{:>4.1} s: {}/{VIEWERS} playing, behind the source p50 {:.2} s, worst {:.2} s",
            started.elapsed().as_secs_f64(),
            at.len(),
            quantile(&at, 0.5),
            at.last().copied().unwrap_or(0.0),
        ));
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let sent = src_h.status().uploaded.saturating_sub(sent_before);
    let per_viewer_need = BYTES_PER_S as f64 * secs;
    // Of the pieces each player moved past while we watched, the share it played (the rest
    // it skipped: they came too late).
    let worst = viewers
        .iter()
        .zip(&before)
        .map(|(v, &(played, pos))| {
            let moved = match (pos, v.player.position()) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => 0,
            };
            if moved == 0 {
                return 0.0;
            }
            ((v.played() - played) as f64 / f64::from(moved)).min(1.0)
        })
        .fold(1.0, f64::min);
    let banned: u64 = viewers.iter().map(|v| v.handle.status().banned).sum();
    let early: u64 = viewers
        .iter()
        .map(|v| v.handle.status().relayed_early)
        .sum();
    delays.sort_by(f64::total_cmp);
    println!(
        "   {secs:.0} s watched by {VIEWERS} players: behind the source p50 {:.2} s, p95 {:.2} s;",
        quantile(&delays, 0.5),
        quantile(&delays, 0.95),
    );
    println!(
        "   the worst player played {:.1} % of the pieces it passed (a late piece is skipped)",
        worst * 100.0
    );
    println!(
        "   the broadcaster sent {} ({:.1}x the bitrate) to an audience of {VIEWERS}: the viewers",
        format_bytes(sent),
        sent as f64 / per_viewer_need,
    );
    println!(
        "   relayed the rest, every block verified on the way ({banned} peers banned), {early} \
         blocks\n   forwarded before their piece was complete"
    );
    producer.abort();
    for v in viewers {
        v.session.shutdown().await;
    }
    src.shutdown().await;
    if worst < 0.5 {
        bail!("a viewer played less than half of the stream");
    }
    Ok(())
}

impl Viewer {
    fn played(&self) -> u64 {
        self.played.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The `q` quantile of sorted values (0 when empty).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Piece `i` of the generated stream: `len` bytes of 188-byte packets, each starting with the
/// TS sync byte, the rest derived from `i` (so pieces differ).
fn payload(i: u32, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    for (n, b) in v.iter_mut().enumerate() {
        *b = if n % 188 == 0 {
            0x47
        } else {
            (n as u32 ^ i.wrapping_mul(2_654_435_761)) as u8
        };
    }
    v.into()
}
