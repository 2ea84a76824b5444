//! The peer host shared by the torrent actor and the live actor: it owns a swarm's
//! [`Connection`]s and its [`ConnManager`], and does the manager's I/O — dials, handshake
//! answers, DHT lookups and announces, tracker announces — as tasks.
//!
//! An actor keeps its own duties (storage and verification for VoD, the live buffer for live)
//! and its swarm; everything about *which* peers it talks to goes through here:
//! - in its `select!` loop it awaits [`Host::recv`] (peer events, finished dials and lookups,
//!   and the manager's timers) and hands the result to [`Host::handle`] with its swarm;
//! - it passes incoming sockets from the session to [`Host::incoming`], the swarm's messages to
//!   [`Host::send`], the swarm's disconnects to [`Host::disconnect`] and discovered addresses
//!   to [`Host::add_candidates`].
//!
//! The host applies connection changes to the swarm itself (through [`PeerSwarm`]): a new
//! connection is `add_peer`ed, a closed or evicted one `remove_peer`d. It watches the messages
//! that pass (interest, requests, payload each way) and reports them to the manager, which
//! uses them to pick whom to evict when the slots are full.
//!
//! It must not touch: the wire protocol (the swarms), storage, the live buffer, or the HTTP
//! layer. Bounds: connections and dials as the manager's ([`ConnConfig`]); held sockets
//! [`peercdn_core::conn::MAX_HELD`]; the host's own queue [`INTERNAL_QUEUE`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use peercdn_core::conn::{
    Action, Activity, Admission, ConnConfig, ConnId, ConnManager, Source, TrackerEvent,
};
use peercdn_core::ext::handshake::Extension;
use peercdn_core::ext::peer::Route;
use peercdn_core::wire::ext::EXT_HANDSHAKE_ID;
use peercdn_core::wire::{BlockRef, Handshake, Message};
use peercdn_core::{DisconnectReason, InfoHash, PeerId};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::dht::Dht;
use crate::peer::{self, Connection, Encryption, Outgoing, PeerEvent, PeerStream};
use crate::ratelimit::RateLimiter;
use crate::storage::Storage;
use crate::tracker;

/// Finished dials, lookups and announces queued to the host.
pub const INTERNAL_QUEUE: usize = 256;
/// Peer events handled per [`Host::handle`] call at most.
pub const BURST: usize = 64;

/// What the host needs from a swarm (both [`peercdn_core::swarm::Swarm`] and
/// [`peercdn_core::live::swarm::LiveSwarm`] provide it).
pub trait PeerSwarm {
    /// A connection finished its handshake.
    fn add_peer(&mut self, key: ConnId, addr: SocketAddr, hs: &Handshake, now: Instant);
    /// The address a peer listens on (known when we dialled it).
    fn set_listen_addr(&mut self, key: ConnId, addr: SocketAddr);
    /// Where a peer listens, if known (we dialled it, or its extension handshake said).
    fn listen_addr(&self, key: ConnId) -> Option<SocketAddr>;
    /// A connection ended.
    fn remove_peer(&mut self, key: ConnId);
    /// A message arrived.
    fn on_message(&mut self, key: ConnId, msg: Message, now: Instant);
    /// A block was written to a peer (or dropped).
    fn on_block_sent(&mut self, key: ConnId, block: BlockRef, sent: bool);
    /// How a connection travels and came to be.
    fn set_route(&mut self, key: ConnId, route: Route);
    /// Whether peers can dial this node (told to every peer when it changes).
    fn set_reachable(&mut self, reachable: bool);
    /// Whether the peer `key` speaks `ext`.
    fn speaks(&self, key: ConnId, ext: Extension) -> bool;
    /// Asks the peer `via` to introduce us to `target` (BEP 55); false if it cannot.
    fn rendezvous(&mut self, via: ConnId, target: SocketAddr) -> bool;
}

