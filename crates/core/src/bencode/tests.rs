//! Unit and property tests of the bencode decoder and encoder.

use super::*;
use proptest::prelude::*;

fn err(input: &[u8]) -> BencodeError {
    match decode(input) {
        Ok(v) => panic!("{:?} decoded to {v:?}", String::from_utf8_lossy(input)),
        Err(e) => e,
    }
}

#[test]
fn scalars() {
    assert_eq!(decode(b"i0e"), Ok(Value::Int(0)));
    assert_eq!(decode(b"i-42e"), Ok(Value::Int(-42)));
    assert_eq!(decode(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
    assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
    assert_eq!(decode(b"0:"), Ok(Value::Bytes(b"")));
    assert_eq!(decode(b"4:spam"), Ok(Value::Bytes(b"spam")));
}

#[test]
fn bad_ints() {
    for input in [
        &b"i03e"[..],
        b"i-0e",
        b"i00e",
        b"ie",
        b"i-e",
        b"i1x2e",
        b"i+1e",
        b"i 1e",
        b"i-01e",
    ] {
        assert_eq!(err(input), BencodeError::BadInt { offset: 0 }, "{input:?}");
    }
    assert_eq!(
        err(b"i9223372036854775808e"),
        BencodeError::IntOverflow { offset: 0 }
    );
    assert_eq!(
        err(b"i-9223372036854775809e"),
        BencodeError::IntOverflow { offset: 0 }
    );
    assert_eq!(
        err(b"i123456789012345678901234567890e"),
        BencodeError::BadInt { offset: 0 }
    );
    assert!(matches!(err(b"i12"), BencodeError::UnexpectedEof { .. }));
}

#[test]
fn bad_strings() {
    assert_eq!(
        err(b"5:spam"),
        BencodeError::LengthOutOfBounds { offset: 0, len: 5 }
    );
    // A huge claimed length is refused before anything is allocated.
    assert!(matches!(
        err(b"99999999999999999:x"),
        BencodeError::LengthOutOfBounds { .. }
    ));
    assert!(matches!(
        err(b"999999999999999999999999:x"),
        BencodeError::BadLength { .. }
    ));
    assert_eq!(err(b"04:spam"), BencodeError::BadLength { offset: 0 });
    assert!(matches!(err(b"12"), BencodeError::UnexpectedEof { .. }));
    assert_eq!(err(b"1x:a"), BencodeError::BadLength { offset: 0 });
}

#[test]
fn containers() {
    let v = decode(b"l4:spami7ee").unwrap();
    assert_eq!(v, Value::List(vec![Value::Bytes(b"spam"), Value::Int(7)]));
    let v = decode(b"d3:cow3:moo4:spam4:eggse").unwrap();
    let d = v.as_dict().unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d.get_str(b"cow"), Some("moo"));
    assert_eq!(d.get_bytes(b"spam"), Some(&b"eggs"[..]));
    assert_eq!(d.get(b"nope"), None);
    assert_eq!(d.raw(), b"d3:cow3:moo4:spam4:eggse");
    assert!(decode(b"de").unwrap().as_dict().unwrap().is_empty());
    assert_eq!(decode(b"le"), Ok(Value::List(vec![])));
}

#[test]
fn unsorted_keys_kept_in_order_and_found() {
    let input = b"d1:bi1e1:ai2e1:ci3ee";
    let v = decode(input).unwrap();
    let d = v.as_dict().unwrap();
    let keys: Vec<&[u8]> = d.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![&b"b"[..], b"a", b"c"]);
    assert_eq!(d.get_int(b"a"), Some(2));
    assert_eq!(d.get_int(b"b"), Some(1));
    assert_eq!(d.get_int(b"c"), Some(3));
    assert_eq!(d.raw(), input);
}

#[test]
fn duplicate_keys_refused() {
    assert_eq!(
        err(b"d1:ai1e1:ai2ee"),
        BencodeError::DuplicateKey { offset: 7 }
    );
    // Not adjacent: found when the dictionary closes.
    assert_eq!(
        err(b"d1:bi1e1:ai2e1:bi3ee"),
        BencodeError::DuplicateKey { offset: 0 }
    );
}

#[test]
fn dict_errors() {
    assert_eq!(err(b"di1ei2ee"), BencodeError::NonStringKey { offset: 1 });
    assert_eq!(err(b"dle1:ae"), BencodeError::NonStringKey { offset: 1 });
    assert_eq!(err(b"d1:ae"), BencodeError::MissingValue { offset: 4 });
    assert!(matches!(err(b"d1:a"), BencodeError::UnexpectedEof { .. }));
}

#[test]
fn top_level_errors() {
    assert_eq!(err(b""), BencodeError::UnexpectedEof { offset: 0 });
    assert_eq!(
        err(b"e"),
        BencodeError::UnexpectedByte {
            offset: 0,
            byte: b'e'
        }
    );
    assert_eq!(
        err(b"x"),
        BencodeError::UnexpectedByte {
            offset: 0,
            byte: b'x'
        }
    );
    assert_eq!(err(b"i1ei2e"), BencodeError::TrailingBytes { offset: 3 });
    assert!(matches!(
        err(b"l"),
        BencodeError::UnexpectedEof { offset: 1 }
    ));
}

