//! The live swarm's side of the shared extension layer ([`crate::ext`]): dispatching extended
//! messages (BEP 10 handshake, BEP 9, BEP 11, `pc_live`), carrying out what BEP 9 asks, and
//! sending our handshake and PEX messages.
//!
//! Owns the glue only: the extensions' state and rules live in [`crate::ext`], the `pc_live`
//! policy (headers, window, scheduling, serving) in the parent module and `sched.rs`.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{Action, LiveSwarm, PeerKey};
use crate::disconnect::{DisconnectReason, ProtocolViolation};
use crate::ext::handshake::{self, our_handshake, Extension, EXT_HANDSHAKE_ID};
use crate::ext::metadata::MetadataEvent;
use crate::ext::pex;
use crate::ext::receipt::{self, ReceiptBook, ReceiptEvent, ReceiptSwarm};
use crate::ext::search::{self, SearchEvent, SearchMsg, SearchSwarm};
use crate::live::{LiveMsg, LiveParams};

impl LiveSwarm {
    pub(super) fn on_extended(&mut self, key: PeerKey, id: u8, payload: Bytes, now: Instant) {
        if id == EXT_HANDSHAKE_ID {
            return self.on_ext_handshake(key, &payload, now);
        }
        match Extension::from_our_id(id) {
            Some(Extension::UtMetadata) => {
                self.meta.on_message(key, &payload, now);
                self.drain_meta(now);
            }
            Some(Extension::UtPex) => {
                if let Some(added) = pex::received(&payload) {
                    self.actions.push_back(Action::Discovered(key, added));
                }
            }
            Some(Extension::UtHolepunch) => self.on_holepunch(key, &payload, now),
            Some(Extension::PcLive) => match LiveMsg::decode(&payload) {
                Ok(m) => self.on_live_msg(key, m, now),
                Err(_) => self.disconnect(key, ProtocolViolation::BadLiveMsg.into()),
            },
            Some(Extension::PcSearch) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                match search::receive(&payload, &mut peer.rec, now) {
                    Ok(Some(ev)) => self.actions.push_back(Action::Search(key, ev)),
                    Ok(None) => {}
                    Err(reason) => self.disconnect(key, reason),
                }
            }
            Some(Extension::PcReceipt) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                let ident = self.config.identity.as_ref();
                match receipt::receive(&payload, key, &mut peer.rec, ident, &mut self.book, now) {
                    Ok(Some(ReceiptEvent::Reply(m))) => self.send(key, m),
                    Ok(Some(ReceiptEvent::Receipts(r))) => {
                        self.actions.push_back(Action::Receipts(key, r));
                    }
                    Ok(Some(ReceiptEvent::Identified(_)) | None) => {}
                    Err(reason) => self.disconnect(key, reason),
                }
            }
            None => {}
        }
    }

    fn on_ext_handshake(&mut self, key: PeerKey, payload: &[u8], now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        match handshake::receive(payload, key, &mut peer.rec, &mut self.meta, now) {
            Err(reason) => return self.disconnect(key, reason),
            Ok(true) => self
                .actions
                .push_back(Action::Search(key, SearchEvent::Joined)),
            Ok(false) => {}
        }
        if let Some(peer) = self.peers.get_mut(&key) {
            if let Some(m) = receipt::hello(self.config.identity.as_ref(), key, &mut peer.rec) {
                self.send(key, m);
            }
        }
        if self.params.is_some() {
            self.make_ready(key, now);
        }
        self.drain_meta(now);
    }

    /// Carries out what BEP 9 asks: messages, drops, and the dictionary once it arrived.
    pub(super) fn drain_meta(&mut self, now: Instant) {
        while let Some(ev) = self.meta.poll() {
            match ev {
                MetadataEvent::Send(key, msg) => self.send(key, msg),
                MetadataEvent::Disconnect(key, reason) => self.disconnect(key, reason),
                MetadataEvent::Received { info, from } => self.on_metadata_done(&from, info, now),
            }
        }
    }

    fn on_metadata_done(&mut self, from: &[PeerKey], buf: Bytes, now: Instant) {
        match LiveParams::from_info_bytes(&buf) {
            Ok(Some(params)) => {
                self.params = Some(params);
                self.actions.push_back(Action::MetadataReceived(buf));
                // Peers that joined by ID too learned from our first extension handshake that
                // we had no metadata: tell everyone its size now (BEP 10 allows a repeat).
                let all: Vec<PeerKey> = self.peers.keys().copied().collect();
                for &k in &all {
                    self.send_ext_handshake(k);
                }
                for k in all {
                    let live = self
                        .peers
                        .get(&k)
                        .and_then(|p| p.rec.ext.id(Extension::PcLive));
                    if live.is_some() {
                        self.make_ready(k, now);
                    }
                }
            }
            Ok(None) => self.actions.push_back(Action::NotLive(buf)),
            Err(_) => {
                for &k in from {
                    self.disconnect(k, DisconnectReason::BadLiveInfo);
                }
            }
        }
    }

    pub(super) fn send_ext_handshake(&mut self, key: PeerKey) {
        if !self.peers.get(&key).is_some_and(|p| p.extensions) {
            return;
        }
        let msg = our_handshake(
            &Extension::ALL,
            self.meta.size(),
            self.config.listen_port,
            self.config.max_peer_requests as u32,
            self.reachable,
        );
        self.send(key, msg);
    }

    /// BEP 11, added and dropped listen addresses per peer, once per interval.
    pub(super) fn send_pex(&mut self, now: Instant) {
        let Some(interval) = self.config.pex_interval else {
            return;
        };
        // No flags: a live peer is never a seed.
        let known = pex::known(self.peers.iter().map(|(&k, p)| (k, &p.rec, 0)));
        let peers = self.peers.iter_mut().map(|(&k, p)| (k, &mut p.rec));
        for (key, msg) in pex::round(now, interval, &known, peers) {
            self.send(key, msg);
        }
    }
}

impl SearchSwarm for LiveSwarm {
    fn send_search(&mut self, key: PeerKey, msg: &SearchMsg) -> Option<usize> {
        let (m, len) = search::message(&self.peers.get(&key)?.rec, msg)?;
        self.send(key, m);
        Some(len)
    }

    /// The peers that speak `pc_search`.
    fn search_peers(&self) -> Vec<PeerKey> {
        self.peers
            .iter()
            .filter(|(_, p)| p.rec.ext.id(Extension::PcSearch).is_some())
            .map(|(&k, _)| k)
            .collect()
    }

    /// A peer sent a catalogue record that does not verify: closed and banned.
    fn forged_record(&mut self, key: PeerKey) {
        self.disconnect(key, ProtocolViolation::ForgedRecord.into());
    }

    fn search_peer_addr(&self, key: PeerKey) -> Option<SocketAddr> {
        self.peers.get(&key).map(|p| p.rec.addr)
    }
}

impl ReceiptSwarm for LiveSwarm {
    fn receipt_book(&self) -> &ReceiptBook {
        &self.book
    }

    fn identified_peers(&self) -> Vec<(PeerKey, [u8; 32])> {
        receipt::identified(self.peers.iter().map(|(&k, p)| (k, &p.rec)))
    }

    fn send_receipts(&mut self, key: PeerKey, receipts: &[Bytes]) -> bool {
        let Some(msgs) = self
            .peers
            .get(&key)
            .and_then(|p| receipt::receipts_to(&p.rec, receipts))
        else {
            return false;
        };
        for m in msgs {
            self.send(key, m);
        }
        true
    }
}
