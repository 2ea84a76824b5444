//! IPv6 only, whole processes: two network namespaces joined by a veth pair that carries no
//! IPv4 at all (addresses `fd00:203:X::1` and `::2`). A VoD publisher in one and a downloader in
//! the other that is told no address: it finds the publisher by BEP 14 Local Service Discovery
//! over IPv6 (the group `ff15::efc0:988f`); then a live broadcaster in one and a viewer engine
//! in the other given its `[addr]:port`, whose player reads the stream through the viewer's
//! `/ace/getstream`. Each node binds
//! its IPv6 address; files are compared byte for byte, the stream checked for MPEG-TS sync and
//! the viewer's bytes for their origin (peers, not a CDN: there is none).
//!
//! Needs root for `ip netns` (CI runs as root); without it the test FAILS, never skips.
#![allow(clippy::disallowed_methods)] // tests: a real clock to bound a wait

mod common;

use std::time::Duration;

use common::netns::{Family, Lan};
use common::*;

#[test]
fn vod_and_live_between_two_ipv6_only_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Declared first, so it is dropped last: the nodes are killed before the LAN goes.
    let lan = Lan::new("ip6", Family::V6);
    let (ip_a, ip_b) = (lan.addr(1), lan.addr(2));

    // VoD: publish in A, download in B, which finds A by LSD over IPv6.
    let src = make_tree(&d.join("pub"), "content", 21);
    let torrent = d.join("content.torrent");
    let mut publisher = Proc::spawn(
        "publisher",
        lan.peercdn(
            &lan.a,
            &ip_a,
            &d.join("pc-a"),
            &[
                "publish",
                src.to_str().expect("utf-8"),
                "-o",
                torrent.to_str().expect("utf-8"),
                "--port",
                "0",
            ],
        ),
        &d.join("publisher.log"),
    );
    // Seeding once it prints its port.
    peercdn_port(&mut publisher);
    let out = d.join("out");
    let mut get = Proc::spawn(
        "downloader",
        lan.peercdn(
            &lan.b,
            &ip_b,
            &d.join("pc-b"),
            &[
                "get",
                torrent.to_str().expect("utf-8"),
                "-o",
                out.to_str().expect("utf-8"),
                "--no-seed",
                "--port",
                "0",
            ],
        ),
        &d.join("downloader.log"),
    );
    let st = get.wait(Duration::from_secs(120));
    assert!(
        st.success(),
        "download over IPv6 failed ({st}):\n{}\npublisher:\n{}",
        get.log_text(),
        publisher.log_text()
    );
    assert_same_tree(&src, &out.join("content"));
    // Whichever heard the other's announce first dialled it.
    let found = |p: &Proc, ip: &str| {
        p.log_text()
            .lines()
            .any(|l| l.contains("LSD peer found") && l.contains(&format!("peer=[{ip}]:")))
    };
    assert!(
        found(&get, &ip_a) || found(&publisher, &ip_b),
        "neither found the other by LSD:\ndownloader:\n{}\npublisher:\n{}",
        get.log_text(),
        publisher.log_text()
    );
    drop(publisher);

    // Live: broadcast in A, a viewer engine in B told the broadcaster's [addr]:port.
    let source = make_live_source(d, "30", "600k");
    let mut bc = Proc::spawn(
        "broadcast",
        lan.peercdn(
            &lan.a,
            &ip_a,
            &d.join("bc-data"),
            &[
                "broadcast",
                "--input",
                source.to_str().expect("utf8"),
                "--name",
                "IPv6 channel",
                "--port",
                "0",
                "--http-port",
                "0",
            ],
        ),
        &d.join("broadcast.log"),
    );
    let bc_port = peercdn_port(&mut bc);
    let id = wait_line(&mut bc, "id: ");
    let mut viewer = Proc::spawn(
        "viewer",
        lan.peercdn(
            &lan.b,
            &ip_b,
            &d.join("viewer-data"),
            &[
                "engine",
                "--port",
                "0",
                "--http-port",
                "0",
                "--no-ace-tcp",
                "--peer",
                &lan.sock(1, bc_port),
            ],
        ),
        &d.join("viewer.log"),
    );
    let http = wait_line(&mut viewer, "http: ");
    // The player: curl inside B (the viewer's API is on B's loopback), 600 kB of the stream.
    let played = d.join("played.ts");
    let script = format!(
        "curl -sS --max-time 60 '{http}/ace/getstream?id={id}' | head -c 600000 > '{}'",
        played.display()
    );
    let st = lan
        .exec(&lan.b, "bash")
        .args(["-c", &script])
        .status()
        .expect("run curl in the viewer's namespace");
    assert!(st.success(), "the player failed");
    let ts = std::fs::read(&played).expect("played bytes");
    assert!(
        ts.len() == 600_000,
        "the player got {} bytes:\nviewer:\n{}\nbroadcast:\n{}",
        ts.len(),
        viewer.log_text(),
        bc.log_text()
    );
    assert!(
        ts.chunks(188).all(|p| p[0] == 0x47),
        "the stream is not aligned MPEG-TS"
    );
    let status = lan
        .exec(&lan.b, "curl")
        .args(["-sS", &format!("{http}/api/v1/live/{id}")])
        .output()
        .expect("curl the viewer's status");
    let st: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("the viewer's status is JSON");
    assert!(
        st["p2p_downloaded"].as_u64().unwrap_or(0) >= 600_000,
        "bytes from peers: {st}"
    );
    assert_eq!(st["cdn_downloaded"].as_u64(), Some(0), "{st}");
    let peers = st["peer_list"].as_array().expect("peer_list");
    assert!(
        peers
            .iter()
            .any(|p| p["addr"].as_str().is_some_and(|a| a.contains(&ip_a))),
        "the broadcaster ({ip_a}) is not among the viewer's peers: {st}"
    );
}
