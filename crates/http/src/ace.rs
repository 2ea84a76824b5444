//! Ace Stream engine compatible routes.
//!
//! - `GET|HEAD /ace/getstream?content_id=|id=|infohash=|url=|magnet=` (first present wins;
//!   `url=` is http(s), or `file://` for a local `.torrent`/`.peerlive` when the engine has no
//!   access token and the caller is not a page of another site;
//!   `file_index=N`; `pid=` tags the player): streams the file progressively, `Range` honoured.
//!   With `format=json` it answers at once with a playback session instead:
//!   `{"response": {"playback_url", "stat_url", "command_url", "infohash",
//!   "playback_session_id", "is_live", "is_encrypted", "client_session_id"}, "error": null}`.
//! - A live stream (a running or resolved live ID, or `url=` of a `.peerlive` descriptor) is
//!   streamed as progressive MPEG-TS (see [`crate::live`]); its `format=json` answer has
//!   `"is_live": 1` and a `"manifest_url"`.
//! - `/ace/manifest.m3u8` (same parameters): the HLS playlist of a live stream (see
//!   [`crate::hls`]) or of a torrent's MPEG-TS file (see [`crate::vod_hls`]; 400 for other
//!   containers); `format=json` answers like `getstream`, its `playback_url` the playlist.
//! - `pid=` tags the player (`sid=` too: clients send it to Ace engines before 3.1.29).
//! - `/ace/r/{infohash}/{session}`: the playback URL (streams like `getstream`).
//! - `/hls/manifest.m3u8`: the same as `/ace/manifest.m3u8` (the path some clients use).
//! - `/ace/event/{infohash}/{session}` (its URL in the answer when `use_api_events=1`): a 10 s
//!   long poll with no events yet, "unknown playback session id" once the session ended.
//! - `/ace/stat/{infohash}/{session}`: status, peers, speeds (KiB/s), bytes, progress (and
//!   `livepos`, `delay_ms`, bytes by origin for live).
//! - `/ace/cmd/{infohash}/{session}?method=stop`: ends the playback session (a live one's streams
//!   end too); the last one on a torrent or live stream that `getstream` started removes it (a
//!   torrent's data stays). `method=liveseek&pos=SECONDS` (live): the session's streams go on
//!   from the keyframe piece made at or before that Unix time (`livepos` gives the range).
//! - `/webui/api/service?method=get_version`: the Ace API level implemented
//!   ([`ACE_API_VERSION`]) in `version` and `code`, peercdn's own version in `peercdn_version`.
//!
//! Ace's conventions on every JSON answer of these routes ([`conventions`]): an error is a
//! `200` with the message in `error` (the status it would have had in `X-Peercdn-Status`),
//! and `format=jsonp&callback=NAME` (JSONP) wraps the answer in a call to `NAME`. Stream
//! answers (a player reads no JSON) keep their HTTP status.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use peercdn_core::InfoHash;
use peercdn_engine::live::LiveHandle;
use peercdn_engine::session::{AddOptions, LiveOptions, Resolved as Found};
use peercdn_engine::torrent::{State as TState, TorrentHandle};
use serde_json::json;

use crate::error::{ok_envelope, ApiError};
use crate::live::{self, LivePlayer, LiveSlot};
use crate::source::{self, Fetched, Params, Resolved, Wanted};
use crate::state::{AppState, Playback, Stopped};
use crate::{hls, stream, vod_hls};

/// Most bytes of a `pid` kept.
const MAX_PID_LEN: usize = 128;

/// The Ace engine release whose API level this engine reports (`get_version`). Clients
/// compare it: python-acestream and acestream-launcher send `pid=` instead of `sid=` from
/// 3.1.29 on, and acestream-launcher wants at least 3.1 for the HTTP API.
pub const ACE_API_VERSION: &str = "3.1.49";

/// Longest JSON answer [`conventions`] wraps for JSONP (the Ace answers are a few KiB).
const MAX_JSONP_BODY: usize = 1 << 20;

/// How long a `format=json` request for an ID nobody here holds waits for its lookup before
/// it is answered with a pending session ([`Target::Pending`]).
const AT_ONCE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Longest JSONP callback name.
const MAX_CALLBACK_LEN: usize = 64;

