//! Helpers shared by the scenario tests: a thin re-export of `peercdn_testkit` (a peer that
//! misbehaves in BEP 9 is `peercdn_testkit::meta`).
// Each test binary uses a part of this module.
#![allow(dead_code, unused_imports)]

pub use peercdn_testkit::meta::{alter, MetaMode};
