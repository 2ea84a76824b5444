//! Unit tests of BEP 9 fetching and serving: one [`Metadata`] driven by hand, peers played by
//! the test (what they announce, what they answer), on a virtual clock.
#![allow(clippy::disallowed_methods)] // tests: a real clock as the origin of a virtual clock, or to bound a wait

use super::*;
use crate::wire::ext::ExtHandshake;

/// An info dictionary of `len` bytes (any bytes do: only their hash matters here).
fn info(len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i * 13 + i / 300) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn announce(size: Option<u32>) -> PeerExtensions {
    PeerExtensions::from_handshake(&ExtHandshake::ours(size, None))
}

fn drain(m: &mut Metadata) -> Vec<MetadataEvent> {
    std::iter::from_fn(|| m.poll()).collect()
}

/// The pieces `key` was asked for.
fn asked_of(events: &[MetadataEvent], key: PeerKey) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            MetadataEvent::Send(k, Message::Extended { payload, .. }) if *k == key => {
                match MetadataMsg::decode(payload) {
                    Ok(MetadataMsg::Request { piece }) => Some(piece),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

/// Peer `key` answers every piece of `data` (claiming `data.len()` as the size).
fn answer(m: &mut Metadata, key: PeerKey, data: &Bytes, now: Instant) {
    let pieces = data.len().div_ceil(METADATA_PIECE_LEN) as u32;
    for piece in 0..pieces {
        let msg = serve(Some(data), piece).encode();
        m.on_message(key, &msg, now);
    }
}

fn received(events: &[MetadataEvent]) -> Option<&Bytes> {
    events.iter().find_map(|e| match e {
        MetadataEvent::Received { info, .. } => Some(info),
        _ => None,
    })
}

fn dropped(events: &[MetadataEvent]) -> Vec<(PeerKey, DisconnectReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            MetadataEvent::Disconnect(k, r) => Some((*k, *r)),
            _ => None,
        })
        .collect()
}

#[test]
fn fetches_from_an_announcing_peer_and_serves_afterwards() {
    let data = info(40_000);
    let mut m = Metadata::new(InfoHash::of_info(&data));
    let now = Instant::now();
    m.on_handshake(1, &announce(Some(40_000)), now);
    let ev = drain(&mut m);
    assert_eq!(asked_of(&ev, 1), vec![0, 1, 2]);
    answer(&mut m, 1, &data, now);
    let ev = drain(&mut m);
    assert_eq!(received(&ev), Some(&data));
    assert_eq!(m.info(), Some(&data));
    assert_eq!(m.poll_timeout(), None);
    // Serving: a peer that asks gets the piece under the ID it announced.
    let req = MetadataMsg::Request { piece: 2 }.encode();
    m.on_message(1, &req, now);
    let ev = drain(&mut m);
    let [MetadataEvent::Send(1, Message::Extended { id, payload })] = ev.as_slice() else {
        panic!("{ev:?}");
    };
    assert_eq!(*id, OUR_UT_METADATA_ID_FOR_TEST);
    assert!(matches!(
        MetadataMsg::decode(payload),
        Ok(MetadataMsg::Data {
            piece: 2,
            total_size: 40_000,
            ..
        })
    ));
}

const OUR_UT_METADATA_ID_FOR_TEST: u8 = crate::wire::ext::OUR_UT_METADATA_ID;

#[test]
fn reject_is_retried_after_a_backoff() {
    let data = info(100);
    let mut m = Metadata::new(InfoHash::of_info(&data));
    let t0 = Instant::now();
    m.on_handshake(1, &announce(Some(100)), t0);
    assert_eq!(asked_of(&drain(&mut m), 1), vec![0]);
    m.on_message(1, &MetadataMsg::Reject { piece: 0 }.encode(), t0);
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.poll_timeout(), Some(t0 + FIRST_BACKOFF));
    // Early: nothing. Due: asked again; a second refusal doubles the wait.
    m.handle_timeout(t0 + FIRST_BACKOFF / 2);
    assert!(drain(&mut m).is_empty());
    let t1 = t0 + FIRST_BACKOFF;
    m.handle_timeout(t1);
    assert_eq!(asked_of(&drain(&mut m), 1), vec![0]);
    m.on_message(1, &MetadataMsg::Reject { piece: 0 }.encode(), t1);
    assert_eq!(m.poll_timeout(), Some(t1 + FIRST_BACKOFF * 2));
    let t2 = t1 + FIRST_BACKOFF * 2;
    m.handle_timeout(t2);
    assert_eq!(asked_of(&drain(&mut m), 1), vec![0]);
    answer(&mut m, 1, &data, t2);
    assert_eq!(received(&drain(&mut m)), Some(&data));
}

