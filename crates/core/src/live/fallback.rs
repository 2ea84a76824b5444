//! The CDN fallback policy of a live viewer (DESIGN §3, "CDN layout"): which pieces to fetch from
//! the stream's HTTP mirror, and when. Sans-IO: it reads no clock and opens no connection; the
//! engine (`peercdn_engine::live::cdn`) executes its [`FallbackAction`]s, verifies what it
//! fetches, and reports back.
//!
//! Rules:
//! - it works only while a player is registered with the window (otherwise it forgets what it
//!   learned about timing and waits);
//! - a piece is fetched only when it is one of the [`PolicyConfig::lookahead`] pieces from the
//!   playhead on, is known to exist (at or before the live edge), is neither held nor in flight,
//!   and no peer delivered it within [`PolicyConfig::deadline`] of its becoming known;
//! - when no peer moved the edge or delivered payload for 1.5 piece durations ("stale": half a
//!   piece of slack, so it does not flap before every piece), every such piece is due at once,
//!   and the playlist is polled (at most once per [`PolicyConfig::poll_interval`]) to learn the
//!   edge: a viewer without peers plays from the CDN alone;
//! - when the window is empty and a player waits, it joins: the engine fetches the newest
//!   keyframe piece among the last [`PolicyConfig::join_headers`] the CDN lists;
//! - at most [`PolicyConfig::max_in_flight`] piece fetches, one poll and one join run at once;
//! - after a failure nothing new starts for a backoff that doubles from
//!   [`PolicyConfig::backoff_min`] up to [`PolicyConfig::backoff_max`]; a success resets it.
//!
//! Time contract: every input carries `now`; after every input drain
//! [`FallbackPolicy::poll_action`] until it returns `None`, then wake the policy with
//! [`FallbackPolicy::handle_timeout`] at [`FallbackPolicy::poll_timeout`]. Decisions are taken
//! lazily, at the first `poll_action` after inputs, so the caller may feed several inputs (a
//! finished fetch, then the window it changed) and the policy decides once on all of them.
//!
//! Bounds: "became known at" instants for at most [`KNOWN_CAP`] indices, held pieces tracked
//! only within the lookahead (at most [`MAX_LOOKAHEAD`]), actions queued at most
//! `max_in_flight + 2`.
//!
//! What it must not touch: HTTP, verification, the window's storage — the engine owns those.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Most "became known at" instants remembered.
pub const KNOWN_CAP: usize = 256;
/// Longest lookahead accepted (larger values are lowered to it).
pub const MAX_LOOKAHEAD: u32 = 64;

/// How long peers get to deliver a piece after it became known before the CDN is asked, by
/// default. Relays announce a piece at its first block, so it is known well before it is
/// whole: with 0.6 × the piece duration (150 ms for 250 ms pieces) the CDN won nearly every
/// race, and in the simulator (30 viewers, `scripts/bench-live.sh`'s conditions, a 100 Mbit/s
/// CDN) it carried 60 % of all bytes; with 1 s, 0.6 % (players 1.1 s behind the source instead
/// of 0.6 s, continuity still 99.9 %). A viewer whose peers deliver nothing is not kept
/// waiting: that is the stale rule (see the module docs).
pub const PEER_PATIENCE: Duration = Duration::from_secs(1);

/// How the policy decides; see the module docs for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The stream's piece duration (the descriptor's `piece duration ms`).
    pub piece_duration: Duration,
    /// How long after a piece became known peers get to deliver it before the CDN is asked.
    pub deadline: Duration,
    /// Pieces from the playhead on that the policy watches.
    pub lookahead: u32,
    /// Most piece fetches in flight.
    pub max_in_flight: usize,
    /// Shortest interval between playlist polls.
    pub poll_interval: Duration,
    /// Headers to look back from the newest listed piece for a keyframe to join at.
    pub join_headers: u32,
    /// First delay after a failure; doubles on each further failure.
    pub backoff_min: Duration,
    /// Longest delay after failures.
    pub backoff_max: Duration,
}

