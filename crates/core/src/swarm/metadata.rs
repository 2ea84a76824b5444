//! BEP 9 in the swarm: fetching the info dictionary from peers (when the torrent started from
//! a magnet or a bare ID) and serving it to peers that ask.
//!
//! The fetch buffer ([`MetadataFetch`]) and the answer to a request ([`serve`]) know nothing of
//! a swarm's peers, so the live swarm ([`crate::live::swarm`]) uses them too.

use std::time::Instant;

use bytes::Bytes;

use super::{Action, PeerKey, Swarm};
use crate::id::InfoHash;
use crate::wire::ext::{self, MetadataMsg};
use crate::wire::Message;

/// Fetching the info dictionary over ut_metadata: the buffer and which 16 KiB pieces arrived.
#[derive(Debug)]
pub(crate) struct MetadataFetch {
    size: u32,
    buf: Vec<u8>,
    have: Vec<bool>,
}

/// What a `Data` message did to a fetch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FetchProgress {
    /// Stored; more pieces are missing.
    More,
    /// The last piece arrived: the whole dictionary (not yet checked against the hash).
    Done(Vec<u8>),
    /// The piece has the wrong size or index: the sender misbehaves.
    Bad,
}

impl MetadataFetch {
    /// A fetch of `size` bytes; `None` if the size is zero or above the limit.
    pub(crate) fn new(size: u32) -> Option<MetadataFetch> {
        if size == 0 || size > ext::MAX_METADATA_SIZE {
            return None;
        }
        let pieces = (size as usize).div_ceil(ext::METADATA_PIECE_LEN);
        Some(MetadataFetch {
            size,
            buf: vec![0; size as usize],
            have: vec![false; pieces],
        })
    }

    /// The announced size.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// Pieces not received yet.
    pub(crate) fn missing(&self) -> Vec<u32> {
        self.have
            .iter()
            .enumerate()
            .filter(|(_, h)| !**h)
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Stores one piece.
    pub(crate) fn on_data(&mut self, piece: u32, total_size: u32, data: &[u8]) -> FetchProgress {
        let start = piece as usize * ext::METADATA_PIECE_LEN;
        let expected = (self.size as usize)
            .saturating_sub(start)
            .min(ext::METADATA_PIECE_LEN);
        if total_size != self.size || piece as usize >= self.have.len() || data.len() != expected {
            return FetchProgress::Bad;
        }
        let Some(dst) = self.buf.get_mut(start..start + expected) else {
            return FetchProgress::Bad;
        };
        dst.copy_from_slice(data);
        if let Some(h) = self.have.get_mut(piece as usize) {
            *h = true;
        }
        if self.have.iter().all(|&h| h) {
            FetchProgress::Done(std::mem::take(&mut self.buf))
        } else {
            FetchProgress::More
        }
    }
}

/// The answer to a ut_metadata request for `piece` of `info` (a reject when unknown).
pub(crate) fn serve(info: Option<&Bytes>, piece: u32) -> MetadataMsg {
    let Some(info) = info else {
        return MetadataMsg::Reject { piece };
    };
    let start = piece as usize * ext::METADATA_PIECE_LEN;
    if start >= info.len() {
        return MetadataMsg::Reject { piece };
    }
    let end = (start + ext::METADATA_PIECE_LEN).min(info.len());
    MetadataMsg::Data {
        piece,
        total_size: info.len() as u32,
        data: info.slice(start..end),
    }
}

impl Swarm {
    pub(super) fn on_metadata_msg(&mut self, key: PeerKey, msg: MetadataMsg, now: Instant) {
        match msg {
            MetadataMsg::Request { piece } => {
                let Some(their_id) = self.peers.get(&key).and_then(|p| p.ut_metadata) else {
                    return;
                };
                let reply = serve(self.info_bytes.as_ref(), piece);
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
                match fetch.on_data(piece, total_size, &data) {
                    FetchProgress::More => {}
                    FetchProgress::Bad => {
                        self.disconnect(key, "ut_metadata piece of the wrong size".into(), false)
                    }
                    FetchProgress::Done(buf) => {
                        self.fetch = None;
                        if InfoHash::of_info(&buf) == self.info_hash {
                            self.actions
                                .push_back(Action::MetadataReceived(Bytes::from(buf)));
                        } else {
                            self.disconnect(
                                key,
                                "metadata does not match the info hash".into(),
                                true,
                            );
                            for p in self.peers.values_mut() {
                                p.metadata_requested = false;
                            }
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
        if self.fetch.is_none() {
            self.fetch = MetadataFetch::new(size);
        }
        let Some(fetch) = &self.fetch else { return };
        if fetch.size() != size {
            return;
        }
        let missing = fetch.missing();
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
