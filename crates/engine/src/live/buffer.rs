//! The window of one live stream in memory: verified pieces (signed header + payload) by index,
//! shared by the swarm actor (which fills it from peers), the source (which fills it from the
//! ingest), the CDN fallback and publisher, and the HTTP outputs (which read it).
//!
//! Bounded: pieces older than the window are dropped on insert and when the live edge moves.
//! The window is core's rule ([`peercdn_core::live::window::Window`], the one the swarm uses):
//! the last `pieces()` indices up to the edge, and the last `span_us()` of source time before
//! the newest held piece. A jump of the edge (a viewer back from a pause) empties what is
//! behind the new window at once. Readers wait on a `watch` channel that changes on every insert — no polling.
//! Player positions are registered here ([`LiveBuffer::reader`]) so the swarm and the CDN
//! fallback know which pieces are needed first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use peercdn_core::live::window::Window;
use peercdn_core::live::{Descriptor, PieceHeader};
use peercdn_core::InfoHash;
use tokio::sync::watch;

use crate::ingest::IngestStats;

/// Where a piece in the buffer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Made here (we are the source).
    Own,
    /// Downloaded from peers.
    Peer,
    /// Downloaded from a CDN / HTTP server.
    Cdn,
}

/// One verified piece.
#[derive(Clone, Debug)]
pub struct LivePiece {
    /// Its signed header (already verified).
    pub header: PieceHeader,
    /// Its payload (hash already checked).
    pub payload: Bytes,
    /// Where it came from.
    pub origin: Origin,
}

/// Insert events remembered for [`LiveBuffer::inserted_since`].
const EVENT_LOG: usize = 4096;
/// Player positions tracked per stream.
pub const MAX_READERS: usize = 256;

/// Byte counters by origin.
#[derive(Debug, Default)]
pub struct OriginBytes {
    /// Bytes of pieces made here.
    pub own: AtomicU64,
    /// Bytes of pieces from peers.
    pub peer: AtomicU64,
    /// Bytes of pieces from the CDN.
    pub cdn: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    pieces: BTreeMap<u32, LivePiece>,
    bytes: u64,
    /// Newest index anyone told us exists (the live edge), even if not held yet.
    edge: Option<u32>,
    /// (sequence number, index) of recent inserts.
    events: VecDeque<(u64, u32)>,
    seq: u64,
    readers: BTreeMap<u64, Option<u32>>,
    next_reader: u64,
}

/// The shared window of one live stream.
#[derive(Debug)]
pub struct LiveBuffer {
    descriptor: Descriptor,
    content_id: InfoHash,
    window: Window,
    ring: Mutex<Ring>,
    changed: watch::Sender<u64>,
    /// Bumped when a player registers, leaves or moves (see [`LiveBuffer::subscribe_players`]).
    players: watch::Sender<u64>,
    /// Bytes inserted, by origin.
    pub bytes_in: OriginBytes,
    /// On the source: its ingest's counters, for the API ([`LiveBuffer::set_ingest`]).
    ingest: OnceLock<Arc<IngestStats>>,
}

impl LiveBuffer {
    /// Attaches the ingest that feeds this window (on the source), so the API can show its
    /// health. The first call wins.
    pub fn set_ingest(&self, stats: Arc<IngestStats>) {
        let _ = self.ingest.set(stats);
    }

    /// The ingest's counters, on the source.
    pub fn ingest(&self) -> Option<&Arc<IngestStats>> {
        self.ingest.get()
    }

