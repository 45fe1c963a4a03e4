//! [`PostgresStore`]: the [`EventStore`] over PostgreSQL.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use std::ops::RangeInclusive;

use es_core::{
    AppendOptions, AppendOutcome, EventStore, ExpectedVersion, NewEvent, StoreError, StreamRef,
    Visitor,
};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Config, IsolationLevel, NoTls, Transaction};

use crate::append::{GiveBack, append_with, current_version, find_key};
use crate::error::{Error, backend};
use crate::options::Options;
use crate::pool::{Attempt, Conn, Idle, Pool};
use crate::row;
use crate::schema;
use crate::statements::Statements;

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
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
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
    ///
    /// [`append_in_transaction`]: crate::append_in_transaction
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

/// Stream versions and positions as PostgreSQL stores them (`bigint`); values beyond
/// `i64::MAX` saturate, which only matters for "read from" bounds no store reaches.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
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
}
