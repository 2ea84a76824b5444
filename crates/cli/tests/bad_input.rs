//! Bad input gets a clear error and loses nothing: unsafe paths in a torrent, garbage and
//! oversized messages on a connection, a peer that sends corrupt data, a download killed with
//! SIGKILL, and a full disk. Real processes, real sockets, all on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::*;
use peercdn_core::bencode::OwnedValue;
use peercdn_core::metainfo::Metainfo;
use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::{InfoHash, PeerId};

const T: Duration = Duration::from_secs(120);

/// A hand-made multi-file torrent whose second file has the given path components.
fn torrent_with_path(components: &[&str]) -> Vec<u8> {
    let file = |path: &[&str], len: i64| {
        OwnedValue::dict()
            .with("length", len)
            .with(
                "path",
                OwnedValue::list(path.iter().map(|c| OwnedValue::str(c))),
            )
            .build()
    };
    let info = OwnedValue::dict()
        .with(
            "files",
            OwnedValue::list([file(&["ok.bin"], 10), file(components, 10)]),
        )
        .with("name", "evil")
        .with("piece length", 16384i64)
        .with("pieces", vec![0u8; 20])
        .build();
    OwnedValue::dict().with("info", info).build().encode()
}

#[test]
fn unsafe_paths_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (i, comps) in [
        vec!["..", "escape.bin"],
        vec!["/etc", "passwd"],
        vec!["a", "", "b"],
        vec!["sub/../../x"],
    ]
    .iter()
    .enumerate()
    {
        let t = d.join(format!("evil{i}.torrent"));
        std::fs::write(&t, torrent_with_path(comps)).unwrap();
        let out = d.join(format!("out{i}"));
        std::fs::create_dir_all(&out).unwrap();
        let o = peercdn(
            &d.join("data"),
            &[
                "get",
                t.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--port",
                "0",
                "--no-seed",
            ],
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{comps:?} refused with exit 1; stderr: {err}"
        );
        assert!(
            err.contains("not a valid .torrent") && err.to_lowercase().contains("path"),
            "clear message: {err}"
        );
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "nothing written for {comps:?}"
        );
    }
    assert!(!d.join("escape.bin").exists());
}

/// A raw TCP client: handshake, then the given bytes; returns whether the peer closed on us.
fn send_raw_and_expect_close(port: u16, info_hash: InfoHash, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&Handshake::ours(info_hash, PeerId::ours([1; 12])).encode())
        .unwrap();
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs).unwrap();
    let _ = s.write_all(bytes);
    // Drain until EOF (closed) or timeout (kept open).
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn malformed_messages_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = peercdn_publisher(d, "content", 11, &[]);
    let (src, torrent, port) = (seed.src.clone(), seed.torrent.clone(), seed.port);
    let m = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();

    let oversized = (64u32 << 20).to_be_bytes();
    let unknown_id = [0, 0, 0, 1, 99];
    let bad_have = [0, 0, 0, 2, 4, 0]; // HAVE with a 1-byte body
    let mut bitfield_wrong_size = vec![0, 0, 0, 3, 5, 0xff, 0xff];
    bitfield_wrong_size.truncate(7);
    for (what, bytes) in [
        ("oversized length", &oversized[..]),
        ("unknown message id", &unknown_id[..]),
        ("bad HAVE length", &bad_have[..]),
        ("bitfield of the wrong size", &bitfield_wrong_size[..]),
    ] {
        assert!(
            send_raw_and_expect_close(port, m.info_hash, bytes),
            "{what}: connection closed"
        );
    }
    // Not BitTorrent and not an MSE/PE handshake either (no sync value after the longest
    // pad): closed, after at most our half of an MSE exchange (Yb and a pad).
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0x8a; 96 + 600]).unwrap();
    let mut got = 0;
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("garbage kept the connection open ({e})"),
        }
    }
    assert!(got <= 96 + 512, "{got} bytes answered to garbage");

    // The node still serves everyone else.
    let out = d.join("out");
    let mut get = peercdn_get(
        d,
        "getter",
        torrent.to_str().unwrap(),
        &out,
        &[format!("127.0.0.1:{port}")],
        &[],
    );
    assert!(get.wait(T).success(), "{}", get.log_text());
    assert_same_tree(&src, &out.join("content"));
}

/// A peer that claims every piece and answers every request with the wrong bytes, on every
/// connection. It reads any 68 bytes as a handshake and answers in plain BitTorrent at once,
/// so a dial that starts with MSE/PE sees a plain answer and dials again in plain.
fn evil_seeder(listener: TcpListener, info_hash: InfoHash) {
    for s in listener.incoming() {
        let Ok(s) = s else { return };
        std::thread::spawn(move || evil_connection(s, info_hash));
    }
}

