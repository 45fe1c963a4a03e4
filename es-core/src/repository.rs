//! [`Repository`]: load an aggregate, decide, append with an expected version, retry.

use std::marker::PhantomData;
use std::ops::{ControlFlow, Range, RangeInclusive};

use crate::aggregate::Aggregate;
use crate::decision::{self, Versioned};
use crate::envelope::{Metadata, RecordedEvent, StreamRef};
use crate::error::Error;
use crate::event::IntoEvents;
use crate::store::{AppendOptions, AppendOutcome, EventStore, ExpectedVersion, StoreError};

/// The default number of times a command is re-decided after a concurrency conflict.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// Loads aggregates of type `A` from a store and runs commands against them.
///
/// A command is a closure that looks at the current state and returns the events to record
/// (or a domain error). [`execute`](Repository::execute) loads the stream, runs the closure,
/// and appends its events atomically with the version it loaded as the expected version. If
/// another writer got there first, the stream is reloaded and the closure runs again, up to
/// [`with_max_retries`](Repository::with_max_retries) times.
///
/// Cheap to clone when the store is; `Send + Sync` when the store is.
#[derive(Debug)]
pub struct Repository<A, S> {
    store: S,
    max_retries: u32,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            max_retries: self.max_retries,
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
    /// A repository over `store`, retrying conflicts [`DEFAULT_MAX_RETRIES`] times.
    pub fn new(store: S) -> Self {
        Self {
            store,
            max_retries: DEFAULT_MAX_RETRIES,
            _aggregate: PhantomData,
        }
    }

    /// Sets how many times a command is re-decided after a concurrency conflict (0: never).
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
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
        let loaded = self.load_up_to(StreamRef::new(A::AGGREGATE_TYPE, id), u64::MAX)?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate's events, decoded into their current shape, with their envelopes.
    pub fn history(&self, id: &str) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
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
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        let default_metadata = Metadata::new();
        let metadata = options.metadata.unwrap_or(&default_metadata);
        let append_options = AppendOptions {
            idempotency_key: options.idempotency_key,
            ..AppendOptions::default()
        };
        let mut current = self.load_up_to(stream, u64::MAX).map_err(Error::widen)?;
        let mut attempts = 0;
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
                    if attempts > self.max_retries {
                        return Err(Error::Conflict {
                            stream: stream.to_key(),
                            attempts,
                            expected: current.version,
                            actual,
                        });
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
        let mut expected = Versioned::<A>::initial();
        expected.version = versions.start().saturating_sub(1);
        let mut failure = None;
        self.store
            .visit_stream(stream, versions, &mut |record| {
                let result = expected.decode_next(stream, record).and_then(|event| {
                    let record = record.to_recorded().map_err(|e| {
                        store_error(
                            stream,
                            StoreError::Corrupt {
                                stream: stream.to_key(),
                                version: record.stream_version,
                                global_position: record.global_position,
                                event_type: record.event_type.to_owned(),
                                reason: format!("metadata is not valid: {e}"),
                            },
                        )
                    })?;
                    Ok(DecodedEvent { record, event })
                });
                match result {
                    Ok(event) => {
                        expected.version = event.record.stream_version;
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