/// The Ace routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ace/getstream", get(getstream))
        .route("/ace/manifest.m3u8", get(manifest))
        // The path some clients use (and Ace engines answer) for the same playlists.
        .route("/hls/manifest.m3u8", get(manifest))
        .route("/ace/event/{infohash}/{session}", get(event))
        .route("/ace/r/{infohash}/{session}", get(playback))
        .route("/ace/stat/{infohash}/{session}", get(stat))
        .route("/ace/cmd/{infohash}/{session}", get(command))
        .route("/webui/api/service", get(service))
        .merge(crate::server_api::routes())
        .layer(axum::middleware::from_fn(conventions))
}

/// True when the caller asked for a JSON answer (`format=json`, or `format=jsonp`).
fn wants_json(p: &Params) -> bool {
    p.get("format")
        .is_some_and(|f| f.eq_ignore_ascii_case("json") || f.eq_ignore_ascii_case("jsonp"))
}

/// A JSONP callback name: a JavaScript identifier path (`cb`, `jQuery123_456`, `a.b`), so
/// nothing else can be injected into the page that loads it.
fn valid_callback(name: &str) -> bool {
    let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || c == '$';
    !name.is_empty()
        && name.len() <= MAX_CALLBACK_LEN
        && name.split('.').all(|part| {
            part.chars().next().is_some_and(first_ok)
                && part.chars().all(|c| first_ok(c) || c.is_ascii_digit())
        })
}

/// An error answer the Ace way: `200`, the status it would have had in `X-Peercdn-Status`.
fn errors_as_ok(res: &mut Response) {
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        res.headers_mut()
            .insert("x-peercdn-status", HeaderValue::from(status.as_u16()));
        *res.status_mut() = StatusCode::OK;
    }
}

/// Ace's conventions on the JSON answers of its routes: errors as `200` with the message in
/// `error` — urllib-based clients otherwise show "HTTP Error 400" instead of the message — and
/// JSONP. Answers that are not JSON (streams, playlists, plain-text errors of stream routes)
/// pass untouched.
pub async fn conventions(RawQuery(query): RawQuery, req: Request, next: Next) -> Response {
    let p = Params::parse(query.as_deref());
    let jsonp = p
        .get("format")
        .is_some_and(|f| f.eq_ignore_ascii_case("jsonp"));
    let callback = p.get("callback").map(str::to_owned);
    let mut res = next.run(req).await;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return res;
    }
    errors_as_ok(&mut res);
    if !jsonp {
        return res;
    }
    let ace_error = |e: ApiError| {
        let mut res = e.into_response();
        errors_as_ok(&mut res);
        res
    };
    let Some(cb) = callback.filter(|c| valid_callback(c)) else {
        return ace_error(ApiError::bad_request(
            "format=jsonp needs callback=NAME (letters, digits, _, $ and dots)",
        ));
    };
    let (mut parts, body) = res.into_parts();
    let Ok(json) = axum::body::to_bytes(body, MAX_JSONP_BODY).await else {
        return ace_error(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "answer too large for JSONP",
        ));
    };
    let mut wrapped = Vec::with_capacity(cb.len() + json.len() + 3);
    wrapped.extend_from_slice(cb.as_bytes());
    wrapped.push(b'(');
    wrapped.extend_from_slice(&json);
    wrapped.extend_from_slice(b");");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(wrapped))
}

async fn getstream(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::parse(query.as_deref());
    let json = wants_json(&p);
    match getstream_inner(&state, &method, &headers, &p, json).await {
        Ok(r) => r,
        Err(e) => e.plain_if(!json).into_response(),
    }
}

