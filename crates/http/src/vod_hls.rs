//! HLS for VoD: the playlist `/ace/manifest.m3u8` gives for a torrent's MPEG-TS, MP4 or
//! Matroska file (routed in [`crate::ace`]) and its segments `/ace/v/{id}/{file}/{n}.ts`,
//! served while the torrent downloads. This file plans and cuts MPEG-TS files on their own
//! bytes, below; MP4s are remuxed by [`crate::vod_mp4`], Matroska files by [`crate::vod_mkv`].
//!
//! A playlist needs every segment's duration before most of the file is there, so segments
//! are planned on bytes and cut on keyframes when served:
//! - the file's head (PAT, PMT, first timestamp) and its tail (last timestamp) give its
//!   duration and byte rate, and so a nominal segment length of [`SEGMENT_SECONDS`] of media;
//! - nominal boundary `n` is `sync + n × length`; segment `n` is served from the first keyframe
//!   at or after its boundary (the boundary itself when its nominal span holds none) to the
//!   same point of the next boundary, so consecutive segments are the file's bytes without gap
//!   or overlap, and a player that seeks gets a segment starting with a keyframe;
//! - every segment but the first starts with copies of the file's PAT and PMT (marked so that
//!   players accept them after the previous segment's packets);
//! - the durations written are the nominal ones; they differ from the real ones by at most a
//!   GOP (players take the real times from the timestamps).
//!
//! Without `file_index` the playlist is of the largest `.ts` file ([`pick_file`]). What a
//! file's plan and found cuts are is kept per file ([`VodPlans`], bounded). A segment's
//! bytes stream as they arrive (its end is found only when the download reaches the next
//! boundary, so segments have no `Content-Length`). Other containers are not segmented (no
//! remuxer): their playlist request says so.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use peercdn_core::ts::{last_pts, KeyframeFinder, TsHead, PACKET_LEN};
use peercdn_core::InfoHash;
use peercdn_engine::stream::{FileInfo, FileReader, MAX_READ};
use peercdn_engine::torrent::TorrentHandle;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::state::AppState;
use crate::stream::{self, ChunkStream};
use crate::vod_mkv::MkvPlan;
use crate::vod_mp4::Mp4Plan;

/// Nominal media time of one segment.
pub const SEGMENT_SECONDS: f64 = 6.0;
/// Most bytes read from a file's start looking for its PAT, PMT and first timestamp.
const HEAD_MAX: u64 = 4 << 20;
/// Bytes read before a file's end for its last timestamp.
const TAIL_LEN: u64 = 1 << 20;
/// Shortest nominal segment (a file with absurd timestamps still gets sane segments).
const MIN_SEGMENT_LEN: u64 = 64 * PACKET_LEN as u64;
/// Most files whose plans are kept.
pub const MAX_PLANS: usize = 64;
/// Most segments a playlist lists (about 83 hours of 6 s segments): a file whose header
/// claims more is refused, instead of a playlist of millions of lines.
pub const MAX_SEGMENTS: u64 = 50_000;
/// Longest a playlist waits for the head and tail of its file.
const PLAN_TIMEOUT: Duration = Duration::from_secs(60);

/// How one TS file is cut into segments.
#[derive(Debug)]
pub struct Plan {
    file: FileInfo,
    head: TsHead,
    /// Nominal segment length in bytes (whole packets).
    seg_len: u64,
    /// Segments.
    count: u64,
    /// Bytes per second of media.
    byte_rate: f64,
    /// Cuts found so far: segment → offset of its first byte in the file.
    cuts: Mutex<HashMap<u64, u64>>,
}

