//! [`PostgresStore`]: the [`EventStore`] over PostgreSQL, and [`append_in_transaction`].

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use std::ops::RangeInclusive;

use bytes::{BufMut, BytesMut};
use es_core::backend::validate_batch;
use es_core::{
    AppendOptions, AppendOutcome, EventStore, ExpectedVersion, NewEvent, StoreError, StreamRef,
    Uuid, Visitor,
};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, Json, ToSql, Type, to_sql_checked};
use postgres::{
    Client, Config, GenericClient, IsolationLevel, NoTls, Statement, ToStatement, Transaction,
};

use crate::error::{AcquireTimeout, CounterError, Error, backend};
use crate::row::{self, COLUMNS};
use crate::schema;

/// The `application_name` a store's connections report to the server (in
/// `pg_stat_activity`) unless the connection string sets one.
pub const DEFAULT_APPLICATION_NAME: &str = "es-postgres";

/// How long [`is_valid`](Client::is_valid) may take before an idle connection counts as dead.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(1);

/// How a [`PostgresStore`] manages its connections; pass it to
/// [`PostgresStore::connect_with_options`].
///
/// ```
/// use std::time::Duration;
/// let options = es_postgres::Options::new()
///     .max_connections(4)
///     .acquire_timeout(Duration::from_secs(5))
///     .check_idle_after(Duration::from_secs(10));
/// assert_eq!(options.get_max_connections(), 4);
/// assert_eq!(options.get_acquire_timeout(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    max_connections: usize,
    acquire_timeout: Duration,
    check_idle_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_connections: Options::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Options::DEFAULT_ACQUIRE_TIMEOUT,
            check_idle_after: Options::DEFAULT_CHECK_IDLE_AFTER,
        }
    }
}

impl Options {
    /// The default for [`max_connections`](Options::max_connections): 16.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
    /// The default for [`acquire_timeout`](Options::acquire_timeout): 30 seconds.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default for [`check_idle_after`](Options::check_idle_after): 5 seconds.
    pub const DEFAULT_CHECK_IDLE_AFTER: Duration = Duration::from_secs(5);

    /// The defaults: at most 16 connections, a call waits at most 30 seconds for one, and
    /// a connection idle for 5 seconds is checked before use.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `max` connections open at once (0 counts as 1), shared by all clones of
    /// the store. A call that finds them all busy waits until one is given back (for at
    /// most [`acquire_timeout`](Options::acquire_timeout)), so size this to the threads
    /// that use the store and to the server's `max_connections`.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a connection when all
    /// [`max_connections`](Options::max_connections) are busy, before it fails with a
    /// [`StoreError::Backend`] holding an [`AcquireTimeout`](crate::AcquireTimeout). The
    /// wait does not count opening or checking the connection it gets.
    ///
    /// A timeout means the pool is too small for the load, or something holds connections
    /// for long: a long-running read (a [`Visitor`] keeps its connection until the read
    /// ends), many threads, or a slow server. 30 seconds by default; `Duration::ZERO`
    /// fails at once when no connection is free.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// A connection that sat idle in the pool for longer than `after` is checked with a
    /// round trip to the server before it is used, and replaced if the server dropped it
    /// (a restart, `idle_session_timeout`, a proxy or firewall closing quiet sessions).
    /// `Duration::ZERO` checks every connection on every call.
    ///
    /// Whatever this is, a connection whose closing the server already announced (it sends
    /// an error, then closes the socket) is replaced before use at no cost, and a read, or
    /// an append that had not begun its transaction, that fails on a broken connection runs
    /// again on a new one.
    pub fn check_idle_after(mut self, after: Duration) -> Self {
        self.check_idle_after = after;
        self
    }

    /// The maximum number of open connections.
    pub fn get_max_connections(&self) -> usize {
        self.max_connections
    }

