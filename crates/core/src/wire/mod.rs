//! The peer wire codec: BEP 3 messages, BEP 6 fast extension, BEP 10 extension protocol framing.
//! Extension payloads (handshake, ut_metadata, ut_pex) live in [`ext`].
//!
//! Framing follows check → parse → advance: [`decode`] looks at a buffer, returns `Ok(None)` when
//! a whole message is not there yet, and only consumes bytes for a whole, valid message.
//! Block payloads are split off the receive buffer without copying ([`bytes::Bytes`]).

pub mod ext;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::id::{InfoHash, PeerId};

/// Length of the BitTorrent handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Largest block we request and serve (16 KiB); requests above [`MAX_REQUEST_LEN`] are refused.
pub const BLOCK_LEN: u32 = 16 * 1024;
/// Largest request length accepted from a peer (128 KiB, as libtorrent).
pub const MAX_REQUEST_LEN: u32 = 128 * 1024;

/// The 68-byte handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Reserved bits; see the `RESERVED_*` helpers.
    pub reserved: [u8; 8],
    /// The swarm.
    pub info_hash: InfoHash,
    /// The sender.
    pub peer_id: PeerId,
}

/// One block: piece index, byte offset in the piece, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// Piece index.
    pub index: u32,
    /// Offset in the piece.
    pub begin: u32,
    /// Length in bytes.
    pub len: u32,
}

/// A peer wire message after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Zero-length keep-alive.
    KeepAlive,
    /// id 0.
    Choke,
    /// id 1.
    Unchoke,
    /// id 2.
    Interested,
    /// id 3.
    NotInterested,
    /// id 4.
    Have(u32),
    /// id 5, the raw wire bitfield (its length is checked against the torrent by the swarm).
    Bitfield(Bytes),
    /// id 6.
    Request(BlockRef),
    /// id 7.
    Piece {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// Block data (split off the receive buffer, no copy).
        data: Bytes,
    },
    /// id 8.
    Cancel(BlockRef),
    /// id 9, DHT port (BEP 5).
    Port(u16),
    /// id 0x0D, BEP 6.
    Suggest(u32),
    /// id 0x0E, BEP 6.
    HaveAll,
    /// id 0x0F, BEP 6.
    HaveNone,
    /// id 0x10, BEP 6.
    Reject(BlockRef),
    /// id 0x11, BEP 6.
    AllowedFast(u32),
    /// id 20, BEP 10: extended message id (0 = handshake) and payload.
    Extended {
        /// Extended message ID as the receiver assigned it (0 is the extension handshake).
        id: u8,
        /// The payload, undecoded.
        payload: Bytes,
    },
}

/// Why bytes from a peer are not a valid message. Any of these closes that one connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The handshake's protocol string is not `\x13BitTorrent protocol` (e.g. an MSE-encrypted dial).
    #[error("not a BitTorrent handshake")]
    NotBitTorrent,
    /// The length prefix is above the limit given to [`decode`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: u32,
        /// Limit.
        max: u32,
    },
    /// A message ID we do not know.
    #[error("unknown message id {0}")]
    UnknownId(u8),
    /// A known message with the wrong length for its kind.
    #[error("message id {id} with bad length {len}")]
    BadLength {
        /// Message ID.
        id: u8,
        /// Payload length including the id byte.
        len: u32,
    },
}

impl Handshake {
    /// Reserved bits we send: BEP 10 extension protocol (byte 5, 0x10) and BEP 6 fast (byte 7, 0x04).
    pub fn ours(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10;
        reserved[7] |= 0x04;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// The peer speaks BEP 10.
    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    /// The peer speaks BEP 6.
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }

    /// Serialises the 68 bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PROTOCOL.len() as u8;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Parses exactly 68 bytes.
    pub fn decode(buf: &[u8; HANDSHAKE_LEN]) -> Result<Self, WireError> {
        // Constant ranges into a fixed-size array: these cannot panic.
        if buf[0] as usize != PROTOCOL.len() || &buf[1..20] != PROTOCOL.as_slice() {
            return Err(WireError::NotBitTorrent);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(&buf[28..48]);
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&buf[48..68]);
        Ok(Handshake {
            reserved,
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
        })
    }
}