impl PolicyConfig {
    /// The defaults for a stream of `piece_duration` pieces: deadline [`PEER_PATIENCE`] (at
    /// least 0.6 × the piece duration), 3 pieces looked ahead, 3 fetches in flight, a poll per
    /// piece duration, 8 headers back to join, backoff 200 ms to 5 s.
    pub fn for_piece_duration(piece_duration: Duration) -> PolicyConfig {
        PolicyConfig {
            piece_duration,
            deadline: piece_duration.mul_f64(0.6).max(PEER_PATIENCE),
            lookahead: 3,
            max_in_flight: 3,
            poll_interval: piece_duration,
            join_headers: 8,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// What the policy wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackAction {
    /// Fetch piece `index` (header and payload), verify it and put it in the window; then
    /// report [`Outcome::Piece`].
    Fetch(u32),
    /// Read the newest index the CDN's playlist lists and tell the window it exists; then
    /// report [`Outcome::Playlist`].
    PollPlaylist,
    /// Join: read the newest listed index, fetch the newest keyframe piece among the last
    /// `back` listed (else the newest), put it in the window; then report [`Outcome::Join`].
    Join {
        /// Headers to look back for a keyframe.
        back: u32,
    },
}

/// A fetch, poll or join that ended without a usable answer (network, HTTP or verification
/// error: the engine counts the reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed;

/// How an action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A [`FallbackAction::Fetch`] ended; `stored` when the piece is now in the window (false
    /// on any failure, or when it fell out of the window meanwhile).
    Piece {
        /// The piece asked for.
        index: u32,
        /// The piece is in the window.
        stored: bool,
    },
    /// A [`FallbackAction::PollPlaylist`] ended with the newest listed index (`None`: an empty
    /// playlist).
    Playlist(Result<Option<u32>, Failed>),
    /// A [`FallbackAction::Join`] ended with the newest listed index (`None`: an empty
    /// playlist, nothing joined).
    Join(Result<Option<u32>, Failed>),
}

/// What the policy needs to know about the local window of pieces.
pub trait WindowView {
    /// The live edge: the newest index known to exist.
    fn edge(&self) -> Option<u32>;
    /// Payload bytes received from peers so far (any change is a sign of live peers).
    fn peer_bytes(&self) -> u64;
    /// Registered players.
    fn readers(&self) -> usize;
    /// True when the window holds no piece.
    fn is_empty(&self) -> bool;
    /// The lowest index a player waits for.
    fn playhead(&self) -> Option<u32>;
    /// True when piece `index` is held.
    fn has(&self, index: u32) -> bool;
}

/// The CDN fallback policy of one stream. See the module docs.
#[derive(Debug)]
pub struct FallbackPolicy {
    cfg: PolicyConfig,
    /// The latest input's time.
    now: Option<Instant>,
    /// Inputs arrived since the last decision.
    dirty: bool,
    actions: VecDeque<FallbackAction>,
    // What the window said last.
    edge: Option<u32>,
    readers: usize,
    empty: bool,
    playhead: Option<u32>,
    /// Held pieces among the lookahead from the playhead.
    held: BTreeSet<u32>,
    /// When each index near the edge became known.
    known_at: BTreeMap<u32, Instant>,
    last_edge: Option<u32>,
    /// The newest index we ourselves fetched or learned from the CDN: edge moves beyond it are
    /// peers' doing.
    own_edge: Option<u32>,
    last_peer_bytes: u64,
    /// Last sign of life from peers.
    peers_seen: Option<Instant>,
    last_poll: Option<Instant>,
    in_flight: BTreeSet<u32>,
    polling: bool,
    joining: bool,
    backoff: Duration,
    backoff_until: Option<Instant>,
}

impl FallbackPolicy {
    /// A policy with nothing learned yet.
    pub fn new(mut cfg: PolicyConfig) -> FallbackPolicy {
        cfg.lookahead = cfg.lookahead.clamp(1, MAX_LOOKAHEAD);
        cfg.max_in_flight = cfg.max_in_flight.max(1);
        cfg.join_headers = cfg.join_headers.max(1);
        FallbackPolicy {
            cfg,
            now: None,
            dirty: false,
            actions: VecDeque::new(),
            edge: None,
            readers: 0,
            empty: true,
            playhead: None,
            held: BTreeSet::new(),
            known_at: BTreeMap::new(),
            last_edge: None,
            own_edge: None,
            last_peer_bytes: 0,
            peers_seen: None,
            last_poll: None,
            in_flight: BTreeSet::new(),
            polling: false,
            joining: false,
            backoff: Duration::ZERO,
            backoff_until: None,
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// The window changed (or may have: a player moved). Call after every change of the
    /// window's pieces, edge or players, and after applying an [`Outcome`].
    pub fn handle_window(&mut self, now: Instant, w: &impl WindowView) {
        self.input(now);
        let edge = w.edge();
        let peer_bytes = w.peer_bytes();
        // Signs of peers: payload from peers, or the edge moved beyond what we put there.
        if peer_bytes != self.last_peer_bytes
            || edge.is_some_and(|e| self.own_edge.is_none_or(|o| e > o))
        {
            self.last_peer_bytes = peer_bytes;
            self.peers_seen = Some(now);
            self.own_edge = edge.max(self.own_edge);
        }
        if let Some(e) = edge {
            let from = match self.last_edge {
                Some(l) if l >= e => e.saturating_add(1),
                Some(l) => l.saturating_add(1).max(e.saturating_sub(KNOWN_CAP as u32)),
                None => e,
            };
            for i in from..=e {
                self.known_at.entry(i).or_insert(now);
            }
            while self.known_at.len() > KNOWN_CAP {
                self.known_at.pop_first();
            }
            self.last_edge = Some(e);
        }
        self.edge = edge;
        self.readers = w.readers();
        self.empty = w.is_empty();
        self.playhead = w.playhead();
        self.held.clear();
        if let Some(p) = self.playhead {
            for i in p..p.saturating_add(self.cfg.lookahead) {
                if w.has(i) {
                    self.held.insert(i);
                }
            }
        }
        if self.readers == 0 {
            self.known_at.clear();
        }
    }

    /// An action ended. Apply its effect on the window first (insert the piece, note the
    /// listed index as existing), then report it here and call
    /// [`FallbackPolicy::handle_window`].
    pub fn handle_outcome(&mut self, now: Instant, outcome: Outcome) {
        self.input(now);
        let ok = match outcome {
            Outcome::Piece { index, stored } => {
                self.in_flight.remove(&index);
                if stored {
                    self.note_own(index);
                    self.held.insert(index);
                }
                stored
            }
            Outcome::Playlist(res) => {
                self.polling = false;
                if let Ok(Some(latest)) = res {
                    self.note_own(latest);
                }
                res.is_ok()
            }
            Outcome::Join(res) => {
                self.joining = false;
                if let Ok(Some(latest)) = res {
                    self.note_own(latest);
                    self.empty = false;
                }
                res.is_ok()
            }
        };
        if ok {
            self.backoff = Duration::ZERO;
            self.backoff_until = None;
        } else {
            self.backoff = (self.backoff * 2)
                .max(self.cfg.backoff_min)
                .min(self.cfg.backoff_max);
            self.backoff_until = Some(now + self.backoff);
        }
    }

    /// Time passed: call at (or after) [`FallbackPolicy::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.input(now);
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<FallbackAction> {
        if self.dirty {
            self.dirty = false;
            self.decide();
        }
        self.actions.pop_front()
    }

    /// When the policy next has something to decide without new input (`None`: only input can
    /// change its mind). Call after draining [`FallbackPolicy::poll_action`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let now = self.now?;
        if self.readers == 0 {
            return None;
        }
        let later = |t: Instant| (t > now).then_some(t);
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if let Some(until) = self.backoff_until.and_then(later) {
            // Nothing starts before the backoff ends.
            return Some(until);
        }
        let stale_at = self.peers_seen.map(|t| t + self.stale_after());
        consider(stale_at.and_then(later));
        if !self.polling && (self.is_stale(now) || self.edge.is_none()) {
            consider(
                self.last_poll
                    .map(|t| t + self.cfg.poll_interval)
                    .and_then(later),
            );
        }
        if let (Some(p), Some(edge)) = (self.playhead, self.edge) {
            for i in p..p.saturating_add(self.cfg.lookahead) {
                if i > edge {
                    break;
                }
                if self.in_flight.contains(&i) || self.held.contains(&i) {
                    continue;
                }
                consider(
                    self.known_at
                        .get(&i)
                        .map(|&t| t + self.cfg.deadline)
                        .and_then(later),
                );
            }
        }
        next
    }

    /// Piece fetches in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn input(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        self.dirty = true;
    }

