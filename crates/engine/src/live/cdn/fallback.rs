//! The CDN fallback task of one stream: runs core's [`FallbackPolicy`] (which pieces to fetch
//! from the CDN and when) against the stream's [`LiveBuffer`], executes its actions with a
//! [`CdnClient`] (which verifies everything), puts what it fetched into the buffer and reports
//! back. Event-driven: it wakes on buffer changes, on player moves, when a fetch ends and at the
//! policy's timeout — no fixed tick.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use peercdn_core::live::fallback::{
    Failed, FallbackAction, FallbackPolicy, Outcome, PolicyConfig, WindowView,
};
use tokio::task::{JoinHandle, JoinSet};

use super::client::CdnStats;
use super::{CdnClient, CdnError};
use crate::clock::{now, sleep_until};
use crate::live::buffer::{LiveBuffer, LivePiece};

/// How the fallback decides when to use the CDN.
#[derive(Clone, Debug)]
pub struct FallbackConfig {
    /// How long after a piece became known peers get to deliver it before the CDN is asked.
    /// `None`: the policy's default ([`peercdn_core::live::fallback::PEER_PATIENCE`], at least
    /// 0.6 × the stream's piece duration).
    pub deadline: Option<Duration>,
    /// Pieces from the playhead on that the fallback watches (the one the player needs next and
    /// the following ones).
    pub lookahead: u32,
    /// Most piece fetches in flight.
    pub max_in_flight: usize,
    /// Playlist poll interval when no peer moves the live edge. `None`: the piece duration.
    pub poll_interval: Option<Duration>,
    /// Headers fetched back from the newest listed piece to find a keyframe to join at.
    pub join_headers: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First delay after a failure; doubles on each further failure.
    pub backoff_min: Duration,
    /// Longest delay after failures.
    pub backoff_max: Duration,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            deadline: None,
            lookahead: 3,
            max_in_flight: 3,
            poll_interval: None,
            join_headers: 8,
            timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// The CDN fallback of one stream. Stops its task on drop.
#[derive(Debug)]
pub struct Fallback {
    task: JoinHandle<()>,
    client: Option<Arc<CdnClient>>,
    error: Option<String>,
}

impl Fallback {
    /// Counters so far (all zero when no base URL was usable).
    pub fn stats(&self) -> CdnStats {
        self.client.as_ref().map(|c| c.stats()).unwrap_or_default()
    }

    /// Why the fallback is not running (no usable base URL), if so.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawns the CDN fallback for `buffer` over `bases`. It works only while a player is
/// registered with the buffer, and fetches from the CDN only the pieces from the playhead on
/// (`cfg.lookahead` of them) that are known to exist and that no peer delivered within
/// `cfg.deadline` of becoming known. When no peer moves the live edge for a piece duration, it
/// learns the edge from `live.m3u8` (polled once per piece duration), and such pieces are due
/// at once: a viewer without peers plays from the CDN alone. When the buffer is empty and a
/// player waits, it joins at the newest keyframe piece the CDN lists. Must be called inside a
/// tokio runtime.
pub fn spawn_fallback(
    buffer: Arc<LiveBuffer>,
    bases: Vec<String>,
    client: reqwest::Client,
    cfg: FallbackConfig,
) -> Fallback {
    match CdnClient::new(client, buffer.descriptor(), bases) {
        Ok(c) => {
            let c = Arc::new(c.with_timeout(cfg.timeout));
            let task = tokio::spawn(fallback_loop(buffer, c.clone(), cfg));
            Fallback {
                task,
                client: Some(c),
                error: None,
            }
        }
        Err(e) => Fallback {
            task: tokio::spawn(async {}),
            client: None,
            error: Some(e.to_string()),
        },
    }
}

/// What a fallback job reports.
enum Job {
    Piece(u32, Result<LivePiece, CdnError>),
    Latest(Result<Option<u32>, CdnError>),
    Join(Result<Option<(LivePiece, u32)>, CdnError>),
}

impl FallbackConfig {
    /// The policy's configuration for a stream of `piece` pieces.
    fn policy(&self, piece: Duration) -> PolicyConfig {
        PolicyConfig {
            piece_duration: piece,
            deadline: self
                .deadline
                .unwrap_or(PolicyConfig::for_piece_duration(piece).deadline),
            lookahead: self.lookahead,
            max_in_flight: self.max_in_flight,
            poll_interval: self.poll_interval.unwrap_or(piece),
            join_headers: self.join_headers,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
        }
    }
}

/// The buffer as the policy sees it.
struct View<'a>(&'a LiveBuffer);

impl WindowView for View<'_> {
    fn edge(&self) -> Option<u32> {
        self.0.edge()
    }
    fn peer_bytes(&self) -> u64 {
        self.0.bytes_in.peer.load(Ordering::Relaxed)
    }
    fn readers(&self) -> usize {
        self.0.readers()
    }
    fn is_empty(&self) -> bool {
        self.0.range().is_none()
    }
    fn playhead(&self) -> Option<u32> {
        self.0.playhead()
    }
    fn has(&self, index: u32) -> bool {
        self.0.has(index)
    }
}