/// Message IDs on the wire.
mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 0x0D;
    pub const HAVE_ALL: u8 = 0x0E;
    pub const HAVE_NONE: u8 = 0x0F;
    pub const REJECT: u8 = 0x10;
    pub const ALLOWED_FAST: u8 = 0x11;
    pub const EXTENDED: u8 = 20;
}

/// Decodes one message from the front of `buf`: `Ok(None)` if incomplete (nothing consumed),
/// `Ok(Some(msg))` consuming exactly that message, or an error for bad input. `max_len` bounds
/// the length prefix (it must at least allow a 16 KiB piece message plus header).
///
/// Errors are reported as early as the bytes allow: a length prefix above `max_len` as soon as
/// the 4 prefix bytes are there, an unknown id or a length that does not fit the id as soon as the
/// id byte is there, so a hostile peer cannot make us buffer a body we would refuse anyway. After
/// an error the connection is to be closed; `buf` is left as it was.
///
/// Calling rule: after appending bytes, call until it returns `Ok(None)`.
pub fn decode(buf: &mut BytesMut, max_len: u32) -> Result<Option<Message>, WireError> {
    // check
    let Some(&[a, b, c, d]) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]);
    if len > max_len {
        return Err(WireError::TooLong { len, max: max_len });
    }
    if len == 0 {
        buf.advance(4);
        return Ok(Some(Message::KeepAlive));
    }
    let Some(&msg_id) = buf.get(4) else {
        return Ok(None);
    };
    check_length(msg_id, len)?;
    let total = (len as usize).saturating_add(4);
    if buf.len() < total {
        return Ok(None);
    }
    // parse + advance: the whole message is in `buf` and its length fits its id, so the
    // `bad()` paths below are unreachable; they exist so that no read can panic.
    let bad = || WireError::BadLength { id: msg_id, len };
    let body = buf.get(5..total).ok_or_else(bad)?;
    let msg = match msg_id {
        id::CHOKE => Message::Choke,
        id::UNCHOKE => Message::Unchoke,
        id::INTERESTED => Message::Interested,
        id::NOT_INTERESTED => Message::NotInterested,
        id::HAVE => Message::Have(be32(body, 0).ok_or_else(bad)?),
        id::REQUEST => Message::Request(block_ref(body).ok_or_else(bad)?),
        id::CANCEL => Message::Cancel(block_ref(body).ok_or_else(bad)?),
        id::REJECT => Message::Reject(block_ref(body).ok_or_else(bad)?),
        id::PORT => match body.first_chunk::<2>() {
            Some(p) => Message::Port(u16::from_be_bytes(*p)),
            None => return Err(bad()),
        },
        id::SUGGEST => Message::Suggest(be32(body, 0).ok_or_else(bad)?),
        id::HAVE_ALL => Message::HaveAll,
        id::HAVE_NONE => Message::HaveNone,
        id::ALLOWED_FAST => Message::AllowedFast(be32(body, 0).ok_or_else(bad)?),
        id::BITFIELD => {
            buf.advance(5);
            let data = buf.split_to(total - 5).freeze();
            return Ok(Some(Message::Bitfield(data)));
        }
        id::PIECE => {
            let index = be32(body, 0).ok_or_else(bad)?;
            let begin = be32(body, 4).ok_or_else(bad)?;
            buf.advance(13);
            let data = buf.split_to(total - 13).freeze();
            return Ok(Some(Message::Piece { index, begin, data }));
        }
        id::EXTENDED => {
            let ext_id = *body.first().ok_or_else(bad)?;
            buf.advance(6);
            let payload = buf.split_to(total - 6).freeze();
            return Ok(Some(Message::Extended {
                id: ext_id,
                payload,
            }));
        }
        // `check_length` refused every other id.
        other => return Err(WireError::UnknownId(other)),
    };
    buf.advance(total);
    Ok(Some(msg))
}

