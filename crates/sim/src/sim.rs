//! The simulator: nodes running the real core state machines, joined by the modelled links of
//! [`crate::link`], driven by the event queue of [`crate::queue`].
//!
//! Each node is what the engine would run for one live stream: a
//! [`LiveSwarm`] (the protocol: announcements, requests, serving, choking, relaying), a
//! [`ConnManager`] (whom to dial, whom to admit, when to ask the tracker), and the engine's
//! duties played here — the window of held pieces, the payload check, block reads,
//! connection setup and teardown, a tracker — plus, for viewers, a [`Player`]. The source is
//! node 0: it makes a signed piece every piece duration and hands it to its swarm with
//! `on_piece_added`, as the engine's `LiveSource` does.
//!
//! Time contract: after every input to a node, its swarm's and its manager's actions are
//! drained; the node is woken at the earliest of their `poll_timeout`s and only then given
//! `handle_timeout`. There is no tick. Messages are the core's own `Message` values, charged
//! to the links at their encoded size ([`peercdn_core::wire::encoded_len`]); block payloads
//! are slices of the source's piece (`Bytes`, shared, no copy), and every node keeps only the
//! indices of the pieces it holds — the payloads are the run's one copy of the window.
//!
//! The engine's parts that are *not* core and are modelled here (so a difference from real
//! processes may come from them): connection setup costs 1.5 RTT and both ends attach at the
//! same instant; a dial to a node behind NAT fails after the engine's 10 s handshake timeout,
//! a dial to a node that left after one RTT; a BEP 55 introduction's dial gets through when
//! both ends are reachable or holepunchable, else fails like a dial to a NAT'd node; a connection the manager holds as a possible
//! simultaneous open is closed instead; the tracker answers after one RTT with random present
//! nodes; the payload check compares with the source's payload (the same verdict as the hash
//! in an honest network, much cheaper); viewers know the info dictionary from the start (no
//! BEP 9 fetch); the CDN is [`crate::cdn`]'s mirror, driven by core's fallback policy, and a
//! viewer's player counts as registered with it from the moment it joins.
//!
//! Files: this one holds the nodes, the event loop and the swarm's actions; `sim/connect.rs`
//! the connections and the tracker; `sim/fallback.rs` the CDN fallback.
//!
//! Bounds: events in flight are bounded by what the swarms allow in flight (requests, blocks
//! handed out, announcements) plus one timer and one player wake per node; finished sessions
//! keep a small record each; the delay histogram is fixed-size.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use peercdn_core::conn::{Activity, ConnConfig, ConnId, ConnManager};
use peercdn_core::live::fallback::{FallbackPolicy, PolicyConfig};
use peercdn_core::live::swarm::{Action, LiveConfig, LiveSwarm};
use peercdn_core::live::{block_hashes, BlockHash, LiveParams, PieceHeader};
use peercdn_core::time::{earliest, WallClock};
use peercdn_core::wire::{encoded_len, BlockRef, Message};
use peercdn_core::InfoHash;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cdn::{Cdn, View};
use crate::link::Access;
use crate::metrics::{self, Depths, Histogram, Report, Sample, Stopwatch};
use crate::player::{Player, Stream};
use crate::queue::{Clock, Nanos, Queue, SECOND};
use crate::scenario::Scenario;

mod connect;
mod fallback;
mod net;

use connect::peer_id;

/// The port every simulated node listens on.
const PORT: u16 = 6881;
/// The source port of every dialled connection.
const EPHEMERAL: u16 = 50_000;
/// A dial to a node that cannot be reached fails after this (the engine's handshake timeout).
const UNREACHABLE_FAIL: Nanos = 10 * SECOND;
/// The tracker's re-announce interval.
const TRACKER_INTERVAL: Duration = Duration::from_secs(60);
/// The wall clock at the start of a run, microseconds since the Unix epoch.
const WALL_START_US: u64 = 1_800_000_000_000_000;
/// Wakes of one node at one instant before the simulator calls it a bug and moves on.
const MAX_SPIN: u32 = 1_000;

