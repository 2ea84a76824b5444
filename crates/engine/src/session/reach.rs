//! What a node knows about how peers reach it: the incoming connections whose handshake
//! passed (by transport, and from global addresses), beside the router port mapping
//! ([`crate::nat`], started by [`Session::start_port_mapping`]); [`Session::reach`] puts them
//! together.

use std::sync::Arc;

use super::{lock, Session};
use crate::nat::Reachability;

impl Session {
    /// Maps the peer port on the router (UPnP IGD, [`crate::nat`]) in the background; a second
    /// call is a no-op. Nothing is done for a node on a loopback address.
    pub fn start_port_mapping(&self) {
        let bind = self.inner.config.listen.ip();
        if bind.is_loopback() {
            return;
        }
        let mut nat = lock(&self.inner.nat);
        if nat.is_none() {
            let mapper = crate::nat::PortMapper::start(bind, self.inner.port);
            // The swarms' reachability flag follows the mapping.
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(follow_mapping(mapper.watch(), move |mapped| {
                weak.upgrade()
                    .map(|inner| inner.incoming.set_mapped(mapped))
                    .is_some()
            }));
            *nat = Some(mapper);
        }
    }

    /// What the port mapping found (`None`: not started).
    pub fn reachability(&self) -> Option<Reachability> {
        lock(&self.inner.nat).as_ref().map(|m| m.reachability())
    }

    /// How peers reach this node: the port mapping and the incoming connections so far.
    pub fn reach(&self) -> Reach {
        self.inner.incoming.reach(self.reachability())
    }
}

/// Incoming connections whose handshake passed, by transport, and how many of them came from
/// a global address (not loopback, private, link-local or unique-local): a node that got one
/// is reachable from the Internet, whatever its router said.
#[derive(Debug, Default)]
pub(crate) struct IncomingCounts {
    tcp: std::sync::atomic::AtomicU64,
    utp: std::sync::atomic::AtomicU64,
    global: std::sync::atomic::AtomicU64,
    /// The port mapped, or a global incoming connection: what the swarms tell their peers.
    flag: ReachFlag,
}

/// Whether peers can dial this node, as it knows, shared with every swarm (their extension
/// handshakes say it; a source serves reachable viewers first). Cheap to clone and to read.
#[derive(Debug, Clone, Default)]
pub struct ReachFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl ReachFlag {
    /// Reachable now.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set(&self, v: bool) {
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

impl IncomingCounts {
    /// The flag the swarms read.
    pub(crate) fn flag(&self) -> ReachFlag {
        self.flag.clone()
    }

    /// The router mapped our port (or the mapping went).
    pub(crate) fn set_mapped(&self, mapped: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.flag.set(mapped || self.global.load(Relaxed) > 0);
    }

    /// One more incoming connection; `unsolicited`: not the other half of a simultaneous open
    /// (only those show that peers can reach us).
    pub(crate) fn count(&self, utp: bool, from: std::net::IpAddr, unsolicited: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if utp { &self.utp } else { &self.tcp }.fetch_add(1, Relaxed);
        if unsolicited && is_global(from) {
            self.global.fetch_add(1, Relaxed);
            self.flag.set(true);
        }
    }

    /// The counts so far, beside the router port `mapping`.
    pub(crate) fn reach(&self, mapping: Option<crate::nat::Reachability>) -> Reach {
        use std::sync::atomic::Ordering::Relaxed;
        Reach {
            mapping,
            incoming_tcp: self.tcp.load(Relaxed),
            incoming_utp: self.utp.load(Relaxed),
            incoming_global: self.global.load(Relaxed),
        }
    }
}

/// Calls `mapped` with whether the port is mapped, now and at every change of the mapping,
/// until it returns false (the session is gone) or the mapper stops.
pub(crate) async fn follow_mapping(
    mut rx: tokio::sync::watch::Receiver<crate::nat::Reachability>,
    mapped: impl Fn(bool) -> bool,
) {
    loop {
        let now = matches!(
            *rx.borrow_and_update(),
            crate::nat::Reachability::Mapped { .. }
        );
        if !mapped(now) || rx.changed().await.is_err() {
            return;
        }
    }
}

/// Not loopback, unspecified, private (RFC 1918), shared (RFC 6598), link-local, unique-local
/// or documentation.
fn is_global(ip: std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_documentation()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0xdb8))
        }
    }
}

/// What a node knows about how peers reach it ([`super::Session::reach`]).
#[derive(Debug, Clone)]
pub struct Reach {
    /// The router port mapping (`None`: not started: `--no-upnp` or a loopback bind).
    pub mapping: Option<crate::nat::Reachability>,
    /// Incoming TCP connections whose handshake passed.
    pub incoming_tcp: u64,
    /// Incoming uTP connections whose handshake passed.
    pub incoming_utp: u64,
    /// Of those, from global addresses.
    pub incoming_global: u64,
}

impl Reach {
    /// Peers on the Internet can reach this node: its port is mapped, or one already did.
    pub fn reachable(&self) -> bool {
        self.incoming_global > 0
            || matches!(self.mapping, Some(crate::nat::Reachability::Mapped { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::is_global;

    /// Only addresses the Internet routes count as a sign of being reachable from it.
    #[test]
    fn global_addresses_are_the_routable_ones() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.9",
            "172.16.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.9",
            "2001:db8::1",
        ] {
            assert!(!is_global(local.parse().unwrap()), "{local}");
        }
        for global in ["11.204.1.2", "8.8.8.8", "2a00:1450::1", "::ffff:9.9.9.9"] {
            assert!(is_global(global.parse().unwrap()), "{global}");
        }
    }
}
