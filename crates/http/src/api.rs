//! peercdn's own JSON API under `/api/v1/` (described by [`crate::openapi`]):
//!
//! - `GET /api/v1/torrents` → `{"torrents": [torrent…]}`
//! - `POST /api/v1/torrents` with JSON `{"magnet"|"id"|"url": "…", "peers": ["ip:port"…]}` or a
//!   raw `.torrent` body (`Content-Type: application/x-bittorrent`) → 201 and the torrent
//! - `GET /api/v1/torrents/{id}` → the torrent with its `files` (null until metadata is known)
//! - `POST /api/v1/torrents/{id}/pause`, `POST /api/v1/torrents/{id}/resume`
//! - `DELETE /api/v1/torrents/{id}?delete_data=true|false`
//! - `GET /api/v1/live` → `{"live": [stream…]}` (see [`crate::live::live_json`])
//! - `GET /api/v1/live/{id}` → the stream
//! - `GET /api/v1/dht` → the DHT node's figures ([`dht_json`]), or `{"enabled": false}`
//! - `GET /api/v1/search?query=&kind=&category=&lang=&offset=&limit=&local=&wait_ms=` →
//!   `{"total", "results": [result…], "peers_asked", "peers_answered"}`: first asks up to 20
//!   peers (`pc_search`, one hop; `wait_ms` budget, default 1000, at most 5000; none with
//!   `local=1`), then the catalogue's ranked records in full (with the signed record itself,
//!   hex, for anyone to verify again), then what this engine holds that no record describes
//! - `GET /api/v1/openapi.json`
//!
//! Errors use the same `{"response": null, "error": "…"}` envelope as the Ace routes.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use peercdn_core::InfoHash;
use peercdn_engine::dht::DhtStats;
use peercdn_engine::gossip::Asked;
use peercdn_engine::session::AddOptions;
use peercdn_engine::torrent::{Command, Source, State as TState, TorrentHandle};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::source::{self, Params};
use crate::state::AppState;
use crate::HttpConfig;

/// Smallest body limit for `POST /api/v1/torrents` (JSON requests are small; `.torrent` bodies
/// may reach `url_fetch_limit`).
const MIN_BODY_LIMIT: usize = 64 * 1024;

/// The `/api/v1/` routes.
pub fn routes(config: &HttpConfig) -> Router<AppState> {
    let limit = usize::try_from(config.url_fetch_limit)
        .unwrap_or(usize::MAX)
        .max(MIN_BODY_LIMIT);
    Router::new()
        .route(
            "/api/v1/torrents",
            get(list).post(add).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/api/v1/torrents/{id}", get(inspect).delete(remove))
        .route("/api/v1/torrents/{id}/pause", post(pause))
        .route("/api/v1/torrents/{id}/resume", post(resume))
        .route("/api/v1/torrents/{id}/limits", post(limits))
        .route("/api/v1/live", get(live_list))
        .route("/api/v1/live/{id}", get(live_inspect))
        .route("/api/v1/dht", get(dht))
        .route("/api/v1/node", get(node))
        .route("/api/v1/search", get(search))
        .route("/api/v1/channels", get(channels))
        .route(
            "/api/v1/channels/{publisher}",
            post(subscribe).delete(unsubscribe),
        )
        .route("/api/v1/openapi.json", get(openapi))
}

/// The DHT's JSON form: `{"enabled": true, "nodes", "bootstrapped", "port", "lookups",
/// "lookups_done", "peers_found", "announces", "announce_failures", "malformed"}` (`malformed`
/// is null: the DHT crate exposes no such counter), or `{"enabled": false}` without a DHT.
pub fn dht_json(stats: Option<&DhtStats>) -> Value {
    let Some(s) = stats else {
        return json!({ "enabled": false });
    };
    json!({
        "enabled": true,
        "nodes": s.nodes,
        "bootstrapped": s.bootstrapped,
        "port": s.port,
        "lookups": s.lookups,
        "lookups_done": s.lookups_done,
        "peers_found": s.peers_found,
        "announces": s.announces,
        "announce_failures": s.announce_failures,
        "malformed": s.malformed,
    })
}

/// A channel version's JSON form.
fn version_json(v: &peercdn_engine::channel::Version) -> Value {
    json!({
        "seq": v.seq,
        "info_hash": v.info_hash.map(|h| h.to_hex()),
        "records": v.records,
    })
}

/// `{"enabled": DHT on, "key": the node key, "own": {seq, info_hash, records, published} or
/// null, "subscriptions": [{publisher, seq, info_hash, records, checked, error}]}`.
async fn channels(State(state): State<AppState>) -> Json<Value> {
    let s = state.session();
    let r = s.channels();
    let own = r.own.map(|v| {
        let mut o = version_json(&v);
        o["published"] = json!(r.own_published);
        o
    });
    let subs: Vec<Value> = r
        .subscriptions
        .iter()
        .map(|sub| {
            let mut o = version_json(&sub.version);
            o["publisher"] = json!(hex::encode(sub.publisher));
            o["checked"] = json!(sub.checked);
            o["error"] = json!(sub.error);
            o
        })
        .collect();
    Json(json!({
        "enabled": s.dht().is_some(),
        "key": s.node_key_hex(),
        "own": own,
        "subscriptions": subs,
    }))
}

fn parse_publisher(s: &str) -> Result<[u8; 32], ApiError> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!("{s:?}: a publisher key is 64 hex characters"))
        })
}