async fn fallback_loop(buffer: Arc<LiveBuffer>, client: Arc<CdnClient>, cfg: FallbackConfig) {
    let piece = Duration::from_millis(buffer.descriptor().params.piece_duration_ms.into());
    let mut policy = FallbackPolicy::new(cfg.policy(piece));
    let mut pieces = buffer.subscribe();
    let mut players = buffer.subscribe_players();
    let mut jobs: JoinSet<Job> = JoinSet::new();
    policy.handle_window(now(), &View(&buffer));
    loop {
        while let Some(action) = policy.poll_action() {
            let c = client.clone();
            match action {
                FallbackAction::Fetch(i) => {
                    jobs.spawn(async move { Job::Piece(i, c.fetch_piece(i).await) });
                }
                FallbackAction::PollPlaylist => {
                    jobs.spawn(async move { Job::Latest(c.latest().await) });
                }
                FallbackAction::Join { back } => {
                    jobs.spawn(async move { Job::Join(join_point(&c, back).await) });
                }
            }
        }
        let wake = policy.poll_timeout();
        tokio::select! {
            changed = pieces.changed() => {
                if changed.is_err() {
                    return;
                }
                pieces.borrow_and_update();
            }
            changed = players.changed() => {
                if changed.is_err() {
                    return;
                }
                players.borrow_and_update();
            }
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                if let Ok(job) = done {
                    let outcome = apply(&buffer, job);
                    policy.handle_outcome(now(), outcome);
                }
            }
            _ = sleep_until(wake) => {
                policy.handle_timeout(now());
            }
        }
        policy.handle_window(now(), &View(&buffer));
    }
}

/// Puts what a job fetched into the buffer and tells the policy how it went.
fn apply(buffer: &LiveBuffer, job: Job) -> Outcome {
    let failed = |e: CdnError| {
        tracing::debug!("live CDN fallback: {e}");
        Failed
    };
    match job {
        Job::Piece(index, res) => Outcome::Piece {
            index,
            // False: it is out of the window (a peer delivering it meanwhile is fine).
            stored: res.is_ok_and(|piece| buffer.insert(piece) || buffer.has(index)),
        },
        Job::Latest(res) => Outcome::Playlist(res.map_err(failed).inspect(|latest| {
            if let Some(l) = latest {
                buffer.note_exists(*l);
            }
        })),
        Job::Join(res) => Outcome::Join(res.map_err(failed).map(|joined| {
            joined.map(|(piece, latest)| {
                buffer.insert(piece);
                buffer.note_exists(latest);
                latest
            })
        })),
    }
}

/// The piece to join at: the newest keyframe piece among the last `back` the CDN lists (else
/// the newest), and the newest index listed. `None` when the playlist is empty.
async fn join_point(c: &CdnClient, back: u32) -> Result<Option<(LivePiece, u32)>, CdnError> {
    let Some(latest) = c.latest().await? else {
        return Ok(None);
    };
    let mut start = latest;
    for k in 0..back {
        let Some(i) = latest.checked_sub(k) else {
            break;
        };
        match c.fetch_header(i).await {
            Ok(h) if h.is_keyframe() => {
                start = i;
                break;
            }
            Ok(_) => {}
            // Deleted already, or refused: stop looking further back.
            Err(_) => break,
        }
    }
    Ok(Some((c.fetch_piece(start).await?, latest)))
}
