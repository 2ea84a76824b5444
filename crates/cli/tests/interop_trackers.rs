//! Trackers and aria2: peers found through an HTTP tracker (`tests/interop/tracker.py`) instead
//! of `--peer`, in both directions, and aria2c downloading what peercdn published. All on
//! 127.0.0.1.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(120);

fn start_tracker(d: &Path) -> (Proc, String) {
    let port_file = d.join("tracker.port");
    let mut c = Command::new("/usr/bin/python3");
    c.arg(lt_peer().with_file_name("tracker.py"))
        .arg("--port-file")
        .arg(&port_file);
    let mut p = Proc::spawn("tracker", c, &d.join("tracker.log"));
    let port = wait_port_file(&port_file, &mut p);
    (p, format!("http://127.0.0.1:{port}/announce"))
}

#[test]
fn peercdn_finds_a_libtorrent_seeder_through_a_tracker() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_tracker, url) = start_tracker(d);
    let src = make_tree(&d.join("seed"), "content", 51);
    let torrent = d.join("c.torrent");
    let mut c = lt(&[
        "create",
        "--path",
        src.to_str().unwrap(),
        "--out",
        torrent.to_str().unwrap(),
        "--tracker",
        &url,
    ]);
    assert!(c.status().unwrap().success());
    let (_seed, _) = lt_start(
        d,
        "lt-seed",
        &[
            "seed",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("seed").to_str().unwrap(),
        ],
    );
    let out = d.join("out");
    // No --peer: the only way to the seeder is the tracker.
    let mut get = peercdn_get(d, "get", torrent.to_str().unwrap(), &out, &[], &[]);
    assert!(get.wait(T).success(), "{}", get.log_text());
    assert_same_tree(&src, &out.join("content"));
}

#[test]
fn aria2_downloads_what_peercdn_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_tracker, url) = start_tracker(d);
    let Seeded {
        proc: publisher,
        src,
        torrent,
        ..
    } = peercdn_publisher(d, "published", 61, &["--tracker", &url]);
    let out = d.join("aria2");
    let mut c = Command::new("aria2c");
    c.args([
        "--no-conf=true",
        "--interface=127.0.0.1",
        "--disable-ipv6=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--seed-time=0",
        "--summary-interval=0",
        "--console-log-level=warn",
    ])
    .arg(format!("--dir={}", out.display()))
    .arg(&torrent);
    let mut aria = Proc::spawn("aria2c", c, &d.join("aria2.log"));
    let st = aria.wait(T);
    assert!(
        st.success(),
        "aria2c failed ({st}):\n{}\npeercdn:\n{}",
        aria.log_text(),
        publisher.log_text()
    );
    assert_same_tree(&src, &out.join("published"));
}
