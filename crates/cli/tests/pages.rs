//! The engine's own pages in a real browser (headless Chromium driven by
//! `tests/interop/page_check.cjs`), with a live broadcast and a viewer engine relaying it on
//! loopback: the player page plays, the dashboard shows the stream's rates to the viewer and to
//! the broadcaster and plays the stream in the page, with no console error. Screenshots of each
//! view land in `target/screenshots/` for a person to look at (the README's come from there).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Runs a page check; returns its JSON line, asserting it succeeded.
fn check(dir: &Path, name: &str, args: &[&str]) -> Value {
    let mut p = Proc::spawn(name, page_check(args), &dir.join(format!("{name}.log")));
    let status = p.wait(Duration::from_secs(150));
    let log = p.log_text();
    let seen: Value = log
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{name}: no JSON line:\n{log}"));
    assert!(status.success(), "{name} failed ({status}): {seen}\n{log}");
    eprintln!("{name}: {seen}");
    seen
}

/// Where the screenshots go: `target/screenshots/NAME.png`.
fn screenshot(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).expect("mkdir screenshots");
    dir.join(format!("{name}.png"))
        .to_str()
        .expect("utf8")
        .to_string()
}

/// A 90 s broadcast and a viewer engine that relays it. The player page `/play/ID` of the
/// viewer plays 20 s of media in Chromium (currentTime advancing, no fatal error, no console
/// error) and says how far behind live it is; the viewer's dashboard shows the stream with
/// its download rate and charts, its peer (the broadcaster: client, address, rates, flags)
/// and how far behind the edge that peer is, and its "Watch here" button plays the stream in
/// the page; on a phone-sized screen it is no wider than the screen; the broadcaster's
/// dashboard shows it as broadcasting with its upload against the bitrate and the input's
/// health, and the viewer as a peer.
#[test]
fn player_page_and_dashboard_show_a_live_stream() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let src = make_live_source(d, "90", "1900k");
    let Broadcast {
        proc: mut bc,
        port: bc_port,
        id,
        http: bc_base,
    } = broadcast_start(d, &src, "Pages channel", &[]);
    let source = format!("127.0.0.1:{bc_port}");
    // Receipts every 2 s, so the broadcaster's accounting view fills while the test runs.
    let (mut viewer, _, base) =
        engine_start(d, "viewer", &["--peer", &source, "--receipt-interval", "2"]);

    let seen = check(
        d,
        "player-page",
        &[
            "--url",
            &format!("{base}/play/{id}"),
            "--until",
            "window.peercdnPlayer && peercdnPlayer.currentTime >= 20",
            "--report",
            "window.peercdnPlayer",
            "--screenshot",
            &screenshot("player"),
            "--timeout",
            "75",
            "--width",
            "960",
            "--height",
            "600",
        ],
    );
    let p = &seen["report"];
    assert_eq!(p["live"], true, "{p}");
    assert!(p["fatal"].is_null(), "{p}");
    let delay = p["delay_s"].as_f64().expect("the page shows the delay");
    assert!((0.0..10.0).contains(&delay), "{delay} s behind live: {p}");

    let seen = check(
        d,
        "dashboard-viewer",
        &[
            "--url",
            &format!("{base}/"),
            "--click",
            "Watch here",
            "--click",
            "Peers",
            "--until",
            "document.querySelector('[data-live] svg polyline') && \
             window.peercdnDashboard && peercdnDashboard.live[0].p2p_downloaded > 0 && \
             peercdnDashboard.history.get(peercdnDashboard.live[0].id).length >= 10 && \
             document.querySelector('table.peers')?.innerText.includes('peercdn') && \
             document.querySelector('iframe.player')?.contentWindow.peercdnPlayer?.playing && \
             document.querySelector('iframe.player').contentWindow.peercdnPlayer.peers !== null && \
             document.querySelector('iframe.player').contentWindow.peercdnPlayer.delay_s !== null",
            "--report",
            "({ live: peercdnDashboard.live, text: document.body.innerText })",
            "--screenshot",
            &screenshot("dashboard-viewer"),
        ],
    );
    let text = seen["report"]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("WATCHING") && text.contains("Pages channel"),
        "{text}"
    );
    assert!(text.contains("from peers"), "{text}");
    assert!(text.contains("peers behind the edge"), "{text}");
    // On a phone's screen: the page fits its width (no sideways scrolling).
    let seen_phone = check(
        d,
        "dashboard-phone",
        &[
            "--url",
            &format!("{base}/"),
            "--until",
            "window.peercdnDashboard && peercdnDashboard.live.length > 0",
            "--report",
            "({ scroll: document.documentElement.scrollWidth, width: window.innerWidth })",
            "--screenshot",
            &screenshot("dashboard-phone"),
            "--width",
            "390",
            "--height",
            "844",
        ],
    );
    let r = &seen_phone["report"];
    assert!(
        r["scroll"].as_u64() <= r["width"].as_u64(),
        "the dashboard is wider than a phone: {r}"
    );

    // A player on the viewer while the broadcaster's dashboard is open: its receipts carry
    // how far behind the source it plays, which the accounting view draws.
    let (mut bg_player, _) =
        ffmpeg_decode_start(d, "bg-player", &format!("{base}/ace/getstream?id={id}"));
    let seen = check(
        d,
        "dashboard-broadcaster",
        &[
            "--url",
            &format!("{bc_base}/"),
            "--until",
            "window.peercdnDashboard && peercdnDashboard.live[0] && \
             peercdnDashboard.live[0].up_rate > 0 && peercdnDashboard.live[0].peers >= 1 && \
             peercdnDashboard.history.get(peercdnDashboard.live[0].id).length >= 10 && \
             document.querySelectorAll('[data-live] svg polyline').length === 4 && \
             document.querySelectorAll('[data-accounting] .lagbar').length === 6",
            "--report",
            "({ live: peercdnDashboard.live, ledger: peercdnDashboard.ledger, \
               text: document.body.innerText })",
            "--screenshot",
            &screenshot("dashboard-broadcaster"),
        ],
    );
    let text = seen["report"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("BROADCASTING"), "{text}");
    assert!(
        text.contains("× the stream"),
        "upload against the bitrate: {text}"
    );
    assert!(
        !text.contains("–\npieces / s"),
        "the ingest rate is shown: {text}"
    );
    // The accounting view: the viewer's receipts, and its player's delay behind the source.
    let content = &seen["report"]["ledger"]["report"]["contents"][0];
    assert_eq!(content["viewers"], 1, "{content}");
    assert!(content["p2p_bytes"].as_u64().unwrap_or(0) > 0, "{content}");
    // (A progressive player reads ahead: the last piece it was given is at most a few pieces
    // from the newest, often the newest itself — tens of milliseconds.)
    assert_eq!(content["delay"]["viewers"], 1, "{content}");
    assert!(
        content["delay"]["p50_ms"]
            .as_u64()
            .is_some_and(|d| d < 30_000),
        "the player's delay from its receipts: {content}"
    );
    assert!(text.contains("players behind the source"), "{text}");
    assert!(text.contains("100.0 %\nP2P share"), "{text}");
    let _ = bg_player.child.kill();
    let _ = bg_player.child.wait();
    assert!(running(&mut viewer), "viewer died:\n{}", viewer.log_text());
    assert!(running(&mut bc), "broadcaster died:\n{}", bc.log_text());
}

