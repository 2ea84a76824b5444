//! Search, whole processes: `peercdn publish` and `peercdn broadcast` sign catalogue records
//! from their `--title --tags --category --lang` flags; an engine lists them through
//! `peercdn search`, `/api/v1/search` (with the signed bytes, which verify here again), and the
//! Ace routes as the PyPI clients read them (acestream-search 1.6.4 makes an M3U, python-
//! acestream's `Search` lists results).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use peercdn_core::catalog::Record;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// Runs `peercdn search ARGS… --engine BASE` to its end; returns its exit status and output.
fn search(base: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_peercdn"));
    c.arg("search").args(args).args(["--engine", base]);
    without_proxy(&mut c);
    let out = c.output().expect("peercdn search");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// A VoD record made by `publish --no-seed` is in the data directory's catalogue, and the
/// engine started on that directory finds it by a title word and by a tag, with every field of
/// the record and its signed bytes (which decode and verify again); words that match nothing,
/// or another category, find nothing; the Ace shapes carry it too.
#[test]
fn a_published_record_is_found_by_its_words() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let content = make_tree(d, "fjords", 31);
    let data = d.join("engine-data");
    let mut publish = Proc::spawn(
        "publish",
        {
            let mut c = peercdn(
                &data,
                &[
                    "publish",
                    content.to_str().expect("utf8"),
                    "--no-seed",
                    "--title",
                    "Sailing the Northern Fjords",
                    "--description",
                    "Four days on a small boat between Bergen and Ålesund",
                    "--tags",
                    "Travel,boats",
                    "--category",
                    "Travel",
                    "--lang",
                    "no",
                ],
            );
            c.current_dir(d);
            c
        },
        &d.join("publish.log"),
    );
    assert!(publish.wait(T).success(), "{}", publish.log_text());
    let log = publish.log_text();
    let id = log
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("id line")
        .trim()
        .to_owned();
    assert!(
        log.contains("record: \"Sailing the Northern Fjords\" signed by"),
        "{log}"
    );

    let (mut engine, _port, base) = engine_start(d, "engine", &[]);
    for words in [&["fjords"][..], &["BOATS"], &["sailing", "northern"]] {
        let mut args = words.to_vec();
        args.push("--json");
        let (st, out) = search(&base, &args);
        assert!(st.success(), "{out}");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["total"], 1, "{words:?}: {v}");
        let r = &v["results"][0];
        assert_eq!(r["id"], id.as_str(), "{v}");
        let rec = &r["record"];
        assert_eq!(rec["kind"], "vod");
        assert_eq!(rec["title"], "Sailing the Northern Fjords");
        assert_eq!(rec["tags"], serde_json::json!(["travel", "boats"]));
        assert_eq!(rec["category"], "travel");
        assert_eq!(rec["lang"], "no");
        assert_eq!(rec["files"], 4);
        assert_eq!(rec["size"], 9_437_185 + 1_000_003 + 3_333_333 + 17);
        assert_eq!(rec["own"], true);
        let signed = hex::decode(rec["signed"].as_str().expect("signed")).expect("hex");
        let again = Record::decode(&signed).expect("the signed bytes verify");
        assert_eq!(again.id.to_hex(), id);
        assert_eq!(again.publisher_hex(), rec["publisher"].as_str().unwrap());
    }
    let (st, out) = search(&base, &["fjords"]);
    assert!(st.success(), "{out}");
    assert!(
        out.contains("Sailing the Northern Fjords [travel, no]"),
        "{out}"
    );
    assert!(out.contains(&id) && out.contains("1 of 1 shown"), "{out}");
    for args in [
        &["volcano"][..],
        &["fjords", "--category", "sport"],
        &["fjords", "--kind", "live"],
    ] {
        let (st, out) = search(&base, args);
        assert!(st.success(), "{out}");
        assert_eq!(out, "nothing found\n", "{args:?}");
    }
    let (st, out) = search(&base, &["fjords", "--kind", "radio"]);
    assert!(
        !st.success() && out.contains("kind must be vod or live"),
        "{out}"
    );

    // The Ace shape: the record's category and a fresh availability date.
    let (status, body) = http_get(&format!("{base}/search?query=fjords&category=travel"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let hit = &v["result"]["results"][0];
    assert_eq!(hit["infohash"], id.as_str(), "{v}");
    assert_eq!(hit["name"], "Sailing the Northern Fjords", "{v}");
    assert_eq!(hit["categories"], serde_json::json!(["travel"]), "{v}");
    assert!(hit.get("epg").is_none(), "{v}");
    let (_, body) = http_get(&format!("{base}/search?query=fjords&show_epg=1"));
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["result"]["results"][0]["epg"], Value::Null, "{v}");
    assert!(v["result"]["results"][0].get("epg").is_some(), "{v}");
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// A live channel broadcast with record flags is found on the broadcaster's own API by
/// `peercdn search` and by the Ace clients from PyPI, unchanged: acestream-search 1.6.4 puts
/// its getstream URL in an M3U, python-acestream's `Search` lists its infohash.
#[test]
fn a_broadcast_channel_is_found_by_the_ace_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let src = make_live_source(d, "30", "800k");
    let mut bc = broadcast_start(
        d,
        &src,
        "harbour-cam",
        &[
            "--title",
            "Evening news from the harbour",
            "--tags",
            "news,harbour",
            "--category",
            "news",
            "--lang",
            "en",
            "--country",
            "GB",
            "--loop",
        ],
    );
    let said = wait_line(&mut bc.proc, "record: ");
    assert!(
        said.starts_with("\"Evening news from the harbour\" signed by"),
        "{said}"
    );

    let (st, out) = search(&bc.http, &["harbour", "--category", "news"]);
    assert!(st.success(), "{out}");
    assert!(out.starts_with("kind") && out.contains("live "), "{out}");
    assert!(out.contains(&bc.id), "{out}");

    let host = bc.http.trim_start_matches("http://").to_owned();
    let tool = ace_python().with_file_name("acestream_search");
    let mut cmd = Command::new(&tool);
    cmd.args(["--proxy", &host, "--target", &host, "harbour"]);
    without_proxy(&mut cmd);
    let mut m3u = Proc::spawn("ace-search", cmd, &d.join("ace-search.log"));
    let status = m3u.wait(T);
    let text = m3u.log_text();
    assert!(
        status.success(),
        "acestream_search failed ({status}):\n{text}"
    );
    let want = format!("http://{host}/ace/getstream?infohash={}", bc.id);
    assert!(text.lines().any(|l| l == want), "no {want} in:\n{text}");
    assert!(text.contains("Evening news from the harbour"), "{text}");

    let script = format!(
        "from acestream.server import Server\n\
         from acestream.search import Search\n\
         s = Server(host={h:?}, port={p})\n\
         q = Search(s, query='evening news', category='news')\n\
         q.get(page=0)\n\
         print(q.total, ' '.join(r.infohash for r in q.results or []))\n",
        h = "127.0.0.1",
        p = host.rsplit_once(':').expect("port").1,
    );
    let mut py = Command::new(ace_python());
    py.args(["-c", &script]);
    without_proxy(&mut py);
    let mut lib = Proc::spawn("python-acestream", py, &d.join("python-acestream.log"));
    let status = lib.wait(T);
    let text = lib.log_text();
    assert!(
        status.success(),
        "python-acestream failed ({status}):\n{text}"
    );
    assert_eq!(text.trim(), format!("1 {}", bc.id), "{text}");
    assert!(
        running(&mut bc.proc),
        "broadcaster died:\n{}",
        bc.proc.log_text()
    );
}

