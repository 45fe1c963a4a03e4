//! [`ExactlyOnce`]: a read model kept in the event store's SQLite file, committed with its
//! checkpoint in one transaction.

use std::collections::HashMap;
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
///
/// # Named checkpoints
///
/// A read model fed from elsewhere than this file's log (say, one checkpoint per partition
/// of a message broker, as es-nats' JetStream projector keeps them) uses
/// [`load_named`](ExactlyOnce::load_named), [`commit_named`](ExactlyOnce::commit_named) and
/// [`reset_named`](ExactlyOnce::reset_named): the same transaction, with any number of
/// checkpoints, each under a name of its own in `es_checkpoints`.
pub struct ExactlyOnce {
    conn: Connection,
    /// The owner of the lease this checkpointer took last, if it holds one: each commit
    /// checks, in its transaction, that no other owner has taken the lease since.
    owner: Option<String>,
    /// For each checkpoint name, the position this instance's read model is at (loaded,
    /// committed, reset, or found by a refused [`Checkpointer::commit`]): each commit checks,
    /// in its transaction, that it is still the stored one.
    stored: HashMap<String, u64>,
}

impl fmt::Debug for ExactlyOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExactlyOnce").finish_non_exhaustive()
    }
}

/// A checkpoint that a commit found, in its transaction, elsewhere than where this
/// instance's read model is.
struct Moved {
    name: String,
    /// Where this instance's read model is.
    expected: u64,
    /// What is stored.
    stored: u64,
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
            stored: HashMap::new(),
        })
    }

    /// The connection, for creating the read model's tables and querying them.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The position stored under the checkpoint `name` (0: none), which this instance then
    /// expects to find there at its next [`commit_named`](ExactlyOnce::commit_named).
    ///
    /// Load each checkpoint before committing it: the read model must hold what was
    /// committed up to that position (its tables do), and nothing gathered beyond it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if SQLite fails, or if the stored position is negative (the
    /// table was changed outside es-sqlite).
    pub fn load_named(&mut self, name: &str) -> Result<u64, StoreError> {
        let position = checkpoint::load(&self.conn, name)?;
        self.stored.insert(name.to_owned(), position);
        Ok(position)
    }

    /// Commits, in one `BEGIN IMMEDIATE` transaction, the read model's changes
    /// ([`SqliteReadModel::write`]) and every `(name, position)` checkpoint: after a crash,
    /// the tables and all of the checkpoints agree.
    ///
    /// Before writing, the transaction checks that each checkpoint this instance loaded or
    /// committed is still at the position it left it: if another instance committed or
    /// reset it meanwhile, nothing is written, and the commit keeps being refused until the
    /// checkpoint is loaded again ([`load_named`](ExactlyOnce::load_named); with es-nats, a
    /// new projector), so that no event is applied twice. A name this instance never loaded
    /// is not checked.
    ///
    /// No lease is checked, unlike [`Checkpointer::commit`]: these checkpoints follow
    /// positions of a message broker whose consumers hand each partition to one consumer
    /// session at a time (NATS JetStream delivers a durable consumer's messages to the
    /// one session that holds them until acknowledged), so no lease of this file guards
    /// them; the position check above still refuses a second instance that committed the
    /// same checkpoints.
    ///
    /// On an error the transaction rolled back: reset the read model
    /// ([`ReadModel::reset`]) and apply the same events again.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if a checkpoint moved (naming it, the stored position and
    /// this instance's), if the read model's `write` fails, or if SQLite does (the
    /// database stayed locked by another writer for 10 s, say).
    pub fn commit_named<R: SqliteReadModel>(
        &mut self,
        read_model: &mut R,
        positions: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        match self.commit_positions(read_model, positions, None)? {
            None => Ok(()),
            Some(Moved {
                name,
                expected,
                stored,
            }) => Err(StoreError::backend(format!(
                "read model `{}`: checkpoint `{name}` is at {stored}, not at {expected} where this instance left it (another instance committed or reset it meanwhile), so nothing was written; load the checkpoints again (start a new projector) to resume from the stored positions",
                R::NAME
            ))),
        }
    }

    /// Empties the read model's tables ([`SqliteReadModel::clear`]) and sets the checkpoints
    /// `names` back to 0, in one transaction; then resets the read model
    /// ([`ReadModel::reset`]), for a rebuild. Other checkpoints are left as they are.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the read model's `clear` or SQLite fails: then nothing
    /// was changed.
    pub fn reset_named<R: SqliteReadModel>(
        &mut self,
        read_model: &mut R,
        names: &[&str],
    ) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        read_model.clear(&tx).map_err(backend)?;
        for name in names {
            checkpoint::delete(&tx, name)?;
        }
        tx.commit().map_err(backend)?;
        for name in names {
            self.stored.insert((*name).to_owned(), 0);
        }
        read_model.reset();
        Ok(())
    }

    fn transaction(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)
    }

    /// One commit, in a `BEGIN IMMEDIATE` transaction: checks that this instance still
    /// holds the lease named `lease` (if given, and it took one), then that every checkpoint
    /// of `positions` it knows is still where it left it; writes the read model's changes
    /// and saves every position; commits. Returns the first checkpoint found moved, if
    /// any: then nothing was written.
    fn commit_positions<R: SqliteReadModel>(
        &mut self,
        read_model: &mut R,
        positions: &[(&str, u64)],
        lease: Option<&str>,
    ) -> Result<Option<Moved>, StoreError> {
        // The connection alone is borrowed by the transaction: `owner` and `stored` stay
        // readable.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        // Fencing: an instance that lost its lease (stalled past it) must not write.
        if let (Some(lease), Some(owner)) = (lease, &self.owner) {
            if let Some(holder) = checkpoint::other_holder(&tx, lease, owner)? {
                return Err(StoreError::backend(format!(
                    "read model `{}`: the lease was taken over by `{holder}` while this instance (`{owner}`) was applying a batch; nothing was written, and this instance's projector must be restarted",
                    R::NAME
                )));
            }
        }
        // Nor one whose read model is not where a checkpoint is stored.
        for (name, _) in positions {
            let Some(&expected) = self.stored.get(*name) else {
                continue;
            };
            let stored = checkpoint::load(&tx, name)?;
            if stored != expected {
                // Dropping the transaction rolls it back.
                return Ok(Some(Moved {
                    name: (*name).to_owned(),
                    expected,
                    stored,
                }));
            }
        }
        read_model.write(&tx).map_err(backend)?;
        for (name, position) in positions {
            checkpoint::save(&tx, name, *position)?;
        }
        tx.commit().map_err(backend)?;
        for (name, position) in positions {
            self.stored.insert((*name).to_owned(), *position);
        }
        Ok(None)
    }
}

