//! uTP's LEDBAT yields the uplink, measured on a real bottleneck: three network namespaces, A
//! and B joined through a router R whose link towards B is shaped to 20 Mbit/s with a deep,
//! home-router-like queue (tbf, 300 ms). (The queue is the router's, as on a real uplink: on
//! the sender's own interface, TCP small queues would cap each TCP flow's share of it.)
//! A seeds a large file; B downloads it with peercdn, once over uTP (`--utp prefer`) and once
//! over TCP (`--utp off`). A few seconds into each download another TCP flow from A to B (a
//! stand-in for the household's other traffic) starts and runs for 14 s; what it gets in its
//! middle 10 s is compared: beside a uTP upload it must get most of the link, and clearly more
//! than beside a TCP upload (which takes its fair half).
//!
//! Needs root for `ip netns` and `tc` (CI runs as root); without it the test FAILS, never
//! skips.
#![allow(clippy::disallowed_methods)] // tests: a real clock to bound a wait

mod common;

use std::io::Write;
use std::time::Duration;

use common::netns::{exec_in, ip, output, peercdn_in, require_root, run};
use common::*;

/// The bottleneck, bits per second.
const RATE_BIT: u64 = 20_000_000;
/// The competing flow's measured span, seconds.
const SPAN: u64 = 10;

/// The competing TCP flow: a receiver in B that reports the bytes it got between 2 s and
/// 2 s + SPAN after the first byte, and a sender in A that sends for SPAN + 4 s.
const RECEIVER: &str = r#"
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("READY to receive", flush=True)
c, _ = s.accept(); t0 = None; n = 0; lo = 2.0; hi = 2.0 + float(sys.argv[3])
while True:
    b = c.recv(1 << 16)
    if not b: break
    now = time.monotonic()
    if t0 is None: t0 = now
    if lo <= now - t0 < hi: n += len(b)
print("BYTES", n, flush=True)
"#;
const SENDER: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
end = time.monotonic() + float(sys.argv[3]); buf = b"\0" * (1 << 16)
while time.monotonic() < end: c.sendall(buf)
c.close()
"#;

/// A, R and B: `10.206.N.1` (A) — `.2` (R), `10.207.N.1` (R) — `.2` (B); removed on drop.
struct Path3 {
    a: String,
    r: String,
    b: String,
    net: u32,
    /// R's end towards B, where the bottleneck sits.
    r_to_b: String,
}

