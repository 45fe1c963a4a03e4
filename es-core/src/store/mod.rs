//! The [`EventStore`] trait that every backend implements, and the in-memory backend.

#[cfg(feature = "async")]
mod asynchronous;
mod fast_hash;
mod head;
mod memory;
mod snapshot;

use std::fmt;
use std::ops::{ControlFlow, Range, RangeInclusive};

#[cfg(feature = "async")]
pub use asynchronous::{AsyncEventStore, AsyncVisitor};
pub use memory::InMemoryStore;
pub use snapshot::Snapshot;

use head::HeadSearch;

use crate::envelope::{EventRecord, NewEvent, RecordedEvent, StreamKey, StreamRef};

/// What the appender believes about the stream's current version.
///
/// A store checks this atomically with the append: if it does not hold, nothing is written
/// and [`StoreError::Conflict`] is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's current version must be exactly this. `Exact(0)` means the stream does
    /// not exist, like [`NoStream`](ExpectedVersion::NoStream).
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation that holds exactly when the stream is at `version` (0: no stream).
    pub fn from_version(version: u64) -> Self {
        if version == 0 {
            Self::NoStream
        } else {
            Self::Exact(version)
        }
    }

    /// Whether a stream at `current` (0: no stream) satisfies this expectation.
    pub fn is_satisfied_by(self, current: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current == 0,
            Self::StreamExists => current > 0,
            Self::Exact(expected) => current == expected,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream | Self::Exact(0) => f.write_str("no stream"),
            Self::StreamExists => f.write_str("an existing stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Formats a current stream version, where 0 means the stream does not exist.
struct Current(u64);

impl fmt::Display for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("no stream"),
            v => write!(f, "version {v}"),
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append (its last event's version; 0: no stream).
    pub stream_version: u64,
    /// The global positions given to the appended events, in order (empty for an empty batch).
    pub global_positions: Range<u64>,
    /// True when the append carried an idempotency key that was already committed on the
    /// stream: nothing was written, and the other fields describe the original append.
    pub duplicate: bool,
}

impl AppendOutcome {
    /// The stream versions of the appended events (empty for an empty batch, or for an
    /// outcome whose fields do not describe an append).
    pub fn stream_versions(&self) -> RangeInclusive<u64> {
        let count = self
            .global_positions
            .end
            .saturating_sub(self.global_positions.start);
        match (self.stream_version + 1).checked_sub(count) {
            Some(first) if count > 0 => first..=self.stream_version,
            // An empty inclusive range: its start is past its end on purpose.
            #[allow(clippy::reversed_empty_ranges)]
            _ => 1..=0,
        }
    }
}

/// Options of one append; see [`EventStore::append_with`].
///
/// ```
/// use es_core::AppendOptions;
/// let options = AppendOptions::new().idempotency_key("cmd-42");
/// assert_eq!(options.idempotency_key, Some("cmd-42"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendOptions<'a> {
    /// A caller-chosen key naming the command that produced the batch (for example the
    /// request id a client sent). A store keeps the keys of committed appends per stream:
    /// an append whose key is already committed on its stream writes nothing and returns
    /// the original outcome, with [`AppendOutcome::duplicate`] set, whatever its expected
    /// version. That makes an append safe to retry after an error that left its fate
    /// unknown (a connection lost during `COMMIT`). At most 256 bytes, no NUL.
    pub idempotency_key: Option<&'a str>,
}

impl<'a> AppendOptions<'a> {
    /// No options: a plain append.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: &'a str) -> Self {
        self.idempotency_key = Some(key);
        self
    }
}

/// The longest idempotency key a store accepts, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// What a visitor of stored events tells the store: go on, or stop reading.
pub type Visit = ControlFlow<()>;

/// The visitor a store calls with each stored event, in order. It borrows the event from
/// the store (nothing is copied) and must not call back into the same store.
pub type Visitor<'v> = dyn FnMut(&EventRecord<'_>) -> Visit + 'v;

