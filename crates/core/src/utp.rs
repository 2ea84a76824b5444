//! uTP (BEP 29): a reliable byte stream over UDP whose congestion control, LEDBAT (RFC 6817),
//! backs off as soon as its own packets start queueing in front of the bottleneck, so that a
//! viewer's upload never slows the household's other traffic.
//!
//! [`Connection`] is one connection, sans IO: fed datagrams ([`Connection::handle_packet`])
//! and the time, it says what to send ([`Connection::poll_transmit`]) and when it next has
//! work of its own ([`Connection::poll_timeout`]). The engine owns the UDP socket and finds the
//! connection a datagram is for by the sender's address and the packet's connection ID.
//!
//! Why our own and not a crate: the Rust uTP crates either lack LEDBAT (`librqbit-utp` runs
//! CUBIC: it does not yield), wrap the C `libutp` (callbacks into unsafe code and no way into
//! the simulator), or are unmaintained; the simulator drives this very type over modelled links.
//!
//! What it does, after libutp (the reference implementation), so that libtorrent and
//! µTorrent-family peers speak to it:
//! - the handshake: `SYN` with our receive ID, answered by a `STATE` whose sequence number is
//!   the responder's first; the initiator sends with the receive ID + 1;
//! - cumulative ACKs and the selective ACK extension (up to 256 packets past the ACK), fast
//!   resend of a packet three later packets were acknowledged past, or after three duplicate
//!   ACKs — once: a packet sent twice waits for the timeout, or every ACK of the window would
//!   resend it again; Karn's RTT estimate and the RFC 6298 timeout (at least 1 s, doubled per timeout,
//!   the window down to one packet);
//! - LEDBAT: the one-way delay the other side measures for our packets (`ts_diff`), minus
//!   its minimum over the last ten minutes, against a 100 ms target: the window grows by up to
//!   3,000 bytes per round trip below the target and shrinks above it, and halves on a loss
//!   (once per window). A slow start doubles it each round trip until the first loss or until
//!   the queueing delay reaches half the target;
//! - ACKs for a batch of datagrams go out once (the engine drains its socket, then asks for
//!   packets), keep-alives every 29 s, and `FIN` to close.
//!
//! Bounded: at most [`SEND_BUF`] bytes written and unacknowledged, [`RECV_WINDOW`] bytes
//! received and unread (in order or not), [`MAX_REORDER`] packets held out of order.

mod packet;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use packet::{seq_lt, Packet, PacketError, Type, HEADER_LEN, MAX_SACK, VERSION};

/// Payload bytes per packet: a header, a full selective ACK and this fit a 1,280-byte IPv6
/// datagram path with room to spare (20 + 34 + 1,180 = 1,234).
pub const PAYLOAD: usize = 1180;
/// The largest datagram [`Connection::poll_transmit`] writes.
pub const MAX_DATAGRAM: usize = HEADER_LEN + 2 + MAX_SACK + PAYLOAD;
/// Bytes written by the application and not yet acknowledged, at most.
pub const SEND_BUF: usize = 1 << 20;
/// Bytes received and not yet read, at most: our advertised window.
pub const RECV_WINDOW: usize = 1 << 20;
/// Packets held past a gap, at most.
pub const MAX_REORDER: usize = 1024;
/// LEDBAT's queueing delay target.
pub const TARGET: Duration = Duration::from_millis(100);
/// The most the window grows in one round trip (LEDBAT's gain, libutp's value).
const MAX_GAIN: f64 = 3000.0;
/// The smallest window: one packet.
const MIN_WINDOW: usize = PAYLOAD;
/// The largest window.
const MAX_WINDOW: usize = SEND_BUF;
/// The first timeout, before any round trip was measured.
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// The shortest timeout.
const MIN_RTO: Duration = Duration::from_secs(1);
/// The longest timeout.
const MAX_RTO: Duration = Duration::from_secs(30);
/// Times a packet goes out before the connection is given up (a `SYN`: [`SYN_TRIES`]).
const MAX_TRANSMISSIONS: u32 = 6;
/// Times a `SYN` goes out (1 s, 2 s, 4 s apart) before a dial fails.
const SYN_TRIES: u32 = 3;
/// A packet goes out at least this often, so that NAT mappings stay open.
const KEEPALIVE: Duration = Duration::from_secs(29);
/// Packets acknowledged past a missing one, or duplicate ACKs, before it is resent.
const DUP_ACKS: usize = 3;
/// A minute of the base delay history.
const BASE_SLOT: Duration = Duration::from_secs(60);
/// Minutes of base delay history (RFC 6817's `BASE_HISTORY`).
const BASE_SLOTS: usize = 10;

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Our `SYN` is out, no answer yet.
    Connecting,
    /// Data flows.
    Connected,
    /// Over: closed in order, reset, or given up.
    Closed(Close),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Our `FIN` was acknowledged.
    Done,
    /// The other side sent a `RESET`.
    Reset,
    /// The other side stopped answering (or never did).
    TimedOut,
}

