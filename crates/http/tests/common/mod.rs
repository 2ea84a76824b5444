//! Shared set-up for the HTTP tests: the HTTP API of a session on 127.0.0.1:0 and a client.
//! The sessions (a seeder that publishes a directory, a viewer that dials it) come from
//! `peercdn_testkit::fixtures`, re-exported here under the names these tests use.

#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::time::Duration;

use peercdn_engine::session::Session;
use peercdn_http::HttpConfig;
use tokio::sync::oneshot;

pub use peercdn_testkit::fixtures::{config, content, limited_config, VIDEO_LEN};
pub use peercdn_testkit::Lcg;

/// A seeder of a two-file torrent (`a.txt`, `video.ts`) and a viewer that knows the seeder.
pub type Swarm = peercdn_testkit::fixtures::Pair;

/// A running HTTP server; dropping it stops it.
pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

pub fn http_config() -> HttpConfig {
    HttpConfig {
        metadata_timeout: Duration::from_secs(20),
        ..HttpConfig::default()
    }
}

pub async fn serve(session: Session, mut cfg: HttpConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.bind = addr;
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = peercdn_http::serve(session, cfg, listener, async move {
            let _ = rx.await;
        })
        .await;
    });
    Server {
        base: format!("http://{addr}"),
        addr,
        _stop: tx,
    }
}

/// [`serve`] with the Ace TCP API on another port of 127.0.0.1; returns its address too.
#[allow(dead_code)]
pub async fn serve_ace_tcp(session: Session, mut cfg: HttpConfig) -> (Server, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, tcp_addr) = (listener.local_addr().unwrap(), tcp.local_addr().unwrap());
    cfg.bind = addr;
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = peercdn_http::serve_with_ace_tcp(session, cfg, listener, Some(tcp), async move {
            let _ = rx.await;
        })
        .await;
    });
    let srv = Server {
        base: format!("http://{addr}"),
        addr,
        _stop: tx,
    };
    (srv, tcp_addr)
}

/// GET `url` and its body as JSON (panics on a failed request or a body that is not JSON).
#[allow(dead_code)]
pub async fn get_json(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `promtool check metrics` (Debian's `prometheus` package, which scripts/test.sh installs)
/// passes `text`: names, types, `_total` on counters, base units.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
