//! HLS output of live streams: the media playlist of `/ace/manifest.m3u8` (routed in
//! [`crate::ace`]) and its segments `/ace/l/{id}/{index}.ts`.
//!
//! Which pieces the playlist lists and how it writes them is core's `live::hls` (shared with the
//! publisher's `live.m3u8`): the newest run of consecutive held pieces, starting at a keyframe
//! piece, about 6–10 long (longer only when keyframes are rarer), no discontinuity tag on the
//! first segment (a playlist built afresh per request keeps no discontinuity sequence). This
//! file owns the HTTP side: waiting for a first keyframe, status codes, headers, segment
//! requests and the HLS clients' readers.
//!
//! HLS clients feed the playhead too: each client (stream + `pid`, empty when none) owns a
//! reader registered in the stream's buffer, moved by its segment requests and dropped
//! [`reader_ttl`] after its last request. Readers are capped ([`MAX_HLS_READERS`]) and so are
//! playlist requests and segment requests waiting for a piece ([`MAX_WAITING_SEGMENTS`]).
//!
//! VoD IDs have their own HLS ([`crate::vod_hls`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use peercdn_core::live::hls::{self, RenderOptions, Segment, MAX_SEGMENTS};
use peercdn_core::InfoHash;
use peercdn_engine::live::{LiveBuffer, LiveHandle, LivePiece, ReaderGuard};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::live;
use crate::source::Params;
use crate::state::AppState;

/// Newest headers looked at for a playlist.
const SCAN: usize = 64;
/// Most HLS clients tracked (over all streams).
pub const MAX_HLS_READERS: usize = 256;
/// Most playlist and segment requests in progress (playlists) or waiting for their piece
/// (segments) at once.
pub const MAX_WAITING_SEGMENTS: usize = 256;
/// Shortest time an HLS client's reader outlives its last request.
pub const MIN_READER_TTL: Duration = Duration::from_secs(10);
/// Most bytes of a `pid` used as an HLS client key.
const MAX_KEY_LEN: usize = 128;

/// The segment route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ace/l/{id}/{segment}", get(segment))
}

/// How long an HLS client's reader lives after its last request: three piece durations times
/// the playlist length, at least [`MIN_READER_TTL`].
pub fn reader_ttl(buffer: &LiveBuffer) -> Duration {
    let ms = u64::from(buffer.descriptor().params.piece_duration_ms);
    Duration::from_millis(ms.saturating_mul(3 * MAX_SEGMENTS as u64)).max(MIN_READER_TTL)
}

/// The playlist answer for `handle`: waits (bounded by [`live::start_timeout`]) for a first
/// keyframe piece. `segment_url(index)` names the segments; `client` keys the HLS reader.
pub async fn manifest(
    state: &AppState,
    handle: &LiveHandle,
    client: &str,
    segment_url: impl Fn(u32) -> String,
) -> Result<Response, ApiError> {
    let _permit = state
        .hls()
        .waiting
        .try_acquire()
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many HLS requests"))?;
    let deadline = peercdn_engine::clock::tokio_now() + live::start_timeout(state);
    let buffer = live::wait_buffer(handle, deadline).await?;
    if live::wait_start(&buffer, deadline).await.is_none() {
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no keyframe piece of live stream {} yet",
                handle.content_id()
            ),
        ));
    }
    let last = buffer.range().map_or(0, |r| r.1);
    let default_us = buffer
        .descriptor()
        .params
        .piece_duration_ms
        .saturating_mul(1000);
    let held: Vec<Segment> = buffer
        .headers(last.saturating_sub(SCAN as u32 - 1), SCAN)
        .iter()
        .map(|h| Segment::from_header(h, default_us))
        .collect();
    let segs = hls::from_keyframe(&held);
    if let Some(first) = segs.first() {
        state.hls().touch(&buffer, client, first.index, false);
    }
    let opts = RenderOptions {
        target_s: hls::target_duration_s(segs),
        discontinuity_sequence: None,
        start_at_keyframe: false,
    };
    let text = hls::render(segs, &opts, segment_url);
    let mut r = text.into_response();
    let hs = r.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// The HLS key of a request: its `pid` (or `sid`, from clients of older Ace engines), bounded.
pub fn client_key(p: &Params) -> String {
    p.get("pid")
        .or_else(|| p.get("sid"))
        .map(|s| s.chars().take(MAX_KEY_LEN).collect())
        .unwrap_or_default()
}

