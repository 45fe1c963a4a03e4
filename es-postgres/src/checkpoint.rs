//! Read-model checkpoints and leases in the `es_checkpoints` table: [`CheckpointStore`]
//! for [`PostgresStore`], and what the async store (`asynchronous::checkpoint`) and the
//! exactly-once checkpointers share with it: the checks, the lease's parameters and the
//! reading of its rows, and the fence of an exactly-once commit.

use std::time::{Duration, SystemTime};

use es_core::{CheckpointStore, Lease, StoreError};
use postgres::{Client, GenericClient, IsolationLevel, Row, Statement};

use crate::error::backend;
use crate::exactly_once::CommitRefused;
use crate::statements::{Statements, sql_int};
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
pub(crate) fn check_text(what: &str, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        return Err(StoreError::backend(format!(
            "the {what} {value:?} contains a NUL character, and PostgreSQL text cannot hold NUL characters; remove it"
        )));
    }
    Ok(())
}

/// The position in a row of `load_checkpoint`.
pub(crate) fn position_of(row: &Row, read_model: &str) -> Result<u64, StoreError> {
    position_of_column(row, 0, read_model)
}

/// The position in column `column` of a checkpoint row.
fn position_of_column(row: &Row, column: usize, read_model: &str) -> Result<u64, StoreError> {
    let position: i64 = row.try_get(column).map_err(backend)?;
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

/// Refuses a read-model name holding NUL before it reaches the server.
pub(crate) fn check_name(read_model: &str) -> Result<(), StoreError> {
    check_text("read model name", read_model)
}

/// A lease request, checked, with its TTL cut as `take_lease` takes it.
pub(crate) struct LeaseRequest<'a> {
    pub(crate) read_model: &'a str,
    pub(crate) owner: &'a str,
    ttl: Duration,
    pub(crate) ttl_micros: i64,
}

impl<'a> LeaseRequest<'a> {
    /// Refuses a name or owner holding NUL, and cuts the TTL to [`MAX_TTL`].
    pub(crate) fn new(
        read_model: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        check_name(read_model)?;
        check_text("lease owner id", owner)?;
        let (ttl, ttl_micros) = lease_ttl(ttl);
        Ok(Self {
            read_model,
            owner,
            ttl,
            ttl_micros,
        })
    }

    /// The lease taken by a request sent at `asked` (this machine's clock, before the
    /// request: the lease runs from no earlier on the server).
    pub(crate) fn acquired(&self, asked: SystemTime) -> Lease {
        Lease::Acquired {
            until: asked.checked_add(self.ttl).unwrap_or(asked),
        }
    }

    /// The lease another owner holds, from the row of `lease_holder` read after
    /// `take_lease` refused it.
    pub(crate) fn refused(&self, holder: Option<&Row>) -> Result<Lease, StoreError> {
        held_by(holder, self.read_model)
    }
}

/// The position stored for `read_model` (0: none), on `client`.
pub(crate) fn load(
    client: &mut impl GenericClient,
    prepared: &Statements<Statement>,
    read_model: &str,
) -> Result<u64, StoreError> {
    let row = client
        .query_opt(&prepared.load_checkpoint, &[&read_model])
        .map_err(backend)?;
    row.map_or(Ok(0), |row| position_of(&row, read_model))
}

/// Stores `position` for `read_model`, keeping its lease, on `client`.
pub(crate) fn save(
    client: &mut impl GenericClient,
    prepared: &Statements<Statement>,
    read_model: &str,
    position: u64,
) -> Result<(), StoreError> {
    client
        .execute(
            &prepared.save_checkpoint,
            &[&read_model, &sql_int(position)],
        )
        .map_err(backend)?;
    Ok(())
}

/// Sets the checkpoint of `read_model` back to 0, keeping its lease, on `client`.
pub(crate) fn delete(
    client: &mut impl GenericClient,
    prepared: &Statements<Statement>,
    read_model: &str,
) -> Result<(), StoreError> {
    client
        .execute(&prepared.delete_checkpoint, &[&read_model])
        .map_err(backend)?;
    Ok(())
}

/// Takes or renews the lease of `request`, in a transaction of its own on `client`.
pub(crate) fn acquire(
    client: &mut Client,
    prepared: &Statements<Statement>,
    request: &LeaseRequest<'_>,
) -> Result<Lease, StoreError> {
    let asked = SystemTime::now();
    // READ COMMITTED whatever the server's default: `lease_holder` must read the row as
    // `take_lease` locked it, not as the transaction's first snapshot had it.
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .map_err(backend)?;
    let taken = tx
        .query_opt(
            &prepared.take_lease,
            &[&request.read_model, &request.owner, &request.ttl_micros],
        )
        .map_err(backend)?;
    let lease = match taken {
        Some(_) => request.acquired(asked),
        None => {
            let holder = tx
                .query_opt(&prepared.lease_holder, &[&request.read_model])
                .map_err(backend)?;
            request.refused(holder.as_ref())?
        }
    };
    tx.commit().map_err(backend)?;
    Ok(lease)
}

/// Gives up the lease of `read_model` if `owner` holds it, on `client`.
pub(crate) fn release(
    client: &mut impl GenericClient,
    prepared: &Statements<Statement>,
    read_model: &str,
    owner: &str,
) -> Result<(), StoreError> {
    client
        .execute(&prepared.release_lease, &[&read_model, &owner])
        .map_err(backend)?;
    Ok(())
}

