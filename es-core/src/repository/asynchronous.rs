//! [`AsyncRepository`]: the [`Repository`](super::Repository) of async services (feature
//! `async`).

use std::convert::Infallible;
use std::marker::PhantomData;
use std::ops::{RangeBounds, RangeInclusive};
use std::time::SystemTime;

use super::command::{self, After, CatchUp, Command, Decode, Step};
use std::sync::Arc;

use super::cache::SharedCache;
use super::{Clash, DecodedEvent, ExecuteOptions, Executed, RetryPolicy, StateCache, register};
use crate::aggregate::Aggregate;
use crate::decision::Versioned;
use crate::envelope::{Metadata, StreamRef};
use crate::error::Error;
use crate::event::IntoEvents;
use crate::store::{AppendOutcome, AsyncEventStore};

/// Loads aggregates of type `A` from an [`AsyncEventStore`] and runs commands against
/// them: the async twin of [`Repository`](super::Repository), over the same aggregates,
/// events, handlers, decisions, upcasters, retry policy and errors.
///
/// Only the store calls are awaited; the decision stays a plain closure over the state
/// (`FnMut(&A) -> Result<R, E>`), free of I/O, exactly as with the sync repository, and the
/// logic between the calls (decide, retry, idempotency) is the same code. A conflict pause
/// sleeps on the tokio timer, never blocking the runtime. Every future is `Send` when the
/// aggregate, its events, the decision and its error are, so a handler can await it on a
/// multi-threaded runtime or in `tokio::spawn`.
///
/// Cheap to clone when the store is (wrap it in an [`Arc`](std::sync::Arc) to share it
/// between tasks).
///
/// ```
/// # use es_core::{Aggregate, AsyncRepository, Event, InMemoryStore, applies};
/// # use serde::{Deserialize, Serialize};
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// struct Deposited { amount: u64 }
///
/// #[derive(Debug, Default, Aggregate)]
/// struct Account { balance: u64 }
///
/// #[applies]
/// impl Account {
///     fn deposited(&mut self, e: &Deposited) { self.balance += e.amount; }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let repo = AsyncRepository::<Account, _>::new(InMemoryStore::new());
/// let done = repo.execute_infallible("acc-1", |_| Deposited { amount: 5 }).await?;
/// assert_eq!((done.version, done.state.balance), (1, 5));
/// let account = repo.load("acc-1").await?.expect("the account exists");
/// assert_eq!(account.state.balance, 5);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
/// ```
#[derive(Debug)]
pub struct AsyncRepository<A, S> {
    store: S,
    retry: RetryPolicy,
    clash: Option<Clash>,
    /// Recent states, if [`with_cache`](Self::with_cache) set one.
    cache: SharedCache<A>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, S: Clone> Clone for AsyncRepository<A, S> {
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

impl<A, S> AsyncRepository<A, S>
where
    // The read visitors hold the state and the decoded events across `.await`s.
    A: Aggregate + Send,
    A::Event: Send,
    S: AsyncEventStore,
{
    /// A repository over `store`, retrying conflicts as [`RetryPolicy::default`] says; see
    /// [`Repository::new`](super::Repository::new) for what happens when two Rust types
    /// share an aggregate type.
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
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Retries a conflicting command exactly `max_retries` times (0: never), whatever time
    /// they take; see [`Repository::with_max_retries`](super::Repository::with_max_retries).
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
    pub async fn load(&self, id: &str) -> Result<Option<Versioned<A>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        let load = self.load_current(stream);
        #[cfg(feature = "tracing")]
        let load = tracing::Instrument::instrument(load, crate::trace::load_span(stream));
        let loaded = load.await?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate's events, decoded into their current shape, with their envelopes.
    pub async fn history(&self, id: &str) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        self.decoded(StreamRef::new(A::AGGREGATE_TYPE, id), 1..=u64::MAX)
            .await
    }

    /// The aggregate as it was at stream version `version`: the state after its events
    /// up to that version (all of them if the stream is shorter; the returned
    /// [`Versioned::version`] says where it ended). `None` if the stream has no events.
    /// Reads only the events up to `version`.
    pub async fn load_at(&self, id: &str, version: u64) -> Result<Option<Versioned<A>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let loaded = self
            .load_up_to(StreamRef::new(A::AGGREGATE_TYPE, id), version)
            .await?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate as it was at time `at`: the state after the events the store
    /// recorded at or before `at`, read in version order up to the first one recorded
    /// after it, starting from the latest snapshot if it was taken by `at` (with one
    /// clock, every event a snapshot covers was recorded before the snapshot was taken). `None` if no event was recorded by then. (Stores stamp events with their
    /// [`Clock`](crate::Clock); give one a [`ManualClock`](crate::ManualClock) to test
    /// this without sleeping.)
    pub async fn load_as_of(
        &self,
        id: &str,
        at: SystemTime,
    ) -> Result<Option<Versioned<A>>, Error> {
        if let Some(clash) = self.clash {
            return Err(clash.error());
        }
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        // The latest snapshot, if it was taken by then: every event it covers was
        // recorded before it was taken.
        let mut loaded = match A::SNAPSHOT {
            Some(policy) => {
                let found = self
                    .store
                    .load_snapshot(stream, policy.version, u64::MAX)
                    .await;
                let found = found.map(|s| s.filter(|snapshot| snapshot.taken_at <= at));
                command::restore(stream, found)
            }
            None => Versioned::initial(),
        };
        self.catch_up_until(stream, &mut loaded, u64::MAX, Some(at))
            .await?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate's events with stream versions in `versions` (`3..=7`, `10..`,
    /// `..=4`), decoded into their current shape, with their envelopes. Reads only those
    /// events.
    pub async fn history_range(
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
        .await
    }

    /// Every event of type `T` of this aggregate type, across its streams, decoded (and
    /// upcast), in global order: up to `limit` of them from global position
    /// `from_position` on. Events stored under one of `T`'s aliases are included. The
    /// store filters (SQLite and PostgreSQL with an index), so only those events are read.
    /// For the next page, call again from the last event's `global_position + 1`.
    pub async fn events_of<T: crate::Event>(
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
        let read = self
            .store
            .visit_by_type(
                A::AGGREGATE_TYPE,
                &names,
                from_position,
                limit,
                &mut |record| across.visit(record),
            )
            .await;
        across.finish(A::AGGREGATE_TYPE, read)
    }

    /// The events of this aggregate type whose stored event type is one of `event_types`
    /// (e.g. `&[MoneyDeposited::EVENT_TYPE, MoneyWithdrawn::EVENT_TYPE]`), across its
    /// streams, decoded into the event enum, in global order: up to `limit` from global
    /// position `from_position` on. Name aliases yourself if you need them (see
    /// [`events_of`](Self::events_of), which does).
    pub async fn events_by_type(
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
        let read = self
            .store
            .visit_by_type(
                A::AGGREGATE_TYPE,
                event_types,
                from_position,
                limit,
                &mut |record| across.visit(record),
            )
            .await;
        across.finish(A::AGGREGATE_TYPE, read)
    }

    /// Deletes the snapshots of aggregate `id` but the `keep` latest; returns how many it
    /// deleted. (Snapshots are a cache of states: pruning never loses data.)
    pub async fn prune_snapshots(&self, id: &str, keep: usize) -> Result<u64, Error> {
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        self.store
            .prune_snapshots(stream, keep)
            .await
            .map_err(|source| command::store_error(stream, source))
    }

    /// Runs a command: load, `decide`, append the events it returns, retry on conflict;
    /// see [`Repository::execute`](super::Repository::execute).
    pub async fn execute<R, E, F>(&self, id: &str, decide: F) -> Result<Executed<A>, Error<E>>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> Result<R, E>,
    {
        self.execute_with_options(id, ExecuteOptions::new(), decide)
            .await
    }

    /// Runs a command whose decision cannot fail; see
    /// [`Repository::execute_infallible`](super::Repository::execute_infallible).
    pub async fn execute_infallible<R, F>(
        &self,
        id: &str,
        mut decide: F,
    ) -> Result<Executed<A>, Error>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> R,
    {
        self.execute_with_options(id, ExecuteOptions::new(), |state: &A| {
            Ok::<R, Infallible>(decide(state))
        })
        .await
    }

    /// Like [`execute`](AsyncRepository::execute), recording `metadata` with every new
    /// event.
    pub async fn execute_with<R, E, F>(
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
            .await
    }

    /// Like [`execute`](AsyncRepository::execute), with [`ExecuteOptions`]: metadata, and
    /// an idempotency key that makes the command safe to run again; see
    /// [`Repository::execute_with_options`](super::Repository::execute_with_options).
    pub async fn execute_with_options<R, E, F>(
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
        // On the heap: the command's state machine holds the futures of every store call
        // it may make, and a caller that `block_on`s it (or nests it in a large future)
        // should not need a big stack for it. One allocation per command.
        let run = Box::pin(self.run(stream, options, decide));
        #[cfg(feature = "tracing")]
        let run = tracing::Instrument::instrument(run, crate::trace::command_span(stream));
        run.await
    }

    async fn run<R, E, F>(
        &self,
        stream: StreamRef<'_>,
        options: ExecuteOptions<'_>,
        decide: F,
    ) -> Result<Executed<A>, Error<E>>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> Result<R, E>,
    {
        let current = self.load_current(stream).await.map_err(Error::widen)?;
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
                    let found = self.store.find_idempotency_key(stream, key).await;
                    command.key_found(found)
                }
                Step::Append(expected, events) => {
                    let appended = self
                        .store
                        .append_with(stream, expected, &events, command.append_options)
                        .await;
                    command.appended(appended)
                }
            };
            match after {
                After::Done(Ok(executed)) => {
                    if let Some(snapshot) = command::due_snapshot(stream, &executed) {
                        match self.store.save_snapshot(stream, &snapshot).await {
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
                    // Rare, and as large as a load and a read: boxed, so it does not
                    // grow every command's future.
                    return Box::pin(self.duplicate(stream, outcome, command.attempts))
                        .await
                        .map_err(Error::widen);
                }
                After::Retry(pause) => {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    self.catch_up(stream, &mut command.current, u64::MAX)
                        .await
                        .map_err(Error::widen)?;
                }
            }
        }
    }

    async fn duplicate(
        &self,
        stream: StreamRef<'_>,
        outcome: AppendOutcome,
        attempts: u32,
    ) -> Result<Executed<A>, Error> {
        let versions = outcome.stream_versions();
        let before = self
            .load_up_to(stream, versions.start().saturating_sub(1))
            .await?;
        let appended = self.decoded(stream, versions).await?;
        command::duplicate(stream, outcome, before, appended, attempts)
    }

    async fn decoded(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
    ) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        let mut decode = Decode::new(stream, versions.start().saturating_sub(1));
        let read = self
            .store
            .visit_stream(stream, versions, &mut |record| decode.visit(record))
            .await;
        decode.finish(read)
    }

