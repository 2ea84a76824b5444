//! # BEP 14 Local Service Discovery — peers on the same LAN find each other by multicast
//!
//! Owns the UDP sockets on port 6771 — `0.0.0.0` joined to the group `239.192.152.143`,
//! `[::]` joined to `ff15::efc0:988f` (BEP 14's two groups) — the announce schedule of every info hash the node holds, and the policy applied to what arrives:
//! parse strictly and bounded, drop and count malformed datagrams, ignore our own announces,
//! de-duplicate, and hand out only peers for info hashes we hold.
//!
//! What it deliberately does not own: peer connections (the session routes each discovered
//! peer to the torrent or live stream with that info hash through its `AddPeers` command) and
//! any knowledge of swarms.
//!
//! Layout (as in quinn): [`LsdState`] is the sans-IO core — no socket, no clock; it is fed
//! with `now` through [`LsdState::handle_datagram`] and drained through
//! [`LsdState::poll_transmit`] / [`LsdState::poll_timeout`]. [`Lsd`] is the thin tokio task
//! that pumps it over the real socket.
//!
//! Rules:
//! - The families follow the bind address: an IPv4 one, IPv4 only; an IPv6 one, IPv6 only (its
//!   interface found in `/proc/net/if_inet6`); the IPv6 wildcard (a dual-stack node), both.
//!   Each announce goes to every group joined, its `Host` header naming that group.
//! - **Off when the node is bound to a loopback address** (127.0.0.0/8): multicast sent from a
//!   loopback-bound node would leave through another interface and reach a LAN the node cannot
//!   serve. [`Lsd::start`] returns [`LsdError::Loopback`] then.
//! - The sockets use `SO_REUSEADDR` + `SO_REUSEPORT` so several nodes on one host share the
//!   port; each joins its group on the interface of the node's bind address (the default
//!   interface for a wildcard), sends through that interface, with TTL (hop limit) 1 and
//!   multicast loop on (two nodes on one host find each other).
//! - Each held info hash is announced when added and every [`ANNOUNCE_INTERVAL`]; at most one
//!   datagram leaves every [`ANNOUNCE_GAP`], carrying up to [`MAX_HASHES_PER_DATAGRAM`] hashes.
//!   Nothing is ever sent in reply to a datagram (BEP 14 has no replies).
//! - Received datagrams longer than [`MAX_DATAGRAM`] bytes, with more than
//!   [`MAX_HASHES_PER_DATAGRAM`] info hashes, or otherwise malformed are dropped and counted.
//! - The same (info hash, peer) is reported at most once per [`DEDUP_WINDOW`] (the table of
//!   recent reports holds at most [`MAX_RECENT`] entries), and at most
//!   [`MAX_PEERS_PER_SECOND`] peers are reported per second; the rest are dropped and counted.
//! - The peer address is the datagram's source IP with the `Port` header.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peercdn_core::InfoHash;
use tokio::sync::Notify;

/// The BEP 14 IPv4 multicast group.
pub const LSD_GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
/// The BEP 14 IPv6 multicast group (site-local scope).
pub const LSD_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f);
/// The BEP 14 UDP port.
pub const LSD_PORT: u16 = 6771;
/// Largest datagram accepted (and sent).
pub const MAX_DATAGRAM: usize = 1400;
/// Most info hashes in one datagram, sent or accepted.
pub const MAX_HASHES_PER_DATAGRAM: usize = 16;
/// How often each held info hash is announced again.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Least time between two datagrams we send.
pub const ANNOUNCE_GAP: Duration = Duration::from_secs(1);
/// The same (info hash, peer) is reported at most once per window. Shorter than
/// [`ANNOUNCE_GAP`], so a peer that re-adds a hash (a stream that turned out to be a torrent)
/// is still reported; repeats inside it are copies or floods.
pub const DEDUP_WINDOW: Duration = Duration::from_millis(750);
/// Most entries in the table of recently reported peers.
pub const MAX_RECENT: usize = 1024;
/// Most peers reported per second (a flood of forged announces is cut here).
pub const MAX_PEERS_PER_SECOND: u32 = 64;
/// Most header lines in a datagram.
const MAX_HEADER_LINES: usize = 32;
/// Longest cookie accepted.
const MAX_COOKIE_LEN: usize = 64;
/// The request line of every BEP 14 message.
const REQUEST_LINE: &str = "BT-SEARCH * HTTP/1.1";