#[test]
fn a_silent_peer_is_passed_over_for_another() {
    let data = info(100);
    let mut m = Metadata::new(InfoHash::of_info(&data));
    let t0 = Instant::now();
    m.on_handshake(1, &announce(Some(100)), t0);
    m.on_handshake(2, &announce(Some(100)), t0);
    let ev = drain(&mut m);
    assert_eq!(asked_of(&ev, 1), vec![0]);
    assert!(asked_of(&ev, 2).is_empty(), "one peer at a time");
    assert_eq!(m.poll_timeout(), Some(t0 + REQUEST_TIMEOUT));
    m.handle_timeout(t0 + REQUEST_TIMEOUT);
    let ev = drain(&mut m);
    assert_eq!(asked_of(&ev, 2), vec![0]);
    // A late answer from the silent one is not mixed in.
    answer(&mut m, 1, &info(100).slice(..), t0 + REQUEST_TIMEOUT);
    let ev = drain(&mut m);
    assert!(ev.is_empty(), "{ev:?}");
    answer(&mut m, 2, &data, t0 + REQUEST_TIMEOUT);
    assert_eq!(received(&drain(&mut m)), Some(&data));
}

#[test]
fn the_asked_peer_leaving_makes_the_next_one_due_at_once() {
    let data = info(100);
    let mut m = Metadata::new(InfoHash::of_info(&data));
    let t0 = Instant::now();
    m.on_handshake(1, &announce(Some(100)), t0);
    m.on_handshake(2, &announce(Some(100)), t0);
    drain(&mut m);
    let t1 = t0 + Duration::from_secs(1);
    m.remove_peer(1);
    assert!(m.poll_timeout().is_some_and(|t| t <= t1));
    m.handle_timeout(t1);
    assert_eq!(asked_of(&drain(&mut m), 2), vec![0]);
}

#[test]
fn a_lying_size_is_settled_by_the_hash() {
    let data = info(20_000);
    let mut m = Metadata::new(InfoHash::of_info(&data));
    let t0 = Instant::now();
    // The liar announces a size of its own and serves bytes of that size.
    let lie = info(30_000);
    m.on_handshake(1, &announce(Some(30_000)), t0);
    assert_eq!(asked_of(&drain(&mut m), 1), vec![0, 1]);
    // The honest peer comes later, while the liar is being asked.
    m.on_handshake(2, &announce(Some(20_000)), t0);
    assert!(asked_of(&drain(&mut m), 2).is_empty());
    answer(&mut m, 1, &lie, t0);
    let ev = drain(&mut m);
    assert_eq!(dropped(&ev), vec![(1, DisconnectReason::MetadataMismatch)]);
    assert!(DisconnectReason::MetadataMismatch.ban());
    assert_eq!(asked_of(&ev, 2), vec![0, 1], "the other size is tried next");
    answer(&mut m, 2, &data, t0);
    assert_eq!(received(&drain(&mut m)), Some(&data));
}

#[test]
fn data_of_another_size_drops_the_sender() {
    let data = info(20_000);
    let mut m = Metadata::new(InfoHash::of_info(&data));
    let t0 = Instant::now();
    m.on_handshake(1, &announce(Some(30_000)), t0);
    assert_eq!(asked_of(&drain(&mut m), 1), vec![0, 1]);
    m.on_handshake(2, &announce(Some(20_000)), t0);
    assert!(drain(&mut m).is_empty());
    // Peer 1 answers with the real 20 000-byte dictionary: not the size it announced.
    answer(&mut m, 1, &data, t0);
    let ev = drain(&mut m);
    assert_eq!(dropped(&ev), vec![(1, DisconnectReason::MetadataWrongSize)]);
    assert_eq!(asked_of(&ev, 2), vec![0, 1]);
    answer(&mut m, 2, &data, t0);
    assert_eq!(received(&drain(&mut m)), Some(&data));
}

