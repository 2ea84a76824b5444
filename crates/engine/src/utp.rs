//! uTP sockets: one UDP socket on the peer port carries every uTP connection of the node
//! (BEP 29; the protocol itself is `peercdn_core::utp`, sans IO).
//!
//! A driver task owns the receiving side: it reads a batch of datagrams, hands each to its
//! connection (found by the sender's address and the packet's connection ID), answers a `SYN`
//! for no connection with a new one (queued for [`UtpSocket::incoming`]) and anything else with
//! a `RESET`, then lets each connection it touched send (so one ACK answers a batch). A timer
//! tick drives timeouts. Streams ([`UtpStream`]) read and write their connection directly
//! under its lock and send what it then has to send; a datagram the socket cannot take at
//! once is dropped, as a full router queue would, and repaired by the protocol.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections, [`ACCEPT_QUEUE`] accepted and not yet
//! taken; a connection's memory is bounded by the core (`SEND_BUF`, `RECV_WINDOW`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use peercdn_core::utp::{self, Close, Connection, Packet, State, MAX_DATAGRAM};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;

use crate::clock::now;

/// The most uTP connections at once (dialled and accepted).
pub const MAX_CONNECTIONS: usize = 1024;
/// Accepted connections waiting for [`UtpSocket::incoming`]; more `SYN`s are reset.
pub const ACCEPT_QUEUE: usize = 64;
/// How often timeouts are looked at.
const TICK: Duration = Duration::from_millis(10);
/// Datagrams read in one batch before the connections answer.
const BATCH: usize = 64;

/// The node's uTP socket (cheap to clone: a handle).
#[derive(Clone)]
pub struct UtpSocket {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UtpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpSocket")
            .field("local", &self.shared.udp.local_addr().ok())
            .finish()
    }
}

struct Shared {
    udp: UdpSocket,
    conns: Mutex<HashMap<(SocketAddr, u16), Arc<Entry>>>,
    incoming: Mutex<Option<mpsc::Receiver<UtpStream>>>,
    /// Dial uTP before TCP.
    prefer: bool,
}

struct Entry {
    addr: SocketAddr,
    key: (SocketAddr, u16),
    /// We dialled it.
    outgoing: bool,
    st: Mutex<EntryState>,
}

struct EntryState {
    conn: Connection,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// No stream holds it any more: removed once closed.
    detached: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    u16::from_ne_bytes(b)
}

impl UtpSocket {
    /// Binds UDP at `addr` (the IPv6 wildcard is dual stack, as the TCP listener) and starts
    /// the driver, which stops when the last handle is dropped. `prefer`: dial uTP first.
    pub fn bind(addr: SocketAddr, prefer: bool) -> io::Result<UtpSocket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(!addr.ip().is_unspecified())?;
        }
        // Room for bursts both ways: a full socket buffer drops datagrams.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        let udp = UdpSocket::from_std(socket.into())?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let shared = Arc::new(Shared {
            udp,
            conns: Mutex::new(HashMap::new()),
            incoming: Mutex::new(Some(rx)),
            prefer,
        });
        tokio::spawn(drive(Arc::downgrade(&shared), tx));
        Ok(UtpSocket { shared })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.udp.local_addr()
    }

    /// Dial uTP before TCP.
    pub fn preferred(&self) -> bool {
        self.shared.prefer
    }

    /// Connections held now.
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Whether we hold a connection we dialled to `addr` (open or opening): an incoming one
    /// from there then is a simultaneous open — a BEP 55 introduction — which proves nothing
    /// about whether peers can reach us.
    pub fn dialled(&self, addr: SocketAddr) -> bool {
        lock(&self.shared.conns)
            .values()
            .any(|e| e.outgoing && e.addr == addr)
    }

    /// Takes the receiver of accepted connections (once: the session's accept loop).
    pub fn incoming(&self) -> Option<mpsc::Receiver<UtpStream>> {
        lock(&self.shared.incoming).take()
    }

    /// Opens a connection to `addr`; fails when it is reset or never answered (three `SYN`s
    /// over 7 s).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<UtpStream> {
        let entry = {
            let mut conns = lock(&self.shared.conns);
            if conns.len() >= MAX_CONNECTIONS {
                return Err(io::Error::other("too many uTP connections"));
            }
            let mut id = random_u16();
            while conns.contains_key(&(addr, id)) {
                id = id.wrapping_add(2);
            }
            let entry = Arc::new(Entry {
                addr,
                key: (addr, id),
                outgoing: true,
                st: Mutex::new(EntryState {
                    conn: Connection::connect(now(), id, random_u16()),
                    reader: None,
                    writer: None,
                    detached: false,
                }),
            });
            conns.insert((addr, id), entry.clone());
            entry
        };
        let stream = UtpStream::new(self.shared.clone(), entry.clone());
        flush(&self.shared.udp, &entry, &mut lock(&entry.st));
        std::future::poll_fn(|cx| {
            let mut st = lock(&entry.st);
            match st.conn.state() {
                State::Connecting => {
                    st.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
                State::Connected => Poll::Ready(Ok(())),
                State::Closed(c) => Poll::Ready(Err(close_error(c))),
            }
        })
        .await?;
        Ok(stream)
    }
}

