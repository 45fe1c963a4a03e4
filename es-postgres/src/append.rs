//! The append: [`append_in_transaction`], which the store's own appends run too, and
//! the checks and SQL around it.

use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use es_core::backend::{stored_idempotent_outcome, validate_batch};
use es_core::{
    AppendOptions, AppendOutcome, ExpectedVersion, NewEvent, StoreError, StreamRef, Uuid,
};
use postgres::error::SqlState;
use postgres::types::{IsNull, Json, ToSql, Type, to_sql_checked};
use postgres::{GenericClient, Row, Transaction};

use crate::error::{CounterError, backend};
use crate::schema;
use crate::statements::{Query, Statements};

/// Whether a conflicting append restores the position counter itself. The store's own
/// appends roll their transaction back instead, which restores it for free.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveBack {
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
/// [`PostgresStore`]: crate::PostgresStore
/// [`EventStore::append`]: es_core::EventStore::append
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
/// use es_postgres::postgres::IsolationLevel;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The same connection string as the store's, TLS parameters included.
/// let mut client = es_postgres::connect_client("postgres://es:es@localhost/es")?;
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
        SystemTime::now(),
    )
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

fn stored_u64(value: i64, stream: StreamRef<'_>, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::CorruptStream {
        stream: stream.to_key(),
        reason: format!("the stored {what} is {value}, which is negative"),
    })
}

pub(crate) fn current_version<Q: Query>(
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
    version_of(row.as_ref(), stream)
}

/// The stream version in the row of [`Statements::stream_version`] (none: no stream).
pub(crate) fn version_of(row: Option<&Row>, stream: StreamRef<'_>) -> Result<u64, StoreError> {
    let Some(row) = row else {
        return Ok(0);
    };
    let version: i64 = row.try_get(0).map_err(backend)?;
    stored_u64(version, stream, "stream version")
}

/// The outcome of the committed append to `stream` that carried `key`, if any.
pub(crate) fn find_key<Q: Query>(
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
    key_outcome(row.as_ref(), stream, key)
}

/// The outcome recorded in the row of [`Statements::find_key`] for `key` (none: the key
/// was never committed on `stream`).
pub(crate) fn key_outcome(
    row: Option<&Row>,
    stream: StreamRef<'_>,
    key: &str,
) -> Result<Option<AppendOutcome>, StoreError> {
    let Some(row) = row else {
        return Ok(None);
    };
    let (version, first, count): (i64, i64, i64) = (
        row.try_get(0).map_err(backend)?,
        row.try_get(1).map_err(backend)?,
        row.try_get(2).map_err(backend)?,
    );
    stored_idempotent_outcome(stream, key, version, first, count).map(Some)
}

/// The outcome of an empty batch to a stream at version `current` whose expectation held:
/// nothing written, the next position reported (`last` is the counter).
pub(crate) fn empty_outcome(
    stream: StreamRef<'_>,
    current: u64,
    last: i64,
) -> Result<AppendOutcome, StoreError> {
    let next = stored_u64(last, stream, "last global position")? + 1;
    Ok(AppendOutcome {
        stream_version: current,
        global_positions: next..next,
        duplicate: false,
    })
}

/// The number of events of a non-empty batch, as the counter update takes it.
pub(crate) fn batch_count(stream: StreamRef<'_>, events: &[NewEvent]) -> Result<i64, StoreError> {
    i64::try_from(events.len()).map_err(|_| StoreError::Invalid {
        stream: stream.to_key(),
        reason: format!("a batch of {} events is too large", events.len()),
    })
}

/// The first of the `count` positions an append took, given the counter after it took
/// them (`last`); refused if the counter was negative before.
pub(crate) fn first_position(schema: &str, last: i64, count: i64) -> Result<i64, StoreError> {
    let first = last - count + 1;
    if first < 1 {
        // Positions start at 1: the counter was negative before this append.
        return Err(StoreError::backend(CounterError::Negative {
            schema: schema.to_owned(),
            before: last - count,
        }));
    }
    Ok(first)
}

/// Checks `expected` against the stream's version `current`, and that `count` more events
/// fit: the version the new events follow, as stored.
pub(crate) fn checked_current(
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    current: u64,
    count: i64,
) -> Result<i64, StoreError> {
    if !expected.is_satisfied_by(current) {
        return Err(StoreError::conflict(stream, expected, current));
    }
    i64::try_from(current)
        .ok()
        .filter(|c| c.checked_add(count).is_some())
        .ok_or_else(|| StoreError::Invalid {
            stream: stream.to_key(),
            reason: "the stream version would overflow".to_owned(),
        })
}

