//! The event envelope: what a store keeps next to each payload.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
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
///
/// The payload is kept as the JSON text it will be stored as: the repository serializes a
/// typed event straight to text, and the stores write that text as is.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// A unique id for this event (every store refuses a second event with the same id).
    pub event_id: Uuid,
    /// The stored event-type name.
    pub event_type: Cow<'static, str>,
    /// The payload's schema version (at least 1).
    pub schema_version: u32,
    /// The JSON payload, as text.
    pub payload: Box<RawValue>,
    /// Correlation, causation and free-form context.
    pub metadata: Metadata,
}

impl NewEvent {
    /// A new event with a fresh id (see [`new_event_id`](crate::new_event_id)) from a JSON
    /// value.
    pub fn new(
        event_type: impl Into<Cow<'static, str>>,
        schema_version: u32,
        payload: Value,
        metadata: Metadata,
    ) -> Self {
        Self::from_json(event_type, schema_version, json_text(&payload), metadata)
    }

    /// A new event with a fresh id from payload JSON text.
    pub fn from_json(
        event_type: impl Into<Cow<'static, str>>,
        schema_version: u32,
        payload: Box<RawValue>,
        metadata: Metadata,
    ) -> Self {
        Self {
            event_id: crate::id::new_event_id(),
            event_type: event_type.into(),
            schema_version,
            payload,
            metadata,
        }
    }

    /// The payload parsed as a JSON value.
    pub fn payload_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }
}

impl PartialEq for NewEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event_id == other.event_id
            && self.event_type == other.event_type
            && self.schema_version == other.schema_version
            && self.payload.get() == other.payload.get()
            && self.metadata == other.metadata
    }
}

/// A JSON value as text.
pub(crate) fn json_text(value: &Value) -> Box<RawValue> {
    // Serializing a `Value` cannot fail: its map keys are strings and its numbers finite,
    // which is all serde_json's serializer can refuse. The fallback keeps this panic-free.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| null_json())
}

fn null_json() -> Box<RawValue> {
    // "null" is valid JSON, so `from_string` accepts it; `Default` for `Box<RawValue>` is
    // that same value.
    RawValue::from_string("null".to_owned()).unwrap_or_default()
}

/// The metadata of a stored event, as the store holds it: already parsed (in memory) or as
/// JSON text (in a database), parsed only when asked for.
#[derive(Debug, Clone, Copy)]
pub enum MetadataRef<'a> {
    /// Parsed metadata.
    Parsed(&'a Metadata),
    /// Metadata as stored JSON text.
    Json(&'a str),
}

impl MetadataRef<'_> {
    /// The metadata, parsed if needed.
    pub fn to_metadata(&self) -> Result<Metadata, serde_json::Error> {
        match *self {
            Self::Parsed(metadata) => Ok(metadata.clone()),
            Self::Json("{}") => Ok(Metadata::new()),
            Self::Json(text) => serde_json::from_str(text),
        }
    }
}

/// A stored event, borrowed from the store while it is read: nothing is copied.
///
/// Stores hand these to the visitor of [`EventStore::visit_stream`](crate::EventStore::visit_stream)
/// and [`EventStore::visit_all`](crate::EventStore::visit_all); the repository decodes the
/// payload straight from the borrowed text into the aggregate's event enum.
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    /// The event's unique id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream: StreamRef<'a>,
    /// Its position in its stream: 1 for the first event, contiguous.
    pub stream_version: u64,
    /// Its position in the store's global log: strictly increasing in commit order.
    pub global_position: u64,
    /// The stored event-type name.
    pub event_type: &'a str,
    /// The payload's schema version.
    pub schema_version: u32,
    /// When the store recorded it.
    pub recorded_at: SystemTime,
    /// The JSON payload text, exactly as stored (not upcast).
    pub payload: &'a str,
    /// Correlation, causation and free-form context.
    pub metadata: MetadataRef<'a>,
}

impl EventRecord<'_> {
    /// An owned copy, with the metadata parsed and the payload checked to be JSON, or
    /// [`StoreError::Corrupt`](crate::StoreError::Corrupt) naming this event and the column
    /// that is not.
    pub fn to_recorded(&self) -> Result<RecordedEvent, crate::StoreError> {
        let corrupt = |column: &str, error: serde_json::Error| crate::StoreError::Corrupt {
            stream: self.stream.to_key(),
            version: self.stream_version,
            global_position: self.global_position,
            event_type: self.event_type.to_owned(),
            reason: format!("{column} is not valid JSON: {error}"),
        };
        Ok(RecordedEvent {
            event_id: self.event_id,
            aggregate_type: self.stream.aggregate_type.to_owned(),
            stream_id: self.stream.id.to_owned(),
            stream_version: self.stream_version,
            global_position: self.global_position,
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            payload: RawValue::from_string(self.payload.to_owned())
                .map_err(|e| corrupt("payload", e))?,
            metadata: self
                .metadata
                .to_metadata()
                .map_err(|e| corrupt("metadata", e))?,
        })
    }
}

/// An event as stored, owned: the envelope and its payload.
///
/// Loading an aggregate never builds these (it borrows [`EventRecord`]s); they are for
/// callers that keep events, such as [`Repository::history`](crate::Repository::history).
#[derive(Debug, Clone)]
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
    /// The JSON payload text, exactly as stored (not upcast).
    pub payload: Box<RawValue>,
    /// Correlation, causation and free-form context.
    pub metadata: Metadata,
}

impl RecordedEvent {
    /// The stream this event belongs to.
    pub fn stream(&self) -> StreamRef<'_> {
        StreamRef::new(&self.aggregate_type, &self.stream_id)
    }

    /// The payload parsed as a JSON value.
    pub fn payload_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }

    /// This event, borrowed.
    pub fn as_record(&self) -> EventRecord<'_> {
        EventRecord {
            event_id: self.event_id,
            stream: self.stream(),
            stream_version: self.stream_version,
            global_position: self.global_position,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            payload: self.payload.get(),
            metadata: MetadataRef::Parsed(&self.metadata),
        }
    }
}

impl PartialEq for RecordedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event_id == other.event_id
            && self.aggregate_type == other.aggregate_type
            && self.stream_id == other.stream_id
            && self.stream_version == other.stream_version
            && self.global_position == other.global_position
            && self.event_type == other.event_type
            && self.schema_version == other.schema_version
            && self.recorded_at == other.recorded_at
            && self.payload.get() == other.payload.get()
            && self.metadata == other.metadata
    }
}
