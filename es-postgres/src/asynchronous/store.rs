//! [`AsyncPostgresStore`]: the [`AsyncEventStore`] over PostgreSQL.

use std::fmt;
use std::ops::RangeInclusive;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use deadpool::Runtime;
use deadpool::managed::{Pool, QueueMode};
use es_core::{
    AppendOptions, AppendOutcome, AsyncEventStore, AsyncVisitor, ExpectedVersion, NewEvent,
    Snapshot, StoreError, StreamRef,
};
use futures_util::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, RowStream};

use super::append::{append, current_version, find_key};
use super::pool::{Call, Conn, Manager};
use super::schema;
use crate::error::{Error, backend};
use crate::options::Options;
use crate::pool::Attempt;
use crate::row;
use crate::snapshot;
use crate::statements::{self, Statements};
use crate::store::{DEFAULT_APPLICATION_NAME, check_text, connect_error};
use crate::tls;

/// An event store in a PostgreSQL database, in one schema, for async code: the async twin
/// of [`PostgresStore`](crate::PostgresStore), with the same tables, the same SQL and the
/// same guarantees (both pass the same conformance suite, and both can serve one schema at
/// once). Enable the `async` feature of es-postgres.
///
/// It talks to the server with tokio-postgres and never blocks a runtime worker: open it
/// and use it inside a Tokio runtime (with its I/O and time drivers, as `#[tokio::main]`
/// has), where its connections run as tasks. Every future it returns is `Send`, so it
/// serves handlers on a multi-threaded runtime and `tokio::spawn`ed tasks.
///
/// ```no_run
/// use es_core::{AsyncEventStore, ExpectedVersion, Metadata, NewEvent, StreamRef};
/// use es_postgres::AsyncPostgresStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store =
///     AsyncPostgresStore::connect_with_schema("postgres://es:es@localhost/es", "billing").await?;
/// let stream = StreamRef::new("Invoice", "inv-1");
/// let event = NewEvent::new("Issued", 1, serde_json::json!({ "total": 120 }), Metadata::new());
/// store.append(stream, ExpectedVersion::NoStream, &[event]).await?;
/// // Reads hand each row to the visitor as it arrives; nothing else is held in memory.
/// let mut total = 0;
/// store
///     .visit_stream(stream, 1..=u64::MAX, &mut |record| {
///         total += 1;
///         std::ops::ControlFlow::Continue(())
///     })
///     .await?;
/// assert_eq!(total, 1);
/// # Ok(())
/// # }
/// ```
///
/// # Connections
///
/// Cloning is cheap and clones share a pool (deadpool) of at most
/// [`Options::max_connections`] connections (16 by default). A call waits at most
/// [`Options::acquire_timeout`] for a free one, then fails with a
/// [`StoreError::Backend`] holding an [`AcquireTimeout`](crate::AcquireTimeout), as in the
/// sync store. The pool's rules are the sync store's (see the
/// [crate documentation](crate#connections)):
///
/// * A connection whose session the server ended is never handed out (tokio-postgres
///   notices at once), and one idle for [`Options::check_idle_after`] or more is checked
///   with a round trip first.
/// * A connection on which a call failed is closed, never given back; so is one whose read
///   stopped early (its visitor returned [`Break`](std::ops::ControlFlow::Break), or a row
///   was corrupt), so that the server does not go on sending the rest into a pooled
///   connection, and one whose call was cancelled (its future dropped) half-way.
/// * A call that failed because its connection turned out to be broken runs once more, on
///   a new connection, when that cannot repeat anything: a read whose visitor has not been
///   handed a row yet, or an append whose transaction had not begun. An append whose
///   connection broke later may have committed: give it an idempotency key to retry it
///   safely.
///
/// Appends are serialised store-wide by the position counter row, exactly as in the sync
/// store; see the [crate documentation](crate#the-global-log-and-late-commits).
#[derive(Clone)]
pub struct AsyncPostgresStore {
    pub(crate) inner: Arc<Inner>,
    /// Stamps each append's events.
    clock: Arc<dyn es_core::Clock>,
}

pub(crate) struct Inner {
    pub(crate) schema: String,
    /// The connection settings and TLS of the pool, for listening connections.
    pub(crate) listen: (tokio_postgres::Config, tls::Tls),
    pub(crate) options: Options,
    pub(crate) pool: Pool<Manager>,
}

