//! Whole-process tests of the engine's Ace Stream–compatible HTTP API, with real media:
//! ffmpeg generates an H.264/AAC MPEG-TS and two MP4s (moov first, moov at the end), a
//! libtorrent seeder (through `tests/interop/lt_peer.py`) serves them rate-limited on
//! 127.0.0.1, and `peercdn engine` streams them to ffmpeg, ffprobe and HTTP clients while it
//! downloads. Checked: decoding starts before the download ends and sees no damage; Range
//! answers are byte-exact (206/416, HEAD); 50 concurrent readers; clients that hang up;
//! `format=json` and its stat/command URLs; the access token; web seeds served by nginx;
//! python-acestream (the Ace Stream client library from PyPI) driving the engine.
//!
//! Needs Debian's `ffmpeg`, `nginx` and `python3-libtorrent`, and python-acestream in
//! `target/ace-clients` (scripts/test.sh installs them).
//! Every child process is a [`Proc`], killed when the test ends, even on panic.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(120);
/// Piece size of the test torrents (the media files span tens of pieces).
const PIECE: u32 = 256 * 1024;

// ----------------------------------------------------------------------------- fixtures

/// Media in a torrent, seeded by libtorrent.
struct Swarm {
    dir: tempfile::TempDir,
    media: Media,
    torrent: PathBuf,
    ih: String,
    seed_peer: String,
    _seed: Proc,
}

impl Swarm {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts an engine that knows the seeder.
    fn engine(&self, name: &str, extra: &[&str]) -> (Proc, String) {
        let mut args = vec!["--peer", self.seed_peer.as_str()];
        args.extend_from_slice(extra);
        let (p, _port, base) = engine_start(self.path(), name, &args);
        (p, base)
    }

    fn index(&self, file: &Path) -> usize {
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        file_index(&self.torrent, name)
    }
}

/// Generates the media, makes the torrent (`web_seed`: its url-list) and starts a libtorrent
/// seeder uploading at most `upload_limit` bytes/s (0: unlimited).
fn swarm(upload_limit: u32, web_seed: Option<&dyn Fn(&Path) -> String>) -> Swarm {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let media = make_media(&d.join("seed"), "media");
    let torrent = d.join("media.torrent");
    let ih = match web_seed {
        Some(url) => lt_create_webseed(&media.dir, &torrent, PIECE, &url(&d.join("seed"))),
        None => lt_create(&media.dir, &torrent, Some(PIECE)),
    };
    let limit = upload_limit.to_string();
    let (seed, port) = lt_start(
        d,
        "lt-seed",
        &[
            "seed",
            "--torrent",
            torrent.to_str().expect("utf8"),
            "--save",
            d.join("seed").to_str().expect("utf8"),
            "--upload-limit",
            &limit,
        ],
    );
    Swarm {
        dir,
        media,
        torrent,
        ih,
        seed_peer: format!("127.0.0.1:{port}"),
        _seed: seed,
    }
}

/// A blocking HTTP client that never uses a proxy.
fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(T)
        .build()
        .expect("http client")
}

fn get_json(c: &reqwest::blocking::Client, url: &str) -> Value {
    let r = c
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let body = r.text().unwrap_or_default();
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// `url` with `extra` appended as a query parameter.
fn with_param(url: &str, extra: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}")
}

/// Asks `format=json` for the content and returns its `response` object.
fn json_session(c: &reqwest::blocking::Client, base: &str, ih: &str) -> Value {
    let v = get_json(
        c,
        &format!("{base}/ace/getstream?infohash={ih}&format=json"),
    );
    assert!(v["error"].is_null(), "format=json error: {v}");
    v["response"].clone()
}

/// A number from a stat answer (`response.KEY`), if present.
fn stat_num(stat: &Value, key: &str) -> Option<f64> {
    stat["response"][key].as_f64()
}

/// Reads `Range: bytes=from-to` (inclusive `to`, or to EOF) and returns (status, body).
fn range(c: &reqwest::blocking::Client, url: &str, from: u64, to: Option<u64>) -> (u16, Vec<u8>) {
    let spec = match to {
        Some(to) => format!("bytes={from}-{to}"),
        None => format!("bytes={from}-"),
    };
    let r = c
        .get(url)
        .header("Range", &spec)
        .send()
        .unwrap_or_else(|e| panic!("GET {url} {spec}: {e}"));
    let status = r.status().as_u16();
    let body = r
        .bytes()
        .unwrap_or_else(|e| panic!("GET {url} {spec}: body: {e}"));
    (status, body.to_vec())
}

/// Decodes `input` with ffmpeg to the end, sampling its media time every 200 ms; calls
/// `sample(media_time)` at each step. Panics unless ffmpeg exits 0 within `limit` with no
/// damage on stderr. Returns the final media time.
fn decode(
    dir: &Path,
    name: &str,
    input: &str,
    limit: Duration,
    mut sample: impl FnMut(f64),
) -> f64 {
    let (mut ff, progress) = ffmpeg_decode_start(dir, name, input);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = ff.child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: ffmpeg did not finish {input} in {limit:?} (media time {:.1} s); log:\n{}",
            ffmpeg_media_time(&progress),
            ff.log_text()
        );
        sample(ffmpeg_media_time(&progress));
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = ff.log_text();
    assert!(
        status.success(),
        "{name}: ffmpeg failed ({status}) on {input}:\n{log}"
    );
    let damage = ffmpeg_damage(&log);
    assert!(
        damage.is_empty(),
        "{name}: ffmpeg saw damage in {input}:\n{damage:#?}"
    );
    let t = ffmpeg_media_time(&progress);
    assert!(
        t >= MEDIA_SECONDS - 1.0,
        "{name}: ffmpeg decoded only {t:.1} s of {MEDIA_SECONDS} s"
    );
    t
}

