//! [`ExactlyOnce`]: a read model kept in the event store's PostgreSQL database, committed
//! with its checkpoint in one transaction.

use std::fmt;
use std::time::Duration;

use es_core::{Checkpointer, Lease, ReadModel, StoreError};
use postgres::{Client, IsolationLevel, Transaction};

use crate::checkpoint::{self, LeaseRequest, check_name};
use crate::error::{Error, backend};
use crate::offload;
use crate::pool::Conn;
use crate::store::PostgresStore;

/// A read model whose state lives in tables of the event store's PostgreSQL database.
///
/// Its handlers (from `#[read_model]`) gather changes in memory;
/// [`write`](PostgresReadModel::write) writes them out inside the transaction in which
/// [`ExactlyOnce`] also stores the checkpoint, so the tables and the checkpoint always
/// agree: after a crash, no event is missing from the tables, nor applied to them twice.
///
/// [`ReadModel::reset`] must drop what was gathered and not written (the default of
/// `#[read_model]`, `*self = Default::default()`, does); [`clear`](PostgresReadModel::clear)
/// empties the tables for a rebuild.
///
/// Name your tables with their schema (or set the connection's `search_path`): the
/// transaction is on a connection of [`ExactlyOnce`]'s own, whose `search_path` is the
/// server's default.
pub trait PostgresReadModel: ReadModel {
    /// Writes (and forgets) the changes gathered since the last call, in `tx`, which also
    /// stores the checkpoint and is then committed.
    fn write(&mut self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error>;

    /// Empties the read model's tables, in `tx`, which also resets its checkpoint, before a
    /// rebuild.
    fn clear(&mut self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error>;
}

/// Why an [`ExactlyOnce`] commit wrote nothing although the database worked: this instance
/// may no longer write the read model, or its read model is behind the stored checkpoint.
/// Reported inside [`StoreError::Backend`]; find it with `downcast_ref::<CommitRefused>()`
/// on the boxed error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitRefused {
    /// The lease of the read model is no longer this instance's: it stalled past its lease
    /// and another instance took it (or took it and released it since).
    #[error(
        "read model `{read_model}`: the lease {} while this instance ({}) was applying a batch, so nothing was written; another instance runs the read model now: stop this instance's projector, or restart it to wait for the lease",
        match holder { Some(holder) => format!("is held by `{holder}`"), None => "was taken over".to_owned() },
        match owner { Some(owner) => format!("`{owner}`"), None => "holding no lease".to_owned() }
    )]
    LeaseLost {
        /// The read model.
        read_model: String,
        /// The owner id this instance took the lease as (none: it took no lease).
        owner: Option<String>,
        /// The owner of the unexpired lease now, if there is one.
        holder: Option<String>,
    },
    /// The stored checkpoint is not where this instance left it: another instance moved it
    /// on, or an earlier commit whose reply was lost did commit. The projector resumes
    /// from the stored position, so no event is applied twice.
    #[error(
        "read model `{read_model}`: its checkpoint is at {stored}, not at {expected} where this instance left it (another instance moved it, or an earlier commit whose reply was lost did commit), so nothing was written; the projector resumes from {stored}: call it again"
    )]
    CheckpointMoved {
        /// The read model.
        read_model: String,
        /// The position this instance last loaded or committed.
        expected: u64,
        /// The position stored.
        stored: u64,
    },
}

