//! The UDP tracker protocol (BEP 15): a connect exchange for a connection id, then announce.
//!
//! Every request carries a fresh random transaction id; datagrams with another id are ignored.
//! Attempt timeouts start at [`ATTEMPT_BASE`] and double (BEP 15's 15·2ⁿ s schedule, shortened),
//! and the whole call is cut at [`DEADLINE`]. Connection ids are cached per tracker address for at
//! most [`CONNECTION_ID_TTL`] (BEP 15 allows one minute) in a small bounded map.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{clamp_interval, message_text, AnnounceRequest, AnnounceResponse, PeerSet};
use super::{TrackerError, MAX_PEERS};

/// The first attempt's timeout; each retry doubles it.
pub const ATTEMPT_BASE: Duration = Duration::from_secs(3);
/// The longest a UDP announce may take, retries included.
pub const DEADLINE: Duration = Duration::from_secs(15);
/// How long a connection id is reused.
pub const CONNECTION_ID_TTL: Duration = Duration::from_secs(60);
/// Most trackers whose connection id we remember.
const MAX_CACHED_IDS: usize = 256;
/// Receive buffer: enough for the header and MAX_PEERS IPv6 peers.
const RECV_BUF: usize = 20 + 18 * MAX_PEERS + 1024;

const PROTOCOL_ID: u64 = 0x0417_2710_1980;
const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_ERROR: u32 = 3;

/// Retry timing; tests shorten it.
#[derive(Clone, Copy, Debug)]
struct Timing {
    attempt_base: Duration,
    deadline: Duration,
}

const TIMING: Timing = Timing {
    attempt_base: ATTEMPT_BASE,
    deadline: DEADLINE,
};

pub(super) async fn announce(
    url: &url::Url,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    announce_with(url, req, TIMING).await
}

async fn announce_with(
    url: &url::Url,
    req: &AnnounceRequest,
    timing: Timing,
) -> Result<AnnounceResponse, TrackerError> {
    let host = url
        .host_str()
        .ok_or_else(|| TrackerError::BadUrl(format!("{url}: no host")))?;
    let port = url
        .port()
        .ok_or_else(|| TrackerError::BadUrl(format!("{url}: a UDP tracker needs a port")))?;
    // `host_str` keeps the brackets of an IPv6 literal; the (host, port) form wants them off.
    let deadline = crate::clock::tokio_now() + timing.deadline;
    tokio::time::timeout_at(deadline, async {
        let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await?
            .next()
            .ok_or_else(|| TrackerError::BadUrl(format!("{url}: host has no address")))?;
        let bind: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(addr).await?;
        run(&sock, addr, req, timing.attempt_base).await
    })
    .await
    .map_err(|_| TrackerError::Timeout)?
}

/// Connect (unless cached) and announce, retrying with doubling timeouts until the outer deadline.
async fn run(
    sock: &UdpSocket,
    addr: SocketAddr,
    req: &AnnounceRequest,
    base: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    let mut buf = vec![0u8; RECV_BUF];
    let mut attempt = 0u32;
    loop {
        let timeout = base.saturating_mul(1 << attempt.min(8));
        attempt += 1;
        let conn_id = match cached_id(addr) {
            Some(id) => id,
            None => match connect(sock, &mut buf, timeout).await? {
                Some(id) => {
                    cache_id(addr, id);
                    id
                }
                None => continue,
            },
        };
        let packet = announce_packet(conn_id, req);
        let tid = transaction_id(&packet);
        match exchange(sock, &packet, tid, &mut buf, timeout).await? {
            Some(len) => {
                let body = buf.get(..len).unwrap_or_default();
                return parse_announce(body, addr.is_ipv6());
            }
            // The tracker may have forgotten our connection id: get a new one next time.
            None => forget_id(addr),
        }
    }
}