    /// How long a call waits for a busy pool to give back a connection.
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// How long a connection may sit idle before it is checked.
    pub fn get_check_idle_after(&self) -> Duration {
        self.check_idle_after
    }
}

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
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    schema: String,
    sql: Statements<String>,
    options: Options,
    pool: Mutex<Pool>,
    /// Signalled whenever a connection is given back or a slot is freed.
    available: Condvar,
}

/// The connections: `open` counts idle ones and those in use (or being opened).
struct Pool {
    idle: Vec<Idle>,
    open: usize,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A pooled connection with the store's statements prepared on it.
struct Conn {
    client: Client,
    prepared: Statements<Statement>,
}

impl Conn {
    /// Whether the connection is closed, after taking in, without waiting, what the server
    /// sent since it was last used: a server that ended the session while it sat idle (a
    /// restart, `pg_terminate_backend`, `idle_session_timeout`) sends an error and closes
    /// the socket, which the driver only notices when it reads.
    fn is_closed(&mut self) -> bool {
        if !self.client.is_closed() {
            // One nonblocking poll of the connection; what it yields (a notification, or
            // the error the server sent before closing) does not matter, only whether the
            // connection ended.
            let _ = self.client.notifications().iter().next();
        }
        self.client.is_closed()
    }

    /// Whether the connection is unusable, after a call on it failed: closed, or not
    /// answering a round trip (a live connection that reported a server error answers).
    fn is_broken(&mut self) -> bool {
        self.is_closed() || self.client.is_valid(VALIDATION_TIMEOUT).is_err()
    }
}

/// What a call run by [`PostgresStore::with_conn`] did on its connection, which decides
/// whether it may run again on a new connection after the first one broke.
#[derive(Debug, Default)]
struct Attempt {
    /// Set once running the call again could repeat something: an append's transaction
    /// began (it may have committed), or a read handed rows to its visitor.
    irrevocable: bool,
    /// Set when a read stopped before its last row (its visitor said stop, or a row was
    /// damaged): the server is still sending the rest, and the synchronous client would
    /// only read it on the connection's next use, while the server holds the query's
    /// snapshot and locks. Such a connection is closed instead of going back to the pool.
    abandoned: bool,
}

impl Attempt {
    /// From here on the call must not run again.
    fn irrevocable(&mut self) {
        self.irrevocable = true;
    }
}

/// Hands each row of `rows` to `visitor`, marking `attempt` irrevocable at the first row
/// and abandoned if the read stops before the end.
fn visit_rows(
    mut rows: postgres::RowIter<'_>,
    visitor: &mut Visitor<'_>,
    attempt: &mut Attempt,
) -> Result<(), StoreError> {
    while let Some(row) = rows.next().map_err(backend)? {
        // A read that failed before its visitor saw a row runs again on a new connection
        // if this one broke; after that, never: the visitor would see events twice.
        attempt.irrevocable();
        match row::visit(&row, visitor) {
            Ok(flow) if flow.is_continue() => {}
            stopped => {
                attempt.abandoned = true;
                return stopped.map(drop);
            }
        }
    }
    Ok(())
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
    /// `host=... user=... dbname=...` string. Connections are unencrypted (`NoTls`).
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
        schema::validate(schema)?;
        let mut config: Config = url.parse().map_err(|source| Error::InvalidUrl { source })?;
        if config.get_application_name().is_none() {
            config.application_name(DEFAULT_APPLICATION_NAME);
        }
        let mut client = config
            .connect(NoTls)
            .map_err(|source| Error::Connect { source })?;
        schema::migrate(&mut client, schema)?;
        let sql = Statements::new(schema);
        let prepared = sql.prepare(&mut client).map_err(|source| Error::Migrate {
            schema: schema.to_owned(),
            source,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
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
        })
    }

