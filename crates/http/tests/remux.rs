//! The VoD HLS remuxers on real files: Matroska files as ffmpeg and mkvmerge (Debian's
//! `mkvtoolnix`) write them, cut into segments by [`MkvPlan`] and checked with ffprobe and
//! ffmpeg. No engine: the plans read the files through `std::fs::File`.

use std::path::{Path, PathBuf};
use std::process::Command;

use peercdn_http::media_file::Failure;
use peercdn_http::vod_mkv::MkvPlan;

/// Seconds of media in every file here.
const SECONDS: u32 = 20;
/// Frames per second of the video.
const FPS: u32 = 25;

fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} (apt-get install ffmpeg mkvtoolnix): {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// ffmpeg: testsrc2 and a tone, H.264 with B-frames (x264 `veryfast`, GOP of `keyint`
/// frames) and AAC, into `out` (its extension names the container).
fn encode(out: &Path, keyint: u32) {
    let secs = SECONDS.to_string();
    let x264 = format!("keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=3");
    run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-t",
            &secs,
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-t",
            &secs,
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-x264-params",
            &x264,
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            out.to_str().expect("utf8"),
        ],
    );
}

/// Packets per stream type, as ffprobe counts them: (video, audio).
fn packets(file: &Path) -> (u64, u64) {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_type,nb_read_packets",
            "-of",
            "csv=p=0",
            file.to_str().expect("utf8"),
        ],
    );
    // An MPEG-TS lists its streams twice (under its program too): the counts are the same.
    let (mut v, mut a) = (0, 0);
    for l in out.lines() {
        match l.split_once(',') {
            Some(("video", n)) => v = n.trim().parse::<u64>().expect("count"),
            Some(("audio", n)) => a = n.trim().parse::<u64>().expect("count"),
            _ => {}
        }
    }
    (v, a)
}

/// Whether the first video frame of `file` is a keyframe.
fn starts_with_keyframe(file: &Path) -> bool {
    run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=key_frame",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
            file.to_str().expect("utf8"),
        ],
    )
    .lines()
    .next()
    .map(|l| l.trim_end_matches(','))
        == Some("1")
}

/// Plans `mkv`, writes each segment and all of them joined under `dir`; returns the segment
/// files and the joined one.
fn remux(mkv: &Path, dir: &Path) -> (Vec<PathBuf>, PathBuf) {
    let f = std::fs::File::open(mkv).expect("open mkv");
    let plan = MkvPlan::read(Box::new(f), Failure::default())
        .expect("plan")
        .expect("a Matroska file");
    let count = plan.count();
    assert_eq!(count, u64::from(SECONDS).div_ceil(6), "{plan:?}");
    let total: f64 = (0..count).map(|n| plan.seconds(n)).sum();
    assert!((total - f64::from(SECONDS)).abs() < 0.2, "{total} s");
    let mut joined = Vec::new();
    let mut files = Vec::new();
    // Out of order on purpose: a player that seeks asks for a later segment first.
    let mut order: Vec<u64> = (0..count).collect();
    order.rotate_left(2);
    let mut segs = vec![Vec::new(); count as usize];
    for n in order {
        segs[n as usize] = plan.segment(n).expect("segment");
    }
    for (n, seg) in segs.iter().enumerate() {
        assert!(seg.len() % 188 == 0 && !seg.is_empty(), "segment {n}");
        let p = dir.join(format!("seg-{n}.ts"));
        std::fs::write(&p, seg).expect("write segment");
        files.push(p);
        joined.extend_from_slice(seg);
    }
    let j = dir.join("joined.ts");
    std::fs::write(&j, &joined).expect("write joined");
    (files, j)
}