async fn connect(
    sock: &UdpSocket,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<Option<u64>, TrackerError> {
    let mut packet = [0u8; 16];
    packet[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    packet[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    let tid: u32 = rand::random();
    packet[12..16].copy_from_slice(&tid.to_be_bytes());
    let Some(len) = exchange(sock, &packet, tid, buf, timeout).await? else {
        return Ok(None);
    };
    let id = buf
        .get(8..16)
        .filter(|_| len >= 16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| TrackerError::BadResponse("short UDP connect response".into()))?;
    Ok(Some(id))
}

/// Sends `packet` and waits up to `timeout` for the reply carrying `tid`. Ok(None) on timeout.
/// Checks the action: an error reply becomes `Failure`, and a reply must echo the request's action.
async fn exchange(
    sock: &UdpSocket,
    packet: &[u8],
    tid: u32,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<Option<usize>, TrackerError> {
    let want_action = read_u32(packet, 8).unwrap_or(u32::MAX);
    sock.send(packet).await?;
    let until = crate::clock::tokio_now() + timeout;
    loop {
        let len = match tokio::time::timeout_at(until, sock.recv(buf)).await {
            Err(_) => return Ok(None),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                // An ICMP port-unreachable from a previous send: nobody listens (yet); keep waiting
                // for this attempt's timeout, then retry.
                continue;
            }
            Ok(r) => r?,
        };
        let got = buf.get(..len).unwrap_or_default();
        let (Some(action), Some(got_tid)) = (read_u32(got, 0), read_u32(got, 4)) else {
            continue; // too short to be ours
        };
        if got_tid != tid {
            continue; // a late answer to an earlier attempt, or noise
        }
        if action == ACTION_ERROR {
            return Err(TrackerError::Failure(message_text(
                got.get(8..).unwrap_or_default(),
            )));
        }
        if action != want_action {
            return Err(TrackerError::BadResponse(format!(
                "UDP tracker answered action {action} to action {want_action}"
            )));
        }
        return Ok(Some(len));
    }
}

fn announce_packet(conn_id: u64, req: &AnnounceRequest) -> [u8; 98] {
    let mut p = [0u8; 98];
    p[0..8].copy_from_slice(&conn_id.to_be_bytes());
    p[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    p[12..16].copy_from_slice(&rand::random::<u32>().to_be_bytes());
    p[16..36].copy_from_slice(&req.info_hash.0);
    p[36..56].copy_from_slice(&req.peer_id.0);
    p[56..64].copy_from_slice(&req.downloaded.to_be_bytes());
    p[64..72].copy_from_slice(&req.left.to_be_bytes());
    p[72..80].copy_from_slice(&req.uploaded.to_be_bytes());
    p[80..84].copy_from_slice(&req.event.udp_code().to_be_bytes());
    // 84..88: IP address 0 = the sender's.
    p[88..92].copy_from_slice(&session_key().to_be_bytes());
    let num_want = req.num_want.min(MAX_PEERS as u32);
    p[92..96].copy_from_slice(&num_want.to_be_bytes());
    p[96..98].copy_from_slice(&req.port.to_be_bytes());
    p
}

fn transaction_id(packet: &[u8]) -> u32 {
    read_u32(packet, 12).unwrap_or_default()
}

/// Parses an announce reply (action and transaction id already checked).
pub(super) fn parse_announce(body: &[u8], ipv6: bool) -> Result<AnnounceResponse, TrackerError> {
    let field = |at| {
        read_u32(body, at)
            .ok_or_else(|| TrackerError::BadResponse("short UDP announce response".into()))
    };
    let interval = field(8)?;
    let leechers = field(12)?;
    let seeders = field(16)?;
    let mut peers = PeerSet::default();
    let rest = body.get(20..).unwrap_or_default();
    if ipv6 {
        peers.extend_compact_v6(rest);
    } else {
        peers.extend_compact_v4(rest);
    }
    Ok(AnnounceResponse {
        interval: clamp_interval(Some(i64::from(interval))),
        peers: peers.into_vec(),
        seeders: Some(seeders),
        leechers: Some(leechers),
    })
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The `key` sent with every announce: random, fixed for the life of the process, so a tracker
/// can recognise us across IP changes.
pub(super) fn session_key() -> u32 {
    static KEY: OnceLock<u32> = OnceLock::new();
    *KEY.get_or_init(rand::random)
}

// --- connection id cache ----------------------------------------------------------------------

type IdCache = HashMap<SocketAddr, (u64, Instant)>;

fn ids() -> std::sync::MutexGuard<'static, IdCache> {
    static IDS: OnceLock<Mutex<IdCache>> = OnceLock::new();
    IDS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn cached_id(addr: SocketAddr) -> Option<u64> {
    let ids = ids();
    let &(id, at) = ids.get(&addr)?;
    (at.elapsed() < CONNECTION_ID_TTL).then_some(id)
}

fn cache_id(addr: SocketAddr, id: u64) {
    let mut ids = ids();
    if ids.len() >= MAX_CACHED_IDS {
        ids.retain(|_, (_, at)| at.elapsed() < CONNECTION_ID_TTL);
        if ids.len() >= MAX_CACHED_IDS {
            ids.clear();
        }
    }
    ids.insert(addr, (id, crate::clock::tokio_now()));
}

fn forget_id(addr: SocketAddr) {
    ids().remove(&addr);
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests measure real elapsed time
mod tests {
    use super::super::tests::request;
    use super::super::Event;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const CONN_ID: u64 = 0x1122_3344_5566_7788;

    /// How the test tracker behaves.
    #[derive(Clone, Copy, Default)]
    struct Script {
        /// Drop this many connect requests before answering.
        drop_connects: usize,
        /// Answer announces with this error text.
        error: Option<&'static str>,
        /// Send a reply with a wrong transaction id first.
        noise_first: bool,
    }

    /// A loopback UDP tracker; returns its URL and a counter of connect requests seen.
    async fn tracker(script: Script) -> (String, Arc<AtomicUsize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}/announce", sock.local_addr().unwrap());
        let connects = Arc::new(AtomicUsize::new(0));
        let seen = connects.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let p = &buf[..len];
                let action = read_u32(p, 8).unwrap();
                let tid = &p[12..16];
                let mut out = Vec::new();
                if action == ACTION_CONNECT {
                    assert_eq!(len, 16);
                    assert_eq!(&p[..8], &PROTOCOL_ID.to_be_bytes());
                    if seen.fetch_add(1, Ordering::SeqCst) < script.drop_connects {
                        continue;
                    }
                    out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                    out.extend_from_slice(tid);
                    out.extend_from_slice(&CONN_ID.to_be_bytes());
                } else {
                    assert_eq!(len, 98);
                    assert_eq!(&p[..8], &CONN_ID.to_be_bytes());
                    let r = request();
                    assert_eq!(&p[16..36], &r.info_hash.0);
                    assert_eq!(&p[36..56], &r.peer_id.0);
                    assert_eq!(&p[56..64], &20u64.to_be_bytes());
                    assert_eq!(&p[64..72], &30u64.to_be_bytes());
                    assert_eq!(&p[72..80], &10u64.to_be_bytes());
                    assert_eq!(&p[80..84], &2u32.to_be_bytes()); // started
                    assert_eq!(&p[92..96], &50u32.to_be_bytes());
                    assert_eq!(&p[96..98], &6881u16.to_be_bytes());
                    if script.noise_first {
                        let mut noise = ACTION_ANNOUNCE.to_be_bytes().to_vec();
                        noise.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
                        noise.extend_from_slice(&[0; 12]);
                        sock.send_to(&noise, from).await.unwrap();
                        sock.send_to(&[1, 2], from).await.unwrap();
                    }
                    if let Some(msg) = script.error {
                        out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
                        out.extend_from_slice(tid);
                        out.extend_from_slice(msg.as_bytes());
                    } else {
                        out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                        out.extend_from_slice(tid);
                        out.extend_from_slice(&900u32.to_be_bytes());
                        out.extend_from_slice(&3u32.to_be_bytes()); // leechers
                        out.extend_from_slice(&5u32.to_be_bytes()); // seeders
                        out.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1]);
                        out.extend_from_slice(&[10, 0, 0, 2, 0x1a, 0xe2]);
                        out.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1]); // duplicate
                        out.extend_from_slice(&[10, 0, 0, 3, 0, 0]); // port 0
                    }
                }
                sock.send_to(&out, from).await.unwrap();
            }
        });
        (url, connects)
    }

    const FAST: Timing = Timing {
        attempt_base: Duration::from_millis(100),
        deadline: Duration::from_secs(5),
    };

    async fn run_url(url: &str, timing: Timing) -> Result<AnnounceResponse, TrackerError> {
        announce_with(&url::Url::parse(url).unwrap(), &request(), timing).await
    }

    #[tokio::test]
    async fn connect_then_announce() {
        let (url, connects) = tracker(Script {
            noise_first: true,
            ..Script::default()
        })
        .await;
        let r = super::super::announce(&url, &request()).await.unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.seeders, Some(5));
        assert_eq!(r.leechers, Some(3));
        assert_eq!(
            r.peers,
            vec![
                "10.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:6882".parse().unwrap()
            ]
        );
        // A second announce within a minute reuses the connection id.
        let mut req = request();
        req.event = Event::Started;
        super::super::announce(&url, &req).await.unwrap();
        assert_eq!(connects.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_a_lost_connect() {
        let (url, connects) = tracker(Script {
            drop_connects: 2,
            ..Script::default()
        })
        .await;
        let r = run_url(&url, FAST).await.unwrap();
        assert_eq!(r.peers.len(), 2);
        // Two dropped, then answered; a loaded machine may time out one more attempt.
        assert!(connects.load(Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn error_action_is_failure() {
        let (url, _) = tracker(Script {
            error: Some("torrent not registered"),
            ..Script::default()
        })
        .await;
        match run_url(&url, FAST).await {
            Err(TrackerError::Failure(m)) => assert_eq!(m, "torrent not registered"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_tracker_times_out_within_15s() {
        // Bound but never read: every request goes unanswered.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}", silent.local_addr().unwrap());
        let start = Instant::now();
        let r = super::super::announce(&url, &request()).await;
        assert!(matches!(r, Err(TrackerError::Timeout)), "{r:?}");
        let t = start.elapsed();
        assert!(
            t >= DEADLINE && t <= DEADLINE + Duration::from_secs(1),
            "{t:?}"
        );
    }

    #[test]
    fn short_and_garbage_replies() {
        assert!(matches!(
            parse_announce(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0], false),
            Err(TrackerError::BadResponse(_))
        ));
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0];
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.extend(1..=25u8); // one v6 peer and junk, or four v4 peers and junk
        let v4 = parse_announce(&body, false).unwrap();
        assert_eq!(v4.peers.len(), 4);
        assert_eq!(v4.interval, super::super::MIN_INTERVAL);
        let v6 = parse_announce(&body, true).unwrap();
        assert_eq!(v6.peers.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn garbage_replies_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..600), v6 in proptest::bool::ANY) {
            if let Ok(r) = parse_announce(&body, v6) {
                proptest::prop_assert!(r.peers.len() <= MAX_PEERS);
            }
        }
    }
}
