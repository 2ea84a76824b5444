//! Unit tests of the connection manager (virtual time, no I/O).
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait
#![allow(clippy::needless_range_loop)] // the simultaneous-open model indexes [end][tcp]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;

fn id(n: u8) -> PeerId {
    PeerId([n; 20])
}

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn net(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], port))
}

/// A PEX address not flagged reachable.
fn heard(addr: SocketAddr) -> crate::ext::pex::Heard {
    crate::ext::pex::Heard {
        addr,
        reachable: false,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn drain(m: &mut ConnManager) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn dials(actions: &[Action]) -> Vec<SocketAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial(a) => Some(*a),
            _ => None,
        })
        .collect()
}

fn pid(n: u16) -> PeerId {
    let mut p = [0xee; 20];
    p[..2].copy_from_slice(&n.to_be_bytes());
    PeerId(p)
}

fn manager(statics: &[SocketAddr], t0: Instant) -> ConnManager {
    active(ConnConfig::default(), statics, t0)
}

fn active(cfg: ConnConfig, statics: &[SocketAddr], t0: Instant) -> ConnManager {
    let mut m = ConnManager::new(cfg, id(50), statics, t0);
    m.set_active(true, t0);
    m
}

fn attach(m: &mut ConnManager, addr: SocketAddr, peer: PeerId, now: Instant) -> ConnId {
    match m.on_incoming(addr, peer, now) {
        Admission::Attach(c) => c,
        other => panic!("expected attach, got {other:?}"),
    }
}

#[test]
fn statics_are_dialled_at_once_within_the_dial_limit() {
    let t0 = Instant::now();
    let statics: Vec<SocketAddr> = (1..=20).map(|i| net(i, 6881)).collect();
    let mut m = manager(&statics, t0);
    assert_eq!(dials(&drain(&mut m)).len(), 16);
    assert_eq!(m.dialing(), 16);
    // A finished dial frees room for one more.
    assert!(matches!(
        m.on_dialed(net(1, 6881), id(1), t0),
        Admission::Attach(_)
    ));
    assert_eq!(dials(&drain(&mut m)).len(), 1);
}

#[test]
fn dials_stop_at_the_peer_limit() {
    let t0 = Instant::now();
    let cfg = ConnConfig {
        max_peers: 3,
        ..ConnConfig::default()
    };
    let mut m = active(cfg, &[], t0);
    m.add_candidates((1..=10).map(|i| net(i, 1)), Source::Pex, t0);
    assert_eq!(dials(&drain(&mut m)).len(), 3);
}

/// Failed dials: a static peer is retried with a doubling delay, any other address is given up
/// after three failures.
#[test]
fn failed_dials_back_off() {
    let t0 = Instant::now();
    let s = net(1, 1);
    let p = net(2, 1);
    let mut m = manager(&[s], t0);
    m.add_candidates([p], Source::Dht, t0);
    assert_eq!(dials(&drain(&mut m)), vec![s, p]);
    let mut now = t0;
    let mut static_retries = vec![];
    for _ in 0..4 {
        m.on_dial_failed(s, now);
        m.on_dial_failed(p, now);
        drain(&mut m);
        let next = m.poll_timeout().expect("a retry is scheduled");
        static_retries.push(next - now);
        now = next;
        m.handle_timeout(now);
        let d = dials(&drain(&mut m));
        assert!(d.contains(&s));
    }
    assert_eq!(static_retries, vec![secs(1), secs(2), secs(4), secs(8)]);
    assert_eq!(m.candidate_count(), 1, "the DHT address was forgotten");
}

#[test]
fn a_static_peer_is_redialled_after_a_drop() {
    let t0 = Instant::now();
    let s = net(1, 1);
    let mut m = manager(&[s], t0);
    drain(&mut m);
    let Admission::Attach(c) = m.on_dialed(s, id(1), t0) else {
        panic!()
    };
    assert_eq!(m.poll_timeout(), None);
    m.on_closed(c, t0 + secs(30));
    assert!(dials(&drain(&mut m)).is_empty());
    assert_eq!(m.poll_timeout(), Some(t0 + secs(31)));
    m.handle_timeout(t0 + secs(31));
    assert_eq!(dials(&drain(&mut m)), vec![s]);
}

