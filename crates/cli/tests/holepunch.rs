//! Viewers behind NAT relay a live stream to each other: one maps its port on its router
//! (UPnP), two cannot and reach each other by BEP 55 holepunching.
//!
//! Eight network namespaces the test creates. The "Internet" `W` is a bridge (11.205.X.0/24).
//! On it: the broadcaster `S` (11.205.X.10) and three home routers `RA`, `RB`, `RC`
//! (11.205.X.1–3), each masquerading its own LAN (192.168.X.0/24, the same in every home, as in
//! real ones) with one viewer (192.168.X.2), and rejecting what comes from the Internet to the
//! router itself unless it answers something sent out (OpenWrt's default for its WAN zone).
//! `RA` runs miniupnpd: viewer A maps its port and is reachable. `RB` and `RC` have no UPnP
//! and no port forward: nothing from the Internet gets into B or C unless they sent to it
//! first (Linux conntrack, the filter of most home routers).
//!
//! The broadcaster's upload is capped at about 1.3 × the stream's bitrate and A's at about
//! half of it, so B and C must serve each other most of what they lack. They learn each
//! other's address by PEX, their TCP dials are refused by the other's router, and they ask a
//! peer both are connected to for an introduction (`ut_holepunch` rendezvous); the relay sends
//! each the other's address and both dial over uTP at once. The test asserts: A is mapped and
//! reachable, B and C are not (their introduced connections do not count as reachable), and
//! the broadcaster knows it from their extension handshakes; B and C hold a holepunched uTP
//! connection to each other's router address, and payload crossed it; every player gets its
//! bytes of the stream. It prints the figures.
//!
//! Needs root for `ip netns`, nftables and tc (CI runs as root); without it the test FAILS,
//! never skips.
#![allow(clippy::disallowed_methods)] // tests: a real clock to bound a wait

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::netns::{exec_in, ip, peercdn_in, require_root, run};
use common::*;

/// The namespaces, the links, miniupnpd; removed on drop.
struct Internet {
    /// `W`, `S`, then routers and viewers A, B, C.
    wan: String,
    src: String,
    routers: [String; 3],
    viewers: [String; 3],
    /// Third octet of every subnet.
    net: u32,
    links: Vec<String>,
    miniupnpd: Option<Proc>,
}

