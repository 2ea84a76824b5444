//! A torrent's file as blocking `Read + Seek`, for the container demuxers VoD HLS remuxes
//! with ([`crate::vod_mp4`], [`crate::vod_mkv`]): those crates read synchronously, so they run
//! in a blocking thread and each read waits there for its piece.
//!
//! Demuxers take some read errors for the end of the file (the `matroska-demuxer` crate ends
//! its frames on any I/O error), so a failed read is also kept in a [`Failure`] cell that the
//! caller checks after the demuxer returns: a piece that never came is an error, not a short
//! segment.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peercdn_engine::stream::{FileReader, MAX_READ};

use crate::error::ApiError;

/// Longest a read of the file waits for its piece.
const READ_WAIT: Duration = Duration::from_secs(60);

/// What a demuxer reads: any blocking `Read + Seek` (a torrent's file, or bytes in memory
/// for tests and fuzzing).
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// The first read error of a [`BlockingFile`], shared with whoever drives the demuxer.
#[derive(Debug, Clone, Default)]
pub struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    /// The error, if a read failed.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, e: &io::Error) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| e.to_string());
    }
}

/// A torrent file as `Read + Seek`: reads wait (blocking the thread) for their pieces; seeks
/// tell the reader where the player is, so those pieces come first.
pub struct BlockingFile {
    reader: FileReader,
    pos: u64,
    len: u64,
    rt: tokio::runtime::Handle,
    failure: Failure,
}

impl BlockingFile {
    /// `reader` of a file of `len` bytes; call from inside the runtime (a blocking thread
    /// of it reads).
    pub fn new(reader: FileReader, len: u64) -> (BlockingFile, Failure) {
        let failure = Failure::default();
        let f = BlockingFile {
            reader,
            pos: 0,
            len,
            rt: tokio::runtime::Handle::current(),
            failure: failure.clone(),
        };
        (f, failure)
    }
}

impl Read for BlockingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(MAX_READ);
        let read = self.rt.block_on(tokio::time::timeout(
            READ_WAIT,
            self.reader.read_at(self.pos, want),
        ));
        let bytes = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let e = io::Error::other(e);
                self.failure.set(&e);
                return Err(e);
            }
            Err(_) => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "the piece did not arrive");
                self.failure.set(&e);
                return Err(e);
            }
        };
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlockingFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        self.reader.seek_hint(self.pos);
        Ok(self.pos)
    }
}

/// A reader that fails once it has read `bytes` or made `seeks` seeks (asking where it is
/// does not count): what a container parser may do on one request, so that a file whose boxes
/// or elements lie about their sizes is refused instead of read whole, or forever (the `mp4`
/// crate loops on a zero-sized box inside `stbl`). Its [`Allowance`] is refilled per request
/// by whoever holds a handle to it (the parser owns the reader).
#[derive(Debug)]
pub struct Budget<R> {
    inner: R,
    left: Allowance,
}

/// What a [`Budget`] reader may still read and seek; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Allowance(Arc<(AtomicU64, AtomicU32)>);

impl Allowance {
    /// A new allowance (for the next request).
    pub fn refill(&self, bytes: u64, seeks: u32) {
        self.0 .0.store(bytes, Ordering::Relaxed);
        self.0 .1.store(seeks, Ordering::Relaxed);
    }
}

impl<R> Budget<R> {
    /// `inner`, limited to `bytes` and `seeks` until refilled.
    pub fn new(inner: R, bytes: u64, seeks: u32) -> Budget<R> {
        let left = Allowance::default();
        left.refill(bytes, seeks);
        Budget { inner, left }
    }

    /// A handle to refill the allowance with.
    pub fn allowance(&self) -> Allowance {
        self.left.clone()
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let bytes = self.left.0 .0.load(Ordering::Relaxed);
        if bytes == 0 && !buf.is_empty() {
            return Err(io::Error::other(
                "read over the limit: the file's sizes are not believable",
            ));
        }
        let want = buf.len().min(usize::try_from(bytes).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left.0 .0.fetch_sub(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for Budget<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        if !matches!(to, SeekFrom::Current(0)) {
            let seeks = &self.left.0 .1;
            if seeks.load(Ordering::Relaxed) == 0 {
                return Err(io::Error::other(
                    "too many seeks: the file's structure loops",
                ));
            }
            seeks.fetch_sub(1, Ordering::Relaxed);
        }
        self.inner.seek(to)
    }
}

/// Runs a third-party container parser's work, turning a panic of it into a 400 that says the
/// file is malformed. The `mp4` crate divides by zero and indexes out of bounds on tables a
/// file can fill with anything; the segment's request fails, not the engine (and the
/// parser's state behind a lock stays usable: its users recover poisoned locks).
pub fn contain<T>(what: &str, work: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ApiError::bad_request(format!(
            "this {what} is malformed (its parser failed: {why})"
        )))
    })
}