impl Path3 {
    fn new() -> Path3 {
        require_root();
        let pid = std::process::id();
        let tag = pid % 100_000;
        let p = Path3 {
            a: format!("pc-lb-a-{pid}"),
            r: format!("pc-lb-r-{pid}"),
            b: format!("pc-lb-b-{pid}"),
            net: 10 + pid % 240,
            r_to_b: format!("pclbrb{tag}"),
        };
        let net = p.net;
        let (a_dev, ra_dev, b_dev) = (
            format!("pclba{tag}"),
            format!("pclbra{tag}"),
            format!("pclbb{tag}"),
        );
        for ns in [&p.a, &p.r, &p.b] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", &a_dev, "type", "veth", "peer", "name", &ra_dev,
        ]);
        ip(&[
            "link", "add", &p.r_to_b, "type", "veth", "peer", "name", &b_dev,
        ]);
        for (dev, ns, addr) in [
            (&a_dev, &p.a, format!("10.206.{net}.1/24")),
            (&ra_dev, &p.r, format!("10.206.{net}.2/24")),
            (&p.r_to_b, &p.r, format!("10.207.{net}.1/24")),
            (&b_dev, &p.b, format!("10.207.{net}.2/24")),
        ] {
            ip(&["link", "set", dev, "netns", ns]);
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        let via_a = format!("10.206.{net}.2");
        let via_b = format!("10.207.{net}.1");
        ip(&["-n", &p.a, "route", "add", "default", "via", &via_a]);
        ip(&["-n", &p.b, "route", "add", "default", "via", &via_b]);
        run(exec_in(&p.r, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
        p
    }

    fn ip_a(&self) -> String {
        format!("10.206.{}.1", self.net)
    }

    fn ip_b(&self) -> String {
        format!("10.207.{}.2", self.net)
    }
}

impl Drop for Path3 {
    fn drop(&mut self) {
        for ns in [&self.a, &self.r, &self.b] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

#[test]
fn a_utp_upload_yields_the_bottleneck_to_other_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let path = Path3::new();
    let (ip_a, ip_b) = (path.ip_a(), path.ip_b());
    run(exec_in(&path.r, "tc").args([
        "qdisc",
        "add",
        "dev",
        &path.r_to_b,
        "root",
        "tbf",
        "rate",
        &format!("{}bit", RATE_BIT),
        "burst",
        "32kb",
        "latency",
        "300ms",
    ]));

    // 96 MB: neither download can finish inside the measurement (the link carries 2.5 MB/s).
    let src = d.join("pub").join("big");
    std::fs::create_dir_all(&src).unwrap();
    let mut f = std::fs::File::create(src.join("blob.bin")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..96 {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        f.write_all(&block).unwrap();
    }
    drop(f);
    let torrent = d.join("big.torrent");
    let mut publisher = Proc::spawn(
        "publisher",
        peercdn_in(
            &path.a,
            &ip_a,
            &d.join("pc-a"),
            &[
                "publish",
                src.to_str().unwrap(),
                "-o",
                torrent.to_str().unwrap(),
                "--port",
                "0",
                "--no-lsd",
                "--no-upnp",
            ],
        ),
        &d.join("publisher.log"),
    );
    let port = peercdn_port(&mut publisher);
    wait_until(Duration::from_secs(120), "the publisher to seed", || {
        publisher.log_text().contains("download complete")
    });

    let mut got = Vec::new();
    for (round, mode) in ["prefer", "off"].into_iter().enumerate() {
        let out = d.join(format!("out-{mode}"));
        let mut get = Proc::spawn(
            &format!("get-{mode}"),
            peercdn_in(
                &path.b,
                &ip_b,
                &d.join(format!("pc-b-{mode}")),
                &[
                    "get",
                    torrent.to_str().unwrap(),
                    "-o",
                    out.to_str().unwrap(),
                    "--no-seed",
                    "--port",
                    "0",
                    "--utp",
                    mode,
                    // LSD would let the seeder dial back first, over TCP.
                    "--no-lsd",
                    "--no-upnp",
                    "--peer",
                    &format!("{ip_a}:{port}"),
                ],
            ),
            &d.join(format!("get-{mode}.log")),
        );
        // The upload settles (LEDBAT's slow start, its base delay) before the other flow.
        std::thread::sleep(Duration::from_secs(5));
        assert!(
            running(&mut get),
            "the download ended early:\n{}",
            get.log_text()
        );

        let flow_port = (40_000 + round).to_string();
        let mut rx = Proc::spawn(
            &format!("rx-{mode}"),
            {
                let mut c = exec_in(&path.b, "python3");
                c.args(["-c", RECEIVER, &ip_b, &flow_port, &SPAN.to_string()]);
                c
            },
            &d.join(format!("rx-{mode}.log")),
        );
        wait_line(&mut rx, "READY ");
        output(exec_in(&path.a, "python3").args([
            "-c",
            SENDER,
            &ip_b,
            &flow_port,
            &(SPAN + 4).to_string(),
        ]));
        rx.wait(Duration::from_secs(30));
        let bytes: u64 = rx
            .log_text()
            .lines()
            .find_map(|l| l.strip_prefix("BYTES "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no BYTES line:\n{}", rx.log_text()));
        assert!(
            running(&mut get),
            "the download ended early:\n{}",
            get.log_text()
        );
        let _ = get.terminate(Duration::from_secs(10));
        got.push(bytes);
    }
    let capacity = RATE_BIT / 8 * SPAN;
    let share = |b: u64| b as f64 / capacity as f64;
    eprintln!(
        "the other flow's share of the link beside a uTP upload: {:.2}, beside a TCP upload: {:.2}",
        share(got[0]),
        share(got[1])
    );
    assert!(
        share(got[0]) >= 0.75,
        "beside a uTP upload the other flow got only {:.2} of the link",
        share(got[0])
    );
    assert!(
        got[0] as f64 >= 1.25 * got[1] as f64,
        "the other flow got as much beside TCP ({}) as beside uTP ({}): the link was not shared",
        got[1],
        got[0]
    );
    drop(publisher);
}