fn assert_probe(url: &str) {
    let (duration, streams) = ffprobe(url);
    assert!(
        (duration - MEDIA_SECONDS).abs() < 0.6,
        "ffprobe duration {duration} of {url}"
    );
    assert!(
        streams.contains(&"video:h264".to_string()) && streams.contains(&"audio:aac".to_string()),
        "ffprobe streams {streams:?} of {url}"
    );
}

/// Fixed-seed xorshift for reproducible "random" offsets.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

// ----------------------------------------------------------------------------- harness

/// The fixtures alone, without peercdn: the media probe right, nginx answers Range requests,
/// and libtorrent downloads the web-seeded torrent from nginx with no peer at all (so the
/// url-list layout and the server are right before peercdn is judged against them).
#[test]
fn harness_media_nginx_and_libtorrent_web_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let media = make_media(&d.join("www"), "media");
    for f in [&media.ts, &media.mp4_fast, &media.mp4_end, &media.mkv] {
        assert_probe(f.to_str().expect("utf8"));
    }
    let ts_len = std::fs::metadata(&media.ts).expect("ts").len();
    assert!(
        ts_len > 4_000_000 && ts_len > std::fs::metadata(&media.mp4_end).expect("mp4").len(),
        "the TS ({ts_len} bytes) must be the largest file"
    );
    assert_eq!(
        std::fs::read(&media.mp4_fast).expect("mp4").len(),
        std::fs::read(&media.mp4_end).expect("mp4").len()
    );

    let nginx = nginx_start(d, &d.join("www"));
    let c = http();
    let url = format!("{}media/video.ts", nginx.url());
    let ts = std::fs::read(&media.ts).expect("ts");
    let (status, body) = range(&c, &url, 1000, Some(70_999));
    assert_eq!(status, 206);
    assert!(body == ts[1000..71_000], "nginx range bytes differ");

    let torrent = d.join("ws.torrent");
    lt_create_webseed(&media.dir, &torrent, PIECE, &nginx.url());
    assert_eq!(torrent_files(&torrent).len(), 5, "four videos and a note");
    let out = d.join("lt-out");
    let (mut leech, _) = lt_start(
        d,
        "lt-leech",
        &[
            "leech",
            "--torrent",
            torrent.to_str().expect("utf8"),
            "--save",
            out.to_str().expect("utf8"),
            "--timeout",
            "100",
        ],
    );
    let st = leech.wait(T);
    assert!(
        st.success(),
        "libtorrent from the web seed failed ({st}):\n{}",
        leech.log_text()
    );
    assert_same_tree(&media.dir, &out.join("media"));
    assert!(nginx.access_log().contains("/media/video.ts"));
}

// ----------------------------------------------------------------------------- streaming

