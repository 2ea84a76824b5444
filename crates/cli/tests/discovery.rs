//! Discovery at scale, whole processes: a private mainline DHT of 20 peercdn nodes on 127.0.0.1
//! (one bootstrap engine, 17 idle engines that are only DHT nodes, a publisher seeding a VoD
//! torrent, a broadcaster running a looped live stream). A fresh viewer engine that knows only
//! each content ID — no `--peer`, no tracker, no descriptor — finds peers through the DHT,
//! fetches the metadata (or the live descriptor) and serves the exact VoD bytes and a live
//! stream ffmpeg decodes without errors.
//!
//! Then the first seeder leaves: a `peercdn get` node that fetched the VoD by ID keeps seeding,
//! a relaying viewer engine keeps playing the live stream, the publisher and the first viewer
//! (a VoD holder and live relay itself) are killed, and a NEW viewer with only the IDs still
//! gets the VoD bytes (from the `get` node, found through the DHT; the dead peers' announces
//! are still stored) and plays the live stream (from the broadcaster and the relay).
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Idle engines besides the bootstrap node: with it, the publisher and the broadcaster, 20.
const IDLE_NODES: usize = 17;
/// Size of the VoD file (single-file torrent).
const VOD_LEN: usize = 6 * 1024 * 1024 + 12_345;
/// How many times a viewer step is tried before the test fails (each on a fresh engine).
const ATTEMPTS: usize = 3;