impl Internet {
    fn new(d: &Path) -> Internet {
        require_root();
        let pid = std::process::id();
        let net = 10 + pid % 240;
        let tag = pid % 100_000;
        let name = |k: &str| format!("pc-hp{k}-{pid}");
        let mut w = Internet {
            wan: name("w"),
            src: name("s"),
            routers: ["ra", "rb", "rc"].map(name),
            viewers: ["va", "vb", "vc"].map(name),
            net,
            links: Vec::new(),
            miniupnpd: None,
        };
        for ns in [&w.wan, &w.src]
            .into_iter()
            .chain(&w.routers)
            .chain(&w.viewers)
        {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", &w.wan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &w.wan, "link", "set", "br0", "up"]);
        // The Internet side: one veth per host. (No added latency: this kernel has no netem.
        // The routers' WAN filter is what lets the two dials cross in any order: see
        // `router_rules`.)
        let hosts = [
            ("s", w.src.clone(), 10),
            ("a", w.routers[0].clone(), 1),
            ("b", w.routers[1].clone(), 2),
            ("c", w.routers[2].clone(), 3),
        ];
        for (k, ns, host) in &hosts {
            let (bridge_end, host_end) = (format!("hpw{k}{tag}"), format!("hpe{k}{tag}"));
            ip(&[
                "link",
                "add",
                &bridge_end,
                "type",
                "veth",
                "peer",
                "name",
                &host_end,
            ]);
            w.links.push(bridge_end.clone());
            ip(&["link", "set", &bridge_end, "netns", &w.wan]);
            ip(&["-n", &w.wan, "link", "set", &bridge_end, "master", "br0"]);
            ip(&["-n", &w.wan, "link", "set", &bridge_end, "up"]);
            ip(&["link", "set", &host_end, "netns", ns]);
            let addr = format!("11.205.{net}.{host}/24");
            ip(&["-n", ns, "addr", "add", &addr, "dev", &host_end]);
            ip(&["-n", ns, "link", "set", &host_end, "up"]);
        }
        // The homes: a LAN per router, masqueraded onto its WAN end.
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            let (r, v) = (&w.routers[i], &w.viewers[i]);
            let (lan_v, lan_r, wan) = (
                format!("hpl{k}{tag}"),
                format!("hpm{k}{tag}"),
                format!("hpe{k}{tag}"),
            );
            ip(&[
                "link", "add", &lan_v, "type", "veth", "peer", "name", &lan_r,
            ]);
            w.links.push(lan_v.clone());
            for (dev, ns, addr) in [
                (&lan_v, v, format!("192.168.{net}.2/24")),
                (&lan_r, r, format!("192.168.{net}.1/24")),
            ] {
                ip(&["link", "set", dev, "netns", ns]);
                ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
            }
            let gw = format!("192.168.{net}.1");
            ip(&["-n", v, "route", "add", "default", "via", &gw]);
            run(exec_in(r, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
            let upnp = i == 0;
            let file = d.join(format!("router-{k}.nft"));
            std::fs::write(&file, router_rules(&wan, upnp)).expect("write a router's rules");
            run(exec_in(r, "nft").arg("-f").arg(&file));
            if upnp {
                let conf = d.join("miniupnpd.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "ext_ifname={wan}\nlistening_ip={lan_r}\nhttp_port=0\nenable_upnp=yes\n\
                         enable_natpmp=yes\nsecure_mode=no\nsystem_uptime=yes\n\
                         uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07c\n\
                         allow 1024-65535 192.168.{net}.0/24 1024-65535\n\
                         deny 0-65535 0.0.0.0/0 0-65535\n"
                    ),
                )
                .expect("write miniupnpd's config");
                let mut c = exec_in(r, "miniupnpd");
                c.arg("-d")
                    .arg("-f")
                    .arg(&conf)
                    .arg("-P")
                    .arg(d.join("miniupnpd.pid"));
                let mut mu = Proc::spawn("miniupnpd", c, &d.join("miniupnpd.log"));
                wait_until(Duration::from_secs(10), "miniupnpd to listen", || {
                    if let Ok(Some(st)) = mu.child.try_wait() {
                        panic!("miniupnpd exited ({st}):\n{}", mu.log_text());
                    }
                    mu.log_text().contains("HTTP listening on port")
                });
                w.miniupnpd = Some(mu);
            }
        }
        w
    }

    /// A router's WAN address (0: A, 1: B, 2: C).
    fn router_ip(&self, i: usize) -> String {
        format!("11.205.{}.{}", self.net, i + 1)
    }

    /// JSON from `url` fetched inside namespace `ns`.
    fn get_json(&self, ns: &str, url: &str) -> serde_json::Value {
        let out = exec_in(ns, "curl")
            .args(["-sS", "--max-time", "10", url])
            .output()
            .expect("run curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {:?}", out.stdout))
    }
}