/// Bans were keyed by `SocketAddr`: a banned peer that reconnected from a new source port was
/// accepted. Now a non-loopback ban covers the IP: new ports, dials to any port of it, all refused.
#[test]
fn a_ban_holds_across_source_ports() {
    let t0 = Instant::now();
    let mut m = manager(&[], t0);
    let c = attach(&mut m, net(9, 40000), id(9), t0);
    m.ban(c, t0);
    assert_eq!(
        m.on_incoming(net(9, 40001), id(10), t0),
        Admission::Refuse(Refusal::Banned)
    );
    assert!(m.refuses(net(9, 40002)));
    m.add_candidates([net(9, 6881)], Source::Pex, t0);
    assert!(dials(&drain(&mut m)).is_empty());
    assert!(matches!(
        m.on_incoming(net(8, 1), id(8), t0),
        Admission::Attach(_)
    ));
}

/// On loopback every peer shares 127.0.0.1: the ban covers the peer ID and its addresses, not
/// the IP, and a banned static peer is never dialled again (VoD re-dialled it every second).
#[test]
fn a_loopback_ban_covers_the_peer_id_and_its_addresses() {
    let t0 = Instant::now();
    let s = lo(7000);
    let mut m = manager(&[s], t0);
    assert_eq!(dials(&drain(&mut m)), vec![s]);
    let Admission::Attach(c) = m.on_dialed(s, id(7), t0) else {
        panic!()
    };
    m.ban(c, t0);
    for t in 1..100 {
        m.handle_timeout(t0 + secs(t));
        assert!(
            dials(&drain(&mut m)).is_empty(),
            "banned static peer re-dialled"
        );
    }
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(
        m.on_incoming(lo(50123), id(7), t0),
        Admission::Refuse(Refusal::Banned),
        "same peer ID from a new port"
    );
    m.add_candidates([s], Source::Pex, t0);
    assert!(dials(&drain(&mut m)).is_empty());
    assert!(matches!(
        m.on_incoming(lo(50124), id(8), t0),
        Admission::Attach(_)
    ));
}

/// A peer that dialled us tells where it listens: we do not dial that address while
/// connected, and a loopback ban covers it.
#[test]
fn a_told_listen_address_counts_as_connected_and_banned() {
    let t0 = Instant::now();
    let mut m = manager(&[], t0);
    let c = attach(&mut m, lo(50000), id(9), t0);
    m.set_listen_addr(c, lo(7009));
    m.add_candidates([lo(7009)], Source::Pex, t0);
    assert!(dials(&drain(&mut m)).is_empty());
    m.ban(c, t0);
    m.add_candidates([lo(7009)], Source::Pex, t0);
    assert!(dials(&drain(&mut m)).is_empty());
    m.add_candidates([lo(7010)], Source::Pex, t0);
    assert_eq!(dials(&drain(&mut m)), vec![lo(7010)]);
}

/// What a second connection with an existing peer ID gets, for every direction and tie-break.
#[test]
fn duplicate_rule_table() {
    // (existing outgoing, newcomer outgoing, their ID vs ours (50), expected)
    let cases = [
        (true, true, 10, "refuse"),
        (false, false, 10, "refuse"),
        (true, true, 90, "refuse"),
        (false, false, 90, "refuse"),
        // Lower ID opened the winner: ours (50) opens outgoing ones.
        (true, false, 10, "hold"), // they (10) opened the newcomer: it wins, is held
        (true, false, 90, "refuse"), // we (50) opened the existing one: it wins
        (false, true, 10, "refuse"), // they (10) opened the existing one
        (false, true, 90, "hold"), // we (50) opened the newcomer
    ];
    for (existing_out, new_out, their, want) in cases {
        let t0 = Instant::now();
        let peer = net(1, 6881);
        let mut m = manager(&[], t0);
        if existing_out {
            m.add_candidates([peer], Source::Pex, t0);
            drain(&mut m);
            assert!(matches!(
                m.on_dialed(peer, id(their), t0),
                Admission::Attach(_)
            ));
        } else {
            attach(&mut m, net(1, 50000), id(their), t0);
        }
        let got = if new_out {
            m.add_candidates([net(1, 6882)], Source::Pex, t0);
            drain(&mut m);
            m.on_dialed(net(1, 6882), id(their), t0)
        } else {
            m.on_incoming(net(1, 50001), id(their), t0)
        };
        let got = match got {
            Admission::Attach(_) => "attach",
            Admission::Hold(_) => "hold",
            Admission::Refuse(_) => "refuse",
        };
        assert_eq!(
            got, want,
            "existing out {existing_out}, new out {new_out}, id {their}"
        );
        assert_eq!(m.peer_count(), 1);
    }
}

