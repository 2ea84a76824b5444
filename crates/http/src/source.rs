//! Where a torrent or a live stream comes from, as HTTP clients name it: a content ID (40 hex,
//! base32 or `acestream://`), a magnet link, an http(s) URL of a `.torrent` or a `.peerlive`
//! descriptor (fetched with a size limit and a timeout), or a `.torrent` body. Also the bounded
//! query-string parser every route uses.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use peercdn_core::live::Descriptor;
use peercdn_core::magnet::Magnet;
use peercdn_core::metainfo::Metainfo;
use peercdn_core::InfoHash;
use peercdn_engine::torrent::Source;

use crate::error::ApiError;

/// Most query parameters looked at.
pub const MAX_PARAMS: usize = 64;
/// Most peer addresses taken from one request.
pub const MAX_PEERS: usize = 64;

/// The header every `url=` fetch of this engine carries. A request that carries it may not
/// start another fetch ([`refuse_nested_fetch`]): a `url=` leading back into an engine's own
/// `getstream?url=` (directly, through a redirect, or through another address of the same
/// engine) otherwise recursed about 10,000 times, holding 20,000 descriptors.
pub const FETCH_MARK: &str = "x-peercdn-fetch";

/// Refuses a request for a `url=` fetch that comes from a `url=` fetch (see [`FETCH_MARK`]).
pub fn refuse_nested_fetch(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(FETCH_MARK) {
        return Err(ApiError::bad_request(
            "a url= fetch of a peercdn engine may not start another url= fetch (the URL leads \
             back into an engine)",
        ));
    }
    Ok(())
}