async fn segment(
    State(state): State<AppState>,
    Path((id, segment)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    match segment_inner(&state, &id, &segment, query.as_deref()).await {
        Ok(r) => r,
        Err(e) => e.plain_if(true).into_response(),
    }
}

async fn segment_inner(
    state: &AppState,
    id: &str,
    segment: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let ih = InfoHash::parse(id).map_err(|e| ApiError::bad_request(format!("bad id: {e}")))?;
    let index: u32 = segment
        .strip_suffix(".ts")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::not_found("segments are named INDEX.ts"))?;
    let gone = || ApiError::not_found(format!("segment {index} is not in the window"));
    let handle = state
        .session()
        .get_live(&ih)
        .ok_or_else(|| ApiError::not_found(format!("no live stream {ih} is running")))?;
    let buffer = handle.buffer().ok_or_else(gone)?;
    let piece = match buffer.get(index) {
        Some(p) => p,
        None => {
            let (_, last) = buffer.range().ok_or_else(gone)?;
            let newest = buffer.edge().unwrap_or(last).max(last);
            if index <= last || index > newest.saturating_add(1) {
                return Err(gone());
            }
            let _permit = state.hls().waiting.try_acquire().map_err(|_| {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many segment requests")
            })?;
            let deadline = peercdn_engine::clock::tokio_now() + live::skip_after(&buffer);
            wait_piece(&buffer, index, deadline)
                .await
                .ok_or_else(gone)?
        }
    };
    let p = Params::parse(query);
    state
        .hls()
        .touch(&buffer, &client_key(&p), index.wrapping_add(1), true);
    let len = piece.payload.len();
    let mut r = Response::new(Body::from(piece.payload));
    let hs = r.headers_mut();
    hs.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        hs.insert(header::CONTENT_LENGTH, v);
    }
    Ok(r)
}

async fn wait_piece(buffer: &LiveBuffer, index: u32, deadline: Instant) -> Option<LivePiece> {
    let mut rx = buffer.subscribe();
    loop {
        rx.borrow_and_update();
        if let Some(p) = buffer.get(index) {
            return Some(p);
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
}

/// The readers of HLS clients and the cap on waiting segment requests. Owned by the router's
/// state.
#[derive(Debug)]
pub struct HlsReaders {
    map: Mutex<HashMap<(InfoHash, String), Arc<HlsReader>>>,
    waiting: Semaphore,
    me: Weak<HlsReaders>,
}

#[derive(Debug)]
struct HlsReader {
    buffer: Arc<LiveBuffer>,
    reader: ReaderGuard,
    seen: Mutex<Instant>,
}

impl HlsReaders {
    /// An empty set.
    pub fn new() -> Arc<HlsReaders> {
        Arc::new_cyclic(|me| HlsReaders {
            map: Mutex::new(HashMap::new()),
            waiting: Semaphore::new(MAX_WAITING_SEGMENTS),
            me: me.clone(),
        })
    }

    /// HLS clients tracked.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no HLS client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(InfoHash, String), Arc<HlsReader>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Client `key` of `buffer`'s stream asked for something: its reader is created (at
    /// `index`) or kept alive, and moved to `index` when `moved` (a segment request) or when
    /// new. Past [`MAX_HLS_READERS`] new clients are not tracked.
    pub fn touch(&self, buffer: &Arc<LiveBuffer>, key: &str, index: u32, moved: bool) {
        let k = (buffer.content_id(), key.to_string());
        let mut map = self.lock();
        if let Some(r) = map.get(&k).filter(|r| Arc::ptr_eq(&r.buffer, buffer)) {
            *r.seen.lock().unwrap_or_else(|e| e.into_inner()) = peercdn_engine::clock::tokio_now();
            if moved {
                r.reader.set_position(index);
            }
            return;
        }
        map.remove(&k);
        if map.len() >= MAX_HLS_READERS {
            return;
        }
        let Some(reader) = buffer.reader() else {
            return;
        };
        reader.set_position(index);
        let entry = Arc::new(HlsReader {
            buffer: buffer.clone(),
            reader,
            seen: Mutex::new(peercdn_engine::clock::tokio_now()),
        });
        map.insert(k.clone(), entry.clone());
        drop(map);
        let ttl = reader_ttl(buffer);
        let readers = self.me.clone();
        tokio::spawn(async move {
            loop {
                let seen = *entry.seen.lock().unwrap_or_else(|e| e.into_inner());
                tokio::time::sleep_until(seen + ttl).await;
                let seen = *entry.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.elapsed() < ttl {
                    continue;
                }
                if let Some(rs) = readers.upgrade() {
                    let mut map = rs.lock();
                    if map.get(&k).is_some_and(|r| Arc::ptr_eq(r, &entry)) {
                        map.remove(&k);
                    }
                }
                return;
            }
        });
    }
}
