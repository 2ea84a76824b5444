//! Ace's server API (`/server/api?method=…`) and `/search`, in the shapes Ace clients read
//! (python-acestream, acestream-search): answers are `{"result": …, "error": null}`.
//!
//! - `get_media_files` (`infohash=` or `content_id=`): `{"0": "file name", "1": …}` by file
//!   index (python-acestream names a stream with it; acestream-launcher shows the title),
//!   waiting up to 10 s for a torrent's metadata;
//! - `get_content_id` (`infohash=`): the content ID (the same 40 hex digits here);
//! - `get_api_access_token`: `{"token": …}` — the engine's access token when it has one (the
//!   caller already passed it to get here), else a fixed one the search accepts;
//! - `get_status`: `version` (as `get_version`), `playlist_loaded` (false: no playlists here),
//!   counts of torrents, live streams, playback sessions and peers, DHT nodes, `connected`
//!   (peers or DHT nodes); `get_network_connection_status`: `{"connected"}` (orchestrators and
//!   scrapers poll both as health checks);
//! - `search` and `/search` (`query`, `category`, `page` from 0, `page_size`,
//!   `group_by_channels`): `{"results": […], "total", "time"}`, each result with `infohash`,
//!   `name`, `categories`, `availability` (0–1: the share of the content held here, 1 for a
//!   live stream receiving pieces), `availability_updated_at` (Unix seconds), `status` (2 when
//!   available, 1 not yet), `bitrate` (bytes/s, live only), and from a catalogue record
//!   `kind`, `language`, `country`, `publisher`; grouped by name when asked. What is searched
//!   (`find`): the catalogue's signed records ([`peercdn_engine::catalog`], ranked there), then
//!   what this engine holds that no record describes (by name: every word, any case). Records
//!   reach the catalogue from this node's `publish` and `broadcast`, and from other nodes by
//!   `pc_search` (gossip, and the peers a search asks first) and the channels it follows.
//!   `show_epg=1` adds `epg: null` to each item: records carry no programme guide.
//!
//! Errors follow Ace's conventions through [`crate::ace::conventions`] (200, message in
//! `error`).

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use peercdn_core::InfoHash;
use serde_json::{json, Value};

use peercdn_engine::catalog::{self, Entry as CatalogEntry, SearchQuery};

use crate::error::ApiError;
use crate::source::Params;
use crate::state::AppState;

/// How long a search waits for peers' answers (Tribler's remote search: 2 s).
pub(crate) const ASK_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);
/// Results per page when the caller names none.
const DEFAULT_PAGE_SIZE: usize = 10;
/// Most results per page.
const MAX_PAGE_SIZE: usize = 200;
/// Most words of a query that are matched (the rest are ignored).
const MAX_QUERY_WORDS: usize = 16;
/// How long `get_media_files` waits for a torrent's metadata.
const METADATA_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The token `get_api_access_token` hands out when the engine has none.
const OPEN_TOKEN: &str = "peercdn";

/// The server API and search routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/server/api", get(server_api))
        .route("/search", get(search_route))
}

async fn server_api(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(query.as_deref());
    match p.get("method") {
        Some("get_media_files") => media_files(&state, &p).await,
        Some("get_content_id") => {
            let ih = infohash(&p)?;
            Ok(result(json!({ "content_id": ih.to_hex() })))
        }
        Some("get_api_access_token") => {
            let token = state.config().access_token.clone();
            Ok(result(
                json!({ "token": token.as_deref().unwrap_or(OPEN_TOKEN) }),
            ))
        }
        Some("search") => search(&state, &p).await,
        Some("get_status") => Ok(result(status(&state).await)),
        Some("get_network_connection_status") => {
            let connected = status(&state).await["connected"].clone();
            Ok(result(json!({ "connected": connected })))
        }
        Some(m) => Err(ApiError::bad_request(format!("unknown method {m:?}"))),
        None => Err(ApiError::bad_request("missing parameter: method")),
    }
}

async fn search_route(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    search(&state, &Params::parse(query.as_deref())).await
}

