//! The swarm's own timers under the time contract ([`crate::time`]): what [`Swarm::poll_timeout`]
//! reports and what [`Swarm::handle_timeout`] does when it comes — rate meters and queue sizes,
//! idle peers, request timeouts, keep-alives, PEX, the choking round and upload snubbing
//! (`choker::Drain`, checked at least at every rate update), the BEP 9 fetch's
//! deadlines (`ext::metadata`).
//!
//! Owns no state of its own (the deadlines live on the swarm and its peers) and never reads a
//! clock; the message handlers stay in the parent module.

use std::time::{Duration, Instant};

use super::{PeerKey, Swarm};
use crate::choker;
use crate::disconnect::DisconnectReason;
use crate::ext::handshake::Extension;
use crate::time::earliest;
use crate::wire::{BlockRef, Message};

/// How often the rate meters (and the request queue sizes that follow them) are updated.
pub(super) const RATE_EVERY: Duration = Duration::from_secs(1);
/// A peer we sent nothing to between two checks this far apart gets a keep-alive (BEP 3 peers
/// drop a connection silent for two minutes).
pub(super) const KEEPALIVE_CHECK: Duration = Duration::from_secs(45);

impl Swarm {
    /// The earliest instant at which the swarm has work of its own: the next rate update and
    /// choking round (while it has peers), a peer's request timeout, idle timeout, keep-alive
    /// check or PEX message, a metadata fetch deadline. `None`: nothing until the next input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let meta = self.meta.poll_timeout();
        if self.peers.is_empty() {
            return meta;
        }
        let mut t = earliest(self.last_rate.map(|t| t + RATE_EVERY), self.next_choke);
        t = earliest(t, meta);
        for p in self.peers.values() {
            t = earliest(t, Some(p.rec.last_recv + self.config.idle_timeout));
            t = earliest(t, Some(p.keepalive_at));
            t = earliest(t, p.up.drain.deadline());
            if !p.outstanding.is_empty() {
                t = earliest(t, Some(p.last_block + self.config.request_timeout));
            }
            if p.rec.ext.id(Extension::UtPex).is_some() && self.config.pex_interval.is_some() {
                t = earliest(t, Some(p.rec.pex.due()));
            }
        }
        t
    }

    /// Does the work that is due at `now` (see [`Swarm::poll_timeout`]): rates and queue sizes,
    /// idle disconnects, request timeouts, keep-alives, PEX, the choking round; then interest
    /// and requests are brought up to date. Work that is not due yet waits.
    pub fn handle_timeout(&mut self, now: Instant) {
        let rates_due = self
            .last_rate
            .is_some_and(|t| now.saturating_duration_since(t) >= RATE_EVERY);
        let dt = self
            .last_rate
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or(Duration::ZERO);
        if rates_due || self.last_rate.is_none() {
            self.last_rate = Some(now);
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &key in &keys {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if rates_due {
                peer.rec.traffic.sample(dt);
                // Keep about a second of data in flight.
                let down_rate = peer.rec.traffic.down.rate();
                let by_rate = (down_rate / crate::wire::BLOCK_LEN as u64) as u32;
                peer.queue_target = by_rate.clamp(
                    self.config.min_queue,
                    self.config.max_queue.min(peer.reqq.max(1)),
                );
                if down_rate == 0 {
                    peer.queue_target = peer
                        .queue_target
                        .max(self.config.initial_queue.min(peer.reqq.max(1)));
                }
            }
            peer.up.drain.update(now);
            if now.saturating_duration_since(peer.rec.last_recv) >= self.config.idle_timeout {
                self.disconnect(key, DisconnectReason::Idle);
                continue;
            }
            if !peer.outstanding.is_empty()
                && now.saturating_duration_since(peer.last_block) >= self.config.request_timeout
            {
                // Stuck requests (e.g. a peer that holds them and never answers): cancel and
                // hand them to someone else.
                let dropped: Vec<BlockRef> = peer.outstanding.drain(..).collect();
                peer.queue_target = self.config.min_queue;
                peer.last_block = now;
                for b in &dropped {
                    self.send(key, Message::Cancel(*b));
                    if let Some(picker) = self.picker.as_mut() {
                        picker.on_request_failed(b);
                    }
                }
            }
            self.keep_alive(key, now);
        }
        self.meta.handle_timeout(now);
        self.drain_meta();
        self.send_pex(now);
        if self.next_choke.is_some_and(|t| now >= t) {
            self.next_choke = Some(now + choker::ROUND);
            self.choke_round(now);
        } else {
            self.swap_snubbed(now);
        }
        self.update_interest_all();
        self.refill_all(now);
    }

    /// A keep-alive when nothing was sent to the peer between two checks
    /// [`KEEPALIVE_CHECK`] apart (so the line is never silent for twice that).
    fn keep_alive(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if now < peer.keepalive_at {
            return;
        }
        peer.keepalive_at = now + KEEPALIVE_CHECK;
        if std::mem::take(&mut peer.sent_recently) {
            return;
        }
        self.send(key, Message::KeepAlive);
    }
}