/// A sent packet not yet acknowledged.
#[derive(Debug)]
struct Sent {
    seq: u16,
    ty: Type,
    payload: Bytes,
    /// When last sent (`None`: never).
    sent_at: Option<Instant>,
    transmissions: u32,
    /// Lost: to go out again (and not counted in flight).
    resend: bool,
    /// Acknowledged by a selective ACK (not counted in flight).
    sacked: bool,
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets sent again after a loss or a timeout.
    pub resent: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// The congestion window, bytes.
    pub window: usize,
    /// The smoothed round trip, microseconds (0: not measured yet).
    pub rtt_us: u64,
    /// The queueing delay our packets see (their one-way delay over its minimum), microseconds.
    pub queue_delay_us: u64,
}

/// One uTP connection. See the module doc.
#[derive(Debug)]
pub struct Connection {
    /// Our clock's zero, for the microsecond timestamps packets carry.
    epoch: Instant,
    state: State,
    recv_id: u16,
    send_id: u16,
    /// The next sequence number we send.
    seq_nr: u16,
    /// The last sequence number received in order.
    ack_nr: u16,

    // Sending.
    /// Written by the application, not yet in a packet.
    out: BytesMut,
    unacked: VecDeque<Sent>,
    /// Payload bytes in `unacked`.
    unacked_bytes: usize,
    /// Payload bytes sent and neither acknowledged nor lost.
    in_flight: usize,
    /// The congestion window (bytes).
    window: usize,
    slow_start: bool,
    /// Losses before this sequence number belong to the window already halved for.
    recovery_until: u16,
    peer_wnd: usize,
    rtt: Option<Duration>,
    rtt_var: Duration,
    rto: Duration,
    rto_deadline: Option<Instant>,
    last_ack: u16,
    dup_acks: usize,
    /// When the window was last full: LEDBAT grows it only while it is used.
    window_full_at: Option<Instant>,
    /// The minimum one-way delay per minute, newest last (raw `ts_diff`, wrapping).
    base: VecDeque<(Instant, u32)>,
    /// The last few delay samples: the current delay is their minimum.
    recent: [Option<u32>; 3],
    recent_at: usize,
    queue_delay: Duration,
    close_wanted: bool,
    fin_seq: Option<u16>,
    last_sent: Option<Instant>,

    // Receiving.
    /// In order and unread.
    ready: BytesMut,
    /// Slot `i` holds sequence number `ack_nr + 2 + i`.
    reorder: VecDeque<Option<Bytes>>,
    reorder_bytes: usize,
    /// The other side's `FIN`: nothing after it.
    eof_seq: Option<u16>,
    /// The other side's last timestamp and our clock when it arrived, for `ts_diff`.
    reply_diff: u32,
    ack_due: bool,
    /// The window we last advertised was too small for a packet: reading reopens it.
    window_closed: bool,
    stats: Stats,
}

fn seq_le(a: u16, b: u16) -> bool {
    a == b || seq_lt(a, b)
}

