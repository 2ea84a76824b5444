//! The HTTP tracker protocol (BEP 3): a GET with the announce in the query string, answered by a
//! bencoded dictionary.
//!
//! We ask for `compact=1` (BEP 23) but also read dictionary peer lists, and IPv6 peers from
//! `peers6` (BEP 7). The binary `info_hash` and `peer_id` are percent-encoded by hand (a URL
//! library would treat them as text). Requests time out after [`TIMEOUT`]; bodies larger than
//! [`MAX_BODY`] are refused while they are being read. A `failure reason` is returned as
//! [`TrackerError::Failure`], even when it comes with an error status.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use peercdn_core::bencode;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{clamp_interval, message_text, AnnounceRequest, AnnounceResponse, PeerSet};
use super::{TrackerError, MAX_PEERS};

/// Whole-request timeout, body included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body we read.
pub const MAX_BODY: usize = 1024 * 1024;

/// Bytes kept as they are in the query: RFC 3986 unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Decoder bounds for a tracker response: shallow, and far more items than 200 peers need.
const DECODE_LIMITS: bencode::Limits = bencode::Limits {
    max_depth: 8,
    max_items: 100_000,
};

pub(super) async fn announce(
    url: url::Url,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    let target = announce_url(url, req);
    let resp = client()?.get(&target).send().await.map_err(from_reqwest)?;
    let status = resp.status();
    let body = read_capped(resp).await?;
    if !status.is_success() {
        // Some trackers send their bencoded refusal with a 4xx status: prefer their words.
        if let Err(e @ TrackerError::Failure(_)) = parse_response(&body) {
            return Err(e);
        }
        return Err(TrackerError::HttpStatus(status.as_u16()));
    }
    parse_response(&body)
}

/// The announce URL with our query appended (after any query the tracker URL already has, such
/// as a private tracker's passkey).
fn announce_url(mut url: url::Url, req: &AnnounceRequest) -> String {
    url.set_fragment(None);
    let mut s = String::from(url.as_str());
    s.push(if url.query().is_some() { '&' } else { '?' });
    let _ = write!(
        s,
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}&key={:08x}",
        percent_encode(&req.info_hash.0, QUERY),
        percent_encode(&req.peer_id.0, QUERY),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        req.num_want.min(MAX_PEERS as u32),
        super::udp::session_key(),
    );
    if let Some(event) = req.event.http_name() {
        let _ = write!(s, "&event={event}");
    }
    s
}

/// One client for the process: no idle connections kept (announces are minutes apart), so no
/// connection outlives the runtime that made it.
fn client() -> Result<&'static reqwest::Client, TrackerError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let built = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("peercdn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(from_reqwest)?;
    Ok(CLIENT.get_or_init(|| built))
}

fn from_reqwest(e: reqwest::Error) -> TrackerError {
    if e.is_timeout() {
        return TrackerError::Timeout;
    }
    TrackerError::Io(std::io::Error::other(e))
}

/// Reads the body, refusing more than [`MAX_BODY`] bytes.
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, TrackerError> {
    let too_big = || TrackerError::BadResponse(format!("response larger than {MAX_BODY} bytes"));
    let announced = resp.content_length().unwrap_or(0);
    if announced > MAX_BODY as u64 {
        return Err(too_big());
    }
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = resp.chunk().await.map_err(from_reqwest)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a bencoded announce response.
pub(super) fn parse_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let value = bencode::decode_with(body, DECODE_LIMITS)
        .map_err(|e| TrackerError::BadResponse(e.to_string()))?;
    let dict = value
        .as_dict()
        .ok_or_else(|| TrackerError::BadResponse("not a dictionary".into()))?;
    if let Some(reason) = dict.get(b"failure reason") {
        let text = reason.as_bytes().map(message_text).unwrap_or_default();
        return Err(TrackerError::Failure(text));
    }
    let mut peers = PeerSet::default();
    match dict.get(b"peers") {
        Some(bencode::Value::Bytes(b)) => peers.extend_compact_v4(b),
        Some(bencode::Value::List(list)) => {
            for entry in list {
                if peers.is_full() {
                    break;
                }
                if let Some(addr) = entry.as_dict().and_then(dict_peer) {
                    peers.push(addr);
                }
            }
        }
        Some(_) => {
            return Err(TrackerError::BadResponse(
                "peers is neither string nor list".into(),
            ))
        }
        None => {}
    }
    if let Some(b) = dict.get_bytes(b"peers6") {
        peers.extend_compact_v6(b);
    }
    let count = |key: &[u8]| dict.get_int(key).and_then(|n| u32::try_from(n).ok());
    Ok(AnnounceResponse {
        interval: clamp_interval(dict.get_int(b"interval")),
        peers: peers.into_vec(),
        seeders: count(b"complete"),
        leechers: count(b"incomplete"),
    })
}

