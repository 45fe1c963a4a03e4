//! What the sync and the async repository share: one command's way through decide, append
//! and retry as a state machine that does no I/O, and the visitors that fold a stream into
//! a state. Each repository only does the I/O each step asks for, in its own way (blocking
//! or `.await`), so the logic is written once.

use std::ops::{Bound, ControlFlow, RangeBounds, RangeInclusive};
use std::time::{Duration, SystemTime};

use super::retry::{RetryPolicy, Retrying};
use super::{DecodedEvent, ExecuteOptions, Executed};
use crate::aggregate::Aggregate;
use crate::decision::{self, Versioned};
use crate::envelope::{EventRecord, Metadata, NewEvent, StreamRef};
use crate::error::Error;
use crate::event::IntoEvents;
use crate::store::{AppendOptions, AppendOutcome, ExpectedVersion, Snapshot, StoreError, Visit};

/// What a [`Command`] needs done next.
pub(super) enum Step<A: Aggregate, E> {
    /// Append these events expecting this version, then report with
    /// [`Command::appended`].
    Append(ExpectedVersion, Vec<NewEvent>),
    /// The decision recorded nothing (or was rejected), and the command carries an
    /// idempotency key: look it up, then report with [`Command::key_found`].
    FindKey,
    /// The command is over.
    Done(Result<Executed<A>, Error<E>>),
}

/// What a [`Command`] needs done after an append or a key lookup.
pub(super) enum After<A: Aggregate, E> {
    /// The command is over.
    Done(Result<Executed<A>, Error<E>>),
    /// The command's idempotency key was committed by this earlier append: read it back
    /// ([`duplicate`]) and return that.
    Duplicate(AppendOutcome),
    /// A conflict: pause this long (if not zero), catch [`Command::current`] up with the
    /// stream, then [`decide`](Command::decide) again.
    Retry(Duration),
}

/// One command: load, decide, append with the loaded version as the expected one, and on
/// a conflict catch up and decide again as the retry policy allows.
pub(super) struct Command<'a, A: Aggregate, E, F> {
    pub(super) stream: StreamRef<'a>,
    metadata: &'a Metadata,
    pub(super) append_options: AppendOptions<'a>,
    policy: RetryPolicy,
    /// The state the next decision sees.
    pub(super) current: Versioned<A>,
    pub(super) attempts: u32,
    retrying: Option<Retrying>,
    decide: F,
    /// The events of the append in flight, or the result of a decision that appends
    /// nothing, kept while its idempotency key is looked up.
    decided: Result<Vec<A::Event>, Error<E>>,
}

