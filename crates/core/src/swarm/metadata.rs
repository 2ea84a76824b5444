//! BEP 9 in the swarm: fetching the info dictionary from peers (when the torrent started from
//! a magnet or a bare ID) and serving it to peers that ask.

use std::time::Instant;

use bytes::Bytes;

use super::{Action, MetadataFetch, PeerKey, Swarm};
use crate::id::InfoHash;
use crate::wire::ext::{self, MetadataMsg};
use crate::wire::Message;

impl Swarm {
    pub(super) fn on_metadata_msg(&mut self, key: PeerKey, msg: MetadataMsg, now: Instant) {
        match msg {
            MetadataMsg::Request { piece } => {
                let Some(their_id) = self.peers.get(&key).and_then(|p| p.ut_metadata) else {
                    return;
                };
                let reply = match &self.info_bytes {
                    Some(info) => {
                        let start = piece as usize * ext::METADATA_PIECE_LEN;
                        if start < info.len() {
                            let end = (start + ext::METADATA_PIECE_LEN).min(info.len());
                            MetadataMsg::Data {
                                piece,
                                total_size: info.len() as u32,
                                data: info.slice(start..end),
                            }
                        } else {
                            MetadataMsg::Reject { piece }
                        }
                    }
                    None => MetadataMsg::Reject { piece },
                };
                self.send(
                    key,
                    Message::Extended {
                        id: their_id,
                        payload: reply.encode(),
                    },
                );
            }
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                let Some(fetch) = self.fetch.as_mut() else {
                    return;
                };
                let start = piece as usize * ext::METADATA_PIECE_LEN;
                let expected = (fetch.size as usize)
                    .saturating_sub(start)
                    .min(ext::METADATA_PIECE_LEN);
                if total_size != fetch.size
                    || piece as usize >= fetch.have.len()
                    || data.len() != expected
                {
                    return self.disconnect(
                        key,
                        "ut_metadata piece of the wrong size".into(),
                        false,
                    );
                }
                fetch.buf[start..start + expected].copy_from_slice(&data);
                fetch.have[piece as usize] = true;
                if fetch.have.iter().all(|&h| h) {
                    let buf = std::mem::take(&mut fetch.buf);
                    self.fetch = None;
                    if InfoHash::of_info(&buf) == self.info_hash {
                        self.actions
                            .push_back(Action::MetadataReceived(Bytes::from(buf)));
                    } else {
                        self.disconnect(key, "metadata does not match the info hash".into(), true);
                        for p in self.peers.values_mut() {
                            p.metadata_requested = false;
                        }
                    }
                }
            }
            MetadataMsg::Reject { .. } => {
                // Try someone else on the next tick.
                let _ = now;
            }
        }
    }

    pub(super) fn start_metadata_fetch(&mut self, key: PeerKey, size: u32) {
        if size == 0 || size > ext::MAX_METADATA_SIZE {
            return;
        }
        if self.fetch.is_none() {
            let pieces = (size as usize).div_ceil(ext::METADATA_PIECE_LEN);
            self.fetch = Some(MetadataFetch {
                size,
                buf: vec![0; size as usize],
                have: vec![false; pieces],
            });
        }
        let Some(fetch) = &self.fetch else { return };
        if fetch.size != size {
            return;
        }
        let missing: Vec<u32> = fetch
            .have
            .iter()
            .enumerate()
            .filter(|(_, h)| !**h)
            .map(|(i, _)| i as u32)
            .collect();
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(their_id) = peer.ut_metadata else {
            return;
        };
        if peer.metadata_requested {
            return;
        }
        peer.metadata_requested = true;
        for piece in missing {
            self.send(
                key,
                Message::Extended {
                    id: their_id,
                    payload: MetadataMsg::Request { piece }.encode(),
                },
            );
        }
    }
}
