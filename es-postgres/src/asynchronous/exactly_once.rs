//! [`AsyncExactlyOnce`]: the async twin of [`ExactlyOnce`](crate::ExactlyOnce), a read
//! model's writes and checkpoint committed in one tokio-postgres transaction.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use es_core::{AsyncCheckpointStore, AsyncCheckpointer, Lease, ReadModel, StoreError};
use tokio_postgres::{IsolationLevel, Transaction};

use super::checkpoint::LoadCheckpoint;
use super::pool::{Call, Conn};
use super::store::AsyncPostgresStore;
use crate::checkpoint::{Fence, check_name};
use crate::error::backend;
use crate::pool::Attempt;
use crate::statements::sql_int;

/// The async twin of [`PostgresReadModel`](crate::PostgresReadModel): a read model whose
/// state lives in tables of the event store's database, written with tokio-postgres.
///
/// Its handlers gather changes in memory; [`write`](AsyncPostgresReadModel::write) writes
/// them out inside the transaction in which [`AsyncExactlyOnce`] also stores the
/// checkpoint. [`ReadModel::reset`] must drop what was gathered and not written;
/// [`clear`](AsyncPostgresReadModel::clear) empties the tables for a rebuild. Name the
/// tables with their schema: the transaction runs on one of the store's pooled
/// connections, whose `search_path` is the server's default.
pub trait AsyncPostgresReadModel: ReadModel + Send {
    /// Writes (and forgets) the changes gathered since the last call, in `tx`, which also
    /// stores the checkpoint and is then committed.
    fn write(
        &mut self,
        tx: &Transaction<'_>,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send;

    /// Empties the read model's tables, in `tx`, which also resets its checkpoint, before a
    /// rebuild.
    fn clear(
        &mut self,
        tx: &Transaction<'_>,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send;
}

/// The exactly-once checkpointer of an [`AsyncPostgresReadModel`], for an
/// [`AsyncProjector`](es_core::AsyncProjector): each batch's writes and the checkpoint are
/// committed in one transaction on a connection of `store`'s pool, with the fence of
/// [`ExactlyOnce`](crate::ExactlyOnce) (the checkpoint row locked; this instance must still
/// hold the lease, and the checkpoint must be where it left it, or the commit writes
/// nothing and fails with [`CommitRefused`](crate::CommitRefused)).
///
/// A commit is never run again on a new connection once its transaction has begun writing
/// (its connection is closed instead, which rolls it back); a commit whose reply was lost
/// after the server committed it is caught by the next commit's fence, and the projector
/// resumes from the stored position.
///
/// ```no_run
/// # use es_core::AsyncProjector;
/// # use es_postgres::{AsyncExactlyOnce, AsyncPostgresReadModel, AsyncPostgresStore};
/// # async fn demo<R: AsyncPostgresReadModel + Default>() -> Result<(), Box<dyn std::error::Error>> {
/// let store = AsyncPostgresStore::connect_with_schema("postgres://es:es@localhost/es", "billing").await?;
/// let checkpoints = AsyncExactlyOnce::new(&store);
/// let mut projector = AsyncProjector::new(store.clone(), R::default(), checkpoints);
/// projector.catch_up().await?;
/// # Ok(())
/// # }
/// ```
pub struct AsyncExactlyOnce {
    store: AsyncPostgresStore,
    /// The owner of the lease this checkpointer took last, if it holds one.
    owner: Option<String>,
    /// The position this checkpointer knows to be stored (see `ExactlyOnce`).
    stored: Option<u64>,
}

impl fmt::Debug for AsyncExactlyOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncExactlyOnce")
            .field("schema", &self.store.schema())
            .field("owner", &self.owner)
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

impl AsyncExactlyOnce {
    /// An exactly-once checkpointer committing on connections of `store`'s pool.
    pub fn new(store: &AsyncPostgresStore) -> Self {
        Self {
            store: store.clone(),
            owner: None,
            stored: None,
        }
    }
}

/// Begins a `READ COMMITTED` transaction on `conn` and locks and reads the fence of
/// `read_model`.
async fn fenced<'c>(
    conn: &'c mut Conn,
    read_model: &str,
) -> Result<(deadpool_postgres::Transaction<'c>, Fence), StoreError> {
    let tx = conn
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(backend)?;
    let row = tx
        .query_opt(&conn.prepared.lease_fence, &[&read_model])
        .await
        .map_err(backend)?;
    let fence = Fence::from_row(row.as_ref(), read_model)?;
    Ok((tx, fence))
}

/// One commit: the fence, the read model's writes, the checkpoint, in one transaction.
struct Commit<'a, R> {
    read_model: &'a mut R,
    position: i64,
    owner: Option<&'a str>,
    expected: Option<u64>,
    /// Gets the stored position the fence found, if it refused the commit.
    refused_at: &'a mut Option<u64>,
}

