//! The store's SQL: [`Statements`] as text for one schema, or prepared on one connection.

use std::ops::RangeInclusive;

use postgres::{Client, Statement, ToStatement};

use crate::row::COLUMNS;

/// The store's statements: SQL text with the schema filled in, or the same statements
/// prepared on one connection (which saves a round trip per statement).
pub(crate) struct Statements<T> {
    pub(crate) take_positions: T,
    pub(crate) give_back_positions: T,
    pub(crate) last_position: T,
    pub(crate) stream_version: T,
    pub(crate) find_key: T,
    pub(crate) insert: T,
    pub(crate) read_stream: T,
    pub(crate) read_all: T,
    pub(crate) read_by_type: T,
    pub(crate) save_snapshot: T,
    pub(crate) load_snapshot: T,
    pub(crate) prune_snapshots: T,
    pub(crate) load_checkpoint: T,
    pub(crate) save_checkpoint: T,
    pub(crate) delete_checkpoint: T,
    pub(crate) take_lease: T,
    pub(crate) lease_holder: T,
    pub(crate) release_lease: T,
    pub(crate) lease_fence: T,
}

/// A statement in either form.
pub(crate) trait Query {
    type Stmt: ?Sized + ToStatement;
    fn stmt(&self) -> &Self::Stmt;
}

impl Query for String {
    type Stmt = str;
    fn stmt(&self) -> &str {
        self
    }
}

impl Query for Statement {
    type Stmt = Statement;
    fn stmt(&self) -> &Statement {
        self
    }
}

