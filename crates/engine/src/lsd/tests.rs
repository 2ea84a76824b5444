//! Unit tests of LSD: the codec, the receive policy, the announce schedule, and start-up.
#![allow(clippy::disallowed_methods)] // tests measure real elapsed time

use super::*;

fn ih(b: u8) -> InfoHash {
    InfoHash([b; 20])
}

fn src() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 6771))
}

#[test]
fn encode_parse_round_trip() {
    let hashes: Vec<InfoHash> = (1..=16).map(ih).collect();
    let d = encode(8621, &hashes, "c00k1e");
    assert!(d.len() <= MAX_DATAGRAM, "{}", d.len());
    let a = parse(&d).expect("parse");
    assert_eq!(a.port, 8621);
    assert_eq!(a.info_hashes, hashes);
    assert_eq!(a.cookie.as_deref(), Some("c00k1e"));
    // Writing more than 16 hashes is capped.
    let more: Vec<InfoHash> = (1..=20).map(ih).collect();
    assert_eq!(
        parse(&encode(1, &more, "x")).map(|a| a.info_hashes.len()),
        Ok(16)
    );
}

#[test]
fn parses_libtorrent_style_and_variants() {
    let h = hex::encode([0xab; 20]);
    let lt = format!(
        "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: {h}\r\ncookie: 1a2b\r\n\r\n\r\n"
    );
    let a = parse(lt.as_bytes()).expect("libtorrent format");
    assert_eq!(a.port, 6881);
    assert_eq!(a.info_hashes, vec![InfoHash([0xab; 20])]);
    // Upper-case hex, no cookie, \n endings, other case of names, duplicate hash folded.
    let up = h.to_uppercase();
    let v = format!("BT-SEARCH * HTTP/1.1\nPORT:1\ninfohash: {up}\nINFOHASH: {h}\nX-Other: y\n\n");
    let a = parse(v.as_bytes()).expect("variant");
    assert_eq!((a.port, a.info_hashes.len(), a.cookie), (1, 1, None));
}

#[test]
fn rejects_malformed() {
    let h = hex::encode([1u8; 20]);
    let ok_tail = format!("Port: 1\r\nInfohash: {h}\r\n\r\n");
    let cases: Vec<(String, ParseError)> = vec![
        (
            format!("GET / HTTP/1.1\r\n{ok_tail}"),
            ParseError::BadRequestLine,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: {h}\r\n"),
            ParseError::Unterminated,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nno colon\r\n{ok_tail}"),
            ParseError::BadHeader,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nInfohash: {h}\r\n\r\n"),
            ParseError::NoPort,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 2\r\n{ok_tail}"),
            ParseError::DuplicatePort,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: {h}\r\n\r\n"),
            ParseError::BadPort,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 70000\r\nInfohash: {h}\r\n\r\n"),
            ParseError::BadPort,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nPort: +1\r\nInfohash: {h}\r\n\r\n"),
            ParseError::BadPort,
        ),
        (
            "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n\r\n".to_string(),
            ParseError::NoInfohash,
        ),
        (
            "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: xyz\r\n\r\n".to_string(),
            ParseError::BadInfohash,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: {h}zz\r\n\r\n"),
            ParseError::BadInfohash,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\ncookie: \r\n{ok_tail}"),
            ParseError::BadCookie,
        ),
        (
            format!("BT-SEARCH * HTTP/1.1\r\ncookie: a\r\ncookie: b\r\n{ok_tail}"),
            ParseError::BadCookie,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse(text.as_bytes()), Err(want.clone()), "{text:?}");
    }
    assert_eq!(parse(&[0xff, 0xfe, b'\n']), Err(ParseError::NotText));
    assert_eq!(parse(&[b'a'; 1401]), Err(ParseError::TooLong(1401)));
    let many: String = (0..17u8)
        .map(|i| format!("Infohash: {}\r\n", hex::encode([i; 20])))
        .collect();
    let text = format!("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n{many}\r\n");
    assert_eq!(parse(text.as_bytes()), Err(ParseError::TooManyInfohashes));
    let lines: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
    let text = format!("BT-SEARCH * HTTP/1.1\r\n{lines}{ok_tail}");
    assert_eq!(parse(text.as_bytes()), Err(ParseError::TooManyLines));
}

