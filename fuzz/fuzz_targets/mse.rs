//! Fuzz target: the MSE/PE handshake (`peercdn_core::mse`), fed as the dialled side and as the
//! dialling side with whatever a peer may send, split at arbitrary points: it must never panic
//! and never write more than its own messages (Yb and its pad and step 4; step 3).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_core::mse::{Initiator, Method, Responder, CRYPTO_PLAINTEXT, CRYPTO_RC4};
use peercdn_core::InfoHash;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(head & 0x7f).max(1);
    let both = CRYPTO_PLAINTEXT | CRYPTO_RC4;
    let mut out = Vec::new();
    if head & 0x80 == 0 {
        let mut b = Responder::new(
            vec![InfoHash([7; 20])],
            &[1; 20],
            &[2; 30],
            both,
            Method::Plaintext,
        );
        for piece in rest.chunks(chunk) {
            match b.feed(piece, &mut out) {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => break,
            }
        }
        assert!(out.len() <= 96 + 30 + 14, "wrote {} bytes", out.len());
    } else {
        let (mut a, _) = Initiator::new(InfoHash([7; 20]), &[1; 20], &[], both, &[0; 68]);
        for piece in rest.chunks(chunk) {
            match a.feed(piece, &mut out) {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => break,
            }
        }
        assert!(out.len() <= 40 + 16 + 68, "wrote {} bytes", out.len());
    }
});
