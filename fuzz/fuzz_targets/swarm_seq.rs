//! Sequence fuzzer for the VoD swarm: arbitrary sequences of connections, peer messages (mostly
//! well-formed, some raw bytes through the real decoder), BEP 9/11 payloads, closes, time
//! advances and the engine's completions (piece checks, block reads) driven into `Swarm` through
//! its public API, the fuzzer playing the engine. Besides "no panic" it checks:
//! - a deadline `handle_timeout` handled is not still due (the engine's loop would spin);
//! - no action names a connection the engine does not hold, and none follows its `Disconnect`;
//! - stored blocks and pieces to verify lie inside the torrent; reads lie inside a piece;
//! - metadata handed up hashes to the info hash;
//! - one input yields a bounded number of actions, and the swarm never counts more peers than
//!   the engine holds.
#![no_main]

#[path = "seq/mod.rs"]
mod seq;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use peercdn_core::swarm::{Action, Swarm, SwarmConfig};
use peercdn_core::wire::ext::{ExtHandshake, MetadataMsg, OUR_UT_METADATA_ID, OUR_UT_PEX_ID};
use peercdn_core::wire::{BlockRef, Handshake, Message};
use peercdn_core::{Bitfield, InfoHash, PeerId};
use seq::{Conns, Msg, MAX_ACTIONS_PER_INPUT, MAX_OPS};

const PIECE: u32 = 32 * 1024;
const PIECES: u32 = 5;
const LEN: u64 = 4 * PIECE as u64 + 10_000;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Start with the metadata (else it must come over BEP 9).
    with_metadata: bool,
    /// Pieces held at the start (bit i: piece i).
    have: u8,
    /// Read to the end of the input (up to [`MAX_OPS`]).
    #[arbitrary(with = seq::ops)]
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect {
        fast: bool,
        extensions: bool,
    },
    Message {
        peer: u8,
        msg: Msg,
    },
    ExtHandshake {
        peer: u8,
        metadata_size: Option<u32>,
        ut_metadata: u8,
        ut_pex: u8,
    },
    /// A `ut_metadata` data message with the real bytes of `piece`.
    MetadataPiece {
        peer: u8,
        piece: u8,
    },
    MetadataRequest {
        peer: u8,
        piece: u32,
        reject: bool,
    },
    /// A `ut_pex` message with these addresses (port, last octet).
    Pex {
        peer: u8,
        added: Vec<(u16, u8)>,
        dropped: Vec<(u16, u8)>,
    },
    Close {
        peer: u8,
    },
    /// Moves the clock, waking the swarm at each `poll_timeout` on the way, as the engine does.
    Advance {
        ms: u16,
    },
    /// A spurious wake-up: `handle_timeout` now, whatever `poll_timeout` says.
    Wake,
    /// Completes the `n`th pending verification or read.
    Complete {
        n: u8,
        read: bool,
        sent: bool,
    },
    CompletedElsewhere {
        index: u8,
    },
    Reprioritized {
        cancel_below: Option<u8>,
    },
    SetMetadata,
}

fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 9)) as u8
}

fn info_bytes() -> Bytes {
    Bytes::from(format!("d6:lengthi{LEN}e4:name1:x12:piece lengthi{PIECE}ee").into_bytes())
}

fn piece_len(index: u32) -> u64 {
    (LEN - u64::from(index) * u64::from(PIECE)).min(u64::from(PIECE))
}

struct Engine {
    swarm: Swarm,
    conns: Conns,
    now: Instant,
    info: Bytes,
    hash: InfoHash,
    meta: bool,
    have: Bitfield,
    stored: BTreeMap<(u32, u32), Bytes>,
    verifies: Vec<u32>,
    reads: Vec<(u64, BlockRef)>,
}

impl Engine {
    fn drain(&mut self) {
        let mut n = 0;
        while let Some(a) = self.swarm.poll_action() {
            n += 1;
            assert!(n <= MAX_ACTIONS_PER_INPUT, "unbounded actions");
            self.exec(a);
        }
        assert!(self.swarm.peer_count() <= self.conns.len());
    }