    /// An empty window for this stream.
    pub fn new(descriptor: Descriptor) -> Arc<LiveBuffer> {
        let window = Window::new(&descriptor.params);
        Arc::new(LiveBuffer {
            content_id: descriptor.content_id(),
            descriptor,
            window,
            ring: Mutex::new(Ring::default()),
            changed: watch::channel(0).0,
            players: watch::channel(0).0,
            bytes_in: OriginBytes::default(),
            ingest: OnceLock::new(),
        })
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The content ID.
    pub fn content_id(&self) -> InfoHash {
        self.content_id
    }

    /// Adds a verified piece (the caller has checked its signature and payload). Returns false
    /// when it is already held or too old for the window. Drops what falls out of the window.
    pub fn insert(&self, piece: LivePiece) -> bool {
        let index = piece.header.index;
        let len = piece.payload.len() as u64;
        let origin = piece.origin;
        {
            let mut r = self.ring();
            if r.pieces.contains_key(&index) || self.too_old(&r, &piece.header) {
                return false;
            }
            r.bytes += len;
            r.pieces.insert(index, piece);
            r.edge = Some(r.edge.map_or(index, |e| e.max(index)));
            self.trim(&mut r);
            r.seq += 1;
            let seq = r.seq;
            r.events.push_back((seq, index));
            if r.events.len() > EVENT_LOG {
                r.events.pop_front();
            }
        }
        let counter = match origin {
            Origin::Own => &self.bytes_in.own,
            Origin::Peer => &self.bytes_in.peer,
            Origin::Cdn => &self.bytes_in.cdn,
        };
        counter.fetch_add(len, Ordering::Relaxed);
        self.changed.send_modify(|v| *v += 1);
        true
    }

    /// Outside the window: before the first index of the edge's window, or expired by the
    /// newest held piece's timestamp.
    fn too_old(&self, r: &Ring, h: &PieceHeader) -> bool {
        r.edge.is_some_and(|e| self.window.before(h.index, e))
            || r.pieces.last_key_value().is_some_and(|(_, newest)| {
                self.window
                    .expired(h.timestamp_us, newest.header.timestamp_us)
            })
    }

    fn trim(&self, r: &mut Ring) {
        while let Some((_, p)) = r.pieces.first_key_value() {
            let too_many = r.pieces.len() > self.window.pieces() as usize;
            if !(too_many || self.too_old(r, &p.header)) {
                break;
            }
            let len = p.payload.len() as u64;
            let first = p.header.index;
            r.bytes -= len;
            r.pieces.remove(&first);
        }
    }

    /// A held piece.
    pub fn get(&self, index: u32) -> Option<LivePiece> {
        self.ring().pieces.get(&index).cloned()
    }

    /// True when the piece is held.
    pub fn has(&self, index: u32) -> bool {
        self.ring().pieces.contains_key(&index)
    }

    /// Oldest and newest held index.
    pub fn range(&self) -> Option<(u32, u32)> {
        let r = self.ring();
        Some((
            *r.pieces.first_key_value()?.0,
            *r.pieces.last_key_value()?.0,
        ))
    }

    /// Pieces held, and their payload bytes.
    pub fn held(&self) -> (usize, u64) {
        let r = self.ring();
        (r.pieces.len(), r.bytes)
    }

    /// Headers of held pieces from `from` on, at most `max`.
    pub fn headers(&self, from: u32, max: usize) -> Vec<PieceHeader> {
        self.ring()
            .pieces
            .range(from..)
            .take(max)
            .map(|(_, p)| p.header)
            .collect()
    }

    /// The newest keyframe piece at or before `index`.
    pub fn keyframe_at_or_before(&self, index: u32) -> Option<u32> {
        self.ring()
            .pieces
            .range(..=index)
            .rev()
            .find(|(_, p)| p.header.is_keyframe())
            .map(|(&i, _)| i)
    }

    /// The newest keyframe piece made at or before source time `timestamp_us`; the oldest
    /// keyframe piece held when every one is newer.
    pub fn keyframe_at_time(&self, timestamp_us: u64) -> Option<u32> {
        let r = self.ring();
        let mut keys = r.pieces.iter().filter(|(_, p)| p.header.is_keyframe());
        let first = keys.next().map(|(&i, _)| i)?;
        Some(
            r.pieces
                .iter()
                .rev()
                .find(|(_, p)| p.header.is_keyframe() && p.header.timestamp_us <= timestamp_us)
                .map_or(first, |(&i, _)| i),
        )
    }

    /// The first keyframe piece after `index`.
    pub fn keyframe_after(&self, index: u32) -> Option<u32> {
        self.ring()
            .pieces
            .range(index.saturating_add(1)..)
            .find(|(_, p)| p.header.is_keyframe())
            .map(|(&i, _)| i)
    }

    /// The live edge: the newest index known to exist (held or announced by a peer).
    pub fn edge(&self) -> Option<u32> {
        self.ring().edge
    }

    /// The oldest index of the window (by the live edge): pieces before it are gone for
    /// everyone, a player waiting for one must jump.
    pub fn first(&self) -> Option<u32> {
        Some(self.window.first(self.ring().edge?))
    }

    /// Records that a piece exists (a verified announcement), moving the live edge and
    /// dropping what falls out of its window.
    pub fn note_exists(&self, index: u32) {
        let moved = {
            let mut r = self.ring();
            let new = r.edge.map_or(index, |e| e.max(index));
            let moved = r.edge != Some(new);
            r.edge = Some(new);
            if moved {
                self.trim(&mut r);
            }
            moved
        };
        if moved {
            self.changed.send_modify(|v| *v += 1);
        }
    }

    /// Indices inserted after sequence number `seq`, and the newest sequence number. If more
    /// than the log holds happened since, the oldest are missing from the list: callers that
    /// must not miss any compare with [`LiveBuffer::range`].
    pub fn inserted_since(&self, seq: u64) -> (Vec<u32>, u64) {
        let r = self.ring();
        let list = r
            .events
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|&(_, i)| i)
            .collect();
        (list, r.seq)
    }