/// How to start an [`Lsd`].
#[derive(Debug, Clone, Copy)]
pub struct LsdConfig {
    /// The node's bind address: its interface is the one multicast is joined and sent on.
    pub bind: IpAddr,
    /// The TCP port peers reach us on (the `Port` header).
    pub peer_port: u16,
}

/// Why LSD could not start.
#[derive(Debug, thiserror::Error)]
pub enum LsdError {
    /// The node is bound to a loopback address; LSD stays off (see the module docs).
    #[error("LSD is off on a loopback address ({0})")]
    Loopback(IpAddr),
    /// No interface holds the IPv6 address the node is bound to.
    #[error("no interface holds {0}")]
    NoInterface(IpAddr),
    /// Port 0 cannot be announced.
    #[error("LSD cannot announce peer port 0")]
    InvalidPort,
    /// Creating, configuring or binding the socket failed.
    #[error("LSD socket: {0}")]
    Socket(#[source] std::io::Error),
    /// No randomness for the cookie.
    #[error("LSD cookie: {0}")]
    Random(String),
}

/// Why a received datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Longer than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes is too long")]
    TooLong(usize),
    /// Not UTF-8 text.
    #[error("datagram is not text")]
    NotText,
    /// The first line is not `BT-SEARCH * HTTP/1.1`.
    #[error("not a BT-SEARCH request")]
    BadRequestLine,
    /// The header block has no terminating empty line.
    #[error("header block is not terminated")]
    Unterminated,
    /// More than the allowed number of header lines.
    #[error("too many header lines")]
    TooManyLines,
    /// A line is not `Name: value`.
    #[error("malformed header line")]
    BadHeader,
    /// `Port` is missing.
    #[error("no Port header")]
    NoPort,
    /// `Port` appears twice.
    #[error("duplicate Port header")]
    DuplicatePort,
    /// `Port` is not a number in 1..=65535.
    #[error("bad Port header")]
    BadPort,
    /// No `Infohash` header.
    #[error("no Infohash header")]
    NoInfohash,
    /// An `Infohash` is not 40 hex digits.
    #[error("bad Infohash header")]
    BadInfohash,
    /// More than [`MAX_HASHES_PER_DATAGRAM`] info hashes.
    #[error("too many Infohash headers")]
    TooManyInfohashes,
    /// The cookie is empty, too long, not printable, or appears twice.
    #[error("bad cookie header")]
    BadCookie,
}

/// A parsed BEP 14 announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The announcer's TCP peer port.
    pub port: u16,
    /// Distinct info hashes, in message order (1..=[`MAX_HASHES_PER_DATAGRAM`]).
    pub info_hashes: Vec<InfoHash>,
    /// The announcer's cookie, when sent.
    pub cookie: Option<String>,
}