impl Connection {
    fn new(now: Instant, recv_id: u16, send_id: u16, seq_nr: u16, state: State) -> Connection {
        Connection {
            epoch: now,
            state,
            recv_id,
            send_id,
            seq_nr,
            ack_nr: 0,
            out: BytesMut::new(),
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            in_flight: 0,
            window: 2 * PAYLOAD,
            slow_start: true,
            recovery_until: seq_nr,
            peer_wnd: PAYLOAD,
            rtt: None,
            rtt_var: Duration::ZERO,
            rto: INITIAL_RTO,
            rto_deadline: None,
            last_ack: seq_nr.wrapping_sub(1),
            dup_acks: 0,
            window_full_at: None,
            base: VecDeque::new(),
            recent: [None; 3],
            recent_at: 0,
            queue_delay: Duration::ZERO,
            close_wanted: false,
            fin_seq: None,
            last_sent: None,
            ready: BytesMut::new(),
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            eof_seq: None,
            reply_diff: 0,
            ack_due: false,
            window_closed: false,
            stats: Stats::default(),
        }
    }

    /// Opens a connection: `recv_id` is the ID packets to us will carry (the engine picks one
    /// free for the address), `seq` our first sequence number (random). The `SYN` is the first
    /// packet [`Connection::poll_transmit`] gives.
    pub fn connect(now: Instant, recv_id: u16, seq: u16) -> Connection {
        let mut c = Connection::new(
            now,
            recv_id,
            recv_id.wrapping_add(1),
            seq,
            State::Connecting,
        );
        c.unacked.push_back(Sent {
            seq,
            ty: Type::Syn,
            payload: Bytes::new(),
            sent_at: None,
            transmissions: 0,
            resend: true,
            sacked: false,
        });
        c.seq_nr = seq.wrapping_add(1);
        c
    }

    /// Answers a `SYN` (`syn`, as decoded): packets to us will carry its ID + 1. `seq` is our
    /// first sequence number (random). The answering `STATE` is the first packet
    /// [`Connection::poll_transmit`] gives.
    pub fn accept(now: Instant, syn: &Packet<'_>, seq: u16) -> Connection {
        let mut c = Connection::new(
            now,
            syn.conn_id.wrapping_add(1),
            syn.conn_id,
            seq,
            State::Connected,
        );
        c.ack_nr = syn.seq;
        c.peer_wnd = syn.wnd as usize;
        c.reply_diff = c.now_us(now).wrapping_sub(syn.ts_us);
        c.ack_due = true;
        c
    }

