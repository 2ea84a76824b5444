//! HTTP fetching from a CDN in the layout of the [module docs](super): the descriptor, the
//! playlist's newest index, signed headers and segments, each body capped by what is expected
//! and everything verified against the stream's key and content ID before it is returned.
//! Decides nothing about when to fetch (that is core's fallback policy).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peercdn_core::live::hls::newest_in_playlist;
use peercdn_core::live::{Descriptor, LiveError, PieceHeader, HEADER_LEN};
use peercdn_core::InfoHash;

use super::{
    CdnError, DEFAULT_TIMEOUT, DESCRIPTOR_FILE, MAX_BASES, MAX_DESCRIPTOR_BYTES,
    MAX_PLAYLIST_BYTES, PLAYLIST_FILE,
};
use crate::live::buffer::{LivePiece, Origin};

/// Downloads and parses a `.peerlive` file (at most [`MAX_DESCRIPTOR_BYTES`], within
/// [`DEFAULT_TIMEOUT`]). Returns the descriptor and its CDN base URLs: the base derived from
/// `url` when it ends in `/ID/descriptor.peerlive` (first: it evidently works), then the
/// descriptor's `url-list`, without duplicates.
pub async fn fetch_descriptor(
    client: &reqwest::Client,
    url: &str,
) -> Result<(Descriptor, Vec<String>), CdnError> {
    let parsed = parse_http_url(url)?;
    let body = get_limited(client, url, MAX_DESCRIPTOR_BYTES, DEFAULT_TIMEOUT, None).await?;
    let desc = Descriptor::from_bytes(&body).map_err(|source| CdnError::Descriptor {
        url: url.to_string(),
        source,
    })?;
    let suffix = format!("/{}/{DESCRIPTOR_FILE}", desc.content_id().to_hex());
    let mut bases = Vec::new();
    let path = parsed.path();
    if path.to_ascii_lowercase().ends_with(&suffix) {
        let mut base = parsed.clone();
        base.set_query(None);
        base.set_fragment(None);
        if let Some(prefix) = path.get(..path.len() - suffix.len()) {
            base.set_path(prefix);
            bases.push(base.to_string());
        }
    }
    bases.extend(desc.cdn.iter().cloned());
    Ok((desc, normalize_bases(bases)))
}

/// Keeps valid http(s) URLs, without trailing slashes, duplicates or more than [`MAX_BASES`].
fn normalize_bases(bases: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for b in bases {
        if parse_http_url(&b).is_err() {
            continue;
        }
        let b = b.trim_end_matches('/').to_string();
        if !out.contains(&b) && out.len() < MAX_BASES {
            out.push(b);
        }
    }
    out
}

fn parse_http_url(s: &str) -> Result<url::Url, CdnError> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        _ => Err(CdnError::BadUrl(s.to_string())),
    }
}

