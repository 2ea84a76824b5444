//! BEP 19 web seeds (GetRight-style `url-list`): read piece bytes from a plain HTTP(S) server
//! that hosts the torrent's files.
//!
//! A [`WebSeed`] owns one base URL, one `reqwest` client (so connections are kept alive and
//! reused) and a byte counter. [`WebSeed::fetch`] maps a range of a piece onto the torrent's
//! files and sends one `Range: bytes=a-b` request per file segment; BEP 47 padding files are
//! zeros and cost no request. Bytes are checked, never trusted: the answer must be `206` with a
//! `Content-Range` starting where we asked, or a `200` only when we asked for the whole file, and
//! the body must be exactly the expected length. Bodies are streamed into a buffer of the
//! requested length, so a server that sends more can never make us hold more. Hashing the piece
//! is the caller's job (the torrent actor verifies web-seed pieces like any other).
//!
//! Architecture invariant: this module knows nothing of the swarm, the picker or storage; it
//! turns `(piece, begin, len)` into bytes or a [`WebSeedError`].
//!
//! URL rules (BEP 19): for a single-file torrent, a base URL whose path ends with `/` gets the
//! torrent name appended, any other base URL is the file itself. For a multi-file torrent the
//! file URL is `base/` + name + `/` + the path components, each percent-encoded as an RFC 3986
//! path segment (unreserved characters kept). A query string on the base URL is kept after the
//! path.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peercdn_core::metainfo::{FileEntry, Metainfo};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

/// Default per-request timeout (connect, headers and body together).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Redirects followed per request (mirrors often redirect to a closer host).
const MAX_REDIRECTS: usize = 5;

/// Bytes kept as they are in a path segment: RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a web seed could not deliver the bytes asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebSeedError {
    /// The base URL is not an absolute `http` or `https` URL with a host.
    #[error("bad web seed URL {0:?}: need an absolute http or https URL")]
    BadUrl(String),
    /// The server answered with a status other than 206 (or an acceptable 200).
    #[error("web seed {url} answered HTTP {status}")]
    Http {
        /// The file URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The server ignored our `Range` header (answered 200) for part of a file: we refuse to
    /// read a whole file to get a piece of it.
    #[error("web seed {0} ignores Range requests (answered 200 for a partial range)")]
    NoRangeSupport(String),
    /// The server answered 206 for a range other than the one asked for, or says the file has
    /// another length than the torrent does.
    #[error("web seed {url} answered with Content-Range {got:?}, expected {expected:?}")]
    BadContentRange {
        /// The file URL requested.
        url: String,
        /// What we expected (`bytes a-b/total`).
        expected: String,
        /// The `Content-Range` header received (empty if missing or not text).
        got: String,
    },
    /// The body ended before the expected length.
    #[error("web seed {url} sent {got} bytes, expected {expected}")]
    ShortBody {
        /// The file URL requested.
        url: String,
        /// Bytes expected.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The server announced or sent more bytes than asked for.
    #[error("web seed sent more bytes than requested")]
    TooLarge,
    /// The range asked for is not inside the piece, or the piece does not exist.
    #[error("range {begin}+{len} of piece {piece} is outside the torrent")]
    BadRange {
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        begin: u32,
        /// Length asked for.
        len: u32,
    },
    /// The request (connect, headers or body) took longer than the timeout.
    #[error("web seed request timed out")]
    Timeout,
    /// Connection or protocol failure.
    #[error("web seed I/O error: {0}")]
    Io(String),
}

/// A client for one web seed URL. Cheap to clone: clones share the HTTP client (and its
/// keep-alive connections) and the byte counter.
#[derive(Clone)]
pub struct WebSeed {
    inner: Arc<Inner>,
}

struct Inner {
    /// The base URL as given.
    url: String,
    /// The base URL parsed, fragment removed.
    base: url::Url,
    meta: Arc<Metainfo>,
    client: reqwest::Client,
    timeout: Duration,
    /// Payload bytes received.
    downloaded: AtomicU64,
}

impl fmt::Debug for WebSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSeed")
            .field("url", &self.inner.url)
            .field("downloaded", &self.downloaded())
            .finish()
    }
}

