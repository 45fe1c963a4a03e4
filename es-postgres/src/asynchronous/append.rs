//! The async store's append and its lookups: the sync store's steps
//! ([`crate::append::append_with`]) with the same SQL and the same helpers for every check
//! and every outcome, run through an async transaction.

use es_core::backend::validate_batch;
use es_core::{AppendOptions, AppendOutcome, ExpectedVersion, NewEvent, StoreError, StreamRef};
use tokio_postgres::{Client, Statement};

use crate::append::{
    GiveBack, InsertParams, appended_outcome, batch_count, checked_current, empty_outcome,
    first_position, insert_error, key_outcome, version_of,
};
use crate::error::backend;
use crate::statements::Statements;

/// The current version of `stream` (0: it does not exist).
pub(super) async fn current_version(
    client: &Client,
    sql: &Statements<Statement>,
    stream: StreamRef<'_>,
) -> Result<u64, StoreError> {
    let row = client
        .query_opt(&sql.stream_version, &[&stream.aggregate_type, &stream.id])
        .await
        .map_err(backend)?;
    version_of(row.as_ref(), stream)
}

/// The outcome of the committed append to `stream` that carried `key`, if any.
pub(super) async fn find_key(
    client: &Client,
    sql: &Statements<Statement>,
    stream: StreamRef<'_>,
    key: &str,
) -> Result<Option<AppendOutcome>, StoreError> {
    let row = client
        .query_opt(&sql.find_key, &[&stream.aggregate_type, &stream.id, &key])
        .await
        .map_err(backend)?;
    key_outcome(row.as_ref(), stream, key)
}

/// The append, inside the store's own transaction on `client` (begun `READ COMMITTED`);
/// the caller commits it, or rolls it back on an error or a duplicate.
///
/// The steps of the sync store's `append_with`, in the same order and with the same
/// locking: take the positions (locking the counter row until the transaction ends),
/// look up the idempotency key, check the expected version, insert. A conflict needs no
/// giving back of positions: the caller's rollback restores the counter.
#[allow(clippy::too_many_arguments)] // the same steps and arguments as the sync append
pub(super) async fn append(
    client: &Client,
    schema: &str,
    sql: &Statements<Statement>,
    stream: StreamRef<'_>,
    expected: ExpectedVersion,
    events: &[NewEvent],
    options: AppendOptions<'_>,
    recorded_at: std::time::SystemTime,
) -> Result<AppendOutcome, StoreError> {
    validate_batch(stream, events, options)?;
    if events.is_empty() {
        // Nothing to write: check the expectation, report the next position, lock nothing.
        if let Some(key) = options.idempotency_key {
            if let Some(outcome) = find_key(client, sql, stream, key).await? {
                return Ok(outcome);
            }
        }
        let current = current_version(client, sql, stream).await?;
        checked_current(stream, expected, current, 0)?;
        let last: i64 = client
            .query_one(&sql.last_position, &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend)?;
        return empty_outcome(stream, current, last);
    }

    let count = batch_count(stream, events)?;
    // 1. Take the positions; the counter row stays locked until the transaction ends.
    // 2. Look up the key, and 3. read the stream's version: sent together with the
    // counter update (pipelined on the connection), so the server runs them in order,
    // after the lock is taken, and the lock is held for one round trip less per statement.
    // Every append of the store waits for that lock, so its length bounds the store's
    // append rate.
    let take = async {
        client
            .query_one(&sql.take_positions, &[&count])
            .await
            .and_then(|row| row.try_get::<_, i64>(0))
            .map_err(backend)
    };
    let key = async {
        match options.idempotency_key {
            Some(key) => find_key(client, sql, stream, key).await,
            None => Ok(None),
        }
    };
    let version = current_version(client, sql, stream);
    let (last, found, current) = futures_util::future::try_join3(take, key, version).await?;
    let first = first_position(schema, last, count)?;
    // A key already committed wins over the expected version.
    if let Some(outcome) = found {
        return Ok(outcome);
    }
    // Check the expectation.
    let current_sql = checked_current(stream, expected, current, count)?;
    // 4. Insert the batch, the stream's version and the key in one statement.
    let params = InsertParams::new(
        stream,
        first,
        current_sql,
        events,
        options.idempotency_key,
        recorded_at,
    );
    client
        .execute(&sql.insert, &params.as_params())
        .await
        .map_err(|e| insert_error(e, schema, first, GiveBack::No, stream, expected, current))?;
    Ok(appended_outcome(current, events.len(), first, last))
}