    /// A receiver that changes on every insert or edge move.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A receiver that changes when a player registers, leaves or moves to another piece (the
    /// CDN fallback wakes on it; the pieces' own receiver, [`LiveBuffer::subscribe`], does not
    /// fire for players).
    pub fn subscribe_players(&self) -> watch::Receiver<u64> {
        self.players.subscribe()
    }

    fn players_changed(&self) {
        self.players.send_modify(|v| *v += 1);
    }

    /// Registers a player; `None` when [`MAX_READERS`] are already registered.
    pub fn reader(self: &Arc<Self>) -> Option<ReaderGuard> {
        let id = {
            let mut r = self.ring();
            if r.readers.len() >= MAX_READERS {
                return None;
            }
            r.next_reader += 1;
            let id = r.next_reader;
            r.readers.insert(id, None);
            id
        };
        self.players_changed();
        Some(ReaderGuard {
            buffer: self.clone(),
            id,
        })
    }

    /// The lowest index a registered player waits for (`None`: no player, or none positioned).
    pub fn playhead(&self) -> Option<u32> {
        self.ring().readers.values().flatten().min().copied()
    }

    /// How many players are registered.
    pub fn readers(&self) -> usize {
        self.ring().readers.len()
    }

    /// How far behind the source this node's players are at `now_us`, milliseconds: for each
    /// positioned player, now less the source time of the last piece it was given (the one
    /// before the piece it waits for); the nearest to the edge counts — an HLS session stays
    /// registered for a while after its player left, at the position it left. `None` without
    /// a positioned player.
    pub fn players_delay_ms(&self, now_us: u64) -> Option<u64> {
        let r = self.ring();
        r.readers
            .values()
            .flatten()
            .filter_map(|&next| {
                let played = r
                    .pieces
                    .get(&next.saturating_sub(1))
                    .or_else(|| r.pieces.get(&next))?;
                Some(now_us.saturating_sub(played.header.timestamp_us) / 1000)
            })
            .min()
    }
}

/// A registered player; tells the buffer which piece it needs next. Dropping it unregisters.
#[derive(Debug)]
pub struct ReaderGuard {
    buffer: Arc<LiveBuffer>,
    id: u64,
}

impl ReaderGuard {
    /// The player needs `index` next.
    pub fn set_position(&self, index: u32) {
        let moved = match self.buffer.ring().readers.get_mut(&self.id) {
            Some(p) => p.replace(index) != Some(index),
            None => false,
        };
        if moved {
            self.buffer.players_changed();
        }
    }
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.buffer.ring().readers.remove(&self.id);
        self.buffer.players_changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use peercdn_core::live::{LiveParams, FLAG_KEYFRAME};

    fn setup() -> (Arc<LiveBuffer>, SigningKey) {
        setup_window(2)
    }

    /// A buffer of 500 ms pieces with a window of `window_s` seconds.
    fn setup_window(window_s: u32) -> (Arc<LiveBuffer>, SigningKey) {
        let key = SigningKey::from_bytes(&[3; 32]);
        let params = LiveParams {
            name: "t".into(),
            pubkey: key.verifying_key().to_bytes(),
            piece_duration_ms: 500,
            max_piece_length: 1 << 20,
            window_s,
        };
        (
            LiveBuffer::new(Descriptor::new(params, vec![], vec![])),
            key,
        )
    }