impl WebSeed {
    /// A web seed for `base_url` (an entry of `meta.url_list`), with [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str, meta: Arc<Metainfo>) -> Result<WebSeed, WebSeedError> {
        WebSeed::with_timeout(base_url, meta, DEFAULT_TIMEOUT)
    }

    /// A web seed whose requests each time out after `timeout` (connect, headers and body).
    pub fn with_timeout(
        base_url: &str,
        meta: Arc<Metainfo>,
        timeout: Duration,
    ) -> Result<WebSeed, WebSeedError> {
        let bad = || WebSeedError::BadUrl(base_url.to_owned());
        let mut base = url::Url::parse(base_url).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad());
        }
        base.set_fragment(None);
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .user_agent(concat!("peercdn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebSeedError::Io(e.to_string()))?;
        Ok(WebSeed {
            inner: Arc::new(Inner {
                url: base_url.to_owned(),
                base,
                meta,
                client,
                timeout,
                downloaded: AtomicU64::new(0),
            }),
        })
    }

    /// The base URL, as given.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The server's host (with `:port` when the URL names one), to key per-web-seed counters.
    pub fn host(&self) -> String {
        let base = &self.inner.base;
        let host = base.host_str().unwrap_or_default();
        match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// Payload bytes received from this web seed so far (all clones together), including bytes
    /// of answers later refused.
    pub fn downloaded(&self) -> u64 {
        self.inner.downloaded.load(Ordering::Relaxed)
    }

    /// The URL of file `index` of the torrent, by the BEP 19 rules; `None` for an index out of
    /// range.
    pub fn file_url(&self, index: usize) -> Option<String> {
        let file = self.inner.meta.info.files.get(index)?;
        Some(self.url_for(file))
    }

    /// The URL of `file`, an entry of this torrent's file list.
    fn url_for(&self, file: &FileEntry) -> String {
        let info = &self.inner.meta.info;
        let mut url = self.inner.base.clone();
        let mut path = url.path().to_owned();
        if info.multi_file {
            if !path.ends_with('/') {
                path.push('/');
            }
            push_segment(&mut path, &info.name);
            for component in &file.path {
                path.push('/');
                push_segment(&mut path, component);
            }
        } else if path.ends_with('/') {
            push_segment(&mut path, &info.name);
        }
        // Already encoded with a stricter set than the URL parser's: set_path keeps it as is.
        url.set_path(&path);
        url.into()
    }

    /// The bytes `begin .. begin + len` of piece `piece`: one HTTP range request per file
    /// segment (padding files give zeros without a request), concatenated. The length is
    /// checked exactly; the hash is not (the caller verifies whole pieces).
    pub async fn fetch(&self, piece: u32, begin: u32, len: u32) -> Result<Bytes, WebSeedError> {
        let info = &self.inner.meta.info;
        let bad_range = WebSeedError::BadRange { piece, begin, len };
        let piece_len = info.piece_len(piece);
        if piece_len == 0 || u64::from(begin) + u64::from(len) > u64::from(piece_len) {
            return Err(bad_range);
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        let start = u64::from(piece) * u64::from(info.piece_length) + u64::from(begin);
        let end = start + u64::from(len);
        let mut buf = BytesMut::zeroed(len as usize);
        let mut cursor = start;
        let first = info
            .files
            .partition_point(|f| f.offset.saturating_add(f.length) <= start);
        for file in info.files.iter().skip(first) {
            if cursor >= end {
                break;
            }
            let file_end = file.offset.saturating_add(file.length);
            if file.length == 0 || file_end <= cursor {
                continue;
            }
            if file.offset > cursor {
                // Inconsistent offsets (a hand-built Info): never leave a hole of zeros.
                return Err(bad_range);
            }
            let seg_end = end.min(file_end);
            let out = buf
                .get_mut((cursor - start) as usize..(seg_end - start) as usize)
                .ok_or_else(|| bad_range.clone())?;
            if !file.pad {
                self.fetch_segment(file, cursor - file.offset, out).await?;
            }
            cursor = seg_end;
        }
        if cursor != end {
            return Err(bad_range);
        }
        Ok(buf.freeze())
    }

    /// The whole piece `piece`.
    pub async fn fetch_piece(&self, piece: u32) -> Result<Bytes, WebSeedError> {
        let len = self.inner.meta.info.piece_len(piece);
        if len == 0 {
            return Err(WebSeedError::BadRange {
                piece,
                begin: 0,
                len: 0,
            });
        }
        self.fetch(piece, 0, len).await
    }

    /// Fills `out` (not empty) with the bytes of `file` from offset `from`, with one range
    /// request.
    async fn fetch_segment(
        &self,
        file: &FileEntry,
        from: u64,
        out: &mut [u8],
    ) -> Result<(), WebSeedError> {
        let url = self.url_for(file);
        let expected = out.len() as u64;
        let last = from + expected - 1;
        let resp = self
            .inner
            .client
            .get(&url)
            .header(RANGE, format!("bytes={from}-{last}"))
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
            .timeout(self.inner.timeout)
            .send()
            .await
            .map_err(from_reqwest)?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let want = format!("bytes {from}-{last}/{}", file.length);
                let got = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !content_range_ok(got, from, file.length) {
                    return Err(WebSeedError::BadContentRange {
                        url,
                        expected: want,
                        got: got.to_owned(),
                    });
                }
            }
            // A whole-file answer is fine when the whole file is what we asked for.
            StatusCode::OK if from == 0 && expected == file.length => {}
            StatusCode::OK => return Err(WebSeedError::NoRangeSupport(url)),
            status => {
                return Err(WebSeedError::Http {
                    url,
                    status: status.as_u16(),
                })
            }
        }
        self.read_exact_body(resp, url, out).await
    }

    /// Streams the body into `out`, refusing a body longer or shorter than `out`.
    async fn read_exact_body(
        &self,
        mut resp: reqwest::Response,
        url: String,
        out: &mut [u8],
    ) -> Result<(), WebSeedError> {
        let expected = out.len() as u64;
        if resp.content_length().is_some_and(|n| n > expected) {
            return Err(WebSeedError::TooLarge);
        }
        let mut filled = 0usize;
        while let Some(chunk) = resp.chunk().await.map_err(from_reqwest)? {
            self.inner
                .downloaded
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let dest = out
                .get_mut(filled..filled + chunk.len())
                .ok_or(WebSeedError::TooLarge)?;
            dest.copy_from_slice(&chunk);
            filled += chunk.len();
        }
        if filled != out.len() {
            return Err(WebSeedError::ShortBody {
                url,
                expected,
                got: filled as u64,
            });
        }
        Ok(())
    }
}

/// Appends one percent-encoded path segment.
fn push_segment(path: &mut String, segment: &str) {
    path.extend(utf8_percent_encode(segment, SEGMENT));
}

/// True if `header` is `bytes <from>-<anything>/<total or *>` with `total == file_len`. The end
/// is not compared: the body length check catches a range of the wrong length.
fn content_range_ok(header: &str, from: u64, file_len: u64) -> bool {
    let Some(rest) = header.trim().strip_prefix("bytes ") else {
        return false;
    };
    let Some((range, total)) = rest.split_once('/') else {
        return false;
    };
    let Some((first, _last)) = range.trim().split_once('-') else {
        return false;
    };
    let total_ok = match total.trim() {
        "*" => true,
        t => t.parse::<u64>() == Ok(file_len),
    };
    first.trim().parse::<u64>() == Ok(from) && total_ok
}

fn from_reqwest(e: reqwest::Error) -> WebSeedError {
    if e.is_timeout() {
        return WebSeedError::Timeout;
    }
    // The chain holds the useful part ("connection refused", "unexpected EOF").
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    WebSeedError::Io(msg)
}