    /// The schema holding this store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Appends `events` to `stream` inside the caller's transaction, so the events commit
    /// (or roll back) together with the caller's own writes; see [`append_in_transaction`].
    ///
    /// `tx` may belong to any connection to the same database, not only this store's.
    pub fn append_in_transaction(
        &self,
        tx: &mut Transaction<'_>,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        append_with(
            tx,
            &self.inner.schema,
            &self.inner.sql,
            GiveBack::Yes,
            stream,
            expected,
            events,
            AppendOptions::default(),
        )
    }

    /// Like [`append_in_transaction`](PostgresStore::append_in_transaction), with
    /// [`AppendOptions`] (an idempotency key); see [`append_in_transaction_with`].
    pub fn append_in_transaction_with(
        &self,
        tx: &mut Transaction<'_>,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        append_with(
            tx,
            &self.inner.schema,
            &self.inner.sql,
            GiveBack::Yes,
            stream,
            expected,
            events,
            options,
        )
    }

    /// Runs `f` on a pooled connection, waiting for one if all are busy (for at most
    /// [`Options::acquire_timeout`]). A connection on which `f` failed with a backend
    /// error is closed, not given back.
    ///
    /// If `f` failed with a backend error because its connection was broken (the server
    /// closed it while it sat in the pool, or it died as it was used) and `f` had not yet
    /// marked its [`Attempt`] irrevocable, `f` runs once more on a newly opened
    /// connection: nothing it did can have taken effect.
    fn with_conn<T>(
        &self,
        mut f: impl FnMut(&mut Conn, &mut Attempt) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut checkout = self.checkout()?;
        let mut retried = false;
        loop {
            let Some(conn) = checkout.conn.as_mut() else {
                return Err(StoreError::backend(
                    "internal error: a checked-out pool slot holds no connection",
                ));
            };
            let mut attempt = Attempt::default();
            let result = f(conn, &mut attempt);
            if !matches!(result, Err(StoreError::Backend(_))) {
                if attempt.abandoned {
                    // Dropping the client closes the socket; the server ends the query.
                    checkout.conn = None;
                }
                return result;
            }
            let retry = !retried && !attempt.irrevocable && conn.is_broken();
            // It may have broken the connection (or left it mid-transaction): close it.
            // Dropping `checkout` without a connection then frees its slot.
            checkout.conn = None;
            if !retry {
                return result;
            }
            // The slot is still ours: fill it with a new connection, and run `f` again.
            retried = true;
            checkout.conn = Some(self.inner.open()?);
        }
    }

    /// Takes a connection slot and fills it with a live connection, waiting for a slot at
    /// most [`Options::acquire_timeout`].
    fn checkout(&self) -> Result<Checkout<'_>, StoreError> {
        let inner = &*self.inner;
        let timeout = inner.options.acquire_timeout;
        // `None` if the timeout is too large to represent: wait as long as it takes.
        let deadline = Instant::now().checked_add(timeout);
        let mut pool = lock(&inner.pool);
        loop {
            if let Some(idle) = pool.idle.pop() {
                drop(pool);
                // The slot is ours from here: `checkout` frees it if anything fails.
                let mut checkout = Checkout { inner, conn: None };
                let Idle { mut conn, since } = idle;
                let alive = !conn.is_closed()
                    && (since.elapsed() < inner.options.check_idle_after
                        || conn.client.is_valid(VALIDATION_TIMEOUT).is_ok());
                checkout.conn = Some(if alive {
                    conn
                } else {
                    drop(conn);
                    inner.open()?
                });
                return Ok(checkout);
            }
            if pool.open < inner.options.max_connections {
                pool.open += 1;
                drop(pool);
                let mut checkout = Checkout { inner, conn: None };
                checkout.conn = Some(inner.open()?);
                return Ok(checkout);
            }
            let Some(deadline) = deadline else {
                pool = inner
                    .available
                    .wait(pool)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(StoreError::backend(AcquireTimeout {
                    max_connections: inner.options.max_connections,
                    timeout,
                }));
            }
            // A wake-up (given back, freed, or spurious) goes round the loop again, which
            // rechecks the pool and the deadline.
            (pool, _) = inner
                .available
                .wait_timeout(pool, remaining)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Inner {
    /// Opens a connection and prepares the statements on it.
    fn open(&self) -> Result<Conn, StoreError> {
        let mut client = self.config.connect(NoTls).map_err(backend)?;
        let prepared = self.sql.prepare(&mut client).map_err(backend)?;
        Ok(Conn { client, prepared })
    }
}

/// One slot of the pool, taken. Dropping it gives the connection back, or, if there is
/// none (it failed or was never opened), if it is closed or if the thread is panicking,
/// frees the slot: a slot is never leaked.
struct Checkout<'a> {
    inner: &'a Inner,
    conn: Option<Conn>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let conn = self
            .conn
            .take()
            .filter(|conn| !conn.client.is_closed() && !std::thread::panicking());
        let mut pool = lock(&self.inner.pool);
        match conn {
            Some(conn) => pool.idle.push(Idle {
                conn,
                since: Instant::now(),
            }),
            None => pool.open = pool.open.saturating_sub(1),
        }
        drop(pool);
        self.inner.available.notify_one();
    }
}

