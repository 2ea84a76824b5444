//! The engine's web pages: the dashboard at `/`, the player page `/play/ID` (hls.js, any site
//! may link to it or embed it in a frame), the vendored scripts under `/assets/` (no build
//! step: compiled in, see `assets/README.md`), and the login page a browser gets instead of a
//! 401 JSON when an access token is set and the page was opened without it.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// hls.js (light build), for the player page.
const HLS_JS: &str = include_str!("../assets/hls.light.min.js");
/// The pages' icon.
const ICON: &str = include_str!("../assets/icon.svg");

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/play/{id}", get(player))
        .route("/assets/hls.light.min.js", get(hls_js))
        .route("/assets/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
}

async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn player() -> Html<&'static str> {
    Html(include_str!("player.html"))
}

async fn hls_js() -> Response {
    asset(HLS_JS, "text/javascript; charset=utf-8")
}

/// A compiled-in asset, cached for a day.
fn asset(body: &'static str, ctype: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

/// Whether `request` needs no token: a public asset (nothing in it is the engine's), or the
/// receipt collector (viewers' engines post signed receipts to it; [`crate::ledger`]).
pub(crate) fn is_public(request: &Request) -> bool {
    let path = request.uri().path();
    path.starts_with("/assets/") || path == "/favicon.ico" || path == crate::ledger::RECEIPTS_PATH
}

/// Whether `request` is a browser opening one of the pages (which gets the login page when
/// its token is missing).
pub(crate) fn is_page(request: &Request) -> bool {
    let path = request.uri().path();
    let html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    html && (path == "/" || path.starts_with("/play/"))
}

/// The login page: a form that opens the same page again with `?token=` (401, so that tools
/// still see the refusal).
pub(crate) fn login(wrong: bool) -> Response {
    let note = if wrong {
        "<p class=\"bad\">That token is not this engine's.</p>"
    } else {
        ""
    };
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>peercdn: sign in</title>
<link rel="icon" href="/assets/icon.svg">
<style>body{{font:15px system-ui,sans-serif;max-width:26em;margin:4em auto;padding:0 1em}}
input,button{{font:inherit;padding:.4em}} input{{width:100%;box-sizing:border-box}}
.bad{{color:#b00}}</style></head>
<body><h1>peercdn</h1>
<p>This engine asks for its access token (the one it was started with, <code>--token</code>).</p>
{note}
<form method="get"><p><input name="token" type="password" autofocus
placeholder="access token" autocomplete="current-password"></p>
<p><button>Open</button></p></form>
</body></html>
"#
    );
    let mut r = (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