/// A peer claiming the ID of a peer we dialled (and winning the tie-break) used to displace
/// that connection in the live actor. Now it is held until it times out, and the real
/// connection stays.
#[test]
fn an_impostor_cannot_displace_a_dialled_peer() {
    let t0 = Instant::now();
    let relay = lo(7000);
    let mut m = manager(&[relay], t0);
    drain(&mut m);
    let Admission::Attach(real) = m.on_dialed(relay, id(10), t0) else {
        panic!()
    };
    let Admission::Hold(imp) = m.on_incoming(lo(50000), id(10), t0) else {
        panic!("the tie-break favours the claimed ID")
    };
    assert_eq!(m.poll_timeout(), Some(t0 + secs(10)));
    m.handle_timeout(t0 + secs(10));
    assert_eq!(
        drain(&mut m),
        vec![Action::Close {
            conn: imp,
            reason: Refusal::HoldExpired
        }]
    );
    assert_eq!(m.peer_id(real), Some(id(10)));
    assert_eq!(m.peer_count(), 1);
    // A second impostor is refused while another one is held.
    let Admission::Hold(_) = m.on_incoming(lo(50001), id(10), t0 + secs(11)) else {
        panic!()
    };
    assert_eq!(
        m.on_incoming(lo(50002), id(10), t0 + secs(11)),
        Admission::Refuse(Refusal::Duplicate)
    );
}

/// Both ends of a simultaneous open keep the same connection, whatever order each end sees
/// the handshakes in, whether a dial's answer arrives at once or late, and whichever ID is
/// lower. A held incoming connection is not answered, so its dial does not complete.
#[test]
fn a_simultaneous_open_converges() {
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum St {
        Waiting,
        Attached(ConnId),
        Held(ConnId),
        Closed,
    }
    #[derive(Clone, Copy, Debug)]
    enum Ev {
        /// The answerer of TCP connection `t` reads its handshake.
        Incoming(usize),
        /// The dialer of `t` reads the answer.
        Answered(usize),
    }
    struct World {
        m: [ConnManager; 2],
        ids: [PeerId; 2],
        listen: [SocketAddr; 2],
        /// st[end][tcp]; TCP connection `t` is dialled by end `t`.
        st: [[St; 2]; 2],
        queue: VecDeque<Ev>,
        late: bool,
    }
    impl World {
        fn admitted(&mut self, end: usize, tcp: usize, a: Admission, now: Instant) {
            self.st[end][tcp] = match a {
                Admission::Attach(c) => St::Attached(c),
                Admission::Hold(c) => St::Held(c),
                Admission::Refuse(_) => St::Closed,
            };
            match self.st[end][tcp] {
                St::Attached(_) if end != tcp => self.answer(tcp),
                St::Closed => self.closed_by(end, tcp, now),
                _ => {}
            }
        }
        fn answer(&mut self, tcp: usize) {
            if self.late {
                self.queue.push_back(Ev::Answered(tcp));
            } else {
                self.queue.push_front(Ev::Answered(tcp));
            }
        }
        /// `end` closed `tcp`: the other end learns it.
        fn closed_by(&mut self, end: usize, tcp: usize, now: Instant) {
            let other = 1 - end;
            match self.st[other][tcp] {
                St::Attached(c) | St::Held(c) => self.m[other].on_closed(c, now),
                St::Waiting if other == tcp => self.m[other].on_dial_failed(self.listen[end], now),
                _ => {}
            }
            self.st[other][tcp] = St::Closed;
            self.queue
                .retain(|e| !matches!(e, Ev::Answered(t) if *t == tcp));
        }
        fn run(&mut self, now: Instant) {
            loop {
                for end in 0..2 {
                    for act in drain(&mut self.m[end]) {
                        for tcp in 0..2 {
                            match (act.clone(), self.st[end][tcp]) {
                                (Action::Attach(c), St::Held(h)) if c == h => {
                                    self.st[end][tcp] = St::Attached(c);
                                    if end != tcp {
                                        self.answer(tcp);
                                    }
                                }
                                (Action::Close { conn, .. }, St::Held(h) | St::Attached(h))
                                    if conn == h =>
                                {
                                    self.st[end][tcp] = St::Closed;
                                    self.closed_by(end, tcp, now);
                                }
                                _ => {}
                            }
                        }
                    }
                }
                let Some(ev) = self.queue.pop_front() else {
                    return;
                };
                match ev {
                    Ev::Incoming(tcp) => {
                        let end = 1 - tcp;
                        let from = net(9, 40000 + tcp as u16);
                        let a = self.m[end].on_incoming(from, self.ids[tcp], now);
                        self.admitted(end, tcp, a, now);
                    }
                    Ev::Answered(tcp) => {
                        if self.st[tcp][tcp] == St::Waiting {
                            let a =
                                self.m[tcp].on_dialed(self.listen[1 - tcp], self.ids[1 - tcp], now);
                            self.admitted(tcp, tcp, a, now);
                        }
                    }
                }
            }
        }
    }
    for (a_id, b_id) in [(10u8, 90u8), (90, 10)] {
        for first in [0usize, 1] {
            for late in [false, true] {
                let t0 = Instant::now();
                let listen = [net(1, 6881), net(2, 6881)];
                let mk = |me: u8, peer: SocketAddr| {
                    let mut m = ConnManager::new(ConnConfig::default(), id(me), &[peer], t0);
                    m.set_active(true, t0);
                    drain(&mut m);
                    m
                };
                let mut w = World {
                    m: [mk(a_id, listen[1]), mk(b_id, listen[0])],
                    ids: [id(a_id), id(b_id)],
                    listen,
                    st: [[St::Waiting; 2]; 2],
                    queue: [Ev::Incoming(first), Ev::Incoming(1 - first)].into(),
                    late,
                };
                w.run(t0);
                // Handshake and hold timeouts.
                let later = t0 + secs(11);
                for tcp in 0..2 {
                    if w.st[tcp][tcp] == St::Waiting {
                        w.st[tcp][tcp] = St::Closed;
                        w.m[tcp].on_dial_failed(w.listen[1 - tcp], later);
                        w.closed_by(tcp, tcp, later);
                    }
                }
                for end in 0..2 {
                    w.m[end].handle_timeout(later);
                }
                w.run(later);
                let alive: Vec<usize> = (0..2)
                    .filter(|&t| {
                        matches!(w.st[0][t], St::Attached(_))
                            && matches!(w.st[1][t], St::Attached(_))
                    })
                    .collect();
                let case = format!("ids {a_id}/{b_id}, first {first}, late {late}: {:?}", w.st);
                assert_eq!(alive.len(), 1, "{case}");
                assert!(
                    w.st.iter()
                        .flatten()
                        .all(|s| matches!(s, St::Attached(_) | St::Closed)),
                    "{case}"
                );
                assert_eq!((w.m[0].peer_count(), w.m[1].peer_count()), (1, 1), "{case}");
            }
        }
    }
}