    fn exec(&mut self, a: Action) {
        match a {
            Action::Send(k, _) => assert!(self.conns.is_open(k), "send to unknown peer {k}"),
            Action::Disconnect { peer, .. } => {
                assert!(self.conns.close(peer), "disconnect of unknown peer {peer}");
                self.swarm.remove_peer(peer);
            }
            Action::Store { index, begin, data } => {
                assert!(self.meta && index < PIECES);
                assert!(u64::from(begin) + data.len() as u64 <= piece_len(index));
                self.stored.insert((index, begin), data);
            }
            Action::Verify(index) => {
                assert!(self.meta && index < PIECES);
                self.verifies.push(index);
            }
            Action::Read { peer, block } => {
                assert!(self.conns.is_open(peer), "read for unknown peer {peer}");
                assert!(self.meta && block.index < PIECES && self.have.get(block.index));
                let end = u64::from(block.begin) + u64::from(block.len);
                assert!(end <= piece_len(block.index));
                self.reads.push((peer, block));
            }
            Action::MetadataReceived(info) => {
                assert_eq!(InfoHash::of_info(&info), self.hash);
                self.set_metadata();
            }
            Action::Discovered(k, addrs) => {
                assert!(self.conns.is_open(k), "addresses from unknown peer {k}");
                assert!(addrs.len() <= 1000);
            }
            Action::Holepunch(addr) => assert_ne!(addr.port(), 0, "introduced to port 0"),
            Action::Completed => assert!(self.meta),
            Action::Search(k, _) => {
                assert!(self.conns.is_open(k), "search event of unknown peer {k}")
            }
            Action::Receipts(k, r) => {
                assert!(self.conns.is_open(k), "receipts of unknown peer {k}");
                assert!(r.iter().all(|r| r.verify().is_ok()), "unverified receipt");
            }
        }
    }