    fn note_own(&mut self, index: u32) {
        self.own_edge = Some(self.own_edge.map_or(index, |e| e.max(index)));
    }

    fn stale_after(&self) -> Duration {
        self.cfg.piece_duration.mul_f64(1.5)
    }

    /// No sign of peers for 1.5 piece durations (or ever).
    fn is_stale(&self, now: Instant) -> bool {
        self.peers_seen
            .is_none_or(|t| now.saturating_duration_since(t) >= self.stale_after())
    }

    /// Queues the fetches and polls that are due.
    fn decide(&mut self) {
        let Some(now) = self.now else { return };
        if self.readers == 0 {
            return;
        }
        let stale = self.is_stale(now);
        let backing_off = self.backoff_until.is_some_and(|t| now < t);

        // Learn the edge from the playlist when peers do not tell it.
        if (stale || self.edge.is_none())
            && !self.polling
            && !backing_off
            && self
                .last_poll
                .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.poll_interval)
        {
            self.polling = true;
            self.last_poll = Some(now);
            self.actions.push_back(FallbackAction::PollPlaylist);
        }

        // Join: a player waits and the window is empty.
        if self.empty {
            if !self.joining && !backing_off && self.in_flight.is_empty() {
                self.joining = true;
                self.actions.push_back(FallbackAction::Join {
                    back: self.cfg.join_headers,
                });
            }
            return;
        }