/// A home router's nftables rules: masquerade the LAN onto `wan`, and reject what arrives on
/// `wan` for the router itself unless it belongs to a connection (conntrack) — with UPnP,
/// also the chains miniupnpd fills (its defaults: table `inet filter`).
///
/// The rejection matters for holepunching, as on real routers: a packet the router accepts
/// for itself (no socket there, but accepted) is recorded by conntrack, and when the viewer
/// behind it then sends to the same address and port, masquerade must pick another external
/// port (the first one is taken by that record), so the introduction fails. A rejected packet
/// is never recorded, and the peer's next SYN passes.
fn router_rules(wan: &str, upnp: bool) -> String {
    let input = format!(
        "chain input {{ type filter hook input priority 0; policy accept; \
         iifname \"{wan}\" ct state established,related accept; \
         iifname \"{wan}\" meta l4proto tcp reject with tcp reset; iifname \"{wan}\" reject; }}\n"
    );
    if upnp {
        format!(
            "table inet filter {{\n{input}\
             chain forward {{ type filter hook forward priority 0; policy accept; jump miniupnpd; }}\n\
             chain miniupnpd {{ }}\n\
             chain prerouting {{ type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }}\n\
             chain postrouting {{ type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; oifname \"{wan}\" masquerade; }}\n\
             chain prerouting_miniupnpd {{ }}\n\
             chain postrouting_miniupnpd {{ }}\n\
             }}\n"
        )
    } else {
        format!(
            "table inet filter {{\n{input}\
             chain postrouting {{ type nat hook postrouting priority 100; policy accept; oifname \"{wan}\" masquerade; }}\n\
             }}\n"
        )
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        drop(self.miniupnpd.take());
        for ns in [&self.wan, &self.src]
            .into_iter()
            .chain(&self.routers)
            .chain(&self.viewers)
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for l in &self.links {
            let _ = Command::new("ip")
                .args(["link", "del", l])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Bytes each player reads from its viewer (about 10 s of the stream).
const PLAYED: usize = 1_000_000;

#[test]
fn viewers_behind_nat_relay_live_to_each_other_through_holepunched_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Declared first, so it is dropped last: the nodes are killed before the network goes.
    let inet = Internet::new(d);
    let net = inet.net;

    // About 800 kbit/s; the broadcaster may send 1 Mbit/s, A 400 kbit/s.
    let source = make_live_source(d, "20", "600k");
    let src_ip = format!("11.205.{net}.10");
    let mut bc = Proc::spawn(
        "broadcast",
        peercdn_in(
            &inet.src,
            &src_ip,
            &d.join("bc-data"),
            &[
                "broadcast",
                "--input",
                source.to_str().expect("utf8"),
                "--loop",
                "--name",
                "Behind NAT",
                "--port",
                "0",
                "--http-port",
                "0",
                "--no-lsd",
                "--no-upnp",
                "--upload-limit",
                "1mbit",
            ],
        ),
        &d.join("broadcast.log"),
    );
    let bc_port = peercdn_port(&mut bc);
    let id = wait_line(&mut bc, "id: ");
    let bc_http = wait_line(&mut bc, "http: ");
    let bc_addr = format!("{src_ip}:{bc_port}");

    let viewer = |i: usize, limit: Option<&str>| {
        let mut args = vec![
            "engine",
            "--port",
            "0",
            "--http-port",
            "0",
            "--no-ace-tcp",
            "--no-lsd",
            "--peer",
            &bc_addr,
        ];
        if let Some(l) = limit {
            args.extend(["--upload-limit", l]);
        }
        let name = ["viewer-a", "viewer-b", "viewer-c"][i];
        Proc::spawn(
            name,
            peercdn_in(
                &inet.viewers[i],
                &format!("192.168.{net}.2"),
                &d.join(name),
                &args,
            ),
            &d.join(format!("{name}.log")),
        )
    };
    let mut a = viewer(0, Some("400kbit"));
    let mapped = wait_line(&mut a, "port mapping: ");
    assert!(
        mapped.starts_with(&format!("mapped {}:", inet.router_ip(0)))
            && mapped.contains("via upnp"),
        "A's port is not mapped: {mapped}"
    );
    let b = viewer(1, None);
    let c = viewer(2, None);
    let mut procs = [a, b, c];
    let http: Vec<String> = procs.iter_mut().map(|p| wait_line(p, "http: ")).collect();
    let [a, b, c] = &mut procs;
    let logs = |a: &Proc, b: &Proc, c: &Proc, bc: &Proc| {
        format!(
            "viewer A:\n{}\nviewer B:\n{}\nviewer C:\n{}\nbroadcast:\n{}",
            a.log_text(),
            b.log_text(),
            c.log_text(),
            bc.log_text()
        )
    };

    // Three players at once, each in its viewer's namespace.
    let players: Vec<(std::process::Child, std::path::PathBuf)> = (0..3)
        .map(|i| {
            let out = d.join(format!("played-{i}.ts"));
            let script = format!(
                "curl -sS --max-time 90 '{}/ace/getstream?id={id}' | head -c {PLAYED} > '{}'",
                http[i],
                out.display()
            );
            let child = exec_in(&inet.viewers[i], "bash")
                .args(["-c", &script])
                .spawn()
                .expect("start a player");
            (child, out)
        })
        .collect();
    for (i, (mut child, out)) in players.into_iter().enumerate() {
        let st = child.wait().expect("wait for a player");
        let got = std::fs::read(&out).map(|b| b.len()).unwrap_or(0);
        assert!(
            st.success() && got == PLAYED,
            "player {i} got {got} bytes ({st}):\n{}",
            logs(a, b, c, &bc)
        );
    }

    // Who is reachable: A (mapped), not B or C (their only incoming connections came of an
    // introduction).
    let node = |i: usize| inet.get_json(&inet.viewers[i], &format!("{}/api/v1/node", http[i]));
    let reach: Vec<serde_json::Value> = (0..3).map(node).collect();
    assert_eq!(reach[0]["reachable"], true, "A: {}", reach[0]);
    assert_eq!(reach[0]["mapping"]["state"], "mapped", "A: {}", reach[0]);
    for i in [1, 2] {
        assert_eq!(reach[i]["reachable"], false, "viewer {i}: {}", reach[i]);
    }

    // The broadcaster knows who can be dialled: A said so in its extension handshake (its
    // port is mapped), B and C did not; it serves reachable viewers first.
    let src = inet.get_json(&inet.src, &format!("{bc_http}/api/v1/live/{id}"));
    let peers = src["peer_list"].as_array().expect("peer_list");
    for i in 0..3 {
        let ip = inet.router_ip(i);
        let p = peers
            .iter()
            .find(|p| {
                p["addr"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&format!("{ip}:")))
            })
            .unwrap_or_else(|| panic!("the broadcaster has no peer at {ip}: {src}"));
        assert_eq!(p["reachable"], i == 0, "viewer {i} at the broadcaster: {p}");
    }

    // B and C: each holds a holepunched uTP connection to the other's router, and payload
    // crossed it.
    let live = |i: usize| inet.get_json(&inet.viewers[i], &format!("{}/api/v1/live/{id}", http[i]));
    let mut punched_bytes = 0;
    for (i, other) in [(1, 2), (2, 1)] {
        let st = live(i);
        let peers = st["peer_list"].as_array().expect("peer_list");
        let other_ip = inet.router_ip(other);
        let p = peers
            .iter()
            .find(|p| {
                p["holepunched"] == true
                    && p["addr"]
                        .as_str()
                        .is_some_and(|a| a.starts_with(&format!("{other_ip}:")))
            })
            .unwrap_or_else(|| {
                panic!(
                    "viewer {i} holds no holepunched connection to {other_ip}: {st}\n{}",
                    logs(a, b, c, &bc)
                )
            });
        assert_eq!(p["transport"], "utp", "{p}");
        let bytes = p["downloaded"].as_u64().unwrap_or(0) + p["uploaded"].as_u64().unwrap_or(0);
        punched_bytes += bytes;
        let wires = &st["peers_by_wire"];
        eprintln!(
            "viewer {}: {} bytes over the holepunched connection (down {}, up {}); \
             from peers {}, connections {wires}",
            ["A", "B", "C"][i],
            bytes,
            p["downloaded"],
            p["uploaded"],
            st["p2p_downloaded"]
        );
    }
    assert!(
        punched_bytes > 0,
        "no payload crossed the holepunched connections:\n{}",
        logs(a, b, c, &bc)
    );
    eprintln!(
        "reachable: 1 of 3 viewers (A, mapped via UPnP); B and C reached each other by \
         holepunch; {punched_bytes} bytes counted at both ends of it"
    );
}