/// What happens at an instant.
#[derive(Debug)]
enum Ev {
    /// The source makes its next piece.
    Produce,
    /// Record a timeline sample.
    Sample,
    /// A new viewer arrives.
    Join,
    /// A viewer leaves.
    Leave(usize),
    /// A node's core timers (swarm or manager) may be due.
    Wake(usize),
    /// A viewer's player asked to be woken.
    PlayerWake(usize),
    /// A message reaches `to`'s downlink on its connection `key` (`size` bytes on the wire).
    Reach {
        to: usize,
        key: ConnId,
        link: u64,
        msg: Message,
        size: usize,
    },
    /// A message is received by `to` on its connection `key`.
    Deliver {
        to: usize,
        key: ConnId,
        link: u64,
        msg: Message,
    },
    /// A block left `node`'s uplink.
    BlockSent {
        node: usize,
        key: ConnId,
        link: u64,
        block: BlockRef,
    },
    /// A dial from `from` reached `to` (handshakes done); `punched`: of an introduction.
    Connect {
        from: usize,
        to: usize,
        punched: bool,
    },
    /// A dial failed.
    DialFailed { node: usize, addr: SocketAddr },
    /// The far end closed connection `key` of `node`.
    Closed { node: usize, key: ConnId, link: u64 },
    /// The tracker answers `node`'s announce.
    TrackerAnswer(usize),
    /// What `node` asked of the CDN (`size` bytes) reaches its downlink.
    CdnReach {
        node: usize,
        what: CdnDone,
        size: usize,
    },
    /// A CDN fetch, poll or join of `node` ended.
    Cdn { node: usize, what: CdnDone },
}

/// What a CDN request brought.
#[derive(Debug, Clone, Copy)]
enum CdnDone {
    /// Piece `index` (a fetch; a join when `join` carries the newest listed index).
    Piece { index: u32, join: Option<u32> },
    /// The playlist's newest index.
    Playlist(Option<u32>),
}

/// One end of a connection.
#[derive(Debug, Clone, Copy)]
struct LinkEnd {
    peer: usize,
    peer_key: ConnId,
    id: u64,
    /// When our last message reached the peer (order on the connection, sending direction).
    last: Nanos,
    /// When the last message from the peer was received, downlink included (order on the
    /// connection, receiving direction).
    recv: Nanos,
}

/// One simulated node.
struct Node {
    swarm: LiveSwarm,
    mgr: ConnManager,
    access: Access,
    reachable: bool,
    /// Reachable, or behind a NAT that BEP 55 introductions get through.
    punchable: bool,
    links: BTreeMap<ConnId, LinkEnd>,
    /// Indices of the verified pieces in its window.
    held: BTreeSet<u32>,
    /// Relay depth of the held pieces (hops from the source; the CDN counts as one hop),
    /// and of those being assembled (the deepest sender so far); pruned with the window.
    depth: BTreeMap<u32, u8>,
    incoming_depth: BTreeMap<u32, u8>,
    player: Option<Player>,
    /// The player's playhead as told to the swarm.
    playhead: Option<u32>,
    /// Core's CDN fallback policy (viewers, when the scenario has a CDN).
    fallback: Option<FallbackPolicy>,
    /// Payload bytes received from peers, and the CDN's newest listed piece.
    peer_bytes: u64,
    cdn_edge: Option<u32>,
    /// Scheduled core wake, and the pending player wake.
    wake_at: Option<Nanos>,
    player_wake: Option<Nanos>,
    /// Wakes at one instant (livelock guard).
    spin: (Nanos, u32),
    registered: bool,
}

/// What is kept of a finished viewer session.
#[derive(Debug, Clone, Copy)]
struct Record {
    join_s: Option<f64>,
    continuity: Option<f64>,
    mean_delay_s: Option<f64>,
    skipped: u64,
    stayed_s: f64,
}

