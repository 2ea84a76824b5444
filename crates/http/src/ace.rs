//! Ace Stream engine compatible routes.
//!
//! - `GET|HEAD /ace/getstream?content_id=|id=|infohash=|url=|magnet=` (first present wins;
//!   `file_index=N`; `pid=` tags the player): streams the file progressively, `Range` honoured.
//!   With `format=json` it answers at once with a playback session instead:
//!   `{"response": {"playback_url", "stat_url", "command_url", "infohash",
//!   "playback_session_id", "is_live", "is_encrypted", "client_session_id"}, "error": null}`.
//! - `/ace/r/{infohash}/{session}`: the playback URL (streams like `getstream`).
//! - `/ace/stat/{infohash}/{session}`: status, peers, speeds (KiB/s), bytes, progress.
//! - `/ace/cmd/{infohash}/{session}?method=stop`: ends the playback session; the last one on a
//!   torrent that `getstream` started removes the torrent (its data stays).
//! - `/webui/api/service?method=get_version`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use peercdn_core::InfoHash;
use peercdn_engine::session::AddOptions;
use peercdn_engine::torrent::{State as TState, TorrentHandle};
use serde_json::json;

use crate::error::{ok_envelope, ApiError};
use crate::source::{self, Params, Resolved};
use crate::state::{AppState, Playback, Stopped};
use crate::stream;

/// Most bytes of a `pid` kept.
const MAX_PID_LEN: usize = 128;

/// The Ace routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ace/getstream", get(getstream))
        .route("/ace/r/{infohash}/{session}", get(playback))
        .route("/ace/stat/{infohash}/{session}", get(stat))
        .route("/ace/cmd/{infohash}/{session}", get(command))
        .route("/webui/api/service", get(service))
}

async fn getstream(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::parse(query.as_deref());
    let json = p
        .get("format")
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
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
    let wanted = source::wanted_from_params(p)?;
    let file_index = p.number::<usize>("file_index")?;
    let cfg = state.config();
    let resolved = source::resolve(
        state.client(),
        wanted,
        cfg.url_fetch_limit,
        cfg.url_fetch_timeout,
    )
    .await?;
    let (h, new) = add(state, resolved);
    if json {
        if new {
            state.mark_owned(h.info_hash);
        }
        let pid = p
            .get("pid")
            .map(|s| s.chars().take(MAX_PID_LEN).collect::<String>());
        let session_id = state.start_playback(Playback {
            info_hash: h.info_hash,
            file_index,
            pid,
        });
        let base = base_url(state, headers);
        let ih = h.info_hash.to_hex();
        let tok = token_suffix(state);
        let body = ok_envelope(json!({
            "playback_url": format!("{base}/ace/r/{ih}/{session_id}{tok}"),
            "stat_url": format!("{base}/ace/stat/{ih}/{session_id}{tok}"),
            "command_url": format!("{base}/ace/cmd/{ih}/{session_id}{tok}"),
            "infohash": ih,
            "playback_session_id": session_id,
            "is_live": 0,
            "is_encrypted": 0,
            "client_session_id": -1,
        }));
        return Ok(body.into_response());
    }
    stream_file(state, &h, file_index, headers, method).await
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

async fn playback(
    State(state): State<AppState>,
    Path((ih, session)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let (pb, h) = lookup(&state, &ih, &session)?;
        stream_file(&state, &h, pb.file_index, &headers, &method).await
    };
    match r.await {
        Ok(r) => r,
        Err(e) => e.plain_if(true).into_response(),
    }
}

async fn stat(
    State(state): State<AppState>,
    Path((ih, session)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, h) = lookup(&state, &ih, &session)?;
    let st = h.status.borrow().clone();
    let status = match st.state {
        TState::FetchingMetadata => "prebuf",
        TState::Checking => "check",
        TState::Downloading | TState::Seeding => "dl",
        TState::Paused => "paused",
        TState::Error(_) => "error",
    };
    let mut body = json!({
        "status": status,
        "peers": st.peers,
        "speed_down": st.down_rate / 1024,
        "speed_up": st.up_rate / 1024,
        "downloaded": st.downloaded,
        "downloaded_p2p": st.p2p_downloaded,
        "downloaded_http": st.http_downloaded,
        "uploaded": st.uploaded,
        "total_progress": (st.progress() * 100.0).floor().clamp(0.0, 100.0) as u64,
        "is_live": 0,
        "playback_session_id": session,
    });
    if let (TState::Error(msg), Some(o)) = (&st.state, body.as_object_mut()) {
        o.insert("error_message".into(), json!(msg));
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
        Some(m) => return Err(ApiError::bad_request(format!("unknown method {m:?}"))),
        None => return Err(ApiError::bad_request("missing parameter: method")),
    }
    match state.stop_playback(&ih, &session) {
        Stopped::Unknown => return Err(ApiError::not_found("unknown playback session")),
        Stopped::Ended { last: true } => {
            state.session().remove_with(&ih, false).await;
        }
        Stopped::Ended { last: false } => {}
    }
    Ok(ok_envelope(json!("ok")))
}

/// The numeric version code: major·1 000 000 + minor·1 000 + patch.
pub fn version_code() -> u64 {
    let n = |s: &str| s.parse::<u64>().unwrap_or(0);
    n(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
        + n(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
        + n(env!("CARGO_PKG_VERSION_PATCH"))
}

async fn service(RawQuery(query): RawQuery) -> Result<Json<serde_json::Value>, ApiError> {
    let p = Params::parse(query.as_deref());
    match p.get("method") {
        Some("get_version") => Ok(Json(json!({
            "result": {
                "code": version_code(),
                "platform": "linux",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "error": null,
        }))),
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

fn token_suffix(state: &AppState) -> String {
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

    #[test]
    fn version() {
        assert!(version_code() > 0 || env!("CARGO_PKG_VERSION") == "0.0.0");
    }
}
