//! Shared set-up for the HTTP tests: a seeder session that publishes a directory, a viewer
//! session that dials it (`static_peers`), and the HTTP API of the viewer on 127.0.0.1:0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use peercdn_core::metainfo::Metainfo;
use peercdn_engine::create::{build_info, CreateOptions};
use peercdn_engine::session::{AddOptions, Session, SessionConfig};
use peercdn_engine::torrent::Source;
use peercdn_http::HttpConfig;
use tokio::sync::oneshot;

/// Bytes of the video file.
pub const VIDEO_LEN: usize = 1_500_000;

pub fn config(dir: &Path, peers: Vec<SocketAddr>) -> SessionConfig {
    limited_config(dir, peers, 0)
}

pub fn limited_config(dir: &Path, peers: Vec<SocketAddr>, upload_limit: u64) -> SessionConfig {
    SessionConfig {
        data_dir: dir.join("data"),
        download_dir: dir.join("dl"),
        listen: "127.0.0.1:0".parse().unwrap(),
        static_peers: peers,
        upload_limit,
        download_limit: 0,
        dht: None,
    }
}

pub fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2654435761).rotate_left(7) as u8)
        .collect()
}

/// A seeder of a two-file torrent (`a.txt`, `video.ts`) and a viewer that knows the seeder.
pub struct Swarm {
    pub dir: tempfile::TempDir,
    pub seeder: Session,
    pub viewer: Session,
    pub meta: Metainfo,
    pub video: Vec<u8>,
    pub seeder_addr: SocketAddr,
}

impl Swarm {
    pub async fn new() -> Swarm {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pub_dir = d.join("pub");
        std::fs::create_dir_all(pub_dir.join("movie")).unwrap();
        let video = content(VIDEO_LEN);
        std::fs::write(pub_dir.join("movie/a.txt"), b"hello").unwrap();
        std::fs::write(pub_dir.join("movie/video.ts"), &video).unwrap();
        let info = build_info(
            &pub_dir.join("movie"),
            &CreateOptions {
                piece_length: Some(32768),
                private: false,
            },
            &mut |_, _| {},
        )
        .unwrap();
        let meta = Metainfo::new(info, vec![], vec![], None, None);
        // 3 MB/s: the viewer's first requests really wait for pieces.
        let seeder = Session::start(limited_config(&d.join("a"), vec![], 3_000_000))
            .await
            .unwrap();
        let h = seeder.add(
            Source::Metainfo(Box::new(meta.clone())),
            AddOptions {
                save_dir: Some(pub_dir.clone()),
                ..Default::default()
            },
        );
        h.wait_ready().await.unwrap();
        let seeder_addr: SocketAddr = ([127, 0, 0, 1], seeder.listen_port()).into();
        let viewer = Session::start(config(&d.join("b"), vec![seeder_addr]))
            .await
            .unwrap();
        Swarm {
            dir,
            seeder,
            viewer,
            meta,
            video,
            seeder_addr,
        }
    }

    pub fn id(&self) -> String {
        self.meta.info_hash.to_hex()
    }

    pub async fn shutdown(self) {
        self.viewer.shutdown().await;
        self.seeder.shutdown().await;
    }
}

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

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Deterministic pseudo-random numbers (no rand dev-dependency needed).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}
