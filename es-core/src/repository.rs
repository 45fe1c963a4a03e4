//! [`Repository`]: load an aggregate, decide, append with an expected version, retry.

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::ops::{ControlFlow, Range, RangeInclusive};
use std::time::{Duration, Instant};

use crate::aggregate::Aggregate;
use crate::decision::{self, Versioned};
use crate::envelope::{Metadata, RecordedEvent, StreamRef};
use crate::error::Error;
use crate::event::IntoEvents;
use crate::store::{AppendOptions, AppendOutcome, EventStore, ExpectedVersion, StoreError};

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
/// The defaults (30 attempts, 1 s, pauses capped at 1 ms doubling to 50 ms, full jitter)
/// are sized for a handful of writers hammering one stream of a durable store. Measured
/// with SQLite (`synchronous = FULL`, an append takes about 1 ms): with 4 threads each
/// running 100 commands on one stream, most commands succeed at the first or second
/// attempt, but a few lose repeatedly, and the worst one took 14 attempts and 240 ms; with
/// 8 threads, 20 attempts and 430 ms. Ten attempts lost a command in most runs. The
/// defaults leave about twice that headroom, while a caller still hears back within about a
/// second when a stream is hopelessly contended. The pause caps stay short because a lost
/// race on a store this fast is over in a millisecond or two: longer pauses only add
/// latency.
///
/// ```
/// use std::time::Duration;
/// use es_core::RetryPolicy;
///
/// let policy = RetryPolicy::default();
/// assert_eq!((policy.max_attempts, policy.max_elapsed), (30, Some(Duration::from_secs(1))));
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
    /// The default [`max_attempts`](RetryPolicy::max_attempts): 30.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 30;
    /// The default [`max_elapsed`](RetryPolicy::max_elapsed): 1 s.
    pub const DEFAULT_MAX_ELAPSED: Duration = Duration::from_secs(1);
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
    fn next_pause(&self, attempts: u32, retrying: &mut Retrying) -> Option<Duration> {
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
struct Retrying {
    started: Instant,
    /// xorshift64 state; never 0.
    random: u64,
}

impl Retrying {
    fn start() -> Self {
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

/// Loads aggregates of type `A` from a store and runs commands against them.
///
/// A command is a closure that looks at the current state and returns the events to record
/// (or a domain error). [`execute`](Repository::execute) loads the stream, runs the closure,
/// and appends its events atomically with the version it loaded as the expected version. If
/// another writer got there first, the repository catches up with the new events and the
/// closure runs again, as the [`RetryPolicy`] allows: by default up to 30 attempts within
/// 1 s of the first conflict, the first retry at once and later ones after a random pause
/// of up to 1 ms, doubling to 50 ms. Set it with [`with_retry`](Repository::with_retry) or
/// [`with_max_retries`](Repository::with_max_retries).
///
/// Cheap to clone when the store is; `Send + Sync` when the store is.
#[derive(Debug)]
pub struct Repository<A, S> {
    store: S,
    retry: RetryPolicy,
    /// Set when another Rust type already uses this aggregate type (see
    /// [`Error::AggregateTypeClash`]): every call then fails with that error.
    clash: Option<Clash>,
    _aggregate: PhantomData<fn() -> A>,
}

/// Another Rust type stored under the same aggregate type.
#[derive(Debug, Clone, Copy)]
struct Clash {
    aggregate_type: &'static str,
    this: &'static str,
    other: &'static str,
}

impl Clash {
    fn error<E>(self) -> Error<E> {
        Error::AggregateTypeClash {
            aggregate_type: self.aggregate_type,
            this: self.this,
            other: self.other,
        }
    }
}

/// Every aggregate type a repository was made for in this process: (stored aggregate
/// type, Rust type name, named explicitly).
static AGGREGATE_TYPES: std::sync::Mutex<Vec<(&'static str, &'static str, bool)>> =
    std::sync::Mutex::new(Vec::new());

/// Records that Rust type `A` is stored as `A::AGGREGATE_TYPE`, and reports another Rust
/// type stored under the same name, unless both named it explicitly.
fn register<A: Aggregate>() -> Option<Clash> {
    let this = std::any::type_name::<A>();
    let mut known = AGGREGATE_TYPES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for &(aggregate_type, other, explicit) in known.iter() {
        if aggregate_type != A::AGGREGATE_TYPE {
            continue;
        }
        if other == this {
            return None;
        }
        if !(explicit && A::AGGREGATE_TYPE_IS_EXPLICIT) {
            return Some(Clash {
                aggregate_type,
                this,
                other,
            });
        }
    }
    known.push((A::AGGREGATE_TYPE, this, A::AGGREGATE_TYPE_IS_EXPLICIT));
    None
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            retry: self.retry,
            clash: self.clash,
            _aggregate: PhantomData,
        }
    }
}

/// The result of a successful [`Repository::execute`].
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The state after the new events.
    pub state: A,
    /// The stream version after the new events.
    pub version: u64,
    /// The events the decision returned, as appended (empty if it returned none).
    pub events: Vec<A::Event>,
    /// The global positions the events were stored at.
    pub global_positions: Range<u64>,
    /// How many times the decision ran (1 unless conflicts forced a retry).
    pub attempts: u32,
    /// True when the command's idempotency key was already committed: nothing was
    /// appended, and `state`, `version`, `events` and `global_positions` describe that
    /// earlier append (the state as of its last event).
    pub duplicate: bool,
}

