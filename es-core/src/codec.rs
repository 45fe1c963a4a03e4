//! Decoding stored payloads into events: upcasting and its errors.

use std::error::Error as StdError;
use std::fmt;

use serde_json::Value;

use crate::event::Event;

/// An upcaster could not migrate a payload.
///
/// Returned by user-written upcaster functions (`upcast(from = 1, with = my_fn)`); the runtime
/// wraps it in [`DecodeError::Upcast`] with the event type and step.
///
/// ```
/// use es_core::UpcastError;
/// use serde_json::Value;
///
/// fn v1_to_v2(mut v: Value) -> Result<Value, UpcastError> {
///     let obj = v.as_object_mut().ok_or_else(|| UpcastError::new("payload is not an object"))?;
///     obj.insert("currency".into(), "EUR".into());
///     Ok(v)
/// }
/// # assert!(v1_to_v2(Value::Null).is_err());
/// ```
///
/// Its message is complete: it includes the text of the error that caused it (from
/// [`with_source`](UpcastError::with_source)), so `source()` is `None` and a report
/// prints the cause once. The cause itself stays available from
/// [`cause`](UpcastError::cause).
#[derive(Debug)]
pub struct UpcastError {
    message: String,
    cause: Option<Box<dyn StdError + Send + Sync>>,
}

impl UpcastError {
    /// An upcast failure with a message saying what is wrong with the old payload.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            cause: None,
        }
    }

    /// The old payload lacks a field the upcaster needs.
    pub fn missing_field(field: &str) -> Self {
        Self::new(format!("the stored payload has no field `{field}`"))
    }

    /// An upcast failure caused by another error, whose text follows `message` in this
    /// error's.
    pub fn with_source(
        message: impl Into<String>,
        cause: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            cause: Some(cause.into()),
        }
    }

    /// The error that caused this one, if any.
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl StdError for UpcastError {}

impl From<serde_json::Error> for UpcastError {
    fn from(error: serde_json::Error) -> Self {
        Self::with_source(
            "the payload does not have the shape this step expects",
            error,
        )
    }
}

/// A stored event could not be turned back into a typed event.
///
/// These errors know the event; the repository adds the stream and stream version.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The event type is not handled by this aggregate (under its name or an alias).
    #[error(
        "unknown event type `{event_type}`; this aggregate handles {known:?}; add a handler, or list the old name in `#[event(aliases(...))]`"
    )]
    UnknownEventType {
        /// The stored event type.
        event_type: String,
        /// The names this aggregate knows.
        known: &'static [&'static str],
    },
    /// The stored schema version is newer than the code: written by a later release.
    #[error(
        "event `{event_type}` is stored at schema version {stored}, newer than version {supported} this code knows; upgrade the reader"
    )]
    VersionTooNew {
        /// The stored event type.
        event_type: String,
        /// The stored schema version.
        stored: u32,
        /// The newest version this code decodes.
        supported: u32,
    },
    /// Schema versions start at 1.
    #[error("event `{event_type}` is stored at schema version 0; schema versions start at 1")]
    InvalidVersion {
        /// The stored event type.
        event_type: String,
    },
    /// An upcaster step failed.
    #[error("upcasting event `{event_type}` from version {from} to {to} failed: {cause}")]
    Upcast {
        /// The stored event type.
        event_type: String,
        /// The version the failing step starts from.
        from: u32,
        /// The version the failing step produces.
        to: u32,
        /// What the upcaster reported.
        cause: UpcastError,
    },
    /// The payload does not deserialize into the event struct.
    #[error(
        "payload of event `{event_type}` (stored at schema version {stored_version}{upcast_note}) does not decode: {cause}"
    )]
    Payload {
        /// The stored event type.
        event_type: String,
        /// The stored schema version.
        stored_version: u32,
        /// `", after upcasting to version N"` when upcasters ran, else empty.
        upcast_note: String,
        /// serde's message.
        cause: serde_json::Error,
    },
}

impl DecodeError {
    /// The stored event type this error is about.
    pub fn event_type(&self) -> &str {
        match self {
            Self::UnknownEventType { event_type, .. }
            | Self::VersionTooNew { event_type, .. }
            | Self::InvalidVersion { event_type }
            | Self::Upcast { event_type, .. }
            | Self::Payload { event_type, .. } => event_type,
        }
    }
}

/// Decodes one stored payload, given as its JSON text, as `E`, running its upcaster chain
/// when the stored version is older than [`Event::VERSION`].
///
/// The current version takes the fast path: it deserializes straight from the text, with
/// no intermediate [`Value`] and no upcaster call. Only an older version builds a `Value`,
/// for the upcasters to work on.
///
/// ```
/// use es_core::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
/// struct Deposited { amount: u64 }
///
/// let event: Deposited = es_core::decode_event("Deposited", 1, r#"{"amount": 5}"#)?;
/// assert_eq!(event, Deposited { amount: 5 });
/// # Ok::<(), es_core::DecodeError>(())
/// ```
pub fn decode_event<E: Event>(
    event_type: &str,
    stored_version: u32,
    payload: &str,
) -> Result<E, DecodeError> {
    if stored_version == E::VERSION {
        return serde_json::from_str(payload).map_err(|cause| DecodeError::Payload {
            event_type: event_type.to_owned(),
            stored_version,
            upcast_note: String::new(),
            cause,
        });
    }
    if stored_version > E::VERSION {
        return Err(DecodeError::VersionTooNew {
            event_type: event_type.to_owned(),
            stored: stored_version,
            supported: E::VERSION,
        });
    }
    if stored_version == 0 {
        return Err(DecodeError::InvalidVersion {
            event_type: event_type.to_owned(),
        });
    }
    // Only an event at version 2 or later can get here (1 <= stored < current). The test is
    // a constant, so an event at version 1, most of a domain, never compiles the upcast
    // path: no `Value` decoding of it, no upcaster loop. That is build time saved per event.
    if const { E::VERSION > 1 } {
        upcast_and_decode::<E>(event_type, stored_version, payload)
    } else {
        Err(DecodeError::InvalidVersion {
            event_type: event_type.to_owned(),
        })
    }
}

/// The slow path of [`decode_event`]: parses the stored payload (at a version below the
/// current one) as a [`Value`], runs the upcasters from `stored_version` up, and decodes
/// the result as `E`.
fn upcast_and_decode<E: Event>(
    event_type: &str,
    stored_version: u32,
    payload: &str,
) -> Result<E, DecodeError> {
    let mut value: Value = serde_json::from_str(payload).map_err(|cause| DecodeError::Payload {
        event_type: event_type.to_owned(),
        stored_version,
        upcast_note: String::from(", before upcasting"),
        cause,
    })?;
    for from in stored_version..E::VERSION {
        value = E::upcast_step(from, value).map_err(|cause| DecodeError::Upcast {
            event_type: event_type.to_owned(),
            from,
            to: from + 1,
            cause,
        })?;
    }
    E::deserialize(&value).map_err(|cause| DecodeError::Payload {
        event_type: event_type.to_owned(),
        stored_version,
        upcast_note: format!(", after upcasting to version {}", E::VERSION),
        cause,
    })
}
