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
///
/// # Mixing `load` and `execute` in one function
///
/// `load`, `history` and [`execute_infallible`](crate::Repository::execute_infallible)
/// return `Error<Infallible>`, `execute` returns `Error<YourError>`. In a function that
/// returns `Box<dyn std::error::Error>` (or `anyhow::Error`), `?` takes both as they are. In
/// one that returns `Error<YourError>`, turn the former into the latter with
/// [`widen`](Error::widen): `repo.load(id).map_err(Error::widen)?`. (A `From` impl cannot
/// do it for `?`: `impl<E> From<Error<Infallible>> for Error<E>` overlaps the standard
/// `impl<T> From<T> for T` where `E` is `Infallible`, and making `load` generic over `E`
/// leaves `E` uninferable wherever the error goes to `Box<dyn Error>` or `unwrap`.)
///
/// ```
/// use es_core::{Aggregate, Error, Event, InMemoryStore, Repository, applies};
/// use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # struct Deposited { amount: u64 }
/// # #[derive(Debug, Default, Aggregate)]
/// # struct Account { balance: u64 }
/// # #[applies]
/// # impl Account { fn deposited(&mut self, e: &Deposited) { self.balance += e.amount; } }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the account is empty")]
/// struct Empty;
///
/// /// Doubles the balance, if there is one; returns the balance before.
/// fn double(repo: &Repository<Account, InMemoryStore>, id: &str) -> Result<u64, Error<Empty>> {
///     let before = repo.load(id).map_err(Error::widen)?.map_or(0, |acc| acc.state.balance);
///     repo.execute(id, |acc| {
///         if acc.balance == 0 { Err(Empty) } else { Ok(Deposited { amount: acc.balance }) }
///     })?;
///     Ok(before)
/// }
///
/// let repo = Repository::<Account, _>::new(InMemoryStore::new());
/// assert!(double(&repo, "acc-1").unwrap_err().rejection().is_some());
/// repo.execute_infallible("acc-1", |_| Deposited { amount: 3 })?;
/// assert_eq!(double(&repo, "acc-1")?, 3);
/// assert_eq!(repo.load("acc-1")?.map(|acc| acc.state.balance), Some(6));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E = Infallible> {
    /// The decision rejected the command; nothing was appended.
    #[error("command rejected by {stream} at version {version}: {cause}")]
    Rejected {
        /// The stream.
        stream: StreamKey,
        /// The version the decision saw.
        version: u64,
        /// The domain error the decision returned.
        cause: E,
    },
    /// Other writers kept appending to the stream; every attempt conflicted, until the
    /// repository's [`RetryPolicy`](crate::RetryPolicy) ran out of attempts or time.
    #[error(
        "concurrency conflict on {stream}: gave up after {attempts} attempts (last expected version {expected}, found {actual}); retry later or allow more with `Repository::with_retry`"
    )]
    Conflict {
        /// The stream.
        stream: StreamKey,
        /// How many times the command was decided and appended (1: it was not retried).
        attempts: u32,
        /// The version the last attempt expected.
        expected: u64,
        /// The version the store had instead.
        actual: u64,
    },
    /// A stored event could not be decoded (unknown type, newer version, failed upcast,
    /// payload that does not fit the struct).
    #[error("cannot decode event at version {version} of {stream}: {cause}")]
    Decode {
        /// The stream.
        stream: StreamKey,
        /// The stream version of the event.
        version: u64,
        /// What went wrong, naming the event type (boxed to keep `Result`s small).
        cause: Box<DecodeError>,
    },
    /// A new event could not be encoded as JSON.
    #[error("cannot encode event `{event_type}` for {stream}: {cause}")]
    Encode {
        /// The stream.
        stream: StreamKey,
        /// The event type being encoded.
        event_type: &'static str,
        /// serde's message.
        cause: serde_json::Error,
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
    /// Two Rust types are stored under the same aggregate type, so they would read and
    /// write each other's streams (e.g. `retail::Account` and `corporate::Account`, both
    /// named after the struct). Nothing was read or written.
    #[error(
        "`{this}` and `{other}` are both stored as aggregate type `{aggregate_type}`, so they would share streams; give one of them a distinct `#[aggregate(name = \"...\")]` (name both explicitly if they are meant to share streams)"
    )]
    AggregateTypeClash {
        /// The stored aggregate type both use.
        aggregate_type: &'static str,
        /// The Rust type of this repository.
        this: &'static str,
        /// The Rust type that used the name first in this process.
        other: &'static str,
    },
    /// The event store failed.
    #[error("event store failed on {stream}: {cause}")]
    Store {
        /// The stream.
        stream: StreamKey,
        /// The store's error (boxed to keep `Result`s small).
        cause: Box<StoreError>,
    },
}

impl<E> Error<E> {
    /// The domain error, if the command was rejected.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            Self::Rejected { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// The domain error, if the command was rejected; otherwise the error itself.
    pub fn into_rejection(self) -> Result<E, Self> {
        match self {
            Self::Rejected { cause, .. } => Ok(cause),
            other => Err(other),
        }
    }

    /// True when every attempt hit a concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

impl Error<Infallible> {
    /// Widens an error that cannot be a rejection into one of any domain error type, for
    /// `?` in a function returning `Error<E>`: `repo.load(id).map_err(Error::widen)?` (see
    /// the [type docs](Error#mixing-load-and-execute-in-one-function)).
    pub fn widen<E>(self) -> Error<E> {
        match self {
            Self::Rejected { cause, .. } => match cause {},
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
                cause,
            } => Error::Decode {
                stream,
                version,
                cause,
            },
            Self::Encode {
                stream,
                event_type,
                cause,
            } => Error::Encode {
                stream,
                event_type,
                cause,
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
            Self::Store { stream, cause } => Error::Store { stream, cause },
            Self::AggregateTypeClash {
                aggregate_type,
                this,
                other,
            } => Error::AggregateTypeClash {
                aggregate_type,
                this,
                other,
            },
        }
    }
}
