//! The [`EventStore`] trait that every backend implements, and the in-memory backend.

mod memory;

use std::fmt;
use std::ops::Range;

pub use memory::InMemoryStore;

use crate::envelope::{NewEvent, RecordedEvent, StreamKey, StreamRef};

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
}

/// An event store failed.
#[derive(Debug, thiserror::Error)]
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
    /// A stored row could not be read back (e.g. its payload is not valid JSON).
    #[error(
        "stored event at version {version} of {stream} (event type `{event_type}`) is corrupt: {reason}"
    )]
    Corrupt {
        /// The stream.
        stream: StreamKey,
        /// The stream version of the bad row.
        version: u64,
        /// The stored event type of the bad row.
        event_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request cannot be stored as given (e.g. an id the backend cannot hold).
    #[error("invalid request for {stream}: {reason}")]
    Invalid {
        /// The stream.
        stream: StreamKey,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend failed (I/O, connection, SQL).
    #[error("event store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
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
}

/// Durable (or not) storage of event streams and the global log.
///
/// The store is untyped: it keeps envelopes with JSON payloads, so one store holds streams of
/// many aggregate types and can feed read models from one global, ordered log. Every
/// implementation must behave the same; the workspace's conformance suite proves it for each.
///
/// * Streams are keyed by `(aggregate_type, id)`.
/// * [`append`](EventStore::append) is atomic: the whole batch is stored with contiguous
///   stream versions, or nothing is, and the expected version is checked in the same step.
/// * Global positions are strictly increasing in commit order, and a reader of the global log
///   never skips an event that commits after it read (no gaps that fill in later).
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` if `expected` holds, atomically.
    ///
    /// An empty batch writes nothing but still checks `expected`.
    fn append(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError>;

    /// Reads the events of `stream` with a stream version `>= from_version`, in order.
    /// A stream that does not exist reads as empty.
    fn read_stream(
        &self,
        stream: StreamRef<'_>,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events of the global log with a position `>= from_position`, in
    /// order.
    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The current version of `stream` (0: it does not exist).
    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError>;
}

/// Implements [`EventStore`] for a pointer to a store by forwarding every call.
macro_rules! forward_event_store {
    ($($pointer:ty),+) => {$(
        impl<S: EventStore + ?Sized> EventStore for $pointer {
            fn append(
                &self,
                stream: StreamRef<'_>,
                expected: ExpectedVersion,
                events: &[NewEvent],
            ) -> Result<AppendOutcome, StoreError> {
                (**self).append(stream, expected, events)
            }
            fn read_stream(
                &self,
                stream: StreamRef<'_>,
                from_version: u64,
            ) -> Result<Vec<RecordedEvent>, StoreError> {
                (**self).read_stream(stream, from_version)
            }
            fn read_all(
                &self,
                from_position: u64,
                limit: usize,
            ) -> Result<Vec<RecordedEvent>, StoreError> {
                (**self).read_all(from_position, limit)
            }
            fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
                (**self).stream_version(stream)
            }
        }
    )+};
}

forward_event_store!(&S, std::sync::Arc<S>, Box<S>);
