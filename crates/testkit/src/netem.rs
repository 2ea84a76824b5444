//! An in-memory network of message links with latency, a rate limit and optional loss, on a
//! virtual clock (str0m's netem is the model).
//!
//! A link joins two connection ends, `(node, key)` each, the key being the one each node's swarm
//! knows the connection by. A message sent on a link is delivered at
//! `max(now, link free) + size / rate + delay`; a lost message (BEP 3 runs over TCP) is not
//! dropped but delivered one `rto` later, and messages on one link never overtake each other, as
//! on a TCP connection. Loss is drawn from a seeded [`Lcg`], so a run is the same every time.
//!
//! It owns only links and messages in flight: it knows nothing of swarms, codecs or what a
//! message means (the harnesses in [`crate::vod`] and [`crate::live`] do).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::Lcg;

/// One end of a link: the node and the key its swarm knows the connection by.
pub type End = (usize, u64);

/// How a link behaves (the same both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bytes per second each way; `None`: unlimited.
    pub rate: Option<u64>,
    /// Messages lost (and retransmitted one `rto` later), per mille.
    pub loss_per_mille: u16,
    /// Retransmission delay of a lost message.
    pub rto: Duration,
}

impl LinkSpec {
    /// No delay, no rate limit, no loss: delivery in the same instant.
    pub const IDEAL: LinkSpec = LinkSpec {
        delay: Duration::ZERO,
        rate: None,
        loss_per_mille: 0,
        rto: Duration::from_millis(200),
    };

    /// A link with this one-way delay, otherwise ideal.
    pub fn delay(delay: Duration) -> LinkSpec {
        LinkSpec {
            delay,
            ..LinkSpec::IDEAL
        }
    }

    /// The same link limited to `bytes_per_s` each way.
    pub fn rate(self, bytes_per_s: u64) -> LinkSpec {
        LinkSpec {
            rate: Some(bytes_per_s.max(1)),
            ..self
        }
    }

    /// The same link losing `per_mille` messages in a thousand (each retransmitted after `rto`).
    pub fn loss(self, per_mille: u16, rto: Duration) -> LinkSpec {
        LinkSpec {
            loss_per_mille: per_mille.min(1000),
            rto,
            ..self
        }
    }
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec::IDEAL
    }
}

#[derive(Debug)]
struct Direction {
    to: End,
    spec: LinkSpec,
    /// When the sender's side of the link has sent everything queued (rate limit).
    free_at: Option<Instant>,
    /// When the last message queued on this direction is delivered (no overtaking).
    last_delivery: Option<Instant>,
    /// Which link this is (a cut link's messages in flight are dropped).
    id: u64,
}

/// The network: links and the messages in flight, delivered in time order (FIFO among
/// messages due at the same instant).
#[derive(Debug)]
pub struct Netem<M> {
    links: BTreeMap<End, Direction>,
    in_flight: BTreeMap<(Instant, u64), (End, u64, M)>,
    seq: u64,
    next_link: u64,
    rng: Lcg,
    bytes_sent: u64,
}

impl Netem<bytes::BytesMut> {
    /// Encodes a peer wire message (through the real codec) and sends it from `from` at `now`;
    /// false when no link is there. Both scenario harnesses send this way.
    pub fn send_message(
        &mut self,
        now: Instant,
        from: End,
        msg: &peercdn_core::wire::Message,
    ) -> bool {
        let mut buf = bytes::BytesMut::new();
        peercdn_core::wire::encode(msg, &mut buf);
        let size = buf.len();
        self.send(now, from, buf, size)
    }
}

impl<M> Default for Netem<M> {
    fn default() -> Self {
        Netem::new(0x6e65_7465)
    }
}

impl<M> Netem<M> {
    /// An empty network; `seed` drives loss.
    pub fn new(seed: u64) -> Netem<M> {
        Netem {
            links: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            next_link: 0,
            rng: Lcg(seed),
            bytes_sent: 0,
        }
    }

    /// Joins `a` and `b` with a link that behaves as `spec` both ways.
    pub fn connect(&mut self, a: End, b: End, spec: LinkSpec) {
        self.next_link += 1;
        for (from, to) in [(a, b), (b, a)] {
            let d = Direction {
                to,
                spec,
                free_at: None,
                last_delivery: None,
                id: self.next_link,
            };
            self.links.insert(from, d);
        }
    }

