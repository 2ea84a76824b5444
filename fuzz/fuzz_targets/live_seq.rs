//! Sequence fuzzer for the live swarm: arbitrary sequences of connections, peer messages (raw
//! and well-formed), `pc_live` windows and announcements with validly signed, forged or stale
//! headers, piece data, BEP 9 payloads, closes, time advances, the source's new pieces and the
//! engine's completions (payload checks, block reads) driven into `LiveSwarm` through its public
//! API, the fuzzer playing the engine. Besides "no panic" it checks:
//! - a deadline `handle_timeout` handled is not still due (the engine's loop would spin);
//! - no action names a connection the engine does not hold, and none follows its `Disconnect`;
//! - a completed piece carries a header signed by the stream's key; blocks to serve are of
//!   pieces the swarm holds; metadata handed up hashes to the content ID;
//! - one input yields a bounded number of actions; the swarm never counts more peers than the
//!   engine holds.
#![no_main]

#[path = "seq/mod.rs"]
mod seq;

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use peercdn_core::live::swarm::{Action, LiveConfig, LiveSwarm};
use peercdn_core::live::{
    block_hashes, LiveMsg, LiveParams, PieceHeader, FLAG_KEYFRAME, OUR_PC_LIVE_ID,
};
use peercdn_core::time::WallClock;
use peercdn_core::wire::ext::{ExtHandshake, MetadataMsg, OUR_UT_METADATA_ID};
use peercdn_core::wire::{BlockRef, Handshake, Message};
use peercdn_core::{InfoHash, PeerId};
use seq::{Conns, Msg, MAX_ACTIONS_PER_INPUT, MAX_OPS};

const PIECE_MS: u32 = 100;
const WALL_START_US: u64 = 1_700_000_000_000_000;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The broadcaster's swarm (makes pieces) rather than a viewer's.
    source: bool,
    /// A viewer that knows only the content ID (fetches the info dictionary over BEP 9).
    by_id: bool,
    /// Read to the end of the input (up to [`MAX_OPS`]).
    #[arbitrary(with = seq::ops)]
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect,
    Message {
        peer: u8,
        msg: Msg,
    },
    ExtHandshake {
        peer: u8,
        pc_live: u8,
        ut_metadata: u8,
        metadata_size: bool,
    },
    Window {
        peer: u8,
        first: u16,
        last: Option<u16>,
    },
    /// Announces pieces `index..index + count` with headers stamped `age_ms` ago.
    Have {
        peer: u8,
        index: u16,
        count: u8,
        age_ms: u16,
        len: u16,
        keyframe: bool,
        forged: bool,
    },
    /// A block of the real payload of `index` (as announced with length `len`), or an
    /// altered one.
    Piece {
        peer: u8,
        index: u16,
        len: u16,
        begin: u16,
        size: u16,
        corrupt: bool,
    },
    /// The block hashes of the payload of `index` (as announced with length `len`), or
    /// altered ones.
    Hashes {
        peer: u8,
        index: u16,
        len: u16,
        corrupt: bool,
    },
    MetadataPiece {
        peer: u8,
        piece: u8,
    },
    MetadataRequest {
        peer: u8,
        piece: u32,
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
    /// The source cuts its next piece (ignored by viewers).
    Produce {
        len: u16,
    },
    Complete {
        n: u8,
        read: bool,
        sent: bool,
    },
    Playhead(Option<u16>),
}

fn payload(index: u32, len: u16) -> Bytes {
    let len = 188 + usize::from(len) % 40_000;
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8)
        .collect::<Vec<u8>>()
        .into()
}