impl Plan {
    /// Reads the head and tail of `file` (waiting for them to download) and plans its
    /// segments.
    async fn make(h: &TorrentHandle, file: FileInfo) -> Result<Option<Plan>, ApiError> {
        let mut r = open(h, &file).await?;
        let len = file.length;
        let mut buf = Vec::new();
        let head = loop {
            let more = read(&mut r, buf.len() as u64).await?;
            buf.extend_from_slice(&more);
            match TsHead::read(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) if (buf.len() as u64) < HEAD_MAX.min(len) => {}
                Ok(None) => {
                    return Err(ApiError::bad_request(
                        "this MPEG-TS file shows no program with timestamps in its first 4 MiB",
                    ))
                }
                Err(_) => return Ok(None),
            }
        };
        let from = len.saturating_sub(TAIL_LEN).max(head.sync);
        let mut tail = Vec::with_capacity((len - from) as usize);
        while from + (tail.len() as u64) < len {
            let more = read(&mut r, from + tail.len() as u64).await?;
            tail.extend_from_slice(&more);
        }
        let last = last_pts(&head.info, &tail).ok_or_else(|| {
            ApiError::bad_request("the end of this MPEG-TS file shows no timestamp")
        })?;
        let secs = head.span_to(last) as f64 / 90_000.0;
        let bytes = len - head.sync;
        if secs < 0.1 || bytes == 0 {
            return Err(ApiError::bad_request(
                "this MPEG-TS file is too short (or its timestamps are broken) for HLS",
            ));
        }
        let byte_rate = bytes as f64 / secs;
        let packets = (byte_rate * SEGMENT_SECONDS) as u64 / PACKET_LEN as u64;
        let seg_len = (packets * PACKET_LEN as u64).max(MIN_SEGMENT_LEN);
        Ok(Some(Plan {
            count: bytes.div_ceil(seg_len),
            file,
            head,
            seg_len,
            byte_rate,
            cuts: Mutex::new(HashMap::new()),
        }))
    }

    /// Nominal start of segment `n` (the file's end for `n == count`).
    fn boundary(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        (self.head.sync + n * self.seg_len).min(self.file.length)
    }

    /// Duration of segment `n`, seconds (nominal).
    fn seconds(&self, n: u64) -> f64 {
        let from = self.boundary(n).max(self.head.sync);
        (self.boundary(n + 1) - from) as f64 / self.byte_rate
    }

    /// Where segment `n` starts: the first keyframe in its nominal span, else its boundary.
    async fn cut(&self, r: &mut FileReader, n: u64) -> Result<u64, ApiError> {
        if n == 0 {
            return Ok(0);
        }
        if let Some(&at) = self.cuts.lock().expect("cuts lock").get(&n) {
            return Ok(at);
        }
        let (from, to) = (self.boundary(n), self.boundary(n + 1));
        let mut finder = KeyframeFinder::new(&self.head.info);
        let mut pos = from;
        let mut at = from;
        while pos < to {
            let chunk = read(r, pos).await?;
            let chunk = &chunk[..chunk.len().min((to - pos) as usize)];
            if let Some(off) = finder.push(chunk) {
                at = from + off;
                break;
            }
            pos += chunk.len() as u64;
        }
        self.cuts.lock().expect("cuts lock").insert(n, at);
        Ok(at)
    }
}

/// The plans of the files played through HLS, by torrent and file (at most [`MAX_PLANS`]; the
/// oldest goes first).
#[derive(Debug, Default)]
pub struct VodPlans {
    inner: Mutex<Plans>,
}

/// A torrent and the index of one of its files.
type FileKey = (InfoHash, usize);

#[derive(Debug, Default)]
struct Plans {
    by_file: HashMap<FileKey, Arc<AnyPlan>>,
    order: VecDeque<FileKey>,
}

/// How a file is cut into segments: an MPEG-TS file on its own bytes, an MP4 remuxed.
#[derive(Debug)]
pub enum AnyPlan {
    /// An MPEG-TS file.
    Ts(Plan),
    /// An MP4 file ([`crate::vod_mp4`]).
    Mp4(Box<Mp4Plan>),
    /// A Matroska file ([`crate::vod_mkv`]).
    Mkv(Box<MkvPlan>),
}

impl AnyPlan {
    /// Segments.
    pub fn count(&self) -> u64 {
        match self {
            AnyPlan::Ts(p) => p.count,
            AnyPlan::Mp4(p) => p.count(),
            AnyPlan::Mkv(p) => p.count(),
        }
    }

    /// Duration of segment `n`, seconds.
    pub fn seconds(&self, n: u64) -> f64 {
        match self {
            AnyPlan::Ts(p) => p.seconds(n),
            AnyPlan::Mp4(p) => p.seconds(n),
            AnyPlan::Mkv(p) => p.seconds(n),
        }
    }

    /// Segment `n` of a remuxed file (blocking: call from a blocking thread); `None` for an
    /// MPEG-TS file, whose segments are its own bytes.
    pub fn remuxed_segment(&self, n: u64) -> Option<Result<Vec<u8>, ApiError>> {
        match self {
            AnyPlan::Ts(_) => None,
            AnyPlan::Mp4(p) => Some(p.segment(n)),
            AnyPlan::Mkv(p) => Some(p.segment(n)),
        }
    }