/// Parses one datagram strictly: request line `BT-SEARCH * HTTP/1.1`, then `Name: value`
/// lines (names case-insensitive; `\r\n` or `\n` endings) up to an empty line; `Port` exactly
/// once, 1 to [`MAX_HASHES_PER_DATAGRAM`] `Infohash` lines, at most one `cookie`; other
/// headers (`Host`) are ignored, as is anything after the empty line.
pub fn parse(datagram: &[u8]) -> Result<Announce, ParseError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(ParseError::TooLong(datagram.len()));
    }
    let text = std::str::from_utf8(datagram).map_err(|_| ParseError::NotText)?;
    // Only complete lines: a fragment after the last '\n' is never taken as the empty line.
    let mut lines = text
        .split_inclusive('\n')
        .map_while(|l| l.strip_suffix('\n'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    if lines.next() != Some(REQUEST_LINE) {
        return Err(ParseError::BadRequestLine);
    }
    let mut port = None;
    let mut info_hashes: Vec<InfoHash> = Vec::new();
    let mut cookie = None;
    let mut terminated = false;
    for (n, line) in lines.enumerate() {
        if line.is_empty() {
            terminated = true;
            break;
        }
        if n >= MAX_HEADER_LINES {
            return Err(ParseError::TooManyLines);
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::BadHeader)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ParseError::BadHeader);
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if name.eq_ignore_ascii_case("port") {
            if port.is_some() {
                return Err(ParseError::DuplicatePort);
            }
            port = Some(parse_port(value)?);
        } else if name.eq_ignore_ascii_case("infohash") {
            let ih = parse_hash(value)?;
            if !info_hashes.contains(&ih) {
                if info_hashes.len() >= MAX_HASHES_PER_DATAGRAM {
                    return Err(ParseError::TooManyInfohashes);
                }
                info_hashes.push(ih);
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            let ok = cookie.is_none()
                && !value.is_empty()
                && value.len() <= MAX_COOKIE_LEN
                && value.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(ParseError::BadCookie);
            }
            cookie = Some(value.to_string());
        }
    }
    if !terminated {
        return Err(ParseError::Unterminated);
    }
    let port = port.ok_or(ParseError::NoPort)?;
    if info_hashes.is_empty() {
        return Err(ParseError::NoInfohash);
    }
    Ok(Announce {
        port,
        info_hashes,
        cookie,
    })
}

fn parse_port(value: &str) -> Result<u16, ParseError> {
    if value.is_empty() || value.len() > 5 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadPort);
    }
    match value.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(ParseError::BadPort),
    }
}

fn parse_hash(value: &str) -> Result<InfoHash, ParseError> {
    let mut out = [0u8; 20];
    if value.len() != 40 {
        return Err(ParseError::BadInfohash);
    }
    hex::decode_to_slice(value, &mut out).map_err(|_| ParseError::BadInfohash)?;
    Ok(InfoHash(out))
}

/// Encodes one announce for the IPv4 group (see [`encode_for`]).
pub fn encode(port: u16, info_hashes: &[InfoHash], cookie: &str) -> Vec<u8> {
    encode_for(group(false), port, info_hashes, cookie)
}

/// The group of one family and its port: where announces go (and their `Host` header).
pub fn group(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::V6(SocketAddrV6::new(LSD_GROUP_V6, LSD_PORT, 0, 0))
    } else {
        SocketAddr::V4(SocketAddrV4::new(LSD_GROUP, LSD_PORT))
    }
}

/// Encodes one announce to `group` (its `Host` header; at most [`MAX_HASHES_PER_DATAGRAM`]
/// hashes are written, the rest ignored). With a cookie of up to 64 bytes the result stays
/// well under [`MAX_DATAGRAM`].
pub fn encode_for(group: SocketAddr, port: u16, info_hashes: &[InfoHash], cookie: &str) -> Vec<u8> {
    let mut s = String::with_capacity(128 + 51 * info_hashes.len());
    let _ = write!(s, "{REQUEST_LINE}\r\nHost: {group}\r\nPort: {port}\r\n");
    for ih in info_hashes.iter().take(MAX_HASHES_PER_DATAGRAM) {
        let _ = write!(s, "Infohash: {}\r\n", hex::encode(ih.0));
    }
    let _ = write!(s, "cookie: {cookie}\r\n\r\n");
    s.into_bytes()
}

/// Counters of one LSD service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LsdStats {
    /// Datagrams sent.
    pub announces_sent: u64,
    /// Datagrams received (all, including malformed and our own).
    pub packets_received: u64,
    /// Datagrams dropped as malformed.
    pub malformed: u64,
    /// Our own announces heard back (multicast loop) and ignored.
    pub own_ignored: u64,
    /// Peers reported for info hashes we hold.
    pub peers_found: u64,
    /// Peers not reported because [`MAX_PEERS_PER_SECOND`] was reached.
    pub peers_dropped: u64,
    /// Info hashes currently announced.
    pub held: usize,
}

/// What one received datagram gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// New peers for info hashes we hold (possibly none).
    Peers(Vec<(InfoHash, SocketAddr)>),
    /// Our own announce, ignored.
    Own,
    /// Dropped as malformed.
    Malformed(ParseError),
}

