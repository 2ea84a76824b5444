//! The `peercdn` binary.
fn main() {}