/// Decodes `file` whole with ffmpeg; returns what it warned about.
fn decode_warnings(file: &Path) -> String {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Matroska files with B-frames as ffmpeg writes them (SimpleBlocks, Cues at the end) and as
/// mkvmerge writes them from an MP4 (its own cluster layout and lacing): the segments hold
/// every video and audio frame of the file exactly once (ffprobe counts the packets of the
/// segments joined against the file's), each segment starts with a keyframe, and ffmpeg
/// decodes the joined segments without a warning (so decode times rebuilt from Matroska's
/// presentation times run forward).
#[test]
fn matroska_files_remux_into_whole_keyframe_led_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let by_ffmpeg = dir.path().join("ffmpeg.mkv");
    encode(&by_ffmpeg, 2 * FPS);
    let mp4 = dir.path().join("source.mp4");
    encode(&mp4, 2 * FPS);
    let by_mkvmerge = dir.path().join("mkvmerge.mkv");
    run(
        "mkvmerge",
        &[
            "-q",
            "-o",
            by_mkvmerge.to_str().expect("utf8"),
            mp4.to_str().expect("utf8"),
        ],
    );
    for mkv in [&by_ffmpeg, &by_mkvmerge] {
        let out = dir.path().join(mkv.file_stem().expect("stem"));
        std::fs::create_dir_all(&out).expect("mkdir");
        let (segments, joined) = remux(mkv, &out);
        let want = packets(mkv);
        assert_eq!(want.0, u64::from(SECONDS * FPS), "{mkv:?}");
        assert_eq!(packets(&joined), want, "{mkv:?}: every frame once");
        for (n, s) in segments.iter().enumerate() {
            assert!(starts_with_keyframe(s), "{mkv:?}: segment {n}");
        }
        let warnings = decode_warnings(&joined);
        assert!(warnings.is_empty(), "{mkv:?}:\n{warnings}");
    }
}

/// A GOP longer than a segment (10 s keyframe interval, 6 s segments): a span without a
/// keyframe is cut at its first frame instead, and still every frame is in exactly one
/// segment and the joined segments decode without a warning.
#[test]
fn a_gop_longer_than_a_segment_still_loses_no_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mkv = dir.path().join("long-gop.mkv");
    encode(&mkv, 10 * FPS);
    let (segments, joined) = remux(&mkv, dir.path());
    assert_eq!(packets(&joined), packets(&mkv));
    assert!(starts_with_keyframe(&segments[0]));
    let warnings = decode_warnings(&joined);
    assert!(warnings.is_empty(), "{warnings}");
}

/// A Matroska header that claims an absurd duration (10^15 ms) is refused with a 400, instead
/// of planning a playlist of billions of segments (the header alone once decided the count).
#[test]
fn an_absurd_duration_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mkv = dir.path().join("short.mkv");
    encode(&mkv, FPS);
    let mut bytes = std::fs::read(&mkv).expect("read");
    // The Duration element: ID 0x4489, an 8-byte float (as ffmpeg writes it).
    let at = bytes
        .windows(3)
        .position(|w| w == [0x44, 0x89, 0x88])
        .expect("a Duration element")
        + 3;
    bytes[at..at + 8].copy_from_slice(&1e15f64.to_be_bytes());
    let e = MkvPlan::read(Box::new(std::io::Cursor::new(bytes)), Failure::default())
        .expect_err("refused");
    assert_eq!(e.status.as_u16(), 400);
    assert!(e.message.contains("segments"), "{}", e.message);
}

/// What is not remuxed is refused with the reason: a file that is not Matroska is not this
/// plan's (`None`), and a Matroska file of another video codec gets a 400 that names H.264.
#[test]
fn other_files_and_codecs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"not a video").expect("write");
    let f = std::fs::File::open(&text).expect("open");
    assert!(MkvPlan::read(Box::new(f), Failure::default())
        .expect("no error")
        .is_none());
    let mpeg4 = dir.path().join("mpeg4.mkv");
    run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-t",
            "2",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-c:v",
            "mpeg4",
            mpeg4.to_str().expect("utf8"),
        ],
    );
    let f = std::fs::File::open(&mpeg4).expect("open");
    let e = MkvPlan::read(Box::new(f), Failure::default()).expect_err("refused");
    assert_eq!(e.status.as_u16(), 400);
    assert!(e.message.contains("H.264"), "{}", e.message);
}