impl fmt::Debug for AsyncPostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncPostgresStore")
            .field("schema", &self.inner.schema)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl AsyncPostgresStore {
    /// Connects to the database at `url` and uses the event tables in schema `public`,
    /// creating them if they do not exist and migrating an older layout; see
    /// [`PostgresStore::connect`](crate::PostgresStore::connect), which takes the same
    /// connection strings (TLS parameters included).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with_schema(url, "public").await
    }

    /// Like [`connect`](AsyncPostgresStore::connect), with the event tables in `schema`,
    /// which is created if it does not exist. Stores in different schemas of one database
    /// are independent.
    ///
    /// `schema` must be 1 to 63 ASCII letters, digits and underscores; it is used as a
    /// quoted identifier, so `Tenant` and `tenant` are two schemas.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, Error> {
        Self::connect_with_options(url, schema, Options::default()).await
    }

    /// Like [`connect_with_schema`](AsyncPostgresStore::connect_with_schema), with the
    /// connection pool configured by `options` (the sync store's [`Options`]).
    ///
    /// Connections report [`DEFAULT_APPLICATION_NAME`] as their `application_name` unless
    /// `url` sets one. Fails with [`Error::NoRuntime`] outside a Tokio runtime.
    pub async fn connect_with_options(
        url: &str,
        schema: &str,
        options: Options,
    ) -> Result<Self, Error> {
        crate::schema::validate(schema)?;
        let (mut config, tls) = tls::parse_url(url)?;
        if config.get_application_name().is_none() {
            config.application_name(DEFAULT_APPLICATION_NAME);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let sql = Statements::new(schema);
        let listen = (config.clone(), tls.clone());
        let manager = Manager::new(config, tls, sql, options.check_idle_after);
        // The first connection creates or migrates the tables, then joins the pool.
        let mut client = manager.connect().await.map_err(connect_error)?;
        schema::migrate(&mut client, schema).await?;
        let first = manager
            .ready(client)
            .await
            .map_err(|source| Error::Migrate {
                schema: schema.to_owned(),
                cause: source,
            })?;
        manager.seed(first);
        // A timeout too large to represent waits as long as it takes.
        let wait = Some(options.acquire_timeout)
            .filter(|&timeout| Instant::now().checked_add(timeout).is_some());
        // Last in, first out, as in the sync store: the connection used last is used next,
        // and the others age into the idle check.
        let pool = Pool::builder(manager)
            .max_size(options.max_connections)
            .queue_mode(QueueMode::Lifo)
            .wait_timeout(wait)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|_| Error::NoRuntime)?;
        Ok(Self {
            inner: Arc::new(Inner {
                schema: schema.to_owned(),
                listen,
                options,
                pool,
            }),
            clock: Arc::new(es_core::SystemClock),
        })
    }

    /// This store, stamping the events it appends with the time `clock` gives (a
    /// [`ManualClock`](es_core::ManualClock) in tests of temporal queries) instead of the
    /// system's. Clones made before keep their clock.
    pub fn with_clock(mut self, clock: impl es_core::Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The schema holding this store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }
}

/// Hands each row of `rows` to `visitor` as it arrives, marking `attempt` irrevocable at
/// the first row and abandoned if the read stops before the end.
async fn visit_rows(
    rows: RowStream,
    visitor: &mut AsyncVisitor<'_>,
    attempt: &mut Attempt,
) -> Result<(), StoreError> {
    let mut rows = pin!(rows);
    while let Some(row) = rows.next().await {
        let row = row.map_err(backend)?;
        if row::visit_row(&row, visitor, attempt)?.is_break() {
            break;
        }
    }
    Ok(())
}

/// An append, in a transaction of its own.
struct Append<'a> {
    schema: &'a str,
    stream: StreamRef<'a>,
    expected: ExpectedVersion,
    events: &'a [NewEvent],
    options: AppendOptions<'a>,
    recorded_at: std::time::SystemTime,
}