/// A `{ip, port}` peer. Host names are skipped: resolving what a tracker names is not our job.
fn dict_peer(d: &bencode::Dict<'_>) -> Option<SocketAddr> {
    let ip: IpAddr = d.get_str(b"ip")?.parse().ok()?;
    let port = u16::try_from(d.get_int(b"port")?).ok()?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::super::tests::request;
    use super::super::{announce, Event, MIN_INTERVAL};
    use super::*;
    use bencode::OwnedValue;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// A one-shot loopback HTTP server: answers one request with `status` and `body`, and hands
    /// back the request line it saw.
    async fn server(status: &'static str, body: Vec<u8>) -> (String, oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let _ = tx.send(line);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(&body).await.unwrap();
            conn.shutdown().await.unwrap();
        });
        (url, rx)
    }

    fn compact(peers: &[([u8; 4], u16)]) -> Vec<u8> {
        peers
            .iter()
            .flat_map(|(ip, port)| ip.iter().copied().chain(port.to_be_bytes()))
            .collect()
    }

    #[tokio::test]
    async fn compact_response_and_query() {
        let mut v6 = std::net::Ipv6Addr::LOCALHOST.octets().to_vec();
        v6.extend_from_slice(&7000u16.to_be_bytes());
        let body = OwnedValue::dict()
            .with("complete", 5)
            .with("incomplete", 3)
            .with("interval", 900)
            .with(
                "peers",
                compact(&[
                    ([10, 0, 0, 1], 6881),
                    ([10, 0, 0, 1], 6881),
                    ([10, 0, 0, 2], 1),
                ]),
            )
            .with("peers6", v6)
            .build()
            .encode();
        let (url, line) = server("200 OK", body).await;
        let r = announce(&url, &request()).await.unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.seeders, Some(5));
        assert_eq!(r.leechers, Some(3));
        let want: Vec<SocketAddr> = ["10.0.0.1:6881", "10.0.0.2:1", "[::1]:7000"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(r.peers, want);

        let line = line.await.unwrap();
        assert!(line.starts_with("GET /announce?info_hash="), "{line}");
        // The binary info hash, byte for byte: 00 01 02 ' ' '&' '?' '=' '%' ff then letters.
        assert!(
            line.contains("info_hash=%00%01%02%20%26%3F%3D%25%FFabcdefghijk&"),
            "{line}"
        );
        assert!(line.contains("&peer_id=-PC0100-"), "{line}");
        for part in [
            "port=6881",
            "uploaded=10",
            "downloaded=20",
            "left=30",
            "compact=1",
        ] {
            assert!(line.contains(part), "{part} missing in {line}");
        }
        assert!(line.contains("numwant=50&key="), "{line}");
        assert!(line.ends_with("&event=started HTTP/1.1"), "{line}");
    }

    #[tokio::test]
    async fn dict_peers_and_existing_query() {
        let peer = |ip: &str, port: i64| {
            OwnedValue::from(
                OwnedValue::dict()
                    .with("ip", ip)
                    .with("port", port)
                    .with("peer id", "x"),
            )
        };
        let body = OwnedValue::dict()
            .with("interval", 1)
            .with(
                "peers",
                vec![
                    peer("192.0.2.7", 6881),
                    peer("2001:db8::1", 51413),
                    peer("tracker.example", 80), // host names are skipped
                    peer("192.0.2.8", 70000),    // bad port
                    OwnedValue::int(3),          // not a dict
                ],
            )
            .build()
            .encode();
        let (url, line) = server("200 OK", body).await;
        let mut req = request();
        req.event = Event::None;
        let r = announce(&format!("{url}?passkey=abc#frag"), &req)
            .await
            .unwrap();
        assert_eq!(r.interval, MIN_INTERVAL);
        assert_eq!((r.seeders, r.leechers), (None, None));
        let want: Vec<SocketAddr> = ["192.0.2.7:6881", "[2001:db8::1]:51413"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(r.peers, want);
        let line = line.await.unwrap();
        assert!(
            line.starts_with("GET /announce?passkey=abc&info_hash="),
            "{line}"
        );
        assert!(!line.contains("event="), "{line}");
        assert!(!line.contains("frag"), "{line}");
    }

    #[tokio::test]
    async fn failure_reason() {
        let body = OwnedValue::dict()
            .with("failure reason", "unregistered torrent")
            .build()
            .encode();
        let (url, _) = server("200 OK", body.clone()).await;
        match announce(&url, &request()).await {
            Err(TrackerError::Failure(m)) => assert_eq!(m, "unregistered torrent"),
            other => panic!("{other:?}"),
        }
        // With an error status, the tracker's words still win.
        let (url, _) = server("403 Forbidden", body).await;
        assert!(matches!(
            announce(&url, &request()).await,
            Err(TrackerError::Failure(_))
        ));
    }

    #[tokio::test]
    async fn status_and_garbage() {
        let (url, _) = server("404 Not Found", b"nope".to_vec()).await;
        assert!(matches!(
            announce(&url, &request()).await,
            Err(TrackerError::HttpStatus(404))
        ));
        let (url, _) = server("200 OK", b"<html>hi</html>".to_vec()).await;
        assert!(matches!(
            announce(&url, &request()).await,
            Err(TrackerError::BadResponse(_))
        ));
        let (url, _) = server("200 OK", b"le".to_vec()).await;
        assert!(matches!(
            announce(&url, &request()).await,
            Err(TrackerError::BadResponse(_))
        ));
    }

    #[tokio::test]
    async fn oversized_body_is_refused() {
        let body = vec![b'x'; MAX_BODY + 1];
        let (url, _) = server("200 OK", body).await;
        match announce(&url, &request()).await {
            Err(TrackerError::BadResponse(m)) => assert!(m.contains("larger"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn connection_refused_is_io() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let r = announce(&format!("http://{addr}/announce"), &request()).await;
        assert!(matches!(r, Err(TrackerError::Io(_))), "{r:?}");
    }

    #[test]
    fn caps_peers_from_huge_lists() {
        let many: Vec<OwnedValue> = (0..1000u32)
            .map(|i| {
                OwnedValue::dict()
                    .with("ip", format!("10.0.{}.{}", i / 256, i % 256))
                    .with("port", 1)
                    .build()
            })
            .collect();
        let body = OwnedValue::dict().with("peers", many).build().encode();
        assert_eq!(parse_response(&body).unwrap().peers.len(), MAX_PEERS);
    }

    proptest::proptest! {
        #[test]
        fn garbage_responses_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_response(&body);
        }

        #[test]
        fn compact_peers_in_any_dict(peers in proptest::collection::vec(proptest::num::u8::ANY, 0..2000), interval in proptest::num::i64::ANY) {
            let body = OwnedValue::dict().with("interval", interval).with("peers", peers.clone()).build().encode();
            let r = parse_response(&body).unwrap();
            proptest::prop_assert!(r.peers.len() <= MAX_PEERS);
            proptest::prop_assert!(r.peers.len() <= peers.len() / 6);
            proptest::prop_assert!(r.interval >= MIN_INTERVAL);
        }
    }
}
