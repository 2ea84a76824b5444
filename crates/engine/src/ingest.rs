//! Live ingest: reads an MPEG-TS source and turns it into live pieces.
//!
//! Owns the input sources of `peercdn broadcast --input SRC` — a file (optionally looped),
//! stdin, UDP (unicast or multicast) and HTTP(S) — and the real-time pacing of files. The
//! cutting itself is `peercdn_core::ts::Cutter`; signing and relaying the pieces is someone
//! else's job (the receiver of the channel given to [`run`]).
//!
//! Pacing: a file is released in real time from its PCR (or its video PTS when it has no PCR):
//! a piece is sent once the wall clock since the start reaches the media time of the piece's
//! *end* (its start relative to the first piece, plus its duration) — the moment a live encoder
//! would have finished it — so a 60 s file takes 60 s. With `looped`, each rewind marks a
//! discontinuity and the media clock continues from where the previous pass ended. Stdin, UDP
//! and HTTP are live already and are not paced.
//!
//! Bounds: one read buffer (64 KiB), the cutter's one piece, and the channel's capacity; when
//! the receiver is gone, [`run`] returns `Ok`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peercdn_core::ts::{CutPiece, Cutter, CutterConfig, TsError, TsStats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use url::Url;

/// Size of one read from a file, stdin or HTTP body, and of the UDP receive buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Kernel receive buffer asked for on UDP inputs (bursty senders).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// A PCR/PTS jump larger than this (or backwards) re-anchors the pacing clock.
const MAX_MEDIA_JUMP_US: u64 = 10_000_000;
/// Connect timeout of HTTP inputs.
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the MPEG-TS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file, paced in real time; `looped` rewinds it at the end (set from `--loop`).
    File {
        /// The file.
        path: PathBuf,
        /// Rewind at the end and go on forever.
        looped: bool,
    },
    /// Standard input (`-`).
    Stdin,
    /// UDP datagrams received on this address; when its IP is multicast, the group is joined
    /// and the socket bound to the unspecified address on the given port.
    Udp(SocketAddr),
    /// An HTTP(S) URL whose body is the stream.
    Http(Url),
}

impl FromStr for Input {
    type Err = IngestError;

    /// `-` is stdin, `udp://IP:PORT` (or `udp://@IP:PORT`) UDP, `http(s)://…` HTTP, anything
    /// else a file path (not looped).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| IngestError::BadInput {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty input"));
        }
        if s == "-" {
            return Ok(Input::Stdin);
        }
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if let Some(rest) = lower
            .strip_prefix("udp://")
            .map(|_| s.get(6..).unwrap_or_default())
        {
            let rest = rest.strip_prefix('@').unwrap_or(rest);
            let rest = rest.split(['/', '?']).next().unwrap_or_default();
            let addr: SocketAddr = rest
                .parse()
                .map_err(|_| bad("expected udp://IP:PORT (an IP address, not a host name)"))?;
            return Ok(Input::Udp(addr));
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
            return Ok(Input::Http(url));
        }
        Ok(Input::File {
            path: PathBuf::from(s),
            looped: false,
        })
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::File { path, .. } => write!(f, "{}", path.display()),
            Input::Stdin => f.write_str("stdin"),
            Input::Udp(addr) => write!(f, "udp://{addr}"),
            Input::Http(url) => write!(f, "{url}"),
        }
    }
}

