//! [`AsyncCheckpointStore`] and [`AsyncCheckpointer`]: checkpoints and leases for the
//! [`AsyncProjector`](crate::AsyncProjector) (feature `async`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::projection::checkpoint::{CheckpointStore, Lease};
use crate::projection::read_model::ReadModel;
use crate::store::{InMemoryStore, StoreError};

/// The async twin of [`CheckpointStore`]: the same operations with the same guarantees
/// (the `es-store-tests` suite, `async_checkpoint_tests!`, runs against both), for stores
/// used from async code. Every future it returns is `Send`.
///
/// [`InMemoryStore`], `es_sqlite::AsyncSqliteStore` and `es_postgres::AsyncPostgresStore`
/// implement it, next to their events.
pub trait AsyncCheckpointStore: Send + Sync {
    /// The position stored for `read_model` (0: none); see
    /// [`CheckpointStore::load_checkpoint`].
    fn load_checkpoint(
        &self,
        read_model: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores `position` for `read_model`; see [`CheckpointStore::save_checkpoint`].
    fn save_checkpoint(
        &self,
        read_model: &str,
        position: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the checkpoint of `read_model`; see [`CheckpointStore::delete_checkpoint`].
    fn delete_checkpoint(
        &self,
        read_model: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes (or renews) the lease of `read_model` for `owner`; see
    /// [`CheckpointStore::acquire_lease`].
    fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// Gives the lease up, if `owner` holds it; see [`CheckpointStore::release_lease`].
    fn release_lease(
        &self,
        read_model: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How an [`AsyncProjector`](crate::AsyncProjector) keeps the progress of read model `R`:
/// the async twin of [`Checkpointer`](crate::Checkpointer), whose documentation states the
/// contract of each method.
///
/// Every [`AsyncCheckpointStore`] is one (at least once: the checkpoint is saved after the
/// events were applied); `es_postgres::AsyncExactlyOnce` commits a PostgreSQL read model's
/// writes with the checkpoint in one transaction (exactly once).
pub trait AsyncCheckpointer<R: ReadModel>: Send {
    /// The position to resume after (0: from the start).
    fn load(&mut self, read_model: &mut R) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Records that every event up to `position` is applied to `read_model`.
    fn commit(
        &mut self,
        read_model: &mut R,
        position: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Called after [`commit`](AsyncCheckpointer::commit) failed; see
    /// [`Checkpointer::after_failed_commit`](crate::Checkpointer::after_failed_commit).
    fn after_failed_commit(&mut self, read_model: &mut R, committed: u64, applied: u64) -> u64 {
        let _ = (read_model, committed);
        applied
    }

    /// Resets `read_model` ([`ReadModel::reset`]) and its checkpoint, for a rebuild.
    fn reset(&mut self, read_model: &mut R) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// See [`AsyncCheckpointStore::acquire_lease`].
    fn acquire_lease(
        &mut self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// See [`AsyncCheckpointStore::release_lease`].
    fn release_lease(
        &mut self,
        name: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<R: ReadModel + Send, C: AsyncCheckpointStore> AsyncCheckpointer<R> for C {
    async fn load(&mut self, _: &mut R) -> Result<u64, StoreError> {
        self.load_checkpoint(R::NAME).await
    }

    async fn commit(&mut self, _: &mut R, position: u64) -> Result<(), StoreError> {
        self.save_checkpoint(R::NAME, position).await
    }

    async fn reset(&mut self, read_model: &mut R) -> Result<(), StoreError> {
        // The checkpoint first: a crash after it leaves a read model that is rebuilt again.
        self.delete_checkpoint(R::NAME).await?;
        read_model.reset();
        Ok(())
    }

    async fn acquire_lease(
        &mut self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        AsyncCheckpointStore::acquire_lease(self, name, owner, ttl).await
    }

    async fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError> {
        AsyncCheckpointStore::release_lease(self, name, owner).await
    }
}

/// The in-memory store's checkpoints take a short lock: every call finishes at once.
impl AsyncCheckpointStore for InMemoryStore {
    async fn load_checkpoint(&self, read_model: &str) -> Result<u64, StoreError> {
        CheckpointStore::load_checkpoint(self, read_model)
    }

    async fn save_checkpoint(&self, read_model: &str, position: u64) -> Result<(), StoreError> {
        CheckpointStore::save_checkpoint(self, read_model, position)
    }

    async fn delete_checkpoint(&self, read_model: &str) -> Result<(), StoreError> {
        CheckpointStore::delete_checkpoint(self, read_model)
    }

    async fn acquire_lease(
        &self,
        read_model: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        CheckpointStore::acquire_lease(self, read_model, owner, ttl)
    }

    async fn release_lease(&self, read_model: &str, owner: &str) -> Result<(), StoreError> {
        CheckpointStore::release_lease(self, read_model, owner)
    }
}

macro_rules! forward_async_checkpoint_store {
    ($($pointer:ty),+) => {$(
        impl<S: AsyncCheckpointStore + ?Sized> AsyncCheckpointStore for $pointer {
            fn load_checkpoint(
                &self,
                read_model: &str,
            ) -> impl Future<Output = Result<u64, StoreError>> + Send {
                (**self).load_checkpoint(read_model)
            }
            fn save_checkpoint(
                &self,
                read_model: &str,
                position: u64,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).save_checkpoint(read_model, position)
            }
            fn delete_checkpoint(
                &self,
                read_model: &str,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).delete_checkpoint(read_model)
            }
            fn acquire_lease(
                &self,
                read_model: &str,
                owner: &str,
                ttl: Duration,
            ) -> impl Future<Output = Result<Lease, StoreError>> + Send {
                (**self).acquire_lease(read_model, owner, ttl)
            }
            fn release_lease(
                &self,
                read_model: &str,
                owner: &str,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).release_lease(read_model, owner)
            }
        }
    )+};
}

forward_async_checkpoint_store!(&S, Arc<S>, Box<S>);
