//! Streaming reads over real sockets: a second session reads a file of a torrent that it is
//! still downloading from the first, from the start and after a seek, and gets the file's bytes.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use std::net::SocketAddr;
use std::path::Path;

use peercdn_core::metainfo::Metainfo;
use peercdn_engine::create::{build_info, CreateOptions};
use peercdn_engine::session::{AddOptions, Session, SessionConfig};
use peercdn_engine::torrent::Source;

fn config(dir: &Path, peers: Vec<SocketAddr>, upload_limit: u64) -> SessionConfig {
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

fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2654435761).rotate_left(7) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_while_downloading_with_seek() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pub_dir = d.join("pub");
    std::fs::create_dir_all(pub_dir.join("movie")).unwrap();
    let video = content(6_000_000);
    std::fs::write(pub_dir.join("movie/a.txt"), b"hello").unwrap();
    std::fs::write(pub_dir.join("movie/video.ts"), &video).unwrap();
    let info = build_info(
        &pub_dir.join("movie"),
        &CreateOptions {
            piece_length: Some(65536),
            private: false,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let m = Metainfo::new(info, vec![], vec![], None, None);
    let id = m.info_hash;

    // The seeder uploads at 2 MB/s, so the reader really waits for pieces.
    let seeder = Session::start(config(&d.join("a"), vec![], 2_000_000))
        .await
        .unwrap();
    seeder.add(
        Source::Metainfo(Box::new(m)),
        AddOptions {
            save_dir: Some(pub_dir.clone()),
            ..Default::default()
        },
    );
    let addr: SocketAddr = ([127, 0, 0, 1], seeder.listen_port()).into();

    let viewer = Session::start(config(&d.join("b"), vec![addr], 0))
        .await
        .unwrap();
    let h = viewer.add(
        Source::Hash {
            info_hash: id,
            name: None,
            trackers: vec![],
            web_seeds: vec![],
        },
        AddOptions::default(),
    );
    h.wait_ready().await.unwrap();
    let files = h.files().unwrap();
    let f = files.iter().find(|f| f.path == "video.ts").unwrap();
    assert_eq!(f.length, video.len() as u64);

    // Seek to 80 % first: those bytes arrive long before the whole file would.
    let mut r = h.open_file(f.index).await.unwrap();
    let at = video.len() as u64 * 8 / 10;
    let t0 = std::time::Instant::now();
    let got = r.read_at(at, 65536).await.unwrap();
    assert_eq!(&got[..], &video[at as usize..at as usize + got.len()]);
    let seek_time = t0.elapsed();
    let st = h.status.borrow().clone();
    assert!(
        st.have_bytes < st.total_length,
        "answered before the download completed ({seek_time:?})"
    );

    // Then read everything from the start, in odd-sized chunks.
    let mut pos = 0u64;
    let mut all = Vec::new();
    while pos < f.length {
        let chunk = r.read_at(pos, 100_000).await.unwrap();
        assert!(!chunk.is_empty());
        pos += chunk.len() as u64;
        all.extend_from_slice(&chunk);
    }
    assert!(all == video);
    assert!(r.read_at(f.length, 10).await.unwrap().is_empty());
    assert!(h.open_file(99).await.is_err());
    drop(r);
    viewer.shutdown().await;
    seeder.shutdown().await;
}