/// ffmpeg decodes the TS through `/ace/getstream?infohash=` while the engine downloads it
/// from a seeder limited to twice the media rate: media time has advanced at least 2 s at a
/// moment the stat URL still says the torrent is incomplete (sampled after the media time, so
/// it cannot be an old reading), the stat later reaches 100 % (so the field is real), and
/// ffmpeg finishes with exit 0 and no damage.
#[test]
fn ts_decodes_while_the_torrent_downloads() {
    let s = swarm(2 * MEDIA_BYTES_PER_SEC, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let c = http();
    let url = format!("{base}/ace/getstream?infohash={}", s.ih);
    let session = json_session(&c, &base, &s.ih);
    let stat_url = session["stat_url"]
        .as_str()
        .expect("stat_url is a string")
        .to_string();

    let mut during: Option<(f64, f64)> = None;
    let mut last_progress = 0.0;
    decode(s.path(), "ffmpeg-ts", &url, T, |media_time| {
        if during.is_some() || media_time < 2.0 {
            return;
        }
        let stat = get_json(&c, &stat_url);
        let p = stat_num(&stat, "total_progress").expect("total_progress is a number");
        last_progress = p;
        if p < 100.0 {
            during = Some((media_time, p));
        }
    });
    let after = get_json(&c, &stat_url);
    eprintln!(
        "ffmpeg finished the TS at total_progress {:?} (downloaded {:?})",
        stat_num(&after, "total_progress"),
        stat_num(&after, "downloaded")
    );
    let (t, p) = during.unwrap_or_else(|| {
        panic!("ffmpeg never had >= 2 s of media while the torrent was incomplete (last progress {last_progress}); engine log:\n{}", engine.log_text())
    });
    eprintln!("media time {t:.1} s at total_progress {p}");
    wait_until(
        T,
        "the torrent to complete (stat total_progress 100)",
        || stat_num(&get_json(&c, &stat_url), "total_progress").unwrap_or(0.0) >= 100.0,
    );
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
    let st = engine.terminate(Duration::from_secs(20));
    assert_eq!(st.code(), Some(130), "engine stops cleanly on SIGTERM");
}

/// Both MP4s decode through `&file_index=N`: the faststart one and the one with its moov atom
/// at the end (ffmpeg must seek to the end of a file that is not downloaded yet); ffprobe
/// through the engine reports 20 s with H.264 + AAC.
#[test]
fn mp4_with_and_without_faststart_decode_by_file_index() {
    let s = swarm(2 * MEDIA_BYTES_PER_SEC, None);
    let (mut engine, base) = s.engine("engine", &[]);
    for (name, file) in [
        ("mp4-end", &s.media.mp4_end),
        ("mp4-fast", &s.media.mp4_fast),
    ] {
        let url = format!(
            "{base}/ace/getstream?infohash={}&file_index={}",
            s.ih,
            s.index(file)
        );
        decode(s.path(), name, &url, T, |_| {});
        assert_probe(&url);
    }
    assert_probe(&format!("{base}/ace/getstream?infohash={}", s.ih));
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// The table ID of the PSI section a TS packet starts (PAT 0x00, PMT 0x02).
fn psi_table_id(pkt: &[u8]) -> Option<u8> {
    let start = if pkt[3] & 0x20 != 0 {
        5 + usize::from(pkt[4])
    } else {
        4
    };
    let pointer = usize::from(*pkt.get(start)?);
    pkt.get(start + 1 + pointer).copied()
}

/// Whether ffprobe says the first video frame of `file` is a key frame.
fn first_video_frame_is_key(file: &Path) -> bool {
    let o = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "frame=key_frame",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .map(str::trim)
        == Some("1")
}

/// HLS of a VoD MPEG-TS, the manifest Horus, python-acestream's `hls=True`, acexy's M3U8
/// mode and players open (the engine once answered 400 "HLS is for live streams"): while the
/// torrent downloads from a seeder at twice the media rate, `/ace/manifest.m3u8` is a VOD
/// playlist of about 20 s of segments and ffmpeg decodes it to the end without damage. Every
/// segment after the first starts with the PAT and PMT, then a keyframe (ffprobe), and the
/// segments without those copies are the file byte for byte (no gap, no overlap). hls.js in
/// headless Chromium plays it from a page of another origin and seeks into it. `format=json`
/// gives a playback session whose `playback_url` is the playlist. MP4s (moov first and moov
/// at the end) and an MKV (mkvmerge's) are remuxed: their playlists last the media's 20 s,
/// ffmpeg decodes them whole without damage, hls.js plays and seeks.
#[test]
fn vod_hls_of_ts_mp4_and_mkv_plays_and_seeks() {
    let s = swarm(2 * MEDIA_BYTES_PER_SEC, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let c = http();
    let manifest = format!(
        "{base}/ace/manifest.m3u8?infohash={}&file_index={}",
        s.ih,
        s.index(&s.media.ts)
    );
    decode(s.path(), "ffmpeg-hls", &manifest, T, |_| {});

    let r = c.get(&manifest).send().expect("GET manifest");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    let playlist = r.text().expect("playlist");
    assert!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD")
            && playlist.trim_end().ends_with("#EXT-X-ENDLIST"),
        "{playlist}"
    );
    let durations: Vec<f64> = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse().expect("EXTINF"))
        .collect();
    let segments: Vec<&str> = playlist.lines().filter(|l| l.starts_with("http")).collect();
    assert_eq!(durations.len(), segments.len(), "{playlist}");
    assert!(segments.len() >= 3, "{playlist}");
    let total: f64 = durations.iter().sum();
    assert!(
        (total - MEDIA_SECONDS).abs() < 1.0,
        "the segments last {total} s:\n{playlist}"
    );
    let file = std::fs::read(&s.media.ts).expect("ts");
    let mut joined = Vec::with_capacity(file.len());
    for (i, url) in segments.iter().enumerate() {
        let r = c.get(*url).send().expect("GET segment");
        assert_eq!(r.status(), 200, "{url}");
        let body = r.bytes().expect("segment body");
        if i == 0 {
            joined.extend_from_slice(&body);
            continue;
        }
        assert!(body.len() > 2 * 188, "segment {i}: {} bytes", body.len());
        assert_eq!(
            psi_table_id(&body[..188]),
            Some(0x00),
            "segment {i}: PAT first"
        );
        assert_eq!(
            psi_table_id(&body[188..376]),
            Some(0x02),
            "segment {i}: then PMT"
        );
        let seg = s.path().join(format!("segment-{i}.ts"));
        std::fs::write(&seg, &body).expect("write segment");
        assert!(
            first_video_frame_is_key(&seg),
            "segment {i} does not start with a keyframe"
        );
        joined.extend_from_slice(&body[376..]);
    }
    assert!(
        joined == file,
        "the segments are not the file: {} bytes joined, {} in the file",
        joined.len(),
        file.len()
    );

    // hls.js in Chromium, from a blank page (another origin: CORS): plays, seeks to 12 s (a
    // segment that starts at a keyframe), plays on.
    let mut player = Proc::spawn(
        "hls.js",
        hls_player(&["--url", &manifest, "--play", "3", "--seek", "12"]),
        &s.path().join("hls.js.log"),
    );
    let status = player.wait(T);
    let log = player.log_text();
    let seen: Value = log
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON line from hls.js:\n{log}"));
    assert!(status.success(), "hls.js failed ({status}): {seen}");
    assert!(seen["after_seek"].as_f64().unwrap_or(0.0) >= 14.5, "{seen}");
    eprintln!("hls.js: {seen}");

    let v = get_json(&c, &with_param(&manifest, "format=json"));
    assert!(v["error"].is_null(), "{v}");
    assert_eq!(v["response"]["is_live"], 0, "{v}");
    let playback = v["response"]["playback_url"]
        .as_str()
        .expect("playback_url");
    assert!(playback.contains("/ace/manifest.m3u8?"), "{v}");
    let again = c.get(playback).send().expect("GET playback_url");
    assert_eq!(again.text().expect("playlist"), playlist);

    // MP4s are remuxed into TS segments (moov first, and moov at the end: the plan waits for
    // the end of the file), and so is the Matroska file (its cues at the end too): ffmpeg
    // decodes each playlist whole, with no damage.
    for (name, file) in [
        ("mp4-fast", &s.media.mp4_fast),
        ("mp4-end", &s.media.mp4_end),
        ("mkv", &s.media.mkv),
    ] {
        let m = format!(
            "{base}/ace/manifest.m3u8?infohash={}&file_index={}",
            s.ih,
            s.index(file)
        );
        decode(s.path(), &format!("ffmpeg-hls-{name}"), &m, T, |_| {});
        let (status, text) = {
            let r = c.get(&m).send().expect("GET mp4 manifest");
            (r.status(), r.text().unwrap_or_default())
        };
        assert_eq!(status, 200, "{text}");
        let total: f64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .map(|l| l.trim_end_matches(',').parse::<f64>().expect("EXTINF"))
            .sum();
        assert!(
            (total - MEDIA_SECONDS).abs() < 0.5,
            "{name}: {total} s:\n{text}"
        );
        // hls.js plays the remuxed segments and seeks into them.
        let mut player = Proc::spawn(
            "hls.js-mp4",
            hls_player(&["--url", &m, "--play", "3", "--seek", "12"]),
            &s.path().join(format!("hls.js-{name}.log")),
        );
        let status = player.wait(T);
        let log = player.log_text();
        assert!(
            status.success(),
            "hls.js on {name} failed ({status}):\n{log}"
        );
    }
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// mpv and VLC (Debian's), as people play Ace links: mpv plays the TS by `getstream` and by
/// the HLS manifest, and the MP4 whose moov atom is at the end by `getstream` and by the
/// manifest (remuxed), and the MKV by the manifest, each for 4 s with both decoders open and
/// no error; VLC reads the TS whole through `getstream` and through the manifest, and the MP4
/// and the MKV through the manifest, and what it demuxed is 20 s of H.264 + AAC.
#[test]
fn mpv_and_vlc_play_vod_by_getstream_and_the_manifest() {
    let s = swarm(0, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let ts = s.index(&s.media.ts);
    let get = format!("{base}/ace/getstream?infohash={}&file_index={ts}", s.ih);
    let hls = format!("{base}/ace/manifest.m3u8?infohash={}&file_index={ts}", s.ih);
    let mp4 = format!(
        "{base}/ace/getstream?infohash={}&file_index={}",
        s.ih,
        s.index(&s.media.mp4_end)
    );
    mpv_play(s.path(), "mpv-getstream", &get, 4);
    mpv_play(s.path(), "mpv-manifest", &hls, 4);
    mpv_play(s.path(), "mpv-mp4", &mp4, 4);
    let mp4_hls = mp4.replace("/ace/getstream?", "/ace/manifest.m3u8?");
    mpv_play(s.path(), "mpv-mp4-manifest", &mp4_hls, 4);
    let mkv_hls = format!(
        "{base}/ace/manifest.m3u8?infohash={}&file_index={}",
        s.ih,
        s.index(&s.media.mkv)
    );
    mpv_play(s.path(), "mpv-mkv-manifest", &mkv_hls, 4);
    for (name, url) in [
        ("vlc-getstream", &get),
        ("vlc-manifest", &hls),
        ("vlc-mp4-manifest", &mp4_hls),
        ("vlc-mkv-manifest", &mkv_hls),
    ] {
        let (duration, streams) = vlc_remux(s.path(), name, url, 60);
        assert!(
            (duration - MEDIA_SECONDS).abs() < 1.0,
            "{name}: VLC read {duration} s"
        );
        assert!(
            streams.contains(&"video:h264".to_string())
                && streams.contains(&"audio:aac".to_string()),
            "{name}: {streams:?}"
        );
    }
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

// ----------------------------------------------------------------------------- Range

/// Range semantics on a slowly seeded torrent: a seek to 80 % of a file nothing of which is
/// downloaded answers quickly and exactly; HEAD gives the length; a range past the end is 416;
/// fixed-seed random ranges equal the file's bytes.
#[test]
fn range_requests_are_byte_exact() {
    // ~17 MB at 400 kB/s: the whole torrent takes over 40 s.
    let s = swarm(400_000, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let c = http();
    let mp4 = std::fs::read(&s.media.mp4_end).expect("mp4");
    let mp4_url = format!(
        "{base}/ace/getstream?infohash={}&file_index={}",
        s.ih,
        s.index(&s.media.mp4_end)
    );

    // The first request of all: 64 KiB at 80 % of the moov-at-end MP4.
    let at = mp4.len() as u64 * 8 / 10 + 12_345;
    let started = Instant::now();
    let r = c
        .get(&mp4_url)
        .header("Range", format!("bytes={at}-{}", at + 65_535))
        .send()
        .expect("seek request");
    assert_eq!(r.status().as_u16(), 206, "seek to 80 %");
    let content_range = r
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        content_range,
        format!("bytes {at}-{}/{}", at + 65_535, mp4.len())
    );
    let body = r.bytes().expect("seek body");
    let took = started.elapsed();
    assert!(
        body[..] == mp4[at as usize..at as usize + 65_536],
        "bytes at 80 % differ"
    );
    assert!(
        took < Duration::from_secs(20),
        "a seek to 80 % took {took:?}: the engine did not fetch the wanted pieces first"
    );
    eprintln!("seek to 80 % of an undownloaded file answered in {took:?}");

    // HEAD: the default file is the largest (the TS).
    let ts = std::fs::read(&s.media.ts).expect("ts");
    let ts_url = format!("{base}/ace/getstream?infohash={}", s.ih);
    let h = c.head(&ts_url).send().expect("HEAD");
    assert!(h.status().is_success(), "HEAD: {}", h.status());
    let len = h
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(len, Some(ts.len() as u64), "HEAD Content-Length");

    // Past the end.
    let (status, _) = range(&c, &ts_url, ts.len() as u64, Some(ts.len() as u64 + 10));
    assert_eq!(status, 416, "range starting at the file's length");
    let (status, _) = range(&c, &ts_url, ts.len() as u64 + 1_000_000, None);
    assert_eq!(status, 416, "open range past the end");

    // Random ranges, fixed seed, including the last byte and odd lengths.
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut cases: Vec<(u64, u64)> = (0..24)
        .map(|_| {
            let a = rng.below(ts.len() as u64);
            let n = 1 + rng.below(300_000);
            (a, (a + n - 1).min(ts.len() as u64 - 1))
        })
        .collect();
    cases.push((ts.len() as u64 - 1, ts.len() as u64 - 1));
    cases.push((0, 0));
    for (a, b) in cases {
        let (status, body) = range(&c, &ts_url, a, Some(b));
        assert_eq!(status, 206, "bytes={a}-{b}");
        assert!(
            body[..] == ts[a as usize..=b as usize],
            "bytes={a}-{b}: {} bytes back, content differs",
            body.len()
        );
    }
    // A suffix range: the last 1000 bytes.
    let r = c
        .get(&ts_url)
        .header("Range", "bytes=-1000")
        .send()
        .expect("suffix range");
    assert_eq!(r.status().as_u16(), 206, "suffix range");
    assert!(r.bytes().expect("body")[..] == ts[ts.len() - 1000..]);
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// 50 HTTP readers at once on the same content, each from a different offset to EOF, all
/// byte-exact.
#[test]
fn fifty_concurrent_readers_are_byte_exact() {
    let s = swarm(0, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let ts = std::sync::Arc::new(std::fs::read(&s.media.ts).expect("ts"));
    let url = format!("{base}/ace/getstream?infohash={}", s.ih);
    let c = http();
    let readers: Vec<_> = (0..50u64)
        .map(|i| {
            let (c, url, ts) = (c.clone(), url.clone(), ts.clone());
            std::thread::spawn(move || {
                let from = i * ts.len() as u64 / 50 + i * 7;
                let (status, body) = range(&c, &url, from, None);
                // The engine's answer in full when it is not 206 (one 502 among the 50 was
                // seen once in four full runs, not reproduced since: its message names the
                // error path).
                assert_eq!(
                    status,
                    206,
                    "reader {i} from {from}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                );
                assert!(
                    body[..] == ts[from as usize..],
                    "reader {i} from {from}: {} bytes back of {}, content differs",
                    body.len(),
                    ts.len() as u64 - from
                );
            })
        })
        .collect();
    let failed = readers.into_iter().filter_map(|r| r.join().err()).count();
    assert_eq!(failed, 0, "{failed} of 50 readers failed");
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// 20 clients in a row read 1 MiB and hang up mid-stream (while the torrent is still
/// downloading); the engine keeps running and answers the next requests exactly.
#[test]
fn clients_hanging_up_mid_stream_leave_the_engine_healthy() {
    let s = swarm(2 * MEDIA_BYTES_PER_SEC, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let ts = std::fs::read(&s.media.ts).expect("ts");
    let url = format!("{base}/ace/getstream?infohash={}", s.ih);
    let c = http();
    for i in 0..20u64 {
        let from = i * (ts.len() as u64 - 2_000_000) / 20;
        let r = c
            .get(&url)
            .header("Range", format!("bytes={from}-"))
            .send()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(r.status().as_u16(), 206, "client {i}");
        let mut got = Vec::new();
        r.take(1 << 20)
            .read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("client {i}: read: {e}"));
        assert_eq!(got.len(), 1 << 20, "client {i} got a short body");
        assert!(
            got[..] == ts[from as usize..from as usize + (1 << 20)],
            "client {i}: bytes differ"
        );
        // Dropping the response closes the connection mid-body.
        assert!(
            running(&mut engine),
            "engine died after client {i}:\n{}",
            engine.log_text()
        );
    }
    get_json(&c, &format!("{base}/webui/api/service?method=get_version"));
    let (status, body) = range(&c, &url, 4_000_000, Some(4_065_535));
    assert_eq!(status, 206);
    assert!(
        body[..] == ts[4_000_000..4_065_536],
        "bytes after the hang-ups"
    );
    let (status, body) = range(&c, &url, 0, None);
    assert_eq!(status, 206);
    assert!(body == ts, "the whole file after the hang-ups");
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

// ----------------------------------------------------------------------------- API

/// `format=json` answers with the Ace Stream fields; playback_url streams the file exactly;
/// stat_url has the stat fields; command_url?method=stop answers ok. Every ID form works:
/// `id=`, `infohash=`, `magnet=` (with the peer in `x.pe`) and `url=` (a .torrent on nginx).
#[test]
fn format_json_and_every_id_form() {
    let s = swarm(0, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let c = http();
    let ts = std::fs::read(&s.media.ts).expect("ts");

    let v = get_json(
        &c,
        &format!("{base}/ace/getstream?infohash={}&format=json", s.ih),
    );
    assert!(v["error"].is_null(), "error in {v}");
    let resp = &v["response"];
    for key in ["playback_url", "stat_url", "command_url"] {
        assert!(resp[key].is_string(), "response.{key} missing in {v}");
    }
    let playback = resp["playback_url"].as_str().unwrap_or_default();
    let stat_url = resp["stat_url"].as_str().unwrap_or_default();
    let command_url = resp["command_url"].as_str().unwrap_or_default();

    let body = c
        .get(playback)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.bytes())
        .unwrap_or_else(|e| panic!("playback_url {playback}: {e}"));
    assert!(body[..] == ts[..], "playback_url bytes differ");

    let stat = get_json(&c, stat_url);
    assert!(stat["error"].is_null(), "stat error: {stat}");
    assert!(
        stat["response"]["status"].is_string(),
        "stat status: {stat}"
    );
    for key in [
        "peers",
        "speed_down",
        "speed_up",
        "downloaded",
        "uploaded",
        "total_progress",
    ] {
        assert!(
            stat["response"][key].is_number(),
            "stat response.{key} missing or not a number: {stat}"
        );
    }

    let stop = get_json(&c, &with_param(command_url, "method=stop"));
    assert!(stop["error"].is_null(), "stop: {stop}");
    assert_eq!(stop["response"], "ok", "stop: {stop}");

    let version = get_json(&c, &format!("{base}/webui/api/service?method=get_version"));
    assert!(version["error"].is_null(), "get_version: {version}");

    // The ID forms, each read as one exact range in the middle of the TS.
    let nginx = nginx_start(s.path(), s.path());
    let magnet = format!("magnet:?xt=urn:btih:{}&dn=media&x.pe={}", s.ih, s.seed_peer);
    let forms = [
        format!("id={}", s.ih),
        format!("infohash={}", s.ih.to_uppercase()),
        format!("magnet={}", percent_encode(&magnet)),
        format!(
            "url={}",
            percent_encode(&format!("{}media.torrent", nginx.url()))
        ),
    ];
    for form in forms {
        let url = format!("{base}/ace/getstream?{form}");
        let (status, body) = range(&c, &url, 3_000_001, Some(3_100_000));
        assert_eq!(status, 206, "{form}");
        assert!(
            body[..] == ts[3_000_001..=3_100_000],
            "{form}: bytes differ"
        );
    }
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// python-acestream (PyPI `acestream` 0.2.0, what acestream-launcher is built on) against the
/// engine, as its users drive it: `Server.available` and the API level, a stream started by
/// infohash (named from `/server/api`'s media files) and read whole from its playback URL, the
/// stats it polls, `stop`, search, the engine's own message for a stream it refuses, and
/// `start(hls=True)` giving the VoD playlist of the .ts file (400 before VoD HLS); then
/// acestream-search (PyPI 1.6.4) makes an M3U of it from `/search`. Before the engine followed
/// Ace's conventions the library saw "HTTP Error 400" instead of the message and a version
/// below 3.1.29; before `/server/api` and `/search` existed, both answered 404.
#[test]
fn ace_clients_from_pypi_play_search_and_stop() {
    let s = swarm(0, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let out = s.path().join("ace-client.ts");
    let mut cmd = std::process::Command::new(ace_python());
    cmd.arg(interop("ace_client.py"))
        .args(["--engine", &base, "--infohash", &s.ih, "--query", "MEDIA"])
        .arg("--out")
        .arg(&out);
    let mut client = Proc::spawn("ace-client", cmd, &s.path().join("ace-client.log"));
    let status = client.wait(T);
    let log = client.log_text();
    assert!(
        status.success(),
        "python-acestream failed ({status}):\n{log}"
    );
    let seen: Value = log
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON line in:\n{log}"));
    assert_eq!(seen["version"], "3.1.49", "{seen}");
    assert!(
        seen["files"].as_u64().unwrap_or(0) >= 3,
        "media files: {seen}"
    );
    assert_eq!(seen["search_total"], 1, "{seen}");
    assert!(seen["hls_segments"].as_u64().unwrap_or(0) >= 3, "{seen}");
    assert_eq!(seen["stats"]["status"], "dl", "{seen}");
    let refused = seen["refused"].as_str().unwrap_or_default().to_lowercase();
    assert!(refused.contains("gopher"), "the engine's message: {seen}");
    let ts = std::fs::read(&s.media.ts).expect("ts");
    assert!(
        std::fs::read(&out).expect("client output") == ts,
        "the bytes python-acestream read differ"
    );

    // acestream-search (PyPI 1.6.4), the playlist maker: an M3U of what it finds (the
    // client's stop removed the torrent, so it is started again first).
    let again = get_json(
        &http(),
        &format!("{base}/ace/getstream?infohash={}&format=json", s.ih),
    );
    assert!(again["error"].is_null(), "{again}");
    let api = format!("{base}/api/v1/torrents/{}", s.ih);
    // The JSON answer comes at once; the torrent is there once its ID is found.
    wait_until(T, "the torrent's metadata (its name)", || {
        let Ok(r) = http().get(&api).send() else {
            return false;
        };
        let v: Value = r.json().unwrap_or_default();
        v["response"]["name"].is_string() || v["name"].is_string()
    });
    let host = base.trim_start_matches("http://");
    let tool = ace_python().with_file_name("acestream_search");
    let mut cmd = std::process::Command::new(&tool);
    cmd.args(["--proxy", host, "--target", host, "media"]);
    let mut search = Proc::spawn("ace-search", cmd, &s.path().join("ace-search.log"));
    let status = search.wait(T);
    let m3u = search.log_text();
    assert!(
        status.success(),
        "acestream_search failed ({status}):\n{m3u}"
    );
    assert!(m3u.starts_with("#EXTM3U"), "{m3u}");
    let want = format!("http://{host}/ace/getstream?infohash={}", s.ih);
    assert!(m3u.lines().any(|l| l == want), "no {want} in:\n{m3u}");
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// With `--access-token`, requests without `?token=` get 401, with it they work.
#[test]
fn access_token_is_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, _port, base) =
        engine_start(dir.path(), "engine", &["--access-token", "s3cret"]);
    let c = http();
    let version = format!("{base}/webui/api/service?method=get_version");
    let no = c.get(&version).send().expect("get_version");
    assert_eq!(no.status().as_u16(), 401, "no token");
    let wrong = c
        .get(format!("{version}&token=wrong"))
        .send()
        .expect("get_version");
    assert_eq!(wrong.status().as_u16(), 401, "wrong token");
    let stream = c
        .get(format!("{base}/ace/getstream?id={}", "ab".repeat(20)))
        .send()
        .expect("getstream");
    assert_eq!(stream.status().as_u16(), 401, "getstream without token");
    get_json(&c, &format!("{version}&token=s3cret"));
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

// ----------------------------------------------------------------------------- web seeds

/// (9a) Web seed only: the torrent's url-list points at nginx and there is no peer at all;
/// `peercdn get --no-seed` completes byte-exact. Needs the engine's BEP 19 support.
#[test]
fn web_seed_only_get_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let media = make_media(&d.join("www"), "media");
    let nginx = nginx_start(d, &d.join("www"));
    let torrent = d.join("ws.torrent");
    lt_create_webseed(&media.dir, &torrent, PIECE, &nginx.url());
    let out = d.join("out");
    let mut get = Proc::spawn(
        "peercdn-get",
        peercdn(
            &d.join("pc"),
            &[
                "get",
                torrent.to_str().expect("utf8"),
                "-o",
                out.to_str().expect("utf8"),
                "--no-seed",
                "--port",
                "0",
            ],
        ),
        &d.join("get.log"),
    );
    let st = get.wait(T);
    assert!(
        st.success(),
        "get from a web seed failed ({st}):\n{}",
        get.log_text()
    );
    assert_same_tree(&media.dir, &out.join("media"));
    assert!(
        nginx.access_log().contains("/media/"),
        "nginx served nothing"
    );
}

/// (9b) The only peer is a libtorrent seeder at a quarter of the media rate (the TS alone
/// would take 80 s from it); the torrent has a web seed on nginx. ffmpeg decodes the TS
/// through the engine in well under that, its media time never stalls for long, and nginx
/// (and the stat, if it counts HTTP bytes) shows the web seed was used. Needs the engine's
/// BEP 19 support.
#[test]
fn web_seed_carries_a_slow_swarm_stream() {
    let nginx_holder = std::cell::RefCell::new(None);
    let s = {
        // The web seed URL is known only once nginx listens on the seed directory.
        let url = |root: &Path| {
            let n = nginx_start(root.parent().expect("parent"), root);
            let u = n.url();
            *nginx_holder.borrow_mut() = Some(n);
            u
        };
        swarm(MEDIA_BYTES_PER_SEC / 4, Some(&url))
    };
    let nginx = nginx_holder.into_inner().expect("nginx started");
    let (mut engine, base) = s.engine("engine", &[]);
    let c = http();
    // The web seed list lives in the .torrent, outside the info dictionary: an ID alone would
    // not carry it. Hand the engine the .torrent by URL, as a player would.
    std::fs::copy(&s.torrent, s.path().join("seed").join("media.torrent")).expect("copy torrent");
    let torrent_url = format!("{}media.torrent", nginx.url());
    let enc: String = url::form_urlencoded::byte_serialize(torrent_url.as_bytes()).collect();
    let v = get_json(&c, &format!("{base}/ace/getstream?url={enc}&format=json"));
    assert!(v["error"].is_null(), "format=json error: {v}");
    let stat_url = v["response"]["stat_url"]
        .as_str()
        .expect("stat_url")
        .to_string();
    let url = format!("{base}/ace/getstream?url={enc}");
    let mut last = (Instant::now(), 0.0f64);
    let mut worst_stall = Duration::ZERO;
    let started = Instant::now();
    decode(
        s.path(),
        "ffmpeg-ws",
        &url,
        Duration::from_secs(60),
        |media_time| {
            if media_time > last.1 {
                worst_stall = worst_stall.max(last.0.elapsed());
                last = (Instant::now(), media_time);
            }
        },
    );
    let took = started.elapsed();
    eprintln!("decoded in {took:?}, worst stall {worst_stall:?}");
    assert!(
        worst_stall < Duration::from_secs(10),
        "media time stalled for {worst_stall:?}"
    );
    assert!(
        nginx.access_log().contains("/media/video.ts"),
        "the web seed was not asked for the TS"
    );
    let stat = get_json(&c, &stat_url);
    let http_keys: Vec<(String, f64)> = stat["response"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.contains("http") || k.contains("web"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    if http_keys.is_empty() {
        eprintln!("stat has no HTTP/web-seed byte counter: {stat}");
    }
    for (k, v) in http_keys {
        assert!(v > 0.0, "stat {k} = {v} after streaming from a web seed");
    }
    // Prometheus metrics: any web-seed/HTTP byte counter for this torrent must be > 0.
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    let counters: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&s.ih))
        .filter(|l| {
            let name = l.split('{').next().unwrap_or_default();
            (name.contains("http") || name.contains("web")) && name.contains("bytes")
        })
        .collect();
    if counters.is_empty() {
        eprintln!("/metrics has no web-seed byte counter");
    }
    for line in counters {
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(v > 0.0, "metric {line} after streaming from a web seed");
    }
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// Percent-encodes everything but unreserved characters (for query values).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Ace TCP API (`--ace-tcp-port`) as HTTPAceProxy's aceclient drives it, on a torrent a
/// libtorrent seeder holds: HELLOBG/HELLOTS (Ace's version code, the HTTP port), READY/AUTH,
/// `LOADASYNC … INFOHASH` → `LOADRESP` with the media files (names percent-encoded, JSON
/// without spaces: clients split the line on spaces), `START INFOHASH ih index` → `STATUS`
/// lines then `START url=…`, whose URL serves the file byte-exact; `STOP` ends the playback
/// session and removes the torrent `START` added; `SHUTDOWN` closes the connection only.
#[test]
fn ace_tcp_api_plays_a_torrent_as_proxies_do() {
    use std::io::{BufRead, BufReader, Write};
    let s = swarm(0, None);
    let (mut engine, base) = s.engine("engine", &["--ace-tcp-port", "0"]);
    let mut addr = String::new();
    wait_until(Duration::from_secs(20), "the ace-tcp line", || {
        if let Some(l) = engine
            .log_text()
            .lines()
            .find(|l| l.starts_with("ace-tcp: "))
        {
            addr = l[9..].trim().to_string();
        }
        !addr.is_empty()
    });
    let conn = std::net::TcpStream::connect(&addr).expect("connect to the TCP API");
    conn.set_read_timeout(Some(Duration::from_secs(90)))
        .expect("timeout");
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    let mut say = |l: &str| w.write_all(format!("{l}\r\n").as_bytes()).expect("write");
    let mut next = || {
        let mut l = String::new();
        r.read_line(&mut l).expect("read a line");
        l.trim_end().to_string()
    };
    say("HELLOBG version=3");
    let hello = next();
    let port = base.rsplit(':').next().expect("port");
    assert!(hello.contains("version_code=3014900"), "{hello}");
    assert!(hello.contains(&format!("http_port={port}")), "{hello}");
    say("READY");
    assert_eq!(next(), "AUTH 1");
    say(&format!("LOADASYNC 7 INFOHASH {} 0 0 0", s.ih));
    let resp = next();
    let json = resp.strip_prefix("LOADRESP 7 ").expect("LOADRESP 7");
    // As aceclient reads it: the words after the request ID joined, then unquoted.
    let v: Value = serde_json::from_str(json).expect("LOADRESP JSON");
    assert_eq!(v["infohash"], s.ih, "{v}");
    assert_eq!(v["status"], 2, "several media files: {v}");
    let ts = s.index(&s.media.ts);
    let listed: Vec<u64> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f[1].as_u64())
        .collect();
    assert!(listed.contains(&(ts as u64)), "{v}");
    assert!(!json.contains(' '), "{json}");
    say(&format!(
        "START INFOHASH {} {ts} 0 0 0 output_format=http",
        s.ih
    ));
    let url = loop {
        let l = next();
        assert!(!l.is_empty(), "the connection closed before START");
        if let Some(rest) = l.strip_prefix("START ") {
            break rest
                .split(' ')
                .find_map(|kv| kv.strip_prefix("url="))
                .expect("url=")
                .to_string();
        }
        assert!(l.starts_with("STATUS ") || l.starts_with("STATE "), "{l}");
    };
    let c = http();
    let want = std::fs::read(&s.media.ts).expect("ts");
    let (status, body) = range(&c, &url, 0, None);
    assert_eq!(status, 206);
    assert!(body == want, "{} bytes back of {}", body.len(), want.len());
    say("STOP");
    while next() != "STATE 0" {}
    assert_eq!(c.get(&url).send().expect("get").status().as_u16(), 404);
    let list: Value = c
        .get(format!("{base}/api/v1/torrents"))
        .send()
        .expect("list")
        .json()
        .expect("json");
    assert_eq!(list["torrents"].as_array().map(Vec::len), Some(0), "{list}");
    say("SHUTDOWN");
    assert_eq!(next(), "", "SHUTDOWN closes the connection");
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}

/// acestream-launcher (PyPI 2.1.0), as a user runs it with `acestream://ID`: it finds the
/// engine on the port of its config file, starts the stream through python-acestream, waits
/// for the status `dl`, writes an M3U of the playback URL and launches the player on it (here
/// `tests/interop/m3u_player.py`, which reads the stream to its end), then exits when the
/// player does. The bytes the player read are the largest media file's, exactly.
#[test]
fn acestream_launcher_plays_an_id_through_a_player() {
    let s = swarm(0, None);
    let (mut engine, base) = s.engine("engine", &[]);
    let port = base.rsplit(':').next().expect("port");
    let home = s.path().join("home");
    let conf = home.join(".config/acestream-launcher");
    std::fs::create_dir_all(&conf).expect("config dir");
    // stdin is not a terminal: the launcher reads its `browser` section.
    std::fs::write(
        conf.join("config"),
        format!("[browser]\nhost = 127.0.0.1\nport = {port}\ntimeout = 60\n"),
    )
    .expect("config");
    let out = s.path().join("launched.ts");
    let player = format!(
        "{} {} {}",
        ace_python().display(),
        interop("m3u_player.py").display(),
        out.display()
    );
    let mut cmd = std::process::Command::new(ace_python().with_file_name("acestream-launcher"));
    cmd.arg(format!("acestream://{}", s.ih))
        .args(["--player", &player, "--verbose"])
        .env("HOME", &home);
    let mut launcher = Proc::spawn("launcher", cmd, &s.path().join("launcher.log"));
    let status = launcher.wait(T);
    let log = launcher.log_text();
    assert!(
        status.success(),
        "acestream-launcher failed ({status}):\n{log}"
    );
    let want = std::fs::read(&s.media.ts).expect("ts");
    let got = std::fs::read(&out).unwrap_or_else(|e| panic!("no player output ({e}):\n{log}"));
    assert!(
        got == want,
        "the player read {} bytes, not the {} of the TS file:\n{log}",
        got.len(),
        want.len()
    );
    assert!(running(&mut engine), "engine died:\n{}", engine.log_text());
}