async fn getstream_inner(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    p: &Params,
    json: bool,
) -> Result<Response, ApiError> {
    let file_index = p.number::<usize>("file_index")?;
    match resolve_target(state, headers, p, json).await? {
        Target::Pending { id: ih, answer } => {
            let session_id = state.start_playback(Playback {
                info_hash: ih,
                file_index,
                pid: pid(p),
                live: None,
                pending: true,
            });
            drop(answer);
            Ok(envelope(state, headers, p, ih, &session_id, None).into_response())
        }
        Target::Vod { h, new } => {
            if !json {
                return stream_file(state, &h, file_index, headers, method).await;
            }
            if new {
                state.mark_owned(h.info_hash);
            }
            let session_id = vod_playback(state, p, &h, file_index);
            Ok(envelope(state, headers, p, h.info_hash, &session_id, None).into_response())
        }
        Target::Live { h, new } => {
            if json {
                return Ok(live_envelope(state, headers, p, &h, new, false).into_response());
            }
            live::respond(
                &h,
                None,
                *method == Method::HEAD,
                live::start_timeout(state),
            )
            .await
        }
    }
}

/// What a `getstream`/`manifest` request names, running.
pub(crate) enum Target {
    /// A torrent; `new` when this request started it.
    Vod { h: TorrentHandle, new: bool },
    /// A live stream; `new` when this request started it.
    Live { h: LiveHandle, new: bool },
    /// A bare ID nobody here holds, being looked for in the background (asked with
    /// `at_once`): live or VoD is not known yet. Drop `answer` once the pending playback
    /// session is made: the lookup, finding nobody waits for its answer, keeps what it found
    /// only while such a session remains.
    Pending {
        id: InfoHash,
        answer: tokio::sync::oneshot::Receiver<Found>,
    },
}

/// The error for an ID no peer answered for within the engine's resolve timeout (the engine
/// goes on looking: a later request may find it).
fn still_looking(id: InfoHash) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "no peer has answered for {} yet; still looking for it: try again shortly",
            id.to_hex()
        ),
    )
}

/// A place among the IDs looked for at once, or the Ace error that says there is none.
async fn claim(state: &AppState, id: InfoHash) -> Result<crate::state::ResolveClaim, ApiError> {
    state.claim_new_id(id).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many IDs are being looked for at once ({}): try again once some are found",
                crate::state::MAX_UNRESOLVED
            ),
        )
    })
}

/// Whether this request may name a local file (`url=file://…`): only an engine without an
/// access token (so listening on loopback only) and only from this machine's own tools and
/// pages — a page on another site ([`crate::guard::cross_site`]) may not make the engine read
/// local files.
fn local_files_allowed(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.config().access_token.is_some() {
        return Err(ApiError::bad_request(
            "url=file:// is refused by an engine with an access token (it may serve other \
             machines): pass the file's contents to POST /api/v1/torrents instead",
        ));
    }
    if crate::guard::cross_site(headers) {
        return Err(ApiError::bad_request(
            "url=file:// is refused from a web page of another site",
        ));
    }
    Ok(())
}

