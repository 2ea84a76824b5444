//! The VoD swarm's side of `pc_receipt` ([`crate::ext::receipt`]): what the engine reads to
//! sign receipts, and sending them. Bytes are credited to a peer's key when the piece they
//! belong to passes its SHA-1 (`Swarm::on_piece_verified`), never before.

use bytes::Bytes;

use super::{PeerKey, Swarm};
use crate::ext::receipt::{self, ReceiptBook, ReceiptSwarm};

impl ReceiptSwarm for Swarm {
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