fn close_error(c: Close) -> io::Error {
    match c {
        Close::Reset => io::ErrorKind::ConnectionReset.into(),
        Close::TimedOut => io::ErrorKind::TimedOut.into(),
        Close::Done => io::ErrorKind::NotConnected.into(),
    }
}

/// Sends what the connection has to send. A datagram the socket cannot take now is dropped.
fn flush(udp: &UdpSocket, entry: &Entry, st: &mut EntryState) {
    let mut buf = [0u8; MAX_DATAGRAM];
    let at = now();
    while let Some(n) = st.conn.poll_transmit(at, &mut buf) {
        if let Err(e) = udp.try_send_to(&buf[..n], entry.addr) {
            if e.kind() != io::ErrorKind::WouldBlock {
                debug!(addr = %entry.addr, "uTP send failed: {e}");
            }
        }
    }
}

fn wake(st: &mut EntryState) {
    if let Some(w) = st.reader.take() {
        w.wake();
    }
    if let Some(w) = st.writer.take() {
        w.wake();
    }
}

async fn drive(shared: Weak<Shared>, accepted: mpsc::Sender<UtpStream>) {
    let mut buf = vec![0u8; 65536];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let Some(s) = shared.upgrade() else { return };
        tokio::select! {
            r = s.udp.recv_from(&mut buf) => {
                let mut touched: Vec<Arc<Entry>> = Vec::new();
                let mut next = r;
                for _ in 0..BATCH {
                    match next {
                        Ok((n, from)) => {
                            let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                            if let Some(e) = datagram(&s, &accepted, &buf[..n], from) {
                                if !touched.iter().any(|t| Arc::ptr_eq(t, &e)) {
                                    touched.push(e);
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP errors surface here on some systems: not the socket's end.
                        Err(e) => debug!("uTP receive: {e}"),
                    }
                    next = s.udp.try_recv_from(&mut buf);
                }
                for e in touched {
                    let mut st = lock(&e.st);
                    flush(&s.udp, &e, &mut st);
                    wake(&mut st);
                }
            }
            _ = tick.tick() => timers(&s),
        }
    }
}

/// One datagram: to its connection (returned, to answer after the batch), or a new one, or
/// a `RESET`.
fn datagram(
    s: &Arc<Shared>,
    accepted: &mpsc::Sender<UtpStream>,
    d: &[u8],
    from: SocketAddr,
) -> Option<Arc<Entry>> {
    let p = Packet::decode(d).ok()?;
    let at = now();
    let found = {
        let conns = lock(&s.conns);
        if p.ty == utp::Type::Reset {
            // A RESET names the send ID of the connection it ends; we receive on that ID + 1
            // (we dialled) or - 1 (we accepted).
            let id = p.conn_id;
            return [id.wrapping_add(1), id.wrapping_sub(1), id]
                .into_iter()
                .filter_map(|k| conns.get(&(from, k)))
                .find(|e| lock(&e.st).conn.send_id() == id)
                .cloned()
                .inspect(|e| lock(&e.st).conn.handle_packet(at, &p));
        }
        conns.get(&(from, p.conn_id)).cloned().or_else(|| {
            // A repeated SYN names the ID our connection sends with; we receive on ID + 1.
            (p.ty == utp::Type::Syn)
                .then(|| conns.get(&(from, p.conn_id.wrapping_add(1))).cloned())
                .flatten()
        })
    };
    if let Some(e) = found {
        lock(&e.st).conn.handle_packet(at, &p);
        return Some(e);
    }
    if p.ty == utp::Type::Syn {
        let mut conns = lock(&s.conns);
        if conns.len() < MAX_CONNECTIONS {
            if let Ok(permit) = accepted.try_reserve() {
                let key = (from, p.conn_id.wrapping_add(1));
                let entry = Arc::new(Entry {
                    addr: from,
                    key,
                    outgoing: false,
                    st: Mutex::new(EntryState {
                        conn: Connection::accept(at, &p, random_u16()),
                        reader: None,
                        writer: None,
                        detached: false,
                    }),
                });
                conns.insert(key, entry.clone());
                permit.send(UtpStream::new(s.clone(), entry.clone()));
                return Some(entry);
            }
        }
        debug!(%from, "uTP SYN refused: too many connections");
    }
    let mut out = [0u8; MAX_DATAGRAM];
    if let Some(n) = utp::reset_for(&p, &mut out) {
        let _ = s.udp.try_send_to(&out[..n], from);
    }
    None
}

/// Timeouts of every connection; closed ones no stream holds are removed.
fn timers(s: &Arc<Shared>) {
    let at = now();
    let entries: Vec<Arc<Entry>> = lock(&s.conns).values().cloned().collect();
    let mut gone = Vec::new();
    for e in entries {
        let mut st = lock(&e.st);
        if st.conn.poll_timeout().is_some_and(|t| t <= at) {
            st.conn.handle_timeout(at);
            flush(&s.udp, &e, &mut st);
            wake(&mut st);
        }
        let closed = matches!(st.conn.state(), State::Closed(_));
        if st.detached && (closed || st.conn.state() == State::Connecting) {
            gone.push(e.key);
        }
    }
    if !gone.is_empty() {
        let mut conns = lock(&s.conns);
        for k in gone {
            conns.remove(&k);
        }
    }
}

/// One uTP connection as a byte stream. Clones share it (a reading and a writing half); the
/// connection closes (`FIN`) when the last is dropped.
#[derive(Clone)]
pub struct UtpStream {
    h: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    entry: Arc<Entry>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut st = lock(&self.entry.st);
        st.detached = true;
        st.conn.close();
        flush(&self.shared.udp, &self.entry, &mut st);
    }
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpStream")
            .field("peer", &self.h.entry.addr)
            .finish()
    }
}

