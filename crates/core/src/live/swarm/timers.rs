//! The live swarm's own timers under the time contract ([`crate::time`]): what
//! [`LiveSwarm::poll_timeout`] reports and what [`LiveSwarm::handle_timeout`] does when it
//! comes — late blocks, the source's second wave, rechokes and idle slots, rates, PEX, idle
//! peers, refusals that expire, metadata retries.
//!
//! Owns no state of its own (the deadlines live on the swarm and its peers) and never reads a
//! clock; the message handlers stay in the parent module, the scheduler in `sched`.

use std::time::{Duration, Instant};

use super::serve::IDLE_SLOT;
use super::{sched, LiveSwarm, PeerKey};
use crate::disconnect::DisconnectReason;
use crate::ext::handshake::Extension;
use crate::time::earliest;

/// How often the rate meters are updated.
pub(super) const RATE_EVERY: Duration = Duration::from_secs(1);

impl LiveSwarm {
    /// The earliest instant at which the swarm has work of its own: a block request that
    /// times out, the source's next second-wave announcement, the next rechoke or idle-slot
    /// swap, a rate update, a peer's PEX message, idle timeout or expiring refusal, a metadata
    /// retry. `None`: nothing until the next input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.pending.front().map(|p| p.due);
        t = earliest(t, self.meta.poll_timeout());
        t = earliest(t, self.next_block_timeout());
        if self.peers.is_empty() {
            return t;
        }
        t = earliest(t, self.last_rate.map(|l| l + RATE_EVERY));
        t = earliest(t, self.next_optimistic);
        t = earliest(t, self.next_idle_swap());
        let pex = self.config.pex_interval.is_some();
        for p in self.peers.values() {
            t = earliest(t, Some(p.rec.last_recv + self.config.idle_timeout));
            t = earliest(t, p.up.drain.deadline());
            if pex && p.rec.ext.id(Extension::UtPex).is_some() {
                t = earliest(t, Some(p.rec.pex.due()));
            }
            // Refusals are kept in the order they came: the first expires first.
            if let Some(&(_, at)) = p.refused.front() {
                t = earliest(t, Some(at + sched::REFUSAL_MEMORY));
            }
        }
        t
    }

    /// Does the work that is due at `now` (see [`LiveSwarm::poll_timeout`]): rates, the
    /// source's delayed announcements, idle peers, rechoke, metadata retry, PEX, and requests
    /// for what is missing or late. Work that is not due yet waits.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.update_rates(now);
        self.prune();
        self.flush_pending(now);
        let idle: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                now.saturating_duration_since(p.rec.last_recv) >= self.config.idle_timeout
            })
            .map(|(&k, _)| k)
            .collect();
        for key in idle {
            self.disconnect(key, DisconnectReason::Idle);
        }
        for p in self.peers.values_mut() {
            p.refused
                .retain(|&(_, at)| now.saturating_duration_since(at) < sched::REFUSAL_MEMORY);
        }
        for p in self.peers.values_mut() {
            p.up.drain.update(now);
        }
        self.rechoke(now);
        self.meta.handle_timeout(now);
        self.drain_meta(now);
        self.send_pex(now);
        self.schedule(now);
        self.mark_late(now);
    }

    /// When [`Self::swap_slots`] has idle work (its snub work is the peers' `drain` deadlines): the first unchoked peer whose slot goes idle while
    /// an interested peer waits for one.
    fn next_idle_swap(&self) -> Option<Instant> {
        let waiting = self
            .peers
            .values()
            .any(|p| p.ready && p.up.am_choking && p.peer_interested);
        if !waiting {
            return None;
        }
        self.peers
            .values()
            .filter(|p| !p.up.am_choking)
            .map(|p| p.up.since.max(p.last_request.unwrap_or(p.up.since)) + IDLE_SLOT)
            .min()
    }

    /// The wall clock at `now` in microseconds since the Unix epoch (0: unknown).
    pub(super) fn wall_us(&self, now: Instant) -> u64 {
        self.config.wall_clock.map_or(0, |w| w.unix_us(now))
    }
}
