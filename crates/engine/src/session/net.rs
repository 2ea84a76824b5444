//! The peer listener: binding it (dual stack on `[::]`), accepting connections, reading their
//! handshakes and routing them — and peers found by LSD — to the torrent or live stream they
//! are for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peercdn_core::InfoHash;
use tokio::net::TcpListener;
use tracing::debug;

use super::{lock, Inner, MAX_HANDSHAKES_IN_FLIGHT};
use crate::live::actor::LiveCommand;
use crate::peer::{self, Transport};
use crate::torrent::Command;
use crate::utp::UtpStream;

/// Hands a peer found by LSD to the torrent, else the live stream, with that info hash
/// (without waiting: a full command queue drops it; LSD finds it again later).
pub(super) fn route_peer(inner: &Inner, ih: InfoHash, peer: SocketAddr) {
    if let Some(h) = lock(&inner.torrents).get(&ih) {
        let _ = h.tx.try_send(Command::AddPeers(vec![peer]));
        return;
    }
    if let Some(h) = lock(&inner.lives).get(&ih) {
        let _ = h.tx.try_send(LiveCommand::AddPeers(vec![peer]));
    }
}

pub(super) async fn accept_loop(listener: TcpListener, session: std::sync::Weak<Inner>) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES_IN_FLIGHT));
    loop {
        let (stream, addr) = match listener.accept().await {
            // On a dual-stack socket IPv4 peers arrive as `::ffff:a.b.c.d`: keep them IPv4.
            Ok((s, a)) => (s, SocketAddr::new(a.ip().to_canonical(), a.port())),
            Err(e) => {
                debug!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        incoming(&in_flight, &session, Transport::Tcp(stream), addr);
    }
}

/// Incoming uTP connections (the socket already canonicalised their addresses), as TCP ones.
pub(super) async fn utp_accept_loop(
    mut rx: tokio::sync::mpsc::Receiver<UtpStream>,
    session: std::sync::Weak<Inner>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES_IN_FLIGHT));
    while let Some(stream) = rx.recv().await {
        let addr = stream.peer_addr();
        incoming(&in_flight, &session, Transport::Utp(stream), addr);
    }
}

/// Reads an incoming connection's handshake (at most [`MAX_HANDSHAKES_IN_FLIGHT`] at once;
/// more are closed) and hands it to the torrent or live stream it is for.
fn incoming(
    in_flight: &Arc<tokio::sync::Semaphore>,
    session: &std::sync::Weak<Inner>,
    stream: Transport,
    addr: SocketAddr,
) {
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        debug!(%addr, "too many handshakes in flight: connection closed");
        return;
    };
    let session = session.clone();
    tokio::spawn(async move {
        let policy = match session.upgrade() {
            Some(inner) => inner.config.encryption,
            None => return,
        };
        let known = || match session.upgrade() {
            Some(inner) => inner.known_ids(),
            None => Vec::new(),
        };
        let hs = peer::accept(stream, policy, known).await;
        drop(permit);
        let (stream, hs) = match hs {
            Ok(x) => x,
            Err(e) => {
                debug!(%addr, "incoming connection dropped: {e}");
                return;
            }
        };
        let Some(inner) = session.upgrade() else {
            return;
        };
        // A uTP connection from where we are dialling too is the other half of an introduction
        // (both dialled at once through their NATs): it does not show we can be reached.
        let punched = stream.is_utp() && inner.utp.as_ref().is_some_and(|u| u.dialled(addr));
        inner.incoming.count(stream.is_utp(), addr.ip(), !punched);
        let handle = inner
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hs.info_hash)
            .cloned();
        let live = inner
            .lives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hs.info_hash)
            .map(|h| h.tx.clone());
        drop(inner);
        match (handle, live) {
            (Some(h), _) => {
                let _ =
                    h.tx.send_timeout(Command::Incoming(stream, addr, hs), Duration::from_secs(5))
                        .await;
            }
            (None, Some(tx)) => {
                let _ = tx
                    .send_timeout(
                        LiveCommand::Incoming(stream, addr, hs),
                        Duration::from_secs(5),
                    )
                    .await;
            }
            (None, None) => {
                debug!(%addr, id = %hs.info_hash, "incoming connection for an unknown ID")
            }
        }
    });
}

impl Inner {
    /// The IDs of every torrent and live stream held, for an MSE handshake to find the one a
    /// peer dialled for.
    fn known_ids(&self) -> Vec<InfoHash> {
        let mut ids: Vec<InfoHash> = lock(&self.torrents).keys().copied().collect();
        ids.extend(lock(&self.lives).keys().copied());
        ids
    }
}

/// The address the IPv4-only services (DHT, LSD) bind for a listen address: the IPv4 wildcard
/// when the node listens on the IPv6 wildcard (dual stack), else the address itself.
pub(super) fn ipv4_side(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv4Addr::UNSPECIFIED.into(),
        other => other,
    }
}

/// Binds the peer listener. The IPv6 wildcard (`[::]`) is dual stack — IPv4 peers too, whatever
/// the system's `bindv6only` — and falls back to the IPv4 wildcard on a host without IPv6.
pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let open = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(!addr.ip().is_unspecified())?;
        }
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        TcpListener::from_std(socket.into())
    };
    match open(addr) {
        Err(e) if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED && e.raw_os_error().is_some() => {
            debug!("no IPv6 listener ({e}): IPv4 only");
            open(SocketAddr::new(
                std::net::Ipv4Addr::UNSPECIFIED.into(),
                addr.port(),
            ))
        }
        r => r,
    }
}