/// The sans-IO core: announce schedule and receive policy. Calling rules: after
/// [`LsdState::add`] or any time passing, drain [`LsdState::poll_transmit`] until `None`, then
/// wait until [`LsdState::poll_timeout`] (or the next datagram / command).
#[derive(Debug)]
pub struct LsdState {
    peer_port: u16,
    self_addr: Option<SocketAddr>,
    cookie: String,
    /// Held info hashes and when each is due to be announced.
    held: HashMap<InfoHash, Instant>,
    last_sent: Option<Instant>,
    /// Recently reported (info hash, peer), for de-duplication.
    recent: HashMap<(InfoHash, SocketAddr), Instant>,
    /// Start of the current one-second reporting window and peers reported in it.
    window: Option<(Instant, u32)>,
    stats: LsdStats,
}

impl LsdState {
    /// A new state announcing `peer_port` with `cookie`; `self_addr` (our bind IP and peer
    /// port, when the IP is known) is never reported even without a cookie.
    pub fn new(peer_port: u16, cookie: String, self_addr: Option<SocketAddr>) -> LsdState {
        LsdState {
            peer_port,
            self_addr,
            cookie,
            held: HashMap::new(),
            last_sent: None,
            recent: HashMap::new(),
            window: None,
            stats: LsdStats::default(),
        }
    }

    /// Starts announcing `info_hash` (due at once). A hash already held keeps its schedule.
    pub fn add(&mut self, info_hash: InfoHash, now: Instant) {
        self.held.entry(info_hash).or_insert(now);
    }

    /// Stops announcing `info_hash` and reporting peers for it.
    pub fn remove(&mut self, info_hash: &InfoHash) {
        self.held.remove(info_hash);
    }

    /// The next announce to send, if one is due and [`ANNOUNCE_GAP`] has passed since the
    /// last: up to [`MAX_HASHES_PER_DATAGRAM`] due hashes, most overdue first. Encode it for
    /// each group with [`LsdState::datagram`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<InfoHash>> {
        if self.last_sent.is_some_and(|t| now < t + ANNOUNCE_GAP) {
            return None;
        }
        let mut due: Vec<(Instant, InfoHash)> = self
            .held
            .iter()
            .filter(|(_, &t)| t <= now)
            .map(|(ih, &t)| (t, *ih))
            .collect();
        if due.is_empty() {
            return None;
        }
        due.sort_unstable();
        due.truncate(MAX_HASHES_PER_DATAGRAM);
        let hashes: Vec<InfoHash> = due.into_iter().map(|(_, ih)| ih).collect();
        for ih in &hashes {
            self.held.insert(*ih, now + ANNOUNCE_INTERVAL);
        }
        self.last_sent = Some(now);
        self.stats.announces_sent += 1;
        Some(hashes)
    }

    /// The datagram announcing `hashes` to `group` (our port and cookie).
    pub fn datagram(&self, group: SocketAddr, hashes: &[InfoHash]) -> Vec<u8> {
        encode_for(group, self.peer_port, hashes, &self.cookie)
    }

    /// When [`LsdState::poll_transmit`] may next have something, if anything is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let earliest = self.held.values().min().copied()?;
        Some(match self.last_sent {
            Some(t) => earliest.max(t + ANNOUNCE_GAP),
            None => earliest,
        })
    }

    /// Handles one received datagram from `src`.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) -> Received {
        self.stats.packets_received += 1;
        let announce = match parse(bytes) {
            Ok(a) => a,
            Err(e) => {
                self.stats.malformed += 1;
                return Received::Malformed(e);
            }
        };
        let peer = SocketAddr::new(src.ip(), announce.port);
        if announce.cookie.as_deref() == Some(self.cookie.as_str()) || Some(peer) == self.self_addr
        {
            self.stats.own_ignored += 1;
            return Received::Own;
        }
        let mut found = Vec::new();
        for ih in announce.info_hashes {
            if !self.held.contains_key(&ih) || self.recently_reported(now, ih, peer) {
                continue;
            }
            if !self.take_report_token(now) {
                self.stats.peers_dropped += 1;
                continue;
            }
            self.remember(now, ih, peer);
            found.push((ih, peer));
        }
        self.stats.peers_found += found.len() as u64;
        Received::Peers(found)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LsdStats {
        LsdStats {
            held: self.held.len(),
            ..self.stats
        }
    }

    fn recently_reported(&self, now: Instant, ih: InfoHash, peer: SocketAddr) -> bool {
        self.recent
            .get(&(ih, peer))
            .is_some_and(|&t| now.saturating_duration_since(t) < DEDUP_WINDOW)
    }

    fn remember(&mut self, now: Instant, ih: InfoHash, peer: SocketAddr) {
        if self.recent.len() >= MAX_RECENT {
            self.recent
                .retain(|_, t| now.saturating_duration_since(*t) < DEDUP_WINDOW);
            if self.recent.len() >= MAX_RECENT {
                // Still full inside one window: forget everything (only a flood gets here,
                // and the per-second cap bounds what it can report).
                self.recent.clear();
            }
        }
        self.recent.insert((ih, peer), now);
    }

    fn take_report_token(&mut self, now: Instant) -> bool {
        let (start, count) = match self.window {
            Some((start, count))
                if now.saturating_duration_since(start) < Duration::from_secs(1) =>
            {
                (start, count)
            }
            _ => (now, 0),
        };
        if count >= MAX_PEERS_PER_SECOND {
            self.window = Some((start, count));
            return false;
        }
        self.window = Some((start, count + 1));
        true
    }
}

