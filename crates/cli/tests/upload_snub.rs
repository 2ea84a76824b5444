//! Upload slots against peers that request and never read, whole processes: a `peercdn
//! publish` seeder, 40 raw TCP peers (handshake, interested, requests, and never a byte read),
//! and an honest `peercdn get` that must complete.
#![allow(clippy::disallowed_methods)] // tests: a real clock to bound a wait

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use peercdn_core::metainfo::Metainfo;
use peercdn_core::wire::{self, BlockRef, Handshake, Message};
use peercdn_core::PeerId;

use common::*;

/// Peers that never read.
const FAKES: usize = 40;

/// One peer that requests and never reads: after the handshake it reads nothing, and sends
/// INTERESTED and a fresh batch of valid requests every 500 ms (requests sent while choked
/// are dropped, and it cannot see the UNCHOKE) until `stop`.
fn never_reads(
    port: u16,
    m: &Metainfo,
    n: u8,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (ih, plen, pieces) = (m.info_hash, m.info.piece_length, m.info.num_pieces());
    std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        let mut id = [0u8; 12];
        id[0] = n;
        if s.write_all(&Handshake::ours(ih, PeerId::ours(id)).encode())
            .is_err()
        {
            return;
        }
        let mut hs = [0u8; 68];
        if s.read_exact(&mut hs).is_err() {
            return;
        }
        let per_piece = plen / wire::BLOCK_LEN;
        let mut next = u32::from(n) * 7;
        while !stop.load(Ordering::Relaxed) {
            let mut out = BytesMut::new();
            wire::encode(&Message::Interested, &mut out);
            for _ in 0..64 {
                let index = (next / per_piece) % (pieces - 1);
                let begin = (next % per_piece) * wire::BLOCK_LEN;
                wire::encode(
                    &Message::Request(BlockRef {
                        index,
                        begin,
                        len: wire::BLOCK_LEN,
                    }),
                    &mut out,
                );
                next = next.wrapping_add(1);
            }
            // Our own send buffer may fill too if the seeder stops reading us: never block.
            let _ = s.write_all(&out);
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

/// Peers that request and never read held a seeder's upload slots: their blocks sat in the
/// seeder's writers (reported sent before they reached the socket), the choker kept them
/// unchoked, and an honest downloader waited for the optimistic slot (tried: with 40 of them
/// it got nothing in 90 s; with 10 it waited 8.6 s instead of 0.1 s). Now a peer whose blocks
/// do not drain loses its slot to a waiting peer, blocks count as sent only once the socket
/// took them, and the download completes.
#[test]
fn forty_peers_that_never_read_do_not_starve_a_downloader() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let seeder = peercdn_publisher(d, "content", 11, &[]);
    let m = Metainfo::from_bytes(&std::fs::read(&seeder.torrent).expect("torrent")).expect("parse");
    let stop = Arc::new(AtomicBool::new(false));
    let fakes: Vec<_> = (0..FAKES)
        .map(|i| never_reads(seeder.port, &m, i as u8 + 1, stop.clone()))
        .collect();
    // Let them take the slots first.
    std::thread::sleep(Duration::from_secs(3));

    let out = d.join("out");
    let started = Instant::now();
    let mut get = peercdn_get(d, "get", seeder.torrent_str(), &out, &[seeder.addr()], &[]);
    let status = get.wait(Duration::from_secs(120));
    eprintln!(
        "downloaded in {:?} beside {FAKES} peers that never read",
        started.elapsed()
    );
    assert!(status.success(), "get failed:\n{}", get.log_text());
    assert_same_tree(&seeder.src, &out.join("content"));

    stop.store(true, Ordering::Relaxed);
    for f in fakes {
        let _ = f.join();
    }
}
