//! BEP 55 `ut_holepunch` in both swarms: a peer that cannot dial another (it is behind a NAT,
//! or both are) asks a peer both are connected to — the relay — to introduce them; the relay
//! tells each the other's address and both dial it over uTP at once, so each NAT sees an
//! outgoing packet before the other's arrives.
//!
//! Codec: [`HolepunchMsg`] (`msg_type`, `addr_type`, address, port, `err_code`; big-endian,
//! binary, not bencode). Per-connection state: [`PeerBudget`] (what a peer may ask of us).
//! Node state: none — the relay's rule ([`relay`]) reads the swarm's peer records.
//!
//! Roles:
//! - **initiator** ([`rendezvous`]): the connection manager found that a dial to an address a
//!   peer told us (PEX) failed, and asks that peer to introduce us;
//! - **relay** ([`receive`] of a `rendezvous`): finds its connection to the target (by its
//!   remote or listen address) and sends `connect` to both, each naming the other's address as
//!   the other's uTP socket is reached: the connection's own address when it runs over uTP (the
//!   NAT's mapping of that very socket), else its listen address. It answers `error` when it
//!   has no such peer, the target does not speak `ut_holepunch`, or the target is the asker;
//!   it does not bridge a local and a non-local address (as libtorrent);
//! - **target and initiator** ([`receive`] of a `connect`): the swarm tells the engine
//!   ([`HolepunchEvent::Connect`]), which dials uTP to that address — unless already connected
//!   or banned (the connection manager's business).
//!
//! Trust: a relay's `connect` can only make us dial an address over uTP, as PEX can; a local
//! address from a non-local relay is ignored. A relay never names an address of its own
//! choosing to a peer: it sends each side the address it sees the other at, so an asker can
//! only make the target dial the asker. Bounds: a peer may send [`BURST`] messages at once and
//! one per [`INTERVAL`] after; the rest are dropped (and counted), not an error. Messages that
//! do not decode are ignored (BEP 55 gives no error for them; libtorrent ignores them too).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::handshake::Extension;
use super::peer::PeerRecord;
use super::search::Bucket;
use super::PeerKey;
use crate::wire::Message;

/// The extension's name in the BEP 10 handshake.
pub const UT_HOLEPUNCH: &str = "ut_holepunch";
/// The ID we ask peers to send `ut_holepunch` messages with.
pub const OUR_UT_HOLEPUNCH_ID: u8 = 6;
/// Messages a peer may send at once.
pub const BURST: f64 = 16.0;
/// One more message a peer may send per this interval, after its burst.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Why a relay cannot introduce (BEP 55 `err_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HolepunchError {
    /// The address is not valid.
    NoSuchPeer,
    /// The relay has no connection to that address.
    NotConnected,
    /// The target does not speak `ut_holepunch`.
    NoSupport,
    /// The target is the asker itself.
    NoSelf,
    /// A code BEP 55 does not define.
    Other(u32),
}

impl HolepunchError {
    /// The wire code.
    pub fn code(self) -> u32 {
        match self {
            HolepunchError::NoSuchPeer => 1,
            HolepunchError::NotConnected => 2,
            HolepunchError::NoSupport => 3,
            HolepunchError::NoSelf => 4,
            HolepunchError::Other(c) => c,
        }
    }

    /// From the wire code.
    pub fn from_code(c: u32) -> HolepunchError {
        match c {
            1 => HolepunchError::NoSuchPeer,
            2 => HolepunchError::NotConnected,
            3 => HolepunchError::NoSupport,
            4 => HolepunchError::NoSelf,
            c => HolepunchError::Other(c),
        }
    }
}

/// A `ut_holepunch` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolepunchMsg {
    /// Initiator to relay: introduce me to the peer at this address.
    Rendezvous(SocketAddr),
    /// Relay to both: dial this address over uTP now.
    Connect(SocketAddr),
    /// Relay to initiator: the introduction to this address failed.
    Error(SocketAddr, HolepunchError),
}

