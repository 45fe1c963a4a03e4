//! Helpers for implementing [`EventStore`](crate::EventStore) over a database: turning the
//! columns of a stored row back into a [`RecordedEvent`] without trusting them.
//!
//! A row another program damaged must come back as [`StoreError::Corrupt`] naming the
//! stream, version and event type, never as a panic. Read the identifying columns first
//! into a [`RawRowIdentity`], [`check`](RawRowIdentity::check) it, then read every other
//! column through the resulting [`RowIdentity`], which reports problems against it.
//!
//! ```
//! use es_core::backend::RawRowIdentity;
//!
//! let raw = RawRowIdentity::<String> {
//!     aggregate_type: Ok("Account".into()),
//!     stream_id: Ok("a-1".into()),
//!     stream_version: Ok(2),
//!     event_type: Ok("Deposited".into()),
//! };
//! let row = raw.check()?;
//! let error = row.payload(b"{not json").unwrap_err();
//! assert!(error.to_string().contains("version 2 of stream `Account/a-1`"));
//! # Ok::<(), es_core::StoreError>(())
//! ```

use std::fmt::Display;
use std::time::SystemTime;

use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{Metadata, RecordedEvent, StreamKey};
use crate::store::StoreError;

/// The identifying columns of a stored row as the backend read them; each may have failed.
#[derive(Debug)]
pub struct RawRowIdentity<E> {
    /// The aggregate type column.
    pub aggregate_type: Result<String, E>,
    /// The stream id column.
    pub stream_id: Result<String, E>,
    /// The stream version column (must be positive).
    pub stream_version: Result<i64, E>,
    /// The event type column.
    pub event_type: Result<String, E>,
}

impl<E: Display> RawRowIdentity<E> {
    /// The checked identity, or [`StoreError::Corrupt`] naming whatever could be read and
    /// listing what could not.
    pub fn check(self) -> Result<RowIdentity, StoreError> {
        match self {
            Self {
                aggregate_type: Ok(aggregate_type),
                stream_id: Ok(stream_id),
                stream_version: Ok(version),
                event_type: Ok(event_type),
            } if version > 0 => Ok(RowIdentity {
                aggregate_type,
                stream_id,
                stream_version: version.unsigned_abs(),
                event_type,
            }),
            Self {
                aggregate_type,
                stream_id,
                stream_version,
                event_type,
            } => {
                let mut problems = Vec::new();
                let mut readable = |column: &str, value: Result<String, E>| {
                    value.unwrap_or_else(|reason| {
                        problems.push(format!("{column}: {reason}"));
                        format!("<unreadable {column}>")
                    })
                };
                let aggregate_type = readable("aggregate type", aggregate_type);
                let id = readable("stream id", stream_id);
                let event_type = readable("event type", event_type);
                match &stream_version {
                    Ok(v) if *v > 0 => {}
                    Ok(v) => problems.push(format!("stream version {v} is not positive")),
                    Err(reason) => problems.push(format!("stream version: {reason}")),
                }
                Err(StoreError::Corrupt {
                    stream: StreamKey { aggregate_type, id },
                    version: stream_version
                        .ok()
                        .and_then(|v| u64::try_from(v).ok())
                        .unwrap_or(0),
                    event_type,
                    reason: problems.join("; "),
                })
            }
        }
    }
}

/// The checked identity of a stored row: every later problem with the row is reported
/// against its stream, version and event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIdentity {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The stream id.
    pub stream_id: String,
    /// The stream version (at least 1).
    pub stream_version: u64,
    /// The stored event type.
    pub event_type: String,
}

impl RowIdentity {
    /// [`StoreError::Corrupt`] for this row: `column` could not be used because of `reason`.
    pub fn corrupt(&self, column: &str, reason: impl Display) -> StoreError {
        StoreError::Corrupt {
            stream: StreamKey {
                aggregate_type: self.aggregate_type.clone(),
                id: self.stream_id.clone(),
            },
            version: self.stream_version,
            event_type: self.event_type.clone(),
            reason: format!("{column}: {reason}"),
        }
    }

