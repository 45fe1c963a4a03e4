//! [`Repository`]: load an aggregate, decide, append with an expected version, retry.

use std::marker::PhantomData;
use std::ops::Range;

use crate::aggregate::Aggregate;
use crate::decision::{self, Versioned};
use crate::envelope::{Metadata, RecordedEvent, StreamRef};
use crate::error::Error;
use crate::event::IntoEvents;
use crate::store::{EventStore, ExpectedVersion, StoreError};

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
}

/// A stored event with its typed, decoded (and upcast) form.
#[derive(Debug, Clone)]
pub struct DecodedEvent<E> {
    /// The envelope as stored, payload included.
    pub record: RecordedEvent,
    /// The decoded event, in its current shape.
    pub event: E,
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
    pub fn load(&self, id: &str) -> Result<Option<Versioned<A>>, Error> {
        let loaded = self.load_versioned(StreamRef::new(A::AGGREGATE_TYPE, id))?;
        Ok((loaded.version > 0).then_some(loaded))
    }

    /// The aggregate's events, decoded into their current shape, with their envelopes.
    pub fn history(&self, id: &str) -> Result<Vec<DecodedEvent<A::Event>>, Error> {
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        let records = self.read_stream_from(stream, 1)?;
        let mut state = Versioned::<A>::initial();
        records
            .into_iter()
            .map(|record| {
                let event = state.decode_next(stream, &record)?;
                state.version = record.stream_version;
                Ok(DecodedEvent { record, event })
            })
            .collect()
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
        self.execute_with(id, &Metadata::default(), decide)
    }

    /// Like [`execute`](Repository::execute), recording `metadata` (correlation id,
    /// causation id, free-form entries) with every new event.
    pub fn execute_with<R, E, F>(
        &self,
        id: &str,
        metadata: &Metadata,
        mut decide: F,
    ) -> Result<Executed<A>, Error<E>>
    where
        R: IntoEvents<A::Event>,
        F: FnMut(&A) -> Result<R, E>,
    {
        let stream = StreamRef::new(A::AGGREGATE_TYPE, id);
        let mut current = self.load_versioned(stream).map_err(Error::widen)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let events = decision::decide(stream, &current, &mut decide)?;
            if events.is_empty() {
                return Ok(Executed {
                    state: current.state,
                    version: current.version,
                    events,
                    global_positions: 0..0,
                    attempts,
                });
            }
            let new_events = decision::encode(stream, &events, metadata).map_err(Error::widen)?;
            let expected = ExpectedVersion::from_version(current.version);
            match self.store.append(stream, expected, &new_events) {
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
                    let newer = self
                        .read_stream_from(stream, current.version + 1)
                        .map_err(Error::widen)?;
                    current.replay(stream, &newer).map_err(Error::widen)?;
                }
                Err(source) => {
                    return Err(Error::Store {
                        stream: stream.to_key(),
                        source: Box::new(source),
                    });
                }
            }
        }
    }

    fn read_stream_from(
        &self,
        stream: StreamRef<'_>,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, Error> {
        self.store
            .read_stream(stream, from_version)
            .map_err(|source| Error::Store {
                stream: stream.to_key(),
                source: Box::new(source),
            })
    }

    fn load_versioned(&self, stream: StreamRef<'_>) -> Result<Versioned<A>, Error> {
        let records = self.read_stream_from(stream, 1)?;
        let mut loaded = Versioned::initial();
        loaded.replay(stream, &records)?;
        Ok(loaded)
    }
}
