//! HLS of a torrent's Matroska (MKV) file (part of [`crate::vod_hls`]): its H.264 video and
//! AAC audio frames remuxed, segment by segment, into MPEG-TS by core's [`TsMuxer`].
//!
//! The `mkv-element` crate reads the file's header, its `Cues` index (usually at the end: the
//! plan waits for it) and, when a segment is asked for, whole clusters, through a blocking
//! reader of the torrent's file. (The `matroska-demuxer` crate was tried first: its seek
//! misplaces every cue that has a `CueRelativePosition`, which ffmpeg writes.) Unlike an MP4,
//! a Matroska file has no table of every frame, so segments are planned on time and cut on
//! keyframes when served, as MPEG-TS files are ([`crate::vod_hls`]):
//! - nominal boundary `k` is `first + k × `[`SEGMENT_SECONDS`] (the first video timestamp);
//!   the playlist gives the nominal durations, the last one ending at the file's `Duration`;
//! - cut `k` is the first video keyframe (in file order) whose timestamp is in `[t_k,
//!   t_k+1)`, or, when that span holds none (a GOP longer than a segment), the first video
//!   frame at or after `t_k`; segment `n` is the video frames from cut `n` up to cut `n + 1`
//!   and the audio frames timed between the two cuts, so consecutive segments hold every frame
//!   once;
//! - a segment is read from the last cluster known to start [`LOOKBACK`] or more before its
//!   boundary (the cues, and the clusters read so far, say where clusters are), so the frames
//!   around a cut are seen in the same order from both of its segments.
//!
//! Matroska stores presentation times only; decode times are rebuilt per segment (the sorted
//! presentation times, less the reorder delay measured on the file's first frames). Laced
//! audio frames share their block's time; each gets its own from the AAC frame length.
//! Only H.264 video (with optional AAC audio; other audio is left out) is remuxed, and tracks
//! with content encodings (compression, encryption) are refused: a 400 says so. What the
//! header parse may read and how large a cluster may be are bounded ([`HEADER_BUDGET`],
//! [`MAX_CLUSTER`]).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::Mutex;

use axum::http::StatusCode;
use mkv_element::io::blocking_impl::{ReadElement, ReadFrom};
use mkv_element::prelude::{Cluster, Element, Header, TrackEntry};
use mkv_element::view::MatroskaView;
use mkv_element::FrameData;
use peercdn_core::ts::{AacConfig, AvcConfig, TsMuxer};
use peercdn_engine::stream::{FileInfo, FileReader, MAX_READ};

use crate::error::ApiError;
use crate::media_file::{contain, BlockingFile, Budget, Failure, ReadSeek};
use crate::vod_hls::SEGMENT_SECONDS;
use crate::vod_mp4::TS_OFFSET;

/// How far before a boundary a segment's reading starts (seconds of media): more than any
/// interleaving or frame reordering of a sane file.
pub const LOOKBACK: f64 = 2.0;
/// Most bytes of frames one segment may gather (a segment of absurd bitrate is an error).
const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// Largest cluster read (a cluster is read whole).
pub const MAX_CLUSTER: u64 = 32 << 20;
/// Most bytes the header parse (EBML header, segment info, tracks, cues, attachments, tags)
/// or one segment may read, and most seeks either may make: a file that lies about its sizes
/// or loops its seek head is refused instead of read whole or forever.
pub const HEADER_BUDGET: u64 = 96 << 20;
const HEADER_SEEKS: u32 = 10_000;
/// Top-level elements stepped over between two clusters before giving up.
const MAX_SKIPS: u32 = 64;
/// Video frames looked at when measuring the reorder delay.
const DELAY_FRAMES: usize = 120;
/// Largest reorder delay believed (seconds); more is clamped.
const MAX_DELAY: f64 = 1.0;
/// The EBML magic every Matroska file starts with.
const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
/// Matroska track types.
const VIDEO: u64 = 1;
const AUDIO: u64 = 2;

type Input = Budget<BufReader<Box<dyn ReadSeek>>>;