impl<R: SqliteReadModel> Checkpointer<R> for ExactlyOnce {
    fn load(&mut self, read_model: &mut R) -> Result<u64, StoreError> {
        // Anything gathered but not written belongs to no committed position.
        read_model.reset();
        self.load_named(R::NAME)
    }

    fn commit(&mut self, read_model: &mut R, position: u64) -> Result<(), StoreError> {
        let Some(moved) =
            self.commit_positions(read_model, &[(R::NAME, position)], Some(R::NAME))?
        else {
            return Ok(());
        };
        // The projector resumes from what is stored (`after_failed_commit`).
        self.stored.insert(moved.name, moved.stored);
        Err(StoreError::backend(format!(
            "read model `{}`: its checkpoint is at {}, not at {} where this instance left it (another instance projected meanwhile), so nothing was written; the projector resumes from {}: call it again",
            R::NAME,
            moved.stored,
            moved.expected,
            moved.stored
        )))
    }

    fn after_failed_commit(&mut self, read_model: &mut R, committed: u64, _: u64) -> u64 {
        // The transaction rolled back: drop what it would have written, and read again
        // after what is stored (`committed`, unless the commit found otherwise).
        read_model.reset();
        *self.stored.entry(R::NAME.to_owned()).or_insert(committed)
    }