async fn subscribe(
    State(state): State<AppState>,
    Path(publisher): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_publisher(&publisher)?;
    state
        .session()
        .subscribe(key)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!({ "subscribed": hex::encode(key) })))
}

async fn unsubscribe(
    State(state): State<AppState>,
    Path(publisher): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_publisher(&publisher)?;
    if !state.session().unsubscribe(&key).await {
        return Err(ApiError::not_found(format!(
            "not subscribed to {publisher}"
        )));
    }
    Ok(Json(json!({ "unsubscribed": hex::encode(key) })))
}

/// The node's reach: `{"listen", "port", "encryption", "utp": {"enabled", "preferred",
/// "connections"}, "reachable", "mapping": {"state": "off"|"searching"|"mapped"|"unmapped",
/// "external", "gateway", "reason"}, "incoming": {"tcp", "utp", "global"}}`.
async fn node(State(state): State<AppState>) -> Json<Value> {
    use peercdn_engine::nat::Reachability;
    let s = state.session();
    let reach = s.reach();
    let mapping = match &reach.mapping {
        None => json!({ "state": "off" }),
        Some(Reachability::Searching) => json!({ "state": "searching" }),
        Some(Reachability::Mapped {
            external,
            gateway,
            via,
        }) => json!({
            "state": "mapped", "external": external.to_string(), "gateway": gateway.to_string(),
            "via": via
        }),
        Some(Reachability::Unmapped(why)) => json!({ "state": "unmapped", "reason": why }),
    };
    Json(json!({
        "listen": s.listen_addr().to_string(),
        "port": s.listen_port(),
        "encryption": s.encryption().to_string(),
        "utp": {
            "enabled": s.utp().is_some(),
            "preferred": s.utp().is_some_and(|u| u.preferred()),
            "connections": s.utp().map_or(0, |u| u.connections()),
        },
        "reachable": reach.reachable(),
        "mapping": mapping,
        "incoming": {
            "tcp": reach.incoming_tcp,
            "utp": reach.incoming_utp,
            "global": reach.incoming_global,
        },
    }))
}

async fn dht(State(state): State<AppState>) -> Json<Value> {
    let stats = match state.session().dht() {
        Some(d) => Some(d.current_stats().await),
        None => None,
    };
    Json(dht_json(stats.as_ref()))
}

