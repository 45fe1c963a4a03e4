//! Exactly-once partition checkpoints in SQLite (feature `sqlite`):
//! [`ExactlyOncePartitions`] commits a [`SqliteReadModel`]'s tables and the checkpoints of
//! a [`JetStreamProjector`](crate::JetStreamProjector)'s partitions in one transaction.
//!
//! ```no_run
//! # use es_nats::{ConsumerOptions, JetStreamProjector};
//! # use es_nats::sqlite::ExactlyOncePartitions;
//! # use es_sqlite::{SqliteReadModel, SqliteStore};
//! # async fn demo<R: SqliteReadModel + Default + Send>() -> Result<(), Box<dyn std::error::Error>> {
//! // The read model's file on the machine that runs it (its `es_checkpoints` table keeps
//! // the partition checkpoints, next to the read model's own tables).
//! let file = SqliteStore::open("read-model.db")?;
//! let checkpoints = ExactlyOncePartitions::open(&file)?;
//! let jetstream = async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?);
//! let mut projector =
//!     JetStreamProjector::new(jetstream, R::default(), checkpoints, ConsumerOptions::new());
//! projector.catch_up().await?;
//! # Ok(())
//! # }
//! ```

use es_core::StoreError;
use es_sqlite::rusqlite::Connection;
use es_sqlite::{ExactlyOnce, SqliteReadModel, SqliteStore};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::PartitionCheckpoints;

/// [`es_sqlite::ExactlyOnce`] as the [`PartitionCheckpoints`] of a
/// [`JetStreamProjector`](crate::JetStreamProjector): each batch's writes
/// ([`SqliteReadModel::write`]) and the checkpoints of the partitions it advanced are
/// committed in one SQLite transaction
/// ([`ExactlyOnce::commit_named`]), and only then are the messages acknowledged. A crash
/// between the commit and the acknowledgements makes JetStream deliver the messages again,
/// and their checkpoints skip them; a commit that fails rolls back, the read model is reset
/// and the same events are applied again. So every event reaches the tables exactly once.
///
/// The checkpoints are named `{read model}@{stream}/{group}#p{k}/{partitions}` in the file's
/// `es_checkpoints` table. No lease guards them (JetStream hands a partition's messages to
/// one consumer session at a time); a commit is still refused, writing nothing, when
/// another instance moved one of its checkpoints since this one loaded it (see
/// [`ExactlyOnce::commit_named`]): then start a new projector, which loads them again.
///
/// It wraps the [`ExactlyOnce`] rather than being one, because every
/// [`AsyncCheckpointStore`](es_core::AsyncCheckpointStore) is already a
/// [`PartitionCheckpoints`], which leaves no room for an implementation on a type of
/// another crate.
///
/// # Blocking
///
/// SQLite's calls block. On a multi-threaded tokio runtime they run in
/// [`tokio::task::block_in_place`], so the worker's other tasks move to other workers
/// meanwhile. On a current-thread runtime (or outside tokio) they run inline: the
/// transaction holds the runtime's only thread for its duration, a few milliseconds per
/// batch (one `fsync`, as es-sqlite commits with `synchronous = FULL`).
#[derive(Debug)]
pub struct ExactlyOncePartitions {
    inner: ExactlyOnce,
}

impl ExactlyOncePartitions {
    /// Partition checkpoints kept by `checkpoints`.
    pub fn new(checkpoints: ExactlyOnce) -> Self {
        Self { inner: checkpoints }
    }

    /// Opens a connection to `file`'s database ([`ExactlyOnce::open`]), where the read
    /// model's tables live.
    ///
    /// # Errors
    ///
    /// Those of [`ExactlyOnce::open`]: an in-memory store, or a file that cannot be opened.
    pub fn open(file: &SqliteStore) -> Result<Self, es_sqlite::Error> {
        ExactlyOnce::open(file).map(Self::new)
    }

    /// The connection, for creating the read model's tables and querying them.
    pub fn connection(&self) -> &Connection {
        self.inner.connection()
    }

    /// The [`ExactlyOnce`] it wraps.
    pub fn get_ref(&self) -> &ExactlyOnce {
        &self.inner
    }

    /// The [`ExactlyOnce`] it wraps, mutably.
    pub fn get_mut(&mut self) -> &mut ExactlyOnce {
        &mut self.inner
    }

    /// The [`ExactlyOnce`] it wraps, giving the wrapper up.
    pub fn into_inner(self) -> ExactlyOnce {
        self.inner
    }
}

impl From<ExactlyOnce> for ExactlyOncePartitions {
    fn from(checkpoints: ExactlyOnce) -> Self {
        Self::new(checkpoints)
    }
}

/// Runs blocking SQLite work: in `block_in_place` on a multi-threaded runtime, else inline.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

// `PartitionCheckpoints: Send`: an `ExactlyOnce` (a rusqlite `Connection`, which is `Send`)
// moves with its projector to another thread.
impl<R: SqliteReadModel + Send> PartitionCheckpoints<R> for ExactlyOncePartitions {
    async fn load(&mut self, _: &mut R, key: &str) -> Result<u64, StoreError> {
        // The read model is left alone: the projector loads a partition's checkpoint once,
        // before that partition's first batch, when every batch before it was committed
        // (or rolled back and reset), so nothing uncommitted is there to drop.
        blocking(|| self.inner.load_named(key))
    }

    async fn commit(
        &mut self,
        read_model: &mut R,
        positions: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        blocking(|| self.inner.commit_named(read_model, positions))
    }

    fn after_failed_commit(&mut self, read_model: &mut R) -> bool {
        // The transaction rolled back: what the read model gathered is dropped, and the
        // projector applies those events again.
        read_model.reset();
        true
    }

    async fn reset(&mut self, read_model: &mut R, keys: &[&str]) -> Result<(), StoreError> {
        blocking(|| self.inner.reset_named(read_model, keys))
    }
}
