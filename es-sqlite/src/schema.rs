//! Connection settings and the versioned schema.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, MAIN_DB, TransactionBehavior};

use crate::error::Error;

/// The schema version this code writes and reads.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// How long a connection waits for another connection (or process) holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migrations, in order: `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 0 -> 1: the event log.
    "CREATE TABLE es_schema_version (version INTEGER NOT NULL);
     INSERT INTO es_schema_version (version) VALUES (0);
     CREATE TABLE es_events (
         global_position INTEGER PRIMARY KEY AUTOINCREMENT,
         event_id        TEXT    NOT NULL UNIQUE,
         aggregate_type  TEXT    NOT NULL,
         stream_id       TEXT    NOT NULL,
         stream_version  INTEGER NOT NULL,
         event_type      TEXT    NOT NULL,
         schema_version  INTEGER NOT NULL,
         recorded_at     INTEGER NOT NULL, -- microseconds since the Unix epoch
         payload         TEXT    NOT NULL, -- JSON
         metadata        TEXT    NOT NULL, -- JSON
         UNIQUE (aggregate_type, stream_id, stream_version)
     );",
    // 1 -> 2: idempotency keys of committed appends, per stream.
    "CREATE TABLE es_commands (
         aggregate_type  TEXT    NOT NULL,
         stream_id       TEXT    NOT NULL,
         idempotency_key TEXT    NOT NULL,
         stream_version  INTEGER NOT NULL, -- the stream's version after the append
         first_position  INTEGER NOT NULL, -- the global position of its first event
         event_count     INTEGER NOT NULL,
         PRIMARY KEY (aggregate_type, stream_id, idempotency_key)
     ) WITHOUT ROWID;",
    // 2 -> 3: queries by event type read only matching events, snapshots, and read-model
    // checkpoints with their leases.
    "CREATE INDEX es_events_by_type ON es_events (aggregate_type, event_type, global_position);
     CREATE TABLE es_snapshots (
         aggregate_type   TEXT    NOT NULL,
         stream_id        TEXT    NOT NULL,
         stream_version   INTEGER NOT NULL, -- the version the state reflects
         snapshot_version INTEGER NOT NULL,
         taken_at         INTEGER NOT NULL, -- microseconds since the Unix epoch
         state            TEXT    NOT NULL, -- JSON
         PRIMARY KEY (aggregate_type, stream_id, stream_version)
     ) WITHOUT ROWID;
     CREATE TABLE es_checkpoints (
         name        TEXT    NOT NULL PRIMARY KEY, -- the read model's name
         position    INTEGER NOT NULL,             -- global position of the last event applied
         updated_at  INTEGER NOT NULL,             -- microseconds since the Unix epoch
         lease_owner TEXT,                         -- the projector instance running it
         lease_until INTEGER                       -- microseconds since the Unix epoch
     ) WITHOUT ROWID;",
];

/// Refuses paths that SQLite would not read as the name of a database file.
///
/// SQLite gives some names a meaning of their own: `""` opens a private temporary database
/// that is deleted on close, `:memory:` an in-memory database of which every connection of
/// the store (the writer and each reader) would get its own empty one, and (this build
/// enables URIs) `file:...` is a URI whose parameters can open another file, read-only or in
/// memory. A file whose name is `:memory:` is refused as well, as it reads like one.
pub(crate) fn check_path(path: &Path) -> Result<(), Error> {
    let reason = if path.as_os_str().is_empty() {
        "the path is empty, and SQLite opens an empty path as a private, temporary database that is deleted when the store is dropped"
    } else if path.file_name() == Some(OsStr::new(":memory:")) {
        "`:memory:` is SQLite's name for an in-memory database, in which every connection of the store would see its own, empty database"
    } else if path.as_os_str().as_encoded_bytes().starts_with(b"file:") {
        "a path starting with `file:` is a SQLite URI, which es-sqlite does not take (its parameters could open the database read-only, in memory or elsewhere); for a relative file whose name starts with `file:`, write `./file:...`"
    } else {
        return Ok(());
    };
    Err(Error::InvalidPath {
        path: path.to_owned(),
        reason,
    })
}

/// Applies the per-connection settings every connection of a file store needs.
pub(crate) fn configure(conn: &Connection, path: &Path) -> Result<(), Error> {
    let configure = |setting, cause| Error::Configure {
        path: path.to_owned(),
        setting,
        cause,
    };
    // First, so that every later step waits for other connections' locks.
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| configure("busy_timeout", e))?;
    // See the crate documentation for why FULL.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| configure("synchronous=FULL", e))?;
    Ok(())
}

/// Refuses a connection that can only read the database.
///
/// SQLite opens a file it may not write (permission bits, a read-only mount) read-only even
/// when asked for read-write, so without this check the store would open fine and fail at
/// its first append.
pub(crate) fn check_writable(conn: &Connection, path: &Path) -> Result<(), Error> {
    match conn.is_readonly(MAIN_DB) {
        Ok(false) => Ok(()),
        Ok(true) => Err(Error::ReadOnly {
            path: path.to_owned(),
        }),
        Err(cause) => Err(Error::Configure {
            path: path.to_owned(),
            setting: "read-only check",
            cause,
        }),
    }
}