/// A torrent's JSON form (no file list).
pub fn torrent_json(h: &TorrentHandle) -> Value {
    let st = h.status.borrow().clone();
    let (error, error_kind) = match &st.state {
        TState::Error(e) => (Some(e.to_string()), Some(e.kind())),
        _ => (None, None),
    };
    json!({
        "id": h.info_hash.to_hex(),
        "name": st.name,
        "state": state_name(&st.state),
        "error": error,
        "error_kind": error_kind,
        "progress": st.progress(),
        "total_length": st.total_length,
        "have_bytes": st.have_bytes,
        "pieces_have": st.pieces_have,
        "pieces_total": st.pieces_total,
        "downloaded": st.downloaded,
        "uploaded": st.uploaded,
        "down_rate": st.down_rate,
        "up_rate": st.up_rate,
        "peers": st.peers,
        "peers_by_wire": wires_json(&st.wires),
        "hash_failures": st.hash_failures,
        "downloaded_p2p": st.p2p_downloaded,
        "downloaded_http": st.http_downloaded,
        "download_limit": h.limits[0].rate(),
        "upload_limit": h.limits[1].rate(),
        "webseeds": st.webseeds.iter().map(|w| json!({
            "url": w.url,
            "downloaded": w.downloaded,
            "errors": w.errors,
        })).collect::<Vec<_>>(),
        "peer_list": peer_list(&st.peer_list, |p| (p.down_rate + p.up_rate, json!({
            "addr": p.addr.to_string(),
            "client": p.client,
            "down_rate": p.down_rate,
            "up_rate": p.up_rate,
            "pieces": p.pieces,
            "progress": if st.pieces_total > 0 { f64::from(p.pieces) / f64::from(st.pieces_total) } else { 0.0 },
            "requests": p.in_flight,
            "am_choking": p.am_choking,
            "peer_choking": p.peer_choking,
            "am_interested": p.am_interested,
            "peer_interested": p.peer_interested,
            "downloaded": p.downloaded,
            "uploaded": p.uploaded,
            "transport": if p.utp { "utp" } else { "tcp" },
            "holepunched": p.holepunched,
            "reachable": p.reachable,
        }))),
    })
}

/// Most peers listed per torrent or stream (the busiest first).
pub const MAX_LISTED_PEERS: usize = 100;

/// The JSON list of `peers`, busiest first (`view` gives a peer's weight and its JSON), at
/// most [`MAX_LISTED_PEERS`].
pub fn peer_list<P>(peers: &[P], view: impl Fn(&P) -> (u64, Value)) -> Vec<Value> {
    let mut all: Vec<(u64, Value)> = peers.iter().map(view).collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.0));
    all.into_iter()
        .take(MAX_LISTED_PEERS)
        .map(|(_, v)| v)
        .collect()
}

/// The API name of a state.
pub fn state_name(s: &TState) -> &'static str {
    match s {
        TState::FetchingMetadata => "fetching_metadata",
        TState::Checking => "checking",
        TState::Downloading => "downloading",
        TState::Seeding => "seeding",
        TState::Paused => "paused",
        TState::Error(_) => "error",
    }
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    let mut hs = state.session().list();
    hs.sort_by_key(|h| h.info_hash);
    let list: Vec<Value> = hs.iter().map(torrent_json).collect();
    Json(json!({ "torrents": list }))
}

/// JSON body of `POST /api/v1/torrents`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct AddRequest {
    magnet: Option<String>,
    id: Option<String>,
    url: Option<String>,
    peers: Vec<String>,
}

async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (source, peers) = if ctype.starts_with("application/x-bittorrent") {
        let m = source::parse_torrent(&body)?;
        (Source::Metainfo(Box::new(m)), vec![])
    } else {
        let req: AddRequest = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "expected JSON {{\"magnet\"|\"id\"|\"url\": …}} or a .torrent body \
                 (Content-Type: application/x-bittorrent): {e}"
            ))
        })?;
        let wanted = if let Some(m) = req.magnet.as_deref() {
            source::parse_magnet(m)?
        } else if let Some(id) = req.id.as_deref() {
            source::parse_id(id)?
        } else if let Some(u) = req.url.as_deref() {
            source::refuse_nested_fetch(&headers)?;
            source::parse_url(u)?
        } else {
            return Err(ApiError::bad_request(
                "give one of \"magnet\", \"id\" or \"url\"",
            ));
        };
        let cfg = state.config();
        let r = source::resolve(
            state.client(),
            wanted,
            cfg.url_fetch_limit,
            cfg.url_fetch_timeout,
        )
        .await?;
        let mut peers = r.peers;
        peers.extend(source::parse_peers(req.peers.iter().map(String::as_str)));
        (r.source, peers)
    };
    let h = state.session().add(
        source,
        AddOptions {
            peers,
            ..Default::default()
        },
    );
    Ok((StatusCode::CREATED, Json(torrent_json(&h))).into_response())
}

