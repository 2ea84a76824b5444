//! Progressive output of live streams and their JSON forms.
//!
//! - [`respond`]: the `video/mp2t` answer of `/ace/getstream` (and of a live playback URL). It
//!   starts at the newest keyframe piece at or before the newest held piece, so a player shows a
//!   picture at once, then sends pieces in index order as they arrive. The body is fed by one
//!   task per player through a channel of one piece: memory per player is bounded by a piece,
//!   and the piece's `Bytes` are the buffer's own (no copy).
//! - The task registers a [`ReaderGuard`] and moves it before every wait, so the swarm and the
//!   CDN fallback know the player's deadline. A player that fell out of the window, or whose
//!   next piece does not come while a later keyframe piece is held for longer than
//!   [`skip_after`], jumps to that keyframe: it never stalls forever.
//! - [`LivePlayer`]: what a live playback session shares between its stream task and the stat
//!   and command routes (position, timestamp played, stop).
//! - [`stat_json`] and [`live_json`]: the stat URL's answer and the `/api/v1/live` object.
//!
//! This module never touches the swarm: it reads the engine's [`LiveBuffer`] and
//! [`LiveHandle`] only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use peercdn_engine::live::{now_us, LiveBuffer, LiveHandle, ReaderGuard};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::error::ApiError;

/// How long a new player waits for the descriptor and a first keyframe piece before a 504.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The start wait of a live request: [`START_TIMEOUT`], or the configured metadata timeout
/// when shorter.
pub fn start_timeout(state: &crate::state::AppState) -> Duration {
    state.config().metadata_timeout.min(START_TIMEOUT)
}

/// Shortest wait before skipping to a later keyframe (for very short pieces).
pub const MIN_SKIP: Duration = Duration::from_millis(200);

const NO_POS: u64 = u64::MAX;

/// One live playback session: shared by the task that streams it and the stat/command routes.
#[derive(Debug)]
pub struct LivePlayer {
    pos: AtomicU64,
    played_ts_us: AtomicU64,
    stop: watch::Sender<bool>,
}

impl Default for LivePlayer {
    fn default() -> Self {
        LivePlayer {
            pos: AtomicU64::new(NO_POS),
            played_ts_us: AtomicU64::new(0),
            stop: watch::channel(false).0,
        }
    }
}

impl LivePlayer {
    /// A player that has not started yet.
    pub fn new() -> Arc<LivePlayer> {
        Arc::new(LivePlayer::default())
    }

    /// The piece the player needs next, once it streams.
    pub fn position(&self) -> Option<u32> {
        u32::try_from(self.pos.load(Ordering::Relaxed)).ok()
    }

    /// Source timestamp (µs since the epoch) of the last piece sent to the player.
    pub fn played_timestamp_us(&self) -> Option<u64> {
        Some(self.played_ts_us.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Ends every stream of this session (`command_url?method=stop`).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// True once [`LivePlayer::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn set_position(&self, index: u32) {
        self.pos.store(u64::from(index), Ordering::Relaxed);
    }
}

/// A [`LivePlayer`] inside a playback session; equal when it is the same player.
#[derive(Debug, Clone)]
pub struct LiveSlot(pub Arc<LivePlayer>);

impl PartialEq for LiveSlot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LiveSlot {}

/// How long a player waits for a missing piece while a later keyframe piece is held: two
/// piece durations, at least [`MIN_SKIP`].
pub fn skip_after(buffer: &LiveBuffer) -> Duration {
    let ms = u64::from(buffer.descriptor().params.piece_duration_ms);
    Duration::from_millis(ms.saturating_mul(2)).max(MIN_SKIP)
}

/// Where a new player starts: the newest keyframe piece at or before the newest held piece.
pub fn start_index(buffer: &LiveBuffer) -> Option<u32> {
    let (_, last) = buffer.range()?;
    buffer.keyframe_at_or_before(last)
}

/// Waits until the stream has a start piece ([`start_index`]), at most until `deadline`.
pub async fn wait_start(buffer: &LiveBuffer, deadline: Instant) -> Option<u32> {
    let mut rx = buffer.subscribe();
    loop {
        rx.borrow_and_update();
        if let Some(k) = start_index(buffer) {
            return Some(k);
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
}

/// Waits (bounded by `deadline`) for the descriptor of `handle`: 504 past it, 502 when the
/// stream was removed.
pub async fn wait_buffer(
    handle: &LiveHandle,
    deadline: Instant,
) -> Result<Arc<LiveBuffer>, ApiError> {
    match tokio::time::timeout_at(deadline, handle.wait_ready()).await {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "the live stream was removed",
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no descriptor for live stream {} yet (no peer has it?)",
                handle.content_id()
            ),
        )),
    }
}