impl<'a, A, E, R, F> Command<'a, A, E, F>
where
    A: Aggregate,
    R: IntoEvents<A::Event>,
    F: FnMut(&A) -> Result<R, E>,
{
    pub(super) fn new(
        stream: StreamRef<'a>,
        options: ExecuteOptions<'a>,
        default_metadata: &'a Metadata,
        policy: RetryPolicy,
        current: Versioned<A>,
        decide: F,
    ) -> Self {
        Self {
            stream,
            metadata: options.metadata.unwrap_or(default_metadata),
            append_options: AppendOptions {
                idempotency_key: options.idempotency_key,
                ..AppendOptions::default()
            },
            policy,
            current,
            attempts: 0,
            retrying: None,
            decide,
            decided: Ok(Vec::new()),
        }
    }

    /// Runs the decision on the current state.
    pub(super) fn decide(&mut self) -> Step<A, E> {
        self.attempts += 1;
        let decided = decision::decide(self.stream, &self.current, &mut self.decide);
        match decided {
            Ok(events) if !events.is_empty() => {
                match decision::encode(self.stream, &events, self.metadata) {
                    Ok(new_events) => {
                        self.decided = Ok(events);
                        let expected = ExpectedVersion::from_version(self.current.version);
                        Step::Append(expected, new_events)
                    }
                    Err(error) => Step::Done(Err(error.widen())),
                }
            }
            // A command that decides nothing (or is rejected) now may have been committed
            // by an earlier run whose reply was lost: say so if it was.
            decided => {
                self.decided = decided;
                if self.append_options.idempotency_key.is_some() {
                    Step::FindKey
                } else {
                    Step::Done(self.finish_without_append())
                }
            }
        }
    }

    /// The idempotency key lookup after a decision that appends nothing.
    pub(super) fn key_found(
        &mut self,
        found: Result<Option<AppendOutcome>, StoreError>,
    ) -> After<A, E> {
        match found {
            Ok(Some(outcome)) => After::Duplicate(outcome),
            Ok(None) => After::Done(self.finish_without_append()),
            Err(source) => After::Done(Err(store_error(self.stream, source))),
        }
    }

    /// The outcome of the append [`decide`](Command::decide) asked for.
    pub(super) fn appended(&mut self, result: Result<AppendOutcome, StoreError>) -> After<A, E> {
        match result {
            Ok(outcome) if outcome.duplicate => After::Duplicate(outcome),
            Ok(outcome) => {
                let events = std::mem::replace(&mut self.decided, Ok(Vec::new()));
                let events = events.unwrap_or_default();
                for event in &events {
                    self.current.state.apply(event);
                }
                self.current.version = outcome.stream_version;
                crate::trace::appended(
                    self.stream,
                    outcome.stream_version,
                    events.len(),
                    self.attempts,
                );
                After::Done(Ok(Executed {
                    state: std::mem::take(&mut self.current.state),
                    version: outcome.stream_version,
                    events,
                    global_positions: outcome.global_positions,
                    attempts: self.attempts,
                    duplicate: false,
                }))
            }
            Err(StoreError::Conflict { actual, .. }) => {
                let retrying = self.retrying.get_or_insert_with(Retrying::start);
                let pause = self.policy.next_pause(self.attempts, retrying);
                crate::trace::conflict(
                    self.stream,
                    self.current.version,
                    actual,
                    self.attempts,
                    pause,
                );
                match pause {
                    Some(pause) => After::Retry(pause),
                    None => After::Done(Err(Error::Conflict {
                        stream: self.stream.to_key(),
                        attempts: self.attempts,
                        expected: self.current.version,
                        actual,
                    })),
                }
            }
            Err(source) => After::Done(Err(store_error(self.stream, source))),
        }
    }

    /// The result of a decision that appended nothing: the state as loaded, or the
    /// rejection.
    fn finish_without_append(&mut self) -> Result<Executed<A>, Error<E>> {
        let events = std::mem::replace(&mut self.decided, Ok(Vec::new()))?;
        Ok(Executed {
            state: std::mem::take(&mut self.current.state),
            version: self.current.version,
            events,
            global_positions: 0..0,
            attempts: self.attempts,
            duplicate: false,
        })
    }
}

/// The result of a command whose idempotency key was already committed, from the state
/// before that append (`before`) and its events (`appended`, decoded).
pub(super) fn duplicate<A: Aggregate>(
    stream: StreamRef<'_>,
    outcome: AppendOutcome,
    mut before: Versioned<A>,
    appended: Vec<DecodedEvent<A::Event>>,
    attempts: u32,
) -> Result<Executed<A>, Error> {
    let versions = outcome.stream_versions();
    let mut events = Vec::with_capacity(appended.len());
    for entry in appended {
        before.state.apply(&entry.event);
        before.version = entry.record.stream_version;
        events.push(entry.event);
    }
    // The store's record of the key must match the stream: otherwise say so rather than
    // return an outcome whose state, version and events disagree.
    if versions.is_empty() || before.version != outcome.stream_version {
        return Err(store_error(
            stream,
            StoreError::CorruptStream {
                stream: stream.to_key(),
                reason: format!(
                    "the idempotency key's record says the append ended at version {} with global positions {:?}, but the stream holds versions up to {} there",
                    outcome.stream_version, outcome.global_positions, before.version
                ),
            },
        ));
    }
    crate::trace::duplicate(stream, outcome.stream_version, attempts);
    Ok(Executed {
        state: before.state,
        version: outcome.stream_version,
        events,
        global_positions: outcome.global_positions,
        attempts,
        duplicate: true,
    })
}

