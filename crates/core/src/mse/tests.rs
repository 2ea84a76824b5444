use super::*;

const IH: InfoHash = InfoHash([7u8; 20]);
const OTHER: InfoHash = InfoHash([9u8; 20]);

fn secret(seed: u8) -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    for (i, b) in s.iter_mut().enumerate() {
        *b = seed
            .wrapping_mul(31)
            .wrapping_add((i as u8).wrapping_mul(17))
            | 1;
    }
    s
}

fn pad(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ 0x5a)
        .collect()
}

/// Runs both sides to the end, handing bytes over in pieces of `chunk` bytes; the responder's
/// step 4 carries `after_b` (its payload) and the initiator's IA is `ia`.
fn run(
    provide: u32,
    allowed: u32,
    prefer: Method,
    pads: (usize, usize),
    chunk: usize,
    ia: &[u8],
    after_b: &[u8],
) -> Result<(Established, Established), MseError> {
    let (mut a, step1) = Initiator::new(IH, &secret(1), &pad(pads.0, 3), provide, ia);
    let mut b = Responder::new(
        vec![OTHER, IH],
        &secret(2),
        &pad(pads.1, 5),
        allowed,
        prefer,
    );
    let (mut to_b, mut to_a) = (step1, Vec::new());
    let (mut done_a, mut done_b) = (None, None);
    for _ in 0..10_000 {
        if done_b.is_none() && !to_b.is_empty() {
            let n = chunk.min(to_b.len());
            let input: Vec<u8> = to_b.drain(..n).collect();
            if let Some(mut e) = b.feed(&input, &mut to_a)? {
                // The responder's payload follows step 4, encrypted as selected.
                let mut payload = after_b.to_vec();
                if let Some((enc, _)) = e.keys.as_mut() {
                    enc.apply(&mut payload);
                }
                to_a.extend_from_slice(&payload);
                done_b = Some(e);
            }
        } else if done_a.is_none() && !to_a.is_empty() {
            let n = chunk.min(to_a.len());
            let input: Vec<u8> = to_a.drain(..n).collect();
            let mut out = Vec::new();
            done_a = a.feed(&input, &mut out)?;
            to_b.extend_from_slice(&out);
        } else {
            break;
        }
    }
    // Bytes of A's handshake tail that arrived in the last piece stay in `to_a`: hand them on.
    let (mut ea, eb) = (
        done_a.expect("initiator done"),
        done_b.expect("responder done"),
    );
    if !to_a.is_empty() {
        if let Some((_, dec)) = ea.keys.as_mut() {
            dec.apply(&mut to_a);
        }
        ea.received.extend_from_slice(&to_a);
    }
    Ok((ea, eb))
}

const BOTH: u32 = CRYPTO_PLAINTEXT | CRYPTO_RC4;

/// libtorrent's default: both offered, the responder prefers plaintext; only the handshake
/// is obfuscated and the payload after it is plain, both ways.
#[test]
fn plaintext_payload_after_an_obfuscated_handshake() {
    let ia = b"\x13BitTorrent protocol-initiator";
    let (a, b) = run(
        BOTH,
        BOTH,
        Method::Plaintext,
        (40, 100),
        4096,
        ia,
        b"hello A",
    )
    .unwrap();
    assert_eq!((a.method, b.method), (Method::Plaintext, Method::Plaintext));
    assert!(a.keys.is_none() && b.keys.is_none());
    assert_eq!(b.info_hash, IH);
    assert_eq!(b.received, ia);
    assert_eq!(a.received, b"hello A");
}

/// RC4 chosen: the payload is encrypted both ways and each side's sending stream is the
/// other's receiving one.
#[test]
fn rc4_payload_both_ways() {
    let ia = b"initial payload";
    let (mut a, mut b) = run(BOTH, BOTH, Method::Rc4, (0, 512), 4096, ia, b"from B").unwrap();
    assert_eq!((a.method, b.method), (Method::Rc4, Method::Rc4));
    assert_eq!(b.received, ia);
    assert_eq!(a.received, b"from B");
    let (a_enc, a_dec) = a.keys.as_mut().unwrap();
    let (b_enc, b_dec) = b.keys.as_mut().unwrap();
    let mut m = b"A to B, later".to_vec();
    a_enc.apply(&mut m);
    assert_ne!(&m[..], b"A to B, later");
    b_dec.apply(&mut m);
    assert_eq!(&m[..], b"A to B, later");
    let mut m = b"B to A, later".to_vec();
    b_enc.apply(&mut m);
    a_dec.apply(&mut m);
    assert_eq!(&m[..], b"B to A, later");
}