struct Engine {
    swarm: LiveSwarm,
    conns: Conns,
    now: Instant,
    wall: WallClock,
    key: SigningKey,
    params: LiveParams,
    id: InfoHash,
    next_index: u32,
    checks: Vec<(PieceHeader, Bytes)>,
    reads: Vec<(u64, BlockRef)>,
    edge: Option<u32>,
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
            Action::SendBlock { peer, block, data } => {
                assert!(self.conns.is_open(peer), "block for unknown peer {peer}");
                match data {
                    // Relayed before the piece is whole: it must be the genuine bytes (every
                    // block is verified before it is relayed).
                    Some(d) => {
                        let genuine = payload(block.index, 39_999);
                        let s = block.begin as usize;
                        assert_eq!(d.len(), block.len as usize);
                        assert!(
                            genuine.get(s..s + d.len()) == Some(&d[..]),
                            "relayed a bad block"
                        );
                    }
                    None => assert!(self.swarm.has(block.index), "serving a piece it lacks"),
                }
                self.reads.push((peer, block));
            }
            Action::Disconnect { peer, .. } => {
                assert!(self.conns.close(peer), "disconnect of unknown peer {peer}");
                self.swarm.remove_peer(peer);
            }
            Action::PieceComplete { header, payload } => {
                assert!(
                    header.verify(&self.params.pubkey, &self.id).is_ok(),
                    "unsigned header"
                );
                self.checks.push((header, payload));
            }
            Action::Edge(e) => self.edge = Some(self.edge.map_or(e, |x| x.max(e))),
            Action::Discovered(k, addrs) => {
                assert!(self.conns.is_open(k), "addresses from unknown peer {k}");
                assert!(addrs.len() <= 1000);
            }
            Action::Holepunch(addr) => assert_ne!(addr.port(), 0, "introduced to port 0"),
            Action::Search(k, _) => {
                assert!(self.conns.is_open(k), "search event of unknown peer {k}")
            }
            Action::Receipts(k, r) => {
                assert!(self.conns.is_open(k), "receipts of unknown peer {k}");
                assert!(r.iter().all(|r| r.verify().is_ok()), "unverified receipt");
            }
            Action::MetadataReceived(info) | Action::NotLive(info) => {
                assert_eq!(InfoHash::of_info(&info), self.id);
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

    fn wall_us(&self) -> u64 {
        self.wall.unix_us(self.now)
    }

    fn header(&self, index: u32, ts: u64, len: u16, keyframe: bool) -> PieceHeader {
        let flags = if keyframe { FLAG_KEYFRAME } else { 0 };
        let data = payload(index, len);
        PieceHeader::sign(
            &self.key,
            &self.id,
            index,
            ts,
            PIECE_MS * 1000,
            flags,
            &data,
        )
    }

    fn op(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Connect => {
                let (key, addr) = self.conns.open();
                let hs = Handshake::ours(self.id, PeerId::ours([key as u8; 12]));
                self.swarm.add_peer(key, addr, &hs, now);
            }
            Op::Message { peer, msg } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                // Blocks of piece `index` as if announced with the smallest length.
                let m = msg.to_message(|index, begin, len| {
                    let p = payload(index, 0);
                    let s = (begin as usize).min(p.len());
                    p.slice(s..(s + len).min(p.len()))
                });
                if let Some(m) = m {
                    self.swarm.on_message(k, m, now);
                }
            }
            Op::ExtHandshake {
                peer,
                pc_live,
                ut_metadata,
                metadata_size,
            } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                let size = metadata_size.then(|| self.params.info_bytes().len() as u32);
                let mut hs = ExtHandshake::ours(size, Some(7000));
                hs.m = vec![
                    ("pc_live".into(), pc_live),
                    ("ut_metadata".into(), ut_metadata),
                ];
                let m = Message::Extended {
                    id: 0,
                    payload: hs.encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::Window { peer, first, last } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                let base = self.next_index.saturating_sub(32);
                let w = LiveMsg::Window {
                    first: base + u32::from(first),
                    last: last.map(|l| base + u32::from(l)),
                };
                let m = Message::Extended {
                    id: OUR_PC_LIVE_ID,
                    payload: w.encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::Have {
                peer,
                index,
                count,
                age_ms,
                len,
                keyframe,
                forged,
            } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                let ts = self.wall_us().saturating_sub(u64::from(age_ms) * 1000);
                let first = self.next_index.saturating_sub(32) + u32::from(index);
                let headers: Vec<PieceHeader> = (first..first + u32::from(count % 16) + 1)
                    .map(|i| {
                        let mut h = self.header(i, ts, len, keyframe);
                        if forged {
                            h.signature[0] ^= 1;
                        }
                        h
                    })
                    .collect();
                let m = Message::Extended {
                    id: OUR_PC_LIVE_ID,
                    payload: LiveMsg::Have(headers).encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::Piece {
                peer,
                index,
                len,
                begin,
                size,
                corrupt,
            } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                let index = self.next_index.saturating_sub(32) + u32::from(index);
                let p = payload(index, len);
                let begin = (usize::from(begin) * 188).min(p.len());
                let end = (begin + usize::from(size)).min(p.len());
                let mut data = p.slice(begin..end);
                if corrupt && !data.is_empty() {
                    let mut d = data.to_vec();
                    d[0] ^= 0x5a;
                    data = d.into();
                }
                let m = Message::Piece {
                    index,
                    begin: begin as u32,
                    data,
                };
                self.swarm.on_message(k, m, now);
            }
            Op::Hashes {
                peer,
                index,
                len,
                corrupt,
            } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                let index = self.next_index.saturating_sub(32) + u32::from(index);
                let mut hashes = block_hashes(&payload(index, len));
                if corrupt {
                    hashes[0][0] ^= 1;
                }
                let m = Message::Extended {
                    id: OUR_PC_LIVE_ID,
                    payload: LiveMsg::Hashes { index, hashes }.encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::MetadataPiece { peer, piece } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                let info = Bytes::from(self.params.info_bytes());
                let start = (usize::from(piece) * 16384).min(info.len());
                let msg = MetadataMsg::Data {
                    piece: u32::from(piece),
                    total_size: info.len() as u32,
                    data: info.slice(start..(start + 16384).min(info.len())),
                };
                let m = Message::Extended {
                    id: OUR_UT_METADATA_ID,
                    payload: msg.encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::MetadataRequest { peer, piece } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                let msg = MetadataMsg::Request { piece };
                let m = Message::Extended {
                    id: OUR_UT_METADATA_ID,
                    payload: msg.encode(),
                };
                self.swarm.on_message(k, m, now);
            }
            Op::Close { peer } => {
                let Some(k) = self.conns.pick(peer) else {
                    return;
                };
                self.conns.close(k);
                self.swarm.remove_peer(k);
            }
            Op::Advance { ms } => {
                let end = self.now + Duration::from_millis(u64::from(ms) * 4);
                self.advance(end);
            }
            Op::Wake => self.wake(),
            Op::Produce { len } => {
                let i = self.next_index;
                self.next_index += 1;
                let h = self.header(i, self.wall_us(), len, i % 4 == 0);
                let hashes = block_hashes(&payload(i, len));
                self.swarm.on_piece_added(h, hashes, now);
            }
            Op::Complete { n, read, sent } => {
                if read && !self.reads.is_empty() {
                    let (k, block) = self.reads.remove(usize::from(n) % self.reads.len());
                    if self.conns.is_open(k) {
                        self.swarm.on_block_sent(k, block, sent);
                    }
                } else if !self.checks.is_empty() {
                    let (h, data) = self.checks.remove(usize::from(n) % self.checks.len());
                    let ok = h.check_payload(&data).is_ok();
                    self.swarm.on_piece_checked(h.index, ok, now);
                }
            }
            Op::Playhead(p) => {
                let p = p.map(|p| self.next_index.saturating_sub(32) + u32::from(p));
                self.swarm.set_playhead(p, now);
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let key = SigningKey::from_bytes(&[9; 32]);
    let params = LiveParams {
        name: "fuzz".into(),
        pubkey: key.verifying_key().to_bytes(),
        piece_duration_ms: PIECE_MS,
        max_piece_length: 1 << 20,
        window_s: 4,
    };
    let id = params.content_id();
    let now = Instant::now();
    let wall = WallClock::new(now, WALL_START_US);
    let cfg = LiveConfig {
        source: input.source,
        wall_clock: Some(wall),
        ..LiveConfig::default()
    };
    let swarm = if input.by_id && !input.source {
        LiveSwarm::new(id, cfg)
    } else {
        LiveSwarm::with_info(params.info_bytes().into(), cfg).expect("valid info")
    };
    let mut e = Engine {
        swarm,
        conns: Conns::default(),
        now,
        wall,
        key,
        params,
        id,
        next_index: 40,
        checks: Vec::new(),
        reads: Vec::new(),
        edge: None,
    };
    for op in input.ops.into_iter().take(MAX_OPS) {
        if matches!(op, Op::Produce { .. }) && !input.source {
            continue;
        }
        e.op(op);
        e.drain();
    }
});
