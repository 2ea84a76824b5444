//! Web seeds (BEP 19) in the torrent actor: HTTP fetching, verification and byte counts.
//!
//! When a web seed fetches which piece (deadline rescue, pieces no peer has, parallelism,
//! backoff, disabling a seed serving bad data) is core's policy,
//! [`peercdn_core::swarm::webseed::WebSeedPolicy`]; the actor wakes at its `poll_timeout` and
//! runs the fetches it asks for. This module must not decide anything itself.

use std::sync::Arc;

use bytes::Bytes;
use peercdn_core::metainfo::Metainfo;
use peercdn_core::swarm::webseed::{Fetched, WebSeedPolicy, MAX_WEBSEEDS};
use tracing::{debug, warn};

use super::{check_and_write, Internal, State, Torrent};
use crate::clock;
use crate::webseed::WebSeed;

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

/// The torrent's web seeds (their index is their [`peercdn_core::swarm::webseed::SeedId`]) and
/// the policy that drives them.
pub(super) fn from_metainfo(m: &Arc<Metainfo>) -> (Vec<WebSeed>, WebSeedPolicy) {
    let mut out = Vec::new();
    for url in m.url_list.iter().take(MAX_WEBSEEDS) {
        match WebSeed::new(url, m.clone()) {
            Ok(ws) => out.push(ws),
            Err(e) => warn!(%url, "ignoring web seed: {e}"),
        }
    }
    let policy = WebSeedPolicy::new(out.len());
    (out, policy)
}

impl Torrent {
    /// Starts the fetches the web seed policy wants now. Cheap when there are no web seeds.
    pub(super) fn schedule_webseeds(&mut self) {
        if self.webseeds.is_empty() || self.state != State::Downloading {
            return;
        }
        let now = clock::now();
        while let Some((k, index)) = self.ws_policy.next_fetch(&self.swarm, now) {
            let Some(ws) = self.webseeds.get(k).cloned() else {
                return;
            };
            let tx = self.internal_tx.clone();
            debug!(url = ws.url(), index, "web seed fetch");
            tokio::spawn(async move {
                let r = ws.fetch_piece(index).await.map_err(|e| e.to_string());
                let _ = tx.send(Internal::WebSeedPiece(k, index, r)).await;
            });
        }
    }

    /// A web seed answered for a piece.
    pub(super) fn on_webseed_piece(&mut self, k: usize, index: u32, r: Result<Bytes, String>) {
        let now = clock::now();
        let data = match r {
            Ok(d) => d,
            Err(e) => {
                self.ws_policy.on_fetched(k, index, Fetched::Failed, now);
                if let Some(ws) = self.webseeds.get(k) {
                    warn!(url = ws.url(), index, "web seed request failed: {e}");
                }
                return;
            }
        };
        self.ws_policy.on_fetched(k, index, Fetched::Received, now);
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
        self.ws_policy.on_checked(k, index, ok);
        if !ok {
            if let Some(ws) = self.webseeds.get(k) {
                warn!(
                    url = ws.url(),
                    index, "web seed sent data that failed its hash: dropping it"
                );
            }
            return;
        }
        if self.shared.has_piece(index) {
            return; // the peers were faster
        }
        self.http_downloaded += len;
        if self.ws_verified.len() <= k {
            self.ws_verified.resize(k + 1, 0);
        }
        self.ws_verified[k] += len;
        self.dirty = true;
        self.mark_have(index);
        self.swarm.piece_completed_elsewhere(index, clock::now());
    }

    /// Figures per web seed.
    pub(super) fn webseed_stats(&self) -> Vec<WebSeedStat> {
        self.webseeds
            .iter()
            .enumerate()
            .map(|(k, ws)| WebSeedStat {
                url: ws.url().to_string(),
                downloaded: ws.downloaded(),
                errors: self.ws_policy.errors(k),
            })
            .collect()
    }
}
