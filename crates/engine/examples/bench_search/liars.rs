//! The benchmark's liars: raw peers that speak just enough BitTorrent and `pc_search` to join
//! the honest nodes' swarms and then lie, one of three ways (by liar number, in turn):
//!
//! - **Forge**: answers every query with records that match its words but whose signatures do
//!   not verify (a signed record with its title changed afterwards).
//! - **Drop**: takes the query and never answers (it holds one of the asker's fan-out slots).
//! - **Flood**: asks ten queries a second (far over the per-peer query budget), pushes valid
//!   records of its own publisher key at 50 a second (over the push budget, and up to the
//!   per-publisher cap), and answers every query with six validly signed records made for it:
//!   titles of exactly the query's words (a short title outranks an honest four-word one on
//!   text alone). All flooders sign with one key each and coordinate: the records made for a
//!   query are the same from every flooder, so they are vouched for by every flooder that
//!   answers.
//!
//! Liars sit in their own three /24 networks (127.200.0–2.x), as a Sybil attacker's hosts
//! would; honest nodes each have their own. A liar that is disconnected dials again after a
//! second (a banned one is refused at once).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use peercdn_core::catalog::{Description, Kind, Record};
use peercdn_core::ext::search::{SearchMsg, OUR_PC_SEARCH_ID, PC_SEARCH};
use peercdn_core::wire::ext::{ExtHandshake, EXT_HANDSHAKE_ID};
use peercdn_core::wire::{self, Handshake, Message};
use peercdn_core::{InfoHash, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How a liar lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    Forge,
    Drop,
    Flood,
}

/// What the liars did, summed.
#[derive(Debug, Default)]
pub struct LiarStats {
    /// Connections that completed the BitTorrent handshake.
    pub connected: AtomicU64,
    /// Queries received.
    pub queries: AtomicU64,
    /// Records sent in answers (forged or made up).
    pub answered: AtomicU64,
    /// Records pushed unasked.
    pub pushed: AtomicU64,
    /// Queries sent.
    pub asked: AtomicU64,
}

/// One liar.
pub struct Liar {
    pub lie: Lie,
    pub ip: Ipv4Addr,
    pub key: SigningKey,
    pub peer_id: PeerId,
}

impl Liar {
    /// Liar number `n` of the run.
    pub fn new(n: usize, key_seed: u64) -> Liar {
        let lie = [Lie::Forge, Lie::Drop, Lie::Flood][n % 3];
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&key_seed.to_le_bytes());
        secret[8..16].copy_from_slice(&(n as u64).to_le_bytes());
        secret[16] = 0x11;
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&(n as u64).to_le_bytes());
        Liar {
            lie,
            ip: Ipv4Addr::new(127, 200, (n % 3) as u8, (n / 3 + 1) as u8),
            key: SigningKey::from_bytes(&secret),
            peer_id: PeerId::ours(id),
        }
    }
}

/// The key every flooder signs made-up answers with (they coordinate).
pub fn answer_key(seed: u64) -> SigningKey {
    let mut secret = [0x22u8; 32];
    secret[..8].copy_from_slice(&seed.to_le_bytes());
    SigningKey::from_bytes(&secret)
}

/// A content ID from a text and a number (the same for every liar).
fn made_up_id(text: &str, i: u64) -> InfoHash {
    let mut id = [0u8; 20];
    for (k, b) in text.bytes().enumerate() {
        id[k % 20] = id[k % 20].wrapping_mul(31).wrapping_add(b);
    }
    id[12..20].copy_from_slice(&i.to_le_bytes());
    InfoHash(id)
}

/// Records for `text` — validly signed by `key`, or (forge) with a title changed after signing.
fn answers(key: &SigningKey, text: &str, forge: bool, now: u64) -> Vec<Bytes> {
    (0..6u64)
        .filter_map(|i| {
            let desc = Description {
                title: text.to_string(),
                tags: vec![format!("x{i}")],
                ..Default::default()
            };
            let mut r =
                Record::sign(key, made_up_id(text, i), Kind::Vod, desc, now, now + i).ok()?;
            if forge {
                r.desc.title = format!("{text} {text}");
            }
            Some(Bytes::from(r.encode()))
        })
        .collect()
}

