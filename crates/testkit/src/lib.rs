//! peercdn's test support (`publish = false`; a dev-dependency only, never a dependency of a
//! library).
//!
//! It owns what tests across the crates share, so that no fixture is copied between them:
//! - [`netem`]: an in-memory network whose links have latency, a rate limit and optional loss
//!   (str0m's netem is the model), deterministic, on a virtual clock;
//! - [`mesh`]: what both harnesses share (addresses, dialling, delivery, disconnects);
//! - [`vod`] and [`live`]: the core scenario harnesses, several `Swarm`s or `LiveSwarm`s joined
//!   by [`netem`] links, every message through the real codec, the engine's duties (storing,
//!   hashing, reading, checking payloads) played by the harness — a swarm-policy finding becomes
//!   a test that runs in milliseconds;
//! - `fixtures` (feature `engine`): session configurations, content, a seeder and a viewer of
//!   a torrent on real sockets (127.0.0.1, ports chosen by the OS), temp dirs that clean up;
//! - [`Lcg`]: deterministic pseudo-random numbers without a `rand` dependency.
//!
//! It must not hold product logic: a harness plays the engine only as far as a test needs, and
//! any policy it finds missing belongs in `crates/core`. Tests may `unwrap` and panic here (a
//! panic is a failed test); nothing here runs outside tests.

#![deny(missing_docs)]

#[cfg(feature = "engine")]
pub mod fixtures;
pub mod live;
pub mod mesh;
pub mod meta;
pub mod netem;
pub mod vod;

/// Deterministic pseudo-random numbers (a 64-bit linear congruential generator).
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}