/// 500 idle connections that completed the handshake took all 80 slots of a seeder, and a
/// real downloader could not join. Now a newcomer evicts an idle peer once the grace period
/// is over; peers that move data are kept.
#[test]
fn a_newcomer_evicts_the_idlest_peer_when_full() {
    let t0 = Instant::now();
    let mut m = manager(&[], t0);
    let mut conns = vec![];
    for i in 0..80u16 {
        conns.push(attach(&mut m, lo(10000 + i), pid(i), t0));
    }
    // Within the grace period nobody can be evicted.
    assert_eq!(
        m.on_incoming(lo(20000), id(200), t0 + secs(1)),
        Admission::Refuse(Refusal::Full)
    );
    let now = t0 + secs(6);
    // Peers 0..10 move data, 10..20 said they are interested, the rest are idle.
    for &c in &conns[..10] {
        m.on_activity(c, Activity::Received(16384), now);
    }
    for &c in &conns[10..20] {
        m.on_activity(c, Activity::Interested, now);
    }
    let mut evicted = vec![];
    for k in 0..70u16 {
        assert!(matches!(
            m.on_incoming(lo(30000 + k), pid(1000 + k), now),
            Admission::Attach(_)
        ));
        for a in drain(&mut m) {
            if let Action::Close { conn, reason } = a {
                assert_eq!(reason, Refusal::Evicted);
                evicted.push(conn);
            }
        }
    }
    // The 60 idle ones went first, then the interested ones; the busy ones stay.
    assert_eq!(&evicted[..60], &conns[20..]);
    assert_eq!(&evicted[60..], &conns[10..20]);
    assert_eq!(m.peer_count(), 80);
    // Now every slot is young or busy: a newcomer is refused.
    assert_eq!(
        m.on_incoming(lo(40000), id(250), now),
        Admission::Refuse(Refusal::Full)
    );
}