impl<R: AsyncPostgresReadModel> Call for Commit<'_, R> {
    type Output = ();

    async fn run(&mut self, conn: &mut Conn, attempt: &mut Attempt) -> Result<(), StoreError> {
        let save = conn.prepared.save_checkpoint.clone();
        let (tx, fence) = fenced(conn, R::NAME).await?;
        if let Err(refused) = fence.admits(R::NAME, self.owner, self.expected) {
            *self.refused_at = Some(fence.position);
            return Err(StoreError::backend(refused));
        }
        // The read model's changes are handed over from here: not again.
        attempt.irrevocable();
        self.read_model.write(&tx).await.map_err(backend)?;
        tx.execute(&save, &[&R::NAME, &self.position])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
}

/// A rebuild's reset: the fence (the lease only), the tables cleared, the checkpoint
/// deleted, in one transaction.
struct Reset<'a, R> {
    read_model: &'a mut R,
    owner: Option<&'a str>,
}

impl<R: AsyncPostgresReadModel> Call for Reset<'_, R> {
    type Output = ();

    async fn run(&mut self, conn: &mut Conn, attempt: &mut Attempt) -> Result<(), StoreError> {
        let delete = conn.prepared.delete_checkpoint.clone();
        let (tx, fence) = fenced(conn, R::NAME).await?;
        fence
            .admits(R::NAME, self.owner, None)
            .map_err(StoreError::backend)?;
        attempt.irrevocable();
        self.read_model.clear(&tx).await.map_err(backend)?;
        tx.execute(&delete, &[&R::NAME]).await.map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
}

impl<R: AsyncPostgresReadModel> AsyncCheckpointer<R> for AsyncExactlyOnce {
    async fn load(&mut self, read_model: &mut R) -> Result<u64, StoreError> {
        // Anything gathered but not written belongs to no committed position.
        read_model.reset();
        check_name(R::NAME)?;
        let position = self
            .store
            .with_conn(LoadCheckpoint {
                read_model: R::NAME,
            })
            .await?;
        self.stored = Some(position);
        Ok(position)
    }

    async fn commit(&mut self, read_model: &mut R, position: u64) -> Result<(), StoreError> {
        check_name(R::NAME)?;
        let mut refused_at = None;
        let result = self
            .store
            .with_conn(Commit {
                read_model,
                position: sql_int(position),
                owner: self.owner.as_deref(),
                expected: self.stored,
                refused_at: &mut refused_at,
            })
            .await;
        match (&result, refused_at) {
            (Ok(()), _) => self.stored = Some(position),
            (Err(_), Some(stored)) => self.stored = Some(stored),
            // Unknown whether it committed (a lost reply): the next commit's fence finds out.
            (Err(_), None) => {}
        }
        result
    }

    fn after_failed_commit(&mut self, read_model: &mut R, committed: u64, _: u64) -> u64 {
        read_model.reset();
        let resume = self.stored.unwrap_or(committed);
        self.stored = Some(resume);
        resume
    }

    async fn reset(&mut self, read_model: &mut R) -> Result<(), StoreError> {
        check_name(R::NAME)?;
        self.store
            .with_conn(Reset {
                read_model: &mut *read_model,
                owner: self.owner.as_deref(),
            })
            .await?;
        self.stored = Some(0);
        read_model.reset();
        Ok(())
    }

    async fn acquire_lease(
        &mut self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let lease = AsyncCheckpointStore::acquire_lease(&self.store, name, owner, ttl).await?;
        self.owner = match lease {
            Lease::Acquired { .. } => Some(owner.to_owned()),
            Lease::HeldBy { .. } => None,
        };
        Ok(lease)
    }

    async fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.owner = None;
        AsyncCheckpointStore::release_lease(&self.store, name, owner).await
    }
}
