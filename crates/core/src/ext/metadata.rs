//! BEP 9 in both swarms: serving the info dictionary, and fetching it when a swarm started
//! from a magnet or a bare ID.
//!
//! Codec: [`MetadataMsg`] (in [`crate::wire::ext`], re-exported here). Per-connection state:
//! the ID the peer wants `ut_metadata` sent with, the size it announced, whether we asked it
//! and until when, and its backoff. Node state: [`Metadata`] — the info dictionary once known,
//! and the one fetch buffer.
//!
//! Fetching, and why each rule is there:
//! - one peer at a time is asked for every missing piece; a REJECT, or silence for
//!   [`REQUEST_TIMEOUT`], moves on to another peer, and the same peer is asked again after a
//!   backoff ([`FIRST_BACKOFF`] doubling to [`MAX_BACKOFF`]) — a peer that does not have the
//!   dictionary yet gets it later, and a lone such peer must not stall a download for ever;
//! - the size a peer announces (`metadata_size`) is only a claim: sizes are candidates, one size
//!   is fetched at a time from peers announcing it (the current one while it has a peer to ask,
//!   else the one most peers announce), and the info hash settles them: a completed buffer that
//!   fails the hash drops and bans its sender (with several senders, the buffer is fetched again
//!   from one peer at a time, so the next failure names the liar), and the next size or peers
//!   are tried; data of another size than the one fetched drops its sender.
//!
//! Owns BEP 9 only: what the dictionary means (a torrent, a live stream) is the swarm's
//! business, and bans are executed by the engine from the [`DisconnectReason`]s emitted here.
//!
//! Bounds: one entry per connection of the swarm (removed with it), one fetch buffer of at most
//! [`MAX_METADATA_SIZE`] bytes, senders of a buffer at most one per connection.
//!
//! Calling rule: after every input, drain [`Metadata::poll`]; call [`Metadata::handle_timeout`]
//! at [`Metadata::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use crate::wire::ext::{MetadataMsg, MAX_METADATA_SIZE, METADATA_PIECE_LEN};

use super::handshake::{Extension, PeerExtensions};
use super::PeerKey;
use crate::disconnect::{DisconnectReason, ProtocolViolation};
use crate::id::InfoHash;
use crate::wire::ext::ExtError;
use crate::wire::Message;

/// A peer asked for metadata that sends nothing for this long is passed over (and asked
/// again after its backoff).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before a peer that refused or stayed silent is asked again.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest such wait (the backoff doubles up to this).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What [`Metadata`] asks of the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataEvent {
    /// Send this message to the peer.
    Send(PeerKey, Message),
    /// Close the connection (the reason says whether to ban).
    Disconnect(PeerKey, DisconnectReason),
    /// The info dictionary arrived and hashes to the info hash. Serving starts at once.
    Received {
        /// The raw info dictionary.
        info: Bytes,
        /// The peers that sent it.
        from: Vec<PeerKey>,
    },
}

#[derive(Debug, Clone)]
struct PeerState {
    /// The ID it wants `ut_metadata` sent with.
    their_id: Option<u8>,
    /// The size it announced.
    size: Option<u32>,
    /// Not to be asked before this.
    retry_at: Option<Instant>,
    /// The wait after its next refusal.
    backoff: Duration,
}

/// The one fetch in progress: a buffer for one candidate size.
#[derive(Debug)]
struct Fetch {
    buf: FetchBuffer,
    /// The peer asked now, and until when it has to answer (each piece extends it).
    asked: Option<(PeerKey, Instant)>,
    /// Who sent pieces of this buffer.
    senders: Vec<PeerKey>,
    /// After a buffer from several senders failed the hash: one sender per buffer from now on.
    one_sender: bool,
}