/// Finds or starts what the request names: a bare ID goes through the session's
/// `resolve_id` (so a live ID works), a `url=` may serve a `.torrent` or a `.peerlive`.
/// `at_once`: a bare ID nobody here holds is looked for in the background and answered as
/// [`Target::Pending`] (finding out whether it is live can take the whole resolve timeout,
/// and Ace clients asking for `format=json` give up long before).
pub(crate) async fn resolve_target(
    state: &AppState,
    headers: &HeaderMap,
    p: &Params,
    at_once: bool,
) -> Result<Target, ApiError> {
    if p.get("url").is_some() {
        source::refuse_nested_fetch(headers)?;
    }
    if let Some(path) = p.get("url").and_then(source::file_url) {
        local_files_allowed(state, headers)?;
        let fetched = source::read_local(&path, state.config().url_fetch_limit).await?;
        return Ok(from_fetched(state, fetched, None));
    }
    let s = state.session();
    let wanted = source::wanted_from_params(p)?;
    let id = match &wanted {
        Wanted::Id(ih) => Some(*ih),
        Wanted::Magnet(m) => Some(m.info_hash),
        Wanted::Url(_) => None,
    };
    if let Some(h) = id.and_then(|ih| s.get_live(&ih)) {
        return Ok(Target::Live { h, new: false });
    }
    let cfg = state.config();
    match wanted {
        Wanted::Id(ih) if at_once && s.get(&ih).is_none() => {
            let claim = claim(state, ih).await?;
            let (s, st) = (s.clone(), state.clone());
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                // The place among the IDs looked for is held until the answer.
                let _claim = claim;
                let found = s.resolve_id(ih, AddOptions::default()).await;
                let id = match &found {
                    Found::Vod(h) => h.info_hash,
                    Found::Live(h) => h.content_id(),
                    // Still looked for in the engine; nothing is held here yet.
                    Found::Pending => {
                        let _ = tx.send(found);
                        return;
                    }
                };
                st.mark_owned(id);
                // Answered as pending: if every session for it was stopped meanwhile, what
                // the lookup started goes (nothing would ever stop it).
                if tx.send(found).is_err() && !st.has_playback(&id) {
                    st.forget(&id);
                    if !s.remove_live(&id).await {
                        s.remove_with(&id, false).await;
                    }
                }
            });
            // An ID whose peers answer soon is answered as what it is (a live stream's answer
            // carries its manifest URL); one that takes longer, as pending.
            let mut rx = rx;
            Ok(match tokio::time::timeout(AT_ONCE_WAIT, &mut rx).await {
                Ok(Ok(Found::Vod(h))) => Target::Vod { h, new: true },
                Ok(Ok(Found::Live(h))) => Target::Live { h, new: true },
                _ => Target::Pending { id: ih, answer: rx },
            })
        }
        Wanted::Id(ih) => {
            let new = s.get(&ih).is_none();
            let _claim = if new {
                Some(claim(state, ih).await?)
            } else {
                None
            };
            Ok(match s.resolve_id(ih, AddOptions::default()).await {
                Found::Vod(h) => {
                    if new {
                        state.mark_owned(h.info_hash);
                    }
                    Target::Vod { h, new }
                }
                Found::Live(h) => Target::Live { h, new },
                Found::Pending => return Err(still_looking(ih)),
            })
        }
        Wanted::Magnet(ref m) => {
            let new = s.get(&m.info_hash).is_none();
            let _claim = if new {
                Some(claim(state, m.info_hash).await?)
            } else {
                None
            };
            let r = source::resolve(
                state.client(),
                wanted,
                cfg.url_fetch_limit,
                cfg.url_fetch_timeout,
            )
            .await?;
            let (h, new) = add(state, r);
            if new {
                state.mark_owned(h.info_hash);
            }
            Ok(Target::Vod { h, new })
        }
        Wanted::Url(u) => {
            let fetched = source::fetch_url(
                state.client(),
                u.clone(),
                cfg.url_fetch_limit,
                cfg.url_fetch_timeout,
            )
            .await?;
            Ok(from_fetched(state, fetched, Some(&u)))
        }
    }
}

/// Starts what a URL or a local file held; `url` (http(s)) names the CDN of a descriptor
/// found in a publish directory.
pub(crate) fn from_fetched(state: &AppState, fetched: Fetched, url: Option<&url::Url>) -> Target {
    let s = state.session();
    match fetched {
        Fetched::Torrent(m) => {
            let (h, new) = add(
                state,
                Resolved {
                    source: peercdn_engine::torrent::Source::Metainfo(m),
                    peers: vec![],
                },
            );
            Target::Vod { h, new }
        }
        Fetched::Live(d) => {
            let id = d.content_id();
            let new = s.get_live(&id).is_none();
            let cdn = url
                .and_then(|u| source::cdn_base(u, &id))
                .into_iter()
                .collect();
            let h = s.add_live(
                *d,
                LiveOptions {
                    cdn,
                    ..Default::default()
                },
            );
            Target::Live { h, new }
        }
    }
}

/// The `pid` parameter, bounded.
fn pid(p: &Params) -> Option<String> {
    // `sid=` is what clients send to Ace engines older than 3.1.29.
    p.get("pid")
        .or_else(|| p.get("sid"))
        .map(|s| s.chars().take(MAX_PID_LEN).collect::<String>())
}

