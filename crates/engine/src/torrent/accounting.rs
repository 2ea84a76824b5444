//! Receipts in the torrent actor (VoD; [`crate::receipts`] has the rules): the watch time of
//! its stream readers, a round of receipts every interval for the peers and web seeds that
//! delivered verified pieces, and who collects them.
//!
//! Who collects: the node that published the content — its catalogue holds its own record for
//! the ID, signed with its key — keeps a ledger for it, capped per viewer at the content's size
//! with a margin ([`Collecting::vod`]). A viewer hands its receipts to the peers they name and
//! to the publisher's connection, the publisher being the key of the best record its catalogue
//! holds for the ID (a record binds a key to an ID; it does not prove authorship, so a
//! describer's node may collect receipts too — its ledger, its business). Without a record the
//! receipts go to the uploaders only.

use peercdn_core::receipt::valid_host;

use super::Torrent;
use crate::catalog::Origin;
use crate::clock;
use crate::ledger::Collecting;

impl Torrent {
    /// Once a second (with the status): watch time, the publisher when a round is due, and the
    /// round itself.
    pub(super) fn account(&mut self) {
        let now = clock::now();
        let players = self.swarm.readers().iter().count();
        self.accounting.watch(players, now);
        if self.accounting.due(now) {
            self.find_collector();
        }
        let cdn = self.webseed_verified();
        self.accounting
            .tick(&mut self.swarm, &cdn, now, clock::unix_secs());
    }

    /// Whether we published the content (we collect), else whose record names it.
    fn find_collector(&mut self) {
        let me = self.p.peers.accounts.identity().public();
        let records = self.p.peers.search.catalog().records_for(&self.info_hash);
        let ours = records
            .iter()
            .any(|e| e.origin == Origin::Own && e.record.publisher == me);
        if ours {
            if let Some(info) = &self.info {
                if !self.accounting.is_source() {
                    self.accounting.set_source();
                    self.p
                        .peers
                        .accounts
                        .collect(self.info_hash, Collecting::vod(info.total_length()));
                }
            }
        } else if let Some(e) = records.first() {
            self.accounting.set_broadcaster(e.record.publisher);
        }
    }

    /// Verified bytes per web seed host (`host` or `host:port`, as receipts name CDN hosts).
    fn webseed_verified(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for (ws, n) in self.webseeds.iter().zip(&self.ws_verified) {
            let Ok(u) = url::Url::parse(ws.url()) else {
                continue;
            };
            let Some(h) = u.host_str() else { continue };
            let host = match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            };
            if !valid_host(&host) {
                continue;
            }
            match out.iter_mut().find(|(x, _)| *x == host) {
                Some((_, t)) => *t += n,
                None => out.push((host, *n)),
            }
        }
        out
    }
}
