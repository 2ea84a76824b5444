//! A live viewer paused and resumed, whole processes: a broadcaster with a 5 s window, a relay
//! engine and a viewer engine whose player reads `/ace/getstream`; the viewer is stopped
//! (SIGSTOP, as a closed laptop lid stops it) for longer than twice the window, then resumed.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// The stream's window, seconds (short, so the pause that outlasts it twice stays short).
const WINDOW_S: u64 = 5;

fn json(url: &str) -> serde_json::Value {
    let resp = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = resp.text().unwrap_or_default();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// Reads a progressive stream on a thread, counting its bytes, until the process ends.
fn player(url: String) -> Arc<AtomicU64> {
    let got = Arc::new(AtomicU64::new(0));
    let count = got.clone();
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(600))
            .build()
            .expect("client");
        let Ok(mut resp) = client.get(&url).send() else {
            return;
        };
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = resp.read(&mut buf) {
            if n == 0 {
                return;
            }
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    got
}

/// A viewer paused for longer than twice the window used to ban its honest peers on resume
/// ("stale timestamp" headers waiting in its sockets, indices far beyond its stale edge) and
/// never played again (tried: 0 bytes after resume, 2 honest peers banned). Now it ignores
/// those headers, its window jumps to the live edge, its player jumps to a recent keyframe
/// piece and plays on, and nobody bans anybody.
#[test]
fn a_viewer_paused_for_two_windows_plays_again_and_bans_nobody() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let src = make_live_source(d, "20", "400k");
    let window = WINDOW_S.to_string();
    // Kept to the end: dropping it stops the broadcaster.
    let Broadcast {
        proc: _bc,
        port: bc_port,
        id,
        http: bc_http,
    } = broadcast_start(d, &src, "Pause test", &["--loop", "--window", &window]);
    let bc_http = bc_http.trim_end_matches('/').to_string();

    let bc_addr = format!("127.0.0.1:{bc_port}");
    let (_relay, relay_port, relay_http) = engine_start(d, "relay", &["--peer", &bc_addr]);
    // The relay joins the stream without a player (a playback session only).
    let envelope = json(&format!("{relay_http}/ace/getstream?id={id}&format=json"));
    assert!(envelope["error"].is_null(), "relay: {envelope}");
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let (mut viewer, _, viewer_http) =
        engine_start(d, "viewer", &["--peer", &relay_addr, "--peer", &bc_addr]);
    let played = player(format!("{viewer_http}/ace/getstream?id={id}"));
    wait_until(Duration::from_secs(60), "the player to get 100 kB", || {
        played.load(Ordering::Relaxed) > 100_000
    });

    let pid = viewer.child.id();
    unsafe_free_kill(pid, "-STOP");
    std::thread::sleep(Duration::from_secs(2 * WINDOW_S + 3));
    let at_resume = played.load(Ordering::Relaxed);
    unsafe_free_kill(pid, "-CONT");
    let resumed = std::time::Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the player to get 200 kB after the pause",
        || played.load(Ordering::Relaxed) > at_resume + 200_000,
    );
    eprintln!("playing again {:?} after resume", resumed.elapsed());
    assert!(running(&mut viewer), "viewer:\n{}", viewer.log_text());

    for (name, base) in [
        ("broadcaster", &bc_http),
        ("relay", &relay_http),
        ("viewer", &viewer_http),
    ] {
        let st = json(&format!("{base}/api/v1/live/{id}"));
        assert_eq!(st["banned"].as_u64(), Some(0), "{name} banned a peer: {st}");
    }
    let st = json(&format!("{viewer_http}/api/v1/live/{id}"));
    assert!(st["peers"].as_u64().unwrap_or(0) >= 1, "viewer: {st}");
}