/// Called with each discovered peer (from the LSD task; must not block).
pub type PeerCallback = Arc<dyn Fn(InfoHash, SocketAddr) + Send + Sync>;

/// A running LSD service. Cloning is cheap; the task stops when the last clone is dropped.
#[derive(Clone)]
pub struct Lsd {
    shared: Arc<Shared>,
    _task: Arc<AbortOnDrop>,
}

struct Shared {
    state: Mutex<LsdState>,
    wake: Notify,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Lsd {
    /// Binds the socket (see the module docs) and starts the task; must run inside a tokio
    /// runtime. `on_peer` is called with every peer found for a held info hash.
    pub fn start(config: LsdConfig, on_peer: PeerCallback) -> Result<Lsd, LsdError> {
        let bind = config.bind;
        let v4_mapped = match bind {
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            IpAddr::V4(_) => None,
        };
        if bind.is_loopback() || v4_mapped.is_some_and(|v4| v4.is_loopback()) {
            return Err(LsdError::Loopback(bind));
        }
        if config.peer_port == 0 {
            return Err(LsdError::InvalidPort);
        }
        let (v4, v6) = match (bind, v4_mapped) {
            (IpAddr::V4(ip), _) | (IpAddr::V6(_), Some(ip)) => (Some(ip), None),
            (IpAddr::V6(ip), None) if ip.is_unspecified() => (Some(Ipv4Addr::UNSPECIFIED), Some(0)),
            (IpAddr::V6(ip), None) => {
                let index = interface_of(ip).ok_or(LsdError::NoInterface(bind))?;
                (None, Some(index))
            }
        };
        let v4 = v4.map(open_socket).transpose().map_err(LsdError::Socket)?;
        let v6 = v6
            .map(open_socket_v6)
            .transpose()
            .map_err(LsdError::Socket)?;
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(|e| LsdError::Random(e.to_string()))?;
        let self_addr = (!bind.is_unspecified()).then_some(SocketAddr::new(bind, config.peer_port));
        let shared = Arc::new(Shared {
            state: Mutex::new(LsdState::new(
                config.peer_port,
                hex::encode(random),
                self_addr,
            )),
            wake: Notify::new(),
        });
        let task = tokio::spawn(run(v4, v6, shared.clone(), on_peer));
        tracing::info!(%bind, port = config.peer_port, "LSD started");
        Ok(Lsd {
            shared,
            _task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// Starts announcing `info_hash` (at once, within the rate limit) and reporting its peers.
    pub fn add(&self, info_hash: InfoHash) {
        self.state().add(info_hash, crate::clock::now());
        self.shared.wake.notify_one();
    }

    /// Stops announcing `info_hash`.
    pub fn remove(&self, info_hash: &InfoHash) {
        self.state().remove(info_hash);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LsdStats {
        self.state().stats()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LsdState> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Lsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lsd").field("stats", &self.stats()).finish()
    }
}

/// `0.0.0.0:6771`, shared, joined to the group on `bind`'s interface, sending through it.
fn open_socket(bind: Ipv4Addr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, LSD_PORT)).into())?;
    socket.join_multicast_v4(&LSD_GROUP, &bind)?;
    if !bind.is_unspecified() {
        socket.set_multicast_if_v4(&bind)?;
    }
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The IPv6 socket: `[::]:6771` (IPv6 only), shared, joined to [`LSD_GROUP_V6`] on interface
/// `index` (0: the default), sending through it with hop limit 1.
fn open_socket_v6(index: u32) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket
        .bind(&SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, LSD_PORT, 0, 0)).into())?;
    socket.join_multicast_v6(&LSD_GROUP_V6, index)?;
    if index != 0 {
        socket.set_multicast_if_v6(index)?;
    }
    socket.set_multicast_loop_v6(true)?;
    socket.set_multicast_hops_v6(1)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The index of the interface holding `ip`, from `/proc/net/if_inet6` (Linux: one line per
/// address — 32 hex digits, the index in hex, prefix length, scope, flags, name). Hand-read:
/// the crates that list interfaces pull in far more than this one lookup needs.
fn interface_of(ip: Ipv6Addr) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    let want = hex::encode(ip.octets());
    table.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == want).then_some(())?;
        u32::from_str_radix(f.next()?, 16).ok()
    })
}