/// A simulation run. [`Sim::run_until`] advances it; [`Sim::report`] measures it.
pub struct Sim {
    sc: Scenario,
    rng: ChaCha8Rng,
    clock: Clock,
    q: Queue<Ev>,
    key: SigningKey,
    params: LiveParams,
    id: InfoHash,
    wall: WallClock,
    stream: Stream,
    nodes: Vec<Option<Node>>,
    /// Nodes the tracker knows (present and announced), and each node's place in it.
    tracker: Vec<usize>,
    tracker_pos: BTreeMap<usize, usize>,
    /// The pieces of the window, by index (the one copy all nodes share).
    pieces: BTreeMap<u32, (PieceHeader, Bytes, Vec<BlockHash>)>,
    cdn: Option<Cdn>,
    cdn_bytes: u64,
    next_piece: u32,
    next_link: u64,
    delays: Histogram,
    arrivals: Histogram,
    depths: Depths,
    records: Vec<Record>,
    present: usize,
    peak: usize,
    source_up: u64,
    viewer_bytes: u64,
    /// Block bytes viewers sent, and what their uplinks could have sent (byte-seconds summed
    /// at each timeline sample), both in the measurement window.
    viewer_up: u64,
    viewer_up_capacity: u64,
    /// Connections made, and of them through an introduction.
    connections: u64,
    punched: u64,
    timeline: Vec<Sample>,
    end: Nanos,
    /// Start of the measurement window.
    warm: Nanos,
    watch: Stopwatch,
}