/// An event store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The expected version did not hold; nothing was written.
    #[error(
        "concurrency conflict on {stream}: expected {expected}, found {found}; reload the stream and decide again",
        found = Current(*actual)
    )]
    Conflict {
        /// The stream.
        stream: StreamKey,
        /// What the appender expected.
        expected: ExpectedVersion,
        /// The stream's actual version (0: no stream).
        actual: u64,
    },
    /// A stored event could not be read back (e.g. its metadata is not valid JSON). The
    /// global log can be read past it with
    /// [`visit_all`](EventStore::visit_all)`(global_position + 1, ..)`.
    #[error(
        "stored event at version {version} of {stream} (event type `{event_type}`, global position {global_position}) is corrupt: {reason}"
    )]
    Corrupt {
        /// The stream.
        stream: StreamKey,
        /// The stream version of the bad event (0 if that column is what is unreadable).
        version: u64,
        /// The global position of the bad event (0 if that column is what is unreadable).
        global_position: u64,
        /// The stored event type of the bad event.
        event_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// What the store keeps about a whole stream is inconsistent (e.g. a negative version
    /// counter), so no single event is at fault.
    #[error("the stored state of {stream} is corrupt: {reason}")]
    CorruptStream {
        /// The stream.
        stream: StreamKey,
        /// What is wrong.
        reason: String,
    },
    /// The request cannot be stored as given (an event that could not be read back, an id
    /// the backend cannot hold, a repeated event id); nothing of the batch was written.
    #[error("invalid request for {stream}: {reason}")]
    Invalid {
        /// The stream.
        stream: StreamKey,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend failed (I/O, connection, SQL).
    #[error("event store backend failed: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(error.into())
    }

    /// The conflict error for `stream`.
    pub fn conflict(stream: StreamRef<'_>, expected: ExpectedVersion, actual: u64) -> Self {
        Self::Conflict {
            stream: stream.to_key(),
            expected,
            actual,
        }
    }

    /// True for [`StoreError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// The global position of the corrupt event this error is about, if it is one: reading
    /// the global log can go on from the position after it.
    pub fn corrupt_position(&self) -> Option<u64> {
        match self {
            Self::Corrupt {
                global_position, ..
            } if *global_position > 0 => Some(*global_position),
            _ => None,
        }
    }
}