/// Starts a live playback session and answers its envelope (with `manifest_url`; `playlist`:
/// its `playback_url` is that playlist, for a session asked of the manifest).
fn live_envelope(
    state: &AppState,
    headers: &HeaderMap,
    p: &Params,
    h: &LiveHandle,
    new: bool,
    playlist: bool,
) -> Json<serde_json::Value> {
    let ih = h.content_id();
    if new {
        state.mark_owned(ih);
    }
    let pid = pid(p);
    let session_id = state.start_playback(Playback {
        info_hash: ih,
        file_index: None,
        pid: pid.clone(),
        live: Some(LiveSlot(LivePlayer::new())),
        pending: false,
    });
    let mut q = vec![("id", ih.to_hex())];
    q.extend(pid.map(|v| ("pid", v)));
    let manifest = format!(
        "{}/ace/manifest.m3u8{}",
        base_url(state, headers),
        query(state, &q)
    );
    let mut env = envelope(state, headers, p, ih, &session_id, Some(manifest.clone()));
    if playlist {
        env.0["response"]["playback_url"] = json!(manifest);
    }
    env
}

/// The `format=json` answer of a playback session; `manifest` set for live.
fn envelope(
    state: &AppState,
    headers: &HeaderMap,
    p: &Params,
    ih: InfoHash,
    session_id: &str,
    manifest: Option<String>,
) -> Json<serde_json::Value> {
    let base = base_url(state, headers);
    let tok = token_suffix(state);
    let ih = ih.to_hex();
    let mut body = json!({
        "playback_url": format!("{base}/ace/r/{ih}/{session_id}{tok}"),
        "stat_url": format!("{base}/ace/stat/{ih}/{session_id}{tok}"),
        "command_url": format!("{base}/ace/cmd/{ih}/{session_id}{tok}"),
        "infohash": ih,
        "playback_session_id": session_id,
        "is_live": u8::from(manifest.is_some()),
        "is_encrypted": 0,
        "client_session_id": -1,
    });
    if let (Some(m), Some(o)) = (manifest, body.as_object_mut()) {
        o.insert("manifest_url".into(), json!(m));
    }
    if p.get("use_api_events") == Some("1") {
        body["event_url"] = json!(format!("{base}/ace/event/{ih}/{session_id}{tok}"));
    }
    ok_envelope(body)
}

async fn manifest(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::parse(query.as_deref());
    let json = wants_json(&p);
    match manifest_inner(&state, &headers, &p, json).await {
        Ok(r) => r,
        Err(e) => e.plain_if(!json).into_response(),
    }
}

async fn manifest_inner(
    state: &AppState,
    headers: &HeaderMap,
    p: &Params,
    json: bool,
) -> Result<Response, ApiError> {
    let (h, new) = match resolve_target(state, headers, p, false).await? {
        Target::Live { h, new } => (h, new),
        Target::Pending { .. } => {
            return Err(ApiError::bad_request("this ID is still being looked for"));
        }
        Target::Vod { h, new } => return vod_manifest(state, headers, p, json, h, new).await,
    };
    if json {
        // Asked of the manifest, the session plays the playlist (HLS clients open
        // playback_url), not the progressive MPEG-TS.
        return Ok(live_envelope(state, headers, p, &h, new, true).into_response());
    }
    let client = hls::client_key(p);
    let mut q = vec![];
    if !client.is_empty() {
        q.push(("pid", client.clone()));
    }
    let seg_base = format!(
        "{}/ace/l/{}/",
        base_url(state, headers),
        h.content_id().to_hex()
    );
    let suffix = query(state, &q);
    hls::manifest(state, &h, &client, p, &seg_base, &suffix).await
}

/// Starts a VoD playback session of file `file_index` of `h` for this request's player
/// (`pid`); returns its ID.
fn vod_playback(
    state: &AppState,
    p: &Params,
    h: &TorrentHandle,
    file_index: Option<usize>,
) -> String {
    state.start_playback(Playback {
        info_hash: h.info_hash,
        file_index,
        pid: pid(p),
        live: None,
        pending: false,
    })
}

