//! Byte-rate limits shared by many tokio tasks: a token bucket that allows debt.
//!
//! This module owns the pacing of bytes (upload and download, global and per swarm). It does not
//! know what the bytes are; callers `acquire(n)` before sending or after receiving `n` bytes.
//!
//! # Design
//!
//! - **Reserve, then sleep.** `acquire(n)` takes `n` tokens at once, even if that drives the
//!   bucket negative (debt), and then sleeps for as long as it takes the refill to pay the debt
//!   back. So a block bigger than the burst never deadlocks, callers are served in the order they
//!   reserved, and the lock is held only for a few arithmetic operations, never across an await.
//! - **Burst** = `max(rate / 10, 64 KiB)`: a tenth of a second of traffic, but at least one
//!   64 KiB chunk so that slow limits do not split every block. The bucket starts full.
//! - **Unlimited** (`rate == 0`) is a single relaxed atomic load: no lock, no write, no contention.
//! - **Clock**: `tokio::time`, so tests run on tokio's paused clock.
//! - A caller that is cancelled while sleeping has still spent its tokens (as if the bytes had
//!   passed). A rate change applies to reservations made after it; sleepers keep their deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The smallest burst, whatever the rate.
pub const MIN_BURST: u64 = 64 * 1024;

/// A token-bucket byte-rate limiter; cheap to clone (clones share one bucket).
#[derive(Clone, Debug)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Bytes per second; 0 = unlimited. Read without the lock on the fast path.
    rate: AtomicU64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Available bytes; negative is debt.
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec`; 0 means unlimited.
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimiter {
            inner: Arc::new(Inner {
                rate: AtomicU64::new(bytes_per_sec),
                bucket: Mutex::new(Bucket {
                    tokens: burst_of(bytes_per_sec) as f64,
                    last: crate::clock::tokio_now(),
                }),
            }),
        }
    }

    /// A limiter that never waits (same as `new(0)`).
    pub fn unlimited() -> Self {
        Self::new(0)
    }

    /// The current rate in bytes per second; 0 means unlimited.
    pub fn rate(&self) -> u64 {
        self.inner.rate.load(Ordering::Relaxed)
    }

    /// Whether this limiter lets everything through at once.
    pub fn is_unlimited(&self) -> bool {
        self.rate() == 0
    }

    /// Changes the rate (0 = unlimited). Existing debt is kept; saved tokens are capped to the new
    /// burst.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        let mut b = self.lock();
        if self.rate() == 0 {
            // Leaving (or staying) unlimited: start from a full bucket, not from stale state.
            b.tokens = burst_of(bytes_per_sec) as f64;
        } else {
            b.refill(self.rate(), crate::clock::tokio_now());
            b.tokens = b.tokens.min(burst_of(bytes_per_sec) as f64);
        }
        b.last = crate::clock::tokio_now();
        self.inner.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Waits until `n` bytes may pass. `n` may exceed the burst: the excess becomes debt that
    /// later callers wait for.
    pub async fn acquire(&self, n: usize) {
        if let Some(wait) = self.reserve(n) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `n` tokens now and returns how long the caller must wait before the bytes pass
    /// (None: no wait). Useful to combine limiters; see [`acquire_both`].
    pub fn reserve(&self, n: usize) -> Option<Duration> {
        let rate = self.rate();
        if rate == 0 || n == 0 {
            return None;
        }
        let now = crate::clock::tokio_now();
        let mut b = self.lock();
        b.refill(rate, now);
        b.tokens -= n as f64;
        if b.tokens >= 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64(-b.tokens / rate as f64))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // The critical sections cannot panic halfway, so a poisoned bucket is still consistent.
        self.inner
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::unlimited()
    }
}

impl Bucket {
    fn refill(&mut self, rate: u64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst_of(rate) as f64);
    }
}

/// The bucket size for a rate: `max(rate / 10, 64 KiB)`.
pub fn burst_of(rate: u64) -> u64 {
    (rate / 10).max(MIN_BURST)
}

/// Waits until `n` bytes may pass both limiters. Both are charged at once and the caller waits for
/// the slower one (not the sum of both waits).
pub async fn acquire_both(a: &RateLimiter, b: &RateLimiter, n: usize) {
    let wait = match (a.reserve(n), b.reserve(n)) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    if let Some(wait) = wait {
        tokio::time::sleep(wait).await;
    }
}

/// A pair of limiters that traffic of one swarm must pass: the node-wide one and the swarm's own.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Shared by every swarm of the node.
    pub global: RateLimiter,
    /// This swarm's own limit.
    pub per_swarm: RateLimiter,
}

impl Limits {
    /// Waits until `n` bytes may pass both limits.
    pub async fn acquire(&self, n: usize) {
        acquire_both(&self.global, &self.per_swarm, n).await;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests measure real elapsed time
mod tests {
    use super::*;

    const KI: u64 = 1024;

    #[tokio::test(start_paused = true)]
    async fn one_mib_at_256_kib_takes_about_4s() {
        let l = RateLimiter::new(256 * KI);
        let start = Instant::now();
        for _ in 0..64 {
            l.acquire(16 * 1024).await;
        }
        let t = start.elapsed().as_secs_f64();
        // 1 MiB minus the 64 KiB initial burst, at 256 KiB/s: 3.75 s.
        assert!((3.6..=4.1).contains(&t), "took {t} s");
    }

    #[tokio::test(start_paused = true)]
    async fn one_big_block_is_debt_not_deadlock() {
        let l = RateLimiter::new(256 * KI);
        let start = Instant::now();
        l.acquire(1024 * 1024).await;
        let t = start.elapsed().as_secs_f64();
        assert!((3.6..=4.1).contains(&t), "took {t} s");
        // The debt is paid: the next small acquire after a refill pause is immediate.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        l.acquire(1024).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_returns_immediately() {
        let l = RateLimiter::new(0);
        let start = Instant::now();
        for _ in 0..1000 {
            l.acquire(1 << 30).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(l.reserve(usize::MAX).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn many_tasks_share_the_rate() {
        let l = RateLimiter::new(100 * KI);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    l.acquire(8 * 1024).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 640 KiB total, 64 KiB burst, 100 KiB/s: 5.76 s.
        let t = start.elapsed().as_secs_f64();
        assert!((5.5..=6.1).contains(&t), "took {t} s");
    }

    #[tokio::test(start_paused = true)]
    async fn set_rate_switches_modes() {
        let l = RateLimiter::new(0);
        l.set_rate(128 * KI);
        let start = Instant::now();
        l.acquire(64 * 1024 + 128 * 1024).await; // burst + 1 s
        let t = start.elapsed().as_secs_f64();
        assert!((0.9..=1.1).contains(&t), "took {t} s");
        l.set_rate(0);
        let start = Instant::now();
        l.acquire(10 << 20).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn both_waits_for_the_slower_not_the_sum() {
        let global = RateLimiter::new(256 * KI);
        let swarm = RateLimiter::new(128 * KI);
        let limits = Limits {
            global: global.clone(),
            per_swarm: swarm,
        };
        let start = Instant::now();
        limits.acquire(512 * 1024).await;
        // global: 448 KiB of debt at 256 KiB/s = 1.75 s; swarm: 448 KiB at 128 KiB/s = 3.5 s.
        let t = start.elapsed().as_secs_f64();
        assert!(
            (3.4..=3.6).contains(&t),
            "took {t} s (the sum would be 5.25 s)"
        );
        // The global limiter was charged too: 3.5 s refilled its 1.75 s of debt plus a full
        // burst, so 64 KiB + 256 KiB now waits 1 s.
        let wait = global.reserve(320 * 1024).unwrap().as_secs_f64();
        assert!((0.9..=1.1).contains(&wait), "wait {wait} s");
    }

    #[test]
    fn burst_rule() {
        assert_eq!(burst_of(0), MIN_BURST);
        assert_eq!(burst_of(100 * KI), MIN_BURST);
        assert_eq!(burst_of(10 * 1024 * KI), 1024 * KI);
    }
}
