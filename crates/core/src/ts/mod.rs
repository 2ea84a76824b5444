//! # MPEG-TS reader, live piece cutter and VoD keyframe finder
//!
//! Owns everything the live source needs to know about MPEG transport streams: packet sync
//! (188-byte packets starting with `0x47`, resynchronised after garbage), the PAT → PMT walk
//! (sections spanning packets, CRC-32 checked, bad ones ignored), random access point detection
//! on the video PID (adaptation field `random_access_indicator`, H.264 IDR/SPS, H.265 IRAP/VPS,
//! MPEG-2 sequence headers), PTS/DTS/PCR extraction, and the [`Cutter`] that turns the stream into
//! live pieces of whole packets.
//!
//! It never touches a file, a socket or the clock: bytes go in through [`Cutter::push`], pieces
//! come out through [`Cutter::pop`]. Pacing a file in real time is the engine's job
//! (`peercdn_engine::ingest`), using the timestamps this module puts on each [`CutPiece`].
//!
//! Cutting rules:
//! - a new piece starts at every video random access point (`keyframe`); such a piece begins
//!   with a PAT and a PMT, so it decodes on its own: when PAT and PMT packets immediately precede
//!   the keyframe packet they move into the new piece, otherwise copies of the latest PAT and PMT
//!   packets are inserted, with the adaptation field's `discontinuity_indicator` set (the copy
//!   keeps the original's continuity counter; the flag tells decoders — ffmpeg included — not to
//!   check it, and the next original continues the PID's sequence);
//! - a new piece also starts at the first video PES start once the current piece spans
//!   `piece_duration_us`, at a packet boundary when no video PES start comes within a grace
//!   period (measured on the PCR), and at `max_piece_len`;
//! - a piece is emitted only once complete (the next one has started, or at
//!   [`Cutter::flush`] / [`Cutter::mark_discontinuity`]);
//! - everything before the first PAT, PMT and keyframe is dropped (and counted): a stream, and
//!   every segment after a discontinuity, starts with a keyframe piece.
//!
//! Bounds: the cutter holds at most one piece (`max_piece_len` plus a few packets), the
//! unconsumed input of the last `push`, one PSI section per table and a few stored PSI packets.
//! A stream without a video PID is cut on the PCR only, its first piece starting at a PAT.
//!
//! Calling rule: after every [`Cutter::push`], drain [`Cutter::pop`] until it returns `None`.
//!
//! Layout (each file owns one layer and its tests):
//! - `packet.rs`: packet sync and the fixed header with its adaptation field
//!   (PID, random access indicator, PCR);
//! - `pes.rs`: PES headers, 33-bit PTS/DTS/PCR unwrapping, the bit-rate meter;
//! - `psi.rs`: PAT/PMT section reassembly, CRC-32/MPEG-2, the stream's PIDs and
//!   the marked PSI copies that start keyframe pieces;
//! - `keyframe.rs`: random access detection in H.264, H.265 and MPEG-2 video;
//! - `cutter.rs`: the [`Cutter`] that applies the rules above;
//! - `vod.rs`: a TS *file* for VoD HLS: its head, its last timestamp, its keyframes;
//! - `mux.rs`: the [`TsMuxer`] that writes H.264 and AAC samples (of an MP4) as TS.

mod cutter;
mod keyframe;
mod mux;
mod packet;
mod pes;
mod psi;
#[cfg(test)]
mod testmux;
mod vod;

pub use cutter::{CutPiece, Cutter, CutterConfig, TsStats};
pub use mux::{AacConfig, AvcConfig, TsMuxer};
pub use psi::{crc32_mpeg2, StreamInfo};
pub use vod::{last_pts, KeyframeFinder, TsHead};

/// Length of one transport stream packet.
pub const PACKET_LEN: usize = 188;
/// The byte every transport stream packet starts with.
pub const SYNC_BYTE: u8 = 0x47;
/// How much input may show no packet sync before it is refused as not MPEG-TS.
pub const SYNC_SEARCH_LIMIT: usize = 64 * 1024;
/// Default piece duration: half a second.
pub const DEFAULT_PIECE_DURATION_US: u32 = 500_000;
/// Default maximum piece length: the largest multiple of 188 not above 2 MiB.
pub const DEFAULT_MAX_PIECE_LEN: usize = (2 * 1024 * 1024 / PACKET_LEN) * PACKET_LEN;

/// Errors of the transport stream reader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// The first 64 KiB never showed three packets in sync.
    #[error("input is not MPEG-TS: no 0x47 sync in the first 64 KiB")]
    NotTs,
}