/// A stored event with its typed, decoded (and upcast) form.
#[derive(Debug, Clone)]
pub struct DecodedEvent<E> {
    /// The envelope as stored, payload included.
    pub record: RecordedEvent,
    /// The decoded event, in its current shape.
    pub event: E,
}

/// Options of one command; see [`Repository::execute_with_options`].
///
/// ```
/// use es_core::{ExecuteOptions, Metadata};
/// let metadata = Metadata::new().with_correlation_id("req-7");
/// let options = ExecuteOptions::new()
///     .metadata(&metadata)
///     .idempotency_key("req-7");
/// assert_eq!(options.idempotency_key, Some("req-7"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ExecuteOptions<'a> {
    /// Recorded with every new event (correlation id, causation id, free-form entries).
    pub metadata: Option<&'a Metadata>,
    /// Names the command, so that running it again (after an error that left its fate
    /// unknown, such as a connection lost during `COMMIT`) does not append its events a
    /// second time: if an append with this key was committed on the stream, the command
    /// returns that append's outcome with [`Executed::duplicate`] set. Use an id the
    /// client chose for the request.
    pub idempotency_key: Option<&'a str>,
}

impl<'a> ExecuteOptions<'a> {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `metadata` with every new event.
    pub fn metadata(mut self, metadata: &'a Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: &'a str) -> Self {
        self.idempotency_key = Some(key);
        self
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store`, retrying conflicts as [`RetryPolicy::default`] says.
    ///
    /// If another Rust type in this process is stored under the same aggregate type (two
    /// structs named `Account` in different modules, say), every call of this repository
    /// fails with [`Error::AggregateTypeClash`] rather than mix their streams; naming both
    /// with `#[aggregate(name = "...")]` says the sharing is meant.
    pub fn new(store: S) -> Self {
        Self {
            store,
            retry: RetryPolicy::default(),
            clash: register::<A>(),
            _aggregate: PhantomData,
        }
    }

    /// Sets how commands are retried after a concurrency conflict.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use es_core::{Aggregate, Event, InMemoryStore, Repository, RetryPolicy, applies};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// # struct Deposited { amount: u64 }
    /// # #[derive(Debug, Default, Aggregate)]
    /// # struct Account { balance: u64 }
    /// # #[applies]
    /// # impl Account { fn deposited(&mut self, e: &Deposited) { self.balance += e.amount; } }
    /// let policy = RetryPolicy::default().max_attempts(25).max_elapsed(Duration::from_secs(3));
    /// let repo = Repository::<Account, _>::new(InMemoryStore::new()).with_retry(policy);
    /// assert_eq!(repo.retry_policy().max_attempts, 25);
    /// ```
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Retries a conflicting command exactly `max_retries` times (0: never), whatever time
    /// they take: a shortcut that sets the policy's
    /// [`max_attempts`](RetryPolicy::max_attempts) to `max_retries + 1` and removes its time
    /// bound, keeping its backoff.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.retry = self
            .retry
            .max_attempts(max_retries.saturating_add(1))
            .without_time_limit();
        self
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Loads the aggregate with id `id`: `None` if its stream has no events.
    ///
    /// The events are decoded straight from the store's stored text as they are read:
    /// nothing is copied, and no store holds the whole stream in memory.
    pub fn load(&self, id: &str) -> Result<Option<Versioned<A>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let loaded = self.load_up_to(StreamRef::new(A::AGGREGATE_TYPE, id), u64::MAX)?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate's events, decoded into their current shape, with their envelopes.
    pub fn history(&self, id: &str) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        self.decoded(StreamRef::new(A::AGGREGATE_TYPE, id), 1..=u64::MAX)
    }

    /// Runs a command: load, `decide`, append the events it returns, retry on conflict.
    ///
    /// `decide` returns `Ok` with one event, several or none (see
    /// [`IntoEvents`](crate::IntoEvents)), or `Err` with a domain error, in which case
    /// nothing is appended and [`Error::Rejected`] carries the error.
    pub fn execute<R, E, F>(&self, id: &str, decide: F) -> Result<Executed<A>, Error<E>>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> Result<R, E>,
    {
        self.execute_with_options(id, ExecuteOptions::new(), decide)
    }