/// Locks the pool. Its updates cannot be interrupted half-way, so a poisoned lock is still
/// usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The store's statements: SQL text with the schema filled in, or the same statements
/// prepared on one connection (which saves a round trip per statement).
struct Statements<T> {
    take_positions: T,
    give_back_positions: T,
    last_position: T,
    stream_version: T,
    find_key: T,
    insert: T,
    read_stream: T,
    read_all: T,
}

/// A statement in either form.
trait Query {
    type Stmt: ?Sized + ToStatement;
    fn stmt(&self) -> &Self::Stmt;
}

impl Query for String {
    type Stmt = str;
    fn stmt(&self) -> &str {
        self
    }
}

impl Query for Statement {
    type Stmt = Statement;
    fn stmt(&self) -> &Statement {
        self
    }
}

impl Statements<String> {
    /// Statements for `schema`, which must be valid (see [`schema::validate`]).
    fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        Self {
            take_positions: format!(
                "UPDATE {s}.es_position SET last = last + $1 WHERE id RETURNING last"
            ),
            give_back_positions: format!("UPDATE {s}.es_position SET last = last - $1 WHERE id"),
            last_position: format!("SELECT last FROM {s}.es_position WHERE id"),
            stream_version: format!(
                "SELECT version FROM {s}.es_streams WHERE aggregate_type = $1 AND stream_id = $2"
            ),
            find_key: format!(
                "SELECT stream_version, first_position, event_count FROM {s}.es_commands \
                 WHERE aggregate_type = $1 AND stream_id = $2 AND idempotency_key = $3"
            ),
            // One round trip writes the events, the stream's new version and the
            // idempotency key (data-modifying CTEs all run, referenced or not).
            insert: format!(
                "WITH new_events AS ( \
                     INSERT INTO {s}.es_events (global_position, event_id, aggregate_type, \
                         stream_id, stream_version, event_type, schema_version, recorded_at, \
                         payload, metadata) \
                     SELECT $1::bigint + e.ord - 1, e.event_id, $2::text, $3::text, \
                            $4::bigint + e.ord, e.event_type, e.schema_version, $5::timestamptz, \
                            e.payload, e.metadata \
                     FROM unnest($6::uuid[], $7::text[], $8::bigint[], $9::jsonb[], $10::jsonb[]) \
                          WITH ORDINALITY \
                          AS e(event_id, event_type, schema_version, payload, metadata, ord) \
                 ), stream AS ( \
                     INSERT INTO {s}.es_streams (aggregate_type, stream_id, version) \
                     VALUES ($2::text, $3::text, $4::bigint + cardinality($6::uuid[])) \
                     ON CONFLICT (aggregate_type, stream_id) DO UPDATE SET version = EXCLUDED.version \
                 ) \
                 INSERT INTO {s}.es_commands (aggregate_type, stream_id, idempotency_key, \
                     stream_version, first_position, event_count) \
                 SELECT $2::text, $3::text, $11::text, $4::bigint + cardinality($6::uuid[]), \
                        $1::bigint, cardinality($6::uuid[]) \
                 WHERE $11::text IS NOT NULL"
            ),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {s}.es_events \
                 WHERE aggregate_type = $1 AND stream_id = $2 \
                   AND stream_version >= $3 AND stream_version <= $4 \
                 ORDER BY stream_version"
            ),
            read_all: format!(
                "SELECT {COLUMNS} FROM {s}.es_events WHERE global_position >= $1 \
                 ORDER BY global_position LIMIT $2"
            ),
        }
    }

    /// Prepares every statement on `client`.
    fn prepare(&self, client: &mut Client) -> Result<Statements<Statement>, postgres::Error> {
        Ok(Statements {
            take_positions: client.prepare(&self.take_positions)?,
            give_back_positions: client.prepare(&self.give_back_positions)?,
            last_position: client.prepare(&self.last_position)?,
            stream_version: client.prepare(&self.stream_version)?,
            find_key: client.prepare(&self.find_key)?,
            insert: client.prepare(&self.insert)?,
            read_stream: client.prepare(&self.read_stream)?,
            read_all: client.prepare(&self.read_all)?,
        })
    }
}