/// Implements [`PeerSwarm`] by forwarding to the swarm's own methods of the same names.
macro_rules! peer_swarm {
    ($t:ty) => {
        impl PeerSwarm for $t {
            fn add_peer(&mut self, key: ConnId, addr: SocketAddr, hs: &Handshake, now: Instant) {
                <$t>::add_peer(self, key, addr, hs, now)
            }
            fn set_listen_addr(&mut self, key: ConnId, addr: SocketAddr) {
                <$t>::set_listen_addr(self, key, addr)
            }
            fn listen_addr(&self, key: ConnId) -> Option<SocketAddr> {
                <$t>::listen_addr(self, key)
            }
            fn remove_peer(&mut self, key: ConnId) {
                <$t>::remove_peer(self, key)
            }
            fn on_message(&mut self, key: ConnId, msg: Message, now: Instant) {
                <$t>::on_message(self, key, msg, now)
            }
            fn set_route(&mut self, key: ConnId, route: Route) {
                <$t>::set_route(self, key, route)
            }
            fn set_reachable(&mut self, reachable: bool) {
                <$t>::set_reachable(self, reachable)
            }
            fn speaks(&self, key: ConnId, ext: Extension) -> bool {
                <$t>::speaks(self, key, ext)
            }
            fn rendezvous(&mut self, via: ConnId, target: SocketAddr) -> bool {
                <$t>::rendezvous(self, via, target)
            }
            fn on_block_sent(&mut self, key: ConnId, block: BlockRef, sent: bool) {
                <$t>::on_block_sent(self, key, block, sent)
            }
        }
    };
}

peer_swarm!(peercdn_core::swarm::Swarm);
peer_swarm!(peercdn_core::live::swarm::LiveSwarm);

/// What the session gives every swarm (torrent or live stream) about its peers.
#[derive(Debug, Clone)]
pub struct PeerParams {
    /// Peers to dial at start and re-dial when disconnected.
    pub static_peers: Vec<SocketAddr>,
    /// Our peer ID.
    pub peer_id: PeerId,
    /// Our listen port (0 if not listening).
    pub listen_port: u16,
    /// The address outgoing connections leave from: the listen address when it is a specific
    /// one (not `0.0.0.0` or `::`), so that peers see the address we are reached on — which
    /// also tells them which network vouches for the catalogue records we hand over.
    pub local_ip: Option<std::net::IpAddr>,
    /// Node-wide limiters, download then upload.
    pub global: [RateLimiter; 2],
    /// This swarm's limiters, download then upload.
    pub local: [RateLimiter; 2],
    /// The node's DHT, when on: the swarm looks up peers and announces itself there.
    pub dht: Option<Dht>,
    /// The node's catalogue and remote queries, which the swarm's `pc_search` peers feed and
    /// answer.
    pub search: std::sync::Arc<crate::gossip::Hub>,
    /// The node's accounting: its identity proven to peers, receipts, the ledger.
    pub accounts: std::sync::Arc<crate::receipts::Accounts>,
    /// Which connections are encrypted (MSE/PE).
    pub encryption: Encryption,
    /// The node's uTP socket, when uTP is on: dials fall back to it (or try it first).
    pub utp: Option<crate::utp::UtpSocket>,
    /// Whether peers can dial this node (the swarm tells its peers).
    pub reachable: crate::session::ReachFlag,
}

impl PeerParams {
    /// Our listen port for the swarms' configs (`None`: not listening).
    pub fn port(&self) -> Option<u16> {
        (self.listen_port != 0).then_some(self.listen_port)
    }

    /// A seed for a swarm's random choices, from our peer ID and a per-kind salt.
    pub fn seed(&self, salt: [u8; 4]) -> u64 {
        let id = &self.peer_id.0;
        u64::from_le_bytes([
            id[12], id[13], id[14], id[15], salt[0], salt[1], salt[2], salt[3],
        ])
    }
}

/// Everything a host needs to start.
#[derive(Debug, Clone)]
struct HostParams {
    info_hash: InfoHash,
    peer_id: PeerId,
    listen_port: u16,
    local_ip: Option<std::net::IpAddr>,
    encryption: Encryption,
    utp: Option<crate::utp::UtpSocket>,
    reachable: crate::session::ReachFlag,
    dht: Option<Dht>,
    global: [RateLimiter; 2],
    local: [RateLimiter; 2],
    storage: Arc<OnceLock<Arc<Storage>>>,
}

/// Figures a tracker announce reports, kept up to date by the actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Payload bytes uploaded.
    pub uploaded: u64,
    /// Payload bytes downloaded.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
}

/// What woke the host; pass it to [`Host::handle`].
#[derive(Debug)]
pub enum Wake {
    /// A connection's event.
    Peer(PeerEvent),
    /// A task of the host finished.
    Task(TaskDone),
    /// The manager's timer.
    Timeout,
}

