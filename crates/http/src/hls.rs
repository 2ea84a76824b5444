//! Low-latency HLS output of live streams: the media playlist of `/ace/manifest.m3u8` (routed
//! in [`crate::ace`]), its segments `/ace/l/{id}/s{number}.ts` and its parts (the pieces)
//! `/ace/l/{id}/{index}.ts`.
//!
//! How pieces group into segments (starting at keyframes, about 2 s) and how the playlist says
//! so (parts, preload hint, blocking reload, program date-time, discontinuities) is core's
//! `live::llhls::Segmenter`; this file keeps one per stream played through HLS
//! ([`MAX_SEGMENTERS`], dropped with their stream) so that successive playlists agree, and
//! feeds it the pieces as they become playable (a missing piece is skipped once two seconds of
//! newer ones are held). A blocking reload (`_HLS_msn`, `_HLS_part`) waits at most
//! [`BLOCK_MAX`]. It owns the HTTP side: waiting for a first keyframe, status codes, headers,
//! segment and part requests (a part not yet there is waited for, as a preload hint asks) and
//! the HLS clients' readers.
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
use peercdn_core::live::hls::Segment;
use peercdn_core::live::llhls::{Segmenter, SEGMENT_MAX_US};
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
/// Longest a blocking playlist reload waits (LL-HLS `_HLS_msn`): three target durations.
pub const BLOCK_MAX: Duration = Duration::from_secs(12);
/// Most live streams whose segments are kept.
pub const MAX_SEGMENTERS: usize = 256;
/// Segments kept per stream (about 2 s each; fewer when the window is shorter).
const MAX_GOP_SEGMENTS: usize = 12;
/// How far behind the newest piece a new stream's segments start.
const START_BACK_US: u64 = 12_000_000;
/// Newer pieces held past a missing one before it is skipped.
const GAP_US: u64 = 2_000_000;
/// Shortest time an HLS client's reader outlives its last request.
pub const MIN_READER_TTL: Duration = Duration::from_secs(10);
/// Most bytes of a `pid` used as an HLS client key.
const MAX_KEY_LEN: usize = 128;

/// The segment route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ace/l/{id}/{segment}", get(segment))
}

/// How long an HLS client's reader lives after its last request: three of the longest
/// segments, at least [`MIN_READER_TTL`] (a player reloads the playlist at least once per
/// target duration).
pub fn reader_ttl() -> Duration {
    Duration::from_micros(3 * SEGMENT_MAX_US).max(MIN_READER_TTL)
}

/// The playlist answer for `handle`: waits (bounded by [`live::start_timeout`]) for a first
/// segment; with `_HLS_msn` (and `_HLS_part`) in `p` it is a blocking reload that waits (at most
/// [`BLOCK_MAX`]) until that segment (part) exists. Segments are `{base}s{n}.ts{suffix}`, parts
/// (pieces) `{base}{index}.ts{suffix}`; `client` keys the HLS reader.
pub async fn manifest(
    state: &AppState,
    handle: &LiveHandle,
    client: &str,
    p: &Params,
    base: &str,
    suffix: &str,
) -> Result<Response, ApiError> {
    let block = blocking_reload(p)?;
    let _permit = state
        .hls()
        .waiting
        .try_acquire()
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many HLS requests"))?;
    let deadline = peercdn_engine::clock::tokio_now() + live::start_timeout(state);
    let buffer = live::wait_buffer(handle, deadline).await?;
    let no_start = || {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no keyframe piece of live stream {} yet",
                handle.content_id()
            ),
        )
    };
    if live::wait_start(&buffer, deadline).await.is_none() {
        return Err(no_start());
    }
    let segments = state.hls().segments(&buffer).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams played through HLS",
        )
    })?;
    let until = match block {
        Some(_) => peercdn_engine::clock::tokio_now() + BLOCK_MAX,
        None => deadline,
    };
    let mut rx = buffer.subscribe();
    loop {
        rx.borrow_and_update();
        let ready = {
            let mut g = lock(&segments);
            g.advance(&buffer);
            match block {
                Some((msn, part)) => g.seg.has(msn, part),
                // hls.js calls a playlist without a whole segment empty.
                None => g.seg.segments().iter().any(|s| s.complete),
            }
        };
        if ready {
            break;
        }
        match tokio::time::timeout_at(until, rx.changed()).await {
            Ok(Ok(())) => {}
            // A blocking reload that waited long enough gets the playlist as it is.
            _ if block.is_some() => break,
            _ => return Err(no_start()),
        }
    }
    let (text, first) = {
        let g = lock(&segments);
        let text = g.seg.render(
            |g| format!("{base}s{}.ts{suffix}", g.number),
            |i| format!("{base}{i}.ts{suffix}"),
        );
        (text, g.seg.segments().front().map(|s| s.first_piece()))
    };
    if let Some(first) = first {
        state.hls().touch(&buffer, client, first, false);
    }
    let mut r = text.into_response();
    let hs = r.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// `_HLS_msn` and `_HLS_part` of a blocking playlist reload (LL-HLS), if asked.
