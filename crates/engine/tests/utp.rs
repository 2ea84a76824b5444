//! uTP between sessions over real UDP on 127.0.0.1: a VoD download and a live stream, each
//! from a node on the default `--utp on` to one that prefers uTP, so the connection is uTP;
//! the status counts it as such, the bytes arrive whole and in order. And a node with uTP off
//! never dials uTP (the same pair then connects over TCP).

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use peercdn_engine::live::{LiveSource, NewPiece};
use peercdn_engine::session::{AddOptions, LiveOptions, Session, SessionConfig, UtpMode};
use peercdn_engine::torrent::Source;
use peercdn_testkit::fixtures::{
    addr, config, content, live_descriptor, seeded, torrent_of, ts_payload,
};

const BOUND: Duration = Duration::from_secs(60);

fn with(dir: &Path, utp: UtpMode, peers: Vec<std::net::SocketAddr>) -> SessionConfig {
    SessionConfig {
        utp,
        ..config(dir, peers)
    }
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(BOUND, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not in time"));
}

/// A 3 MB torrent downloaded by a node that prefers uTP (`viewer` mode) from a seeder on
/// `seeder` mode; returns how many of the downloader's connections were uTP at the end.
async fn vod(dir: &Path, seeder: UtpMode, viewer: UtpMode) -> usize {
    let data = content(3_000_000);
    let meta = torrent_of(&dir.join("src"), "file.bin", &[("", &data)], 64 * 1024);
    let s = Session::start(with(&dir.join("seeder"), seeder, vec![]))
        .await
        .unwrap();
    let _sh = seeded(&s, &meta, &dir.join("src")).await;
    let v = Session::start(with(&dir.join("viewer"), viewer, vec![addr(&s)]))
        .await
        .unwrap();
    let vh = v.add(
        Source::Metainfo(Box::new(meta)),
        AddOptions {
            save_dir: Some(dir.join("got")),
            ..Default::default()
        },
    );
    let mut st = vh.status.clone();
    let done = tokio::time::timeout(
        BOUND,
        st.wait_for(|s| s.have_bytes == s.total_length && s.total_length > 0),
    )
    .await
    .expect("downloaded in time")
    .unwrap()
    .clone();
    assert_eq!(done.hash_failures, 0);
    assert_eq!(std::fs::read(dir.join("got/file.bin")).unwrap(), data);
    let utp = done.wires.utp;
    v.shutdown().await;
    s.shutdown().await;
    utp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vod_download_runs_over_utp_when_the_downloader_prefers_it() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(vod(dir.path(), UtpMode::On, UtpMode::Prefer).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_utp_off_connects_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(vod(dir.path(), UtpMode::Prefer, UtpMode::Off).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_relays_over_utp() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = SigningKey::from_bytes(&[62; 32]);
    let desc = live_descriptor(&key, "utp test");
    let b = Session::start(with(&d.join("b"), UtpMode::On, vec![]))
        .await
        .unwrap();
    let v = Session::start(with(&d.join("v"), UtpMode::Prefer, vec![]))
        .await
        .unwrap();
    let bh = b.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let mut source = LiveSource::new(key, bh.buffer().unwrap(), 0).unwrap();
    let vh = v.add_live(
        desc,
        LiveOptions {
            peers: vec![addr(&b)],
            ..LiveOptions::default()
        },
    );
    let vbuf = vh.buffer().unwrap();
    until("viewer connected", || vh.status().peers == 1).await;
    assert_eq!(vh.status().wires.utp, 1);
    for i in 0..20 {
        source
            .push(NewPiece {
                payload: ts_payload(i, 200),
                keyframe: true,
                discontinuity: false,
                duration_us: 200_000,
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until("the viewer got every piece", || {
        (0..20).all(|i| vbuf.has(i))
    })
    .await;
    assert_eq!(bh.status().wires.utp, 1);
    b.shutdown().await;
    v.shutdown().await;
}
