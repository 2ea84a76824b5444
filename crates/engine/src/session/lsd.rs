//! The session's BEP 14 Local Service Discovery: started on the listen address's interface,
//! announcing every torrent and live stream the session holds ([`crate::lsd`] does the rest).

use std::sync::Arc;

use peercdn_core::InfoHash;

use super::{lock, route_peer, Session};
use crate::lsd::{Lsd, LsdConfig, LsdError, LsdStats};

impl Session {
    /// Starts BEP 14 Local Service Discovery on the interface of the listen address (its
    /// family; both for the IPv6 wildcard) and announces every torrent and live stream held
    /// now or added later. Errors (and does nothing) when the node listens on a loopback
    /// address ([`LsdError`]); a second call is a no-op.
    pub fn start_lsd(&self) -> Result<(), LsdError> {
        if self.inner.lsd.get().is_some() {
            return Ok(());
        }
        let weak = Arc::downgrade(&self.inner);
        let lsd = Lsd::start(
            LsdConfig {
                bind: self.inner.config.listen.ip(),
                peer_port: self.inner.port,
            },
            Arc::new(move |ih, peer| {
                if let Some(inner) = weak.upgrade() {
                    route_peer(&inner, ih, peer);
                }
            }),
        )?;
        let lsd = self.inner.lsd.get_or_init(|| lsd);
        for ih in self.list().iter().map(|h| h.info_hash) {
            lsd.add(ih);
        }
        let lives: Vec<InfoHash> = self
            .inner
            .lives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for ih in lives {
            lsd.add(ih);
        }
        Ok(())
    }

    /// Local Service Discovery counters; `None` while LSD is off.
    pub fn lsd_stats(&self) -> Option<LsdStats> {
        self.inner.lsd.get().map(Lsd::stats)
    }

    /// Stops announcing `id` on LSD unless a torrent or live stream still holds it.
    pub(super) fn lsd_forget(&self, id: &InfoHash) {
        let Some(lsd) = self.inner.lsd.get() else {
            return;
        };
        let held =
            lock(&self.inner.torrents).contains_key(id) || lock(&self.inner.lives).contains_key(id);
        if !held {
            lsd.remove(id);
        }
    }
}