fn evil_connection(mut s: std::net::TcpStream, info_hash: InfoHash) {
    let mut hs = [0u8; 68];
    if s.read_exact(&mut hs).is_err() {
        return;
    }
    let _ = s.write_all(&Handshake::ours(info_hash, PeerId::ours([6; 12])).encode());
    let mut out = bytes::BytesMut::new();
    wire::encode(&Message::HaveAll, &mut out);
    wire::encode(&Message::Unchoke, &mut out);
    let _ = s.write_all(&out);
    let mut buf = bytes::BytesMut::new();
    let mut tmp = [0u8; 65536];
    loop {
        loop {
            match wire::decode(&mut buf, 1 << 20) {
                Ok(Some(Message::Request(b))) => {
                    let mut o = bytes::BytesMut::new();
                    let data = bytes::Bytes::from(vec![0xEE; b.len as usize]);
                    wire::encode(
                        &Message::Piece {
                            index: b.index,
                            begin: b.begin,
                            data,
                        },
                        &mut o,
                    );
                    if s.write_all(&o).is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

#[test]
fn peer_sending_corrupt_data_is_banned_and_pieces_come_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The honest seeder is slow, so the evil one gets asked for plenty.
    let good = lt_seeder(d, 21, 256 * 1024, &["--upload-limit", "4000000"]);
    let src = good.src.clone();
    let m = Metainfo::from_bytes(&std::fs::read(&good.torrent).unwrap()).unwrap();
    let evil = TcpListener::bind("127.0.0.1:0").unwrap();
    let evil_port = evil.local_addr().unwrap().port();
    let ih = m.info_hash;
    std::thread::spawn(move || evil_seeder(evil, ih));

    let out = d.join("out");
    let peers = [format!("127.0.0.1:{evil_port}"), good.addr()];
    let mut get = peercdn_get(d, "getter", good.torrent_str(), &out, &peers, &[]);
    let st = get.wait(T);
    let log = get.log_text();
    assert!(st.success(), "{log}");
    assert_same_tree(&src, &out.join("content"));
    assert!(
        log.contains("failed its hash"),
        "hash failure logged:\n{log}"
    );
    assert!(
        log.contains("banning peer") && log.contains(&format!("127.0.0.1:{evil_port}")),
        "evil peer banned:\n{log}"
    );
}

#[test]
fn sigkill_then_resume_keeps_verified_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = lt_seeder(d, 31, 64 * 1024, &[]);
    let src = seed.src.clone();
    let out = d.join("out");
    let run = |name: &str, limit: &str| {
        peercdn_get_in(
            d,
            "pg",
            name,
            seed.torrent_str(),
            &out,
            &[seed.addr()],
            &["--download-limit", limit],
        )
    };
    let mut first = run("first", "2MiB");
    // Wait until a few MB are on disk, then kill without warning.
    let video = out.join("content/video.ts");
    wait_until(T, "some data on disk", || nonzero_bytes(&video) > 3_000_000);
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let mut second = run("second", "0");
    assert!(second.wait(T).success(), "{}", second.log_text());
    assert_same_tree(&src, &out.join("content"));
    let log = second.log_text();
    let have: u32 = log
        .lines()
        .find_map(|l| l.split("checked existing data have=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no check line:\n{log}"));
    assert!(
        have >= 20,
        "pieces verified before the kill were kept (have={have}):\n{log}"
    );
}

fn nonzero_bytes(p: &Path) -> usize {
    std::fs::read(p)
        .map(|v| v.iter().filter(|&&b| b != 0).count())
        .unwrap_or(0)
}

/// A tmpfs of a given size, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (the test suite runs as root)"
        );
        SmallDisk(at.to_path_buf())
    }

    fn grow(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_disk_stops_with_a_clear_error_and_resumes_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = lt_seeder(d, 41, 64 * 1024, &[]);
    let src = seed.src.clone();
    let disk = SmallDisk::mount(&d.join("small"), "4m");
    let get = |name: &str| {
        peercdn_get_in(
            d,
            "pg",
            name,
            seed.torrent_str(),
            &disk.0,
            &[seed.addr()],
            &[],
        )
    };
    let mut first = get("first");
    let st = first.wait(T);
    let log = first.log_text();
    assert_eq!(
        st.code(),
        Some(3),
        "a full disk ends the download with exit 3:\n{log}"
    );
    assert!(log.contains("disk full"), "clear message:\n{log}");
    assert!(
        log.contains("the disk is full: free some space"),
        "a full disk is told apart from other errors (the typed storage error reaches the CLI):\n{log}"
    );

    disk.grow("64m");
    let mut second = get("second");
    assert!(second.wait(T).success(), "{}", second.log_text());
    assert_same_tree(&src, &disk.0.join("content"));
}
