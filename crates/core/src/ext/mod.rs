//! The BEP 10 extension layer shared by the VoD swarm ([`crate::swarm`]) and the live swarm
//! ([`crate::live::swarm`]): one module per extension, each split the way rust-libp2p splits a
//! protocol — the codec (from [`crate::wire::ext`] or [`crate::live`]), the per-connection
//! state, and the node state — so a new extension (`pc_search`, receipts) is one more module
//! here, not a third copy in each swarm.
//!
//! - [`handshake`]: the extensions a swarm speaks ([`handshake::Extension`]), our BEP 10
//!   handshake from that list, and theirs parsed into [`handshake::PeerExtensions`].
//! - [`metadata`]: BEP 9 — serving the info dictionary, and fetching it with retries and
//!   backoff, settling peers that announce different sizes by the info hash.
//! - [`pex`]: BEP 11 — per-peer sent sets and due times, the node-wide interval.
//! - [`peer`]: the per-peer traffic record and its smoothed rates.
//! - [`choke`]: BEP 6 choke plumbing (CHOKE plus REJECT for the requests it drops).
//! - [`search`]: `pc_search` — catalogue records pushed (gossip) and queried between peers; the
//!   codec and the per-connection budget (the catalogue itself is the engine's).
//! - [`receipt`]: `pc_receipt` — node keys proven by signing the other side's nonce, receipts
//!   passed between peers, and the book of verified bytes per uploader key.
//! - [`holepunch`]: BEP 55 `ut_holepunch` — the codec, the relay's rule, the per-peer budget.
//!
//! What this layer must not touch: policy. Who gets upload slots, which pieces to ask for, the
//! live window, bans by address — those stay with the swarms, the choker and the connection
//! manager. Like the rest of core it reads no clock: every input carries `now`, and state with
//! deadlines offers `poll_timeout` / `handle_timeout`.

pub mod choke;
pub mod handshake;
pub mod holepunch;
pub mod metadata;
pub mod peer;
pub mod pex;
pub mod receipt;
pub mod search;

/// The swarms' handle for one connection (unique per swarm, never reused). Both
/// [`crate::swarm::PeerKey`] and [`crate::live::swarm::PeerKey`] are this type.
pub type PeerKey = u64;