/// BEP 9 for one swarm. See the module docs for the fetching rules and the calling rule.
#[derive(Debug)]
pub struct Metadata {
    info_hash: InfoHash,
    info: Option<Bytes>,
    peers: BTreeMap<PeerKey, PeerState>,
    fetch: Option<Fetch>,
    /// A fetch lost its peer (it disconnected): pick another at the next timeout, which is due
    /// at once (this instant is in the past).
    wake: Option<Instant>,
    events: VecDeque<MetadataEvent>,
}

impl Metadata {
    /// BEP 9 for the swarm of `info_hash`, without the dictionary yet (it will be fetched).
    pub fn new(info_hash: InfoHash) -> Metadata {
        Metadata {
            info_hash,
            info: None,
            peers: BTreeMap::new(),
            fetch: None,
            wake: None,
            events: VecDeque::new(),
        }
    }

    /// The dictionary is known (given, or fetched and parsed): serve it, fetch nothing more.
    pub fn set_info(&mut self, info: Bytes) {
        self.info = Some(info);
        self.fetch = None;
        self.wake = None;
    }

    /// The info dictionary, once known.
    pub fn info(&self) -> Option<&Bytes> {
        self.info.as_ref()
    }

    /// Its size, for our extension handshake.
    pub fn size(&self) -> Option<u32> {
        self.info.as_ref().map(|b| b.len() as u32)
    }

    /// Next thing for the swarm to do.
    pub fn poll(&mut self) -> Option<MetadataEvent> {
        self.events.pop_front()
    }

    /// A peer's extension handshake (a repeat replaces what the first said).
    pub fn on_handshake(&mut self, key: PeerKey, theirs: &PeerExtensions, now: Instant) {
        let p = self.peers.entry(key).or_insert(PeerState {
            their_id: None,
            size: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        });
        p.their_id = theirs.id(Extension::UtMetadata);
        p.size = theirs.metadata_size;
        self.pump(now);
    }

    /// A connection closed.
    pub fn remove_peer(&mut self, key: PeerKey) {
        self.peers.remove(&key);
        if let Some(f) = &mut self.fetch {
            if let Some((asked, until)) = f.asked {
                if asked == key {
                    f.asked = None;
                    // When it was last asked or answered: in the past, so due at once.
                    self.wake = Some(until.checked_sub(REQUEST_TIMEOUT).unwrap_or(until));
                }
            }
        }
    }

    /// A `ut_metadata` message from a peer (sent with our ID).
    pub fn on_message(&mut self, key: PeerKey, payload: &Bytes, now: Instant) {
        let msg = match MetadataMsg::decode(payload) {
            Ok(m) => m,
            // BEP 9: message types we do not know are ignored.
            Err(ExtError::UnknownMsgType(_)) => return,
            Err(_) => return self.drop_peer(key, ProtocolViolation::BadMetadataMsg.into()),
        };
        match msg {
            MetadataMsg::Request { piece } => self.serve(key, piece),
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => self.on_data(key, piece, total_size, &data, now),
            MetadataMsg::Reject { .. } => {
                if self.is_asked(key) {
                    self.pass_over(key, now);
                    self.pump(now);
                }
            }
        }
    }