#[test]
fn prefix_leaves_the_rest() {
    let buf = b"d8:msg_typei1e5:piecei0eeRAWDATA";
    let (v, used) = decode_prefix(buf).unwrap();
    assert_eq!(used, buf.len() - 7);
    assert_eq!(buf.get(used..), Some(&b"RAWDATA"[..]));
    assert_eq!(v.as_dict().unwrap().get_int(b"msg_type"), Some(1));
}

#[test]
fn depth_bomb_lists() {
    // A megabyte of 'l' must fail cleanly, not overflow the stack.
    let bomb = vec![b'l'; 1 << 20];
    assert_eq!(
        err(&bomb),
        BencodeError::TooDeep {
            offset: 64,
            max: 64
        }
    );
}

#[test]
fn depth_bomb_dicts() {
    let mut bomb = Vec::new();
    for _ in 0..100_000 {
        bomb.extend_from_slice(b"d1:a");
    }
    assert!(matches!(err(&bomb), BencodeError::TooDeep { max: 64, .. }));
}

#[test]
fn depth_limit_is_exact() {
    let ok = [vec![b'l'; 64], vec![b'e'; 64]].concat();
    assert!(decode(&ok).is_ok());
    let deep = [vec![b'l'; 65], vec![b'e'; 65]].concat();
    assert!(matches!(err(&deep), BencodeError::TooDeep { .. }));
    let limits = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(decode_with(b"llee", limits).is_ok());
    assert!(decode_with(b"llleee", limits).is_err());
}

#[test]
fn deep_but_allowed_nesting_is_not_recursive() {
    // The decoder itself is iterative; 5,000 levels decode without stack growth.
    let depth = 5_000;
    let input = [vec![b'l'; depth], vec![b'e'; depth]].concat();
    let limits = Limits {
        max_depth: depth,
        ..Limits::default()
    };
    let v = decode_with(&input, limits).unwrap();
    // Unwind by hand so the test's drop is not recursive either.
    let mut cur = v;
    let mut n = 0;
    while let Value::List(mut l) = cur {
        n += 1;
        cur = match l.pop() {
            Some(inner) => inner,
            None => break,
        };
    }
    assert_eq!(n, depth);
}

#[test]
fn item_limit() {
    let limits = Limits {
        max_items: 3,
        ..Limits::default()
    };
    assert!(decode_with(b"li1ei2ee", limits).is_ok());
    assert_eq!(
        decode_with(b"li1ei2ei3ee", limits),
        Err(BencodeError::TooManyItems { offset: 7, max: 3 })
    );
}

#[test]
fn encode_is_canonical() {
    let v = OwnedValue::dict()
        .with("b", OwnedValue::int(-3))
        .with("a", OwnedValue::list([OwnedValue::str("x"), 0.into()]))
        .with_opt("none", None::<i64>)
        .with("c", OwnedValue::dict())
        .build();
    assert_eq!(v.encode(), b"d1:al1:xi0ee1:bi-3e1:cdee");
    assert_eq!(
        OwnedValue::int(i64::MIN).encode(),
        b"i-9223372036854775808e"
    );
    assert_eq!(OwnedValue::bytes(vec![0u8; 10]).encode().len(), 13);
}

#[test]
fn to_owned_sorts_unsorted_input() {
    let v = decode(b"d1:bi1e1:ai2ee").unwrap();
    assert_eq!(v.to_owned().encode(), b"d1:ai2e1:bi1ee");
}

#[test]
fn error_offsets() {
    assert_eq!(err(b"l4:spamx").offset(), 7);
    assert_eq!(err(b"li1ei03ee").offset(), 4);
}

fn arb_owned() -> impl Strategy<Value = OwnedValue> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(OwnedValue::Int),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(OwnedValue::Bytes),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(OwnedValue::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..6),
                inner,
                0..6
            )
            .prop_map(OwnedValue::Dict),
        ]
    })
}

/// Checks that every dictionary's raw span re-decodes to the same dictionary.
fn check_raw(v: &Value<'_>) {
    match v {
        Value::Dict(d) => {
            let again = decode(d.raw()).unwrap();
            assert_eq!(again.as_dict(), Some(d));
            d.iter().for_each(|(_, v)| check_raw(v));
        }
        Value::List(l) => l.iter().for_each(check_raw),
        _ => {}
    }
}

proptest! {
    #[test]
    fn round_trip(v in arb_owned()) {
        let bytes = v.encode();
        let decoded = decode(&bytes).unwrap();
        prop_assert_eq!(decoded.to_owned(), v);
        check_raw(&decoded);
        let (_, used) = decode_prefix(&[bytes.as_slice(), b"tail"].concat()).unwrap();
        prop_assert_eq!(used, bytes.len());
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
        let _ = decode_prefix(&bytes);
    }

    #[test]
    fn bencode_shaped_garbage_never_panics(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'i'), Just(b'l'), Just(b'd'), Just(b'e'), Just(b':'),
                        Just(b'-'), Just(b'0'), Just(b'1'), Just(b'9'), any::<u8>()],
            0..256)
    ) {
        if let Ok(v) = decode(&bytes) {
            // Whatever decodes re-encodes to something that decodes to the same value.
            let owned = v.to_owned();
            prop_assert_eq!(decode(&owned.encode()).unwrap().to_owned(), owned);
            check_raw(&v);
        }
    }
}
