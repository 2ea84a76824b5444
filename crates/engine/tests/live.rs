//! Live streams over real sockets on 127.0.0.1: a source session pushing signed pieces, viewer
//! sessions in a chain and a mesh (one joining by ID alone), and an evil raw-TCP peer that
//! announces a forged piece and gets banned.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use peercdn_core::live::{Descriptor, LiveMsg, PieceHeader, OUR_PC_LIVE_ID, PC_LIVE};
use peercdn_core::wire::ext::{ExtHandshake, EXT_HANDSHAKE_ID};
use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::PeerId;
use peercdn_engine::live::{LiveBuffer, LiveHandle, LiveSource, NewPiece};
use peercdn_engine::session::{AddOptions, LiveOptions, Resolved, Session, SessionConfig};
use peercdn_testkit::fixtures::{self, addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(dir: &Path) -> SessionConfig {
    fixtures::config(dir, vec![])
}

fn descriptor(key: &SigningKey) -> Descriptor {
    fixtures::live_descriptor(key, "engine live test")
}

/// A TS-like payload of 60 to 220 packets.
fn payload(i: u32) -> Bytes {
    fixtures::ts_payload(i, 60 + (i as usize % 5) * 40)
}

async fn ready(h: &LiveHandle) -> Arc<LiveBuffer> {
    tokio::time::timeout(Duration::from_secs(20), h.wait_ready())
        .await
        .expect("descriptor in time")
        .expect("stream running")
}

async fn wait_all(name: &str, b: &LiveBuffer, n: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if (0..n).all(|i| b.has(i)) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<u32> = (0..n).filter(|i| !b.has(*i)).collect();
            panic!("{name} lacks pieces {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_in_a_chain_and_by_id_receive_every_piece() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[42; 32]);
    let desc = descriptor(&key);
    let id = desc.content_id();
    let start = |n: &str| Session::start(config(&dir.path().join(n)));
    let src = start("src").await.unwrap();
    let src_h = src.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let src_buf = src_h.buffer().expect("buffer at once");
    let mut source = LiveSource::new(key, src_buf.clone(), 0).unwrap();

    let v1 = start("v1").await.unwrap();
    let v2 = start("v2").await.unwrap();
    let v3 = start("v3").await.unwrap();
    let v4 = start("v4").await.unwrap();
    let opts = |peers: Vec<SocketAddr>| LiveOptions {
        peers,
        ..LiveOptions::default()
    };
    // v1 dials the source; v2 and v3 dial only viewers; v4 knows only the ID and v2.
    let h1 = v1.add_live(desc.clone(), opts(vec![addr(&src)]));
    let h2 = v2.add_live(desc.clone(), opts(vec![addr(&v1)]));
    let h3 = v3.add_live(desc.clone(), opts(vec![addr(&v1), addr(&v2)]));
    let h4 = match v4
        .resolve_id(
            id,
            AddOptions {
                peers: vec![addr(&v2)],
                ..AddOptions::default()
            },
        )
        .await
    {
        Resolved::Live(h) => h,
        other => panic!("a live ID resolved as {other:?}"),
    };
    let bufs = [
        ready(&h1).await,
        ready(&h2).await,
        ready(&h3).await,
        ready(&h4).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    const N: u32 = 15;
    for i in 0..N {
        source
            .push(NewPiece {
                payload: payload(i),
                keyframe: i % 5 == 0,
                discontinuity: false,
                duration_us: 200_000,
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for (n, b) in bufs.iter().enumerate() {
        wait_all(&format!("viewer {}", n + 1), b, N).await;
        for i in 0..N {
            let p = b.get(i).unwrap();
            p.header.verify(&desc.params.pubkey, &id).unwrap();
            p.header.check_payload(&p.payload).unwrap();
            assert_eq!(p.payload, payload(i));
        }
    }
    // The status shows the traffic.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let s1 = h1.status();
    assert!(s1.peers >= 1 && s1.p2p_downloaded > 0, "{s1:?}");
    assert_eq!(s1.last, Some(N - 1));
    assert!(src_h.status().uploaded > 0);
    assert!(src_h.status().is_source);
    assert_eq!(h4.status().name.as_deref(), Some("engine live test"));
    for s in [&src, &v1, &v2, &v3, &v4] {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_peer_with_a_forged_piece_is_banned() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[43; 32]);
    let desc = descriptor(&key);
    let id = desc.content_id();
    let viewer = Session::start(config(dir.path())).await.unwrap();
    let h = viewer.add_live(desc.clone(), LiveOptions::default());

    let mut sock = TcpStream::connect(addr(&viewer)).await.unwrap();
    sock.write_all(&Handshake::ours(id, PeerId::ours([7; 12])).encode())
        .await
        .unwrap();
    let mut hs = [0u8; 68];
    sock.read_exact(&mut hs).await.unwrap();
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
    // A piece signed by somebody else's key, announced and then pushed.
    let stranger = SigningKey::from_bytes(&[44; 32]);
    let data = payload(0);
    let forged = PieceHeader::sign(&stranger, &id, 0, 1, 200_000, 1, &data);
    wire::encode(
        &Message::Extended {
            id: OUR_PC_LIVE_ID,
            payload: LiveMsg::Have(vec![forged]).encode(),
        },
        &mut out,
    );
    wire::encode(
        &Message::Piece {
            index: 0,
            begin: 0,
            data: data.slice(..data.len().min(16384)),
        },
        &mut out,
    );
    sock.write_all(&out).await.unwrap();
    // The viewer hangs up.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the evil peer was not disconnected");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let st = h.status();
    assert_eq!(st.banned, 1, "{st:?}");
    assert_eq!(st.peers, 0);
    assert!(h.buffer().unwrap().get(0).is_none());
    viewer.shutdown().await;
}

/// `resolve_id` on an ordinary torrent's ID fetches its info dictionary and starts a VoD
/// torrent with it, which downloads as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_id_of_a_torrent_starts_a_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pub_dir = d.join("pub");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let m = fixtures::torrent_of(&pub_dir, "file.bin", &[("", &data)], 65536);
    let id = m.info_hash;
    let seeder = Session::start(config(&d.join("a"))).await.unwrap();
    fixtures::seed(&seeder, &m, &pub_dir);
    let viewer = Session::start(config(&d.join("b"))).await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        viewer.resolve_id(
            id,
            AddOptions {
                peers: vec![addr(&seeder)],
                ..AddOptions::default()
            },
        ),
    )
    .await
    .expect("resolved before the timeout");
    let Resolved::Vod(h) = r else {
        panic!("a torrent ID resolved as live")
    };
    tokio::time::timeout(Duration::from_secs(5), h.wait_ready())
        .await
        .expect("metadata known")
        .unwrap();
    assert!(viewer.get_live(&id).is_none());
    let mut st = h.status.clone();
    tokio::time::timeout(
        Duration::from_secs(15),
        st.wait_for(|s| s.total_length > 0 && s.have_bytes == s.total_length),
    )
    .await
    .expect("download completes")
    .unwrap();
    viewer.shutdown().await;
    seeder.shutdown().await;
}

/// A source whose uplink carries less than one copy per viewer still feeds four viewers: they
/// relay to each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_source_uplink_is_enough_when_viewers_relay() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[45; 32]);
    let desc = descriptor(&key);
    let start = |n: &str| Session::start(config(&dir.path().join(n)));
    let src = start("src").await.unwrap();
    // About 2× the stream's bitrate (~ 135 kB/s); four viewers need 4×.
    let src_h = src.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            upload_limit: 280_000,
            ..LiveOptions::default()
        },
    );
    let mut source = LiveSource::new(key, src_h.buffer().unwrap(), 0).unwrap();
    let mut viewers = Vec::new();
    let mut handles = Vec::new();
    for n in 0..4 {
        let v = start(&format!("v{n}")).await.unwrap();
        let mut peers = vec![addr(&src)];
        peers.extend(viewers.iter().map(addr));
        handles.push(v.add_live(
            desc.clone(),
            LiveOptions {
                peers,
                ..LiveOptions::default()
            },
        ));
        viewers.push(v);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    const N: u32 = 20;
    for i in 0..N {
        source
            .push(NewPiece {
                payload: payload(i),
                keyframe: true,
                discontinuity: false,
                duration_us: 200_000,
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (n, h) in handles.iter().enumerate() {
        wait_all(&format!("viewer {n}"), &h.buffer().unwrap(), N).await;
    }
    let produced: u64 = (0..N).map(|i| payload(i).len() as u64).sum();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let up = src_h.status().uploaded;
    let relayed: u64 = handles.iter().map(|h| h.status().uploaded).sum();
    eprintln!(
        "source uploaded {:.2} copies, viewers {:.2}",
        up as f64 / produced as f64,
        relayed as f64 / produced as f64
    );
    assert!(up < 3 * produced, "source uploaded {up} for {produced}");
    assert!(relayed > produced, "viewers relayed {relayed}");
    src.shutdown().await;
    for v in &viewers {
        v.shutdown().await;
    }
}

/// A raw peer speaking just enough of the protocol: handshakes, then whatever it is told to
/// send; it answers every REQUEST with `reply(block)` when given one.
struct RawPeer {
    sock: TcpStream,
}

impl RawPeer {
    async fn connect(to: SocketAddr, id: peercdn_core::InfoHash, tag: u8) -> RawPeer {
        let mut sock = TcpStream::connect(to).await.unwrap();
        sock.write_all(&Handshake::ours(id, PeerId::ours([tag; 12])).encode())
            .await
            .unwrap();
        let mut hs = [0u8; 68];
        sock.read_exact(&mut hs).await.unwrap();
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
        wire::encode(&Message::Unchoke, &mut out);
        sock.write_all(&out).await.unwrap();
        RawPeer { sock }
    }

    async fn send(&mut self, msg: Message) {
        let mut out = BytesMut::new();
        wire::encode(&msg, &mut out);
        self.sock.write_all(&out).await.unwrap();
    }

    /// Reads until the other side hangs up (true) or `secs` pass (false), answering requests
    /// with `data` (bytes of the right length, whatever the header says).
    async fn serve_until_closed(&mut self, data: Option<Bytes>, secs: u64) -> bool {
        let mut buf = BytesMut::with_capacity(1 << 16);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Ok(Some(msg)) = wire::decode(&mut buf, 1 << 20) {
                if let (Message::Request(b), Some(d)) = (msg, &data) {
                    let s = b.begin as usize;
                    let e = (s + b.len as usize).min(d.len());
                    let reply = Message::Piece {
                        index: b.index,
                        begin: b.begin,
                        data: d.slice(s..e),
                    };
                    let mut out = BytesMut::new();
                    wire::encode(&reply, &mut out);
                    if self.sock.write_all(&out).await.is_err() {
                        return true;
                    }
                }
            }
            let read = tokio::time::timeout_at(deadline, self.sock.read_buf(&mut buf)).await;
            match read {
                Err(_) => return false,
                Ok(Ok(0)) => return true,
                Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// While a viewer plays an honest stream from the source, raw peers attack: one relays a
/// genuine header and then an altered payload (to a viewer that has only it), one replays a
/// header from long before the window, one a header signed for another content ID. Each is
/// disconnected and banned, and the playing viewer keeps receiving every honest piece.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_replayed_and_foreign_pieces_get_their_senders_banned() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[51; 32]);
    let desc = descriptor(&key);
    let id = desc.content_id();
    let src = Session::start(config(&dir.path().join("src")))
        .await
        .unwrap();
    let src_h = src.add_live(
        desc.clone(),
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let mut source = LiveSource::new(key.clone(), src_h.buffer().unwrap(), 0).unwrap();
    let viewer = Session::start(config(&dir.path().join("viewer")))
        .await
        .unwrap();
    let vh = viewer.add_live(
        desc.clone(),
        LiveOptions {
            peers: vec![addr(&src)],
            ..LiveOptions::default()
        },
    );
    let vb = ready(&vh).await;
    let player = vb.reader().unwrap();
    player.set_position(0);
    let producer = tokio::spawn(async move {
        for i in 0..30u32 {
            source
                .push(NewPiece {
                    payload: payload(i),
                    keyframe: i % 2 == 0,
                    discontinuity: false,
                    duration_us: 200_000,
                })
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now = peercdn_engine::live::now_us();
    let have = |h: PieceHeader| Message::Extended {
        id: OUR_PC_LIVE_ID,
        payload: LiveMsg::Have(vec![h]).encode(),
    };

    // 1. Altered payload: a genuine header relayed from the source (here read from its window)
    //    and garbage bytes of the right length when asked. The target is a second viewer that
    //    has no other peer, so it must fetch from this one.
    let lonely = Session::start(config(&dir.path().join("lonely")))
        .await
        .unwrap();
    let lh = lonely.add_live(desc.clone(), LiveOptions::default());
    let genuine = src_h.buffer().unwrap().get(5).expect("piece 5 made");
    let mut altered = genuine.payload.to_vec();
    altered[100] ^= 0xff;
    let mut p1 = RawPeer::connect(addr(&lonely), id, 61).await;
    p1.send(have(genuine.header)).await;
    // With the genuine block hashes (they check against the signed root): the first altered
    // block fails its own hash.
    let hashes = LiveMsg::Hashes {
        index: 5,
        hashes: peercdn_core::live::block_hashes(&genuine.payload),
    };
    p1.send(Message::Extended {
        id: OUR_PC_LIVE_ID,
        payload: hashes.encode(),
    })
    .await;
    assert!(
        p1.serve_until_closed(Some(altered.into()), 15).await,
        "the peer with the altered payload was not disconnected"
    );
    // The status is published every 250 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(lh.status().banned, 1, "{:?}", lh.status());
    assert!(lh.buffer().unwrap().get(5).is_none());
    lonely.shutdown().await;

    // 2. Replayed: a validly signed header from long before the window.
    let old = PieceHeader::sign(&key, &id, 1, now - 3_600_000_000, 200_000, 0, &payload(1));
    let mut p2 = RawPeer::connect(addr(&viewer), id, 62).await;
    p2.send(have(old)).await;
    assert!(p2.serve_until_closed(None, 10).await, "replayer kept");

    // 3. Another content ID: the same key, a header signed for another stream.
    let other = peercdn_core::InfoHash([9; 20]);
    let foreign = PieceHeader::sign(&key, &other, 28, now, 200_000, 0, &payload(28));
    let mut p3 = RawPeer::connect(addr(&viewer), id, 63).await;
    p3.send(have(foreign)).await;
    assert!(p3.serve_until_closed(None, 10).await, "foreign header kept");

    producer.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(vh.status().banned, 2, "{:?}", vh.status());
    // The honest stream went on: every piece, each with the source's payload.
    wait_all("viewer", &vb, 30).await;
    for i in 0..30 {
        assert_eq!(vb.get(i).unwrap().payload, payload(i), "piece {i}");
    }
    drop(player);
    for s in [&src, &viewer] {
        s.shutdown().await;
    }
}

/// A live ID nobody answered for within `RESOLVE_TIMEOUT` once became a torrent looking for
/// its metadata, for good on that engine (its HLS answered 400 thereafter, and a retry found
/// "the torrent"). Now the answer is `Pending` and the lookup goes on: nothing is fixed, and a
/// later `resolve_id` (here naming the peer that has the stream) joins it and finds it live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_id_whose_peers_are_late_is_found_live() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[43; 32]);
    let desc = descriptor(&key);
    let id = desc.content_id();
    let src = Session::start(config(&dir.path().join("src")))
        .await
        .unwrap();
    src.add_live(
        desc,
        LiveOptions {
            source: true,
            ..LiveOptions::default()
        },
    );
    let viewer = Session::start(config(&dir.path().join("v"))).await.unwrap();
    let r = viewer.resolve_id(id, AddOptions::default()).await;
    assert!(matches!(r, Resolved::Pending), "nobody answered: {r:?}");
    assert!(viewer.get(&id).is_none(), "not fixed as a torrent");
    assert!(viewer.get_live(&id).is_none(), "hidden while looked for");
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        viewer.resolve_id(
            id,
            AddOptions {
                peers: vec![addr(&src)],
                ..AddOptions::default()
            },
        ),
    )
    .await
    .expect("the second request joins the lookup at once");
    assert!(matches!(r, Resolved::Live(_)), "found late: {r:?}");
    assert!(viewer.get_live(&id).is_some());
    assert!(viewer.get(&id).is_none());
    viewer.shutdown().await;
    src.shutdown().await;
}