/// A finished task.
#[derive(Debug)]
pub enum TaskDone {
    /// A dial (connect and handshakes) finished.
    Dialed(SocketAddr, Result<(PeerStream, Handshake), String>),
    /// Addresses from the DHT.
    DhtPeers(Vec<SocketAddr>),
    /// A tracker's answer: addresses and its re-announce interval.
    Tracker(Vec<SocketAddr>, Duration),
}

/// A socket whose handshake finished; while held (see [`Admission::Hold`]) it is not
/// attached, and not answered if incoming.
#[derive(Debug)]
struct Pending {
    stream: PeerStream,
    addr: SocketAddr,
    hs: Handshake,
    outgoing: bool,
}

/// One swarm's connections (see the module doc).
#[derive(Debug)]
pub struct Host {
    p: HostParams,
    mgr: ConnManager,
    conns: HashMap<ConnId, Connection>,
    held: HashMap<ConnId, Pending>,
    trackers: Vec<String>,
    totals: Totals,
    events_tx: mpsc::Sender<PeerEvent>,
    events_rx: mpsc::Receiver<PeerEvent>,
    tasks_tx: mpsc::Sender<TaskDone>,
    tasks_rx: mpsc::Receiver<TaskDone>,
}

impl Host {
    /// A host for the swarm `info_hash`, with no connections; `storage` is where connection
    /// writers read blocks for upload (empty for live streams). Inactive until
    /// [`Host::set_active`] (nothing dialled or accepted before).
    pub fn new(
        info_hash: InfoHash,
        peers: &PeerParams,
        storage: Arc<OnceLock<Arc<Storage>>>,
        now: Instant,
    ) -> Host {
        let config = ConnConfig {
            listen_port: peers.port(),
            dht: peers.dht.is_some(),
            ..ConnConfig::default()
        };
        let mgr = ConnManager::new(config, peers.peer_id, &peers.static_peers, now);
        let p = HostParams {
            info_hash,
            peer_id: peers.peer_id,
            listen_port: peers.listen_port,
            local_ip: peers.local_ip,
            encryption: peers.encryption,
            utp: peers.utp.clone(),
            reachable: peers.reachable.clone(),
            dht: peers.dht.clone(),
            global: peers.global.clone(),
            local: peers.local.clone(),
            storage,
        };
        let (events_tx, events_rx) = mpsc::channel(peer::READER_QUEUE * 4);
        let (tasks_tx, tasks_rx) = mpsc::channel(INTERNAL_QUEUE);
        Host {
            p,
            mgr,
            conns: HashMap::new(),
            held: HashMap::new(),
            trackers: Vec::new(),
            totals: Totals::default(),
            events_tx,
            events_rx,
            tasks_tx,
            tasks_rx,
        }
    }

    /// Waits for the next thing to handle. Cancel-safe (use it in `select!`).
    pub async fn recv(&mut self) -> Wake {
        let deadline = self.mgr.poll_timeout();
        tokio::select! {
            Some(ev) = self.events_rx.recv() => Wake::Peer(ev),
            Some(t) = self.tasks_rx.recv() => Wake::Task(t),
            _ = crate::clock::sleep_until(deadline) => Wake::Timeout,
        }
    }

    /// Handles what [`Host::recv`] returned, and the peer events already queued behind it
    /// (up to [`BURST`]: fewer wake-ups of the actor under load).
    pub fn handle<S: PeerSwarm>(&mut self, wake: Wake, swarm: &mut S, now: Instant) {
        // Whether we are reachable changes rarely; the swarm ignores a repeat.
        swarm.set_reachable(self.p.reachable.get());
        let burst = matches!(wake, Wake::Peer(_));
        self.handle_one(wake, swarm, now);
        if burst {
            for _ in 1..BURST {
                let Ok(ev) = self.events_rx.try_recv() else {
                    break;
                };
                self.handle_one(Wake::Peer(ev), swarm, now);
            }
        }
    }

