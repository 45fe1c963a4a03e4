//! What the sync and the async store share for snapshots and queries by type: the
//! parameters, and the reading of a snapshot row.

use std::time::SystemTime;

use es_core::backend::{check_snapshot, snapshot_past_end};
use es_core::{RawValue, Snapshot, StoreError, StreamRef};
use postgres::Row;

use crate::statements::sql_int;

/// The checks every snapshot passes before it is sent (the stream's end is checked by the
/// statement itself).
pub(crate) fn check(stream: StreamRef<'_>, snapshot: &Snapshot) -> Result<(), StoreError> {
    crate::store::check_text(stream)?;
    check_snapshot(stream, snapshot, u64::MAX)?;
    if snapshot.state.get().contains('\0') {
        return Err(StoreError::Invalid {
            stream: stream.to_key(),
            reason: "the snapshot's state contains a NUL character, which PostgreSQL cannot store"
                .to_owned(),
        });
    }
    Ok(())
}

/// The parameters of `save_snapshot`, stamped now.
pub(crate) struct SaveParams<'a> {
    stream: StreamRef<'a>,
    version: i64,
    snapshot_version: i32,
    taken_at: SystemTime,
    state: &'a str,
}

impl<'a> SaveParams<'a> {
    pub(crate) fn new(stream: StreamRef<'a>, snapshot: &'a Snapshot) -> Self {
        Self {
            stream,
            version: sql_int(snapshot.stream_version),
            snapshot_version: i32::try_from(snapshot.snapshot_version).unwrap_or(i32::MAX),
            taken_at: SystemTime::now(),
            state: snapshot.state.get(),
        }
    }

    pub(crate) fn as_params(&self) -> [&(dyn postgres::types::ToSql + Sync); 6] {
        [
            &self.stream.aggregate_type,
            &self.stream.id,
            &self.version,
            &self.snapshot_version,
            &self.taken_at,
            &self.state,
        ]
    }
}

/// The error for a snapshot the statement did not keep: the stream is not that far.
pub(crate) fn not_kept(stream: StreamRef<'_>, snapshot: &Snapshot, current: u64) -> StoreError {
    snapshot_past_end(stream, snapshot, current)
}

/// The snapshot in a row of `load_snapshot`.
pub(crate) fn from_row(
    row: &Row,
    stream: StreamRef<'_>,
    snapshot_version: u32,
) -> Result<Snapshot, StoreError> {
    let unreadable = |reason: String| StoreError::CorruptStream {
        stream: stream.to_key(),
        reason,
    };
    let version: i64 = row
        .try_get(0)
        .map_err(|e| unreadable(format!("a snapshot's stream version is unreadable: {e}")))?;
    let taken_at: SystemTime = row
        .try_get(1)
        .map_err(|e| unreadable(format!("a snapshot's time is unreadable: {e}")))?;
    let state: String = row
        .try_get(2)
        .map_err(|e| unreadable(format!("a snapshot's state is unreadable: {e}")))?;
    let stream_version = u64::try_from(version)
        .map_err(|_| unreadable(format!("a snapshot has the stream version {version}")))?;
    let state = RawValue::from_string(state).map_err(|e| {
        unreadable(format!(
            "the snapshot at version {stream_version} is not JSON: {e}"
        ))
    })?;
    Ok(Snapshot {
        stream_version,
        snapshot_version,
        state,
        taken_at,
    })
}

/// The parameters of `read_by_type` (`None`: nothing to read).
pub(crate) fn by_type_bounds(
    event_types: &[&str],
    from_position: u64,
    limit: usize,
) -> Option<(i64, i64)> {
    if event_types.is_empty() {
        return None;
    }
    crate::statements::log_bounds(from_position, limit)
}
