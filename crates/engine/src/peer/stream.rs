//! The byte stream under a peer connection: plain TCP, or TCP after an MSE/PE handshake
//! (`peercdn_core::mse`), with the payload plain (handshake obfuscated) or RC4-encrypted.
//!
//! [`dial`] and [`accept`] run the handshakes and hand a [`PeerStream`] to the connection
//! tasks, which decrypt what they read in place in their receive buffer and encrypt each write
//! batch in place before writing it: no copy and no allocation per message on either path.
//!
//! The policy ([`Encryption`]) is libtorrent's: `prefer` dials with an MSE handshake offering
//! plaintext and RC4 and falls back to a plain dial at once when the other side closes on it
//! (a plaintext-only client reads our 96-byte key as a broken handshake and hangs up — the
//! fallback costs one round trip, not a timeout), and accepts both; as the dialled side it
//! selects a plaintext payload when offered, as libtorrent does by default (`prefer_rc4` off).
//! `require` dials and accepts MSE only, RC4 only. `plaintext` never speaks MSE.

use std::net::SocketAddr;

use bytes::BytesMut;
use peercdn_core::mse::{
    self, Initiator, Keystream, Method, Responder, CRYPTO_PLAINTEXT, CRYPTO_RC4, MAX_PAD,
    SECRET_LEN,
};
use peercdn_core::wire::{Handshake, HANDSHAKE_LEN};
use peercdn_core::{InfoHash, PeerId};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::{ConnectError, HANDSHAKE_TIMEOUT};
use crate::utp::{UtpSocket, UtpStream};

/// The 20 bytes every plain BitTorrent handshake starts with.
const PROTOCOL: &[u8; 20] = b"\x13BitTorrent protocol";

/// Which connections a node encrypts (`--encryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Dial with an obfuscated (MSE) handshake, fall back to plain; accept both.
    #[default]
    Prefer,
    /// MSE with an RC4 payload only, both ways.
    Require,
    /// Plain BitTorrent only.
    Plaintext,
}

impl std::str::FromStr for Encryption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prefer" => Ok(Encryption::Prefer),
            "require" => Ok(Encryption::Require),
            "plaintext" => Ok(Encryption::Plaintext),
            _ => Err(format!(
                "unknown encryption policy {s:?} (prefer, require or plaintext)"
            )),
        }
    }
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encryption::Prefer => "prefer",
            Encryption::Require => "require",
            Encryption::Plaintext => "plaintext",
        })
    }
}

/// How a connection's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Plain BitTorrent.
    Plain,
    /// MSE handshake, plaintext payload.
    Obfuscated,
    /// MSE handshake, RC4 payload.
    Rc4,
}

impl Wire {
    /// A short name for APIs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::Plain => "plain",
            Wire::Obfuscated => "obfuscated",
            Wire::Rc4 => "rc4",
        }
    }
}

/// Attached connections by how their bytes travel: by encryption (`plain`, `obfuscated`
/// and `rc4` add up to all of them), and how many of them run over uTP (the rest over TCP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wires {
    /// Plain BitTorrent.
    pub plain: usize,
    /// MSE handshake, plaintext payload.
    pub obfuscated: usize,
    /// MSE handshake, RC4 payload.
    pub rc4: usize,
    /// Over uTP, whatever their encryption.
    pub utp: usize,
    /// Came of a BEP 55 introduction (holepunched; uTP).
    pub holepunched: usize,
}

impl Wires {
    /// Counts one more connection.
    pub fn add(&mut self, w: Wire, utp: bool, holepunched: bool) {
        match w {
            Wire::Plain => self.plain += 1,
            Wire::Obfuscated => self.obfuscated += 1,
            Wire::Rc4 => self.rc4 += 1,
        }
        self.utp += usize::from(utp);
        self.holepunched += usize::from(holepunched);
    }

    /// Adds another count (a node's total over its swarms).
    pub fn merge(&mut self, o: &Wires) {
        self.plain += o.plain;
        self.obfuscated += o.obfuscated;
        self.rc4 += o.rc4;
        self.utp += o.utp;
        self.holepunched += o.holepunched;
    }
}

/// The connection under a peer: TCP or uTP.
#[derive(Debug)]
pub enum Transport {
    /// TCP.
    Tcp(TcpStream),
    /// uTP (BEP 29) on the node's UDP socket.
    Utp(UtpStream),
}

