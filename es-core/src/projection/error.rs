//! [`ProjectionError`]: why a projector stopped.

use std::error::Error as StdError;
use std::time::SystemTime;

use crate::envelope::StreamKey;
use crate::projection::read_model::ReadModel;
use crate::store::StoreError;

/// A projector stopped.
///
/// Every variant names the read model; a failure on an event names the event's type, its
/// stream and version and its global position. The checkpoint is left just before that
/// event, so running the projector again (after fixing the handler or the data) resumes
/// there: no event is skipped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A handler returned an error.
    #[error(
        "read model `{read_model}` failed on event `{event_type}` at global position {global_position} (version {version} of {stream}): {cause}; fix the handler (or the data) and run the projector again: it resumes at this event"
    )]
    Handler {
        /// The read model.
        read_model: &'static str,
        /// The stored event type.
        event_type: String,
        /// The event's stream.
        stream: StreamKey,
        /// The event's stream version.
        version: u64,
        /// The event's global position.
        global_position: u64,
        /// What the handler returned.
        cause: Box<dyn StdError + Send + Sync>,
    },
    /// A handled event could not be decoded.
    #[error(
        "read model `{read_model}` cannot decode event `{event_type}` at global position {global_position} (version {version} of {stream}): {cause}; add an upcaster or fix the event type, then run the projector again: it resumes at this event"
    )]
    Decode {
        /// The read model.
        read_model: &'static str,
        /// The stored event type.
        event_type: String,
        /// The event's stream.
        stream: StreamKey,
        /// The event's stream version.
        version: u64,
        /// The event's global position.
        global_position: u64,
        /// Why it does not decode.
        cause: Box<crate::DecodeError>,
    },
    /// Reading the log or keeping the checkpoint failed.
    #[error(
        "read model `{read_model}`: the store failed after global position {position}: {cause}; the projector can be run again, it resumes after position {position}"
    )]
    Store {
        /// The read model.
        read_model: &'static str,
        /// The last position applied and committed.
        position: u64,
        /// The store's error.
        cause: Box<StoreError>,
    },
    /// Another projector instance runs this read model.
    #[error(
        "read model `{read_model}` is being projected by another instance (`{owner}`), whose lease runs until {until:?}; stop that instance, or wait for its lease to expire"
    )]
    Locked {
        /// The read model.
        read_model: &'static str,
        /// The other instance's owner id.
        owner: String,
        /// When its lease expires unless renewed.
        until: SystemTime,
    },
}

/// A store failure of read model `R` after the committed `position`.
pub(crate) fn store_error<R: ReadModel>(position: u64, error: StoreError) -> ProjectionError {
    ProjectionError::Store {
        read_model: R::NAME,
        position,
        cause: Box::new(error),
    }
}