    /// The playlist, segment `n` at `url(n)`.
    pub fn playlist(&self, url: impl Fn(u64) -> String) -> String {
        let count = self.count();
        let target = (0..count)
            .map(|n| self.seconds(n))
            .fold(1.0_f64, f64::max)
            .ceil() as u64;
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:{target}\n\
             #EXT-X-MEDIA-SEQUENCE:0\n"
        );
        for n in 0..count {
            out.push_str(&format!("#EXTINF:{:.3},\n{}\n", self.seconds(n), url(n)));
        }
        out.push_str("#EXT-X-ENDLIST\n");
        out
    }
}

impl AnyPlan {
    async fn make(h: &TorrentHandle, file: FileInfo) -> Result<AnyPlan, ApiError> {
        let plan = if let Some(p) = Plan::make(h, file.clone()).await? {
            AnyPlan::Ts(p)
        } else if let Some(p) = Mp4Plan::make(open(h, &file).await?, &file).await? {
            AnyPlan::Mp4(Box::new(p))
        } else {
            match MkvPlan::make(open(h, &file).await?, &file).await? {
                Some(p) => AnyPlan::Mkv(Box::new(p)),
                None => return Err(not_media()),
            }
        };
        check_count(plan.count())?;
        Ok(plan)
    }
}

impl VodPlans {
    /// The plan of `file` of `h`, made if needed.
    pub async fn get(&self, h: &TorrentHandle, file: FileInfo) -> Result<Arc<AnyPlan>, ApiError> {
        let key = (h.info_hash, file.index);
        if let Some(p) = self.inner.lock().expect("plans lock").by_file.get(&key) {
            return Ok(p.clone());
        }
        let plan = tokio::time::timeout(PLAN_TIMEOUT, AnyPlan::make(h, file))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the start and end of the file did not arrive in time to plan its segments",
                )
            })??;
        let plan = Arc::new(plan);
        let mut g = self.inner.lock().expect("plans lock");
        if g.by_file.insert(key, plan.clone()).is_none() {
            g.order.push_back(key);
            while g.order.len() > MAX_PLANS {
                if let Some(old) = g.order.pop_front() {
                    g.by_file.remove(&old);
                }
            }
        }
        Ok(plan)
    }
}

/// The file a playlist request names: `file_index` when given, else the largest `.ts` file
/// (HLS serves MPEG-TS files; a torrent's largest media file may be an MP4 beside them), else
/// the file `getstream` would play.
pub fn pick_file(files: &[FileInfo], index: Option<usize>) -> Result<FileInfo, ApiError> {
    if index.is_none() {
        let ts = files
            .iter()
            .filter(|f| f.path.to_ascii_lowercase().ends_with(".ts"))
            .max_by_key(|f| (f.length, std::cmp::Reverse(f.index)));
        if let Some(f) = ts {
            return Ok(f.clone());
        }
    }
    stream::pick_file(files, index)
}

/// The segment route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ace/v/{id}/{file}/{segment}", get(segment))
}