/// Bytes anyone can publish: small real files (an MKV from ffmpeg, one from mkvmerge, an
/// MP4) with bytes flipped, runs overwritten with 0x00 or 0xFF (sizes and IDs of elements and
/// boxes become absurd), or cut short, several thousand times with a fixed seed, are planned
/// and cut into segments or refused with an error, never a panic, and every segment is whole
/// packets. (The stable toolchain's libFuzzer has no coverage to grow a corpus from these
/// seeds; `fuzz/fuzz_targets/vod_remux.rs` is the same check for a coverage build.)
#[test]
fn mutated_matroska_and_mp4_files_are_refused_or_cut_never_a_panic() {
    use peercdn_http::vod_mp4::Mp4Plan;
    use std::io::Cursor;

    let dir = tempfile::tempdir().expect("tempdir");
    let mkv = dir.path().join("small.mkv");
    let mp4 = dir.path().join("small.mp4");
    let merged = dir.path().join("merged.mkv");
    run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-t",
            "2",
            "-i",
            "testsrc2=size=64x48:rate=10",
            "-f",
            "lavfi",
            "-t",
            "2",
            "-i",
            "sine=frequency=440:sample_rate=8000",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-x264-params",
            "keyint=5:bframes=2",
            "-c:a",
            "aac",
            "-b:a",
            "16k",
            mkv.to_str().expect("utf8"),
        ],
    );
    run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            mkv.to_str().expect("utf8"),
            "-c",
            "copy",
            mp4.to_str().expect("utf8"),
        ],
    );
    run(
        "mkvmerge",
        &[
            "-q",
            "-o",
            merged.to_str().expect("utf8"),
            mp4.to_str().expect("utf8"),
        ],
    );
    let seeds: Vec<(bool, Vec<u8>)> = [(true, &mkv), (true, &merged), (false, &mp4)]
        .into_iter()
        .map(|(is_mkv, p)| (is_mkv, std::fs::read(p).expect("read seed")))
        .collect();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((rng >> 33) as usize) % n.max(1)
    };
    let (mut planned, mut cut) = (0, 0);
    let rounds: usize = std::env::var("PEERCDN_MUTATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    for round in 0..rounds {
        let (is_mkv, seed) = &seeds[round % seeds.len()];
        let mut f = seed.clone();
        for _ in 0..1 + next(4) {
            let at = next(f.len());
            match next(4) {
                0 => f[at] ^= 1 << next(8),
                1 => f[at..].iter_mut().take(1 + next(8)).for_each(|b| *b = 0xFF),
                2 => f[at..].iter_mut().take(1 + next(8)).for_each(|b| *b = 0),
                _ => f.truncate(at.max(8)),
            }
        }
        let len = f.len() as u64;
        let segments = |count: u64, seg: &dyn Fn(u64) -> Result<Vec<u8>, _>| {
            let mut ok = 0;
            for n in 0..count.min(4) {
                if let Ok(s) = seg(n) {
                    assert_eq!(s.len() % 188, 0, "round {round}");
                    ok += 1;
                }
            }
            ok
        };
        if *is_mkv {
            if let Ok(Some(p)) = MkvPlan::read(Box::new(Cursor::new(f)), Failure::default()) {
                planned += 1;
                cut += segments(p.count(), &|n| p.segment(n));
            }
        } else if let Ok(Some(p)) = Mp4Plan::read(Box::new(Cursor::new(f)), len, Failure::default())
        {
            planned += 1;
            cut += segments(p.count(), &|n| p.segment(n));
        }
    }
    // The mutations are mostly survivable: the check ran on real plans, not only refusals.
    assert!(planned > 500 && cut > 500, "planned {planned}, cut {cut}");
}