/// Keeps a liar connected to `to` (in swarm `ih`) until the run ends: dials, lies, dials again
/// a second after each disconnection.
pub async fn run(liar: Arc<Liar>, to: SocketAddr, ih: InfoHash, seed: u64, stats: Arc<LiarStats>) {
    loop {
        if let Ok(sock) = dial(&liar, to, ih).await {
            stats.connected.fetch_add(1, Ordering::Relaxed);
            let _ = lie(&liar, sock, seed, &stats).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn dial(liar: &Liar, to: SocketAddr, ih: InfoHash) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((liar.ip, 0)))?;
    let mut sock = socket.connect(to).await?;
    sock.write_all(&Handshake::ours(ih, liar.peer_id).encode())
        .await?;
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    sock.read_exact(&mut hs).await?;
    let mut ours = ExtHandshake::ours(None, None);
    ours.m.push((PC_SEARCH.to_string(), OUR_PC_SEARCH_ID));
    let mut out = BytesMut::new();
    for m in [
        Message::Extended {
            id: EXT_HANDSHAKE_ID,
            payload: ours.encode(),
        },
        Message::HaveNone,
        Message::Interested,
    ] {
        wire::encode(&m, &mut out);
    }
    sock.write_all(&out).await?;
    Ok(sock)
}

/// Reads the honest node's messages and lies, until it hangs up.
async fn lie(
    liar: &Liar,
    mut sock: TcpStream,
    seed: u64,
    stats: &LiarStats,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(1 << 16);
    let mut theirs: Option<u8> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n: u64 = 0;
    let answer_key = answer_key(seed);
    loop {
        let mut out = BytesMut::new();
        tokio::select! {
            read = sock.read_buf(&mut buf) => {
                if read? == 0 {
                    return Ok(());
                }
                while let Ok(Some(msg)) = wire::decode(&mut buf, 1 << 20) {
                    let Message::Extended { id, payload } = msg else { continue };
                    if id == EXT_HANDSHAKE_ID {
                        if let Ok(hs) = ExtHandshake::decode(&payload) {
                            theirs = hs.m.iter().find(|(k, _)| k == PC_SEARCH).map(|(_, v)| *v);
                        }
                        continue;
                    }
                    let (Some(to), true) = (theirs, id == OUR_PC_SEARCH_ID) else { continue };
                    let Ok(SearchMsg::Query { qid, text, .. }) = SearchMsg::decode(&payload) else {
                        continue;
                    };
                    stats.queries.fetch_add(1, Ordering::Relaxed);
                    let now = peercdn_engine::clock::unix_secs();
                    let records = match liar.lie {
                        Lie::Drop => continue,
                        Lie::Forge => answers(&liar.key, &text, true, now),
                        Lie::Flood => answers(&answer_key, &text, false, now),
                    };
                    stats.answered.fetch_add(records.len() as u64, Ordering::Relaxed);
                    let m = SearchMsg::Results { qid, records, done: true };
                    wire::encode(&Message::Extended { id: to, payload: m.encode().into() }, &mut out);
                }
            }
            _ = tick.tick() => {
                let Some(to) = theirs.filter(|_| liar.lie == Lie::Flood) else { continue };
                let now = peercdn_engine::clock::unix_secs();
                // Five records and one query per tick: 50 records and 10 queries a second.
                let records: Vec<Bytes> = (0..5)
                    .filter_map(|_| {
                        n += 1;
                        let desc = Description {
                            title: format!("{} {}", crate::word((n * 7) as usize % 400), crate::word((n * 13) as usize % 400)),
                            ..Default::default()
                        };
                        let r = Record::sign(&liar.key, made_up_id("flood", n), Kind::Vod, desc, now, 1).ok()?;
                        Some(Bytes::from(r.encode()))
                    })
                    .collect();
                stats.pushed.fetch_add(records.len() as u64, Ordering::Relaxed);
                stats.asked.fetch_add(1, Ordering::Relaxed);
                for m in [
                    SearchMsg::Push(records),
                    SearchMsg::Query { qid: n as u32, text: crate::word(n as usize % 400), category: String::new(), kind: None },
                ] {
                    wire::encode(&Message::Extended { id: to, payload: m.encode().into() }, &mut out);
                }
            }
        }
        if !out.is_empty() {
            sock.write_all(&out).await?;
        }
    }
}
