//! A viewer's CDN fallback: running core's `FallbackPolicy` actions against the modelled
//! mirror ([`crate::cdn`]) and feeding their outcomes back, as the engine's `cdn/fallback.rs`
//! task does — a fetched piece goes into the window with `on_piece_added`, so the swarm
//! announces it.

use peercdn_core::live::fallback::{FallbackAction, Outcome};

use super::{prune, CdnDone, Ev, Sim};
use crate::queue::Nanos;

impl Sim {
    /// Runs what `n`'s fallback policy asked of the CDN.
    pub(super) fn exec_cdn(&mut self, n: usize, a: FallbackAction, now: Nanos) {
        let newest = self.next_piece.checked_sub(1);
        if self.nodes[n].is_none() {
            return;
        }
        let Some(cdn) = self.cdn.as_mut() else {
            return;
        };
        let (at, what, size) = match a {
            FallbackAction::Fetch(index) => {
                let size = self.pieces.get(&index).map_or(0, |(_, p, _)| p.len());
                let at = cdn.fetch(now, size);
                (at, CdnDone::Piece { index, join: None }, size)
            }
            FallbackAction::PollPlaylist => (now + cdn.rtt, CdnDone::Playlist(newest), 0),
            FallbackAction::Join { back } => {
                let stream = self.stream;
                let Some(latest) = newest else {
                    self.q.push(
                        now + cdn.rtt,
                        Ev::Cdn {
                            node: n,
                            what: CdnDone::Playlist(None),
                        },
                    );
                    return;
                };
                let lo = latest.saturating_sub(back.saturating_sub(1));
                let index = (lo..=latest)
                    .rev()
                    .find(|&i| stream.keyframe(i))
                    .unwrap_or(latest);
                let size = self.pieces.get(&index).map_or(0, |(_, p, _)| p.len());
                // The playlist first, then the piece.
                let at = cdn.fetch(now + cdn.rtt, size);
                (
                    at,
                    CdnDone::Piece {
                        index,
                        join: Some(latest),
                    },
                    size,
                )
            }
        };
        self.q.push(
            at,
            Ev::CdnReach {
                node: n,
                what,
                size,
            },
        );
    }

    /// What `n` asked of the CDN reached it (`size` bytes): it ends once `n`'s downlink has
    /// taken it.
    pub(super) fn cdn_reach(&mut self, n: usize, what: CdnDone, size: usize, now: Nanos) {
        let Some(node) = self.nodes[n].as_mut() else {
            return;
        };
        let done = if size > 0 {
            node.access.receive(now, size)
        } else {
            now
        };
        if done == now {
            self.cdn_done(n, what, now);
        } else {
            self.q.push(done, Ev::Cdn { node: n, what });
        }
    }

    /// A CDN request of `n` ended: a fetched piece goes into the window (and the swarm
    /// announces it, as the engine's fallback task does), and the policy hears the outcome.
    pub(super) fn cdn_done(&mut self, n: usize, what: CdnDone, now: Nanos) {
        let inst = self.clock.at(now);
        let piece = match what {
            CdnDone::Piece { index, .. } => self.pieces.get(&index).cloned(),
            CdnDone::Playlist(_) => None,
        };
        let Some(node) = self.nodes[n].as_mut() else {
            return;
        };
        let outcome = match what {
            CdnDone::Playlist(latest) => {
                node.cdn_edge = latest.max(node.cdn_edge);
                Outcome::Playlist(Ok(latest))
            }
            CdnDone::Piece { index, join } => {
                if let Some(latest) = join {
                    node.cdn_edge = Some(latest).max(node.cdn_edge);
                }
                let stored = match piece {
                    Some((h, data, hashes)) if index >= node.swarm.first() => {
                        if node.held.insert(index) {
                            node.depth.insert(index, 1);
                            if now >= self.warm {
                                self.cdn_bytes += data.len() as u64;
                                self.arrivals
                                    .add(now.saturating_sub(self.stream.made(index)));
                            }
                        }
                        node.swarm.on_piece_added(h, hashes, inst);
                        let first = node.swarm.first();
                        prune(node, first);
                        true
                    }
                    _ => false,
                };
                match join {
                    Some(latest) => Outcome::Join(Ok(stored.then_some(latest))),
                    None => Outcome::Piece { index, stored },
                }
            }
        };
        if let Some(fb) = node.fallback.as_mut() {
            fb.handle_outcome(inst, outcome);
        }
        self.play(n, now);
        self.pump(n, now);
    }
}
