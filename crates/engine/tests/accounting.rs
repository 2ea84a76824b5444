//! Accounting over real sockets on 127.0.0.1: a broadcaster session (its node key signs the
//! stream, as `peercdn broadcast` does) and relaying viewer sessions with a player each. Every
//! viewer proves its key to its peers, signs a receipt a second for each peer it received
//! verified bytes from, and hands them to the uploaders and the broadcaster; uploaders pass on
//! the receipts about them. The broadcaster's ledger must then agree with what every engine
//! counted itself: bytes per uploader, bytes per viewer, watch time per viewer.
#![allow(clippy::disallowed_methods)] // tests: bound a wait with the real clock

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use peercdn_engine::live::{LiveBuffer, LiveHandle, LiveSource, NewPiece};
use peercdn_engine::nodekey::NodeKey;
use peercdn_engine::session::{LiveOptions, Session, SessionConfig};
use peercdn_testkit::fixtures::{self, addr};

fn config(dir: &std::path::Path) -> SessionConfig {
    SessionConfig {
        receipt_interval: Duration::from_secs(1),
        encryption: Default::default(),
        utp: Default::default(),
        dht_port: None,
        ..fixtures::config(dir, vec![])
    }
}

async fn ready(h: &LiveHandle) -> Arc<LiveBuffer> {
    tokio::time::timeout(Duration::from_secs(20), h.wait_ready())
        .await
        .expect("descriptor in time")
        .expect("stream running")
}

