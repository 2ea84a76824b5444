//! HLS of a torrent's MP4 file (part of [`crate::vod_hls`]): its H.264 video and AAC audio
//! samples remuxed, segment by segment, into MPEG-TS by core's [`TsMuxer`].
//!
//! The MP4's sample tables (read with the `mp4` crate through a blocking reader of the
//! torrent's file, which waits for the pieces it needs — the `moov` box may be at the end)
//! give exact segments: a new one at the first video sync sample [`SEGMENT_SECONDS`] after
//! the previous one's start, its duration from the table. A segment's samples are read and
//! muxed when it is asked for (timestamps kept, so segments follow each other), each segment
//! starting with PAT, PMT and a keyframe. Only H.264 video (with optional AAC audio) is
//! remuxed: other codecs get a 400 that says so.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::Mutex;

use axum::http::StatusCode;
use peercdn_core::ts::{AacConfig, AvcConfig, TsMuxer};
use peercdn_engine::stream::{FileInfo, FileReader, MAX_READ};

use crate::error::ApiError;
use crate::media_file::{contain, Allowance, BlockingFile, Budget, Failure, ReadSeek};
use crate::vod_hls::SEGMENT_SECONDS;

/// Added to every timestamp (90 kHz), so that B-frame reordering never goes below zero.
pub(crate) const TS_OFFSET: u64 = 126_000;

type Reader = mp4::Mp4Reader<Budget<BufReader<Box<dyn ReadSeek>>>>;

/// Most bytes reading the header, or one segment's samples, may read, and most seeks either
/// may make ([`Budget`]).
const READ_BUDGET: u64 = 96 << 20;
const READ_SEEKS: u32 = 100_000;
/// Largest sample read: the `mp4` crate allocates what the sample table says before reading.
const MAX_SAMPLE: u32 = 16 << 20;
/// Most samples a track may list (about 55 hours of 50 fps video): the tables are walked.
const MAX_SAMPLES: u64 = 10_000_000;

/// Refuses a track whose sample table lists too many samples to walk.
fn check_walkable(sample_counts: impl Iterator<Item = u32>) -> Result<(), ApiError> {
    let n: u64 = sample_counts.map(u64::from).sum();
    if n > MAX_SAMPLES {
        return Err(bad(format!(
            "this MP4 lists {n} samples in one track: not remuxed"
        )));
    }
    Ok(())
}

/// Reads sample `id` of `track`, refusing one the table says is over [`MAX_SAMPLE`].
fn read_sample(r: &mut Reader, track: u32, id: u32) -> Result<Option<mp4::Mp4Sample>, ApiError> {
    let failed = |e: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("reading the MP4 failed: {e}"),
        )
    };
    let stsz = &r
        .tracks()
        .get(&track)
        .ok_or_else(|| failed("no such track".into()))?
        .trak
        .mdia
        .minf
        .stbl
        .stsz;
    let len = match stsz.sample_size {
        0 => stsz.sample_sizes.get(id as usize - 1).copied().unwrap_or(0),
        n => n,
    };
    if len > MAX_SAMPLE {
        return Err(failed(format!("a sample of {len} bytes is over the limit")));
    }
    r.read_sample(track, id).map_err(|e| failed(e.to_string()))
}

/// A track the muxer carries: its ID and timescale.
#[derive(Debug, Clone, Copy)]
struct Track {
    id: u32,
    timescale: u64,
}

/// How one MP4 file is cut into segments, and the open reader its segments are read with.
pub struct Mp4Plan {
    reader: Mutex<Reader>,
    allowance: Allowance,
    video: Track,
    avc: AvcConfig,
    audio: Option<(Track, AacConfig)>,
    /// Segment starts: (first video sample, 1-based; its time in the video timescale), and
    /// one more entry for the end.
    bounds: Vec<(u32, u64)>,
}

impl std::fmt::Debug for Mp4Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp4Plan")
            .field("video", &self.video)
            .field("segments", &self.count())
            .finish()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