/// The playlist of `file` of `h` (an MPEG-TS or MP4 file), segment `n` at `url(n)`.
pub async fn manifest(
    state: &AppState,
    h: &TorrentHandle,
    file: FileInfo,
    url: impl Fn(u64) -> String,
) -> Result<Response, ApiError> {
    let plan = state.vod_plans().get(h, file).await?;
    let mut r = Response::new(Body::from(plan.playlist(url)));
    let hs = r.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

async fn segment(
    State(state): State<AppState>,
    Path((id, file, seg)): Path<(String, usize, String)>,
) -> Response {
    match segment_inner(&state, &id, file, &seg).await {
        Ok(r) => r,
        Err(e) => e.plain_if(true).into_response(),
    }
}

async fn segment_inner(
    state: &AppState,
    id: &str,
    file: usize,
    seg: &str,
) -> Result<Response, ApiError> {
    let n: u64 = seg
        .strip_suffix(".ts")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::not_found("no such segment"))?;
    let ih = InfoHash::parse(id).map_err(|e| ApiError::bad_request(format!("bad ID: {e}")))?;
    let h = state
        .session()
        .get(&ih)
        .ok_or_else(|| ApiError::not_found("this torrent is not running"))?;
    let files = stream::wait_files(&h, state.config().metadata_timeout).await?;
    let file = stream::pick_file(&files, Some(file))?;
    let any = state.vod_plans().get(&h, file).await?;
    if n >= any.count() {
        return Err(ApiError::not_found("no such segment"));
    }
    if !matches!(&*any, AnyPlan::Ts(_)) {
        let body = tokio::task::spawn_blocking(move || {
            any.remuxed_segment(n)
                .unwrap_or_else(|| Err(ApiError::not_found("no such segment")))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
        let len = body.len();
        let mut resp = Response::new(Body::from(body));
        let hs = resp.headers_mut();
        hs.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
        if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
            hs.insert(header::CONTENT_LENGTH, v);
        }
        return Ok(resp);
    }
    let plan = match &*any {
        AnyPlan::Ts(p) => p,
        AnyPlan::Mp4(_) | AnyPlan::Mkv(_) => unreachable!("answered above"),
    };
    let mut r = open(&h, &plan.file).await?;
    let start = plan.cut(&mut r, n).await?;
    r.seek_hint(start);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let any = any.clone();
    tokio::spawn(async move {
        let AnyPlan::Ts(plan) = &*any else { return };
        let sent = tokio::select! {
            s = send_segment(plan, &mut r, n, start, &tx) => s,
            _ = tx.closed() => return,
        };
        if let Err(e) = sent {
            let _ = tx.send(Err(std::io::Error::other(e.message))).await;
        }
    });
    let mut resp = Response::new(Body::from_stream(ChunkStream::new(rx)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    Ok(resp)
}

/// Sends segment `n` from `start`: the PAT and PMT copies (not before the first segment), the
/// bytes up to the next boundary, then those up to the next segment's cut.
async fn send_segment(
    plan: &Plan,
    r: &mut FileReader,
    n: u64,
    start: u64,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), ApiError> {
    if n > 0 {
        tx.send(Ok(Bytes::from(plan.head.psi.clone())))
            .await
            .map_err(|_| hung_up())?;
    }
    if n + 1 < plan.count {
        let pos = copy(r, start, plan.boundary(n + 1), tx).await?;
        let end = plan.cut(r, n + 1).await?;
        copy(r, pos, end, tx).await?;
    } else {
        copy(r, start, plan.file.length, tx).await?;
    }
    Ok(())
}

/// Sends the file's bytes `from..to`; returns `to`.
async fn copy(
    r: &mut FileReader,
    from: u64,
    to: u64,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<u64, ApiError> {
    let mut pos = from;
    while pos < to {
        let mut chunk = read(r, pos).await?;
        chunk.truncate((to - pos) as usize);
        pos += chunk.len() as u64;
        tx.send(Ok(chunk)).await.map_err(|_| hung_up())?;
    }
    Ok(to)
}

async fn open(h: &TorrentHandle, file: &FileInfo) -> Result<FileReader, ApiError> {
    h.open_file(file.index)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))
}

/// The next bytes at `pos` (waiting for them); an error at the end of the file.
async fn read(r: &mut FileReader, pos: u64) -> Result<Bytes, ApiError> {
    let b = r
        .read_at(pos, MAX_READ)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    if b.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "the file ended early",
        ));
    }
    Ok(b)
}

/// Refuses a plan of more than [`MAX_SEGMENTS`] segments.
pub fn check_count(count: u64) -> Result<(), ApiError> {
    if count > MAX_SEGMENTS {
        return Err(ApiError::bad_request(format!(
            "this file would make {count} HLS segments (its header claims a duration of over \
             {} hours): not segmented; play it with /ace/getstream",
            MAX_SEGMENTS * SEGMENT_SECONDS as u64 / 3600
        )));
    }
    Ok(())
}

fn hung_up() -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "the player hung up")
}

fn not_media() -> ApiError {
    ApiError::bad_request(
        "HLS for VoD serves MPEG-TS, MP4 and Matroska files, and this file is none of them: \
         play it with /ace/getstream",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stream::tests::f;

    #[test]
    fn the_playlist_plays_the_largest_ts_unless_told() {
        let files = [f(0, "a.mp4", 900), f(1, "b.TS", 300), f(2, "c.ts", 200)];
        assert_eq!(pick_file(&files, None).unwrap().index, 1);
        assert_eq!(pick_file(&files, Some(0)).unwrap().index, 0);
        assert_eq!(pick_file(&files[..1], None).unwrap().index, 0, "no .ts");
        assert!(pick_file(&files, Some(7)).is_err());
    }
}
