//! # peercdn-core — the sans-IO protocol core
//!
//! Everything peercdn knows about the BitTorrent protocol that does not need a socket, a file
//! or a clock lives here. Inputs are bytes and a `now` argument; outputs are values and actions.
//! The engine (`peercdn-engine`) pumps these types over tokio; the simulator drives the very same
//! types over modelled links.
//!
//! Layout:
//! - [`bencode`]: a bounded bencode decoder that keeps the raw byte span of every value (so the
//!   info dictionary is hashed exactly as received) and an encoder.
//! - [`id`]: `InfoHash` (the 40-hex content ID) and `PeerId` newtypes.
//! - [`metainfo`]: `.torrent` v1 read and write, with path validation.
//! - [`magnet`]: magnet URI parse and format (`xt`, `dn`, `tr`, `ws`, `x.pe`).
//! - [`mse`]: message stream encryption (MSE/PE), the obfuscated handshake before BEP 3's.
//! - [`wire`]: the peer wire codec (BEP 3, 6, 10, 9, 11).
//! - [`bitfield`]: piece sets.
//! - [`catalog`]: signed catalogue records (what P2P search indexes and passes on).
//! - [`receipt`]: signed, cumulative receipts of verified bytes and watch time (accounting).
//! - [`disconnect`]: why a swarm closes a connection ([`DisconnectReason`]), for logs, counters
//!   and bans.
//! - [`ext`]: the BEP 10 extension layer both swarms share (handshake, BEP 9 metadata, BEP 11
//!   PEX), the per-peer traffic record and BEP 6 choke plumbing.
//! - [`picker`]: which block to request next (rarest first, priorities, endgame).
//! - [`choker`]: who gets upload slots (tit-for-tat, optimistic unchoke, seed mode).
//! - [`conn`]: the connection manager shared by both swarms: candidates, dials, bans, one
//!   connection per peer ID, slots and eviction, DHT/tracker timers.
//! - [`swarm`]: the per-torrent state machine that turns peer events into actions.
//! - [`live`]: live streams: descriptor, signed piece header, `pc_live` messages, live swarm.
//! - [`ts`]: the MPEG-TS reader and live piece cutter (sync, PAT/PMT, keyframes, PTS/PCR).
//! - [`utp`]: uTP (BEP 29) with LEDBAT congestion control: one connection, sans IO.
//! - [`time`]: the time contract (`handle_timeout`/`poll_timeout`) and the wall clock derived
//!   from the one monotonic time input.
//!
//! Architecture invariant: this crate never depends on tokio, never opens a socket or a file and
//! never reads the clock. Panics are bugs; nothing a remote peer sends can cause one.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bencode;
pub mod bitfield;
pub mod catalog;
pub mod choker;
pub mod conn;
pub mod disconnect;
pub mod ext;
pub mod id;
pub mod live;
pub mod magnet;
pub mod metainfo;
pub mod mse;
pub mod picker;
pub mod receipt;
pub mod swarm;
pub mod time;
pub mod ts;
pub mod utp;
pub mod wire;

pub use bitfield::Bitfield;
pub use disconnect::{DisconnectCounts, DisconnectReason};
pub use id::{InfoHash, PeerId};
