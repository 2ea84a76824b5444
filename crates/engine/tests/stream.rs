//! Streaming reads over real sockets: a second session reads a file of a torrent that it is
//! still downloading from the first, from the start and after a seek, and gets the file's bytes.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use peercdn_engine::session::AddOptions;
use peercdn_engine::session::Session;
use peercdn_testkit::fixtures::{addr, by_hash, content, limited_config, seed, torrent_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_while_downloading_with_seek() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pub_dir = d.join("pub");
    let video = content(6_000_000);
    let files: [(&str, &[u8]); 2] = [("a.txt", b"hello"), ("video.ts", &video)];
    let m = torrent_of(&pub_dir, "movie", &files, 65536);

    // The seeder uploads at 2 MB/s, so the reader really waits for pieces.
    let seeder = Session::start(limited_config(&d.join("a"), vec![], 2_000_000))
        .await
        .unwrap();
    seed(&seeder, &m, &pub_dir);

    let viewer = Session::start(limited_config(&d.join("b"), vec![addr(&seeder)], 0))
        .await
        .unwrap();
    let h = viewer.add(by_hash(&m), AddOptions::default());
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