/// Whether a conflicting append restores the position counter itself. The store's own
/// appends roll their transaction back instead, which restores it for free.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GiveBack {
    Yes,
    No,
}

/// Appends `events` to `stream` in the store in `schema`, inside the caller's transaction.
///
/// This is how to record events atomically with other writes to the same database (a read
/// model, an outbox row): the events become visible when `tx` commits and vanish if it
/// rolls back. [`PostgresStore`]'s own appends run exactly this function in a transaction of
/// their own. The expected version is checked as in [`EventStore::append`].
///
/// Like every append, it first takes the store's position counter row lock, which it
/// holds until `tx` ends: every other append to the store waits meanwhile, so keep such
/// transactions short.
///
/// A [`Conflict`](StoreError::Conflict) is only returned before anything was written: it
/// leaves `tx` usable and the counter as it was, so you may carry on and commit. After
/// any other error roll `tx` back: PostgreSQL has aborted it, or it holds a half-done
/// append (and committing an aborted transaction silently rolls it back). That includes
/// a duplicate stream version caught by the database's unique constraint, which can only
/// happen if some session wrote events without taking the counter lock, or if `tx` is not
/// `READ COMMITTED`: it is reported as a [`Backend`](StoreError::Backend) error, not as a
/// conflict, because the transaction is aborted.
///
/// `tx` must run at `READ COMMITTED` isolation (PostgreSQL's default, but a server or role
/// may change `default_transaction_isolation`): the expected-version check relies on seeing
/// the appends that committed while this one waited for the counter lock. Under
/// `REPEATABLE READ` or `SERIALIZABLE` a concurrent append makes it fail with a
/// serialization error instead. This is not checked (that would cost a round trip per
/// append); start the transaction with
/// `client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start()` if
/// you are not sure of the default.
///
/// ```no_run
/// use es_core::{ExpectedVersion, Metadata, NewEvent, StreamRef};
/// use es_postgres::postgres::{Client, IsolationLevel, NoTls};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = Client::connect("postgres://es:es@localhost/es", NoTls)?;
/// let mut tx = client
///     .build_transaction()
///     .isolation_level(IsolationLevel::ReadCommitted)
///     .start()?;
/// tx.execute("UPDATE balances SET total = total + 5 WHERE id = 'acc-1'", &[])?;
/// let event = NewEvent::new("Deposited", 1, serde_json::json!({ "amount": 5 }), Metadata::new());
/// let stream = StreamRef::new("Account", "acc-1");
/// es_postgres::append_in_transaction(&mut tx, "public", stream, ExpectedVersion::Exact(1), &[event])?;
/// tx.commit()?;
/// # Ok(())
/// # }
/// ```
pub fn append_in_transaction(
    tx: &mut Transaction<'_>,
    schema: &str,
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendOutcome, StoreError> {
    append_in_transaction_with(
        tx,
        schema,
        stream,
        expected,
        events,
        AppendOptions::default(),
    )
}

/// Like [`append_in_transaction`], with [`AppendOptions`] (an idempotency key).
///
/// An append whose key is already committed on the stream writes nothing and returns the
/// original outcome with [`AppendOutcome::duplicate`] set; `tx` stays usable.
pub fn append_in_transaction_with(
    tx: &mut Transaction<'_>,
    schema: &str,
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    events: &[NewEvent],
    options: AppendOptions<'_>,
) -> Result<AppendOutcome, StoreError> {
    schema::validate(schema).map_err(|e| StoreError::Invalid {
        stream: stream.to_key(),
        reason: e.to_string(),
    })?;
    append_with(
        tx,
        schema,
        &Statements::new(schema),
        GiveBack::Yes,
        stream,
        expected,
        events,
        options,
    )
}

/// Refuses a stream whose aggregate type or id contains NUL before it reaches the server,
/// which would reject it with an error that costs the connection.
fn check_text(stream: StreamRef<'_>) -> Result<(), StoreError> {
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

/// JSON text passed to a `jsonb` (or `json`) parameter as it is, without building a
/// `serde_json::Value` first.
#[derive(Debug)]
struct JsonText<'a>(&'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // The binary jsonb format: a version byte, then the JSON text.
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// Stream versions and positions as PostgreSQL stores them (`bigint`); values beyond
/// `i64::MAX` saturate, which only matters for "read from" bounds no store reaches.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn stored_u64(value: i64, stream: StreamRef<'_>, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::CorruptStream {
        stream: stream.to_key(),
        reason: format!("the stored {what} is {value}, which is negative"),
    })
}

