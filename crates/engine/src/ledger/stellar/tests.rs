use super::*;
use proptest::prelude::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn params(source: [u8; 32]) -> ExportParams {
    ExportParams {
        source,
        first_sequence: 4_000_000_000_001,
        fee_per_op: 100,
        memo_hash: [0xab; 32],
        network: Network::Testnet,
    }
}

fn dest(i: usize) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    d[31] = 0x77;
    d
}

#[test]
fn account_id_round_trip_and_known_value() {
    // The all-zero key is the well-known "null" account.
    assert_eq!(
        account_id(&[0; 32]),
        "GAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAWHF"
    );
    let pk = key(9).verifying_key().to_bytes();
    let g = account_id(&pk);
    assert!(g.starts_with('G') && g.len() == 56);
    assert_eq!(parse_account(&format!("  {g}\n")).unwrap(), pk);
}

#[test]
fn parse_account_refuses_bad_input() {
    let g = account_id(&[7; 32]);
    // Flip one character: the checksum must catch it.
    let mut bad: Vec<char> = g.chars().collect();
    bad[10] = if bad[10] == 'A' { 'B' } else { 'A' };
    let bad: String = bad.into_iter().collect();
    assert!(matches!(
        parse_account(&bad),
        Err(StellarError::InvalidAccount { .. })
    ));
    assert!(parse_account("").is_err());
    assert!(parse_account("hello").is_err());
    assert!(parse_account(&g[..55]).is_err());
    // A secret seed is refused and not echoed back.
    let secret = "SCH27VUZZ6UAKB67BDNF6FA42YMBMQCBKXWGMFD5TZ6S5ZZCZFLRXKHS";
    let err = parse_account(secret).unwrap_err().to_string();
    assert!(!err.contains("SCH27"), "{err}");
}

/// Seed and address from the Java Stellar SDK's TransactionTest.
const SDK_SEED: &str = "SCH27VUZZ6UAKB67BDNF6FA42YMBMQCBKXWGMFD5TZ6S5ZZCZFLRXKHS";
const SDK_ADDRESS: &str = "GBPMKIRA2OQW2XZZQUCQILI5TMVZ6JNRKM423BSAISDM7ZFWQ6KWEBC4";
/// The signed (V0) envelope that SDK test expects for a CreateAccount of
/// 2000 XLM to GDW6…B5NR at sequence 2908908335136769 on testnet.
const SDK_SIGNED_ENVELOPE: &str = "AAAAAF7FIiDToW1fOYUFBC0dmyufJbFTOa2GQESGz+S2h5ViAAAAZAAKVaMAAAABAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAA7eBSYbzcL5UKo7oXO24y1ckX+XuCtkDsyNHOp1n1bxAAAAAEqBfIAAAAAAAAAAABtoeVYgAAAEDLki9Oi700N60Lo8gUmEFHbKvYG4QSqXiLIt9T0ru2O5BphVl/jR9tYtHAD+UeDYhgXNgwUxqTEu1WukvEyYcD";

#[test]
fn parse_secret_matches_sdk_vector() {
    let k = parse_secret(&format!("{SDK_SEED}\n")).unwrap();
    assert_eq!(account_id(&k.verifying_key().to_bytes()), SDK_ADDRESS);
    assert!(parse_secret(SDK_ADDRESS).is_err());
    let mut bad = SDK_SEED.to_owned();
    bad.replace_range(5..6, "A");
    let err = parse_secret(&bad).unwrap_err().to_string();
    assert!(!err.contains(&bad[..10]), "{err}");
}

#[test]
fn network_parsing_and_ids() {
    assert_eq!("public".parse::<Network>().unwrap(), Network::Public);
    assert_eq!(" Testnet ".parse::<Network>().unwrap(), Network::Testnet);
    assert!("mainnet".parse::<Network>().is_err());
    // SHA-256("Test SDF Network ; September 2015"), as published.
    assert_eq!(
        hex::encode(Network::Testnet.network_id()),
        "cee0302d59844d32bdca915c8203dd44b33fbb7edc19051ea37abedf28ecd472"
    );
    assert_eq!(Network::Public.to_string(), "public");
}

