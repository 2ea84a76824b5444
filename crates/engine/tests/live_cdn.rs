//! The live CDN path over real files and sockets: a publisher mirrors a source's window into a
//! directory served by a tiny static HTTP server on 127.0.0.1; a viewer with no peers plays the
//! stream from that server alone through the fallback; forged files on the server are refused;
//! and ffmpeg, a player that knows nothing of peercdn, plays `live.m3u8`.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use peercdn_core::live::{Descriptor, LiveParams, PieceHeader};
use peercdn_engine::live::cdn::{
    fetch_descriptor, spawn_fallback, spawn_publisher, spawn_publisher_with, CdnClient, CdnError,
    FallbackConfig, Publisher, PublisherConfig,
};
use peercdn_engine::live::{LiveBuffer, LiveSource, NewPiece, Origin};
use peercdn_testkit::fixtures::{ffmpeg_available, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A static file server: GET only, one request per connection, `Content-Length`, 404 for
/// anything missing. Runs until the test's runtime ends.
async fn serve(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let root = root.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 << 10 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req);
                let mut parts = text.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let path = path.split('?').next().unwrap_or("");
                let file = (method == "GET" && !path.contains(".."))
                    .then(|| root.join(path.trim_start_matches('/')))
                    .and_then(|p| std::fs::read(p).ok());
                let resp = match file {
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn stream(piece_ms: u32, window_s: u32) -> (Arc<LiveBuffer>, SigningKey) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let params = LiveParams {
        name: "cdn test".into(),
        pubkey: key.verifying_key().to_bytes(),
        piece_duration_ms: piece_ms,
        max_piece_length: 1 << 20,
        window_s,
    };
    (
        LiveBuffer::new(Descriptor::new(params, vec![], vec![])),
        key,
    )
}

/// Synthetic payload of piece `i`: 1 to 5 TS-like packets.
fn payload(i: u32) -> Bytes {
    peercdn_testkit::fixtures::ts_payload(i, 1 + (i as usize % 5))
}

fn synthetic(i: u32, ms: u32) -> NewPiece {
    NewPiece {
        payload: payload(i),
        keyframe: i.is_multiple_of(2),
        discontinuity: false,
        duration_us: ms * 1000,
    }
}

async fn wait_written(p: &Publisher, n: u64) {
    wait_for("the publisher", 10, || p.stats().pieces_written >= n).await;
}

struct Playlist {
    target: u64,
    media_seq: u64,
    /// (EXTINF seconds, first piece, last piece) per segment `seg/FIRST-LAST.ts`.
    segments: Vec<(f64, u32, u32)>,
    /// Piece indices of the parts (`seg/INDEX.ts`).
    parts: Vec<u32>,
}

/// Parses and checks the shape of a playlist the publisher wrote: low-latency HLS for a static
/// server (no blocking reload, no preload hint), segments of consecutive pieces from keyframes
/// (even pieces in these streams), parts that are consecutive pieces.
fn parse_playlist(text: &str) -> Playlist {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"), "{text}");
    assert!(text.contains("#EXT-X-VERSION:6\n"), "{text}");
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET="), "{text}");
    assert!(
        !text.contains("CAN-BLOCK-RELOAD") && !text.contains("PRELOAD-HINT"),
        "{text}"
    );
    assert!(
        !text.contains("#EXT-X-ENDLIST"),
        "a live playlist never ends"
    );
    let mut target = None;
    let mut media_seq = None;
    let mut segments = Vec::new();
    let mut parts = Vec::new();
    let mut extinf = None;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = Some(v.parse::<u64>().unwrap());
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_seq = Some(v.parse::<u64>().unwrap());
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let secs = v.strip_suffix(',').unwrap();
            assert_eq!(secs.split('.').nth(1).map(str::len), Some(3), "{line}");
            extinf = Some(secs.parse::<f64>().unwrap());
        } else if line.starts_with("#EXT-X-PART:") {
            let uri = line
                .split("URI=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let i = uri
                .strip_prefix("seg/")
                .unwrap()
                .strip_suffix(".ts")
                .unwrap();
            parts.push(i.parse::<u32>().unwrap());
        } else if !line.starts_with('#') {
            let range = line
                .strip_prefix("seg/")
                .unwrap()
                .strip_suffix(".ts")
                .unwrap();
            let (a, b) = range.split_once('-').unwrap();
            segments.push((
                extinf.take().expect("EXTINF before a URI"),
                a.parse::<u32>().unwrap(),
                b.parse::<u32>().unwrap(),
            ));
        }
    }
    let p = Playlist {
        target: target.unwrap(),
        media_seq: media_seq.unwrap(),
        segments,
        parts,
    };
    for w in p.segments.windows(2) {
        assert_eq!(w[0].2 + 1, w[1].1, "segments follow each other: {text}");
    }
    for (d, a, _) in &p.segments {
        assert!(d.round() as u64 <= p.target, "{text}");
        assert_eq!(a % 2, 0, "a segment starts at a keyframe: {text}");
    }
    assert!(p.parts.windows(2).all(|w| w[1] == w[0] + 1), "{text}");
    p
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_writes_segments_and_a_moving_playlist() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, key) = stream(100, 2);
    let id = buffer.content_id().to_hex();
    // A segment left by an earlier run is removed.
    std::fs::create_dir_all(dir.path().join(&id).join("seg")).unwrap();
    std::fs::write(dir.path().join(&id).join("seg/999.ts"), b"stale").unwrap();
    let publisher = spawn_publisher_with(
        buffer.clone(),
        dir.path().to_path_buf(),
        PublisherConfig {
            playlist_duration: Duration::from_secs(1),
            keep_duration: Some(Duration::from_secs(2)),
        },
    )
    .unwrap();
    let sdir = publisher.stream_dir().to_path_buf();
    assert_eq!(sdir, dir.path().join(&id));
    assert!(!sdir.join("seg/999.ts").exists());
    assert_eq!(
        std::fs::read(sdir.join("descriptor.peerlive")).unwrap(),
        buffer.descriptor().to_bytes()
    );

    let mut source = LiveSource::new(key, buffer.clone(), 0).unwrap();
    for i in 0..40 {
        source.push(synthetic(i, 100)).unwrap();
    }
    wait_written(&publisher, 40).await;
    // The playlist is rewritten after the files; wait for the last one.
    let read = || std::fs::read_to_string(sdir.join("live.m3u8")).unwrap_or_default();
    wait_for("the playlist to list piece 39", 5, || {
        read().contains("seg/39.ts")
    })
    .await;
    let first = parse_playlist(&read());
    // 100 ms pieces, a keyframe every other: a segment is 16 pieces (a keyframe once 1.5 s
    // are in), so two complete ones, the third open (its pieces as parts).
    assert_eq!(first.target, 4);
    assert_eq!(first.media_seq, 1);
    assert_eq!(
        first
            .segments
            .iter()
            .map(|s| (s.1, s.2))
            .collect::<Vec<_>>(),
        [(0, 15), (16, 31)]
    );
    assert_eq!(first.parts.last(), Some(&39));

    // In steps: the buffer's window is 2 s, and the publisher writes what it still holds.
    for i in 40..200 {
        source.push(synthetic(i, 100)).unwrap();
        if i % 10 == 9 {
            wait_written(&publisher, u64::from(i) + 1).await;
        }
    }
    wait_for("the playlist to list piece 199", 5, || {
        read().contains("seg/199.ts")
    })
    .await;
    let last = parse_playlist(&read());
    assert!(last.media_seq > 1 && last.segments.len() >= 2, "{}", read());
    // Every listed segment is on disk and is its pieces joined; every piece has a header
    // that verifies and matches it.
    for &(_, a, b) in &last.segments {
        let seg = std::fs::read(sdir.join(format!("seg/{a}-{b}.ts"))).unwrap();
        let mut joined = vec![];
        for i in a..=b {
            let ts = std::fs::read(sdir.join(format!("seg/{i}.ts"))).unwrap();
            let hdr = std::fs::read(sdir.join(format!("seg/{i}.hdr"))).unwrap();
            let h = PieceHeader::decode(&hdr).unwrap();
            h.verify(&buffer.descriptor().params.pubkey, &buffer.content_id())
                .unwrap();
            h.check_payload(&ts).unwrap();
            joined.extend_from_slice(&ts);
        }
        assert_eq!(seg, joined, "seg/{a}-{b}.ts");
        assert_eq!(seg.len() % 188, 0);
    }
    // Bounded disk: segments three behind the playlist at most, and the pieces they hold;
    // nothing older.
    let mut seg_files = vec![];
    let mut pieces = vec![];
    for e in std::fs::read_dir(sdir.join("seg")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".tmp"), "temporary file left: {name}");
        let Some(stem) = name.strip_suffix(".ts") else {
            continue;
        };
        match stem.split_once('-') {
            Some((a, _)) => seg_files.push(a.parse::<u32>().unwrap()),
            None => pieces.push(stem.parse::<u32>().unwrap()),
        }
    }
    seg_files.sort_unstable();
    pieces.sort_unstable();
    let listed_first = last.segments[0].1;
    let behind = seg_files.iter().filter(|&&a| a < listed_first).count();
    assert!(behind <= 3, "{seg_files:?} (listed from {listed_first})");
    let oldest = seg_files[0];
    assert_eq!(pieces, (oldest..200).collect::<Vec<_>>());
    assert!(!sdir.join("seg/0.hdr").exists());
    let st = publisher.stats();
    assert_eq!(st.errors, 0, "{:?}", publisher.last_error());
    assert_eq!(st.segments_deleted, u64::from(oldest));
    assert!(st.bytes_written > 40 * 117);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_without_peers_plays_from_the_cdn_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, key) = stream(100, 4);
    let publisher = spawn_publisher(buffer.clone(), dir.path().to_path_buf()).unwrap();
    let port = serve(dir.path().to_path_buf()).await;
    let id = buffer.content_id().to_hex();

    // The source runs in real time: one 100 ms piece every 100 ms.
    let mut source = LiveSource::new(key, buffer.clone(), 0).unwrap();
    let feeder = tokio::spawn(async move {
        for i in 0..80 {
            source.push(synthetic(i, 100)).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    wait_written(&publisher, 5).await;

    let url = format!("http://127.0.0.1:{port}/{id}/descriptor.peerlive");
    let (desc, bases) = fetch_descriptor(&http(), &url).await.unwrap();
    assert_eq!(desc.content_id(), buffer.content_id());
    assert_eq!(bases, vec![format!("http://127.0.0.1:{port}")]);

    let viewer = LiveBuffer::new(desc);
    let reader = viewer.reader().unwrap();
    let fallback = spawn_fallback(viewer.clone(), bases, http(), FallbackConfig::default());
    assert!(fallback.error().is_none());

    // A player: joins at the first piece the buffer gets (a keyframe), then reads in order.
    wait_for("the join piece", 10, || viewer.range().is_some()).await;
    let (start, _) = viewer.range().unwrap();
    let joined = viewer.get(start).unwrap();
    assert!(joined.header.is_keyframe(), "joins at a keyframe");
    for p in start..start + 20 {
        reader.set_position(p);
        wait_for("the next piece", 10, || viewer.has(p)).await;
        let piece = viewer.get(p).unwrap();
        assert_eq!(piece.origin, Origin::Cdn);
        assert_eq!(piece.payload, payload(p));
    }
    let st = fallback.stats();
    assert!(st.pieces >= 20, "{st:?}");
    assert_eq!(st.verify_failures, 0, "{st:?}");
    assert!(st.playlist_polls > 0, "{st:?}");
    let host = format!("127.0.0.1:{port}");
    assert!(
        st.bytes_by_host
            .iter()
            .any(|(h, n)| *h == host && *n > 20 * 188),
        "{st:?}"
    );
    assert!(
        viewer
            .bytes_in
            .cdn
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 20 * 188
    );

    // Without a player the fallback fetches nothing.
    drop(reader);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = fallback.stats().pieces;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fallback.stats().pieces, before);
    feeder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdn_fills_only_what_peers_do_not_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, key) = stream(200, 10);
    let _publisher = spawn_publisher(buffer.clone(), dir.path().to_path_buf()).unwrap();
    let port = serve(dir.path().to_path_buf()).await;
    let viewer = LiveBuffer::new(buffer.descriptor().clone());

    // A "peer" relays every piece to the viewer as soon as the source makes it, but only
    // announces pieces 8 and 13 without ever delivering them.
    let withheld = [8u32, 13];
    let (src, dst) = (buffer.clone(), viewer.clone());
    let peer = tokio::spawn(async move {
        let mut rx = src.subscribe();
        let mut seq = 0;
        loop {
            let (list, s) = src.inserted_since(seq);
            seq = s;
            for i in list {
                if withheld.contains(&i) {
                    dst.note_exists(i);
                } else if let Some(mut p) = src.get(i) {
                    p.origin = Origin::Peer;
                    dst.insert(p);
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    let mut source = LiveSource::new(key, buffer.clone(), 0).unwrap();
    let feeder = tokio::spawn(async move {
        for i in 0..40 {
            source.push(synthetic(i, 200)).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    wait_for("peers", 10, || viewer.has(2)).await;
    let reader = viewer.reader().unwrap();
    reader.set_position(2);
    let fallback = spawn_fallback(
        viewer.clone(),
        vec![format!("http://127.0.0.1:{port}")],
        http(),
        FallbackConfig::default(),
    );
    for p in 2..18 {
        reader.set_position(p);
        wait_for("the next piece", 10, || viewer.has(p)).await;
        let want = if withheld.contains(&p) {
            Origin::Cdn
        } else {
            Origin::Peer
        };
        assert_eq!(viewer.get(p).unwrap().origin, want, "piece {p}");
    }
    let st = fallback.stats();
    assert_eq!(st.pieces, 2, "only the withheld pieces: {st:?}");
    assert_eq!(st.playlist_polls, 0, "peers keep the edge fresh: {st:?}");
    feeder.abort();
    peer.abort();
}

/// Publishes pieces 0..10 and waits until they are on disk.
async fn published(dir: &Path) -> (Arc<LiveBuffer>, Publisher, PathBuf) {
    let (buffer, key) = stream(100, 10);
    let publisher = spawn_publisher(buffer.clone(), dir.to_path_buf()).unwrap();
    let mut source = LiveSource::new(key, buffer.clone(), 0).unwrap();
    for i in 0..10 {
        source.push(synthetic(i, 100)).unwrap();
    }
    wait_written(&publisher, 10).await;
    let sdir = publisher.stream_dir().to_path_buf();
    wait_for("the playlist", 5, || {
        std::fs::read_to_string(sdir.join("live.m3u8")).is_ok_and(|t| t.contains("seg/9.ts"))
    })
    .await;
    (buffer, publisher, sdir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_files_on_the_cdn_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _publisher, sdir) = published(dir.path()).await;
    let seg = sdir.join("seg");
    // An altered payload, a header with a broken signature, a replayed header, a truncated
    // header.
    let mut ts = std::fs::read(seg.join("5.ts")).unwrap();
    ts[100] ^= 1;
    std::fs::write(seg.join("5.ts"), ts).unwrap();
    let mut hdr = std::fs::read(seg.join("6.hdr")).unwrap();
    hdr[116] ^= 1;
    std::fs::write(seg.join("6.hdr"), hdr).unwrap();
    std::fs::copy(seg.join("8.hdr"), seg.join("7.hdr")).unwrap();
    let mut hdr = std::fs::read(seg.join("4.hdr")).unwrap();
    hdr.push(0);
    std::fs::write(seg.join("4.hdr"), hdr).unwrap();
    let port = serve(dir.path().to_path_buf()).await;

    let base = format!("http://127.0.0.1:{port}/");
    let client = CdnClient::new(http(), buffer.descriptor(), vec![base.clone()]).unwrap();
    for i in [4, 5, 6, 7] {
        let err = client.fetch_piece(i).await.unwrap_err();
        assert!(err.is_verification(), "piece {i}: {err}");
    }
    assert!(matches!(
        client.fetch_piece(7).await,
        Err(CdnError::WrongIndex {
            expected: 7,
            got: 8,
            ..
        })
    ));
    assert!(matches!(
        client.fetch_piece(50).await,
        Err(CdnError::Http { status: 404, .. })
    ));
    let good = client.fetch_piece(8).await.unwrap();
    assert_eq!(good.payload, payload(8));
    assert_eq!(client.latest().await.unwrap(), Some(9));
    let st = client.stats();
    assert_eq!(st.verify_failures, 5, "{st:?}");
    assert_eq!(st.pieces, 1, "{st:?}");

    // The fallback refuses them too: nothing forged enters the viewer's window.
    let viewer = LiveBuffer::new(buffer.descriptor().clone());
    viewer.note_exists(9);
    let reader = viewer.reader().unwrap();
    reader.set_position(5);
    let fallback = spawn_fallback(
        viewer.clone(),
        vec![base],
        http(),
        FallbackConfig {
            lookahead: 1,
            ..FallbackConfig::default()
        },
    );
    // The join fetches a verified keyframe first; then piece 5 is tried and refused.
    wait_for("a refused piece", 10, || {
        fallback.stats().verify_failures > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!viewer.has(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forging_base_is_skipped_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _publisher, sdir) = published(dir.path()).await;
    // A second server holds a copy with every payload altered.
    let evil = tempfile::tempdir().unwrap();
    let id = buffer.content_id().to_hex();
    let evil_seg = evil.path().join(&id).join("seg");
    std::fs::create_dir_all(&evil_seg).unwrap();
    for e in std::fs::read_dir(sdir.join("seg")).unwrap() {
        let e = e.unwrap();
        let mut data = std::fs::read(e.path()).unwrap();
        if e.file_name().to_string_lossy().ends_with(".ts") {
            data[1] ^= 0xff;
        }
        std::fs::write(evil_seg.join(e.file_name()), data).unwrap();
    }
    let good_port = serve(dir.path().to_path_buf()).await;
    let evil_port = serve(evil.path().to_path_buf()).await;
    let client = CdnClient::new(
        http(),
        buffer.descriptor(),
        vec![
            format!("http://127.0.0.1:{evil_port}"),
            format!("http://127.0.0.1:{good_port}"),
        ],
    )
    .unwrap();
    let piece = client.fetch_piece(3).await.unwrap();
    assert_eq!(piece.payload, payload(3));
    let st = client.stats();
    assert_eq!(st.verify_failures, 1);
    assert_eq!(st.bytes_by_host.len(), 2);
    assert!(st.bytes_by_host.iter().all(|(_, n)| *n > 0), "{st:?}");
    // The good base is now preferred.
    client.fetch_piece(4).await.unwrap();
    assert_eq!(client.stats().verify_failures, 1);
}

// ---------------------------------------------------------------------------------------------
// ffmpeg plays the published playlist
// ---------------------------------------------------------------------------------------------

/// Cuts a TS file into pieces of whole packets: a new piece at every video random access point
/// and in the middle of each GOP (by counting video PES starts), so about 0.5 s each at 25 fps
/// with a 1 s GOP.
fn cut(ts: &[u8], fps: u32, frames_per_piece: u32) -> Vec<NewPiece> {
    let frame_us = 1_000_000 / fps;
    let mut pieces = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut cur_key = false;
    let mut frames = 0u32;
    for pkt in ts.chunks_exact(188) {
        assert_eq!(pkt[0], 0x47, "TS sync");
        let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
        let pusi = pkt[1] & 0x40 != 0;
        let has_af = pkt[3] & 0x20 != 0;
        let rai = has_af && pkt[4] > 0 && pkt[5] & 0x40 != 0;
        let video_start = pid == 0x100 && pusi;
        if video_start && (rai || frames >= frames_per_piece) && frames > 0 {
            pieces.push(NewPiece {
                payload: Bytes::from(std::mem::take(&mut cur)),
                keyframe: cur_key,
                discontinuity: false,
                duration_us: frames * frame_us,
            });
            frames = 0;
        }
        if video_start {
            if frames == 0 {
                cur_key = rai;
            }
            frames += 1;
        }
        cur.extend_from_slice(pkt);
    }
    if frames > 0 {
        pieces.push(NewPiece {
            payload: Bytes::from(cur),
            keyframe: cur_key,
            discontinuity: false,
            duration_us: frames * frame_us,
        });
    }
    pieces
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_the_published_playlist() {
    if !ffmpeg_available() {
        eprintln!("ffmpeg not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("x.ts");
    let st = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
            "-f",
            "mpegts",
        ])
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let pieces = cut(&std::fs::read(&src).unwrap(), 25, 13);
    assert!(pieces.len() >= 16, "{} pieces", pieces.len());
    assert!(pieces.iter().filter(|p| p.keyframe).count() >= 8);

    let publish = dir.path().join("pub");
    let (buffer, key) = stream(500, 30);
    let publisher = spawn_publisher(buffer.clone(), publish.clone()).unwrap();
    let port = serve(publish.clone()).await;
    let mut source = LiveSource::new(key, buffer.clone(), 0).unwrap();
    let feeder = tokio::spawn(async move {
        for p in pieces {
            let d = Duration::from_micros(p.duration_us.into());
            source.push(p).unwrap();
            tokio::time::sleep(d).await;
        }
    });
    let playlist = publish.join(buffer.content_id().to_hex()).join("live.m3u8");
    wait_for("two segments in the playlist", 20, || {
        std::fs::read_to_string(&playlist).is_ok_and(|t| t.matches("#EXTINF").count() >= 2)
    })
    .await;

    let url = format!(
        "http://127.0.0.1:{port}/{}/live.m3u8",
        buffer.content_id().to_hex()
    );
    // ffmpeg starts three segments from the end (or at the first); segments start at
    // keyframes, so it decodes without a single error (it once needed `-prefer_x_start 1` and
    // the playlist's EXT-X-START, pieces cut mid-GOP being segments).
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(["-i", &url, "-t", "3", "-f", "null", "-"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("ffmpeg finishes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg reported errors: {stderr}");
    assert_eq!(publisher.stats().errors, 0);
    feeder.abort();
}
