//! Turning stored rows back into [`RecordedEvent`]s without trusting them.
//!
//! Every column is checked: a row another program damaged yields
//! [`StoreError::Corrupt`] naming the stream, version and event type, never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use es_core::backend::{RawRowIdentity, RowIdentity};
use es_core::{StoreError, StreamRef, Visit, Visitor};
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
pub(crate) fn from_micros(micros: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// The columns [`visit_in_stream`] expects, in order: [`COLUMNS`] without the stream's
/// names, which the reader of one stream already knows.
pub(crate) const STREAM_COLUMNS: &str = "global_position, event_id, stream_version, \
     event_type, schema_version, recorded_at, payload, metadata";

/// Reads one row selected with [`COLUMNS`] as a borrowed record, without copying any
/// column, and hands it to `visit`.
pub(crate) fn visit(row: &Row<'_>, visit: &mut Visitor<'_>) -> Result<Visit, StoreError> {
    // The identifying columns come first so that every later error can name them.
    let id = RawRowIdentity {
        global_position: integer(row, 0),
        aggregate_type: text(row, 2),
        stream_id: text(row, 3),
        stream_version: integer(row, 4),
        event_type: text(row, 5),
    }
    .check()?;
    visit_rest(row, id, 1, 6, visit)
}

/// Like [`visit`], for a row of `stream` selected with [`STREAM_COLUMNS`].
pub(crate) fn visit_in_stream(
    row: &Row<'_>,
    stream: StreamRef<'_>,
    visit: &mut Visitor<'_>,
) -> Result<Visit, StoreError> {
    let id = RawRowIdentity {
        global_position: integer(row, 0),
        aggregate_type: Ok(stream.aggregate_type),
        stream_id: Ok(stream.id),
        stream_version: integer(row, 2),
        event_type: text(row, 3),
    }
    .check()?;
    visit_rest(row, id, 1, 4, visit)
}

/// Reads the event id at column `id_column` and the five columns from `rest` on (schema
/// version, recorded_at, payload, metadata), then visits the record.
fn visit_rest(
    row: &Row<'_>,
    id: RowIdentity<'_>,
    id_column: usize,
    rest: usize,
    visit: &mut Visitor<'_>,
) -> Result<Visit, StoreError> {
    let event_id = id.event_id_text(text(row, id_column))?;
    let schema_version = id.schema_version(integer(row, rest))?;
    let recorded_at = id.column(
        "recorded_at",
        integer(row, rest + 1).and_then(|micros| {
            from_micros(micros).ok_or_else(|| format!("{micros} µs is out of range"))
        }),
    )?;
    let payload = id.json("payload", id.column("payload", json_bytes(row, rest + 2))?)?;
    let metadata = id.json(
        "metadata",
        id.column("metadata", json_bytes(row, rest + 3))?,
    )?;
    Ok(visit(&id.into_record(
        event_id,
        schema_version,
        recorded_at,
        payload,
        metadata,
    )))
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

fn text<'r>(row: &'r Row<'_>, index: usize) -> Result<&'r str, String> {
    match value(row, index)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).map_err(|e| e.to_string()),
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