    /// Runs a command whose decision cannot fail: `decide` returns the events themselves
    /// (one, a tuple, a `Vec`, an `Option` or `()`; see [`IntoEvents`](crate::IntoEvents))
    /// rather than a `Result`. Otherwise the same as [`execute`](Repository::execute),
    /// retries included; the error can be anything but [`Error::Rejected`].
    ///
    /// ```
    /// # use es_core::{Aggregate, Event, InMemoryStore, Repository, applies};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// # struct Deposited { amount: u64 }
    /// # #[derive(Debug, Default, Aggregate)]
    /// # struct Account { balance: u64 }
    /// # #[applies]
    /// # impl Account { fn deposited(&mut self, e: &Deposited) { self.balance += e.amount; } }
    /// let repo = Repository::<Account, _>::new(InMemoryStore::new());
    /// let done = repo.execute_infallible("acc-1", |_| Deposited { amount: 5 })?;
    /// assert_eq!((done.version, done.state.balance), (1, 5));
    /// // Deciding on the state: top the balance up to 10, or record nothing.
    /// let done = repo.execute_infallible("acc-1", |acc| {
    ///     (acc.balance < 10).then(|| Deposited { amount: 10 - acc.balance })
    /// })?;
    /// assert_eq!((done.version, done.state.balance), (2, 10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_infallible<R, F>(&self, id: &str, mut decide: F) -> Result<Executed<A>, Error>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> R,
    {
        self.execute_with_options(id, ExecuteOptions::new(), |state: &A| {
            Ok::<R, Infallible>(decide(state))
        })
    }

    /// Like [`execute`](Repository::execute), recording `metadata` (correlation id,
    /// causation id, free-form entries) with every new event.
    pub fn execute_with<R, E, F>(
        &self,
        id: &str,
        metadata: &Metadata,
        decide: F,
    ) -> Result<Executed<A>, Error<E>>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> Result<R, E>,
    {
        self.execute_with_options(id, ExecuteOptions::new().metadata(metadata), decide)
    }

