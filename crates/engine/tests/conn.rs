//! The connection manager over real sockets on 127.0.0.1: one connection per peer ID, bans
//! that hold, an impostor that cannot displace a peer, and slots that idle connections cannot
//! exhaust. Raw TCP peers play the attackers; sessions play the honest nodes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use peercdn_core::live::{OUR_PC_LIVE_ID, PC_LIVE};
use peercdn_core::metainfo::Metainfo;
use peercdn_core::wire::ext::{ExtHandshake, EXT_HANDSHAKE_ID};
use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::{Bitfield, InfoHash, PeerId};
use peercdn_engine::live::{LiveBuffer, LiveSource, NewPiece};
use peercdn_engine::session::{AddOptions, LiveOptions, Session};
use peercdn_engine::torrent::{Source, TorrentHandle};
use peercdn_testkit::fixtures::{
    addr, config, content, live_descriptor, seeded, torrent_of, ts_payload,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(60);

/// A one-file torrent of `len` bytes in `dir/pub`, pieces of 64 KiB, and that directory.
fn make_torrent(dir: &Path, len: usize) -> (Metainfo, std::path::PathBuf) {
    let pub_dir = dir.join("pub");
    let meta = torrent_of(&pub_dir, "file.bin", &[("", &content(len))], 65536);
    (meta, pub_dir)
}

async fn seed(dir: &Path, m: &Metainfo, pub_dir: &Path) -> (Session, TorrentHandle) {
    let s = Session::start(config(&dir.join("seeder"), vec![]))
        .await
        .unwrap();
    let h = seeded(&s, m, pub_dir).await;
    (s, h)
}

fn peer_id(tag: u16) -> PeerId {
    let mut id = [b'x'; 20];
    id[..2].copy_from_slice(&tag.to_be_bytes());
    PeerId(id)
}

/// Connects and sends a handshake (does not wait for the answer).
async fn raw_dial(to: SocketAddr, ih: InfoHash, id: PeerId) -> TcpStream {
    let mut sock = TcpStream::connect(to).await.unwrap();
    sock.write_all(&Handshake::ours(ih, id).encode())
        .await
        .unwrap();
    sock
}

/// Reads the 68-byte answer: `Some` if the peer answered, `None` if it closed the socket.
async fn answered(sock: &mut TcpStream) -> Option<Handshake> {
    let mut hs = [0u8; 68];
    let r = tokio::time::timeout(BOUND, sock.read_exact(&mut hs))
        .await
        .expect("answered or closed in time");
    r.ok().map(|_| Handshake::decode(&hs).unwrap())
}

/// Waits until the socket is closed by the other end (data read meanwhile is dropped).
async fn wait_closed(sock: &mut TcpStream) {
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("closed in time");
}

async fn wait_peers(h: &TorrentHandle, n: usize) {
    let mut st = h.status.clone();
    tokio::time::timeout(BOUND, st.wait_for(|s| s.peers == n))
        .await
        .expect("peer count reached")
        .unwrap();
}

/// VoD had no dedup by peer ID: a peer that connected twice (or two sockets claiming one ID)
/// took two slots and two upload slots. Now the second connection is closed unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_keeps_one_connection_per_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let (m, pub_dir) = make_torrent(dir.path(), 200_000);
    let (seeder, h) = seed(dir.path(), &m, &pub_dir).await;
    let mut first = raw_dial(addr(&seeder), m.info_hash, peer_id(1)).await;
    assert!(answered(&mut first).await.is_some());
    wait_peers(&h, 1).await;
    let mut second = raw_dial(addr(&seeder), m.info_hash, peer_id(1)).await;
    assert!(
        answered(&mut second).await.is_none(),
        "a second connection for one peer ID"
    );
    // Another ID is welcome.
    let mut other = raw_dial(addr(&seeder), m.info_hash, peer_id(2)).await;
    assert!(answered(&mut other).await.is_some());
    wait_peers(&h, 2).await;
    seeder.shutdown().await;
}

