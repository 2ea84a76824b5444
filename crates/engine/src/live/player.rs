//! The live player logic, for any output that plays a stream in order (the HTTP API's
//! progressive `/ace/getstream`, and whatever comes next): where a new player starts
//! ([`start_index`]: the newest keyframe piece at or before the newest held piece, so a player
//! shows a picture at once), and when it skips ahead ([`Pump`]: a player that fell out of the
//! window, or whose next piece does not come while a later keyframe piece is held for longer
//! than [`skip_after`], jumps to that keyframe — it never stalls forever).
//!
//! A [`Pump`] registers a [`ReaderGuard`] and moves it before every wait, so the swarm and the
//! CDN fallback know the player's deadline; it hands payloads (the buffer's own `Bytes`, no
//! copy) to a channel of one piece, so memory per player is bounded by a piece. [`LivePlayer`]
//! is what a playback session shares between its pump and the stat and command routes.
//!
//! This module reads the [`LiveBuffer`] only; it knows nothing of HTTP (status codes, bodies and
//! JSON stay in `peercdn_http::live`) or of the swarm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{LiveBuffer, ReaderGuard};

/// Shortest wait before skipping to a later keyframe (for very short pieces).
pub const MIN_SKIP: Duration = Duration::from_millis(200);

const NO_POS: u64 = u64::MAX;

/// One live playback session: shared by the task that streams it and the stat/command routes.
#[derive(Debug)]
pub struct LivePlayer {
    pos: AtomicU64,
    played_ts_us: AtomicU64,
    stop: watch::Sender<bool>,
    /// The source time (µs since the epoch) a seek asked for; 0: none yet.
    seek: watch::Sender<u64>,
}

impl Default for LivePlayer {
    fn default() -> Self {
        LivePlayer {
            pos: AtomicU64::new(NO_POS),
            played_ts_us: AtomicU64::new(0),
            stop: watch::channel(false).0,
            seek: watch::channel(0).0,
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

    /// Whether a stream is being sent for this session now (its pump runs).
    pub fn is_streaming(&self) -> bool {
        self.stop.receiver_count() > 0
    }

    /// Source timestamp (µs since the epoch) of the last piece sent to the player.
    pub fn played_timestamp_us(&self) -> Option<u64> {
        Some(self.played_ts_us.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Ends every stream of this session (`command_url?method=stop`).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Moves the session's streams to source time `timestamp_us` (µs since the epoch; Ace's
    /// `LIVESEEK`): they go on from the newest keyframe piece made at or before it (the oldest
    /// keyframe piece held when it is older than the window; the newest when it is in the
    /// future).
    pub fn seek_to(&self, timestamp_us: u64) {
        self.seek.send_replace(timestamp_us.max(1));
    }

    /// True once [`LivePlayer::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn set_position(&self, index: u32) {
        self.pos.store(u64::from(index), Ordering::Relaxed);
    }
}

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
        let mut seek = self.player.seek.subscribe();
        // The seek already applied (a wake-up by `seek.changed()` consumes the change, so the
        // value is compared instead).
        let mut sought = *seek.borrow_and_update();
        // Since when the next piece has been missing while a later keyframe piece is held.
        let mut stalled_since: Option<Instant> = None;
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            changes.borrow_and_update();
            let t = *seek.borrow_and_update();
            if t != sought {
                sought = t;
                if let Some(k) = self.buffer.keyframe_at_time(t) {
                    tracing::debug!(from = self.next, to = k, "live player seeks");
                    self.next = k;
                    stalled_since = None;
                }
            }
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
                    let since = *stalled_since.get_or_insert_with(crate::clock::tokio_now);
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
                _ = seek.changed() => {}
                _ = sleep => {}
                _ = tx.closed() => return,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests measure real elapsed time
mod tests {
    use super::*;
    use crate::live::{LiveSource, NewPiece};
    use ed25519_dalek::SigningKey;
    use peercdn_core::live::{Descriptor, LiveParams};

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
            keyframe: i.is_multiple_of(2),
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