impl Mp4Plan {
    /// Reads the MP4's header (in a blocking thread; waits for its pieces) and plans the
    /// segments. `Ok(None)`: not an MP4.
    pub async fn make(reader: FileReader, file: &FileInfo) -> Result<Option<Mp4Plan>, ApiError> {
        let len = file.length;
        let (f, failure) = BlockingFile::new(reader, len);
        tokio::task::spawn_blocking(move || Self::read(Box::new(f), len, failure))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    }

    /// Reads the header of the MP4 `f` (`len` bytes; blocking) and plans the segments.
    /// `Ok(None)`: not an MP4. `failure`: where `f` notes a failed read.
    pub fn read(
        f: Box<dyn ReadSeek>,
        len: u64,
        failure: Failure,
    ) -> Result<Option<Mp4Plan>, ApiError> {
        contain("MP4", || Self::read_inner(f, len, failure))
    }

    fn read_inner(
        mut f: Box<dyn ReadSeek>,
        len: u64,
        failure: Failure,
    ) -> Result<Option<Mp4Plan>, ApiError> {
        let mut head = [0u8; 8];
        if f.read_exact(&mut head).is_err() || &head[4..8] != b"ftyp" {
            return Ok(None);
        }
        f.seek(SeekFrom::Start(0)).map_err(|e| bad(e.to_string()))?;
        let input = Budget::new(
            BufReader::with_capacity(MAX_READ, f),
            READ_BUDGET,
            READ_SEEKS,
        );
        let allowance = input.allowance();
        let r = mp4::Mp4Reader::read_header(input, len).map_err(|e| match failure.get() {
            Some(io) => ApiError::new(StatusCode::BAD_GATEWAY, io),
            None => bad(format!("this MP4 could not be read: {e}")),
        })?;
        Self::plan(r, allowance).map(Some)
    }

