//! The Ace Stream compatible routes over real sockets: a viewer session's HTTP API streams a
//! file it is downloading from a seeder session.

mod common;

use std::time::Duration;

use common::{client, get_json, http_config, serve, Lcg, Swarm, VIDEO_LEN};
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getstream_ranges_head_and_416() {
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let url = format!("{}/ace/getstream?id={}&pid=p1", srv.base, swarm.id());
    let len = VIDEO_LEN as u64;

    // Random single ranges, in all three forms, while the file downloads.
    let mut rng = Lcg(7);
    for i in 0..12 {
        let a = rng.below(len);
        let (spec, start, end) = match i % 3 {
            0 => {
                let b = (a + rng.below(300_000)).min(len - 1);
                (format!("bytes={a}-{b}"), a, b)
            }
            1 => {
                let a = len - 1 - rng.below(200_000);
                (format!("bytes={a}-"), a, len - 1)
            }
            _ => {
                let n = 1 + rng.below(100_000);
                (format!("bytes=-{n}"), len - n, len - 1)
            }
        };
        let r = c.get(&url).header(RANGE, &spec).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{spec}");
        assert_eq!(r.headers()[ACCEPT_RANGES], "bytes");
        assert_eq!(r.headers()[CONTENT_TYPE], "video/mp2t");
        assert_eq!(
            r.headers()[CONTENT_RANGE].to_str().unwrap(),
            format!("bytes {start}-{end}/{len}")
        );
        assert_eq!(
            r.headers()[CONTENT_LENGTH].to_str().unwrap(),
            (end - start + 1).to_string()
        );
        let body = r.bytes().await.unwrap();
        assert!(
            body[..] == swarm.video[start as usize..=end as usize],
            "{spec}"
        );
    }

    // The whole file, and a multi-range request (answered in full).
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap()[..] == swarm.video[..]);
    let r = c
        .get(&url)
        .header(RANGE, "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[CONTENT_LENGTH].to_str().unwrap(),
        len.to_string()
    );
    drop(r);

    // HEAD: headers only.
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[CONTENT_LENGTH].to_str().unwrap(),
        len.to_string()
    );
    assert_eq!(r.headers()[ACCEPT_RANGES], "bytes");
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c
        .head(&url)
        .header(RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()[CONTENT_LENGTH], "10");

    // Unsatisfiable.
    let r = c
        .get(&url)
        .header(RANGE, format!("bytes={len}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers()[CONTENT_RANGE].to_str().unwrap(),
        format!("bytes */{len}")
    );

    // file_index picks the other file.
    let r = c.get(format!("{url}&file_index=0")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], b"hello");
    let r = c.get(format!("{url}&file_index=9")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A client that walks away mid-stream leaves the server working.
    let r = c.get(&url).send().await.unwrap();
    drop(r);
    let r = c.get(&url).header(RANGE, "bytes=0-9").send().await.unwrap();
    assert!(r.bytes().await.unwrap()[..] == swarm.video[..10]);
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_json_playback_stat_and_stop() {
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let url = format!(
        "{}/ace/getstream?format=json&infohash={}",
        srv.base,
        swarm.id()
    );
    let v: Value = get_json(&c, &url).await;
    assert!(v["error"].is_null());
    let r = &v["response"];
    let sid = r["playback_session_id"].as_str().unwrap().to_string();
    assert_eq!(r["infohash"], swarm.id());
    assert_eq!(r["is_live"], 0);
    assert_eq!(r["is_encrypted"], 0);
    assert_eq!(r["client_session_id"], -1);
    let host = format!("http://{}", srv.addr);
    let playback = r["playback_url"].as_str().unwrap();
    assert_eq!(playback, format!("{host}/ace/r/{}/{sid}", swarm.id()));
    let stat_url = r["stat_url"].as_str().unwrap();
    assert_eq!(stat_url, format!("{host}/ace/stat/{}/{sid}", swarm.id()));
    let cmd_url = r["command_url"].as_str().unwrap();
    assert_eq!(cmd_url, format!("{host}/ace/cmd/{}/{sid}", swarm.id()));

    // A second playback session on the same torrent, from another player.
    let v2: Value = get_json(&c, format!("{url}&pid=other")).await;
    let cmd2 = v2["response"]["command_url"].as_str().unwrap().to_string();
    assert_ne!(v2["response"]["playback_session_id"], sid.as_str());

    let r = c
        .get(playback)
        .header(RANGE, "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(r.bytes().await.unwrap()[..] == swarm.video[1000..2000]);
    let r = c.get(playback).send().await.unwrap();
    assert!(r.bytes().await.unwrap()[..] == swarm.video[..]);

    let st: Value = get_json(&c, stat_url).await;
    let s = &st["response"];
    assert!(st["error"].is_null());
    assert_eq!(s["total_progress"], 100, "{st}");
    assert!(["dl", "prebuf", "check"].contains(&s["status"].as_str().unwrap()));
    for k in ["peers", "speed_down", "speed_up", "downloaded", "uploaded"] {
        assert!(s[k].is_u64(), "{k} in {st}");
    }
    assert_eq!(s["is_live"], 0);
    assert_eq!(s["playback_session_id"], sid.as_str());

    // stop: the first ends its session but the torrent stays (the other session uses it).
    let ok: Value = get_json(&c, format!("{cmd_url}?method=stop")).await;
    assert_eq!(ok["response"], "ok");
    assert!(ok["error"].is_null());
    // Ace's convention: a JSON error is a 200 with the message (the status in a header).
    let r = c.get(stat_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-peercdn-status"], "404");
    let e: Value = r.json().await.unwrap();
    assert!(e["response"].is_null() && e["error"].is_string());
    assert_eq!(
        c.get(playback).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert!(swarm.viewer.get(&swarm.meta.info_hash).is_some());
    // The last stop removes the torrent (getstream started it); its data stays.
    let r = c.get(format!("{cmd2}?method=stop")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(swarm.viewer.get(&swarm.meta.info_hash).is_none());
    let r = c.get(format!("{cmd2}?method=stop")).send().await.unwrap();
    assert_eq!(r.headers()["x-peercdn-status"], "404");
    let r = c
        .get(format!("{cmd_url}?method=dance"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-peercdn-status"], "400");
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("dance"), "{e}");
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_token_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let session = peercdn_engine::session::Session::start(common::config(dir.path(), vec![]))
        .await
        .unwrap();
    let mut cfg = http_config();
    cfg.metadata_timeout = Duration::from_millis(300);
    let srv = serve(session.clone(), cfg.clone()).await;
    let c = client();

    let v: Value = get_json(
        &c,
        format!("{}/webui/api/service?method=get_version", srv.base),
    )
    .await;
    // The Ace API level (clients switch from sid= to pid= at 3.1.29), peercdn's own aside.
    assert_eq!(v["result"]["version"], "3.1.49");
    assert_eq!(v["result"]["code"], 3_014_900);
    assert_eq!(v["result"]["peercdn_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["result"]["platform"], "linux");
    assert!(v["error"].is_null());

    // An ID nobody has: held, then 504 (JSON with format=json is answered at once instead).
    let id = "0123456789abcdef0123456789abcdef01234567";
    let r = c
        .get(format!("{}/ace/getstream?id={id}", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    let r = c
        .get(format!("{}/ace/getstream?id={id}&format=json", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let garbage = [
        "/ace/getstream",
        "/ace/getstream?",
        "/ace/getstream?id=",
        "/ace/getstream?id=zz&format=json",
        "/ace/getstream?content_id=%ZZ%00&format=json",
        "/ace/getstream?magnet=magnet:?xt=urn:btih:nothex",
        "/ace/getstream?magnet=http://x&format=json",
        "/ace/getstream?url=file:///etc/passwd&format=json",
        "/ace/getstream?url=::::&format=json",
        "/ace/getstream?url=http://127.0.0.1:1/x.torrent&format=json",
        "/ace/getstream?id=0123456789abcdef0123456789abcdef01234567&file_index=-1",
        "/ace/getstream?id=0123456789abcdef0123456789abcdef01234567&file_index=99999999999999999999999",
        "/ace/getstream?&&&==&=&a=%",
        "/ace/stat/x/y",
        "/ace/stat/0123456789abcdef0123456789abcdef01234567/nosuch",
        "/ace/cmd/0123456789abcdef0123456789abcdef01234567/nosuch?method=stop",
        "/ace/cmd/zz/zz",
        "/ace/r/zz/zz",
        "/webui/api/service",
        "/webui/api/service?method=%FF%FE",
        "/api/v1/torrents/notanid",
        "/api/v1/torrents/0123456789abcdef0123456789abcdef01234568",
    ];
    for path in garbage {
        let r = c.get(format!("{}{path}", srv.base)).send().await.unwrap();
        let stream_route = path.starts_with("/ace/getstream") || path.starts_with("/ace/r/");
        let ace_json = path.starts_with("/ace/") || path.starts_with("/webui/");
        let ace_json = ace_json && (path.contains("format=json") || !stream_route);
        // Ace's JSON errors are 200s; the status they would have had is in a header.
        let status = match r.headers().get("x-peercdn-status") {
            Some(s) => {
                assert!(ace_json, "{path}: {s:?} on a non-JSON answer");
                assert_eq!(r.status(), StatusCode::OK, "{path}");
                StatusCode::from_bytes(s.as_bytes()).unwrap()
            }
            None => {
                assert!(
                    !ace_json,
                    "{path}: {} without the Ace convention",
                    r.status()
                );
                r.status()
            }
        };
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{path}: {status}"
        );
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let text = r.text().await.unwrap();
        assert!(!text.is_empty(), "{path}: empty error");
        if path.contains("format=json") || !stream_route {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}"));
            assert!(v["response"].is_null() && v["error"].is_string(), "{path}");
        }
    }
    // JSONP: the same answers wrapped in the caller's function; a callback that is not a plain
    // name is refused (it would inject script into the page).
    let r = c
        .get(format!(
            "{}/webui/api/service?method=get_version&format=jsonp&callback=cb_1",
            srv.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    let text = r.text().await.unwrap();
    let inner = text
        .strip_prefix("cb_1(")
        .and_then(|t| t.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not JSONP: {text}"));
    let v: Value = serde_json::from_str(inner).unwrap();
    assert_eq!(v["result"]["version"], "3.1.49");
    let r = c
        .get(format!(
            "{}/ace/getstream?id=zz&format=jsonp&callback=jq.done",
            srv.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-peercdn-status"], "400");
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("jq.done({") && text.ends_with("});"),
        "{text}"
    );
    for cb in ["alert(1)", "", "1x", "a%20b"] {
        let r = c
            .get(format!(
                "{}/webui/api/service?method=get_version&format=jsonp&callback={cb}",
                srv.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-peercdn-status"], "400", "{cb}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("callback"), "{cb}");
    }
    let r = c
        .get(format!("{}/ace/getstream?url=gopher://x", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .get(format!(
            "{}/ace/getstream?url=http://127.0.0.1:1/x.torrent",
            srv.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    drop(srv);

    // With a token: 401 without it, OK with ?token= or a Bearer header; URLs carry it.
    cfg.access_token = Some("s3 cret".into());
    let srv = serve(session.clone(), cfg).await;
    let svc = format!("{}/webui/api/service?method=get_version", srv.base);
    let r = c.get(&svc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string());
    let r = c.get(format!("{svc}&token=wrong")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(format!("{svc}&token=s3%20cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(&svc).bearer_auth("s3 cret").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(format!("{}/metrics", srv.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = c
        .get(format!("{}/ace/getstream?id={id}&format=json", srv.base))
        .bearer_auth("s3 cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stat = v["response"]["stat_url"].as_str().unwrap();
    assert!(stat.ends_with("?token=s3+cret"), "{stat}");
    let r = c.get(stat).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    session.shutdown().await;
}

#[tokio::test]
async fn serve_refuses_public_bind_without_token() {
    let dir = tempfile::tempdir().unwrap();
    let session = peercdn_engine::session::Session::start(common::config(dir.path(), vec![]))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let cfg = http_config();
    let r = peercdn_http::serve(session.clone(), cfg, listener, async {}).await;
    assert!(matches!(r, Err(peercdn_http::HttpError::NeedsToken { .. })));
    session.shutdown().await;
}

/// Ace's server API and search over what the engine holds, in the shapes clients read:
/// `get_media_files` waits for the metadata of a torrent just started and lists its files by
/// index; search matches every word in any case, pages from 0, groups by name on request, and
/// finds nothing for an unknown word or a category; unknown methods and bad IDs are Ace errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_and_search_in_ace_shapes() {
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let get = |path: String| {
        let c = c.clone();
        let url = format!("{}{path}", srv.base);
        async move {
            let r = c.get(&url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            r.json::<Value>().await.unwrap()
        }
    };
    let id = swarm.id();
    // Nothing held yet: an empty search, and no media files for an ID nobody started.
    let v = get("/search?query=movie".into()).await;
    assert_eq!(v["result"]["total"], 0, "{v}");
    assert!(v["result"]["results"].as_array().unwrap().is_empty(), "{v}");
    let v = get(format!(
        "/server/api?api_version=3&method=get_media_files&infohash={id}"
    ))
    .await;
    assert!(v["error"].as_str().unwrap().contains("no torrent"), "{v}");

    // Started: its files by index, right away (the call waits for the metadata).
    let v = get(format!("/ace/getstream?id={id}&format=json")).await;
    assert!(v["error"].is_null(), "{v}");
    let v = get(format!("/server/api?method=get_media_files&infohash={id}")).await;
    assert_eq!(v["result"]["0"], "a.txt", "{v}");
    assert_eq!(v["result"]["1"], "video.ts", "{v}");
    let v = get(format!("/server/api?method=get_content_id&infohash={id}")).await;
    assert_eq!(v["result"]["content_id"], id.as_str());
    let v = get("/server/api?method=get_api_access_token".into()).await;
    assert!(v["result"]["token"].is_string(), "{v}");
    // The health checks engine orchestrators poll: the version, what runs, connected (the
    // viewer has the seeder as a peer once its metadata came).
    let v = get("/server/api?api_version=3&method=get_status".into()).await;
    assert_eq!(v["result"]["version"]["version"], "3.1.49", "{v}");
    assert_eq!(v["result"]["torrents"], 1, "{v}");
    assert_eq!(v["result"]["playback_sessions"], 1, "{v}");
    assert_eq!(v["result"]["playlist_loaded"], false, "{v}");
    let peers = v["result"]["peers"].as_u64().unwrap();
    assert_eq!(v["result"]["connected"], peers > 0, "{v}");
    let v = get("/server/api?api_version=3&method=get_network_connection_status".into()).await;
    assert!(v["result"]["connected"].is_boolean(), "{v}");

    for path in [
        "/search?query=MoViE".to_string(),
        "/server/api?method=search&query=movie&token=peercdn&page=0&page_size=5".into(),
        "/search".into(),
    ] {
        let v = get(path.clone()).await;
        assert_eq!(v["result"]["total"], 1, "{path}: {v}");
        let r = &v["result"]["results"][0];
        assert_eq!(r["infohash"], id.as_str(), "{path}");
        assert_eq!(r["name"], "movie", "{path}");
        assert!(r["categories"].is_array(), "{path}");
        let a = r["availability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{path}: {a}");
        assert!(r["availability_updated_at"].as_u64().unwrap() > 1_600_000_000);
    }
    for path in [
        "/search?query=movie+nothere",
        "/search?query=movie&page=1",
        "/search?query=movie&category=sport",
    ] {
        let v = get(path.into()).await;
        assert!(
            v["result"]["results"].as_array().unwrap().is_empty(),
            "{path}: {v}"
        );
    }
    let v = get("/search?query=movie&group_by_channels=True".into()).await;
    let g = &v["result"]["results"][0];
    assert_eq!(g["name"], "movie", "{v}");
    assert_eq!(g["items"][0]["infohash"], id.as_str(), "{v}");

    for path in [
        "/server/api?method=dance",
        "/server/api",
        "/server/api?method=get_media_files&infohash=zz",
        "/server/api?method=get_content_id",
        "/search?page=x",
    ] {
        let r = c.get(format!("{}{path}", srv.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers().contains_key("x-peercdn-status"), "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    drop(srv);
    swarm.shutdown().await;
}

/// `url=file://` plays a local `.torrent` (launchers pass local files that way) — for this
/// machine's own callers only: a page of another site, or an engine with an access token (it
/// may serve other machines), is refused; a local file that is no torrent gets a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_file_plays_a_local_torrent_for_local_callers_only() {
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let file = swarm.dir.path().join("local movie.torrent");
    std::fs::write(&file, swarm.meta.to_bytes()).unwrap();
    let url = url::Url::from_file_path(&file).unwrap();
    let enc: String = url::form_urlencoded::byte_serialize(url.as_str().as_bytes()).collect();
    let v: Value = get_json(
        &c,
        format!("{}/ace/getstream?url={enc}&format=json", srv.base),
    )
    .await;
    assert!(v["error"].is_null(), "{v}");
    assert_eq!(v["response"]["infohash"], swarm.id().as_str());
    let body = c
        .get(v["response"]["playback_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body[..] == swarm.video[..], "the local torrent's video");

    let ask = |site: Option<&'static str>, base: String| {
        let mut r = c.get(format!("{base}/ace/getstream?url={enc}&format=json"));
        if let Some(s) = site {
            r = r.header("sec-fetch-site", s);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    for site in ["cross-site", "same-site"] {
        let v = ask(Some(site), srv.base.clone()).await;
        assert!(
            v["error"].as_str().unwrap().contains("another site"),
            "{site}: {v}"
        );
    }
    let v = ask(Some("same-origin"), srv.base.clone()).await;
    assert!(v["error"].is_null(), "{v}");
    let not = swarm.dir.path().join("notes.txt");
    std::fs::write(&not, b"not a torrent").unwrap();
    let v: Value = get_json(
        &c,
        format!(
            "{}/ace/getstream?url=file://{}&format=json",
            srv.base,
            not.display()
        ),
    )
    .await;
    assert!(
        v["error"].as_str().unwrap().contains("neither a .torrent"),
        "{v}"
    );
    drop(srv);

    let mut cfg = http_config();
    cfg.access_token = Some("t".into());
    let srv = serve(swarm.viewer.clone(), cfg).await;
    let v: Value = get_json(
        &c,
        format!("{}/ace/getstream?url={enc}&format=json&token=t", srv.base),
    )
    .await;
    assert!(v["error"].as_str().unwrap().contains("access token"), "{v}");
    drop(srv);
    swarm.shutdown().await;
}

/// IDs that never resolve cannot pile up: at most `MAX_UNRESOLVED` are looked for at once
/// (more are refused with a clear error, at once) — 1,000 requests for random IDs once left
/// 1,001 torrents held for good. Past the engine's resolve timeout the places are free again,
/// and no ID was fixed as a torrent (the engine goes on looking in the background, bounded
/// there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_capped_and_expire() {
    use peercdn_http::state::MAX_UNRESOLVED;
    let swarm = Swarm::new().await;
    let mut cfg = http_config();
    cfg.unresolved_ttl = Duration::from_secs(2);
    let srv = serve(swarm.viewer.clone(), cfg).await;
    let c = client();
    let ask = |i: usize| {
        let url = format!("{}/ace/getstream?id={:040x}&format=json", srv.base, i + 1);
        let c = c.clone();
        async move {
            let v: Value = get_json(&c, url).await;
            v
        }
    };
    let extra = 8;
    let asked: Vec<_> = (0..MAX_UNRESOLVED + extra)
        .map(|i| tokio::spawn(ask(i)))
        .collect();
    let mut answers = Vec::new();
    for a in asked {
        answers.push(a.await.unwrap());
    }
    let refused: Vec<&Value> = answers.iter().filter(|v| v["error"].is_string()).collect();
    assert_eq!(refused.len(), extra, "{answers:?}");
    for v in &refused {
        assert!(v["error"].as_str().unwrap().contains("too many IDs"), "{v}");
    }
    let list = |c: reqwest::Client, base: String| async move {
        let v: Value = get_json(&c, format!("{base}/api/v1/torrents")).await;
        v["torrents"].as_array().map_or(0, Vec::len)
    };
    // Answered at once (`format=json`); the engine answers the lookups after its resolve
    // timeout (nobody has these IDs), which frees their places.
    tokio::time::sleep(peercdn_engine::session::RESOLVE_TIMEOUT + Duration::from_secs(3)).await;
    assert_eq!(
        list(c.clone(), srv.base.clone()).await,
        0,
        "no ID fixed as a torrent"
    );
    let next = tokio::spawn(ask(10_000));
    let v = next.await.unwrap();
    assert!(v["error"].is_null(), "{v}");
    drop(srv);
    swarm.shutdown().await;
}

/// Many players asking at once for the same ID nobody here holds yet take one place among the
/// IDs looked for, not one each: fifty readers of one infohash, arriving together before the
/// torrent was added, were refused with 'too many IDs are being looked for' once the count of
/// requests (not of IDs) passed `MAX_UNRESOLVED` (seen in CI, `fifty_concurrent_readers_are_byte_exact`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_one_new_id_share_its_place() {
    use peercdn_http::state::MAX_UNRESOLVED;
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let asked: Vec<_> = (0..MAX_UNRESOLVED + 16)
        .map(|_| {
            let url = format!("{}/ace/getstream?id={:040x}&format=json", srv.base, 7);
            let c = c.clone();
            tokio::spawn(async move {
                let v: Value = get_json(&c, url).await;
                v
            })
        })
        .collect();
    for a in asked {
        let v = a.await.unwrap();
        assert!(v["error"].is_null(), "{v}");
    }
    drop(srv);
    swarm.shutdown().await;
}

/// An ID nobody here holds answers `format=json` at once (Ace clients give up long before the
/// 20 s a lookup may take): a session whose stat says `prebuf` while the ID is looked for,
/// and whose stop works — and takes what the lookup starts with it. Before, the answer came
/// when the lookup ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_answers_at_once_in_prebuf() {
    let swarm = Swarm::new().await;
    let srv = serve(swarm.viewer.clone(), http_config()).await;
    let c = client();
    let asked = peercdn_engine::clock::now();
    let v: Value = get_json(
        &c,
        format!("{}/ace/getstream?id={:040x}&format=json", srv.base, 99),
    )
    .await;
    let answered = peercdn_engine::clock::now().saturating_duration_since(asked);
    assert!(
        answered < peercdn_engine::session::RESOLVE_TIMEOUT / 2,
        "answered after {answered:?}: {v}"
    );
    assert!(v["error"].is_null(), "{v}");
    let stat: Value = get_json(&c, v["response"]["stat_url"].as_str().unwrap()).await;
    assert_eq!(stat["response"]["status"], "prebuf", "{stat}");
    let stop: Value = get_json(
        &c,
        format!(
            "{}?method=stop",
            v["response"]["command_url"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(stop["response"], "ok", "{stop}");
    // Stopped before the lookup ended: what the lookup then starts (a torrent still looking
    // for its metadata) is removed, not left running with nobody to stop it.
    tokio::time::sleep(peercdn_engine::session::RESOLVE_TIMEOUT + Duration::from_secs(6)).await;
    let list: Value = get_json(&c, format!("{}/api/v1/torrents", srv.base)).await;
    assert_eq!(list["torrents"].as_array().map(Vec::len), Some(0), "{list}");
    drop(srv);
    swarm.shutdown().await;
}
