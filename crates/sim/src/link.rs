//! The flow-level link model: each node has an access link with an upload and a download
//! capacity; each pair of nodes has a one-way latency; a connection delivers in order.
//!
//! What is modelled:
//! - **Upload capacity**, shared by the blocks a node sends: its uplink is one FIFO queue
//!   drained at the node's rate — as the engine's upload limiter is, which only block payload
//!   passes — so the node's active transfers share it in the order its swarm hands out
//!   blocks (the swarm bounds that queue itself: blocks handed to the engine at a time). A
//!   block leaves the uplink at `max(now, uplink free) + size / rate`; that is when the swarm
//!   hears `on_block_sent`, as the engine reports a block once the socket took it.
//! - **Download capacity**, the same on the receiving side, booked when a block *reaches* the
//!   receiver (its uplink departure plus the latency): it is received at
//!   `max(reached, downlink free) + size / rate` ([`Access::receive`]). Booking it when the
//!   block was handed to the sender's uplink instead (as this model once did) put a block from
//!   an idle nearby peer behind one still queued for a second on a congested far one: every
//!   viewer that downloaded from a busy uploader saw all its other peers slowed to it too.
//! - **Control messages** (announcements, requests, chokes) are not rate-limited, as in the
//!   engine: they take the latency only, behind what was sent before on the same connection.
//! - **Latency**: each node draws half an RTT; a pair's one-way delay is the mean of both
//!   draws over two, so RTTs stay in the scenario's range.
//! - **Order**: messages on one connection never overtake each other (TCP), so a control
//!   message waits for a block sent before it on its connection, on both links.
//!
//! What is not: packet loss and retransmission, TCP slow start and congestion control (a
//! flow gets its share at once), queueing inside the network (only the access links
//! congest), per-connection fairness beyond the sender's own order, the bytes of TCP/IP
//! headers and of control messages against the capacities.

use crate::queue::Nanos;

/// One node's access link.
#[derive(Debug, Clone)]
pub struct Access {
    /// Upload capacity, bytes per second.
    pub up_bytes_s: u64,
    /// Download capacity, bytes per second.
    pub down_bytes_s: u64,
    /// This node's share of an RTT, microseconds (see the module doc).
    pub half_rtt_us: u64,
    up_free: Nanos,
    down_free: Nanos,
}

impl Access {
    /// An idle access link of these capacities (bits per second) and RTT share.
    pub fn new(up_bps: u64, down_bps: u64, half_rtt_us: u64) -> Access {
        Access {
            up_bytes_s: (up_bps / 8).max(1),
            down_bytes_s: (down_bps / 8).max(1),
            half_rtt_us,
            up_free: 0,
            down_free: 0,
        }
    }

    /// When the uplink has sent everything queued so far.
    pub fn up_free(&self) -> Nanos {
        self.up_free
    }

    /// `size` bytes reached this node at `now`: books the downlink and returns when they are
    /// received (behind what it is still receiving).
    pub fn receive(&mut self, now: Nanos, size: usize) -> Nanos {
        let done = self.down_free.max(now) + wire_time(size, self.down_bytes_s);
        self.down_free = done;
        done
    }
}

/// One-way latency between two nodes, nanoseconds.
pub fn one_way(a: &Access, b: &Access) -> Nanos {
    // RTT = (2·half_a + 2·half_b) / 2; one way is half of it.
    (a.half_rtt_us + b.half_rtt_us) * 1000 / 2
}

/// Time to put `size` bytes through a link of `rate` bytes per second, nanoseconds.
pub fn wire_time(size: usize, rate: u64) -> Nanos {
    (size as u128 * 1_000_000_000 / u128::from(rate.max(1))) as Nanos
}

/// Sends `size` bytes from `from` to `to` at `now` on a connection whose last message reached
/// `to` at `*last`; returns (when it left the sender's uplink, when it reaches the receiver,
/// which then books its downlink with [`Access::receive`]) and moves the uplink's queue and
/// `*last`.
pub fn transfer(
    from: &mut Access,
    to: &Access,
    last: &mut Nanos,
    now: Nanos,
    size: usize,
) -> (Nanos, Nanos) {
    let left = from.up_free.max(now) + wire_time(size, from.up_bytes_s);
    from.up_free = left;
    let reach = (left + one_way(from, to)).max(*last);
    *last = reach;
    (left, reach)
}

/// Sends a control message (not rate-limited) from `from` to `to` at `now` on a connection
/// whose last delivery was at `*last`; returns when it arrives and moves `*last`.
pub fn control(from: &Access, to: &Access, last: &mut Nanos, now: Nanos) -> Nanos {
    let arrive = (now + one_way(from, to)).max(*last);
    *last = arrive;
    arrive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_is_shared_and_order_kept() {
        // 8 kbit/s up = 1000 B/s; 80 ms RTT each side -> one way 40 ms.
        let mut a = Access::new(8_000, 8_000_000, 40_000);
        let mut b = Access::new(8_000, 8_000_000, 40_000);
        let c = Access::new(8_000, 8_000_000, 40_000);
        let (mut lab, mut lac) = (0, 0);
        let (l1, r1) = transfer(&mut a, &b, &mut lab, 0, 100);
        let (l2, r2) = transfer(&mut a, &c, &mut lac, 0, 100);
        assert_eq!(l1, 100_000_000); // 100 ms on the uplink
        assert_eq!(l2, 200_000_000); // behind the first
        assert_eq!(r1, 140_000_000);
        assert_eq!(r2, 240_000_000);
        // A tiny message after a big one on the same connection waits for it.
        let (_, r3) = transfer(&mut b, &a, &mut lab, 0, 1);
        assert!(r3 >= r1);
    }

    /// The downlink is booked when a block reaches the receiver, not when its sender queued
    /// it: a block from a fast, idle sender is not held behind one still waiting a second in
    /// a congested sender's uplink (the model once did that, and every viewer downloading
    /// from a busy peer saw its other peers slowed to that peer's pace).
    #[test]
    fn a_block_from_an_idle_sender_does_not_wait_for_a_congested_ones() {
        // `slow` has a second of backlog ahead of the block it sends to `r`.
        let mut slow = Access::new(8_000, 8_000_000, 0);
        let mut fast = Access::new(8_000_000, 8_000_000, 0);
        let mut r = Access::new(8_000_000, 8_000_000, 0);
        let (mut l1, mut l2) = (0, 0);
        let _ = transfer(&mut slow, &r, &mut l1, 0, 1_000); // 1 s on its uplink
        let (_, reach_slow) = transfer(&mut slow, &r, &mut l1, 0, 1_000);
        let (_, reach_fast) = transfer(&mut fast, &r, &mut l2, 0, 1_000);
        assert_eq!(reach_fast, 1_000_000, "1 ms on the fast uplink");
        // Received in the order they reach it: the fast one first.
        let got_fast = r.receive(reach_fast, 1_000);
        let got_slow = r.receive(reach_slow, 1_000);
        assert_eq!(got_fast, 2_000_000);
        assert_eq!(got_slow, reach_slow + 1_000_000);
        // Two that reach it at once share the downlink.
        assert_eq!(r.receive(5_000_000_000, 1_000), 5_001_000_000);
        assert_eq!(r.receive(5_000_000_000, 1_000), 5_002_000_000);
    }
}
