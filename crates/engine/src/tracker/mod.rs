//! BitTorrent tracker clients: one [`announce`] call, dispatched on the URL's scheme.
//!
//! - `http://` and `https://`: BEP 3 with `compact=1` (BEP 23), dictionary peer lists, and IPv6
//!   `peers6` (BEP 7); see `http.rs`. Requests time out after 10 s and bodies are capped at 1 MiB.
//! - `udp://`: BEP 15 (connect, then announce, matched by transaction id); see `udp.rs`. Retries
//!   double their timeout, but a call never lasts longer than about 15 s in all. Connection ids are
//!   reused for at most one minute.
//!
//! This module owns the talking to trackers and nothing else: when to announce, and what to do
//! with the peers, belong to the session. Every peer list is de-duplicated, stripped of
//! unusable entries (port 0, unspecified addresses) and capped at [`MAX_PEERS`], whatever the
//! tracker sends. The announce interval is clamped to [`MIN_INTERVAL`]..=[`MAX_INTERVAL`] so a
//! broken tracker can make us neither hammer it nor go silent.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use peercdn_core::id::{InfoHash, PeerId};

mod http;
mod udp;

/// Most peers kept from one announce response.
pub const MAX_PEERS: usize = 200;
/// Shortest announce interval we accept from a tracker.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Longest announce interval we accept from a tracker.
pub const MAX_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Interval used when a tracker does not say.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Longest tracker failure or warning text we keep, in bytes.
const MAX_MESSAGE: usize = 512;

/// What we tell the tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer ID.
    pub peer_id: PeerId,
    /// The TCP port we accept peer connections on.
    pub port: u16,
    /// Bytes uploaded since the `Started` event.
    pub uploaded: u64,
    /// Bytes downloaded since the `Started` event.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// Why we announce.
    pub event: Event,
    /// How many peers we would like (capped at [`MAX_PEERS`] on the wire).
    pub num_want: u32,
}

/// The announce event (BEP 3 / BEP 15).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Event {
    /// A regular, periodic announce.
    #[default]
    None,
    /// The first announce of a download.
    Started,
    /// The download just finished (sent once).
    Completed,
    /// We are leaving the swarm.
    Stopped,
}

impl Event {
    /// The `event=` value of an HTTP announce; None for a regular announce.
    fn http_name(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }

    /// The event number of a UDP announce.
    fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }
}

/// What the tracker told us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// When to announce again (clamped to [`MIN_INTERVAL`]..=[`MAX_INTERVAL`]).
    pub interval: Duration,
    /// Peers, de-duplicated, at most [`MAX_PEERS`].
    pub peers: Vec<SocketAddr>,
    /// Peers with the whole torrent, if the tracker said.
    pub seeders: Option<u32>,
    /// Peers still downloading, if the tracker said.
    pub leechers: Option<u32>,
}

/// Why an announce failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The URL does not parse, or lacks a host or port.
    #[error("bad tracker URL {0}")]
    BadUrl(String),
    /// A scheme we do not speak (e.g. `wss://`).
    #[error("unsupported tracker scheme {0:?} (http, https and udp are supported)")]
    UnsupportedScheme(String),
    /// The HTTP tracker answered with a non-success status and no failure reason.
    #[error("tracker answered HTTP {0}")]
    HttpStatus(u16),
    /// The tracker refused the announce; its own words.
    #[error("tracker failure: {0}")]
    Failure(String),
    /// No answer in time.
    #[error("tracker did not answer in time")]
    Timeout,
    /// The answer is not a valid tracker response.
    #[error("bad tracker response: {0}")]
    BadResponse(String),
    /// Resolving, connecting, sending or receiving failed.
    #[error("tracker I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Announces to the tracker at `url` (`http://`, `https://` or `udp://`).
