//! The connection manager: whom a swarm connects to, whom it keeps, whom it bans, and when it
//! asks the DHT and the trackers for more peers. One [`ConnManager`] per torrent or live
//! stream, shared by both (quinn's `Endpoint` and rust-libp2p's `Pool` are the models).
//!
//! It owns: the candidate addresses (by [`Source`], at most [`ConnConfig::max_candidates`];
//! configured, user and LSD ones are dialled first, then those a peer flagged reachable, then
//! the rest),
//! the dials in flight (at most [`ConnConfig::max_dials`]) and the peer slots
//! ([`ConnConfig::max_peers`]), static peers (re-dialled with backoff after a drop), failed
//! dials (backed off, then forgotten), bans, one connection per peer ID, eviction of idle peers
//! when the slots are full, and the discovery timers (DHT lookups and announces, tracker
//! announces). It must not touch: sockets, tasks or the clock (the engine dials, answers and
//! closes, and passes `now`), the wire protocol (the swarms own every message), or storage.
//!
//! # Calling rule
//! Every input carries `now`. After every input (`add_candidates`, `on_dialed`, `on_incoming`,
//! `on_closed`, `ban`, `on_activity`, `set_active`, tracker answers, `handle_timeout`) drain
//! [`ConnManager::poll_action`] until it returns `None`, then sleep until
//! [`ConnManager::poll_timeout`] and call [`ConnManager::handle_timeout`]. Connection IDs are
//! handed out by the manager ([`Admission::Attach`]) and are what the swarms call `PeerKey`.
//!
//! # Bans that hold
//! A ban is keyed by the peer's IP address, so a banned peer that comes back from a new source
//! port (or listens on a new port) is refused. Loopback is the exception: every peer of a test
//! (and of a single-host deployment) shares 127.0.0.1, so banning the IP would ban everyone.
//! There the ban covers the peer ID and the addresses the peer used and listens on (a listen
//! address a peer tells is on its own IP, so only on loopback could a liar name another
//! local peer's port: acceptable for tests and single-host setups). A banned static peer is
//! taken off the static list: it is never dialled again.
//!
//! # One connection per peer ID, and why an impostor cannot use it
//! A second connection to a peer wastes a slot and an upload slot, so each peer ID gets one.
//! The obvious rule — on a duplicate, keep the connection opened by the lower peer ID (both
//! ends decide alike) — lets anyone displace anyone: a peer ID is only a claim, so an impostor
//! that dials us claiming the ID of a peer we dialled, with an ID that wins the tie-break, takes
//! the real peer's place (this happened: a new viewer got nothing from the relay it dialled
//! while the impostor held the slot). What is actually known:
//! - an outgoing connection reached an address we chose; an incoming one's peer ID is a claim;
//! - a genuine duplicate comes from a *simultaneous open*: both ends dialled each other, so
//!   there is one outgoing and one incoming connection at each end, and both ends must keep
//!   the same one, or they close both and start over.
//!
//! The rule: **a newcomer never displaces an attached connection.** When the newcomer has the
//! same direction as the existing connection (two incoming claims, or two dials answered with
//! one ID), it is refused. When the directions differ (possibly a simultaneous open), the
//! tie-break picks the connection opened by the lower peer ID; if that is the existing one, the
//! newcomer is refused; if it is the newcomer, the newcomer is *held* ([`Admission::Hold`]:
//! kept aside, not attached, no slot, and an incoming one not answered) until the existing
//! connection closes — then it is attached ([`Action::Attach`]) — or for at most
//! [`ConnConfig::hold_timeout`] — then it is closed. In a genuine simultaneous open the other
//! end applies the same rule to the same two connections. If it refused its newcomer (our
//! existing connection), that one closes at once and our held one is attached: both ends keep
//! the tie-break's winner. If it holds too, or our hold left its dial unanswered (it then
//! sees a single connection), the held connection and the unanswered dial both time out and
//! both ends keep the other one. Either way both ends keep the same connection. An impostor
//! gets at most a held, unanswered socket that times out: the real peer never closes our
//! existing connection for it, and no message of the impostor's reaches the swarm.
//!
//! # Slots an idle attacker cannot exhaust
//! Connections that only complete the handshake would otherwise keep every slot (500 idle
//! connections took a seeder's 80 slots, 90 idle `pc_live` connections a broadcaster's; a real
//! viewer could not join). The engine reports activity ([`ConnManager::on_activity`]: interest,
//! requests, payload bytes each way). When the slots are full, a newcomer evicts the worst
//! evictable peer: never-interested idle peers first, then interested peers that moved no
//! data, the longest idle first. A peer that moved payload within [`ConnConfig::protect`],
//! a static peer, and a connection younger than [`ConnConfig::grace`] are never evicted; if no
//! peer is evictable the newcomer is refused.
//!
//! # Discovery timers
//! DHT lookups every 5 s while there are no peers, 30 s while there are few (fewer than 5),
//! 5 min otherwise (re-evaluated as the peer count changes); a DHT announce every 15 min when
//! we listen; tracker announces at start (`started`), after the tracker's interval (clamped to
//! 10 s..1 h, 60 s until a tracker answers), and at once on completion (`completed`). All of
//! them only while the manager is active ([`ConnManager::set_active`]).
//!
//! Bounds: candidates [`ConnConfig::max_candidates`], dials [`ConnConfig::max_dials`], attached
//! peers [`ConnConfig::max_peers`], held connections [`MAX_HELD`], bans [`MAX_BANS`] of each kind
//! (the oldest forgotten first). Nothing here iterates a hash map: the order is deterministic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::id::PeerId;