/// A fake seeder that answers every request with zeros (the piece fails its hash) and counts
/// the connections it gets.
async fn lying_seeder(ih: InfoHash, pieces: u32) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let dials = Arc::new(AtomicUsize::new(0));
    let d = dials.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            d.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut hs = [0u8; 68];
                if sock.read_exact(&mut hs).await.is_err() {
                    return;
                }
                let mut out = BytesMut::new();
                out.extend_from_slice(&Handshake::ours(ih, peer_id(666)).encode());
                let have = Bitfield::full(pieces);
                wire::encode(
                    &Message::Bitfield(Bytes::copy_from_slice(have.as_bytes())),
                    &mut out,
                );
                wire::encode(&Message::Unchoke, &mut out);
                if sock.write_all(&out).await.is_err() {
                    return;
                }
                let mut buf = BytesMut::new();
                loop {
                    while let Ok(Some(msg)) = wire::decode(&mut buf, 1 << 20) {
                        if let Message::Request(b) = msg {
                            let mut out = BytesMut::new();
                            wire::encode(
                                &Message::Piece {
                                    index: b.index,
                                    begin: b.begin,
                                    data: Bytes::from(vec![0u8; b.len as usize]),
                                },
                                &mut out,
                            );
                            if sock.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    }
                    match sock.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (a, dials)
}

/// A static peer banned for sending data that fails its hash was re-dialled every second by
/// VoD (the static list re-added it on every drop). Now the ban takes it off the static list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_static_peer_is_not_dialled_again() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = make_torrent(dir.path(), 65536);
    let (liar, dials) = lying_seeder(m.info_hash, 1).await;
    let node = Session::start(config(&dir.path().join("node"), vec![liar]))
        .await
        .unwrap();
    let h = node.add(Source::Metainfo(Box::new(m.clone())), AddOptions::default());
    let mut st = h.status.clone();
    tokio::time::timeout(BOUND, st.wait_for(|s| s.hash_failures > 0))
        .await
        .expect("the lie is found")
        .unwrap();
    wait_peers(&h, 0).await;
    let after_ban = dials.load(Ordering::SeqCst);
    // Static peers are re-dialled one second after a drop: four seconds would show several.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        dials.load(Ordering::SeqCst),
        after_ban,
        "the banned peer was dialled again"
    );
    node.shutdown().await;
}

/// Handshake plus a BEP 10 handshake naming `pc_live`; nothing else.
async fn raw_live_peer(to: SocketAddr, ih: InfoHash, id: PeerId) -> Option<TcpStream> {
    let mut sock = raw_dial(to, ih, id).await;
    answered(&mut sock).await?;
    let mut ours = ExtHandshake::ours(None, None);
    ours.m.push((PC_LIVE.to_string(), OUR_PC_LIVE_ID));
    let mut out = BytesMut::new();
    wire::encode(
        &Message::Extended {
            id: EXT_HANDSHAKE_ID,
            payload: ours.encode(),
        },
        &mut out,
    );
    sock.write_all(&out).await.ok()?;
    Some(sock)
}

fn payload(i: u32) -> Bytes {
    ts_payload(i, 100)
}

/// Waits until `cond` holds (checked every 50 ms).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(BOUND, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not in time"));
}

