//! Interop with a real libtorrent (Debian's python3-libtorrent 2.0.8 through
//! `tests/interop/lt_peer.py`), all on 127.0.0.1, files compared byte for byte:
//! 1. peercdn downloads a multi-file torrent from a libtorrent seeder, from the .torrent and
//!    from a magnet (metadata through ut_metadata);
//! 2. libtorrent downloads from a peercdn seeder a torrent that peercdn made;
//! 3. two peercdn nodes and one libtorrent node, each starting with a different part of the
//!    pieces, all finish;
//! 4. MSE/PE both ways with a libtorrent that forces encryption, and a peercdn that requires
//!    it against a default libtorrent;
//! 5. uTP both ways with a libtorrent that speaks uTP only (TCP off both ways), plain and
//!    with encryption forced.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

mod common;

use std::time::Duration;

use common::*;
use peercdn_core::metainfo::Metainfo;

const T: Duration = Duration::from_secs(120);

#[test]
fn peercdn_downloads_from_libtorrent_by_torrent_and_by_magnet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let seed = lt_seeder(d, 1, 256 * 1024, &[]);
    let ih = Metainfo::from_bytes(&std::fs::read(&seed.torrent).unwrap())
        .unwrap()
        .info_hash;

    // From the .torrent.
    let out1 = d.join("out1");
    let mut p = peercdn_get(
        d,
        "get-torrent",
        seed.torrent_str(),
        &out1,
        &[seed.addr()],
        &[],
    );
    let st = p.wait(T);
    assert!(st.success(), "get failed ({st}):\n{}", p.log_text());
    assert_same_tree(&seed.src, &out1.join("content"));

    // From a magnet: only the info hash and the peer.
    let out2 = d.join("out2");
    let magnet = format!("magnet:?xt=urn:btih:{ih}&dn=content");
    let mut p = peercdn_get(d, "get-magnet", &magnet, &out2, &[seed.addr()], &[]);
    let st = p.wait(T);
    assert!(
        st.success(),
        "get (magnet) failed ({st}):\n{}",
        p.log_text()
    );
    assert_same_tree(&seed.src, &out2.join("content"));
}

#[test]
fn libtorrent_downloads_from_peercdn_publish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let Seeded {
        proc: mut publisher,
        src,
        torrent,
        port,
    } = peercdn_publisher(d, "published", 7, &[]);
    let log = publisher.log_text();
    let id_line = log
        .lines()
        .find(|l| l.starts_with("id: "))
        .expect("publish prints the id");
    assert_eq!(id_line.len(), 4 + 40);

    let out = d.join("lt-out");
    let (mut leech, _) = lt_start(
        d,
        "lt-leech",
        &[
            "leech",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            out.to_str().unwrap(),
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "100",
        ],
    );
    let st = leech.wait(T);
    assert!(
        st.success(),
        "libtorrent leech failed ({st}):\n{}\npeercdn:\n{}",
        leech.log_text(),
        publisher.log_text()
    );
    assert_same_tree(&src, &out.join("published"));
    let st = publisher.terminate(Duration::from_secs(20));
    assert_eq!(st.code(), Some(130), "publish stops cleanly on SIGTERM");
}