mod bans;
#[cfg(test)]
mod tests;

use bans::Bans;

/// A connection's ID, unique per manager and never reused (the swarms' `PeerKey`).
pub type ConnId = u64;

/// Held connections at most (see the module doc); more are refused.
pub const MAX_HELD: usize = 16;
/// Introduced addresses remembered (to tell holepunched connections), the oldest forgotten.
pub const MAX_HOLEPUNCHED: usize = 64;
/// After asking for an introduction, the address is not dialled directly for this long:
/// longer than an introduced uTP dial takes to succeed or give up (three SYNs over 7 s), short
/// enough that a peer reachable over uTP only, whose introducer could not help (libtorrent
/// finds the target by its connection's address, which a peer that dialled it does not
/// listen on), is soon dialled directly (TCP, then uTP).
const INTRODUCTION_WAIT: Duration = Duration::from_secs(10);
/// Bans of each kind (IPs, peer IDs, addresses) kept; the oldest is forgotten first.
pub const MAX_BANS: usize = 1024;
/// Failed dials before a non-static candidate is forgotten.
const MAX_ATTEMPTS: u32 = 3;
/// First retry delay after a failed dial or a static peer's drop; doubles per failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// DHT announce period.
const DHT_ANNOUNCE_EVERY: Duration = Duration::from_secs(15 * 60);
/// Tracker announce period until a tracker tells its interval.
const TRACKER_DEFAULT: Duration = Duration::from_secs(60);

/// Where a candidate address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Configured peers: dialled first, re-dialled after a drop.
    Static,
    /// Given by the user or the API at run time.
    User,
    /// Local Service Discovery (BEP 14).
    Lsd,
    /// A tracker's answer.
    Tracker,
    /// A DHT lookup.
    Dht,
    /// Peer exchange (BEP 11), i.e. what another peer claims.
    Pex,
}

/// Limits and periods.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Attached connections at most.
    pub max_peers: usize,
    /// Dials in flight at most.
    pub max_dials: usize,
    /// Candidate addresses kept at most (static peers not counted).
    pub max_candidates: usize,
    /// A new connection cannot be evicted for idleness before this age.
    pub grace: Duration,
    /// A peer that moved payload this recently is never evicted.
    pub protect: Duration,
    /// How long a held duplicate waits for the existing connection to close.
    pub hold_timeout: Duration,
    /// Our listen port (`None`: not listening: no DHT announce; used to skip our own address).
    pub listen_port: Option<u16>,
    /// The DHT is on: look up peers and announce.
    pub dht: bool,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            max_peers: 80,
            max_dials: 16,
            max_candidates: 1000,
            grace: Duration::from_secs(5),
            protect: Duration::from_secs(60),
            hold_timeout: Duration::from_secs(10),
            listen_port: None,
            dht: false,
        }
    }
}

