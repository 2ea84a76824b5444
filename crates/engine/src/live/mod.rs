//! Live streams in the engine: the shared window ([`buffer`]), the swarm actor that fills it
//! from peers and serves it to them ([`actor`]), the source side that signs the pieces the
//! ingest cuts ([`LiveSource`]), and the handle the HTTP API and the CLI hold ([`LiveHandle`]).

use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use peercdn_core::live::swarm::LivePeerInfo;
use peercdn_core::live::{PieceHeader, FLAG_DISCONTINUITY, FLAG_KEYFRAME};
use peercdn_core::{DisconnectCounts, InfoHash};
use tokio::sync::watch;

pub mod actor;
pub mod buffer;
pub mod cdn;
pub mod player;

pub use buffer::{LiveBuffer, LivePiece, Origin, ReaderGuard};

/// Microseconds since the Unix epoch (piece timestamps): [`crate::clock::unix_us`].
pub fn now_us() -> u64 {
    crate::clock::unix_us()
}

/// A snapshot of one live stream for UIs and the API.
#[derive(Debug, Clone, Default)]
pub struct LiveStatus {
    /// Display name (from the descriptor), once known.
    pub name: Option<String>,
    /// True when this node is the stream's source.
    pub is_source: bool,
    /// Connected peers.
    pub peers: usize,
    /// Connected peers by how their bytes travel (plain, MSE obfuscated, RC4).
    pub wires: crate::peer::Wires,
    /// Payload bytes downloaded from peers.
    pub p2p_downloaded: u64,
    /// Payload bytes downloaded from the CDN.
    pub cdn_downloaded: u64,
    /// Payload bytes uploaded to peers.
    pub uploaded: u64,
    /// Bytes/s from peers and CDN.
    pub down_rate: u64,
    /// Bytes/s to peers.
    pub up_rate: u64,
    /// Payload bytes received that were not needed (duplicates after a re-request, cancelled
    /// blocks, failed checks).
    pub wasted: u64,
    /// Blocks we relayed before we held their piece whole (cut-through, live version 2).
    pub relayed_early: u64,
    /// Peers disconnected and banned for forged, altered, replayed or out-of-window pieces.
    pub banned: u64,
    /// Oldest and newest piece held.
    pub first: Option<u32>,
    /// Newest piece held.
    pub last: Option<u32>,
    /// Newest piece known to exist.
    pub edge: Option<u32>,
    /// Now minus the newest held piece's source timestamp, milliseconds.
    pub delay_ms: Option<u64>,
    /// Players reading this stream.
    pub readers: usize,
    /// Connections the swarm closed, by reason.
    pub disconnects: DisconnectCounts,
    /// The connected peers (for the API and the dashboard).
    pub peer_list: Vec<LivePeerInfo>,
    /// Pieces fetched from the CDN and verified.
    pub cdn_pieces: u64,
    /// CDN requests that failed (any reason, verification included).
    pub cdn_failures: u64,
    /// Milliseconds a player was attached to the stream on this node (what its receipts say).
    pub watched_ms: u64,
    /// Bytes from each CDN host that passed their checks (what its receipts say).
    pub cdn_verified: Vec<(String, u64)>,
}

/// The handle to a live stream in the session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveHandle {
    content_id: InfoHash,
    buffer: watch::Receiver<Option<Arc<LiveBuffer>>>,
    status: watch::Receiver<LiveStatus>,
}

impl LiveHandle {
    /// A handle over channels the stream's task updates.
    pub fn new(
        content_id: InfoHash,
        buffer: watch::Receiver<Option<Arc<LiveBuffer>>>,
        status: watch::Receiver<LiveStatus>,
    ) -> LiveHandle {
        LiveHandle {
            content_id,
            buffer,
            status,
        }
    }

    /// A handle over a buffer with no swarm behind it (tests, a CDN-only viewer): its status
    /// is computed from the buffer alone.
    pub fn detached(buffer: Arc<LiveBuffer>) -> LiveHandle {
        let id = buffer.content_id();
        let name = Some(buffer.descriptor().params.name.clone());
        LiveHandle {
            content_id: id,
            buffer: watch::channel(Some(buffer)).1,
            status: watch::channel(LiveStatus {
                name,
                ..LiveStatus::default()
            })
            .1,
        }
    }

