//! Shared by the sequence fuzzers (`swarm_seq`, `live_seq`): the arbitrary peer messages they
//! drive into a swarm, and the table of connections the fuzzer (playing the engine) holds, which
//! is what "no action names an unknown peer" is checked against.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use peercdn_core::wire::{self, BlockRef, Message};

/// Most inputs in one sequence: bounds a run's time, not the swarm.
pub const MAX_OPS: usize = 400;
/// Most actions one input may produce: every queue the swarm fills is bounded, so more than this
/// means one is not.
pub const MAX_ACTIONS_PER_INPUT: usize = 20_000;

/// Inputs read one after another until the data runs out (or [`MAX_OPS`]): a `Vec`'s own
/// `Arbitrary` stops at a coin flip per element, which keeps sequences short.
pub fn ops<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> arbitrary::Result<Vec<T>> {
    let mut out = Vec::new();
    while !u.is_empty() && out.len() < MAX_OPS {
        out.push(T::arbitrary(u)?);
    }
    Ok(out)
}

/// A message from a peer, mostly well-formed (so the fuzzer gets past the codec), sometimes any
/// bytes through the real decoder.
#[derive(Arbitrary, Debug, Clone)]
pub enum Msg {
    /// Choke, unchoke, interested, not interested, keep-alive, have-all, have-none.
    Simple(u8),
    /// HAVE.
    Have(u16),
    /// BITFIELD with these bytes.
    Bitfield(Vec<u8>),
    /// REQUEST (or CANCEL / REJECT with `kind`).
    Block {
        kind: u8,
        index: u16,
        begin: u32,
        len: u32,
    },
    /// PIECE carrying `len` bytes of the real content (or garbage when `garbage`).
    Piece {
        index: u16,
        begin: u32,
        len: u16,
        garbage: bool,
    },
    /// An extended message with this ID and payload.
    Extended { id: u8, payload: Vec<u8> },
    /// Any bytes through `wire::decode` (skipped unless they decode to a message).
    Raw(Vec<u8>),
}

impl Msg {
    /// The wire message; `content(index, begin, len)` gives the real bytes of a block.
    pub fn to_message(&self, content: impl Fn(u32, u32, usize) -> Bytes) -> Option<Message> {
        Some(match self {
            Msg::Simple(k) => match k % 7 {
                0 => Message::Choke,
                1 => Message::Unchoke,
                2 => Message::Interested,
                3 => Message::NotInterested,
                4 => Message::KeepAlive,
                5 => Message::HaveAll,
                _ => Message::HaveNone,
            },
            Msg::Have(i) => Message::Have(u32::from(*i)),
            Msg::Bitfield(b) => Message::Bitfield(Bytes::copy_from_slice(b)),
            Msg::Block {
                kind,
                index,
                begin,
                len,
            } => {
                let b = BlockRef {
                    index: u32::from(*index),
                    begin: *begin,
                    len: *len,
                };
                match kind % 3 {
                    0 => Message::Request(b),
                    1 => Message::Cancel(b),
                    _ => Message::Reject(b),
                }
            }
            Msg::Piece {
                index,
                begin,
                len,
                garbage,
            } => {
                let (index, len) = (u32::from(*index), usize::from(*len));
                let data = if *garbage {
                    Bytes::from(vec![0xa5; len])
                } else {
                    content(index, *begin, len)
                };
                Message::Piece {
                    index,
                    begin: *begin,
                    data,
                }
            }
            Msg::Extended { id, payload } => Message::Extended {
                id: *id,
                payload: Bytes::copy_from_slice(payload),
            },
            Msg::Raw(bytes) => {
                let mut buf = BytesMut::from(&bytes[..]);
                wire::decode(&mut buf, 1 << 20).ok()??
            }
        })
    }
}

/// The connections the fuzzer holds, as the engine would: keys are never reused.
#[derive(Default)]
pub struct Conns {
    live: BTreeSet<u64>,
    next: u64,
}

impl Conns {
    /// A new connection's key and a distinct address for it.
    pub fn open(&mut self) -> (u64, SocketAddr) {
        self.next += 1;
        self.live.insert(self.next);
        let port = 1024 + (self.next % 60_000) as u16;
        (
            self.next,
            SocketAddr::from(([10, 0, (self.next >> 8) as u8, self.next as u8], port)),
        )
    }

    /// The `pick`th live connection (any, modulo the count).
    pub fn pick(&self, pick: u8) -> Option<u64> {
        if self.live.is_empty() {
            return None;
        }
        self.live
            .iter()
            .nth(usize::from(pick) % self.live.len())
            .copied()
    }

    /// Forgets a connection; false if it was not open.
    pub fn close(&mut self, key: u64) -> bool {
        self.live.remove(&key)
    }

    /// Whether `key` is an open connection.
    pub fn is_open(&self, key: u64) -> bool {
        self.live.contains(&key)
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}