/// Why a `ut_holepunch` payload does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HolepunchDecodeError {
    /// Shorter than its address type calls for.
    #[error("ut_holepunch message is truncated")]
    Truncated,
    /// A `msg_type` other than 0, 1, 2.
    #[error("unknown ut_holepunch msg_type {0}")]
    UnknownType(u8),
    /// An `addr_type` other than 0 (IPv4) and 1 (IPv6).
    #[error("unknown ut_holepunch addr_type {0}")]
    UnknownAddrType(u8),
}

impl HolepunchMsg {
    /// Longest encoding: type, address type, IPv6 address, port, error code.
    pub const MAX_LEN: usize = 1 + 1 + 16 + 2 + 4;

    /// The address the message names.
    pub fn addr(&self) -> SocketAddr {
        match *self {
            HolepunchMsg::Rendezvous(a) | HolepunchMsg::Connect(a) | HolepunchMsg::Error(a, _) => a,
        }
    }

    /// The payload: BEP 55's layout, `err_code` 0 in messages that are not errors.
    pub fn encode(&self) -> Bytes {
        let (t, err) = match self {
            HolepunchMsg::Rendezvous(_) => (0u8, 0),
            HolepunchMsg::Connect(_) => (1, 0),
            HolepunchMsg::Error(_, e) => (2, e.code()),
        };
        let mut b = BytesMut::with_capacity(Self::MAX_LEN);
        b.put_u8(t);
        let a = self.addr();
        match a.ip() {
            IpAddr::V4(v4) => {
                b.put_u8(0);
                b.put_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                b.put_u8(1);
                b.put_slice(&v6.octets());
            }
        }
        b.put_u16(a.port());
        b.put_u32(err);
        b.freeze()
    }

    /// Parses a payload from a peer. `err_code` may be absent (libtorrent writes it only in
    /// errors; absent reads as 0); bytes after it are ignored.
    pub fn decode(p: &[u8]) -> Result<HolepunchMsg, HolepunchDecodeError> {
        let [t, at, rest @ ..] = p else {
            return Err(HolepunchDecodeError::Truncated);
        };
        let ip_len = match at {
            0 => 4,
            1 => 16,
            &other => return Err(HolepunchDecodeError::UnknownAddrType(other)),
        };
        if rest.len() < ip_len + 2 {
            return Err(HolepunchDecodeError::Truncated);
        }
        let ip = if ip_len == 4 {
            let o: [u8; 4] = rest[..4].try_into().expect("4 bytes");
            IpAddr::V4(Ipv4Addr::from(o))
        } else {
            let o: [u8; 16] = rest[..16].try_into().expect("16 bytes");
            IpAddr::V6(Ipv6Addr::from(o))
        };
        let port = u16::from_be_bytes([rest[ip_len], rest[ip_len + 1]]);
        let addr = SocketAddr::new(ip, port);
        let err = rest
            .get(ip_len + 2..ip_len + 6)
            .map_or(0, |e| u32::from_be_bytes(e.try_into().expect("4 bytes")));
        match t {
            0 => Ok(HolepunchMsg::Rendezvous(addr)),
            1 => Ok(HolepunchMsg::Connect(addr)),
            2 => Ok(HolepunchMsg::Error(addr, HolepunchError::from_code(err))),
            &other => Err(HolepunchDecodeError::UnknownType(other)),
        }
    }
}

/// One connection's `ut_holepunch` state: its message budget, what it sent and what was
/// dropped.
#[derive(Debug, Clone)]
pub struct PeerBudget {
    bucket: Bucket,
    /// Messages dropped over the budget.
    pub dropped: u64,
}

impl PeerBudget {
    /// A full budget at `now`.
    pub fn new(now: Instant) -> PeerBudget {
        PeerBudget {
            bucket: Bucket {
                tokens: BURST,
                at: now,
            },
            dropped: 0,
        }
    }

    fn admit(&mut self, now: Instant) -> bool {
        let per_s = 1.0 / INTERVAL.as_secs_f64();
        let ok = self.bucket.take(1.0, BURST, per_s, now) >= 1.0;
        if !ok {
            self.dropped += 1;
        }
        ok
    }
}