    /// The current state of `stream`: from the cache when it holds the stream (then only
    /// the events after the cached state are read), else loaded; the cache is updated.
    async fn load_current(&self, stream: StreamRef<'_>) -> Result<Versioned<A>, Error> {
        let Some(cache) = &self.cache else {
            return self.load_up_to(stream, u64::MAX).await;
        };
        let (state, from) = match cache.get(stream.id) {
            Some(mut state) => {
                let from = state.version;
                self.catch_up(stream, &mut state, u64::MAX).await?;
                (state, Some(from))
            }
            None => (self.load_up_to(stream, u64::MAX).await?, None),
        };
        if state.version > 0 && from != Some(state.version) {
            cache.put(stream.id, &state.state, state.version);
        }
        Ok(state)
    }

    async fn load_up_to(&self, stream: StreamRef<'_>, up_to: u64) -> Result<Versioned<A>, Error> {
        let mut loaded = match A::SNAPSHOT {
            Some(policy) => command::restore(
                stream,
                self.store
                    .load_snapshot(stream, policy.version, up_to)
                    .await,
            ),
            None => Versioned::initial(),
        };
        self.catch_up(stream, &mut loaded, up_to).await?;
        Ok(loaded)
    }

    async fn catch_up(
        &self,
        stream: StreamRef<'_>,
        state: &mut Versioned<A>,
        up_to: u64,
    ) -> Result<(), Error> {
        self.catch_up_until(stream, state, up_to, None).await
    }

    /// Applies the events of `stream` after `state.version`, up to version `up_to`,
    /// stopping at the first event recorded after `until` if given.
    async fn catch_up_until(
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
            .visit_stream(stream, versions, &mut |record| catch_up.visit(record))
            .await;
        catch_up.finish(read)?;
        crate::trace::loaded(stream, state.version, state.version - from);
        Ok(())
    }
}

impl<A, S> AsyncRepository<A, S>
where
    A: Aggregate + Clone + Send + 'static,
    A::Event: Send,
    S: AsyncEventStore,
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
