//! Local Service Discovery (BEP 14) between two real nodes on a private LAN: two network
//! namespaces joined by a veth pair, nothing else. The viewer knows only the content ID (no
//! `--peer`, no tracker, no DHT) and must find the publisher by multicast. Garbage datagrams
//! sent to the publisher's LSD port (unicast and to the group) are counted and dropped, and the
//! publisher keeps working.
//!
//! Needs root (CI runs it as root) for `ip netns`; without it the test FAILS with a message,
//! never skips. Every packet stays inside the namespaces the test creates; the namespaces (and
//! with them the veth pair) are removed by a drop guard even when the test fails.

mod common;

use std::time::Duration;

use common::netns::{Family, Lan};
use common::*;

/// Sends `payload` as one UDP datagram from namespace `ns` to `to`, port 6771 (bash's
/// /dev/udp).
fn send_udp(lan: &Lan, ns: &str, to: &str, payload: &str) {
    let script = format!("printf '%s' \"$1\" > /dev/udp/{to}/6771");
    let st = lan
        .exec(ns, "bash")
        .args(["-c", &script, "send", payload])
        .status()
        .expect("run bash in the namespace");
    assert!(st.success(), "sending a datagram from {ns} to {to} failed");
}

#[test]
fn id_only_download_found_by_local_service_discovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Declared first, so it is dropped last: the nodes are killed before the LAN goes.
    let lan = Lan::new("lsd", Family::V4);
    let (ip_a, ip_b) = (lan.addr(1), lan.addr(2));

    let src = make_tree(&d.join("pub"), "content", 14);
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
    peercdn_port(&mut publisher);
    let mut id = String::new();
    wait_until(Duration::from_secs(30), "the publisher's id line", || {
        if let Some(l) = publisher
            .log_text()
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
        {
            id = l.trim().to_string();
        }
        !id.is_empty()
    });
    wait_until(
        Duration::from_secs(10),
        "the publisher's LSD to start",
        || publisher.log_text().contains("LSD started"),
    );

    // Garbage from the other namespace: unicast to the publisher, to the group, and oversize.
    // (No newlines: bash may write a payload with newlines in several datagrams.)
    send_udp(&lan, &lan.b, &ip_a, "garbage");
    send_udp(
        &lan,
        &lan.b,
        "239.192.152.143",
        "BT-SEARCH * HTTP/1.1 Port: 1",
    );
    send_udp(&lan, &lan.b, &ip_a, &"x".repeat(1500));
    wait_until(
        Duration::from_secs(10),
        "the publisher to count 3 malformed LSD packets",
        || publisher.log_text().contains("malformed=3"),
    );
    assert!(
        publisher.child.try_wait().expect("try_wait").is_none(),
        "the publisher died on garbage:\n{}",
        publisher.log_text()
    );

    // The viewer: a bare ID, no --peer, no tracker, no DHT.
    let out = d.join("out");
    let mut get = Proc::spawn(
        "viewer",
        lan.peercdn(
            &lan.b,
            &ip_b,
            &d.join("pc-b"),
            &["get", &id, "-o", out.to_str().expect("utf-8"), "--no-seed"],
        ),
        &d.join("viewer.log"),
    );
    let st = get.wait(Duration::from_secs(120));
    assert!(
        st.success(),
        "get by ID through LSD failed ({st}):\n{}\npublisher:\n{}",
        get.log_text(),
        publisher.log_text()
    );
    assert!(
        publisher.log_text().contains("LSD peer found"),
        "the publisher never heard the viewer:\n{}",
        publisher.log_text()
    );
    assert_same_tree(&src, &out.join("content"));
    publisher.terminate(Duration::from_secs(20));
}