/// Re-signing the SDK's transaction with the SDK's seed must reproduce
/// the SDK's envelope byte for byte (ed25519 is deterministic): this pins
/// the network ID, the hash payload, the hint and the signature.
#[test]
fn signature_matches_java_sdk_vector() {
    let mut env = decode_xdr(SDK_SIGNED_ENVELOPE).unwrap();
    match &mut env {
        TransactionEnvelope::TxV0(e) => e.signatures = Vec::new().try_into().unwrap(),
        _ => panic!("vector is a V0 envelope"),
    }
    let unsigned = encode_envelope(&env).unwrap();
    let k = parse_secret(SDK_SEED).unwrap();
    assert_eq!(
        sign_envelope(&unsigned, &k, Network::Testnet).unwrap(),
        SDK_SIGNED_ENVELOPE
    );
    // The wrong network gives a different signature.
    assert_ne!(
        sign_envelope(&unsigned, &k, Network::Public).unwrap(),
        SDK_SIGNED_ENVELOPE
    );
    // Not a payment: decoding names the operation.
    let err = decode_envelope(SDK_SIGNED_ENVELOPE, Network::Testnet).unwrap_err();
    assert!(
        matches!(&err, StellarError::UnsupportedOperation { index: 0, reason } if reason.contains("CreateAccount")),
        "{err}"
    );
}

/// Hash vector from js-stellar-base's TransactionEnvelope test (public
/// network, V0 envelope with a non-UTF-8 text memo).
#[test]
fn hash_matches_js_sdk_vector() {
    let xdr = "AAAAAAtjwtJadppTmm0NtAU99BFxXXfzPO1N/SqR43Z8aXqXAAAAZAAIj6YAAAACAAAAAAAAAAEAAAAB0QAAAAAAAAEAAAAAAAAAAQAAAADLa6390PDAqg3qDLpshQxS+uVw3ytSgKRirQcInPWt1QAAAAAAAAAAA1Z+AAAAAAAAAAABfGl6lwAAAEBC655+8Izq54MIZrXTVF/E1ycHgQWpVcBD+LFkuOjjJd995u/7wM8sFqQqambL0/ME2FTOtxMO65B9i3eAIu4P";
    assert_eq!(
        hex::encode(envelope_hash(xdr, Network::Public).unwrap()),
        "a84d534b3742ad89413bdbf259e02fa4c5d039123769e9bcc63616f723a2bcd5"
    );
    // It is a native payment, signed by its source on the public network.
    let d = decode_envelope(xdr, Network::Public).unwrap();
    assert_eq!(d.payments.len(), 1);
    assert_eq!(d.payments[0].stroops, 56_000_000);
    assert_eq!(d.memo_hash, None);
    assert_eq!((d.signatures, d.valid_signatures), (1, 1));
    assert_eq!(
        decode_envelope(xdr, Network::Testnet)
            .unwrap()
            .valid_signatures,
        0
    );
}

/// Independent hash computation: build the signature payload bytes by
/// hand from the XDR schema and compare.
#[test]
fn hash_matches_hand_built_payload() {
    let src = key(1).verifying_key().to_bytes();
    let env = build_envelopes(
        &params(src),
        &[Payment {
            destination: dest(0),
            stroops: 12_345,
        }],
    )
    .unwrap()
    .remove(0);
    let mut b = Vec::new();
    b.extend_from_slice(&Network::Testnet.network_id());
    b.extend_from_slice(&2u32.to_be_bytes()); // ENVELOPE_TYPE_TX
    b.extend_from_slice(&0u32.to_be_bytes()); // KEY_TYPE_ED25519
    b.extend_from_slice(&src);
    b.extend_from_slice(&100u32.to_be_bytes()); // fee
    b.extend_from_slice(&4_000_000_000_001i64.to_be_bytes()); // seq
    b.extend_from_slice(&0u32.to_be_bytes()); // PRECOND_NONE
    b.extend_from_slice(&3u32.to_be_bytes()); // MEMO_HASH
    b.extend_from_slice(&[0xab; 32]);
    b.extend_from_slice(&1u32.to_be_bytes()); // 1 operation
    b.extend_from_slice(&0u32.to_be_bytes()); // no op source
    b.extend_from_slice(&1u32.to_be_bytes()); // PAYMENT
    b.extend_from_slice(&0u32.to_be_bytes()); // KEY_TYPE_ED25519
    b.extend_from_slice(&dest(0));
    b.extend_from_slice(&0u32.to_be_bytes()); // ASSET_TYPE_NATIVE
    b.extend_from_slice(&12_345i64.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes()); // ext v0
    let expected: [u8; 32] = Sha256::digest(&b).into();
    assert_eq!(envelope_hash(&env, Network::Testnet).unwrap(), expected);
    assert_eq!(
        decode_envelope(&env, Network::Testnet).unwrap().hash,
        expected
    );
    // The envelope itself is ENVELOPE_TYPE_TX followed by the same
    // transaction bytes and an empty signature list.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&env)
        .unwrap();
    assert_eq!(&raw[..4], &2u32.to_be_bytes());
    assert_eq!(&raw[4..raw.len() - 4], &b[36..]);
    assert_eq!(&raw[raw.len() - 4..], &0u32.to_be_bytes());
}

