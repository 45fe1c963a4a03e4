//! Event ids that cost little to make: time-ordered UUIDs (version 7 layout).
//!
//! A random (v4) UUID reads the operating system's random source for every id, about 500 ns,
//! and scatters the stores' unique index on event ids over the whole file, so appends to a
//! large SQLite store touch a random page per event. [`new_event_id`] instead draws random
//! bits once per thread and then counts:
//!
//! * bits 0-47: milliseconds since the Unix epoch, so ids sort in creation time and land at
//!   the right edge of an index;
//! * version 7 and the RFC 4122 variant, so they are valid UUIDs;
//! * the other 74 bits: a random per-thread base plus a per-thread counter, so ids made by one
//!   thread increase (unless the clock steps back) and ids of two threads (or processes) collide only if their
//!   random bases fall within a counter's range of each other: with 2^74 bases and far fewer
//!   than 2^40 ids per thread, that is negligible, and the millisecond prefix separates all
//!   ids made in different milliseconds anyway.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// The low 74 bits of an id: everything but the timestamp, version and variant.
const TAIL_BITS: u32 = 74;
const TAIL_MASK: u128 = (1 << TAIL_BITS) - 1;

thread_local! {
    /// The next tail this thread hands out; `None` until the first id.
    static NEXT_TAIL: Cell<Option<u128>> = const { Cell::new(None) };
}

/// A fresh, globally unique, time-ordered event id (UUID version 7 layout).
///
/// About 20-30 ns: one clock read and a thread-local counter step; the operating system's
/// random source is read once per thread.
///
/// ```
/// let a = es_core::new_event_id();
/// let b = es_core::new_event_id();
/// assert_ne!(a, b);
/// assert_eq!(a.get_version_num(), 7);
/// assert!(a < b, "ids of one thread increase");
/// ```
pub fn new_event_id() -> Uuid {
    let tail = NEXT_TAIL.with(|next| {
        // `Uuid::new_v4` reads the OS random source: done once per thread only.
        let tail = next
            .get()
            .unwrap_or_else(|| Uuid::new_v4().as_u128() & TAIL_MASK);
        next.set(Some((tail + 1) & TAIL_MASK));
        tail
    });
    // A clock before 1970 (or past the year 10889) gives 0 or saturates; uniqueness rests on
    // the tail, so that is harmless.
    // Seconds and sub-second milliseconds in u64 arithmetic: `Duration::as_millis` is a
    // u128 division, which costs more than the rest of this function.
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()))
    }) & ((1 << 48) - 1);
    // Layout (most significant first): 48 bits time, 4 bits version (7), 12 bits of the
    // tail, 2 bits variant (0b10), 62 bits of the tail.
    let rand_a = (tail >> 62) & 0xfff;
    let rand_b = tail & ((1 << 62) - 1);
    let value = (u128::from(millis) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b;
    Uuid::from_u128(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_valid_v7_uuids_that_increase_within_a_thread() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| new_event_id()).collect();
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ids_of_many_threads_are_unique() {
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..5_000).map(|_| new_event_id()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            for id in handle.join().unwrap() {
                assert!(seen.insert(id), "duplicate id {id}");
            }
        }
    }
}