impl UtpStream {
    fn new(shared: Arc<Shared>, entry: Arc<Entry>) -> UtpStream {
        UtpStream {
            h: Arc::new(Handle { shared, entry }),
        }
    }

    /// The other side's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.h.entry.addr
    }

    /// The connection's counters.
    pub fn stats(&self) -> utp::Stats {
        lock(&self.h.entry.st).conn.stats()
    }
}

impl AsyncRead for UtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = lock(&self.h.entry.st);
        let n = st.conn.readable().min(buf.remaining());
        if n > 0 {
            let dst = buf.initialize_unfilled_to(n);
            let got = st.conn.read(dst);
            buf.advance(got);
            // Reading may reopen the window: say so.
            flush(&self.h.shared.udp, &self.h.entry, &mut st);
            return Poll::Ready(Ok(()));
        }
        if st.conn.is_eof() {
            return Poll::Ready(Ok(()));
        }
        match st.conn.state() {
            State::Closed(Close::Done) => Poll::Ready(Ok(())),
            State::Closed(c) => Poll::Ready(Err(close_error(c))),
            _ => {
                st.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for UtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = lock(&self.h.entry.st);
        if let State::Closed(c) = st.conn.state() {
            return Poll::Ready(Err(match c {
                Close::Done => io::ErrorKind::BrokenPipe.into(),
                c => close_error(c),
            }));
        }
        let n = st.conn.write(data);
        if n == 0 {
            st.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        flush(&self.h.shared.udp, &self.h.entry, &mut st);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = lock(&self.h.entry.st);
        st.conn.close();
        flush(&self.h.shared.udp, &self.h.entry, &mut st);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
