//! [`PostgresStore`]: the [`EventStore`] over PostgreSQL.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Instant;

use std::ops::RangeInclusive;

use es_core::{
    AppendOptions, AppendOutcome, Clock, EventStore, ExpectedVersion, NewEvent, Snapshot,
    StoreError, StreamRef, SystemClock, Visit, Visitor,
};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Config, IsolationLevel, Row, Transaction};

use crate::append::{GiveBack, append_with, current_version, find_key};
use crate::error::{Error, backend};
use crate::offload;
use crate::options::Options;
use crate::pool::{Attempt, Conn, Idle, Pool};
use crate::row;
use crate::schema;
use crate::snapshot;
use crate::statements::{self, Statements};
use crate::tls::{self, Tls};

/// The `application_name` a store's connections report to the server (in
/// `pg_stat_activity`) unless the connection string sets one.
pub const DEFAULT_APPLICATION_NAME: &str = "es-postgres";

/// An event store in a PostgreSQL database, in one schema.
///
/// Cloning is cheap and clones share a connection pool of at most
/// [`Options::max_connections`] connections (16 by default): each call takes an idle
/// connection, opens one if the pool is below its bound, or else waits for one to be given
/// back, for at most [`Options::acquire_timeout`]. A connection that failed is closed
/// instead of being given back, a connection that sat idle for a while is checked before
/// use, and a call that failed because its connection was broken runs again on a new one
/// when that cannot repeat anything (see the [crate documentation](crate#connections)).
/// The store is `Send + Sync`, so one instance can serve every thread.
///
/// Appends are serialised store-wide by a counter row; see the
/// [crate documentation](crate#the-global-log-and-late-commits) for why.
///
/// # Which store where
///
/// This store is synchronous: each call blocks its thread until the server answers.
///
/// * In synchronous code (threads, a CLI, a worker loop): this store.
/// * In async code on tokio: the async store (`AsyncPostgresStore`, feature `async`),
///   which never blocks the runtime's threads; or this store inside
///   `tokio::task::spawn_blocking`, which runs it on tokio's blocking threads.
///
/// Called straight from an async task it still works (and so does dropping it there): the
/// driver it is built on would panic inside a runtime, so there each call runs the driver
/// on a short-lived thread of its own and waits for it. But it blocks the task's worker
/// thread meanwhile, stalling the other tasks on that thread (all of them, on a
/// current-thread runtime). See the [crate documentation](crate#async-code-and-tokio).
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) inner: Arc<Inner>,
    /// Stamps each append's events.
    clock: Arc<dyn Clock>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    /// The TLS connector of the connection string, for every connection of the pool.
    pub(crate) tls: Tls,
    pub(crate) schema: String,
    pub(crate) sql: Statements<String>,
    pub(crate) options: Options,
    pub(crate) pool: Mutex<Pool>,
    /// Signalled whenever a connection is given back or a slot is freed.
    pub(crate) available: Condvar,
}

/// Hands each row of `rows` to `visitor`, marking `attempt` irrevocable at the first row
/// and abandoned if the read stops before the end.
fn visit_rows(
    mut rows: postgres::RowIter<'_>,
    visitor: &mut Visitor<'_>,
    attempt: &mut Attempt,
) -> Result<(), StoreError> {
    while let Some(row) = rows.next().map_err(backend)? {
        if row::visit_row(&row, visitor, attempt)?.is_break() {
            break;
        }
    }
    Ok(())
}