impl Sim {
    /// A run of `sc`: the source at time 0, the initial audience's arrivals scheduled.
    pub fn new(sc: Scenario) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let key = SigningKey::from_bytes(&rng.gen());
        let params = LiveParams {
            name: "peercdn sim".into(),
            pubkey: key.verifying_key().to_bytes(),
            piece_duration_ms: sc.piece_ms,
            max_piece_length: (sc.piece_len() as u32).next_power_of_two().max(1 << 14),
            window_s: sc.window_s,
        };
        let id = params.content_id();
        // The origin of virtual time: any instant serves, only differences are used, so
        // reading it does not make a run depend on the machine.
        #[allow(clippy::disallowed_methods)]
        let origin = Instant::now();
        let clock = Clock::new(origin);
        let stream = Stream {
            piece: u64::from(sc.piece_ms) * 1_000_000,
            gop: sc.gop_pieces.max(1),
            start: 0,
            start_pieces: (sc.start_buffer_ms.div_ceil(sc.piece_ms.max(1))).max(1),
        };
        let end = (sc.seconds.max(0.0) * 1e9) as Nanos;
        let mut sim = Sim {
            rng,
            clock,
            q: Queue::default(),
            key,
            id,
            wall: WallClock::new(origin, WALL_START_US),
            params,
            stream,
            nodes: Vec::new(),
            tracker: Vec::new(),
            tracker_pos: BTreeMap::new(),
            pieces: BTreeMap::new(),
            cdn: sc.cdn_bps.map(|bps| Cdn::new(bps, sc.cdn_rtt_ms)),
            cdn_bytes: 0,
            next_piece: 0,
            next_link: 0,
            delays: Histogram::default(),
            arrivals: Histogram::default(),
            depths: Depths::default(),
            records: Vec::new(),
            present: 0,
            peak: 0,
            source_up: 0,
            viewer_bytes: 0,
            viewer_up: 0,
            viewer_up_capacity: 0,
            connections: 0,
            punched: 0,
            timeline: Vec::new(),
            end,
            warm: ((sc.warmup_s.max(0.0) * 1e9) as Nanos).min(end),
            watch: Stopwatch::start(),
            sc,
        };
        let up = sim.sc.source_up_bps;
        let s = sim.add_node(true, up, true, true);
        sim.register(s);
        sim.q.push(0, Ev::Produce);
        sim.q.push(SECOND, Ev::Sample);
        for i in 0..sim.sc.viewers {
            let at = sim.sc.arrival_s(i, &mut sim.rng);
            sim.q.push((at * 1e9) as Nanos, Ev::Join);
        }
        sim
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.sc
    }

    /// Simulated seconds so far.
    pub fn now_s(&self) -> f64 {
        self.q.now() as f64 / 1e9
    }

    /// Runs until simulated second `t_s` (at most the scenario's end).
    pub fn run_until(&mut self, t_s: f64) {
        let until = ((t_s.max(0.0) * 1e9) as Nanos).min(self.end);
        while let Some((now, ev)) = self.q.pop_until(until) {
            self.handle(now, ev);
        }
        self.q.advance_to(until);
    }

    /// Runs to the scenario's end and reports.
    pub fn run(mut self) -> Report {
        self.run_until(self.sc.seconds);
        self.report()
    }

    /// The measurements so far.
    pub fn report(&self) -> Report {
        let now = self.q.now();
        let mut recs = self.records.clone();
        for n in self.nodes.iter().flatten() {
            if let Some(p) = &n.player {
                recs.push(record(p, now));
            }
        }
        let started: Vec<&Record> = recs.iter().filter(|r| r.join_s.is_some()).collect();
        let mut joins: Vec<f64> = started.iter().filter_map(|r| r.join_s).collect();
        let mut cont: Vec<f64> = started.iter().filter_map(|r| r.continuity).collect();
        let mut neg_delay: Vec<f64> = started
            .iter()
            .filter_map(|r| r.mean_delay_s)
            .map(|d| -d)
            .collect();
        let never = recs
            .iter()
            .filter(|r| r.join_s.is_none() && r.stayed_s >= 5.0)
            .count();
        let secs = now as f64 / 1e9;
        let measured_s = now.saturating_sub(self.warm) as f64 / 1e9;
        let wall = self.watch.elapsed_s();
        let rss = metrics::peak_rss_bytes();
        let viewer_bytes = self.viewer_bytes;
        let cont_mean = if cont.is_empty() {
            1.0
        } else {
            cont.iter().sum::<f64>() / cont.len() as f64
        };
        Report {
            viewers: self.sc.viewers,
            sessions: recs.len(),
            peak_viewers: self.peak,
            seconds: secs,
            warmup_s: self.warm as f64 / 1e9,
            seed: self.sc.seed,
            delay_p50_s: self.delays.quantile_s(0.5),
            delay_p95_s: self.delays.quantile_s(0.95),
            delay_p99_s: self.delays.quantile_s(0.99),
            arrival_p50_s: self.arrivals.quantile_s(0.5),
            arrival_p95_s: self.arrivals.quantile_s(0.95),
            depth_p50: self.depths.quantile(0.5),
            depth_p95: self.depths.quantile(0.95),
            depth_max: self.depths.max(),
            delay_worst1pct_s: -metrics::worst_mean(&mut neg_delay, 0.01).min(0.0),
            join_p50_s: metrics::quantile(&mut joins, 0.5),
            join_p95_s: metrics::quantile(&mut joins, 0.95),
            never_started: never,
            continuity_mean: cont_mean,
            continuity_worst1pct: metrics::worst_mean(&mut cont, 0.01),
            continuity_worst: cont.first().copied().unwrap_or(1.0),
            pieces_skipped: recs.iter().map(|r| r.skipped).sum(),
            source_upload_x: if measured_s > 0.0 {
                self.source_up as f64 / (self.sc.bytes_per_s() * measured_s)
            } else {
                0.0
            },
            p2p_share: share(viewer_bytes, self.cdn_bytes),
            cdn_share: share(self.cdn_bytes, viewer_bytes),
            viewer_bytes,
            viewer_upload_used: if self.viewer_up_capacity > 0 {
                self.viewer_up as f64 / self.viewer_up_capacity as f64
            } else {
                0.0
            },
            connections: self.connections,
            holepunched_connections: self.punched,
            events: self.q.popped(),
            events_per_s: self.q.popped() as f64 / wall.max(1e-9),
            sim_per_wall: secs / wall.max(1e-9),
            wall_s: wall,
            peak_rss_bytes: rss,
            bytes_per_viewer: rss / self.peak.max(1) as u64,
            timeline: self.timeline.clone(),
        }
    }

    /// One line per present node (debugging): peers, held range, player state.
    pub fn debug_nodes(&self) -> Vec<String> {
        let now = self.q.now();
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
            .map(|(i, n)| {
                let st = n.swarm.stats();
                format!(
                    "{i}: reach {} up {} peers {} held {:?}..{:?} edge {:?} up {} down {} player {:?} stalled {:.2}s delay {:?}",
                    n.reachable,
                    n.access.up_bytes_s * 8 / 1000,
                    n.swarm.peer_count(),
                    n.held.first(),
                    n.held.last(),
                    n.swarm.edge(),
                    st.uploaded,
                    st.downloaded,
                    n.player.as_ref().map(|p| p.state),
                    n.player.as_ref().map_or(0, |p| p.stalled_until(now)) as f64 / 1e9,
                    n.player.as_ref().and_then(|p| p.mean_delay_s()),
                ) + &n.swarm.peer_infos().iter().map(|p| format!("\n    {} newest {:?} am_ch {} p_ch {} out {} q {} rd {} down {} up {}", p.addr, p.newest, p.am_choking, p.peer_choking, p.outstanding, p.queued, p.reading, p.down_rate, p.up_rate)).collect::<String>()
            })
            .collect()
    }

    /// How many hops from the source the viewers' pieces came (for the depth picture).
    pub fn depths(&self) -> &Depths {
        &self.depths
    }

    /// The delay histogram (for the CDF picture).
    pub fn delays(&self) -> &Histogram {
        &self.delays
    }

    fn handle(&mut self, now: Nanos, ev: Ev) {
        match ev {
            Ev::Produce => self.produce(now),
            Ev::Sample => self.sample(now),
            Ev::Join => self.join(now),
            Ev::Leave(n) => self.leave(n, now),
            Ev::Wake(n) => self.wake(n, now),
            Ev::PlayerWake(n) => {
                if let Some(node) = self.nodes[n].as_mut() {
                    if node.player_wake == Some(now) {
                        node.player_wake = None;
                        self.play(n, now);
                        self.pump(n, now);
                    }
                }
            }
            Ev::Reach {
                to,
                key,
                link,
                msg,
                size,
            } => self.reach(to, key, link, msg, size, now),
            Ev::Deliver { to, key, link, msg } => self.deliver(to, key, link, msg, now),
            Ev::BlockSent {
                node,
                key,
                link,
                block,
            } => {
                let inst = self.clock.at(now);
                let Some(n) = self.nodes[node].as_mut() else {
                    return;
                };
                if n.links.get(&key).is_none_or(|l| l.id != link) {
                    return;
                }
                n.mgr
                    .on_activity(key, Activity::Sent(u64::from(block.len)), inst);
                n.swarm.on_block_sent(key, block, true);
                self.pump(node, now);
            }
            Ev::Connect { from, to, punched } => self.connect(from, to, punched, now),
            Ev::DialFailed { node, addr } => {
                let inst = self.clock.at(now);
                if let Some(n) = self.nodes[node].as_mut() {
                    n.mgr.on_dial_failed(addr, inst);
                    self.pump(node, now);
                }
            }
            Ev::Closed { node, key, link } => {
                let inst = self.clock.at(now);
                let Some(n) = self.nodes[node].as_mut() else {
                    return;
                };
                if n.links.get(&key).is_none_or(|l| l.id != link) {
                    return;
                }
                n.links.remove(&key);
                n.swarm.remove_peer(key);
                n.mgr.on_closed(key, inst);
                self.pump(node, now);
            }
            Ev::TrackerAnswer(n) => self.tracker_answer(n, now),
            Ev::CdnReach { node, what, size } => self.cdn_reach(node, what, size, now),
            Ev::Cdn { node, what } => self.cdn_done(node, what, now),
        }
    }

    fn add_node(&mut self, source: bool, up_bps: u64, reachable: bool, punchable: bool) -> usize {
        let i = self.nodes.len();
        let now = self.clock.at(self.q.now());
        let config = LiveConfig {
            source,
            listen_port: Some(PORT),
            seed: self.rng.gen(),
            wall_clock: Some(self.wall),
            ..LiveConfig::default()
        };
        let mut swarm = LiveSwarm::with_info(self.params.info_bytes().into(), config)
            .expect("the simulator's own descriptor is valid");
        // As a node knows it from its port mapping; its extension handshakes tell peers.
        swarm.set_reachable(reachable);
        let cc = ConnConfig {
            listen_port: Some(PORT),
            ..ConnConfig::default()
        };
        let mut mgr = ConnManager::new(cc, peer_id(i), &[], now);
        mgr.set_active(true, now);
        mgr.enable_trackers(now);
        let half = self.sc.draw_rtt_us(&mut self.rng) / 2;
        self.nodes.push(Some(Node {
            swarm,
            mgr,
            access: Access::new(up_bps, self.sc.down_bps, half),
            reachable,
            punchable,
            links: BTreeMap::new(),
            held: BTreeSet::new(),
            depth: BTreeMap::new(),
            incoming_depth: BTreeMap::new(),
            player: (!source).then(|| Player::new(self.q.now(), self.warm)),
            playhead: None,
            fallback: (!source && self.cdn.is_some()).then(|| {
                FallbackPolicy::new(PolicyConfig::for_piece_duration(self.sc.piece_duration()))
            }),
            peer_bytes: 0,
            cdn_edge: None,
            wake_at: None,
            player_wake: None,
            spin: (0, 0),
            registered: false,
        }));
        self.pump(i, self.q.now());
        i
    }

    fn produce(&mut self, now: Nanos) {
        let i = self.next_piece;
        self.next_piece += 1;
        let len = self.sc.piece_len();
        let mut data = vec![(i % 251) as u8; len];
        data[..4.min(len)].copy_from_slice(&i.to_be_bytes()[..4.min(len)]);
        let data = Bytes::from(data);
        let flags = u8::from(self.stream.keyframe(i));
        let inst = self.clock.at(now);
        let h = PieceHeader::sign(
            &self.key,
            &self.id,
            i,
            self.wall.unix_us(inst),
            self.sc.piece_ms * 1000,
            flags,
            &data,
        );
        let hashes = block_hashes(&data);
        self.pieces.insert(i, (h, data, hashes.clone()));
        // The window plus a margin for blocks already asked for.
        let keep = self.sc.window_s * 1000 / self.sc.piece_ms.max(1) + 8;
        while let Some((&old, _)) = self.pieces.first_key_value() {
            if old + keep >= i {
                break;
            }
            self.pieces.pop_first();
        }
        if let Some(src) = self.nodes[0].as_mut() {
            src.held.insert(i);
            src.depth.insert(i, 0);
            prune(src, src.swarm.first());
            src.swarm.on_piece_added(h, hashes, inst);
            self.pump(0, now);
        }
        self.q.push(now + self.stream.piece, Ev::Produce);
    }

    fn sample(&mut self, now: Nanos) {
        // Viewers are the nodes with a player; one pass counts their states and their uplinks
        // (one second of each, samples being a second apart).
        let (mut playing, mut stalled, mut up_capacity) = (0, 0, 0);
        for n in self.nodes.iter().flatten() {
            let Some(p) = &n.player else { continue };
            up_capacity += n.access.up_bytes_s;
            if p.is_stalled() {
                stalled += 1;
            } else if p.started.is_some() {
                playing += 1;
            }
        }
        if now > self.warm {
            self.viewer_up_capacity += up_capacity;
        }
        self.timeline.push(Sample {
            t_s: now as f64 / 1e9,
            viewers: self.present,
            playing,
            stalled,
        });
        self.q.push(now + SECOND, Ev::Sample);
    }

    fn join(&mut self, now: Nanos) {
        let up = self.sc.draw_uplink(&mut self.rng);
        let reachable = !self.rng.gen_bool(self.sc.nat_share.clamp(0.0, 1.0));
        let punchable = reachable || self.rng.gen_bool(self.sc.punch_share.clamp(0.0, 1.0));
        let stay = self.sc.draw_stay_s(&mut self.rng);
        let n = self.add_node(false, up, reachable, punchable);
        self.present += 1;
        self.peak = self.peak.max(self.present);
        if let Some(s) = stay {
            self.q.push(now + (s * 1e9) as Nanos, Ev::Leave(n));
        }
    }

    fn leave(&mut self, n: usize, now: Nanos) {
        let Some(node) = self.nodes[n].take() else {
            return;
        };
        self.unregister(n);
        self.present -= 1;
        for l in node.links.values() {
            let at = now + self.latency(l.peer, &node.access);
            self.q.push(
                at,
                Ev::Closed {
                    node: l.peer,
                    key: l.peer_key,
                    link: l.id,
                },
            );
        }
        if let Some(p) = &node.player {
            self.records.push(record(p, now));
        }
        // As many arrive as leave.
        self.q.push(now, Ev::Join);
    }

    fn wake(&mut self, n: usize, now: Nanos) {
        let inst = self.clock.at(now);
        let Some(node) = self.nodes[n].as_mut() else {
            return;
        };
        if node.wake_at != Some(now) {
            return;
        }
        node.wake_at = None;
        if node.swarm.poll_timeout().is_some_and(|t| t <= inst) {
            node.swarm.handle_timeout(inst);
        }
        if node.mgr.poll_timeout().is_some_and(|t| t <= inst) {
            node.mgr.handle_timeout(inst);
        }
        if let Some(fb) = node.fallback.as_mut() {
            if fb.poll_timeout().is_some_and(|t| t <= inst) {
                fb.handle_timeout(inst);
            }
        }
        self.pump(n, now);
    }

    fn pump(&mut self, n: usize, now: Nanos) {
        loop {
            let Some(node) = self.nodes[n].as_mut() else {
                return;
            };
            if let Some(a) = node.swarm.poll_action() {
                self.exec(n, a, now);
                continue;
            }
            if let Some(a) = node.mgr.poll_action() {
                self.exec_conn(n, a, now);
                continue;
            }
            let inst = self.clock.at(now);
            let Node {
                fallback,
                swarm,
                held,
                peer_bytes,
                playhead,
                cdn_edge,
                ..
            } = node;
            if let Some(fb) = fallback.as_mut() {
                let view = View {
                    swarm,
                    held,
                    peer_bytes: *peer_bytes,
                    playhead: *playhead,
                    cdn_edge: *cdn_edge,
                };
                fb.handle_window(inst, &view);
                if let Some(a) = fb.poll_action() {
                    self.exec_cdn(n, a, now);
                    continue;
                }
            }
            break;
        }
        self.reschedule(n, now);
    }

    fn reschedule(&mut self, n: usize, now: Nanos) {
        let clock = self.clock;
        let Some(node) = self.nodes[n].as_mut() else {
            return;
        };
        let fb = node.fallback.as_ref().and_then(|f| f.poll_timeout());
        let core = earliest(node.swarm.poll_timeout(), node.mgr.poll_timeout());
        let Some(t) = earliest(core, fb) else {
            return;
        };
        let mut t = clock.nanos(t).max(now);
        if t == now {
            if node.spin.0 == now {
                node.spin.1 += 1;
            } else {
                node.spin = (now, 0);
            }
            if node.spin.1 > MAX_SPIN {
                debug_assert!(false, "node {n} wants waking at {now} over and over");
                t = now + 1_000_000;
            }
        }
        if node.wake_at.is_none_or(|w| t < w) {
            node.wake_at = Some(t);
            self.q.push(t, Ev::Wake(n));
        }
    }

    fn exec(&mut self, n: usize, a: Action, now: Nanos) {
        let inst = self.clock.at(now);
        match a {
            Action::Send(key, msg) => {
                let size = encoded_len(&msg);
                self.send(n, key, msg, size, now);
            }
            Action::SendBlock { peer, block, data } => {
                let (s, e) = (block.begin as usize, (block.begin + block.len) as usize);
                let data = data.or_else(|| {
                    self.pieces
                        .get(&block.index)
                        .filter(|(_, p, _)| e <= p.len() && s <= e)
                        .map(|(_, p, _)| p.slice(s..e))
                });
                let linked = self.nodes[n]
                    .as_ref()
                    .is_some_and(|x| x.links.contains_key(&peer));
                match data.filter(|_| linked) {
                    Some(data) => {
                        let msg = Message::Piece {
                            index: block.index,
                            begin: block.begin,
                            data,
                        };
                        let size = encoded_len(&msg);
                        if let Some((left, link)) = self.send(n, peer, msg, size, now) {
                            if now >= self.warm {
                                if n == 0 {
                                    self.source_up += u64::from(block.len);
                                } else {
                                    self.viewer_up += u64::from(block.len);
                                }
                            }
                            self.q.push(
                                left,
                                Ev::BlockSent {
                                    node: n,
                                    key: peer,
                                    link,
                                    block,
                                },
                            );
                        }
                    }
                    None => {
                        if let Some(node) = self.nodes[n].as_mut() {
                            node.swarm.on_block_sent(peer, block, false);
                        }
                    }
                }
            }
            Action::Disconnect { peer, reason } => {
                self.close(n, peer, now);
                if let Some(node) = self.nodes[n].as_mut() {
                    node.swarm.remove_peer(peer);
                    if reason.ban() {
                        node.mgr.ban(peer, inst);
                    } else {
                        node.mgr.on_closed(peer, inst);
                    }
                }
            }
            Action::PieceComplete { header, payload } => {
                let ok = match self.pieces.get(&header.index) {
                    Some((_, p, _)) => *p == payload,
                    None => header.check_payload(&payload).is_ok(),
                };
                let Some(node) = self.nodes[n].as_mut() else {
                    return;
                };
                let d = node.incoming_depth.remove(&header.index);
                if ok {
                    node.held.insert(header.index);
                    if now >= self.warm {
                        self.arrivals
                            .add(now.saturating_sub(self.stream.made(header.index)));
                    }
                    if let Some(d) = d {
                        node.depth.insert(header.index, d);
                        self.depths.add(d);
                    }
                }
                node.swarm.on_piece_checked(header.index, ok, inst);
                let first = node.swarm.first();
                prune(node, first);
                if ok {
                    self.play(n, now);
                }
            }
            // PEX: candidates the sender may introduce us to (BEP 55), as the engine does.
            Action::Discovered(via, addrs) => {
                if let Some(node) = self.nodes[n].as_mut() {
                    node.mgr.add_introduced(addrs, via, inst);
                }
            }
            Action::Holepunch(addr) => self.holepunch(n, addr, now),
            // Simulated nodes hold no catalogue and no identity: pc_search and pc_receipt are
            // not modelled.
            Action::Edge(_)
            | Action::MetadataReceived(_)
            | Action::NotLive(_)
            | Action::Search(..)
            | Action::Receipts(..) => {}
        }
    }

    /// Lets `n`'s player play what it can; tells the swarm where it is; schedules its wake.
    /// The caller drains the swarm's actions.
    fn play(&mut self, n: usize, now: Nanos) {
        let inst = self.clock.at(now);
        let stream = self.stream;
        let delays = &mut self.delays;
        let Some(node) = self.nodes[n].as_mut() else {
            return;
        };
        let Some(p) = node.player.as_mut() else {
            return;
        };
        let first = node.swarm.first();
        if node.held.first().is_some_and(|&i| i < first) {
            prune_held(&mut node.held, first);
        }
        let w = p.on_time(now, &stream, &node.held, first, &mut |d| delays.add(d));
        // (The player counts delays only inside the measurement window.)
        if let Some(ph) = w.playhead {
            node.playhead = Some(ph);
            node.swarm.set_playhead(Some(ph), inst);
        }
        if let Some(at) = w.at {
            if node.player_wake.is_none_or(|x| at < x || x < now) {
                node.player_wake = Some(at);
                self.q.push(at, Ev::PlayerWake(n));
            }
        }
    }
}

/// `part` ÷ (`part` + `rest`), 0 when both are 0.
fn share(part: u64, rest: u64) -> f64 {
    if part + rest == 0 {
        0.0
    } else {
        part as f64 / (part + rest) as f64
    }
}

fn record(p: &Player, now: Nanos) -> Record {
    Record {
        join_s: p.started.map(|s| (s - p.joined) as f64 / 1e9),
        continuity: p.continuity(now),
        mean_delay_s: p.mean_delay_s(),
        skipped: p.skipped,
        stayed_s: now.saturating_sub(p.joined) as f64 / 1e9,
    }
}

/// Drops held indices before the window's start.
fn prune_held(held: &mut BTreeSet<u32>, first: u32) {
    while held.first().is_some_and(|&i| i < first) {
        held.pop_first();
    }
}

/// Drops what a node keeps of pieces before the window's start.
fn prune(node: &mut Node, first: u32) {
    while node.held.first().is_some_and(|&i| i < first) {
        node.held.pop_first();
    }
    node.depth = node.depth.split_off(&first);
    node.incoming_depth = node.incoming_depth.split_off(&first);
}