#[test]
fn receive_policy_own_cookie_held_only_dedup() {
    let t0 = Instant::now();
    let mut s = LsdState::new(9000, "mine".into(), Some("10.0.0.1:9000".parse().unwrap()));
    s.add(ih(1), t0);
    // Our own cookie (multicast loop) is ignored.
    let own = encode(9000, &[ih(1)], "mine");
    assert_eq!(s.handle_datagram(t0, src(), &own), Received::Own);
    // Our own address without a matching cookie too.
    let me = encode(9000, &[ih(1)], "other");
    let from_me: SocketAddr = "10.0.0.1:6771".parse().unwrap();
    assert_eq!(s.handle_datagram(t0, from_me, &me), Received::Own);
    // Another node: only the held hash is reported, with the source IP + Port header.
    let theirs = encode(7000, &[ih(1), ih(2)], "theirs");
    let peer: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    assert_eq!(
        s.handle_datagram(t0, src(), &theirs),
        Received::Peers(vec![(ih(1), peer)])
    );
    // A copy inside the window is de-duplicated; after it, reported again.
    assert_eq!(
        s.handle_datagram(t0 + Duration::from_millis(10), src(), &theirs),
        Received::Peers(vec![])
    );
    assert_eq!(
        s.handle_datagram(t0 + ANNOUNCE_GAP, src(), &theirs),
        Received::Peers(vec![(ih(1), peer)])
    );
    // Garbage is counted.
    assert!(matches!(
        s.handle_datagram(t0, src(), b"garbage"),
        Received::Malformed(ParseError::BadRequestLine)
    ));
    s.remove(&ih(1));
    assert_eq!(
        s.handle_datagram(t0 + 10 * ANNOUNCE_GAP, src(), &theirs),
        Received::Peers(vec![])
    );
    let st = s.stats();
    assert_eq!(st.packets_received, 7);
    assert_eq!(st.own_ignored, 2);
    assert_eq!(st.malformed, 1);
    assert_eq!(st.peers_found, 2);
    assert_eq!(st.held, 0);
}

#[test]
fn reports_per_second_are_capped_and_recent_table_bounded() {
    let t0 = Instant::now();
    let mut s = LsdState::new(9000, "mine".into(), None);
    s.add(ih(1), t0);
    let d = encode(7000, &[ih(1)], "x");
    let mut found = 0;
    for i in 0..(MAX_RECENT as u32 + 500) {
        let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 1));
        if let Received::Peers(p) = s.handle_datagram(t0, from, &d) {
            found += p.len();
        }
        assert!(s.recent.len() <= MAX_RECENT);
    }
    assert_eq!(found, MAX_PEERS_PER_SECOND as usize);
    assert_eq!(
        s.stats().peers_dropped,
        MAX_RECENT as u64 + 500 - u64::from(MAX_PEERS_PER_SECOND)
    );
    // The next second has a fresh budget.
    let from = SocketAddr::from(([192, 168, 0, 1], 1));
    assert!(matches!(
        s.handle_datagram(t0 + Duration::from_secs(1), from, &d),
        Received::Peers(p) if p.len() == 1
    ));
    // The recent table never outgrows its cap, even under a long flood.
    for i in 0..(3 * MAX_RECENT as u32) {
        let from = SocketAddr::from(([172, 16, (i >> 8) as u8, i as u8], 2));
        let now = t0 + Duration::from_secs(2 + u64::from(i / MAX_PEERS_PER_SECOND));
        s.handle_datagram(now, from, &d);
        assert!(s.recent.len() <= MAX_RECENT);
    }
}

#[test]
fn announce_rate_limit_and_batching() {
    let t0 = Instant::now();
    let mut s = LsdState::new(9000, "mine".into(), None);
    assert_eq!(s.poll_timeout(), None);
    assert!(s.poll_transmit(t0).is_none());
    for b in 0..40 {
        s.add(ih(b), t0);
    }
    // First datagram at once with 16 hashes; then nothing until the gap has passed.
    let first = tx(&mut s, t0).expect("due");
    assert_eq!(first.info_hashes.len(), 16);
    assert_eq!(first.cookie.as_deref(), Some("mine"));
    assert!(s.poll_transmit(t0).is_none());
    assert!(s.poll_transmit(t0 + ANNOUNCE_GAP / 2).is_none());
    assert_eq!(s.poll_timeout(), Some(t0 + ANNOUNCE_GAP));
    let t1 = t0 + ANNOUNCE_GAP;
    let second = tx(&mut s, t1).expect("due");
    let t2 = t1 + ANNOUNCE_GAP;
    let third = tx(&mut s, t2).expect("due");
    assert_eq!((second.info_hashes.len(), third.info_hashes.len()), (16, 8));
    let mut all: Vec<InfoHash> = [first, second, third]
        .into_iter()
        .flat_map(|a| a.info_hashes)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40, "every hash announced exactly once");
    // Then nothing until the interval; re-adding a held hash keeps its schedule.
    s.add(ih(0), t2);
    assert!(s.poll_transmit(t2 + ANNOUNCE_GAP).is_none());
    assert_eq!(s.poll_timeout(), Some(t0 + ANNOUNCE_INTERVAL));
    // A newly added hash goes out at the next allowed moment.
    s.add(ih(99), t2);
    let next = tx(&mut s, t2 + ANNOUNCE_GAP).expect("new hash");
    assert_eq!(next.info_hashes, vec![ih(99)]);
    assert_eq!(s.stats().announces_sent, 4);
    let again = s
        .poll_transmit(t0 + ANNOUNCE_INTERVAL)
        .expect("re-announce");
    assert_eq!(again.len(), 16);
    // Each group's datagram names it in its Host header.
    let v6 = String::from_utf8(s.datagram(group(true), &again)).unwrap();
    assert!(v6.contains("\r\nHost: [ff15::efc0:988f]:6771\r\n"), "{v6}");
    assert_eq!(parse(v6.as_bytes()).map(|a| a.info_hashes), Ok(again));
}