/// How one Matroska file is cut into segments, and where its clusters are.
pub struct MkvPlan {
    reader: Mutex<Reader>,
    failure: Failure,
    video: u64,
    avc: AvcConfig,
    audio: Option<(u64, AacConfig)>,
    /// Nanoseconds per timestamp tick.
    scale: u64,
    /// The first video frame's timestamp (ticks).
    first: u64,
    /// Nominal segment length (ticks).
    seg: u64,
    /// Media duration from `first` (ticks).
    duration: u64,
    /// Decode delay (ticks): how far a frame's decode time may be before its presentation.
    delay: u64,
}

/// The open file and the clusters known in it.
struct Reader {
    input: Input,
    /// Cluster timestamp → file offset of the cluster, from the cues and from reading.
    clusters: BTreeMap<u64, u64>,
    first_cluster: u64,
}

impl Reader {
    /// The cluster at `pos` (stepping over other top-level elements), and where the next
    /// element starts; `None` at the end of the file.
    fn cluster(&mut self, mut pos: u64) -> Result<Option<(Cluster, u64)>, String> {
        for _ in 0..MAX_SKIPS {
            self.input
                .seek(SeekFrom::Start(pos))
                .map_err(|e| e.to_string())?;
            let header = match Header::read_from(&mut self.input) {
                Ok(h) => h,
                Err(mkv_element::Error::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(None)
                }
                Err(e) => return Err(e.to_string()),
            };
            let body = self.input.stream_position().map_err(|e| e.to_string())?;
            if header.size.is_unknown {
                return Err(
                    "a Matroska element of unknown size (a live recording) is not remuxed".into(),
                );
            }
            let next = body.saturating_add(*header.size);
            if header.id != Cluster::ID {
                pos = next;
                continue;
            }
            if *header.size > MAX_CLUSTER {
                return Err(format!(
                    "a cluster of {} bytes is over the limit",
                    *header.size
                ));
            }
            let c = Cluster::read_element(&header, &mut self.input).map_err(|e| e.to_string())?;
            self.clusters.entry(*c.timestamp).or_insert(pos);
            return Ok(Some((c, next)));
        }
        Err("too many elements between clusters".into())
    }

    /// The last known cluster at or before `ticks`.
    fn cluster_before(&self, ticks: u64) -> u64 {
        self.clusters
            .range(..=ticks)
            .next_back()
            .map_or(self.first_cluster, |(_, &p)| p)
            .max(self.first_cluster)
    }
}

impl std::fmt::Debug for MkvPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MkvPlan")
            .field("video", &self.video)
            .field("segments", &self.count())
            .finish()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// A frame as the segment gathering sees it: track, time (ticks), keyframe, data.
type Seen<'a> = (u64, u64, bool, &'a [u8]);