        let Some(p) = self.playhead else {
            return;
        };
        // Forget what is behind the player, and keep the map bounded.
        self.known_at = self.known_at.split_off(&p);
        while self.known_at.len() > KNOWN_CAP / 2 {
            self.known_at.pop_last();
        }
        let Some(edge) = self.edge else { return };
        if backing_off {
            return;
        }
        for i in p..p.saturating_add(self.cfg.lookahead) {
            if i > edge || self.in_flight.len() >= self.cfg.max_in_flight {
                break;
            }
            if self.in_flight.contains(&i) || self.held.contains(&i) {
                continue;
            }
            // Unknown "known at": it became known before we looked, long ago.
            let due = stale
                || self
                    .known_at
                    .get(&i)
                    .is_none_or(|&t| now.saturating_duration_since(t) >= self.cfg.deadline);
            if !due {
                continue;
            }
            self.in_flight.insert(i);
            self.actions.push_back(FallbackAction::Fetch(i));
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;

    /// A window on a virtual clock.
    #[derive(Debug, Default)]
    struct Window {
        edge: Option<u32>,
        peer_bytes: u64,
        readers: usize,
        held: BTreeSet<u32>,
        playhead: Option<u32>,
    }

    impl WindowView for Window {
        fn edge(&self) -> Option<u32> {
            self.edge
        }
        fn peer_bytes(&self) -> u64 {
            self.peer_bytes
        }
        fn readers(&self) -> usize {
            self.readers
        }
        fn is_empty(&self) -> bool {
            self.held.is_empty()
        }
        fn playhead(&self) -> Option<u32> {
            self.playhead
        }
        fn has(&self, index: u32) -> bool {
            self.held.contains(&index)
        }
    }

    const PIECE: Duration = Duration::from_millis(500);

    fn policy() -> FallbackPolicy {
        FallbackPolicy::new(PolicyConfig::for_piece_duration(PIECE))
    }

    /// A policy whose peers get `ms` milliseconds per piece.
    fn patient(ms: u64) -> FallbackPolicy {
        FallbackPolicy::new(PolicyConfig {
            deadline: Duration::from_millis(ms),
            ..PolicyConfig::for_piece_duration(PIECE)
        })
    }

    /// Peers get a second to deliver a piece before the CDN is asked, longer pieces 0.6 of
    /// theirs. With 0.6 × 250 ms the CDN won nearly every race against relays that announce a
    /// piece at its first block: 60 % of the bytes of 30 simulated viewers came from the CDN.
    #[test]
    fn peers_get_a_second_before_the_cdn_is_asked() {
        let ms = |d: u64| PolicyConfig::for_piece_duration(Duration::from_millis(d)).deadline;
        assert_eq!(ms(250), Duration::from_secs(1));
        assert_eq!(ms(2000), Duration::from_millis(1200));
    }

    fn drain(f: &mut FallbackPolicy) -> Vec<FallbackAction> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    /// A peer delivered pieces up to `edge` (held), the player waits at `edge + 1`.
    fn with_peers(edge: u32) -> Window {
        Window {
            edge: Some(edge),
            peer_bytes: u64::from(edge) * 1000,
            readers: 1,
            held: (0..=edge).collect(),
            playhead: Some(edge + 1),
        }
    }

    #[test]
    fn nothing_happens_without_a_player() {
        let t0 = Instant::now();
        let mut f = policy();
        let w = Window {
            edge: Some(10),
            ..Window::default()
        };
        f.handle_window(t0, &w);
        assert!(drain(&mut f).is_empty());
        assert_eq!(f.poll_timeout(), None);
        f.handle_timeout(t0 + Duration::from_secs(60));
        assert!(drain(&mut f).is_empty());
    }

    #[test]
    fn a_piece_peers_deliver_in_time_is_not_fetched() {
        let t0 = Instant::now();
        let mut f = patient(300);
        let mut w = with_peers(9);
        f.handle_window(t0, &w);
        assert!(drain(&mut f).is_empty());
        // Piece 10 is announced (the edge moves): peers get 300 ms.
        w.edge = Some(10);
        f.handle_window(t0 + Duration::from_millis(100), &w);
        assert!(drain(&mut f).is_empty());
        assert_eq!(f.poll_timeout(), Some(t0 + Duration::from_millis(400)));
        // It arrives from a peer at 250 ms.
        w.held.insert(10);
        w.peer_bytes += 1000;
        w.playhead = Some(11);
        f.handle_window(t0 + Duration::from_millis(250), &w);
        assert!(drain(&mut f).is_empty());
    }

    #[test]
    fn a_piece_no_peer_delivers_by_its_deadline_is_fetched_then() {
        let t0 = Instant::now();
        let mut f = patient(300);
        let mut w = with_peers(9);
        f.handle_window(t0, &w);
        w.edge = Some(10);
        f.handle_window(t0, &w);
        assert!(drain(&mut f).is_empty());
        let due = f.poll_timeout().unwrap();
        assert_eq!(due, t0 + Duration::from_millis(300));
        f.handle_timeout(due - Duration::from_millis(1));
        assert!(drain(&mut f).is_empty(), "not before its deadline");
        f.handle_timeout(due);
        assert_eq!(drain(&mut f), vec![FallbackAction::Fetch(10)]);
        // In flight: not asked again.
        f.handle_timeout(due + Duration::from_millis(10));
        assert!(drain(&mut f).is_empty());
        w.held.insert(10);
        f.handle_outcome(
            due + Duration::from_millis(50),
            Outcome::Piece {
                index: 10,
                stored: true,
            },
        );
        f.handle_window(due + Duration::from_millis(50), &w);
        assert!(drain(&mut f).is_empty());
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn without_peers_everything_due_comes_from_the_cdn_three_at_a_time() {
        let t0 = Instant::now();
        let cfg = PolicyConfig {
            lookahead: 5,
            ..PolicyConfig::for_piece_duration(PIECE)
        };
        let mut f = FallbackPolicy::new(cfg);
        // A window joined from the CDN: piece 0 held, the playlist said 20 exist, no peer.
        let mut w = Window {
            edge: Some(20),
            readers: 1,
            held: [0].into(),
            playhead: Some(1),
            ..Window::default()
        };
        f.handle_outcome(t0, Outcome::Join(Ok(Some(20))));
        f.handle_window(t0, &w);
        let acts = drain(&mut f);
        assert_eq!(
            acts,
            vec![
                FallbackAction::PollPlaylist,
                FallbackAction::Fetch(1),
                FallbackAction::Fetch(2),
                FallbackAction::Fetch(3),
            ],
            "stale from the start: due at once, at most 3 in flight"
        );
        w.held.insert(1);
        f.handle_outcome(
            t0 + Duration::from_millis(20),
            Outcome::Piece {
                index: 1,
                stored: true,
            },
        );
        f.handle_window(t0 + Duration::from_millis(20), &w);
        assert_eq!(drain(&mut f), vec![FallbackAction::Fetch(4)]);
    }

    #[test]
    fn the_playlist_is_polled_once_per_interval_while_peers_are_silent() {
        let t0 = Instant::now();
        let mut f = policy();
        let w = with_peers(9);
        f.handle_window(t0, &w);
        assert!(drain(&mut f).is_empty(), "peers just spoke");
        // Silence: stale after 1.5 pieces.
        let stale = f.poll_timeout().unwrap();
        assert_eq!(stale, t0 + Duration::from_millis(750));
        f.handle_timeout(stale);
        assert_eq!(drain(&mut f), vec![FallbackAction::PollPlaylist]);
        f.handle_timeout(stale + Duration::from_millis(100));
        assert!(drain(&mut f).is_empty(), "one poll at a time");
        f.handle_outcome(
            stale + Duration::from_millis(100),
            Outcome::Playlist(Ok(Some(9))),
        );
        f.handle_window(stale + Duration::from_millis(100), &w);
        assert!(drain(&mut f).is_empty(), "not before the interval");
        assert_eq!(f.poll_timeout(), Some(stale + PIECE));
        f.handle_timeout(stale + PIECE);
        assert_eq!(drain(&mut f), vec![FallbackAction::PollPlaylist]);
    }

    #[test]
    fn failures_back_off_doubling_and_a_success_resets() {
        let t0 = Instant::now();
        let mut f = policy();
        let w = Window {
            readers: 1,
            ..Window::default()
        };
        f.handle_window(t0, &w);
        assert_eq!(
            drain(&mut f),
            vec![
                FallbackAction::PollPlaylist,
                FallbackAction::Join { back: 8 }
            ]
        );
        f.handle_outcome(t0, Outcome::Join(Err(Failed)));
        f.handle_outcome(t0, Outcome::Playlist(Err(Failed)));
        assert!(drain(&mut f).is_empty());
        // 200 ms, then 400 ms.
        assert_eq!(f.poll_timeout(), Some(t0 + Duration::from_millis(400)));
        let t1 = t0 + Duration::from_millis(400);
        f.handle_timeout(t1);
        // The playlist was polled 400 ms ago: not again before the 500 ms interval.
        assert_eq!(drain(&mut f), vec![FallbackAction::Join { back: 8 }]);
        f.handle_outcome(t1, Outcome::Join(Err(Failed)));
        assert_eq!(f.poll_timeout(), Some(t1 + Duration::from_millis(800)));
        let t2 = t1 + Duration::from_millis(800);
        f.handle_timeout(t2);
        assert_eq!(
            drain(&mut f),
            vec![
                FallbackAction::PollPlaylist,
                FallbackAction::Join { back: 8 }
            ]
        );
        // A success resets the backoff: the next failure waits 200 ms again.
        f.handle_outcome(t2, Outcome::Playlist(Ok(None)));
        f.handle_outcome(t2, Outcome::Join(Err(Failed)));
        assert_eq!(f.poll_timeout(), Some(t2 + Duration::from_millis(200)));
        let t1 = t2;
        // Capped at 5 s.
        let mut t = t1;
        for _ in 0..10 {
            f.handle_outcome(t, Outcome::Join(Err(Failed)));
            t = f.poll_timeout().unwrap();
            f.handle_timeout(t);
            drain(&mut f);
        }
        f.handle_outcome(t, Outcome::Join(Err(Failed)));
        assert!(f.poll_timeout().unwrap() <= t + Duration::from_secs(5));
    }

    #[test]
    fn edge_moves_we_caused_are_not_taken_for_peers() {
        let t0 = Instant::now();
        let mut f = policy();
        let mut w = Window {
            readers: 1,
            ..Window::default()
        };
        f.handle_window(t0, &w);
        drain(&mut f);
        // The join put piece 30 in and the playlist said 30 exists.
        w.edge = Some(30);
        w.held.insert(30);
        w.playhead = Some(31);
        f.handle_outcome(t0, Outcome::Join(Ok(Some(30))));
        f.handle_outcome(t0, Outcome::Playlist(Ok(Some(30))));
        f.handle_window(t0, &w);
        assert!(drain(&mut f).is_empty());
        // The next poll says 31 exists: still no peer, so 31 is due at once.
        let t1 = f.poll_timeout().unwrap();
        f.handle_timeout(t1);
        assert_eq!(drain(&mut f), vec![FallbackAction::PollPlaylist]);
        w.edge = Some(31);
        f.handle_outcome(t1, Outcome::Playlist(Ok(Some(31))));
        f.handle_window(t1, &w);
        assert_eq!(drain(&mut f), vec![FallbackAction::Fetch(31)]);
    }

    #[test]
    fn known_at_stays_bounded() {
        let t0 = Instant::now();
        let mut f = policy();
        let mut w = with_peers(0);
        for e in (0..100_000u32).step_by(7) {
            w.edge = Some(e);
            w.peer_bytes += 1;
            f.handle_window(t0, &w);
            drain(&mut f);
            assert!(f.known_at.len() <= KNOWN_CAP);
        }
        assert!(f.actions.is_empty());
    }
}