/// Switches a file database to WAL mode (persistent: recorded in the file).
///
/// Several processes may open a new file at once. Leaving rollback-journal mode takes the
/// exclusive lock on top of the read lock the statement already holds, and SQLite reports
/// that upgrade's conflicts as `SQLITE_BUSY` at once, without waiting in the busy handler
/// (waiting could deadlock two upgrading readers). So a file already in WAL mode is left
/// alone, and a conflicting switch is retried, with short pauses, for up to the busy
/// timeout.
pub(crate) fn enable_wal(conn: &Connection, path: &Path) -> Result<(), Error> {
    let configure = |setting, cause| Error::Configure {
        path: path.to_owned(),
        setting,
        cause,
    };
    // Reading the schema loads the file header, which tells the connection whether the
    // file is in WAL mode already (and fails cleanly on a file that is not a database).
    retry_while_busy(|| conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(())))
        .map_err(|e| configure("read the schema", e))?;
    let mode = retry_while_busy(|| journal_mode(conn, "PRAGMA journal_mode"))
        .map_err(|e| configure("journal_mode", e))?;
    if is_wal(&mode) {
        return Ok(());
    }
    let mode = retry_while_busy(|| journal_mode(conn, "PRAGMA journal_mode = WAL"))
        .map_err(|e| configure("journal_mode=WAL", e))?;
    if is_wal(&mode) {
        Ok(())
    } else {
        Err(Error::NoWal {
            path: path.to_owned(),
            mode,
        })
    }
}

fn journal_mode(conn: &Connection, sql: &str) -> rusqlite::Result<String> {
    conn.query_row(sql, [], |row| row.get(0))
}

fn is_wal(mode: &str) -> bool {
    mode.eq_ignore_ascii_case("wal")
}

/// Runs `step` again while it fails with `SQLITE_BUSY` or `SQLITE_LOCKED`, pausing a little
/// longer each time, until [`BUSY_TIMEOUT`] has passed since the first attempt; then (or on
/// any other error) returns the last error.
fn retry_while_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match step() {
            Err(error) if is_busy(&error) && Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Creates the schema, or migrates it to [`SCHEMA_VERSION`]; refuses a newer one.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let migrate_err = |cause| Error::Migrate {
        path: path.to_owned(),
        cause,
    };
    // Fast path without the write lock: many processes may open the file at once.
    let found = stored_version(conn).map_err(migrate_err)?;
    check_not_newer(found, path)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    // Take the write lock, then look again: another process may have migrated meanwhile.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(migrate_err)?;
    let found = stored_version(&tx).map_err(migrate_err)?;
    check_not_newer(found, path)?;
    // `found` is in 0..SCHEMA_VERSION here, so the conversion and the slice cannot fail.
    let from = usize::try_from(found).unwrap_or(0);
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        let step = step as i64;
        tx.execute_batch(sql)
            .and_then(|()| {
                tx.execute("UPDATE es_schema_version SET version = ?1", [step + 1])
                    .map(drop)
            })
            .map_err(|e| migrate_err(in_step(e, step)))?;
    }
    tx.commit().map_err(migrate_err)
}

/// A failure of the migration from `step` to `step + 1`, saying so, with SQLite's message
/// (e.g. "table es_commands already exists") but not the whole migration's SQL text,
/// which `execute_batch` would otherwise put in the middle of the message. SQLite's error
/// code is kept, so [`Error::refine`] still recognises a read-only file.
fn in_step(error: rusqlite::Error, step: i64) -> rusqlite::Error {
    let (code, message) = match error {
        rusqlite::Error::SqlInputError { error, msg, .. } => (error, msg),
        rusqlite::Error::SqliteFailure(code, msg) => {
            let msg = msg.unwrap_or_else(|| code.to_string());
            (code, msg)
        }
        other => return other,
    };
    rusqlite::Error::SqliteFailure(
        code,
        Some(format!(
            "migrating the schema from version {step} to version {}: {message}",
            step + 1
        )),
    )
}

fn check_not_newer(found: i64, path: &Path) -> Result<(), Error> {
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The stored schema version; 0 for a database without the event tables.
fn stored_version(conn: &Connection) -> rusqlite::Result<i64> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'es_schema_version')",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    let version: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM es_schema_version", [], |row| {
            row.get(0)
        })?;
    Ok(version.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rusqlite::OpenFlags;

    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    /// Root ignores permission bits, so this opens the connection read-only instead: the
    /// state SQLite falls back to for a file it may not write.
    #[test]
    fn check_writable_refuses_a_read_only_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        check_writable(&conn, &path).unwrap();
        drop(conn);

        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        match check_writable(&conn, &path) {
            Err(Error::ReadOnly { path: reported }) => assert_eq!(reported, path),
            other => panic!("a read-only connection passed: {other:?}"),
        }
    }

    #[test]
    fn busy_steps_are_retried_and_other_errors_are_not() {
        let calls = Cell::new(0);
        let result = retry_while_busy(|| {
            calls.set(calls.get() + 1);
            match calls.get() {
                1 => Err(failure(rusqlite::ffi::SQLITE_BUSY)),
                2 => Err(failure(rusqlite::ffi::SQLITE_LOCKED)),
                _ => Ok("wal"),
            }
        });
        assert_eq!(result.unwrap(), "wal");
        assert_eq!(calls.get(), 3);

        calls.set(0);
        let result: rusqlite::Result<()> = retry_while_busy(|| {
            calls.set(calls.get() + 1);
            Err(failure(rusqlite::ffi::SQLITE_READONLY))
        });
        assert!(result.is_err());
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn sqlite_names_and_uris_are_refused_and_files_are_not() {
        for path in [
            "",
            ":memory:",
            "dir/:memory:",
            "file:events.db",
            "file::memory:",
        ] {
            assert!(
                matches!(check_path(Path::new(path)), Err(Error::InvalidPath { .. })),
                "{path:?} passed"
            );
        }
        for path in [
            "events.db",
            "./file:events.db",
            "/tmp/file:x",
            "memory",
            "a/:memory:b",
        ] {
            check_path(Path::new(path)).unwrap();
        }
    }
}