    /// A column value, or the corrupt-row error if it could not be read.
    pub fn column<T, E: Display>(
        &self,
        column: &str,
        value: Result<T, E>,
    ) -> Result<T, StoreError> {
        value.map_err(|reason| self.corrupt(column, reason))
    }

    /// A global position (positive in every store).
    pub fn global_position<E: Display>(&self, value: Result<i64, E>) -> Result<u64, StoreError> {
        let position = self.column("global position", value)?;
        u64::try_from(position)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| self.corrupt("global position", format!("{position} is not positive")))
    }

    /// A schema version (positive, fits in `u32`).
    pub fn schema_version<E: Display>(&self, value: Result<i64, E>) -> Result<u32, StoreError> {
        let version = self.column("schema version", value)?;
        u32::try_from(version)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| self.corrupt("schema version", format!("{version} is out of range")))
    }

    /// An event id stored as text.
    pub fn event_id_text<E: Display>(&self, value: Result<String, E>) -> Result<Uuid, StoreError> {
        let text = self.column("event id", value)?;
        Uuid::parse_str(&text).map_err(|e| self.corrupt("event id", format!("`{text}`: {e}")))
    }

    /// The payload, from its JSON text.
    pub fn payload(&self, json: &[u8]) -> Result<Value, StoreError> {
        serde_json::from_slice(json).map_err(|e| self.corrupt("payload is not valid JSON", e))
    }

    /// The metadata, from its JSON text (`{}`, the common case, skips the parser).
    pub fn metadata(&self, json: &[u8]) -> Result<Metadata, StoreError> {
        match json {
            b"{}" => Ok(Metadata::new()),
            _ => serde_json::from_slice(json).map_err(|e| self.corrupt("metadata is not valid", e)),
        }
    }

    /// Assembles the recorded event from this identity and the other checked columns.
    pub fn into_event(
        self,
        global_position: u64,
        event_id: Uuid,
        schema_version: u32,
        recorded_at: SystemTime,
        payload: Value,
        metadata: Metadata,
    ) -> RecordedEvent {
        RecordedEvent {
            event_id,
            aggregate_type: self.aggregate_type,
            stream_id: self.stream_id,
            stream_version: self.stream_version,
            global_position,
            event_type: self.event_type,
            schema_version,
            recorded_at,
            payload,
            metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(
        version: Result<i64, String>,
        event_type: Result<String, String>,
    ) -> RawRowIdentity<String> {
        RawRowIdentity {
            aggregate_type: Ok("Account".into()),
            stream_id: Ok("a-1".into()),
            stream_version: version,
            event_type,
        }
    }

    #[test]
    fn an_unreadable_identity_names_what_it_can() {
        let error = identity(Ok(3), Err("not text".into())).check().unwrap_err();
        let StoreError::Corrupt {
            stream,
            version,
            event_type,
            reason,
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(
            (stream.id.as_str(), version, event_type.as_str()),
            ("a-1", 3, "<unreadable event type>")
        );
        assert_eq!(reason, "event type: not text");
        let error = identity(Ok(0), Ok("X".into())).check().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("stream version 0 is not positive"),
            "{error}"
        );
    }

    #[test]
    fn later_columns_are_reported_against_the_identity() {
        let row = identity(Ok(2), Ok("Deposited".into())).check().unwrap();
        for error in [
            row.global_position(Ok::<_, String>(-1)).unwrap_err(),
            row.schema_version(Ok::<_, String>(0)).unwrap_err(),
            row.event_id_text(Ok::<_, String>("nope".into()))
                .unwrap_err(),
            row.payload(b"{").unwrap_err(),
            row.metadata(b"\"text\"").unwrap_err(),
        ] {
            let message = error.to_string();
            assert!(
                message.contains("version 2 of stream `Account/a-1`"),
                "{message}"
            );
            assert!(message.contains("`Deposited`"), "{message}");
        }
        assert_eq!(row.metadata(b"{}").unwrap(), Metadata::new());
    }
}
