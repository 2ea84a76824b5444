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

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Two namespaces and a veth pair; removed on drop.
struct Lan {
    a: String,
    b: String,
    veth_a: String,
    /// `10.203.X`
    subnet: String,
}

impl Lan {
    fn new() -> Lan {
        let pid = std::process::id();
        let lan = Lan {
            a: format!("pc-lsd-a-{pid}"),
            b: format!("pc-lsd-b-{pid}"),
            veth_a: format!("pcla{pid}"),
            subnet: format!("10.203.{}", 10 + pid % 240),
        };
        let veth_b = format!("pclb{pid}");
        ip(&["netns", "add", &lan.a]);
        ip(&["netns", "add", &lan.b]);
        ip(&[
            "link",
            "add",
            &lan.veth_a,
            "type",
            "veth",
            "peer",
            "name",
            &veth_b,
        ]);
        ip(&["link", "set", &lan.veth_a, "netns", &lan.a]);
        ip(&["link", "set", &veth_b, "netns", &lan.b]);
        for (ns, dev, host) in [(&lan.a, &lan.veth_a, 1), (&lan.b, &veth_b, 2)] {
            let addr = format!("{}.{host}/24", lan.subnet);
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev]);
        }
        lan
    }

    fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.subnet)
    }

    /// A `peercdn` command run inside namespace `ns`, bound to `bind`, with its own data dir.
    fn peercdn(&self, ns: &str, bind: &str, data_dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_peercdn")])
            .args(args)
            .args(["--bind", bind, "--no-dht", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info,peercdn_engine::lsd=debug")
            .env_remove("PEERCDN_NO_LSD");
        c
    }

    /// Sends `payload` as one UDP datagram from namespace `ns` to `to` (bash's /dev/udp).
    fn send_udp(&self, ns: &str, to: &str, payload: &str) {
        let script = format!("printf '%s' \"$1\" > /dev/udp/{to}/6771");
        let st = Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c", &script, "send", payload])
            .status()
            .expect("run bash in the namespace");
        assert!(st.success(), "sending a datagram from {ns} to {to} failed");
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it (and so the pair).
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // If the set-up stopped before the move, the pair is still in our namespace.
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth_a])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require_root() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "the LSD test creates network namespaces and must run as root (CI does); \
         run it with sudo — it is never skipped"
    );
}

#[test]
fn id_only_download_found_by_local_service_discovery() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Declared first, so it is dropped last: the nodes are killed before the LAN goes.
    let lan = Lan::new();
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
    lan.send_udp(&lan.b, &ip_a, "garbage");
    lan.send_udp(&lan.b, "239.192.152.143", "BT-SEARCH * HTTP/1.1 Port: 1");
    lan.send_udp(&lan.b, &ip_a, &"x".repeat(1500));
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