impl Statements<String> {
    /// Statements for `schema`, which must be valid (see [`schema::validate`]).
    ///
    /// [`schema::validate`]: crate::schema::validate
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        Self {
            take_positions: format!(
                "UPDATE {s}.es_position SET last = last + $1 WHERE id RETURNING last"
            ),
            give_back_positions: format!("UPDATE {s}.es_position SET last = last - $1 WHERE id"),
            last_position: format!("SELECT last FROM {s}.es_position WHERE id"),
            stream_version: format!(
                "SELECT version FROM {s}.es_streams WHERE aggregate_type = $1 AND stream_id = $2"
            ),
            find_key: format!(
                "SELECT stream_version, first_position, event_count FROM {s}.es_commands \
                 WHERE aggregate_type = $1 AND stream_id = $2 AND idempotency_key = $3"
            ),
            // One round trip writes the events, the stream's new version and the
            // idempotency key (data-modifying CTEs all run, referenced or not).
            insert: format!(
                "WITH new_events AS ( \
                     INSERT INTO {s}.es_events (global_position, event_id, aggregate_type, \
                         stream_id, stream_version, event_type, schema_version, recorded_at, \
                         payload, metadata) \
                     SELECT $1::bigint + e.ord - 1, e.event_id, $2::text, $3::text, \
                            $4::bigint + e.ord, e.event_type, e.schema_version, $5::timestamptz, \
                            e.payload, e.metadata \
                     FROM unnest($6::uuid[], $7::text[], $8::bigint[], $9::jsonb[], $10::jsonb[]) \
                          WITH ORDINALITY \
                          AS e(event_id, event_type, schema_version, payload, metadata, ord) \
                 ), stream AS ( \
                     INSERT INTO {s}.es_streams (aggregate_type, stream_id, version) \
                     VALUES ($2::text, $3::text, $4::bigint + cardinality($6::uuid[])) \
                     ON CONFLICT (aggregate_type, stream_id) DO UPDATE SET version = EXCLUDED.version \
                 ) \
                 INSERT INTO {s}.es_commands (aggregate_type, stream_id, idempotency_key, \
                     stream_version, first_position, event_count) \
                 SELECT $2::text, $3::text, $11::text, $4::bigint + cardinality($6::uuid[]), \
                        $1::bigint, cardinality($6::uuid[]) \
                 WHERE $11::text IS NOT NULL"
            ),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {s}.es_events \
                 WHERE aggregate_type = $1 AND stream_id = $2 \
                   AND stream_version >= $3 AND stream_version <= $4 \
                 ORDER BY stream_version"
            ),
            read_all: format!(
                "SELECT {COLUMNS} FROM {s}.es_events WHERE global_position >= $1 \
                 ORDER BY global_position LIMIT $2"
            ),
            // Served by es_events_by_type (aggregate_type, event_type, global_position).
            read_by_type: format!(
                "SELECT {COLUMNS} FROM {s}.es_events \
                 WHERE aggregate_type = $1 AND event_type = ANY($2::text[]) \
                   AND global_position >= $3 \
                 ORDER BY global_position LIMIT $4"
            ),
            // Kept only if the stream has reached the snapshot's version (no row returned
            // otherwise); replaces a snapshot at the same version.
            save_snapshot: format!(
                "INSERT INTO {s}.es_snapshots (aggregate_type, stream_id, stream_version, \
                     snapshot_version, taken_at, state) \
                 SELECT $1::text, $2::text, $3::bigint, $4::integer, $5::timestamptz, \
                        CAST($6::text AS jsonb) \
                 WHERE EXISTS (SELECT 1 FROM {s}.es_streams \
                     WHERE aggregate_type = $1 AND stream_id = $2 AND version >= $3) \
                 ON CONFLICT (aggregate_type, stream_id, stream_version) DO UPDATE SET \
                     snapshot_version = EXCLUDED.snapshot_version, \
                     taken_at = EXCLUDED.taken_at, state = EXCLUDED.state \
                 RETURNING 1"
            ),
            load_snapshot: format!(
                "SELECT stream_version, taken_at, state::text FROM {s}.es_snapshots \
                 WHERE aggregate_type = $1 AND stream_id = $2 AND snapshot_version = $3 \
                   AND stream_version <= $4 \
                 ORDER BY stream_version DESC LIMIT 1"
            ),
            prune_snapshots: format!(
                "DELETE FROM {s}.es_snapshots \
                 WHERE aggregate_type = $1 AND stream_id = $2 AND stream_version NOT IN ( \
                     SELECT stream_version FROM {s}.es_snapshots \
                     WHERE aggregate_type = $1 AND stream_id = $2 \
                     ORDER BY stream_version DESC LIMIT $3)"
            ),
            load_checkpoint: format!("SELECT position FROM {s}.es_checkpoints WHERE name = $1"),
            // Keeps the lease columns of an existing row.
            save_checkpoint: format!(
                "INSERT INTO {s}.es_checkpoints (name, position, updated_at) \
                 VALUES ($1, $2, now()) \
                 ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, \
                     updated_at = EXCLUDED.updated_at"
            ),
            delete_checkpoint: format!(
                "UPDATE {s}.es_checkpoints SET position = 0, updated_at = now() WHERE name = $1"
            ),
            // Takes the lease of read model $1 for owner $2 for $3 microseconds if it is
            // free, expired or already $2's (`es_core::backend::decide_lease`, on the
            // server's clock): one row back if taken, none if another owner holds it. The
            // conflicting row stays locked either way until the transaction ends, so
            // `lease_holder` after it, in the same READ COMMITTED transaction, reads the
            // holder that refused it.
            take_lease: format!(
                "INSERT INTO {s}.es_checkpoints AS c \
                     (name, position, updated_at, lease_owner, lease_until) \
                 VALUES ($1, 0, now(), $2, now() + $3::bigint * interval '1 microsecond') \
                 ON CONFLICT (name) DO UPDATE SET lease_owner = EXCLUDED.lease_owner, \
                     lease_until = EXCLUDED.lease_until \
                 WHERE c.lease_owner IS NULL OR c.lease_until IS NULL \
                    OR c.lease_owner = EXCLUDED.lease_owner OR c.lease_until <= now() \
                 RETURNING c.lease_until"
            ),
            lease_holder: format!(
                "SELECT lease_owner, lease_until, now() FROM {s}.es_checkpoints WHERE name = $1"
            ),
            release_lease: format!(
                "UPDATE {s}.es_checkpoints SET lease_owner = NULL, lease_until = NULL \
                 WHERE name = $1 AND lease_owner = $2"
            ),
            // The fence of an exactly-once commit: locks the read model's row until the
            // commit's transaction ends (a `take_lease` of another instance waits for it),
            // and reads the lease's owner, whether it is unexpired (server's clock) and the
            // position.
            lease_fence: format!(
                "SELECT lease_owner, coalesce(lease_until > now(), false), position \
                 FROM {s}.es_checkpoints WHERE name = $1 FOR UPDATE"
            ),
        }
    }

    /// Prepares every statement on `client`.
    pub(crate) fn prepare(
        &self,
        client: &mut Client,
    ) -> Result<Statements<Statement>, postgres::Error> {
        Ok(Statements {
            take_positions: client.prepare(&self.take_positions)?,
            give_back_positions: client.prepare(&self.give_back_positions)?,
            last_position: client.prepare(&self.last_position)?,
            stream_version: client.prepare(&self.stream_version)?,
            find_key: client.prepare(&self.find_key)?,
            insert: client.prepare(&self.insert)?,
            read_stream: client.prepare(&self.read_stream)?,
            read_all: client.prepare(&self.read_all)?,
            read_by_type: client.prepare(&self.read_by_type)?,
            save_snapshot: client.prepare(&self.save_snapshot)?,
            load_snapshot: client.prepare(&self.load_snapshot)?,
            prune_snapshots: client.prepare(&self.prune_snapshots)?,
            load_checkpoint: client.prepare(&self.load_checkpoint)?,
            save_checkpoint: client.prepare(&self.save_checkpoint)?,
            delete_checkpoint: client.prepare(&self.delete_checkpoint)?,
            take_lease: client.prepare(&self.take_lease)?,
            lease_holder: client.prepare(&self.lease_holder)?,
            release_lease: client.prepare(&self.release_lease)?,
            lease_fence: client.prepare(&self.lease_fence)?,
        })
    }
}

