//! Fuzz target: uTP (`peercdn_core::utp`): datagrams decoded and fed, with time passing, to a
//! connection that has data to send and one that accepted a SYN. Nothing may panic, every
//! datagram it writes must decode, and what it holds stays within its windows.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peercdn_core::utp::{Connection, Packet, Type, MAX_DATAGRAM, RECV_WINDOW};

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)] // the origin of a virtual clock
    let mut now = Instant::now();
    let syn = Packet {
        ty: Type::Syn,
        conn_id: 100,
        ts_us: 1,
        ts_diff_us: 0,
        wnd: 1 << 20,
        seq: 7,
        ack: 0,
        sack: &[],
        payload: &[],
    };
    let mut conns = [
        Connection::connect(now, 100, 9),
        Connection::accept(now, &syn, 65530),
    ];
    conns[1].write(&[5; 20_000]);
    let mut out = [0u8; MAX_DATAGRAM];
    // Length-prefixed datagrams: one byte of length, one of "which connection, how long after".
    let mut rest = data;
    while let [len, ctl, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (d, next) = tail.split_at(len);
        rest = next;
        let c = &mut conns[usize::from(ctl & 1)];
        now += Duration::from_millis(u64::from(ctl >> 1) * 40);
        if let Ok(p) = Packet::decode(d) {
            c.handle_packet(now, &p);
        }
        c.handle_timeout(now);
        while let Some(n) = c.poll_transmit(now, &mut out) {
            assert!(Packet::decode(&out[..n]).is_ok());
        }
        let mut sink = [0u8; 4096];
        while c.read(&mut sink) > 0 {}
        assert!(c.readable() <= RECV_WINDOW);
        c.write(&[1; 3000]);
    }
});