/// What a `ut_holepunch` message asks of the swarm and the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolepunchEvent {
    /// Messages to send (a relay's two `connect`s, or its `error` to the asker).
    Send(Vec<(PeerKey, Message)>),
    /// A relay introduced us: dial this address over uTP now.
    Connect(SocketAddr),
    /// A relay could not introduce us to this address.
    Failed(SocketAddr, HolepunchError),
}

/// The `rendezvous` message asking the peer behind `rec` to introduce us to `target`; `None`
/// when it does not speak `ut_holepunch`.
pub fn rendezvous(rec: &PeerRecord, target: SocketAddr) -> Option<Message> {
    let id = rec.ext.id(Extension::UtHolepunch)?;
    Some(Message::Extended {
        id,
        payload: HolepunchMsg::Rendezvous(target).encode(),
    })
}

/// Where a peer's uTP socket is reached: the connection's own address when it runs over uTP
/// (the NAT's mapping of that socket), else where it listens (its TCP listener and uTP socket
/// share the port), else the connection's address.
pub fn punch_addr(rec: &PeerRecord) -> SocketAddr {
    if rec.route.utp {
        rec.addr
    } else {
        rec.listen_addr.unwrap_or(rec.addr)
    }
}

/// Whether an address is on this host or a private network (libtorrent's `is_local`): a
/// relay does not bridge such an address and a public one.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            let s = v6.segments()[0];
            v6.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// The relay's answer to a `rendezvous` from `from` (whose record is `asker`) naming
/// `target`, among `peers` (every connection of the swarm, the asker's included): the
/// `connect` to each side, or the `error` to the asker.
pub fn relay<'a>(
    from: PeerKey,
    asker: &PeerRecord,
    target: SocketAddr,
    peers: impl IntoIterator<Item = (PeerKey, &'a PeerRecord)>,
) -> Vec<(PeerKey, Message)> {
    let Some(asker_id) = asker.ext.id(Extension::UtHolepunch) else {
        return Vec::new();
    };
    let to_asker = |m: HolepunchMsg| {
        (
            from,
            Message::Extended {
                id: asker_id,
                payload: m.encode(),
            },
        )
    };
    let error = |e| vec![to_asker(HolepunchMsg::Error(target, e))];
    if target.port() == 0 || target.ip().is_unspecified() {
        return error(HolepunchError::NoSuchPeer);
    }
    let found = peers
        .into_iter()
        .find(|(_, r)| r.addr == target || r.listen_addr == Some(target));
    let Some((key, rec)) = found else {
        return error(HolepunchError::NotConnected);
    };
    if key == from {
        return error(HolepunchError::NoSelf);
    }
    let Some(target_id) = rec.ext.id(Extension::UtHolepunch) else {
        return error(HolepunchError::NoSupport);
    };
    let (a, t) = (punch_addr(asker), punch_addr(rec));
    if is_local(a.ip()) != is_local(t.ip()) {
        return Vec::new();
    }
    vec![
        to_asker(HolepunchMsg::Connect(t)),
        (
            key,
            Message::Extended {
                id: target_id,
                payload: HolepunchMsg::Connect(a).encode(),
            },
        ),
    ]
}

/// A `ut_holepunch` payload from a peer (whose record is `rec`): the message, if the peer
/// speaks the extension, is within its budget, and the payload decodes; `None` otherwise.
pub fn admit(payload: &[u8], rec: &mut PeerRecord, now: Instant) -> Option<HolepunchMsg> {
    if rec.ext.id(Extension::UtHolepunch).is_none() || !rec.holepunch.admit(now) {
        return None;
    }
    HolepunchMsg::decode(payload).ok()
}

