//! Turning rows back into [`RecordedEvent`](es_core::RecordedEvent)s without trusting them.
//!
//! Every column is checked: a row another program damaged yields
//! [`StoreError::Corrupt`] naming the stream, version and event type, never a panic.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use es_core::backend::RawRowIdentity;
use es_core::{StoreError, Uuid, Visit, Visitor};
use postgres::Row;
use postgres::types::{FromSql, Type};

use crate::pool::Attempt;

/// The columns [`visit`] expects, in order.
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

/// A `jsonb` (or `json`) value as its JSON text, borrowed from the row and parsed by whoever
/// uses it: the payload is decoded straight into the event, with no intermediate value.
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

/// Reads one row selected with [`COLUMNS`] as a borrowed record, without copying any
/// column, and hands it to `visit`.
pub(crate) fn visit(row: &Row, visit: &mut Visitor<'_>) -> Result<Visit, StoreError> {
    // The identifying columns come first so that every later error can name them.
    let id = RawRowIdentity {
        global_position: row.try_get::<_, i64>(0),
        aggregate_type: row.try_get::<_, &str>(2),
        stream_id: row.try_get::<_, &str>(3),
        stream_version: row.try_get::<_, i64>(4),
        event_type: row.try_get::<_, &str>(5),
    }
    .check()?;
    let event_id = id.column("event id", row.try_get::<_, Uuid>(1))?;
    let schema_version = id.schema_version(row.try_get::<_, i64>(6))?;
    let recorded_at = id.column(
        "recorded_at",
        row.try_get::<_, RawTimestamp>(7)
            .map_err(|e| e.to_string())
            .and_then(|raw| {
                raw.to_system_time()
                    .ok_or_else(|| format!("{} µs after 2000-01-01 is out of range", raw.0))
            }),
    )?;
    let payload = id.json(
        "payload",
        id.column("payload", row.try_get::<_, RawJson<'_>>(8))?.0,
    )?;
    let metadata = id.json(
        "metadata",
        id.column("metadata", row.try_get::<_, RawJson<'_>>(9))?.0,
    )?;
    Ok(visit(&id.into_record(
        event_id,
        schema_version,
        recorded_at,
        payload,
        metadata,
    )))
}

/// Hands one row of a read to `visitor`, as the reads of both stores do, and tells whether
/// to read on.
///
/// It marks `attempt` irrevocable: a read that failed before its visitor saw a row runs
/// again on a new connection if this one broke; after that, never, or the visitor would
/// see events twice. It marks `attempt` abandoned if the read stops here (the visitor said
/// stop, or the row is damaged) while the server may still be sending the rest.
pub(crate) fn visit_row(
    row: &Row,
    visitor: &mut Visitor<'_>,
    attempt: &mut Attempt,
) -> Result<Visit, StoreError> {
    attempt.irrevocable();
    match visit(row, visitor) {
        Ok(flow) if flow.is_continue() => Ok(flow),
        stopped => {
            attempt.abandoned = true;
            stopped
        }
    }
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