#[test]
fn twenty_node_private_dht_finds_vod_and_live_by_id_before_and_after_the_first_seeder_leaves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // PEERCDN_TEST_KEEP=1 keeps the logs and files for a post-mortem.
    let kept;
    let d = if std::env::var_os("PEERCDN_TEST_KEEP").is_some() {
        kept = tmp.keep();
        eprintln!("keeping {}", kept.display());
        kept.as_path()
    } else {
        tmp.path()
    };
    let started = Instant::now();
    let src_ts = make_live_source(d, SOURCE_S, "1000k");

    // Node 0, the bootstrap node: the first node of a network has an EMPTY bootstrap list,
    // which only `peercdn.toml` can say (`dht_bootstrap = []`). Then the `mainline` crate adds
    // every node that asks it `find_node` to its routing table. (Naming itself with
    // `--dht-bootstrap` instead leaves its table empty forever: everyone else then knows only
    // node 0, and node 0 spins re-bootstrapping from itself.)
    let boot_port = free_port();
    let boot = format!("127.0.0.1:{boot_port}");
    let boot_cfg = d.join("boot.toml");
    std::fs::write(&boot_cfg, "dht_bootstrap = []\n").expect("write boot.toml");
    let mut boot_cmd = Command::new(env!("CARGO_BIN_EXE_peercdn"));
    boot_cmd
        .args(["engine", "--config"])
        .arg(&boot_cfg)
        .args(["--port", "0", "--dht-port", &boot_port.to_string()])
        .args(["--http-port", "0"])
        .args(["--bind", "127.0.0.1", "--data-dir"])
        .arg(d.join("boot-data"))
        .env("PEERCDN_LOG", "info");
    let mut boot_node = Proc::spawn("boot", boot_cmd, &d.join("boot.log"));
    peercdn_port(&mut boot_node);
    let boot_http = wait_line(&mut boot_node, "http: ");
    let dht_args = ["--dht-bootstrap", boot.as_str()];

    // Nodes 1..=17: plain engines holding nothing; they are the DHT.
    let mut idle = Vec::new();
    for i in 0..IDLE_NODES {
        idle.push(engine_start(d, &format!("dht{i}"), &dht_args));
    }
    // The routing tables fill as the nodes bootstrap off node 0 and each other.
    wait_until(Duration::from_secs(30), "the DHT to settle", || {
        dht_nodes(&boot_http) >= IDLE_NODES && idle.iter().all(|(_, _, b)| dht_nodes(b) >= 1)
    });
    eprintln!(
        "[{:.1}s] DHT of {} nodes settled",
        started.elapsed().as_secs_f64(),
        IDLE_NODES + 1
    );

    // Node 18: the publisher of a single-file VoD torrent.
    let vod = data(VOD_LEN, 2024);
    let pub_dir = d.join("pub");
    std::fs::create_dir_all(&pub_dir).expect("mkdir pub");
    let vod_path = pub_dir.join("movie.bin");
    std::fs::write(&vod_path, &vod).expect("write vod");
    let mut publisher = Proc::spawn(
        "publisher",
        peercdn(
            &d.join("pub-data"),
            &[
                "publish",
                vod_path.to_str().expect("utf8"),
                "-o",
                d.join("movie.torrent").to_str().expect("utf8"),
                "--port",
                "0",
                "--dht-bootstrap",
                &boot,
            ],
        ),
        &d.join("publisher.log"),
    );
    peercdn_port(&mut publisher);
    let vod_id = wait_line(&mut publisher, "id: ");

    // Node 19: the broadcaster of a looped source.
    let Broadcast {
        proc: mut bc,
        id: live_id,
        http: bc_http,
        ..
    } = broadcast_start(
        d,
        &src_ts,
        "discovery channel",
        &["--loop", "--dht-bootstrap", &boot],
    );
    assert_eq!(vod_id.len(), 40, "VoD ID {vod_id:?}");
    assert_eq!(live_id.len(), 40, "live ID {live_id:?}");
    // The broadcaster's first DHT announce has been stored somewhere (the publisher started
    // its own earlier, on the same settled network).
    wait_until(
        Duration::from_secs(30),
        "the broadcaster's DHT announce",
        || dht_field(&bc_http, "announces") >= 1,
    );
    eprintln!(
        "[{:.1}s] 20 nodes up: VoD {vod_id}, live {live_id}",
        started.elapsed().as_secs_f64()
    );

    // A fresh viewer with only the IDs and the bootstrap node.
    let mut viewer1 = viewer_with_retries(d, "viewer1", &dht_args, &vod_id, &live_id, &vod);
    eprintln!(
        "[{:.1}s] viewer1 got the VoD and played the live stream by ID",
        started.elapsed().as_secs_f64()
    );

    // A second holder of each: a `peercdn get` of the VoD by ID that keeps seeding, and a
    // viewer engine that keeps playing (and so relaying) the live stream.
    let out2 = d.join("get2-out");
    let mut get2 = Proc::spawn(
        "get2",
        peercdn(
            &d.join("get2-data"),
            &[
                "get",
                &vod_id,
                "-o",
                out2.to_str().expect("utf8"),
                "--port",
                "0",
                "--dht-bootstrap",
                &boot,
            ],
        ),
        &d.join("get2.log"),
    );
    let got2 = out2.join("movie.bin");
    let deadline = Instant::now() + Duration::from_secs(40);
    while std::fs::read(&got2).ok().as_deref() != Some(vod.as_slice()) {
        assert!(
            running(&mut get2),
            "peercdn get by ID exited:\n{}",
            get2.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "peercdn get by ID did not complete; log:\n{}",
            get2.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let relay = engine_start(d, "relay", &dht_args);
    let (mut relay_player, relay_progress) = ffmpeg_decode_start(
        d,
        "relay-player",
        &format!("{}/ace/getstream?id={live_id}", relay.2),
    );
    wait_until(Duration::from_secs(30), "the relay to play 2 s", || {
        assert!(
            running(&mut relay_player),
            "relay player exited:\n{}",
            relay_player.log_text()
        );
        ffmpeg_media_time(&relay_progress) >= 2.0
    });
    eprintln!(
        "[{:.1}s] get2 holds the VoD, relay plays the live stream",
        started.elapsed().as_secs_f64()
    );

    // The first seeder leaves, and so does viewer1 (it held the VoD and relayed the live
    // stream). The broadcaster stays: a live stream has one source.
    publisher.terminate(Duration::from_secs(15));
    let _ = viewer1.child.kill();
    let _ = viewer1.child.wait();

    // The only VoD holder left is get2 (failed viewer attempts are killed too); the live
    // stream comes from the broadcaster and the relay.
    let viewer2 = viewer_with_retries(d, "viewer2", &dht_args, &vod_id, &live_id, &vod);
    eprintln!(
        "[{:.1}s] viewer2 got the VoD and played the live stream after the publisher left",
        started.elapsed().as_secs_f64()
    );
    // The relay kept playing through all of it.
    let relay_log = relay_player.log_text();
    assert!(
        ffmpeg_damage(&relay_log).is_empty(),
        "relay player errors:\n{relay_log}"
    );
    assert!(running(&mut get2), "get2 stopped:\n{}", get2.log_text());
    assert!(running(&mut bc), "broadcaster stopped:\n{}", bc.log_text());
    drop(viewer2);
    drop(relay_player);
}

/// Starts viewer engines `NAME`, `NAME-retry1`, … until one serves the VoD's exact bytes and a
/// live stream ffmpeg decodes for 5 s with no error output, by ID only. Each try is a fresh
/// engine: a slow DHT lookup makes `resolve_id` fall back to "a torrent still looking for its
/// metadata", which a retry on the same engine would not undo. Returns the engine that passed.
fn viewer_with_retries(
    d: &Path,
    name: &str,
    dht_args: &[&str],
    vod_id: &str,
    live_id: &str,
    vod: &[u8],
) -> Proc {
    let mut failures = Vec::new();
    for attempt in 0..ATTEMPTS {
        let name = match attempt {
            0 => name.to_string(),
            n => format!("{name}-retry{n}"),
        };
        let (proc, _, base) = engine_start(d, &name, dht_args);
        match viewer_checks(d, &name, &base, vod_id, live_id, vod) {
            Ok(()) => return proc,
            Err(e) => {
                eprintln!("{name}: {e}");
                failures.push(format!("{name}: {e}\nlog:\n{}", proc.log_text()));
            }
        }
    }
    panic!("no viewer succeeded:\n{}", failures.join("\n\n"));
}

/// The VoD by ID must be the exact bytes; the live stream by ID must decode for 5 s cleanly.
fn viewer_checks(
    d: &Path,
    name: &str,
    base: &str,
    vod_id: &str,
    live_id: &str,
    vod: &[u8],
) -> Result<(), String> {
    let t = Instant::now();
    let body = http_bytes(&format!("{base}/ace/getstream?id={vod_id}"))?;
    if body != vod {
        return Err(format!(
            "VoD by ID: {} bytes, wanted the {} bytes published",
            body.len(),
            vod.len()
        ));
    }
    eprintln!("{name}: VoD by ID in {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let url = format!("{base}/ace/getstream?id={live_id}");
    let log = d.join(format!("{name}-ffmpeg.log"));
    let mut c = Command::new("ffmpeg");
    without_proxy(&mut c);
    c.args(["-nostdin", "-hide_banner", "-v", "error", "-i", &url])
        .args(["-t", "5", "-f", "null", "-"]);
    let mut ff = Proc::spawn(&format!("{name}-ffmpeg"), c, &log);
    let deadline = Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Ok(Some(st)) = ff.child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            return Err("ffmpeg of the live ID did not finish in 45 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = ff.log_text();
    if !status.success() || !out.trim().is_empty() {
        return Err(format!("ffmpeg of the live ID: {status}, output:\n{out}"));
    }
    eprintln!(
        "{name}: 5 s of live by ID decoded in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Seconds of the live source: longer than the test, so no 5 s decode straddles a loop point
/// (each rewind restarts the TS timestamps, and ffmpeg then reports non-monotonic DTS).
const SOURCE_S: &str = "100";

fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("client")
}

/// A whole 200 response body, or why not.
fn http_bytes(url: &str) -> Result<Vec<u8>, String> {
    let resp = client(Duration::from_secs(45))
        .get(url)
        .send()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().map_err(|e| format!("GET {url}: body: {e}"))?;
    if status != 200 {
        return Err(format!(
            "GET {url}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    Ok(body.to_vec())
}

/// A numeric field of `/api/v1/dht`, 0 if unavailable.
fn dht_field(base: &str, field: &str) -> u64 {
    client(Duration::from_secs(5))
        .get(format!("{base}/api/v1/dht"))
        .send()
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|v| v[field].as_u64())
        .unwrap_or(0)
}

/// Nodes in the routing table of the engine at `base`.
fn dht_nodes(base: &str) -> usize {
    dht_field(base, "nodes") as usize
}