/// What an admitted message ([`admit`]) from the peer `key` (whose record is `rec`) asks of
/// us (see [`HolepunchEvent`]); `None` when nothing. `peers` are the swarm's connections, for a
/// relay's lookup.
pub fn receive<'a>(
    msg: HolepunchMsg,
    key: PeerKey,
    rec: &PeerRecord,
    peers: impl IntoIterator<Item = (PeerKey, &'a PeerRecord)>,
) -> Option<HolepunchEvent> {
    match msg {
        HolepunchMsg::Rendezvous(target) => {
            let out = relay(key, rec, target, peers);
            (!out.is_empty()).then_some(HolepunchEvent::Send(out))
        }
        HolepunchMsg::Connect(addr) => {
            // A local address only from a local relay.
            let bridged = is_local(addr.ip()) && !is_local(rec.addr.ip());
            let ok = addr.port() != 0 && !addr.ip().is_unspecified() && !bridged;
            ok.then_some(HolepunchEvent::Connect(addr))
        }
        HolepunchMsg::Error(addr, e) => Some(HolepunchEvent::Failed(addr, e)),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;
    use crate::ext::handshake::PeerExtensions;
    use crate::wire::ext::ExtHandshake;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn peer(addr: &str, listen: Option<&str>, holepunch: bool, utp: bool) -> PeerRecord {
        let now = Instant::now();
        let mut r = PeerRecord::new(sa(addr), now, now);
        let mut m = vec![];
        if holepunch {
            m.push((UT_HOLEPUNCH.to_string(), 9));
        }
        r.on_ext_handshake(PeerExtensions::from_handshake(&ExtHandshake {
            m,
            ..ExtHandshake::default()
        }));
        r.listen_addr = listen.map(sa);
        r.route.utp = utp;
        r
    }

    fn decode(m: &Message) -> HolepunchMsg {
        let Message::Extended { id, payload } = m else {
            panic!("not extended: {m:?}");
        };
        assert_eq!(*id, 9);
        HolepunchMsg::decode(payload).unwrap()
    }

    #[test]
    fn the_layout_is_bep_55s() {
        let m = HolepunchMsg::Connect(sa("1.2.3.4:6881"));
        assert_eq!(&m.encode()[..], &[1, 0, 1, 2, 3, 4, 0x1a, 0xe1, 0, 0, 0, 0]);
        let e = HolepunchMsg::Error(sa("[::1]:80"), HolepunchError::NoSupport);
        let b = e.encode();
        assert_eq!(b.len(), HolepunchMsg::MAX_LEN);
        assert_eq!((b[0], b[1]), (2, 1));
        assert_eq!(&b[20..], &[0, 0, 0, 3]);
        assert_eq!(HolepunchMsg::decode(&b), Ok(e));
        // libtorrent leaves err_code out of messages that are not errors.
        assert_eq!(
            HolepunchMsg::decode(&[0, 0, 10, 0, 0, 1, 0, 80]),
            Ok(HolepunchMsg::Rendezvous(sa("10.0.0.1:80")))
        );
        assert_eq!(
            HolepunchMsg::decode(&[0, 0, 10, 0, 0, 1, 0]),
            Err(HolepunchDecodeError::Truncated)
        );
        assert_eq!(
            HolepunchMsg::decode(&[7, 0, 10, 0, 0, 1, 0, 80]),
            Err(HolepunchDecodeError::UnknownType(7))
        );
        assert_eq!(
            HolepunchMsg::decode(&[0, 2, 10, 0, 0, 1, 0, 80]),
            Err(HolepunchDecodeError::UnknownAddrType(2))
        );
    }

    /// The relay sends each side the other's uTP address: a uTP connection's own address (the
    /// NAT's mapping of that socket), a TCP connection's listen address (the TCP connection
    /// came from an ephemeral port no uTP socket sits behind).
    #[test]
    fn a_relay_introduces_each_side_at_its_utp_address() {
        let asker = peer("11.0.0.2:40001", Some("11.0.0.2:6881"), true, false);
        let target = peer("11.0.0.3:7000", Some("11.0.0.3:6999"), true, true);
        let peers = [(1, &asker), (2, &target)];
        // Asked by its listen address or by its connection's: the same peer.
        for t in ["11.0.0.3:6999", "11.0.0.3:7000"] {
            let out = relay(1, &asker, sa(t), peers);
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].0, 1);
            assert_eq!(
                decode(&out[0].1),
                HolepunchMsg::Connect(sa("11.0.0.3:7000"))
            );
            assert_eq!(out[1].0, 2);
            assert_eq!(
                decode(&out[1].1),
                HolepunchMsg::Connect(sa("11.0.0.2:6881"))
            );
        }
    }

    #[test]
    fn a_relay_answers_an_error_when_it_cannot_introduce() {
        let asker = peer("11.0.0.2:40001", Some("11.0.0.2:6881"), true, false);
        let mute = peer("11.0.0.4:7000", None, false, false);
        let peers = [(1, &asker), (3, &mute)];
        let err = |t: &str| {
            let out = relay(1, &asker, sa(t), peers);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].0, 1);
            match decode(&out[0].1) {
                HolepunchMsg::Error(a, e) => {
                    assert_eq!(a, sa(t));
                    e
                }
                m => panic!("not an error: {m:?}"),
            }
        };
        assert_eq!(err("11.0.0.9:1"), HolepunchError::NotConnected);
        assert_eq!(err("11.0.0.4:7000"), HolepunchError::NoSupport);
        assert_eq!(err("11.0.0.2:6881"), HolepunchError::NoSelf);
        assert_eq!(err("0.0.0.0:6881"), HolepunchError::NoSuchPeer);
        // Private and public are not bridged; a peer without the extension gets no answer.
        let lan = peer("192.168.1.5:7000", None, true, false);
        assert!(relay(1, &asker, sa("192.168.1.5:7000"), [(1, &asker), (4, &lan)]).is_empty());
        assert!(relay(3, &mute, sa("11.0.0.2:6881"), peers).is_empty());
    }

    #[test]
    fn connects_are_checked_and_the_budget_holds() {
        let now = Instant::now();
        let mut relay_rec = peer("11.0.0.1:6881", None, true, false);
        let connect = |a: &str| HolepunchMsg::Connect(sa(a)).encode();
        let none: [(PeerKey, &PeerRecord); 0] = [];
        let receive = |payload: &[u8], rec: &mut PeerRecord, now| {
            let m = admit(payload, rec, now)?;
            super::receive(m, 1, rec, none)
        };
        assert_eq!(
            receive(&connect("11.0.0.7:5000"), &mut relay_rec, now),
            Some(HolepunchEvent::Connect(sa("11.0.0.7:5000")))
        );
        // A public relay naming a private address, port 0, garbage: ignored.
        for bad in [
            connect("192.168.0.7:5000"),
            connect("11.0.0.7:0"),
            Bytes::from_static(b"xx"),
        ] {
            assert_eq!(receive(&bad, &mut relay_rec, now), None);
        }
        // The burst is spent (4 taken so far); the rest of the same instant is dropped.
        let mut passed = 0;
        for _ in 0..40 {
            passed += receive(&connect("11.0.0.7:5000"), &mut relay_rec, now).is_some() as usize;
        }
        assert_eq!(passed, BURST as usize - 4);
        assert_eq!(relay_rec.holepunch.dropped, 40 - passed as u64);
        let later = now + INTERVAL;
        assert!(receive(&connect("11.0.0.7:5000"), &mut relay_rec, later).is_some());
        // A peer that never said it speaks ut_holepunch is not listened to.
        let mut mute = peer("11.0.0.1:6881", None, false, false);
        assert_eq!(receive(&connect("11.0.0.7:5000"), &mut mute, now), None);
    }

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(o, p)| SocketAddr::from((o, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(o, p)| SocketAddr::from((o, p))),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(a in any_addr(), t in 0u8..3, code in 1u32..10) {
            let m = match t {
                0 => HolepunchMsg::Rendezvous(a),
                1 => HolepunchMsg::Connect(a),
                _ => HolepunchMsg::Error(a, HolepunchError::from_code(code)),
            };
            prop_assert_eq!(HolepunchMsg::decode(&m.encode()), Ok(m));
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(m) = HolepunchMsg::decode(&b) {
                // What decodes encodes to the bytes it came from, up to the error code.
                let e = m.encode();
                let n = e.len() - 4;
                prop_assert_eq!(&e[..n], &b[..n]);
            }
        }
    }
}
