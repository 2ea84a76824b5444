//! A private LAN for whole-process tests: two network namespaces joined by a veth pair, with
//! IPv4 or IPv6 addresses, removed (with the pair) by a drop guard even when a test fails.
//! Needs root for `ip netns` (CI runs as root); a test without it FAILS with a message, never
//! skips.

use std::path::Path;
use std::process::Command;

/// Which addresses the LAN's two hosts get.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `10.203.X.1` and `.2` (/24), with a multicast route (LSD).
    V4,
    /// `fd00:203:X::1` and `::2` (/64), and no IPv4 address on the link.
    V6,
}

/// Two namespaces and a veth pair; removed on drop.
pub struct Lan {
    pub a: String,
    pub b: String,
    veth_a: String,
    family: Family,
    /// The per-process part of the subnet (X).
    net: u32,
}

impl Lan {
    /// Namespaces `pc-TAG-a-PID` and `pc-TAG-b-PID`, links and loopbacks up.
    pub fn new(tag: &str, family: Family) -> Lan {
        require_root();
        let pid = std::process::id();
        let lan = Lan {
            a: format!("pc-{tag}-a-{pid}"),
            b: format!("pc-{tag}-b-{pid}"),
            veth_a: format!("pc{tag}a{}", pid % 100_000),
            family,
            net: 10 + pid % 240,
        };
        let veth_b = format!("pc{tag}b{}", pid % 100_000);
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
            match family {
                Family::V4 => {
                    let addr = format!("{}/24", lan.addr(host));
                    ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
                }
                Family::V6 => {
                    // nodad: usable at once, without duplicate address detection's wait.
                    let addr = format!("{}/64", lan.addr(host));
                    ip(&["-n", ns, "addr", "add", &addr, "dev", dev, "nodad"]);
                }
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            if family == Family::V4 {
                ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev]);
            }
        }
        lan
    }

    /// Host 1 (in `a`) or 2 (in `b`).
    pub fn addr(&self, host: u8) -> String {
        match self.family {
            Family::V4 => format!("10.203.{}.{host}", self.net),
            Family::V6 => format!("fd00:203:{:x}::{host}", self.net),
        }
    }

    /// `ADDR:PORT` of host 1 or 2, bracketed for IPv6.
    pub fn sock(&self, host: u8, port: u16) -> String {
        match self.family {
            Family::V4 => format!("{}:{port}", self.addr(host)),
            Family::V6 => format!("[{}]:{port}", self.addr(host)),
        }
    }

    /// A command run inside namespace `ns` ([`exec_in`]).
    pub fn exec(&self, ns: &str, program: &str) -> Command {
        exec_in(ns, program)
    }

    /// A `peercdn` command run inside namespace `ns` ([`peercdn_in`]).
    pub fn peercdn(&self, ns: &str, bind: &str, data_dir: &Path, args: &[&str]) -> Command {
        peercdn_in(ns, bind, data_dir, args)
    }
}

/// A `peercdn` command run inside namespace `ns`, bound to `bind`, with its own data dir and
/// no DHT.
pub fn peercdn_in(ns: &str, bind: &str, data_dir: &Path, args: &[&str]) -> Command {
    let mut c = exec_in(ns, env!("CARGO_BIN_EXE_peercdn"));
    c.args(args)
        .args(["--bind", bind, "--no-dht", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info,peercdn_engine::lsd=debug")
        .env_remove("PEERCDN_NO_LSD");
    c
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

/// `program` run inside namespace `ns` (`ip netns exec`).
pub fn exec_in(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

/// Runs `ip ARGS`, panics with its stderr on failure.
pub fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Runs `c`, panics with its stderr on failure.
pub fn run(c: &mut Command) {
    output(c);
}

/// Runs `c` and returns its stdout; panics with its stderr on failure.
pub fn output(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn require_root() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "this test creates network namespaces and must run as root (CI does); \
         run it with sudo — it is never skipped"
    );
}