/// With no engine on `--engine`, `peercdn search` says so and how to start one.
#[test]
fn search_without_an_engine_says_so() {
    let port = free_port();
    let (st, out) = search(&format!("http://127.0.0.1:{port}"), &["x"]);
    assert_eq!(st.code(), Some(1), "{out}");
    assert!(
        out.contains("no engine answers") && out.contains("peercdn engine"),
        "{out}"
    );
}

/// Gossip (`pc_search`): a record travels two hops to a node that never talked to its
/// publisher. A broadcasts a channel with a record; B watches it (a live connection to A: A's
/// sample reaches B); C downloads a torrent from B only (a VoD connection to B: B's sample,
/// holding A's record, reaches C). C's search finds the channel, signed by A's key, not its
/// own, and asked B (its one pc_search peer), which answered; C never joined the live swarm.
#[test]
fn a_record_reaches_a_node_that_never_met_its_publisher() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let src = make_live_source(d, "30", "600k");
    let mut a = broadcast_start(
        d,
        &src,
        "harbour-cam",
        &[
            "--title",
            "Evening news from the harbour",
            "--tags",
            "news",
            "--loop",
        ],
    );
    let a_key = wait_line(&mut a.proc, "record: ");
    let a_key = a_key
        .rsplit("signed by ")
        .next()
        .unwrap_or("")
        .split(' ')
        .next()
        .unwrap_or("")
        .to_owned();
    assert_eq!(a_key.len(), 64, "{a_key}");

    // B: an engine that watches A's channel and seeds a torrent from its downloads directory.
    let a_addr = format!("127.0.0.1:{}", a.port);
    let content = make_tree(&d.join("engine-b-data").join("downloads"), "fjords", 41);
    let torrent = d.join("fjords.torrent");
    let mut mk = Proc::spawn(
        "publish",
        peercdn(
            &d.join("maker"),
            &[
                "publish",
                content.to_str().expect("utf8"),
                "--no-seed",
                "-o",
                torrent.to_str().expect("utf8"),
            ],
        ),
        &d.join("maker.log"),
    );
    assert!(mk.wait(T).success(), "{}", mk.log_text());
    let (mut b, b_port, b_base) = engine_start(d, "engine-b", &["--peer", &a_addr]);
    let (status, body) = http_get(&format!("{b_base}/ace/manifest.m3u8?id={}", a.id));
    assert_eq!(status, 200, "{body}");
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(T)
        .build()
        .expect("client");
    let added: Value = client
        .post(format!("{b_base}/api/v1/torrents"))
        .header("content-type", "application/x-bittorrent")
        .body(std::fs::read(&torrent).expect("torrent"))
        .send()
        .expect("add")
        .json()
        .expect("json");
    let vod_id = added["response"]["id"]
        .as_str()
        .or(added["id"].as_str())
        .unwrap_or_else(|| panic!("no id in {added}"))
        .to_owned();
    let found = |base: &str| -> Value {
        let (status, body) = http_get(&format!("{base}/api/v1/search?query=harbour"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("json")
    };
    wait_until(T, "A's record at B", || found(&b_base)["total"] == 1);
    let at_b = found(&b_base);
    assert_eq!(
        at_b["results"][0]["record"]["publisher"],
        a_key.as_str(),
        "{at_b}"
    );
    assert_eq!(at_b["results"][0]["record"]["own"], false, "{at_b}");
    wait_until(T, "B seeding", || {
        let (_, body) = http_get(&format!("{b_base}/api/v1/torrents/{vod_id}"));
        body.contains("\"seeding\"")
    });

    // C: knows B only, and asks it for the torrent.
    let b_addr = format!("127.0.0.1:{b_port}");
    let (mut c, _, c_base) = engine_start(d, "engine-c", &["--peer", &b_addr]);
    let r = client
        .post(format!("{c_base}/api/v1/torrents"))
        .json(&serde_json::json!({ "id": vod_id }))
        .send()
        .expect("add by id");
    assert!(r.status().is_success(), "{}", r.status());
    wait_until(T, "A's record at C", || found(&c_base)["total"] == 1);
    let at_c = found(&c_base);
    // The search also asked C's one pc_search peer, B, which answered within the budget.
    assert_eq!(at_c["peers_asked"], 1, "{at_c}");
    assert_eq!(at_c["peers_answered"], 1, "{at_c}");
    let hit = &at_c["results"][0];
    assert_eq!(hit["id"], a.id.as_str(), "{at_c}");
    assert_eq!(hit["record"]["publisher"], a_key.as_str(), "{at_c}");
    assert_eq!(hit["record"]["own"], false, "{at_c}");
    let signed = hex::decode(hit["record"]["signed"].as_str().expect("signed")).expect("hex");
    Record::decode(&signed).expect("the record C holds verifies");
    // Streamed (`stream=1`, what `peercdn search` reads): the catalogue at once, then again
    // once B answered, the last line final; `peercdn search` prints the final table.
    let (status, body) = http_get(&format!("{c_base}/api/v1/search?query=harbour&stream=1"));
    assert_eq!(status, 200, "{body}");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{body}");
    assert_eq!(lines[0]["phase"], "local", "{body}");
    assert_eq!(lines[0]["total"], 1, "{body}");
    let last = lines.last().expect("lines");
    assert_eq!(last["phase"], "final", "{body}");
    assert_eq!(last["peers_answered"], 1, "{body}");
    let (st, out) = search(&c_base, &["harbour"]);
    assert!(st.success() && out.contains("1 of 1 shown"), "{out}");
    let (_, live) = http_get(&format!("{c_base}/api/v1/live"));
    assert_eq!(
        serde_json::from_str::<Value>(&live).expect("json")["live"],
        serde_json::json!([]),
        "C never joined the live swarm: {live}"
    );
    for p in [&mut a.proc, &mut b, &mut c] {
        assert!(running(p), "{} died:\n{}", p.name, p.log_text());
    }
}

/// `--deny-publisher KEY`: an engine that watches a channel from a publisher it denies never
/// keeps that publisher's record (the sample arrives with the connection's first messages,
/// before any piece: once pieces came, it would have); another viewer without the flag keeps
/// it. A key that is not 64 hex digits is a clear error at start.
#[test]
fn a_denied_publisher_is_not_listed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let src = make_live_source(d, "30", "600k");
    let mut a = broadcast_start(
        d,
        &src,
        "harbour-cam",
        &["--title", "Evening news from the harbour", "--loop"],
    );
    let said = wait_line(&mut a.proc, "record: ");
    let key = said
        .split("signed by ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("key")
        .to_owned();
    let a_addr = format!("127.0.0.1:{}", a.port);
    let (mut denies, _, denies_base) =
        engine_start(d, "denies", &["--peer", &a_addr, "--deny-publisher", &key]);
    let (mut takes, _, takes_base) = engine_start(d, "takes", &["--peer", &a_addr]);
    // Records only: the stream itself is listed by its name wherever it plays.
    let hits = |base: &str| -> usize {
        let (_, body) = http_get(&format!("{base}/api/v1/search?query=harbour&local=1"));
        let v: Value = serde_json::from_str(&body).expect("json");
        v["results"]
            .as_array()
            .map_or(0, |r| r.iter().filter(|h| !h["record"].is_null()).count())
    };
    for base in [&denies_base, &takes_base] {
        let (status, body) = http_get(&format!("{base}/ace/manifest.m3u8?id={}", a.id));
        assert_eq!(status, 200, "{body}");
    }
    wait_until(T, "the record at the viewer without the flag", || {
        hits(&takes_base) == 1
    });
    wait_until(T, "pieces at the viewer that denies", || {
        let (_, body) = http_get(&format!("{denies_base}/api/v1/live/{}", a.id));
        serde_json::from_str::<Value>(&body).expect("json")["p2p_downloaded"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    assert_eq!(
        hits(&denies_base),
        0,
        "the denied publisher's record was kept"
    );

    let mut bad = Proc::spawn(
        "bad-key",
        peercdn(
            &d.join("bad"),
            &[
                "engine",
                "--port",
                "0",
                "--http-port",
                "0",
                "--deny-publisher",
                "xyz",
            ],
        ),
        &d.join("bad.log"),
    );
    let st = bad.wait(T);
    assert_eq!(st.code(), Some(1), "{}", bad.log_text());
    assert!(
        bad.log_text()
            .contains("publisher key \"xyz\" is not 64 hex digits"),
        "{}",
        bad.log_text()
    );
    for p in [&mut a.proc, &mut denies, &mut takes] {
        assert!(running(p), "{} died:\n{}", p.name, p.log_text());
    }
}

/// Runs `peercdn channel ARGS… --engine BASE` to its end.
fn channel(base: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_peercdn"));
    c.arg("channel").args(args).args(["--engine", base]);
    without_proxy(&mut c);
    let out = c.output().expect("peercdn channel");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

fn channels_json(base: &str) -> Value {
    let (st, out) = channel(base, &["list", "--json"]);
    assert!(st.success(), "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Channels with no server: a publisher's engine puts its records in a channel torrent and a
/// BEP 44 head under its key on a private DHT (one more engine is the bootstrap node); a
/// second engine that shares no swarm with it, given only the publisher key (`peercdn channel
/// subscribe`), finds the head, downloads the channel from the publisher (peers from the DHT)
/// and lists the record — with the publisher's key and signature — in its local search.
/// Subscribing to one's own key or to a malformed one is refused.
#[test]
fn a_channel_is_followed_by_its_key_through_the_dht() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let (mut boot_node, boot) = dht_boot_node(d);

    let content = make_tree(d, "glaciers", 32);
    let mut publish = Proc::spawn(
        "publish",
        {
            let mut c = peercdn(
                &d.join("a-data"),
                &[
                    "publish",
                    content.to_str().expect("utf8"),
                    "--no-seed",
                    "--title",
                    "Glaciers of the Far North",
                    "--tags",
                    "ice,nature",
                ],
            );
            // NAME.torrent goes to the working directory: the test's, not the source tree.
            c.current_dir(d);
            c
        },
        &d.join("publish.log"),
    );
    assert!(publish.wait(T).success(), "{}", publish.log_text());
    let (mut a, _, a_base) = engine_start(d, "a", &["--dht-bootstrap", &boot]);
    let (mut b, _, b_base) = engine_start(d, "b", &["--dht-bootstrap", &boot]);
    let key = channels_json(&a_base)["key"]
        .as_str()
        .expect("key")
        .to_owned();
    wait_until(
        Duration::from_secs(90),
        "A to publish its channel head",
        || channels_json(&a_base)["own"]["published"].as_u64() > Some(0),
    );
    assert_eq!(channels_json(&a_base)["own"]["records"], 1);

    let (st, out) = channel(&b_base, &["subscribe", &key]);
    assert!(st.success() && out.contains("following"), "{out}");
    let (st, out) = channel(&b_base, &["subscribe", "12ab"]);
    assert!(!st.success() && out.contains("64 hex"), "{out}");
    let own = channels_json(&b_base)["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let (st, out) = channel(&b_base, &["subscribe", &own]);
    assert!(!st.success() && out.contains("own key"), "{out}");

    wait_until(Duration::from_secs(150), "B to take A's channel", || {
        channels_json(&b_base)["subscriptions"][0]["records"] == 1
    });
    let (st, out) = channel(&b_base, &["list"]);
    assert!(
        st.success() && out.contains(&format!("following {key}: 1 records")),
        "{out}"
    );
    let (st, out) = search(&b_base, &["glaciers", "--local", "--json"]);
    assert!(st.success(), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["total"], 1, "{v}");
    let rec = &v["results"][0]["record"];
    assert_eq!(rec["title"], "Glaciers of the Far North");
    assert_eq!(rec["publisher"], key.as_str());
    assert_eq!(rec["own"], false);
    let signed = hex::decode(rec["signed"].as_str().expect("signed")).expect("hex");
    Record::decode(&signed).expect("the signed bytes verify");

    let (st, out) = channel(&b_base, &["unsubscribe", &key]);
    assert!(st.success(), "{out}");
    assert_eq!(
        channels_json(&b_base)["subscriptions"],
        serde_json::json!([])
    );
    for p in [&mut a, &mut b, &mut boot_node] {
        p.terminate(T);
    }
}