/// `versions` (any range of stream versions) as the inclusive range a store reads, with
/// its start at least 1.
pub(super) fn version_range(versions: impl RangeBounds<u64>) -> RangeInclusive<u64> {
    let start = match versions.start_bound() {
        Bound::Included(&v) => v.max(1),
        Bound::Excluded(&v) => v.saturating_add(1).max(1),
        Bound::Unbounded => 1,
    };
    let end = match versions.end_bound() {
        Bound::Included(&v) => v,
        Bound::Excluded(&v) => v.saturating_sub(1),
        Bound::Unbounded => u64::MAX,
    };
    start..=end
}

/// The versions to read to catch `state` up to version `up_to`.
pub(super) fn catch_up_range<A>(state: &Versioned<A>, up_to: u64) -> RangeInclusive<u64> {
    state.version + 1..=up_to
}

/// Applies each visited event to a state, checking that versions follow on.
pub(super) struct CatchUp<'s, 'a, A> {
    stream: StreamRef<'a>,
    state: &'s mut Versioned<A>,
    /// Stop at the first event recorded after this time.
    until: Option<SystemTime>,
    failure: Option<Error>,
}

impl<'s, 'a, A: Aggregate> CatchUp<'s, 'a, A> {
    pub(super) fn new(stream: StreamRef<'a>, state: &'s mut Versioned<A>) -> Self {
        Self {
            stream,
            state,
            until: None,
            failure: None,
        }
    }

    /// Stops at the first event recorded after `until`.
    pub(super) fn until(mut self, until: SystemTime) -> Self {
        self.until = Some(until);
        self
    }

    pub(super) fn visit(&mut self, record: &EventRecord<'_>) -> Visit {
        if self.until.is_some_and(|until| record.recorded_at > until) {
            return ControlFlow::Break(());
        }
        match self.state.apply_record(self.stream, record) {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => {
                self.failure = Some(error);
                ControlFlow::Break(())
            }
        }
    }

    /// The outcome of the read, given what the store returned.
    pub(super) fn finish(self, read: Result<(), StoreError>) -> Result<(), Error> {
        read.map_err(|source| store_error(self.stream, source))?;
        self.failure.map_or(Ok(()), Err)
    }
}

/// Decodes each visited event and keeps it with its envelope.
pub(super) struct Decode<'a, Ev> {
    stream: StreamRef<'a>,
    version: u64,
    decoded: Vec<DecodedEvent<Ev>>,
    failure: Option<Error>,
}

impl<'a, Ev: crate::EventEnum> Decode<'a, Ev> {
    /// Decodes the events after version `after`.
    pub(super) fn new(stream: StreamRef<'a>, after: u64) -> Self {
        Self {
            stream,
            version: after,
            decoded: Vec::new(),
            failure: None,
        }
    }

    pub(super) fn visit(&mut self, record: &EventRecord<'_>) -> Visit {
        let stream = self.stream;
        let result = decision::decode_after(stream, self.version, record).and_then(|event| {
            let record = record.to_recorded().map_err(|e| store_error(stream, e))?;
            Ok(DecodedEvent { record, event })
        });
        match result {
            Ok(event) => {
                self.version = event.record.stream_version;
                self.decoded.push(event);
                ControlFlow::Continue(())
            }
            Err(error) => {
                self.failure = Some(error);
                ControlFlow::Break(())
            }
        }
    }

    /// The decoded events, given what the store returned.
    pub(super) fn finish(
        self,
        read: Result<(), StoreError>,
    ) -> Result<Vec<DecodedEvent<Ev>>, Error> {
        read.map_err(|source| store_error(self.stream, source))?;
        self.failure.map_or(Ok(self.decoded), Err)
    }
}