/// Errors of the ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The `--input` string could not be understood.
    #[error("bad input {input:?}: {reason}")]
    BadInput {
        /// The string given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be opened or rewound.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading the source failed.
    #[error("cannot read {input}: {source}")]
    Read {
        /// The source (path, `stdin`, `udp://…`).
        input: String,
        /// The OS error.
        source: io::Error,
    },
    /// The UDP socket could not be set up.
    #[error("cannot listen on udp://{addr}: {source}")]
    Udp {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The HTTP request failed or returned an error status.
    #[error("HTTP input {url}: {reason}")]
    Http {
        /// The URL.
        url: Url,
        /// What went wrong.
        reason: String,
    },
    /// The source is not an MPEG transport stream.
    #[error("{input}: {}", TsError::NotTs)]
    NotTs {
        /// The source.
        input: String,
    },
}

/// Live counters of an ingest, readable from any thread while [`run`] works (relaxed atomics,
/// updated after every chunk read; each field is consistent on its own, not with the others).
#[derive(Debug, Default)]
pub struct IngestStats {
    bytes_in: AtomicU64,
    packets: AtomicU64,
    dropped_bytes: AtomicU64,
    resyncs: AtomicU64,
    pieces: AtomicU64,
    keyframes: AtomicU64,
    bitrate_bps: AtomicU64,
    loops: AtomicU64,
}

impl IngestStats {
    /// The cutter's counters as last published.
    pub fn snapshot(&self) -> TsStats {
        TsStats {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            packets: self.packets.load(Ordering::Relaxed),
            dropped_bytes: self.dropped_bytes.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            pieces: self.pieces.load(Ordering::Relaxed),
            keyframes: self.keyframes.load(Ordering::Relaxed),
            bitrate_bps: self.bitrate_bps.load(Ordering::Relaxed),
        }
    }

    /// How many times a looped file was rewound.
    pub fn loops(&self) -> u64 {
        self.loops.load(Ordering::Relaxed)
    }

    fn publish(&self, s: &TsStats) {
        self.bytes_in.store(s.bytes_in, Ordering::Relaxed);
        self.packets.store(s.packets, Ordering::Relaxed);
        self.dropped_bytes.store(s.dropped_bytes, Ordering::Relaxed);
        self.resyncs.store(s.resyncs, Ordering::Relaxed);
        self.pieces.store(s.pieces, Ordering::Relaxed);
        self.keyframes.store(s.keyframes, Ordering::Relaxed);
        self.bitrate_bps.store(s.bitrate_bps, Ordering::Relaxed);
    }
}

/// Reads `input`, cuts it with `cfg` and sends every complete piece to `out`.
///
/// Ends `Ok` at the end of a (non-looped) file, stdin or HTTP body, and whenever `out`'s
/// receiver is dropped; UDP and looped files otherwise run until then. Fails on open/read
/// errors and when the input is not MPEG-TS.
pub async fn run(
    input: Input,
    cfg: CutterConfig,
    out: mpsc::Sender<CutPiece>,
    stats: Arc<IngestStats>,
) -> Result<(), IngestError> {
    let mut sink = Sink {
        name: input.to_string(),
        cutter: Cutter::new(cfg),
        out,
        stats,
        pacer: None,
    };
    match input {
        Input::File { path, looped } => run_file(&mut sink, path, looped).await,
        Input::Stdin => run_reader(&mut sink, tokio::io::stdin()).await,
        Input::Udp(addr) => run_udp(&mut sink, addr).await,
        Input::Http(url) => run_http(&mut sink, url).await,
    }
}

/// Whether to go on reading.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    More,
    Stop,
}

/// The cutter, the pacing and the output channel.
struct Sink {
    name: String,
    cutter: Cutter,
    out: mpsc::Sender<CutPiece>,
    stats: Arc<IngestStats>,
    pacer: Option<Pacer>,
}

impl Sink {
    /// Feeds bytes and sends the pieces they completed.
    async fn feed(&mut self, data: &[u8]) -> Result<Flow, IngestError> {
        let pushed = self.cutter.push(data);
        self.stats.publish(&self.cutter.stats());
        if pushed.is_err() {
            return Err(IngestError::NotTs {
                input: self.name.clone(),
            });
        }
        self.drain().await
    }

    /// Ends the input (or one pass of a looped file) and sends what remains.
    async fn finish(&mut self, discontinuity: bool) -> Result<Flow, IngestError> {
        if discontinuity {
            self.cutter.mark_discontinuity();
        } else if let Some(p) = self.cutter.flush() {
            if self.send(p).await == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        let s = self.cutter.stats();
        self.stats.publish(&s);
        if s.packets == 0 && s.bytes_in > 0 {
            return Err(IngestError::NotTs {
                input: self.name.clone(),
            });
        }
        self.drain().await
    }

    async fn drain(&mut self) -> Result<Flow, IngestError> {
        while let Some(p) = self.cutter.pop() {
            if self.send(p).await == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::More)
    }

    async fn send(&mut self, piece: CutPiece) -> Flow {
        if let Some(pacer) = &mut self.pacer {
            let due = pacer.due(&piece);
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = self.out.closed() => return Flow::Stop,
            }
        }
        match self.out.send(piece).await {
            Ok(()) => Flow::More,
            Err(_) => Flow::Stop,
        }
    }
}

/// Releases pieces at the wall-clock time of their media end.
#[derive(Debug)]
struct Pacer {
    start: Option<Instant>,
    /// Media time (µs) that maps to the start of the current pass.
    anchor: Option<u64>,
    /// Media time already played by earlier passes of a looped file.
    loop_offset: u64,
    /// End of the latest piece relative to the current pass's anchor.
    pass_end: u64,
}

