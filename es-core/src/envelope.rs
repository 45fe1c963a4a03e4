//! The event envelope: what a store keeps next to each payload.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Which stream: the aggregate type and the stream id within it, borrowed.
///
/// The same id under two aggregate types names two different streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamRef<'a> {
    /// The aggregate type, e.g. `"BankAccount"`.
    pub aggregate_type: &'a str,
    /// The stream id within that aggregate type, e.g. `"acc-1"`.
    pub id: &'a str,
}

impl<'a> StreamRef<'a> {
    /// A stream of `aggregate_type` with id `id`.
    pub fn new(aggregate_type: &'a str, id: &'a str) -> Self {
        Self { aggregate_type, id }
    }

    /// An owned copy, for errors and keys.
    pub fn to_key(self) -> StreamKey {
        StreamKey {
            aggregate_type: self.aggregate_type.to_owned(),
            id: self.id.to_owned(),
        }
    }
}

impl fmt::Display for StreamRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream `{}/{}`", self.aggregate_type, self.id)
    }
}

/// Which stream, owned: carried by errors so they can name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The stream id within that aggregate type.
    pub id: String,
}

impl StreamKey {
    /// Borrows this key.
    pub fn as_ref(&self) -> StreamRef<'_> {
        StreamRef::new(&self.aggregate_type, &self.id)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

/// Context recorded with an event: who caused it and why.
///
/// `correlation_id` ties together everything that happened because of one request;
/// `causation_id` names the message (command or event) that directly caused this one.
/// Anything else goes in `extra`.
///
/// ```
/// use es_core::Metadata;
/// let meta = Metadata::new()
///     .with_correlation_id("req-42")
///     .with_causation_id("cmd-7")
///     .with_entry("user", "alice");
/// assert_eq!(meta.extra["user"], "alice");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties together every event caused by one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the message that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Free-form entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Adds a free-form entry.
    pub fn with_entry(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.extra.is_empty()
    }
}

/// An event about to be appended: everything but what the store assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// A unique id for this event (the store keeps it unique).
    pub event_id: Uuid,
    /// The stored event-type name.
    pub event_type: Cow<'static, str>,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: Value,
    /// Correlation, causation and free-form context.
    pub metadata: Metadata,
}

impl NewEvent {
    /// A new event with a fresh random id.
    pub fn new(
        event_type: impl Into<Cow<'static, str>>,
        schema_version: u32,
        payload: Value,
        metadata: Metadata,
    ) -> Self {
        Self {
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            schema_version,
            payload,
            metadata,
        }
    }
}

/// An event as stored: the envelope and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The event's unique id.
    pub event_id: Uuid,
    /// The aggregate type of its stream.
    pub aggregate_type: String,
    /// The id of its stream.
    pub stream_id: String,
    /// Its position in its stream: 1 for the first event, contiguous.
    pub stream_version: u64,
    /// Its position in the store's global log: strictly increasing in commit order.
    pub global_position: u64,
    /// The stored event-type name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// When the store recorded it.
    pub recorded_at: SystemTime,
    /// The JSON payload, exactly as stored (not upcast).
    pub payload: Value,
    /// Correlation, causation and free-form context.
    pub metadata: Metadata,
}

impl RecordedEvent {
    /// The stream this event belongs to.
    pub fn stream(&self) -> StreamRef<'_> {
        StreamRef::new(&self.aggregate_type, &self.stream_id)
    }
}