    fn handle_one<S: PeerSwarm>(&mut self, wake: Wake, swarm: &mut S, now: Instant) {
        match wake {
            Wake::Peer(PeerEvent::Message(key, msg)) => {
                if let Some(a) = activity(&msg) {
                    self.mgr.on_activity(key, a, now);
                }
                let ext_handshake = matches!(
                    msg,
                    Message::Extended {
                        id: EXT_HANDSHAKE_ID,
                        ..
                    }
                );
                swarm.on_message(key, msg, now);
                if ext_handshake {
                    // Where a peer that dialled us listens: a ban covers it, and we do not
                    // dial it while connected.
                    if let Some(a) = swarm.listen_addr(key) {
                        self.mgr.set_listen_addr(key, a);
                    }
                }
            }
            Wake::Peer(PeerEvent::BlockSent(key, block, sent)) => {
                if sent {
                    self.mgr
                        .on_activity(key, Activity::Sent(u64::from(block.len)), now);
                }
                swarm.on_block_sent(key, block, sent);
            }
            Wake::Peer(PeerEvent::Closed(key, reason)) => {
                debug!(key, %reason, "peer closed");
                self.conns.remove(&key);
                swarm.remove_peer(key);
                self.mgr.on_closed(key, now);
            }
            Wake::Task(TaskDone::Dialed(addr, Ok((stream, hs)))) => {
                let a = self.mgr.on_dialed(addr, hs.peer_id, now);
                let p = Pending {
                    stream,
                    addr,
                    hs,
                    outgoing: true,
                };
                self.admit(a, p, swarm, now);
            }
            Wake::Task(TaskDone::Dialed(addr, Err(e))) => {
                debug!(%addr, "dial failed: {e}");
                self.mgr.on_dial_failed(addr, now);
            }
            Wake::Task(TaskDone::DhtPeers(peers)) => {
                self.mgr.add_candidates(peers, Source::Dht, now);
            }
            Wake::Task(TaskDone::Tracker(peers, interval)) => {
                self.mgr.on_tracker_answer(interval, now);
                self.mgr.add_candidates(peers, Source::Tracker, now);
            }
            Wake::Timeout => self.mgr.handle_timeout(now),
        }
        self.pump(swarm, now);
    }

    /// A peer dialled us and sent this handshake (the session read it; ours is not sent yet).
    pub fn incoming<S: PeerSwarm>(
        &mut self,
        stream: PeerStream,
        addr: SocketAddr,
        hs: Handshake,
        swarm: &mut S,
        now: Instant,
    ) {
        let a = self.mgr.on_incoming(addr, hs.peer_id, now);
        let p = Pending {
            stream,
            addr,
            hs,
            outgoing: false,
        };
        self.admit(a, p, swarm, now);
        self.pump(swarm, now);
    }

    /// Queues a message or block to a peer. A peer whose queue is full (it does not read) is
    /// dropped; false then, or when the connection is gone.
    pub fn send<S: PeerSwarm>(&mut self, key: ConnId, out: Outgoing, swarm: &mut S) -> bool {
        let Some(c) = self.conns.get(&key) else {
            return false;
        };
        if c.send(out) {
            return true;
        }
        debug!(key, "peer does not read: dropped");
        self.conns.remove(&key);
        swarm.remove_peer(key);
        self.mgr.on_closed(key, crate::clock::now());
        false
    }

    /// Closes a connection the swarm gave up on, and logs why; when the reason calls for it
    /// ([`DisconnectReason::ban`]), bans the peer behind it (see [`ConnManager::ban`]).
    pub fn disconnect<S: PeerSwarm>(
        &mut self,
        key: ConnId,
        reason: DisconnectReason,
        swarm: &mut S,
        now: Instant,
    ) {
        let ban = reason.ban();
        if let Some(c) = self.conns.remove(&key) {
            if ban {
                warn!(addr = %c.addr, %reason, "banning peer");
            } else {
                debug!(addr = %c.addr, %reason, "disconnecting peer");
            }
        }
        swarm.remove_peer(key);
        if ban {
            self.mgr.ban(key, now);
        } else {
            self.mgr.on_closed(key, now);
        }
        self.pump(swarm, now);
    }

    /// Addresses the peer `via` told us (PEX): to try (those it flagged reachable first), and
    /// to ask `via` to introduce us to when a dial fails (BEP 55).
    pub fn add_introduced<S: PeerSwarm>(
        &mut self,
        peers: Vec<peercdn_core::ext::pex::Heard>,
        via: ConnId,
        swarm: &mut S,
        now: Instant,
    ) {
        self.mgr.add_introduced(peers, via, now);
        self.pump(swarm, now);
    }

