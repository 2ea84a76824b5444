//! Tests of a connection's writer over a real loopback TCP pair: what it sends, in what order,
//! and what it reports; and the options every peer TCP socket gets.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use peercdn_core::id::{InfoHash, PeerId};
use peercdn_core::metainfo::{FileEntry, Info};
use peercdn_core::wire::{self, BlockRef, Handshake, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::stream::{accept, Encryption, Transport, Writer, NOTSENT_LOWAT};
use super::{Connection, Outgoing, PeerEvent};
use crate::ratelimit::RateLimiter;
use crate::storage::{sha1_piece, Storage};

const PIECE: u32 = 32 * 1024;
const PIECES: u32 = 8;

/// A storage of `PIECES` pieces of distinct bytes, all written.
fn storage(dir: &std::path::Path) -> (Arc<OnceLock<Arc<Storage>>>, Vec<u8>) {
    let data: Vec<u8> = (0..PIECE * PIECES).map(|i| (i % 251) as u8).collect();
    let info = Info {
        name: "data.bin".into(),
        piece_length: PIECE,
        pieces: data.chunks(PIECE as usize).map(sha1_piece).collect(),
        files: vec![FileEntry {
            path: vec![],
            length: data.len() as u64,
            offset: 0,
            pad: false,
        }],
        private: false,
        multi_file: false,
    };
    let st = Storage::open(dir, &info).unwrap();
    for (i, piece) in data.chunks(PIECE as usize).enumerate() {
        st.write_piece(i as u32, piece).unwrap();
    }
    let cell = OnceLock::new();
    let _ = cell.set(Arc::new(st));
    (Arc::new(cell), data)
}

/// A TCP pair on loopback: (our end, accepted with a plain handshake; the other end).
async fn pair() -> (super::PeerStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut them = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (ours, _) = listener.accept().await.unwrap();
    let hs = Handshake::ours(InfoHash([7; 20]), PeerId([9; 20]));
    them.write_all(&hs.encode()).await.unwrap();
    let (stream, _) = accept(Transport::Tcp(ours), Encryption::Prefer, Vec::new)
        .await
        .unwrap();
    (stream, them)
}

fn block(index: u32, begin: u32) -> BlockRef {
    BlockRef {
        index,
        begin,
        len: wire::BLOCK_LEN,
    }
}

/// More blocks than one read batch, interleaved with messages and a block that cannot be read
/// (the reading stage runs ahead of the writing one): everything arrives in the order it was
/// queued, each block with its bytes from storage, and each block is reported once — sent, or
/// not sent for the unreadable one.
#[tokio::test]
async fn the_writer_sends_in_queue_order_and_reports_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let (st, data) = storage(dir.path());
    let (stream, mut them) = pair().await;
    let (events_tx, mut events) = mpsc::channel(1024);
    let addr = "127.0.0.1:1".parse().unwrap();
    let unlimited = || [RateLimiter::unlimited(), RateLimiter::unlimited()];
    let conn = Connection::spawn(1, stream, addr, events_tx, st, unlimited(), unlimited());

    let blocks: Vec<BlockRef> = (0..PIECES)
        .flat_map(|i| [block(i, 0), block(i, wire::BLOCK_LEN)])
        .collect();
    let mut expected = Vec::new();
    for (n, b) in blocks.iter().cycle().take(150).enumerate() {
        if n % 40 == 0 {
            assert!(conn.send(Outgoing::Msg(Message::Have(n as u32))));
            expected.push(Message::Have(n as u32));
        }
        if n == 70 {
            // Beyond the last piece: storage refuses it.
            assert!(conn.send(Outgoing::Block(block(PIECES, 0))));
        }
        assert!(conn.send(Outgoing::Block(*b)));
        let at = (b.index * PIECE + b.begin) as usize;
        expected.push(Message::Piece {
            index: b.index,
            begin: b.begin,
            data: bytes::Bytes::copy_from_slice(&data[at..at + b.len as usize]),
        });
    }

    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match wire::decode(&mut buf, super::MAX_MESSAGE_LEN).unwrap() {
            Some(m) => got.push(m),
            None => {
                assert!(them.read_buf(&mut buf).await.unwrap() > 0, "closed early");
            }
        }
    }
    assert_eq!(got, expected);

    let (mut sent, mut unsent) = (0, Vec::new());
    while sent + unsent.len() < 151 {
        match events.recv().await.unwrap() {
            PeerEvent::BlockSent(1, _, true) => sent += 1,
            PeerEvent::BlockSent(1, b, false) => unsent.push(b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((sent, unsent), (150, vec![block(PIECES, 0)]));
}

/// Every peer TCP socket, dialled or accepted, keeps at most `NOTSENT_LOWAT` unsent bytes
/// (the writer's data leaves in its own time, not the receiver's; see `NOTSENT_LOWAT`).
#[tokio::test]
async fn peer_sockets_keep_little_unsent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = listener.local_addr().unwrap();
    let hs = Handshake::ours(InfoHash([7; 20]), PeerId([9; 20]));
    let dialled = tokio::spawn(async move {
        super::dial(
            to,
            None,
            hs.info_hash,
            hs.peer_id,
            Encryption::Plaintext,
            None,
        )
        .await
    });
    let (ours, _) = listener.accept().await.unwrap();
    let lowat = |w: &super::WriteHalf| match &w.wr {
        Writer::Tcp(t) => socket2::SockRef::from(t.as_ref())
            .tcp_notsent_lowat()
            .unwrap(),
        Writer::Utp(_) => panic!("not TCP"),
    };
    let (accepted, _) = accept(Transport::Tcp(ours), Encryption::Prefer, Vec::new)
        .await
        .unwrap();
    let (_, mut accepted) = accepted.into_split();
    assert_eq!(lowat(&accepted), NOTSENT_LOWAT);
    // Answer as another peer (the same ID would be a connection to ourselves).
    let answer = Handshake::ours(hs.info_hash, PeerId([8; 20]));
    accepted.wr.write_all(&answer.encode()).await.unwrap();
    let (dialled, _) = dialled.await.unwrap().unwrap();
    assert_eq!(lowat(&dialled.into_split().1), NOTSENT_LOWAT);
}