#[test]
fn chunks_of_250_payments() {
    let src = key(1).verifying_key().to_bytes();
    let p = params(src);
    let pays: Vec<Payment> = (0..250)
        .map(|i| Payment {
            destination: dest(i),
            stroops: (i as i64 + 1) * STROOPS_PER_XLM,
        })
        .collect();
    let envs = build_envelopes(&p, &pays).unwrap();
    assert_eq!(envs.len(), 3);
    let mut all = Vec::new();
    for (i, e) in envs.iter().enumerate() {
        let d = decode_envelope(e, Network::Testnet).unwrap();
        let n = [100, 100, 50][i];
        assert_eq!(d.payments.len(), n);
        assert_eq!(d.fee, 100 * n as u32);
        assert_eq!(d.sequence, p.first_sequence + i as i64);
        assert_eq!(d.source, src);
        assert_eq!(d.memo_hash, Some([0xab; 32]));
        assert_eq!((d.signatures, d.valid_signatures), (0, 0));
        all.extend(d.payments);
    }
    assert_eq!(all, pays);
}

#[test]
fn sign_then_decode() {
    let k = key(1);
    let src = k.verifying_key().to_bytes();
    let pays = [Payment {
        destination: dest(3),
        stroops: 5,
    }];
    let env = build_envelopes(&params(src), &pays).unwrap().remove(0);
    let signed = sign_envelope(&env, &k, Network::Testnet).unwrap();
    let d = decode_envelope(&signed, Network::Testnet).unwrap();
    assert_eq!((d.signatures, d.valid_signatures), (1, 1));
    assert_eq!(d.payments, pays);
    // Signing does not change the hash.
    assert_eq!(d.hash, envelope_hash(&env, Network::Testnet).unwrap());
    // Valid only on the network it was signed for.
    let other_net = decode_envelope(&signed, Network::Public).unwrap();
    assert_eq!((other_net.signatures, other_net.valid_signatures), (1, 0));

    // Signed by a different key: present but not valid for the source.
    let by_other = sign_envelope(&env, &key(2), Network::Testnet).unwrap();
    let d = decode_envelope(&by_other, Network::Testnet).unwrap();
    assert_eq!((d.signatures, d.valid_signatures), (1, 0));

    // A forged signature carrying the right hint is not counted either.
    let mut forged = decode_xdr(&signed).unwrap();
    if let TransactionEnvelope::Tx(e) = &mut forged {
        let mut sigs = e.signatures.to_vec();
        let mut bytes = sigs[0].signature.0.to_vec();
        bytes[5] ^= 1;
        sigs[0].signature = Signature(bytes.try_into().unwrap());
        e.signatures = sigs.try_into().unwrap();
    }
    let d = decode_envelope(&encode_envelope(&forged).unwrap(), Network::Testnet).unwrap();
    assert_eq!((d.signatures, d.valid_signatures), (1, 0));

    // Both signatures count once each key signed.
    let twice = sign_envelope(&by_other, &k, Network::Testnet).unwrap();
    let d = decode_envelope(&twice, Network::Testnet).unwrap();
    assert_eq!((d.signatures, d.valid_signatures), (2, 1));
}

#[test]
fn signature_limit() {
    let k = key(1);
    let src = k.verifying_key().to_bytes();
    let mut env = build_envelopes(
        &params(src),
        &[Payment {
            destination: dest(0),
            stroops: 1,
        }],
    )
    .unwrap()
    .remove(0);
    for _ in 0..MAX_SIGNATURES {
        env = sign_envelope(&env, &k, Network::Testnet).unwrap();
    }
    assert!(matches!(
        sign_envelope(&env, &k, Network::Testnet),
        Err(StellarError::TooManySignatures(20))
    ));
    let d = decode_envelope(&env, Network::Testnet).unwrap();
    assert_eq!((d.signatures, d.valid_signatures), (20, 20));
}