/// Calls `each` with every frame of `c` (laced frames one by one, audio ones at their own
/// times, `aac_ticks` apart), stopping when it returns false.
fn frames(
    c: &Cluster,
    aac_ticks: u64,
    mut each: impl FnMut(Seen<'_>) -> bool,
) -> Result<bool, String> {
    for f in c.frames() {
        let f = f.map_err(|e| e.to_string())?;
        let ts = u64::try_from(f.timestamp).unwrap_or(0);
        let go = match &f.data {
            FrameData::Single(d) => each((f.track_number, ts, f.is_keyframe, d)),
            FrameData::Multiple(ds) => ds
                .iter()
                .enumerate()
                .all(|(i, d)| each((f.track_number, ts + i as u64 * aac_ticks, f.is_keyframe, d))),
        };
        if !go {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One video frame of a segment being gathered.
struct Video {
    ts: u64,
    key: bool,
    data: Vec<u8>,
}

/// Where a cut is, as frames arrive in file order: the first keyframe in its span, else the
/// first frame at or after its boundary, final once a frame past the span is seen.
#[derive(Debug, Default, Clone, Copy)]
struct CutSearch {
    key: Option<usize>,
    first: Option<usize>,
    passed: bool,
}

impl CutSearch {
    /// Frame `i` (time `ts`, keyframe or not) for the span `[from, to)`.
    fn see(&mut self, i: usize, ts: u64, key: bool, from: u64, to: u64) {
        if self.key.is_some() {
            return;
        }
        if ts >= from && self.first.is_none() {
            self.first = Some(i);
        }
        if key && ts >= from && ts < to {
            self.key = Some(i);
        }
        if ts >= to {
            self.passed = true;
        }
    }

    fn done(&self) -> bool {
        self.key.is_some() || self.passed
    }

    fn at(&self) -> Option<usize> {
        self.key.or(self.first)
    }
}

impl MkvPlan {
    /// Reads the file's header (in a blocking thread; waits for its pieces) and plans the
    /// segments. `Ok(None)`: not a Matroska file.
    pub async fn make(reader: FileReader, file: &FileInfo) -> Result<Option<MkvPlan>, ApiError> {
        let (f, failure) = BlockingFile::new(reader, file.length);
        tokio::task::spawn_blocking(move || Self::read(Box::new(f), failure))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    }

    /// Reads the header of the Matroska file `f` (blocking) and plans the segments.
    /// `Ok(None)`: not a Matroska file. `failure`: where `f` notes a failed read.
    pub fn read(f: Box<dyn ReadSeek>, failure: Failure) -> Result<Option<MkvPlan>, ApiError> {
        contain("Matroska file", || Self::read_inner(f, failure))
    }

    fn read_inner(mut f: Box<dyn ReadSeek>, failure: Failure) -> Result<Option<MkvPlan>, ApiError> {
        let mut head = [0u8; 4];
        if f.read_exact(&mut head).is_err() || head != EBML_MAGIC {
            return Ok(None);
        }
        f.seek(SeekFrom::Start(0)).map_err(|e| bad(e.to_string()))?;
        let failed = |e: String| match failure.get() {
            Some(io) => ApiError::new(StatusCode::BAD_GATEWAY, io),
            None => bad(format!("this Matroska file could not be read: {e}")),
        };
        let mut input = Budget::new(
            BufReader::with_capacity(MAX_READ, f),
            HEADER_BUDGET,
            HEADER_SEEKS,
        );
        let view = MatroskaView::new(&mut input).map_err(|e| failed(e.to_string()))?;
        let Some(seg) = view.segments.into_iter().next() else {
            return Err(failed("no segment".into()));
        };
        let no_video = || {
            bad("HLS of a Matroska file needs H.264 video (other codecs are not remuxed): play it with /ace/getstream")
        };
        let tracks: &[TrackEntry] = seg.tracks.as_ref().map_or(&[], |t| &t.track_entry);
        let plain = |t: &TrackEntry| t.content_encodings.is_none();
        let (video, avc) = tracks
            .iter()
            .filter(|t| *t.track_type == VIDEO && plain(t))
            .find_map(|t| {
                let avc = (t.codec_id.0 == "V_MPEG4/ISO/AVC")
                    .then(|| AvcConfig::from_record(t.codec_private.as_ref()?))??;
                Some((*t.track_number, avc))
            })
            .ok_or_else(no_video)?;
        let audio = tracks
            .iter()
            .filter(|t| *t.track_type == AUDIO && t.codec_id.0 == "A_AAC" && plain(t))
            .find_map(|t| {
                Some((
                    *t.track_number,
                    AacConfig::from_asc(t.codec_private.as_ref()?)?,
                ))
            });
        let scale = (*seg.info.timestamp_scale).max(1);
        let duration = seg
            .info
            .duration
            .map(|d| *d)
            .filter(|d| d.is_finite() && *d > 0.0)
            .ok_or_else(|| {
                bad("this Matroska file states no duration, so its segments cannot be planned")
            })?;
        let mut clusters = BTreeMap::new();
        for p in seg.cues.iter().flat_map(|c| &c.cue_point) {
            for t in p
                .cue_track_positions
                .iter()
                .filter(|t| *t.cue_track == video)
            {
                let at = seg
                    .segment_data_position
                    .saturating_add(*t.cue_cluster_position);
                clusters.entry(*p.cue_time).or_insert(at);
            }
        }
        let mut reader = Reader {
            input,
            clusters,
            first_cluster: seg.first_cluster_position,
        };
        // The first video frames: the start time and the reorder delay.
        let mut pts = Vec::new();
        let mut pos = reader.first_cluster;
        while pts.len() < DELAY_FRAMES {
            let Some((c, next)) = reader.cluster(pos).map_err(&failed)? else {
                break;
            };
            frames(&c, 1, |(track, ts, _, _)| {
                if track == video {
                    pts.push(ts);
                }
                pts.len() < DELAY_FRAMES
            })
            .map_err(&failed)?;
            pos = next;
        }
        let first = *pts.first().ok_or_else(no_video)?;
        let mut sorted = pts.clone();
        sorted.sort_unstable();
        // Over the frames whose reordered neighbours were all seen.
        let measured = pts.len().saturating_sub(pts.len() / 4);
        let delay = (0..measured)
            .map(|i| sorted[i].saturating_sub(pts[i]))
            .max()
            .unwrap_or(0);
        let ticks = |secs: f64| (secs * 1e9 / scale as f64) as u64;
        let duration = duration as u64;
        let seg = ticks(SEGMENT_SECONDS).max(1);
        crate::vod_hls::check_count(duration.saturating_sub(first).max(1).div_ceil(seg))?;
        Ok(Some(MkvPlan {
            failure,
            video,
            avc,
            audio,
            scale,
            first,
            seg,
            duration: duration.saturating_sub(first).max(1),
            delay: delay.min(ticks(MAX_DELAY)),
            reader: Mutex::new(reader),
        }))
    }

    /// Segments.
    pub fn count(&self) -> u64 {
        self.duration.div_ceil(self.seg)
    }

    /// Nominal duration of segment `n`, seconds.
    pub fn seconds(&self, n: u64) -> f64 {
        let from = n.saturating_mul(self.seg).min(self.duration);
        let to = (n + 1).saturating_mul(self.seg).min(self.duration);
        (to - from) as f64 * self.scale as f64 / 1e9
    }

    /// Ticks to 90 kHz, offset so that decode times stay above zero.
    fn to90(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * u128::from(self.scale) * 9 / 100_000) as u64 + TS_OFFSET
    }

    /// Boundary `k` (ticks).
    fn boundary(&self, k: u64) -> u64 {
        self.first.saturating_add(k.saturating_mul(self.seg))
    }

    /// Segment `n` as MPEG-TS (reads its clusters; blocking: call from a blocking thread).
    pub fn segment(&self, n: u64) -> Result<Vec<u8>, ApiError> {
        contain("Matroska file", || self.segment_inner(n))
    }

    fn segment_inner(&self, n: u64) -> Result<Vec<u8>, ApiError> {
        if n >= self.count() {
            return Err(ApiError::not_found("no such segment"));
        }
        let failed = |e: String| {
            let msg = self
                .failure
                .get()
                .unwrap_or_else(|| format!("reading the Matroska file failed: {e}"));
            ApiError::new(StatusCode::BAD_GATEWAY, msg)
        };
        let last = n + 1 == self.count();
        let lookback = (LOOKBACK * 1e9 / self.scale as f64) as u64;
        let (t0, t1, t2) = (self.boundary(n), self.boundary(n + 1), self.boundary(n + 2));
        let aac_ticks = self.audio.map_or(1, |(_, a)| {
            (1024.0 / f64::from(a.sample_rate()) * 1e9 / self.scale as f64).max(1.0) as u64
        });
        let mut video: Vec<Video> = Vec::new();
        let mut audio: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut start = CutSearch::default();
        let mut end = CutSearch::default();
        let mut bytes = 0usize;
        // The latest audio and video times seen, for the stopping rule.
        let (mut audio_max, mut video_max) = (None::<u64>, 0u64);
        let mut r = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        r.input.allowance().refill(HEADER_BUDGET, HEADER_SEEKS);
        let mut pos = if n == 0 {
            r.first_cluster
        } else {
            r.cluster_before(t0.saturating_sub(lookback))
        };
        let mut done = false;
        while !done {
            let Some((c, next)) = r.cluster(pos).map_err(&failed)? else {
                break;
            };
            pos = next;
            frames(&c, aac_ticks, |(track, ts, key, data)| {
                if !last && end.done() {
                    let cut = end.at().map_or(u64::MAX, |i| video[i].ts);
                    let audio_done = self.audio.is_none() || audio_max.is_some_and(|a| a >= cut);
                    if audio_done || video_max >= cut.saturating_add(lookback) {
                        done = true;
                        return false;
                    }
                }
                if track == self.video {
                    video_max = video_max.max(ts);
                    if n > 0 && start.first.is_none() && ts < t0 {
                        return true; // before the first frame that could start this segment
                    }
                    let i = video.len();
                    if n == 0 && i == 0 {
                        start.key = Some(0);
                    } else {
                        start.see(i, ts, key, t0, t1);
                    }
                    if start.done() && start.at().is_some_and(|s| i > s) && !last {
                        end.see(i, ts, key, t1, t2);
                    }
                    bytes += data.len();
                    video.push(Video {
                        ts,
                        key,
                        data: data.to_vec(),
                    });
                } else if self.audio.is_some_and(|(t, _)| t == track) {
                    audio_max = Some(audio_max.map_or(ts, |a| a.max(ts)));
                    bytes += data.len();
                    audio.push((ts, data.to_vec()));
                }
                bytes <= MAX_SEGMENT_BYTES
            })
            .map_err(&failed)?;
            if bytes > MAX_SEGMENT_BYTES {
                return Err(bad(format!(
                    "segment {n} of this Matroska file is over {} MiB: not remuxed",
                    MAX_SEGMENT_BYTES >> 20
                )));
            }
        }
        drop(r);
        let s = start.at().unwrap_or(video.len());
        let e = if last {
            video.len()
        } else {
            end.at().unwrap_or(video.len()).max(s)
        };
        let a_from = if n == 0 {
            0
        } else {
            video.get(s).map_or(t0, |v| v.ts)
        };
        let a_to = if last {
            u64::MAX
        } else {
            video.get(e).map_or(u64::MAX, |v| v.ts)
        };
        Ok(self.mux(n, &video[s..e], audio, a_from, a_to))
    }

    /// Segment `n`'s frames as MPEG-TS: PAT and PMT, then video in file order with the audio timed in
    /// `[a_from, a_to)` before the video frame it precedes in decode order.
    fn mux(
        &self,
        n: u64,
        video: &[Video],
        audio: Vec<(u64, Vec<u8>)>,
        a_from: u64,
        a_to: u64,
    ) -> Vec<u8> {
        let mut mux = TsMuxer::segment(Some(self.avc.clone()), self.audio.map(|a| a.1), n);
        let mut out = Vec::with_capacity(
            video
                .iter()
                .map(|v| v.data.len() * 19 / 18 + 64)
                .sum::<usize>()
                + audio.iter().map(|a| a.1.len() + 64).sum::<usize>(),
        );
        mux.psi(&mut out);
        let mut order: Vec<u64> = video.iter().map(|v| v.ts).collect();
        order.sort_unstable();
        let mut audio = audio
            .into_iter()
            .filter(|(ts, _)| *ts >= a_from && *ts < a_to)
            .peekable();
        for (v, sorted) in video.iter().zip(order) {
            let pts = self.to90(v.ts);
            // TS_OFFSET (1.4 s) is above MAX_DELAY: the difference stays positive.
            let dts = (self.to90(sorted) + TS_OFFSET - self.to90(self.delay)).min(pts);
            while let Some((ts, data)) = audio.next_if(|(ts, _)| self.to90(*ts) <= dts) {
                mux.audio(self.to90(ts), &data, &mut out);
            }
            mux.video(pts, dts, v.key, &v.data, &mut out);
        }
        for (ts, data) in audio {
            mux.audio(self.to90(ts), &data, &mut out);
        }
        mux.finish(&mut out);
        out
    }
}
