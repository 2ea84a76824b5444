//! MSE/PE between sessions over real sockets on 127.0.0.1: a live stream relayed over RC4
//! between nodes that require it, the default policy's obfuscated handshake with a plain
//! payload, a VoD download from a node that requires encryption by one that merely prefers
//! it, and the refusals — a plain handshake at a node that requires encryption, an encrypted
//! one at a plaintext-only node, garbage that never synchronises — after which the node still
//! serves.

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use peercdn_engine::live::{LiveHandle, LiveSource, NewPiece};
use peercdn_engine::peer::{Encryption, Wires};
use peercdn_engine::session::{AddOptions, LiveOptions, Session, SessionConfig};
use peercdn_engine::torrent::Source;
use peercdn_testkit::fixtures::{
    addr, config, content, live_descriptor, seeded, torrent_of, ts_payload,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(60);

fn with(dir: &Path, encryption: Encryption) -> SessionConfig {
    SessionConfig {
        encryption,
        ..config(dir, vec![])
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

/// A broadcaster and a viewer under the given policies; returns once 10 pieces reached the
/// viewer, with the viewer's connections by wire.
async fn live_pair(dir: &Path, broadcaster: Encryption, viewer: Encryption) -> Wires {
    let key = SigningKey::from_bytes(&[61; 32]);
    let desc = live_descriptor(&key, "encryption test");
    let b = Session::start(with(&dir.join("b"), broadcaster))
        .await
        .unwrap();
    let v = Session::start(with(&dir.join("v"), viewer)).await.unwrap();
    let bh = b.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let mut source = LiveSource::new(key, bh.buffer().unwrap(), 0).unwrap();
    let vh: LiveHandle = v.add_live(
        desc,
        LiveOptions {
            peers: vec![addr(&b)],
            ..LiveOptions::default()
        },
    );
    let vbuf = vh.buffer().unwrap();
    until("viewer connected", || vh.status().peers == 1).await;
    for i in 0..10 {
        source
            .push(NewPiece {
                payload: ts_payload(i, 100),
                keyframe: true,
                discontinuity: false,
                duration_us: 200_000,
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("the viewer got every piece", || {
        (0..10).all(|i| vbuf.has(i))
    })
    .await;
    let wires = vh.status().wires;
    b.shutdown().await;
    v.shutdown().await;
    wires
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_relays_over_rc4_between_nodes_that_require_it() {
    let dir = tempfile::tempdir().unwrap();
    let wires = live_pair(dir.path(), Encryption::Require, Encryption::Require).await;
    assert_eq!(
        wires,
        Wires {
            rc4: 1,
            ..Wires::default()
        }
    );
}

/// Two nodes on the default policy: the handshake is obfuscated, the payload stays plain (as
/// libtorrent's default: no RC4 cost on the bulk of the bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_nodes_obfuscate_the_handshake_and_keep_the_payload_plain() {
    let dir = tempfile::tempdir().unwrap();
    let wires = live_pair(dir.path(), Encryption::Prefer, Encryption::Prefer).await;
    assert_eq!(
        wires,
        Wires {
            obfuscated: 1,
            ..Wires::default()
        }
    );
}

/// A plaintext-only viewer and a default broadcaster: the broadcaster accepts plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_only_node_still_reaches_a_default_one() {
    let dir = tempfile::tempdir().unwrap();
    let wires = live_pair(dir.path(), Encryption::Prefer, Encryption::Plaintext).await;
    assert_eq!(
        wires,
        Wires {
            plain: 1,
            ..Wires::default()
        }
    );
}

/// A seeder that requires encryption: a plain handshake is closed unanswered, as are an MSE
/// handshake for an unknown torrent and garbage that never synchronises; a plaintext-only
/// node's MSE-less handshake too. Then a downloader on the default policy (it offers both;
/// the seeder selects RC4) gets the file intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_that_requires_encryption_refuses_plain_and_garbage_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = content(3 * 65536 + 1000);
    let pub_dir = d.join("pub");
    let meta = torrent_of(&pub_dir, "file.bin", &[("", &data)], 65536);
    let ih = meta.info_hash;
    let seeder = Session::start(with(&d.join("seeder"), Encryption::Require))
        .await
        .unwrap();
    let sh = seeded(&seeder, &meta, &pub_dir).await;

    // A plain handshake: closed without an answer.
    let mut plain = TcpStream::connect(addr(&seeder)).await.unwrap();
    let hs = peercdn_core::wire::Handshake::ours(ih, peercdn_core::PeerId([b'p'; 20]));
    plain.write_all(&hs.encode()).await.unwrap();
    assert_closed_unanswered(&mut plain).await;

    // 700 bytes of garbage: closed, with at most Yb and a pad written (when the garbage is
    // read in one go the responder gives up before it writes anything).
    let mut junk = TcpStream::connect(addr(&seeder)).await.unwrap();
    let garbage: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
    junk.write_all(&garbage).await.unwrap();
    let got = drain(&mut junk).await;
    assert!(got <= 96 + 512, "{got} bytes before the close");

    // An MSE handshake for a torrent the seeder does not have.
    let mut other = TcpStream::connect(addr(&seeder)).await.unwrap();
    let (mut init, first) = peercdn_core::mse::Initiator::new(
        peercdn_core::InfoHash([0xEE; 20]),
        &[3; 20],
        &[],
        peercdn_core::mse::CRYPTO_RC4,
        &[],
    );
    other.write_all(&first).await.unwrap();
    let mut yb = [0u8; 96];
    other.read_exact(&mut yb).await.unwrap();
    let mut step3 = Vec::new();
    assert!(init.feed(&yb, &mut step3).unwrap().is_none());
    other.write_all(&step3).await.unwrap();
    drain(&mut other).await;

    // The honest downloader, on the default policy.
    let leecher = Session::start(config(&d.join("leecher"), vec![addr(&seeder)]))
        .await
        .unwrap();
    let lh = leecher.add(
        Source::Metainfo(Box::new(meta)),
        AddOptions {
            save_dir: Some(d.join("got")),
            ..Default::default()
        },
    );
    let mut st = lh.status.clone();
    let done = tokio::time::timeout(
        BOUND,
        st.wait_for(|s| s.have_bytes == s.total_length && s.total_length > 0),
    )
    .await
    .expect("downloaded in time")
    .unwrap()
    .clone();
    assert_eq!(done.hash_failures, 0);
    assert_eq!(std::fs::read(d.join("got/file.bin")).unwrap(), data);
    let wires = sh.status.borrow().wires;
    assert_eq!(
        wires.plain + wires.obfuscated,
        0,
        "the seeder took only RC4: {wires:?}"
    );
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// A plaintext-only node closes an MSE handshake (a default node then falls back to plain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_only_node_closes_an_mse_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let node = Session::start(with(dir.path(), Encryption::Plaintext))
        .await
        .unwrap();
    let mut s = TcpStream::connect(addr(&node)).await.unwrap();
    let (_, first) = peercdn_core::mse::Initiator::new(
        peercdn_core::InfoHash([1; 20]),
        &[5; 20],
        &[9; 40],
        peercdn_core::mse::CRYPTO_RC4,
        &[],
    );
    s.write_all(&first).await.unwrap();
    assert_closed_unanswered(&mut s).await;
    node.shutdown().await;
}

/// Reads until the peer closes; the number of bytes read.
async fn drain(s: &mut TcpStream) -> usize {
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        let mut n = 0;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k,
            }
        }
    })
    .await
    .expect("closed in time")
}

async fn assert_closed_unanswered(s: &mut TcpStream) {
    assert_eq!(drain(s).await, 0, "answered");
}