#[test]
fn the_current_size_is_kept_while_it_has_a_peer_to_ask() {
    let data = info(20_000);
    let mut m = Metadata::new(InfoHash::of_info(&data));
    let t0 = Instant::now();
    m.on_handshake(1, &announce(Some(30_000)), t0);
    m.on_handshake(2, &announce(Some(30_000)), t0);
    m.on_handshake(3, &announce(Some(20_000)), t0);
    assert_eq!(asked_of(&drain(&mut m), 1), vec![0, 1]);
    let reject = MetadataMsg::Reject { piece: 0 }.encode();
    m.on_message(1, &reject, t0);
    assert_eq!(
        asked_of(&drain(&mut m), 2),
        vec![0, 1],
        "same size, next peer"
    );
    m.on_message(2, &reject, t0);
    assert_eq!(
        asked_of(&drain(&mut m), 3),
        vec![0, 1],
        "then the other size"
    );
    answer(&mut m, 3, &data, t0);
    assert_eq!(received(&drain(&mut m)), Some(&data));
}

#[test]
fn a_bad_buffer_from_several_senders_is_refetched_from_one() {
    let data = info(40_000);
    let mut m = Metadata::new(InfoHash::of_info(&data));
    let t0 = Instant::now();
    m.on_handshake(1, &announce(Some(40_000)), t0);
    m.on_handshake(2, &announce(Some(40_000)), t0);
    drain(&mut m);
    // Peer 1 (a liar of the right size) sends a bad first piece, then goes silent.
    let bad = info(40_000 + 7).slice(7..);
    m.on_message(1, &serve(Some(&bad), 0).encode(), t0);
    let t1 = t0 + REQUEST_TIMEOUT;
    m.handle_timeout(t1);
    assert_eq!(
        asked_of(&drain(&mut m), 2),
        vec![1, 2],
        "the rest from peer 2"
    );
    for piece in [1, 2] {
        m.on_message(2, &serve(Some(&data), piece).encode(), t1);
    }
    let ev = drain(&mut m);
    // Two senders: nobody is banned yet; peer 2 is asked for everything alone.
    assert!(dropped(&ev).is_empty());
    assert_eq!(asked_of(&ev, 2), vec![0, 1, 2]);
    answer(&mut m, 2, &data, t1);
    let ev = drain(&mut m);
    let Some(MetadataEvent::Received { from, .. }) = ev.last() else {
        panic!("{ev:?}");
    };
    assert_eq!(from, &vec![2]);
}

#[test]
fn garbage_and_unknown_types() {
    let mut m = Metadata::new(InfoHash([1; 20]));
    let now = Instant::now();
    m.on_handshake(1, &announce(None), now);
    // Unknown msg_type: ignored (BEP 9). Not bencode: a protocol violation.
    m.on_message(1, &Bytes::from_static(b"d8:msg_typei9e5:piecei0ee"), now);
    assert!(drain(&mut m).is_empty());
    m.on_message(1, &Bytes::from_static(b"xx"), now);
    assert_eq!(
        dropped(&drain(&mut m)),
        vec![(1, ProtocolViolation::BadMetadataMsg.into())]
    );
    // Asked for while unknown: a reject.
    m.on_handshake(2, &announce(None), now);
    m.on_message(2, &MetadataMsg::Request { piece: 0 }.encode(), now);
    let ev = drain(&mut m);
    let [MetadataEvent::Send(2, Message::Extended { payload, .. })] = ev.as_slice() else {
        panic!("{ev:?}");
    };
    assert_eq!(
        MetadataMsg::decode(payload).ok(),
        Some(MetadataMsg::Reject { piece: 0 })
    );
    // Nobody announces a size: nothing to wait for.
    assert_eq!(m.poll_timeout(), None);
}