/// DHT: a lookup at start, then every 5 s with no peers, 30 s with few, 5 min with many; an
/// announce every 15 min (only when listening).
#[test]
fn dht_cadence_follows_the_peer_count() {
    let t0 = Instant::now();
    let cfg = ConnConfig {
        dht: true,
        listen_port: Some(6881),
        ..ConnConfig::default()
    };
    let mut m = active(cfg, &[], t0);
    m.set_active(true, t0);
    assert_eq!(drain(&mut m), vec![Action::DhtLookup, Action::DhtAnnounce]);
    assert_eq!(m.poll_timeout(), Some(t0 + secs(5)));
    let c = attach(&mut m, net(1, 1), id(1), t0 + secs(1));
    assert_eq!(m.poll_timeout(), Some(t0 + secs(30)));
    for i in 2..=5 {
        attach(&mut m, net(i, 1), id(i), t0 + secs(1));
    }
    assert_eq!(m.poll_timeout(), Some(t0 + secs(300)));
    m.on_closed(c, t0 + secs(2));
    assert_eq!(m.poll_timeout(), Some(t0 + secs(30)));
    m.handle_timeout(t0 + secs(30));
    assert_eq!(drain(&mut m), vec![Action::DhtLookup]);
    m.handle_timeout(t0 + secs(900));
    assert_eq!(drain(&mut m), vec![Action::DhtLookup, Action::DhtAnnounce]);
    // Not listening: lookups only.
    let mut m = manager(&[], t0);
    m.config.dht = true;
    m.handle_timeout(t0);
    assert_eq!(drain(&mut m), vec![Action::DhtLookup]);
}

/// Trackers: `started` first, then after the tracker's interval (clamped), `completed` at once.
#[test]
fn tracker_cadence_respects_the_interval() {
    let t0 = Instant::now();
    let mut m = manager(&[], t0);
    m.enable_trackers(t0);
    assert_eq!(
        drain(&mut m),
        vec![Action::TrackerAnnounce {
            event: TrackerEvent::Started
        }]
    );
    assert_eq!(m.poll_timeout(), Some(t0 + secs(60)));
    m.on_tracker_answer(secs(1800), t0 + secs(1));
    assert_eq!(m.poll_timeout(), Some(t0 + secs(1801)));
    m.on_tracker_answer(secs(1), t0 + secs(1));
    assert_eq!(m.poll_timeout(), Some(t0 + secs(11)));
    m.on_completed(t0 + secs(5));
    assert_eq!(
        drain(&mut m),
        vec![Action::TrackerAnnounce {
            event: TrackerEvent::Completed
        }]
    );
    m.handle_timeout(t0 + secs(65));
    assert_eq!(
        drain(&mut m),
        vec![Action::TrackerAnnounce {
            event: TrackerEvent::None
        }]
    );
}

#[test]
fn an_inactive_manager_neither_dials_nor_admits() {
    let t0 = Instant::now();
    let mut m = ConnManager::new(ConnConfig::default(), id(50), &[net(1, 1)], t0);
    m.enable_trackers(t0);
    m.add_candidates([net(2, 1)], Source::Tracker, t0);
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(
        m.on_incoming(net(3, 1), id(3), t0),
        Admission::Refuse(Refusal::Inactive)
    );
    m.set_active(true, t0);
    let acts = drain(&mut m);
    assert_eq!(dials(&acts), vec![net(1, 1), net(2, 1)]);
}

#[test]
fn our_own_addresses_and_ids_are_skipped() {
    let t0 = Instant::now();
    let cfg = ConnConfig {
        listen_port: Some(7000),
        ..ConnConfig::default()
    };
    let mut m = active(cfg, &[lo(7000)], t0);
    m.add_candidates(
        [lo(7000), lo(0), SocketAddr::new(IpAddr::from([0; 4]), 7000)],
        Source::Pex,
        t0,
    );
    assert!(drain(&mut m).is_empty());
    assert_eq!(
        m.on_incoming(lo(1), id(50), t0),
        Admission::Refuse(Refusal::OwnId)
    );
}

#[test]
fn candidates_are_bounded() {
    let t0 = Instant::now();
    let cfg = ConnConfig {
        max_dials: 0,
        ..ConnConfig::default()
    };
    let mut m = active(cfg, &[], t0);
    m.add_candidates((0..3000u16).map(|p| net(1, p + 1)), Source::Pex, t0);
    assert_eq!(m.candidate_count(), 1000);
}

