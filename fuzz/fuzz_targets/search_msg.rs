//! Fuzz target: the `pc_search` message parser (what any peer may send on a connection) must
//! never panic; a message it accepts holds no more than the bounds allow and encodes to bytes
//! that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::catalog::MAX_RECORD_LEN;
use peercdn_core::ext::search::{SearchMsg, MAX_MSG_RECORDS, MAX_QUERY_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = SearchMsg::decode(data) else {
        return;
    };
    match &m {
        SearchMsg::Push(r) | SearchMsg::Results { records: r, .. } => {
            assert!(r.len() <= MAX_MSG_RECORDS);
            assert!(r.iter().all(|b| !b.is_empty() && b.len() <= MAX_RECORD_LEN));
        }
        SearchMsg::Query { text, .. } => assert!(text.len() <= MAX_QUERY_LEN),
    }
    assert_eq!(SearchMsg::decode(&m.encode()), Ok(m));
});
