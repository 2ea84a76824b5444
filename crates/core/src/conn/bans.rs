//! The ban lists of a [`super::ConnManager`]: IPs, peer IDs and addresses, each bounded by
//! [`super::MAX_BANS`] (the oldest ban is forgotten first). Owns nothing else; the policy of
//! what to ban is the manager's.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use super::MAX_BANS;
use crate::id::PeerId;

/// A set that forgets its oldest member beyond [`MAX_BANS`].
#[derive(Debug)]
struct Bounded<T: Ord + Copy> {
    set: BTreeSet<T>,
    order: VecDeque<T>,
}

impl<T: Ord + Copy> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            set: BTreeSet::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T: Ord + Copy> Bounded<T> {
    fn insert(&mut self, v: T) {
        if !self.set.insert(v) {
            return;
        }
        self.order.push_back(v);
        if self.order.len() > MAX_BANS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, v: &T) -> bool {
        self.set.contains(v)
    }
}

/// Banned IPs (non-loopback peers), peer IDs and addresses (loopback peers).
#[derive(Debug, Default)]
pub(super) struct Bans {
    ips: Bounded<IpAddr>,
    ids: Bounded<PeerId>,
    addrs: Bounded<SocketAddr>,
}

impl Bans {
    pub(super) fn ban_ip(&mut self, ip: IpAddr) {
        self.ips.insert(ip);
    }

    pub(super) fn ban_id(&mut self, id: PeerId) {
        self.ids.insert(id);
    }

    pub(super) fn ban_addr(&mut self, a: SocketAddr) {
        self.addrs.insert(a);
    }

    /// The address or its IP is banned.
    pub(super) fn addr_banned(&self, a: SocketAddr) -> bool {
        self.ips.contains(&a.ip()) || self.addrs.contains(&a)
    }

    pub(super) fn id_banned(&self, id: &PeerId) -> bool {
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_ban_is_forgotten_beyond_the_bound() {
        let mut b = Bans::default();
        for i in 0..=MAX_BANS as u32 {
            b.ban_ip(IpAddr::from(i.to_be_bytes()));
        }
        assert!(!b.addr_banned(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 1)));
        assert!(b.addr_banned(SocketAddr::new(IpAddr::from([0, 0, 0, 1]), 1)));
        assert_eq!(b.ips.order.len(), MAX_BANS);
    }
}
