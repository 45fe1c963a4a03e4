//! Connection settings and the versioned schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::Error;

/// The schema version this code writes and reads.
pub(crate) const SCHEMA_VERSION: i64 = 1;

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
];

/// Applies the per-connection settings every connection of a file store needs.
pub(crate) fn configure(conn: &Connection, path: &Path) -> Result<(), Error> {
    let configure = |setting, source| Error::Configure {
        path: path.to_owned(),
        setting,
        source,
    };
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| configure("busy_timeout", e))?;
    // See the crate documentation for why FULL.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| configure("synchronous=FULL", e))?;
    Ok(())
}

/// Switches a file database to WAL mode (persistent: recorded in the file).
pub(crate) fn enable_wal(conn: &Connection, path: &Path) -> Result<(), Error> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|source| Error::Configure {
            path: path.to_owned(),
            setting: "journal_mode=WAL",
            source,
        })?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(Error::NoWal {
            path: path.to_owned(),
            mode,
        })
    }
}

/// Creates the schema, or migrates it to [`SCHEMA_VERSION`]; refuses a newer one.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let migrate_err = |source| Error::Migrate {
        path: path.to_owned(),
        source,
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
        tx.execute_batch(sql).map_err(migrate_err)?;
        tx.execute(
            "UPDATE es_schema_version SET version = ?1",
            [step as i64 + 1],
        )
        .map_err(migrate_err)?;
    }
    tx.commit().map_err(migrate_err)
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