    /// Moves the clock to `end`, waking the swarm at each deadline on the way; a deadline must
    /// never stay in the past once handled (the engine would spin).
    fn advance(&mut self, end: Instant) {
        for _ in 0..10_000 {
            match self.swarm.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.wake();
                    let now = self.now;
                    assert!(
                        self.swarm.poll_timeout().is_none_or(|t| t > now),
                        "a deadline stayed in the past"
                    );
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn wake(&mut self) {
        self.swarm.handle_timeout(self.now);
        self.drain();
    }

    fn set_metadata(&mut self) {
        if self.meta {
            return;
        }
        self.meta = true;
        let have = self.have.clone();
        let info = self.info.clone();
        self.swarm
            .set_metadata(info, PIECE, LEN, PIECES, &have, self.now);
    }

    fn verify(&mut self, index: u32) {
        // The piece is whole and right only if the stored blocks cover it with the real bytes.
        let mut at = 0u64;
        let mut ok = true;
        for (&(_, begin), data) in self.stored.range((index, 0)..=(index, u32::MAX)) {
            let base = u64::from(index) * u64::from(PIECE) + u64::from(begin);
            ok &= u64::from(begin) == at
                && data
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == byte_at(base + i as u64));
            at = u64::from(begin) + data.len() as u64;
        }
        ok &= at == piece_len(index);
        self.stored.retain(|(i, _), _| *i != index);
        if ok {
            self.have.set(index, true);
        }
        self.swarm.on_piece_verified(index, ok, self.now);
    }

    fn op(&mut self, op: Op) {
        let now = self.now;
        let peer = |c: &Conns, p: u8| c.pick(p);
        match op {
            Op::Connect { fast, extensions } => {
                let (key, addr) = self.conns.open();
                let mut hs = Handshake::ours(self.hash, PeerId::ours([key as u8; 12]));
                if !fast {
                    hs.reserved[7] &= !0x04;
                }
                if !extensions {
                    hs.reserved[5] &= !0x10;
                }
                self.swarm.add_peer(key, addr, &hs, now);
            }
            Op::Message { peer: p, msg } => {
                let Some(k) = peer(&self.conns, p) else {
                    return;
                };
                let m = msg.to_message(|index, begin, len| {
                    let base = u64::from(index) * u64::from(PIECE) + u64::from(begin);
                    (0..len as u64)
                        .map(|i| byte_at(base + i))
                        .collect::<Vec<u8>>()
                        .into()
                });
                if let Some(m) = m {
                    self.swarm.on_message(k, m, now);
                }
            }
            Op::ExtHandshake {
                peer: p,
                metadata_size,
                ut_metadata,
                ut_pex,
            } => {
                let Some(k) = peer(&self.conns, p) else {
                    return;
                };
                let mut hs = ExtHandshake::ours(
                    metadata_size.map(|s| {
                        if s % 2 == 0 {
                            self.info.len() as u32
                        } else {
                            s
                        }
                    }),
                    Some(6881),
                );
                hs.m = vec![
                    ("ut_metadata".into(), ut_metadata),
                    ("ut_pex".into(), ut_pex),
                ];
                let payload = hs.encode();
                self.swarm
                    .on_message(k, Message::Extended { id: 0, payload }, now);
            }
            Op::MetadataPiece { peer: p, piece } => {
                let Some(k) = peer(&self.conns, p) else {
                    return;
                };
                let start = (usize::from(piece) * 16384).min(self.info.len());
                let msg = MetadataMsg::Data {
                    piece: u32::from(piece),
                    total_size: self.info.len() as u32,
                    data: self.info.slice(start..(start + 16384).min(self.info.len())),
                };
                let m = Message::Extended {
                    id: OUR_UT_METADATA_ID,
                    payload: msg.encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::MetadataRequest {
                peer: p,
                piece,
                reject,
            } => {
                let Some(k) = peer(&self.conns, p) else {
                    return;
                };
                let msg = if reject {
                    MetadataMsg::Reject { piece }
                } else {
                    MetadataMsg::Request { piece }
                };
                let m = Message::Extended {
                    id: OUR_UT_METADATA_ID,
                    payload: msg.encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::Pex {
                peer: p,
                added,
                dropped,
            } => {
                let Some(k) = peer(&self.conns, p) else {
                    return;
                };
                let addr = |(port, o): (u16, u8)| std::net::SocketAddr::from(([10, 1, 0, o], port));
                let pex = peercdn_core::wire::ext::Pex {
                    added: added.iter().copied().map(addr).collect(),
                    added_flags: Vec::new(),
                    dropped: dropped.iter().copied().map(addr).collect(),
                };
                let m = Message::Extended {
                    id: OUR_UT_PEX_ID,
                    payload: pex.encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::Close { peer: p } => {
                let Some(k) = peer(&self.conns, p) else {
                    return;
                };
                self.conns.close(k);
                self.swarm.remove_peer(k);
            }
            Op::Advance { ms } => {
                let end = self.now + Duration::from_millis(u64::from(ms) * 16);
                self.advance(end);
            }
            Op::Wake => self.wake(),
            Op::Complete { n, read, sent } => {
                if read && !self.reads.is_empty() {
                    let (k, block) = self.reads.remove(usize::from(n) % self.reads.len());
                    // A read for a connection that closed meanwhile is dropped by the engine.
                    if self.conns.is_open(k) {
                        self.swarm.on_block_sent(k, block, sent);
                    }
                } else if !self.verifies.is_empty() {
                    let index = self.verifies.remove(usize::from(n) % self.verifies.len());
                    self.verify(index);
                }
            }
            Op::CompletedElsewhere { index } => {
                let index = u32::from(index) % PIECES;
                if self.meta && !self.have.get(index) {
                    self.have.set(index, true);
                    self.swarm.piece_completed_elsewhere(index, now);
                }
            }
            Op::Reprioritized { cancel_below } => {
                if let Some(p) = self.swarm.picker_mut() {
                    for i in 0..PIECES {
                        p.set_priority(i, cancel_below.unwrap_or(1) % 8);
                    }
                }
                self.swarm.reprioritized(now, cancel_below);
            }
            Op::SetMetadata => self.set_metadata(),
        }
    }
}

fuzz_target!(|input: Input| {
    let info = info_bytes();
    let hash = InfoHash::of_info(&info);
    let cfg = SwarmConfig {
        pex_interval: Some(Duration::from_secs(2)),
        ..SwarmConfig::default()
    };
    let mut have = Bitfield::new(PIECES);
    for i in 0..PIECES {
        have.set(i, input.have & (1 << i) != 0);
    }
    let mut e = Engine {
        swarm: Swarm::new(hash, cfg),
        conns: Conns::default(),
        now: Instant::now(),
        info,
        hash,
        meta: false,
        have: if input.with_metadata {
            have
        } else {
            Bitfield::new(PIECES)
        },
        stored: BTreeMap::new(),
        verifies: Vec::new(),
        reads: Vec::new(),
    };
    if input.with_metadata {
        e.set_metadata();
        e.drain();
    }
    for op in input.ops.into_iter().take(MAX_OPS) {
        e.op(op);
        e.drain();
    }
});
