//! The one place the engine reads time.
//!
//! [`now`] is tokio's clock as a `std::time::Instant`, so a test with a paused tokio clock
//! (`#[tokio::test(start_paused = true)]`) drives a whole node: the swarms' deadlines, the
//! actors' own deadlines and every timeout move with `tokio::time::advance` and auto-advance.
//! The wall clock (microseconds since the Unix epoch, for live piece timestamps) is derived
//! from it through a [`WallClock`] anchored once per process ([`wall`]), so it moves with the
//! same clock (the core's `time` module explains why there is one time input).
//!
//! This module owns no state besides the anchor and must not grow policy: deciding *when*
//! something is due belongs to the core state machines and the actors. Everything else in the
//! workspace goes through it (`clippy.toml` bans the clock reads it wraps).
#![allow(clippy::disallowed_methods)] // the one module allowed to read the clocks

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use peercdn_core::time::WallClock;

/// The monotonic time input: tokio's clock (paused in paused-clock tests).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The same instant as tokio's type, for `tokio::time::timeout_at`, `sleep_until` and friends.
pub fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// The process's wall clock, anchored on first use: the system clock at that instant, then
/// moved by [`now`] (so it does not follow later steps of the system clock; a suspended
/// machine's monotonic clock stands still, and so does this one).
pub fn wall() -> WallClock {
    static ANCHOR: OnceLock<WallClock> = OnceLock::new();
    *ANCHOR.get_or_init(|| {
        let unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        WallClock::new(now(), unix_us)
    })
}

/// Microseconds since the Unix epoch now (piece timestamps, delays).
pub fn unix_us() -> u64 {
    wall().unix_us(now())
}

/// Seconds since the Unix epoch now (records, ledgers).
pub fn unix_secs() -> u64 {
    unix_us() / 1_000_000
}

/// Sleeps until `deadline`; forever when there is none (a `select!` arm that never fires).
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn paused_clock_drives_now_and_the_wall_clock() {
        let (t0, w0) = (now(), unix_us());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(now() - t0, Duration::from_secs(3600));
        assert_eq!(unix_us() - w0, 3_600_000_000);
        sleep_until(Some(now() + Duration::from_secs(5))).await;
        assert_eq!(now() - t0, Duration::from_secs(3605));
    }
}
