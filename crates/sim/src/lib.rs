//! peercdn's simulator: a deterministic discrete-event simulation of a live stream's swarm
//! that runs the **real** core state machines — [`peercdn_core::live::swarm::LiveSwarm`] and
//! [`peercdn_core::conn::ConnManager`], under their `poll_timeout` / `handle_timeout` time
//! contract — over modelled links, to see what the protocol does at audience sizes no
//! machine can run as processes.
//!
//! Layout:
//! - [`scenario`]: what a run models (stream, capacities, RTTs, NAT, arrivals, churn) and the
//!   goal scenario;
//! - [`queue`]: the event queue and the virtual clock (no clock is read);
//! - [`link`]: the flow-level link model — what it models and what it does not;
//! - [`cdn`]: the optional CDN mirror viewers fall back to (the policy is core's);
//! - [`sim`]: the nodes (swarm + connection manager + the engine's duties), the run loop;
//! - [`player`]: the player model (start, stall, skip; join time, delay, continuity);
//! - [`metrics`]: the report (JSON), histograms, the run's own cost;
//! - [`svg`]: the pictures (delay CDF, audience over time, relay depth).
//!
//! Same seed, same run: every random draw comes from one seeded ChaCha RNG in event order,
//! events at one instant run in the order they were scheduled, nothing iterates a hash map,
//! and the only clock read measures the simulator's own cost ([`metrics::Stopwatch`]).
//!
//! Usage: `Sim::new(Scenario::goal(1000)).run()` gives a [`Report`]; `peercdn sim` wraps
//! it with a progress bar, a table, the JSON and the SVG files.
//!
//! Not modelled (yet): BEP 9 metadata fetch, DHT, packet loss
//! and TCP dynamics (see [`link`]), adversaries.

#![deny(missing_docs)]

pub mod cdn;
pub mod link;
pub mod metrics;
pub mod player;
pub mod queue;
pub mod scenario;
pub mod sim;
pub mod svg;

pub use metrics::Report;
pub use scenario::{Arrival, Scenario};
pub use sim::Sim;
