//! A node behind NAT maps its port on the router with UPnP (or PCP), and a peer outside
//! reaches it.
//!
//! Three network namespaces the test creates: a home host `V` (192.168.X.2) behind a router
//! `R` that masquerades its LAN onto the "WAN" (nftables) and runs a real UPnP IGD and
//! PCP/NAT-PMP server (Debian's miniupnpd; the second test turns its UPnP off), and an outside host `O` on the WAN with no route into the LAN. The
//! WAN is 11.204.X.0/24: miniupnpd refuses to map behind a private external address (that would
//! be double NAT); that link exists only between `R` and `O`, nothing routes out of them.
//!
//! A publisher in `V` (bound to the wildcard) must map its port (`port mapping: mapped …`), a
//! downloader in `O` told only that external address gets the files, and when the publisher
//! stops the mapping is gone from the router.
//!
//! Needs root for `ip netns` and nftables (CI runs as root); without it the test FAILS, never
//! skips.
#![allow(clippy::disallowed_methods)] // tests: a real clock to bound a wait

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::netns::{exec_in, ip, output, peercdn_in, require_root, run};
use common::*;

/// The three namespaces, the router's rules and its miniupnpd; removed on drop.
struct Home {
    v: String,
    r: String,
    o: String,
    /// The third octet of both subnets.
    net: u32,
    wan_dev: String,
    links: [String; 2],
    miniupnpd: Option<Proc>,
}

