//! # peercdn-http — the engine's HTTP API
//!
//! Serves a running [`Session`] over HTTP with axum:
//! - [`ace`]: the Ace Stream engine compatible routes (`/ace/getstream`, the playback, stat and
//!   command URLs of a playback session, `/webui/api/service?method=get_version`);
//! - [`server_api`]: Ace's `/server/api?method=…` (media files, content ID, token, search) and
//!   `/search` over what the engine holds;
//! - [`api`]: peercdn's own JSON API under `/api/v1/` and its OpenAPI document ([`openapi`]);
//! - [`metrics`]: `/metrics` in the Prometheus text format;
//! - `/`: a one-page dashboard that polls `/api/v1/torrents`, `/api/v1/live` and `/api/v1/dht`.
//!
//! Live streams: progressive MPEG-TS, the stat JSON and `/api/v1/live` objects in [`live`];
//! HLS playlists and segments in [`hls`]; HLS of a torrent's MPEG-TS file in [`vod_hls`].
//!
//! Progressive output lives in [`stream`] (file choice, content types, the body that loops
//! `FileReader::read_at`) and [`range`] (the `Range` header). Where torrents come from (IDs,
//! magnets, `.torrent` URLs and bodies) is [`source`]. Errors become the Ace-style
//! `{"response": null, "error": "…"}` envelope in [`error`].
//!
//! What other web pages may do (the `Host` check, CORS, cross-site writes refused) is
//! [`guard`].
//!
//! Architecture invariant: this crate owns HTTP, JSON and status codes; the engine knows none of
//! them. Every query string and body is outside input: nothing here panics on it.
#![deny(missing_docs)]
// The OpenAPI document is one `json!` literal, deeper than the default limit allows.
#![recursion_limit = "256"]

pub mod ace;
pub mod api;
mod auth;
pub mod conn;
pub mod error;
pub mod guard;
pub mod hls;
pub mod ledger;
pub mod live;
pub mod media_file;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod range;
pub mod server_api;
pub mod source;
pub mod state;
pub mod stream;
pub mod tcp_api;
pub mod vod_hls;
pub mod vod_mkv;
pub mod vod_mp4;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use peercdn_engine::session::Session;
use tokio::net::TcpListener;

use crate::state::AppState;

/// How long [`serve`] lets answers finish once told to stop; then it returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Default most bytes fetched for a `url=` `.torrent` (10 MiB).
pub const DEFAULT_URL_FETCH_LIMIT: u64 = 10 << 20;

/// HTTP server settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address to listen on (127.0.0.1:6878 by default). Used for URLs when a request has no
    /// usable `Host` header.
    pub bind: SocketAddr,
    /// When set, every request must carry `?token=T` or `Authorization: Bearer T`. Required for
    /// any non-loopback bind.
    pub access_token: Option<String>,
    /// Most bytes fetched for a `url=` `.torrent`.
    pub url_fetch_limit: u64,
    /// Time limit of a `url=` fetch.
    pub url_fetch_timeout: Duration,
    /// How long a stream request waits for metadata (an ID-only request) before a 504.
    pub metadata_timeout: Duration,
    /// Names besides the loopback ones that requests may carry in `Host` when no access token
    /// is set (see [`guard`]: DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// How long a torrent `/ace/getstream` started for a bare ID or magnet may wait for its
    /// metadata before it is removed (with its playback sessions).
    pub unresolved_ttl: Duration,
    /// Most HTTP connections at once (see [`conn`]); more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection on which nothing moves either way this long is closed.
    pub idle_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 6878)),
            access_token: None,
            url_fetch_limit: DEFAULT_URL_FETCH_LIMIT,
            url_fetch_timeout: Duration::from_secs(20),
            metadata_timeout: Duration::from_secs(60),
            allowed_hosts: Vec::new(),
            unresolved_ttl: Duration::from_secs(600),
            max_connections: 256,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Binding the listen socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// A non-loopback address without an access token would expose the node to the network.
    #[error("binding {addr} (not loopback) needs an access token")]
    NeedsToken {
        /// Address.
        addr: SocketAddr,
    },
    /// Serving failed.
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

/// Binds `config.bind`, refusing a non-loopback address without an access token.
pub async fn bind(config: &HttpConfig) -> Result<TcpListener, HttpError> {
    check_exposure(config.bind, config)?;
    TcpListener::bind(config.bind)
        .await
        .map_err(|source| HttpError::Bind {
            addr: config.bind,
            source,
        })
}

/// All routes, with the access-token check in front when a token is configured.
pub fn router(session: Session, config: &HttpConfig) -> Router {
    app(AppState::new(session, config.clone()))
}

fn app(state: AppState) -> Router {
    Router::new()
        .merge(pages::routes())
        .merge(ace::routes())
        .merge(hls::routes())
        .merge(vod_hls::routes())
        .merge(api::routes(state.config()))
        .merge(ledger::routes())
        .route("/metrics", get(metrics::handler))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_media,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes. Refuses a listener on a
/// non-loopback address when no access token is set.
pub async fn serve(
    session: Session,
    config: HttpConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    serve_with_ace_tcp(session, config, listener, None, shutdown).await
}

/// [`serve`], and the Ace TCP API ([`tcp_api`]) on `ace_tcp` when given, until `shutdown`.
pub async fn serve_with_ace_tcp(
    session: Session,
    config: HttpConfig,
    listener: TcpListener,
    ace_tcp: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let addr = listener.local_addr().map_err(HttpError::Serve)?;
    check_exposure(addr, &config)?;
    check_exposure(config.bind, &config)?;
    tracing::info!(%addr, "HTTP API listening");
    let state = AppState::new(session, config.clone());
    // Ended with this function (dropping the task's handle would not).
    let _tcp = ace_tcp.map(|tcp| {
        let shown = if addr.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), addr.port())
        } else {
            addr
        };
        if let Ok(a) = tcp.local_addr() {
            tracing::info!(addr = %a, "Ace TCP API listening");
        }
        AbortOnDrop(tokio::spawn(tcp_api::serve(
            tcp,
            state.clone(),
            format!("http://{shown}"),
        )))
    });
    let listener =
        conn::CappedListener::new(listener, state.connections().clone(), config.idle_timeout);
    // Graceful shutdown waits for every answer to end, and a live stream never ends: past
    // SHUTDOWN_GRACE, what is still open is dropped (an engine told to stop while a player
    // read a live stream once ran until the player hung up).
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let served = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = fired_tx.send(());
    });
    let grace = async move {
        if fired_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = served => r.map_err(HttpError::Serve),
        () = grace => {
            tracing::info!("HTTP API: answers still open after {SHUTDOWN_GRACE:?} dropped");
            Ok(())
        }
    }
}

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn check_exposure(addr: SocketAddr, config: &HttpConfig) -> Result<(), HttpError> {
    let has_token = config
        .access_token
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    if addr.ip().is_loopback() || has_token {
        Ok(())
    } else {
        Err(HttpError::NeedsToken { addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_needs_token() {
        let mut c = HttpConfig::default();
        let public: SocketAddr = "0.0.0.0:6878".parse().unwrap_or(c.bind);
        assert!(check_exposure(c.bind, &c).is_ok());
        assert!(matches!(
            check_exposure(public, &c),
            Err(HttpError::NeedsToken { .. })
        ));
        c.access_token = Some(String::new());
        assert!(check_exposure(public, &c).is_err());
        c.access_token = Some("s3cret".into());
        assert!(check_exposure(public, &c).is_ok());
    }
}