    fn reset(&mut self, read_model: &mut R) -> Result<(), StoreError> {
        self.reset_named(read_model, &[R::NAME])
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

    /// Rows gathered, then a failure for the next `write`.
    #[derive(Debug, Default)]
    struct Flaky {
        rows: Rows,
        fail_next_write: bool,
    }

    impl ReadModel for Flaky {
        const NAME: &'static str = "flaky";
        const HANDLES: &'static [Handled] = &[];

        fn apply(&mut self, _: &EventRecord<'_>) -> Result<(), ApplyError> {
            Ok(())
        }

        fn reset(&mut self) {
            self.rows.reset();
        }
    }

    impl SqliteReadModel for Flaky {
        fn write(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
            // The rows first, so that the failure comes after some were written.
            self.rows.write(tx)?;
            if std::mem::take(&mut self.fail_next_write) {
                tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            }
            Ok(())
        }

        fn clear(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
            self.rows.clear(tx)
        }
    }

    fn with_rows_table(store: &SqliteStore) -> ExactlyOnce {
        let checkpoints = ExactlyOnce::open(store).unwrap();
        checkpoints
            .connection()
            .execute_batch("CREATE TABLE rm_rows (position INTEGER NOT NULL)")
            .unwrap();
        checkpoints
    }

    /// The rows and several named checkpoints are committed together; a failing `write`
    /// rolls back the rows it wrote and leaves every checkpoint as it was.
    #[test]
    fn named_checkpoints_are_committed_with_the_rows_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
        let mut checkpoints = with_rows_table(&store);
        assert_eq!(checkpoints.load_named("p0").unwrap(), 0);
        assert_eq!(checkpoints.load_named("p1").unwrap(), 0);
        let mut model = Flaky::default();
        model.rows.pending.extend([1, 2, 3]);
        checkpoints
            .commit_named(&mut model, &[("p0", 2), ("p1", 3)])
            .unwrap();
        assert_eq!(rows(checkpoints.connection()), [1, 2, 3]);

        model.rows.pending.extend([4, 5]);
        model.fail_next_write = true;
        let error = checkpoints
            .commit_named(&mut model, &[("p0", 5), ("p1", 4)])
            .unwrap_err();
        assert!(error.to_string().contains("no such table"), "{error}");
        assert_eq!(rows(checkpoints.connection()), [1, 2, 3], "rolled back");
        // Another connection (the next process) sees the same.
        let mut again = ExactlyOnce::open(&store).unwrap();
        assert_eq!(again.load_named("p0").unwrap(), 2);
        assert_eq!(again.load_named("p1").unwrap(), 3);

        // The same instance commits the batch again (the failure is not a moved checkpoint).
        model.reset();
        model.rows.pending.extend([4, 5]);
        checkpoints
            .commit_named(&mut model, &[("p0", 5), ("p1", 4)])
            .unwrap();
        assert_eq!(rows(checkpoints.connection()), [1, 2, 3, 4, 5]);
        assert_eq!(again.load_named("p0").unwrap(), 5);
        assert_eq!(again.load_named("p1").unwrap(), 4);
    }

    /// A second instance committed a named checkpoint: the first one's commit writes
    /// nothing, names the checkpoint, and is refused until it loads the checkpoint again.
    #[test]
    fn a_named_checkpoint_moved_by_another_instance_refuses_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
        let mut first = with_rows_table(&store);
        let mut second = ExactlyOnce::open(&store).unwrap();
        let (mut model_one, mut model_two) = (Flaky::default(), Flaky::default());
        first.load_named("p0").unwrap();
        first.load_named("p1").unwrap();
        second.load_named("p1").unwrap();
        model_two.rows.pending.extend([1, 2]);
        second.commit_named(&mut model_two, &[("p1", 2)]).unwrap();

        model_one.rows.pending.extend([1, 2, 3]);
        let error = first
            .commit_named(&mut model_one, &[("p0", 3), ("p1", 2)])
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("checkpoint `p1` is at 2, not at 0"),
            "{message}"
        );
        assert_eq!(rows(first.connection()), [1, 2], "nothing written twice");
        assert_eq!(checkpoint::load(first.connection(), "p0").unwrap(), 0);
        // Still refused: its read model is behind the stored checkpoint.
        model_one.reset();
        model_one.rows.pending.push(3);
        assert!(first.commit_named(&mut model_one, &[("p1", 3)]).is_err());
        assert_eq!(rows(first.connection()), [1, 2]);
        // Loaded again, it resumes from the stored position.
        assert_eq!(first.load_named("p1").unwrap(), 2);
        first.commit_named(&mut model_one, &[("p1", 3)]).unwrap();
        assert_eq!(rows(first.connection()), [1, 2, 3]);
    }

    /// `reset_named` empties the tables and the named checkpoints only, in one
    /// transaction, and the read model's pending rows.
    #[test]
    fn reset_named_clears_the_tables_and_only_the_named_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
        let mut checkpoints = with_rows_table(&store);
        let mut model = Flaky::default();
        model.rows.pending.extend([1, 2]);
        checkpoints
            .commit_named(&mut model, &[("p0", 1), ("p1", 2), ("other", 7)])
            .unwrap();
        model.rows.pending.push(3);
        checkpoints.reset_named(&mut model, &["p0", "p1"]).unwrap();
        assert!(model.rows.pending.is_empty());
        assert!(rows(checkpoints.connection()).is_empty());
        let conn = checkpoints.connection();
        assert_eq!(checkpoint::load(conn, "p0").unwrap(), 0);
        assert_eq!(checkpoint::load(conn, "p1").unwrap(), 0);
        assert_eq!(checkpoint::load(conn, "other").unwrap(), 7);
        // Committing from 0 again is not refused.
        model.rows.pending.push(1);
        checkpoints.commit_named(&mut model, &[("p0", 1)]).unwrap();
        assert_eq!(rows(checkpoints.connection()), [1]);
    }
}