/// Delegates to the TCP or uTP stream of a [`Transport`] or one of its halves.
macro_rules! either {
    ($ty:ident, $self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            $ty::Tcp($s) => $e,
            $ty::Utp($s) => $e,
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        either!(Transport, self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        either!(Transport, self, s => Pin::new(s).poll_write(cx, data))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        either!(Transport, self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        either!(Transport, self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The reading side of a [`Transport`].
pub(super) enum Reader {
    Tcp(OwnedReadHalf),
    Utp(UtpStream),
}

/// The writing side of a [`Transport`].
pub(super) enum Writer {
    Tcp(OwnedWriteHalf),
    Utp(UtpStream),
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        either!(Reader, self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        either!(Writer, self, s => Pin::new(s).poll_write(cx, data))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        either!(Writer, self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        either!(Writer, self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// A peer's stream (TCP or uTP) after the handshakes, with its ciphers and the payload bytes
/// that came in with the handshake.
#[derive(Debug)]
pub struct PeerStream {
    tcp: Transport,
    /// Boxed: two RC4 states are 0.5 KiB, and a stream travels inside enums and messages.
    keys: Option<Box<(Keystream, Keystream)>>,
    /// Payload already read (decrypted), not yet consumed.
    pending: BytesMut,
    wire: Wire,
}

impl PeerStream {
    fn plain(tcp: Transport, pending: &[u8]) -> PeerStream {
        PeerStream {
            tcp,
            keys: None,
            pending: BytesMut::from(pending),
            wire: Wire::Plain,
        }
    }

    fn established(tcp: Transport, est: mse::Established) -> PeerStream {
        PeerStream {
            tcp,
            wire: match est.method {
                Method::Plaintext => Wire::Obfuscated,
                Method::Rc4 => Wire::Rc4,
            },
            keys: est.keys.map(Box::new),
            pending: BytesMut::from(&est.received[..]),
        }
    }

    /// How this connection's bytes travel.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Over uTP (else TCP).
    pub fn is_utp(&self) -> bool {
        matches!(self.tcp, Transport::Utp(_))
    }

    /// Reads exactly `buf.len()` payload bytes (those that came with the handshake first).
    async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let n = self.pending.len().min(buf.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        self.tcp.read_exact(&mut buf[n..]).await?;
        if let Some((_, dec)) = self.keys.as_deref_mut() {
            dec.apply(&mut buf[n..]);
        }
        Ok(())
    }

    /// Splits into the reader's and the writer's halves.
    pub(super) fn into_split(self) -> (ReadHalf, WriteHalf) {
        let (rd, wr) = match self.tcp {
            Transport::Tcp(t) => {
                let (r, w) = t.into_split();
                (Reader::Tcp(r), Writer::Tcp(w))
            }
            Transport::Utp(u) => (Reader::Utp(u.clone()), Writer::Utp(u)),
        };
        let (enc, dec) = match self.keys {
            Some(k) => {
                let (e, d) = *k;
                (Some(e), Some(d))
            }
            None => (None, None),
        };
        (
            ReadHalf {
                rd,
                dec,
                pending: self.pending,
            },
            WriteHalf { wr, enc },
        )
    }
}

/// The reading half: decrypts in place what it reads.
pub(super) struct ReadHalf {
    rd: Reader,
    dec: Option<Keystream>,
    /// Payload that came with the handshake: the reader's buffer starts with it.
    pub(super) pending: BytesMut,
}

impl ReadHalf {
    /// Reads into `buf`'s spare room; the new bytes are decrypted. `Ok(0)`: closed.
    pub(super) async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        let start = buf.len();
        let n = self.rd.read_buf(buf).await?;
        if let Some(dec) = self.dec.as_mut() {
            dec.apply(&mut buf[start..]);
        }
        Ok(n)
    }
}

/// The writing half: [`WriteHalf::seal`] encrypts a batch in place before it is written.
pub(super) struct WriteHalf {
    pub(super) wr: Writer,
    enc: Option<Keystream>,
}

impl WriteHalf {
    /// Encrypts `buf` in place (RC4), or leaves it (plain). Call once per byte, in order.
    pub(super) fn seal(&mut self, buf: &mut [u8]) {
        if let Some(enc) = self.enc.as_mut() {
            enc.apply(buf);
        }
    }
}

/// Random bytes for a handshake: a Diffie–Hellman secret and a pad of random length.
fn randomness() -> ([u8; SECRET_LEN], Vec<u8>) {
    let mut secret = [0u8; SECRET_LEN];
    let mut len = [0u8; 2];
    let _ = getrandom::getrandom(&mut secret);
    let _ = getrandom::getrandom(&mut len);
    let mut pad = vec![0u8; usize::from(u16::from_le_bytes(len)) % (MAX_PAD + 1)];
    let _ = getrandom::getrandom(&mut pad);
    (secret, pad)
}

/// Which transport a dial uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Utp,
}

/// Opens the transport to `addr`: TCP from `from` when given (same family; not a loopback
/// address for a peer elsewhere), or uTP on the node's socket.
async fn open(
    via: Via,
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
    utp: Option<&UtpSocket>,
) -> std::io::Result<Transport> {
    if via == Via::Utp {
        let utp = utp.ok_or_else(|| std::io::Error::other("no uTP socket"))?;
        return Ok(Transport::Utp(utp.connect(addr).await?));
    }
    let from = from.filter(|ip| {
        ip.is_ipv4() == addr.is_ipv4() && (addr.ip().is_loopback() || !ip.is_loopback())
    });
    let stream = match from {
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    tune(&stream)?;
    Ok(Transport::Tcp(stream))
}

/// Unsent bytes a peer's TCP socket may hold (`TCP_NOTSENT_LOWAT`; libtorrent's default): the
/// writer is woken when the socket has sent all but this much, so the kernel holds little
/// beyond what the receiver's window takes, and what the writer writes leaves soon after. On
/// loopback a deep unsent queue is pushed out by the receiver's acknowledgements, in the
/// receiving process's time (rqbit from a peercdn seeder, 1 GiB, median of 5: 3.88 s without,
/// 3.63 s with).
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// Options of every peer TCP socket: no Nagle delay (requests and pieces leave at once) and
/// [`NOTSENT_LOWAT`] where the system has it.
fn tune(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket2::SockRef::from(stream).set_tcp_notsent_lowat(NOTSENT_LOWAT)?;
    Ok(())
}

/// Dials `addr` and exchanges handshakes for `info_hash` under the `policy`. With a uTP
/// socket, a dial that fails over one transport (refused, reset, closed, silent) is tried
/// over the other: TCP first, unless the socket prefers uTP. Each attempt has
/// [`HANDSHAKE_TIMEOUT`].
pub async fn dial(
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
    info_hash: InfoHash,
    our_id: PeerId,
    policy: Encryption,
    utp: Option<&UtpSocket>,
) -> Result<(PeerStream, Handshake), ConnectError> {
    let order: &[Via] = match utp {
        None => &[Via::Tcp],
        Some(u) if u.preferred() => &[Via::Utp, Via::Tcp],
        Some(_) => &[Via::Tcp, Via::Utp],
    };
    let mut last = ConnectError::Timeout;
    for &via in order {
        match dial_via(via, addr, from, info_hash, our_id, policy, utp).await {
            Ok(x) => return Ok(x),
            // The peer answered and it is the wrong one: another transport reaches the same.
            Err(e @ (ConnectError::WrongTorrent | ConnectError::SelfConnection)) => return Err(e),
            Err(e) => {
                tracing::debug!(%addr, ?via, "dial failed: {e}");
                last = e;
            }
        }
    }
    Err(last)
}

/// Dials `addr` over uTP only (a BEP 55 introduction: the other side dials us at the same
/// moment, and each NAT lets the other's packets in once ours went out).
pub async fn dial_utp(
    addr: SocketAddr,
    info_hash: InfoHash,
    our_id: PeerId,
    policy: Encryption,
    utp: &UtpSocket,
) -> Result<(PeerStream, Handshake), ConnectError> {
    dial_via(Via::Utp, addr, None, info_hash, our_id, policy, Some(utp)).await
}

async fn dial_via(
    via: Via,
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
    info_hash: InfoHash,
    our_id: PeerId,
    policy: Encryption,
    utp: Option<&UtpSocket>,
) -> Result<(PeerStream, Handshake), ConnectError> {
    let ours = Handshake::ours(info_hash, our_id).encode();
    let open = || open(via, addr, from, utp);
    let fut = async {
        let mut stream = match policy {
            Encryption::Plaintext => dial_plain(open().await?, &ours).await?,
            Encryption::Require => dial_mse(open().await?, info_hash, CRYPTO_RC4, &ours).await?,
            Encryption::Prefer => {
                match dial_mse(
                    open().await?,
                    info_hash,
                    CRYPTO_PLAINTEXT | CRYPTO_RC4,
                    &ours,
                )
                .await
                {
                    Ok(s) => s,
                    // Any failure after the transport opened (closed on us, reset, a plain
                    // answer, a broken exchange): the peer may speak plain only.
                    Err(e) => {
                        tracing::debug!(%addr, "MSE dial failed ({e}): dialling plain");
                        dial_plain(open().await?, &ours).await?
                    }
                }
            }
        };
        let theirs = read_handshake(&mut stream).await?;
        if theirs.info_hash != info_hash {
            return Err(ConnectError::WrongTorrent);
        }
        if theirs.peer_id == our_id {
            return Err(ConnectError::SelfConnection);
        }
        Ok((stream, theirs))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

async fn dial_plain(mut io: Transport, ours: &[u8]) -> Result<PeerStream, ConnectError> {
    io.write_all(ours).await?;
    Ok(PeerStream::plain(io, &[]))
}

/// The MSE handshake as initiator, our BitTorrent handshake as its initial payload.
async fn dial_mse(
    mut tcp: Transport,
    info_hash: InfoHash,
    provide: u32,
    ours: &[u8],
) -> Result<PeerStream, ConnectError> {
    let (secret, pad) = randomness();
    let (mut hs, first) = Initiator::new(info_hash, &secret, &pad, provide, ours);
    tcp.write_all(&first).await?;
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::new();
    // The first bytes back, to tell a plain answer from Yb.
    let mut head = Vec::with_capacity(PROTOCOL.len());
    loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        if head.len() < PROTOCOL.len() {
            let take = n.min(PROTOCOL.len() - head.len());
            head.extend_from_slice(&buf[..take]);
            if head.len() == PROTOCOL.len() && head == PROTOCOL {
                return Err(ConnectError::PlainAnswer);
            }
        }
        let done = hs.feed(&buf[..n], &mut out)?;
        if !out.is_empty() {
            tcp.write_all(&out).await?;
            out.clear();
        }
        if let Some(est) = done {
            return Ok(PeerStream::established(tcp, est));
        }
    }
}

/// Reads the handshake of an incoming connection under the `policy`: a plain one, or an MSE
/// handshake for one of the torrents `known` returns (asked only for MSE). The caller looks up
/// the torrent; our handshake goes out through the connection's writer (and its cipher).
pub async fn accept(
    mut tcp: Transport,
    policy: Encryption,
    known: impl FnOnce() -> Vec<InfoHash>,
) -> Result<(PeerStream, Handshake), ConnectError> {
    let fut = async {
        if let Transport::Tcp(t) = &tcp {
            tune(t)?;
        }
        let mut head = [0u8; 20];
        tcp.read_exact(&mut head).await?;
        // An MSE handshake names its torrent: the BitTorrent handshake inside must agree.
        let (mut stream, skey) = if &head == PROTOCOL {
            if policy == Encryption::Require {
                return Err(ConnectError::PlaintextRefused);
            }
            (PeerStream::plain(tcp, &head), None)
        } else {
            if policy == Encryption::Plaintext {
                return Err(peercdn_core::wire::WireError::NotBitTorrent.into());
            }
            let (allowed, prefer) = match policy {
                Encryption::Require => (CRYPTO_RC4, Method::Rc4),
                _ => (CRYPTO_PLAINTEXT | CRYPTO_RC4, Method::Plaintext),
            };
            let (secret, pad) = randomness();
            let mut hs = Responder::new(known(), &secret, &pad, allowed, prefer);
            let mut out = Vec::new();
            let mut buf = vec![0u8; 2048];
            let mut done = hs.feed(&head, &mut out)?;
            loop {
                if !out.is_empty() {
                    tcp.write_all(&out).await?;
                    out.clear();
                }
                if let Some(est) = done {
                    let skey = est.info_hash;
                    break (PeerStream::established(tcp, est), Some(skey));
                }
                let n = tcp.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                done = hs.feed(&buf[..n], &mut out)?;
            }
        };
        let hs = read_handshake(&mut stream).await?;
        if skey.is_some_and(|k| k != hs.info_hash) {
            return Err(ConnectError::WrongTorrent);
        }
        Ok((stream, hs))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

async fn read_handshake(stream: &mut PeerStream) -> Result<Handshake, ConnectError> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    stream.read_exact(&mut buf[..20]).await?;
    if &buf[..20] != PROTOCOL {
        return Err(peercdn_core::wire::WireError::NotBitTorrent.into());
    }
    stream.read_exact(&mut buf[20..]).await?;
    Ok(Handshake::decode(&buf)?)
}