    fn plan(r: Reader, allowance: Allowance) -> Result<Mp4Plan, ApiError> {
        let mut video = None;
        let mut audio = None;
        let mut ids: Vec<u32> = r.tracks().keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let t = &r.tracks()[&id];
            let stsd = &t.trak.mdia.minf.stbl.stsd;
            let track = Track {
                id,
                timescale: u64::from(t.timescale().max(1)),
            };
            if let (None, Some(avc1)) = (&video, &stsd.avc1) {
                let (Some(sps), Some(pps)) = (
                    avc1.avcc.sequence_parameter_sets.first(),
                    avc1.avcc.picture_parameter_sets.first(),
                ) else {
                    continue;
                };
                video = Some((
                    track,
                    AvcConfig {
                        sps: sps.bytes.clone(),
                        pps: pps.bytes.clone(),
                        length_size: usize::from(avc1.avcc.length_size_minus_one & 3) + 1,
                    },
                ));
            } else if let (None, Some(esds)) =
                (&audio, stsd.mp4a.as_ref().and_then(|a| a.esds.as_ref()))
            {
                let d = &esds.es_desc.dec_config.dec_specific;
                audio = Some((
                    track,
                    AacConfig {
                        object_type: d.profile,
                        freq_index: d.freq_index,
                        channels: d.chan_conf,
                    },
                ));
            }
        }
        let (video, avc) = video.ok_or_else(|| {
            bad("HLS of an MP4 needs H.264 video (other codecs are not remuxed): play it with /ace/getstream")
        })?;
        for t in r.tracks().values() {
            check_walkable(
                t.trak
                    .mdia
                    .minf
                    .stbl
                    .stts
                    .entries
                    .iter()
                    .map(|e| e.sample_count),
            )?;
        }
        let stbl = &r.tracks()[&video.id].trak.mdia.minf.stbl;
        let min_gap = (SEGMENT_SECONDS * video.timescale as f64) as u64;
        let sync = stbl.stss.as_ref().map(|s| &s.entries);
        let mut bounds = vec![(1u32, 0u64)];
        let (mut sample, mut time) = (1u32, 0u64);
        let mut next_sync = 0usize;
        for e in &stbl.stts.entries {
            for _ in 0..e.sample_count {
                let is_sync = match sync {
                    None => true,
                    Some(list) => {
                        while list.get(next_sync).is_some_and(|&s| s < sample) {
                            next_sync += 1;
                        }
                        list.get(next_sync) == Some(&sample)
                    }
                };
                let last = bounds[bounds.len() - 1].1;
                if is_sync && sample > 1 && time - last >= min_gap {
                    bounds.push((sample, time));
                }
                sample += 1;
                time += u64::from(e.sample_delta);
            }
        }
        bounds.push((sample, time));
        Ok(Mp4Plan {
            reader: Mutex::new(r),
            allowance,
            video,
            avc,
            audio,
            bounds,
        })
    }

    /// Segments.
    pub fn count(&self) -> u64 {
        self.bounds.len().saturating_sub(1) as u64
    }

    /// Duration of segment `n`, seconds.
    pub fn seconds(&self, n: u64) -> f64 {
        let n = n as usize;
        match (self.bounds.get(n), self.bounds.get(n + 1)) {
            (Some(a), Some(b)) => (b.1 - a.1) as f64 / self.video.timescale as f64,
            _ => 0.0,
        }
    }

    /// Segment `n` as MPEG-TS (reads its samples; blocking: call from a blocking thread).
    pub fn segment(&self, n: u64) -> Result<Vec<u8>, ApiError> {
        contain("MP4", || self.segment_inner(n))
    }

    fn segment_inner(&self, n: u64) -> Result<Vec<u8>, ApiError> {
        let n = n as usize;
        let (Some(&(first, t0)), Some(&(end, t1))) = (self.bounds.get(n), self.bounds.get(n + 1))
        else {
            return Err(ApiError::not_found("no such segment"));
        };
        let mut r = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        self.allowance.refill(READ_BUDGET, READ_SEEKS);
        let mut mux = TsMuxer::segment(Some(self.avc.clone()), self.audio.map(|a| a.1), n as u64);
        let mut out = Vec::new();
        mux.psi(&mut out);
        let to90 = |t: u64, scale: u64| t * 90_000 / scale + TS_OFFSET;
        // Audio samples of [t0, t1) (in seconds), found on the audio track's own clock.
        let audio: Vec<u32> = match self.audio {
            Some((a, _)) => {
                let stts = &r.tracks()[&a.id].trak.mdia.minf.stbl.stts;
                let (from, to) = (
                    t0 as f64 / self.video.timescale as f64,
                    t1 as f64 / self.video.timescale as f64,
                );
                let mut ids = Vec::new();
                let (mut s, mut t) = (1u32, 0u64);
                'walk: for e in &stts.entries {
                    for _ in 0..e.sample_count {
                        let secs = t as f64 / a.timescale as f64;
                        if secs >= to {
                            break 'walk;
                        }
                        if secs >= from {
                            ids.push(s);
                        }
                        s += 1;
                        t += u64::from(e.sample_delta);
                    }
                }
                ids
            }
            None => Vec::new(),
        };
        let mut audio = audio.into_iter().peekable();
        for id in first..end {
            let Some(v) = read_sample(&mut r, self.video.id, id)? else {
                break;
            };
            let dts = to90(v.start_time, self.video.timescale);
            // Audio up to this video frame's decode time goes first.
            while let Some(&aid) = audio.peek() {
                let (a, _) = self.audio.expect("audio ids only with audio");
                let Some(s) = read_sample(&mut r, a.id, aid)? else {
                    audio.next();
                    continue;
                };
                let pts = to90(s.start_time, a.timescale);
                if pts > dts {
                    break;
                }
                mux.audio(pts, &s.bytes, &mut out);
                audio.next();
            }
            let pts = (dts as i64
                + i64::from(v.rendering_offset) * 90_000 / self.video.timescale as i64)
                .max(0) as u64;
            mux.video(pts, dts, v.is_sync, &v.bytes, &mut out);
        }
        for aid in audio {
            let (a, _) = self.audio.expect("audio ids only with audio");
            if let Some(s) = read_sample(&mut r, a.id, aid)? {
                mux.audio(to90(s.start_time, a.timescale), &s.bytes, &mut out);
            }
        }
        mux.finish(&mut out);
        Ok(out)
    }
}
