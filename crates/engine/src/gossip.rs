//! `pc_search` in the engine: what a swarm's connections do with catalogue records. Each live
//! or VoD actor holds a [`Gossip`] over the node's [`Catalog`]:
//!
//! - a peer that starts to speak `pc_search` gets a sample of the catalogue ([`SAMPLE`]
//!   records: this node's own first, then the most available, then the newest);
//! - records pushed by a peer, or sent as results, are verified one by one
//!   ([`Record::decode`]): one that does not verify closes the connection and bans the peer
//!   (an honest peer verifies before it passes a record on); the rest go into the catalogue,
//!   which refuses stale, future-dated, denied and over-quota ones;
//! - a record new to the catalogue (from a peer, or this node's own) is pushed to every peer
//!   of every swarm that speaks `pc_search` (gossip: each node passes a record on once, when
//!   it is new to it, so a push wave ends where everyone has it);
//! - a query is answered from the catalogue: at most [`MAX_ANSWER`] records, the last message
//!   marked done.
//!
//! The per-peer budget (records and queries per second) is core's
//! ([`peercdn_core::ext::search::PeerBudget`]), applied before events reach here.

use std::sync::Arc;

use bytes::Bytes;
use peercdn_core::catalog::Record;
use peercdn_core::ext::search::{
    push_messages, SearchEvent, SearchMsg, SearchSwarm, MAX_MSG_RECORDS,
};
use peercdn_core::ext::PeerKey;
use tokio::sync::broadcast;

use crate::catalog::{Catalog, Origin, SearchQuery};

/// Records a newly connected peer gets.
pub const SAMPLE: usize = 60;
/// Most records in an answer to one query.
pub const MAX_ANSWER: usize = 12;

/// One actor's side of `pc_search`.
#[derive(Debug)]
pub struct Gossip {
    catalog: Arc<Catalog>,
    fresh: broadcast::Receiver<Bytes>,
}

impl Gossip {
    /// Gossip over `catalog`, hearing of records new to it from now on.
    pub fn new(catalog: Arc<Catalog>) -> Gossip {
        let fresh = catalog.subscribe();
        Gossip { catalog, fresh }
    }

    /// The next record new to the catalogue (for the actor's select loop; a subscriber that
    /// fell behind skips what it missed).
    pub async fn fresh(&mut self) -> Option<Bytes> {
        loop {
            match self.fresh.recv().await {
                Ok(b) => return Some(b),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Pushes a record new to the catalogue to every peer of `swarm` that speaks `pc_search`.
    pub fn spread(&self, swarm: &mut impl SearchSwarm, record: Bytes) {
        let msg = SearchMsg::Push(vec![record]);
        for key in swarm.search_peers() {
            swarm.send_search(key, &msg);
        }
    }

    /// A swarm's `pc_search` event on connection `key`.
    pub fn on_event(
        &self,
        swarm: &mut impl SearchSwarm,
        key: PeerKey,
        ev: SearchEvent,
        now_unix: u64,
    ) {
        match ev {
            SearchEvent::Joined => {
                for m in push_messages(&self.catalog.sample(SAMPLE)) {
                    swarm.send_search(key, &m);
                }
            }
            SearchEvent::Msg(SearchMsg::Push(records))
            | SearchEvent::Msg(SearchMsg::Results { records, .. }) => {
                self.take(swarm, key, records, now_unix)
            }
            SearchEvent::Msg(SearchMsg::Query {
                qid,
                text,
                category,
                kind,
            }) => {
                let q = SearchQuery {
                    text,
                    kind,
                    category: (!category.is_empty()).then_some(category),
                    limit: MAX_ANSWER,
                    ..Default::default()
                };
                let found: Vec<Bytes> = self
                    .catalog
                    .search(&q, now_unix)
                    .hits
                    .into_iter()
                    .map(|h| Bytes::from(h.entry.record.encode()))
                    .collect();
                let chunks: Vec<&[Bytes]> = found.chunks(MAX_MSG_RECORDS).collect();
                if chunks.is_empty() {
                    let done = SearchMsg::Results {
                        qid,
                        records: Vec::new(),
                        done: true,
                    };
                    swarm.send_search(key, &done);
                }
                for (i, c) in chunks.iter().enumerate() {
                    let m = SearchMsg::Results {
                        qid,
                        records: c.to_vec(),
                        done: i + 1 == chunks.len(),
                    };
                    swarm.send_search(key, &m);
                }
            }
        }
    }

    /// Verifies records from a peer and keeps the good ones; a forged one bans the peer (the
    /// rest of its message is dropped with it).
    fn take(&self, swarm: &mut impl SearchSwarm, key: PeerKey, records: Vec<Bytes>, now: u64) {
        let mut good = Vec::with_capacity(records.len());
        for b in &records {
            match Record::decode(b) {
                Ok(r) => good.push(r),
                Err(e) => {
                    tracing::info!(peer = key, error = %e, "forged catalogue record");
                    return swarm.forged_record(key);
                }
            }
        }
        for r in self.catalog.insert_all(good, Origin::Peer, now) {
            if let Err(e) = r {
                tracing::debug!(peer = key, error = %e, "catalogue record refused");
            }
        }
    }
}