/// A responder that prefers plaintext still selects RC4 when that is all the initiator offers
/// ("require" on the dialling side).
#[test]
fn an_rc4_only_offer_gets_rc4() {
    let (a, b) = run(CRYPTO_RC4, BOTH, Method::Plaintext, (7, 7), 4096, b"x", b"").unwrap();
    assert_eq!((a.method, b.method), (Method::Rc4, Method::Rc4));
}

/// The same handshake fed one byte at a time, and with the longest pads, ends the same way:
/// nothing depends on how the socket splits the stream.
#[test]
fn byte_at_a_time_and_longest_pads() {
    for (chunk, pads) in [
        (1, (0, 0)),
        (1, (512, 512)),
        (3, (511, 1)),
        (97, (200, 300)),
    ] {
        for prefer in [Method::Plaintext, Method::Rc4] {
            let (a, b) = run(BOTH, BOTH, prefer, pads, chunk, b"IA bytes", b"B's").unwrap();
            assert_eq!(a.method, prefer);
            assert_eq!(b.received, b"IA bytes", "chunk {chunk} pads {pads:?}");
            assert_eq!(a.received, b"B's", "chunk {chunk} pads {pads:?}");
        }
    }
}

#[test]
fn an_unknown_torrent_is_refused() {
    let (_, step1) = Initiator::new(InfoHash([1; 20]), &secret(1), &[], BOTH, b"");
    let (mut a, _) = Initiator::new(InfoHash([1; 20]), &secret(1), &[], BOTH, b"");
    let mut b = Responder::new(vec![IH], &secret(2), &[], BOTH, Method::Plaintext);
    let mut to_a = Vec::new();
    assert!(b.feed(&step1, &mut to_a).unwrap().is_none());
    let mut to_b = Vec::new();
    a.feed(&to_a, &mut to_b).unwrap();
    assert_eq!(
        b.feed(&to_b, &mut Vec::new()).unwrap_err(),
        MseError::UnknownTorrent
    );
}

#[test]
fn no_method_in_common_is_refused() {
    let err = run(
        CRYPTO_PLAINTEXT,
        CRYPTO_RC4,
        Method::Rc4,
        (0, 0),
        4096,
        b"",
        b"",
    );
    assert_eq!(err.unwrap_err(), MseError::NoCommonMethod(CRYPTO_PLAINTEXT));
}

/// Random bytes that never contain the sync value: the responder gives up once the longest
/// pad has passed, having buffered no more than that.
#[test]
fn garbage_does_not_synchronise() {
    let mut b = Responder::new(vec![IH], &secret(2), &[], BOTH, Method::Plaintext);
    let mut out = Vec::new();
    let mut fed = 0;
    let err = loop {
        match b.feed(&pad(64, 13), &mut out) {
            Ok(None) => fed += 64,
            Ok(Some(_)) => panic!("garbage established a handshake"),
            Err(e) => break e,
        }
        assert!(fed <= KEY_LEN + MAX_PAD + 20 + 64, "buffered {fed} bytes");
    };
    assert_eq!(err, MseError::NoSync);
    assert_eq!(out.len(), KEY_LEN, "only Yb was sent");
}

/// Public keys 0, 1 and p-1 make the shared secret guessable: refused.
#[test]
fn degenerate_public_keys_are_refused() {
    let mut p_minus_1 = PRIME;
    p_minus_1[KEY_LEN - 1] -= 1;
    let mut one = [0u8; KEY_LEN];
    one[KEY_LEN - 1] = 1;
    for y in [[0u8; KEY_LEN], one, p_minus_1, PRIME] {
        let mut b = Responder::new(vec![IH], &secret(2), &[], BOTH, Method::Plaintext);
        assert_eq!(b.feed(&y, &mut Vec::new()).unwrap_err(), MseError::BadKey);
    }
}

/// A responder that selects a method the initiator did not offer is refused.
#[test]
fn a_select_not_offered_is_refused() {
    // Offer RC4 only; a responder that allows plaintext only cannot answer: refused on its side.
    let err = run(
        CRYPTO_RC4,
        CRYPTO_PLAINTEXT,
        Method::Plaintext,
        (0, 0),
        4096,
        b"",
        b"",
    );
    assert_eq!(err.unwrap_err(), MseError::NoCommonMethod(CRYPTO_RC4));
}

/// The group: 2^1 is 2, and the public key is left-padded to 96 bytes.
#[test]
fn public_key_is_96_bytes_big_endian() {
    let mut one = [0u8; SECRET_LEN];
    one[SECRET_LEN - 1] = 1;
    let dh = Dh::new(&one);
    let mut two = [0u8; KEY_LEN];
    two[KEY_LEN - 1] = 2;
    assert_eq!(dh.public, two);
    assert_eq!(prime().bits(), 768);
}