/// `get_status`: the engine's version (as `get_version`), what it runs, and whether it is
/// connected (peers, or a DHT with nodes). Engine orchestrators poll it as a health check.
async fn status(state: &AppState) -> Value {
    let s = state.session();
    let torrents = s.list();
    let lives = s.lives();
    let peers: usize = torrents
        .iter()
        .map(|t| t.status.borrow().peers)
        .sum::<usize>()
        + lives.iter().map(|l| l.status().peers).sum::<usize>();
    let dht_nodes = match s.dht() {
        Some(d) => d.current_stats().await.nodes,
        None => 0,
    };
    json!({
        "version": crate::ace::version_json(),
        "playlist_loaded": false,
        "torrents": torrents.len(),
        "live_streams": lives.len(),
        "playback_sessions": state.playback_count(),
        "peers": peers,
        "dht_nodes": dht_nodes,
        "connected": peers > 0 || dht_nodes > 0,
    })
}

/// `{"result": value, "error": null}`.
fn result(value: Value) -> Json<Value> {
    Json(json!({ "result": value, "error": null }))
}

fn infohash(p: &Params) -> Result<InfoHash, ApiError> {
    let raw = p
        .get("infohash")
        .or_else(|| p.get("content_id"))
        .ok_or_else(|| ApiError::bad_request("missing parameter: infohash"))?;
    InfoHash::parse(raw).map_err(|e| ApiError::bad_request(format!("bad infohash: {e}")))
}

async fn media_files(state: &AppState, p: &Params) -> Result<Json<Value>, ApiError> {
    let ih = infohash(p)?;
    let s = state.session();
    // A `format=json` session answered at once: its ID may still be being looked for. Join
    // that lookup (never start one here).
    if s.get(&ih).is_none() && state.is_pending(&ih) {
        let found = tokio::time::timeout(
            METADATA_WAIT,
            s.resolve_id(ih, peercdn_engine::session::AddOptions::default()),
        )
        .await;
        if let Ok(peercdn_engine::session::Resolved::Live(h)) = found {
            let name = h.status().name.unwrap_or_default();
            return Ok(result(json!({ "0": name })));
        }
    }
    let h = s
        .get(&ih)
        .ok_or_else(|| ApiError::not_found(format!("no torrent {}", ih.to_hex())))?;
    // Clients ask right after `getstream`, often before the metadata came from peers: wait
    // for it a little, as they would otherwise name the stream `None`.
    let meta = match h.metainfo() {
        Some(m) => m,
        None => tokio::time::timeout(METADATA_WAIT, h.wait_ready())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::GATEWAY_TIMEOUT,
                    "the torrent's metadata has not arrived yet: ask again shortly",
                )
            })?,
    };
    let info = &meta.info;
    let mut files = serde_json::Map::new();
    for (i, f) in info.files.iter().enumerate() {
        let name = if f.path.is_empty() {
            info.name.clone()
        } else {
            f.path.join("/")
        };
        files.insert(i.to_string(), json!(name));
    }
    Ok(result(Value::Object(files)))
}

/// One search result in Ace's terms.
pub(crate) struct Entry {
    pub(crate) infohash: String,
    pub(crate) name: String,
    pub(crate) categories: Vec<String>,
    /// 0–1 (see the module docs).
    pub(crate) availability: f64,
    /// Unix seconds.
    pub(crate) updated: u64,
    /// Bytes per second (live).
    pub(crate) bitrate: Option<u64>,
    /// The catalogue record behind it, when there is one.
    pub(crate) record: Option<CatalogEntry>,
}

/// What this engine holds now, by content ID: a name, the share held (1 for a live stream
/// receiving pieces) and, for live streams, the bitrate measured.
fn held(state: &AppState) -> Vec<(InfoHash, String, f64, Option<u64>)> {
    let mut out = Vec::new();
    for h in state.session().list() {
        let st = h.status.borrow().clone();
        let Some(name) = st.name.clone().filter(|n| !n.is_empty()) else {
            continue;
        };
        out.push((h.info_hash, name, st.progress().clamp(0.0, 1.0), None));
    }
    for h in state.session().lives() {
        let st = h.status();
        let Some(name) = st.name.clone() else {
            continue;
        };
        let buffer = h.buffer();
        let bitrate = buffer.as_ref().and_then(|b| {
            let (pieces, bytes) = b.held();
            let ms = u64::from(b.descriptor().params.piece_duration_ms) * pieces as u64;
            (ms > 0).then(|| bytes * 1000 / ms)
        });
        let availability = if buffer.is_some() { 1.0 } else { 0.0 };
        out.push((h.content_id(), name, availability, bitrate));
    }
    out
}

