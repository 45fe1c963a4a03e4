//! Read-model checkpoints and leases in the `es_checkpoints` table: [`CheckpointStore`]
//! for [`PostgresStore`].

use std::time::{Duration, SystemTime};

use es_core::{CheckpointStore, Lease, StoreError};
use postgres::{IsolationLevel, Row};

use crate::error::backend;
use crate::statements::sql_int;
use crate::store::PostgresStore;

/// The longest lease taken: a longer TTL is cut to this (a century), so that the expiry
/// stays within PostgreSQL's `timestamptz` range.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `ttl` cut to [`MAX_TTL`], and in microseconds, as `take_lease` takes it.
fn lease_ttl(ttl: Duration) -> (Duration, i64) {
    let ttl = ttl.min(MAX_TTL);
    (ttl, i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX))
}

/// Refuses a read-model name or owner id holding NUL before it reaches the server, which
/// would reject it with an error that costs the connection.
fn check_text(what: &str, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        return Err(StoreError::backend(format!(
            "the {what} {value:?} contains a NUL character, and PostgreSQL text cannot hold NUL characters; remove it"
        )));
    }
    Ok(())
}

/// The position in a row of `load_checkpoint`.
fn position_of(row: &Row, read_model: &str) -> Result<u64, StoreError> {
    let position: i64 = row.try_get(0).map_err(backend)?;
    u64::try_from(position).map_err(|_| {
        StoreError::backend(format!(
            "the checkpoint of read model `{read_model}` is the negative position {position}; the table `es_checkpoints` was changed outside es-postgres: delete its row to rebuild the read model"
        ))
    })
}

/// The lease another owner holds, from a row of `lease_holder` read after `take_lease`
/// refused it, with its expiry moved from the server's clock to this machine's: `until` is
/// as far after this machine's now as the lease's expiry is after the server's.
fn held_by(row: Option<&Row>, read_model: &str) -> Result<Lease, StoreError> {
    let unreadable = || {
        StoreError::backend(format!(
            "the lease of read model `{read_model}` was refused, but its holder cannot be read back from `es_checkpoints` (the row was changed outside es-postgres); try again, and if it persists set `lease_owner` and `lease_until` of its row to NULL while no projector runs it"
        ))
    };
    let Some(row) = row else {
        return Err(unreadable());
    };
    let owner: Option<String> = row.try_get(0).map_err(backend)?;
    let until: Option<SystemTime> = row.try_get(1).map_err(backend)?;
    let server_now: SystemTime = row.try_get(2).map_err(backend)?;
    let (Some(owner), Some(until)) = (owner, until) else {
        return Err(unreadable());
    };
    let left = until.duration_since(server_now).unwrap_or(Duration::ZERO);
    let now = SystemTime::now();
    Ok(Lease::HeldBy {
        owner,
        until: now.checked_add(left).unwrap_or(now),
    })
}

/// Checkpoints live in the table `es_checkpoints` of the store's schema, one row per read
/// model: its position, and the lease (owner and expiry) of the projector instance running
/// it.
///
/// A lease is taken with one conditional `INSERT ... ON CONFLICT DO UPDATE ... WHERE` on
/// that row, which the server runs atomically: of several processes asking at once, one
/// gets it. Expiry is decided on the server's clock, so the processes' clocks need not
/// agree; the `until` reported is on this machine's clock (the time of the request plus
/// the TTL for a lease taken, the time left on the server's clock for one held by
/// another). TTLs beyond a century are cut to a century.
///
/// Every call is idempotent, so one whose connection broke runs again on a new one (see
/// the [crate documentation](crate#connections)). Names and owner ids must not contain NUL
/// characters, which PostgreSQL text cannot hold.
impl CheckpointStore for PostgresStore {
    fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        check_text("read model name", read_model)?;
        let row = self.with_conn(|conn, _| {
            conn.client
                .query_opt(&conn.prepared.load_checkpoint, &[&read_model])
                .map_err(backend)
        })?;
        row.map_or(Ok(0), |row| position_of(&row, read_model))
    }

    fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        check_text("read model name", read_model)?;
        let position = sql_int(position);
        self.with_conn(|conn, _| {
            conn.client
                .execute(&conn.prepared.save_checkpoint, &[&read_model, &position])
                .map_err(backend)
        })?;
        Ok(())
    }

    fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        check_text("read model name", read_model)?;
        self.with_conn(|conn, _| {
            conn.client
                .execute(&conn.prepared.delete_checkpoint, &[&read_model])
                .map_err(backend)
        })?;
        Ok(())
    }

    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        check_text("read model name", read_model)?;
        check_text("lease owner id", owner)?;
        let (ttl, ttl_micros) = lease_ttl(ttl);
        self.with_conn(|conn, _| {
            // Before the request: the lease runs from no earlier on the server.
            let asked = SystemTime::now();
            // READ COMMITTED whatever the server's default: `lease_holder` must read the
            // row as `take_lease` locked it, not as the transaction's first snapshot had it.
            let mut tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .map_err(backend)?;
            let taken = tx
                .query_opt(
                    &conn.prepared.take_lease,
                    &[&read_model, &owner, &ttl_micros],
                )
                .map_err(backend)?;
            let lease = match taken {
                Some(_) => Lease::Acquired {
                    until: asked.checked_add(ttl).unwrap_or(asked),
                },
                None => {
                    let holder = tx
                        .query_opt(&conn.prepared.lease_holder, &[&read_model])
                        .map_err(backend)?;
                    held_by(holder.as_ref(), read_model)?
                }
            };
            tx.commit().map_err(backend)?;
            Ok(lease)
        })
    }

    fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        check_text("read model name", read_model)?;
        check_text("lease owner id", owner)?;
        self.with_conn(|conn, _| {
            conn.client
                .execute(&conn.prepared.release_lease, &[&read_model, &owner])
                .map_err(backend)
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ttls_are_cut_to_a_century_in_microseconds() {
        assert_eq!(
            lease_ttl(Duration::from_millis(1500)),
            (Duration::from_millis(1500), 1_500_000)
        );
        let (ttl, micros) = lease_ttl(Duration::MAX);
        assert_eq!(ttl, MAX_TTL);
        assert_eq!(micros, 3_153_600_000_000_000);
    }

    #[test]
    fn nul_characters_are_refused_before_the_server() {
        let error = check_text("read model name", "a\0b").unwrap_err();
        assert!(error.to_string().contains("NUL character"), "{error}");
        assert!(check_text("read model name", "balances").is_ok());
    }
}