/// The HLS playlist of a torrent's MPEG-TS file ([`vod_hls`]), or with `json` a playback
/// session whose `playback_url` is that playlist. A torrent this request started goes again
/// when its file cannot be segmented.
async fn vod_manifest(
    state: &AppState,
    headers: &HeaderMap,
    p: &Params,
    json: bool,
    h: TorrentHandle,
    new: bool,
) -> Result<Response, ApiError> {
    let file_index = p.number::<usize>("file_index")?;
    if new {
        state.mark_owned(h.info_hash);
    }
    if json {
        let session_id = vod_playback(state, p, &h, file_index);
        let mut q = vec![("infohash", h.info_hash.to_hex())];
        if let Some(i) = file_index {
            q.push(("file_index", i.to_string()));
        }
        let playlist = format!(
            "{}/ace/manifest.m3u8{}",
            base_url(state, headers),
            query(state, &q)
        );
        let mut env = envelope(state, headers, p, h.info_hash, &session_id, None);
        env.0["response"]["playback_url"] = json!(playlist);
        return Ok(env.into_response());
    }
    let r = async {
        let files = stream::wait_files(&h, state.config().metadata_timeout).await?;
        let file = vod_hls::pick_file(&files, file_index)?;
        let seg_base = format!(
            "{}/ace/v/{}/{}/",
            base_url(state, headers),
            h.info_hash.to_hex(),
            file.index
        );
        let suffix = token_suffix(state);
        vod_hls::manifest(state, &h, file, |n| format!("{seg_base}{n}.ts{suffix}")).await
    };
    let r = r.await;
    if r.is_err() && new {
        state.forget(&h.info_hash);
        state.session().remove_with(&h.info_hash, false).await;
    }
    r
}

/// Adds the torrent (or finds the running one); true when it was not running before.
fn add(state: &AppState, r: Resolved) -> (TorrentHandle, bool) {
    let s = state.session();
    let new = s.get(&r.source.info_hash()).is_none();
    let h = s.add(
        r.source,
        AddOptions {
            peers: r.peers,
            ..Default::default()
        },
    );
    (h, new)
}

