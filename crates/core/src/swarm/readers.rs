//! Stream readers and the streaming priority ladder (VoD playback).
//!
//! [`Readers`] owns what the swarm knows of the players reading a torrent: where each reader
//! is, how far ahead it wants pieces, and since when it has waited at its piece (web seeds use
//! that for deadline rescue, see [`super::webseed`]). From these it computes the priority
//! ladder: the piece at a reader and the next one get [`picker::TOP`], then 6, 5, 4 and 3 further
//! out ([`ladder`]); pieces no reader needs any more return to [`picker::NORMAL`].
//!
//! It owns no I/O and reads no clock (every input carries `now`); it must not touch peers or
//! requests: the [`Swarm`](super::Swarm) applies the priorities and cancels stale requests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::picker::{self, Picker};

/// Stream readers tracked per torrent (one more is ignored until one goes).
pub const MAX_READERS: usize = 256;

/// Requests for pieces below this priority are cancelled on a seek.
pub const SEEK_CANCEL_BELOW: u8 = 3;

/// One stream reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    /// The piece the reader is at.
    pub piece: u32,
    /// Last piece of the reader's file.
    pub last: u32,
    /// Pieces wanted from `piece` on.
    pub readahead: u32,
    /// When the reader last reported its position (the start of its wait).
    pub since: Instant,
}

/// The priority of the piece `k` pieces after a reader's position.
pub fn ladder(k: u32) -> u8 {
    match k {
        0 | 1 => picker::TOP,
        2..=3 => 6,
        4..=7 => 5,
        8..=15 => 4,
        _ => 3,
    }
}

/// The readers of one torrent and the pieces their ladder raised. Bounded: [`MAX_READERS`]
/// readers, and the boosted set holds at most the sum of their readaheads (capped by the
/// number of pieces).
#[derive(Debug, Default)]
pub struct Readers {
    readers: BTreeMap<u64, Reader>,
    boosted: HashSet<u32>,
}

impl Readers {
    /// Reader `id` is at `piece`; returns whether this is a seek (a new reader, a move back,
    /// or a jump past its readahead). A new reader beyond [`MAX_READERS`] is not tracked.
    pub fn set(&mut self, id: u64, piece: u32, last: u32, readahead: u32, now: Instant) -> bool {
        let seek = match self.readers.get(&id) {
            Some(r) => piece < r.piece || piece > r.piece.saturating_add(r.readahead),
            None => true,
        };
        if self.readers.len() < MAX_READERS || self.readers.contains_key(&id) {
            self.readers.insert(
                id,
                Reader {
                    piece,
                    last,
                    readahead,
                    since: now,
                },
            );
        }
        seek
    }

    /// Reader `id` closed; returns whether it was tracked.
    pub fn remove(&mut self, id: u64) -> bool {
        self.readers.remove(&id).is_some()
    }

    /// The readers, by ID.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Reader)> {
        self.readers.iter()
    }

    /// Sets the ladder's priorities in `pk`: raises the pieces ahead of every reader (the
    /// highest wins where readers overlap) and returns the pieces no reader needs any more to
    /// normal (skipped pieces stay skipped).
    pub fn apply(&mut self, pk: &mut Picker) {
        let mut want: HashMap<u32, u8> = HashMap::new();
        for r in self.readers.values() {
            for k in 0..r.readahead {
                let Some(p) = r.piece.checked_add(k) else {
                    break;
                };
                if p > r.last {
                    break;
                }
                let e = want.entry(p).or_insert(ladder(k));
                *e = (*e).max(ladder(k));
            }
        }
        for p in self.boosted.drain() {
            if !want.contains_key(&p) && pk.priority(p) != picker::SKIP {
                pk.set_priority(p, picker::NORMAL);
            }
        }
        for (&p, &prio) in &want {
            pk.set_priority(p, prio);
            self.boosted.insert(p);
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;

    fn picker(n: u32) -> Picker {
        Picker::new(n, 16_384, u64::from(n) * 16_384, 1)
    }

    #[test]
    fn ladder_ahead_of_a_reader() {
        let now = Instant::now();
        let mut r = Readers::default();
        let mut pk = picker(40);
        assert!(r.set(1, 10, 39, 20, now));
        r.apply(&mut pk);
        let got: Vec<u8> = (9..31).map(|p| pk.priority(p)).collect();
        let mut want = vec![picker::NORMAL];
        want.extend([7, 7, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 3]);
        want.push(picker::NORMAL);
        assert_eq!(got, want);
    }

    #[test]
    fn ladder_stops_at_the_file_end_and_overlaps_take_the_highest() {
        let now = Instant::now();
        let mut r = Readers::default();
        let mut pk = picker(40);
        r.set(1, 10, 12, 20, now);
        r.set(2, 8, 39, 4, now);
        r.apply(&mut pk);
        assert_eq!(pk.priority(13), picker::NORMAL, "past reader 1's file");
        assert_eq!(pk.priority(10), 7, "reader 1's piece beats reader 2's 6");
        assert_eq!(pk.priority(8), 7);
    }

    #[test]
    fn seeks_and_released_pieces() {
        let now = Instant::now();
        let mut r = Readers::default();
        let mut pk = picker(100);
        r.set(1, 10, 99, 8, now);
        assert!(
            !r.set(1, 12, 99, 8, now),
            "moving forward within the readahead"
        );
        assert!(r.set(1, 11, 99, 8, now), "moving back");
        assert!(r.set(1, 50, 99, 8, now), "jumping far ahead");
        r.apply(&mut pk);
        assert_eq!(pk.priority(50), 7);
        assert!(r.remove(1));
        assert!(!r.remove(1));
        r.apply(&mut pk);
        assert_eq!(
            pk.priority(50),
            picker::NORMAL,
            "no reader needs it any more"
        );
    }

    #[test]
    fn readers_are_bounded() {
        let now = Instant::now();
        let mut r = Readers::default();
        for id in 0..MAX_READERS as u64 + 10 {
            r.set(id, 0, 9, 1, now);
        }
        assert_eq!(r.iter().count(), MAX_READERS);
    }
}