impl PostgresStore {
    /// Runs the read `query` starts on a pooled connection, handing each row to `visitor`
    /// on the caller's thread.
    ///
    /// Where the driver must not run on this thread (inside a tokio runtime, see
    /// [`offload`]), the query runs on a thread of its own, which passes the rows over one
    /// at a time and waits for the visitor's answer to each: the visitor need not be
    /// `Send`, and rows are still never held in memory.
    fn visit<Q>(&self, visitor: &mut Visitor<'_>, query: Q) -> Result<(), StoreError>
    where
        Q: for<'c> Fn(&'c mut Conn) -> Result<postgres::RowIter<'c>, postgres::Error> + Send,
    {
        if !offload::in_runtime_context() {
            return self.with_conn_here(|conn, attempt| {
                let rows = query(conn).map_err(backend)?;
                visit_rows(rows, visitor, attempt)
            });
        }
        let (row_tx, row_rx) = mpsc::sync_channel::<Row>(0);
        let (flow_tx, flow_rx) = mpsc::sync_channel::<Result<Visit, StoreError>>(0);
        // `flow_tx` and `row_rx` move into the scope's closure, so that a panicking visitor
        // drops them as it unwinds, and the driver's thread, waiting for its answer, ends.
        std::thread::scope(move |scope| {
            let driver = std::thread::Builder::new()
                .name("es-postgres".to_owned())
                .spawn_scoped(scope, move || {
                    self.with_conn_here(|conn, attempt| {
                        let mut rows = query(conn).map_err(backend)?;
                        while let Some(row) = rows.next().map_err(backend)? {
                            // As `row::visit_row` does on the visitor's thread.
                            attempt.irrevocable();
                            row_tx.send(row).map_err(|_| visitor_gone())?;
                            match flow_rx.recv().map_err(|_| visitor_gone())? {
                                Ok(flow) if flow.is_continue() => {}
                                stopped => {
                                    attempt.abandoned = true;
                                    return stopped.map(drop);
                                }
                            }
                        }
                        Ok(())
                    })
                })
                .map_err(offload::spawn_failed)?;
            // Ends when the driver's thread is done with the read: it drops `row_tx`.
            for row in row_rx {
                if flow_tx.send(row::visit(&row, visitor)).is_err() {
                    break;
                }
            }
            driver
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// What the driver's thread of a read reports when the visitor's side is gone (it
/// panicked, and the panic goes on from there).
fn visitor_gone() -> StoreError {
    StoreError::backend("the read's visitor stopped answering (it panicked)")
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and uses the event tables in schema `public`,
    /// creating them if they do not exist and migrating an older layout.
    ///
    /// `url` is a `postgres://user:password@host:port/database` URL or a
    /// `host=... user=... dbname=...` string. Its `sslmode` (`disable`, `prefer` by
    /// default, `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a CA's PEM file)
    /// choose whether and how connections use TLS; whenever they do, the server's
    /// certificate is verified (see the [crate documentation](crate#tls)).
    pub fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with_schema(url, "public")
    }

    /// Like [`connect`](PostgresStore::connect), with the event tables in `schema`, which
    /// is created if it does not exist. Stores in different schemas of one database are
    /// independent (separate streams, separate global logs).
    ///
    /// `schema` must be 1 to 63 ASCII letters, digits and underscores; it is used as a
    /// quoted identifier, so `Tenant` and `tenant` are two schemas.
    pub fn connect_with_schema(url: &str, schema: &str) -> Result<Self, Error> {
        Self::connect_with_options(url, schema, Options::default())
    }

    /// Like [`connect_with_schema`](PostgresStore::connect_with_schema), with the
    /// connection pool configured by `options`.
    ///
    /// Connections report [`DEFAULT_APPLICATION_NAME`] as their `application_name` unless
    /// `url` sets one.
    pub fn connect_with_options(url: &str, schema: &str, options: Options) -> Result<Self, Error> {
        offload::blocking(
            || Self::open(url, schema, options),
            |source| Err(Error::Thread { cause: source }),
        )
    }

    /// [`connect_with_options`](PostgresStore::connect_with_options), on the thread the
    /// driver may run on.
    fn open(url: &str, schema: &str, options: Options) -> Result<Self, Error> {
        schema::validate(schema)?;
        let (config, tls) = tls::parse_url(url)?;
        let mut config = Config::from(config);
        if config.get_application_name().is_none() {
            config.application_name(DEFAULT_APPLICATION_NAME);
        }
        let mut client = config.connect(tls.clone()).map_err(connect_error)?;
        schema::migrate(&mut client, schema)?;
        let sql = Statements::new(schema);
        let prepared = sql.prepare(&mut client).map_err(|source| Error::Migrate {
            schema: schema.to_owned(),
            cause: source,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                tls,
                schema: schema.to_owned(),
                sql,
                options,
                pool: Mutex::new(Pool {
                    idle: vec![Idle {
                        conn: Conn { client, prepared },
                        since: Instant::now(),
                    }],
                    open: 1,
                }),
                available: Condvar::new(),
            }),
            clock: Arc::new(SystemClock),
        })
    }

    /// This store, stamping the events it appends with the time `clock` gives (a
    /// [`ManualClock`](es_core::ManualClock) in tests of temporal queries) instead of the
    /// system's. Clones made before keep their clock; appends through the free function
    /// [`append_in_transaction`](crate::append_in_transaction) use the system's.
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The schema holding this store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Appends `events` to `stream` inside the caller's transaction, so the events commit
    /// (or roll back) together with the caller's own writes; see [`append_in_transaction`].
    ///
    /// `tx` may belong to any connection to the same database, not only this store's.
    ///
    /// [`append_in_transaction`]: crate::append_in_transaction
    pub fn append_in_transaction(
        &self,
        tx: &mut Transaction<'_>,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        self.append_in_transaction_with(tx, stream, expected, events, AppendOptions::default())
    }

    /// Like [`append_in_transaction`](PostgresStore::append_in_transaction), with
    /// [`AppendOptions`] (an idempotency key); see [`append_in_transaction_with`].
    ///
    /// [`append_in_transaction_with`]: crate::append_in_transaction_with
    pub fn append_in_transaction_with(
        &self,
        tx: &mut Transaction<'_>,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        offload::blocking_store(|| {
            append_with(
                tx,
                &self.inner.schema,
                &self.inner.sql,
                GiveBack::Yes,
                stream,
                expected,
                events,
                options,
                self.clock.now(),
            )
        })
    }
}

