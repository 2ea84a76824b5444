//! The CDN side of a live stream (DESIGN §3, "CDN layout"): the [`Publisher`] that mirrors a
//! [`LiveBuffer`](crate::live::LiveBuffer) into a directory any HTTP server can serve, and the fallback client
//! ([`fetch_descriptor`], [`CdnClient`], [`spawn_fallback`]) that fetches pieces from such a
//! server when no peer can deliver them in time.
//!
//! Layout under a base URL `BASE` (or the publish directory), `ID` the content ID in lower-case
//! hex and `INDEX` in decimal:
//!
//! ```text
//! BASE/ID/descriptor.peerlive   the .peerlive file
//! BASE/ID/live.m3u8             HLS playlist: keyframe segments, the newest pieces as parts
//! BASE/ID/seg/FIRST-LAST.ts     a segment: pieces FIRST..=LAST joined (starts at a keyframe)
//! BASE/ID/seg/INDEX.ts          piece payload (whole TS packets)
//! BASE/ID/seg/INDEX.hdr         the 117-byte signed piece header
//! ```
//!
//! Publisher invariants: every file appears by `rename` of a finished temporary file, so a
//! server never serves half a file; a piece's payload is renamed into place before its header,
//! and both (and a segment's file) before the playlist lists it; files leave the playlist before they are deleted; the
//! directory holds a bounded number of segments.
//!
//! Fallback invariants: nothing a CDN sends is trusted. Headers are verified against the
//! stream's key and content ID exactly like headers from peers, payloads against the header's
//! length and hash, and every body is read into a buffer capped by what we expect, so a server
//! that sends more can never make us hold more. A CDN that serves a forged piece is refused and
//! counted. The fallback fetches only what a registered player needs next and no peer delivered
//! before its deadline; the bytes it fetches are counted per base host and as
//! [`Origin::Cdn`](crate::live::Origin::Cdn) in the buffer.
//!
//! Files: `publish.rs` (the [`Publisher`]), `client.rs` (HTTP fetching and verifying of
//! descriptor, playlist, headers and segments: [`CdnClient`], [`fetch_descriptor`]) and
//! `fallback.rs` (the task that runs core's `live::fallback::FallbackPolicy` over a
//! [`CdnClient`]: the policy decides what to fetch and when, the task fetches and verifies).
//! Playlist text comes from core's `live::llhls` (one segmenter for this playlist and the HTTP
//! API's; this one is rendered for a static server: no blocking reload, no preload hint).
//!
//! Architecture invariant: this module knows nothing of the swarm or of HTTP serving; it talks
//! to the rest of the engine only through the [`LiveBuffer`](crate::live::LiveBuffer).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use peercdn_core::live::LiveError;

mod client;
mod fallback;
mod publish;

pub use client::{fetch_descriptor, CdnClient, CdnStats};
pub use fallback::{spawn_fallback, Fallback, FallbackConfig};
pub use publish::{
    spawn_publisher, spawn_publisher_with, Publisher, PublisherConfig, PublisherStats,
};

/// File name of the descriptor inside `ID/`.
pub const DESCRIPTOR_FILE: &str = "descriptor.peerlive";
/// File name of the HLS playlist inside `ID/`.
pub const PLAYLIST_FILE: &str = "live.m3u8";
/// Largest descriptor we download.
pub const MAX_DESCRIPTOR_BYTES: usize = 1 << 20;
/// Largest playlist we download.
pub const MAX_PLAYLIST_BYTES: usize = 256 << 10;
/// Most base URLs one client uses.
pub const MAX_BASES: usize = 16;
/// Default timeout of one HTTP request (connect, headers and body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong publishing to or fetching from a CDN.
#[derive(Debug, thiserror::Error)]
pub enum CdnError {
    /// A file operation in the publish directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A URL that is not an absolute http(s) URL.
    #[error("bad CDN URL {0:?}: need an absolute http or https URL")]
    BadUrl(String),
    /// No usable base URL was given.
    #[error("no CDN base URL")]
    NoBase,
    /// The server answered with a non-success status.
    #[error("{url} answered HTTP {status}")]
    Http {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than we accept for this kind of file.
    #[error("{url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The request took longer than the timeout.
    #[error("{0} timed out")]
    Timeout(String),
    /// Connection or protocol failure.
    #[error("{url}: {msg}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What the HTTP client said.
        msg: String,
    },
    /// The descriptor could not be parsed.
    #[error("descriptor from {url}: {source}")]
    Descriptor {
        /// The URL it came from.
        url: String,
        /// Why it was refused.
        source: LiveError,
    },
    /// A header or payload failed verification (bad signature, length or hash).
    #[error("refused piece from {url}: {source}")]
    Verify {
        /// The URL it came from.
        url: String,
        /// Why it was refused.
        source: LiveError,
    },
    /// A correctly signed header for another index than the one asked for (a replay).
    #[error("{url} served the header of piece {got}, expected {expected}")]
    WrongIndex {
        /// The URL requested.
        url: String,
        /// Index asked for.
        expected: u32,
        /// Index in the signed header.
        got: u32,
    },
    /// The header declares a payload larger than the descriptor allows.
    #[error("piece {0} declares a payload larger than the stream's max piece length")]
    PieceTooLarge(u32),
    /// The playlist has no segments or cannot be read.
    #[error("playlist {0}: no segments")]
    EmptyPlaylist(String),
    /// The background task stopped.
    #[error("background task failed: {0}")]
    Task(String),
}

impl CdnError {
    /// True when the error says the CDN served forged or altered data.
    pub fn is_verification(&self) -> bool {
        matches!(self, CdnError::Verify { .. } | CdnError::WrongIndex { .. })
    }
}