/// The search both APIs answer: catalogue records ranked by the catalogue (one per content
/// ID, the best), then what this engine holds that no record describes, matched by name
/// (every word, any case; none when a category is asked for: such content has none).
pub(crate) fn find(state: &AppState, q: &SearchQuery, now: u64) -> Vec<Entry> {
    let held = held(state);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut all = q.clone();
    all.offset = 0;
    all.limit = catalog::MAX_CANDIDATES;
    for hit in state.session().catalog().search(&all, now).hits {
        let e = hit.entry;
        let r = &e.record;
        if !seen.insert(r.id) {
            continue;
        }
        let here = held.iter().find(|h| h.0 == r.id);
        let availability = match here {
            Some(h) => h.2,
            None if e.availability > 0 => 1.0,
            None => 0.0,
        };
        let bitrate = here
            .and_then(|h| h.3)
            .or((r.desc.bitrate > 0).then_some(r.desc.bitrate / 8));
        out.push(Entry {
            infohash: r.id.to_hex(),
            name: r.desc.title.clone(),
            categories: Some(r.desc.category.clone())
                .filter(|c| !c.is_empty())
                .into_iter()
                .collect(),
            availability,
            updated: if here.is_some() {
                now
            } else {
                e.availability_at.max(r.created)
            },
            bitrate,
            record: Some(e),
        });
    }
    let words: Vec<String> = q
        .text
        .split_whitespace()
        .take(MAX_QUERY_WORDS)
        .map(str::to_lowercase)
        .collect();
    let plain = q.category.is_none() && q.kind.is_none();
    let mut rest: Vec<Entry> = held
        .into_iter()
        .filter(|h| !seen.contains(&h.0) && plain)
        .filter(|h| words.iter().all(|w| h.1.to_lowercase().contains(w)))
        .map(|(id, name, availability, bitrate)| Entry {
            infohash: id.to_hex(),
            name,
            categories: Vec::new(),
            availability,
            updated: now,
            bitrate,
            record: None,
        })
        .collect();
    rest.sort_by(|a, b| {
        (a.name.to_lowercase(), &a.infohash).cmp(&(b.name.to_lowercase(), &b.infohash))
    });
    out.extend(rest);
    out
}

pub(crate) fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

async fn search(state: &AppState, p: &Params) -> Result<Json<Value>, ApiError> {
    let started = peercdn_engine::clock::now();
    let page = p.number::<usize>("page")?.unwrap_or(0);
    let page_size = p
        .number::<usize>("page_size")?
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    let now = peercdn_engine::clock::unix_secs();
    let q = SearchQuery {
        text: p.get("query").unwrap_or("").to_owned(),
        category: p
            .get("category")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        ..SearchQuery::default()
    };
    // The first page asks the peers too (the next pages of the same search read what came).
    if page == 0 {
        state.session().ask_peers(&q, ASK_BUDGET).await;
    }
    let found = find(state, &q, now);
    let show_epg = truthy(p.get("show_epg"));
    let item = |e: &Entry| {
        let mut v = json!({
            "infohash": e.infohash,
            "name": e.name,
            "categories": e.categories,
            "availability": e.availability,
            "availability_updated_at": e.updated,
            "status": if e.availability >= 1.0 { 2 } else { 1 },
        });
        if let (Some(b), Some(o)) = (e.bitrate, v.as_object_mut()) {
            o.insert("bitrate".into(), json!(b));
        }
        if let (true, Some(o)) = (show_epg, v.as_object_mut()) {
            o.insert("epg".into(), Value::Null);
        }
        if let (Some(c), Some(o)) = (&e.record, v.as_object_mut()) {
            let r = &c.record;
            o.insert("publisher".into(), json!(r.publisher_hex()));
            o.insert("kind".into(), json!(r.kind.as_str()));
            o.insert("language".into(), json!(r.desc.lang));
            o.insert("country".into(), json!(r.desc.country));
        }
        v
    };
    let (total, results): (usize, Vec<Value>) = if truthy(p.get("group_by_channels")) {
        let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
        for e in &found {
            match groups.last_mut() {
                Some((name, items)) if *name == e.name => items.push(item(e)),
                _ => groups.push((e.name.clone(), vec![item(e)])),
            }
        }
        let total = groups.len();
        let page_of = groups
            .into_iter()
            .skip(page.saturating_mul(page_size))
            .take(page_size)
            .map(|(name, items)| json!({ "name": name, "items": items }))
            .collect();
        (total, page_of)
    } else {
        let page_of = found
            .iter()
            .skip(page.saturating_mul(page_size))
            .take(page_size)
            .map(item)
            .collect();
        (found.len(), page_of)
    };
    Ok(result(json!({
        "results": results,
        "total": total,
        "time": started.elapsed().as_secs_f64(),
    })))
}