/// A failed connect as an [`Error`]: [`Error::TlsHandshake`] if TLS failed (the
/// certificate, most often), [`Error::Connect`] otherwise.
pub(crate) fn connect_error(source: postgres::Error) -> Error {
    if tls::is_tls_failure(&source) {
        Error::TlsHandshake { cause: source }
    } else {
        Error::Connect { cause: source }
    }
}

/// Refuses a stream whose aggregate type or id contains NUL before it reaches the server,
/// which would reject it with an error that costs the connection.
pub(crate) fn check_text(stream: StreamRef<'_>) -> Result<(), StoreError> {
    let field = if stream.aggregate_type.contains('\0') {
        "aggregate type"
    } else if stream.id.contains('\0') {
        "stream id"
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid {
        stream: stream.to_key(),
        reason: format!(
            "the {field} contains a NUL character, and PostgreSQL text cannot hold NUL characters; remove it"
        ),
    })
}

impl EventStore for PostgresStore {
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        self.with_conn(|conn, attempt| {
            // READ COMMITTED whatever the server's default: the expected-version check must
            // see the appends committed while this one waited for the counter row lock.
            let mut tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .map_err(backend)?;
            // Before this point nothing can commit, so an append whose connection broke
            // runs again on a new one. From here on the transaction may commit even though
            // the connection breaks (a lost COMMIT reply), so it must not: whether to retry
            // is the caller's choice, and safe with an idempotency key.
            attempt.irrevocable();
            // A conflict drops `tx`, rolling back the counter update.
            let outcome = append_with(
                &mut tx,
                &self.inner.schema,
                &conn.prepared,
                GiveBack::No,
                stream,
                expected,
                events,
                options,
                self.clock.now(),
            )?;
            if outcome.duplicate {
                // Nothing to keep: roll back the counter update.
                tx.rollback().map_err(backend)?;
            } else {
                tx.commit().map_err(backend)?;
            }
            Ok(outcome)
        })
    }

    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        check_text(stream)?;
        if idempotency_key.contains('\0') {
            return Ok(None);
        }
        self.with_conn(|conn, _| {
            find_key(&mut conn.client, &conn.prepared, stream, idempotency_key)
        })
    }

    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        check_text(stream)?;
        let Some((from, to)) = statements::stream_bounds(&versions) else {
            return Ok(());
        };
        self.visit(visitor, |conn| {
            let params: [&(dyn ToSql + Sync); 4] = [&stream.aggregate_type, &stream.id, &from, &to];
            // Rows arrive as the server sends them and are handed over one at a time,
            // borrowed: a long stream is never held in memory.
            conn.client.query_raw(&conn.prepared.read_stream, params)
        })
    }

    fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let Some((from, limit)) = statements::log_bounds(from_position, limit) else {
            return Ok(());
        };
        self.visit(visitor, |conn| {
            let params: [&(dyn ToSql + Sync); 2] = [&from, &limit];
            conn.client.query_raw(&conn.prepared.read_all, params)
        })
    }

    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        check_text(stream)?;
        self.with_conn(|conn, _| current_version(&mut conn.client, &conn.prepared, stream))
    }

    /// Served by the index `es_events_by_type (aggregate_type, event_type,
    /// global_position)`: only matching events are read.
    fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let Some((from, limit)) = snapshot::by_type_bounds(event_types, from_position, limit)
        else {
            return Ok(());
        };
        check_text(StreamRef::new(aggregate_type, ""))?;
        let types: Vec<&str> = event_types.to_vec();
        self.visit(visitor, |conn| {
            let params: [&(dyn ToSql + Sync); 4] = [&aggregate_type, &types, &from, &limit];
            conn.client.query_raw(&conn.prepared.read_by_type, params)
        })
    }

    fn save_snapshot(&self, stream: StreamRef<'_>, snapshot: &Snapshot) -> Result<(), StoreError> {
        snapshot::check(stream, snapshot)?;
        let params = snapshot::SaveParams::new(stream, snapshot);
        let kept = self.with_conn(|conn, _| {
            conn.client
                .query(&conn.prepared.save_snapshot, &params.as_params())
                .map_err(backend)
        })?;
        if kept.is_empty() {
            let current = self.stream_version(stream)?;
            return Err(snapshot::not_kept(stream, snapshot, current));
        }
        Ok(())
    }

    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        check_text(stream)?;
        let version = i32::try_from(snapshot_version).unwrap_or(i32::MAX);
        let at_most = statements::sql_int(at_most);
        let row = self.with_conn(|conn, _| {
            conn.client
                .query_opt(
                    &conn.prepared.load_snapshot,
                    &[&stream.aggregate_type, &stream.id, &version, &at_most],
                )
                .map_err(backend)
        })?;
        row.map(|row| snapshot::from_row(&row, stream, snapshot_version))
            .transpose()
    }

    fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        check_text(stream)?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.with_conn(|conn, _| {
            conn.client
                .execute(
                    &conn.prepared.prune_snapshots,
                    &[&stream.aggregate_type, &stream.id, &keep],
                )
                .map_err(backend)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_cheap_to_share_between_threads() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<PostgresStore>();
    }
}
