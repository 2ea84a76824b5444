//! Fuzz target: the receipt parser, the collector's batch parser and the `pc_receipt` message
//! parser (what any peer may send
//! on a connection, and what the collector takes over HTTP) must never panic; a receipt they
//! accept verifies and encodes back to exactly the bytes it came from, and an accepted message
//! holds no more than the bounds allow and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::ext::receipt::{ReceiptMsg, MAX_MSG_RECEIPTS};
use peercdn_core::receipt::{decode_batch, encode_batch, Receipt, MAX_BATCH, MAX_RECEIPT_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode_batch(data) {
        assert!(batch.len() <= MAX_BATCH);
        let wire: Vec<Vec<u8>> = batch.iter().map(Receipt::encode).collect();
        assert_eq!(decode_batch(&encode_batch(&wire)), Ok(batch));
    }
    if let Ok(r) = Receipt::decode(data) {
        assert_eq!(r.encode(), data);
        assert!(r.verify().is_ok());
    }
    let Ok(m) = ReceiptMsg::decode(data) else {
        return;
    };
    if let ReceiptMsg::Receipts(r) = &m {
        assert!(r.len() <= MAX_MSG_RECEIPTS);
        assert!(r.iter().all(|b| !b.is_empty() && b.len() <= MAX_RECEIPT_LEN));
    }
    assert_eq!(ReceiptMsg::decode(&m.encode()), Ok(m));
});