/// `a` and `b` within 1 % of the larger (or 64 KiB, for small figures).
fn close(what: &str, a: u64, b: u64) {
    let diff = a.abs_diff(b);
    assert!(
        diff <= (a.max(b) / 100).max(64 * 1024),
        "{what}: ledger {a} vs engine {b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broadcasters_ledger_agrees_with_what_every_engine_counted() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("src");
    // The broadcaster's node key signs the stream.
    let key = NodeKey::load_or_create(&src_dir.join("data")).unwrap();
    let stream_key = SigningKey::from_bytes(&key.signing_key().to_bytes());
    let desc = fixtures::live_descriptor(&stream_key, "accounting test");
    let src = Session::start(config(&src_dir)).await.unwrap();
    assert_eq!(src.node_key_hex(), key.public_hex());
    let src_h = src.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let mut source = LiveSource::new(stream_key, src_h.buffer().unwrap(), 0).unwrap();

    // Six viewers: the first two dial the source, the others two earlier viewers each (and
    // find the rest by PEX), so some bytes cross pairs the broadcaster is not part of.
    const VIEWERS: usize = 6;
    let mut viewers: Vec<(Session, LiveHandle)> = Vec::new();
    for v in 0..VIEWERS {
        let s = Session::start(config(&dir.path().join(format!("v{v}"))))
            .await
            .unwrap();
        let peers: Vec<SocketAddr> = match v {
            0 | 1 => vec![addr(&src)],
            _ => vec![addr(&viewers[v - 1].0), addr(&viewers[v - 2].0)],
        };
        let h = s.add_live(
            desc.clone(),
            LiveOptions {
                peers,
                ..LiveOptions::default()
            },
        );
        viewers.push((s, h));
    }
    let mut players = Vec::new();
    for (_, h) in &viewers {
        let b = ready(h).await;
        players.push(b.reader().expect("a reader slot"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 8 s of stream at about 1 Mbit/s.
    const N: u32 = 40;
    for i in 0..N {
        source
            .push(NewPiece {
                payload: fixtures::ts_payload(i, 100 + (i as usize % 4) * 50),
                keyframe: i % 5 == 0,
                discontinuity: false,
                duration_us: 200_000,
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (n, (_, h)) in viewers.iter().enumerate() {
        let b = h.buffer().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !(0..N).all(|i| b.has(i)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "viewer {n} lacks pieces"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The players stop; two more rounds carry the final figures.
    drop(players);
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let report = src
        .accounts()
        .report()
        .await
        .expect("the broadcaster's ledger");
    let stats = src.accounts().stats.clone();
    // Honest receipts are never refused, but for stale copies passed on late by an uploader
    // after the viewer's newer one arrived (the `replayed` counter, index 1).
    let refused: Vec<u64> = stats
        .refused
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert_eq!(
        [refused[0], refused[2], refused[3], refused[4]],
        [0; 4],
        "honest receipts refused: {refused:?}"
    );
    assert_eq!(report.totals.cdn_bytes, 0);
    assert_eq!(report.totals.viewers, VIEWERS as u64, "{report:?}");

    // Per viewer: bytes received (verified) and watch time, as its own engine counted them.
    let mut all_down = 0;
    for (s, h) in &viewers {
        let st = h.status();
        let line = report
            .viewers
            .iter()
            .find(|v| v.key == s.node_key_hex())
            .unwrap_or_else(|| panic!("viewer {} not in the ledger", s.node_key_hex()));
        close("viewer bytes", line.p2p_bytes, st.p2p_downloaded);
        assert!(st.watched_ms >= 8_000, "{}", st.watched_ms);
        assert!(
            line.watched_ms.abs_diff(st.watched_ms) <= 1000,
            "watched: ledger {} vs engine {}",
            line.watched_ms,
            st.watched_ms
        );
        all_down += st.p2p_downloaded;
    }
    close("P2P total", report.totals.p2p_bytes, all_down);

    // Per uploader: what each engine (the broadcaster included) sent.
    let mut uploaders = vec![(src.node_key_hex(), src_h.status().uploaded)];
    uploaders.extend(
        viewers
            .iter()
            .map(|(s, h)| (s.node_key_hex(), h.status().uploaded)),
    );
    for (k, up) in uploaders {
        let got = report
            .uploaders
            .iter()
            .find(|u| u.key == k)
            .map_or(0, |u| u.bytes);
        close(&format!("uploader {k}"), got, up);
    }
    // Receipts cost little next to the stream.
    let sent: u64 = viewers
        .iter()
        .map(|(s, _)| {
            s.accounts()
                .stats
                .sent_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(sent > 0);
    eprintln!(
        "receipts: {sent} bytes for {} bytes of stream moved ({:.3} %)",
        all_down,
        sent as f64 * 100.0 / all_down as f64
    );
    for (s, _) in &viewers {
        s.shutdown().await;
    }
    src.shutdown().await;
}

/// VoD: a publisher (its catalogue holds its own record for the torrent) seeds; three viewers
/// download it by hash from the publisher and from each other. Their receipts reach the
/// publisher, which learns nothing else: its ledger must say what each viewer's engine counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_ledger_accounts_for_a_vod_download() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixtures::content(6 << 20);
    let meta = fixtures::torrent_of(
        &dir.path().join("content"),
        "film.bin",
        &[("", &data[..])],
        256 << 10,
    );
    let publisher = Session::start(config(&dir.path().join("pub")))
        .await
        .unwrap();
    fixtures::seed(&publisher, &meta, &dir.path().join("content"));
    publisher
        .publish_record(
            meta.info_hash,
            peercdn_core::catalog::Kind::Vod,
            peercdn_core::catalog::Description {
                title: "A film".into(),
                size: data.len() as u64,
                files: 1,
                ..Default::default()
            },
        )
        .unwrap();
    let mut viewers = Vec::new();
    for v in 0..3 {
        let s = Session::start(config(&dir.path().join(format!("v{v}"))))
            .await
            .unwrap();
        let mut peers = vec![addr(&publisher)];
        peers.extend(viewers.iter().map(|(s, _): &(Session, _)| addr(s)));
        let h = s.add(
            fixtures::by_hash(&meta),
            peercdn_engine::session::AddOptions {
                save_dir: Some(dir.path().join(format!("dl{v}"))),
                peers,
                // A household downlink: the download takes a few receipt rounds.
                download_limit: 2 << 20,
                ..Default::default()
            },
        );
        viewers.push((s, h));
    }
    for (_, h) in &viewers {
        let h = h.clone();
        fixtures::wait_for("the download", 60, move || {
            h.status.borrow().have_bytes == 6 << 20
        })
        .await;
    }
    // Rounds every second: three more carry the final figures.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let report = publisher
        .accounts()
        .report()
        .await
        .expect("the publisher's ledger");
    assert_eq!(report.totals.viewers, 3, "{report:?}");
    let mut all = 0;
    for (s, h) in &viewers {
        let st = h.status.borrow().clone();
        let line = report
            .viewers
            .iter()
            .find(|v| v.key == s.node_key_hex())
            .unwrap_or_else(|| panic!("viewer {} not in the ledger: {report:?}", s.node_key_hex()));
        close("viewer bytes", line.p2p_bytes, st.p2p_downloaded);
        assert!(st.p2p_downloaded >= 6 << 20);
        all += st.p2p_downloaded;
    }
    close("P2P total", report.totals.p2p_bytes, all);
    let from_pub = report
        .uploaders
        .iter()
        .find(|u| u.key == publisher.node_key_hex())
        .map_or(0, |u| u.bytes);
    assert!(from_pub > 0, "{report:?}");
    for (s, _) in &viewers {
        s.shutdown().await;
    }
    publisher.shutdown().await;
}