#[test]
fn build_refuses_bad_input() {
    let src = key(1).verifying_key().to_bytes();
    let p = params(src);
    let ok = Payment {
        destination: dest(0),
        stroops: 1,
    };
    assert!(build_envelopes(&p, &[]).unwrap().is_empty());
    assert!(matches!(
        build_envelopes(&p, &[ok, Payment { stroops: 0, ..ok }]),
        Err(StellarError::NonPositiveAmount {
            index: 1,
            stroops: 0
        })
    ));
    assert!(matches!(
        build_envelopes(&p, &[Payment { stroops: -5, ..ok }]),
        Err(StellarError::NonPositiveAmount { index: 0, .. })
    ));
    assert!(matches!(
        build_envelopes(
            &p,
            &[
                ok,
                ok,
                Payment {
                    destination: src,
                    stroops: 1
                }
            ]
        ),
        Err(StellarError::PaymentToSelf { index: 2 })
    ));
    let high_fee = ExportParams {
        fee_per_op: u32::MAX / 50,
        ..p.clone()
    };
    assert!(matches!(
        build_envelopes(&high_fee, &[ok; 51]),
        Err(StellarError::FeeOverflow { ops: 51, .. })
    ));
    assert_eq!(build_envelopes(&high_fee, &[ok; 50]).unwrap().len(), 1);
    let low_fee = ExportParams {
        fee_per_op: 99,
        ..p.clone()
    };
    assert!(matches!(
        build_envelopes(&low_fee, &[ok]),
        Err(StellarError::FeeTooLow { .. })
    ));
    let zero_seq = ExportParams {
        first_sequence: 0,
        ..p.clone()
    };
    assert!(matches!(
        build_envelopes(&zero_seq, &[ok]),
        Err(StellarError::InvalidSequence(0))
    ));
    let max_seq = ExportParams {
        first_sequence: i64::MAX,
        ..p.clone()
    };
    assert_eq!(build_envelopes(&max_seq, &[ok; 100]).unwrap().len(), 1);
    assert!(matches!(
        build_envelopes(&max_seq, &[ok; 101]),
        Err(StellarError::SequenceOverflow { index: 1, .. })
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let src = key(1).verifying_key().to_bytes();
    let env = build_envelopes(
        &params(src),
        &[Payment {
            destination: dest(0),
            stroops: 1,
        }],
    )
    .unwrap()
    .remove(0);
    let k = key(1);
    assert!(matches!(
        decode_envelope("not base64 at all!", Network::Testnet),
        Err(StellarError::Base64(_))
    ));
    assert!(matches!(
        decode_envelope("", Network::Testnet),
        Err(StellarError::Xdr(_))
    ));
    // Every truncation of the raw XDR is refused.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&env)
        .unwrap();
    for cut in 0..raw.len() {
        let b = base64::engine::general_purpose::STANDARD.encode(&raw[..cut]);
        assert!(
            matches!(
                decode_envelope(&b, Network::Testnet),
                Err(StellarError::Xdr(_))
            ),
            "cut at {cut}"
        );
        assert!(sign_envelope(&b, &k, Network::Testnet).is_err());
    }
    // Trailing bytes are refused too.
    let mut long = raw.clone();
    long.extend_from_slice(&[0; 4]);
    let b = base64::engine::general_purpose::STANDARD.encode(&long);
    assert!(decode_envelope(&b, Network::Testnet).is_err());
    // Oversized text is refused before decoding.
    let huge = "A".repeat(MAX_ENVELOPE_BASE64_LEN + 4);
    assert!(matches!(
        decode_envelope(&huge, Network::Testnet),
        Err(StellarError::EnvelopeTooLarge { .. })
    ));
    // A huge declared operation count is refused, not allocated.
    let mut lying = raw[..raw.len() - 4].to_vec();
    let ops_at = 4 + 4 + 32 + 4 + 8 + 4 + 4 + 32;
    lying[ops_at..ops_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let b = base64::engine::general_purpose::STANDARD.encode(&lying);
    assert!(matches!(
        decode_envelope(&b, Network::Testnet),
        Err(StellarError::Xdr(_))
    ));
    // Line-wrapped base64 is fine.
    let wrapped: String = env
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    assert!(decode_envelope(&wrapped, Network::Testnet).is_ok());
}

#[test]
fn decode_refuses_non_payment_shapes() {
    let src = key(1).verifying_key().to_bytes();
    let env = build_envelopes(
        &params(src),
        &[
            Payment {
                destination: dest(0),
                stroops: 1,
            },
            Payment {
                destination: dest(1),
                stroops: 2,
            },
        ],
    )
    .unwrap()
    .remove(0);
    let base = decode_xdr(&env).unwrap();
    let edit = |f: &dyn Fn(&mut Transaction)| {
        let mut e = base.clone();
        if let TransactionEnvelope::Tx(v1) = &mut e {
            f(&mut v1.tx);
        }
        decode_envelope(&encode_envelope(&e).unwrap(), Network::Testnet)
    };
    let err = edit(&|tx| {
        let mut ops = tx.operations.to_vec();
        if let OperationBody::Payment(p) = &mut ops[1].body {
            p.asset = Asset::CreditAlphanum4(stellar_xdr::AlphaNum4 {
                asset_code: stellar_xdr::AssetCode4(*b"USDC"),
                issuer: stellar_xdr::AccountId(stellar_xdr::PublicKey::PublicKeyTypeEd25519(
                    Uint256([3; 32]),
                )),
            });
        }
        tx.operations = ops.try_into().unwrap();
    })
    .unwrap_err();
    assert!(matches!(
        err,
        StellarError::UnsupportedOperation { index: 1, .. }
    ));
    let err = edit(&|tx| {
        let mut ops = tx.operations.to_vec();
        ops[1].source_account = Some(MuxedAccount::Ed25519(Uint256([3; 32])));
        tx.operations = ops.try_into().unwrap();
    })
    .unwrap_err();
    assert!(matches!(
        err,
        StellarError::UnsupportedOperation { index: 1, .. }
    ));
    let err = edit(&|tx| {
        let mut ops = tx.operations.to_vec();
        if let OperationBody::Payment(p) = &mut ops[0].body {
            p.destination = MuxedAccount::MuxedEd25519(stellar_xdr::MuxedAccountMed25519 {
                id: 7,
                ed25519: Uint256([3; 32]),
            });
        }
        tx.operations = ops.try_into().unwrap();
    })
    .unwrap_err();
    assert!(matches!(
        err,
        StellarError::UnsupportedOperation { index: 0, .. }
    ));
    let err = edit(&|tx| {
        tx.source_account = MuxedAccount::MuxedEd25519(stellar_xdr::MuxedAccountMed25519 {
            id: 7,
            ed25519: Uint256(src),
        });
    })
    .unwrap_err();
    assert!(matches!(err, StellarError::MuxedSource));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn build_decode_round_trip(
        amounts in proptest::collection::vec((any::<u8>(), 1i64..=i64::MAX), 0..230),
        first in 1i64..=i64::MAX - 3,
        fee in MIN_BASE_FEE..=1_000_000u32,
        memo in any::<[u8; 32]>(),
    ) {
        let src = [0x42; 32];
        let pays: Vec<Payment> = amounts
            .iter()
            .map(|&(d, stroops)| Payment { destination: [d ^ 0x01; 32], stroops })
            .filter(|p| p.destination != src)
            .collect();
        let p = ExportParams {
            source: src,
            first_sequence: first,
            fee_per_op: fee,
            memo_hash: memo,
            network: Network::Public,
        };
        let envs = build_envelopes(&p, &pays).unwrap();
        prop_assert_eq!(envs.len(), pays.len().div_ceil(MAX_OPS));
        let mut back = Vec::new();
        for (i, e) in envs.iter().enumerate() {
            let d = decode_envelope(e, Network::Public).unwrap();
            prop_assert_eq!(d.sequence, first + i as i64);
            prop_assert_eq!(d.fee, fee * d.payments.len() as u32);
            prop_assert_eq!(d.memo_hash, Some(memo));
            back.extend(d.payments);
        }
        prop_assert_eq!(back, pays);
    }

    #[test]
    fn decode_never_panics(s in ".{0,400}") {
        let _ = decode_envelope(&s, Network::Testnet);
        let _ = sign_envelope(&s, &key(1), Network::Testnet);
        let _ = parse_account(&s);
        let _ = parse_secret(&s);
    }

    #[test]
    fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let b = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let _ = decode_envelope(&b, Network::Testnet);
    }
}