    /// A peer introduced us to `addr` (BEP 55 `connect`): dial it over uTP now, as it dials
    /// us, unless the manager says no (connected, dialling, banned) or uTP is off.
    pub fn holepunch<S: PeerSwarm>(&mut self, addr: SocketAddr, swarm: &mut S, now: Instant) {
        let Some(utp) = self.p.utp.clone() else {
            return;
        };
        if !self.mgr.on_holepunch(addr) {
            debug!(%addr, "introduction ignored");
            return;
        }
        debug!(%addr, "introduced: dialling over uTP");
        let (ih, id, tx, policy) = (
            self.p.info_hash,
            self.p.peer_id,
            self.tasks_tx.clone(),
            self.p.encryption,
        );
        tokio::spawn(async move {
            let r = peer::dial_utp(addr, ih, id, policy, &utp)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(TaskDone::Dialed(addr, r)).await;
        });
        self.pump(swarm, now);
    }

    /// More addresses to try.
    pub fn add_candidates<S: PeerSwarm>(
        &mut self,
        peers: Vec<SocketAddr>,
        source: Source,
        swarm: &mut S,
        now: Instant,
    ) {
        self.mgr.add_candidates(peers, source, now);
        self.pump(swarm, now);
    }

    /// Dialling, accepting and announcing on or off (off: a paused torrent, or one checking
    /// its data). Turning it off does not close connections: see [`Host::close_all`].
    pub fn set_active<S: PeerSwarm>(&mut self, active: bool, swarm: &mut S, now: Instant) {
        self.mgr.set_active(active, now);
        self.pump(swarm, now);
    }

    /// The swarm's trackers (announced from now on, `started` first).
    pub fn set_trackers<S: PeerSwarm>(&mut self, urls: Vec<String>, swarm: &mut S, now: Instant) {
        if urls.is_empty() || !self.trackers.is_empty() {
            return;
        }
        self.trackers = urls;
        self.mgr.enable_trackers(now);
        self.pump(swarm, now);
    }

    /// The download completed: trackers hear `completed` at once.
    pub fn completed<S: PeerSwarm>(&mut self, swarm: &mut S, now: Instant) {
        self.mgr.on_completed(now);
        self.pump(swarm, now);
    }

    /// The figures the next tracker announces carry.
    pub fn set_totals(&mut self, t: Totals) {
        self.totals = t;
    }

    /// Stops dialling and accepting, and closes every connection (attached and held);
    /// [`Host::set_active`] starts again.
    pub fn close_all<S: PeerSwarm>(&mut self, swarm: &mut S, now: Instant) {
        self.mgr.set_active(false, now);
        let keys: Vec<ConnId> = self.conns.keys().chain(self.held.keys()).copied().collect();
        for key in keys {
            self.conns.remove(&key);
            self.held.remove(&key);
            swarm.remove_peer(key);
            self.mgr.on_closed(key, now);
        }
        self.pump(swarm, now);
    }

    /// Attached connections.
    pub fn peer_count(&self) -> usize {
        self.conns.len()
    }

    /// Attached connections by how their bytes travel (plain, MSE obfuscated, RC4; uTP).
    pub fn wires(&self) -> peer::Wires {
        let mut w = peer::Wires::default();
        for c in self.conns.values() {
            w.add(c.wire, c.utp, c.holepunched);
        }
        w
    }

    fn admit<S: PeerSwarm>(&mut self, a: Admission, p: Pending, swarm: &mut S, now: Instant) {
        match a {
            Admission::Attach(key) => self.attach(key, p, swarm, now),
            Admission::Hold(key) => {
                debug!(addr = %p.addr, key, "duplicate peer ID held");
                self.held.insert(key, p);
            }
            Admission::Refuse(why) => debug!(addr = %p.addr, %why, "connection refused"),
        }
    }

    fn attach<S: PeerSwarm>(&mut self, key: ConnId, p: Pending, swarm: &mut S, now: Instant) {
        let mut conn = Connection::spawn(
            key,
            p.stream,
            p.addr,
            self.events_tx.clone(),
            self.p.storage.clone(),
            [self.p.global[0].clone(), self.p.local[0].clone()],
            [self.p.global[1].clone(), self.p.local[1].clone()],
        );
        if !p.outgoing {
            // Our handshake goes first, before anything the swarm queues.
            let ours = Handshake::ours(self.p.info_hash, self.p.peer_id).encode();
            if !conn.send(Outgoing::Raw(bytes::Bytes::copy_from_slice(&ours))) {
                self.mgr.on_closed(key, now);
                return;
            }
        }
        conn.holepunched = conn.utp && self.mgr.is_holepunched(p.addr);
        let (utp, holepunched) = (conn.utp, conn.holepunched);
        debug!(addr = %p.addr, key, outgoing = p.outgoing, utp, holepunched, "peer connected");
        self.conns.insert(key, conn);
        swarm.add_peer(key, p.addr, &p.hs, now);
        let route = Route {
            utp,
            holepunched,
            dialled: p.outgoing,
        };
        swarm.set_route(key, route);
        if p.outgoing {
            swarm.set_listen_addr(key, p.addr);
        }
    }