/// BEP 3 tracker events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerEvent {
    /// A periodic announce.
    None,
    /// The first announce.
    Started,
    /// The download just completed.
    Completed,
}

/// Why the manager closes or refuses a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The manager is inactive (paused, checking).
    #[error("not accepting peers now")]
    Inactive,
    /// The peer (IP, peer ID or address) is banned.
    #[error("banned")]
    Banned,
    /// Our own peer ID.
    #[error("connected to ourselves")]
    OwnId,
    /// All slots hold peers that may not be evicted.
    #[error("no free peer slot")]
    Full,
    /// We already have a connection to this peer ID (or to this address).
    #[error("duplicate connection")]
    Duplicate,
    /// Evicted to make room for a newcomer (idle, never interested or no data).
    #[error("evicted for a newcomer (idle)")]
    Evicted,
    /// A held duplicate whose existing connection did not close in time.
    #[error("duplicate held too long")]
    HoldExpired,
}

/// The manager's answer to a finished handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Attach the connection under this ID (answer the handshake if incoming).
    Attach(ConnId),
    /// Keep the socket aside under this ID, unattached (and, if incoming, unanswered until
    /// attached): a possible simultaneous open. Wait for [`Action::Attach`] or
    /// [`Action::Close`] for it.
    Hold(ConnId),
    /// Close the socket.
    Refuse(Refusal),
}

/// What the engine does for the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Dial this address and report with [`ConnManager::on_dialed`].
    Dial(SocketAddr),
    /// Close this connection (attached or held) and forget it (no `on_closed` needed).
    Close {
        /// Connection.
        conn: ConnId,
        /// Why.
        reason: Refusal,
    },
    /// Attach this held connection now (its existing duplicate closed).
    Attach(ConnId),
    /// A dial to `target`, an address the peer `via` told us, failed: ask `via` to introduce
    /// us (BEP 55 `rendezvous`). If it does, report its `connect` with
    /// [`ConnManager::on_holepunch`].
    Rendezvous {
        /// The peer that told us the address.
        via: ConnId,
        /// The address we could not dial.
        target: SocketAddr,
    },
    /// Look up peers in the DHT; report them with `add_candidates(.., Source::Dht, ..)`.
    DhtLookup,
    /// Announce our listen port in the DHT.
    DhtAnnounce,
    /// Announce to every tracker with this event; report with
    /// [`ConnManager::on_tracker_answer`].
    TrackerAnnounce {
        /// BEP 3 event.
        event: TrackerEvent,
    },
}

/// What a connection did, as the engine sees it pass (for eviction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// The peer said it is interested (or sent a request).
    Interested,
    /// Payload bytes received from the peer.
    Received(u64),
    /// Payload bytes sent to the peer.
    Sent(u64),
}

/// One connection's record.
#[derive(Debug, Clone)]
struct Conn {
    addr: SocketAddr,
    peer_id: PeerId,
    outgoing: bool,
    held: bool,
    opened: Instant,
    /// Static peer address this connection reached (never evicted; re-dialled on drop).
    static_addr: Option<SocketAddr>,
    listen_addr: Option<SocketAddr>,
    interested: bool,
    last_data: Option<Instant>,
}

/// A candidate address.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    source: Source,
    next_try: Instant,
    attempts: u32,
    /// The connection that told us this address (PEX): the one to ask for an introduction.
    via: Option<ConnId>,
    /// An introduction was asked for already.
    punched: bool,
    /// A peer flagged it reachable in PEX: dialled before addresses nobody vouched for.
    reachable: bool,
}

impl Candidate {
    fn new(source: Source, now: Instant) -> Candidate {
        Candidate {
            source,
            next_try: now,
            attempts: 0,
            via: None,
            punched: false,
            reachable: false,
        }
    }
}

