//! Progressive output of one file of a torrent: which file to play, its content type, the
//! status and headers for a `Range`, and a body that loops `FileReader::read_at` while the file
//! downloads.
//!
//! The body is fed by a task that reads at most one chunk ahead of what the client has taken (a
//! channel of one chunk plus the read in progress), so memory per stream is bounded. When the
//! client disconnects the channel closes; the task notices even while it waits for a piece, ends,
//! and drops its reader, which releases the reader's piece priorities.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use peercdn_engine::stream::{FileInfo, FileReader, MAX_READ};
use peercdn_engine::torrent::TorrentHandle;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::range::{self, RangeAnswer};

/// Extensions of media files, preferred when no `file_index` is given.
pub const MEDIA_EXTENSIONS: &[&str] = &[
    "ts", "m2ts", "mp4", "m4v", "mkv", "webm", "avi", "mov", "flv", "mpg", "mpeg", "wmv", "mp3",
    "aac", "flac", "ogg", "opus", "m4a", "wav",
];

fn extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Whether the path names a media file (by extension).
pub fn is_media(path: &str) -> bool {
    MEDIA_EXTENSIONS.contains(&extension(path).as_str())
}

/// The `Content-Type` for a file, by extension.
pub fn content_type(path: &str) -> &'static str {
    match extension(path).as_str() {
        "ts" | "m2ts" => "video/mp2t",
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        "mov" => "video/quicktime",
        "flv" => "video/x-flv",
        "mpg" | "mpeg" => "video/mpeg",
        "wmv" => "video/x-ms-wmv",
        "mp3" => "audio/mpeg",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "opus" => "audio/opus",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

/// File `index` when given (400 if there is none), else the largest media file, else the
/// largest file.
pub fn pick_file(files: &[FileInfo], index: Option<usize>) -> Result<FileInfo, ApiError> {
    if let Some(i) = index {
        return files.iter().find(|f| f.index == i).cloned().ok_or_else(|| {
            ApiError::bad_request(format!(
                "file_index={i} does not exist ({} files)",
                files.len()
            ))
        });
    }
    let largest = |media: bool| {
        files
            .iter()
            .filter(|f| !media || is_media(&f.path))
            .max_by_key(|f| (f.length, std::cmp::Reverse(f.index)))
    };
    largest(true)
        .or_else(|| largest(false))
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the torrent has no files"))
}

/// Waits (at most `timeout`) until the torrent's metadata is known and its data checked, and
/// returns its files. 504 on timeout, 502 when the torrent stopped.
pub async fn wait_files(h: &TorrentHandle, timeout: Duration) -> Result<Vec<FileInfo>, ApiError> {
    match tokio::time::timeout(timeout, h.wait_ready()).await {
        Ok(Ok(_)) => h
            .files()
            .ok_or_else(|| ApiError::new(StatusCode::BAD_GATEWAY, "metadata vanished")),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no metadata for {} within {}s (no peer has it yet?)",
                h.info_hash,
                timeout.as_secs()
            ),
        )),
    }
}

/// The response for `file` of `h` with this `Range` header: 200, 206 or 416, with the body
/// unless `head`.
pub async fn respond(
    h: &TorrentHandle,
    file: &FileInfo,
    range_header: Option<&str>,
    head: bool,
) -> Result<Response, ApiError> {
    let len = file.length;
    let answer = range::resolve(range_header, len);
    let (status, start, end) = match answer {
        RangeAnswer::Unsatisfiable => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let hs = r.headers_mut();
            hs.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            insert(hs, header::CONTENT_RANGE, &format!("bytes */{len}"));
            hs.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return Ok(r);
        }
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
    };
    tracing::debug!(file = file.index, start, end, head, "stream response");
    let body = if head || start >= end {
        Body::empty()
    } else {
        let mut reader = h
            .open_file(file.index)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
        reader.seek_hint(start);
        body(reader, start, end)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let hs = r.headers_mut();
    hs.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file.path)),
    );
    insert(hs, header::CONTENT_LENGTH, &(end - start).to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        insert(
            hs,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    Ok(r)
}

fn insert(hs: &mut axum::http::HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        hs.insert(name, v);
    }
}

/// A body with bytes `start..end` of the reader's file, read while they download.
pub fn body(mut reader: FileReader, start: u64, end: u64) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut pos = start;
        while pos < end {
            let want = (end - pos).min(MAX_READ as u64) as usize;
            let read = tokio::select! {
                r = reader.read_at(pos, want) => r,
                _ = tx.closed() => return,
            };
            let item = match read {
                Ok(b) if b.is_empty() => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file ended early",
                )),
                Ok(b) => {
                    pos += b.len() as u64;
                    Ok(b)
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(ChunkStream(rx))
}

/// A body stream over the receiving end of a chunk channel (the sender is a feeding task).
#[derive(Debug)]
pub struct ChunkStream(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl ChunkStream {
    /// The stream of what `rx` receives.
    pub fn new(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> ChunkStream {
        ChunkStream(rx)
    }
}

impl futures_core::Stream for ChunkStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file of a torrent, for the file-picking tests here and in `vod_hls`.
    pub(crate) fn f(index: usize, path: &str, length: u64) -> FileInfo {
        FileInfo {
            index,
            path: path.into(),
            length,
            offset: 0,
        }
    }

    #[test]
    fn types() {
        assert_eq!(content_type("a/b/Movie.TS"), "video/mp2t");
        assert_eq!(content_type("x.mp4"), "video/mp4");
        assert_eq!(content_type("x.mkv"), "video/x-matroska");
        assert_eq!(content_type("x.mp3"), "audio/mpeg");
        assert_eq!(content_type("x.txt"), "application/octet-stream");
        assert_eq!(content_type(".mp4"), "application/octet-stream");
        assert_eq!(content_type("mp4"), "application/octet-stream");
        assert_eq!(content_type(""), "application/octet-stream");
        assert_eq!(content_type("dir.mp4/file"), "application/octet-stream");
    }

    #[test]
    fn picks() {
        let files = [
            f(0, "big.iso", 1000),
            f(1, "a.mkv", 10),
            f(2, "b.mp4", 20),
            f(3, "s.srt", 5),
        ];
        assert_eq!(pick_file(&files, None).map(|x| x.index), Ok(2));
        assert_eq!(pick_file(&files, Some(3)).map(|x| x.index), Ok(3));
        assert!(pick_file(&files, Some(9)).is_err());
        assert_eq!(pick_file(&files[..1], None).map(|x| x.index), Ok(0));
        assert!(pick_file(&[], None).is_err());
    }
}
