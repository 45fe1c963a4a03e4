//! Turning stored rows back into [`RecordedEvent`]s without trusting them.
//!
//! Every column is checked: a row another program damaged yields
//! [`StoreError::Corrupt`] naming the stream, version and event type, never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use es_core::{Metadata, RecordedEvent, StoreError, StreamKey, Uuid};
use rusqlite::Row;
use rusqlite::types::ValueRef;

/// The columns [`decode`] expects, in order.
pub(crate) const COLUMNS: &str = "global_position, event_id, aggregate_type, stream_id, \
     stream_version, event_type, schema_version, recorded_at, payload, metadata";

/// Microseconds since the Unix epoch (negative before it), saturating at the `i64` range.
pub(crate) fn to_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros())
            .map(|micros| -micros)
            .unwrap_or(i64::MIN),
    }
}

/// The inverse of [`to_micros`]; `None` if the platform's `SystemTime` cannot hold it.
fn from_micros(micros: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// Decodes one row selected with [`COLUMNS`].
pub(crate) fn decode(row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
    // The identifying columns come first so that every later error can name them.
    let ids = (text(row, 2), text(row, 3), integer(row, 4), text(row, 5));
    let (aggregate_type, stream_id, stream_version, event_type) = match ids {
        (Ok(aggregate_type), Ok(stream_id), Ok(version), Ok(event_type)) if version > 0 => (
            aggregate_type,
            stream_id,
            version.unsigned_abs(),
            event_type,
        ),
        (aggregate_type, stream_id, version, event_type) => {
            let mut problems = Vec::new();
            let mut readable = |column: &str, value: Result<String, String>| {
                value.unwrap_or_else(|reason| {
                    problems.push(format!("{column}: {reason}"));
                    format!("<unreadable {column}>")
                })
            };
            let aggregate_type = readable("aggregate type", aggregate_type);
            let id = readable("stream id", stream_id);
            let event_type = readable("event type", event_type);
            match &version {
                Ok(v) if *v > 0 => {}
                Ok(v) => problems.push(format!("stream version {v} is not positive")),
                Err(reason) => problems.push(format!("stream version: {reason}")),
            }
            return Err(StoreError::Corrupt {
                stream: StreamKey { aggregate_type, id },
                version: version
                    .ok()
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
                event_type,
                reason: problems.join("; "),
            });
        }
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        stream: StreamKey {
            aggregate_type: aggregate_type.clone(),
            id: stream_id.clone(),
        },
        version: stream_version,
        event_type: event_type.clone(),
        reason,
    };
    let global_position = integer(row, 0)
        .and_then(|p| u64::try_from(p).map_err(|_| format!("{p} is negative")))
        .map_err(|reason| corrupt(format!("global position: {reason}")))?;
    let event_id = text(row, 1)
        .and_then(|id| Uuid::parse_str(&id).map_err(|e| format!("`{id}`: {e}")))
        .map_err(|reason| corrupt(format!("event id: {reason}")))?;
    let schema_version = integer(row, 6)
        .and_then(|v| u32::try_from(v).map_err(|_| format!("{v} is out of range")))
        .map_err(|reason| corrupt(format!("schema version: {reason}")))?;
    let recorded_at = integer(row, 7)
        .and_then(|micros| {
            from_micros(micros).ok_or_else(|| format!("{micros} µs is out of range"))
        })
        .map_err(|reason| corrupt(format!("recorded_at: {reason}")))?;
    let payload = json_bytes(row, 8)
        .and_then(|bytes| serde_json::from_slice(bytes).map_err(|e| e.to_string()))
        .map_err(|reason| corrupt(format!("payload is not valid JSON: {reason}")))?;
    let metadata = json_bytes(row, 9)
        .and_then(|bytes| match bytes {
            // Most events carry no metadata; skip the parser for them.
            b"{}" => Ok(Metadata::new()),
            _ => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        })
        .map_err(|reason| corrupt(format!("metadata is not valid: {reason}")))?;
    Ok(RecordedEvent {
        event_id,
        aggregate_type,
        stream_id,
        stream_version,
        global_position,
        event_type,
        schema_version,
        recorded_at,
        payload,
        metadata,
    })
}

fn value<'r>(row: &'r Row<'_>, index: usize) -> Result<ValueRef<'r>, String> {
    row.get_ref(index).map_err(|e| e.to_string())
}

fn integer(row: &Row<'_>, index: usize) -> Result<i64, String> {
    match value(row, index)? {
        ValueRef::Integer(i) => Ok(i),
        other => Err(format!("expected an integer, found {}", other.data_type())),
    }
}

fn text(row: &Row<'_>, index: usize) -> Result<String, String> {
    match value(row, index)? {
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string()),
        other => Err(format!("expected text, found {}", other.data_type())),
    }
}

fn json_bytes<'r>(row: &'r Row<'_>, index: usize) -> Result<&'r [u8], String> {
    match value(row, index)? {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Ok(bytes),
        other => Err(format!("expected JSON text, found {}", other.data_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_around_the_epoch() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_000] {
            assert_eq!(from_micros(micros).map(to_micros), Some(micros));
        }
    }
}