/// The parameters of [`Statements::insert`] for one batch, in their columnar form.
pub(crate) struct InsertParams<'a> {
    first: i64,
    stream: StreamRef<'a>,
    current: i64,
    recorded_at: SystemTime,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    versions: Vec<i64>,
    payloads: Vec<JsonText<'a>>,
    metadata: Vec<Json<&'a es_core::Metadata>>,
    key: Option<&'a str>,
}

impl<'a> InsertParams<'a> {
    /// `events` appended to `stream` after version `current`, from global position
    /// `first`, recorded at `recorded_at`.
    pub(crate) fn new(
        stream: StreamRef<'a>,
        first: i64,
        current: i64,
        events: &'a [NewEvent],
        key: Option<&'a str>,
        recorded_at: SystemTime,
    ) -> Self {
        Self {
            first,
            stream,
            current,
            recorded_at,
            ids: events.iter().map(|e| e.event_id).collect(),
            types: events.iter().map(|e| e.event_type.as_ref()).collect(),
            versions: events.iter().map(|e| i64::from(e.schema_version)).collect(),
            payloads: events.iter().map(|e| JsonText(e.payload.get())).collect(),
            metadata: events.iter().map(|e| Json(&e.metadata)).collect(),
            key,
        }
    }

    /// The statement's parameters, `$1` to `$11`.
    pub(crate) fn as_params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.first,
            &self.stream.aggregate_type,
            &self.stream.id,
            &self.current,
            &self.recorded_at,
            &self.ids,
            &self.types,
            &self.versions,
            &self.payloads,
            &self.metadata,
            &self.key,
        ]
    }
}

/// The outcome of a batch of `count` events written after stream version `current` at
/// global positions `first..=last`.
pub(crate) fn appended_outcome(current: u64, count: usize, first: i64, last: i64) -> AppendOutcome {
    AppendOutcome {
        stream_version: current + count as u64,
        global_positions: first.unsigned_abs()..last.unsigned_abs() + 1,
        duplicate: false,
    }
}

/// The append itself; see [`append_in_transaction`].
///
/// The async store runs the same steps, with the same helpers, in
/// `asynchronous::append`: a change here belongs there too.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_with<Q: Query>(
    tx: &mut Transaction<'_>,
    schema: &str,
    sql: &Statements<Q>,
    give_back: GiveBack,
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    events: &[NewEvent],
    options: AppendOptions<'_>,
    recorded_at: SystemTime,
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
        checked_current(stream, expected, current, 0)?;
        let last: i64 = tx
            .query_one(sql.last_position.stmt(), &[])
            .and_then(|row| row.try_get(0))
            .map_err(backend)?;
        return empty_outcome(stream, current, last);
    }

    let count = batch_count(stream, events)?;
    // 1. Take the positions. The counter row stays locked until the transaction ends, so
    //    appends commit in position order: see the crate docs.
    let last: i64 = tx
        .query_one(sql.take_positions.stmt(), &[&count])
        .and_then(|row| row.try_get(0))
        .map_err(backend)?;
    let first = first_position(schema, last, count)?;
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
    let current_sql = match checked_current(stream, expected, current, count) {
        Ok(current_sql) => current_sql,
        Err(error) => {
            if error.is_conflict() {
                give_back_positions(tx)?;
            }
            return Err(error);
        }
    };
    // 4. Insert the batch, the stream's version and the key in one statement.
    let params = InsertParams::new(
        stream,
        first,
        current_sql,
        events,
        options.idempotency_key,
        recorded_at,
    );
    tx.execute(sql.insert.stmt(), &params.as_params())
        .map_err(|e| insert_error(e, schema, first, give_back, stream, expected, current))?;
    Ok(appended_outcome(current, events.len(), first, last))
}

/// Maps an insert failure: a duplicate event id is the caller's mistake; a duplicate
/// stream version (only possible if something bypassed the counter lock) is a conflict in
/// the store's own appends and an error in the caller's transaction, which it aborted; a
/// duplicate global position means the counter is behind.
pub(crate) fn insert_error(
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
            cause: error,
        }),
        // In the caller's transaction a conflict must mean "nothing happened, carry on",
        // which is not so here: the transaction is aborted.
        Some("es_events_stream_key") if give_back == GiveBack::Yes => {
            StoreError::backend(CounterError::Bypassed {
                schema: schema.to_owned(),
                stream: stream.to_key().to_string(),
                cause: error,
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