fn blocking_reload(p: &Params) -> Result<Option<(u64, Option<usize>)>, ApiError> {
    let Some(msn) = p.number::<u64>("_HLS_msn")? else {
        if p.get("_HLS_part").is_some() {
            return Err(ApiError::bad_request("_HLS_part without _HLS_msn"));
        }
        return Ok(None);
    };
    Ok(Some((msn, p.number::<usize>("_HLS_part")?)))
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
    let name = segment
        .strip_suffix(".ts")
        .ok_or_else(|| ApiError::not_found("segments are named sNUMBER.ts, parts INDEX.ts"))?;
    if let Some(number) = name.strip_prefix('s') {
        let number = number
            .parse()
            .map_err(|_| ApiError::not_found("segments are named sNUMBER.ts"))?;
        return gop_segment(state, ih, number, query).await;
    }
    let index: u32 = name
        .parse()
        .map_err(|_| ApiError::not_found("parts are named INDEX.ts"))?;
    let gone = || ApiError::not_found(format!("segment {index} is not in the window"));
    let handle = state
        .session()
        .get_live(&ih)
        .ok_or_else(|| ApiError::not_found(format!("no live stream {ih} is running")))?;
    let buffer = handle.buffer().ok_or_else(gone)?;
    let piece = match buffer.get(index) {
        Some(p) => p,
        None => {
            // A piece of the window not here yet is waited for: the next one (a preload
            // hint), or one that comes later than newer pieces (relays deliver out of order).
            let (oldest, last) = buffer.range().ok_or_else(gone)?;
            let newest = buffer.edge().unwrap_or(last).max(last);
            let first = buffer.first().unwrap_or(oldest).max(oldest);
            if index < first || index > newest.saturating_add(1) {
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

/// Segment `number` (its pieces, concatenated): 404 unless it is complete and all its pieces
/// are still held.
async fn gop_segment(
    state: &AppState,
    ih: InfoHash,
    number: u64,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let gone = || ApiError::not_found(format!("segment {number} is not in the window"));
    let handle = state
        .session()
        .get_live(&ih)
        .ok_or_else(|| ApiError::not_found(format!("no live stream {ih} is running")))?;
    let buffer = handle.buffer().ok_or_else(gone)?;
    let segments = state.hls().existing_segments(&buffer).ok_or_else(gone)?;
    let parts: Vec<u32> = {
        let mut g = lock(&segments);
        g.advance(&buffer);
        let s = g
            .seg
            .segment(number)
            .filter(|s| s.complete)
            .ok_or_else(gone)?;
        s.parts.iter().map(|p| p.index).collect()
    };
    let mut body = bytes::BytesMut::new();
    for &i in &parts {
        body.extend_from_slice(&buffer.get(i).ok_or_else(gone)?.payload);
    }
    let next = parts.last().map_or(0, |i| i.wrapping_add(1));
    state
        .hls()
        .touch(&buffer, &client_key(&Params::parse(query)), next, true);
    let len = body.len();
    let mut r = Response::new(Body::from(body.freeze()));
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

/// The segments of one live stream as this engine serves them.
#[derive(Debug)]
pub struct StreamSegments {
    buffer: Weak<LiveBuffer>,
    seg: Segmenter,
}

impl StreamSegments {
    /// Feeds the segmenter the pieces of `buffer` that became playable: in order, from the one
    /// it waits for (a new segmenter starts about [`START_BACK_US`] behind the newest piece);
    /// a missing piece is skipped once [`GAP_US`] of newer pieces are held, or when it left the
    /// window. Segments whose pieces left the window are forgotten.
    fn advance(&mut self, buffer: &LiveBuffer) {
        let Some((oldest, newest)) = buffer.range() else {
            return;
        };
        let oldest = oldest.max(buffer.first().unwrap_or(0));
        self.seg.forget_before(oldest);
        let pd = u64::from(buffer.descriptor().params.piece_duration_ms.max(1)) * 1000;
        let start = newest.saturating_sub((START_BACK_US / pd) as u32);
        let mut i = self.seg.next_piece().unwrap_or(start).max(oldest);
        let gap = (GAP_US / pd).max(2) as u32;
        let default_us = (pd as u32).max(1);
        while i <= newest {
            let hs = buffer.headers(i, SCAN);
            if hs.is_empty() {
                break;
            }
            for h in hs {
                if h.index > i && newest - i < gap {
                    return;
                }
                self.seg
                    .push(Segment::from_header(&h, default_us), h.timestamp_us);
                i = h.index.saturating_add(1);
            }
        }
    }
}

fn lock(s: &Mutex<StreamSegments>) -> std::sync::MutexGuard<'_, StreamSegments> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The readers of HLS clients, the segments of the streams they play and the cap on waiting
/// segment requests. Owned by the router's state.
#[derive(Debug)]
pub struct HlsReaders {
    map: Mutex<HashMap<(InfoHash, String), Arc<HlsReader>>>,
    segments: Mutex<HashMap<InfoHash, Arc<Mutex<StreamSegments>>>>,
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
            segments: Mutex::new(HashMap::new()),
            waiting: Semaphore::new(MAX_WAITING_SEGMENTS),
            me: me.clone(),
        })
    }

    /// The segments of `buffer`'s stream, made if needed (`None` past [`MAX_SEGMENTERS`]
    /// streams; those whose buffer is gone are dropped first).
    fn segments(&self, buffer: &Arc<LiveBuffer>) -> Option<Arc<Mutex<StreamSegments>>> {
        if let Some(s) = self.existing_segments(buffer) {
            return Some(s);
        }
        let mut m = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, s| lock(s).buffer.strong_count() > 0);
        if m.len() >= MAX_SEGMENTERS {
            return None;
        }
        let pd = u64::from(buffer.descriptor().params.piece_duration_ms) * 1000;
        let s = Arc::new(Mutex::new(StreamSegments {
            buffer: Arc::downgrade(buffer),
            seg: Segmenter::new(MAX_GOP_SEGMENTS, pd),
        }));
        m.insert(buffer.content_id(), s.clone());
        Some(s)
    }

    /// The segments of `buffer`'s stream, if an HLS client asked for its playlist.
    fn existing_segments(&self, buffer: &Arc<LiveBuffer>) -> Option<Arc<Mutex<StreamSegments>>> {
        let m = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&buffer.content_id())
            .filter(|s| {
                lock(s)
                    .buffer
                    .upgrade()
                    .is_some_and(|b| Arc::ptr_eq(&b, buffer))
            })
            .cloned()
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
        let ttl = reader_ttl();
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
