//! [`AsyncCheckpointStore`] for [`AsyncPostgresStore`]: the sync store's checkpoint
//! statements, checks and lease logic ([`crate::checkpoint`]), awaited on the pool.

use std::time::{Duration, SystemTime};

use es_core::{AsyncCheckpointStore, Lease, StoreError};
use tokio_postgres::IsolationLevel;

use super::pool::{Call, Conn};
use super::store::AsyncPostgresStore;
use crate::checkpoint::{LeaseRequest, check_name, check_text, position_of};
use crate::error::backend;
use crate::pool::Attempt;
use crate::statements::sql_int;

/// The position stored for a read model.
pub(super) struct LoadCheckpoint<'a> {
    pub(super) read_model: &'a str,
}

impl Call for LoadCheckpoint<'_> {
    type Output = u64;

    async fn run(&mut self, conn: &mut Conn, _: &mut Attempt) -> Result<u64, StoreError> {
        let row = conn
            .client
            .query_opt(&conn.prepared.load_checkpoint, &[&self.read_model])
            .await
            .map_err(backend)?;
        row.map_or(Ok(0), |row| position_of(&row, self.read_model))
    }
}

/// Stores a read model's position, or (`position: None`) sets it back to 0.
struct SaveCheckpoint<'a> {
    read_model: &'a str,
    position: Option<i64>,
}

impl Call for SaveCheckpoint<'_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Conn, _: &mut Attempt) -> Result<(), StoreError> {
        match self.position {
            Some(position) => conn
                .client
                .execute(
                    &conn.prepared.save_checkpoint,
                    &[&self.read_model, &position],
                )
                .await
                .map_err(backend)?,
            None => conn
                .client
                .execute(&conn.prepared.delete_checkpoint, &[&self.read_model])
                .await
                .map_err(backend)?,
        };
        Ok(())
    }
}

/// Takes or renews a lease, as [`crate::checkpoint::acquire`] does.
struct AcquireLease<'a> {
    request: LeaseRequest<'a>,
}

impl Call for AcquireLease<'_> {
    type Output = Lease;

    async fn run(&mut self, conn: &mut Conn, _: &mut Attempt) -> Result<Lease, StoreError> {
        let request = &self.request;
        let asked = SystemTime::now();
        // READ COMMITTED whatever the server's default: `lease_holder` must read the row as
        // `take_lease` locked it, not as the transaction's first snapshot had it.
        let tx = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(backend)?;
        let taken = tx
            .query_opt(
                &conn.prepared.take_lease,
                &[&request.read_model, &request.owner, &request.ttl_micros],
            )
            .await
            .map_err(backend)?;
        let lease = match taken {
            Some(_) => request.acquired(asked),
            None => {
                let holder = tx
                    .query_opt(&conn.prepared.lease_holder, &[&request.read_model])
                    .await
                    .map_err(backend)?;
                request.refused(holder.as_ref())?
            }
        };
        tx.commit().await.map_err(backend)?;
        Ok(lease)
    }
}

/// Gives up a lease if its owner holds it.
struct ReleaseLease<'a> {
    read_model: &'a str,
    owner: &'a str,
}

impl Call for ReleaseLease<'_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Conn, _: &mut Attempt) -> Result<(), StoreError> {
        conn.client
            .execute(
                &conn.prepared.release_lease,
                &[&self.read_model, &self.owner],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// The sync store's checkpoints and leases (see
/// [`PostgresStore`](crate::PostgresStore)'s [`CheckpointStore`](es_core::CheckpointStore)):
/// the same table, statements and lease rules, with expiry on the server's clock. Every
/// call is idempotent, so one whose connection turned out broken runs once more on a new
/// connection. Names and owner ids must not contain NUL characters.
impl AsyncCheckpointStore for AsyncPostgresStore {
    async fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        check_name(read_model)?;
        self.with_conn(LoadCheckpoint { read_model }).await
    }

    async fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        check_name(read_model)?;
        self.with_conn(SaveCheckpoint {
            read_model,
            position: Some(sql_int(position)),
        })
        .await
    }

    async fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        check_name(read_model)?;
        self.with_conn(SaveCheckpoint {
            read_model,
            position: None,
        })
        .await
    }

    async fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let request = LeaseRequest::new(read_model, owner, ttl)?;
        self.with_conn(AcquireLease { request }).await
    }

    async fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        check_name(read_model)?;
        check_text("lease owner id", owner)?;
        self.with_conn(ReleaseLease { read_model, owner }).await
    }
}