    /// When [`Self::handle_timeout`] has work: the asked peer's deadline, a peer's backoff
    /// ending while nobody is asked, or now after the asked peer left. `None` once the
    /// dictionary is known.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.info.is_some() {
            return None;
        }
        if let Some((_, until)) = self.fetch.as_ref().and_then(|f| f.asked) {
            return Some(until);
        }
        let retry = self
            .peers
            .values()
            .filter(|p| p.their_id.is_some() && p.size.is_some())
            .filter_map(|p| p.retry_at)
            .min();
        match (self.wake, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Deadlines: a silent peer is passed over; a peer whose backoff ended may be asked again.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.wake = None;
        if let Some((key, until)) = self.fetch.as_ref().and_then(|f| f.asked) {
            if now >= until {
                self.pass_over(key, now);
            }
        }
        self.pump(now);
    }

    // ---- helpers ------------------------------------------------------------------------

    fn serve(&mut self, key: PeerKey, piece: u32) {
        let Some(id) = self.peers.get(&key).and_then(|p| p.their_id) else {
            return;
        };
        let reply = serve(self.info.as_ref(), piece);
        self.events.push_back(MetadataEvent::Send(
            key,
            Message::Extended {
                id,
                payload: reply.encode(),
            },
        ));
    }

    fn is_asked(&self, key: PeerKey) -> bool {
        self.fetch
            .as_ref()
            .and_then(|f| f.asked)
            .is_some_and(|(k, _)| k == key)
    }

    fn on_data(&mut self, key: PeerKey, piece: u32, total_size: u32, data: &[u8], now: Instant) {
        if !self.is_asked(key) {
            // Late (we passed it over) or unsolicited: not part of this buffer.
            return;
        }
        let Some(f) = self.fetch.as_mut() else {
            return;
        };
        match f.buf.on_data(piece, total_size, data) {
            FetchProgress::Bad => {
                f.asked = None;
                self.drop_peer(key, DisconnectReason::MetadataWrongSize);
                self.pump(now);
            }
            FetchProgress::More => {
                f.asked = Some((key, now + REQUEST_TIMEOUT));
                if !f.senders.contains(&key) {
                    f.senders.push(key);
                }
            }
            FetchProgress::Done(buf) => {
                if !f.senders.contains(&key) {
                    f.senders.push(key);
                }
                let senders = std::mem::take(&mut f.senders);
                if InfoHash::of_info(&buf) == self.info_hash {
                    let info = Bytes::from(buf);
                    self.set_info(info.clone());
                    self.events.push_back(MetadataEvent::Received {
                        info,
                        from: senders,
                    });
                    return;
                }
                if let [liar] = senders.as_slice() {
                    // One sender: it is the liar (a wrong size, or wrong bytes of the right
                    // size). Peers announcing other sizes, or this one, are tried next.
                    self.fetch = None;
                    self.drop_peer(*liar, DisconnectReason::MetadataMismatch);
                } else {
                    // Several senders: refetch from one at a time, so the next failure names
                    // the culprit without banning the honest.
                    let size = f.buf.size;
                    f.asked = None;
                    f.one_sender = true;
                    if let Some(buf) = FetchBuffer::new(size) {
                        f.buf = buf;
                    }
                }
                self.pump(now);
            }
        }
    }

    /// A refusal or silence: the peer waits out its backoff before it is asked again.
    fn pass_over(&mut self, key: PeerKey, now: Instant) {
        if let Some(f) = self.fetch.as_mut() {
            if f.asked.is_some_and(|(k, _)| k == key) {
                f.asked = None;
            }
        }
        if let Some(p) = self.peers.get_mut(&key) {
            p.retry_at = Some(now + p.backoff);
            p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn drop_peer(&mut self, key: PeerKey, reason: DisconnectReason) {
        self.remove_peer(key);
        self.wake = None;
        self.events
            .push_back(MetadataEvent::Disconnect(key, reason));
    }

    /// Asks the next peer when nobody is asked and the dictionary is unknown.
    fn pump(&mut self, now: Instant) {
        if self.info.is_some() || self.fetch.as_ref().is_some_and(|f| f.asked.is_some()) {
            return;
        }
        let Some((key, size)) = self.choose(now) else {
            return;
        };
        if self.fetch.as_ref().is_none_or(|f| f.buf.size != size) {
            let Some(buf) = FetchBuffer::new(size) else {
                return;
            };
            self.fetch = Some(Fetch {
                buf,
                asked: None,
                senders: Vec::new(),
                one_sender: false,
            });
        }
        let Some(id) = self.peers.get(&key).and_then(|p| p.their_id) else {
            return;
        };
        let Some(f) = self.fetch.as_mut() else {
            return;
        };
        if f.one_sender && f.senders.iter().any(|&s| s != key) {
            f.senders.clear();
            if let Some(buf) = FetchBuffer::new(size) {
                f.buf = buf;
            }
        }
        f.asked = Some((key, now + REQUEST_TIMEOUT));
        for piece in f.buf.missing() {
            self.events.push_back(MetadataEvent::Send(
                key,
                Message::Extended {
                    id,
                    payload: MetadataMsg::Request { piece }.encode(),
                },
            ));
        }
    }

    /// The peer to ask next and the size to fetch: the current size while a peer announcing it
    /// can be asked, else the size most peers announce (smaller first among equals); within a
    /// size, the peer that refused least (lowest key among equals).
    fn choose(&self, now: Instant) -> Option<(PeerKey, u32)> {
        let askable = |p: &PeerState| {
            p.their_id.is_some() && p.size.is_some() && p.retry_at.is_none_or(|t| t <= now)
        };
        let best_for = |size: u32| {
            self.peers
                .iter()
                .filter(|(_, p)| askable(p) && p.size == Some(size))
                .min_by_key(|(&k, p)| (p.backoff, k))
                .map(|(&k, _)| (k, size))
        };
        if let Some(current) = self.fetch.as_ref().and_then(|f| best_for(f.buf.size)) {
            return Some(current);
        }
        let mut votes: BTreeMap<u32, usize> = BTreeMap::new();
        for p in self.peers.values().filter(|p| p.their_id.is_some()) {
            if let Some(size) = p.size {
                *votes.entry(size).or_default() += 1;
            }
        }
        let mut sizes: Vec<(u32, usize)> = votes.into_iter().collect();
        sizes.sort_by_key(|&(size, n)| (std::cmp::Reverse(n), size));
        sizes.into_iter().find_map(|(size, _)| best_for(size))
    }
}

/// The answer to a `ut_metadata` request for `piece` of `info` (a reject when unknown).
pub fn serve(info: Option<&Bytes>, piece: u32) -> MetadataMsg {
    let Some(info) = info else {
        return MetadataMsg::Reject { piece };
    };
    let start = piece as usize * METADATA_PIECE_LEN;
    if start >= info.len() {
        return MetadataMsg::Reject { piece };
    }
    let end = (start + METADATA_PIECE_LEN).min(info.len());
    MetadataMsg::Data {
        piece,
        total_size: info.len() as u32,
        data: info.slice(start..end),
    }
}

/// The buffer of one fetch: `size` bytes and which 16 KiB pieces arrived.
#[derive(Debug)]
struct FetchBuffer {
    size: u32,
    buf: Vec<u8>,
    have: Vec<bool>,
}

/// What a `Data` message did to a buffer.
#[derive(Debug, PartialEq, Eq)]
enum FetchProgress {
    /// Stored; more pieces are missing.
    More,
    /// The last piece arrived: the whole dictionary (not yet checked against the hash).
    Done(Vec<u8>),
    /// The piece has another total size, or the wrong length or index: the sender misbehaves.
    Bad,
}

impl FetchBuffer {
    /// A buffer of `size` bytes; `None` if the size is zero or above the limit.
    fn new(size: u32) -> Option<FetchBuffer> {
        if size == 0 || size > MAX_METADATA_SIZE {
            return None;
        }
        let pieces = (size as usize).div_ceil(METADATA_PIECE_LEN);
        Some(FetchBuffer {
            size,
            buf: vec![0; size as usize],
            have: vec![false; pieces],
        })
    }

    fn missing(&self) -> Vec<u32> {
        self.have
            .iter()
            .enumerate()
            .filter(|(_, h)| !**h)
            .map(|(i, _)| i as u32)
            .collect()
    }

    fn on_data(&mut self, piece: u32, total_size: u32, data: &[u8]) -> FetchProgress {
        let start = piece as usize * METADATA_PIECE_LEN;
        let expected = (self.size as usize)
            .saturating_sub(start)
            .min(METADATA_PIECE_LEN);
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

#[cfg(test)]
mod tests;