/// The dashboard's search box: opened at `/?search=harbour` on a broadcaster whose channel has
/// a catalogue record, it lists the channel (title, description, tags, category, language,
/// country, this node as publisher, a play link), and the Search button asks again with the
/// kind chosen; words that match nothing say so.
#[test]
fn dashboard_search_lists_a_channel() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let src = make_live_source(d, "20", "600k");
    let Broadcast {
        proc: mut bc,
        id,
        http: bc_base,
        ..
    } = broadcast_start(
        d,
        &src,
        "harbour-cam",
        &[
            "--title",
            "Evening news from the harbour",
            "--description",
            "Boats coming in at dusk",
            "--tags",
            "news,harbour",
            "--category",
            "news",
            "--lang",
            "en",
            "--country",
            "gb",
            "--loop",
        ],
    );
    let seen = check(
        d,
        "dashboard-search",
        &[
            "--url",
            &format!("{bc_base}/?search=harbour"),
            "--click",
            "Search",
            "--until",
            "window.peercdnDashboard && peercdnDashboard.search && \
             peercdnDashboard.search.results.length === 1 && \
             document.querySelector('#hits tr[data-hit]')",
            "--report",
            "({ search: peercdnDashboard.search, text: document.querySelector('#found').innerText, \
                play: document.querySelector('#hits a').getAttribute('href') })",
            "--screenshot",
            &screenshot("dashboard-search"),
        ],
    );
    let r = &seen["report"];
    assert_eq!(r["search"]["results"][0]["id"], id.as_str(), "{r}");
    let text = r["text"].as_str().unwrap_or_default();
    for want in [
        "Evening news from the harbour",
        "Boats coming in at dusk",
        "news, harbour",
        "news · en · gb",
        "(this node)",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert_eq!(r["play"], format!("/play/{id}"), "{r}");

    let seen = check(
        d,
        "dashboard-search-none",
        &[
            "--url",
            &format!("{bc_base}/?search=volcano"),
            "--until",
            "window.peercdnDashboard && peercdnDashboard.search && \
             document.querySelector('#found:not([hidden])')",
            "--report",
            "document.querySelector('#found').innerText",
        ],
    );
    let text = seen["report"].as_str().unwrap_or_default();
    assert!(text.contains("Nothing found for “volcano”"), "{text}");
    assert!(running(&mut bc), "broadcaster died:\n{}", bc.log_text());
}
