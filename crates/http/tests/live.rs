//! The live outputs over real sockets: a session that is the source of a stream (`add_live` +
//! `LiveSource` pushing synthetic pieces of whole 188-byte packets, a keyframe every other
//! piece, ~100 ms apart) served by the HTTP API on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{client, get_json, http_config, serve};
use ed25519_dalek::SigningKey;
use peercdn_core::live::{Descriptor, LiveParams};
use peercdn_engine::live::{LiveBuffer, LiveHandle, LiveSource, NewPiece};
use peercdn_engine::session::{LiveOptions, Session};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinHandle;

const PACKET: usize = 188;

fn descriptor(seed: u8, name: &str, window_s: u32) -> (Descriptor, SigningKey) {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let params = LiveParams {
        name: name.into(),
        pubkey: key.verifying_key().to_bytes(),
        piece_duration_ms: 100,
        max_piece_length: 1 << 20,
        window_s,
    };
    (
        Descriptor::new(params, vec![], vec!["http://127.0.0.1:9/cdn".into()]),
        key,
    )
}

/// Piece `i`: `packets` TS packets, each carrying the piece index after the sync byte.
fn payload(i: u32, packets: usize) -> Bytes {
    let mut v = vec![0u8; packets * PACKET];
    for (n, p) in v.chunks_mut(PACKET).enumerate() {
        p[0] = 0x47;
        p[1..5].copy_from_slice(&i.to_be_bytes());
        p[5..7].copy_from_slice(&(n as u16).to_be_bytes());
    }
    Bytes::from(v)
}

fn is_key(i: u32) -> bool {
    i.is_multiple_of(2)
}

fn is_disc(i: u32) -> bool {
    i % 6 == 2
}

/// A source stream pushing a piece every 100 ms until dropped.
struct Source {
    handle: LiveHandle,
    buffer: Arc<LiveBuffer>,
    pusher: JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.pusher.abort();
    }
}