    /// Like [`execute`](Repository::execute), with [`ExecuteOptions`]: metadata, and an
    /// idempotency key that makes the command safe to run again.
    ///
    /// ```
    /// # use es_core::{Aggregate, Event, ExecuteOptions, InMemoryStore, Repository, applies};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// # struct Deposited { amount: u64 }
    /// # #[derive(Debug, Default, Aggregate)]
    /// # struct Account { balance: u64 }
    /// # #[applies]
    /// # impl Account { fn deposited(&mut self, e: &Deposited) { self.balance += e.amount; } }
    /// let repo = Repository::<Account, _>::new(InMemoryStore::new());
    /// let options = ExecuteOptions::new().idempotency_key("request-1");
    /// let deposit = |_: &Account| Ok::<_, std::convert::Infallible>(Deposited { amount: 5 });
    /// let first = repo.execute_with_options("acc-1", options, deposit)?;
    /// // The client did not hear back and sends the request again: nothing is appended.
    /// let again = repo.execute_with_options("acc-1", options, deposit)?;
    /// assert!(again.duplicate && !first.duplicate);
    /// assert_eq!(again.global_positions, first.global_positions);
    /// assert_eq!(repo.load("acc-1")?.unwrap().state.balance, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_with_options<R, E, F>(
        &self,
        id: &str,
        options: ExecuteOptions<'_>,
        mut decide: F,
    ) -> Result<Executed<A>, Error<E>>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> Result<R, E>,
    {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        let default_metadata = Metadata::new();
        let metadata = options.metadata.unwrap_or(&default_metadata);
        let append_options = AppendOptions {
            idempotency_key: options.idempotency_key,
            ..AppendOptions::default()
        };
        let mut current = self.load_up_to(stream, u64::MAX).map_err(Error::widen)?;
        let mut attempts = 0;
        let mut retrying = None;
        loop {
            attempts += 1;
            let events = match decision::decide(stream, &current, &mut decide) {
                Ok(events) if !events.is_empty() => events,
                // A command that decides nothing (or is rejected) now may have been
                // committed by an earlier run whose reply was lost: say so if it was.
                decided => {
                    if let Some(key) = options.idempotency_key {
                        let found = self
                            .store
                            .find_idempotency_key(stream, key)
                            .map_err(|source| store_error(stream, source))?;
                        if let Some(outcome) = found {
                            return self
                                .duplicate(stream, outcome, attempts)
                                .map_err(Error::widen);
                        }
                    }
                    let events = decided?;
                    return Ok(Executed {
                        state: current.state,
                        version: current.version,
                        events,
                        global_positions: 0..0,
                        attempts,
                        duplicate: false,
                    });
                }
            };
            let new_events = decision::encode(stream, &events, metadata).map_err(Error::widen)?;
            let expected = ExpectedVersion::from_version(current.version);
            match self
                .store
                .append_with(stream, expected, &new_events, append_options)
            {
                Ok(outcome) if outcome.duplicate => {
                    return self
                        .duplicate(stream, outcome, attempts)
                        .map_err(Error::widen);
                }
                Ok(outcome) => {
                    for event in &events {
                        current.state.apply(event);
                    }
                    return Ok(Executed {
                        state: current.state,
                        version: outcome.stream_version,
                        events,
                        global_positions: outcome.global_positions,
                        attempts,
                        duplicate: false,
                    });
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    let retrying = retrying.get_or_insert_with(Retrying::start);
                    let Some(pause) = self.retry.next_pause(attempts, retrying) else {
                        return Err(Error::Conflict {
                            stream: stream.to_key(),
                            attempts,
                            expected: current.version,
                            actual,
                        });
                    };
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                    // Catch up with what other writers appended since our load, rather
                    // than replaying the whole stream again: a retry costs only the new
                    // events.
                    self.catch_up(stream, &mut current, u64::MAX)
                        .map_err(Error::widen)?;
                }
                Err(source) => return Err(store_error(stream, source)),
            }
        }
    }

    /// The result of a command whose idempotency key was already committed: the state as
    /// of that append, and the events it stored.
    fn duplicate(
        &self,
        stream: StreamRef<'_>,
        outcome: AppendOutcome,
        attempts: u32,
    ) -> Result<Executed<A>, Error> {
        let versions = outcome.stream_versions();
        let mut state = self.load_up_to(stream, versions.start().saturating_sub(1))?;
        let decoded = self.decoded(stream, versions.clone())?;
        let mut events = Vec::with_capacity(decoded.len());
        for entry in decoded {
            state.state.apply(&entry.event);
            state.version = entry.record.stream_version;
            events.push(entry.event);
        }
        // The store's record of the key must match the stream: otherwise say so rather
        // than return an outcome whose state, version and events disagree.
        if versions.is_empty() || state.version != outcome.stream_version {
            return Err(store_error(
                stream,
                StoreError::CorruptStream {
                    stream: stream.to_key(),
                    reason: format!(
                        "the idempotency key's record says the append ended at version {} with global positions {:?}, but the stream holds versions up to {} there",
                        outcome.stream_version, outcome.global_positions, state.version
                    ),
                },
            ));
        }
        Ok(Executed {
            state: state.state,
            version: outcome.stream_version,
            events,
            global_positions: outcome.global_positions,
            attempts,
            duplicate: true,
        })
    }

    /// The events of `stream` with versions in `versions`, decoded, with their envelopes.
    fn decoded(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
    ) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        let mut decoded = Vec::new();
        let mut version = versions.start().saturating_sub(1);
        let mut failure = None;
        self.store
            .visit_stream(stream, versions, &mut |record| {
                let result = decision::decode_after(stream, version, record).and_then(|event| {
                    let record = record.to_recorded().map_err(|e| store_error(stream, e))?;
                    Ok(DecodedEvent { record, event })
                });
                match result {
                    Ok(event) => {
                        version = event.record.stream_version;
                        decoded.push(event);
                        ControlFlow::Continue(())
                    }
                    Err(error) => {
                        failure = Some(error);
                        ControlFlow::Break(())
                    }
                }
            })
            .map_err(|source| store_error(stream, source))?;
        failure.map_or(Ok(decoded), Err)
    }

    /// The state of `stream` after the events up to version `up_to`.
    fn load_up_to(&self, stream: StreamRef<'_>, up_to: u64) -> Result<Versioned<A>, Error> {
        let mut loaded = Versioned::initial();
        self.catch_up(stream, &mut loaded, up_to)?;
        Ok(loaded)
    }

    /// Applies the events of `stream` after `state.version`, up to version `up_to`.
    fn catch_up(
        &self,
        stream: StreamRef<'_>,
        state: &mut Versioned<A>,
        up_to: u64,
    ) -> Result<(), Error> {
        let mut failure = None;
        self.store
            .visit_stream(stream, state.version + 1..=up_to, &mut |record| match state
                .apply_record(stream, record)
            {
                Ok(()) => ControlFlow::Continue(()),
                Err(error) => {
                    failure = Some(error);
                    ControlFlow::Break(())
                }
            })
            .map_err(|source| store_error(stream, source))?;
        failure.map_or(Ok(()), Err)
    }
}

fn store_error<E>(stream: StreamRef<'_>, source: StoreError) -> Error<E> {
    Error::Store {
        stream: stream.to_key(),
        source: Box::new(source),
    }
}