/// Decoded query parameters; the first occurrence of a key wins.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw query string (`a=1&b=2`), keeping at most [`MAX_PARAMS`] pairs.
    pub fn parse(query: Option<&str>) -> Params {
        let q = query.unwrap_or("");
        Params(
            url::form_urlencoded::parse(q.as_bytes())
                .take(MAX_PARAMS)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key` (empty values count as absent).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `key` as a number; Err when present but not a number.
    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                v.trim().parse().map(Some).map_err(|_| {
                    ApiError::bad_request(format!("{key}={v:?} is not a valid number"))
                })
            }
        }
    }
}

/// What a request asks to play or add, before any fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A bare content ID.
    Id(InfoHash),
    /// A magnet link.
    Magnet(Magnet),
    /// An http(s) URL of a `.torrent`.
    Url(url::Url),
}

/// A torrent ready to add: its source and the extra peers to dial.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What to add.
    pub source: Source,
    /// Peers named by the request (magnet `x.pe`, API `peers`).
    pub peers: Vec<SocketAddr>,
}

/// Reads `content_id`, `id`, `infohash`, `url`, `magnet` (the first present wins).
pub fn wanted_from_params(p: &Params) -> Result<Wanted, ApiError> {
    for key in ["content_id", "id", "infohash"] {
        if let Some(v) = p.get(key) {
            return parse_id(v);
        }
    }
    if let Some(v) = p.get("url") {
        return parse_url(v);
    }
    if let Some(v) = p.get("magnet") {
        return parse_magnet(v);
    }
    Err(ApiError::bad_request(
        "missing parameter: one of content_id, id, infohash, url, magnet",
    ))
}

/// A content ID (40 hex, 32 base32, `acestream://…`); a magnet link is accepted too.
pub fn parse_id(v: &str) -> Result<Wanted, ApiError> {
    if v.trim_start().starts_with("magnet:") {
        return parse_magnet(v);
    }
    InfoHash::parse(v)
        .map(Wanted::Id)
        .map_err(|e| ApiError::bad_request(format!("bad content ID: {e}")))
}

/// A magnet link.
pub fn parse_magnet(v: &str) -> Result<Wanted, ApiError> {
    Magnet::parse(v)
        .map(Wanted::Magnet)
        .map_err(|e| ApiError::bad_request(format!("bad magnet link: {e}")))
}

/// An http(s) URL; other schemes are refused.
pub fn parse_url(v: &str) -> Result<Wanted, ApiError> {
    let u = url::Url::parse(v.trim())
        .map_err(|e| ApiError::bad_request(format!("bad url {v:?}: {e}")))?;
    match u.scheme() {
        "http" | "https" => Ok(Wanted::Url(u)),
        s => Err(ApiError::bad_request(format!(
            "url scheme {s:?} is not allowed (http or https only)"
        ))),
    }
}

/// Peer addresses given as `ip:port` strings; others are skipped (no DNS here). At most
/// [`MAX_PEERS`].
pub fn parse_peers<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = items
        .into_iter()
        .filter_map(|s| s.trim().parse().ok())
        .take(MAX_PEERS)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Turns what was asked into a source, fetching a `url=` `.torrent` first.
pub async fn resolve(
    client: &reqwest::Client,
    wanted: Wanted,
    limit: u64,
    timeout: Duration,
) -> Result<Resolved, ApiError> {
    match wanted {
        Wanted::Id(info_hash) => Ok(Resolved {
            source: Source::Hash {
                info_hash,
                name: None,
                trackers: vec![],
                web_seeds: vec![],
            },
            peers: vec![],
        }),
        Wanted::Magnet(m) => Ok(Resolved {
            peers: parse_peers(m.peers.iter().map(String::as_str)),
            source: Source::Hash {
                info_hash: m.info_hash,
                name: m.name,
                trackers: m.trackers,
                web_seeds: m.web_seeds,
            },
        }),
        Wanted::Url(u) => {
            let m = fetch_torrent(client, u, limit, timeout).await?;
            Ok(Resolved {
                source: Source::Metainfo(Box::new(m)),
                peers: vec![],
            })
        }
    }
}

/// Parses a `.torrent` body.
pub fn parse_torrent(body: &[u8]) -> Result<Metainfo, ApiError> {
    Metainfo::from_bytes(body).map_err(|e| ApiError::bad_request(format!("bad .torrent: {e}")))
}

/// What an http(s) URL served.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// A `.torrent`.
    Torrent(Box<Metainfo>),
    /// A `.peerlive` live stream descriptor.
    Live(Box<Descriptor>),
}

/// Fetches a `.torrent` over http(s): at most `limit` bytes, within `timeout`.
pub async fn fetch_torrent(
    client: &reqwest::Client,
    url: url::Url,
    limit: u64,
    timeout: Duration,
) -> Result<Metainfo, ApiError> {
    let shown = url.to_string();
    let body = fetch_body(client, url, limit, timeout).await?;
    Metainfo::from_bytes(&body).map_err(|e| bad_gateway(&shown, &format!("not a .torrent: {e}")))
}

/// The local path of a `file://` URL (absolute), if `v` is one.
pub fn file_url(v: &str) -> Option<std::path::PathBuf> {
    let u = url::Url::parse(v.trim()).ok()?;
    (u.scheme() == "file")
        .then(|| u.to_file_path().ok())
        .flatten()
}

/// Reads a local `.torrent` or `.peerlive` file (what launchers pass as `url=file://…`): a
/// regular file of at most `limit` bytes, tried as a torrent, then as a descriptor.
pub async fn read_local(path: &std::path::Path, limit: u64) -> Result<Fetched, ApiError> {
    let shown = path.display().to_string();
    let bad = |why: String| ApiError::bad_request(format!("{shown}: {why}"));
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > limit {
        return Err(bad(format!("larger than the {limit}-byte limit")));
    }
    let body = tokio::fs::read(path)
        .await
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    parse_fetched(&body).map_err(bad)
}

/// A `.torrent`, else a `.peerlive` descriptor, else why neither.
fn parse_fetched(body: &[u8]) -> Result<Fetched, String> {
    let torrent_err = match Metainfo::from_bytes(body) {
        Ok(m) => return Ok(Fetched::Torrent(Box::new(m))),
        Err(e) => e,
    };
    match Descriptor::from_bytes(body) {
        Ok(d) => Ok(Fetched::Live(Box::new(d))),
        Err(e) => Err(format!(
            "neither a .torrent ({torrent_err}) nor a .peerlive descriptor ({e})"
        )),
    }
}

/// Fetches a `.torrent` or a `.peerlive` descriptor over http(s): at most `limit` bytes,
/// within `timeout`. A body that is no torrent is tried as a descriptor.
pub async fn fetch_url(
    client: &reqwest::Client,
    url: url::Url,
    limit: u64,
    timeout: Duration,
) -> Result<Fetched, ApiError> {
    let shown = url.to_string();
    let body = fetch_body(client, url, limit, timeout).await?;
    parse_fetched(&body).map_err(|e| bad_gateway(&shown, &e))
}

/// The CDN base URL implied by a descriptor URL of the publish layout
/// `BASE/ID/descriptor.peerlive` (`ID` the stream's content ID): `BASE`, else None.
pub fn cdn_base(url: &url::Url, id: &InfoHash) -> Option<String> {
    let s = url.as_str();
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let rest = s.strip_suffix("/descriptor.peerlive")?;
    let (base, last) = rest.rsplit_once('/')?;
    let is_id = InfoHash::parse(last).is_ok_and(|x| x == *id);
    (is_id && base.contains("://") && !base.ends_with('/')).then(|| base.to_string())
}

async fn fetch_body(
    client: &reqwest::Client,
    url: url::Url,
    limit: u64,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let shown = url.to_string();
    let fetch = async {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("server answered {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(format!("larger than the {limit}-byte limit"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("read failed: {e}"))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(format!("larger than the {limit}-byte limit"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match tokio::time::timeout(timeout, fetch).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(bad_gateway(&shown, &e)),
        Err(_) => Err(bad_gateway(&shown, &format!("timed out after {timeout:?}"))),
    }
}

fn bad_gateway(url: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("fetching {url} failed: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn first_present_wins() {
        let p = Params::parse(Some(&format!(
            "magnet=magnet%3A%3Fxt%3Durn%3Abtih%3A{}&infohash={HEX}&id=&url=ftp://x",
            "f".repeat(40)
        )));
        assert_eq!(
            wanted_from_params(&p),
            Ok(Wanted::Id(
                InfoHash::parse(HEX).unwrap_or(InfoHash([0; 20]))
            ))
        );
        let p = Params::parse(Some("url=ftp://example.invalid/a.torrent&magnet=x"));
        assert_eq!(
            wanted_from_params(&p).map_err(|e| e.status),
            Err(StatusCode::BAD_REQUEST)
        );
        let p = Params::parse(Some(&format!("content_id=acestream://{HEX}")));
        assert!(matches!(wanted_from_params(&p), Ok(Wanted::Id(_))));
        let p = Params::parse(Some("magnet=magnet:?dn=x"));
        assert!(wanted_from_params(&p).is_err());
        assert!(wanted_from_params(&Params::parse(None)).is_err());
    }

    #[test]
    fn peers() {
        assert_eq!(
            parse_peers(["127.0.0.1:1", "nope", "[::1]:2", "127.0.0.1:1"]),
            vec![
                "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
                "[::1]:2".parse().unwrap_or_else(|_| unreachable!()),
            ]
        );
    }

    #[test]
    fn cdn_base_of_the_publish_layout() {
        let id = InfoHash::parse(HEX).unwrap_or(InfoHash([0; 20]));
        let u = |s: &str| url::Url::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cdn_base(
                &u(&format!("http://h:1/a/b/{HEX}/descriptor.peerlive?x=1")),
                &id
            ),
            Some("http://h:1/a/b".into())
        );
        assert_eq!(
            cdn_base(&u(&format!("http://h/{HEX}/descriptor.peerlive")), &id),
            Some("http://h".into())
        );
        assert_eq!(cdn_base(&u("http://h/x/descriptor.peerlive"), &id), None);
        assert_eq!(
            cdn_base(&u(&format!("http://h/{HEX}/d.peerlive")), &id),
            None
        );
    }

    proptest! {
        #[test]
        fn garbage_queries_never_panic(q in ".{0,200}") {
            let p = Params::parse(Some(&q));
            let _ = wanted_from_params(&p);
            let _ = p.number::<usize>("file_index");
        }
    }
}
