//! Turning rows back into [`RecordedEvent`]s without trusting them.
//!
//! Every column is checked: a row another program damaged yields
//! [`StoreError::Corrupt`] naming the stream, version and event type, never a panic.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use es_core::{Metadata, RecordedEvent, StoreError, StreamKey, Uuid};
use postgres::Row;
use postgres::types::{FromSql, Type};
use serde_json::Value;

/// The columns [`decode`] expects, in order.
pub(crate) const COLUMNS: &str = "global_position, event_id, aggregate_type, stream_id, \
     stream_version, event_type, schema_version, recorded_at, payload, metadata";

/// Seconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;

/// A `timestamptz` as its raw microseconds since 2000-01-01, so that out-of-range values
/// (`infinity`) are reported instead of overflowing a `SystemTime`.
struct RawTimestamp(i64);

impl<'a> FromSql<'a> for RawTimestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| format!("a timestamp has 8 bytes, found {}", raw.len()))?;
        Ok(Self(i64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

/// A `jsonb` (or `json`) value as its JSON text, parsed by the caller: this saves building a
/// [`Value`] for metadata, and lets empty metadata skip the parser.
struct RawJson<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawJson<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        if *ty == Type::JSONB {
            // The binary jsonb format is a version byte, then the JSON text.
            match raw.split_first() {
                Some((1, text)) => Ok(Self(text)),
                Some((version, _)) => Err(format!("unsupported jsonb version {version}").into()),
                None => Err("empty jsonb value".into()),
            }
        } else {
            Ok(Self(raw))
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

impl RawTimestamp {
    fn to_system_time(&self) -> Option<SystemTime> {
        let epoch = UNIX_EPOCH.checked_add(Duration::from_secs(PG_EPOCH_OFFSET_SECS))?;
        let offset = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            epoch.checked_add(offset)
        } else {
            epoch.checked_sub(offset)
        }
    }
}

/// Decodes one row selected with [`COLUMNS`].
pub(crate) fn decode(row: &Row) -> Result<RecordedEvent, StoreError> {
    // The identifying columns come first so that every later error can name them.
    let ids = (
        row.try_get::<_, String>(2),
        row.try_get::<_, String>(3),
        row.try_get::<_, i64>(4),
        row.try_get::<_, String>(5),
    );
    let (aggregate_type, stream_id, stream_version, event_type) = match ids {
        (Ok(aggregate_type), Ok(stream_id), Ok(version), Ok(event_type)) if version > 0 => (
            aggregate_type,
            stream_id,
            version.unsigned_abs(),
            event_type,
        ),
        (aggregate_type, stream_id, version, event_type) => {
            let mut problems = Vec::new();
            let mut readable = |column: &str, value: Result<String, postgres::Error>| {
                value.unwrap_or_else(|e| {
                    problems.push(format!("{column}: {e}"));
                    format!("<unreadable {column}>")
                })
            };
            let aggregate_type = readable("aggregate type", aggregate_type);
            let id = readable("stream id", stream_id);
            let event_type = readable("event type", event_type);
            match &version {
                Ok(v) if *v > 0 => {}
                Ok(v) => problems.push(format!("stream version {v} is not positive")),
                Err(e) => problems.push(format!("stream version: {e}")),
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
    let global_position = row
        .try_get::<_, i64>(0)
        .map_err(|e| e.to_string())
        .and_then(|p| u64::try_from(p).map_err(|_| format!("{p} is negative")))
        .map_err(|reason| corrupt(format!("global position: {reason}")))?;
    let event_id = row
        .try_get::<_, Uuid>(1)
        .map_err(|e| corrupt(format!("event id: {e}")))?;
    let schema_version = row
        .try_get::<_, i64>(6)
        .map_err(|e| e.to_string())
        .and_then(|v| u32::try_from(v).map_err(|_| format!("{v} is out of range")))
        .map_err(|reason| corrupt(format!("schema version: {reason}")))?;
    let recorded_at = row
        .try_get::<_, RawTimestamp>(7)
        .map_err(|e| e.to_string())
        .and_then(|raw| {
            raw.to_system_time()
                .ok_or_else(|| format!("{} µs after 2000-01-01 is out of range", raw.0))
        })
        .map_err(|reason| corrupt(format!("recorded_at: {reason}")))?;
    let payload: Value = row
        .try_get::<_, RawJson<'_>>(8)
        .map_err(|e| e.to_string())
        .and_then(|json| serde_json::from_slice(json.0).map_err(|e| e.to_string()))
        .map_err(|reason| corrupt(format!("payload is not valid JSON: {reason}")))?;
    let metadata = row
        .try_get::<_, RawJson<'_>>(9)
        .map_err(|e| e.to_string())
        .and_then(|json| match json.0 {
            // Most events carry no metadata; skip the parser for them.
            b"{}" => Ok(Metadata::new()),
            text => serde_json::from_slice(text).map_err(|e| e.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_timestamps_convert_without_overflow() {
        let epoch = RawTimestamp(0).to_system_time().unwrap();
        assert_eq!(
            epoch.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            PG_EPOCH_OFFSET_SECS
        );
        let before = RawTimestamp(-1).to_system_time().unwrap();
        assert_eq!(
            epoch.duration_since(before).unwrap(),
            Duration::from_micros(1)
        );
        // `infinity` and `-infinity` are i64::MAX and i64::MIN: no panic either way.
        let _ = RawTimestamp(i64::MAX).to_system_time();
        let _ = RawTimestamp(i64::MIN).to_system_time();
    }
}