/// GETs `url` into memory, refusing bodies over `limit`; adds the body bytes to `counter`.
async fn get_limited(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
    timeout: Duration,
    counter: Option<&AtomicU64>,
) -> Result<Bytes, CdnError> {
    let fut = async {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(CdnError::Http {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let too_large = || CdnError::TooLarge {
            url: url.to_string(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let cap = resp
            .content_length()
            .map_or(limit.min(64 << 10), |n| n as usize);
        let mut body = BytesMut::with_capacity(cap);
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(url, e))? {
            if let Some(c) = counter {
                c.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| CdnError::Timeout(url.to_string()))?
}

fn transport(url: &str, e: reqwest::Error) -> CdnError {
    if e.is_timeout() {
        return CdnError::Timeout(url.to_string());
    }
    CdnError::Transport {
        url: url.to_string(),
        msg: e.to_string(),
    }
}

/// Counters of a [`CdnClient`] (and of the [`Fallback`](super::Fallback) that drives it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdnStats {
    /// Body bytes received, by base host (`host` or `host:port`), in base order.
    pub bytes_by_host: Vec<(String, u64)>,
    /// Of those, the bytes that were used: headers whose signature verified, payloads that
    /// matched their header, playlists that parsed. What a viewer signs receipts for (a
    /// receipt never covers data that failed its check).
    pub verified_by_host: Vec<(String, u64)>,
    /// Pieces fetched and verified.
    pub pieces: u64,
    /// Requests that failed (any reason, including verification).
    pub failures: u64,
    /// Headers or payloads refused because they failed verification (forged, altered,
    /// replayed).
    pub verify_failures: u64,
    /// Playlist polls.
    pub playlist_polls: u64,
}

#[derive(Debug)]
struct Base {
    url: String,
    host: String,
    bytes: AtomicU64,
    verified: AtomicU64,
}

#[derive(Debug, Default)]
struct Counters {
    pieces: AtomicU64,
    failures: AtomicU64,
    verify_failures: AtomicU64,
    playlist_polls: AtomicU64,
}

/// Fetches one stream's pieces from a list of CDN base URLs, verifying everything. Cheap to
/// share behind an `Arc`; methods take `&self`.
#[derive(Debug)]
pub struct CdnClient {
    client: reqwest::Client,
    bases: Vec<Base>,
    /// The base that answered last; requests start there.
    preferred: AtomicUsize,
    id_hex: String,
    content_id: InfoHash,
    pubkey: [u8; 32],
    max_piece_length: u32,
    timeout: Duration,
    counters: Counters,
}

impl CdnClient {
    /// A client for `descriptor`'s stream over `bases` (invalid URLs are skipped; at most
    /// [`MAX_BASES`]). Fails when no base is usable.
    pub fn new(
        client: reqwest::Client,
        descriptor: &Descriptor,
        bases: Vec<String>,
    ) -> Result<CdnClient, CdnError> {
        let bases: Vec<Base> = normalize_bases(bases)
            .into_iter()
            .filter_map(|url| {
                let u = parse_http_url(&url).ok()?;
                let host = match u.port() {
                    Some(p) => format!("{}:{p}", u.host_str()?),
                    None => u.host_str()?.to_string(),
                };
                Some(Base {
                    url,
                    host,
                    bytes: AtomicU64::new(0),
                    verified: AtomicU64::new(0),
                })
            })
            .collect();
        if bases.is_empty() {
            return Err(CdnError::NoBase);
        }
        let content_id = descriptor.content_id();
        Ok(CdnClient {
            client,
            bases,
            preferred: AtomicUsize::new(0),
            id_hex: content_id.to_hex(),
            content_id,
            pubkey: descriptor.params.pubkey,
            max_piece_length: descriptor.params.max_piece_length,
            timeout: DEFAULT_TIMEOUT,
            counters: Counters::default(),
        })
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> CdnClient {
        self.timeout = timeout;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> CdnStats {
        let mut bytes_by_host: Vec<(String, u64)> = Vec::new();
        let mut verified_by_host: Vec<(String, u64)> = Vec::new();
        for b in &self.bases {
            for (list, n) in [
                (&mut bytes_by_host, b.bytes.load(Ordering::Relaxed)),
                (&mut verified_by_host, b.verified.load(Ordering::Relaxed)),
            ] {
                match list.iter_mut().find(|(h, _)| *h == b.host) {
                    Some((_, total)) => *total += n,
                    None => list.push((b.host.clone(), n)),
                }
            }
        }
        let c = &self.counters;
        CdnStats {
            bytes_by_host,
            verified_by_host,
            pieces: c.pieces.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            verify_failures: c.verify_failures.load(Ordering::Relaxed),
            playlist_polls: c.playlist_polls.load(Ordering::Relaxed),
        }
    }

    /// The newest piece index `live.m3u8` lists (`None`: no segment listed). Tries each base
    /// until one answers.
    pub async fn latest(&self) -> Result<Option<u32>, CdnError> {
        self.counters.playlist_polls.fetch_add(1, Ordering::Relaxed);
        self.each_base(|base| async move {
            let url = format!("{}/{}/{PLAYLIST_FILE}", base.url, self.id_hex);
            let body = get_limited(
                &self.client,
                &url,
                MAX_PLAYLIST_BYTES,
                self.timeout,
                Some(&base.bytes),
            )
            .await?;
            base.verified
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            Ok(newest_in_playlist(&body))
        })
        .await
    }

    /// Fetches and verifies the signed header of piece `index`.
    pub async fn fetch_header(&self, index: u32) -> Result<PieceHeader, CdnError> {
        self.each_base(|base| async move { self.header_from(base, index).await })
            .await
    }

    /// Fetches piece `index` (header and payload), verifies the header's signature against the
    /// stream's key and content ID, its index, and the payload's length and hash. Tries the next
    /// base on any failure. The piece has [`Origin::Cdn`].
    pub async fn fetch_piece(&self, index: u32) -> Result<LivePiece, CdnError> {
        let piece = self
            .each_base(|base| async move {
                let header = self.header_from(base, index).await?;
                let url = format!("{}/{}/seg/{index}.ts", base.url, self.id_hex);
                // Longer than the signed length: altered.
                let payload = self
                    .get_signed(
                        base,
                        &url,
                        header.length as usize,
                        LiveError::BadPayload(index),
                    )
                    .await?;
                header
                    .check_payload(&payload)
                    .map_err(|source| CdnError::Verify { url, source })?;
                base.verified
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                Ok(LivePiece {
                    header,
                    payload,
                    origin: Origin::Cdn,
                })
            })
            .await?;
        self.counters.pieces.fetch_add(1, Ordering::Relaxed);
        Ok(piece)
    }

    /// GETs a signed file (a header or a segment) of at most `limit` bytes from `base`,
    /// counting its bytes there; a longer one is refused as altered (`altered`).
    async fn get_signed(
        &self,
        base: &Base,
        url: &str,
        limit: usize,
        altered: LiveError,
    ) -> Result<Bytes, CdnError> {
        get_limited(&self.client, url, limit, self.timeout, Some(&base.bytes))
            .await
            .map_err(|e| match e {
                CdnError::TooLarge { url, .. } => CdnError::Verify {
                    url,
                    source: altered,
                },
                e => e,
            })
    }

    async fn header_from(&self, base: &Base, index: u32) -> Result<PieceHeader, CdnError> {
        let url = format!("{}/{}/seg/{index}.hdr", base.url, self.id_hex);
        let raw = self
            .get_signed(
                base,
                &url,
                HEADER_LEN,
                LiveError::HeaderLength(HEADER_LEN + 1),
            )
            .await?;
        let verify_err = |source| CdnError::Verify {
            url: url.clone(),
            source,
        };
        let header = PieceHeader::decode(&raw).map_err(verify_err)?;
        header
            .verify(&self.pubkey, &self.content_id)
            .map_err(verify_err)?;
        if header.index != index {
            return Err(CdnError::WrongIndex {
                url,
                expected: index,
                got: header.index,
            });
        }
        if header.length > self.max_piece_length {
            return Err(CdnError::PieceTooLarge(index));
        }
        base.verified.fetch_add(raw.len() as u64, Ordering::Relaxed);
        Ok(header)
    }

    /// Runs `f` on each base from the preferred one on, until one succeeds; counts failures.
    async fn each_base<'a, T, F, Fut>(&'a self, f: F) -> Result<T, CdnError>
    where
        F: Fn(&'a Base) -> Fut,
        Fut: std::future::Future<Output = Result<T, CdnError>>,
    {
        let n = self.bases.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut last = CdnError::NoBase;
        for k in 0..n {
            let i = (start + k) % n;
            let Some(base) = self.bases.get(i) else {
                continue;
            };
            match f(base).await {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    if e.is_verification() {
                        self.counters
                            .verify_failures
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!("live CDN: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_normalized() {
        let b = normalize_bases(vec![
            "http://a/x/".into(),
            "http://a/x".into(),
            "ftp://b/".into(),
            "nonsense".into(),
            "https://c".into(),
        ]);
        assert_eq!(b, vec!["http://a/x".to_string(), "https://c".to_string()]);
    }
}
