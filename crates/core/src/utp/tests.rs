#![allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;

/// Two connections over a modelled link: a one-way delay, an optional bottleneck (bytes per
/// second, first in first out) and a loss pattern, on a virtual clock.
struct Net {
    now: Instant,
    conns: [Connection; 2],
    /// (arrives at, to, datagram)
    wire: VecDeque<(Instant, usize, Vec<u8>)>,
    delay: Duration,
    /// Bytes per second through the bottleneck (both ways share none: each way has its own).
    rate: Option<f64>,
    /// When each direction's bottleneck is free again.
    busy_until: [Instant; 2],
    /// Drops datagram number `n` (counted over both directions) when it says so.
    lose: fn(u64) -> bool,
    /// Extra delay for datagram number `n`: reorders.
    jitter: fn(u64) -> Duration,
    sent: u64,
    /// Each datagram is answered on its own (as libtorrent does), not once per arrival batch.
    ack_each: bool,
    /// What each side received, in order.
    got: [Vec<u8>; 2],
}

fn no_loss(_: u64) -> bool {
    false
}

impl Net {
    fn new(delay: Duration, lose: fn(u64) -> bool) -> Net {
        let now = Instant::now();
        let mut a = Connection::connect(now, 1000, 40_000);
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = a.poll_transmit(now, &mut buf).expect("a SYN");
        let syn = Packet::decode(&buf[..n]).unwrap();
        assert_eq!(syn.ty, Type::Syn);
        assert_eq!(syn.conn_id, 1000);
        let b = Connection::accept(now, &syn, 65_530);
        let mut net = Net {
            now,
            conns: [a, b],
            wire: VecDeque::new(),
            delay,
            rate: None,
            busy_until: [now, now],
            lose,
            jitter: |_| Duration::ZERO,
            sent: 0,
            ack_each: false,
            got: [Vec::new(), Vec::new()],
        };
        net.flush();
        net
    }

    fn flush(&mut self) {
        let mut buf = [0u8; MAX_DATAGRAM];
        for from in 0..2 {
            while let Some(n) = self.conns[from].poll_transmit(self.now, &mut buf) {
                assert!(n <= MAX_DATAGRAM);
                self.sent += 1;
                if (self.lose)(self.sent) {
                    continue;
                }
                let mut at = self.now + self.delay + (self.jitter)(self.sent);
                if let Some(rate) = self.rate {
                    let start = self.busy_until[from].max(self.now);
                    let done = start + Duration::from_secs_f64(n as f64 / rate);
                    self.busy_until[from] = done;
                    at = done + self.delay;
                }
                self.wire.push_back((at, 1 - from, buf[..n].to_vec()));
            }
        }
    }

