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
/// an instance that stalled past it while another took over writes nothing. And it checks
/// that the stored checkpoint is still the one this instance last loaded or committed: an
/// instance whose read model fell behind it (another instance projected meanwhile) writes
/// nothing, and its projector resumes from the stored position instead of applying the
/// events in between a second time.
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
    /// The position this checkpointer knows to be stored (loaded, committed, or found by a
    /// refused commit): each commit checks, in its transaction, that it still is.
    stored: Option<u64>,
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
        .map_err(|cause| Error::Open {
            path: path.to_owned(),
            cause,
        })?;
        schema::configure(&conn, path)?;
        Ok(Self {
            conn,
            owner: None,
            stored: None,
        })
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
        let position = checkpoint::load(&self.conn, R::NAME)?;
        self.stored = Some(position);
        Ok(position)
    }

    fn commit(&mut self, read_model: &mut R, position: u64) -> Result<(), StoreError> {
        let owner = self.owner.clone();
        let expected = self.stored;
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
        // Nor one whose read model is behind the stored checkpoint.
        let stored = checkpoint::load(&tx, R::NAME)?;
        if let Some(expected) = expected.filter(|&expected| expected != stored) {
            drop(tx);
            self.stored = Some(stored);
            return Err(StoreError::backend(format!(
                "read model `{}`: its checkpoint is at {stored}, not at {expected} where this instance left it (another instance projected meanwhile), so nothing was written; the projector resumes from {stored}: call it again",
                R::NAME
            )));
        }
        read_model.write(&tx).map_err(backend)?;
        checkpoint::save(&tx, R::NAME, position)?;
        tx.commit().map_err(backend)?;
        self.stored = Some(position);
        Ok(())
    }

    fn after_failed_commit(&mut self, read_model: &mut R, committed: u64, _: u64) -> u64 {
        // The transaction rolled back: drop what it would have written, and read again
        // after what is stored (`committed`, unless the commit found otherwise).
        read_model.reset();
        let resume = self.stored.unwrap_or(committed);
        self.stored = Some(resume);
        resume
    }

    fn reset(&mut self, read_model: &mut R) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        read_model.clear(&tx).map_err(backend)?;
        checkpoint::delete(&tx, R::NAME)?;
        tx.commit().map_err(backend)?;
        self.stored = Some(0);
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

#[cfg(test)]
mod tests {
    use es_core::{ApplyError, EventRecord, Handled};

    use super::*;

    /// Rows gathered by hand (the test feeds no events), written to `rm_rows`.
    #[derive(Debug, Default)]
    struct Rows {
        pending: Vec<i64>,
    }

    impl ReadModel for Rows {
        const NAME: &'static str = "rows";
        const HANDLES: &'static [Handled] = &[];

        fn apply(&mut self, _: &EventRecord<'_>) -> Result<(), ApplyError> {
            Ok(())
        }

        fn reset(&mut self) {
            self.pending.clear();
        }
    }

    impl SqliteReadModel for Rows {
        fn write(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
            for position in self.pending.drain(..) {
                tx.execute("INSERT INTO rm_rows (position) VALUES (?1)", [position])?;
            }
            Ok(())
        }

        fn clear(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
            tx.execute("DELETE FROM rm_rows", []).map(drop)
        }
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn
            .prepare("SELECT position FROM rm_rows ORDER BY position")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Two instances load the same checkpoint; the second commits a batch first. The
    /// first's commit of the same batch is refused and writes nothing, and it resumes from
    /// the position the second stored, so no event is applied twice.
    #[test]
    fn an_instance_behind_the_stored_checkpoint_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
        let mut first = ExactlyOnce::open(&store).unwrap();
        let mut second = ExactlyOnce::open(&store).unwrap();
        first
            .connection()
            .execute_batch("CREATE TABLE rm_rows (position INTEGER NOT NULL)")
            .unwrap();
        let (mut model_one, mut model_two) = (Rows::default(), Rows::default());
        assert_eq!(first.load(&mut model_one).unwrap(), 0);
        assert_eq!(second.load(&mut model_two).unwrap(), 0);
        model_two.pending.extend([1, 2]);
        second.commit(&mut model_two, 2).unwrap();

        model_one.pending.extend([1, 2]);
        let error = first.commit(&mut model_one, 2).unwrap_err();
        assert!(error.to_string().contains("checkpoint is at 2"), "{error}");
        assert_eq!(rows(first.connection()), [1, 2], "nothing written twice");
        assert_eq!(first.after_failed_commit(&mut model_one, 0, 2), 2);
        assert!(model_one.pending.is_empty());
        // From the stored position, it commits again.
        model_one.pending.push(3);
        first.commit(&mut model_one, 3).unwrap();
        assert_eq!(rows(first.connection()), [1, 2, 3]);
        assert_eq!(checkpoint::load(first.connection(), Rows::NAME).unwrap(), 3);
    }
}