/// The exactly-once checkpointer of a [`PostgresReadModel`]: each batch's writes and the
/// checkpoint are committed in one transaction, on a connection of its own to the event
/// store's database (opened as the store opens its connections: same URL, TLS and
/// options).
///
/// Each commit's transaction first locks the read model's row of `es_checkpoints`
/// (`SELECT ... FOR UPDATE`), so that no lease changes hands and no other commit lands
/// until it ends, and checks two things; if either fails it writes nothing and fails with
/// [`CommitRefused`]:
///
/// * the row still names this instance as the lease's owner: an instance that stalled
///   past its lease while another took over writes nothing;
/// * the row's position is the one this instance last loaded or committed: an instance
///   whose read model is behind the stored checkpoint (another instance moved it on, or a
///   commit whose reply was lost did commit) does not write the same events again, and its
///   projector resumes from the stored position.
///
/// A connection that broke is replaced on the next call. Its calls run the blocking
/// `postgres` driver; inside a tokio runtime they run on a thread of their own, as the
/// store's do (see the [crate documentation](crate#async-code-and-tokio)), which is why
/// the read model must be `Send`.
///
/// ```no_run
/// use es_core::{EventRecord, Projector, read_model};
/// use es_postgres::postgres::Transaction;
/// use es_postgres::{ExactlyOnce, PostgresReadModel, PostgresStore};
/// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, es_core::Event)]
/// # struct Deposited { amount: u64 }
/// # #[derive(Debug, Default, es_core::Aggregate)]
/// # struct Account { balance: u64 }
/// # #[es_core::applies]
/// # impl Account { fn deposited(&mut self, e: &Deposited) { self.balance += e.amount; } }
///
/// /// Deposits gathered by the handler, written by `write`.
/// #[derive(Debug, Default)]
/// struct Totals {
///     pending: Vec<(String, i64)>,
/// }
///
/// #[read_model(name = "totals", from = Account)]
/// impl Totals {
///     fn deposited(&mut self, e: &Deposited, record: &EventRecord<'_>) {
///         self.pending.push((record.stream.id.to_owned(), e.amount as i64));
///     }
/// }
///
/// impl PostgresReadModel for Totals {
///     fn write(&mut self, tx: &mut Transaction<'_>) -> Result<(), es_postgres::postgres::Error> {
///         for (account, amount) in self.pending.drain(..) {
///             tx.execute(
///                 "INSERT INTO billing.totals (account, total) VALUES ($1, $2) \
///                  ON CONFLICT (account) DO UPDATE SET total = totals.total + EXCLUDED.total",
///                 &[&account, &amount],
///             )?;
///         }
///         Ok(())
///     }
///
///     fn clear(&mut self, tx: &mut Transaction<'_>) -> Result<(), es_postgres::postgres::Error> {
///         tx.batch_execute("DELETE FROM billing.totals")
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect_with_schema("postgres://es:es@localhost/es", "billing")?;
/// let mut checkpoints = ExactlyOnce::connect(&store)?;
/// checkpoints.client()?.batch_execute(
///     "CREATE TABLE IF NOT EXISTS billing.totals (account text PRIMARY KEY, total bigint NOT NULL)",
/// )?;
/// let mut projector = Projector::new(store.clone(), Totals::default(), checkpoints);
/// projector.catch_up()?;
/// # Ok(())
/// # }
/// ```
pub struct ExactlyOnce {
    store: PostgresStore,
    /// The connection; `None` after it broke, until the next call opens another.
    conn: Option<Conn>,
    /// The owner of the lease this checkpointer took last, if it holds one: each commit
    /// checks, in its transaction, that the row still names it.
    owner: Option<String>,
    /// The position this checkpointer knows to be stored (loaded, committed, or read by a
    /// refused commit's fence); each commit checks, in its transaction, that it still is.
    stored: Option<u64>,
}

impl fmt::Debug for ExactlyOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExactlyOnce")
            .field("schema", &self.store.schema())
            .field("owner", &self.owner)
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

impl Drop for ExactlyOnce {
    /// Closes the connection, off the tokio runtime if dropped inside one (where dropping a
    /// driver client panics).
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            offload::drop_off_runtime(conn);
        }
    }
}

impl ExactlyOnce {
    /// Opens a connection to `store`'s database for the read model's writes and
    /// checkpoint, with the store's connection string (TLS included) and statements.
    ///
    /// # Errors
    ///
    /// The errors of [`PostgresStore::connect`] for the connection: [`Error::Connect`],
    /// [`Error::TlsHandshake`], [`Error::Migrate`] (the statements could not be prepared:
    /// the store's tables are gone), [`Error::Thread`].
    pub fn connect(store: &PostgresStore) -> Result<Self, Error> {
        let conn = offload::blocking(
            || store.inner.open_dedicated(),
            |source| Err(Error::Thread { cause: source }),
        )?;
        Ok(Self {
            store: store.clone(),
            conn: Some(conn),
            owner: None,
            stored: None,
        })
    }

    /// The connection, for creating the read model's tables and querying them; opens a
    /// new one if the last one broke.
    ///
    /// It is the driver's own client: like any `postgres::Client`, use it outside async
    /// code (e.g. in `tokio::task::spawn_blocking`).
    pub fn client(&mut self) -> Result<&mut Client, StoreError> {
        Ok(&mut self.conn()?.client)
    }