#[cfg(feature = "async")]
impl Statements<String> {
    /// Prepares every statement on the async `client`, in one pipeline: the requests go
    /// out together and the replies come back together, one round trip in all.
    pub(crate) async fn prepare_async(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Statements<Statement>, tokio_postgres::Error> {
        use futures_util::future::{try_join, try_join3, try_join4};
        let (
            (
                (take_positions, give_back_positions, last_position, stream_version),
                (find_key, insert, read_stream, read_all),
            ),
            (
                (read_by_type, save_snapshot, load_snapshot, prune_snapshots),
                (
                    (load_checkpoint, save_checkpoint, delete_checkpoint),
                    (take_lease, lease_holder, release_lease, lease_fence),
                ),
            ),
        ) = try_join(
            try_join(
                try_join4(
                    client.prepare(&self.take_positions),
                    client.prepare(&self.give_back_positions),
                    client.prepare(&self.last_position),
                    client.prepare(&self.stream_version),
                ),
                try_join4(
                    client.prepare(&self.find_key),
                    client.prepare(&self.insert),
                    client.prepare(&self.read_stream),
                    client.prepare(&self.read_all),
                ),
            ),
            try_join(
                try_join4(
                    client.prepare(&self.read_by_type),
                    client.prepare(&self.save_snapshot),
                    client.prepare(&self.load_snapshot),
                    client.prepare(&self.prune_snapshots),
                ),
                try_join(
                    try_join3(
                        client.prepare(&self.load_checkpoint),
                        client.prepare(&self.save_checkpoint),
                        client.prepare(&self.delete_checkpoint),
                    ),
                    try_join4(
                        client.prepare(&self.take_lease),
                        client.prepare(&self.lease_holder),
                        client.prepare(&self.release_lease),
                        client.prepare(&self.lease_fence),
                    ),
                ),
            ),
        )
        .await?;
        Ok(Statements {
            take_positions,
            give_back_positions,
            last_position,
            stream_version,
            find_key,
            insert,
            read_stream,
            read_all,
            read_by_type,
            save_snapshot,
            load_snapshot,
            prune_snapshots,
            load_checkpoint,
            save_checkpoint,
            delete_checkpoint,
            take_lease,
            lease_holder,
            release_lease,
            lease_fence,
        })
    }
}

/// Stream versions and positions as PostgreSQL stores them (`bigint`); values beyond
/// `i64::MAX` saturate, which only matters for "read from" bounds no store reaches.
pub(crate) fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The bounds (`$3`, `$4`) of [`Statements::read_stream`] for `versions`, or `None` if
/// the range is empty and there is nothing to read.
///
/// A read from the start has no lower bound, so that a row with a non-positive version
/// (damage) sorts first and is reported, not silently skipped.
pub(crate) fn stream_bounds(versions: &RangeInclusive<u64>) -> Option<(i64, i64)> {
    if versions.is_empty() {
        return None;
    }
    let from = if *versions.start() <= 1 {
        i64::MIN
    } else {
        sql_int(*versions.start())
    };
    Some((from, sql_int(*versions.end())))
}

/// The parameters (`$1`, `$2`) of [`Statements::read_all`], or `None` for a limit of 0.
pub(crate) fn log_bounds(from_position: u64, limit: usize) -> Option<(i64, i64)> {
    if limit == 0 {
        return None;
    }
    Some((
        sql_int(from_position),
        i64::try_from(limit).unwrap_or(i64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_the_schema() {
        let sql = Statements::new("Tenant_1");
        assert!(sql.insert.contains("INTO \"Tenant_1\".es_events"));
        assert!(
            sql.take_positions
                .starts_with("UPDATE \"Tenant_1\".es_position")
        );
    }

    #[test]
    fn read_bounds_saturate_and_read_from_the_start_unbounded() {
        assert_eq!(stream_bounds(&(1..=u64::MAX)), Some((i64::MIN, i64::MAX)));
        assert_eq!(stream_bounds(&(0..=3)), Some((i64::MIN, 3)));
        assert_eq!(stream_bounds(&(5..=7)), Some((5, 7)));
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 3..=2;
        assert_eq!(stream_bounds(&empty), None);
        assert_eq!(log_bounds(9, 0), None);
        assert_eq!(log_bounds(u64::MAX, usize::MAX), Some((i64::MAX, i64::MAX)));
    }
}