/// The connection manager (see the module doc for its rules).
#[derive(Debug)]
pub struct ConnManager {
    config: ConnConfig,
    our_id: PeerId,
    active: bool,
    next_id: ConnId,
    statics: BTreeSet<SocketAddr>,
    candidates: BTreeMap<SocketAddr, Candidate>,
    dialing: BTreeSet<SocketAddr>,
    conns: BTreeMap<ConnId, Conn>,
    /// Attached connection per peer ID.
    by_id: BTreeMap<PeerId, ConnId>,
    /// Held connection per peer ID (at most one each).
    held: BTreeMap<PeerId, ConnId>,
    bans: Bans,
    /// Addresses peers introduced us to (BEP 55), the newest last.
    holepunched: VecDeque<SocketAddr>,
    actions: VecDeque<Action>,
    created: Instant,
    dht_last_lookup: Option<Instant>,
    dht_next_announce: Option<Instant>,
    trackers: bool,
    tracker_next: Option<Instant>,
    tracker_event: TrackerEvent,
}

impl ConnManager {
    /// A manager for one swarm. `statics` are dialled first and re-dialled after a drop.
    /// Starts inactive: nothing is dialled or admitted before [`ConnManager::set_active`].
    pub fn new(config: ConnConfig, our_id: PeerId, statics: &[SocketAddr], now: Instant) -> Self {
        let mut m = ConnManager {
            config,
            our_id,
            active: false,
            next_id: 1,
            statics: BTreeSet::new(),
            candidates: BTreeMap::new(),
            dialing: BTreeSet::new(),
            conns: BTreeMap::new(),
            by_id: BTreeMap::new(),
            held: BTreeMap::new(),
            bans: Bans::default(),
            holepunched: VecDeque::new(),
            actions: VecDeque::new(),
            created: now,
            dht_last_lookup: None,
            dht_next_announce: Some(now),
            trackers: false,
            tracker_next: None,
            tracker_event: TrackerEvent::Started,
        };
        for &a in statics {
            if a.port() != 0 && !m.is_self(a) {
                m.statics.insert(a);
                m.candidates.insert(a, Candidate::new(Source::Static, now));
            }
        }
        m
    }