    /// Runs until `done` or `limit` of virtual time; reads everything that arrives.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            let next_packet = self.wire.iter().map(|w| w.0).min();
            let next_timer = self.conns.iter().filter_map(|c| c.poll_timeout()).min();
            let Some(next) = crate::time::earliest(next_packet, next_timer) else {
                return done(self);
            };
            self.now = self.now.max(next);
            let mut due = Vec::new();
            self.wire.retain(|w| {
                if w.0 <= self.now {
                    due.push((w.1, w.2.clone()));
                    false
                } else {
                    true
                }
            });
            for (to, d) in due {
                let p = Packet::decode(&d).unwrap();
                self.conns[to].handle_packet(self.now, &p);
                if self.ack_each {
                    self.flush();
                }
            }
            for c in self.conns.iter_mut() {
                c.handle_timeout(self.now);
            }
            let mut buf = vec![0u8; 65536];
            for i in 0..2 {
                loop {
                    let n = self.conns[i].read(&mut buf);
                    if n == 0 {
                        break;
                    }
                    self.got[i].extend_from_slice(&buf[..n]);
                }
            }
            self.flush();
        }
        done(self)
    }

    /// Writes all of `data` from side `from`, as room opens, and runs until the other side
    /// has it.
    fn send_all(&mut self, from: usize, data: &[u8], limit: Duration) {
        let mut at = 0;
        let end = self.now + limit;
        let start = self.got[1 - from].len();
        while self.got[1 - from].len() < start + data.len() {
            assert!(
                self.now < end,
                "stuck at {} of {} bytes: {:?}",
                self.got[1 - from].len() - start,
                data.len(),
                self.conns
                    .iter()
                    .map(|c| (c.state(), c.stats(), c.in_flight, c.ack_nr, c.seq_nr))
                    .collect::<Vec<_>>()
            );
            at += self.conns[from].write(&data[at..]);
            self.flush();
            let want = start + data.len();
            let step = self.now + Duration::from_millis(50);
            self.run(step.saturating_duration_since(self.now), |n| {
                n.got[1 - from].len() >= want || n.conns[from].write_room() > 0 && at < data.len()
            });
        }
        assert_eq!(&self.got[1 - from][start..], data);
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn the_handshake_connects_both_sides() {
    let mut net = Net::new(Duration::from_millis(20), no_loss);
    assert!(net.run(Duration::from_secs(1), |n| n.conns[0].state()
        == State::Connected));
    assert_eq!(net.conns[1].state(), State::Connected);
    // The initiator sends with its receive ID + 1, which is the responder's receive ID.
    assert_eq!(net.conns[1].recv_id(), 1001);
}

#[test]
fn bytes_cross_both_ways_in_order() {
    let mut net = Net::new(Duration::from_millis(20), no_loss);
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    let big = data(3 << 20);
    net.send_all(0, &big, Duration::from_secs(60));
    net.send_all(1, &big[..100_000], Duration::from_secs(60));
    net.send_all(0, b"x", Duration::from_secs(5));
    assert_eq!(net.conns[0].stats().resent, 0);
    // Each window arrives at once on this link: few ACKs, each a clean 40 ms sample (the
    // first, the SYN's, is 20 ms: it skipped the link).
    let rtt = net.conns[0].stats().rtt_us;
    assert!((30_000..=40_000).contains(&rtt), "{rtt}");
}

#[test]
fn lost_packets_are_resent_and_put_back_in_order() {
    // One datagram in 37, both ways (data, ACKs and the handshake), is lost.
    let mut net = Net::new(Duration::from_millis(10), |n| n % 37 == 3);
    net.run(Duration::from_secs(10), |n| {
        n.conns[0].state() == State::Connected
    });
    let big = data(1 << 20);
    net.send_all(0, &big, Duration::from_secs(120));
    net.send_all(1, &big[..200_000], Duration::from_secs(120));
    assert!(net.conns[0].stats().resent > 0);
}

#[test]
fn reordered_packets_are_put_back_in_order() {
    let mut net = Net::new(Duration::from_millis(10), no_loss);
    // Every third datagram takes 15 ms longer: overtaken by the next ones.
    net.jitter = |n| Duration::from_millis(if n % 3 == 0 { 15 } else { 0 });
    net.run(Duration::from_secs(10), |n| {
        n.conns[0].state() == State::Connected
    });
    net.send_all(0, &data(1 << 20), Duration::from_secs(120));
    net.send_all(1, &data(300_000), Duration::from_secs(120));
}

/// Regression: a burst of lost datagrams (a receiver's socket buffer overflowing) left many
/// packets with three or more acknowledged past them, and every later ACK marked them lost
/// again: each was resent once per ACK, reached the transmission limit within a second and
/// the connection was given up (libtorrent's uploads from peercdn died every few seconds).
#[test]
fn a_burst_of_losses_is_resent_once_not_once_per_ack() {
    let mut net = Net::new(Duration::from_millis(5), |n| (300..360).contains(&n));
    net.ack_each = true;
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    net.send_all(0, &data(2 << 20), Duration::from_secs(60));
    let s = net.conns[0].stats();
    assert_eq!(net.conns[0].state(), State::Connected);
    assert!(s.resent <= 60 && s.timeouts == 0, "{s:?}");
}

#[test]
fn a_link_that_loses_one_datagram_in_five_still_delivers_everything() {
    let mut net = Net::new(Duration::from_millis(10), |n| n % 5 == 2);
    net.run(Duration::from_secs(20), |n| {
        n.conns[0].state() == State::Connected
    });
    net.send_all(0, &data(100_000), Duration::from_secs(600));
    net.send_all(1, &data(30_000), Duration::from_secs(600));
}

#[test]
fn fast_resend_repairs_a_single_loss_without_a_timeout() {
    // One data packet lost in the middle of a window: three later packets are acknowledged
    // past it, and it goes out again without waiting for the timeout.
    let mut net = Net::new(Duration::from_millis(10), |n| n == 40);
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    net.send_all(0, &data(400_000), Duration::from_secs(30));
    let s = net.conns[0].stats();
    assert_eq!(s.resent, 1);
    assert_eq!(s.timeouts, 0);
}

#[test]
fn a_fin_ends_the_stream_and_closes_the_connection() {
    let mut net = Net::new(Duration::from_millis(5), no_loss);
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    net.conns[0].write(b"last words");
    net.conns[0].close();
    net.flush();
    assert!(net.run(Duration::from_secs(5), |n| n.conns[1].is_eof()
        && n.conns[0].state() == State::Closed(Close::Done)));
    assert_eq!(net.got[1], b"last words");
    // Nothing can be written after a close.
    assert_eq!(net.conns[0].write(b"more"), 0);
}

#[test]
fn a_dial_to_nobody_times_out_after_three_syns() {
    let now = Instant::now();
    let mut c = Connection::connect(now, 7, 1);
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut syns = 0;
    let mut t = now;
    while c.state() == State::Connecting {
        while c.poll_transmit(t, &mut buf).is_some() {
            syns += 1;
        }
        t = c.poll_timeout().expect("a timer while connecting");
        c.handle_timeout(t);
        assert!(t - now < Duration::from_secs(30));
    }
    assert_eq!(c.state(), State::Closed(Close::TimedOut));
    assert_eq!(syns, 3);
}

#[test]
fn a_reset_closes_at_once() {
    let mut net = Net::new(Duration::from_millis(5), no_loss);
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    let mut buf = [0u8; MAX_DATAGRAM];
    // Side 0 sends with 1001; a RESET answering its packet carries that ID, which is side
    // 0's send ID.
    let probe = Packet {
        ty: Type::Data,
        conn_id: 1001,
        ts_us: 0,
        ts_diff_us: 0,
        wnd: 0,
        seq: 3,
        ack: 4,
        sack: &[],
        payload: b"?",
    };
    let n = probe.encode(&mut buf);
    let probe = Packet::decode(&buf[..n]).unwrap();
    let mut out = [0u8; MAX_DATAGRAM];
    let n = reset_for(&probe, &mut out).unwrap();
    let reset = Packet::decode(&out[..n]).unwrap();
    assert_eq!(reset.ty, Type::Reset);
    assert_eq!(reset.conn_id, net.conns[0].send_id());
    net.conns[0].handle_packet(net.now, &reset);
    assert_eq!(net.conns[0].state(), State::Closed(Close::Reset));
    assert_eq!(net.conns[0].write(b"x"), 0);
}

#[test]
fn a_reader_that_stops_reading_stops_the_sender_at_the_window() {
    let mut net = Net::new(Duration::from_millis(5), no_loss);
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    // Side 1 does not read: feed packets by hand.
    let big = data(3 * RECV_WINDOW);
    let mut at = 0;
    let mut buf = [0u8; MAX_DATAGRAM];
    for _ in 0..20_000 {
        at += net.conns[0].write(&big[at..]);
        let mut moved = false;
        while let Some(n) = net.conns[0].poll_transmit(net.now, &mut buf) {
            net.conns[1].handle_packet(net.now, &Packet::decode(&buf[..n]).unwrap());
            moved = true;
        }
        while let Some(n) = net.conns[1].poll_transmit(net.now, &mut buf) {
            net.conns[0].handle_packet(net.now, &Packet::decode(&buf[..n]).unwrap());
            moved = true;
        }
        if !moved {
            break;
        }
        net.now += Duration::from_millis(1);
    }
    // Side 1 holds at most its window, the sender at most its buffer.
    assert!(net.conns[1].readable() <= RECV_WINDOW);
    assert!(net.conns[1].readable() > RECV_WINDOW - 2 * PAYLOAD);
    assert!(at <= RECV_WINDOW + SEND_BUF);
    // Reading reopens the window and the rest flows.
    let rest = big[..at].len();
    let mut out = vec![0u8; rest];
    let mut got = net.conns[1].read(&mut out);
    net.got[1].extend_from_slice(&out[..got]);
    net.flush();
    net.run(Duration::from_secs(60), |n| n.got[1].len() >= at);
    got = net.got[1].len();
    assert_eq!(&net.got[1][..], &big[..got]);
    assert!(got >= at);
}

#[test]
fn ledbat_fills_a_bottleneck_and_keeps_its_queue_near_the_target() {
    // 1 MB/s bottleneck, 25 ms each way: LEDBAT should fill the pipe but hold its own queue
    // at the 100 ms target, not fill the buffer (which here is unlimited) as TCP would.
    let mut net = Net::new(Duration::from_millis(25), no_loss);
    net.rate = Some(1_000_000.0);
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    let start = net.now;
    let big = data(12_000_000);
    net.send_all(0, &big, Duration::from_secs(120));
    let secs = (net.now - start).as_secs_f64();
    let rate = big.len() as f64 / secs;
    assert!(rate > 800_000.0, "{rate} B/s through a 1 MB/s link");
    let s = net.conns[0].stats();
    assert!(
        s.queue_delay_us < 200_000,
        "queue delay {} us",
        s.queue_delay_us
    );
    assert!(
        s.queue_delay_us > 20_000,
        "queue delay {} us: the pipe was not full",
        s.queue_delay_us
    );
}

#[test]
fn ledbat_backs_off_when_other_traffic_fills_the_queue() {
    // Another flow keeps a 300 ms queue in front of ours: the delay our packets see rises
    // far above the target and the window shrinks to its minimum.
    let mut net = Net::new(Duration::from_millis(25), no_loss);
    net.rate = Some(1_000_000.0);
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    net.send_all(0, &data(3_000_000), Duration::from_secs(60));
    let before = net.conns[0].stats().window;
    net.delay += Duration::from_millis(300);
    net.send_all(0, &data(250_000), Duration::from_secs(120));
    let after = net.conns[0].stats().window;
    assert!(after < before / 4, "window {before} -> {after}");
    assert_eq!(after, MIN_WINDOW);
}

#[test]
fn packets_round_trip_with_and_without_a_selective_ack() {
    let mut buf = [0u8; MAX_DATAGRAM];
    let p = Packet {
        ty: Type::Data,
        conn_id: 0xbeef,
        ts_us: 0xdead_beef,
        ts_diff_us: 7,
        wnd: 1 << 20,
        seq: 65535,
        ack: 12,
        sack: &[0x81, 0, 0, 1],
        payload: b"payload",
    };
    let n = p.encode(&mut buf);
    assert_eq!(n, p.encoded_len());
    assert_eq!(Packet::decode(&buf[..n]).unwrap(), p);
    let q = Packet { sack: &[], ..p };
    let n = q.encode(&mut buf);
    assert_eq!(n, HEADER_LEN + 7);
    assert_eq!(Packet::decode(&buf[..n]).unwrap(), q);
}

#[test]
fn unknown_extensions_are_skipped_and_bad_packets_refused() {
    // A header whose extension chain is: type 9 (4 bytes), then a selective ACK (4 bytes).
    let mut d = vec![
        0x01, 9, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 4, 0, 5,
    ];
    d.extend_from_slice(&[1, 4, 0xaa, 0xbb, 0xcc, 0xdd]);
    d.extend_from_slice(&[0, 4, 0xff, 0, 0, 0]);
    d.extend_from_slice(b"data");
    let p = Packet::decode(&d).unwrap();
    assert_eq!(p.sack, &[0xff, 0, 0, 0]);
    assert_eq!(p.payload, b"data");
    assert_eq!(p.seq, 4);
    assert_eq!(p.ack, 5);

    assert_eq!(Packet::decode(&d[..10]), Err(PacketError::Truncated));
    assert_eq!(Packet::decode(&d[..24]), Err(PacketError::Truncated));
    let mut v = d.clone();
    v[0] = 0x02;
    assert_eq!(Packet::decode(&v), Err(PacketError::Version(2)));
    v[0] = 0x71;
    assert_eq!(Packet::decode(&v), Err(PacketError::Type(7)));
    let mut s = d.clone();
    s[27] = 0; // the selective ACK's length
    s.truncate(28);
    assert_eq!(Packet::decode(&s), Err(PacketError::Sack));
}

/// Regression: libtorrent sizes its selective ACK `(span + 7) / 8` bytes — 18, 38, not a
/// multiple of 4 and past 32 once a loss leaves a long reorder span. Such packets were
/// refused whole, their ACKs with them: the upload to libtorrent stalled after its first
/// loss until libtorrent gave up. They are read, every bit of them.
#[test]
fn libtorrent_sized_selective_acks_are_read() {
    let mut net = Net::new(Duration::from_millis(5), no_loss);
    net.run(Duration::from_secs(1), |n| {
        n.conns[0].state() == State::Connected
    });
    net.conns[0].window = 100 * PAYLOAD;
    net.conns[0].peer_wnd = 1 << 20;
    net.conns[0].write(&data(60 * PAYLOAD));
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut first = None;
    while let Some(n) = net.conns[0].poll_transmit(net.now, &mut buf) {
        let p = Packet::decode(&buf[..n]).unwrap();
        first.get_or_insert(p.seq);
    }
    let first = first.unwrap();
    assert_eq!(net.conns[0].unacked.len(), 60);
    // The first packet is lost; the other 59 arrived: 38 bytes of bits, all but the tail set.
    let mut bits = [0u8; 38];
    for i in 0..58 {
        bits[i / 8] |= 1 << (i % 8);
    }
    let mut d = vec![0u8; HEADER_LEN + 2 + 38];
    let ack = Packet {
        ty: Type::State,
        conn_id: 1000,
        ts_us: 0,
        ts_diff_us: 0,
        wnd: 1 << 20,
        seq: 65530,
        ack: first.wrapping_sub(1),
        sack: &[],
        payload: &[],
    };
    ack.encode(&mut d);
    d[1] = 1;
    d[HEADER_LEN] = 0;
    d[HEADER_LEN + 1] = 38;
    d[HEADER_LEN + 2..].copy_from_slice(&bits);
    let p = Packet::decode(&d).unwrap();
    assert_eq!(p.sack.len(), 38);
    net.conns[0].handle_packet(net.now, &p);
    // Three or more acknowledged past the first: it goes out again at once.
    let n = net.conns[0].poll_transmit(net.now, &mut buf).unwrap();
    assert_eq!(Packet::decode(&buf[..n]).unwrap().seq, first);
    assert_eq!(net.conns[0].stats().resent, 1);
}

#[test]
fn sequence_numbers_compare_across_the_wrap() {
    assert!(seq_lt(65535, 0));
    assert!(seq_lt(65000, 100));
    assert!(!seq_lt(100, 65000));
    assert!(!seq_lt(5, 5));
}

proptest::proptest! {
    /// Whatever arrives, a connection neither panics nor grows past its bounds.
    #[test]
    fn arbitrary_packets_never_break_a_connection(
        packets in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..80), 0..60),
    ) {
        let mut net = Net::new(Duration::from_millis(5), no_loss);
        net.run(Duration::from_secs(1), |n| n.conns[0].state() == State::Connected);
        net.conns[0].write(&data(50_000));
        net.flush();
        let mut buf = [0u8; MAX_DATAGRAM];
        for (i, mut d) in packets.into_iter().enumerate() {
            if d.len() >= HEADER_LEN {
                d[0] = (d[0] & 0x70) | 1;
                d[1] &= 1;
                // Aim at the connection, near its sequence numbers.
                d[2..4].copy_from_slice(&1001u16.to_be_bytes());
            }
            if let Ok(p) = Packet::decode(&d) {
                net.conns[i % 2].handle_packet(net.now, &p);
            }
            net.now += Duration::from_millis(3);
            net.conns[i % 2].handle_timeout(net.now);
            while net.conns[i % 2].poll_transmit(net.now, &mut buf).is_some() {}
            proptest::prop_assert!(net.conns[i % 2].readable() <= RECV_WINDOW);
        }
    }
}
