//! A whole node on a paused tokio clock: the engine reads time only through `engine::clock`
//! (tokio's clock) and its actors sleep until the swarms' `poll_timeout`, so minutes of a real
//! session — keep-alives, an idle peer's eviction — pass in a test that takes a moment.
//!
//! The session runs on the test's own current-thread runtime; a raw TCP peer completes the
//! handshake on the running clock, then the clock is paused and the peer only reads: tokio
//! advances the clock whenever every task waits, as far as the next timer, which is exactly the
//! node's next deadline.

use std::time::Duration;

use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::PeerId;
use peercdn_engine::clock;
use peercdn_engine::session::Session;
use peercdn_testkit::fixtures::{addr, config, content, seed, torrent_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the silent peer saw before the node closed the connection.
#[derive(Debug, Default)]
struct Seen {
    keepalives: usize,
    /// The longest the line was silent, in virtual time.
    longest_silence: Duration,
    /// Virtual time from the pause to the close.
    closed_after: Duration,
}

/// Reads messages until the node closes the connection, on the paused clock.
async fn read_until_closed(sock: &mut TcpStream) -> Seen {
    let start = clock::tokio_now();
    let mut seen = Seen::default();
    let mut last = start;
    let mut buf = bytes::BytesMut::new();
    loop {
        let msg = wire::decode(&mut buf, 1 << 20);
        if let Ok(Some(_)) = msg {
            let now = clock::tokio_now();
            seen.longest_silence = seen.longest_silence.max(now - last);
            last = now;
        }
        match msg {
            Ok(Some(Message::KeepAlive)) => seen.keepalives += 1,
            Ok(Some(_)) => {}
            Ok(None) => match sock.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            Err(e) => panic!("the node sent a malformed message: {e}"),
        }
    }
    seen.closed_after = clock::tokio_now() - start;
    seen
}

/// A peer that completes the handshake and then never sends a byte is kept alive with
/// keep-alives (checked every 45 s: the line is never silent for twice that) and dropped as idle after the swarm's
/// 180 s idle timeout — three minutes of the node's life on a paused clock, counted as an
/// `idle` disconnect in the torrent's status.
#[tokio::test]
async fn a_silent_peer_gets_keepalives_then_is_dropped_as_idle_on_a_paused_clock() {
    let dir = tempfile::tempdir().unwrap();
    let meta = torrent_of(
        &dir.path().join("pub"),
        "file.bin",
        &[("", &content(300_000))],
        65_536,
    );
    let node = Session::start(config(&dir.path().join("node"), vec![]))
        .await
        .unwrap();
    let torrent = seed(&node, &meta, &dir.path().join("pub"));
    torrent.wait_ready().await.unwrap();

    let mut sock = TcpStream::connect(addr(&node)).await.unwrap();
    let ours = Handshake::ours(meta.info_hash, PeerId::ours([7; 12]));
    sock.write_all(&ours.encode()).await.unwrap();
    let mut theirs = [0u8; 68];
    sock.read_exact(&mut theirs).await.unwrap();
    let mut status = torrent.status.clone();
    tokio::time::timeout(Duration::from_secs(30), async {
        while status.borrow_and_update().peers == 0 {
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("the node counts the peer");

    tokio::time::pause();
    // Bounded in virtual time: a node whose deadlines did not follow tokio's clock would
    // never close the line, and this fails at once instead of hanging.
    let seen = tokio::time::timeout(Duration::from_secs(600), read_until_closed(&mut sock))
        .await
        .expect("the node closes an idle line within 600 s of its clock");
    assert!(
        seen.closed_after >= Duration::from_secs(170),
        "closed after {:?} of virtual time, before the idle timeout",
        seen.closed_after
    );
    assert!(
        seen.keepalives >= 1 && seen.longest_silence <= Duration::from_secs(90),
        "a line is never silent for more than twice the 45 s keep-alive check: {seen:?}"
    );
    // The status publication is itself on the clock: let it come.
    tokio::time::timeout(Duration::from_secs(30), async {
        while status.borrow_and_update().disconnects.get("idle") == 0 {
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("the disconnect is counted as idle");
    node.shutdown().await;
}