/// The progressive `video/mp2t` answer for `handle` (chunked, no Range). `player` is the
/// playback session's shared state, when the request belongs to one. 504 when no keyframe
/// piece arrives within `timeout`; 503 when the stream has too many players.
pub async fn respond(
    handle: &LiveHandle,
    player: Option<Arc<LivePlayer>>,
    head: bool,
    timeout: Duration,
) -> Result<Response, ApiError> {
    let deadline = peercdn_engine::clock::tokio_now() + timeout;
    let buffer = wait_buffer(handle, deadline).await?;
    let reader = buffer.reader().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many players on this live stream",
        )
    })?;
    let start = wait_start(&buffer, deadline).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no keyframe piece of live stream {} within {}s",
                handle.content_id(),
                timeout.as_secs()
            ),
        )
    })?;
    reader.set_position(start);
    let body = if head {
        Body::empty()
    } else {
        let player = player.unwrap_or_default();
        let pump = Pump::new(buffer, reader, player, start);
        body(pump)
    };
    let mut r = Response::new(body);
    let hs = r.headers_mut();
    hs.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// The state of one player's stream task: which piece comes next, and since when a later
/// keyframe has been waiting.
#[derive(Debug)]
pub struct Pump {
    buffer: Arc<LiveBuffer>,
    reader: ReaderGuard,
    player: Arc<LivePlayer>,
    next: u32,
    skip_after: Duration,
}

impl Pump {
    /// A pump that sends `buffer`'s pieces from `start` on.
    pub fn new(
        buffer: Arc<LiveBuffer>,
        reader: ReaderGuard,
        player: Arc<LivePlayer>,
        start: u32,
    ) -> Pump {
        let skip_after = skip_after(&buffer);
        Pump {
            buffer,
            reader,
            player,
            next: start,
            skip_after,
        }
    }