    /// The ID packets to us carry.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// The ID packets from us carry (a `RESET` ending this connection carries it too).
    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            window: self.window,
            rtt_us: self.rtt.map_or(0, |r| r.as_micros() as u64),
            queue_delay_us: self.queue_delay.as_micros() as u64,
            ..self.stats
        }
    }

    fn now_us(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }

    /// Bytes [`Connection::write`] would take now.
    pub fn write_room(&self) -> usize {
        if self.state != State::Connected || self.close_wanted {
            return 0;
        }
        SEND_BUF.saturating_sub(self.out.len() + self.unacked_bytes)
    }

    /// Queues what fits of `data` to send (see [`Connection::write_room`]) and returns how much.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.write_room());
        self.out.extend_from_slice(&data[..n]);
        n
    }

    /// Bytes [`Connection::read`] would give now.
    pub fn readable(&self) -> usize {
        self.ready.len()
    }

    /// The other side sent everything it will, and it has all been read.
    pub fn is_eof(&self) -> bool {
        self.ready.is_empty() && self.eof_seq == Some(self.ack_nr)
    }

    /// Moves received bytes, in order, into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.ready.len());
        buf[..n].copy_from_slice(&self.ready[..n]);
        let _ = self.ready.split_to(n);
        if self.window_closed && self.advertised() >= PAYLOAD {
            // Tell the sender the window is open again.
            self.window_closed = false;
            self.ack_due = true;
        }
        n
    }

    /// Sends what is written, then a `FIN`; the connection is over once that is acknowledged.
    pub fn close(&mut self) {
        self.close_wanted = true;
    }

    /// The window we advertise: receive room left.
    fn advertised(&self) -> usize {
        RECV_WINDOW.saturating_sub(self.ready.len() + self.reorder_bytes)
    }

    /// Takes in one packet for this connection (its ID and sender matched by the caller).
    pub fn handle_packet(&mut self, now: Instant, p: &Packet<'_>) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        if p.ty == Type::Reset {
            self.state = State::Closed(Close::Reset);
            return;
        }
        self.reply_diff = self.now_us(now).wrapping_sub(p.ts_us);
        self.peer_wnd = p.wnd as usize;
        if self.state == State::Connecting {
            if p.ty != Type::State {
                return;
            }
            // Its STATE carries the sequence number of its first data packet.
            self.state = State::Connected;
            self.ack_nr = p.seq.wrapping_sub(1);
        }
        self.handle_ack(now, p);
        match p.ty {
            Type::Data | Type::Fin => self.handle_data(p),
            // A repeated SYN: our STATE was lost.
            Type::Syn => self.ack_due = true,
            _ => {}
        }
        if let Some(fin) = self.fin_seq {
            if self.unacked.is_empty() && seq_lt(fin, self.seq_nr) {
                self.state = State::Closed(Close::Done);
            }
        }
    }

    fn handle_ack(&mut self, now: Instant, p: &Packet<'_>) {
        let Some(oldest) = self.unacked.front().map(|s| s.seq) else {
            self.last_ack = p.ack;
            return;
        };
        // Only an ACK in [oldest - 1, seq_nr - 1] means anything.
        if !(seq_le(oldest.wrapping_sub(1), p.ack) && seq_lt(p.ack, self.seq_nr)) {
            return;
        }
        let mut acked_bytes = 0usize;
        let mut newly = false;
        // The round trip is measured on the packet this ACK names, and only when nothing it
        // covers was sent twice or acknowledged earlier: after a repaired gap the cumulative
        // ACK jumps over packets that arrived long before (Karn's rule, for the whole ACK).
        let mut sample = None;
        let mut clean = true;
        while let Some(s) = self.unacked.front() {
            if !seq_le(s.seq, p.ack) {
                break;
            }
            let s = self.unacked.pop_front().expect("front exists");
            newly = true;
            self.unacked_bytes -= s.payload.len();
            if !s.resend && !s.sacked && s.transmissions > 0 {
                self.in_flight = self.in_flight.saturating_sub(s.payload.len());
                acked_bytes += s.payload.len();
            }
            clean &= s.transmissions == 1 && !s.sacked;
            if s.seq == p.ack {
                sample = s.sent_at;
            }
        }
        if let (true, Some(at)) = (clean, sample) {
            self.rtt_sample(now.saturating_duration_since(at));
        }
        // Selective ACK: bit i is ack + 2 + i.
        let mut sacked_after = 0usize;
        let mut lost = None;
        if !p.sack.is_empty() {
            if let Some(front) = self.unacked.front().map(|s| s.seq) {
                let base = p.ack.wrapping_add(2);
                let bits = p.sack.len() * 8;
                // Walk newest to oldest, counting acknowledged packets past each.
                for i in (0..bits).rev() {
                    let seq = base.wrapping_add(i as u16);
                    let idx = seq.wrapping_sub(front) as usize;
                    let Some(s) = self.unacked.get_mut(idx) else {
                        continue;
                    };
                    if p.sack[i / 8] & (1 << (i % 8)) != 0 {
                        if !s.sacked {
                            if !s.resend && s.transmissions > 0 {
                                self.in_flight = self.in_flight.saturating_sub(s.payload.len());
                                acked_bytes += s.payload.len();
                            }
                            s.sacked = true;
                            s.resend = false;
                        }
                        sacked_after += 1;
                    } else if sacked_after >= DUP_ACKS && !s.resend && s.transmissions == 1 {
                        self.in_flight = self.in_flight.saturating_sub(s.payload.len());
                        s.resend = true;
                        lost = Some(s.seq);
                    }
                }
                // The packet right after the ACK: covered by bit -1, i.e. none.
                if sacked_after >= DUP_ACKS {
                    if let Some(s) = self.unacked.front_mut() {
                        if s.seq == p.ack.wrapping_add(1)
                            && !s.resend
                            && !s.sacked
                            && s.transmissions == 1
                        {
                            self.in_flight = self.in_flight.saturating_sub(s.payload.len());
                            s.resend = true;
                            lost = Some(s.seq);
                        }
                    }
                }
            }
        }
        // Duplicate ACKs (a STATE repeating the last ACK while data is out).
        if !newly && p.ty == Type::State && p.ack == self.last_ack && p.sack.is_empty() {
            self.dup_acks += 1;
            if self.dup_acks == DUP_ACKS {
                if let Some(s) = self.unacked.front_mut() {
                    if !s.resend && !s.sacked && s.transmissions == 1 {
                        self.in_flight = self.in_flight.saturating_sub(s.payload.len());
                        s.resend = true;
                        lost = Some(s.seq);
                    }
                }
            }
        } else if newly {
            self.dup_acks = 0;
        }
        self.last_ack = p.ack;
        if let Some(seq) = lost {
            self.on_loss(seq);
        }
        if acked_bytes > 0 {
            self.congestion(now, p.ts_diff_us, acked_bytes);
        }
        if newly || acked_bytes > 0 {
            self.rto_deadline = (!self.unacked.is_empty()).then(|| now + self.rto);
        }
    }

    fn rtt_sample(&mut self, sample: Duration) {
        match self.rtt {
            None => {
                self.rtt = Some(sample);
                self.rtt_var = sample / 2;
            }
            Some(rtt) => {
                let delta = rtt.abs_diff(sample);
                self.rtt_var = (self.rtt_var * 3 + delta) / 4;
                self.rtt = Some((rtt * 7 + sample) / 8);
            }
        }
        let rtt = self.rtt.unwrap_or(sample);
        self.rto = (rtt + self.rtt_var * 4).clamp(MIN_RTO, MAX_RTO);
    }

    /// A packet was lost: halve the window, once per window of packets.
    fn on_loss(&mut self, seq: u16) {
        if seq_lt(seq, self.recovery_until) {
            return;
        }
        self.slow_start = false;
        self.window = (self.window / 2).max(MIN_WINDOW);
        self.recovery_until = self.seq_nr;
    }

    /// LEDBAT, on `acked` bytes newly acknowledged by a packet that measured `ts_diff`.
    fn congestion(&mut self, now: Instant, ts_diff: u32, acked: usize) {
        if ts_diff != 0 {
            self.delay_sample(now, ts_diff);
        }
        let target = TARGET.as_micros() as f64;
        let delay = self.queue_delay.as_micros() as f64;
        let off_target = ((target - delay) / target).clamp(-2.0, 1.0);
        let used = self
            .window_full_at
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1));
        if self.slow_start && delay < target / 2.0 {
            if used {
                self.window = (self.window + acked).min(MAX_WINDOW);
            }
            return;
        }
        self.slow_start = false;
        let window = self.window as f64;
        let acked = acked as f64;
        let change = if off_target >= 0.0 {
            // Below the target: grow by up to MAX_GAIN a round trip, while the window is used.
            let factor = acked.min(window) / acked.max(window);
            if used {
                MAX_GAIN * factor * off_target
            } else {
                0.0
            }
        } else {
            // Above it: shrink in proportion to the excess, at most by half a round trip
            // (LEDBAT++'s multiplicative decrease; RFC 6817's additive one yields too slowly
            // to a flow that needs the link now).
            -(-off_target).min(0.5) * acked
        };
        self.window = ((window + change) as usize).clamp(MIN_WINDOW, MAX_WINDOW);
    }

    fn delay_sample(&mut self, now: Instant, sample: u32) {
        // The base: the minimum per minute over ten minutes, compared wrapping (the clocks'
        // offset is arbitrary).
        let below = |a: u32, b: u32| (a.wrapping_sub(b) as i32) < 0;
        match self.base.back_mut() {
            Some((at, min)) if now.saturating_duration_since(*at) < BASE_SLOT => {
                if below(sample, *min) {
                    *min = sample;
                }
            }
            _ => {
                if self.base.len() == BASE_SLOTS {
                    self.base.pop_front();
                }
                self.base.push_back((now, sample));
            }
        }
        let base = self
            .base
            .iter()
            .map(|&(_, m)| m)
            .reduce(|a, b| if below(b, a) { b } else { a })
            .unwrap_or(sample);
        self.recent[self.recent_at] = Some(sample);
        self.recent_at = (self.recent_at + 1) % self.recent.len();
        let current = self
            .recent
            .iter()
            .flatten()
            .copied()
            .reduce(|a, b| if below(b, a) { b } else { a })
            .unwrap_or(sample);
        let queued = current.wrapping_sub(base);
        // Above a few seconds it is a clock jump, not a queue.
        self.queue_delay = if queued > 10_000_000 {
            Duration::ZERO
        } else {
            Duration::from_micros(u64::from(queued))
        };
    }

    fn handle_data(&mut self, p: &Packet<'_>) {
        self.ack_due = true;
        if self.state != State::Connected {
            return;
        }
        if let Some(eof) = self.eof_seq {
            if seq_lt(eof, p.seq) {
                return;
            }
        }
        if p.ty == Type::Fin {
            self.eof_seq = Some(p.seq);
        }
        let next = self.ack_nr.wrapping_add(1);
        if !seq_le(next, p.seq) {
            return; // old: the ACK (due) repeats that we have it
        }
        if p.payload.len() > self.advertised() {
            return; // the sender ignored our window
        }
        if p.seq == next {
            self.ready.extend_from_slice(p.payload);
            self.ack_nr = next;
            // Each step forward shifts the slots by one: the first now holds `ack_nr + 1`.
            // Popping it restores "slot i is ack_nr + 2 + i"; if it held a packet, that is
            // the next in order.
            while let Some(Some(b)) = self.reorder.pop_front() {
                self.reorder_bytes -= b.len();
                self.ready.extend_from_slice(&b);
                self.ack_nr = self.ack_nr.wrapping_add(1);
            }
        } else {
            let idx = p.seq.wrapping_sub(next.wrapping_add(1)) as usize;
            if idx >= MAX_REORDER {
                return;
            }
            // Slot i is ack_nr + 2 + i = next + 1 + i.
            if self.reorder.len() <= idx {
                self.reorder.resize(idx + 1, None);
            }
            if self.reorder[idx].is_none() {
                self.reorder_bytes += p.payload.len();
                self.reorder[idx] = Some(Bytes::copy_from_slice(p.payload));
            }
        }
        if self.advertised() < PAYLOAD {
            self.window_closed = true;
        }
    }

    /// The earliest instant at which [`Connection::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.state, State::Closed(_)) {
            return None;
        }
        let keepalive = self.last_sent.map(|t| t + KEEPALIVE);
        crate::time::earliest(self.rto_deadline, keepalive)
    }

    /// Timeouts: resends, gives up, keeps alive.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        if self.last_sent.is_some_and(|t| now >= t + KEEPALIVE) {
            self.ack_due = true;
        }
        let Some(deadline) = self.rto_deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        let tries = self.unacked.front().map_or(0, |s| s.transmissions);
        let limit = if self.state == State::Connecting {
            SYN_TRIES
        } else {
            MAX_TRANSMISSIONS
        };
        if tries >= limit {
            self.state = State::Closed(Close::TimedOut);
            return;
        }
        self.stats.timeouts += 1;
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.window = MIN_WINDOW;
        self.slow_start = false;
        for s in self.unacked.iter_mut() {
            if !s.resend && !s.sacked && s.transmissions > 0 {
                s.resend = true;
            }
        }
        self.in_flight = 0;
        self.recovery_until = self.seq_nr;
        self.rto_deadline = Some(now + self.rto);
    }

    /// Writes the next datagram to send into `buf` (at least [`MAX_DATAGRAM`] bytes) and
    /// returns its length; `None` when there is nothing to send now. Call until `None` after
    /// every input.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if matches!(self.state, State::Closed(_)) {
            return None;
        }
        let window = self.window.min(self.peer_wnd.max(MIN_WINDOW));
        // A lost packet (or the SYN), the oldest first.
        if let Some(i) = self.unacked.iter().position(|s| s.resend) {
            let len = self.unacked[i].payload.len();
            if self.in_flight == 0 || self.in_flight + len <= window {
                let s = &mut self.unacked[i];
                s.resend = false;
                s.transmissions += 1;
                s.sent_at = Some(now);
                if s.transmissions > 1 {
                    self.stats.resent += 1;
                }
                let (seq, ty, payload) = (s.seq, s.ty, s.payload.clone());
                self.in_flight += len;
                return Some(self.emit(now, buf, ty, seq, &payload));
            }
            self.window_full_at = Some(now);
            return self.emit_ack(now, buf);
        }
        // libtorrent drops any packet (its ACK too) whose sequence number is more than
        // `max(16, capacity / 1100)` past its last in-order one, its capacity being at least
        // the window it advertises: never run further ahead than that, or a lost packet
        // leaves every later one, our ACKs of its requests included, thrown away.
        let ahead = (self.peer_wnd / 1100).clamp(16, MAX_REORDER);
        if self.state == State::Connected && self.unacked.len() < ahead {
            // New data.
            if !self.out.is_empty() {
                let len = self.out.len().min(PAYLOAD);
                if self.in_flight == 0 || self.in_flight + len <= window {
                    let payload = self.out.split_to(len).freeze();
                    return Some(self.push_new(now, buf, Type::Data, payload));
                }
                self.window_full_at = Some(now);
            } else if self.close_wanted && self.fin_seq.is_none() {
                self.fin_seq = Some(self.seq_nr);
                return Some(self.push_new(now, buf, Type::Fin, Bytes::new()));
            }
        }
        self.emit_ack(now, buf)
    }

    fn emit_ack(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if !self.ack_due || self.state == State::Connecting {
            return None;
        }
        Some(self.emit(now, buf, Type::State, self.seq_nr, &[]))
    }

    fn push_new(&mut self, now: Instant, buf: &mut [u8], ty: Type, payload: Bytes) -> usize {
        let seq = self.seq_nr;
        self.seq_nr = seq.wrapping_add(1);
        self.in_flight += payload.len();
        let n = self.emit(now, buf, ty, seq, &payload);
        self.unacked_bytes += payload.len();
        self.unacked.push_back(Sent {
            seq,
            ty,
            payload,
            sent_at: Some(now),
            transmissions: 1,
            resend: false,
            sacked: false,
        });
        n
    }

    fn emit(&mut self, now: Instant, buf: &mut [u8], ty: Type, seq: u16, payload: &[u8]) -> usize {
        let mut sack = [0u8; MAX_SACK];
        let mut sack_len = 0;
        if ty != Type::Syn {
            for (i, slot) in self.reorder.iter().take(MAX_SACK * 8).enumerate() {
                if slot.is_some() {
                    sack[i / 8] |= 1 << (i % 8);
                    sack_len = i / 8 + 1;
                }
            }
        }
        let p = Packet {
            ty,
            conn_id: if ty == Type::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            ts_us: self.now_us(now),
            ts_diff_us: self.reply_diff,
            wnd: self.advertised() as u32,
            seq,
            ack: self.ack_nr,
            sack: &sack[..sack_len],
            payload,
        };
        if self.rto_deadline.is_none() && ty != Type::State {
            self.rto_deadline = Some(now + self.rto);
        }
        self.ack_due = false;
        self.last_sent = Some(now);
        p.encode(buf)
    }
}

/// A `RESET` answering a packet for no connection we hold (not itself a `RESET`). As libutp
/// does, it carries the sender's send ID (for a `SYN`, the ID + 1), and a `RESET` is matched
/// by the send ID of the connection it ends (which side dialled is not known).
pub fn reset_for(p: &Packet<'_>, buf: &mut [u8]) -> Option<usize> {
    if p.ty == Type::Reset {
        return None;
    }
    let reply = Packet {
        ty: Type::Reset,
        conn_id: if p.ty == Type::Syn {
            p.conn_id.wrapping_add(1)
        } else {
            p.conn_id
        },
        ts_us: 0,
        ts_diff_us: 0,
        wnd: 0,
        seq: 0,
        ack: p.seq,
        sack: &[],
        payload: &[],
    };
    Some(reply.encode(buf))
}
