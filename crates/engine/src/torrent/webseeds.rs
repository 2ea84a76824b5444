//! Web seeds (BEP 19) in the torrent actor: when HTTP servers take part, and how their bytes
//! are counted.
//!
//! Peers come first. A web seed fetches a piece only when
//! - no connected peer has it (the swarm is empty, or nobody has that part yet), or
//! - a stream reader has waited longer than [`RESCUE_AFTER`] for the piece it is reading
//!   (deadline rescue: the peers are too slow for playback).
//!
//! Each web seed fetches at most [`PARALLEL`] pieces at a time; a failing one backs off
//! exponentially, and one that serves data failing the hash check is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peercdn_core::metainfo::Metainfo;
use tracing::{debug, warn};

use super::{check_and_write, Internal, State, Torrent};
use crate::webseed::WebSeed;

/// Pieces fetched at once from one web seed.
pub const PARALLEL: usize = 4;
/// A reader waiting this long for its piece gets it from a web seed.
pub const RESCUE_AFTER: Duration = Duration::from_millis(700);
/// Web seeds kept per torrent.
pub const MAX_WEBSEEDS: usize = 8;

/// One web seed's state in a torrent.
#[derive(Debug)]
pub(super) struct Seeder {
    pub(super) ws: WebSeed,
    in_flight: usize,
    failures: u32,
    retry_at: Instant,
    pub(super) errors: u64,
    disabled: bool,
}

/// Per web seed figures for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSeedStat {
    /// Base URL.
    pub url: String,
    /// Payload bytes received from it.
    pub downloaded: u64,
    /// Failed requests.
    pub errors: u64,
}

pub(super) fn from_metainfo(m: &Arc<Metainfo>) -> Vec<Seeder> {
    let mut out = Vec::new();
    for url in m.url_list.iter().take(MAX_WEBSEEDS) {
        match WebSeed::new(url, m.clone()) {
            Ok(ws) => out.push(Seeder {
                ws,
                in_flight: 0,
                failures: 0,
                retry_at: crate::clock::now(),
                errors: 0,
                disabled: false,
            }),
            Err(e) => warn!(%url, "ignoring web seed: {e}"),
        }
    }
    out
}

impl Torrent {
    /// Gives idle web seeds work, if any is due. Cheap when there are no web seeds.
    pub(super) fn schedule_webseeds(&mut self) {
        if self.webseeds.is_empty() || self.state != State::Downloading {
            return;
        }
        let now = crate::clock::now();
        for k in 0..self.webseeds.len() {
            loop {
                let s = &self.webseeds[k];
                if s.disabled || s.in_flight >= PARALLEL || now < s.retry_at {
                    break;
                }
                let Some(index) = self.next_webseed_piece(now) else {
                    return;
                };
                self.ws_pieces.insert(index);
                let s = &mut self.webseeds[k];
                s.in_flight += 1;
                let ws = s.ws.clone();
                let tx = self.internal_tx.clone();
                debug!(url = ws.url(), index, "web seed fetch");
                tokio::spawn(async move {
                    let r = ws.fetch_piece(index).await.map_err(|e| e.to_string());
                    let _ = tx.send(Internal::WebSeedPiece(k, index, r)).await;
                });
            }
        }
    }

    /// Rescue first (readers waiting too long), then pieces no peer has.
    fn next_webseed_piece(&self, now: Instant) -> Option<u32> {
        let have = |i: u32| self.shared.has_piece(i);
        for r in self.readers.values() {
            if now.duration_since(r.since) < RESCUE_AFTER {
                continue;
            }
            for p in [r.piece, r.piece + 1] {
                if p <= r.last && !have(p) && !self.ws_pieces.contains(&p) {
                    return Some(p);
                }
            }
        }
        self.swarm
            .pieces_nobody_has(1, |i| self.ws_pieces.contains(&i))
            .first()
            .copied()
    }

    /// A web seed answered for a piece.
    pub(super) fn on_webseed_piece(&mut self, k: usize, index: u32, r: Result<Bytes, String>) {
        if let Some(s) = self.webseeds.get_mut(k) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        let data = match r {
            Ok(d) => d,
            Err(e) => {
                self.ws_pieces.remove(&index);
                if let Some(s) = self.webseeds.get_mut(k) {
                    s.errors += 1;
                    s.failures += 1;
                    let backoff = Duration::from_secs(1 << s.failures.min(6));
                    s.retry_at = crate::clock::now() + backoff;
                    warn!(
                        url = s.ws.url(),
                        index,
                        ?backoff,
                        "web seed request failed: {e}"
                    );
                }
                return;
            }
        };
        if let Some(s) = self.webseeds.get_mut(k) {
            s.failures = 0;
        }
        let (Some(info), Some(storage)) = (&self.info, self.storage.get().cloned()) else {
            return;
        };
        let expected = info.pieces.get(index as usize).copied();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let r = check_and_write(&storage, index, &data, expected);
            let _ = tx.blocking_send(Internal::WebSeedVerified(k, index, r, data.len() as u64));
        });
    }

    /// A web seed's piece was checked (and written).
    pub(super) fn on_webseed_verified(&mut self, k: usize, index: u32, ok: bool, len: u64) {
        self.ws_pieces.remove(&index);
        if !ok {
            if let Some(s) = self.webseeds.get_mut(k) {
                warn!(
                    url = s.ws.url(),
                    index, "web seed sent data that failed its hash: dropping it"
                );
                s.disabled = true;
                s.errors += 1;
            }
            return;
        }
        if self.shared.has_piece(index) {
            return; // the peers were faster
        }
        self.http_downloaded += len;
        self.dirty = true;
        self.mark_have(index);
        self.swarm
            .piece_completed_elsewhere(index, crate::clock::now());
    }

    /// Figures per web seed.
    pub(super) fn webseed_stats(&self) -> Vec<WebSeedStat> {
        self.webseeds
            .iter()
            .map(|s| WebSeedStat {
                url: s.ws.url().to_string(),
                downloaded: s.ws.downloaded(),
                errors: s.errors,
            })
            .collect()
    }
}