    fn piece(b: &LiveBuffer, key: &SigningKey, index: u32, ts_s: u64) -> LivePiece {
        let payload = Bytes::from(vec![index as u8; 188]);
        let flags = if index.is_multiple_of(2) {
            FLAG_KEYFRAME
        } else {
            0
        };
        let header = PieceHeader::sign(
            key,
            &b.content_id(),
            index,
            ts_s * 1_000_000,
            500_000,
            flags,
            &payload,
        );
        LivePiece {
            header,
            payload,
            origin: Origin::Peer,
        }
    }

    #[test]
    fn keeps_the_window_and_finds_keyframes() {
        let (b, key) = setup();
        for i in 0..10 {
            assert!(b.insert(piece(&b, &key, i, u64::from(i) / 2)));
        }
        assert!(!b.insert(piece(&b, &key, 9, 4)), "duplicate");
        // Window 2 s: timestamps 4 (pieces 8, 9) keep 2.. (pieces 4..).
        let (first, last) = b.range().unwrap();
        assert_eq!(last, 9);
        assert!(first >= 4, "first {first}");
        assert!(!b.insert(piece(&b, &key, 0, 0)), "too old");
        assert_eq!(b.keyframe_at_or_before(9), Some(8));
        assert_eq!(b.keyframe_after(8), None);
        assert_eq!(b.keyframe_after(5), Some(6));
        assert_eq!(b.edge(), Some(9));
        let (ev, seq) = b.inserted_since(8);
        assert_eq!((ev, seq), (vec![8, 9], 10));
        assert_eq!(b.bytes_in.peer.load(Ordering::Relaxed), 10 * 188);
    }

    /// The buffer and the swarm follow one window rule: when a viewer back from a pause learns
    /// of an edge far ahead, what is behind the new window goes at once, and older pieces are
    /// refused (before, the buffer kept its own copy of the rule, by the newest held piece
    /// only, and kept the stale window until new pieces pushed it out).
    #[test]
    fn an_edge_jump_drops_what_left_the_window() {
        let (b, key) = setup();
        for i in 0..4 {
            assert!(b.insert(piece(&b, &key, i, 0)));
        }
        let w = Window::new(&b.descriptor().params);
        let edge = 1000;
        b.note_exists(edge);
        assert_eq!(b.range(), None, "everything held left the window");
        assert_eq!(b.first(), Some(w.first(edge)));
        assert!(!b.insert(piece(&b, &key, 5, 0)), "older than the window");
        assert!(b.insert(piece(&b, &key, edge - 2, 100)));
        assert_eq!(b.held(), (1, 188));
    }

    #[test]
    fn readers_set_the_playhead() {
        let (b, _) = setup();
        let r1 = b.reader().unwrap();
        let r2 = b.reader().unwrap();
        assert_eq!(b.playhead(), None);
        r1.set_position(7);
        r2.set_position(5);
        assert_eq!(b.playhead(), Some(5));
        drop(r2);
        assert_eq!(b.playhead(), Some(7));
        assert_eq!(b.readers(), 1);
    }

    /// The players' delay behind the source (what receipts carry): the last piece each player
    /// was given against the clock, the player nearest the edge counting.
    #[test]
    fn the_players_delay_is_the_nearest_players() {
        let (b, key) = setup_window(60);
        let now = crate::live::now_us();
        let base = now / 1_000_000 - 20;
        for i in 0..10 {
            b.insert(piece(&b, &key, i, base + u64::from(i)));
        }
        assert_eq!(b.players_delay_ms(now), None);
        let behind = b.reader().unwrap();
        behind.set_position(3); // was given piece 2: 18 s old
        let d = b.players_delay_ms(now).unwrap();
        assert!((18_000..19_000).contains(&d), "{d}");
        let near = b.reader().unwrap();
        near.set_position(9); // was given piece 8: 12 s old
        let d = b.players_delay_ms(now).unwrap();
        assert!((12_000..13_000).contains(&d), "{d}");
        drop(near);
        drop(behind);
        assert_eq!(b.players_delay_ms(now), None);
    }
}