pub async fn announce(url: &str, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
    let parsed = url::Url::parse(url).map_err(|e| TrackerError::BadUrl(format!("{url:?}: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => http::announce(parsed, req).await,
        "udp" => udp::announce(&parsed, req).await,
        other => Err(TrackerError::UnsupportedScheme(other.to_string())),
    }
}

/// Parses an HTTP tracker's bencoded announce response (BEP 3, compact BEP 23, `peers6` BEP 7):
/// a `failure reason` is [`TrackerError::Failure`]. Public for the fuzz target of tracker replies.
pub fn parse_http_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    http::parse_response(body)
}

/// Parses the body of a UDP tracker's announce reply (BEP 15), whose action and transaction ID
/// the caller has checked; `ipv6` when it came over IPv6 (18-byte peers). Public for the fuzz
/// target of tracker replies.
pub fn parse_udp_announce(body: &[u8], ipv6: bool) -> Result<AnnounceResponse, TrackerError> {
    udp::parse_announce(body, ipv6)
}

// --- shared helpers ---------------------------------------------------------------------------

/// Collects peers: de-duplicated, usable, at most [`MAX_PEERS`].
#[derive(Default)]
struct PeerSet {
    seen: HashSet<SocketAddr>,
    list: Vec<SocketAddr>,
}

impl PeerSet {
    fn is_full(&self) -> bool {
        self.list.len() >= MAX_PEERS
    }

    fn push(&mut self, addr: SocketAddr) {
        if self.is_full() || addr.port() == 0 || addr.ip().is_unspecified() {
            return;
        }
        if self.seen.insert(addr) {
            self.list.push(addr);
        }
    }

    /// Adds compact IPv4 peers: 4 address bytes and 2 port bytes each (BEP 23). A trailing
    /// partial entry is ignored.
    fn extend_compact_v4(&mut self, bytes: &[u8]) {
        for c in bytes.chunks_exact(6) {
            if self.is_full() {
                return;
            }
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            let port = u16::from_be_bytes([c[4], c[5]]);
            self.push(SocketAddr::new(IpAddr::V4(ip), port));
        }
    }

    /// Adds compact IPv6 peers: 16 address bytes and 2 port bytes each (BEP 7).
    fn extend_compact_v6(&mut self, bytes: &[u8]) {
        for c in bytes.chunks_exact(18) {
            if self.is_full() {
                return;
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&c[..16]);
            let port = u16::from_be_bytes([c[16], c[17]]);
            self.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port));
        }
    }

    fn into_vec(self) -> Vec<SocketAddr> {
        self.list
    }
}

/// Turns a tracker's interval in seconds into our clamped interval.
fn clamp_interval(secs: Option<i64>) -> Duration {
    match secs {
        Some(s) if s >= 0 => Duration::from_secs(s as u64).clamp(MIN_INTERVAL, MAX_INTERVAL),
        _ => DEFAULT_INTERVAL,
    }
}

/// A tracker's message as bounded, printable text.
fn message_text(bytes: &[u8]) -> String {
    let cut = bytes.get(..MAX_MESSAGE).unwrap_or(bytes);
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash(*b"\x00\x01\x02 &?=%\xffabcdefghijk"),
            peer_id: PeerId::ours([1; 12]),
            port: 6881,
            uploaded: 10,
            downloaded: 20,
            left: 30,
            event: Event::Started,
            num_want: 50,
        }
    }

    #[test]
    fn peer_set_dedups_filters_and_caps() {
        let mut s = PeerSet::default();
        let mut compact = Vec::new();
        for i in 0..300u32 {
            compact.extend_from_slice(&(0x0a00_0000 + i % 250).to_be_bytes());
            compact.extend_from_slice(&6881u16.to_be_bytes());
        }
        compact.extend_from_slice(&[1, 2, 3, 4, 0, 0]); // port 0
        compact.extend_from_slice(&[9, 9]); // trailing garbage
        let mut first = PeerSet::default();
        first.extend_compact_v4(&[0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 0, 1]);
        assert_eq!(first.into_vec(), vec!["5.6.7.8:1".parse().unwrap()]);
        s.extend_compact_v4(&compact);
        let v = s.into_vec();
        assert_eq!(v.len(), MAX_PEERS);
        assert_eq!(v.iter().collect::<HashSet<_>>().len(), MAX_PEERS);
    }

    #[test]
    fn compact_v6() {
        let mut s = PeerSet::default();
        let mut b = Ipv6Addr::LOCALHOST.octets().to_vec();
        b.extend_from_slice(&51413u16.to_be_bytes());
        s.extend_compact_v6(&b);
        s.extend_compact_v6(&b);
        assert_eq!(s.into_vec(), vec!["[::1]:51413".parse().unwrap()]);
    }

    #[test]
    fn interval_is_clamped() {
        assert_eq!(clamp_interval(Some(0)), MIN_INTERVAL);
        assert_eq!(clamp_interval(Some(900)), Duration::from_secs(900));
        assert_eq!(clamp_interval(Some(i64::MAX)), MAX_INTERVAL);
        assert_eq!(clamp_interval(Some(-5)), DEFAULT_INTERVAL);
        assert_eq!(clamp_interval(None), DEFAULT_INTERVAL);
    }

    #[tokio::test]
    async fn unsupported_and_bad_urls() {
        let r = request();
        assert!(matches!(
            announce("wss://tracker.example/announce", &r).await,
            Err(TrackerError::UnsupportedScheme(s)) if s == "wss"
        ));
        assert!(matches!(
            announce("not a url", &r).await,
            Err(TrackerError::BadUrl(_))
        ));
        assert!(matches!(
            announce("udp://127.0.0.1/announce", &r).await,
            Err(TrackerError::BadUrl(_))
        ));
    }
}
