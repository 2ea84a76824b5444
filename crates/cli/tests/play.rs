//! `peercdn play`: with an engine running it hands the content over and starts the player on
//! the playback URL; with none it starts its own. The "player" here is curl fetching the first
//! 64 KiB, compared with the file's bytes. All on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use peercdn_core::metainfo::Metainfo;

const T: Duration = Duration::from_secs(120);

fn player(out: &std::path::Path) -> String {
    format!("curl -s -f --max-time 60 -r 0-65535 -o {}", out.display())
}

fn first_64k_of_video(src: &std::path::Path) -> Vec<u8> {
    let v = std::fs::read(src.join("video.ts")).unwrap();
    v[..65536].to_vec()
}

#[test]
fn play_uses_a_running_engine_by_id_and_by_torrent_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = lt_seeder(d, 71, 256 * 1024, &[]);
    let id = Metainfo::from_bytes(&std::fs::read(&seed.torrent).unwrap())
        .unwrap()
        .info_hash;
    let (_engine, _, base) = engine_start(d, "engine", &["--peer", &seed.addr()]);

    // By ID: the player (curl) gets the largest media file's first bytes.
    let out = d.join("by-id.bin");
    let mut play = Proc::spawn(
        "play-id",
        peercdn(
            &d.join("play-data"),
            &[
                "play",
                &id.to_hex(),
                "--engine",
                &base,
                "--player",
                &player(&out),
            ],
        ),
        &d.join("play-id.log"),
    );
    let st = play.wait(T);
    assert!(st.success(), "play failed ({st}):\n{}", play.log_text());
    assert!(
        play.log_text()
            .contains(&format!("playback: {base}/ace/getstream?id={id}")),
        "{}",
        play.log_text()
    );
    assert!(std::fs::read(&out).unwrap() == first_64k_of_video(&seed.src));

    // By .torrent file: uploaded to the engine's API, then played.
    let out = d.join("by-file.bin");
    let mut play = Proc::spawn(
        "play-file",
        peercdn(
            &d.join("play-data"),
            &[
                "play",
                seed.torrent_str(),
                "--engine",
                &base,
                "--player",
                &player(&out),
            ],
        ),
        &d.join("play-file.log"),
    );
    let st = play.wait(T);
    assert!(
        st.success(),
        "play (file) failed ({st}):\n{}",
        play.log_text()
    );
    assert!(std::fs::read(&out).unwrap() == first_64k_of_video(&seed.src));
}

#[test]
fn play_starts_its_own_engine_when_none_answers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = lt_seeder(d, 72, 256 * 1024, &[]);
    let id = Metainfo::from_bytes(&std::fs::read(&seed.torrent).unwrap())
        .unwrap()
        .info_hash;
    let port = free_port();
    let engine = format!("http://127.0.0.1:{port}");
    let out = d.join("own.bin");
    let magnet = format!("magnet:?xt=urn:btih:{id}&x.pe={}", seed.addr());
    let mut play = Proc::spawn(
        "play-own",
        peercdn(
            &d.join("own-data"),
            &[
                "play",
                &magnet,
                "--engine",
                &engine,
                "--http-port",
                &port.to_string(),
                "--port",
                "0",
                "--player",
                &player(&out),
            ],
        ),
        &d.join("play-own.log"),
    );
    let st = play.wait(T);
    let log = play.log_text();
    assert!(st.success(), "play failed ({st}):\n{log}");
    assert!(
        log.contains(&format!("http: {engine}")),
        "started its own engine:\n{log}"
    );
    assert!(std::fs::read(&out).unwrap() == first_64k_of_video(&seed.src));
}
