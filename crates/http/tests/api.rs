//! `/api/v1`, `/metrics`, `/` and `url=` fetches over real sockets.

mod common;

use std::time::Duration;

use axum::routing::get;
use common::{client, get_json, http_config, serve, Swarm};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn wait_state(c: &reqwest::Client, url: &str, want: &str) -> Value {
    for _ in 0..100 {
        let v: Value = get_json(c, url).await;
        if v["state"] == want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never reached state {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_list_inspect_pause_resume_delete() {
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let base = format!("{}/api/v1/torrents", srv.base);
    let id = swarm.id();

    let v: Value = get_json(&c, &base).await;
    assert_eq!(v["torrents"], json!([]));

    // Add by ID with the seeder as a peer.
    let r = c
        .post(&base)
        .json(&json!({ "id": id, "peers": [swarm.seeder_addr.to_string(), "junk"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["id"], id.as_str());

    let one = format!("{base}/{id}");
    let t = wait_state(&c, &one, "seeding").await;
    assert_eq!(t["progress"], 1.0);
    assert_eq!(t["name"], "movie");
    let files = t["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert!(files
        .iter()
        .any(|f| f["path"] == "video.ts" && f["length"] == common::VIDEO_LEN as u64));
    assert!(t["magnet"].as_str().unwrap().starts_with("magnet:?"));

    let v: Value = get_json(&c, &base).await;
    let list = v["torrents"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    for k in [
        "id",
        "name",
        "state",
        "progress",
        "total_length",
        "have_bytes",
        "down_rate",
        "up_rate",
        "peers",
        "downloaded",
        "uploaded",
    ] {
        assert!(!list[0][k].is_null(), "{k}");
    }

    let r = c.post(format!("{one}/pause")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    wait_state(&c, &one, "paused").await;
    let r = c.post(format!("{one}/resume")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    wait_state(&c, &one, "seeding").await;

    // Its own limits, set while it runs; a field left out keeps its value; nonsense is a 400.
    let v: Value = c
        .post(format!("{one}/limits"))
        .json(&json!({ "download_limit": 1_000_000, "upload_limit": 250_000 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["download_limit"].as_u64(), v["upload_limit"].as_u64()),
        (Some(1_000_000), Some(250_000)),
        "{v}"
    );
    let v: Value = c
        .post(format!("{one}/limits"))
        .json(&json!({ "upload_limit": 0 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["download_limit"].as_u64(), v["upload_limit"].as_u64()),
        (Some(1_000_000), Some(0)),
        "{v}"
    );
    for bad in [
        json!({ "download_limit": -1 }),
        json!({ "down": 5 }),
        json!("fast"),
    ] {
        let r = c
            .post(format!("{one}/limits"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let v: Value = get_json(&c, &one).await;
    assert_eq!(v["download_limit"], 1_000_000, "{v}");

    // Two media requests: a progressive stream (206) and a VoD segment of a file that is no
    // video (400).
    let r = c
        .get(format!("{}/ace/getstream?id={id}", srv.base))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    drop(r.bytes().await);
    let r = c
        .get(format!("{}/ace/v/{id}/0/999.ts", srv.base))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    // Metrics: every sample line is `name{labels} value` or `name value`.
    let text = c
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    check_metrics(&text);
    common::promtool_check(&text);
    assert!(text.contains("peercdn_torrents 1\n"));
    assert!(
        text.contains("peercdn_http_media_requests_total{kind=\"getstream\",status=\"2xx\"} 1\n")
    );
    assert!(
        text.contains("peercdn_http_media_requests_total{kind=\"vod_segment\",status=\"4xx\"} 1\n")
    );
    assert!(text.contains(&format!(
        "peercdn_progress_ratio{{id=\"{id}\",name=\"movie\"}} 1.000000"
    )));
    for m in [
        "peercdn_downloaded_bytes_total",
        "peercdn_uploaded_bytes_total",
        "peercdn_peers",
    ] {
        assert!(text.contains(&format!("{m}{{id=\"{id}\"")), "{m}");
    }
    // Rates are left to rate(); the build and the process are there.
    assert!(!text.contains("_rate_bytes"), "{text}");
    assert!(text.contains(&format!(
        "peercdn_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    for m in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(m), "{m} missing");
    }

    // Delete, keeping data: the files stay.
    let r = c
        .delete(format!("{one}?delete_data=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .delete(format!("{one}?delete_data=false"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(swarm.dir.path().join("b/dl/movie/video.ts").exists());
    assert_eq!(
        c.get(&one).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.delete(&one).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // Add from a raw .torrent body, then delete with its data.
    let r = c
        .post(&base)
        .header("content-type", "application/x-bittorrent")
        .body(swarm.meta.to_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    wait_state(&c, &one, "seeding").await;
    let r = c
        .delete(format!("{one}?delete_data=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!swarm.dir.path().join("b/dl/movie/video.ts").exists());

    // Bad bodies.
    for (ctype, body) in [
        ("application/json", b"{".to_vec()),
        ("application/json", b"{}".to_vec()),
        ("application/json", br#"{"magnet":"magnet:?x"}"#.to_vec()),
        ("application/json", br#"{"id":"12"}"#.to_vec()),
        ("application/json", br#"{"url":"ftp://x/y"}"#.to_vec()),
        ("application/x-bittorrent", b"d4:infoi1ee".to_vec()),
    ] {
        let r = c
            .post(&base)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().await.unwrap();
        assert!(v["response"].is_null() && v["error"].is_string());
    }

    // The dashboard.
    let r = c.get(format!("{}/", srv.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("/api/v1/torrents"));
    swarm.shutdown().await;
}

fn check_metrics(text: &str) {
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name_labels, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value: {line}"));
        let name = match name_labels.split_once('{') {
            Some((n, rest)) => {
                assert!(rest.ends_with('}'), "labels: {line}");
                n
            }
            None => name_labels,
        };
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "name: {line}"
        );
    }
}

/// Every path in the OpenAPI document answers (with a real torrent and playback session, so no
/// 404 means "no such route").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_routes_exist_and_url_fetch() {
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let id = swarm.id();

    // A .torrent served over loopback, fetched with url=.
    let bytes = swarm.meta.to_bytes();
    let big = vec![b'x'; 20_000];
    let app = axum::Router::new()
        .route("/m.torrent", get(move || async move { bytes.clone() }))
        .route("/big.torrent", get(move || async move { big.clone() }))
        .route("/junk.torrent", get(|| async { "not bencode" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let v: Value = get_json(
        &c,
        format!(
            "{}/ace/getstream?url=http://{web}/m.torrent&format=json",
            srv.base
        ),
    )
    .await;
    assert_eq!(v["response"]["infohash"], id.as_str());
    let playback = v["response"]["playback_url"].as_str().unwrap().to_string();
    let sid = v["response"]["playback_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .get(format!(
            "{}/ace/getstream?url=http://{web}/junk.torrent&format=json",
            srv.base
        ))
        .send()
        .await
        .unwrap();
    // (An Ace JSON error: 200 with the message, the status in a header.)
    assert_eq!(r.headers()["x-peercdn-status"], "502");
    // Over the fetch limit.
    let mut cfg = http_config();
    cfg.url_fetch_limit = 10_000;
    let small = serve(swarm.viewer.clone(), cfg).await;
    let r = c
        .post(format!("{}/api/v1/torrents", small.base))
        .json(&json!({ "url": format!("http://{web}/big.torrent") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let r = c.get(&playback).send().await.unwrap();
    assert!(r.bytes().await.unwrap()[..] == swarm.video[..]);

    let doc: Value = get_json(&c, format!("{}/api/v1/openapi.json", srv.base)).await;
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10);
    // Ending requests (stop, delete) go last, so the others find the session and torrent.
    let mut last = vec![];
    for (path, item) in paths {
        // Live routes need a live stream: tests/live.rs calls them; VoD HLS segments need an
        // MPEG-TS file: crates/cli/tests/streaming.rs calls them.
        if path.contains("/live")
            || path.starts_with("/ace/l/")
            || path.starts_with("/ace/v/")
            || path.contains("manifest")
        {
            continue;
        }
        let concrete = path
            .replace("{id}", &id)
            .replace("{infohash}", &id)
            .replace("{session}", &sid)
            // Someone else's key: subscribed to now, unsubscribed from last.
            .replace("{publisher}", &"ab".repeat(32));
        for method in item.as_object().unwrap().keys() {
            let query = match path.as_str() {
                "/ace/getstream" => format!("?id={id}&format=json"),
                "/ace/cmd/{infohash}/{session}" => "?method=stop".into(),
                "/webui/api/service" => "?method=get_version".into(),
                "/server/api" => format!("?method=get_media_files&infohash={id}"),
                _ => String::new(),
            };
            let url = format!("{}{concrete}{query}", srv.base);
            let req = match method.as_str() {
                "get" if path.starts_with("/ace/cmd/") => {
                    last.push(c.get(&url));
                    continue;
                }
                "get" => c.get(&url),
                "post" if path == "/api/v1/torrents" => c.post(&url).json(&json!({ "id": id })),
                // An empty batch of receipts (a bencoded empty list).
                "post" if path == "/api/v1/receipts" => c.post(&url).body("le"),
                "post" if path.ends_with("/limits") => {
                    c.post(&url).json(&json!({ "upload_limit": 0 }))
                }
                "post" => c.post(&url),
                "delete" => {
                    last.push(c.delete(&url));
                    continue;
                }
                "parameters" => continue,
                m => panic!("method {m} in the document"),
            };
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{method} {path}: {}", r.status());
            // (Ace routes answer errors with 200 too: the header tells them apart.)
            assert!(
                !r.headers().contains_key("x-peercdn-status"),
                "{method} {path}: {:?}",
                r.headers().get("x-peercdn-status")
            );
        }
    }
    for req in last {
        let r = req.send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    swarm.shutdown().await;
}

/// `GET /api/v1/dht` and the `peercdn_dht_*` metrics: `{"enabled":false}` without a DHT; with a
/// private two-node DHT on 127.0.0.1 (node A bootstraps from nobody, node B from A), B's
/// routing table holds A, and a torrent added to B counts a lookup and a stored announce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_figures_in_api_and_metrics() {
    use peercdn_engine::session::{AddOptions, Session};
    use peercdn_engine::torrent::Source;

    let swarm = Swarm::new().await;
    let c = client();
    let off = serve(swarm.viewer.clone(), http_config()).await;
    let v: Value = get_json(&c, format!("{}/api/v1/dht", off.base)).await;
    assert_eq!(v, json!({ "enabled": false }));
    let text = c
        .get(format!("{}/metrics", off.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("peercdn_dht_enabled 0\n"));
    assert!(!text.contains("peercdn_dht_nodes"));

    let d = swarm.dir.path();
    let mut cfg_a = common::config(&d.join("dht-a"), vec![]);
    cfg_a.dht = Some(Some(vec![]));
    let a = Session::start(cfg_a).await.unwrap();
    let a_port = a.dht().unwrap().local_addr().unwrap().port();
    let mut cfg_b = common::config(&d.join("dht-b"), vec![]);
    cfg_b.dht = Some(Some(vec![format!("127.0.0.1:{a_port}")]));
    let b = Session::start(cfg_b).await.unwrap();
    let srv = serve(b.clone(), http_config()).await;
    let url = format!("{}/api/v1/dht", srv.base);

    // B finds A on its own (the crate bootstraps at start), before any lookup.
    let mut v = Value::Null;
    for _ in 0..100 {
        v = get_json(&c, &url).await;
        if v["bootstrapped"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v["enabled"], true, "{v}");
    assert_eq!(v["bootstrapped"], true, "{v}");
    assert!(v["nodes"].as_u64().unwrap() >= 1, "{v}");
    // uTP holds the peer port's UDP side: the DHT has its own port (by default the next).
    assert_eq!(v["port"], b.dht().unwrap().local_addr().unwrap().port());
    assert_ne!(v["port"], b.listen_port(), "the DHT on uTP's port");
    assert!(
        v["malformed"].is_null(),
        "no counter in the DHT crate: null"
    );

    // A torrent on B: one lookup (nobody announced, so it ends empty) and one announce,
    // stored at A.
    b.add(
        Source::Metainfo(Box::new(swarm.meta.clone())),
        AddOptions {
            save_dir: Some(d.join("dht-b-save")),
            ..Default::default()
        },
    );
    for _ in 0..300 {
        v = get_json(&c, &url).await;
        if v["lookups_done"].as_u64() >= Some(1) && v["announces"].as_u64() >= Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(v["lookups"].as_u64() >= Some(1), "{v}");
    assert!(v["lookups_done"].as_u64() >= Some(1), "{v}");
    assert_eq!(v["announces"], 1, "{v}");
    assert_eq!(v["announce_failures"], 0, "{v}");

    let text = c
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    check_metrics(&text);
    assert!(text.contains("peercdn_dht_enabled 1\n"));
    assert!(text.contains("peercdn_dht_bootstrapped 1\n"));
    assert!(text.contains("peercdn_dht_announces_total 1\n"));
    assert!(text.contains("peercdn_dht_announce_failures_total 0\n"));
    for m in [
        "peercdn_dht_nodes ",
        "peercdn_dht_lookups_total ",
        "peercdn_dht_lookups_done_total ",
        "peercdn_dht_peers_found_total ",
    ] {
        assert!(text.contains(m), "{m}");
    }

    // The dashboard has a DHT line.
    let page = c
        .get(format!("{}/", srv.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/api/v1/dht"));

    b.shutdown().await;
    a.shutdown().await;
    swarm.shutdown().await;
}

/// What another web page may do, over real sockets (`guard`): a DNS-rebinding request (the
/// attacker's name in `Host`) is refused unless the engine has a token or the name is
/// configured; the Ace media routes answer CORS preflights and carry
/// `Access-Control-Allow-Origin`, `/api/v1` does not; a cross-site form POST that would add a
/// torrent with peers of the page's choosing, or stop a playback, is refused and changes
/// nothing, while tools and same-origin pages pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_read_media_but_change_nothing() {
    use reqwest::header::{HeaderMap, HeaderValue, HOST};
    let swarm = Swarm::new().await;
    let mut cfg = http_config();
    cfg.allowed_hosts = vec!["tv.home.arpa".into()];
    let srv = serve(swarm.viewer.clone(), cfg).await;
    let c = client();
    let id = swarm.id();
    let port = srv.base.rsplit(':').next().unwrap().to_string();
    let version = format!("{}/webui/api/service?method=get_version", srv.base);

    // Host.
    for (host, ok) in [
        (format!("evil.example:{port}"), false),
        (format!("localhost:{port}"), true),
        (format!("tv.home.arpa:{port}"), true),
        (format!("127.0.0.1:{port}"), true),
    ] {
        let r = c.get(&version).header(HOST, &host).send().await.unwrap();
        assert_eq!(r.status().is_success(), ok, "{host}: {}", r.status());
        if !ok {
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            let v: Value = r.json().await.unwrap();
            assert!(v["error"].as_str().unwrap().contains("Host"), "{v}");
        }
    }

    // CORS: media routes yes, our own API no.
    let r = c
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/ace/getstream?id={id}", srv.base),
        )
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Range"));
    let r = c
        .get(&version)
        .header("origin", "https://player.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = c
        .get(format!("{}/api/v1/torrents", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = c
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/torrents", srv.base),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!r.status().is_success(), "{}", r.status());
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    // Cross-site writes: a form POST, by Sec-Fetch-Site or by Origin alone.
    let evil_peer = json!({ "id": id, "peers": ["192.0.2.1:6881"] });
    let mut cross = HeaderMap::new();
    cross.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    let mut by_origin = HeaderMap::new();
    by_origin.insert("origin", HeaderValue::from_static("http://evil.example"));
    for h in [cross.clone(), by_origin] {
        let r = c
            .post(format!("{}/api/v1/torrents", srv.base))
            .headers(h)
            .json(&evil_peer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let v: Value = get_json(&c, format!("{}/api/v1/torrents", srv.base)).await;
        assert_eq!(v["torrents"].as_array().map(Vec::len), Some(0), "{v}");
    }
    // The same from the engine's own page, and from a tool, are fine.
    let r = c
        .post(format!("{}/api/v1/torrents", srv.base))
        .header("sec-fetch-site", "same-origin")
        .header("origin", srv.base.as_str())
        .json(&json!({ "id": id }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // The Ace command URL is a GET that changes state: refused cross-site.
    let v: Value = get_json(
        &c,
        format!("{}/ace/getstream?id={id}&format=json", srv.base),
    )
    .await;
    let cmd = v["response"]["command_url"].as_str().unwrap().to_string();
    let r = c
        .get(format!("{cmd}?method=stop"))
        .headers(cross)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = get_json(&c, format!("{cmd}?method=stop")).await;
    assert_eq!(v["response"], "ok", "still running, stopped by a tool: {v}");
    drop(srv);

    // With a token any name reaches the engine (the token guards it).
    let mut cfg = http_config();
    cfg.access_token = Some("t".into());
    let srv = serve(swarm.viewer.clone(), cfg).await;
    let r = c
        .get(format!(
            "{}/webui/api/service?method=get_version&token=t",
            srv.base
        ))
        .header(HOST, "tv.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(srv);
    swarm.shutdown().await;
}

/// A `url=` that leads back into the engine's own `getstream?url=` — here a page that
/// redirects there, naming itself again — ends at the first turn with an error, instead of
/// recursing (it once did so about 10,000 times, holding 20,000 descriptors); the same through
/// `POST /api/v1/torrents {"url"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_leading_back_into_the_engine_ends_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap();
    let loop_url = format!("http://{web}/r");
    let enc: String = url::form_urlencoded::byte_serialize(loop_url.as_bytes()).collect();
    let back = format!("{}/ace/getstream?url={enc}&format=json", srv.base);
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/r",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let to = back.clone();
            async move { axum::response::Redirect::temporary(&to) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let v: Value = get_json(
        &c,
        format!("{}/ace/getstream?url={enc}&format=json", srv.base),
    )
    .await;
    assert!(v["error"].is_string(), "{v}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the loop went round");
    let r = c
        .post(format!("{}/api/v1/torrents", srv.base))
        .json(&json!({ "url": loop_url }))
        .send()
        .await
        .unwrap();
    assert!(!r.status().is_success(), "{}", r.status());
    assert_eq!(hits.load(Ordering::SeqCst), 2, "the loop went round");
    // A request marked as a fetch may not fetch, whatever its URL.
    let v: Value = c
        .get(format!(
            "{}/ace/getstream?url=http://{web}/other&format=json",
            srv.base
        ))
        .header("x-peercdn-fetch", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("another url= fetch"),
        "{v}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    drop(srv);
    swarm.shutdown().await;
}

/// Connections that send nothing (slowloris) cannot use up the engine's descriptors: at most
/// `max_connections` are open at once (the rest wait in the kernel's backlog), those on which
/// nothing moves for `idle_timeout` are closed, and an honest request gets through once they
/// are. 1,100 such connections once used up the descriptors while an honest peer download
/// failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_capped_and_closed() {
    use tokio::io::AsyncReadExt;
    let swarm = Swarm::new().await;
    let mut cfg = http_config();
    cfg.max_connections = 8;
    cfg.idle_timeout = Duration::from_secs(1);
    let srv = serve(swarm.viewer.clone(), cfg).await;
    let addr = srv.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // An honest request: it waits for a place, then is served.
    let c = client();
    let metrics = tokio::time::timeout(
        Duration::from_secs(30),
        c.get(format!("{}/metrics", srv.base)).send(),
    )
    .await
    .expect("the honest request got through")
    .unwrap()
    .text()
    .await
    .unwrap();
    let open: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("peercdn_http_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connection gauge in:\n{metrics}"));
    assert!((1..=8).contains(&open), "{open} open");
    assert!(metrics.contains("peercdn_http_connections_max 8"));
    // The idle ones were closed by the engine (end of stream), none served.
    let mut closed = 0;
    for s in &mut idle {
        let mut b = [0u8; 16];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(30), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, idle.len(), "idle connections left open");
    drop(srv);
    swarm.shutdown().await;
}

/// Told to stop, the server returns within its grace period even while an answer is still
/// open (a live stream never ends; here a stream waiting for an ID nobody has): an engine
/// told to stop while a player read a live stream once ran until the player hung up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_endless_answers() {
    let swarm = Swarm::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = http_config();
    cfg.bind = addr;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(peercdn_http::serve(
        swarm.viewer.clone(),
        cfg,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let c = client();
    let open = tokio::spawn(
        c.get(format!(
            "http://{addr}/ace/getstream?id=00000000000000000000000000000000000000ab"
        ))
        .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!open.is_finished(), "the answer is still open");
    let _ = stop.send(());
    let done = tokio::time::timeout(
        peercdn_http::SHUTDOWN_GRACE + Duration::from_secs(3),
        server,
    )
    .await;
    assert!(done.is_ok(), "the server waited for the open answer");
    open.abort();
    swarm.shutdown().await;
}

/// The pages with an access token set: a browser opening the dashboard or a player page
/// without the token gets a login page (401, a form that sends `?token=`) instead of a 401
/// JSON, and one with a wrong token is told so; with the token the page itself. Tools still
/// get the JSON refusal, the vendored scripts and the icon need no token (nothing of the
/// engine's is in them), and the player page is served without the token in its HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_ask_a_browser_for_the_token() {
    use reqwest::header::ACCEPT;
    let swarm = Swarm::new().await;
    let mut cfg = http_config();
    cfg.access_token = Some("s3cret".into());
    let srv = serve(swarm.viewer.clone(), cfg).await;
    let c = client();
    let html = "text/html,application/xhtml+xml";
    for page in ["/", "/play/0123456789abcdef0123456789abcdef01234567"] {
        let r = c
            .get(format!("{}{page}", srv.base))
            .header(ACCEPT, html)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{page}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = r.text().await.unwrap();
        assert!(
            body.contains("name=\"token\"") && !body.contains("not this engine's"),
            "{body}"
        );
        let r = c
            .get(format!("{}{page}?token=wrong", srv.base))
            .header(ACCEPT, html)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.text().await.unwrap().contains("not this engine's"),
            "{page}"
        );
        let r = c
            .get(format!("{}{page}?token=s3cret", srv.base))
            .header(ACCEPT, html)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{page}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("/api/v1/") || body.contains("hls.light.min.js"),
            "{page}"
        );
        assert!(!body.contains("s3cret"), "the HTML never carries the token");
    }
    // A tool gets the JSON refusal.
    let r = c.get(format!("{}/", srv.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("token"), "{v}");
    let r = c
        .get(format!("{}/api/v1/torrents", srv.base))
        .header(ACCEPT, html)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.json::<Value>().await.is_ok(),
        "the API answers JSON, not the login page"
    );
    // The assets need none.
    for (asset, ctype) in [
        ("/assets/hls.light.min.js", "text/javascript"),
        ("/assets/icon.svg", "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),
    ] {
        let r = c.get(format!("{}{asset}", srv.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ctype),
            "{asset}"
        );
    }
    drop(srv);
    swarm.shutdown().await;
}

/// `GET /api/v1/node`: the seeder's listen port, its policies (default encryption, uTP on),
/// no port mapping tried (loopback), not reachable; once the viewer connects, one incoming TCP
/// connection — from loopback, so still not counted as from the Internet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reach_in_the_api() {
    use peercdn_engine::session::AddOptions;
    use peercdn_engine::torrent::Source;

    let swarm = Swarm::new().await;
    let c = client();
    let srv = serve(swarm.seeder.clone(), http_config()).await;
    let url = format!("{}/api/v1/node", srv.base);
    let v: Value = get_json(&c, &url).await;
    assert_eq!(v["port"], swarm.seeder.listen_port(), "{v}");
    assert_eq!(v["encryption"], "prefer", "{v}");
    assert_eq!(v["utp"]["enabled"], true, "{v}");
    assert_eq!(v["utp"]["preferred"], false, "{v}");
    assert_eq!(v["mapping"]["state"], "off", "{v}");
    assert_eq!(v["reachable"], false, "{v}");
    assert_eq!(v["incoming"]["tcp"], 0, "{v}");

    let _h = swarm.viewer.add(
        Source::Metainfo(Box::new(swarm.meta.clone())),
        AddOptions {
            peers: vec![swarm.seeder_addr],
            ..Default::default()
        },
    );
    let mut v = Value::Null;
    for _ in 0..100 {
        v = get_json(&c, &url).await;
        if v["incoming"]["tcp"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v["incoming"]["tcp"], 1, "{v}");
    assert_eq!(v["incoming"]["global"], 0, "{v}");
    assert_eq!(v["reachable"], false, "{v}");
    swarm.shutdown().await;
}
