//! The repository's error type.

use std::convert::Infallible;

use crate::codec::DecodeError;
use crate::envelope::StreamKey;
use crate::store::StoreError;

/// Why a repository call failed. `E` is the domain error a decision may return; calls that
/// run no decision (such as [`load`](crate::Repository::load)) use the default, which cannot
/// occur.
///
/// Every variant names the stream involved, and where there is one, the version and event
/// type, so a log line alone says what to look at. Large sources are boxed so that
/// `Result<T, Error<E>>` stays small on the happy path.
#[derive(Debug, thiserror::Error)]
pub enum Error<E = Infallible> {
    /// The decision rejected the command; nothing was appended.
    #[error("command rejected by {stream} at version {version}: {source}")]
    Rejected {
        /// The stream.
        stream: StreamKey,
        /// The version the decision saw.
        version: u64,
        /// The domain error the decision returned.
        #[source]
        source: E,
    },
    /// Other writers kept appending to the stream; every attempt conflicted.
    #[error(
        "concurrency conflict on {stream}: gave up after {attempts} attempts (last expected version {expected}, found {actual}); retry later or raise `Repository::with_max_retries`"
    )]
    Conflict {
        /// The stream.
        stream: StreamKey,
        /// How many times the command was decided and appended.
        attempts: u32,
        /// The version the last attempt expected.
        expected: u64,
        /// The version the store had instead.
        actual: u64,
    },
    /// A stored event could not be decoded (unknown type, newer version, failed upcast,
    /// payload that does not fit the struct).
    #[error("cannot decode event at version {version} of {stream}: {source}")]
    Decode {
        /// The stream.
        stream: StreamKey,
        /// The stream version of the event.
        version: u64,
        /// What went wrong, naming the event type (boxed to keep `Result`s small).
        #[source]
        source: Box<DecodeError>,
    },
    /// A new event could not be encoded as JSON.
    #[error("cannot encode event `{event_type}` for {stream}: {source}")]
    Encode {
        /// The stream.
        stream: StreamKey,
        /// The event type being encoded.
        event_type: &'static str,
        /// serde's message.
        #[source]
        source: serde_json::Error,
    },
    /// The store returned a stream whose versions are not contiguous from 1.
    #[error(
        "{stream} is not contiguous: expected version {expected}, read version {found} (event type `{event_type}`); the store is damaged"
    )]
    VersionGap {
        /// The stream.
        stream: StreamKey,
        /// The version that should have come next.
        expected: u64,
        /// The version that came instead.
        found: u64,
        /// The event type of the out-of-place event.
        event_type: String,
    },
    /// The event store failed.
    #[error("event store failed on {stream}: {source}")]
    Store {
        /// The stream.
        stream: StreamKey,
        /// The store's error (boxed to keep `Result`s small).
        #[source]
        source: Box<StoreError>,
    },
}

impl<E> Error<E> {
    /// The domain error, if the command was rejected.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            Self::Rejected { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The domain error, if the command was rejected; otherwise the error itself.
    pub fn into_rejection(self) -> Result<E, Self> {
        match self {
            Self::Rejected { source, .. } => Ok(source),
            other => Err(other),
        }
    }

    /// True when every attempt hit a concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

impl Error<Infallible> {
    /// Widens an error that cannot be a rejection into one of any domain error type.
    pub fn widen<E>(self) -> Error<E> {
        match self {
            Self::Rejected { source, .. } => match source {},
            Self::Conflict {
                stream,
                attempts,
                expected,
                actual,
            } => Error::Conflict {
                stream,
                attempts,
                expected,
                actual,
            },
            Self::Decode {
                stream,
                version,
                source,
            } => Error::Decode {
                stream,
                version,
                source,
            },
            Self::Encode {
                stream,
                event_type,
                source,
            } => Error::Encode {
                stream,
                event_type,
                source,
            },
            Self::VersionGap {
                stream,
                expected,
                found,
                event_type,
            } => Error::VersionGap {
                stream,
                expected,
                found,
                event_type,
            },
            Self::Store { stream, source } => Error::Store { stream, source },
        }
    }
}