impl Call for Append<'_> {
    type Output = AppendOutcome;

    async fn run(
        &mut self,
        conn: &mut Conn,
        attempt: &mut Attempt,
    ) -> Result<AppendOutcome, StoreError> {
        // READ COMMITTED whatever the server's default: the expected-version check must see
        // the appends committed while this one waited for the counter row lock.
        let tx = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(backend)?;
        // Before this point nothing can commit, so an append whose connection broke runs
        // again on a new one. From here on the transaction may commit even though the
        // connection breaks (a lost COMMIT reply), so it must not.
        attempt.irrevocable();
        let result = append(
            tx.client(),
            self.schema,
            &conn.prepared,
            self.stream,
            self.expected,
            self.events,
            self.options,
            self.recorded_at,
        )
        .await;
        match &result {
            Ok(outcome) if !outcome.duplicate => tx.commit().await.map_err(backend)?,
            // The connection is closed (see `with_conn`), which ends the transaction.
            Err(StoreError::Backend(_)) => {}
            // A duplicate has nothing to keep, and a conflict, an invalid batch or a
            // corrupt stream wrote nothing: roll back the counter update, then give the
            // connection back.
            _ => tx.rollback().await.map_err(backend)?,
        }
        result
    }
}

/// The outcome recorded for an idempotency key.
struct FindKey<'a> {
    stream: StreamRef<'a>,
    key: &'a str,
}

impl Call for FindKey<'_> {
    type Output = Option<AppendOutcome>;

    async fn run(
        &mut self,
        conn: &mut Conn,
        _: &mut Attempt,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        find_key(&conn.client, &conn.prepared, self.stream, self.key).await
    }
}

/// A stream's current version.
struct Version<'a> {
    stream: StreamRef<'a>,
}

impl Call for Version<'_> {
    type Output = u64;

    async fn run(&mut self, conn: &mut Conn, _: &mut Attempt) -> Result<u64, StoreError> {
        current_version(&conn.client, &conn.prepared, self.stream).await
    }
}

/// A read of one stream's events, versions `from..=to`.
struct ReadStream<'a, 'v> {
    stream: StreamRef<'a>,
    from: i64,
    to: i64,
    visitor: &'a mut AsyncVisitor<'v>,
}

impl Call for ReadStream<'_, '_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Conn, attempt: &mut Attempt) -> Result<(), StoreError> {
        let params: [&(dyn ToSql + Sync); 4] = [
            &self.stream.aggregate_type,
            &self.stream.id,
            &self.from,
            &self.to,
        ];
        // Rows arrive as the server sends them and are handed over one at a time,
        // borrowed: a long stream is never held in memory.
        let rows = conn
            .client
            .query_raw(&conn.prepared.read_stream, params)
            .await
            .map_err(backend)?;
        visit_rows(rows, self.visitor, attempt).await
    }
}

/// A read of up to `limit` events of the global log from position `from`.
struct ReadAll<'a, 'v> {
    from: i64,
    limit: i64,
    visitor: &'a mut AsyncVisitor<'v>,
}

impl Call for ReadAll<'_, '_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Conn, attempt: &mut Attempt) -> Result<(), StoreError> {
        let params: [&(dyn ToSql + Sync); 2] = [&self.from, &self.limit];
        let rows = conn
            .client
            .query_raw(&conn.prepared.read_all, params)
            .await
            .map_err(backend)?;
        visit_rows(rows, self.visitor, attempt).await
    }
}