    /// Next action for the engine.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`ConnManager::handle_timeout`] next has work (`None`: nothing until an input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for &id in self.held.values() {
            at(self
                .conns
                .get(&id)
                .map(|c| c.opened + self.config.hold_timeout));
        }
        if self.active {
            if self.room() > 0 {
                at(self.eligible().map(|(_, c)| c.next_try).min());
            }
            at(self.dht_lookup_due());
            at(self.dht_announce_due());
            at(self.trackers.then_some(self.tracker_next).flatten());
        }
        t
    }

    /// Does what is due at `now`: expires held duplicates, dials, runs the discovery timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<ConnId> = self
            .held
            .values()
            .copied()
            .filter(|id| {
                self.conns
                    .get(id)
                    .is_some_and(|c| now >= c.opened + self.config.hold_timeout)
            })
            .collect();
        for id in expired {
            self.close(id, Refusal::HoldExpired, now);
        }
        self.work(now);
    }

    /// Turns dialling and discovery on (`true`) or off (paused, checking data). Turning it
    /// off does not close connections (the caller does that when it wants to).
    pub fn set_active(&mut self, active: bool, now: Instant) {
        self.active = active;
        self.work(now);
    }

    /// The swarm has trackers from now on: announce (`started` first).
    pub fn enable_trackers(&mut self, now: Instant) {
        if !self.trackers {
            self.trackers = true;
            self.tracker_next = Some(now);
        }
        self.work(now);
    }

    /// A tracker answered with its re-announce interval.
    pub fn on_tracker_answer(&mut self, interval: Duration, now: Instant) {
        let every = interval.clamp(Duration::from_secs(10), Duration::from_secs(3600));
        self.tracker_next = Some(now + every);
    }

    /// The download completed: tell the trackers at once (BEP 3 `completed`), unless the first
    /// announce has not gone out yet (then it was complete from the start).
    pub fn on_completed(&mut self, now: Instant) {
        if self.tracker_event == TrackerEvent::None {
            self.tracker_event = TrackerEvent::Completed;
            self.tracker_next = Some(now);
        }
        self.work(now);
    }

    /// Addresses to try. Ours, port 0, banned, connected and already known ones are skipped;
    /// at most [`ConnConfig::max_candidates`] are kept.
    pub fn add_candidates(
        &mut self,
        addrs: impl IntoIterator<Item = SocketAddr>,
        source: Source,
        now: Instant,
    ) {
        for a in addrs {
            self.add_candidate(a, source, now);
        }
        self.work(now);
    }

    /// Adds one candidate (see [`ConnManager::add_candidates`]); the new or known entry.
    fn add_candidate(
        &mut self,
        a: SocketAddr,
        source: Source,
        now: Instant,
    ) -> Option<&mut Candidate> {
        if a.port() == 0 || self.is_self(a) || self.bans.addr_banned(a) || self.connected_to(a) {
            return None;
        }
        let full = self.candidates.len() >= self.config.max_candidates + self.statics.len();
        if full && !self.candidates.contains_key(&a) {
            return None;
        }
        Some(
            self.candidates
                .entry(a)
                .or_insert_with(|| Candidate::new(source, now)),
        )
    }

    /// Addresses the peer `via` told us (PEX): candidates like [`Source::Pex`] ones, and if a
    /// dial to one fails, `via` is asked to introduce us ([`Action::Rendezvous`]). Those it
    /// flagged reachable are dialled before the addresses nobody vouched for (trackers, the
    /// DHT, unflagged PEX): a dial to a node behind NAT costs a dial slot until it times out.
    pub fn add_introduced(
        &mut self,
        heard: impl IntoIterator<Item = crate::ext::pex::Heard>,
        via: ConnId,
        now: Instant,
    ) {
        for h in heard {
            if let Some(c) = self.add_candidate(h.addr, Source::Pex, now) {
                c.via.get_or_insert(via);
                c.reachable |= h.reachable;
            }
        }
        self.work(now);
    }

    /// The attached connection that told us `addr` and may introduce us to it, unless it was
    /// asked already. The engine dials such an address over TCP only: a uTP packet to a NAT
    /// that has not seen one of ours from that address yet makes it (Linux's conntrack among
    /// them) pick a new external port for the target's own packets to us, and then the
    /// introduction cannot work.
    pub fn introducer(&self, addr: SocketAddr) -> Option<ConnId> {
        let c = self.candidates.get(&addr)?;
        let via = c.via.filter(|v| self.by_id.values().any(|id| id == v))?;
        (!c.punched).then_some(via)
    }

    /// A peer introduced us to `addr` (BEP 55 `connect`): whether to dial it over uTP now —
    /// no when inactive, banned, connected or dialling it already, or with too many dials in
    /// flight. If yes, report the dial like any other ([`ConnManager::on_dialed`],
    /// [`ConnManager::on_dial_failed`]); connections from or to `addr` count as holepunched
    /// from now on ([`ConnManager::is_holepunched`]).
    pub fn on_holepunch(&mut self, addr: SocketAddr) -> bool {
        let ok = self.active
            && addr.port() != 0
            && !self.is_self(addr)
            && !self.bans.addr_banned(addr)
            && !self.connected_to(addr)
            && !self.dialing.contains(&addr)
            && self.dialing.len() < 2 * self.config.max_dials;
        if ok {
            self.dialing.insert(addr);
            if self.holepunched.len() >= MAX_HOLEPUNCHED {
                self.holepunched.pop_front();
            }
            self.holepunched.push_back(addr);
        }
        ok
    }

    /// Whether a connection with `addr` came of an introduction (BEP 55) within the last
    /// [`MAX_HOLEPUNCHED`] introductions.
    pub fn is_holepunched(&self, addr: SocketAddr) -> bool {
        self.holepunched.contains(&addr)
    }

    /// A dial we asked for failed (connect, handshake, wrong swarm, timeout): the address is
    /// retried with backoff (a non-static one a few times only).
    pub fn on_dial_failed(&mut self, addr: SocketAddr, now: Instant) {
        if self.dialing.remove(&addr) {
            self.dial_failed(addr, now);
        }
        self.work(now);
    }

    /// A dial we asked for finished its handshake: the peer at `addr` answered with `peer_id`.
    /// The answer says what to do with the connection.
    pub fn on_dialed(&mut self, addr: SocketAddr, peer_id: PeerId, now: Instant) -> Admission {
        self.dialing.remove(&addr);
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.attempts = 0;
        }
        if !self.statics.contains(&addr) {
            self.candidates.remove(&addr);
        }
        let r = self.admit(addr, peer_id, true, now);
        self.work(now);
        r
    }

    /// A peer dialled us and sent its handshake (not answered yet): whether to answer.
    pub fn on_incoming(&mut self, addr: SocketAddr, peer_id: PeerId, now: Instant) -> Admission {
        let r = self.admit(addr, peer_id, false, now);
        self.work(now);
        r
    }

    /// Whether an incoming connection from `addr` would be refused before its handshake is
    /// even read (banned IP or address, or inactive). Cheap, for the accept path.
    pub fn refuses(&self, addr: SocketAddr) -> bool {
        !self.active || self.bans.addr_banned(addr)
    }

    /// The listen address a connected peer told (its extension handshake), so a ban covers it.
    pub fn set_listen_addr(&mut self, conn: ConnId, addr: SocketAddr) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.listen_addr = Some(addr);
        }
    }

    /// What a connection did (see [`Activity`]).
    pub fn on_activity(&mut self, conn: ConnId, what: Activity, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match what {
            Activity::Interested => c.interested = true,
            Activity::Received(n) | Activity::Sent(n) if n > 0 => c.last_data = Some(now),
            Activity::Received(_) | Activity::Sent(_) => {}
        }
    }

    /// A connection (attached or held) ended, for any reason. Unknown IDs are ignored, so it
    /// is safe to call for connections the manager closed itself.
    pub fn on_closed(&mut self, conn: ConnId, now: Instant) {
        self.forget(conn, now);
        self.work(now);
    }

    /// Bans the peer behind `conn` (see the module doc for what a ban covers) and forgets the
    /// connection (the caller closes it).
    pub fn ban(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.get(&conn).cloned() {
            // A held duplicate of a banned peer is not attached in its place.
            if let Some(h) = self.held.get(&c.peer_id).copied().filter(|&h| h != conn) {
                self.close(h, Refusal::Banned, now);
            }
            let ip = c.addr.ip();
            if is_shared_ip(ip) {
                self.bans.ban_id(c.peer_id);
                self.bans.ban_addr(c.addr);
                for a in [c.listen_addr, c.static_addr, c.outgoing.then_some(c.addr)]
                    .into_iter()
                    .flatten()
                {
                    self.bans.ban_addr(a);
                }
            } else {
                self.bans.ban_ip(ip);
            }
            for a in [Some(c.addr), c.listen_addr, c.static_addr]
                .into_iter()
                .flatten()
            {
                if self.bans.addr_banned(a) {
                    self.statics.remove(&a);
                    self.candidates.remove(&a);
                }
            }
        }
        self.forget(conn, now);
        self.work(now);
    }

    /// Whether a peer at `addr` claiming `peer_id` is banned.
    pub fn is_banned(&self, addr: SocketAddr, peer_id: &PeerId) -> bool {
        self.bans.addr_banned(addr) || self.bans.id_banned(peer_id)
    }

    /// Attached connections.
    pub fn peer_count(&self) -> usize {
        self.by_id.len()
    }

    /// Dials in flight.
    pub fn dialing(&self) -> usize {
        self.dialing.len()
    }

    /// Known candidate addresses (static peers included).
    pub fn candidate_count(&self) -> usize {
        self.candidates.len()
    }

    /// The peer ID of a connection (attached or held).
    pub fn peer_id(&self, conn: ConnId) -> Option<PeerId> {
        self.conns.get(&conn).map(|c| c.peer_id)
    }

    // --- internals -------------------------------------------------------------------------

    fn admit(
        &mut self,
        addr: SocketAddr,
        peer_id: PeerId,
        outgoing: bool,
        now: Instant,
    ) -> Admission {
        if !self.active {
            return Admission::Refuse(Refusal::Inactive);
        }
        if peer_id == self.our_id {
            return Admission::Refuse(Refusal::OwnId);
        }
        if self.is_banned(addr, &peer_id) {
            return Admission::Refuse(Refusal::Banned);
        }
        let mut held = false;
        if let Some(&existing) = self.by_id.get(&peer_id) {
            let Some(e) = self.conns.get(&existing) else {
                debug_assert!(false, "by_id names a missing connection");
                return Admission::Refuse(Refusal::Duplicate);
            };
            if e.outgoing == outgoing
                || self.opener(e.outgoing, &peer_id) < self.opener(outgoing, &peer_id)
            {
                return Admission::Refuse(Refusal::Duplicate);
            }
            if self.held.contains_key(&peer_id) || self.held.len() >= MAX_HELD {
                return Admission::Refuse(Refusal::Duplicate);
            }
            held = true;
        } else if self.by_id.len() >= self.config.max_peers && !self.evict_one(now) {
            return Admission::Refuse(Refusal::Full);
        }
        let id = self.next_id;
        self.next_id += 1;
        let static_addr = (outgoing && self.statics.contains(&addr)).then_some(addr);
        self.conns.insert(
            id,
            Conn {
                addr,
                peer_id,
                outgoing,
                held,
                opened: now,
                static_addr,
                listen_addr: outgoing.then_some(addr),
                interested: false,
                last_data: None,
            },
        );
        if held {
            self.held.insert(peer_id, id);
            Admission::Hold(id)
        } else {
            self.by_id.insert(peer_id, id);
            Admission::Attach(id)
        }
    }

    /// The peer ID that opened a connection to or from `peer`.
    fn opener<'a>(&'a self, outgoing: bool, peer: &'a PeerId) -> &'a [u8; 20] {
        if outgoing {
            &self.our_id.0
        } else {
            &peer.0
        }
    }

    /// Evicts the worst evictable attached peer (see the module doc); false if none may go.
    fn evict_one(&mut self, now: Instant) -> bool {
        let victim = self
            .by_id
            .values()
            .filter_map(|&id| {
                let c = self.conns.get(&id)?;
                let young = now < c.opened + self.config.grace;
                let busy = c.last_data.is_some_and(|t| now < t + self.config.protect);
                if young || busy || c.static_addr.is_some() {
                    return None;
                }
                Some(((c.interested, c.last_data.unwrap_or(c.opened)), id))
            })
            .min();
        match victim {
            Some((_, id)) => {
                self.close(id, Refusal::Evicted, now);
                true
            }
            None => false,
        }
    }

    /// Closes a connection on our own initiative.
    fn close(&mut self, conn: ConnId, reason: Refusal, now: Instant) {
        if self.conns.contains_key(&conn) {
            self.actions.push_back(Action::Close { conn, reason });
            self.forget(conn, now);
        }
    }

    /// Removes a connection's records; a static peer is scheduled for a re-dial, and a held
    /// duplicate of it is attached.
    fn forget(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if c.held {
            if self.held.get(&c.peer_id) == Some(&conn) {
                self.held.remove(&c.peer_id);
            }
            return;
        }
        if self.by_id.get(&c.peer_id) == Some(&conn) {
            self.by_id.remove(&c.peer_id);
        }
        if let Some(h) = self.held.remove(&c.peer_id) {
            if let Some(hc) = self.conns.get_mut(&h) {
                hc.held = false;
                self.by_id.insert(c.peer_id, h);
                self.actions.push_back(Action::Attach(h));
            }
        }
        if let Some(a) = c.static_addr {
            if self.statics.contains(&a) && !self.bans.addr_banned(a) {
                let e = self
                    .candidates
                    .entry(a)
                    .or_insert(Candidate::new(Source::Static, now));
                e.next_try = now + BACKOFF_MIN;
            }
        }
    }

    fn dial_failed(&mut self, addr: SocketAddr, now: Instant) {
        let is_static = self.statics.contains(&addr);
        let via = self.introducer(addr);
        let Some(c) = self.candidates.get_mut(&addr) else {
            return;
        };
        if let Some(via) = via {
            // Ask for an introduction once; the peer's answer (or its silence) decides, and a
            // direct dial meanwhile would spoil the holes (see `introducer`).
            c.punched = true;
            c.next_try = now + INTRODUCTION_WAIT;
            self.actions
                .push_back(Action::Rendezvous { via, target: addr });
            return;
        }
        c.attempts = c.attempts.saturating_add(1);
        if !is_static && c.attempts >= MAX_ATTEMPTS {
            self.candidates.remove(&addr);
            return;
        }
        c.next_try = now + backoff(c.attempts);
    }

    /// Dials and discovery due at `now`.
    fn work(&mut self, now: Instant) {
        if !self.active {
            return;
        }
        self.dial_more(now);
        if self.dht_lookup_due().is_some_and(|t| now >= t) {
            self.dht_last_lookup = Some(now);
            self.actions.push_back(Action::DhtLookup);
        }
        if self.dht_announce_due().is_some_and(|t| now >= t) {
            self.dht_next_announce = Some(now + DHT_ANNOUNCE_EVERY);
            self.actions.push_back(Action::DhtAnnounce);
        }
        if self.trackers && self.tracker_next.is_some_and(|t| now >= t) {
            self.tracker_next = Some(now + TRACKER_DEFAULT);
            let event = std::mem::replace(&mut self.tracker_event, TrackerEvent::None);
            self.actions.push_back(Action::TrackerAnnounce { event });
        }
    }

    fn dial_more(&mut self, now: Instant) {
        let room = self.room();
        if room == 0 {
            return;
        }
        // Configured and local addresses first, then those a peer vouched for, then the rest;
        // by source, then by how long they waited.
        let mut picks: Vec<(u8, Source, Instant, SocketAddr)> = self
            .eligible()
            .filter(|(_, c)| c.next_try <= now)
            .map(|(&a, c)| {
                let tier = match c.source {
                    Source::Static | Source::User | Source::Lsd => 0,
                    _ if c.reachable => 1,
                    _ => 2,
                };
                (tier, c.source, c.next_try, a)
            })
            .collect();
        picks.sort();
        for (_, _, _, a) in picks.into_iter().take(room) {
            self.dialing.insert(a);
            // Not tried again until this dial reports (or, after a drop, the backoff).
            if let Some(c) = self.candidates.get_mut(&a) {
                c.next_try = now + BACKOFF_MAX;
            }
            self.actions.push_back(Action::Dial(a));
        }
    }

    /// Candidates that may be dialled (time aside).
    fn eligible(&self) -> impl Iterator<Item = (&SocketAddr, &Candidate)> {
        self.candidates.iter().filter(|(a, _)| {
            !self.dialing.contains(a) && !self.connected_to(**a) && !self.bans.addr_banned(**a)
        })
    }

    /// Dials we may start now.
    fn room(&self) -> usize {
        self.config
            .max_peers
            .saturating_sub(self.by_id.len() + self.dialing.len())
            .min(self.config.max_dials.saturating_sub(self.dialing.len()))
    }

    fn dht_lookup_due(&self) -> Option<Instant> {
        if !self.config.dht {
            return None;
        }
        let every = match self.by_id.len() {
            0 => 5,
            1..=4 => 30,
            _ => 300,
        };
        Some(
            self.dht_last_lookup
                .map_or(self.created, |t| t + Duration::from_secs(every)),
        )
    }

    fn dht_announce_due(&self) -> Option<Instant> {
        (self.config.dht && self.config.listen_port.is_some())
            .then_some(self.dht_next_announce)
            .flatten()
    }

    fn connected_to(&self, a: SocketAddr) -> bool {
        self.conns
            .values()
            .any(|c| c.addr == a || c.listen_addr == Some(a))
    }

    fn is_self(&self, a: SocketAddr) -> bool {
        self.config.listen_port == Some(a.port())
            && (a.ip().is_loopback() || a.ip().is_unspecified())
    }
}

/// Whether peers at this IP cannot be told apart by it (loopback: every test peer shares it).
fn is_shared_ip(ip: IpAddr) -> bool {
    ip.is_loopback()
        || match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
            IpAddr::V4(_) => false,
        }
}

fn backoff(attempts: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(6))
        .min(BACKOFF_MAX)
}
