//! [`SqliteStore`]: the [`EventStore`] over a SQLite file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use std::ops::RangeInclusive;

use es_core::backend::{check_snapshot, stored_idempotent_outcome, validate_batch};
use es_core::{
    AppendOptions, AppendOutcome, Clock, EventStore, ExpectedVersion, NewEvent, RawValue, Snapshot,
    StoreError, StreamRef, SystemClock, Uuid, Visitor,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};

use crate::error::Error;
use crate::row::{self, COLUMNS, STREAM_COLUMNS};
use crate::schema;

/// How many idle read connections a file store keeps.
const MAX_IDLE_READERS: usize = 8;

/// An event store in a SQLite database: durable, embedded, shareable between processes.
///
/// Cloning is cheap (the connections sit behind an [`Arc`]) and clones share them; the store
/// is `Send + Sync`, so one instance can serve every thread and every aggregate type.
///
/// Appends go through one connection per store (SQLite allows one writer at a time anyway),
/// reads of a file database through a small pool of read connections that WAL mode lets run
/// next to the writer. Other processes may open the same file; they wait for each other's
/// write locks for up to 10 seconds.
///
/// See the [crate documentation](crate) for the durability guarantees.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    /// Stamps each append's events.
    clock: Arc<dyn Clock>,
}

struct Inner {
    /// The database file, or `None` for an in-memory database.
    path: Option<PathBuf>,
    /// The connection appends use; in-memory stores use it for reads too.
    writer: Mutex<Connection>,
    /// Idle read connections of a file store.
    readers: Mutex<Vec<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = match &self.inner.path {
            Some(path) => path.display().to_string(),
            None => ":memory:".to_owned(),
        };
        f.debug_struct("SqliteStore")
            .field("location", &location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the event store in the SQLite file at `path`, creating the file and its tables
    /// if they do not exist and migrating an older schema.
    ///
    /// Several threads or processes may open (and create) the same file at once; each open
    /// waits for the others' locks, up to 10 seconds.
    ///
    /// # What `open` does to an existing file
    ///
    /// `path` may name a SQLite database that other code uses too: the event store only
    /// touches its own tables, and your tables, rows, indexes and `PRAGMA user_version`
    /// stay as they are. But opening it as an event store changes the file for good:
    ///
    /// - it creates the tables `es_events`, `es_commands` and `es_schema_version` (and
    ///   SQLite's `sqlite_sequence`), unless they exist;
    /// - it switches the file to WAL mode (`PRAGMA journal_mode = WAL`), which is recorded in
    ///   the file: every later connection, also other programs', uses WAL. SQLite before
    ///   3.7.0 cannot open it, and WAL does not work on network file systems;
    /// - the directory must stay writable for everyone using the file, since SQLite creates
    ///   the `-wal` and `-shm` files next to it.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidPath`] for `""`, `:memory:` (use [`SqliteStore::open_in_memory`])
    ///   and SQLite URIs (`file:...`);
    /// - [`Error::NotADatabase`] if the file exists but is not a SQLite database; it is
    ///   left untouched;
    /// - [`Error::ReadOnly`] if this process cannot write the file or its directory;
    /// - [`Error::SchemaTooNew`] if a newer release of es-sqlite wrote the file;
    /// - [`Error::Open`], [`Error::Configure`], [`Error::NoWal`] or [`Error::Migrate`] if
    ///   SQLite fails otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        schema::check_path(path)?;
        let mut conn = open_file(path, true)?;
        schema::check_writable(&conn, path)?;
        schema::enable_wal(&conn, path).map_err(Error::refine)?;
        schema::migrate(&mut conn, path).map_err(Error::refine)?;
        // Readers open the file again later: pin the absolute path now, so a change of the
        // working directory cannot point them at another file. The writer just created the
        // file, so this only fails if it vanished since; then the path as given is as good.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        Ok(Self::from_writer(conn, Some(path)))
    }

    /// Opens a fresh, empty event store that lives in memory and disappears with its last
    /// clone. For tests and examples; it behaves like a file store but is not durable.
    pub fn open_in_memory() -> Result<Self, Error> {
        let path = Path::new(":memory:");
        let mut conn = Connection::open_in_memory().map_err(|cause| Error::Open {
            path: path.to_owned(),
            cause,
        })?;
        schema::migrate(&mut conn, path)?;
        Ok(Self::from_writer(conn, None))
    }

