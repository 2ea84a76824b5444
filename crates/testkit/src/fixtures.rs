//! Fixtures for tests that run real sessions (feature `engine`): session configurations on
//! 127.0.0.1 with OS-chosen ports, deterministic content, a torrent of files written to a temp
//! dir, a seeder and a viewer of it, and a polling wait with a generous failure bound.
//!
//! Everything cleans up after itself: temp dirs are removed when their [`tempfile::TempDir`]
//! drops; sessions are shut down by the test (`Pair::shutdown`). Nothing here reads timing as a
//! result: waits only bound a failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use peercdn_core::live::{Descriptor, LiveParams};
use peercdn_core::metainfo::Metainfo;
use peercdn_engine::create::{build_info, CreateOptions};
use peercdn_engine::session::{AddOptions, Session, SessionConfig};
use peercdn_engine::torrent::{Source, TorrentHandle};

/// A session in `dir` (`dir/data`, `dir/dl`) on 127.0.0.1, any port, no DHT, dialling `peers`.
pub fn config(dir: &Path, peers: Vec<SocketAddr>) -> SessionConfig {
    limited_config(dir, peers, 0)
}

/// [`config`] with an upload limit in bytes/s (0: none).
pub fn limited_config(dir: &Path, peers: Vec<SocketAddr>, upload_limit: u64) -> SessionConfig {
    SessionConfig {
        data_dir: dir.join("data"),
        download_dir: dir.join("dl"),
        listen: "127.0.0.1:0".parse().expect("an address"),
        static_peers: peers,
        upload_limit,
        download_limit: 0,
        dht: None,
        receipt_interval: peercdn_engine::receipts::DEFAULT_INTERVAL,
        encryption: Default::default(),
        utp: Default::default(),
        dht_port: None,
    }
}

/// The address peers reach `s` at.
pub fn addr(s: &Session) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], s.listen_port()))
}

/// `len` deterministic bytes that do not repeat with any small period.
pub fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2654435761).rotate_left(7) as u8)
        .collect()
}

/// Writes `files` (relative path, bytes) under `root/name` and makes a torrent of that
/// directory — or of the single file `root/name` when `files` is one entry with an empty path —
/// with pieces of `piece_length` bytes. The data's parent (`root`) is what a seeder saves to.
pub fn torrent_of(root: &Path, name: &str, files: &[(&str, &[u8])], piece_length: u32) -> Metainfo {
    let top = root.join(name);
    for (path, bytes) in files {
        let file = if path.is_empty() {
            top.clone()
        } else {
            top.join(path)
        };
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("create the content dir");
        }
        std::fs::write(&file, bytes).expect("write content");
    }
    let info = build_info(
        &top,
        &CreateOptions {
            piece_length: Some(piece_length),
            private: false,
        },
        &mut |_, _| {},
    )
    .expect("hash the content");
    Metainfo::new(info, vec![], vec![], None, None)
}

/// Adds `meta` to `session` as a seeder of the data under `save_dir`.
pub fn seed(session: &Session, meta: &Metainfo, save_dir: &Path) -> TorrentHandle {
    session.add(
        Source::Metainfo(Box::new(meta.clone())),
        AddOptions {
            save_dir: Some(save_dir.to_path_buf()),
            ..Default::default()
        },
    )
}

/// [`seed`], then waits (up to 60 s) until the session has checked the data and seeds: before
/// that its swarm is inactive and refuses connections.
pub async fn seeded(session: &Session, meta: &Metainfo, save_dir: &Path) -> TorrentHandle {
    let h = seed(session, meta, save_dir);
    let mut st = h.status.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        st.wait_for(|s| s.pieces_total > 0 && s.have_bytes == s.total_length),
    )
    .await
    .expect("the seeder checked its data in time")
    .expect("the torrent task is running");
    h
}

/// A torrent to add by its info hash alone (fetching the metadata from peers).
pub fn by_hash(meta: &Metainfo) -> Source {
    Source::Hash {
        info_hash: meta.info_hash,
        name: None,
        trackers: vec![],
        web_seeds: vec![],
    }
}

/// The descriptor of a live stream named `name` signed by `key`: 200 ms pieces of at most
/// 1 MiB, a 30 s window, no trackers, no CDN.
pub fn live_descriptor(key: &SigningKey, name: &str) -> Descriptor {
    let params = LiveParams {
        name: name.into(),
        pubkey: key.verifying_key().to_bytes(),
        piece_duration_ms: 200,
        max_piece_length: 1 << 20,
        window_s: 30,
    };
    Descriptor::new(params, vec![], vec![])
}

/// A deterministic TS-like payload for live piece `i`: `packets` whole 188-byte packets, each
/// starting with the sync byte, the rest derived from `i` (so pieces differ).
pub fn ts_payload(i: u32, packets: usize) -> Bytes {
    let mut v = vec![0u8; packets * 188];
    for (n, b) in v.iter_mut().enumerate() {
        *b = if n % 188 == 0 {
            0x47
        } else {
            (n as u32 ^ i.wrapping_mul(31)) as u8
        };
    }
    v.into()
}

/// Bytes of [`Pair`]'s video file.
pub const VIDEO_LEN: usize = 1_500_000;

/// A seeder of a two-file torrent (`movie/a.txt`, `movie/video.ts`, 32 KiB pieces) uploading
/// at 3 MB/s (so a viewer's first requests really wait for pieces), and a viewer session that
/// knows the seeder (`static_peers`) but has not added the torrent.
pub struct Pair {
    /// Holds both sessions' directories; removed on drop.
    pub dir: tempfile::TempDir,
    /// The seeding session.
    pub seeder: Session,
    /// The viewing session.
    pub viewer: Session,
    /// The torrent.
    pub meta: Metainfo,
    /// The bytes of `video.ts`.
    pub video: Vec<u8>,
    /// Where the seeder listens.
    pub seeder_addr: SocketAddr,
}

impl Pair {
    /// Starts both sessions; returns once the seeder has checked its data.
    pub async fn new() -> Pair {
        let dir = tempfile::tempdir().expect("a temp dir");
        let d = dir.path();
        let pub_dir: PathBuf = d.join("pub");
        let video = content(VIDEO_LEN);
        let files: [(&str, &[u8]); 2] = [("a.txt", b"hello"), ("video.ts", &video)];
        let meta = torrent_of(&pub_dir, "movie", &files, 32768);
        let seeder = Session::start(limited_config(&d.join("a"), vec![], 3_000_000))
            .await
            .expect("start the seeder");
        seed(&seeder, &meta, &pub_dir)
            .wait_ready()
            .await
            .expect("the seeder is ready");
        let seeder_addr = addr(&seeder);
        let viewer = Session::start(config(&d.join("b"), vec![seeder_addr]))
            .await
            .expect("start the viewer");
        Pair {
            dir,
            seeder,
            viewer,
            meta,
            video,
            seeder_addr,
        }
    }

    /// The content ID, hex.
    pub fn id(&self) -> String {
        self.meta.info_hash.to_hex()
    }

    /// Shuts both sessions down.
    pub async fn shutdown(self) {
        self.viewer.shutdown().await;
        self.seeder.shutdown().await;
    }
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after `secs` seconds (a failure
/// bound, not a measurement).
pub async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = peercdn_engine::clock::tokio_now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            peercdn_engine::clock::tokio_now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether an `ffmpeg` binary runs here.
pub fn ffmpeg_available() -> bool {
    std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}