impl AsyncEventStore for AsyncPostgresStore {
    async fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        self.with_conn(Append {
            schema: &self.inner.schema,
            stream,
            expected,
            events,
            options,
            recorded_at: self.clock.now(),
        })
        .await
    }

    async fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        check_text(stream)?;
        if idempotency_key.contains('\0') {
            return Ok(None);
        }
        self.with_conn(FindKey {
            stream,
            key: idempotency_key,
        })
        .await
    }

    async fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        check_text(stream)?;
        let Some((from, to)) = statements::stream_bounds(&versions) else {
            return Ok(());
        };
        self.with_conn(ReadStream {
            stream,
            from,
            to,
            visitor,
        })
        .await
    }

    async fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        let Some((from, limit)) = statements::log_bounds(from_position, limit) else {
            return Ok(());
        };
        self.with_conn(ReadAll {
            from,
            limit,
            visitor,
        })
        .await
    }

    async fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        check_text(stream)?;
        self.with_conn(Version { stream }).await
    }

    async fn visit_by_type(
        &self,
        aggregate_type: &str,
        event_types: &[&str],
        from_position: u64,
        limit: usize,
        visitor: &mut AsyncVisitor<'_>,
    ) -> Result<(), StoreError> {
        let Some((from, limit)) = snapshot::by_type_bounds(event_types, from_position, limit)
        else {
            return Ok(());
        };
        check_text(StreamRef::new(aggregate_type, ""))?;
        self.with_conn(ReadByType {
            aggregate_type,
            types: event_types.to_vec(),
            from,
            limit,
            visitor,
        })
        .await
    }

    async fn save_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        snapshot::check(stream, snapshot)?;
        let kept = self
            .with_conn(SaveSnapshot {
                params: snapshot::SaveParams::new(stream, snapshot),
            })
            .await?;
        if !kept {
            let current = self.stream_version(stream).await?;
            return Err(snapshot::not_kept(stream, snapshot, current));
        }
        Ok(())
    }

    async fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        check_text(stream)?;
        self.with_conn(LoadSnapshot {
            stream,
            snapshot_version,
            at_most: statements::sql_int(at_most),
        })
        .await
    }

    async fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        check_text(stream)?;
        self.with_conn(PruneSnapshots {
            stream,
            keep: i64::try_from(keep).unwrap_or(i64::MAX),
        })
        .await
    }
}

/// A read of up to `limit` events of some types of one aggregate type, from `from`.
struct ReadByType<'a, 'v> {
    aggregate_type: &'a str,
    types: Vec<&'a str>,
    from: i64,
    limit: i64,
    visitor: &'a mut AsyncVisitor<'v>,
}

impl Call for ReadByType<'_, '_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Conn, attempt: &mut Attempt) -> Result<(), StoreError> {
        let params: [&(dyn ToSql + Sync); 4] =
            [&self.aggregate_type, &self.types, &self.from, &self.limit];
        let rows = conn
            .client
            .query_raw(&conn.prepared.read_by_type, params)
            .await
            .map_err(backend)?;
        visit_rows(rows, self.visitor, attempt).await
    }
}

/// Keeps a snapshot; `false` if the stream has not reached its version.
struct SaveSnapshot<'a> {
    params: snapshot::SaveParams<'a>,
}

impl Call for SaveSnapshot<'_> {
    type Output = bool;

    async fn run(&mut self, conn: &mut Conn, _: &mut Attempt) -> Result<bool, StoreError> {
        let rows = conn
            .client
            .query(&conn.prepared.save_snapshot, &self.params.as_params())
            .await
            .map_err(backend)?;
        Ok(!rows.is_empty())
    }
}

/// The latest snapshot of a version at or before a stream version.
struct LoadSnapshot<'a> {
    stream: StreamRef<'a>,
    snapshot_version: u32,
    at_most: i64,
}

impl Call for LoadSnapshot<'_> {
    type Output = Option<Snapshot>;

    async fn run(
        &mut self,
        conn: &mut Conn,
        _: &mut Attempt,
    ) -> Result<Option<Snapshot>, StoreError> {
        let version = i32::try_from(self.snapshot_version).unwrap_or(i32::MAX);
        let row = conn
            .client
            .query_opt(
                &conn.prepared.load_snapshot,
                &[
                    &self.stream.aggregate_type,
                    &self.stream.id,
                    &version,
                    &self.at_most,
                ],
            )
            .await
            .map_err(backend)?;
        row.map(|row| snapshot::from_row(&row, self.stream, self.snapshot_version))
            .transpose()
    }
}

/// Deletes a stream's snapshots but the latest `keep`.
struct PruneSnapshots<'a> {
    stream: StreamRef<'a>,
    keep: i64,
}

impl Call for PruneSnapshots<'_> {
    type Output = u64;

    async fn run(&mut self, conn: &mut Conn, _: &mut Attempt) -> Result<u64, StoreError> {
        conn.client
            .execute(
                &conn.prepared.prune_snapshots,
                &[&self.stream.aggregate_type, &self.stream.id, &self.keep],
            )
            .await
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_cheap_to_share_between_tasks() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<AsyncPostgresStore>();
    }
}