fn parse_id(id: &str) -> Result<InfoHash, ApiError> {
    InfoHash::parse(id).map_err(|e| ApiError::bad_request(format!("bad torrent id: {e}")))
}

fn running(state: &AppState, id: &str) -> Result<TorrentHandle, ApiError> {
    let ih = parse_id(id)?;
    state
        .session()
        .get(&ih)
        .ok_or_else(|| ApiError::not_found(format!("no torrent {ih} is running")))
}

async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let h = running(&state, &id)?;
    let mut v = torrent_json(&h);
    let files = h.files().map(|fs| {
        fs.iter()
            .map(|f| {
                json!({
                    "index": f.index,
                    "path": f.path,
                    "length": f.length,
                    "offset": f.offset,
                })
            })
            .collect::<Vec<_>>()
    });
    if let Some(o) = v.as_object_mut() {
        o.insert("files".into(), json!(files));
        let magnet = h
            .metainfo()
            .map(|m| peercdn_core::magnet::Magnet::from_metainfo(&m).to_uri());
        o.insert("magnet".into(), json!(magnet));
    }
    Ok(Json(v))
}

async fn send(state: &AppState, id: &str, cmd: Command) -> Result<Json<Value>, ApiError> {
    let h = running(state, id)?;
    h.tx.send(cmd)
        .await
        .map_err(|_| ApiError::new(StatusCode::BAD_GATEWAY, "the torrent's task has ended"))?;
    Ok(Json(torrent_json(&h)))
}

/// JSON body of `POST /api/v1/torrents/{id}/limits`: bytes/s, 0 for none; a missing field
/// keeps its limit.
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct LimitsRequest {
    download_limit: Option<u64>,
    upload_limit: Option<u64>,
}

/// Sets the torrent's own rate limits while it runs (the node-wide ones still apply).
async fn limits(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: LimitsRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected JSON {{\"download_limit\": bytes/s, \"upload_limit\": bytes/s}} (0: none): {e}"
        ))
    })?;
    let h = running(&state, &id)?;
    if let Some(n) = req.download_limit {
        h.limits[0].set_rate(n);
    }
    if let Some(n) = req.upload_limit {
        h.limits[1].set_rate(n);
    }
    Ok(Json(torrent_json(&h)))
}

async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    send(&state, &id, Command::Pause).await
}

async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    send(&state, &id, Command::Resume).await
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let ih = parse_id(&id)?;
    let p = Params::parse(query.as_deref());
    let delete_data = match p.get("delete_data") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "delete_data={v:?}: expected true or false"
            )))
        }
    };
    if !state.session().remove_with(&ih, delete_data).await {
        return Err(ApiError::not_found(format!("no torrent {ih} is running")));
    }
    state.forget(&ih);
    Ok(Json(
        json!({ "removed": ih.to_hex(), "deleted_data": delete_data }),
    ))
}

async fn live_list(State(state): State<AppState>) -> Json<Value> {
    let mut hs = state.session().lives();
    hs.sort_by_key(|h| h.content_id());
    let list: Vec<Value> = hs.iter().map(crate::live::live_json).collect();
    Json(json!({ "live": list }))
}

async fn live_inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ih = parse_id(&id)?;
    let h = state
        .session()
        .get_live(&ih)
        .ok_or_else(|| ApiError::not_found(format!("no live stream {ih} is running")))?;
    Ok(Json(crate::live::live_json(&h)))
}

/// Most results `/api/v1/search` returns at once.
const MAX_SEARCH_LIMIT: usize = 200;

