//! Read-model checkpoints and leases in the `es_checkpoints` table.

use std::time::{Duration, SystemTime};

use es_core::backend::decide_lease;
use es_core::{CheckpointStore, Lease, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::row;
use crate::store::{SqliteStore, backend, sql_int};

/// The position stored for `name` (0: none).
pub(crate) fn load(conn: &Connection, name: &str) -> Result<u64, StoreError> {
    let position: Option<i64> = conn
        .prepare_cached("SELECT position FROM es_checkpoints WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
        .map_err(backend)?;
    match position {
        None => Ok(0),
        Some(position) => u64::try_from(position).map_err(|_| {
            StoreError::backend(format!(
                "the checkpoint of read model `{name}` is the negative position {position}; the table `es_checkpoints` was changed outside es-sqlite: delete the row to rebuild the read model"
            ))
        }),
    }
}

/// Stores `position` for `name`, keeping its lease.
pub(crate) fn save(conn: &Connection, name: &str, position: u64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO es_checkpoints (name, position, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
         updated_at = excluded.updated_at",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            name,
            sql_int(position),
            row::to_micros(SystemTime::now())
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// Takes or renews the lease of `name` for `owner`, in one `BEGIN IMMEDIATE` transaction:
/// the database's write lock makes the check and the update atomic across processes.
pub(crate) fn acquire(
    conn: &mut Connection,
    name: &str,
    owner: &str,
    ttl: Duration,
) -> Result<Lease, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let current: Option<(Option<String>, Option<i64>)> = tx
        .prepare_cached("SELECT lease_owner, lease_until FROM es_checkpoints WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(backend)?;
    let current = match &current {
        Some((Some(holder), Some(until))) => Some((
            holder.as_str(),
            row::from_micros(*until).unwrap_or(SystemTime::UNIX_EPOCH),
        )),
        _ => None,
    };
    let now = SystemTime::now();
    let lease = decide_lease(current, owner, now, ttl);
    if let Lease::Acquired { until } = lease {
        tx.prepare_cached(
            "INSERT INTO es_checkpoints (name, position, updated_at, lease_owner, lease_until) \
             VALUES (?1, 0, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET \
             lease_owner = excluded.lease_owner, lease_until = excluded.lease_until",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                name,
                row::to_micros(now),
                owner,
                row::to_micros(until)
            ])
        })
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(lease)
}

/// The owner of an unexpired lease of `name` other than `owner`, if there is one.
pub(crate) fn other_holder(
    conn: &Connection,
    name: &str,
    owner: &str,
) -> Result<Option<String>, StoreError> {
    let holder: Option<(Option<String>, Option<i64>)> = conn
        .prepare_cached("SELECT lease_owner, lease_until FROM es_checkpoints WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(backend)?;
    let now = row::to_micros(SystemTime::now());
    Ok(match holder {
        Some((Some(holder), Some(until))) if holder != owner && until > now => Some(holder),
        _ => None,
    })
}

/// Gives up the lease of `name` if `owner` holds it.
pub(crate) fn release(conn: &Connection, name: &str, owner: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE es_checkpoints SET lease_owner = NULL, lease_until = NULL \
         WHERE name = ?1 AND lease_owner = ?2",
    )
    .and_then(|mut stmt| stmt.execute([name, owner]))
    .map_err(backend)?;
    Ok(())
}

/// Sets the checkpoint of `name` back to 0, keeping its lease.
pub(crate) fn delete(conn: &Connection, name: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE es_checkpoints SET position = 0, updated_at = ?2 WHERE name = ?1")
        .and_then(|mut stmt| stmt.execute(params![name, row::to_micros(SystemTime::now())]))
        .map_err(backend)?;
    Ok(())
}

/// Checkpoints live in the table `es_checkpoints` of the event store's database, one row
/// per read model: its position, and the lease (owner and expiry) of the projector
/// instance running it. Leases are taken in a `BEGIN IMMEDIATE` transaction, so two
/// processes sharing the file never both hold one.
impl CheckpointStore for SqliteStore {
    fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        self.with_writer(|conn| load(conn, read_model))
    }

    fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        self.with_writer(|conn| save(conn, read_model, position))
    }

    fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        self.with_writer(|conn| delete(conn, read_model))
    }

    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.with_writer(|conn| acquire(conn, read_model, owner, ttl))
    }

    fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        self.with_writer(|conn| release(conn, read_model, owner))
    }
}