fn current_version<Q: Query>(
    client: &mut impl GenericClient,
    sql: &Statements<Q>,
    stream: StreamRef<'_>,
) -> Result<u64, StoreError> {
    let row = client
        .query_opt(
            sql.stream_version.stmt(),
            &[&stream.aggregate_type, &stream.id],
        )
        .map_err(backend)?;
    let Some(row) = row else {
        return Ok(0);
    };
    let version: i64 = row.try_get(0).map_err(backend)?;
    stored_u64(version, stream, "stream version")
}

/// The outcome of the committed append to `stream` that carried `key`, if any.
fn find_key<Q: Query>(
    client: &mut impl GenericClient,
    sql: &Statements<Q>,
    stream: StreamRef<'_>,
    key: &str,
) -> Result<Option<AppendOutcome>, StoreError> {
    let row = client
        .query_opt(
            sql.find_key.stmt(),
            &[&stream.aggregate_type, &stream.id, &key],
        )
        .map_err(backend)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (version, first, count): (i64, i64, i64) = (
        row.try_get(0).map_err(backend)?,
        row.try_get(1).map_err(backend)?,
        row.try_get(2).map_err(backend)?,
    );
    match (
        u64::try_from(version),
        u64::try_from(first),
        u64::try_from(count),
    ) {
        (Ok(version), Ok(first), Ok(count)) if first > 0 && count > 0 && version >= count => {
            Ok(Some(AppendOutcome {
                stream_version: version,
                global_positions: first..first + count,
                duplicate: true,
            }))
        }
        _ => Err(StoreError::CorruptStream {
            stream: stream.to_key(),
            reason: format!(
                "the es_commands row of idempotency key {key:?} holds version {version}, first position {first} and {count} events, which cannot be an append"
            ),
        }),
    }
}