    /// Sends payloads into `tx` until the receiver goes away or the player is stopped.
    pub async fn run(mut self, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) {
        let mut changes = self.buffer.subscribe();
        let mut stop = self.player.stop.subscribe();
        // Since when the next piece has been missing while a later keyframe piece is held.
        let mut stalled_since: Option<Instant> = None;
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            changes.borrow_and_update();
            self.reader.set_position(self.next);
            self.player.set_position(self.next);
            if let Some(p) = self.buffer.get(self.next) {
                self.player
                    .played_ts_us
                    .store(p.header.timestamp_us.max(1), Ordering::Relaxed);
                tokio::select! {
                    r = tx.send(Ok(p.payload)) => if r.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
                self.next = self.next.wrapping_add(1);
                stalled_since = None;
                continue;
            }
            // Before the window (by the live edge: the core rule the swarm follows too), the
            // piece is gone for everyone: after a pause, say. Jump.
            let behind = self.buffer.first().is_some_and(|first| self.next < first);
            let later_key = self.buffer.keyframe_after(self.next);
            let mut deadline = None;
            match (later_key, behind) {
                (Some(k), true) => {
                    tracing::debug!(from = self.next, to = k, "live player fell behind");
                    self.next = k;
                    stalled_since = None;
                    continue;
                }
                (Some(k), false) => {
                    let since = *stalled_since.get_or_insert_with(peercdn_engine::clock::tokio_now);
                    if since.elapsed() >= self.skip_after {
                        tracing::debug!(from = self.next, to = k, "live piece missing, skip");
                        self.next = k;
                        stalled_since = None;
                        continue;
                    }
                    deadline = Some(since + self.skip_after);
                }
                (None, _) => stalled_since = None,
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = sleep => {}
                _ = tx.closed() => return,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// A streaming body fed by `pump` on its own task. The task ends (dropping its reader) when
/// the client disconnects.
pub fn body(pump: Pump) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(pump.run(tx));
    Body::from_stream(crate::stream::ChunkStream::new(rx))
}

/// The stat URL's answer for a live playback session.
pub fn stat_json(handle: &LiveHandle, player: Option<&LivePlayer>, session: &str) -> Value {
    let st = handle.status();
    let buffer = handle.buffer();
    let ts = |i: Option<u32>| {
        i.and_then(|i| buffer.as_ref()?.get(i))
            .map(|p| p.header.timestamp_us / 1_000_000)
    };
    let held = buffer.as_ref().map_or(0, |b| b.held().0);
    let pos = player.and_then(LivePlayer::position);
    let now = now_us();
    let delay_ms = match player.and_then(LivePlayer::played_timestamp_us) {
        Some(t) => Some(now.saturating_sub(t) / 1000),
        None => st.delay_ms,
    };
    let status = if st.last.is_some() { "dl" } else { "prebuf" };
    json!({
        "status": status,
        "peers": st.peers,
        "speed_down": st.down_rate / 1024,
        "speed_up": st.up_rate / 1024,
        "downloaded": st.p2p_downloaded.saturating_add(st.cdn_downloaded),
        "uploaded": st.uploaded,
        "total_progress": 0,
        "is_live": 1,
        "playback_session_id": session,
        "livepos": {
            "first": st.first,
            "last": st.last,
            "pos": pos,
            "live_first": st.first,
            "live_last": st.last,
            "first_ts": ts(st.first),
            "last_ts": ts(st.last),
            "buffer_pieces": held,
        },
        "delay_ms": delay_ms,
        "p2p_downloaded": st.p2p_downloaded,
        "cdn_downloaded": st.cdn_downloaded,
    })
}

/// A live stream's JSON form in `/api/v1/live`.
pub fn live_json(handle: &LiveHandle) -> Value {
    let st = handle.status();
    let buffer = handle.buffer();
    let (pieces, bytes) = buffer.as_ref().map_or((0, 0), |b| b.held());
    let params = buffer.as_ref().map(|b| b.descriptor().params.clone());
    json!({
        "id": handle.content_id().to_hex(),
        "name": st.name,
        "is_source": st.is_source,
        "ready": buffer.is_some(),
        "peers": st.peers,
        "p2p_downloaded": st.p2p_downloaded,
        "cdn_downloaded": st.cdn_downloaded,
        "uploaded": st.uploaded,
        "down_rate": st.down_rate,
        "up_rate": st.up_rate,
        "banned": st.banned,
        "wasted": st.wasted,
        "first": st.first,
        "last": st.last,
        "edge": st.edge,
        "delay_ms": st.delay_ms,
        "readers": st.readers,
        "buffer_pieces": pieces,
        "buffer_bytes": bytes,
        "piece_duration_ms": params.as_ref().map(|p| p.piece_duration_ms),
        "window_s": params.as_ref().map(|p| p.window_s),
        "cdn": buffer.as_ref().map(|b| b.descriptor().cdn.clone()),
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests measure real elapsed time
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use peercdn_core::live::{Descriptor, LiveParams};
    use peercdn_engine::live::{LiveSource, NewPiece};

    fn stream(window_s: u32) -> (Arc<LiveBuffer>, LiveSource) {
        let key = SigningKey::from_bytes(&[9; 32]);
        let params = LiveParams {
            name: "t".into(),
            pubkey: key.verifying_key().to_bytes(),
            piece_duration_ms: 100,
            max_piece_length: 1 << 16,
            window_s,
        };
        let b = LiveBuffer::new(Descriptor::new(params, vec![], vec![]));
        let src = LiveSource::new(key, b.clone(), 0).unwrap_or_else(|e| panic!("{e}"));
        (b, src)
    }

    fn push(src: &mut LiveSource) -> u32 {
        let i = src.next_index();
        let piece = NewPiece {
            payload: Bytes::from(vec![i as u8; 188]),
            keyframe: i % 2 == 0,
            discontinuity: false,
            duration_us: 100_000,
        };
        src.push(piece).unwrap_or_else(|e| panic!("{e}"));
        i
    }

    async fn recv(rx: &mut mpsc::Receiver<Result<Bytes, std::io::Error>>) -> u8 {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Ok(b))) => b[0],
            _ => panic!("no piece"),
        }
    }

    #[tokio::test]
    async fn starts_at_a_keyframe_and_follows_the_edge() {
        let (b, mut src) = stream(30);
        for _ in 0..5 {
            push(&mut src);
        }
        assert_eq!(start_index(&b), Some(4));
        let reader = b.reader().unwrap_or_else(|| panic!("reader"));
        let player = LivePlayer::new();
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(Pump::new(b.clone(), reader, player.clone(), 4).run(tx));
        assert_eq!(recv(&mut rx).await, 4);
        push(&mut src);
        assert_eq!(recv(&mut rx).await, 5);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(player.position(), Some(6));
        assert_eq!(b.playhead(), Some(6), "the reader tells the swarm");
        player.stop();
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(b.readers(), 0, "the reader is gone with the task");
    }

    /// A player whose next piece never comes skips to the later keyframe piece instead of
    /// stalling forever.
    #[tokio::test]
    async fn skips_a_missing_piece_to_a_later_keyframe() {
        let (b, src) = stream(30);
        // Pieces 0, 1, then 2 is lost, 3 and 4 (keyframe) arrive: made by a second source
        // numbering from 3.
        let mut src = src;
        push(&mut src);
        push(&mut src);
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut late = LiveSource::new(key, b.clone(), 3).unwrap_or_else(|e| panic!("{e}"));
        push(&mut late);
        push(&mut late);
        let reader = b.reader().unwrap_or_else(|| panic!("reader"));
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(Pump::new(b.clone(), reader, LivePlayer::new(), 0).run(tx));
        assert_eq!(recv(&mut rx).await, 0);
        assert_eq!(recv(&mut rx).await, 1);
        let t = Instant::now();
        assert_eq!(recv(&mut rx).await, 4);
        assert!(t.elapsed() >= MIN_SKIP - Duration::from_millis(20));
    }

    /// A player that does not read while the window moves on (its channel is full) jumps to
    /// a keyframe in the window once it reads again.
    #[tokio::test]
    async fn a_slow_player_jumps_forward() {
        let (b, mut src) = stream(1);
        push(&mut src);
        let reader = b.reader().unwrap_or_else(|| panic!("reader"));
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(Pump::new(b.clone(), reader, LivePlayer::new(), 0).run(tx));
        assert_eq!(recv(&mut rx).await, 0);
        push(&mut src);
        push(&mut src);
        // The pump queues 1 and blocks sending 2.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The window moves far on (by count) while the player does not read.
        for _ in 0..200 {
            push(&mut src);
        }
        let (first, _) = b.range().unwrap_or((0, 0));
        assert!(first > 100, "first {first}");
        assert_eq!(recv(&mut rx).await, 1);
        assert_eq!(recv(&mut rx).await, 2);
        let k = u32::from(recv(&mut rx).await);
        assert!(
            k >= first && k % 2 == 0,
            "jumped to keyframe {k}, window from {first}"
        );
        assert_eq!(u32::from(recv(&mut rx).await), k + 1);
    }
}
