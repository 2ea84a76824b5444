//! The live half of `peercdn demo`: one node broadcasts a generated stream, signing every
//! piece; viewer nodes that know only the stream's ID and the broadcaster's address play it
//! through the engine's own player logic while relaying it to each other. Uplinks are capped
//! (the broadcaster at 3× the bitrate, each viewer at 2×), so most viewers must get the stream
//! from other viewers; the demo prints, once a second, how many play and how far behind the
//! source they are, and at the end what the broadcaster sent compared with its audience.
//!
//! The stream is real MPEG-TS that any player plays, made without an encoder: a one-second loop
//! of 20 H.264 pictures (`testcard.h264`: ffmpeg's `testsrc2` at 192×108, every frame an IDR,
//! encoded once by x264 and kept in the source tree), muxed by core's [`TsMuxer`] with filler
//! NAL units that bring it to the demo's bitrate. The last viewer serves its HTTP API on a
//! free loopback port, so the stream can be watched in a browser (`/play/ID`) or any player
//! while the demo runs (`--serve` keeps it running until Ctrl-C).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use peercdn_core::live::{Descriptor, LiveParams};
use peercdn_core::ts::{AvcConfig, TsMuxer};
use peercdn_engine::live::player::{self, LivePlayer, Pump};
use peercdn_engine::live::{now_us, LiveHandle, LiveSource, NewPiece};
use peercdn_engine::nodekey::NodeKey;
use peercdn_engine::session::{LiveOptions, Session, SessionConfig};
use peercdn_engine::units::format_bytes;
use peercdn_http::HttpConfig;
use tokio::sync::mpsc;

/// The stream's bitrate, bytes/s (2 Mbit/s).
const BYTES_PER_S: u64 = 250_000;
/// Piece duration.
const PIECE_MS: u64 = 250;
/// Viewer nodes.
const VIEWERS: usize = 12;
/// How long the demo watches the stream once every viewer has joined.
const WATCH: Duration = Duration::from_secs(12);
/// The test card: 20 IDR pictures in Annex B form (SPS and PPS before each).
const TESTCARD: &[u8] = include_bytes!("testcard.h264");
/// Frames per second of the test card (and frames per piece: `FPS × PIECE_MS / 1000`).
const FPS: u64 = 20;

/// One viewer: its node and what its player saw.
struct Viewer {
    session: Session,
    handle: LiveHandle,
    player: Arc<LivePlayer>,
    /// Pieces its player received, shared with the task that plays them.
    played: Arc<std::sync::atomic::AtomicU64>,
}

/// Runs the live demo; `node(name, peers)` configures each node as the VoD demo does; with
/// `serve`, the stream and its player page stay up after the report until Ctrl-C.
pub async fn run(
    root: &Path,
    step: u32,
    node: &dyn Fn(&str, Vec<SocketAddr>) -> SessionConfig,
    serve: bool,
) -> Result<()> {
    let card = TestCard::parse(TESTCARD).context("the embedded test card")?;
    println!(
        "{step}. live: node S broadcasts a 2 Mbit/s H.264 test card in {PIECE_MS} ms pieces, \
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
                payload: card.piece(i),
                keyframe: true,
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
    // The last viewer's HTTP API, for a person to watch the stream.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("bind the demo's HTTP API")?;
    let http_addr = listener.local_addr()?;
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let last = viewers.last().context("no viewer")?.session.clone();
    let http = tokio::spawn(peercdn_http::serve(
        last,
        HttpConfig {
            bind: http_addr,
            ..HttpConfig::default()
        },
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    println!("   watch it while the demo runs: http://{http_addr}/play/{id}");
    println!("   (any player: http://{http_addr}/ace/manifest.m3u8?id={id}; the dashboard: http://{http_addr}/)");

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
    if serve {
        println!("   still live at http://{http_addr}/play/{id} — Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_http.send(());
    let _ = http.await;
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

/// The test card's pictures, ready to be muxed.
struct TestCard {
    avc: AvcConfig,
    /// Each picture's IDR slice NAL units, 4-byte length-prefixed (MP4 form, as the muxer takes).
    frames: Vec<Vec<u8>>,
    /// Filler bytes added to each picture to reach [`BYTES_PER_S`].
    filler: usize,
}

impl TestCard {
    /// Splits Annex B `h264` at its start codes: the first SPS and PPS, each IDR picture.
    fn parse(h264: &[u8]) -> Option<TestCard> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= h264.len() {
            if h264[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        let (mut sps, mut pps, mut frames) = (None, None, Vec::new());
        for (n, &s) in starts.iter().enumerate() {
            let end = starts.get(n + 1).map_or(h264.len(), |&e| e - 3);
            let mut nal = &h264[s..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            match nal.first().map(|b| b & 0x1F) {
                Some(7) => sps = sps.or(Some(nal.to_vec())),
                Some(8) => pps = pps.or(Some(nal.to_vec())),
                Some(5) => {
                    let mut f = (nal.len() as u32).to_be_bytes().to_vec();
                    f.extend_from_slice(nal);
                    frames.push(f);
                }
                _ => {}
            }
        }
        let per_frame = (BYTES_PER_S / FPS) as usize * 184 / 188;
        let biggest = frames.iter().map(Vec::len).max()?;
        Some(TestCard {
            avc: AvcConfig {
                sps: sps?,
                pps: pps?,
                length_size: 4,
            },
            filler: per_frame.saturating_sub(biggest + 64),
            frames,
        })
    }

    /// Piece `i`: its `FPS × PIECE_MS / 1000` pictures as MPEG-TS (PAT, PMT, then IDR frames
    /// padded with a filler NAL unit), timestamps running on from piece to piece.
    fn piece(&self, i: u32) -> Bytes {
        let per_piece = FPS * PIECE_MS / 1000;
        let mut mux = TsMuxer::segment(Some(self.avc.clone()), None, u64::from(i));
        let mut out = Vec::with_capacity((BYTES_PER_S * PIECE_MS / 1000) as usize + 4096);
        mux.psi(&mut out);
        let mut sample = Vec::new();
        for k in 0..per_piece {
            let n = u64::from(i) * per_piece + k;
            sample.clear();
            sample.extend_from_slice(&self.frames[(n % self.frames.len() as u64) as usize]);
            // Filler data (NAL type 12): 0xFF bytes, then the RBSP stop bit.
            let len = self.filler + 2;
            sample.extend_from_slice(&(len as u32).to_be_bytes());
            sample.push(0x0C);
            sample.resize(sample.len() + self.filler, 0xFF);
            sample.push(0x80);
            let pts = 126_000 + n * 90_000 / FPS;
            mux.video(pts, pts, true, &sample, &mut out);
        }
        mux.finish(&mut out);
        out.into()
    }
}
