//! What a web page may do with the engine: the `Host` check (DNS rebinding), CORS for the
//! media and read-only Ace routes, and the refusal of cross-site requests that change state.
//!
//! - **Host**: an engine without an access token listens on loopback only, and a page of any
//!   site could reach it through a DNS name that resolves to 127.0.0.1 (DNS rebinding); such a
//!   request carries the attacker's name in `Host`. So the `Host` must then be a loopback name
//!   (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`) or one of
//!   [`crate::HttpConfig::allowed_hosts`], else 403. With a token the token guards (the engine
//!   may be reached by any name).
//! - **CORS**: the routes a page on another origin legitimately uses — the Ace media and
//!   read-only routes (getstream, the playback URL, manifests and segments, stat, version,
//!   `/server/api`, `/search`) — answer preflights and carry `Access-Control-Allow-Origin: *`.
//!   peercdn's own `/api/v1`, `/metrics` and the dashboard do not: another site may not read
//!   what this engine holds.
//! - **Cross-site writes**: a request that changes state — any method but GET, HEAD and
//!   OPTIONS, and the Ace command URL — is refused (403) when the browser says it comes from
//!   another site (`Sec-Fetch-Site: cross-site` or `same-site`), or when its `Origin` names
//!   another host than the request's `Host` (browsers without `Sec-Fetch-*`). A form on
//!   another site could otherwise add torrents with peers of its choosing or stop playback.
//!   Tools (curl, the CLI, Ace clients) send neither header and pass.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Path prefixes of the routes other origins may use (CORS).
const CORS_PREFIXES: [&str; 11] = [
    "/ace/getstream",
    "/ace/manifest.m3u8",
    "/hls/manifest.m3u8",
    "/ace/event/",
    "/ace/r/",
    "/ace/l/",
    "/ace/v/",
    "/ace/stat/",
    "/webui/api/service",
    "/server/api",
    "/search",
];

/// How long a browser may cache a preflight answer, seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Middleware: the checks of the module docs, in order (Host, preflight, cross-site writes),
/// then CORS headers on what the allowed routes answer.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if state.config().access_token.is_none() {
        if let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
            if !host_allowed(host, &state.config().allowed_hosts) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Host {host:?} is not a name of this engine (loopback names only; \
                         more with --http-allow-host)"
                    ),
                )
                .into_response();
            }
        }
    }
    let path = request.uri().path();
    let cors = CORS_PREFIXES.iter().any(|p| path.starts_with(p));
    if request.method() == Method::OPTIONS {
        if !cors {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        return preflight();
    }
    let writes =
        !matches!(*request.method(), Method::GET | Method::HEAD) || path.starts_with("/ace/cmd/");
    if writes && cross_site(headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "refused: a page of another site may not change this engine's state",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    if cors {
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "Content-Length, Content-Range, Accept-Ranges, X-Peercdn-Status",
            ),
        );
    }
    response
}

/// The answer to a CORS preflight of an allowed route.
fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Range, Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    r
}

/// True when the browser says the request comes from another site (see the module docs).
pub fn cross_site(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return matches!(site, "cross-site" | "same-site");
    }
    match get("origin") {
        None => false,
        // Opaque origins (sandboxed frames, file pages) are another site.
        Some("null") => true,
        Some(origin) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            get("host").is_none_or(|host| !origin_host.eq_ignore_ascii_case(host))
        }
    }
}

/// True when `host` (a `Host` header: name or address, maybe a port) is a loopback name or
/// one of `allowed` (names, any port).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DNS rebinding arrives with the attacker's name in `Host`: only loopback names and the
    /// configured ones pass.
    #[test]
    fn hosts() {
        let extra = vec!["tv.home.arpa".to_string()];
        for ok in [
            "localhost",
            "localhost:6878",
            "LOCALHOST.",
            "app.localhost:1",
            "127.0.0.1:6878",
            "127.9.9.9",
            "[::1]:6878",
            "tv.home.arpa:6878",
        ] {
            assert!(host_allowed(ok, &extra), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:6878",
            "localhost.evil.example",
            "192.168.1.2:6878",
            "[::2]:1",
            "0.0.0.0",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!host_allowed(bad, &extra), "{bad}");
        }
    }

    #[test]
    fn cross_site_requests() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(!cross_site(&h(&[])), "a tool sends neither header");
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&h(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!cross_site(&h(&[("sec-fetch-site", "none")])));
        let same = [
            ("origin", "http://127.0.0.1:6878"),
            ("host", "127.0.0.1:6878"),
        ];
        assert!(!cross_site(&h(&same)));
        let other = [
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:6878"),
        ];
        assert!(cross_site(&h(&other)));
        assert!(cross_site(&h(&[("origin", "null"), ("host", "localhost")])));
    }
}
