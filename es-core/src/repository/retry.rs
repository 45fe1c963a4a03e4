//! [`RetryPolicy`]: when and after what pause a conflicting command runs again.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

#[cfg(doc)]
use super::Repository;
#[cfg(doc)]
use crate::Error;

/// How many times [`RetryPolicy::default`] re-decides a command after a concurrency
/// conflict (it makes at most this many attempts plus one, within
/// [`RetryPolicy::DEFAULT_MAX_ELAPSED`]).
pub const DEFAULT_MAX_RETRIES: u32 = RetryPolicy::DEFAULT_MAX_ATTEMPTS - 1;

/// How a [`Repository`] retries a command whose append hit a concurrency conflict.
///
/// After a conflict the repository catches up with the events other writers appended and
/// runs the decision again. It gives up with [`Error::Conflict`] once the command has made
/// [`max_attempts`](RetryPolicy::max_attempts) attempts, or once
/// [`max_elapsed`](RetryPolicy::max_elapsed) has passed since the first conflict,
/// whichever comes first.
///
/// The first retry runs at once: catching up costs only the new events, and a single
/// conflict usually means one other writer just committed. From the second retry on the
/// repository pauses first, for a random time between zero and a cap that starts at
/// [`initial_backoff`](RetryPolicy::initial_backoff) and doubles with every retry up to
/// [`max_backoff`](RetryPolicy::max_backoff) ("full jitter"): writers that keep colliding
/// spread out instead of colliding again in lockstep. No clock is read and nothing sleeps
/// unless a conflict happened, so the uncontended path costs nothing extra.
///
/// The defaults (100 attempts, 3 s, pauses capped at 1 ms doubling to 50 ms, full jitter)
/// are sized for a handful of writers hammering one stream of a durable store. Measured
/// with SQLite (`synchronous = FULL`, an append takes about 1 ms): with 4 threads each
/// running 100 commands on one stream, most commands succeed at the first or second
/// attempt, but a few lose repeatedly, and the worst one took 14 attempts and 240 ms; with
/// 8 threads, 20 attempts and 430 ms. Over HTTP with 8 concurrent clients on one
/// PostgreSQL stream (examples/bank_service) the worst request took 15 to 29 attempts, and
/// on a loaded 2-core machine some gave up at a 1 s bound after 26. The defaults leave
/// about three times that headroom, while a caller still hears back within a few seconds
/// when a stream is hopelessly contended. The pause caps stay short because a lost
/// race on a store this fast is over in a millisecond or two: longer pauses only add
/// latency.
///
/// ```
/// use std::time::Duration;
/// use es_core::RetryPolicy;
///
/// let policy = RetryPolicy::default();
/// assert_eq!((policy.max_attempts, policy.max_elapsed), (100, Some(Duration::from_secs(3))));
/// // The first retry goes at once; later ones pause up to 1, 2, 4, ... 50 ms.
/// assert_eq!(policy.max_pause(1), Duration::ZERO);
/// assert_eq!(policy.max_pause(2), Duration::from_millis(1));
/// assert_eq!(policy.max_pause(4), Duration::from_millis(4));
/// assert_eq!(policy.max_pause(20), Duration::from_millis(50));
///
/// // Many writers on one hot stream: more attempts, a longer bound.
/// let patient = RetryPolicy::default()
///     .max_attempts(50)
///     .max_elapsed(Duration::from_secs(5))
///     .backoff(Duration::from_millis(2), Duration::from_millis(100));
/// assert_eq!(patient.max_pause(3), Duration::from_millis(4));
///
/// // Fail fast: a conflict is reported to the caller at once.
/// assert_eq!(RetryPolicy::no_retry().max_attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The most times the decision runs, the first attempt included (at least 1: a value
    /// of 0 counts as 1).
    pub max_attempts: u32,
    /// The longest the repository keeps retrying, counted from the first conflict; `None`:
    /// no time bound. A pause never runs past it.
    pub max_elapsed: Option<Duration>,
    /// The cap on the pause before the second retry; it doubles for each retry after.
    pub initial_backoff: Duration,
    /// The largest cap on a pause.
    pub max_backoff: Duration,
    /// Pause for a random time between zero and the cap (true, the default) or for the
    /// whole cap (false).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            max_elapsed: Some(Self::DEFAULT_MAX_ELAPSED),
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The default [`max_attempts`](RetryPolicy::max_attempts): 100.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 100;
    /// The default [`max_elapsed`](RetryPolicy::max_elapsed): 3 s.
    pub const DEFAULT_MAX_ELAPSED: Duration = Duration::from_secs(3);
    /// The default [`initial_backoff`](RetryPolicy::initial_backoff): 1 ms.
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(1);
    /// The default [`max_backoff`](RetryPolicy::max_backoff): 50 ms.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_millis(50);

    /// The default policy; see the [type docs](RetryPolicy).
    pub fn new() -> Self {
        Self::default()
    }

    /// One attempt: a conflict is reported to the caller at once.
    pub fn no_retry() -> Self {
        Self::default().max_attempts(1)
    }

    /// Sets the most times the decision runs, the first attempt included.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the longest the repository keeps retrying, counted from the first conflict.
    pub fn max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = Some(max_elapsed);
        self
    }

    /// Removes the time bound: only [`max_attempts`](RetryPolicy::max_attempts) ends the
    /// retries.
    pub fn without_time_limit(mut self) -> Self {
        self.max_elapsed = None;
        self
    }

    /// Sets the pause caps: `initial` before the second retry, doubling up to `max`.
    /// [`Duration::ZERO`] for both retries without pausing.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Sets whether a pause is random up to its cap (true) or the whole cap (false).
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The cap on the pause before retry number `retry` (1: the first retry, which never
    /// pauses): `initial_backoff * 2^(retry - 2)`, at most `max_backoff`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let policy = es_core::RetryPolicy::default();
    /// let caps: Vec<u64> = (1..=9).map(|r| policy.max_pause(r).as_millis() as u64).collect();
    /// assert_eq!(caps, [0, 1, 2, 4, 8, 16, 32, 50, 50]);
    /// ```
    pub fn max_pause(&self, retry: u32) -> Duration {
        if retry <= 1 {
            return Duration::ZERO;
        }
        let doublings = (retry - 2).min(31);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }

    /// Whether to retry after `attempts` conflicting attempts, and how long to pause first.
    pub(super) fn next_pause(&self, attempts: u32, retrying: &mut Retrying) -> Option<Duration> {
        if attempts >= self.max_attempts.max(1) {
            return None;
        }
        let remaining = match self.max_elapsed {
            Some(max) => Some(max.checked_sub(retrying.started.elapsed())?),
            None => None,
        };
        if remaining == Some(Duration::ZERO) {
            return None;
        }
        let cap = self.max_pause(attempts);
        let pause = if self.jitter && !cap.is_zero() {
            let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(retrying.next_random() % nanos.saturating_add(1))
        } else {
            cap
        };
        Some(remaining.map_or(pause, |remaining| pause.min(remaining)))
    }
}

/// The state of one command's retries, made at its first conflict.
pub(super) struct Retrying {
    pub(super) started: Instant,
    /// xorshift64 state; never 0.
    random: u64,
}

impl Retrying {
    pub(super) fn start() -> Self {
        let started = Instant::now();
        // `RandomState` is seeded from the OS once per thread and stepped for every new
        // instance: hashing the time with a fresh one gives each command its own seed, so
        // writers that collided together do not pause in lockstep.
        let seed = RandomState::new().hash_one(started);
        Self {
            started,
            random: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }
}