impl Source {
    async fn start(session: &Session, seed: u8, window_s: u32, packets: usize) -> Source {
        let (desc, key) = descriptor(seed, &format!("channel {seed}"), window_s);
        let handle = session.add_live(
            desc,
            LiveOptions {
                source: true,
                ..Default::default()
            },
        );
        let buffer = handle.buffer().unwrap();
        let mut src = LiveSource::new(key, buffer.clone(), 0).unwrap();
        let pusher = tokio::spawn(async move {
            loop {
                let i = src.next_index();
                src.push(NewPiece {
                    payload: payload(i, packets),
                    keyframe: is_key(i),
                    discontinuity: is_disc(i),
                    duration_us: 100_000,
                })
                .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Source {
            handle,
            buffer,
            pusher,
        }
    }

    fn id(&self) -> String {
        self.handle.content_id().to_hex()
    }

    async fn wait_pieces(&self, n: u32) {
        for _ in 0..200 {
            if self.buffer.range().is_some_and(|(_, l)| l + 1 >= n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the source made no pieces");
    }
}

/// Piece indices in a byte stream, one per run of packets.
fn pieces_in(bytes: &[u8]) -> Vec<u32> {
    let mut out: Vec<u32> = vec![];
    for p in bytes.chunks_exact(PACKET) {
        assert_eq!(p[0], 0x47, "packet boundary");
        let i = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        if out.last() != Some(&i) {
            out.push(i);
        }
    }
    out
}

async fn read_at_least(r: &mut reqwest::Response, n: usize) -> Vec<u8> {
    let mut got = vec![];
    while got.len() < n {
        let c = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .expect("the stream stalled")
            .unwrap()
            .expect("the stream ended");
        got.extend_from_slice(&c);
    }
    got
}

async fn session() -> (tempfile::TempDir, Session) {
    let dir = tempfile::tempdir().unwrap();
    let s = Session::start(common::config(dir.path(), vec![]))
        .await
        .unwrap();
    (dir, s)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..250 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_starts_at_a_keyframe_and_feeds_two_players() {
    let (_dir, s) = session().await;
    let src = Source::start(&s, 1, 30, 20).await;
    src.wait_pieces(5).await;
    let srv = serve(s.clone(), http_config()).await;
    let c = client();
    let url = format!("{}/ace/getstream?id={}", srv.base, src.id());
    let piece_len = 20 * PACKET;

    let edge_before = src.buffer.range().unwrap().1;
    let mut a = c.get(format!("{url}&pid=a")).send().await.unwrap();
    let mut b = c.get(format!("{url}&pid=b")).send().await.unwrap();
    for r in [&a, &b] {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "video/mp2t");
        assert!(r.headers().get(CONTENT_LENGTH).is_none());
    }
    let (ga, gb) = tokio::join!(
        read_at_least(&mut a, 8 * piece_len),
        read_at_least(&mut b, 8 * piece_len)
    );
    for got in [ga, gb] {
        let seq = pieces_in(&got);
        let first = seq[0];
        assert!(is_key(first), "starts at a keyframe piece: {seq:?}");
        assert!(
            first + 2 >= edge_before && first <= edge_before + 2,
            "near the edge {edge_before}: {seq:?}"
        );
        for w in seq.windows(2) {
            assert_eq!(w[1], w[0] + 1, "consecutive: {seq:?}");
        }
        // Exactly the concatenation of the pieces.
        let whole = got.len() / piece_len * piece_len;
        let mut want = vec![];
        for i in first..first + (whole / piece_len) as u32 {
            want.extend_from_slice(&src.buffer.get(i).unwrap().payload);
        }
        assert!(got[..whole] == want[..]);
    }
    assert_eq!(src.buffer.readers(), 2);
    drop(a);
    drop(b);
    eventually("disconnected players unregister", || {
        src.buffer.readers() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_that_falls_behind_jumps_to_a_keyframe() {
    let (_dir, s) = session().await;
    // ~376 KB pieces, 1 s window: a player that does not read for 5 s overflows the socket
    // buffers and falls out of the window.
    let packets = 2000;
    let src = Source::start(&s, 2, 1, packets).await;
    src.wait_pieces(3).await;
    let srv = serve(s.clone(), http_config()).await;
    let mut r = client()
        .get(format!("{}/ace/getstream?id={}", srv.base, src.id()))
        .send()
        .await
        .unwrap();
    let head = read_at_least(&mut r, PACKET).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut got = head;
    let mut seq = vec![];
    for _ in 0..400 {
        got.extend(read_at_least(&mut r, 1).await);
        seq = pieces_in(&got[..got.len() / PACKET * PACKET]);
        if seq.windows(2).any(|w| w[1] > w[0] + 1) && seq.len() > 3 {
            break;
        }
    }
    let jumps: Vec<_> = seq.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    assert!(!jumps.is_empty(), "never jumped: {seq:?}");
    for w in jumps {
        assert!(
            w[1] > w[0] && is_key(w[1]),
            "jump {w:?} lands on a keyframe"
        );
    }
}

/// A live session through the Ace routes: `format=json` (and `sid=`), the playback URL, stat,
/// stop; then low-latency HLS: segments of whole pieces that start at keyframes (a new one at
/// each discontinuity, tagged), parts equal to their segment, the preload hint waited for, a
/// blocking reload answered once its segment exists, 404s for what is not in the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_stat_stop_manifest_and_segments() {
    let (_dir, s) = session().await;
    let src = Source::start(&s, 3, 30, 10).await;
    src.wait_pieces(14).await;
    let srv = serve(s.clone(), http_config()).await;
    let c = client();
    let id = src.id();

    let v: Value = get_json(
        &c,
        format!("{}/ace/getstream?id={id}&format=json&pid=p", srv.base),
    )
    .await;
    assert!(v["error"].is_null(), "{v}");
    let resp = &v["response"];
    assert_eq!(resp["is_live"], 1);
    assert_eq!(resp["infohash"], id.as_str());
    let get = |k: &str| resp[k].as_str().unwrap().to_string();
    let (playback, stat, cmd, manifest) = (
        get("playback_url"),
        get("stat_url"),
        get("command_url"),
        get("manifest_url"),
    );
    assert!(manifest.contains("/ace/manifest.m3u8?id="), "{manifest}");
    assert!(manifest.contains("pid=p"), "{manifest}");
    // Clients of Ace engines before 3.1.29 tag the player with sid= instead.
    let old: Value = get_json(
        &c,
        format!("{}/ace/getstream?id={id}&format=json&sid=old", srv.base),
    )
    .await;
    let m = old["response"]["manifest_url"].as_str().unwrap_or_default();
    assert!(m.contains("pid=old"), "{old}");

    // The playback URL streams; stat follows this player.
    let mut p = c.get(&playback).send().await.unwrap();
    assert_eq!(p.status(), StatusCode::OK);
    let got = read_at_least(&mut p, 3 * 10 * PACKET).await;
    let seq = pieces_in(&got[..got.len() / PACKET * PACKET]);
    let st: Value = get_json(&c, &stat).await;
    let st = &st["response"];
    assert_eq!(st["is_live"], 1, "{st}");
    assert_eq!(st["status"], "dl");
    assert_eq!(st["total_progress"], 0);
    let lp = &st["livepos"];
    let n = |v: &Value| v.as_u64().unwrap();
    let (first, last, pos) = (n(&lp["first"]), n(&lp["last"]), n(&lp["pos"]));
    assert!(first <= last && pos <= last + 1, "{lp}");
    assert!(
        pos > u64::from(seq[0]),
        "the position moved past what was read: {lp}"
    );
    assert_eq!(lp["live_first"], lp["first"]);
    assert_eq!(lp["live_last"], lp["last"]);
    assert!(n(&lp["first_ts"]) <= n(&lp["last_ts"]));
    assert_eq!(n(&lp["buffer_pieces"]), last - first + 1);
    assert!(n(&st["delay_ms"]) < 10_000, "{st}");
    assert_eq!(st["p2p_downloaded"], 0);
    assert_eq!(st["cdn_downloaded"], 0);

    // liveseek to the window's start (livepos first_ts): the stream goes on from the keyframe
    // piece made at or before then, far behind where it was.
    let r: Value = get_json(
        &c,
        format!("{cmd}?method=liveseek&pos={}", n(&lp["first_ts"])),
    )
    .await;
    assert_eq!(r["response"], "ok", "{r}");
    let more = read_at_least(&mut p, 20 * 10 * PACKET).await;
    let mut after = vec![*seq.last().unwrap()];
    after.extend(pieces_in(&more[..more.len() / PACKET * PACKET]));
    let back = after
        .windows(2)
        .find(|w| w[1] < w[0])
        .unwrap_or_else(|| panic!("the stream did not jump back: {after:?}"));
    assert!(
        is_key(back[1]) && u64::from(back[1]) <= first + 1,
        "{back:?} ({lp})"
    );
    let r: Value = get_json(&c, format!("{cmd}?method=liveseek")).await;
    assert!(r["error"].as_str().unwrap().contains("pos"), "{r}");

    // stop ends the session and its stream.
    let r: Value = get_json(&c, format!("{cmd}?method=stop")).await;
    assert_eq!(r["response"], "ok");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = p.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended after stop");
    // (An Ace JSON error: 200 with the message, the status in a header.)
    assert_eq!(
        c.get(&stat).send().await.unwrap().headers()["x-peercdn-status"],
        "404"
    );
    assert!(
        s.get_live(&src.handle.content_id()).is_some(),
        "not ours to remove"
    );

    // HLS (low latency): playlist shape, segments of whole pieces from keyframes (a new one
    // at each discontinuity), parts, the preload hint, a blocking reload.
    let r = c.get(&manifest).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "application/vnd.apple.mpegurl");
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "#EXTM3U",
            "#EXT-X-VERSION:6",
            "#EXT-X-TARGETDURATION:4",
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.300",
            "#EXT-X-PART-INF:PART-TARGET=0.100",
        ],
        "{text}"
    );
    let seq0: u64 = lines[5]
        .strip_prefix("#EXT-X-MEDIA-SEQUENCE:")
        .unwrap()
        .parse()
        .unwrap();
    let uri = |l: &str| {
        l.split("URI=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    let mut number = seq0;
    let mut segments = vec![];
    let mut parts: Vec<String> = vec![];
    let mut after_discontinuity = false;
    for line in &lines[6..] {
        if *line == "#EXT-X-DISCONTINUITY" {
            after_discontinuity = true;
        } else if line.starts_with("#EXT-X-PART:") {
            parts.push(uri(line));
        } else if !line.starts_with('#') {
            assert!(
                line.ends_with(&format!("/ace/l/{id}/s{number}.ts?pid=p")),
                "{line}: {text}"
            );
            segments.push((
                line.to_string(),
                std::mem::take(&mut parts),
                after_discontinuity,
            ));
            after_discontinuity = false;
            number += 1;
        }
    }
    assert!(segments.len() >= 3, "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{text}");
    for (url, parts, disc) in &segments {
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert_eq!(r.headers()[CONTENT_TYPE], "video/mp2t");
        let body = r.bytes().await.unwrap();
        let pieces = pieces_in(&body);
        assert!(is_key(pieces[0]), "{url} starts at a keyframe: {pieces:?}");
        assert_eq!(*disc, is_disc(pieces[0]), "{url}: {pieces:?}");
        assert!(pieces.windows(2).all(|w| w[1] == w[0] + 1), "{pieces:?}");
        assert!(
            !pieces[1..].iter().any(|&i| is_disc(i)),
            "{url}: {pieces:?}"
        );
        let want: Vec<u8> = pieces
            .iter()
            .flat_map(|&i| src.buffer.get(i).unwrap().payload.to_vec())
            .collect();
        assert_eq!(body.to_vec(), want, "{url}");
        if !parts.is_empty() {
            let mut joined = vec![];
            for p in parts {
                joined.extend_from_slice(&c.get(p).send().await.unwrap().bytes().await.unwrap());
            }
            assert_eq!(joined, want, "{url}: its parts are its pieces");
        }
    }
    assert!(src.buffer.readers() >= 1, "the HLS client is a reader");
    // The preload hint names the next piece: its request waits for it.
    let hint = uri(lines
        .iter()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap());
    let next: u32 = hint
        .rsplit('/')
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let r = c.get(&hint).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), payload(next, 10));
    // A blocking reload for the segment after the open one returns once it has begun.
    let want = number + 1;
    let r = c
        .get(format!("{manifest}&_HLS_msn={want}&_HLS_part=0"))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!("/s{number}.ts?")),
        "segment {number} completed before the answer: {text}"
    );
    // A segment or part far ahead or long gone is a 404.
    let seg = |name: String| format!("{}/ace/l/{id}/{name}", srv.base);
    for name in [
        format!("{}.ts", next + 1000),
        "s99999.ts".into(),
        "x.ts".into(),
        "sx.ts".into(),
    ] {
        assert_eq!(
            c.get(seg(name.clone())).send().await.unwrap().status(),
            StatusCode::NOT_FOUND,
            "{name}"
        );
    }

    // The manifest's JSON form (VoD manifests: crates/cli/tests/streaming.rs).
    let v: Value = get_json(
        &c,
        format!("{}/ace/manifest.m3u8?id={id}&format=json", srv.base),
    )
    .await;
    assert_eq!(v["response"]["is_live"], 1);
    // Its playback URL is the playlist (an HLS client opens it), and it is one.
    let pb = v["response"]["playback_url"].as_str().unwrap().to_string();
    assert_eq!(Some(pb.as_str()), v["response"]["manifest_url"].as_str());
    let text = c.get(&pb).send().await.unwrap().text().await.unwrap();
    assert!(text.starts_with("#EXTM3U"), "{pb}: {text}");

    // What some clients use: `/hls/manifest.m3u8` (the same route) and, with
    // `use_api_events=1`, an event URL they poll until it says the session is gone.
    let v: Value = get_json(
        &c,
        format!(
            "{}/hls/manifest.m3u8?id={id}&format=json&use_api_events=1",
            srv.base
        ),
    )
    .await;
    assert!(v["error"].is_null(), "{v}");
    let ev = v["response"]["event_url"]
        .as_str()
        .expect("event_url")
        .to_string();
    let cmd = v["response"]["command_url"].as_str().unwrap().to_string();
    let r: Value = get_json(&c, format!("{cmd}?method=stop")).await;
    assert_eq!(r["response"], "ok");
    let e: Value = get_json(&c, ev).await;
    assert_eq!(e["error"], "unknown playback session id", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_metrics_openapi_and_a_bare_id() {
    let (_dir, s) = session().await;
    let src = Source::start(&s, 4, 30, 5).await;
    src.wait_pieces(4).await;
    let srv = serve(s.clone(), http_config()).await;
    let c = client();
    let id = src.id();

    let v: Value = get_json(&c, format!("{}/api/v1/live", srv.base)).await;
    let list = v["live"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["name"], "channel 4");
    assert_eq!(list[0]["piece_duration_ms"], 100);
    let one: Value = get_json(&c, format!("{}/api/v1/live/{id}", srv.base)).await;
    assert_eq!(one["id"], id.as_str());
    assert!(one["last"].as_u64().unwrap() >= 3);
    assert_eq!(
        c.get(format!("{}/api/v1/live/{}", srv.base, "cd".repeat(20)))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // A bare live ID through getstream (resolve_id finds the running stream).
    let mut r = c
        .get(format!(
            "{}/ace/getstream?content_id=acestream://{id}",
            srv.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = read_at_least(&mut r, 2 * 5 * PACKET).await;
    assert!(is_key(pieces_in(&got[..got.len() / PACKET * PACKET])[0]));
    // And a playback session (format=json), being streamed to.
    let v: Value = get_json(
        &c,
        format!("{}/ace/getstream?id={id}&format=json", srv.base),
    )
    .await;
    let playback = v["response"]["playback_url"]
        .as_str()
        .expect("playback_url");
    let mut p = c.get(playback).send().await.unwrap();
    assert_eq!(p.status(), StatusCode::OK);
    read_at_least(&mut p, 5 * PACKET).await;

    let text = c
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("peercdn_live_streams 1\n"), "{text}");
    common::promtool_check(&text);
    assert!(text.contains(&format!(
        "peercdn_live_downloaded_bytes_total{{id=\"{id}\",name=\"channel 4\",origin=\"p2p\"}} 0\n"
    )));
    assert!(text.contains(&format!(
        "peercdn_live_readers{{id=\"{id}\",name=\"channel 4\"}} 2\n"
    )));
    assert!(text.contains("peercdn_live_delay_seconds{"));
    assert!(text.contains(&format!(
        "peercdn_live_cdn_failures_total{{id=\"{id}\",name=\"channel 4\"}} 0\n"
    )));
    // The player being streamed to is counted in the players' delay.
    let delay: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("peercdn_live_player_delay_max_seconds{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no players' delay:\n{text}"));
    assert!((0.0..30.0).contains(&delay), "{delay}");
    drop(p);
    drop(r);

    // The live paths of the OpenAPI document answer.
    let doc: Value = get_json(&c, format!("{}/api/v1/openapi.json", srv.base)).await;
    let last = src.buffer.range().unwrap().1;
    let paths = doc["paths"].as_object().unwrap();
    for (path, q) in [
        ("/api/v1/live", ""),
        ("/api/v1/live/{id}", ""),
        ("/ace/manifest.m3u8", "?id={id}"),
        ("/ace/l/{id}/{segment}", ""),
    ] {
        assert!(paths.contains_key(path), "{path} documented");
        let url = format!("{}{path}{q}", srv.base)
            .replace("{id}", &id)
            .replace("{segment}", &format!("{last}.ts"));
        let r = c.get(&url).send().await.unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
    }

    // An empty stream: the start wait is bounded.
    let (desc, _) = descriptor(5, "empty", 30);
    let empty = s.add_live(desc, LiveOptions::default());
    let mut cfg = http_config();
    cfg.metadata_timeout = Duration::from_millis(500);
    let srv2 = serve(s.clone(), cfg).await;
    let r = c
        .get(format!(
            "{}/ace/getstream?id={}",
            srv2.base,
            empty.content_id().to_hex()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_of_a_descriptor_adds_the_stream() {
    let (_dir, s) = session().await;
    let (desc, _) = descriptor(6, "from url", 30);
    let id = desc.content_id();
    let bytes = desc.to_bytes();
    let path = format!("/pub/{}/descriptor.peerlive", id.to_hex());
    let app = axum::Router::new().route(
        &path,
        axum::routing::get(move || async move { bytes.clone() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let srv = serve(s.clone(), http_config()).await;
    let c = client();
    let v: Value = get_json(
        &c,
        format!(
            "{}/ace/getstream?url=http://{web}{path}&format=json",
            srv.base
        ),
    )
    .await;
    assert!(v["error"].is_null(), "{v}");
    assert_eq!(v["response"]["is_live"], 1);
    assert_eq!(v["response"]["infohash"], id.to_hex().as_str());
    let h = s.get_live(&id).expect("the stream was added");
    assert_eq!(h.buffer().unwrap().descriptor().params.name, "from url");
    // The last stop of a stream getstream started removes it.
    let cmd = v["response"]["command_url"].as_str().unwrap();
    let r = c.get(format!("{cmd}?method=stop")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(s.get_live(&id).is_none());
}

/// The Ace TCP API as HTTPAceProxy and aceproxy drive it, on a live stream: HELLOBG/HELLOTS,
/// READY/AUTH, `START PID` → `STATUS`/`STATE` lines, `START url=… stream=1` and `EVENT
/// livepos` once a second; the URL plays the stream; `STOP` ends the playback session (its
/// URL is gone); a command before READY is `NOTREADY`; `SHUTDOWN` closes the connection and
/// leaves the engine serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ace_tcp_api_starts_a_live_stream_as_proxies_do() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (_dir, s) = session().await;
    let src = Source::start(&s, 21, 30, 4).await;
    src.wait_pieces(5).await;
    let (srv, tcp) = common::serve_ace_tcp(s.clone(), http_config()).await;
    let stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    macro_rules! next {
        () => {
            tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("the engine answers")
                .unwrap()
        };
    }
    macro_rules! say {
        ($($t:tt)*) => {
            w.write_all(format!("{}\r\n", format!($($t)*)).as_bytes()).await.unwrap()
        };
    }
    say!("START PID {} 0 output_format=http", src.id());
    assert_eq!(next!().as_deref(), Some("NOTREADY"));
    say!("HELLOBG version=3");
    let hello = next!().unwrap();
    assert!(
        hello.starts_with("HELLOTS version=3.1.49 version_code=3014900 key="),
        "{hello}"
    );
    assert!(
        hello.contains(&format!("http_port={}", srv.addr.port())),
        "{hello}"
    );
    say!("READY key=whatever-123");
    assert_eq!(next!().as_deref(), Some("AUTH 1"));
    say!("SETOPTIONS use_stop_notifications=1");
    say!("START PID {} 0 output_format=http", src.id());
    let (mut url, mut livepos, mut status) = (None, None, None);
    while url.is_none() || livepos.is_none() || status.is_none() {
        let l = next!().expect("the connection stays open");
        if let Some(rest) = l.strip_prefix("START ") {
            assert!(rest.contains("stream=1"), "{l}");
            assert!(rest.contains(&format!("infohash={}", src.id())), "{l}");
            url = rest
                .split(' ')
                .find_map(|kv| kv.strip_prefix("url="))
                .map(str::to_string);
        } else if l.starts_with("EVENT livepos ") {
            livepos = Some(l);
        } else if l.starts_with("STATUS main:dl;") {
            status = Some(l);
        }
    }
    let livepos = livepos.unwrap();
    for key in [
        "last=",
        "live_first=",
        "pos=",
        "first_ts=",
        "last_ts=",
        "is_live=1",
    ] {
        assert!(livepos.contains(key), "{livepos}");
    }
    let url = url.unwrap();
    assert!(url.starts_with(&srv.base), "{url}");
    let c = client();
    let mut r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = read_at_least(&mut r, 4 * PACKET * 4).await;
    let seq = pieces_in(&got[..got.len() / PACKET * PACKET]);
    assert!(!seq.is_empty());
    // LIVESEEK to the window's start (livepos first_ts): the stream jumps back to a keyframe.
    let first_ts: u64 = livepos
        .split(' ')
        .find_map(|kv| kv.strip_prefix("first_ts="))
        .and_then(|v| v.parse().ok())
        .expect("first_ts");
    say!("LIVESEEK {first_ts}");
    let more = read_at_least(&mut r, 20 * 4 * PACKET).await;
    let mut after = vec![*seq.last().unwrap()];
    after.extend(pieces_in(&more[..more.len() / PACKET * PACKET]));
    let back = after
        .windows(2)
        .find(|w| w[1] < w[0])
        .unwrap_or_else(|| panic!("LIVESEEK did not move the stream back: {after:?}"));
    assert!(is_key(back[1]), "{back:?}");
    drop(r);
    say!("STOP");
    loop {
        let l = next!().unwrap();
        if l == "STATE 0" {
            break;
        }
    }
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    say!("DANCE");
    say!("SHUTDOWN");
    loop {
        match next!() {
            None => break,
            Some(l) => assert!(!l.starts_with("START"), "{l}"),
        }
    }
    // The engine still serves (and the stream the source holds is still there).
    let v: Value = get_json(
        &c,
        format!("{}/webui/api/service?method=get_version", srv.base),
    )
    .await;
    assert!(v["result"]["version"].is_string(), "{v}");
    assert!(s.get_live(&src.handle.content_id()).is_some());
}