/// The next due announce, encoded for the IPv4 group and parsed back.
fn tx(s: &mut LsdState, now: Instant) -> Option<Announce> {
    let hashes = s.poll_transmit(now)?;
    Some(parse(&s.datagram(group(false), &hashes)).expect("ours parse"))
}

#[test]
fn refuses_loopback_an_unknown_ipv6_address_and_port_zero() {
    let cb: PeerCallback = Arc::new(|_, _| {});
    let start = |bind: IpAddr, peer_port| Lsd::start(LsdConfig { bind, peer_port }, cb.clone());
    assert!(matches!(
        start("127.0.0.1".parse().unwrap(), 1),
        Err(LsdError::Loopback(_))
    ));
    assert!(matches!(
        start("127.3.2.1".parse().unwrap(), 1),
        Err(LsdError::Loopback(_))
    ));
    assert!(matches!(
        start("::1".parse().unwrap(), 1),
        Err(LsdError::Loopback(_))
    ));
    assert!(matches!(
        start("::ffff:127.0.0.1".parse().unwrap(), 1),
        Err(LsdError::Loopback(_))
    ));
    // An address no interface of this host holds.
    assert!(matches!(
        start("2001:db8::7".parse().unwrap(), 1),
        Err(LsdError::NoInterface(_))
    ));
    assert!(matches!(
        start("10.0.0.1".parse().unwrap(), 0),
        Err(LsdError::InvalidPort)
    ));
}

#[tokio::test]
async fn session_on_loopback_keeps_lsd_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = crate::session::Session::start(crate::session::SessionConfig {
        data_dir: dir.path().join("data"),
        download_dir: dir.path().join("dl"),
        listen: "127.0.0.1:0".parse().expect("addr"),
        static_peers: vec![],
        upload_limit: 0,
        download_limit: 0,
        dht: None,
        receipt_interval: crate::receipts::DEFAULT_INTERVAL,
        encryption: Default::default(),
        utp: Default::default(),
        dht_port: None,
    })
    .await
    .expect("session");
    assert!(matches!(session.start_lsd(), Err(LsdError::Loopback(_))));
    assert_eq!(session.lsd_stats(), None);
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1600)) {
        if let Ok(a) = parse(&bytes) {
            proptest::prop_assert!(!a.info_hashes.is_empty());
            proptest::prop_assert!(a.info_hashes.len() <= MAX_HASHES_PER_DATAGRAM);
            proptest::prop_assert!(a.port != 0);
        }
    }

    #[test]
    fn parse_text_never_panics(text in "(BT-SEARCH \\* HTTP/1.1\r\n)?([A-Za-z:0-9 \r\n]{0,200})") {
        let _ = parse(text.as_bytes());
    }

    #[test]
    fn round_trip(port in 1u16.., n in 1usize..=16, seed in proptest::num::u8::ANY,
                  cookie in "[a-f0-9]{1,32}") {
        let hashes: Vec<InfoHash> =
            (0..n).map(|i| InfoHash([seed.wrapping_add(i as u8); 20])).collect();
        let a = parse(&encode(port, &hashes, &cookie)).expect("own encoding parses");
        proptest::prop_assert_eq!(a.port, port);
        proptest::prop_assert_eq!(a.info_hashes, hashes);
        proptest::prop_assert_eq!(a.cookie, Some(cookie));
    }
}