    /// The connection, opened again if it broke.
    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        if self
            .conn
            .as_ref()
            .is_some_and(|conn| conn.client.is_closed())
        {
            self.conn = None;
        }
        match &mut self.conn {
            Some(conn) => Ok(conn),
            slot @ None => Ok(slot.insert(self.store.inner.open()?)),
        }
    }

    /// Runs `f` on the connection, where the driver may run; a connection that broke in it
    /// is dropped, for the next call to replace.
    fn run<T: Send>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        offload::blocking_store(|| {
            let result = f(self.conn()?);
            if self
                .conn
                .as_ref()
                .is_some_and(|conn| conn.client.is_closed())
            {
                self.conn = None;
            }
            result
        })
    }
}

/// One commit's transaction: the fence, the read model's writes, the checkpoint. If the
/// fence refuses it, `refused_at` gets the stored position the fence found.
fn commit_batch<R: PostgresReadModel>(
    conn: &mut Conn,
    read_model: &mut R,
    position: u64,
    owner: Option<&str>,
    expected: Option<u64>,
    refused_at: &mut Option<u64>,
) -> Result<(), StoreError> {
    let mut tx = conn
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .map_err(backend)?;
    let fence = checkpoint::fence(&mut tx, &conn.prepared, R::NAME)?;
    if let Err(refused) = fence.admits(R::NAME, owner, expected) {
        // The read model's tables hold exactly the events up to the stored position.
        *refused_at = Some(fence.position);
        return Err(StoreError::backend(refused));
    }
    read_model.write(&mut tx).map_err(backend)?;
    checkpoint::save(&mut tx, &conn.prepared, R::NAME, position)?;
    tx.commit().map_err(backend)
}

impl<R: PostgresReadModel + Send> Checkpointer<R> for ExactlyOnce {
    fn load(&mut self, read_model: &mut R) -> Result<u64, StoreError> {
        // Anything gathered but not written belongs to no committed position.
        read_model.reset();
        check_name(R::NAME)?;
        let position =
            self.run(|conn| checkpoint::load(&mut conn.client, &conn.prepared, R::NAME))?;
        self.stored = Some(position);
        Ok(position)
    }

    fn commit(&mut self, read_model: &mut R, position: u64) -> Result<(), StoreError> {
        check_name(R::NAME)?;
        let owner = self.owner.clone();
        let expected = self.stored;
        let mut refused_at = None;
        let result = self.run(|conn| {
            commit_batch(
                conn,
                read_model,
                position,
                owner.as_deref(),
                expected,
                &mut refused_at,
            )
        });
        match (&result, refused_at) {
            (Ok(()), _) => self.stored = Some(position),
            (Err(_), Some(stored)) => self.stored = Some(stored),
            // Unknown whether it committed (a lost reply): the next commit's fence finds out.
            (Err(_), None) => {}
        }
        result
    }

    fn after_failed_commit(&mut self, read_model: &mut R, committed: u64, _: u64) -> u64 {
        // The transaction rolled back: drop what it would have written, and read again
        // after what is stored (`committed`, unless a fence found otherwise).
        read_model.reset();
        let resume = self.stored.unwrap_or(committed);
        self.stored = Some(resume);
        resume
    }

    fn reset(&mut self, read_model: &mut R) -> Result<(), StoreError> {
        check_name(R::NAME)?;
        let owner = self.owner.clone();
        self.run(|conn| {
            let mut tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .map_err(backend)?;
            let fence = checkpoint::fence(&mut tx, &conn.prepared, R::NAME)?;
            // A rebuild discards the position, so only the lease is checked.
            fence
                .admits(R::NAME, owner.as_deref(), None)
                .map_err(StoreError::backend)?;
            read_model.clear(&mut tx).map_err(backend)?;
            checkpoint::delete(&mut tx, &conn.prepared, R::NAME)?;
            tx.commit().map_err(backend)
        })?;
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
        let request = LeaseRequest::new(name, owner, ttl)?;
        let lease =
            self.run(|conn| checkpoint::acquire(&mut conn.client, &conn.prepared, &request))?;
        self.owner = match lease {
            Lease::Acquired { .. } => Some(owner.to_owned()),
            Lease::HeldBy { .. } => None,
        };
        Ok(lease)
    }

    fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.owner = None;
        let request = LeaseRequest::new(name, owner, Duration::ZERO)?;
        self.run(|conn| checkpoint::release(&mut conn.client, &conn.prepared, name, request.owner))
    }
}
