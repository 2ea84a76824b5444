//! The live window rule: which pieces of a stream are current, shared by the swarm
//! ([`super::swarm::LiveSwarm`]: `first()`, pruning, header acceptance) and the engine's
//! `LiveBuffer` (what it keeps and refuses), so the two cannot drift apart.
//!
//! The window is the last [`Window::pieces`] indices up to the live edge (the newest index
//! known from a validly signed header), and the last [`Window::span_us`] of source time.
//!
//! Header acceptance ([`Window::judge`]) separates what only a liar can produce from what an
//! honest peer produces after a pause (a laptop lid, SIGSTOP): headers buffered in sockets
//! (old timestamps), pieces a resumed viewer still announces (older than our window), and
//! headers far beyond our own stale edge. Those are *ignored* or move the window; only bad
//! signatures, conflicting signed headers and malformed headers ban (the swarm checks those).
//!
//! Bounds: the edge moves past `edge + pieces` only for a header whose signed timestamp is
//! recent by our wall clock and at most [`FUTURE_SLACK_US`] (or one window span) ahead of it,
//! and only by as many pieces as the source time since our edge allows
//! ([`Window::max_jump`]); the caller keeps only what is within the window of the new edge.
//!
//! Pure arithmetic: no clock (the wall clock is an input), no I/O, no state.

use super::LiveParams;

/// Tolerated clock skew: a header timestamped this far ahead of our wall clock (or one window
/// span, when longer) may still move the edge past its ordinary reach.
pub const FUTURE_SLACK_US: u64 = 30_000_000;

/// What to do with a validly signed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Within reach of the edge: verify it and use it.
    Use,
    /// Far beyond the edge but consistent with the source's clock and ours (we were paused,
    /// or joined late): verify it, then move the edge (the window jumps).
    Jump,
    /// Older than the window, or timestamped too long ago: pieces nobody keeps any longer.
    /// Ignored (an honest peer sends these after a pause).
    Old,
    /// Beyond what the time since our edge allows, or timestamped in the future: ignored
    /// (only the key holder signs headers, so this is no proof against the peer relaying it).
    Implausible,
}

/// The window of one stream. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pieces: u32,
    span_us: u64,
    piece_us: u64,
}

impl Window {
    /// The window of a stream with these parameters.
    pub fn new(params: &LiveParams) -> Window {
        Window {
            pieces: params.window_pieces(),
            span_us: u64::from(params.window_s.max(1)) * 1_000_000,
            piece_us: u64::from(params.piece_duration_ms.max(1)) * 1000,
        }
    }

    /// Most pieces in the window (with room for short pieces cut at keyframes).
    pub fn pieces(&self) -> u32 {
        self.pieces
    }

    /// The window's length in source time, microseconds.
    pub fn span_us(&self) -> u64 {
        self.span_us
    }

    /// The oldest index of the window whose newest index is `edge`.
    pub fn first(&self, edge: u32) -> u32 {
        edge.saturating_sub(self.pieces - 1)
    }

    /// True when `index` is older than the window of `edge`.
    pub fn before(&self, index: u32, edge: u32) -> bool {
        index < self.first(edge)
    }

    /// True when a piece timestamped `ts_us` left the window of a piece timestamped
    /// `newest_us` (source time).
    pub fn expired(&self, ts_us: u64, newest_us: u64) -> bool {
        ts_us.saturating_add(self.span_us) < newest_us
    }

    /// True when a header timestamped `ts_us` is too old to be of use by our wall clock
    /// (`wall_us`, µs since the epoch; 0 = unknown): twice the window, so a source whose
    /// clock runs a little behind ours is not cut off.
    pub fn stale(&self, ts_us: u64, wall_us: u64) -> bool {
        wall_us != 0 && ts_us.saturating_add(2 * self.span_us) < wall_us
    }

    /// How far beyond `edge` (timestamped `edge_us`) a header timestamped `ts_us` may be: one
    /// window, plus two pieces per piece duration of source time between them (pieces cut
    /// early at keyframes are shorter than the nominal duration).
    pub fn max_jump(&self, edge_us: u64, ts_us: u64) -> u32 {
        let pieces = ts_us.saturating_sub(edge_us) / self.piece_us * 2;
        self.pieces
            .saturating_add(u32::try_from(pieces).unwrap_or(u32::MAX))
    }

    /// Where a player should resume fetching: its position while within the window of
    /// `edge`, else `None` (it fell out of the window: start near the edge like a new player).
    pub fn resume(&self, position: u32, edge: u32) -> Option<u32> {
        (!self.before(position, edge)).then_some(position)
    }

    /// Judges a header (`index`, `ts_us`) against our edge (`Some((index, timestamp))`, or
    /// `None` before the first header) and our wall clock (`wall_us`; 0 = unknown).
    pub fn judge(
        &self,
        index: u32,
        ts_us: u64,
        edge: Option<(u32, u64)>,
        wall_us: u64,
    ) -> Judgement {
        if self.stale(ts_us, wall_us) {
            return Judgement::Old;
        }
        let Some((edge, edge_us)) = edge else {
            return Judgement::Use;
        };
        if self.before(index, edge) {
            return Judgement::Old;
        }
        if index <= edge.saturating_add(self.pieces) {
            return Judgement::Use;
        }
        let slack = FUTURE_SLACK_US.max(self.span_us);
        let future = wall_us == 0 || ts_us > wall_us.saturating_add(slack);
        if future || index - edge > self.max_jump(edge_us, ts_us) {
            return Judgement::Implausible;
        }
        Judgement::Jump
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        // 250 ms pieces, 2 s: 2 × (4 + 1) × 2 = 20 pieces.
        Window::new(&LiveParams {
            name: "t".into(),
            pubkey: [0; 32],
            piece_duration_ms: 250,
            max_piece_length: 1 << 20,
            window_s: 2,
        })
    }

    #[test]
    fn first_and_expiry() {
        let w = window();
        assert_eq!(w.pieces(), 20);
        assert_eq!(w.first(5), 0);
        assert_eq!(w.first(100), 81);
        assert!(w.before(80, 100) && !w.before(81, 100));
        assert!(w.expired(0, 2_000_001) && !w.expired(0, 2_000_000));
        assert_eq!(w.resume(80, 100), None);
        assert_eq!(w.resume(90, 100), Some(90));
    }

    #[test]
    fn judges_headers_after_a_pause() {
        let w = window();
        let wall = 1_000_000_000_000;
        let edge = Some((100, wall - 20_000_000));
        // Buffered during a 20 s pause: old by our wall clock.
        assert_eq!(w.judge(101, wall - 19_000_000, edge, wall), Judgement::Old);
        // What a resumed peer still announces: before our window.
        assert_eq!(w.judge(50, wall, edge, wall), Judgement::Old);
        // Near the edge, fresh.
        assert_eq!(w.judge(110, wall, edge, wall), Judgement::Use);
        // The stream moved 80 pieces in 20 s: the window jumps.
        assert_eq!(w.judge(180, wall, edge, wall), Judgement::Jump);
        // Further than 20 s of pieces allow, or stamped far in the future: ignored.
        assert_eq!(w.judge(100_000, wall, edge, wall), Judgement::Implausible);
        assert_eq!(
            w.judge(180, wall + 3_600_000_000, edge, wall),
            Judgement::Implausible
        );
        // Without a wall clock nothing jumps.
        assert_eq!(w.judge(180, wall, edge, 0), Judgement::Implausible);
        // Before any header, anything recent is used.
        assert_eq!(w.judge(7, wall, None, wall), Judgement::Use);
    }
}