#[test]
fn mixed_swarm_with_different_parts_all_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let src = make_tree(&d.join("orig"), "swarm", 3);
    let torrent = d.join("s.torrent");
    lt_create(&src, &torrent, Some(128 * 1024));
    let t = torrent.to_str().unwrap();

    // Each node's directory starts as a full copy with the pieces it must not have zeroed.
    let prepare = |name: &str, keep: &str| {
        let root = d.join(name);
        copy_tree(&src, &root.join("swarm"));
        let st = lt(&[
            "corrupt",
            "--torrent",
            t,
            "--save",
            root.to_str().unwrap(),
            "--keep",
            keep,
        ])
        .status()
        .expect("corrupt");
        assert!(st.success());
        root
    };
    let lt_dir = prepare("lt", "even");
    let a_dir = prepare("a", "first-half");
    let b_dir = prepare("b", "second-half");

    let (_lt_seed, lt_port) = lt_start(
        d,
        "lt-partial",
        &["seed", "--torrent", t, "--save", lt_dir.to_str().unwrap()],
    );
    let lt_peer = format!("127.0.0.1:{lt_port}");
    let mut a = Proc::spawn(
        "peercdn-a",
        peercdn(
            &d.join("pa"),
            &[
                "get",
                t,
                "-o",
                a_dir.to_str().unwrap(),
                "--peer",
                &lt_peer,
                "--port",
                "0",
            ],
        ),
        &d.join("a.log"),
    );
    let a_port = peercdn_port(&mut a);
    let mut b = Proc::spawn(
        "peercdn-b",
        peercdn(
            &d.join("pb"),
            &[
                "get",
                t,
                "-o",
                b_dir.to_str().unwrap(),
                "--peer",
                &lt_peer,
                "--peer",
                &format!("127.0.0.1:{a_port}"),
                "--port",
                "0",
            ],
        ),
        &d.join("b.log"),
    );
    let dirs = [
        (&lt_dir, "libtorrent"),
        (&a_dir, "peercdn a"),
        (&b_dir, "peercdn b"),
    ];
    let complete = || {
        dirs.iter()
            .all(|(dir, _)| same_tree(&src, &dir.join("swarm")))
    };
    let deadline = std::time::Instant::now() + T;
    while !complete() {
        if std::time::Instant::now() > deadline {
            let states: Vec<String> = dirs
                .iter()
                .map(|(dir, n)| format!("{n}: {}", same_tree(&src, &dir.join("swarm"))))
                .collect();
            panic!(
                "not all finished: {states:?}\na:\n{}\nb:\n{}",
                a.log_text(),
                b.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        a.log_text().contains("complete"),
        "a reports completion:\n{}",
        a.log_text()
    );
    let _ = b.terminate(Duration::from_secs(20));
}

/// MSE/PE with libtorrent, with encryption forced on libtorrent's side (MSE handshake and RC4
/// payload only, in and out): peercdn (default `prefer`) dials a forcing libtorrent seeder and
/// downloads from it (libtorrent selects RC4 of the two offered); a forcing libtorrent leech
/// dials a peercdn seeder and downloads from it (RC4 is all it offers); peercdn with
/// `--encryption require` downloads from a default libtorrent seeder (which selects RC4, the
/// only method offered). The control: a `--encryption plaintext` peercdn gets nothing from the
/// forcing seeder, so "forced" is really in force.
#[test]
fn encrypted_transfers_both_ways_with_libtorrent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let forced = lt_seeder(d, 11, 256 * 1024, &["--encryption", "forced"]);

    let out = d.join("from-forced");
    let mut p = peercdn_get(
        d,
        "get-forced",
        forced.torrent_str(),
        &out,
        &[forced.addr()],
        &[],
    );
    let st = p.wait(T);
    assert!(
        st.success(),
        "get from a forcing seeder failed ({st}):\n{}",
        p.log_text()
    );
    assert_same_tree(&forced.src, &out.join("content"));

    let plain_out = d.join("plaintext");
    let mut plain = peercdn_get(
        d,
        "get-plaintext",
        forced.torrent_str(),
        &plain_out,
        &[forced.addr()],
        &["--encryption", "plaintext"],
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !same_tree(&forced.src, &plain_out.join("content")),
        "a plaintext-only peercdn got the content from a seeder that forces encryption"
    );
    let _ = plain.terminate(Duration::from_secs(20));

    let Seeded {
        proc: mut publisher,
        src,
        torrent,
        port,
    } = peercdn_publisher(d, "enc-published", 12, &[]);
    let lt_out = d.join("lt-forced-out");
    let (mut leech, _) = lt_start(
        d,
        "lt-forced-leech",
        &[
            "leech",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            lt_out.to_str().unwrap(),
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--encryption",
            "forced",
            "--timeout",
            "100",
        ],
    );
    let st = leech.wait(T);
    assert!(
        st.success(),
        "forcing libtorrent leech failed ({st}):\n{}\npeercdn:\n{}",
        leech.log_text(),
        publisher.log_text()
    );
    assert_same_tree(&src, &lt_out.join("enc-published"));
    let _ = publisher.terminate(Duration::from_secs(20));

    let sub = d.join("default-seeder");
    std::fs::create_dir_all(&sub).unwrap();
    let default = lt_seeder(&sub, 13, 256 * 1024, &[]);
    let out = d.join("required");
    let mut p = peercdn_get(
        d,
        "get-required",
        default.torrent_str(),
        &out,
        &[default.addr()],
        &["--encryption", "require"],
    );
    let st = p.wait(T);
    assert!(
        st.success(),
        "get --encryption require failed ({st}):\n{}",
        p.log_text()
    );
    assert_same_tree(&default.src, &out.join("content"));
}

/// libtorrent with TCP off (in and out) seeds to peercdn, which finds that TCP fails and
/// falls back to uTP; then downloads from a peercdn publisher over uTP, once with
/// encryption forced (MSE over uTP). libtorrent's own `TRANSPORT` lines say which transport
/// it used.
#[test]
fn utp_only_transfers_both_ways_with_libtorrent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let seeder = lt_seeder(d, 21, 256 * 1024, &["--transport", "utp", "--print-peers"]);
    let out = d.join("from-utp");
    let mut p = peercdn_get(
        d,
        "get-utp",
        seeder.torrent_str(),
        &out,
        &[seeder.addr()],
        &[],
    );
    let st = p.wait(T);
    assert!(
        st.success(),
        "get from a uTP-only seeder failed ({st}):\n{}",
        p.log_text()
    );
    assert_same_tree(&seeder.src, &out.join("content"));

    let Seeded {
        proc: mut publisher,
        src,
        torrent,
        port,
    } = peercdn_publisher(d, "utp-published", 22, &[]);
    for (name, extra) in [
        ("plain", &[][..]),
        ("forced", &["--encryption", "forced"][..]),
    ] {
        let lt_out = d.join(format!("lt-utp-{name}"));
        let mut args = vec![
            "leech",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            lt_out.to_str().unwrap(),
            "--transport",
            "utp",
            "--print-peers",
            "--timeout",
            "100",
        ];
        let peer = format!("127.0.0.1:{port}");
        args.extend(["--peer", &peer]);
        args.extend(extra);
        let (mut leech, _) = lt_start(d, &format!("lt-utp-leech-{name}"), &args);
        let st = leech.wait(T);
        let log = leech.log_text();
        assert!(
            st.success(),
            "uTP-only libtorrent leech ({name}) failed ({st}):\n{log}\npeercdn:\n{}",
            publisher.log_text()
        );
        assert_same_tree(&src, &lt_out.join("utp-published"));
        assert!(
            log.lines()
                .any(|l| l.starts_with("TRANSPORT") && l.contains("transport=utp")),
            "libtorrent did not report a uTP peer:\n{log}"
        );
        assert!(!log.contains("transport=tcp"), "{log}");
    }
    let _ = publisher.terminate(Duration::from_secs(20));
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}