/// BEP 55, the initiator's side: an address a peer told us is dialled (over TCP only, the
/// engine's part); when that fails, the peer that told it is asked once to introduce us, and
/// the address is not dialled directly while the introduction runs. The relay's `connect`
/// starts a uTP dial (once), and the connection that results is known as holepunched.
#[test]
fn a_failed_dial_to_an_introduced_address_asks_its_introducer() {
    let t0 = Instant::now();
    let mut m = manager(&[], t0);
    let relay = attach(&mut m, net(1, 40000), id(1), t0);
    let target = net(2, 6881);
    m.add_introduced([heard(target)], relay, t0);
    assert_eq!(dials(&drain(&mut m)), vec![target]);
    assert_eq!(m.introducer(target), Some(relay));
    m.on_dial_failed(target, t0);
    assert_eq!(
        drain(&mut m),
        vec![Action::Rendezvous { via: relay, target }]
    );
    assert_eq!(m.introducer(target), None, "asked once");
    assert!(dials(&drain(&mut m)).is_empty());
    m.handle_timeout(t0 + secs(9));
    assert!(dials(&drain(&mut m)).is_empty(), "no direct dial meanwhile");

    // The relay's connect: one uTP dial, not two; then the dial's handshake attaches it.
    assert!(m.on_holepunch(target));
    assert!(!m.on_holepunch(target));
    assert!(m.is_holepunched(target));
    assert!(!m.is_holepunched(net(3, 6881)));
    assert!(matches!(
        m.on_dialed(target, id(2), t0 + secs(2)),
        Admission::Attach(_)
    ));
    assert!(!m.on_holepunch(target), "connected already");

    // An introducer that left cannot be asked: the address is retried like any other.
    let other = net(4, 6881);
    m.add_introduced([heard(other)], relay, t0 + secs(3));
    drain(&mut m);
    m.on_closed(relay, t0 + secs(4));
    assert_eq!(m.introducer(other), None);
    m.on_dial_failed(other, t0 + secs(4));
    assert!(!drain(&mut m)
        .iter()
        .any(|a| matches!(a, Action::Rendezvous { .. })));

    // An introduction that brought nothing (libtorrent's relay may not find the target): the
    // address is dialled directly once the wait is over.
    let late = net(5, 6881);
    let relay2 = attach(&mut m, net(6, 40000), id(6), t0 + secs(4));
    m.add_introduced([heard(late)], relay2, t0 + secs(4));
    drain(&mut m);
    m.on_dial_failed(late, t0 + secs(5));
    assert!(drain(&mut m).contains(&Action::Rendezvous {
        via: relay2,
        target: late
    }));
    m.handle_timeout(t0 + secs(14));
    assert!(!dials(&drain(&mut m)).contains(&late));
    m.handle_timeout(t0 + secs(15));
    assert!(dials(&drain(&mut m)).contains(&late));
}

/// Half the addresses a tracker lists may sit behind NAT, and a dial to one holds a dial slot
/// until it times out. Addresses a connected peer flagged reachable in PEX go first, ahead of
/// the tracker's and of unflagged PEX ones (configured ones stay ahead of all).
#[test]
fn addresses_a_peer_vouched_for_are_dialled_first() {
    let t0 = Instant::now();
    let cfg = ConnConfig {
        max_dials: 2,
        ..ConnConfig::default()
    };
    let mut m = active(cfg, &[], t0);
    let relay = attach(&mut m, net(1, 40000), id(1), t0);
    drain(&mut m);
    // Nothing can be dialled yet: two dials in flight.
    m.add_candidates([net(2, 6881), net(3, 6881)], Source::Tracker, t0);
    assert_eq!(dials(&drain(&mut m)).len(), 2);
    let tracker: Vec<SocketAddr> = (10..20).map(|i| net(i, 6881)).collect();
    m.add_candidates(tracker, Source::Tracker, t0);
    let vouched = net(30, 6881);
    let unflagged = net(31, 6881);
    m.add_introduced(
        [
            heard(unflagged),
            crate::ext::pex::Heard {
                addr: vouched,
                reachable: true,
            },
        ],
        relay,
        t0,
    );
    m.add_candidates([net(40, 6881)], Source::User, t0);
    // Two dials end: the freed slots go to the user's address, then the vouched one.
    m.on_dial_failed(net(2, 6881), t0);
    m.on_dial_failed(net(3, 6881), t0);
    assert_eq!(dials(&drain(&mut m)), vec![net(40, 6881), vouched]);
    m.on_dial_failed(net(40, 6881), t0);
    assert_eq!(
        dials(&drain(&mut m)),
        vec![net(10, 6881)],
        "then the tracker's"
    );
}
