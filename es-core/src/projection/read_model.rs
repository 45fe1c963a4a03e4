//! The [`ReadModel`] trait that `#[read_model]` implements, and what its `apply` reports.

use std::error::Error as StdError;

use crate::codec::DecodeError;
use crate::envelope::EventRecord;

/// A read model: state built from the events of the global log that it handles.
///
/// Implement it with [`#[read_model]`](macro@crate::read_model) on an impl block whose
/// methods each handle one event type of one aggregate type; a
/// [`Projector`](crate::Projector) feeds it the global log from its checkpoint.
///
/// Written by hand, `apply` must skip (return `Ok`) every event it does not handle, and
/// [`HANDLES`](ReadModel::HANDLES) must list every event it does handle: a projector reads
/// only those (by type, where the store can filter), and never decodes the others.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a read model",
    label = "not a `ReadModel`",
    note = "add `#[read_model] impl {Self} {{ #[from(MyAggregate)] fn on_x(&mut self, event: &X) {{ ... }} }}`: every method in that block handles one event type of one aggregate"
)]
pub trait ReadModel {
    /// The read model's stable name: its checkpoint is kept under it. Changing it starts
    /// the read model afresh from the beginning of the log.
    const NAME: &'static str;

    /// Every (aggregate type, event type) this read model handles.
    const HANDLES: &'static [Handled];

    /// Applies one stored event: decodes it (running upcasters) and calls its handler if
    /// this read model handles it; does nothing (and decodes nothing) otherwise.
    fn apply(&mut self, record: &EventRecord<'_>) -> Result<(), ApplyError>;

    /// Forgets everything applied so far, before a [rebuild](crate::Projector::rebuild)
    /// replays the log from the start. `#[read_model]` makes it `*self = Default::default()`,
    /// or calls the function named by `#[read_model(reset = ...)]`.
    fn reset(&mut self);
}

/// One event type of one aggregate type that a read model handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handled {
    /// The stored aggregate type the event must come from.
    pub aggregate_type: &'static str,
    /// The stored event type.
    pub event_type: &'static str,
    /// Older names the event may be stored under.
    pub aliases: &'static [&'static str],
}

impl Handled {
    /// Whether `record` is this event of this aggregate type (under its name or an alias).
    pub fn matches(&self, record: &EventRecord<'_>) -> bool {
        record.stream.aggregate_type == self.aggregate_type
            && (record.event_type == self.event_type || self.aliases.contains(&record.event_type))
    }
}

/// Why [`ReadModel::apply`] failed on an event. The [`Projector`](crate::Projector) adds
/// the read model, the event's type, stream and global position.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The stored event could not be decoded (a failed upcast, a payload that does not fit).
    #[error("{0}")]
    Decode(DecodeError),
    /// The handler returned an error.
    #[error("the handler failed: {0}")]
    Handler(Box<dyn StdError + Send + Sync>),
}

impl ApplyError {
    /// A handler's error.
    pub fn handler(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Handler(error.into())
    }
}
