//! The engine as a web page on another site sees it, in a real browser: headless Chromium
//! (Debian's `chromium`, which scripts/test.sh installs) loads a page from
//! `http://localhost:PORT` (another site than the engine's `http://127.0.0.1:PORT`) whose
//! script reads the Ace routes (CORS), tries peercdn's own API (the browser must block the
//! read) and sends a cross-site POST that would pause a torrent (the engine must refuse it).
//! All on loopback; the page server is a thread of this test.
#![allow(clippy::disallowed_methods)] // tests: a real clock to bound a wait

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

/// The page: its script writes what it saw as JSON into `#out`.
const PAGE: &str = r#"<!doctype html><html><body><pre id="out">pending</pre><script>
(async () => {
  const q = new URLSearchParams(location.search);
  const E = q.get("engine"), id = q.get("id");
  const r = {};
  try {
    const v = await (await fetch(E + "/webui/api/service?method=get_version")).json();
    r.version = v.result.version;
  } catch (e) { r.version = "ERR " + e; }
  try {
    const s = await (await fetch(E + "/search?query=")).json();
    r.search = s.result.total;
  } catch (e) { r.search = "ERR " + e; }
  try {
    await (await fetch(E + "/api/v1/torrents")).json();
    r.api = "read";
  } catch (e) { r.api = "blocked"; }
  try {
    await fetch(E + "/api/v1/torrents/" + id + "/pause", { method: "POST", mode: "no-cors" });
    r.post = "sent";
  } catch (e) { r.post = "ERR " + e; }
  document.getElementById("out").textContent = JSON.stringify(r);
})();
</script></body></html>"#;

/// Serves [`PAGE`] to every GET on a free port of 127.0.0.1; returns the port.
fn page_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let mut line = String::new();
            // The request line and headers, up to the blank line.
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut s = r.into_inner();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
        }
    });
    port
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(T)
        .build()
        .expect("http client")
}

#[test]
fn a_page_of_another_site_plays_but_changes_nothing() {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "/usr/bin/chromium is missing: scripts/test.sh installs Debian's chromium"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (mut engine, _port, base) = engine_start(d, "engine", &[]);
    let c = http();
    // A torrent the page will try to pause (its metadata from the .torrent: pausable at once).
    let publisher = peercdn_publisher(d, "clip", 5, &[]);
    let r = c
        .post(format!("{base}/api/v1/torrents"))
        .header("content-type", "application/x-bittorrent")
        .body(std::fs::read(&publisher.torrent).expect("the .torrent"))
        .send()
        .expect("add");
    assert!(r.status().is_success(), "add: {}", r.status());
    let added: Value = r.json().expect("add answer");
    let id = added["response"]["id"]
        .as_str()
        .or(added["id"].as_str())
        .unwrap_or_else(|| panic!("no id in {added}"))
        .to_string();

    let page = format!(
        "http://localhost:{}/page.html?engine={base}&id={id}",
        page_server()
    );
    let profile = d.join("chromium-profile");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&page)
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let seen: Value = dom
        .split("<pre id=\"out\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| {
            panic!(
                "no result in the page:\n{dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(seen["version"], "3.1.49", "CORS on the Ace routes: {seen}");
    assert!(seen["search"].is_number(), "CORS on /search: {seen}");
    assert_eq!(seen["api"], "blocked", "the page read /api/v1: {seen}");
    assert_eq!(seen["post"], "sent", "{seen}");
    let state = || -> String {
        let t: Value = c
            .get(format!("{base}/api/v1/torrents/{id}"))
            .send()
            .and_then(|r| r.json())
            .expect("inspect");
        t["state"].as_str().expect("a state").to_string()
    };
    // The status moves about once a second: watch it for three.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        assert_ne!(state(), "paused", "the cross-site POST paused it");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The same POST from a tool pauses it: the check above could see a pause.
    let r = c
        .post(format!("{base}/api/v1/torrents/{id}/pause"))
        .send()
        .expect("pause");
    assert!(r.status().is_success(), "pause: {}", r.status());
    wait_until(Duration::from_secs(10), "the tool's pause", || {
        state() == "paused"
    });
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}