impl Pacer {
    fn new() -> Self {
        Pacer {
            start: None,
            anchor: None,
            loop_offset: 0,
            pass_end: 0,
        }
    }

    fn due(&mut self, piece: &CutPiece) -> Instant {
        let start = *self.start.get_or_insert_with(crate::clock::tokio_now);
        let rel = match (piece.pcr_us.or(piece.pts_us), self.anchor) {
            (Some(m), None) => {
                self.anchor = Some(m.saturating_sub(self.pass_end));
                self.pass_end
            }
            (Some(m), Some(a)) => {
                let rel = m.saturating_sub(a);
                if m < a || rel > self.pass_end + MAX_MEDIA_JUMP_US {
                    // A timestamp jump: continue from where the media clock was.
                    self.anchor = Some(m.saturating_sub(self.pass_end));
                    self.pass_end
                } else {
                    rel
                }
            }
            (None, _) => self.pass_end,
        };
        let end = rel + u64::from(piece.duration_us);
        self.pass_end = self.pass_end.max(end);
        start + Duration::from_micros(self.loop_offset + end)
    }

    /// A looped file starts over: its media clock continues after the pass just played.
    fn rewind(&mut self) {
        self.loop_offset += self.pass_end;
        self.pass_end = 0;
        self.anchor = None;
    }
}

async fn run_file(sink: &mut Sink, path: PathBuf, looped: bool) -> Result<(), IngestError> {
    let open_err = |source| IngestError::Open {
        path: path.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(open_err)?;
    sink.pacer = Some(Pacer::new());
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let pieces_before = sink.cutter.stats().pieces;
        let mut flow = Flow::More;
        loop {
            let n = tokio::select! {
                r = file.read(&mut buf) => r.map_err(|source| IngestError::Read {
                    input: sink.name.clone(),
                    source,
                })?,
                () = sink.out.closed() => return Ok(()),
            };
            let Some(data) = buf.get(..n).filter(|d| !d.is_empty()) else {
                break;
            };
            flow = sink.feed(data).await?;
            if flow == Flow::Stop {
                break;
            }
        }
        if flow == Flow::Stop || sink.finish(looped).await? == Flow::Stop || !looped {
            return Ok(());
        }
        if sink.cutter.stats().pieces == pieces_before {
            // A pass that yields nothing would loop forever without pacing.
            return Ok(());
        }
        file.rewind().await.map_err(open_err)?;
        if let Some(p) = &mut sink.pacer {
            p.rewind();
        }
        sink.stats.loops.fetch_add(1, Ordering::Relaxed);
    }
}

async fn run_reader<R: AsyncRead + Unpin>(
    sink: &mut Sink,
    mut reader: R,
) -> Result<(), IngestError> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = tokio::select! {
            r = reader.read(&mut buf) => r.map_err(|source| IngestError::Read {
                input: sink.name.clone(),
                source,
            })?,
            () = sink.out.closed() => return Ok(()),
        };
        let Some(data) = buf.get(..n).filter(|d| !d.is_empty()) else {
            sink.finish(false).await?;
            return Ok(());
        };
        if sink.feed(data).await? == Flow::Stop {
            return Ok(());
        }
    }
}

async fn run_udp(sink: &mut Sink, addr: SocketAddr) -> Result<(), IngestError> {
    let socket = udp_socket(addr).map_err(|source| IngestError::Udp { addr, source })?;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = tokio::select! {
            r = socket.recv(&mut buf) => r.map_err(|source| IngestError::Read {
                input: sink.name.clone(),
                source,
            })?,
            () = sink.out.closed() => return Ok(()),
        };
        if sink.feed(buf.get(..n).unwrap_or_default()).await? == Flow::Stop {
            return Ok(());
        }
    }
}

/// A UDP socket bound to `addr`, or to the port of a multicast `addr` with the group joined.
fn udp_socket(addr: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    // Best effort: a small kernel buffer only means more loss under bursts.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    match addr.ip() {
        IpAddr::V4(group) if group.is_multicast() => {
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()).into())?;
            socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
        }
        IpAddr::V6(group) if group.is_multicast() => {
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), addr.port()).into())?;
            socket.join_multicast_v6(&group, 0)?;
        }
        _ => socket.bind(&addr.into())?,
    }
    tokio::net::UdpSocket::from_std(socket.into())
}