    fn from_writer(conn: Connection, path: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
            }),
            clock: Arc::new(SystemClock),
        }
    }

    /// This store, stamping the events it appends with the time `clock` gives (a
    /// [`ManualClock`](es_core::ManualClock) in tests of temporal queries) instead of the
    /// system's. Clones made before keep their clock.
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs `f` on the connection appends use (holding it for the duration).
    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        f(&mut lock(&self.inner.writer))
    }

    /// Runs `read` on a read connection: a pooled one for a file, the only one in memory.
    pub(crate) fn with_reader<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(path) = &self.inner.path else {
            return read(&lock(&self.inner.writer));
        };
        let pooled = lock(&self.inner.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                // Never create: a missing file means it was removed, not a new store.
                let conn = open_file(path, false).map_err(StoreError::backend)?;
                conn.pragma_update(None, "query_only", true)
                    .map_err(backend)?;
                conn
            }
        };
        let result = read(&conn);
        // A backend failure may mean a broken connection: do not hand it out again.
        if !matches!(result, Err(StoreError::Backend(_))) {
            let mut idle = lock(&self.inner.readers);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }
}

/// Opens a connection to a file database with the store's settings, creating the file only
/// if `create` is set.
fn open_file(path: &Path, create: bool) -> Result<Connection, Error> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|cause| {
        Error::Open {
            path: path.to_owned(),
            cause,
        }
        .refine()
    })?;
    // Configuring reads the file's header: this is where a file that is not a database, or
    // a WAL file whose `-wal` file cannot be created, shows.
    schema::configure(&conn, path).map_err(Error::refine)?;
    Ok(conn)
}

/// Locks a connection mutex. A panic while it was held cannot leave a transaction open
/// (rusqlite rolls back on drop), so a poisoned lock still guards a usable connection.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn backend(error: rusqlite::Error) -> StoreError {
    StoreError::backend(error)
}

/// A stream version or position as SQLite stores it; values beyond `i64::MAX` saturate,
/// which only matters for "read from" bounds no store ever reaches.
pub(crate) fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The outcome of the committed append to `stream` that carried `key`, if any.
fn find_key(
    conn: &Connection,
    stream: StreamRef<'_>,
    key: &str,
) -> Result<Option<AppendOutcome>, StoreError> {
    let found: Option<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT stream_version, first_position, event_count FROM es_commands \
             WHERE aggregate_type = ?1 AND stream_id = ?2 AND idempotency_key = ?3",
        )
        .and_then(|mut stmt| {
            let mut rows = stmt.query(params![stream.aggregate_type, stream.id, key])?;
            rows.next()?
                .map(|row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .transpose()
        })
        .map_err(backend)?;
    let Some((version, first, count)) = found else {
        return Ok(None);
    };
    stored_idempotent_outcome(stream, key, version, first, count).map(Some)
}

/// The current version of `stream` (0: no stream).
fn current_version(conn: &Connection, stream: StreamRef<'_>) -> Result<u64, StoreError> {
    let max: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(stream_version) FROM es_events WHERE aggregate_type = ?1 AND stream_id = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![stream.aggregate_type, stream.id], |row| row.get(0))
        })
        .map_err(backend)?;
    let max = max.unwrap_or(0);
    u64::try_from(max).map_err(|_| StoreError::CorruptStream {
        stream: stream.to_key(),
        reason: format!("the highest stored stream version is {max}, which is negative"),
    })
}

/// The position the next appended event will get.
fn next_position(conn: &Connection) -> Result<u64, StoreError> {
    // AUTOINCREMENT keeps the highest position ever handed out in sqlite_sequence, so
    // positions of deleted rows are never reused.
    let last: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'es_events'")
        .and_then(|mut stmt| {
            let mut rows = stmt.query([])?;
            rows.next()?.map(|row| row.get(0)).transpose()
        })
        .map_err(backend)?;
    Ok(last.and_then(|l| u64::try_from(l).ok()).unwrap_or(0) + 1)
}

/// Maps an insert failure: a duplicate event id is the caller's mistake, not the backend's.
fn insert_error(error: rusqlite::Error, stream: StreamRef<'_>, event: &NewEvent) -> StoreError {
    if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
        && error.to_string().contains("event_id")
    {
        return StoreError::Invalid {
            stream: stream.to_key(),
            reason: format!(
                "event id {} (event type `{}`) is already stored; give every new event a fresh id",
                event.event_id, event.event_type
            ),
        };
    }
    backend(error)
}

fn encode_json(
    stream: StreamRef<'_>,
    event: &NewEvent,
    what: &str,
    json: serde_json::Result<String>,
) -> Result<String, StoreError> {
    json.map_err(|e| StoreError::Invalid {
        stream: stream.to_key(),
        reason: format!(
            "the {what} of event `{}` cannot be written as JSON: {e}",
            event.event_type
        ),
    })
}