/// The checkpoint row of a read model as an exactly-once commit finds it, locked
/// (`lease_fence`, `SELECT ... FOR UPDATE`) until the commit's transaction ends: no lease
/// can change hands and no other commit can land before this one is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    /// The lease's owner, if any.
    pub(crate) holder: Option<String>,
    /// Whether the lease is unexpired, on the server's clock.
    pub(crate) live: bool,
    /// The stored position (0 without a row).
    pub(crate) position: u64,
}

impl Fence {
    /// The fence from the row of `lease_fence` (none: no checkpoint, no lease).
    pub(crate) fn from_row(row: Option<&Row>, read_model: &str) -> Result<Self, StoreError> {
        let Some(row) = row else {
            return Ok(Self {
                holder: None,
                live: false,
                position: 0,
            });
        };
        Ok(Self {
            holder: row.try_get(0).map_err(backend)?,
            live: row.try_get(1).map_err(backend)?,
            position: position_of_column(row, 2, read_model)?,
        })
    }

    /// Whether a commit may write: if the committer took the lease as `owner`, the row must
    /// still name it (expired or not: while the row is locked nobody can take it over);
    /// without a lease, nobody else may hold an unexpired one. If the committer knows the
    /// position it stored last (`expected`), the row must still have it: an instance whose
    /// read model is behind the stored checkpoint must not write the same events again.
    pub(crate) fn admits(
        &self,
        read_model: &str,
        owner: Option<&str>,
        expected: Option<u64>,
    ) -> Result<(), CommitRefused> {
        let lease_ok = match owner {
            Some(owner) => self.holder.as_deref() == Some(owner),
            None => self.holder.is_none() || !self.live,
        };
        if !lease_ok {
            return Err(CommitRefused::LeaseLost {
                read_model: read_model.to_owned(),
                owner: owner.map(str::to_owned),
                holder: self.holder.clone().filter(|_| self.live),
            });
        }
        match expected {
            Some(expected) if expected != self.position => Err(CommitRefused::CheckpointMoved {
                read_model: read_model.to_owned(),
                expected,
                stored: self.position,
            }),
            _ => Ok(()),
        }
    }
}

/// Locks the checkpoint row of `read_model` in `tx` and reads its [`Fence`].
pub(crate) fn fence(
    tx: &mut impl GenericClient,
    prepared: &Statements<Statement>,
    read_model: &str,
) -> Result<Fence, StoreError> {
    let row = tx
        .query_opt(&prepared.lease_fence, &[&read_model])
        .map_err(backend)?;
    Fence::from_row(row.as_ref(), read_model)
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
        check_name(read_model)?;
        self.with_conn(|conn, _| load(&mut conn.client, &conn.prepared, read_model))
    }

    fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        check_name(read_model)?;
        self.with_conn(|conn, _| save(&mut conn.client, &conn.prepared, read_model, position))
    }

    fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        check_name(read_model)?;
        self.with_conn(|conn, _| delete(&mut conn.client, &conn.prepared, read_model))
    }

    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let request = LeaseRequest::new(read_model, owner, ttl)?;
        self.with_conn(|conn, _| acquire(&mut conn.client, &conn.prepared, &request))
    }

    fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        check_name(read_model)?;
        check_text("lease owner id", owner)?;
        self.with_conn(|conn, _| release(&mut conn.client, &conn.prepared, read_model, owner))
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

    fn fence(holder: Option<&str>, live: bool, position: u64) -> Fence {
        Fence {
            holder: holder.map(str::to_owned),
            live,
            position,
        }
    }

    #[test]
    fn the_fence_admits_only_the_lease_holder_at_the_position_it_left() {
        // The holder, at the position it stored last, expired or not.
        assert!(
            fence(Some("a"), true, 7)
                .admits("m", Some("a"), Some(7))
                .is_ok()
        );
        assert!(
            fence(Some("a"), false, 7)
                .admits("m", Some("a"), Some(7))
                .is_ok()
        );
        assert!(
            fence(Some("a"), true, 7)
                .admits("m", Some("a"), None)
                .is_ok()
        );
        // Taken over, or released after a takeover: refused.
        let lost = fence(Some("b"), true, 7).admits("m", Some("a"), Some(7));
        assert!(
            matches!(&lost, Err(CommitRefused::LeaseLost { holder: Some(h), .. }) if h == "b"),
            "{lost:?}"
        );
        assert!(matches!(
            fence(None, false, 7).admits("m", Some("a"), Some(7)),
            Err(CommitRefused::LeaseLost { holder: None, .. })
        ));
        // The checkpoint moved on without this instance: refused.
        assert_eq!(
            fence(Some("a"), true, 9).admits("m", Some("a"), Some(7)),
            Err(CommitRefused::CheckpointMoved {
                read_model: "m".to_owned(),
                expected: 7,
                stored: 9
            })
        );
        // Without a lease: refused only while another instance holds an unexpired one.
        assert!(fence(None, false, 0).admits("m", None, Some(0)).is_ok());
        assert!(
            fence(Some("b"), false, 0)
                .admits("m", None, Some(0))
                .is_ok()
        );
        assert!(
            fence(Some("b"), true, 0)
                .admits("m", None, Some(0))
                .is_err()
        );
    }

    #[test]
    fn nul_characters_are_refused_before_the_server() {
        let error = check_text("read model name", "a\0b").unwrap_err();
        assert!(error.to_string().contains("NUL character"), "{error}");
        assert!(check_text("read model name", "balances").is_ok());
    }
}