async fn search(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(query.as_deref());
    let kind = match p.get("kind").filter(|k| !k.is_empty()) {
        Some(k) => Some(
            peercdn_core::catalog::Kind::parse(k)
                .ok_or_else(|| ApiError::bad_request("kind must be vod or live"))?,
        ),
        None => None,
    };
    let opt = |k: &str| p.get(k).filter(|v| !v.is_empty()).map(str::to_owned);
    let q = peercdn_engine::catalog::SearchQuery {
        text: p.get("query").unwrap_or("").to_owned(),
        kind,
        category: opt("category"),
        lang: opt("lang"),
        ..Default::default()
    };
    let offset = p.number::<usize>("offset")?.unwrap_or(0);
    let limit = p
        .number::<usize>("limit")?
        .unwrap_or(20)
        .clamp(1, MAX_SEARCH_LIMIT);
    let local = crate::server_api::truthy(p.get("local"));
    let wait = p.number::<u64>("wait_ms")?.map_or(
        crate::server_api::ASK_BUDGET,
        std::time::Duration::from_millis,
    );
    if crate::server_api::truthy(p.get("stream")) {
        return Ok(search_stream(state, q, offset, limit, local, wait));
    }
    let asked = if local {
        Asked::default()
    } else {
        state.session().ask_peers(&q, wait).await
    };
    Ok(Json(search_json(&state, &q, offset, limit, asked)).into_response())
}

/// `stream=1`: newline-delimited JSON, one object per line in `/api/v1/search`'s shape plus
/// `phase`: `local` at once (the catalogue as it is), `peers` each time more peers have
/// answered (their records ranked in), `final` when the ask is over. A client that hangs up
/// ends the ask.
fn search_stream(
    state: AppState,
    q: peercdn_engine::catalog::SearchQuery,
    offset: usize,
    limit: usize,
    local: bool,
    wait: std::time::Duration,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let line = |phase: &str, asked: Asked| {
            let mut v = search_json(&state, &q, offset, limit, asked);
            v["phase"] = json!(phase);
            Ok(bytes::Bytes::from(format!("{v}\n")))
        };
        if tx.send(line("local", Asked::default())).await.is_err() || local {
            return;
        }
        let (progress, mut told) = tokio::sync::watch::channel(Asked::default());
        let session = state.session().clone();
        let ask = session.ask_peers_watching(&q, wait, &progress);
        tokio::pin!(ask);
        let mut answered = 0;
        let asked = loop {
            tokio::select! {
                a = &mut ask => break a,
                Ok(()) = told.changed() => {
                    let now = *told.borrow_and_update();
                    if now.answered > answered {
                        answered = now.answered;
                        if tx.send(line("peers", now)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        let _ = tx.send(line("final", asked)).await;
    });
    let mut resp = Response::new(axum::body::Body::from_stream(
        crate::stream::ChunkStream::new(rx),
    ));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// The search answer: `{total, results, peers_asked, peers_answered}`.
fn search_json(
    state: &AppState,
    q: &peercdn_engine::catalog::SearchQuery,
    offset: usize,
    limit: usize,
    asked: Asked,
) -> Value {
    let now = peercdn_engine::clock::unix_secs();
    let found = crate::server_api::find(state, q, now);
    let results: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| {
            let record = e.record.as_ref().map(|c| {
                let r = &c.record;
                json!({
                    "kind": r.kind.as_str(),
                    "title": r.desc.title,
                    "description": r.desc.description,
                    "tags": r.desc.tags,
                    "category": r.desc.category,
                    "lang": r.desc.lang,
                    "country": r.desc.country,
                    "size": r.desc.size,
                    "bitrate": r.desc.bitrate,
                    "files": r.desc.files,
                    "created": r.created,
                    "publisher": r.publisher_hex(),
                    "seq": r.seq,
                    "own": c.origin == peercdn_engine::catalog::Origin::Own,
                    "peers_seen": c.availability,
                    "signed": hex::encode(r.encode()),
                })
            });
            json!({
                "id": e.infohash,
                "name": e.name,
                "availability": e.availability,
                "updated": e.updated,
                "bitrate": e.bitrate,
                "record": record,
            })
        })
        .collect();
    json!({
        "total": found.len(),
        "results": results,
        "peers_asked": asked.peers,
        "peers_answered": asked.answered,
    })
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// Connections by how their bytes travel, for the status JSON.
pub(crate) fn wires_json(w: &peercdn_engine::peer::Wires) -> serde_json::Value {
    json!({
        "plain": w.plain,
        "obfuscated": w.obfuscated,
        "rc4": w.rc4,
        "utp": w.utp,
        "holepunched": w.holepunched,
    })
}