async fn stream_file(
    state: &AppState,
    h: &TorrentHandle,
    file_index: Option<usize>,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Response, ApiError> {
    let files = stream::wait_files(h, state.config().metadata_timeout).await?;
    let file = stream::pick_file(&files, file_index)?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    stream::respond(h, &file, range, *method == Method::HEAD).await
}

fn parse_path_id(ih: &str) -> Result<InfoHash, ApiError> {
    InfoHash::parse(ih).map_err(|e| ApiError::bad_request(format!("bad infohash: {e}")))
}

fn lookup(
    state: &AppState,
    ih: &str,
    session: &str,
) -> Result<(Playback, TorrentHandle), ApiError> {
    let ih = parse_path_id(ih)?;
    let pb = state
        .playback(&ih, session)
        .ok_or_else(|| ApiError::not_found("unknown playback session"))?;
    let h = state.session().get(&ih).ok_or_else(|| {
        ApiError::not_found("the torrent of this playback session is not running")
    })?;
    Ok((pb, h))
}

/// The live stream and player of a live playback session, None for a VoD one.
fn lookup_live(
    state: &AppState,
    ih: &str,
    session: &str,
) -> Result<Option<(LiveSlot, LiveHandle)>, ApiError> {
    let ih = parse_path_id(ih)?;
    let pb = state
        .playback(&ih, session)
        .ok_or_else(|| ApiError::not_found("unknown playback session"))?;
    let Some(slot) = pb.live else {
        return Ok(None);
    };
    let h = state.session().get_live(&ih).ok_or_else(|| {
        ApiError::not_found("the live stream of this playback session is not running")
    })?;
    Ok(Some((slot, h)))
}

async fn playback(
    State(state): State<AppState>,
    Path((ih, session)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let r = async {
        settle_pending(&state, &ih, &session, true).await?;
        if let Some((slot, h)) = lookup_live(&state, &ih, &session)? {
            let head = method == Method::HEAD;
            return live::respond(&h, Some(slot.0), head, live::start_timeout(&state)).await;
        }
        let (pb, h) = lookup(&state, &ih, &session)?;
        stream_file(&state, &h, pb.file_index, &headers, &method).await
    };
    match r.await {
        Ok(r) => r,
        Err(e) => e.plain_if(true).into_response(),
    }
}

/// A playback session started while its ID was being looked for learns what it plays: at
/// once when the answer is in, else — `wait` — once it is (the playback URL: a player waits
/// for its stream). `Ok(false)`: still pending (not waiting).
async fn settle_pending(
    state: &AppState,
    ih: &str,
    session: &str,
    wait: bool,
) -> Result<bool, ApiError> {
    let ih = parse_path_id(ih)?;
    if !state.playback(&ih, session).is_some_and(|pb| pb.pending) {
        return Ok(true);
    }
    let s = state.session();
    let live = if s.get_live(&ih).is_some() {
        true
    } else if s.get(&ih).is_some() {
        false
    } else if wait {
        // Joins the lookup under way (`resolve_id` waits for another request's answer).
        match s.resolve_id(ih, AddOptions::default()).await {
            Found::Live(_) => true,
            Found::Vod(_) => false,
            Found::Pending => return Err(still_looking(ih)),
        }
    } else {
        return Ok(false);
    };
    state.settle(&ih, session, live.then(|| LiveSlot(LivePlayer::new())));
    Ok(true)
}

/// Longest an event URL request waits for an event.
const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The event URL of a playback session (`use_api_events=1`): a long poll that answers an
/// empty list of events after [`EVENT_WAIT`] while the session lives, and Ace's
/// "unknown playback session id" once it is gone (clients poll it until then). No events are
/// sent yet (Ace's are ads and player notifications).
async fn event(
    State(state): State<AppState>,
    Path((ih, session)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ih = parse_path_id(&ih)?;
    let deadline = peercdn_engine::clock::tokio_now() + EVENT_WAIT;
    loop {
        if state.playback(&ih, &session).is_none() {
            return Err(ApiError::not_found("unknown playback session id"));
        }
        if peercdn_engine::clock::tokio_now() >= deadline {
            return Ok(ok_envelope(json!([])));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn stat(
    State(state): State<AppState>,
    Path((ih, session)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !settle_pending(&state, &ih, &session, false).await? {
        return Ok(ok_envelope(json!({
            "status": "prebuf",
            "peers": 0,
            "speed_down": 0,
            "speed_up": 0,
            "downloaded": 0,
            "uploaded": 0,
            "total_progress": 0,
            "progress": 0,
            "is_live": 0,
            "playback_session_id": session,
        })));
    }
    if let Some((slot, h)) = lookup_live(&state, &ih, &session)? {
        return Ok(ok_envelope(live::stat_json(&h, Some(&slot.0), &session)));
    }
    let (_, h) = lookup(&state, &ih, &session)?;
    let st = h.status.borrow().clone();
    let status = match st.state {
        TState::FetchingMetadata => "prebuf",
        TState::Checking => "check",
        TState::Downloading | TState::Seeding => "dl",
        TState::Paused => "paused",
        TState::Error(_) => "error",
    };
    let percent = (h.shared.progress().unwrap_or_else(|| st.progress()) * 100.0)
        .floor()
        .clamp(0.0, 100.0) as u64;
    let mut body = json!({
        "status": status,
        "peers": st.peers,
        "speed_down": st.down_rate / 1024,
        "speed_up": st.up_rate / 1024,
        "downloaded": st.downloaded,
        "downloaded_p2p": st.p2p_downloaded,
        "downloaded_http": st.http_downloaded,
        "uploaded": st.uploaded,
        "total_progress": percent,
        // Ace reports its prebuffering here while `prebuf`; this engine streams at once, so it
        // is the share of the content held, as clients that read it expect to see it grow.
        "progress": percent,
        "is_live": 0,
        "playback_session_id": session,
    });
    if let (TState::Error(e), Some(o)) = (&st.state, body.as_object_mut()) {
        o.insert("error_message".into(), json!(e.to_string()));
    }
    Ok(ok_envelope(body))
}

async fn command(
    State(state): State<AppState>,
    Path((ih, session)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = Params::parse(query.as_deref());
    let ih = parse_path_id(&ih)?;
    match p.get("method") {
        Some("stop") => {}
        Some("liveseek") => {
            let pos: u64 = p
                .number("pos")?
                .ok_or_else(|| ApiError::bad_request("liveseek needs pos= (Unix seconds)"))?;
            let pb = state
                .playback(&ih, &session)
                .ok_or_else(|| ApiError::not_found("unknown playback session"))?;
            let LiveSlot(player) = pb
                .live
                .ok_or_else(|| ApiError::bad_request("liveseek is for live streams"))?;
            player.seek_to(pos.saturating_mul(1_000_000));
            return Ok(ok_envelope(json!("ok")));
        }
        Some(m) => return Err(ApiError::bad_request(format!("unknown method {m:?}"))),
        None => return Err(ApiError::bad_request("missing parameter: method")),
    }
    if let Some(LiveSlot(player)) = state.playback(&ih, &session).and_then(|pb| pb.live) {
        player.stop();
    }
    match state.stop_playback(&ih, &session) {
        Stopped::Unknown => return Err(ApiError::not_found("unknown playback session")),
        Stopped::Ended { last: true } => {
            let s = state.session();
            if !s.remove_live(&ih).await {
                s.remove_with(&ih, false).await;
            }
        }
        Stopped::Ended { last: false } => {}
    }
    Ok(ok_envelope(json!("ok")))
}

/// An Ace version's numeric code as Ace engines report it: major·1 000 000 + minor·10 000 +
/// patch·100 (3.1.49 → 3014900).
pub fn version_code(version: &str) -> u64 {
    let mut n = version.split('.').map(|s| s.parse::<u64>().unwrap_or(0));
    let mut next = || n.next().unwrap_or(0);
    next() * 1_000_000 + next() * 10_000 + next() * 100
}

/// What `get_version` answers (and `/server/api`'s `get_status` in its `version`): the Ace API
/// level implemented and peercdn's own version.
pub(crate) fn version_json() -> serde_json::Value {
    json!({
        "code": version_code(ACE_API_VERSION),
        "platform": "linux",
        "version": ACE_API_VERSION,
        "peercdn_version": env!("CARGO_PKG_VERSION"),
    })
}

async fn service(RawQuery(query): RawQuery) -> Result<Json<serde_json::Value>, ApiError> {
    let p = Params::parse(query.as_deref());
    match p.get("method") {
        Some("get_version") => Ok(Json(json!({ "result": version_json(), "error": null }))),
        Some(m) => Err(ApiError::bad_request(format!("unknown method {m:?}"))),
        None => Err(ApiError::bad_request("missing parameter: method")),
    }
}

/// `http://HOST` from the request's `Host` header when it looks like a host, else the bind
/// address.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| valid_host(h));
    match host {
        Some(h) => format!("http://{h}"),
        None => format!("http://{}", state.config().bind),
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// `?k=v&…` with the access token appended when one is set; empty when there is nothing.
fn query(state: &AppState, pairs: &[(&str, String)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    if let Some(t) = state
        .config()
        .access_token
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        q.append_pair("token", t);
    }
    let q = q.finish();
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

pub(crate) fn token_suffix(state: &AppState) -> String {
    match state.config().access_token.as_deref() {
        Some(t) if !t.is_empty() => {
            let enc: String = url::form_urlencoded::byte_serialize(t.as_bytes()).collect();
            format!("?token={enc}")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(valid_host("127.0.0.1:6878"));
        assert!(valid_host("[::1]:6878"));
        assert!(valid_host("example.org"));
        assert!(!valid_host("evil/\"<x>"));
        assert!(!valid_host(""));
    }

    /// Codes as Ace engines report them (`3.1.49` → 3014900), so clients comparing codes see
    /// the API level, not peercdn's own 0.x.
    #[test]
    fn version_codes_follow_ace() {
        assert_eq!(version_code("3.1.49"), 3_014_900);
        assert_eq!(version_code("3.1.29"), 3_012_900);
        assert!(version_code(ACE_API_VERSION) >= version_code("3.1.29"));
    }

    /// Only identifier paths pass as JSONP callbacks: anything else could inject script into
    /// the page that loads the answer.
    #[test]
    fn jsonp_callbacks() {
        for ok in ["cb", "jQuery3_1", "$x", "a.b.c", "_"] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "a..b",
            "a(",
            "alert(1);x",
            "a b",
            "a-b",
            &"x".repeat(65),
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }
}