/// A store error on `stream`, as the repository reports it.
pub(super) fn store_error<E>(stream: StreamRef<'_>, cause: StoreError) -> Error<E> {
    Error::Store {
        stream: stream.to_key(),
        cause: Box::new(cause),
    }
}

/// The state a load of `stream` starts from, given what the store found for the
/// aggregate's snapshot version: the snapshot's state at its version, or the initial state
/// when there is none or it cannot be used (it fails to decode, or the store failed to
/// read it). A snapshot is only a shortcut, so nothing here is an error: the events after
/// the start are applied either way.
pub(super) fn restore<A: Aggregate>(
    stream: StreamRef<'_>,
    found: Result<Option<Snapshot>, StoreError>,
) -> Versioned<A> {
    match found {
        Ok(Some(snapshot)) => match A::from_snapshot(snapshot.state.get()) {
            Some(Ok(state)) => Versioned {
                state,
                version: snapshot.stream_version,
            },
            Some(Err(error)) => {
                crate::trace::snapshot_unusable(stream, snapshot.stream_version, &error);
                Versioned::initial()
            }
            None => Versioned::initial(),
        },
        Ok(None) => Versioned::initial(),
        Err(error) => {
            crate::trace::snapshot_unusable(stream, 0, &error);
            Versioned::initial()
        }
    }
}

/// The snapshot to save after `executed`, if its append crossed the aggregate's snapshot
/// threshold (and its state serializes; a state that does not is reported, not saved).
pub(super) fn due_snapshot<A: Aggregate>(
    stream: StreamRef<'_>,
    executed: &Executed<A>,
) -> Option<Snapshot> {
    let policy = A::SNAPSHOT?;
    if executed.duplicate || executed.events.is_empty() {
        return None;
    }
    let before = executed
        .version
        .saturating_sub(executed.events.len() as u64);
    if !policy.is_due(before, executed.version) {
        return None;
    }
    match executed.state.to_snapshot()? {
        Ok(state) => Some(Snapshot::new(executed.version, policy.version, state)),
        Err(error) => {
            crate::trace::snapshot_not_saved(stream, executed.version, &error);
            None
        }
    }
}

/// Decodes each visited event of a query across streams with `decode`, keeping it with
/// its envelope.
pub(super) struct Across<T, F> {
    decode: F,
    events: Vec<DecodedEvent<T>>,
    failure: Option<Error>,
}

impl<T, F: FnMut(&EventRecord<'_>) -> Result<T, crate::DecodeError>> Across<T, F> {
    pub(super) fn new(decode: F) -> Self {
        Self {
            decode,
            events: Vec::new(),
            failure: None,
        }
    }

    pub(super) fn visit(&mut self, record: &EventRecord<'_>) -> Visit {
        let decoded = (self.decode)(record)
            .map_err(|cause| Error::Decode {
                stream: record.stream.to_key(),
                version: record.stream_version,
                cause: Box::new(cause),
            })
            .and_then(|event| {
                let envelope = record
                    .to_recorded()
                    .map_err(|e| store_error(record.stream, e))?;
                Ok(DecodedEvent {
                    record: envelope,
                    event,
                })
            });
        match decoded {
            Ok(event) => {
                self.events.push(event);
                ControlFlow::Continue(())
            }
            Err(error) => {
                self.failure = Some(error);
                ControlFlow::Break(())
            }
        }
    }

    /// The decoded events, given what the store returned; a store error is reported on
    /// the aggregate type's streams.
    pub(super) fn finish(
        self,
        aggregate_type: &str,
        read: Result<(), StoreError>,
    ) -> Result<Vec<DecodedEvent<T>>, Error> {
        read.map_err(|source| store_error(StreamRef::new(aggregate_type, "*"), source))?;
        self.failure.map_or(Ok(self.events), Err)
    }
}

/// The stored names of event `T`: its event type and its aliases.
pub(super) fn stored_names<T: crate::Event>() -> Vec<&'static str> {
    let mut names = Vec::with_capacity(1 + T::ALIASES.len());
    names.push(T::EVENT_TYPE);
    names.extend_from_slice(T::ALIASES);
    names
}