async fn push_and_wait(source: &mut LiveSource, from: u32, n: u32, viewer: &LiveBuffer) {
    for i in from..from + n {
        source
            .push(NewPiece {
                payload: payload(i),
                keyframe: true,
                discontinuity: false,
                duration_us: 200_000,
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::timeout(BOUND, async {
        while !(from..from + n).all(|i| viewer.has(i)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the viewer got every piece");
}

/// Bans were keyed by `SocketAddr`: a banned peer that reconnected from a new source port was
/// accepted. On loopback the ban now covers its peer ID (elsewhere its IP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_peer_reconnecting_from_a_new_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[51; 32]);
    let desc = live_descriptor(&key, "conn test");
    let id = desc.content_id();
    let viewer = Session::start(config(dir.path(), vec![])).await.unwrap();
    let h = viewer.add_live(desc.clone(), LiveOptions::default());
    let evil = peer_id(7);
    let mut sock = raw_live_peer(addr(&viewer), id, evil)
        .await
        .expect("accepted");
    // A header signed by somebody else's key gets it banned.
    let stranger = SigningKey::from_bytes(&[52; 32]);
    let forged =
        peercdn_core::live::PieceHeader::sign(&stranger, &id, 0, 1, 200_000, 1, &payload(0));
    let mut out = BytesMut::new();
    wire::encode(
        &Message::Extended {
            id: OUR_PC_LIVE_ID,
            payload: peercdn_core::live::LiveMsg::Have(vec![forged]).encode(),
        },
        &mut out,
    );
    sock.write_all(&out).await.unwrap();
    wait_closed(&mut sock).await;
    until("banned", || h.status().banned == 1).await;
    let mut again = raw_dial(addr(&viewer), id, evil).await;
    assert!(
        answered(&mut again).await.is_none(),
        "the banned peer was let back in"
    );
    viewer.shutdown().await;
}

/// A peer claiming the peer ID of a relay a viewer dialled could displace that connection
/// (the live actor kept the connection "opened by the lower peer ID", and the claim was
/// believed): the viewer got nothing from its relay while the impostor held the slot. Now the
/// impostor's connection is held unanswered and the viewer keeps receiving from its relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_cannot_displace_a_live_connection() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[53; 32]);
    let desc = live_descriptor(&key, "conn test");
    let id = desc.content_id();
    let a = Session::start(config(&dir.path().join("a"), vec![]))
        .await
        .unwrap();
    let b = Session::start(config(&dir.path().join("b"), vec![]))
        .await
        .unwrap();
    // The relay has the lower peer ID, so the old tie-break favoured a connection it "opened".
    let (relay, viewer) = if a.peer_id().0 < b.peer_id().0 {
        (a, b)
    } else {
        (b, a)
    };
    let src_h = relay.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let mut source = LiveSource::new(key, src_h.buffer().unwrap(), 0).unwrap();
    let vh = viewer.add_live(
        desc.clone(),
        LiveOptions {
            peers: vec![addr(&relay)],
            ..LiveOptions::default()
        },
    );
    let vbuf = vh.buffer().unwrap();
    until("viewer connected", || vh.status().peers == 1).await;
    push_and_wait(&mut source, 0, 3, &vbuf).await;
    let mut impostor = raw_dial(addr(&viewer), id, relay.peer_id()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    push_and_wait(&mut source, 3, 10, &vbuf).await;
    assert_eq!(vh.status().peers, 1);
    let mut buf = [0u8; 68];
    let got = tokio::time::timeout(Duration::from_millis(200), impostor.read(&mut buf)).await;
    assert!(
        !matches!(got, Ok(Ok(n)) if n > 0),
        "the impostor was answered"
    );
    relay.shutdown().await;
    viewer.shutdown().await;
}

/// 500 idle connections that completed the handshake took all 80 peer slots of a seeder and a
/// real downloader timed out. Now, once their grace period is over, a newcomer evicts an idle
/// peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_with_500_idle_connections_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (m, pub_dir) = make_torrent(dir.path(), 300_000);
    let (seeder, h) = seed(dir.path(), &m, &pub_dir).await;
    let mut idle = Vec::new();
    for i in 0..500u16 {
        if let Ok(s) = TcpStream::connect(addr(&seeder)).await {
            let mut s = s;
            if s.write_all(&Handshake::ours(m.info_hash, peer_id(1000 + i)).encode())
                .await
                .is_ok()
            {
                idle.push(s);
            }
        }
    }
    wait_peers(&h, 80).await;
    let dl = Session::start(config(&dir.path().join("dl"), vec![addr(&seeder)]))
        .await
        .unwrap();
    let dh = dl.add(Source::Metainfo(Box::new(m.clone())), AddOptions::default());
    let mut st = dh.status.clone();
    tokio::time::timeout(
        BOUND,
        st.wait_for(|s| s.total_length > 0 && s.have_bytes == s.total_length),
    )
    .await
    .expect("the real downloader completes")
    .unwrap();
    drop(idle);
    dl.shutdown().await;
    seeder.shutdown().await;
}

/// 90 idle `pc_live` connections took a broadcaster's 80 slots and a real viewer could not
/// join. Now the viewer evicts an idle one and gets the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcaster_with_90_idle_connections_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[54; 32]);
    let desc = live_descriptor(&key, "conn test");
    let id = desc.content_id();
    let src = Session::start(config(&dir.path().join("src"), vec![]))
        .await
        .unwrap();
    let src_h = src.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let mut source = LiveSource::new(key, src_h.buffer().unwrap(), 0).unwrap();
    let mut idle = Vec::new();
    for i in 0..90u16 {
        if let Some(s) = raw_live_peer(addr(&src), id, peer_id(2000 + i)).await {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 80, "the first 80 take every slot");
    let viewer = Session::start(config(&dir.path().join("v"), vec![]))
        .await
        .unwrap();
    let vh = viewer.add_live(
        desc.clone(),
        LiveOptions {
            peers: vec![addr(&src)],
            ..LiveOptions::default()
        },
    );
    until("viewer connected", || vh.status().peers == 1).await;
    push_and_wait(&mut source, 0, 10, &vh.buffer().unwrap()).await;
    drop(idle);
    viewer.shutdown().await;
    src.shutdown().await;
}

/// Each incoming socket spawned a handshake reader with no cap, so a flood of silent sockets
/// grew tasks without bound. Now at most `MAX_HANDSHAKES_IN_FLIGHT` are read at once and a
/// socket beyond that is closed at accept; once the silent ones go, peers are answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_in_flight_are_capped() {
    use peercdn_engine::session::MAX_HANDSHAKES_IN_FLIGHT;
    let dir = tempfile::tempdir().unwrap();
    let (m, pub_dir) = make_torrent(dir.path(), 100_000);
    let (seeder, _h) = seed(dir.path(), &m, &pub_dir).await;
    let mut silent = Vec::new();
    for _ in 0..MAX_HANDSHAKES_IN_FLIGHT {
        silent.push(TcpStream::connect(addr(&seeder)).await.unwrap());
    }
    let mut over = raw_dial(addr(&seeder), m.info_hash, peer_id(1)).await;
    assert!(
        answered(&mut over).await.is_none(),
        "a handshake beyond the cap was read"
    );
    drop(silent);
    // The session frees a slot as it sees each silent socket close: retry until then.
    tokio::time::timeout(BOUND, async {
        loop {
            let mut fresh = raw_dial(addr(&seeder), m.info_hash, peer_id(2)).await;
            if answered(&mut fresh).await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("answered once the silent sockets are gone");
    seeder.shutdown().await;
}

/// The peer listener on `[::]` is dual stack: an IPv4 peer and an IPv6 peer both get in, and
/// the IPv4 one is listed as `127.0.0.1`, not as the mapped `::ffff:127.0.0.1` (which would
/// count it as a second address family in PEX and bans).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_listener_takes_ipv4_and_ipv6_peers() {
    let dir = tempfile::tempdir().unwrap();
    let (m, pub_dir) = make_torrent(dir.path(), 100_000);
    let node = Session::start(peercdn_engine::session::SessionConfig {
        listen: "[::]:0".parse().unwrap(),
        ..config(&dir.path().join("node"), vec![])
    })
    .await
    .unwrap();
    let h = seeded(&node, &m, &pub_dir).await;
    let port = node.listen_port();
    let mut v4 = raw_dial(
        SocketAddr::from(([127, 0, 0, 1], port)),
        m.info_hash,
        peer_id(41),
    )
    .await;
    let mut v6 = raw_dial(
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        m.info_hash,
        peer_id(42),
    )
    .await;
    assert!(
        answered(&mut v4).await.is_some(),
        "the IPv4 peer was not answered"
    );
    assert!(
        answered(&mut v6).await.is_some(),
        "the IPv6 peer was not answered"
    );
    wait_peers(&h, 2).await;
    let mut addrs: Vec<String> = h
        .status
        .borrow()
        .peer_list
        .iter()
        .map(|p| p.addr.ip().to_string())
        .collect();
    addrs.sort();
    assert_eq!(addrs, ["127.0.0.1", "::1"]);
    node.shutdown().await;
}
