//! The per-peer record shared by both swarms ([`PeerRecord`]): where the connection comes from
//! and where the peer listens, what its extension handshake said, its traffic with smoothed
//! rates ([`Traffic`]), its PEX state, and when it was last heard from.
//!
//! Owns bookkeeping only. Choosing whom to serve by these rates is the chokers' business; when
//! to sample them, and when silence means idle, is the swarm's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::handshake::PeerExtensions;
use super::pex::PexPeer;

/// What both swarms keep of every connection, besides their own policy state.
#[derive(Debug, Clone)]
pub struct PeerRecord {
    /// The connection's remote address.
    pub addr: SocketAddr,
    /// Where the peer accepts connections: known for peers we dialled, or from its handshake.
    pub listen_addr: Option<SocketAddr>,
    /// What its (latest) extension handshake said.
    pub ext: PeerExtensions,
    /// Bytes each way, and rates.
    pub traffic: Traffic,
    /// BEP 11 state.
    pub pex: PexPeer,
    /// When it last sent anything.
    pub last_recv: Instant,
    /// Its `pc_search` budget.
    pub search: super::search::PeerBudget,
    /// Its `pc_receipt` state: its proven key, its receipt budget.
    pub ident: super::receipt::PeerIdent,
    /// How the connection travels and came to be (set by the engine).
    pub route: Route,
    /// Its `ut_holepunch` budget.
    pub holepunch: super::holepunch::PeerBudget,
}

impl PeerRecord {
    /// A connection from `addr` that completed its handshake at `now`; its first PEX message
    /// is due at `first_pex`.
    pub fn new(addr: SocketAddr, now: Instant, first_pex: Instant) -> PeerRecord {
        PeerRecord {
            addr,
            listen_addr: None,
            ext: PeerExtensions::default(),
            traffic: Traffic::default(),
            pex: PexPeer::new(first_pex),
            last_recv: now,
            search: super::search::PeerBudget::new(now),
            ident: super::receipt::PeerIdent::new(now),
            route: Route::default(),
            holepunch: super::holepunch::PeerBudget::new(now),
        }
    }

    /// Whether peers can dial it: we did (not through an introduction), or it says so.
    pub fn reachable(&self) -> bool {
        (self.route.dialled && !self.route.holepunched) || self.ext.reachable
    }

    /// Keeps the peer's extension handshake; its listen address is learned from it unless
    /// known already (a peer we dialled listens where we reached it).
    pub fn on_ext_handshake(&mut self, theirs: PeerExtensions) {
        if self.listen_addr.is_none() {
            self.listen_addr = theirs.listen_addr(self.addr.ip());
        }
        self.ext = theirs;
    }
}

/// How a connection travels and came to be, as the engine knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route {
    /// Over uTP (else TCP): a BEP 55 relay introduces the peer at the connection's address.
    pub utp: bool,
    /// It came of a BEP 55 introduction (holepunched).
    pub holepunched: bool,
    /// We dialled it.
    pub dialled: bool,
}

/// Bytes moved one way on one connection, and a smoothed rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meter {
    total: u64,
    mark: u64,
    rate: u64,
}

impl Meter {
    /// Counts `bytes` moved.
    pub fn add(&mut self, bytes: u64) {
        self.total = self.total.saturating_add(bytes);
    }

    /// Every byte counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The smoothed rate, bytes/s, as of the last [`Meter::sample`].
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Closes a sampling period of `dt` (a zero period is ignored): the rate moves three
    /// quarters of the way to what the period carried, so one quiet second does not zero it.
    pub fn sample(&mut self, dt: Duration) {
        let secs = dt.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let moved = ((self.total - self.mark) as f64 / secs) as u64;
        self.rate = (self.rate + moved.saturating_mul(3)) / 4;
        self.mark = self.total;
    }
}

/// Both directions of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Payload received from the peer.
    pub down: Meter,
    /// Payload sent to the peer.
    pub up: Meter,
}

impl Traffic {
    /// Samples both directions over `dt`.
    pub fn sample(&mut self, dt: Duration) {
        self.down.sample(dt);
        self.up.sample(dt);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;

    #[test]
    fn listen_address_comes_from_the_handshake_unless_known() {
        let now = Instant::now();
        let hs = crate::wire::ext::ExtHandshake::ours(None, Some(7000));
        let theirs = PeerExtensions::from_handshake(&hs);
        let mut r = PeerRecord::new("10.0.0.2:40000".parse().unwrap(), now, now);
        r.on_ext_handshake(theirs.clone());
        assert_eq!(r.listen_addr, Some("10.0.0.2:7000".parse().unwrap()));
        let dialled: SocketAddr = "10.0.0.3:6881".parse().unwrap();
        let mut r = PeerRecord::new(dialled, now, now);
        r.listen_addr = Some(dialled);
        r.on_ext_handshake(theirs);
        assert_eq!(r.listen_addr, Some(dialled));
        assert!(r.ext.client.is_some());
    }

    #[test]
    fn rate_smooths_towards_the_period_and_decays() {
        let mut t = Traffic::default();
        t.down.add(4000);
        t.sample(Duration::from_secs(1));
        assert_eq!(t.down.rate(), 3000);
        assert_eq!(t.up.rate(), 0);
        t.down.add(4000);
        t.sample(Duration::from_secs(2));
        assert_eq!(t.down.rate(), (3000 + 2000 * 3) / 4);
        t.sample(Duration::from_secs(1));
        assert_eq!(t.down.rate(), (3000 + 2000 * 3) / 4 / 4);
        assert_eq!(t.down.total(), 8000);
        // A zero period changes nothing (no division by zero).
        t.sample(Duration::ZERO);
        assert_eq!(t.down.total(), 8000);
    }
}