    /// The content ID.
    pub fn content_id(&self) -> InfoHash {
        self.content_id
    }

    /// The window, once the descriptor is known.
    pub fn buffer(&self) -> Option<Arc<LiveBuffer>> {
        self.buffer.borrow().clone()
    }

    /// Waits until the descriptor is known (fetched from peers when joined by ID); `None` if
    /// the stream was removed first.
    pub async fn wait_ready(&self) -> Option<Arc<LiveBuffer>> {
        let mut rx = self.buffer.clone();
        let b = rx.wait_for(|b| b.is_some()).await.ok()?;
        b.clone()
    }

    /// A status snapshot, with the window figures filled from the buffer.
    pub fn status(&self) -> LiveStatus {
        let mut s = self.status.borrow().clone();
        if let Some(b) = self.buffer() {
            if s.name.is_none() {
                s.name = Some(b.descriptor().params.name.clone());
            }
            let range = b.range();
            s.first = range.map(|r| r.0);
            s.last = range.map(|r| r.1);
            s.edge = b.edge();
            s.delay_ms = range
                .and_then(|(_, last)| b.get(last))
                .map(|p| now_us().saturating_sub(p.header.timestamp_us) / 1000);
            s.readers = b.readers();
        }
        s
    }
}

/// What the ingest hands to the source: one cut piece.
#[derive(Debug, Clone)]
pub struct NewPiece {
    /// Whole TS packets.
    pub payload: Bytes,
    /// Starts at a keyframe (decodes on its own).
    pub keyframe: bool,
    /// The timeline is discontinuous before it.
    pub discontinuity: bool,
    /// Media duration, microseconds.
    pub duration_us: u32,
}

/// The source side of a stream: numbers, timestamps and signs new pieces and puts them in the
/// window (the swarm announces what appears there).
#[derive(Debug)]
pub struct LiveSource {
    key: SigningKey,
    buffer: Arc<LiveBuffer>,
    next_index: u32,
}

/// Why the source refused a piece.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The key does not match the descriptor's.
    #[error("the signing key is not the stream's key")]
    WrongKey,
    /// The piece is larger than the descriptor allows.
    #[error("piece of {0} bytes exceeds the stream's max piece length")]
    TooLarge(usize),
}

impl LiveSource {
    /// A source for `buffer`'s stream, signing with `key` (which must be the descriptor's).
    /// `first_index` continues a previous run's numbering (0 for a new stream).
    pub fn new(
        key: SigningKey,
        buffer: Arc<LiveBuffer>,
        first_index: u32,
    ) -> Result<LiveSource, SourceError> {
        if key.verifying_key().to_bytes() != buffer.descriptor().params.pubkey {
            return Err(SourceError::WrongKey);
        }
        Ok(LiveSource {
            key,
            buffer,
            next_index: first_index,
        })
    }

    /// Signs the piece and puts it in the window; returns its header.
    pub fn push(&mut self, piece: NewPiece) -> Result<PieceHeader, SourceError> {
        if piece.payload.len() as u64 > u64::from(self.buffer.descriptor().params.max_piece_length)
        {
            return Err(SourceError::TooLarge(piece.payload.len()));
        }
        let mut flags = 0;
        if piece.keyframe {
            flags |= FLAG_KEYFRAME;
        }
        if piece.discontinuity {
            flags |= FLAG_DISCONTINUITY;
        }
        let header = PieceHeader::sign(
            &self.key,
            &self.buffer.content_id(),
            self.next_index,
            now_us(),
            piece.duration_us,
            flags,
            &piece.payload,
        );
        self.next_index = self.next_index.wrapping_add(1);
        self.buffer.insert(LivePiece {
            header,
            payload: piece.payload,
            origin: Origin::Own,
        });
        Ok(header)
    }

    /// The index the next piece gets.
    pub fn next_index(&self) -> u32 {
        self.next_index
    }
}
