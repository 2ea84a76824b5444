//! # peercdn-engine — the runtime
//!
//! Pumps the sans-IO state machines of `peercdn-core` over tokio: TCP peer connections, disk
//! storage that verifies every piece, live [`ingest`] of MPEG-TS sources, tracker clients
//! (HTTP BEP 3/23, UDP BEP 15), rate limits,
//! the node key, the [`catalog`] of signed records P2P search indexes, and the [`session`] that
//! owns every swarm.
//!
//! Architecture invariant: no HTTP status codes, JSON or CLI concerns here; errors are `thiserror`
//! enums that say what went wrong in engine terms.
#![deny(missing_docs)]

pub mod catalog;
pub mod channel;
pub mod clock;
pub mod create;
pub mod dht;
pub mod gossip;
pub mod host;
pub mod ingest;
pub mod ledger;
pub mod live;
pub mod lsd;
pub mod nat;
pub mod nodekey;
pub mod peer;
pub mod ratelimit;
pub mod receipts;
pub mod session;
pub mod storage;
pub mod stream;
pub mod torrent;
pub mod tracker;
pub mod units;
pub mod utp;
pub mod webseed;
