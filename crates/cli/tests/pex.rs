//! Peer exchange (BEP 11, `ut_pex`) with a real libtorrent, both ways, all on 127.0.0.1:
//!
//! (a) **libtorrent reads ours.** A peercdn seeder S; a libtorrent leecher L that knows only S;
//!     later a peercdn leecher P that knows only S. S sends its first PEX to a peer 60 s after
//!     that peer connected, so S tells L about P about 20 s before it tells P about L: in that
//!     window L must dial P's listen address, and L's `PEER` line for it must say `dir=out
//!     src=pex`.
//! (b) **We read libtorrent's.** A libtorrent seeder LS (which sends PEX about a second after
//!     it has two peers); a libtorrent leecher Q that knows only LS and runs *without* ut_pex;
//!     a peercdn leecher P that knows only LS. Q can learn of P only by P dialling it, and P
//!     can learn of Q only from LS's PEX: Q must see an incoming connection from a peercdn
//!     client.
//!
//! Seeders are rate-limited so nobody completes (and stops wanting peers) before the check.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Waits until `p`'s log has a line for which `want` holds; panics with the logs otherwise.
fn wait_line(
    p: &mut Proc,
    timeout: Duration,
    what: &str,
    others: &[&Proc],
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = p.log_text().lines().find(|l| want(l)) {
            return line.to_string();
        }
        let exited = matches!(p.child.try_wait(), Ok(Some(_)));
        if exited || Instant::now() > deadline {
            let mut msg = format!(
                "{what}: not seen in {timeout:?}{}\n--- {} log:\n{}",
                if exited { " (process exited)" } else { "" },
                p.name,
                p.log_text()
            );
            for o in others {
                msg.push_str(&format!("\n--- {} log:\n{}", o.name, o.log_text()));
            }
            panic!("{msg}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `PEER 127.0.0.1:PORT dir=… src=… client=…` → (port, dir, src, client).
fn parse_peer(line: &str) -> Option<(u16, &str, &str, &str)> {
    let rest = line.strip_prefix("PEER ")?;
    let (addr, rest) = rest.split_once(' ')?;
    let port = addr.rsplit_once(':')?.1.parse().ok()?;
    let (dir, rest) = rest.strip_prefix("dir=")?.split_once(' ')?;
    let (src, client) = rest.strip_prefix("src=")?.split_once(' ')?;
    Some((port, dir, src, client.strip_prefix("client=")?))
}

#[test]
fn libtorrent_learns_a_peer_from_our_pex() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let seeder = peercdn_publisher(d, "content", 31, &["--upload-limit", "100KB"]);
    let s = seeder.addr();

    let out_l = d.join("lt-out");
    let (mut l, _) = lt_start(
        d,
        "lt-leech",
        &[
            "leech",
            "--torrent",
            seeder.torrent_str(),
            "--save",
            out_l.to_str().expect("utf-8"),
            "--peer",
            &s,
            "--print-peers",
        ],
    );
    wait_line(
        &mut l,
        Duration::from_secs(20),
        "libtorrent connected to S",
        &[&seeder.proc],
        |line| {
            parse_peer(line).is_some_and(|(port, dir, _, _)| port == seeder.port && dir == "out")
        },
    );
    // L's first PEX from S is due 60 s after this; P joins 20 s in, so S's first PEX to P
    // (which would list L and let P dial first) comes 20 s after S's to L.
    let l_connected = Instant::now();
    std::thread::sleep(Duration::from_secs(20));

    let out_p = d.join("p-out");
    let mut p = peercdn_get(
        d,
        "p",
        seeder.torrent_str(),
        &out_p,
        std::slice::from_ref(&s),
        &[],
    );
    let p_port = peercdn_port(&mut p);

    let line = wait_line(
        &mut l,
        Duration::from_secs(60),
        "libtorrent dialling P's listen port after S's PEX",
        &[&seeder.proc, &p],
        |line| parse_peer(line).is_some_and(|(port, dir, _, _)| port == p_port && dir == "out"),
    );
    let (_, _, src, client) = parse_peer(&line).expect("PEER line");
    assert!(
        src.split(',').any(|s| s == "pex"),
        "L learned P other than by PEX: {line}"
    );
    assert!(client.contains("peercdn"), "{line}");
    let waited = l_connected.elapsed();
    assert!(
        waited < Duration::from_secs(80),
        "L found P only after {waited:?}: too late to be S's first PEX to L"
    );
}

#[test]
fn we_learn_a_peer_from_libtorrent_pex() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ls = lt_seeder(d, 32, 256 * 1024, &["--upload-limit", "100000"]);
    let seed = ls.addr();

    // Q: knows only LS and speaks no PEX, so it never dials anyone else.
    let out_q = d.join("q-out");
    let (mut q, _) = lt_start(
        d,
        "lt-q",
        &[
            "leech",
            "--torrent",
            ls.torrent_str(),
            "--save",
            out_q.to_str().expect("utf-8"),
            "--peer",
            &seed,
            "--no-pex",
            "--print-peers",
        ],
    );
    wait_line(
        &mut q,
        Duration::from_secs(20),
        "Q connected to LS",
        &[&ls.proc],
        |line| parse_peer(line).is_some_and(|(port, dir, _, _)| port == ls.port && dir == "out"),
    );

    // P: a peercdn leecher that knows only LS.
    let out_p = d.join("p-out");
    let p = peercdn_get(
        d,
        "p",
        ls.torrent_str(),
        &out_p,
        std::slice::from_ref(&seed),
        &[],
    );

    // LS sends P a PEX listing Q within seconds of having two peers; P dials Q. libtorrent
    // sends PEX once a minute per peer, so a first message that missed Q (LS's list is built
    // from the peers it has finished handshakes with) is followed by one 60 s later: the wait
    // covers two. (It ran out at 40 s once, in a full suite on two busy cores.)
    let line = wait_line(
        &mut q,
        Duration::from_secs(100),
        "peercdn dialling Q after libtorrent's PEX",
        &[&ls.proc, &p],
        |line| {
            parse_peer(line)
                .is_some_and(|(_, dir, _, client)| dir == "in" && client.contains("peercdn"))
        },
    );
    assert!(parse_peer(&line).is_some(), "{line}");
}

#[test]
fn peer_line_parser() {
    assert_eq!(
        parse_peer("PEER 127.0.0.1:6881 dir=out src=pex,tracker client=peercdn/0.1.0"),
        Some((6881, "out", "pex,tracker", "peercdn/0.1.0"))
    );
    assert_eq!(
        parse_peer("PEER 127.0.0.1:1 dir=in src=incoming client=libtorrent 2.0.8"),
        Some((1, "in", "incoming", "libtorrent 2.0.8"))
    );
    assert_eq!(parse_peer("STATUS progress=0.5"), None);
    assert_eq!(parse_peer("PEER junk"), None);
}