impl EventStore for SqliteStore {
    fn append_with(
        &self,
        stream: StreamRef<'_>,
        expected: ExpectedVersion,
        events: &[NewEvent],
        options: AppendOptions<'_>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_batch(stream, events, options)?;
        let mut conn = lock(&self.inner.writer);
        // BEGIN IMMEDIATE takes the database's write lock before the version check, so no
        // other connection or process can append between the check and the commit.
        let behavior = if events.is_empty() {
            TransactionBehavior::Deferred
        } else {
            TransactionBehavior::Immediate
        };
        let tx = conn.transaction_with_behavior(behavior).map_err(backend)?;
        // A key already committed wins over the expected version: a retried append
        // carries the version its first attempt expected.
        if let Some(key) = options.idempotency_key {
            if let Some(outcome) = find_key(&tx, stream, key)? {
                return Ok(outcome);
            }
        }
        let current = current_version(&tx, stream)?;
        if !expected.is_satisfied_by(current) {
            return Err(StoreError::conflict(stream, expected, current));
        }
        if events.is_empty() {
            let next = next_position(&tx)?;
            return Ok(AppendOutcome {
                stream_version: current,
                global_positions: next..next,
                duplicate: false,
            });
        }
        let recorded_at = row::to_micros(self.clock.now());
        let mut first_position = None;
        let mut last_position = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO es_events (event_id, aggregate_type, stream_id, stream_version, \
                     event_type, schema_version, recorded_at, payload, metadata) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(backend)?;
            let mut id_buf = Uuid::encode_buffer();
            for (offset, event) in (1..).zip(events) {
                let payload = event.payload.get();
                let metadata = encode_json(
                    stream,
                    event,
                    "metadata",
                    serde_json::to_string(&event.metadata),
                )?;
                let version = current
                    .checked_add(offset)
                    .ok_or_else(|| StoreError::Invalid {
                        stream: stream.to_key(),
                        reason: "the stream version would overflow".to_owned(),
                    })?;
                let event_id: &str = event.event_id.hyphenated().encode_lower(&mut id_buf);
                let position = insert
                    .insert(params![
                        event_id,
                        stream.aggregate_type,
                        stream.id,
                        sql_int(version),
                        event.event_type.as_ref(),
                        event.schema_version,
                        recorded_at,
                        payload,
                        metadata,
                    ])
                    .map_err(|e| insert_error(e, stream, event))?;
                let position = u64::try_from(position).unwrap_or(0);
                first_position.get_or_insert(position);
                last_position = position;
            }
        }
        // Positions within one write transaction are consecutive (AUTOINCREMENT, one writer).
        let first = first_position.unwrap_or(last_position);
        let outcome = AppendOutcome {
            stream_version: current + events.len() as u64,
            global_positions: first..last_position + 1,
            duplicate: false,
        };
        if let Some(key) = options.idempotency_key {
            tx.prepare_cached(
                "INSERT INTO es_commands (aggregate_type, stream_id, idempotency_key, \
                 stream_version, first_position, event_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    stream.aggregate_type,
                    stream.id,
                    key,
                    sql_int(outcome.stream_version),
                    sql_int(first),
                    sql_int(events.len() as u64),
                ])
            })
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(outcome)
    }

    fn find_idempotency_key(
        &self,
        stream: StreamRef<'_>,
        idempotency_key: &str,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        self.with_reader(|conn| find_key(conn, stream, idempotency_key))
    }

    fn visit_stream(
        &self,
        stream: StreamRef<'_>,
        versions: RangeInclusive<u64>,
        visitor: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        if versions.is_empty() {
            return Ok(());
        }
        self.with_reader(|conn| {
            // Rows are stepped one at a time and handed over borrowed: a long stream is
            // never held in memory. A read from the start has no lower bound, so that a row
            // with a non-positive version (damage) sorts first and is reported, not
            // silently skipped; both forms are one range scan of the stream's index.
            let lower = if *versions.start() <= 1 {
                i64::MIN
            } else {
                sql_int(*versions.start())
            };
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {STREAM_COLUMNS} FROM es_events \
                     WHERE aggregate_type = ?1 AND stream_id = ?2 \
                       AND stream_version >= ?3 AND stream_version <= ?4 \
                     ORDER BY stream_version"
                ))
                .map_err(backend)?;
            let mut rows = stmt
                .query(params![
                    stream.aggregate_type,
                    stream.id,
                    lower,
                    sql_int(*versions.end()),
                ])
                .map_err(backend)?;
            while let Some(row) = rows.next().map_err(backend)? {
                if row::visit_in_stream(row, stream, visitor)?.is_break() {
                    break;
                }
            }
            Ok(())
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
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM es_events WHERE global_position >= ?1 \
                     ORDER BY global_position LIMIT ?2"
                ))
                .map_err(backend)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = stmt
                .query(params![sql_int(from_position), limit])
                .map_err(backend)?;
            while let Some(row) = rows.next().map_err(backend)? {
                if row::visit(row, visitor)?.is_break() {
                    break;
                }
            }
            Ok(())
        })
    }

    fn stream_version(&self, stream: StreamRef<'_>) -> Result<u64, StoreError> {
        self.with_reader(|conn| current_version(conn, stream))
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
        if limit == 0 || event_types.is_empty() {
            return Ok(());
        }
        // The types travel as one JSON array parameter: one statement for any number.
        let types = serde_json::to_string(event_types).map_err(StoreError::backend)?;
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM es_events WHERE aggregate_type = ?1 \
                     AND event_type IN (SELECT value FROM json_each(?2)) \
                     AND global_position >= ?3 ORDER BY global_position LIMIT ?4"
                ))
                .map_err(backend)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = stmt
                .query(params![
                    aggregate_type,
                    types,
                    sql_int(from_position),
                    limit
                ])
                .map_err(backend)?;
            while let Some(row) = rows.next().map_err(backend)? {
                if row::visit(row, visitor)?.is_break() {
                    break;
                }
            }
            Ok(())
        })
    }

    fn save_snapshot(&self, stream: StreamRef<'_>, snapshot: &Snapshot) -> Result<(), StoreError> {
        let taken_at = row::to_micros(self.clock.now());
        let mut conn = lock(&self.inner.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        check_snapshot(stream, snapshot, current_version(&tx, stream)?)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO es_snapshots (aggregate_type, stream_id, stream_version, \
             snapshot_version, taken_at, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                stream.aggregate_type,
                stream.id,
                sql_int(snapshot.stream_version),
                snapshot.snapshot_version,
                taken_at,
                snapshot.state.get(),
            ])
        })
        .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn load_snapshot(
        &self,
        stream: StreamRef<'_>,
        snapshot_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT stream_version, taken_at, state FROM es_snapshots \
                     WHERE aggregate_type = ?1 AND stream_id = ?2 AND snapshot_version = ?3 \
                     AND stream_version <= ?4 ORDER BY stream_version DESC LIMIT 1",
                )
                .map_err(backend)?;
            let mut rows = stmt
                .query(params![
                    stream.aggregate_type,
                    stream.id,
                    snapshot_version,
                    sql_int(at_most)
                ])
                .map_err(backend)?;
            let Some(row) = rows.next().map_err(backend)? else {
                return Ok(None);
            };
            let unreadable = |reason: String| StoreError::CorruptStream {
                stream: stream.to_key(),
                reason,
            };
            let version: i64 = row.get(0).map_err(backend)?;
            let taken_at: i64 = row.get(1).map_err(backend)?;
            let state: String = row.get(2).map_err(backend)?;
            let stream_version = u64::try_from(version).map_err(|_| {
                unreadable(format!(
                    "a snapshot has the negative stream version {version}"
                ))
            })?;
            let state = RawValue::from_string(state).map_err(|error| {
                unreadable(format!(
                    "the snapshot at version {stream_version} is not JSON: {error}"
                ))
            })?;
            Ok(Some(Snapshot {
                stream_version,
                snapshot_version,
                state,
                taken_at: row::from_micros(taken_at).unwrap_or(SystemTime::UNIX_EPOCH),
            }))
        })
    }

    fn prune_snapshots(&self, stream: StreamRef<'_>, keep: usize) -> Result<u64, StoreError> {
        let conn = lock(&self.inner.writer);
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let deleted = conn
            .prepare_cached(
                "DELETE FROM es_snapshots WHERE aggregate_type = ?1 AND stream_id = ?2 \
                 AND stream_version NOT IN (SELECT stream_version FROM es_snapshots \
                 WHERE aggregate_type = ?1 AND stream_id = ?2 \
                 ORDER BY stream_version DESC LIMIT ?3)",
            )
            .and_then(|mut stmt| stmt.execute(params![stream.aggregate_type, stream.id, keep]))
            .map_err(backend)?;
        Ok(deleted as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_cheap_to_share_between_threads() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<SqliteStore>();
    }

    #[test]
    fn debug_names_the_location_only() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(
            format!("{store:?}"),
            "SqliteStore { location: \":memory:\", .. }"
        );
    }
}