/// Durable (or not) storage of event streams and the global log.
///
/// The store is untyped: it keeps envelopes with JSON payloads, so one store holds streams of
/// many aggregate types and can feed read models from one global, ordered log. Every
/// implementation must behave the same; the `es-store-tests` conformance suite proves it.
///
/// * Streams are keyed by `(aggregate_type, id)`.
/// * [`append_with`](EventStore::append_with) is atomic: the whole batch is stored with
///   contiguous stream versions, or nothing is, and the expected version is checked in the
///   same step. Event ids are unique store-wide. An event that could not be read back (see
///   [`validate_batch`](crate::backend::validate_batch)) is refused, with the whole batch.
/// * An append with an idempotency key already committed on its stream writes nothing and
///   returns the original outcome.
/// * Global positions are strictly increasing in commit order, and a reader of the global log
///   never skips an event that commits after it read (no gaps that fill in later).
/// * Reads hand each event to a visitor as it is read, borrowed: a store never has to hold a
///   whole stream in memory, and nothing is copied that the reader does not keep.
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` if `expected` holds, atomically, with `options`.
    ///
    /// An empty batch writes nothing but still checks `expected` (and records no key).
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError>;

    /// The outcome of the append to `stream` that carried `idempotency_key`, if one was
    /// committed.
    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError>;

    /// Calls `visitor` with each event of `stream` whose stream version is in `versions`,
    /// in order, until it returns [`ControlFlow::Break`]. A stream that does not exist
    /// reads as empty.
    ///
    /// A corrupt stored event ends the read with [`StoreError::Corrupt`] after the events
    /// before it were visited.
    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError>;

    /// Calls `visitor` with up to `limit` events of the global log with a position
    /// `>= from_position`, in order, until it returns [`ControlFlow::Break`].
    ///
    /// A corrupt stored event ends the read with [`StoreError::Corrupt`], which names its
    /// global position, after the events before it were visited; call again from the
    /// position after it to read on.
    fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError>;

    /// The current version of `stream` (0: it does not exist).
    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError>;

    /// Appends `events` to `stream` if `expected` holds, atomically, without options.
    fn append(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        self.append_with(stream, expected, events, AppendOptions::default())
    }

    /// The events of `stream` with a stream version `>= from_version`, in order, owned.
    ///
    /// Convenient for tests and tools; loading an aggregate uses
    /// [`visit_stream`](EventStore::visit_stream) and copies nothing.
    fn read_stream(
        &self,
        stream: StreamRef<'_>,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::new();
        let mut failure = None;
        self.visit_stream(stream, from_version..=u64::MAX, &mut |record| {
            collect(record, &mut events, &mut failure)
        })?;
        failure.map_or(Ok(events), Err)
    }

    /// Up to `limit` events of the global log with a position `>= from_position`, in
    /// order, owned.
    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::new();
        let mut failure = None;
        self.visit_all(from_position, limit, &mut |record| {
            collect(record, &mut events, &mut failure)
        })?;
        failure.map_or(Ok(events), Err)
    }

    /// Calls `visitor` with up to `limit` events of the global log with a position
    /// `>= from_position` whose aggregate type is `aggregate_type` and whose event type is
    /// one of `event_types`, in global order, until it returns [`ControlFlow::Break`].
    ///
    /// es's stores filter in the store (SQLite and PostgreSQL with an index on aggregate
    /// type, event type and global position), so a query reads only matching events. This
    /// provided version pages through [`visit_all`](EventStore::visit_all) and filters:
    /// correct for any store, but it reads the whole log from `from_position`; a store
    /// that can filter should override it.
    fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let mut next = from_position;
        let mut remaining = limit;
        while remaining > 0 {
            let (mut read, mut stopped) = (0usize, false);
            self.visit_all(next, BY_TYPE_PAGE, &mut |record| {
                read += 1;
                next = record.global_position.saturating_add(1);
                if record.stream.aggregate_type == aggregate_type
                    && event_types.contains(&record.event_type)
                {
                    remaining -= 1;
                    if visitor(record).is_break() || remaining == 0 {
                        stopped = true;
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })?;
            if stopped || read < BY_TYPE_PAGE {
                break;
            }
        }
        Ok(())
    }

    /// The global position of the last event of the log (0: it is empty), as far as
    /// [`visit_all`](EventStore::visit_all) hands the log out (PostgreSQL stops below
    /// appends still in flight): for progress reports and lag. This provided version finds
    /// it with O(log n) one-event reads.
    fn head_position(&self) -> Result<u64, StoreError> {
        let mut search = HeadSearch::default();
        while let Some(from) = search.next_probe() {
            let mut found = None;
            self.visit_all(from, 1, &mut |record| {
                found = Some(record.global_position);
                ControlFlow::Break(())
            })?;
            search.found(found);
        }
        Ok(search.head())
    }

    /// Keeps `snapshot` of `stream`, replacing one at the same stream version.
    ///
    /// A store that keeps no snapshots does nothing (this provided version); es's own
    /// stores all keep them. Taking a snapshot is never part of an append: it may fail, or
    /// be lost, without harm.
    fn save_snapshot(&self, stream: StreamRef<'_>, snapshot: &Snapshot) -> Result<(), StoreError> {
        let _ = (stream, snapshot);
        Ok(())
    }

    /// The snapshot of `stream` with snapshot version `snapshot_version` and the highest
    /// stream version `<= at_most`, if the store keeps one.
    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let _ = (stream, snapshot_version, at_most);
        Ok(None)
    }

    /// Deletes the snapshots of `stream` but the `keep` latest (of any snapshot version);
    /// returns how many it deleted.
    fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        let _ = (stream, keep);
        Ok(0)
    }
}

/// How many events the provided [`EventStore::visit_by_type`] reads per page.
const BY_TYPE_PAGE: usize = 512;

/// Copies one visited event into `events`, or records why it could not be copied.
fn collect(
    record: &EventRecord<'_>,
    events: &mut Vec<RecordedEvent>,
    failure: &mut Option<StoreError>,
) -> Visit {
    match record.to_recorded() {
        Ok(event) => {
            events.push(event);
            ControlFlow::Continue(())
        }
        Err(error) => {
            *failure = Some(error);
            ControlFlow::Break(())
        }
    }
}

/// Implements [`EventStore`] for a pointer to a store by forwarding every call.
macro_rules! forward_event_store {
    ($($pointer:ty),+) => {$(
        impl<S: EventStore + ?Sized> EventStore for $pointer {
            fn append_with(
                &self,
                stream: StreamRef<'_>,
                expected: ExpectedVersion,
                events: &[NewEvent],
                options: AppendOptions<'_>,
            ) -> Result<AppendOutcome, StoreError> {
                (**self).append_with(stream, expected, events, options)
            }
            fn find_idempotency_key(
                &self,
                stream: StreamRef<'_>,
                idempotency_key: &str,
            ) -> Result<Option<AppendOutcome>, StoreError> {
                (**self).find_idempotency_key(stream, idempotency_key)
            }
            fn visit_stream(
                &self,
                stream: StreamRef<'_>,
                versions: RangeInclusive<u64>,
                visitor: &mut Visitor<'_>,
            ) -> Result<(), StoreError> {
                (**self).visit_stream(stream, versions, visitor)
            }
            fn visit_all(
                &self,
                from_position: u64,
                limit: usize,
                visitor: &mut Visitor<'_>,
            ) -> Result<(), StoreError> {
                (**self).visit_all(from_position, limit, visitor)
            }
            fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
                (**self).stream_version(stream)
            }
            fn visit_by_type(
                &self,
                aggregate_type: &str,
                event_types: &[&str],
                from_position: u64,
                limit: usize,
                visitor: &mut Visitor<'_>,
            ) -> Result<(), StoreError> {
                (**self).visit_by_type(aggregate_type, event_types, from_position, limit, visitor)
            }
            fn head_position(&self) -> Result<u64, StoreError> {
                (**self).head_position()
            }
            fn save_snapshot(
                &self,
                stream: StreamRef<'_>,
                snapshot: &Snapshot,
            ) -> Result<(), StoreError> {
                (**self).save_snapshot(stream, snapshot)
            }
            fn load_snapshot(
                &self,
                stream: StreamRef<'_>,
                snapshot_version: u32,
                at_most: u64,
            ) -> Result<Option<Snapshot>, StoreError> {
                (**self).load_snapshot(stream, snapshot_version, at_most)
            }
            fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
                (**self).prune_snapshots(stream, keep)
            }
        }
    )+};
}

forward_event_store!(&S, std::sync::Arc<S>, Box<S>);
