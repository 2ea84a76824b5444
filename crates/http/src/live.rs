//! Progressive output of live streams and their JSON forms. The player logic (where a player
//! starts, when it skips ahead, the session state [`LivePlayer`]) is the engine's
//! `live::player`; this module owns the HTTP side of it.
//!
//! - [`respond`]: the `video/mp2t` answer of `/ace/getstream` (and of a live playback URL):
//!   waits for the descriptor and a start piece (504 past the timeout, 503 with too many
//!   players), then streams what a [`Pump`] sends, fed by one task per player through a channel
//!   of one piece.
//! - [`LiveSlot`]: a [`LivePlayer`] inside a playback session.
//! - [`stat_json`] and [`live_json`]: the stat URL's answer and the `/api/v1/live` object.
//!
//! This module never touches the swarm: it reads the engine's [`LiveBuffer`] and
//! [`LiveHandle`] only.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
pub use peercdn_engine::live::player::{
    skip_after, start_index, wait_start, LivePlayer, Pump, MIN_SKIP,
};
use peercdn_engine::live::{now_us, LiveBuffer, LiveHandle};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::ApiError;

/// How long a new player waits for the descriptor and a first keyframe piece before a 504.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The start wait of a live request: [`START_TIMEOUT`], or the configured metadata timeout
/// when shorter.
pub fn start_timeout(state: &crate::state::AppState) -> Duration {
    state.config().metadata_timeout.min(START_TIMEOUT)
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
        "peers_by_wire": crate::api::wires_json(&st.wires),
        "p2p_downloaded": st.p2p_downloaded,
        "cdn_downloaded": st.cdn_downloaded,
        "uploaded": st.uploaded,
        "down_rate": st.down_rate,
        "up_rate": st.up_rate,
        "banned": st.banned,
        "wasted": st.wasted,
        "relayed_early": st.relayed_early,
        "first": st.first,
        "last": st.last,
        "edge": st.edge,
        "delay_ms": st.delay_ms,
        "readers": st.readers,
        "watched_ms": st.watched_ms,
        "cdn_verified": st.cdn_verified.iter().map(|(h, n)| json!({ "host": h, "bytes": n })).collect::<Vec<_>>(),
        "buffer_pieces": pieces,
        "buffer_bytes": bytes,
        "piece_duration_ms": params.as_ref().map(|p| p.piece_duration_ms),
        "window_s": params.as_ref().map(|p| p.window_s),
        "cdn": buffer.as_ref().map(|b| b.descriptor().cdn.clone()),
        "ingest": buffer.as_ref().and_then(|b| b.ingest()).map(|i| {
            let s = i.snapshot();
            json!({
                "bitrate_bps": s.bitrate_bps,
                "bytes_in": s.bytes_in,
                "pieces": s.pieces,
                "keyframes": s.keyframes,
                "dropped_bytes": s.dropped_bytes,
                "resyncs": s.resyncs,
                "loops": i.loops(),
            })
        }),
        "cdn_pieces": st.cdn_pieces,
        "cdn_failures": st.cdn_failures,
        "peer_list": crate::api::peer_list(&st.peer_list, |p| (p.down_rate + p.up_rate, json!({
            "addr": p.addr.to_string(),
            "client": p.client,
            "down_rate": p.down_rate,
            "up_rate": p.up_rate,
            "newest": p.newest,
            "requests": p.outstanding,
            "queued": p.queued,
            "am_choking": p.am_choking,
            "peer_choking": p.peer_choking,
            "downloaded": p.downloaded,
            "uploaded": p.uploaded,
            "transport": if p.utp { "utp" } else { "tcp" },
            "holepunched": p.holepunched,
            "reachable": p.reachable,
        }))),
    })
}
