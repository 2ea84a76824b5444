//! README command 1, `peercdn demo`, as a newcomer runs it (smaller content): it must end well
//! and show both halves — a VoD download checked byte for byte, and a live stream that a dozen
//! viewer nodes play while relaying it, the broadcaster sending about two copies — and the
//! live stream must be real video a person can watch while the demo runs: the player page it
//! prints answers, and ffprobe finds H.264 in the stream's HLS playlist.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn the_demo_shows_vod_and_live() {
    let mut child = Kill(
        Command::new(env!("CARGO_BIN_EXE_peercdn"))
            .args(["demo", "--size", "4MiB"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("peercdn runs"),
    );
    let (tx, lines) = mpsc::sync_channel::<String>(4096);
    // stderr is read all along too, so the demo never blocks on a full pipe.
    let mut err = child.0.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let out = BufReader::new(child.0.stdout.take().expect("stdout"));
    let reader = std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut stdout = String::new();
    let mut page = None;
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(300)) {
        stdout.push_str(&l);
        stdout.push('\n');
        if let Some(url) = l.split("watch it while the demo runs: ").nth(1) {
            page = Some(url.trim().to_string());
            break;
        }
    }
    let page = page.unwrap_or_else(|| panic!("no player page URL:\n{stdout}"));
    // While the demo runs: the player page, and real H.264 in the playlist.
    let (status, body) = common::http_get(&page);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hls.light.min.js"), "{body}");
    let (base, id) = page.split_once("/play/").expect("a /play/ URL");
    let manifest = format!("{base}/ace/manifest.m3u8?id={id}");
    let mut probe = Command::new("ffprobe");
    common::without_proxy(&mut probe);
    let probe = probe
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width",
            "-of",
            "csv=p=0",
        ])
        .arg(&manifest)
        .output()
        .expect("run ffprobe");
    let streams = String::from_utf8_lossy(&probe.stdout);
    assert!(
        streams.contains("h264,192"),
        "ffprobe of {manifest}: {streams}"
    );

    for l in lines.iter() {
        stdout.push_str(&l);
        stdout.push('\n');
    }
    reader.join().expect("reader");
    let status = child.0.wait().expect("wait");
    let stderr = err_reader.join().expect("stderr reader");
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("identical"), "{stdout}");
    assert!(stdout.contains("watched by 12 players"), "{stdout}");
    assert!(stdout.contains("(0 peers banned)"), "{stdout}");
    // "the broadcaster sent … (N.Nx the bitrate)": the viewers carried the rest.
    let x: f64 = number_after(&stdout, "MiB (", 'x');
    assert!(
        x < 4.0,
        "the broadcaster sent {x}x the bitrate to 12 viewers"
    );
    // Cut-through relaying happened between the real engines.
    let early: u64 = number_after(&stdout, "banned), ", ' ');
    assert!(early > 0, "no block was relayed before its piece was whole");
}

/// The demo's process, killed if the test ends early.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The number in `text` between the first `before` and the next `until`.
fn number_after<T: FromStr>(text: &str, before: &str, until: char) -> T {
    text.split(before)
        .nth(1)
        .and_then(|s| s.split(until).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number after {before:?} in {text}"))
}
