//! Support for the code `#[read_model]` generates. Not public API: no stability promise.

use crate::__private::Message;
use std::error::Error as StdError;

pub use crate::projection::read_model::{ApplyError, Handled, ReadModel};

/// What a read-model handler may return: nothing, or `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "a read-model handler returns `()` or `Result<(), E>`, not `{Self}`",
    label = "not `()` or `Result<(), E>`",
    note = "return nothing, or `Result<(), E>` with an error type `E` that converts into `Box<dyn std::error::Error + Send + Sync>`: a projector stops at the event whose handler failed"
)]
pub trait HandlerOutcome {
    /// The outcome as the projector sees it.
    fn into_outcome(self) -> Result<(), ApplyError>;
}

impl HandlerOutcome for () {
    #[inline]
    fn into_outcome(self) -> Result<(), ApplyError> {
        Ok(())
    }
}

#[diagnostic::do_not_recommend]
impl<E: Into<Box<dyn StdError + Send + Sync>>> HandlerOutcome for Result<(), E> {
    #[inline]
    fn into_outcome(self) -> Result<(), ApplyError> {
        self.map_err(|error| ApplyError::Handler(error.into()))
    }
}

/// The default [`ReadModel::reset`]: `*self = Default::default()`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must implement `Default` to be reset before a rebuild",
    label = "`#[read_model]` resets the read model with `Default`",
    note = "add `#[derive(Default)]` to `{Self}`, or name a reset function: `#[read_model(reset = Self::clear)]` with `fn clear(&mut self)`"
)]
pub trait DefaultReset {
    /// Replaces the value with its default.
    fn reset_to_default(&mut self);
}

#[diagnostic::do_not_recommend]
impl<T: Default> DefaultReset for T {
    #[inline]
    fn reset_to_default(&mut self) {
        *self = T::default();
    }
}

/// The projector's view of a decoded event's handler call, for a decode failure.
#[inline]
pub fn decode_failed(error: crate::DecodeError) -> ApplyError {
    ApplyError::Decode(error)
}

/// Fails the evaluation of the `const` it is called in unless `event_type` (the stored
/// name of the event written `event` in a handler) is one of `aggregate_events`, the events
/// of the aggregate written `aggregate` in the handler's `#[from(...)]`. `#[track_caller]`:
/// rustc reports the failure on the handler's `#[from(...)]`.
#[track_caller]
pub const fn check_event_of(
    read_model: &str,
    aggregate: &str,
    aggregate_events: &[&str],
    event: &str,
    event_type: &str,
) {
    let mut i = 0;
    while i < aggregate_events.len() {
        if crate::__private::str_eq(aggregate_events[i], event_type) {
            return;
        }
        i += 1;
    }
    let message = Message::new()
        .push("read model `")
        .push(read_model)
        .push("` handles `")
        .push(event)
        .push("` from aggregate `")
        .push(aggregate)
        .push("`, but `")
        .push(aggregate)
        .push("` has no handler for `")
        .push(event)
        .push("` in its `#[applies]` block, so it never records one; name the aggregate that records it in `#[from(...)]`");
    panic!(
        "{}",
        message.as_str_or("a read-model handler names an event its aggregate does not record")
    );
}