impl Home {
    /// `upnp`: the router speaks UPnP IGD (and PCP/NAT-PMP); else PCP/NAT-PMP only.
    fn new(d: &Path, upnp: bool) -> Home {
        require_root();
        let pid = std::process::id();
        let net = 10 + pid % 240;
        let tag = pid % 100_000;
        // Both tests of this binary run at once: their namespaces and links differ by `k`.
        let k = if upnp { "u" } else { "p" };
        let mut home = Home {
            v: format!("pc-nat{k}-v-{pid}"),
            r: format!("pc-nat{k}-r-{pid}"),
            o: format!("pc-nat{k}-o-{pid}"),
            net,
            wan_dev: format!("pcnrw{k}{tag}"),
            links: [format!("pcnvl{k}{tag}"), format!("pcnrw{k}{tag}")],
            miniupnpd: None,
        };
        let (lan_v, lan_r, wan_o) = (
            format!("pcnvl{k}{tag}"),
            format!("pcnrl{k}{tag}"),
            format!("pcnow{k}{tag}"),
        );
        for ns in [&home.v, &home.r, &home.o] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", &lan_v, "type", "veth", "peer", "name", &lan_r,
        ]);
        ip(&[
            "link",
            "add",
            &home.wan_dev,
            "type",
            "veth",
            "peer",
            "name",
            &wan_o,
        ]);
        for (dev, ns, addr) in [
            (&lan_v, &home.v, format!("192.168.{net}.2/24")),
            (&lan_r, &home.r, format!("192.168.{net}.1/24")),
            (&home.wan_dev, &home.r, format!("11.204.{net}.1/24")),
            (&wan_o, &home.o, format!("11.204.{net}.2/24")),
        ] {
            ip(&["link", "set", dev, "netns", ns]);
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &home.v,
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{net}.1"),
        ]);
        run(exec_in(&home.r, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
        // The chains miniupnpd fills (its defaults: table `inet filter`), and the masquerade.
        let rules = format!(
            "table inet filter {{\n\
             chain forward {{ type filter hook forward priority 0; policy accept; jump miniupnpd; }}\n\
             chain miniupnpd {{ }}\n\
             chain prerouting {{ type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }}\n\
             chain postrouting {{ type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; oifname \"{}\" masquerade; }}\n\
             chain prerouting_miniupnpd {{ }}\n\
             chain postrouting_miniupnpd {{ }}\n\
             }}\n",
            home.wan_dev
        );
        let rules_file = d.join("router.nft");
        std::fs::write(&rules_file, rules).expect("write the router's rules");
        run(exec_in(&home.r, "nft").arg("-f").arg(&rules_file));
        let conf = d.join("miniupnpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ext_ifname={}\nlistening_ip={lan_r}\nhttp_port=0\nenable_upnp={}\n\
                 enable_natpmp=yes\nsecure_mode=no\nsystem_uptime=yes\n\
                 uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
                 allow 1024-65535 192.168.{net}.0/24 1024-65535\n\
                 deny 0-65535 0.0.0.0/0 0-65535\n",
                home.wan_dev,
                if upnp { "yes" } else { "no" }
            ),
        )
        .expect("write miniupnpd's config");
        let mut c = exec_in(&home.r, "miniupnpd");
        // Its own pid file: both tests of this binary run a miniupnpd at once.
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
            mu.log_text().contains("Listening for NAT-PMP/PCP traffic")
                && (!upnp || mu.log_text().contains("HTTP listening on port"))
        });
        home.miniupnpd = Some(mu);
        home
    }

    /// The router's port-forwarding rules (miniupnpd's chain).
    fn forwards(&self) -> String {
        output(exec_in(&self.r, "nft").args([
            "list",
            "chain",
            "inet",
            "filter",
            "prerouting_miniupnpd",
        ]))
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        drop(self.miniupnpd.take());
        for ns in [&self.v, &self.r, &self.o] {
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

#[test]
fn a_node_behind_nat_maps_its_port_and_an_outside_peer_downloads_from_it() {
    behind_nat(true, "upnp");
}

/// The same behind a router that speaks PCP and NAT-PMP but not UPnP (miniupnpd with UPnP
/// off): the node maps its port with PCP.
#[test]
fn a_node_behind_a_pcp_router_maps_its_port_and_an_outside_peer_downloads_from_it() {
    behind_nat(false, "pcp");
}

fn behind_nat(upnp: bool, via: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Declared first, so it is dropped last: the nodes are killed before the network goes.
    let home = Home::new(d, upnp);

    let src = make_tree(&d.join("pub"), "content", 31);
    let torrent = d.join("content.torrent");
    let mut publisher = Proc::spawn(
        "publisher",
        peercdn_in(
            &home.v,
            "0.0.0.0",
            &d.join("pc-v"),
            &[
                "publish",
                src.to_str().expect("utf-8"),
                "-o",
                torrent.to_str().expect("utf-8"),
                "--port",
                "0",
                "--no-lsd",
            ],
        ),
        &d.join("publisher.log"),
    );
    let mapped = wait_line(&mut publisher, "port mapping: ");
    let external = mapped
        .strip_prefix("mapped ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("not mapped: {mapped}\n{}", publisher.log_text()))
        .to_string();
    assert!(mapped.ends_with(&format!("via {via})")), "{mapped}");
    assert!(
        external.starts_with(&format!("11.204.{}.1:", home.net)),
        "mapped to {external}"
    );
    assert!(home.forwards().contains("dnat"), "{}", home.forwards());

    let out = d.join("out");
    let mut get = Proc::spawn(
        "outside",
        peercdn_in(
            &home.o,
            &format!("11.204.{}.2", home.net),
            &d.join("pc-o"),
            &[
                "get",
                torrent.to_str().expect("utf-8"),
                "-o",
                out.to_str().expect("utf-8"),
                "--no-seed",
                "--port",
                "0",
                "--no-lsd",
                "--no-upnp",
                "--peer",
                &external,
            ],
        ),
        &d.join("outside.log"),
    );
    let st = get.wait(Duration::from_secs(120));
    assert!(
        st.success(),
        "the outside peer failed ({st}):\n{}\npublisher:\n{}",
        get.log_text(),
        publisher.log_text()
    );
    assert_same_tree(&src, &out.join("content"));

    let st = publisher.terminate(Duration::from_secs(20));
    assert_eq!(st.code(), Some(130), "publish stops cleanly on SIGTERM");
    assert!(
        !home.forwards().contains("dnat"),
        "the mapping outlived the node:\n{}",
        home.forwards()
    );
}