/// Receives on `socket` if there is one; never returns otherwise.
async fn recv_on(
    socket: Option<&tokio::net::UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The task: receive, send what is due, sleep until the next due time or a wake-up.
async fn run(
    v4: Option<tokio::net::UdpSocket>,
    v6: Option<tokio::net::UdpSocket>,
    shared: Arc<Shared>,
    on_peer: PeerCallback,
) {
    // One byte more than accepted, so an oversize datagram is seen as such.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut buf6 = vec![0u8; MAX_DATAGRAM + 1];
    let sockets: Vec<(&tokio::net::UdpSocket, SocketAddr)> = [(&v4, false), (&v6, true)]
        .into_iter()
        .filter_map(|(s, is_v6)| Some((s.as_ref()?, group(is_v6))))
        .collect();
    loop {
        let (sends, deadline) = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = crate::clock::now();
            let mut sends = Vec::new();
            while let Some(hashes) = state.poll_transmit(now) {
                for &(socket, group) in &sockets {
                    sends.push((socket, group, state.datagram(group, &hashes)));
                }
            }
            (sends, state.poll_timeout())
        };
        for (socket, group, d) in sends {
            if let Err(e) = socket.send_to(&d, group).await {
                tracing::debug!(error = %e, %group, "LSD announce not sent");
            }
        }
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = async {
                tokio::select! {
                    r = recv_on(v4.as_ref(), &mut buf) => r.map(|(n, src)| (false, n, src)),
                    r = recv_on(v6.as_ref(), &mut buf6) => r.map(|(n, src)| (true, n, src)),
                }
            } => {
                let (bytes, src) = match r {
                    Ok((false, n, src)) => (&buf[..n], src),
                    Ok((true, n, src)) => (&buf6[..n], src),
                    Err(e) => {
                        tracing::debug!(error = %e, "LSD receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let received = shared
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .handle_datagram(crate::clock::now(), src, bytes);
                match received {
                    Received::Peers(peers) => {
                        for (ih, peer) in peers {
                            tracing::debug!(%ih, %peer, "LSD peer found");
                            on_peer(ih, peer);
                        }
                    }
                    Received::Own => {}
                    Received::Malformed(e) => {
                        let malformed = shared
                            .state
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .stats()
                            .malformed;
                        tracing::debug!(%src, error = %e, malformed, "LSD malformed packet dropped");
                    }
                }
            }
            _ = sleep => {}
            _ = shared.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests;
