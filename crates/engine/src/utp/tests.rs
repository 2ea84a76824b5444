use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Two sockets on loopback: 8 MiB one way and back through real UDP, in order and whole;
/// closing one end gives the other end-of-stream; the connections are then removed.
#[tokio::test]
async fn a_stream_crosses_real_udp_both_ways_and_closes() {
    let a = UtpSocket::bind(loopback(), false).unwrap();
    let b = UtpSocket::bind(loopback(), false).unwrap();
    let mut incoming = b.incoming().unwrap();
    let data: Vec<u8> = (0..8 << 20)
        .map(|i: u32| (i * 31 + i / 977) as u8)
        .collect();
    let dial = a.connect(b.local_addr().unwrap());
    let (dialled, accepted) = tokio::join!(dial, incoming.recv());
    let mut x = dialled.unwrap();
    let mut y = accepted.unwrap();
    assert_eq!(y.peer_addr(), a.local_addr().unwrap());

    let send = data.clone();
    let writer = tokio::spawn(async move {
        x.write_all(&send).await.unwrap();
        let mut back = vec![0u8; send.len()];
        x.read_exact(&mut back).await.unwrap();
        assert!(back == send);
        x
    });
    let mut got = vec![0u8; data.len()];
    y.read_exact(&mut got).await.unwrap();
    assert!(got == data);
    y.write_all(&got).await.unwrap();
    let x = writer.await.unwrap();
    drop(x);
    let mut rest = Vec::new();
    y.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    drop(y);
    for _ in 0..300 {
        if a.connections() == 0 && b.connections() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "connections left: {} and {}",
        a.connections(),
        b.connections()
    );
}

/// A dial to a UDP port nobody reads times out; to a uTP socket's port with an unknown
/// connection, a stray data packet is answered with a RESET. (Multi-threaded: the test blocks
/// on a std socket while the driver answers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_to_nobody_fails_and_strays_are_reset() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = UtpSocket::bind(loopback(), false).unwrap();
    let t = crate::clock::tokio_now();
    let r = a.connect(silent.local_addr().unwrap()).await;
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_secs(6));

    let stray = Packet {
        ty: utp::Type::Data,
        conn_id: 4242,
        ts_us: 0,
        ts_diff_us: 0,
        wnd: 0,
        seq: 1,
        ack: 1,
        sack: &[],
        payload: b"hello",
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = stray.encode(&mut buf);
    silent.send_to(&buf[..n], a.local_addr().unwrap()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Past the three SYNs of the failed dial, the RESET.
    loop {
        let (m, _) = silent.recv_from(&mut buf).unwrap();
        let p = Packet::decode(&buf[..m]).unwrap();
        if p.ty == utp::Type::Syn {
            continue;
        }
        assert_eq!(p.ty, utp::Type::Reset);
        assert_eq!(p.conn_id, 4242);
        break;
    }
}
