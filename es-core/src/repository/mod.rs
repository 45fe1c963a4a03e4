//! [`Repository`]: load an aggregate, decide, append with an expected version, retry.

#[cfg(feature = "async")]
mod asynchronous;
mod cache;
mod command;
mod retry;

use std::convert::Infallible;
use std::marker::PhantomData;
use std::ops::{Range, RangeBounds, RangeInclusive};
use std::time::SystemTime;

#[cfg(feature = "async")]
pub use asynchronous::AsyncRepository;
use cache::SharedCache;
pub use cache::StateCache;
use command::{After, CatchUp, Command, Decode, Step};
pub use retry::{DEFAULT_MAX_RETRIES, RetryPolicy};
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::decision::Versioned;
use crate::envelope::{Metadata, RecordedEvent, StreamRef};
use crate::error::Error;
use crate::event::IntoEvents;
use crate::store::{AppendOutcome, EventStore};

/// Loads aggregates of type `A` from a store and runs commands against them.
///
/// A command is a closure that looks at the current state and returns the events to record
/// (or a domain error). [`execute`](Repository::execute) loads the stream, runs the closure,
/// and appends its events atomically with the version it loaded as the expected version. If
/// another writer got there first, the repository catches up with the new events and the
/// closure runs again, as the [`RetryPolicy`] allows: by default up to 100 attempts within
/// 3 s of the first conflict, the first retry at once and later ones after a random pause
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
    /// Recent states, if [`with_cache`](Self::with_cache) set one.
    cache: SharedCache<A>,
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
            cache: self.cache.clone(),
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
            cache: None,
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
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        #[cfg(feature = "tracing")]
        let _span = crate::trace::load_span(stream).entered();
        let loaded = self.load_current(stream)?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate's events, decoded into their current shape, with their envelopes.
    pub fn history(&self, id: &str) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        self.decoded(StreamRef::new(A::AGGREGATE_TYPE, id), 1..=u64::MAX)
    }

    /// The aggregate as it was at stream version `version`: the state after its events
    /// up to that version (all of them if the stream is shorter; the returned
    /// [`Versioned::version`] says where it ended). `None` if the stream has no events.
    /// Reads only the events up to `version`.
    pub fn load_at(&self, id: &str, version: u64) -> Result<Option<Versioned<A>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let loaded = self.load_up_to(StreamRef::new(A::AGGREGATE_TYPE, id), version)?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate as it was at time `at`: the state after the events the store
    /// recorded at or before `at`, read in version order up to the first one recorded
    /// after it, starting from the latest snapshot if it was taken by `at` (with one
    /// clock, every event a snapshot covers was recorded before the snapshot was taken). `None` if no event was recorded by then. (Stores stamp events with their
    /// [`Clock`](crate::Clock); give one a [`ManualClock`](crate::ManualClock) to test
    /// this without sleeping.)
    pub fn load_as_of(&self, id: &str, at: SystemTime) -> Result<Option<Versioned<A>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        // The latest snapshot, if it was taken by then: every event it covers was
        // recorded before it was taken.
        let mut loaded = match A::SNAPSHOT {
            Some(policy) => {
                let found = self.store.load_snapshot(stream, policy.version, u64::MAX);
                let found = found.map(|s| s.filter(|snapshot| snapshot.taken_at <= at));
                command::restore(stream, found)
            }
            None => Versioned::initial(),
        };
        self.catch_up_until(stream, &mut loaded, u64::MAX, Some(at))?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate's events with stream versions in `versions` (`3..=7`, `10..`,
    /// `..=4`), decoded into their current shape, with their envelopes. Reads only those
    /// events.
    pub fn history_range(
        &self,
        id: &str,
        versions: impl RangeBounds<u64>,
    ) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        self.decoded(
            StreamRef::new(A::AGGREGATE_TYPE, id),
            command::version_range(versions),
        )
    }

    /// Every event of type `T` of this aggregate type, across its streams, decoded (and
    /// upcast), in global order: up to `limit` of them from global position
    /// `from_position` on. Events stored under one of `T`'s aliases are included. The
    /// store filters (SQLite and PostgreSQL with an index), so only those events are read.
    /// For the next page, call again from the last event's `global_position + 1`.
    pub fn events_of<T: crate::Event>(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<DecodedEvent<T>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let names = command::stored_names::<T>();
        let mut across = command::Across::new(|record: &crate::EventRecord<'_>| {
            crate::decode_event::<T>(record.event_type, record.schema_version, record.payload)
        });
        let read = self.store.visit_by_type(
            A::AGGREGATE_TYPE,
            &names,
            from_position,
            limit,
            &mut |record| across.visit(record),
        );
        across.finish(A::AGGREGATE_TYPE, read)
    }

    /// The events of this aggregate type whose stored event type is one of `event_types`
    /// (e.g. `&[MoneyDeposited::EVENT_TYPE, MoneyWithdrawn::EVENT_TYPE]`), across its
    /// streams, decoded into the event enum, in global order: up to `limit` from global
    /// position `from_position` on. Name aliases yourself if you need them (see
    /// [`events_of`](Self::events_of), which does).
    pub fn events_by_type(
        &self,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let mut across = command::Across::new(|record: &crate::EventRecord<'_>| {
            <A::Event as crate::EventEnum>::from_stored(
                record.event_type,
                record.schema_version,
                record.payload,
            )
        });
        let read = self.store.visit_by_type(
            A::AGGREGATE_TYPE,
            event_types,
            from_position,
            limit,
            &mut |record| across.visit(record),
        );
        across.finish(A::AGGREGATE_TYPE, read)
    }

    /// Deletes the snapshots of aggregate `id` but the `keep` latest; returns how many it
    /// deleted. (Snapshots are a cache of states: pruning never loses data.)
    pub fn prune_snapshots(&self, id: &str, keep: usize) -> Result<u64, Error> {
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        self.store
            .prune_snapshots(stream, keep)
            .map_err(|source| command::store_error(stream, source))
    }

    /// Runs a command: load, `decide`, append the events it returns, retry on conflict.
    ///
    /// `decide` returns `Ok` with one event, several or none (see
    /// [`IntoEvents`](crate::IntoEvents)), or `Err` with a domain error, in which case
    /// nothing is appended and [`Error::Rejected`] carries the error.
    pub fn execute<R, E, F>(&self, id: &str, decide: F) -> Result<Executed<A>, Error<E>>
    where
        R: IntoEvents<A::Event>,
        F: crate::decision::Decide<A, R, E>,
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
        decide: F,
    ) -> Result<Executed<A>, Error<E>>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> Result<R, E>,
    {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        #[cfg(feature = "tracing")]
        let _span = crate::trace::command_span(stream).entered();
        let current = self.load_current(stream).map_err(Error::widen)?;
        let default_metadata = Metadata::new();
        let mut command = Command::new(
            stream,
            options,
            &default_metadata,
            self.retry,
            current,
            decide,
        );
        loop {
            let after = match command.decide() {
                Step::Done(result) => return result,
                Step::FindKey => {
                    let key = command.append_options.idempotency_key.unwrap_or_default();
                    command.key_found(self.store.find_idempotency_key(stream, key))
                }
                Step::Append(expected, events) => command.appended(self.store.append_with(
                    stream,
                    expected,
                    &events,
                    command.append_options,
                )),
            };
            match after {
                After::Done(Ok(executed)) => {
                    if let Some(snapshot) = command::due_snapshot(stream, &executed) {
                        match self.store.save_snapshot(stream, &snapshot) {
                            Ok(()) => crate::trace::snapshot_saved(stream, snapshot.stream_version),
                            Err(error) => crate::trace::snapshot_not_saved(
                                stream,
                                snapshot.stream_version,
                                &error,
                            ),
                        }
                    }
                    if let Some(cache) = &self.cache {
                        cache.put(stream.id, &executed.state, executed.version);
                    }
                    return Ok(executed);
                }
                After::Done(result) => return result,
                After::Duplicate(outcome) => {
                    return self
                        .duplicate(stream, outcome, command.attempts)
                        .map_err(Error::widen);
                }
                After::Retry(pause) => {
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                    // Catch up with what other writers appended since our load, rather
                    // than replaying the whole stream again: a retry costs only the new
                    // events.
                    self.catch_up(stream, &mut command.current, u64::MAX)
                        .map_err(Error::widen)?;
                }
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
        let before = self.load_up_to(stream, versions.start().saturating_sub(1))?;
        let appended = self.decoded(stream, versions)?;
        command::duplicate(stream, outcome, before, appended, attempts)
    }

    /// The events of `stream` with versions in `versions`, decoded, with their envelopes.
    fn decoded(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
    ) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        let mut decode = Decode::new(stream, versions.start().saturating_sub(1));
        let read = self
            .store
            .visit_stream(stream, versions, &mut |record| decode.visit(record));
        decode.finish(read)
    }

    /// The current state of `stream`: from the cache when it holds the stream (then only
    /// the events after the cached state are read), else loaded; the cache is updated.
    fn load_current(&self, stream: StreamRef<'_>) -> Result<Versioned<A>, Error> {
        let Some(cache) = &self.cache else {
            return self.load_up_to(stream, u64::MAX);
        };
        let (state, from) = match cache.get(stream.id) {
            Some(mut state) => {
                let from = state.version;
                self.catch_up(stream, &mut state, u64::MAX)?;
                (state, Some(from))
            }
            None => (self.load_up_to(stream, u64::MAX)?, None),
        };
        if state.version > 0 && from != Some(state.version) {
            cache.put(stream.id, &state.state, state.version);
        }
        Ok(state)
    }

    /// The state of `stream` after the events up to version `up_to`.
    fn load_up_to(&self, stream: StreamRef<'_>, up_to: u64) -> Result<Versioned<A>, Error> {
        let mut loaded = match A::SNAPSHOT {
            Some(policy) => command::restore(
                stream,
                self.store.load_snapshot(stream, policy.version, up_to),
            ),
            None => Versioned::initial(),
        };
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
        self.catch_up_until(stream, state, up_to, None)
    }

    /// Applies the events of `stream` after `state.version`, up to version `up_to`,
    /// stopping at the first event recorded after `until` if given.
    fn catch_up_until(
        &self,
        stream: StreamRef<'_>,
        state: &mut Versioned<A>,
        up_to: u64,
        until: Option<SystemTime>,
    ) -> Result<(), Error> {
        let from = state.version;
        let versions = command::catch_up_range(state, up_to);
        let mut catch_up = CatchUp::new(stream, state);
        if let Some(until) = until {
            catch_up = catch_up.until(until);
        }
        let read = self
            .store
            .visit_stream(stream, versions, &mut |record| catch_up.visit(record));
        catch_up.finish(read)?;
        crate::trace::loaded(stream, state.version, state.version - from);
        Ok(())
    }
}

impl<A, S> Repository<A, S>
where
    A: Aggregate + Clone + Send + 'static,
    S: EventStore,
{
    /// Keeps the states of up to `capacity` recently used aggregates in memory (a
    /// [`StateCache`]), so that a command on a hot aggregate reads only the events appended
    /// since its last use instead of its whole stream. Correct with other writers: the
    /// cached state is always caught up with the store before it is used, and a command
    /// decided on a state another process moved on meets a conflict at append and is
    /// retried. Needs `A: Clone` (a command's result is copied into the cache).
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new(StateCache::<A>::new(capacity)));
        self
    }
}