/// The append itself; see [`append_in_transaction`].
#[allow(clippy::too_many_arguments)]
fn append_with<Q: Query>(
    tx: &mut Transaction<'_>,
    schema: &str,
    sql: &Statements<Q>,
    give_back: GiveBack,
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    events: &[NewEvent],
    options: AppendOptions<'_>,
) -> Result<AppendOutcome, StoreError> {
    validate_batch(stream, events, options)?;
    if events.is_empty() {
        // Nothing to write: check the expectation, report the next position, lock nothing.
        if let Some(key) = options.idempotency_key {
            if let Some(outcome) = find_key(tx, sql, stream, key)? {
                return Ok(outcome);
            }
        }
        let current = current_version(tx, sql, stream)?;
        if !expected.is_satisfied_by(current) {
            return Err(StoreError::conflict(stream, expected, current));
        }
        let last: i64 = tx
            .query_one(sql.last_position.stmt(), &[])
            .and_then(|row| row.try_get(0))
            .map_err(backend)?;
        let next = stored_u64(last, stream, "last global position")? + 1;
        return Ok(AppendOutcome {
            stream_version: current,
            global_positions: next..next,
            duplicate: false,
        });
    }

    let count = i64::try_from(events.len()).map_err(|_| StoreError::Invalid {
        stream: stream.to_key(),
        reason: format!("a batch of {} events is too large", events.len()),
    })?;
    // 1. Take the positions. The counter row stays locked until the transaction ends, so
    //    appends commit in position order: see the crate docs.
    let last: i64 = tx
        .query_one(sql.take_positions.stmt(), &[&count])
        .and_then(|row| row.try_get(0))
        .map_err(backend)?;
    let first = last - count + 1;
    if first < 1 {
        // Positions start at 1: the counter was negative before this append.
        return Err(StoreError::backend(CounterError::Negative {
            schema: schema.to_owned(),
            before: last - count,
        }));
    }
    // 2. A key already committed wins over the expected version (a retried append carries
    //    the version its first attempt expected). No other append can run until this
    //    transaction ends, so neither check can race.
    let give_back_positions = |tx: &mut Transaction<'_>| {
        if give_back == GiveBack::Yes {
            // Leave the counter as it was, in case the caller commits its transaction anyway.
            tx.execute(sql.give_back_positions.stmt(), &[&count])
                .map_err(backend)?;
        }
        Ok::<_, StoreError>(())
    };
    if let Some(key) = options.idempotency_key {
        if let Some(outcome) = find_key(tx, sql, stream, key)? {
            give_back_positions(tx)?;
            return Ok(outcome);
        }
    }
    // 3. Check the expectation.
    let current = current_version(tx, sql, stream)?;
    if !expected.is_satisfied_by(current) {
        give_back_positions(tx)?;
        return Err(StoreError::conflict(stream, expected, current));
    }
    let current_sql = i64::try_from(current)
        .ok()
        .filter(|c| c.checked_add(count).is_some())
        .ok_or_else(|| StoreError::Invalid {
            stream: stream.to_key(),
            reason: "the stream version would overflow".to_owned(),
        })?;
    // 4. Insert the batch, the stream's version and the key in one statement.
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_ref()).collect();
    let versions: Vec<i64> = events.iter().map(|e| i64::from(e.schema_version)).collect();
    let payloads: Vec<JsonText<'_>> = events.iter().map(|e| JsonText(e.payload.get())).collect();
    let metadata: Vec<Json<&es_core::Metadata>> =
        events.iter().map(|e| Json(&e.metadata)).collect();
    let recorded_at = SystemTime::now();
    tx.execute(
        sql.insert.stmt(),
        &[
            &first,
            &stream.aggregate_type,
            &stream.id,
            &current_sql,
            &recorded_at,
            &ids,
            &types,
            &versions,
            &payloads,
            &metadata,
            &options.idempotency_key,
        ],
    )
    .map_err(|e| insert_error(e, schema, first, give_back, stream, expected, current))?;
    Ok(AppendOutcome {
        stream_version: current + events.len() as u64,
        global_positions: first.unsigned_abs()..last.unsigned_abs() + 1,
        duplicate: false,
    })
}

