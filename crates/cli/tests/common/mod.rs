//! Shared helpers for whole-process tests: child processes that are killed when dropped,
//! port files, deterministic test data, and the libtorrent harness (`tests/interop/lt_peer.py`).
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait
#![allow(dead_code)]

mod fixtures;
pub mod netns;
#[allow(unused_imports)]
pub use fixtures::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped on drop, so no test leaks processes.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout+stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// Waits for exit with a deadline; panics with the log on timeout.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not finish in {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM (clean stop) and waits.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        unsafe_free_kill(self.child.id(), "-TERM");
        self.wait(timeout)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid` without unsafe code.
pub fn unsafe_free_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
}

/// Polls a port file written atomically by a child.
pub fn wait_port_file(path: &Path, p: &mut Proc) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(port) = s.trim().parse() {
                return port;
            }
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!(
                "{} exited ({st}) before writing its port; log:\n{}",
                p.name,
                p.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} wrote no port file; log:\n{}",
            p.name,
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for tens of MiB.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A multi-file tree under `root/name`: files of odd sizes in nested directories.
pub fn make_tree(root: &Path, name: &str, seed: u64) -> PathBuf {
    let top = root.join(name);
    let files: [(&str, usize); 4] = [
        ("video.ts", 9_437_185),
        ("sub/a.bin", 1_000_003),
        ("sub/deeper/b.bin", 3_333_333),
        ("readme.txt", 17),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = top.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data(*len, seed + i as u64)).expect("write");
    }
    top
}

/// Asserts two directory trees hold the same files with the same bytes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    if let Some(diff) = tree_diff(a, b) {
        panic!("{diff}");
    }
}

/// True when two trees hold the same files with the same bytes.
pub fn same_tree(a: &Path, b: &Path) -> bool {
    tree_diff(a, b).is_none()
}

/// What differs between two trees, if anything.
pub fn tree_diff(a: &Path, b: &Path) -> Option<String> {
    let mut fa = list(a);
    let mut fb = list(b);
    fa.sort();
    fb.sort();
    if fa != fb {
        return Some(format!(
            "file lists differ between {} and {}: {fa:?} vs {fb:?}",
            a.display(),
            b.display()
        ));
    }
    for rel in fa {
        let x = std::fs::read(a.join(&rel)).ok();
        let y = std::fs::read(b.join(&rel)).ok();
        if x.is_none() || x != y {
            return Some(format!("{} differs", rel.display()));
        }
    }
    None
}

fn list(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).expect("prefix").to_path_buf());
            }
        }
    }
    out
}

/// Path of the libtorrent harness.
pub fn lt_peer() -> PathBuf {
    std::env::var_os("PEERCDN_LT_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/lt_peer.py")
        })
}

/// The Python of the virtual environment that holds the Ace Stream client libraries from PyPI
/// (`PEERCDN_ACE_PYTHON`, else `target/ace-clients/bin/python`, which scripts/test.sh makes).
pub fn ace_python() -> PathBuf {
    let py = std::env::var_os("PEERCDN_ACE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ace-clients/bin/python")
        });
    assert!(
        py.exists(),
        "{} is missing: scripts/test.sh makes that virtual environment with the Ace Stream \
         client libraries (pip install acestream==0.2.0)",
        py.display()
    );
    py
}

/// mpv (Debian's) plays `url` for `secs` seconds with null audio and video outputs; panics
/// unless it exits 0 having opened both decoders and printed no error. Returns its log.
pub fn mpv_play(dir: &Path, name: &str, url: &str, secs: u32) -> String {
    let log = dir.join(format!("{name}.log"));
    let mut c = Command::new("mpv");
    c.args([
        "--no-config",
        "--vo=null",
        "--ao=null",
        "--msg-level=all=info",
    ])
    .arg(format!("--length={secs}"))
    .arg(url);
    without_proxy(&mut c);
    let mut p = Proc::spawn(name, c, &log);
    let st = p.wait(Duration::from_secs(120));
    let text = p.log_text();
    assert!(st.success(), "{name}: mpv failed ({st}) on {url}:\n{text}");
    assert!(
        text.contains("VO: [null]") && text.contains("AO: [null]"),
        "{name}: mpv opened no video or no audio decoder on {url}:\n{text}"
    );
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: mpv errors on {url}: {errors:#?}"
    );
    text
}

/// VLC (Debian's `cvlc`, run as `nobody`: VLC refuses root) reads `url` for at most `secs`
/// seconds and writes what it demuxed to a file without decoding (`--sout`); returns ffprobe's
/// duration and streams of that file.
pub fn vlc_remux(dir: &Path, name: &str, url: &str, secs: u32) -> (f64, Vec<String>) {
    // A directory of its own under the system's temporary directory (a test's own is closed
    // to nobody): nobody writes there, and VLC wants a home for its cache.
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path();
    let mut perm = std::fs::metadata(out_dir).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o777);
    std::fs::set_permissions(out_dir, perm).expect("chmod");
    let out = out_dir.join("out.ts");
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "cvlc",
        "-q",
    ])
    .args([
        "--play-and-exit",
        "--run-time",
        &secs.to_string(),
        url,
        "--sout",
    ])
    .arg(format!("#std{{access=file,mux=ts,dst={}}}", out.display()))
    .env("HOME", out_dir);
    without_proxy(&mut c);
    let mut p = Proc::spawn(name, c, &dir.join(format!("{name}.log")));
    let st = p.wait(Duration::from_secs(u64::from(secs) + 120));
    assert!(
        st.success() && out.exists(),
        "{name}: VLC failed ({st}) on {url}:\n{}",
        p.log_text()
    );
    ffprobe(out.to_str().expect("utf8"))
}

/// The npm packages the browser tests drive: `target/web-clients` (or
/// `$PEERCDN_WEB_CLIENTS`), which scripts/test.sh installs.
fn web_clients() -> PathBuf {
    let dir = std::env::var_os("PEERCDN_WEB_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/web-clients"));
    assert!(
        dir.join("node_modules/hls.js").exists()
            && dir.join("node_modules/playwright-core").exists(),
        "{} is missing hls.js or playwright-core: scripts/test.sh installs them there from npm",
        dir.display()
    );
    dir
}

/// `node tests/interop/hls_player.cjs --hlsjs … ARGS…`: hls.js in headless Chromium plays a
/// playlist and prints one JSON line (see the script).
pub fn hls_player(args: &[&str]) -> Command {
    let dir = web_clients();
    let mut c = Command::new("node");
    c.arg(interop("hls_player.cjs"))
        .arg("--hlsjs")
        .arg(dir.join("node_modules/hls.js/dist/hls.min.js"))
        .args(args)
        .env("NODE_PATH", dir.join("node_modules"));
    c
}

/// `node tests/interop/page_check.cjs ARGS…`: headless Chromium opens one of the engine's
/// pages, waits for a condition and prints one JSON line (see the script).
pub fn page_check(args: &[&str]) -> Command {
    let dir = web_clients();
    let mut c = Command::new("node");
    c.arg(interop("page_check.cjs"))
        .args(args)
        .env("NODE_PATH", dir.join("node_modules"));
    c
}

/// A path of `tests/interop/`.
pub fn interop(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop")
        .join(name)
}

/// A `/usr/bin/python3 lt_peer.py ARGS…` command.
pub fn lt(args: &[&str]) -> Command {
    let mut c = Command::new("/usr/bin/python3");
    c.arg(lt_peer()).args(args);
    c
}

/// Runs `lt_peer.py create`, returns the info hash.
pub fn lt_create(path: &Path, out: &Path, piece: Option<u32>) -> String {
    let mut c = lt(&[
        "create",
        "--path",
        path.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    if let Some(p) = piece {
        c.args(["--piece-size", &p.to_string()]);
    }
    let o = c.output().expect("run lt_peer.py create");
    assert!(
        o.status.success(),
        "lt_peer create failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Starts a libtorrent peer (`seed` or `leech` with extra args) and waits for its port.
pub fn lt_start(dir: &Path, name: &str, args: &[&str]) -> (Proc, u16) {
    let port_file = dir.join(format!("{name}.port"));
    let mut c = lt(args);
    c.args(["--port-file", port_file.to_str().expect("utf8")]);
    let mut p = Proc::spawn(name, c, &dir.join(format!("{name}.log")));
    let port = wait_port_file(&port_file, &mut p);
    (p, port)
}

/// A `peercdn` command isolated on loopback with its own data dir (and no public DHT).
pub fn peercdn(data_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_peercdn"));
    c.args(args)
        .args(["--bind", "127.0.0.1", "--data-dir"])
        .arg(data_dir)
        .env("PEERCDN_LOG", "info");
    // Tests never touch the public DHT: off unless the test gives a private bootstrap node.
    if !args.contains(&"--dht-bootstrap") {
        c.arg("--no-dht");
    }
    c
}

/// Picks a free TCP port on 127.0.0.1 (bind :0, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until `cond` holds, or panics after `timeout` with `what`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads the "port: N" line a peercdn node prints once it listens.
pub fn peercdn_port(p: &mut Proc) -> u16 {
    let mut port = 0;
    wait_until(Duration::from_secs(30), "peercdn to print its port", || {
        if let Some(line) = p.log_text().lines().find(|l| l.starts_with("port: ")) {
            port = line[6..].trim().parse().unwrap_or(0);
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!("{} exited early ({st}):\n{}", p.name, p.log_text());
        }
        port != 0
    });
    port
}

// ----------------------------------------------------------------------------- engine + HTTP

/// Starts `peercdn engine --port 0 --http-port 0 EXTRA…` (loopback, own data dir) and waits
/// for the `port: N` and `http: URL` lines. Returns the process, the peer port and the API
/// base URL (no trailing slash).
pub fn engine_start(dir: &Path, name: &str, extra: &[&str]) -> (Proc, u16, String) {
    let mut args = vec!["engine", "--port", "0", "--http-port", "0"];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(
        name,
        peercdn(&dir.join(format!("{name}-data")), &args),
        &dir.join(format!("{name}.log")),
    );
    let port = peercdn_port(&mut p);
    let mut base = String::new();
    wait_until(
        Duration::from_secs(30),
        "peercdn to print its http URL",
        || {
            if let Some(line) = p.log_text().lines().find(|l| l.starts_with("http: ")) {
                base = line[6..].trim().trim_end_matches('/').to_string();
            }
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("{} exited early ({st}):\n{}", p.name, p.log_text());
            }
            !base.is_empty()
        },
    );
    (p, port, base)
}

/// A private DHT's bootstrap node on 127.0.0.1: an engine whose DHT knows only itself.
/// Returns it and its `host:port` for the others' `--dht-bootstrap`.
pub fn dht_boot_node(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let boot = format!("127.0.0.1:{port}");
    let port_arg = port.to_string();
    let mut p = Proc::spawn(
        "boot",
        peercdn(
            &dir.join("boot-data"),
            &[
                "engine",
                "--port",
                "0",
                "--dht-port",
                &port_arg,
                "--http-port",
                "0",
                "--dht-bootstrap",
                &boot,
            ],
        ),
        &dir.join("boot.log"),
    );
    peercdn_port(&mut p);
    (p, boot)
}

/// True while the process has not exited.
pub fn running(p: &mut Proc) -> bool {
    matches!(p.child.try_wait(), Ok(None))
}

// ----------------------------------------------------------------------------- media (ffmpeg)

/// Media files generated by [`make_media`] under `root/name/`.
pub struct Media {
    /// The content directory (what the torrent is made of).
    pub dir: PathBuf,
    /// H.264/AAC MPEG-TS, 20 s, ~2.6 Mbit/s mux rate, 1 s closed GOP (the largest file).
    pub ts: PathBuf,
    /// The same as MP4 with the moov atom first (`-movflags +faststart`).
    pub mp4_fast: PathBuf,
    /// The same as MP4 with the moov atom at the end: a player must seek to the end first.
    pub mp4_end: PathBuf,
    /// The same as Matroska, written by mkvmerge (Debian's `mkvtoolnix`) from the MP4.
    pub mkv: PathBuf,
    /// A small text file.
    pub txt: PathBuf,
}

/// Media duration in seconds of every file [`make_media`] writes.
pub const MEDIA_SECONDS: f64 = 20.0;
/// Mux rate of the TS in bytes/s (2600 kbit/s).
pub const MEDIA_BYTES_PER_SEC: u32 = 2_600_000 / 8;

/// Runs ffmpeg with `args`, panics with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg (apt-get install ffmpeg)");
    assert!(
        o.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// ffmpeg: a `seconds`-long live source in `dir/source.ts`: testsrc2 320x240 25 fps + a tone,
/// x264 ultrafast CBR at `video_rate` (e.g. "1900k"), 1 s closed GOP, AAC 96k, MPEG-TS.
pub fn make_live_source(dir: &Path, seconds: &str, video_rate: &str) -> PathBuf {
    let out = dir.join("source.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-t",
        seconds,
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-t",
        seconds,
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-x264-params",
        "keyint=25:min-keyint=25:scenecut=0:nal-hrd=cbr",
        "-b:v",
        video_rate,
        "-maxrate",
        video_rate,
        "-bufsize",
        video_rate,
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-f",
        "mpegts",
        out.to_str().expect("utf8"),
    ]);
    out
}

/// A running `peercdn broadcast` ([`broadcast_start`]).
pub struct Broadcast {
    /// The process.
    pub proc: Proc,
    /// Its peer port.
    pub port: u16,
    /// The stream's content ID.
    pub id: String,
    /// Its HTTP API's base URL.
    pub http: String,
}

/// Starts `peercdn broadcast --input SRC --name NAME` on any free peer and HTTP port, data in
/// `dir/bc-data`, log in `dir/broadcast.log`, `extra` flags after; waits for its peer port,
/// content ID and HTTP base.
pub fn broadcast_start(dir: &Path, src: &Path, name: &str, extra: &[&str]) -> Broadcast {
    let mut args = vec![
        "broadcast",
        "--input",
        src.to_str().expect("utf8"),
        "--name",
        name,
        "--port",
        "0",
        "--http-port",
        "0",
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(
        "broadcast",
        peercdn(&dir.join("bc-data"), &args),
        &dir.join("broadcast.log"),
    );
    let port = peercdn_port(&mut proc);
    let id = wait_line(&mut proc, "id: ");
    let http = wait_line(&mut proc, "http: ");
    Broadcast {
        proc,
        port,
        id,
        http,
    }
}

/// The value after `prefix` on the first log line of `p` that starts with it (waits up to 30 s;
/// panics if the process exits first).
pub fn wait_line(p: &mut Proc, prefix: &str) -> String {
    let mut found = String::new();
    wait_until(Duration::from_secs(30), prefix, || {
        if let Some(l) = p.log_text().lines().find(|l| l.starts_with(prefix)) {
            found = l[prefix.len()..].trim().to_string();
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!("{} exited early ({st}):\n{}", p.name, p.log_text());
        }
        !found.is_empty()
    });
    found
}

/// Generates `root/name/{video.ts, faststart.mp4, moov-at-end.mp4, video.mkv, notes.txt}`: a
/// finite 20 s testsrc2 + sine source, 640x360, x264 ultrafast, 1 s closed GOP, CBR 2 Mbit/s
/// (about 2 s of CPU in all). The MP4s and the MKV are remuxes of the TS (same streams).
pub fn make_media(root: &Path, name: &str) -> Media {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir media");
    let ts = dir.join("video.ts");
    let secs = format!("{MEDIA_SECONDS}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-t",
        &secs,
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-t",
        &secs,
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-x264-params",
        "keyint=25:min-keyint=25:scenecut=0:nal-hrd=cbr",
        "-b:v",
        "2M",
        "-maxrate",
        "2M",
        "-bufsize",
        "2M",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-f",
        "mpegts",
        "-muxrate",
        "2600k",
        "-mpegts_flags",
        "+resend_headers",
        ts.to_str().expect("utf8"),
    ]);
    let mp4_fast = dir.join("faststart.mp4");
    let mp4_end = dir.join("moov-at-end.mp4");
    let t = ts.to_str().expect("utf8");
    ffmpeg(&[
        "-i",
        t,
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        mp4_fast.to_str().expect("utf8"),
    ]);
    ffmpeg(&["-i", t, "-c", "copy", mp4_end.to_str().expect("utf8")]);
    let mkv = dir.join("video.mkv");
    let o = Command::new("mkvmerge")
        .arg("-q")
        .arg("-o")
        .arg(&mkv)
        .arg(&mp4_fast)
        .output()
        .expect("run mkvmerge (apt-get install mkvtoolnix)");
    assert!(
        o.status.success(),
        "mkvmerge failed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let txt = dir.join("notes.txt");
    std::fs::write(
        &txt,
        b"peercdn streaming test: three media files and this note.\n",
    )
    .expect("write txt");
    Media {
        dir,
        ts,
        mp4_fast,
        mp4_end,
        mkv,
        txt,
    }
}

/// GET `url` on loopback (no proxy, 30 s timeout): (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    let resp = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

/// Removes the proxy variables from `c`'s environment: players must reach the engine on
/// loopback directly, whatever the machine's proxy settings.
pub fn without_proxy(c: &mut Command) {
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
    ] {
        c.env_remove(var);
    }
}

/// What ffprobe says about a file or URL: (duration in seconds, codec types with names,
/// e.g. `["video:h264", "audio:aac"]`).
pub fn ffprobe(input: &str) -> (f64, Vec<String>) {
    let mut c = Command::new("ffprobe");
    without_proxy(&mut c);
    let o = c
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type,codec_name",
            "-of",
            "default=noprint_wrappers=1",
            input,
        ])
        .output()
        .expect("run ffprobe");
    assert!(
        o.status.success(),
        "ffprobe {input} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let mut duration = 0.0;
    let mut streams = vec![];
    let mut name = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("duration=") {
            duration = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("codec_name=") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("codec_type=") {
            streams.push(format!("{}:{name}", v.trim()));
        }
    }
    (duration, streams)
}

/// Lines of an ffmpeg log that show damaged input.
pub fn ffmpeg_damage(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            ["error", "corrupt", "non-monoton", "pes"]
                .iter()
                .any(|w| l.contains(w))
        })
        .map(str::to_string)
        .collect()
}

/// Starts `ffmpeg -v error -i INPUT -f null -` with machine-readable progress written to
/// `dir/NAME.progress` (read it with [`ffmpeg_media_time`]); stderr goes to `dir/NAME.log`.
pub fn ffmpeg_decode_start(dir: &Path, name: &str, input: &str) -> (Proc, PathBuf) {
    let progress = dir.join(format!("{name}.progress"));
    let mut c = Command::new("ffmpeg");
    without_proxy(&mut c);
    c.args(["-nostdin", "-hide_banner", "-v", "error", "-progress"])
        .arg(&progress)
        .args(["-stats_period", "0.2", "-i", input, "-f", "null", "-"]);
    let p = Proc::spawn(name, c, &dir.join(format!("{name}.log")));
    (p, progress)
}

/// The latest media time (seconds) ffmpeg reported in a `-progress` file, 0 if none yet.
pub fn ffmpeg_media_time(progress: &Path) -> f64 {
    let text = std::fs::read_to_string(progress).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("out_time_us="))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|us| us.max(0) as f64 / 1e6)
        .unwrap_or(0.0)
}

// ----------------------------------------------------------------------------- torrents

/// The files of a .torrent in their torrent order: (path inside the torrent, size). Read by
/// libtorrent, so indexes match `file_index` as any client counts them.
pub fn torrent_files(torrent: &Path) -> Vec<(String, u64)> {
    let o = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, libtorrent as lt\n\
             fs = lt.torrent_info(sys.argv[1]).files()\n\
             for i in range(fs.num_files()):\n    print('%d\\t%s' % (fs.file_size(i), fs.file_path(i)))\n",
        ])
        .arg(torrent)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "listing {} failed: {}",
        torrent.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (size, path) = l.split_once('\t')?;
            Some((path.to_string(), size.parse().ok()?))
        })
        .collect()
}

/// Index in the torrent of the file whose path ends with `suffix`.
pub fn file_index(torrent: &Path, suffix: &str) -> usize {
    torrent_files(torrent)
        .iter()
        .position(|(p, _)| p.ends_with(suffix))
        .unwrap_or_else(|| panic!("{suffix} not in {}", torrent.display()))
}

/// Makes a v1-only torrent with libtorrent whose `url-list` holds `web_seed` (BEP 19; for a
/// directory the URL is the base the torrent's name and paths are appended to). Returns the
/// info hash.
pub fn lt_create_webseed(path: &Path, out: &Path, piece: u32, web_seed: &str) -> String {
    let o = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import os, sys, libtorrent as lt\n\
             path, out, piece, url = os.path.abspath(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]\n\
             fs = lt.file_storage()\n\
             lt.add_files(fs, path)\n\
             ct = lt.create_torrent(fs, piece, flags=lt.create_torrent.v1_only)\n\
             ct.add_url_seed(url)\n\
             lt.set_piece_hashes(ct, os.path.dirname(path))\n\
             open(out, 'wb').write(lt.bencode(ct.generate()))\n\
             print(lt.torrent_info(out).info_hashes().v1)\n",
        ])
        .arg(path)
        .arg(out)
        .arg(piece.to_string())
        .arg(web_seed)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "creating a web-seeded torrent failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

// ----------------------------------------------------------------------------- nginx

/// Debian's nginx serving `root` on 127.0.0.1 (Range supported), one process
/// (`master_process off`) so killing the [`Proc`] stops it all. Logs and temp dirs live under
/// the prefix directory.
pub struct Nginx {
    /// The nginx process.
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its prefix directory (config, logs).
    pub prefix: PathBuf,
}

impl Nginx {
    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The access log (one line per request).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("access.log")).unwrap_or_default()
    }
}

/// Starts nginx with a generated minimal config serving `root`; waits until it accepts.
pub fn nginx_start(dir: &Path, root: &Path) -> Nginx {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("tmp")).expect("mkdir nginx");
    let port = free_port();
    let p = prefix.to_str().expect("utf8");
    let conf = format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         {user}\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         \x20 access_log {p}/access.log;\n\
         \x20 client_body_temp_path {p}/tmp/body;\n\
         \x20 proxy_temp_path {p}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {p}/tmp/fastcgi;\n\
         \x20 uwsgi_temp_path {p}/tmp/uwsgi;\n\
         \x20 scgi_temp_path {p}/tmp/scgi;\n\
         \x20 default_type application/octet-stream;\n\
         \x20 sendfile on;\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port};\n\
         \x20   root {root};\n\
         \x20   location / {{ }}\n\
         \x20 }}\n\
         }}\n",
        user = if is_root() { "user root;\n" } else { "" },
        root = root.to_str().expect("utf8"),
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let bin = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let mut c = Command::new(bin);
    c.arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .arg("-c")
        .arg(&conf_path);
    let mut proc = Proc::spawn("nginx", c, &prefix.join("stderr.log"));
    wait_until(Duration::from_secs(10), "nginx to listen", || {
        if let Ok(Some(st)) = proc.child.try_wait() {
            panic!(
                "nginx exited ({st}): {}\n{}",
                proc.log_text(),
                std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
            );
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Nginx { proc, port, prefix }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
