//! One peer connection: the handshakes ([`stream`]: plain or MSE/PE), then a reader task and
//! a writer in two stages (a fetcher and a writer task).
//!
//! The reader decodes messages with `peercdn_core::wire` (block payloads are split off the
//! receive buffer, not copied) and forwards them to the torrent's actor over a bounded channel,
//! so a slow actor slows the socket instead of growing a queue. The writer batches outgoing
//! messages into one buffer per write; blocks for upload are read from storage in batches on
//! the blocking pool by a third task ahead of it, so reading the next batch overlaps writing
//! this one. No task owns protocol state: that is the swarm's.
//!
//! A block is reported sent (`PeerEvent::BlockSent`) once the socket took it, not when it was
//! queued: a peer that requests and never reads then shows up in core as blocks that do not
//! drain, and loses its upload slot (`peercdn_core::choker`). What such a peer can take of the
//! node's upload budget is bounded: the limiter tokens of one write batch ([`WRITE_BATCH`]);
//! further blocks wait in the queue without tokens, and a write that makes no progress for
//! [`WRITE_STALL`] closes the connection.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peercdn_core::wire::{self, BlockRef, Message};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

pub mod stream;
#[cfg(test)]
mod tests;

pub use stream::{accept, dial, dial_utp, Encryption, PeerStream, Transport, Wire, Wires};
use stream::{ReadHalf, WriteHalf};

use crate::ratelimit::RateLimiter;
use crate::storage::Storage;

