//! The event queue and the virtual clock: a binary heap of events keyed by virtual time
//! (nanoseconds since the run's origin) and insertion order, so events due at the same instant
//! run in the order they were scheduled and a run is the same every time.
//!
//! Time is a `u64` of nanoseconds since [`Clock::origin`]; [`Clock::at`] turns it into the
//! `Instant` the core takes. The origin is any `Instant` (only differences matter); nothing
//! here reads a clock. The queue owns events only; what they mean is [`crate::sim`]'s business.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Virtual time: nanoseconds since the run's origin.
pub type Nanos = u64;

/// Nanoseconds in a second.
pub const SECOND: Nanos = 1_000_000_000;

/// Maps virtual nanoseconds to the `Instant`s the core state machines take, and back.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose time 0 is `origin`.
    pub fn new(origin: Instant) -> Clock {
        Clock { origin }
    }

    /// The instant of time 0.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The instant of virtual time `t`.
    pub fn at(&self, t: Nanos) -> Instant {
        self.origin + Duration::from_nanos(t)
    }

    /// The virtual time of `i` (instants before the origin are 0).
    pub fn nanos(&self, i: Instant) -> Nanos {
        u64::try_from(i.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

struct Entry<E> {
    at: Nanos,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    // Reversed: the heap pops the earliest (then the first scheduled) first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-heap of events by (time, insertion order).
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    now: Nanos,
    popped: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
            popped: 0,
        }
    }
}

impl<E> Queue<E> {
    /// The time of the event popped last (the simulation's "now").
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Schedules `ev` at `at`; an instant in the past is taken as now (events never run
    /// backwards in time).
    pub fn push(&mut self, at: Nanos, ev: E) {
        self.seq += 1;
        let at = at.max(self.now);
        self.heap.push(Entry {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// The next event if it is due at or before `until`; the clock moves to its time.
    pub fn pop_until(&mut self, until: Nanos) -> Option<(Nanos, E)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        let e = self.heap.pop()?;
        self.now = e.at;
        self.popped += 1;
        Some((e.at, e.ev))
    }

    /// Moves the clock to `t` (when the run ends between events).
    pub fn advance_to(&mut self, t: Nanos) {
        self.now = self.now.max(t);
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// No event waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events popped so far.
    pub fn popped(&self) -> u64 {
        self.popped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut q = Queue::default();
        q.push(5, 'a');
        q.push(3, 'b');
        q.push(5, 'c');
        q.push(1, 'd');
        let order: Vec<char> = std::iter::from_fn(|| q.pop_until(10).map(|(_, e)| e)).collect();
        assert_eq!(order, vec!['d', 'b', 'a', 'c']);
        assert_eq!(q.now(), 5);
        q.push(2, 'e'); // in the past: runs now
        assert_eq!(q.pop_until(4), None);
        assert_eq!(q.pop_until(5), Some((5, 'e')));
    }
}
