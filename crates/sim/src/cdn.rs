//! The CDN of a simulated stream: an HTTP mirror of every piece with one shared capacity and a
//! fixed RTT to every viewer, and what a viewer's CDN fallback policy sees of its node.
//!
//! Which pieces a viewer fetches from the CDN, and when, is decided by core's
//! [`peercdn_core::live::fallback::FallbackPolicy`] (the engine's `cdn/fallback.rs` runs the
//! same one); this module only models the mirror: a fetch leaves the CDN's uplink (one FIFO at
//! its capacity) and reaches the viewer half an RTT later, then takes its downlink. A playlist poll
//! answers after one RTT with the newest piece. Not modelled: HTTP errors, caching tiers,
//! per-request overheads.

use std::collections::BTreeSet;

use peercdn_core::live::fallback::WindowView;
use peercdn_core::live::swarm::LiveSwarm;

use crate::link::wire_time;
use crate::queue::Nanos;

/// The mirror's capacity and distance.
#[derive(Debug, Clone)]
pub struct Cdn {
    /// Upload capacity, bytes per second.
    pub bytes_s: u64,
    /// RTT to every viewer, nanoseconds.
    pub rtt: Nanos,
    free: Nanos,
}

impl Cdn {
    /// A mirror of `bps` bits per second at `rtt_ms` from everyone.
    pub fn new(bps: u64, rtt_ms: u32) -> Cdn {
        Cdn {
            bytes_s: (bps / 8).max(1),
            rtt: u64::from(rtt_ms) * 1_000_000,
            free: 0,
        }
    }

    /// When `size` bytes asked for at `now` reach the viewer (which then books its downlink
    /// with [`crate::link::Access::receive`]).
    pub fn fetch(&mut self, now: Nanos, size: usize) -> Nanos {
        // The request takes half an RTT to get there; the answer the other half.
        let left = self.free.max(now + self.rtt / 2) + wire_time(size, self.bytes_s);
        self.free = left;
        left + self.rtt / 2
    }
}

/// A node's window as its fallback policy sees it.
pub struct View<'a> {
    /// The node's swarm (its edge).
    pub swarm: &'a LiveSwarm,
    /// Held pieces.
    pub held: &'a BTreeSet<u32>,
    /// Payload bytes received from peers.
    pub peer_bytes: u64,
    /// The player's playhead.
    pub playhead: Option<u32>,
    /// The newest piece the CDN's playlist listed.
    pub cdn_edge: Option<u32>,
}

impl WindowView for View<'_> {
    fn edge(&self) -> Option<u32> {
        self.swarm.edge().max(self.cdn_edge)
    }
    fn peer_bytes(&self) -> u64 {
        self.peer_bytes
    }
    fn readers(&self) -> usize {
        1
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