/// The bytes [`encode`] appends for `msg`, length prefix included, without encoding it (a
/// simulator charges links by it).
pub fn encoded_len(msg: &Message) -> usize {
    4 + id_and_len(msg).map_or(0, |(_, len)| len)
}

/// A message's id and its length after the prefix (id byte included); `None`: keep-alive.
fn id_and_len(msg: &Message) -> Option<(u8, usize)> {
    Some(match msg {
        Message::KeepAlive => return None,
        Message::Choke => (id::CHOKE, 1),
        Message::Unchoke => (id::UNCHOKE, 1),
        Message::Interested => (id::INTERESTED, 1),
        Message::NotInterested => (id::NOT_INTERESTED, 1),
        Message::Have(_) => (id::HAVE, 5),
        Message::Bitfield(data) => (id::BITFIELD, 1 + data.len()),
        Message::Request(_) => (id::REQUEST, 13),
        Message::Piece { data, .. } => (id::PIECE, 9 + data.len()),
        Message::Cancel(_) => (id::CANCEL, 13),
        Message::Port(_) => (id::PORT, 3),
        Message::Suggest(_) => (id::SUGGEST, 5),
        Message::HaveAll => (id::HAVE_ALL, 1),
        Message::HaveNone => (id::HAVE_NONE, 1),
        Message::Reject(_) => (id::REJECT, 13),
        Message::AllowedFast(_) => (id::ALLOWED_FAST, 5),
        Message::Extended { payload, .. } => (id::EXTENDED, 2 + payload.len()),
    })
}

/// Appends `msg` to `out`, length prefix included.
pub fn encode(msg: &Message, out: &mut BytesMut) {
    let Some((msg_id, len)) = id_and_len(msg) else {
        out.put_u32(0);
        return;
    };
    out.reserve(4 + len);
    // Payloads are ours (blocks ≤ 128 KiB, bitfields and extension payloads far below 4 GiB).
    out.put_u32(len as u32);
    out.put_u8(msg_id);
    match msg {
        Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => out.put_u32(*i),
        Message::Request(r) | Message::Cancel(r) | Message::Reject(r) => {
            out.put_u32(r.index);
            out.put_u32(r.begin);
            out.put_u32(r.len);
        }
        Message::Bitfield(data) => out.put_slice(data),
        Message::Piece { index, begin, data } => {
            out.put_u32(*index);
            out.put_u32(*begin);
            out.put_slice(data);
        }
        Message::Port(p) => out.put_u16(*p),
        Message::Extended { id, payload } => {
            out.put_u8(*id);
            out.put_slice(payload);
        }
        Message::KeepAlive
        | Message::Choke
        | Message::Unchoke
        | Message::Interested
        | Message::NotInterested
        | Message::HaveAll
        | Message::HaveNone => {}
    }
}

/// Refuses an unknown id, or a length (id byte included) that does not fit the id.
#[inline]
fn check_length(msg_id: u8, len: u32) -> Result<(), WireError> {
    let ok = match msg_id {
        id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => len == 1,
        id::HAVE_ALL | id::HAVE_NONE => len == 1,
        id::HAVE | id::SUGGEST | id::ALLOWED_FAST => len == 5,
        id::REQUEST | id::CANCEL | id::REJECT => len == 13,
        id::PIECE => len >= 9,
        id::PORT => len == 3,
        id::BITFIELD => len >= 1,
        id::EXTENDED => len >= 2,
        other => return Err(WireError::UnknownId(other)),
    };
    if ok {
        Ok(())
    } else {
        Err(WireError::BadLength { id: msg_id, len })
    }
}