    /// Executes the manager's actions.
    fn pump<S: PeerSwarm>(&mut self, swarm: &mut S, now: Instant) {
        while let Some(a) = self.mgr.poll_action() {
            match a {
                Action::Dial(addr) => {
                    let (ih, id, tx) = (self.p.info_hash, self.p.peer_id, self.tasks_tx.clone());
                    let (from, policy) = (self.p.local_ip, self.p.encryption);
                    // An address a peer may introduce us to is dialled over TCP only: a uTP
                    // packet now would spoil the holes (`ConnManager::introducer`).
                    let introduced = self
                        .mgr
                        .introducer(addr)
                        .is_some_and(|via| swarm.speaks(via, Extension::UtHolepunch));
                    let utp = self.p.utp.clone().filter(|_| !introduced);
                    tokio::spawn(async move {
                        let r = peer::dial(addr, from, ih, id, policy, utp.as_ref())
                            .await
                            .map_err(|e| e.to_string());
                        let _ = tx.send(TaskDone::Dialed(addr, r)).await;
                    });
                }
                Action::Close { conn, reason } => {
                    debug!(key = conn, %reason, "closing connection");
                    self.conns.remove(&conn);
                    self.held.remove(&conn);
                    swarm.remove_peer(conn);
                }
                Action::Attach(key) => {
                    if let Some(p) = self.held.remove(&key) {
                        self.attach(key, p, swarm, now);
                    }
                }
                Action::Rendezvous { via, target } => {
                    let asked = swarm.rendezvous(via, target);
                    debug!(%target, via, asked, "asking for an introduction");
                }
                Action::DhtLookup => self.dht_lookup(),
                Action::DhtAnnounce => self.dht_announce(),
                Action::TrackerAnnounce { event } => self.announce(event),
            }
        }
    }

    fn dht_lookup(&self) {
        let Some(dht) = self.p.dht.clone() else {
            return;
        };
        let (ih, tx) = (self.p.info_hash, self.tasks_tx.clone());
        tokio::spawn(async move {
            let peers = dht.get_peers(ih, 200).await;
            if !peers.is_empty() {
                let _ = tx.send(TaskDone::DhtPeers(peers)).await;
            }
        });
    }

    fn dht_announce(&self) {
        let Some(dht) = self.p.dht.clone() else {
            return;
        };
        let (ih, port) = (self.p.info_hash, self.p.listen_port);
        tokio::spawn(async move {
            if let Err(e) = dht.announce(ih, port).await {
                debug!("DHT announce failed: {e}");
            }
        });
    }

    fn announce(&self, event: TrackerEvent) {
        let req = tracker::AnnounceRequest {
            info_hash: self.p.info_hash,
            peer_id: self.p.peer_id,
            port: self.p.listen_port,
            uploaded: self.totals.uploaded,
            downloaded: self.totals.downloaded,
            left: self.totals.left,
            event: match event {
                TrackerEvent::None => tracker::Event::None,
                TrackerEvent::Started => tracker::Event::Started,
                TrackerEvent::Completed => tracker::Event::Completed,
            },
            num_want: 50,
        };
        for url in self.trackers.clone() {
            let (tx, req) = (self.tasks_tx.clone(), req.clone());
            tokio::spawn(async move {
                match tracker::announce(&url, &req).await {
                    Ok(r) => {
                        let _ = tx.send(TaskDone::Tracker(r.peers, r.interval)).await;
                    }
                    Err(e) => debug!(%url, "announce failed: {e}"),
                }
            });
        }
    }
}

/// What a message says about its sender's activity, for eviction.
fn activity(msg: &Message) -> Option<Activity> {
    match msg {
        Message::Interested | Message::Request(_) => Some(Activity::Interested),
        Message::Piece { data, .. } => Some(Activity::Received(data.len() as u64)),
        _ => None,
    }
}
