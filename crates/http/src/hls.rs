//! HLS output of live streams: the media playlist of `/ace/manifest.m3u8` (built here, routed
//! in [`crate::ace`]) and its segments `/ace/l/{id}/{index}.ts`.
//!
//! A segment is one piece, so segment numbers are piece indices and `#EXT-X-MEDIA-SEQUENCE` is
//! the first listed index. The playlist lists the newest run of consecutive held pieces,
//! starting at a keyframe piece, about [`MIN_SEGMENTS`]–[`MAX_SEGMENTS`] long (longer only when
//! keyframes are rarer). `#EXT-X-DISCONTINUITY` precedes a flagged piece (not the first listed:
//! a sliding playlist cannot keep an honest `EXT-X-DISCONTINUITY-SEQUENCE`, so the first
//! segment's flag is not repeated).
//!
//! HLS clients feed the playhead too: each client (stream + `pid`, empty when none) owns a
//! reader registered in the stream's buffer, moved by its segment requests and dropped
//! [`reader_ttl`] after its last request. Readers are capped ([`MAX_HLS_READERS`]) and so are
//! playlist requests and segment requests waiting for a piece ([`MAX_WAITING_SEGMENTS`]).
//!
//! For a VoD ID the manifest answers 400 "HLS is for live streams" (players use the progressive
//! `/ace/getstream` there).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use peercdn_core::live::PieceHeader;
use peercdn_core::InfoHash;
use peercdn_engine::live::{LiveBuffer, LiveHandle, LivePiece, ReaderGuard};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::live;
use crate::source::Params;
use crate::state::AppState;

/// Segments a playlist aims for, at least.
pub const MIN_SEGMENTS: usize = 6;
/// Segments a playlist aims for, at most (exceeded only when keyframes are rarer).
pub const MAX_SEGMENTS: usize = 10;
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

/// The segments of a playlist among `held` (headers in increasing index order): the newest run
/// of consecutive pieces, from the newest keyframe piece that leaves at least
/// [`MIN_SEGMENTS`] (or the run's oldest keyframe). Without a keyframe in the run, the last
/// [`MAX_SEGMENTS`] pieces.
pub fn pick_segments(held: &[PieceHeader]) -> &[PieceHeader] {
    let Some(mut a) = held.len().checked_sub(1) else {
        return &[];
    };
    while a > 0 && held.get(a - 1).map(|h| h.index.wrapping_add(1)) == held.get(a).map(|h| h.index)
    {
        a -= 1;
    }
    let run = held.get(a..).unwrap_or(&[]);
    let n = run.len();
    let mut start = None;
    for j in (0..n).rev() {
        if !run.get(j).is_some_and(PieceHeader::is_keyframe) {
            continue;
        }
        if n - j > MAX_SEGMENTS && start.is_some() {
            break;
        }
        start = Some(j);
        if n - j >= MIN_SEGMENTS {
            break;
        }
    }
    let start = start.unwrap_or(n.saturating_sub(MAX_SEGMENTS));
    run.get(start..).unwrap_or(&[])
}

/// The media playlist of `segments`; `url(index)` is a segment's URL and `default_us` the
/// duration used for pieces that carry none.
pub fn playlist(segments: &[PieceHeader], default_us: u32, url: impl Fn(u32) -> String) -> String {
    let dur = |h: &PieceHeader| {
        if h.duration_us == 0 {
            default_us
        } else {
            h.duration_us
        }
    };
    let max_us = segments.iter().map(dur).max().unwrap_or(default_us);
    let target = u64::from(max_us).div_ceil(1_000_000).max(1);
    let first = segments.first().map_or(0, |h| h.index);
    let mut out = String::with_capacity(128 + segments.len() * 96);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
    );
    for (i, h) in segments.iter().enumerate() {
        if i > 0 && h.is_discontinuity() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let d = dur(h);
        let _ = write!(
            out,
            "#EXTINF:{}.{:03},\n{}\n",
            d / 1_000_000,
            (d % 1_000_000) / 1000,
            url(h.index)
        );
    }
    out
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
    let held = buffer.headers(last.saturating_sub(SCAN as u32 - 1), SCAN);
    let segs = pick_segments(&held);
    if let Some(first) = segs.first() {
        state.hls().touch(&buffer, client, first.index, false);
    }
    let default_us = buffer
        .descriptor()
        .params
        .piece_duration_ms
        .saturating_mul(1000);
    let text = playlist(segs, default_us, segment_url);
    let mut r = text.into_response();
    let hs = r.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// The HLS key of a request: its `pid`, bounded.
pub fn client_key(p: &Params) -> String {
    p.get("pid")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(index: u32, key: bool, disc: bool, duration_us: u32) -> PieceHeader {
        PieceHeader {
            index,
            timestamp_us: 0,
            duration_us,
            flags: u8::from(key) | (u8::from(disc) << 1),
            length: 0,
            sha256: [0; 32],
            signature: [0; 64],
        }
    }

    fn indices(s: &[PieceHeader]) -> Vec<u32> {
        s.iter().map(|h| h.index).collect()
    }

    #[test]
    fn picks_the_newest_run_from_a_keyframe() {
        let every_other: Vec<_> = (0..20).map(|i| h(i, i % 2 == 0, false, 1)).collect();
        assert_eq!(
            indices(pick_segments(&every_other)),
            (14..20).collect::<Vec<_>>()
        );
        // A gap: only the run after it counts.
        let mut gap: Vec<_> = (0..10).map(|i| h(i, i % 2 == 0, false, 1)).collect();
        gap.extend((12..16).map(|i| h(i, i % 2 == 0, false, 1)));
        assert_eq!(indices(pick_segments(&gap)), vec![12, 13, 14, 15]);
        // Rare keyframes: from the only one.
        let rare: Vec<_> = (0..40).map(|i| h(i, i == 5, false, 1)).collect();
        assert_eq!(pick_segments(&rare).len(), 35);
        // No keyframe at all: the newest MAX_SEGMENTS.
        let none: Vec<_> = (0..40).map(|i| h(i, false, false, 1)).collect();
        assert_eq!(pick_segments(&none).len(), MAX_SEGMENTS);
        assert!(pick_segments(&[]).is_empty());
    }

    #[test]
    fn playlist_shape() {
        let segs = [
            h(7, true, true, 500_000),
            h(8, false, false, 1_200_000),
            h(9, true, true, 0),
        ];
        let text = playlist(&segs, 400_000, |i| format!("/s/{i}.ts"));
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXTINF:0.500,\n/s/7.ts\n#EXTINF:1.200,\n/s/8.ts\n\
             #EXT-X-DISCONTINUITY\n#EXTINF:0.400,\n/s/9.ts\n"
        );
        let empty = playlist(&[], 500_000, |i| i.to_string());
        assert!(empty.contains("#EXT-X-TARGETDURATION:1\n"));
    }
}