/// Big-endian u32 at `at`, `None` if `body` is too short.
#[inline]
fn be32(body: &[u8], at: usize) -> Option<u32> {
    let bytes = body.get(at..)?.first_chunk::<4>()?;
    Some(u32::from_be_bytes(*bytes))
}

/// Index, begin, length of a request/cancel/reject body.
#[inline]
fn block_ref(body: &[u8]) -> Option<BlockRef> {
    Some(BlockRef {
        index: be32(body, 0)?,
        begin: be32(body, 4)?,
        len: be32(body, 8)?,
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: a real instant as the origin of a virtual clock
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u32 = 1 << 20;

    fn enc(msg: &Message) -> BytesMut {
        let mut out = BytesMut::new();
        encode(msg, &mut out);
        out
    }

    fn all_fixed() -> Vec<Message> {
        all_fixed_with(16384)
    }

    fn all_fixed_with(block: usize) -> Vec<Message> {
        let r = BlockRef {
            index: 1,
            begin: 0x4000,
            len: 0x4000,
        };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
            Message::Bitfield(Bytes::new()),
            Message::Request(r),
            Message::Piece {
                index: 3,
                begin: 16384,
                data: Bytes::from(vec![9u8; block]),
            },
            Message::Piece {
                index: 3,
                begin: 0,
                data: Bytes::new(),
            },
            Message::Cancel(r),
            Message::Port(6881),
            Message::Suggest(4),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(r),
            Message::AllowedFast(5),
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"de"),
            },
            Message::Extended {
                id: 3,
                payload: Bytes::new(),
            },
        ]
    }

    #[test]
    fn encoded_len_is_what_encode_appends() {
        for m in all_fixed() {
            assert_eq!(encoded_len(&m), enc(&m).len(), "{m:?}");
        }
    }

    #[test]
    fn handshake_round_trip_and_bits() {
        let hs = Handshake::ours(InfoHash([1; 20]), PeerId([2; 20]));
        let bytes = hs.encode();
        assert_eq!(bytes[0], 19);
        assert_eq!(&bytes[1..20], PROTOCOL);
        assert_eq!(&bytes[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        let back = Handshake::decode(&bytes).unwrap();
        assert_eq!(back, hs);
        assert!(back.supports_extensions() && back.supports_fast());
    }

    #[test]
    fn handshake_refuses_other_protocols() {
        let mut bytes = Handshake::ours(InfoHash([1; 20]), PeerId([2; 20])).encode();
        bytes[5] = b'x';
        assert_eq!(Handshake::decode(&bytes), Err(WireError::NotBitTorrent));
        let mut bytes = Handshake::ours(InfoHash([1; 20]), PeerId([2; 20])).encode();
        bytes[0] = 18;
        assert_eq!(Handshake::decode(&bytes), Err(WireError::NotBitTorrent));
    }

    #[test]
    fn known_encodings() {
        assert_eq!(&enc(&Message::KeepAlive)[..], &[0, 0, 0, 0]);
        assert_eq!(&enc(&Message::Interested)[..], &[0, 0, 0, 1, 2]);
        assert_eq!(
            &enc(&Message::Have(0x01020304))[..],
            &[0, 0, 0, 5, 4, 1, 2, 3, 4]
        );
        assert_eq!(
            &enc(&Message::Port(0x1AE1))[..],
            &[0, 0, 0, 3, 9, 0x1A, 0xE1]
        );
        assert_eq!(&enc(&Message::HaveAll)[..], &[0, 0, 0, 1, 0x0E]);
        assert_eq!(
            &enc(&Message::Request(BlockRef {
                index: 1,
                begin: 2,
                len: 3
            }))[..],
            &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
        );
        assert_eq!(
            &enc(&Message::Extended {
                id: 1,
                payload: Bytes::from_static(b"de")
            })[..],
            &[0, 0, 0, 4, 20, 1, b'd', b'e']
        );
    }

    #[test]
    fn every_variant_round_trips_back_to_back() {
        let msgs = all_fixed();
        let mut buf = BytesMut::new();
        for m in &msgs {
            encode(m, &mut buf);
        }
        for m in &msgs {
            assert_eq!(decode(&mut buf, MAX).unwrap().as_ref(), Some(m));
        }
        assert!(buf.is_empty());
        assert_eq!(decode(&mut buf, MAX), Ok(None));
    }

    #[test]
    fn incomplete_consumes_nothing() {
        for m in all_fixed() {
            let full = enc(&m);
            for cut in 0..full.len() {
                let mut part = BytesMut::from(&full[..cut]);
                assert_eq!(decode(&mut part, MAX), Ok(None), "{m:?} cut at {cut}");
                assert_eq!(part.len(), cut);
            }
        }
    }

    #[test]
    fn too_long_before_the_body_arrives() {
        let mut buf = BytesMut::from(&[0u8, 0x10, 0, 1][..]);
        assert_eq!(
            decode(&mut buf, MAX),
            Err(WireError::TooLong {
                len: 0x0010_0001,
                max: MAX
            })
        );
        assert_eq!(buf.len(), 4, "an error leaves the buffer as it was");
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decode(&mut buf, u32::MAX - 1),
            Err(WireError::TooLong { .. })
        ));
    }

    #[test]
    fn bad_lengths_are_refused_as_soon_as_the_id_is_there() {
        let check = |len: u32, msg_id: u8| {
            let mut buf = BytesMut::new();
            buf.put_u32(len);
            buf.put_u8(msg_id);
            decode(&mut buf, MAX)
        };
        for (msg_id, good) in [
            (0u8, 1u32),
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 5),
            (6, 13),
            (8, 13),
            (9, 3),
            (0x0D, 5),
            (0x0E, 1),
            (0x0F, 1),
            (0x10, 13),
            (0x11, 5),
        ] {
            for len in [good - 1, good + 1, good + 100] {
                if len == 0 {
                    continue;
                }
                assert_eq!(
                    check(len, msg_id),
                    Err(WireError::BadLength { id: msg_id, len }),
                    "id {msg_id} len {len}"
                );
            }
        }
        assert_eq!(check(8, 7), Err(WireError::BadLength { id: 7, len: 8 }));
        assert_eq!(check(1, 20), Err(WireError::BadLength { id: 20, len: 1 }));
        assert_eq!(check(9, 7), Ok(None), "a piece header, body still to come");
        for unknown in [10u8, 11, 12, 19, 21, 255] {
            assert_eq!(check(1, unknown), Err(WireError::UnknownId(unknown)));
        }
    }

    #[test]
    fn payloads_are_split_off_without_copy() {
        let mut buf = enc(&Message::Piece {
            index: 0,
            begin: 0,
            data: Bytes::from(vec![7u8; 100]),
        });
        let start = buf.as_ptr() as usize;
        let Some(Message::Piece { data, .. }) = decode(&mut buf, MAX).unwrap() else {
            panic!("not a piece");
        };
        assert_eq!(data.as_ptr() as usize, start + 13);

        let mut buf = enc(&Message::Extended {
            id: 2,
            payload: Bytes::from_static(b"d1:ai1ee"),
        });
        let start = buf.as_ptr() as usize;
        let Some(Message::Extended { payload, .. }) = decode(&mut buf, MAX).unwrap() else {
            panic!("not extended");
        };
        assert_eq!(payload.as_ptr() as usize, start + 6);

        let mut buf = enc(&Message::Bitfield(Bytes::from_static(&[1, 2, 3])));
        let start = buf.as_ptr() as usize;
        let Some(Message::Bitfield(bits)) = decode(&mut buf, MAX).unwrap() else {
            panic!("not a bitfield");
        };
        assert_eq!(bits.as_ptr() as usize, start + 5);
    }

    fn block_ref() -> impl Strategy<Value = BlockRef> {
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, len)| BlockRef {
            index,
            begin,
            len,
        })
    }

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::KeepAlive),
            Just(Message::Choke),
            Just(Message::Unchoke),
            Just(Message::Interested),
            Just(Message::NotInterested),
            any::<u32>().prop_map(Message::Have),
            bytes(64).prop_map(Message::Bitfield),
            block_ref().prop_map(Message::Request),
            (any::<u32>(), any::<u32>(), bytes(300))
                .prop_map(|(index, begin, data)| Message::Piece { index, begin, data }),
            block_ref().prop_map(Message::Cancel),
            any::<u16>().prop_map(Message::Port),
            any::<u32>().prop_map(Message::Suggest),
            Just(Message::HaveAll),
            Just(Message::HaveNone),
            block_ref().prop_map(Message::Reject),
            any::<u32>().prop_map(Message::AllowedFast),
            (any::<u8>(), bytes(100)).prop_map(|(id, payload)| Message::Extended { id, payload }),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(msg in message()) {
            let mut buf = enc(&msg);
            prop_assert_eq!(decode(&mut buf, MAX).unwrap(), Some(msg));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn prop_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512),
                                     max_len in prop_oneof![Just(MAX), any::<u32>(), 0u32..64]) {
            let mut buf = BytesMut::from(&data[..]);
            // Each Ok(Some) consumes at least 4 bytes, so this ends.
            while let Ok(Some(_)) = decode(&mut buf, max_len) {}
        }

        #[test]
        fn prop_mutated_messages_never_panic(msgs in proptest::collection::vec(message(), 1..4),
                                            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut buf = BytesMut::new();
            for m in &msgs {
                encode(m, &mut buf);
            }
            for (at, byte) in flips {
                let i = at.index(buf.len());
                buf[i] = byte;
            }
            while let Ok(Some(_)) = decode(&mut buf, MAX) {}
        }

        #[test]
        fn prop_split_anywhere_decodes_the_same(msgs in proptest::collection::vec(message(), 1..6),
                                                 split in any::<prop::sample::Index>()) {
            let mut whole = BytesMut::new();
            for m in &msgs {
                encode(m, &mut whole);
            }
            let at = split.index(whole.len() + 1);
            let mut buf = BytesMut::from(&whole[..at]);
            let mut got = Vec::new();
            while let Some(m) = decode(&mut buf, MAX).unwrap() {
                got.push(m);
            }
            buf.extend_from_slice(&whole[at..]);
            while let Some(m) = decode(&mut buf, MAX).unwrap() {
                got.push(m);
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, msgs);
        }
    }

    #[test]
    fn every_split_point_of_a_stream() {
        let msgs = all_fixed_with(700);
        let mut whole = BytesMut::new();
        for m in &msgs {
            encode(m, &mut whole);
        }
        for at in 0..=whole.len() {
            let mut buf = BytesMut::from(&whole[..at]);
            let mut got = Vec::new();
            while let Some(m) = decode(&mut buf, MAX).unwrap() {
                got.push(m);
            }
            buf.extend_from_slice(&whole[at..]);
            while let Some(m) = decode(&mut buf, MAX).unwrap() {
                got.push(m);
            }
            assert!(buf.is_empty());
            assert_eq!(got, msgs, "split at {at}");
        }
    }

    /// Rough throughput check of the block path: `cargo test -p peercdn-core --release --lib
    /// wire::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let block = Message::Piece {
            index: 1,
            begin: 0,
            data: Bytes::from(vec![1u8; BLOCK_LEN as usize]),
        };
        let one = enc(&block);
        let rounds = 20_000;
        let start = std::time::Instant::now();
        let mut total = 0usize;
        let mut buf = BytesMut::with_capacity(one.len() * 64);
        for _ in 0..rounds / 64 {
            for _ in 0..64 {
                buf.extend_from_slice(&one);
            }
            while let Some(Message::Piece { data, .. }) = decode(&mut buf, MAX).unwrap() {
                total += data.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:.0} MB/s (copy into the buffer included)",
            total as f64 / secs / 1e6
        );
    }
}