/// Maps an insert failure: a duplicate event id is the caller's mistake; a duplicate
/// stream version (only possible if something bypassed the counter lock) is a conflict in
/// the store's own appends and an error in the caller's transaction, which it aborted; a
/// duplicate global position means the counter is behind.
fn insert_error(
    error: postgres::Error,
    schema: &str,
    first: i64,
    give_back: GiveBack,
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    current: u64,
) -> StoreError {
    let Some(db) = error
        .as_db_error()
        .filter(|db| *db.code() == SqlState::UNIQUE_VIOLATION)
    else {
        if error.code() == Some(&SqlState::UNTRANSLATABLE_CHARACTER) {
            return StoreError::Invalid {
                stream: stream.to_key(),
                reason: format!(
                    "PostgreSQL cannot store this JSON ({error}); jsonb holds no \\u0000 characters"
                ),
            };
        }
        return backend(error);
    };
    match db.constraint() {
        Some("es_events_event_id_key") => StoreError::Invalid {
            stream: stream.to_key(),
            reason: format!(
                "an event id is already stored ({}); give every new event a fresh id",
                db.detail().unwrap_or("duplicate event id")
            ),
        },
        Some("es_events_pkey") => StoreError::backend(CounterError::Behind {
            schema: schema.to_owned(),
            first,
            source: error,
        }),
        // In the caller's transaction a conflict must mean "nothing happened, carry on",
        // which is not so here: the transaction is aborted.
        Some("es_events_stream_key") if give_back == GiveBack::Yes => {
            StoreError::backend(CounterError::Bypassed {
                schema: schema.to_owned(),
                stream: stream.to_key().to_string(),
                source: error,
            })
        }
        // The store's own append rolls its transaction back, so this is a plain conflict.
        Some("es_events_stream_key") => StoreError::Conflict {
            stream: stream.to_key(),
            expected,
            // The transaction is aborted, so the actual version cannot be re-read; it is
            // at least one past what this append saw.
            actual: current + 1,
        },
        _ => backend(error),
    }
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
        if versions.is_empty() {
            return Ok(());
        }
        // A read from the start has no lower bound, so that a row with a non-positive
        // version (damage) sorts first and is reported, not silently skipped.
        let from = if *versions.start() <= 1 {
            i64::MIN
        } else {
            sql_int(*versions.start())
        };
        let to = sql_int(*versions.end());
        self.with_conn(|conn, attempt| {
            let params: [&(dyn ToSql + Sync); 4] = [&stream.aggregate_type, &stream.id, &from, &to];
            // Rows arrive as the server sends them and are handed over one at a time,
            // borrowed: a long stream is never held in memory.
            let rows = conn
                .client
                .query_raw(&conn.prepared.read_stream, params)
                .map_err(backend)?;
            visit_rows(rows, visitor, attempt)
        })
    }

    fn visit_all(
        &self,
        from_position: u64,
        limit: usize,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        if limit == 0 {
            return Ok(());
        }
        let from = sql_int(from_position);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(|conn, attempt| {
            let params: [&(dyn ToSql + Sync); 2] = [&from, &limit];
            let rows = conn
                .client
                .query_raw(&conn.prepared.read_all, params)
                .map_err(backend)?;
            visit_rows(rows, visitor, attempt)
        })
    }

    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        check_text(stream)?;
        self.with_conn(|conn, _| current_version(&mut conn.client, &conn.prepared, stream))
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

    #[test]
    fn statements_quote_the_schema() {
        let sql = Statements::new("Tenant_1");
        assert!(sql.insert.contains("INTO \"Tenant_1\".es_events"));
        assert!(
            sql.take_positions
                .starts_with("UPDATE \"Tenant_1\".es_position")
        );
    }
}