async fn run_http(sink: &mut Sink, url: Url) -> Result<(), IngestError> {
    let http_err = |reason: String| IngestError::Http {
        url: url.clone(),
        reason,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(HTTP_CONNECT_TIMEOUT)
        .build()
        .map_err(|e| http_err(e.to_string()))?;
    let mut resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| http_err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(http_err(format!("server answered {}", resp.status())));
    }
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c.map_err(|e| http_err(e.to_string()))?,
            () = sink.out.closed() => return Ok(()),
        };
        let Some(chunk) = chunk else {
            sink.finish(false).await?;
            return Ok(());
        };
        if sink.feed(&chunk).await? == Flow::Stop {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests measure real elapsed time
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;
    use tokio::io::AsyncWriteExt;

    /// The brief's test source: 640x360 25 fps, 1 s GOP, ~2 Mbit/s, AAC audio. Fails (does
    /// not skip) when ffmpeg is missing.
    fn make_ts(dir: &Path, secs: u32) -> PathBuf {
        let out = dir.join(format!("src{secs}.ts"));
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", &secs.to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-g",
                "25",
                "-keyint_min",
                "25",
                "-sc_threshold",
                "0",
                "-b:v",
                "2M",
            ])
            .args(["-c:a", "aac", "-b:a", "96k", "-f", "mpegts"])
            .arg(&out)
            .status()
            .expect("ffmpeg must be installed for the ingest tests");
        assert!(status.success(), "ffmpeg failed");
        out
    }

    /// Runs `ffmpeg -v error -i FILE -f null -`: returns its error output.
    fn decode_errors(file: &Path) -> String {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-i"])
            .arg(file)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn video_frames(file: &Path) -> u64 {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(file)
            .output()
            .expect("ffprobe");
        // ffprobe prints the count once per section (program and stream): take the first.
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find_map(|w| w.trim_matches(',').parse().ok())
            .unwrap_or(0)
    }

    async fn collect(input: Input) -> (Result<(), IngestError>, Vec<CutPiece>, Arc<IngestStats>) {
        let (tx, mut rx) = mpsc::channel(64);
        let stats = Arc::new(IngestStats::default());
        let task = tokio::spawn(run(input, CutterConfig::default(), tx, stats.clone()));
        let mut pieces = Vec::new();
        while let Some(p) = rx.recv().await {
            pieces.push(p);
        }
        (task.await.unwrap(), pieces, stats)
    }

    fn check_ffmpeg_pieces(dir: &Path, pieces: &[CutPiece], secs: usize) {
        let keys: Vec<&CutPiece> = pieces.iter().filter(|p| p.keyframe).collect();
        assert_eq!(keys.len(), secs, "one keyframe piece per second");
        assert!(pieces[0].keyframe);
        assert!(
            (2 * secs - 1..=2 * secs + 1).contains(&pieces.len()),
            "{} pieces",
            pieces.len()
        );
        for p in pieces {
            assert!(
                (400_000..=600_000).contains(&p.duration_us),
                "piece of {} µs",
                p.duration_us
            );
            assert!(p.pts_us.is_some() && p.pcr_us.is_some());
        }
        for (i, k) in keys.iter().enumerate() {
            let f = dir.join(format!("key{i}.ts"));
            std::fs::write(&f, &k.payload).unwrap();
            assert_eq!(decode_errors(&f), "", "keyframe piece {i} decodes alone");
            assert!(
                video_frames(&f) >= 1,
                "keyframe piece {i} has a video frame"
            );
        }
        let all = dir.join("all.ts");
        let joined: Vec<u8> = pieces
            .iter()
            .flat_map(|p| p.payload.iter().copied())
            .collect();
        std::fs::write(&all, joined).unwrap();
        assert_eq!(decode_errors(&all), "", "the concatenation decodes");
        assert!(video_frames(&all) >= 25 * secs as u64 - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn file_pieces_decode_alone_and_together() {
        let dir = tempfile::tempdir().unwrap();
        let src = make_ts(dir.path(), 6);
        let (res, pieces, stats) = collect(Input::File {
            path: src.clone(),
            looped: false,
        })
        .await;
        res.unwrap();
        check_ffmpeg_pieces(dir.path(), &pieces, 6);
        let s = stats.snapshot();
        assert_eq!(s.bytes_in, std::fs::metadata(&src).unwrap().len());
        assert_eq!(s.pieces, pieces.len() as u64);
        assert_eq!(s.keyframes, 6);
        assert_eq!(s.resyncs, 0);
        assert!(
            (1_500_000..4_000_000).contains(&s.bitrate_bps),
            "{} bit/s",
            s.bitrate_bps
        );
    }

    #[tokio::test]
    async fn a_file_is_paced_in_real_time() {
        let dir = tempfile::tempdir().unwrap();
        let src = make_ts(dir.path(), 3);
        let started = std::time::Instant::now();
        let (res, pieces, _) = collect(Input::File {
            path: src,
            looped: false,
        })
        .await;
        res.unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(2500), "took {took:?}");
        assert!(took < Duration::from_secs(6), "took {took:?}");
        assert_eq!(pieces.iter().filter(|p| p.keyframe).count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_looped_file_marks_discontinuities_and_keeps_the_clock_monotonic() {
        let dir = tempfile::tempdir().unwrap();
        let src = make_ts(dir.path(), 2);
        let (tx, mut rx) = mpsc::channel(8);
        let stats = Arc::new(IngestStats::default());
        let input = Input::File {
            path: src,
            looped: true,
        };
        let task = tokio::spawn(run(input, CutterConfig::default(), tx, stats.clone()));
        let t0 = Instant::now();
        let mut arrivals = Vec::new();
        let mut pieces = Vec::new();
        while pieces.len() < 12 {
            pieces.push(rx.recv().await.unwrap());
            arrivals.push(t0.elapsed());
        }
        drop(rx);
        task.await.unwrap().unwrap();
        assert!(stats.loops() >= 2);
        let disc: Vec<usize> = (0..pieces.len())
            .filter(|&i| pieces[i].discontinuity)
            .collect();
        assert_eq!(disc, [4, 8]);
        assert!(disc.iter().all(|&i| pieces[i].keyframe));
        // Paced on one clock across passes: 12 half-second pieces take about 6 s.
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
        let last = arrivals[11];
        assert!(
            last >= Duration::from_millis(5800) && last <= Duration::from_millis(6300),
            "{last:?}"
        );
    }

    #[tokio::test]
    async fn udp_input() {
        let dir = tempfile::tempdir().unwrap();
        let src = std::fs::read(make_ts(dir.path(), 6)).unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let input: Input = format!("udp://{addr}").parse().unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let stats = Arc::new(IngestStats::default());
        let task = tokio::spawn(run(input, CutterConfig::default(), tx, stats.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (i, dgram) in src.chunks(1316).enumerate() {
            sender.send_to(dgram, addr).await.unwrap();
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        // UDP never ends: the last piece stays open; the others are complete.
        let mut pieces = Vec::new();
        while pieces.len() < 10 {
            let p = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("pieces from UDP")
                .unwrap();
            pieces.push(p);
        }
        drop(rx);
        task.await.unwrap().unwrap();
        assert!(pieces[0].keyframe);
        assert!(pieces.iter().filter(|p| p.keyframe).count() >= 5);
        assert_eq!(stats.snapshot().resyncs, 0, "no datagram lost on loopback");
    }

    #[tokio::test]
    async fn http_input_matches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_ts(dir.path(), 6);
        let body = std::fs::read(&path).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_body = body.clone();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                server_body.len()
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            for part in server_body.chunks(50_000) {
                conn.write_all(part).await.unwrap();
            }
            conn.shutdown().await.unwrap();
        });
        let input: Input = format!("http://{addr}/live.ts").parse().unwrap();
        let (res, pieces, _) = collect(input).await;
        res.unwrap();
        server.await.unwrap();
        let mut cutter = Cutter::new(CutterConfig::default());
        cutter.push(&body).unwrap();
        let mut expected = Vec::new();
        while let Some(p) = cutter.pop() {
            expected.push(p);
        }
        while let Some(p) = cutter.flush() {
            expected.push(p);
        }
        assert_eq!(pieces, expected);
        check_ffmpeg_pieces(dir.path(), &pieces, 6);
    }

    /// ffmpeg 5.1 writes PAT+PMT right before every keyframe, so the copy path (PAT/PMT not
    /// adjacent) is forced here by deleting those packets: the inserted verbatim copies must
    /// decode alone and cause no continuity complaint in the concatenation.
    #[test]
    fn inserted_psi_copies_decode_without_continuity_errors() {
        let dir = tempfile::tempdir().unwrap();
        let src = std::fs::read(make_ts(dir.path(), 3)).unwrap();
        let pid = |p: &[u8]| (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        let pkts: Vec<&[u8]> = src.chunks(188).collect();
        let mut stripped = Vec::new();
        let mut removed = 0;
        for (i, p) in pkts.iter().enumerate() {
            let before_key = |j: usize| {
                pkts.get(j).is_some_and(|k| {
                    pid(k) == 0x100 && k[1] & 0x40 != 0 && k[3] & 0x20 != 0 && k[5] & 0x40 != 0
                })
            };
            let psi = pid(p) == 0 || pid(p) == 0x1000;
            if i > 2 && psi && (before_key(i + 1) || before_key(i + 2)) {
                removed += 1;
                continue;
            }
            stripped.extend_from_slice(p);
        }
        assert_eq!(removed, 4, "PAT+PMT before the keyframes at 1 s and 2 s");
        // Renumber the PSI continuity counters so that the stripping itself leaves no gap.
        let mut cc = [0u8; 2];
        for p in stripped.chunks_mut(188) {
            let slot = match pid(p) {
                0 => 0,
                0x1000 => 1,
                _ => continue,
            };
            p[3] = (p[3] & 0xF0) | cc[slot];
            cc[slot] = (cc[slot] + 1) & 0x0F;
        }
        let mut cutter = Cutter::new(CutterConfig::default());
        cutter.push(&stripped).unwrap();
        let mut pieces = Vec::new();
        while let Some(p) = cutter.pop() {
            pieces.push(p);
        }
        while let Some(p) = cutter.flush() {
            pieces.push(p);
        }
        let total: usize = pieces.iter().map(|p| p.payload.len()).sum();
        // The stream's first packet (an SDT before the first PAT) is dropped.
        let dropped = cutter.stats().dropped_bytes as usize;
        assert_eq!(dropped, 188);
        assert_eq!(
            total + dropped,
            stripped.len() + 4 * 188,
            "two PAT+PMT copies inserted"
        );
        check_ffmpeg_pieces(dir.path(), &pieces, 3);
        let all = dir.path().join("all.ts");
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "debug", "-i"])
            .arg(&all)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!log.contains("Continuity check failed"), "{log}");
    }

    #[tokio::test]
    async fn garbage_is_not_ts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.ts");
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(7919) % 71) as u8)
            .collect();
        std::fs::write(&path, data).unwrap();
        let (res, pieces, _) = collect(Input::File { path, looped: true }).await;
        let err = res.unwrap_err();
        assert!(matches!(err, IngestError::NotTs { .. }), "{err}");
        assert!(err
            .to_string()
            .ends_with("input is not MPEG-TS: no 0x47 sync in the first 64 KiB"));
        assert!(pieces.is_empty());
        // A short garbage file is refused at its end too.
        let short = dir.path().join("short.ts");
        std::fs::write(&short, b"hello, not a transport stream").unwrap();
        let (res, _, _) = collect(Input::File {
            path: short,
            looped: false,
        })
        .await;
        assert!(matches!(res, Err(IngestError::NotTs { .. })));
    }

    #[tokio::test]
    async fn missing_file_names_the_path() {
        let (res, _, _) = collect(Input::File {
            path: PathBuf::from("/nonexistent/x.ts"),
            looped: false,
        })
        .await;
        let err = res.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.ts"), "{err}");
    }

    #[test]
    fn parses_inputs() {
        assert_eq!("-".parse::<Input>().unwrap(), Input::Stdin);
        assert_eq!(
            "udp://239.1.2.3:5000".parse::<Input>().unwrap(),
            Input::Udp("239.1.2.3:5000".parse().unwrap())
        );
        assert_eq!(
            "udp://@239.1.2.3:5000".parse::<Input>().unwrap(),
            Input::Udp("239.1.2.3:5000".parse().unwrap())
        );
        assert_eq!(
            "UDP://[::1]:5000".parse::<Input>().unwrap(),
            Input::Udp("[::1]:5000".parse().unwrap())
        );
        assert!("udp://example.com:5000".parse::<Input>().is_err());
        assert!(matches!(
            "https://cdn.example/live.ts".parse::<Input>().unwrap(),
            Input::Http(u) if u.host_str() == Some("cdn.example")
        ));
        assert_eq!(
            "movie.ts".parse::<Input>().unwrap(),
            Input::File {
                path: PathBuf::from("movie.ts"),
                looped: false
            }
        );
        assert!("".parse::<Input>().is_err());
    }
}