/// Longest message accepted from a peer: a 128 KiB block plus header, or a large bitfield /
/// extension message. Anything longer closes the connection.
pub const MAX_MESSAGE_LEN: u32 = 1 << 20;
/// Time allowed for connecting and exchanging handshakes.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages buffered from a reader to the actor.
pub const READER_QUEUE: usize = 256;
/// Messages buffered from the actor to a writer.
pub const WRITER_QUEUE: usize = 2048;
/// Bytes gathered into one socket write.
pub const WRITE_BATCH: usize = 256 * 1024;
/// A socket write that makes no progress for this long closes the connection (the peer does
/// not read what we send).
pub const WRITE_STALL: Duration = Duration::from_secs(60);

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No handshake within [`HANDSHAKE_TIMEOUT`].
    #[error("handshake timed out")]
    Timeout,
    /// The peer's BitTorrent handshake was malformed (or MSE came under `plaintext`).
    #[error("not a BitTorrent handshake: {0}")]
    Wire(#[from] wire::WireError),
    /// The MSE/PE handshake failed.
    #[error("encryption handshake: {0}")]
    Mse(#[from] peercdn_core::mse::MseError),
    /// A plain handshake under `require`.
    #[error("plaintext connection refused (encryption required)")]
    PlaintextRefused,
    /// We dialled with MSE/PE and the peer answered with a plain BitTorrent handshake (it took
    /// our key for one): it speaks plain only.
    #[error("the peer answered an encrypted dial in plain BitTorrent")]
    PlainAnswer,
    /// The peer is in another swarm.
    #[error("peer answered for another torrent")]
    WrongTorrent,
    /// We dialled ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
}

/// What a connection tells its torrent.
#[derive(Debug)]
pub enum PeerEvent {
    /// A message arrived.
    Message(u64, Message),
    /// A block from [`Outgoing::Block`] or [`Outgoing::Data`] was written (or dropped: `false`).
    BlockSent(u64, BlockRef, bool),
    /// The connection ended.
    Closed(u64, String),
}

/// What the torrent asks a connection to send.
#[derive(Debug)]
pub enum Outgoing {
    /// A protocol message.
    Msg(Message),
    /// Read this block from storage and send it as PIECE.
    Block(BlockRef),
    /// Send these bytes (already in memory, e.g. a live piece) as the PIECE for this block;
    /// like `Block`, it goes through the upload limiters and reports `BlockSent`.
    Data(BlockRef, Bytes),
    /// Bytes written as they are (our handshake answer on an accepted connection).
    Raw(Bytes),
}

/// Handles for a running connection, held by the torrent.
#[derive(Debug)]
pub struct Connection {
    /// Address.
    pub addr: SocketAddr,
    /// How its bytes travel.
    pub wire: Wire,
    /// Over uTP (else TCP).
    pub utp: bool,
    /// Came of a BEP 55 introduction (set by the host after spawning).
    pub holepunched: bool,
    /// Queue to the writer.
    pub tx: mpsc::Sender<Outgoing>,
    reader: tokio::task::JoinHandle<()>,
    fetcher: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Splits the stream and starts the reader and writer tasks.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        key: u64,
        stream: PeerStream,
        addr: SocketAddr,
        events: mpsc::Sender<PeerEvent>,
        storage: Arc<OnceLock<Arc<Storage>>>,
        down: [RateLimiter; 2],
        up: [RateLimiter; 2],
    ) -> Connection {
        let wire = stream.wire();
        let utp = stream.is_utp();
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let reader = tokio::spawn(read_loop(key, rd, events.clone(), down));
        let (ready_tx, ready_rx) = mpsc::channel(1);
        let fetcher = tokio::spawn(fetch_loop(key, rx, ready_tx, events.clone(), storage));
        let writer = tokio::spawn(write_loop(key, wr, ready_rx, events, up));
        Connection {
            addr,
            wire,
            utp,
            holepunched: false,
            tx,
            reader,
            fetcher,
            writer,
        }
    }

    /// Queues a message; false if the writer's queue is full or gone (the caller then drops
    /// the connection: a peer that does not read is not kept).
    pub fn send(&self, out: Outgoing) -> bool {
        self.tx.try_send(out).is_ok()
    }

    /// Stops its tasks.
    pub fn close(&self) {
        self.reader.abort();
        self.fetcher.abort();
        self.writer.abort();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

async fn read_loop(
    key: u64,
    mut rd: ReadHalf,
    events: mpsc::Sender<PeerEvent>,
    limits: [RateLimiter; 2],
) {
    let mut buf = std::mem::take(&mut rd.pending);
    buf.reserve(64 * 1024);
    let reason = loop {
        match wire::decode(&mut buf, MAX_MESSAGE_LEN) {
            Ok(Some(msg)) => {
                if events.send(PeerEvent::Message(key, msg)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break format!("protocol error: {e}"),
        }
        // Make room for at least the rest of the message being received.
        let need = if buf.len() >= 4 {
            (u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize + 4)
                .saturating_sub(buf.len())
        } else {
            0
        };
        buf.reserve(need.max(32 * 1024));
        match rd.read_buf(&mut buf).await {
            Ok(0) => break "closed by peer".to_string(),
            Ok(n) => {
                limits[0].acquire(n).await;
                limits[1].acquire(n).await;
            }
            Err(e) => break format!("read error: {e}"),
        }
    };
    let _ = events.send(PeerEvent::Closed(key, reason)).await;
}

/// Blocks read from storage in one trip to the blocking pool, and the most messages taken off
/// the writer's queue at a time.
const FETCH_BATCH: usize = 64;

/// The writer's first stage: takes messages off the torrent's queue in batches and reads the
/// batch's blocks from storage (one trip to the blocking pool, one buffer per batch), so the
/// second stage ([`write_loop`]) writes one batch while this one reads the next. At most one
/// read batch waits between them (`ready` holds one), so a connection holds at most three
/// batches of blocks in memory.
async fn fetch_loop(
    key: u64,
    mut rx: mpsc::Receiver<Outgoing>,
    ready: mpsc::Sender<Vec<Outgoing>>,
    events: mpsc::Sender<PeerEvent>,
    storage: Arc<OnceLock<Arc<Storage>>>,
) {
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = Vec::with_capacity(FETCH_BATCH);
        batch.push(first);
        while batch.len() < FETCH_BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        if batch.iter().any(|o| matches!(o, Outgoing::Block(_))) {
            let st = storage.clone();
            let read = tokio::task::spawn_blocking(move || read_blocks(&st, batch)).await;
            let Ok((read, failed)) = read else {
                let _ = events
                    .send(PeerEvent::Closed(key, "storage read task failed".into()))
                    .await;
                return;
            };
            batch = read;
            for b in failed {
                let _ = events.send(PeerEvent::BlockSent(key, b, false)).await;
            }
        }
        if ready.send(batch).await.is_err() {
            return;
        }
    }
}

/// Replaces each [`Outgoing::Block`] of `batch` by its data, all read into one buffer; the
/// blocks that could not be read are left out and returned.
fn read_blocks(
    storage: &OnceLock<Arc<Storage>>,
    batch: Vec<Outgoing>,
) -> (Vec<Outgoing>, Vec<BlockRef>) {
    let total: usize = batch
        .iter()
        .map(|o| match o {
            Outgoing::Block(b) => b.len as usize,
            _ => 0,
        })
        .sum();
    let mut buf = BytesMut::zeroed(total);
    let mut failed = Vec::new();
    let mut out = Vec::with_capacity(batch.len());
    for o in batch {
        let Outgoing::Block(b) = o else {
            out.push(o);
            continue;
        };
        let mut data = buf.split_to(b.len as usize);
        match storage.get().map(|st| st.read(b.index, b.begin, &mut data)) {
            Some(Ok(())) => out.push(Outgoing::Data(b, data.freeze())),
            _ => failed.push(b),
        }
    }
    (out, failed)
}

/// The writer's second stage: encodes each batch from [`fetch_loop`] into one buffer per
/// [`WRITE_BATCH`] bytes and writes it, block payloads through the upload limiters.
async fn write_loop(
    key: u64,
    mut wr: WriteHalf,
    mut ready: mpsc::Receiver<Vec<Outgoing>>,
    events: mpsc::Sender<PeerEvent>,
    limits: [RateLimiter; 2],
) {
    let mut out = BytesMut::with_capacity(WRITE_BATCH + 32 * 1024);
    // Blocks encoded into `out`, reported sent once it is written.
    let mut encoded: Vec<BlockRef> = Vec::with_capacity(FETCH_BATCH);
    let reason = loop {
        let Some(batch) = ready.recv().await else {
            return;
        };
        let mut failed = None;
        for o in batch {
            match o {
                Outgoing::Msg(m) => wire::encode(&m, &mut out),
                Outgoing::Raw(b) => out.extend_from_slice(&b),
                // `fetch_loop` turned every block into data.
                Outgoing::Block(b) => {
                    let _ = events.send(PeerEvent::BlockSent(key, b, false)).await;
                }
                Outgoing::Data(b, data) => {
                    limits[0].acquire(data.len()).await;
                    limits[1].acquire(data.len()).await;
                    wire::encode(
                        &Message::Piece {
                            index: b.index,
                            begin: b.begin,
                            data,
                        },
                        &mut out,
                    );
                    encoded.push(b);
                }
            }
            if out.len() >= WRITE_BATCH {
                if let Err(e) = flush(&mut wr, &mut out, &mut encoded, key, &events).await {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(f) = failed {
            break f;
        }
        if let Err(e) = flush(&mut wr, &mut out, &mut encoded, key, &events).await {
            break e;
        }
    };
    let _ = events.send(PeerEvent::Closed(key, reason)).await;
}

/// Writes `out` (no progress for [`WRITE_STALL`] is an error), then reports the blocks in it
/// sent. `Err` ends the connection with its reason.
async fn flush(
    wr: &mut WriteHalf,
    out: &mut BytesMut,
    encoded: &mut Vec<BlockRef>,
    key: u64,
    events: &mpsc::Sender<PeerEvent>,
) -> Result<(), String> {
    wr.seal(out);
    let mut pos = 0;
    while pos < out.len() {
        match tokio::time::timeout(WRITE_STALL, wr.wr.write(&out[pos..])).await {
            Ok(Ok(0)) => return Err("write error: connection closed".into()),
            Ok(Ok(n)) => pos += n,
            Ok(Err(e)) => return Err(format!("write error: {e}")),
            Err(_) => {
                return Err(format!(
                    "the peer read nothing for {}s",
                    WRITE_STALL.as_secs()
                ))
            }
        }
    }
    out.clear();
    for b in encoded.drain(..) {
        if events
            .send(PeerEvent::BlockSent(key, b, true))
            .await
            .is_err()
        {
            return Err("the swarm is gone".into());
        }
    }
    Ok(())
}
