//! [`ExactlyOnce`]: a read model kept in the event store's SQLite file, committed with its
//! checkpoint in one transaction.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use es_core::{Checkpointer, Lease, ReadModel, StoreError};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::checkpoint;
use crate::error::Error;
use crate::schema;
use crate::store::{SqliteStore, backend};

/// A read model whose state lives in tables of the event store's SQLite file.
///
/// Its handlers (from `#[read_model]`) gather changes in memory; [`write`](SqliteReadModel::write)
/// writes them out inside the transaction in which [`ExactlyOnce`] also stores the
/// checkpoint, so the tables and the checkpoint always agree: after a crash, no event is
/// missing from the tables, nor applied to them twice.
///
/// [`ReadModel::reset`] must drop what was gathered and not written (the default of
/// `#[read_model]`, `*self = Default::default()`, does); [`clear`](SqliteReadModel::clear)
/// empties the tables for a rebuild.
pub trait SqliteReadModel: ReadModel {
    /// Writes (and forgets) the changes gathered since the last call, in `tx`, which also
    /// stores the checkpoint and is then committed.
    fn write(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()>;

    /// Empties the read model's tables, in `tx`, which also resets its checkpoint, before a
    /// rebuild.
    fn clear(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()>;
}

/// The exactly-once checkpointer of a [`SqliteReadModel`]: each batch's writes and the
/// checkpoint are committed in one transaction on a connection of its own to the event
/// store's file. The transaction also checks that the projector still holds its lease:
/// an instance that stalled past it while another took over writes nothing.
///
/// ```no_run
/// # use es_core::{Projector, ReadModel};
/// # use es_sqlite::{ExactlyOnce, SqliteReadModel, SqliteStore};
/// # fn demo<R: SqliteReadModel + Default>() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::open("events.db")?;
/// let checkpoints = ExactlyOnce::open(&store)?;
/// let mut projector = Projector::new(store.clone(), R::default(), checkpoints);
/// projector.catch_up()?;
/// # Ok(())
/// # }
/// ```
pub struct ExactlyOnce {
    conn: Connection,
    /// The owner of the lease this checkpointer took last, if it holds one: each commit
    /// checks, in its transaction, that no other owner has taken the lease since.
    owner: Option<String>,
}

impl fmt::Debug for ExactlyOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExactlyOnce").finish_non_exhaustive()
    }
}

impl ExactlyOnce {
    /// Opens a connection to `store`'s file for the read model's writes and checkpoint.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for an in-memory store (its database is private to its own
    /// connection), and the errors of [`SqliteStore::open`] for the file.
    pub fn open(store: &SqliteStore) -> Result<Self, Error> {
        let Some(path) = store.path() else {
            return Err(Error::InvalidPath {
                path: ":memory:".into(),
                reason: "an in-memory store's database is private to its own connection, so a read model cannot share its transactions",
            });
        };
        Self::open_path(path)
    }

    fn open_path(path: &Path) -> Result<Self, Error> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        schema::configure(&conn, path)?;
        Ok(Self { conn, owner: None })
    }

    /// The connection, for creating the read model's tables and querying them.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn transaction(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)
    }
}

impl<R: SqliteReadModel> Checkpointer<R> for ExactlyOnce {
    fn load(&mut self, read_model: &mut R) -> Result<u64, StoreError> {
        // Anything gathered but not written belongs to no committed position.
        read_model.reset();
        checkpoint::load(&self.conn, R::NAME)
    }

    fn commit(&mut self, read_model: &mut R, position: u64) -> Result<(), StoreError> {
        let owner = self.owner.clone();
        let tx = self.transaction()?;
        // Fencing: an instance that lost its lease (stalled past it) must not write.
        if let Some(owner) = owner {
            if let Some(holder) = checkpoint::other_holder(&tx, R::NAME, &owner)? {
                return Err(StoreError::backend(format!(
                    "read model `{}`: the lease was taken over by `{holder}` while this instance (`{owner}`) was applying a batch; nothing was written, and this instance's projector must be restarted",
                    R::NAME
                )));
            }
        }
        read_model.write(&tx).map_err(backend)?;
        checkpoint::save(&tx, R::NAME, position)?;
        tx.commit().map_err(backend)
    }

    fn after_failed_commit(&mut self, read_model: &mut R, committed: u64, _: u64) -> u64 {
        // The transaction rolled back: drop what it would have written and read it again.
        read_model.reset();
        committed
    }

    fn reset(&mut self, read_model: &mut R) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        read_model.clear(&tx).map_err(backend)?;
        checkpoint::delete(&tx, R::NAME)?;
        tx.commit().map_err(backend)?;
        read_model.reset();
        Ok(())
    }

    fn acquire_lease(
        &mut self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let lease = checkpoint::acquire(&mut self.conn, name, owner, ttl)?;
        self.owner = match lease {
            Lease::Acquired { .. } => Some(owner.to_owned()),
            Lease::HeldBy { .. } => None,
        };
        Ok(lease)
    }

    fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.owner = None;
        checkpoint::release(&self.conn, name, owner)
    }
}
