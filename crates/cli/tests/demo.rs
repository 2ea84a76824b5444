//! README command 1, `peercdn demo`, as a newcomer runs it (smaller content): it must end well
//! and show both halves — a VoD download checked byte for byte, and a live stream that a dozen
//! viewer nodes play while relaying it, the broadcaster sending about two copies.

use std::process::Command;
use std::str::FromStr;

#[test]
fn the_demo_shows_vod_and_live() {
    let out = Command::new(env!("CARGO_BIN_EXE_peercdn"))
        .args(["demo", "--size", "4MiB"])
        .output()
        .expect("peercdn runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
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

/// The number in `text` between the first `before` and the next `until`.
fn number_after<T: FromStr>(text: &str, before: &str, until: char) -> T {
    text.split(before)
        .nth(1)
        .and_then(|s| s.split(until).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number after {before:?} in {text}"))
}