    /// The far end of the link at `end`.
    pub fn peer_of(&self, end: End) -> Option<End> {
        self.links.get(&end).map(|d| d.to)
    }

    /// Closes the link at `end` (both ways); messages still in flight on it are dropped.
    /// Returns the far end.
    pub fn cut(&mut self, end: End) -> Option<End> {
        let to = self.links.remove(&end)?.to;
        self.links.remove(&to);
        Some(to)
    }

    /// Sends `msg` of `size` bytes from `from` at `now`; false when no link is there.
    pub fn send(&mut self, now: Instant, from: End, msg: M, size: usize) -> bool {
        let lost = {
            let Some(d) = self.links.get(&from) else {
                return false;
            };
            d.spec.loss_per_mille > 0 && self.rng.below(1000) < u64::from(d.spec.loss_per_mille)
        };
        let Some(d) = self.links.get_mut(&from) else {
            return false;
        };
        let start = d.free_at.map_or(now, |f| f.max(now));
        let on_wire = d.spec.rate.map_or(Duration::ZERO, |r| {
            Duration::from_nanos((size as u128 * 1_000_000_000 / u128::from(r)) as u64)
        });
        d.free_at = Some(start + on_wire);
        let mut at = start + on_wire + d.spec.delay;
        if lost {
            at += d.spec.rto;
        }
        if let Some(last) = d.last_delivery {
            at = at.max(last);
        }
        d.last_delivery = Some(at);
        let (to, id) = (d.to, d.id);
        self.seq += 1;
        self.bytes_sent += size as u64;
        self.in_flight.insert((at, self.seq), (to, id, msg));
        true
    }

    /// When the next message is due, if any is in flight.
    pub fn next_at(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// The next message due at or before `now`, with the end it arrives at; messages of links
    /// cut meanwhile are skipped.
    pub fn pop_due(&mut self, now: Instant) -> Option<(End, M)> {
        loop {
            let (&(at, seq), _) = self.in_flight.iter().next()?;
            if at > now {
                return None;
            }
            let (to, id, msg) = self.in_flight.remove(&(at, seq))?;
            // Delivered only if the link it was sent on still stands.
            if self.links.get(&to).is_some_and(|d| d.id == id) {
                return Some((to, msg));
            }
        }
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bytes sent so far, on all links.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock
mod tests {
    use super::*;

    #[test]
    fn delay_rate_and_order() {
        let t0 = Instant::now();
        let mut n: Netem<u32> = Netem::new(1);
        let spec = LinkSpec::delay(Duration::from_millis(50)).rate(1000);
        n.connect((0, 1), (1, 1), spec);
        assert!(n.send(t0, (0, 1), 1, 100)); // on the wire 100 ms, then 50 ms
        assert!(n.send(t0, (0, 1), 2, 100)); // queued behind the first
        assert_eq!(n.next_at(), Some(t0 + Duration::from_millis(150)));
        assert!(n.pop_due(t0 + Duration::from_millis(149)).is_none());
        assert_eq!(
            n.pop_due(t0 + Duration::from_millis(150)),
            Some(((1, 1), 1))
        );
        assert_eq!(n.next_at(), Some(t0 + Duration::from_millis(250)));
        assert_eq!(n.pop_due(t0 + Duration::from_secs(1)), Some(((1, 1), 2)));
        assert!(!n.send(t0, (5, 5), 3, 1), "no such link");
    }

    #[test]
    fn loss_delays_but_keeps_order() {
        let t0 = Instant::now();
        let mut n: Netem<u32> = Netem::new(7);
        let spec = LinkSpec::delay(Duration::from_millis(10)).loss(500, Duration::from_millis(300));
        n.connect((0, 1), (1, 1), spec);
        for i in 0..100 {
            n.send(t0, (0, 1), i, 10);
        }
        let mut got = Vec::new();
        while let Some((_, m)) = n.pop_due(t0 + Duration::from_secs(100)) {
            got.push(m);
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_cut_link_drops_what_is_in_flight() {
        let t0 = Instant::now();
        let mut n: Netem<u32> = Netem::new(1);
        n.connect((0, 1), (1, 1), LinkSpec::delay(Duration::from_millis(5)));
        n.send(t0, (0, 1), 1, 10);
        assert_eq!(n.cut((1, 1)), Some((0, 1)));
        assert!(n.pop_due(t0 + Duration::from_secs(1)).is_none());
        assert_eq!(n.in_flight(), 0);
    }
}
