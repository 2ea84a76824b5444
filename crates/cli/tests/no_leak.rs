//! Nothing leaves loopback: a run with a private DHT bootstrap sends no packet to any
//! non-loopback address.
//!
//! Method: the whole scenario runs inside a fresh network namespace whose only interface is
//! `lo`. There, every packet for a non-loopback address finds no route, and the kernel counts
//! it in that namespace's `Ip: OutNoRoutes` (`/proc/net/snmp`) or `Ip6OutNoRoutes`
//! (`/proc/net/snmp6`) before failing the send. Three `peercdn` nodes (a bootstrap engine, a
//! publisher, a `get` by bare content ID) run with `--dht-bootstrap 127.0.0.1:<node 0>` and the
//! download must complete while neither counter moves. A negative control in the same
//! namespace (a UDP datagram to 192.0.2.1 and one to 2001:db8::1, TEST-NET addresses) proves
//! the counters do count such sends.
//!
//! Needs root (for `ip netns add`); CI runs tests as root. Without root the test FAILS with a
//! message: it never skips silently. (Checked by hand: the same engine started inside such a
//! namespace with the public DHT routers moves `OutNoRoutes` within seconds.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::netns::{output, run};
use common::*;

/// A network namespace with only `lo` (up), removed on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> NetNs {
        let name = format!("pc-leak-{}", std::process::id());
        // A namespace left by a killed earlier run with the same PID would make `add` fail.
        if Path::new("/run/netns").join(&name).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs { name };
        run(&mut ns.exec("ip", &["link", "set", "lo", "up"]));
        ns
    }

    /// `ip netns exec NAME PROGRAM ARGS…`.
    fn exec(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// `cmd` (program, arguments, environment) run inside the namespace.
    fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// (`Ip: OutNoRoutes`, `Ip6OutNoRoutes`) of the namespace.
    fn no_routes(&self) -> (u64, u64) {
        let snmp = output(&mut self.exec("cat", &["/proc/net/snmp"]));
        let snmp6 = output(&mut self.exec("cat", &["/proc/net/snmp6"]));
        (parse_snmp(&snmp, "Ip:", "OutNoRoutes"), parse_snmp6(&snmp6))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A field of `/proc/net/snmp`: a header line `Ip: A B C…` followed by a value line
/// `Ip: 1 2 3…`.
fn parse_snmp(text: &str, prefix: &str, field: &str) -> u64 {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let (Some(header), Some(values)) = (lines.next(), lines.next()) else {
        panic!("no {prefix} lines in /proc/net/snmp:\n{text}");
    };
    let col = header
        .split_whitespace()
        .position(|h| h == field)
        .unwrap_or_else(|| panic!("no {field} in {header}"));
    values
        .split_whitespace()
        .nth(col)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad value line {values}"))
}

/// `Ip6OutNoRoutes` of `/proc/net/snmp6` (`name value` lines).
fn parse_snmp6(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("Ip6OutNoRoutes")).then(|| it.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Ip6OutNoRoutes in /proc/net/snmp6:\n{text}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A `peercdn` node inside the namespace (same flags as [`peercdn`]).
fn spawn_in(ns: &NetNs, d: &Path, name: &str, args: &[&str]) -> Proc {
    let cmd = peercdn(&d.join(format!("{name}-data")), args);
    Proc::spawn(name, ns.wrap(&cmd), &d.join(format!("{name}.log")))
}

#[test]
fn private_dht_run_sends_nothing_off_loopback() {
    assert!(
        is_root(),
        "no_leak needs root: it creates a network namespace (`ip netns add`) to count packets \
         sent to non-loopback addresses. Run the tests as root (CI does)."
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ns = NetNs::new();
    let before = ns.no_routes();

    // Node 0: the bootstrap engine; its DHT knows only itself. In the fresh namespace every
    // port is free.
    let boot_port = free_port();
    let boot = format!("127.0.0.1:{boot_port}");
    let port_arg = boot_port.to_string();
    let mut boot_node = spawn_in(
        &ns,
        d,
        "boot",
        &[
            "engine",
            "--port",
            "0",
            "--dht-port",
            &port_arg,
            "--http-port",
            "0",
            "--dht-bootstrap",
            &boot,
        ],
    );
    peercdn_port(&mut boot_node);

    // Node 1: the publisher.
    let src = make_tree(&d.join("pub"), "content", 5);
    let torrent = d.join("content.torrent");
    let mut publisher = spawn_in(
        &ns,
        d,
        "publisher",
        &[
            "publish",
            src.to_str().expect("utf-8"),
            "-o",
            torrent.to_str().expect("utf-8"),
            "--port",
            "0",
            "--dht-bootstrap",
            &boot,
        ],
    );
    peercdn_port(&mut publisher);
    let id = publisher
        .log_text()
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("publish prints the id")
        .to_string();

    // Node 2: a viewer with the bare ID and the bootstrap node only.
    let out = d.join("out");
    let mut get = spawn_in(
        &ns,
        d,
        "viewer",
        &[
            "get",
            &id,
            "-o",
            out.to_str().expect("utf-8"),
            "--no-seed",
            "--port",
            "0",
            "--dht-bootstrap",
            &boot,
        ],
    );
    let st = get.wait(Duration::from_secs(120));
    assert!(
        st.success(),
        "get by ID through the private DHT failed ({st}):\n{}\npublisher:\n{}",
        get.log_text(),
        publisher.log_text()
    );
    assert_same_tree(&src, &out.join("content"));
    // Let the long-running nodes do a little more (DHT upkeep, re-dials) before counting.
    std::thread::sleep(Duration::from_secs(2));
    let after = ns.no_routes();
    drop(publisher);
    drop(boot_node);
    assert_eq!(
        after, before,
        "(Ip OutNoRoutes, Ip6OutNoRoutes) moved: something was sent to a non-loopback address"
    );

    // Negative control: a datagram to TEST-NET-1 and one to the IPv6 documentation prefix
    // have no route in the namespace and must be counted.
    let snippet = "import socket\n\
        for fam, addr in ((socket.AF_INET, '192.0.2.1'), (socket.AF_INET6, '2001:db8::1')):\n\
        \x20   s = socket.socket(fam, socket.SOCK_DGRAM)\n\
        \x20   try:\n\
        \x20       s.sendto(b'leak', (addr, 9))\n\
        \x20   except OSError:\n\
        \x20       pass\n";
    run(&mut ns.exec("/usr/bin/python3", &["-c", snippet]));
    let control = ns.no_routes();
    assert!(
        control.0 > after.0,
        "the IPv4 counter did not see a send to 192.0.2.1: {after:?} -> {control:?}"
    );
    assert!(
        control.1 > after.1,
        "the IPv6 counter did not see a send to 2001:db8::1: {after:?} -> {control:?}"
    );
}

#[test]
fn snmp_parsers() {
    let snmp = "Ip: Forwarding DefaultTTL OutNoRoutes\nIp: 2 64 7\nIcmp: InMsgs\nIcmp: 0\n";
    assert_eq!(parse_snmp(snmp, "Ip:", "OutNoRoutes"), 7);
    let snmp6 = "Ip6InReceives                   \t3\nIp6OutNoRoutes                  \t11\n";
    assert_eq!(parse_snmp6(snmp6), 11);
}
